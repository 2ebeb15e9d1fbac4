"""The crawl loop, in the main thread: refill the frontier, fill the backend's free slots, take each result
as it arrives (retry, follow a redirect, or keep the page to parse), parse and complete the kept pages one
at a time in between, and stop when the frontier is exhausted or the user asks. Retries, redirects and
parsing are decided here once, for every backend; what may start when, and what is written together, is the
frontier's.

A result frees its request's slot when it is taken, not when its page is parsed: the next request goes out
while earlier pages wait for the parser, so a burst of answers (a slow page to parse, a batch written to
disk) does not hold back the fetching. Requests in flight and fetched pages waiting for the parser are
together at most twice `concurrency`, which bounds the bodies held in memory.

A watchdog records a request as a timeout when its backend has not answered by its deadline plus a grace
period, so no backend can hang a crawl. A first stop request (Ctrl-C, SIGTERM) stops submitting and lets
what is in flight finish; a second abandons it at once. Either way every page fetched is parsed and written.
"""

from __future__ import annotations

import hashlib
import math
import queue
import random
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from functools import partial

from crawler.engine.config import CrawlConfig
from crawler.engine.frontier import Found, Frontier, Outcome, Request, page_row
from crawler.engine.heap import collector_set_for_crawling
from crawler.engine.retries import http_error, retry_for
from crawler.engine.summary import CrawlSummary, ProgressCallback, StopRequests
from crawler.engine.urls import resolve
from fetchers import ErrorKind, Fetcher, FetchResult, Headers
from parsers import Page, Parser, is_html
from storage import BY_304, BY_HASH, BY_LASTMOD, Known

HTTP_ERROR, REDIRECTS, PARSE = "http", "redirects", "parse"
TICK_SECONDS = 0.25  # how often the loop wakes while it waits for results
WATCHDOG_GRACE = 5.0  # seconds past a request's deadline before the engine stops waiting for its backend
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
NOT_MODIFIED = 304


def conditional(known: Known | None) -> Headers | None:
    """The headers that ask the server for the page only if it changed since `known` (RFC 9110 13.1): its
    ETag and its Last-Modified date, as the server sent them. None when there is nothing to ask with."""
    if known is None:
        return None
    headers = {}
    if known.etag:
        headers["If-None-Match"] = known.etag
    if known.last_modified:
        headers["If-Modified-Since"] = known.last_modified
    return headers or None


def not_changed_since(lastmod: str | None, fetched_at: str | None) -> bool:
    """Whether a sitemap's `lastmod` (a W3C date or date-time; a date alone is taken as UTC midnight) says the
    page has not changed since it was fetched at `fetched_at` (ISO 8601, UTC). False when either is missing or
    unreadable: then the page is asked for."""
    if not lastmod or not fetched_at:
        return False
    try:
        modified, fetched = datetime.fromisoformat(lastmod), datetime.fromisoformat(fetched_at)
    except ValueError:
        return False
    if modified.tzinfo is None:
        modified = modified.replace(tzinfo=UTC)
    return modified < fetched


def content_hash(body: bytes) -> str:
    """The body's fingerprint, for telling an unchanged page from a changed one when the server sends no
    validators: SHA-1 in hex, as a checksum, not for security (the fastest of hashlib's, about 0.6 ms a MB;
    BLAKE2b took twice as long)."""
    return hashlib.sha1(body, usedforsecurity=False).hexdigest()


@dataclass(slots=True)
class _InFlight:
    request: Request
    deadline: float  # time.monotonic() by which the backend must have answered


