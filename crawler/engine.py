"""The crawl loop, in the main thread: take requests from the per-origin scheduler, submit them to a
backend, take results off a queue, then decide: retry, follow a redirect, or parse, store and queue the
links. robots.txt, politeness, retries, redirects, depth, scope and limits are decided here once, for every
backend.

The frontier lives in the database (`frontier` table); memory holds a window of it, refilled in crawl
order, so memory stays bounded however many URLs are found. A page row and its frontier entry's `done`
mark are written in the same transaction, so a crawl killed at any moment resumes without losing or
repeating a page.
"""

from __future__ import annotations

import queue
import random
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from functools import partial
from http import HTTPStatus
from typing import Any

from yarl import URL

from crawler.config import CrawlConfig
from crawler.meter import ResourceMeter
from crawler.robots import RobotRules, robots_url
from crawler.scheduler import Request, Scheduler
from crawler.urls import canonical, host, origin
from fetchers import ErrorKind, Fetcher, FetchResult, FetchSettings, get_fetcher
from parsers import Page, Parser, get_parser, is_html
from storage import FAILED, FINISHED, INTERRUPTED, LIMIT, FrontierEntry, PageStore

HTTP_ERROR = "http"
REDIRECTS = "redirects"
TICK_SECONDS = 0.25  # how often the loop wakes while it waits for results
WINDOW = 10_000  # frontier entries held in memory at most
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
RETRY_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
RETRY_ERRORS = frozenset({ErrorKind.TIMEOUT, ErrorKind.CONNECTION, ErrorKind.REFUSED, ErrorKind.INCOMPLETE})
MAX_RETRY_AFTER = 300.0  # a longer Retry-After is not waited for: the page is recorded as failed
ROBOTS_MAX_REDIRECTS = 5  # RFC 9309 asks crawlers to follow at least five


@dataclass(slots=True)
class CrawlSummary:
    """What a crawl did, for the closing summary and the progress display."""

    backend: str
    pages: int = 0
    errors: int = 0
    bytes: int = 0
    elapsed: float = 0.0
    errors_by_kind: Counter[str] = field(default_factory=Counter)
    retries: int = 0
    parse_seconds: float = 0.0  # main-thread time in the parser and link handling
    store_seconds: float = 0.0  # main-thread time writing to SQLite
    in_flight: int = 0
    queued: int = 0  # frontier entries not yet done
    resumed_from: int = 0  # pages already done when this run started
    limit_reached: bool = False
    interrupted: bool = False

    @property
    def pages_per_second(self) -> float:
        """Pages fetched per second of wall-clock time."""
        return self.pages / self.elapsed if self.elapsed > 0 else 0.0


ProgressCallback = Callable[[CrawlSummary], None]


class NothingToResume(Exception):
    """--resume was asked for, but the database has no unfinished crawl."""


def _http_error(status: int) -> str:
    try:
        return f"HTTP {status} {HTTPStatus(status).phrase}"
    except ValueError:
        return f"HTTP {status}"


def retry_after_seconds(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or an HTTP date); None if absent or bad."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


