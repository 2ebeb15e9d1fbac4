"""The frontier: which URL may start now, and what each finished request changed.

The engine drives a `Frontier` and never knows which one: it asks for requests that may start now, hands
each finished page back whole (`complete`: the row, its links, the URLs it found, a redirect's target, in
one transaction), puts a URL back for a retry, pauses an origin for a Retry-After, and stops when the
frontier is exhausted. Dedup, depth, scope, robots.txt, per-origin politeness, per-host caps and the page
budget are the frontier's. `LocalFrontier` (crawler.engine.local_frontier) keeps it in the SQLite crawl database; a
frontier shared by many machines is one more implementation of this interface.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from crawler.engine.urls import host
from storage import Known


@dataclass(slots=True)
class Request:
    """One fetch the engine wants: a page (or robots.txt), with where it came from."""

    url: str
    origin: str
    depth: int
    hops: int = 0  # redirects followed to get here
    via: tuple[str, ...] = ()  # the URLs that redirected here, first first
    attempt: int = 1
    robots: bool = False  # a robots.txt fetch: it goes first and holds the origin's pages until answered
    known: Known | None = None  # on a refresh: the page as an earlier pass found it
    lastmod: str | None = None  # a sitemap's <lastmod> for it, as written
    sitemap: int | None = None  # a sitemap fetch: how many sitemap indexes led to it (None: not a sitemap)

    @property
    def page(self) -> bool:
        """Whether it fetches a page (not robots.txt, not a sitemap): only pages count against the limits."""
        return not self.robots and self.sitemap is None


@dataclass(slots=True)  # not frozen: a page makes dozens, and a frozen dataclass takes five times as long to make
class Found:
    """A URL a page adds to the frontier: a link to follow (depth + 1) or a redirect's target (same depth)."""

    url: str
    depth: int
    hops: int = 0
    via: tuple[str, ...] = ()


@dataclass(slots=True)
class Outcome:
    """A finished request and everything it caused, committed together."""

    request: Request
    row: dict[str, Any]  # the `pages` row
    # Every link on the page and whether it was followed, for the `links` table; None keeps those stored (the
    # page is unchanged).
    links: list[tuple[str, bool]] | None = field(default_factory=list)
    found: list[Found] = field(default_factory=list)  # URLs to queue (the frontier checks scope and depth)


@dataclass(frozen=True, slots=True)
class Refusal:
    """A page its origin's policy forbids fetching (robots.txt): recorded with why, never fetched."""

    request: Request
    error_kind: str
    message: str


def page_row(request: Request, backend: str, error_kind: str | None = None, error_message: str | None = None,
             **fields: Any) -> dict[str, Any]:  # fmt: skip
    """The `pages` row of `request`: its identity, the time, the backend, the error if any, and `fields`
    (status, size, title...)."""
    return {
        "url": request.url,
        "final_url": request.url,
        "host": host(request.url),
        "depth": request.depth,
        "fetched_at": datetime.now(UTC).isoformat(timespec="milliseconds"),
        "backend": backend,
        "error_kind": error_kind,
        "error_message": error_message,
        **fields,
    }


class Frontier(ABC):
    """What the engine asks of a frontier. Every method is called from the engine's thread."""

    limit_reached: bool = False  # the page budget (--max-pages) is spent
    resumed_from: int = 0  # pages done in earlier runs of this crawl
    queued: int = 0  # URLs not crawled yet (in flight included)
    capped: int = 0  # URLs skipped by the per-host cap

    @abstractmethod
    def refill(self, idle: bool, free: int) -> None:
        """Make ready what can start soon (e.g. load it from storage), without starving any origin. `idle`:
        the engine has free slots that nothing could fill last time; `free`: how many slots are free now (the
        engine starts whatever `next` hands out before it calls this again)."""

    @abstractmethod
    def next(self, now: float) -> Request | None:
        """A request that may start now under its origin's politeness, counted in flight; None if none may."""

    @abstractmethod
    def refusals(self) -> list[Refusal]:
        """The pages refused since the last call (robots.txt), for the engine to record as rows."""

    @abstractmethod
    def returned(self, request: Request, now: float) -> None:
        """`request` came back (before it is completed or retried): its origin may start another."""

    @abstractmethod
    def complete(self, outcome: Outcome) -> bool:
        """Record a finished request and everything it caused, atomically: its row, its links, the URLs it
        found (those in scope and within the depth limit), and the redirect chain it ends. False if it was not
        accepted (a shared frontier took the request back: see `stopping`)."""

    @abstractmethod
    def retry(self, request: Request, at: float) -> None:
        """Hand `request` out again, not before `at` (time.monotonic())."""

    @abstractmethod
    def pause(self, origin: str, until: float, now: float) -> None:
        """Start nothing on `origin` before `until` (a Retry-After)."""

    @abstractmethod
    def robots_answered(self, request: Request, status: int | None, body: bytes, error_kind: str | None,
                        location: str | None, now: float) -> None:  # fmt: skip
        """The response to an origin's robots.txt: its rules and Crawl-delay now apply to the origin's pages."""

    @abstractmethod
    def sitemap_answered(self, request: Request, status: int | None, body: bytes, truncated: bool,
                         error_kind: str | None, error_message: str | None, location: str | None,
                         now: float) -> None:  # fmt: skip
        """The response to a sitemap: its page URLs join the frontier (as links would), the sitemaps it lists
        are fetched in turn, and what it held (or why it was unusable) is recorded."""

    @abstractmethod
    def stored_links(self, url: str) -> list[tuple[str, bool]]:
        """The links an earlier pass stored for the page at `url` (target, followed): an unchanged page's."""

    @abstractmethod
    def exhausted(self) -> bool:
        """Nothing is left to hand out now or later (what is in flight aside)."""

    @abstractmethod
    def next_wake(self) -> float | None:
        """When something held back (a delay, a pause, a retry) may start, if anything is."""

    @abstractmethod
    def tick(self) -> None:
        """Called a few times a second: write what is due, tell others this crawl is alive."""

    def stopping(self) -> bool:
        """A stop was asked for: no new request will be started. True if what is in flight is to be abandoned
        at once: a frontier shared with other workers hands back what this one holds (its results would not be
        accepted). A local one keeps its queue for a resume as it is, and takes what is in flight."""
        return False

    @abstractmethod
    def flush(self) -> None:
        """Write everything completed so far."""

    @property
    @abstractmethod
    def store_seconds(self) -> float:
        """Time spent writing, for the figures of a run."""
