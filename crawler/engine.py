"""The crawl loop, in the main thread: submit URLs to a backend, take results off a queue, parse, store,
follow links. Depth, scope, deduplication and limits are decided here once, for every backend."""

from __future__ import annotations

import queue
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http import HTTPStatus
from typing import Any

from crawler.config import CrawlConfig
from crawler.urls import canonical, host
from fetchers import Fetcher, FetchResult, FetchSettings, get_fetcher
from parsers import Page, Parser, SoupParser, is_html
from storage import PageStore

HTTP_ERROR = "http"
TICK_SECONDS = 0.25  # how often the loop wakes while it waits for results


@dataclass(slots=True)
class CrawlSummary:
    """What a crawl did, for the closing summary."""

    backend: str
    pages: int = 0
    errors: int = 0
    bytes: int = 0
    elapsed: float = 0.0
    errors_by_kind: Counter[str] = field(default_factory=Counter)
    interrupted: bool = False

    @property
    def pages_per_second(self) -> float:
        """Pages fetched per second of wall-clock time."""
        return self.pages / self.elapsed if self.elapsed > 0 else 0.0


def _http_error(status: int) -> str:
    try:
        return f"HTTP {status} {HTTPStatus(status).phrase}"
    except ValueError:
        return f"HTTP {status}"


class Engine:
    """One crawl: a FIFO frontier (breadth first), the set of URLs already queued, and what is in flight."""

    def __init__(self, config: CrawlConfig, fetcher: Fetcher, parser: Parser, store: PageStore) -> None:
        self.config = config
        self._fetcher = fetcher
        self._parser = parser
        self._store = store
        self._results: queue.Queue[FetchResult] = queue.Queue()
        self._frontier: deque[tuple[str, int]] = deque()
        self._seen: set[str] = set()
        self._in_flight: dict[str, int] = {}  # url -> depth
        self._submitted = 0
        self._seed_hosts: set[str] = set()
        self.summary = CrawlSummary(backend=config.backend)

    def _enqueue(self, url: str, depth: int) -> None:
        if url not in self._seen:
            self._seen.add(url)
            self._frontier.append((url, depth))

    def _in_scope(self, url: str) -> bool:
        return not self.config.same_host or host(url) in self._seed_hosts

    def _submit_ready(self) -> None:
        while (
            self._frontier
            and len(self._in_flight) < self.config.concurrency
            and self._submitted < self.config.max_pages
        ):
            url, depth = self._frontier.popleft()
            self._in_flight[url] = depth
            self._submitted += 1
            # The callback runs on the backend's thread: it only hands the result to the main thread.
            self._fetcher.submit(url, self._results.put)

    def _links(self, page: Page | None) -> list[str]:
        links: dict[str, None] = {}
        for link in page.links if page else ():
            try:
                links[canonical(link)] = None
            except ValueError:
                continue
        return list(links)

    def _handle(self, result: FetchResult, follow: bool = True) -> None:
        depth = self._in_flight.pop(result.url)
        ok = result.status is not None and 200 <= result.status < 300
        page = (
            self._parser.parse(result.body, result.final_url, result.content_type)
            if ok and is_html(result.content_type)
            else None
        )
        links = self._links(page)
        error_kind = result.error_kind
        error_message = result.error_message
        if error_kind is None and result.status is not None and result.status >= 400:
            error_kind, error_message = HTTP_ERROR, _http_error(result.status)
        self._store.add(self._row(result, depth, page, len(links), error_kind, error_message), links)

        self.summary.pages += 1
        self.summary.bytes += len(result.body)
        if error_kind is not None:
            self.summary.errors += 1
            self.summary.errors_by_kind[error_kind] += 1
        if follow and depth < self.config.depth:
            for link in links:
                if self._in_scope(link):
                    self._enqueue(link, depth + 1)

    def _row(
        self,
        result: FetchResult,
        depth: int,
        page: Page | None,
        link_count: int,
        error_kind: str | None,
        error_message: str | None,
    ) -> dict[str, Any]:
        return {
            "url": result.url,
            "final_url": result.final_url,
            "host": host(result.url),
            "status": result.status,
            "content_type": result.content_type,
            "size": len(result.body) if result.status is not None else None,
            "title": page.title if page else None,
            "depth": depth,
            "link_count": link_count,
            "fetched_at": datetime.now(UTC).isoformat(timespec="milliseconds"),
            "elapsed_ms": round(result.elapsed_ms, 3),
            "backend": self.config.backend,
            "error_kind": error_kind,
            "error_message": error_message,
        }

    def run(self, seeds: list[str]) -> CrawlSummary:
        """Crawl from `seeds` (canonical URLs) until the frontier is exhausted or `max_pages` is reached.

        Closes the fetcher before returning. On Ctrl-C, stops submitting, records what was in flight and
        returns a summary marked `interrupted`.
        """
        start = time.perf_counter()
        self._seed_hosts = {host(url) for url in seeds}
        for url in seeds:
            self._enqueue(url, 0)
        try:
            while True:
                self._submit_ready()
                if not self._in_flight:
                    break
                try:
                    result = self._results.get(timeout=TICK_SECONDS)
                except queue.Empty:
                    self._store.flush_if_due()  # slow responses must not keep finished pages from disk
                    continue
                self._handle(result)
        except KeyboardInterrupt:
            self.summary.interrupted = True
        finally:
            self._fetcher.close()  # every submitted URL has reported once this returns
            while self._in_flight:  # after an interrupt: what was in flight still gets its row
                try:
                    result = self._results.get_nowait()
                except queue.Empty:
                    break
                self._handle(result, follow=False)
            self._store.flush()
            self.summary.elapsed = time.perf_counter() - start
        return self.summary


def crawl(config: CrawlConfig, seeds: list[str]) -> CrawlSummary:
    """Run a whole crawl with the configured backend, writing to `config.db_path`."""
    settings = FetchSettings(concurrency=config.concurrency, timeout=config.timeout, user_agent=config.user_agent)
    store = PageStore(config.db_path)
    try:
        fetcher = get_fetcher(config.backend)(settings)
        return Engine(config, fetcher, SoupParser(), store).run(seeds)
    finally:
        store.close()