class Engine:
    """One crawl over one database."""

    def __init__(
        self,
        config: CrawlConfig,
        fetcher: Fetcher,
        parser: Parser,
        store: PageStore,
        progress: ProgressCallback | None = None,
    ) -> None:
        self.config = config
        self._fetcher = fetcher
        self._parser = parser
        self._store = store
        self._progress = progress
        self._results: queue.Queue[tuple[int, FetchResult]] = queue.Queue()
        self._scheduler = Scheduler(config.per_host, config.delay, config.max_pages_per_host)
        self._in_flight: dict[int, Request] = {}
        self._tokens = 0
        self._cursor = 0  # highest frontier seq loaded into memory
        self._dry_at: int | None = None  # the store's `added` count when the frontier last read empty
        self._started = 0  # first attempts of pages submitted, including those done in earlier runs
        self._seed_hosts: set[str] = set()
        self._stopping = False
        self._starved = True  # the last _fill left slots free for want of something to start
        self._last_report = 0.0
        self._start = time.perf_counter()
        self._random = random.Random()
        self.summary = CrawlSummary(backend=config.backend)

    # -- the frontier window -------------------------------------------------------------------------

    def _budget_left(self) -> int:
        return self.config.max_pages - self._started

    def _refill(self) -> None:
        """Load queued frontier entries into the scheduler when it runs low."""
        if self._budget_left() <= 0 or self._scheduler.queued >= WINDOW // 2:
            return
        if self._store.has_unwritten_discoveries and (self._starved or not self._in_flight):
            # Slots are free but nothing in memory may start (or nothing is in flight, and only these links
            # can tell whether the crawl goes on): newly found links become crawlable once written. A crawl
            # whose slots are all busy writes one transaction per batch instead.
            self._store.flush()
        if self._dry_at == self._store.added:
            return
        limit = WINDOW - self._scheduler.queued
        entries = self._store.queued_after(self._cursor, limit)
        now = time.monotonic()
        for entry in entries:
            self._cursor = entry.seq
            via = tuple(entry.via.split("\n")) if entry.via else ()
            self._admit(Request(entry.url, entry.origin, entry.depth, entry.hops, via), now)
        # A short read means the frontier has nothing more until new URLs are written.
        self._dry_at = self._store.added if len(entries) < limit else None

    def _admit(self, request: Request, now: float) -> None:
        """Queue a page on its origin, behind that origin's robots.txt; drop it if robots.txt forbids it."""
        host_state = self._scheduler.host(request.origin)
        if not self.config.obey_robots:
            self._scheduler.push(request, now)
        elif host_state.rules is not None:
            if host_state.rules.allowed(request.url, self.config.user_agent):
                self._scheduler.push(request, now)
            else:
                rules = host_state.rules
                self._record_skipped(request, rules.error_kind, rules.reason or "disallowed by robots.txt")
        else:
            if not host_state.robots_requested:
                host_state.robots_requested = True
                self._scheduler.push(Request(robots_url(request.origin), request.origin, 0, robots=True), now)
            self._scheduler.push(request, now)

    def _discover(self, url: str, depth: int, hops: int = 0, via: tuple[str, ...] = ()) -> FrontierEntry:
        return FrontierEntry(url, origin(url), depth, hops, "\n".join(via) if via else None)

    # -- submitting ----------------------------------------------------------------------------------

    def _fill(self) -> None:
        now = time.monotonic()
        self._starved = False
        while len(self._in_flight) < self.config.concurrency:
            request = self._scheduler.pop(now)
            if request is None:
                self._starved = True
                return
            if not request.robots and request.attempt == 1:
                self._started += 1
                if self._budget_left() <= 0:
                    self.summary.limit_reached = True
                    self._scheduler.drop_new()
            self._submit(request)

    def _submit(self, request: Request) -> None:
        self._tokens += 1
        self._in_flight[self._tokens] = request
        # The callback runs on the backend's thread: it only hands the result to the main thread.
        self._fetcher.submit(request.url, partial(self._deliver, self._tokens))

    def _deliver(self, token: int, result: FetchResult) -> None:
        self._results.put((token, result))

    # -- handling results ----------------------------------------------------------------------------

    def _handle(self, token: int, result: FetchResult) -> None:
        request = self._in_flight.pop(token)
        now = time.monotonic()
        self._scheduler.finished(request, now)
        if self._should_retry(request, result, now):
            return
        if request.robots:
            self._robots_answered(request, result, now)
        elif result.status in REDIRECT_STATUSES and result.location:
            self._redirected(request, result)
        else:
            self._record(request, result)

    def _should_retry(self, request: Request, result: FetchResult, now: float) -> bool:
        retryable = result.status in RETRY_STATUSES or result.error_kind in RETRY_ERRORS
        if not retryable or request.attempt > self.config.retries:
            return False
        if self._stopping:
            return True  # not recorded: it stays queued in the frontier, and the resumed crawl retries it
        wait = self.config.backoff * 2 ** (request.attempt - 1) * self._random.uniform(0.5, 1.5)
        if result.status in (429, 503):
            pause = retry_after_seconds(result.retry_after)
            if pause is not None:
                if pause > MAX_RETRY_AFTER:
                    return False
                self._scheduler.pause(request.origin, now + pause, now)
                wait = max(wait, pause)
        self._scheduler.later(replace(request, attempt=request.attempt + 1), now + wait)
        self.summary.retries += 1
        return True

    def _robots_answered(self, request: Request, result: FetchResult, now: float) -> None:
        host_state = self._scheduler.host(request.origin)
        if result.status in REDIRECT_STATUSES and result.location and request.hops < ROBOTS_MAX_REDIRECTS:
            target = str(URL(request.url).join(URL(result.location)))
            self._scheduler.push(replace(request, url=target, hops=request.hops + 1, attempt=1), now)
            return
        host_state.rules = RobotRules.from_response(result.status, result.body, result.error_kind)
        delay = max(self.config.delay, host_state.rules.crawl_delay(self.config.user_agent))
        for page in self._scheduler.unblock(host_state, delay, now):
            self._admit(page, now)

    def _redirected(self, request: Request, result: FetchResult) -> None:
        chain = (*request.via, request.url)
        try:
            target = canonical(str(URL(request.url).join(URL(result.location or ""))))
        except ValueError as exc:
            self._record(request, result, REDIRECTS, f"unusable redirect target {result.location!r}: {exc}")
            return
        if target in chain:
            self._record(request, result, REDIRECTS, "redirect loop: " + " -> ".join((*chain, target)), target)
        elif request.hops >= self.config.max_redirects:
            self._record(request, result, REDIRECTS, f"more than {self.config.max_redirects} redirects", target)
        else:
            self._record(request, result, final_url=target)
            if self._in_scope(target):
                self._store.discover([self._discover(target, request.depth, request.hops + 1, chain)])

    def _in_scope(self, url: str) -> bool:
        return not self.config.same_host or host(url) in self._seed_hosts

    def _links(self, page: Page | None) -> tuple[list[str], list[str]]:
        """(every link, the links to follow), canonical, without repeats or over-long URLs."""
        if page is None:
            return [], []
        links: dict[str, bool] = {}
        nofollow = page.nofollow if self.config.obey_nofollow else frozenset()
        follow_none = page.meta_nofollow and self.config.obey_nofollow
        for link in page.links:
            if len(link) > self.config.max_url_length:
                continue
            try:
                url = canonical(link)
            except ValueError:
                continue
            links[url] = links.get(url, False) or (not follow_none and link not in nofollow)
        return list(links), [url for url, follow in links.items() if follow]

    def _record(
        self,
        request: Request,
        result: FetchResult,
        error_kind: str | None = None,
        error_message: str | None = None,
        final_url: str | None = None,
    ) -> None:
        ok = result.status is not None and 200 <= result.status < 300 and result.error_kind is None
        start = time.perf_counter()
        page = (
            self._parser.parse(result.body, request.url, result.content_type)
            if ok and is_html(result.content_type)
            else None
        )
        links, to_follow = self._links(page)
        self.summary.parse_seconds += time.perf_counter() - start
        if error_kind is None:
            error_kind, error_message = result.error_kind, result.error_message
        if error_kind is None and result.status is not None and result.status >= 400:
            error_kind, error_message = HTTP_ERROR, _http_error(result.status)
        self._write(request, result.status, error_kind, error_message, final_url or request.url, {
            "content_type": result.content_type,
            "size": len(result.body) if result.status is not None else None,
            "truncated": int(result.truncated),
            "title": page.title if page else None,
            "link_count": len(links),
            "attempts": request.attempt,
            "elapsed_ms": round(result.elapsed_ms, 3),
        }, links)  # fmt: skip
        self.summary.bytes += len(result.body)
        if request.via:
            self._store.set_final_url(list(request.via), request.url)
        if request.depth < self.config.depth:  # also while stopping: the resumed crawl needs these links
            self._store.discover([self._discover(url, request.depth + 1) for url in to_follow if self._in_scope(url)])

    def _record_skipped(self, request: Request, kind: str, message: str) -> None:
        """A page robots.txt kept us from fetching: it still gets its row, so the user sees why."""
        self._write(request, None, kind, message, request.url, {"attempts": 0}, [])

    def _write(
        self,
        request: Request,
        status: int | None,
        error_kind: str | None,
        error_message: str | None,
        final_url: str,
        fields: dict[str, Any],
        links: list[str],
    ) -> None:
        row = {
            "url": request.url,
            "final_url": final_url,
            "host": host(request.url),
            "status": status,
            "depth": request.depth,
            "fetched_at": datetime.now(UTC).isoformat(timespec="milliseconds"),
            "backend": self.config.backend,
            "error_kind": error_kind,
            "error_message": error_message,
            **fields,
        }
        self._store.add(row, links)
        self.summary.pages += 1
        if error_kind is not None:
            self.summary.errors += 1
            self.summary.errors_by_kind[error_kind] += 1

    # -- the loop ------------------------------------------------------------------------------------

    def _report(self, force: bool = False) -> None:
        now = time.perf_counter()
        self.summary.elapsed = now - self._start
        self.summary.in_flight = len(self._in_flight)
        self.summary.queued = self._store.queued
        self.summary.store_seconds = self._store.write_seconds
        if self._progress is not None and (force or now - self._last_report >= TICK_SECONDS):
            self._last_report = now
            self._progress(self.summary)

    def _wait_time(self) -> float:
        wake = self._scheduler.next_timer()
        if wake is None:
            return TICK_SECONDS
        return min(TICK_SECONDS, max(0.0, wake - time.monotonic()))

    def _start_frontier(self, seeds: list[str]) -> None:
        store = self._store
        if store.queued == 0 and store.done:  # the last crawl in this file ran to its end: start anew
            store.reset_frontier()
        self.summary.resumed_from = store.done
        self._started = store.done
        for origin_key, done in store.done_by_origin().items():
            self._scheduler.host(origin_key).pages = done
        store.discover([self._discover(url, 0) for url in seeds])
        store.flush()
        self._seed_hosts = {host(url) for url in seeds} | {URL(key).host or "" for key in store.seed_origins()}

    def run(self, seeds: list[str]) -> CrawlSummary:
        """Crawl from `seeds` (canonical URLs), continuing the database's unfinished frontier if it has one,
        until nothing is left or `max_pages` is reached.

        Closes the fetcher before returning. On Ctrl-C, stops submitting, records what was in flight and
        returns a summary marked `interrupted`; the rest stays queued for the next run.
        """
        self._start_frontier(seeds)
        if self._budget_left() <= 0:
            self.summary.limit_reached = True
        try:
            while True:
                if not self._stopping:
                    self._refill()
                    self._fill()
                if not self._in_flight and (self._stopping or self._scheduler.queued == 0):
                    break
                try:
                    token, result = self._results.get(timeout=self._wait_time())
                except queue.Empty:
                    self._store.flush_if_due()  # slow responses must not keep finished pages from disk
                    self._report()
                    continue
                self._handle(token, result)
                self._report()
        except KeyboardInterrupt:
            self.summary.interrupted = self._stopping = True
        finally:
            self._fetcher.close()  # every submitted URL has reported once this returns
            while self._in_flight:  # after an interrupt: what was in flight still gets its row
                try:
                    token, result = self._results.get_nowait()
                except queue.Empty:
                    break
                self._handle(token, result)
            self._store.flush()
            self._report(force=True)
        return self.summary


