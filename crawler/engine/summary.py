"""What a crawl run did, as the progress display, the closing summary and the run record see it."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from crawler.engine.metrics import per_second


@dataclass(slots=True)
class CrawlSummary:
    """What a crawl did, for the closing summary and the progress display."""

    backend: str
    pages: int = 0
    errors: int = 0
    bytes: int = 0  # body bytes downloaded
    bytes_saved: int = 0  # body bytes a 304 spared (a refresh)
    elapsed: float = 0.0
    errors_by_kind: Counter[str] = field(default_factory=Counter)
    retries: int = 0
    parse_seconds: float = 0.0  # main-thread time in the parser and link handling
    parser_cpu_seconds: float = 0.0  # the parser's own CPU (its thread's), on every page it was given
    store_seconds: float = 0.0  # main-thread time writing to SQLite
    in_flight: int = 0
    queued: int = 0  # frontier entries not yet done
    capped: int = 0  # frontier entries skipped by --max-pages-per-host
    resumed_from: int = 0  # pages already done when this run started
    max_pages: int = 0  # the crawl's page budget over all its runs (--max-pages); 0: none known
    limit_reached: bool = False
    interrupted: bool = False
    stopped_by: str = ""  # the signal that interrupted the crawl (SIGINT, SIGTERM)
    forced: bool = False  # a second stop request abandoned the requests in flight

    @property
    def pages_per_second(self) -> float:
        """Pages fetched per second of wall-clock time."""
        return per_second(self.pages, self.elapsed)


ProgressCallback = Callable[[CrawlSummary], None]


@dataclass(slots=True)
class StopRequests:
    """Stop requests counted by a signal handler (which does nothing else), read by the loop."""

    count: int = 0
    signal_name: str = ""