class Engine:
    """One run of a crawl: a frontier, a fetch backend and a parser."""

    def __init__(self, config: CrawlConfig, fetcher: Fetcher, parser: Parser, frontier: Frontier,
                 stops: StopRequests | None = None, progress: ProgressCallback | None = None,
                 notify: Callable[[str], None] | None = None) -> None:  # fmt: skip
        self.config = config
        self._fetcher = fetcher
        self._parser = parser
        self._frontier = frontier
        self._stops = stops or StopRequests()
        self._progress = progress
        self._notify = notify or (lambda message: None)
        self._results: queue.Queue[tuple[int, FetchResult]] = queue.Queue()
        self._in_flight: dict[int, _InFlight] = {}
        self._to_parse: deque[tuple[Request, FetchResult]] = deque()  # fetched pages, slots freed, in arrival order
        self._tokens = 0
        self._stops_seen = 0
        self._idle = True  # the last _fill left slots free for want of something to start
        self._last_report = 0.0
        self._last_tick = time.monotonic()
        self._start = time.perf_counter()
        self._random = random.Random()
        self.summary = CrawlSummary(
            backend=config.backend, resumed_from=frontier.resumed_from, max_pages=config.max_pages
        )

    # -- submitting ----------------------------------------------------------------------------------

    def _free_slots(self) -> int:
        """How many requests may start now: `concurrency` in flight at most, and twice that counting the
        fetched pages that wait for the parser (their bodies are held in memory)."""
        busy = len(self._in_flight)
        return max(0, min(self.config.concurrency - busy, 2 * self.config.concurrency - busy - len(self._to_parse)))

    def _fill(self) -> None:
        for refusal in self._frontier.refusals():
            row = page_row(refusal.request, self.config.backend, refusal.error_kind, refusal.message, attempts=0)
            self._complete(Outcome(refusal.request, row))
        now = time.monotonic()
        self._idle = False
        while self._free_slots() > 0:  # (a page its sitemap spares takes no slot: the next one is asked for)
            request = self._frontier.next(now)
            if request is None:
                self._idle = True
                return
            known = request.known
            if known is not None and known.status is not None and not_changed_since(request.lastmod, known.fetched_at):
                self._frontier.returned(request, now)  # not asked for: the sitemap says it has not changed
                self._unchanged(request, known, FetchResult(request.url), BY_LASTMOD)
                continue
            self._tokens += 1
            self._in_flight[self._tokens] = _InFlight(request, now + self.config.timeout + WATCHDOG_GRACE)
            # The callback may run on a backend's thread: it only hands the result over, for `next_result`.
            self._fetcher.submit(request.url, partial(self._deliver, self._tokens), conditional(request.known))

    def _deliver(self, token: int, result: FetchResult) -> None:
        self._results.put((token, result))

    # -- handling results ----------------------------------------------------------------------------

    def _handle(self, token: int, result: FetchResult) -> None:
        entry = self._in_flight.pop(token, None)
        if entry is None:
            return  # the watchdog gave up on it already
        request, now = entry.request, time.monotonic()
        self._frontier.returned(request, now)
        if self._should_retry(request, result, now):
            return
        if request.robots:
            self._frontier.robots_answered(request, result.status, result.body, result.error_kind, result.location,
                                           now)  # fmt: skip
        elif request.sitemap is not None:
            self._frontier.sitemap_answered(request, result.status, result.body, result.truncated,
                                            result.error_kind, result.error_message, result.location,
                                            now)  # fmt: skip
        elif result.status in REDIRECT_STATUSES and result.location:
            self._redirected(request, result)
        elif request.known is not None and result.status == NOT_MODIFIED and result.error_kind is None:
            self._unchanged(request, request.known, result, BY_304)
        else:
            self._to_parse.append((request, result))  # parsed by `run` once the results waiting are taken

    def _take_results(self) -> bool:
        """Take every result that has arrived, waiting for one only while no fetched page waits to be parsed
        (else a backend that fetches on this thread takes one turn); False if there was none."""
        try:
            self._handle(*self._fetcher.next_result(self._results, 0.0 if self._to_parse else self._wait_time()))
        except queue.Empty:
            return False
        while not self._results.empty():
            self._handle(*self._fetcher.next_result(self._results, 0.0))
        return True

    def _watchdog(self) -> None:
        """Record as timeouts the requests whose backend has not answered well past their deadline."""
        now = time.monotonic()
        for token, entry in list(self._in_flight.items()):
            if entry.deadline < now:
                message = f"no answer from the {self.config.backend} backend within {self.config.timeout:g} s"
                self._handle(token, FetchResult(entry.request.url, error_kind=ErrorKind.TIMEOUT, error_message=message))

    def _should_retry(self, request: Request, result: FetchResult, now: float) -> bool:
        retry = retry_for(result, request.attempt, self.config.retries, self.config.backoff, self._random)
        if retry is None:
            return False
        if self._stops.count:
            return True  # not recorded: it stays queued in the frontier, and the resumed crawl retries it
        if retry.pause is not None:
            self._frontier.pause(request.origin, now + retry.pause, now)
        self._frontier.retry(replace(request, attempt=request.attempt + 1), now + retry.wait)
        self.summary.retries += 1
        return True

    def _redirected(self, request: Request, result: FetchResult) -> None:
        chain = (*request.via, request.url)
        target = resolve(result.location or "", request.url)
        if target is None:
            reason = f"unusable redirect target {result.location!r}: not an http(s) URL a browser would follow"
            self._record(request, result, REDIRECTS, reason)
            return
        if target in chain:
            self._record(request, result, REDIRECTS, "redirect loop: " + " -> ".join((*chain, target)), target)
        elif request.hops >= self.config.max_redirects:
            self._record(request, result, REDIRECTS, f"more than {self.config.max_redirects} redirects", target)
        else:
            self._record(request, result, final_url=target, found=[Found(target, request.depth, request.hops + 1,
                                                                         chain)])  # fmt: skip

    def _unchanged(self, request: Request, known: Known, result: FetchResult, by: str) -> None:
        """Record a page found as an earlier pass left it (`by`: a 304, a sitemap's lastmod, or the same body's
        hash): its row carries the known size, title and links over, and its stored links are followed again
        without parsing it."""
        row = page_row(request, self.config.backend, known.error_kind, known.error_message, status=known.status,
                       content_type=known.content_type, size=known.size, truncated=known.truncated,
                       title=known.title, link_count=known.link_count, unusable_links=known.unusable_links,
                       attempts=0 if by == BY_LASTMOD else request.attempt,
                       elapsed_ms=None if by == BY_LASTMOD else round(result.elapsed_ms, 3),
                       content_hash=known.content_hash, etag=result.etag or known.etag,
                       last_modified=result.last_modified or known.last_modified,
                       unchanged_by=by)  # fmt: skip
        follow = self._stored_to_follow(self._frontier.stored_links(request.url), request.depth)
        self.summary.bytes += len(result.body)
        if by != BY_HASH:
            self.summary.bytes_saved += known.size or 0
        self._complete(Outcome(request, row, None, follow))

    def _links(self, page: Page | None, depth: int) -> tuple[list[tuple[str, bool]], list[Found], int]:
        """(every link and whether the page lets it be followed, the links to follow), in page order; and how
        many hrefs were unusable (rejected by the URL standard, or longer than --max-url-length)."""
        if page is None:
            return [], [], 0
        # Canonical and without repeats already: the parsers resolve them as crawler.engine.urls does.
        longest = self.config.max_url_length
        kept = [url for url in page.links if len(url) <= longest]
        # rel=nofollow on every anchor to it, or meta robots nofollow on the page, says not to.
        links = [(url, not page.meta_nofollow and url not in page.nofollow) for url in kept]
        obey = self.config.obey_nofollow
        follow = [Found(url, depth + 1) for url, allowed in links if allowed or not obey]
        return links, follow, page.unusable + len(page.links) - len(kept)

    def _stored_to_follow(self, links: Iterable[tuple[str, bool]], depth: int) -> list[Found]:
        """Of an unchanged page's stored links (URL, whether the page lets it be followed), those to follow as
        `_links` would: under --obey-nofollow those the page lets be followed, else all; none longer than
        --max-url-length (it may have been lowered since)."""
        obey, longest = self.config.obey_nofollow, self.config.max_url_length
        return [Found(url, depth + 1) for url, allowed in links if (allowed or not obey) and len(url) <= longest]

    def _record(self, request: Request, result: FetchResult, error_kind: str | None = None,
                error_message: str | None = None, final_url: str | None = None,
                found: list[Found] | None = None) -> None:  # fmt: skip
        ok = result.status is not None and 200 <= result.status < 300 and result.error_kind is None
        fingerprint = None
        if result.status is not None:  # a redirect is its target as much as its body
            target = result.location if result.status in REDIRECT_STATUSES else None
            fingerprint = content_hash(
                result.body + (b"\n" + target.encode("utf-8", "surrogateescape") if target else b"")
            )
        known = request.known
        if ok and known is not None and (known.status, known.content_hash) == (result.status, fingerprint):
            self._unchanged(request, known, result, BY_HASH)  # the same body: no need to parse it
            return
        start = time.perf_counter()
        page: Page | None = None
        links: list[tuple[str, bool]] = []
        follow: list[Found] = []
        unusable = 0
        if ok and is_html(result.content_type):
            try:
                cpu = time.thread_time()
                try:
                    page = self._parser.parse(result.body, request.url, result.content_type)
                finally:
                    self.summary.parser_cpu_seconds += time.thread_time() - cpu
                links, follow, unusable = self._links(page, request.depth)
            except Exception as exc:  # a page the parser chokes on is a row, not the end of the crawl
                page, links, follow, unusable = None, [], [], 0
                error_kind, error_message = PARSE, f"the page could not be parsed: {type(exc).__name__}: {exc}"
        self.summary.parse_seconds += time.perf_counter() - start
        if error_kind is None:
            error_kind, error_message = result.error_kind, result.error_message
        if error_kind is None and result.status is not None and result.status >= 400:
            error_kind, error_message = HTTP_ERROR, http_error(result.status)
        row = page_row(request, self.config.backend, error_kind, error_message, final_url=final_url or request.url,
                       status=result.status, content_type=result.content_type,
                       size=len(result.body) if result.status is not None else None,
                       truncated=int(result.truncated), title=page.title if page else None, link_count=len(links),
                       unusable_links=unusable, attempts=request.attempt,
                       elapsed_ms=round(result.elapsed_ms, 3), content_hash=fingerprint, etag=result.etag,
                       last_modified=result.last_modified)  # fmt: skip
        self.summary.bytes += len(result.body)
        # Also while stopping: the resumed crawl needs these links.
        self._complete(Outcome(request, row, links, (found or []) + follow))

    def _complete(self, outcome: Outcome) -> None:
        if not self._frontier.complete(outcome):
            return  # the frontier took the request back: another worker will fetch it
        self.summary.pages += 1
        if (kind := outcome.row["error_kind"]) is not None:
            self.summary.errors += 1
            self.summary.errors_by_kind[kind] += 1

    # -- the loop ------------------------------------------------------------------------------------

    def _report(self, force: bool = False) -> None:
        now = time.perf_counter()
        summary = self.summary
        summary.elapsed = now - self._start
        summary.in_flight = len(self._in_flight)
        summary.queued, summary.capped = self._frontier.queued, self._frontier.capped
        summary.store_seconds = self._frontier.store_seconds
        summary.limit_reached = self._frontier.limit_reached
        if self._progress is not None and (force or now - self._last_report >= TICK_SECONDS):
            self._last_report = now
            self._progress(summary)

    def _wait_time(self) -> float:
        """How long to wait for a result: until the frontier's next timer (a host's delay, a retry) if a request
        could start then; else a tick (the timers wait for a free slot, or for nothing while stopping)."""
        wake = self._frontier.next_wake()
        if wake is None or self._stops.count or self._free_slots() == 0:
            return TICK_SECONDS
        return min(TICK_SECONDS, max(0.0, wake - time.monotonic()))

    def _stop_requested(self) -> bool:
        """Take note of new stop requests; True once the second one asks to stop at once."""
        if self._stops.count > self._stops_seen:
            self._stops_seen = self._stops.count
            self.summary.interrupted, self.summary.stopped_by = True, self._stops.signal_name
            while self._stops_seen == 1 and self._to_parse:  # fetched under the leases `stopping` hands back
                self._record(*self._to_parse.popleft())
            if self._stops_seen == 1 and self._frontier.stopping():
                return True  # what is in flight went back to the frontier: nothing to wait for
            if self._stops_seen == 1 and self._in_flight:
                longest = max(entry.deadline for entry in self._in_flight.values()) - WATCHDOG_GRACE - time.monotonic()
                self._notify(f"Stopping ({self._stops.signal_name}): {len(self._in_flight)} requests in flight, "
                             f"up to {max(1, math.ceil(longest))} s; press Ctrl-C again to stop now")  # fmt: skip
        return self._stops_seen >= 2

    def run(self) -> CrawlSummary:
        """Crawl until the frontier is exhausted, its page budget spent, or the user stops it. Closes the
        fetcher before returning (abandoning what is in flight after a second stop request); every page
        finished is handed to the frontier and written."""
        # The collector set for a crawl's bulk allocations; undone when the crawl ends (crawler.engine.heap).
        with collector_set_for_crawling():
            forced = False
            try:
                while not (forced := self._stop_requested()):
                    if not self._stops.count:
                        self._frontier.refill(self._idle, self._free_slots())
                        self._fill()
                    if not (self._in_flight or self._to_parse) and (self._stops.count or self._frontier.exhausted()):
                        break
                    if not self._take_results() and self._to_parse:  # their slots filled first, then a parse
                        self._record(*self._to_parse.popleft())
                    if time.monotonic() - self._last_tick >= TICK_SECONDS:
                        self._last_tick = time.monotonic()
                        self._watchdog()
                        self._frontier.tick()  # slow responses must not keep finished pages from disk
                    self._report()
            finally:
                if forced:
                    self.summary.forced = True
                    self._fetcher.abandon()  # what was in flight stays queued in the frontier
                else:
                    self._fetcher.close()  # every submitted URL has reported once this returns
                while self._in_flight:  # results that arrived meanwhile still get their rows
                    try:
                        token, result = self._results.get_nowait()
                    except queue.Empty:
                        break
                    self._handle(token, result)
                while self._to_parse:
                    self._record(*self._to_parse.popleft())
                self._frontier.flush()
                self._report(force=True)
        return self.summary