def crawl(config: CrawlConfig, seeds: list[str], progress: ProgressCallback | None = None) -> CrawlSummary:
    """Run a whole crawl with the configured backend, writing to `config.db_path`."""
    settings = FetchSettings(
        concurrency=config.concurrency,
        timeout=config.timeout,
        connect_timeout=config.connect_timeout,
        user_agent=config.user_agent,
        max_size=config.max_size,
    )
    store = PageStore(config.db_path)
    try:
        if config.restart:
            store.reset_frontier()
        elif config.resume and store.queued == 0:
            raise NothingToResume(f"{config.db_path} holds no unfinished crawl to resume")
        meter = ResourceMeter()
        store.start_run(asdict(config), seeds)
        started = time.perf_counter()

        def measured(summary: CrawlSummary) -> None:
            meter.sample()  # about once a second
            if progress is not None:
                progress(summary)

        engine: Engine | None = None
        status = FAILED
        try:
            engine = Engine(config, get_fetcher(config.backend)(settings), get_parser(config.parser), store, measured)
            summary = engine.run(seeds)
            status = INTERRUPTED if summary.interrupted else LIMIT if summary.limit_reached else FINISHED
        finally:
            meter.sample(force=True)
            store.finish_run(status, {
                "elapsed_s": engine.summary.elapsed if engine else time.perf_counter() - started,
                "cpu_seconds": meter.cpu_seconds,
                "peak_rss_mb": meter.peak_rss / 2**20,
                "parse_seconds": engine.summary.parse_seconds if engine else None,
                "store_seconds": store.write_seconds,
                "retries": engine.summary.retries if engine else None,
            })  # fmt: skip
        return summary
    finally:
        store.close()
