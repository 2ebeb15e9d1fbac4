"""The local frontier: the `frontier` table of the SQLite crawl database, with a window of it in memory.

The window is filled origin by origin, in crawl order within each: an origin holds at most `ORIGIN_WINDOW`
requests in memory and is topped up when it runs low, and an origin with nothing in memory is always
loaded, however full the window is, so a slow or Crawl-delayed host can never keep the others' URLs
waiting in the database. robots.txt is fetched first on each origin; until it answers, the origin's pages
wait behind it.
"""

from __future__ import annotations

import time

from crawler.engine.config import CrawlConfig
from crawler.engine.frontier import Found, Frontier, Outcome, Refusal, Request
from crawler.engine.loop import REDIRECT_STATUSES
from crawler.engine.robots import RobotRules, robots_url
from crawler.engine.scheduler import Origin, Scheduler
from crawler.engine.sitemap_answer import SITEMAP_DEPTH, answer_sitemap
from crawler.engine.urls import canonical, host, origin, resolve
from storage import FrontierEntry, PageStore

WINDOW = 10_000  # requests held in memory, all origins together (an empty origin may go over it a little)
ORIGIN_WINDOW = 500  # requests of one origin held in memory at most
ROBOTS_MAX_REDIRECTS = 5  # RFC 9309 asks crawlers to follow at least five
# URLs remembered as handed to the frontier table, whose first entry for a URL stands: a link found again (the
# navigation every page repeats: 98% of the links on the bench's realistic site) is then dropped before it costs
# an entry and a lookup in SQLite. Cleared when full, about 10 MB: a URL forgotten costs that lookup again.
IN_TABLE_MEMO = 100_000


def _entry(found: Found) -> FrontierEntry:
    return FrontierEntry(found.url, origin(found.url), found.depth, found.hops, "\n".join(found.via) or None)


class LocalFrontier(Frontier):
    """A frontier in one SQLite crawl database, for one crawling process."""

    def __init__(self, config: CrawlConfig, store: PageStore, seeds: list[str], refresh: bool = False) -> None:
        """Continue the frontier in `store`, adding `seeds` (the crawl's: those there already are ignored),
        whose hosts are the crawl's scope. With `refresh`, each request carries what the database knows of its
        page, for a conditional request."""
        self.config = config
        self._store = store
        self._refresh = refresh
        self._scheduler = Scheduler(config.per_host, config.delay, config.max_pages_per_host)
        # A database written before crawls were recorded knows its seeds by their depth, 0.
        self._seed_hosts = {host(url) for url in seeds} | {host(key) for key in store.seed_origins()}
        self._low = max(1, ORIGIN_WINDOW // 4)
        self._min_load = max(8, 2 * config.per_host)
        self._hungry: set[str] = set()  # origins whose queue is low while storage holds more of theirs
        self._refused: list[Refusal] = []
        self._seed_origins = {origin(url) for url in seeds}  # whose sitemaps are read
        self._sitemaps_seen: set[str] = set()  # sitemap URLs requested in this run, so that none is read twice
        self._in_table: set[str] = set()  # URLs handed to the store's frontier table by this frontier (IN_TABLE_MEMO)
        self.resumed_from = store.done
        self._started = store.done  # first attempts of pages, those done in earlier runs included
        for key, done in store.done_by_origin().items():
            self._scheduler.origin(key).pages = done
        store.add_seeds(self._remember([FrontierEntry(url, origin(url), 0) for url in seeds]))
        self._hungry.update(store.queued_origins())
        self.limit_reached = self._budget_left() <= 0

    # -- what the engine reads -------------------------------------------------------------------------

    @property
    def queued(self) -> int:  # type: ignore[override]
        """URLs not crawled yet, in flight included."""
        return self._store.queued

    @property
    def capped(self) -> int:  # type: ignore[override]
        """URLs the per-host cap skipped."""
        return self._store.capped

    @property
    def store_seconds(self) -> float:
        """Time spent writing SQLite."""
        return self._store.write_seconds

    def _budget_left(self) -> int:
        return self.config.max_pages - self._started

    # -- the window ------------------------------------------------------------------------------------

    def refill(self, idle: bool, free: int) -> None:
        """Load queued entries of the origins that run low; those with nothing in memory first."""
        if self._store.pending and idle:
            # Slots are free but nothing may start: pages are done whose links are not written yet, and only
            # written links can be handed out (a crawl whose slots are all busy writes a batch at a time).
            self._newly_found(self._store.flush())
        if not self._hungry or self.limit_reached:
            return
        room = WINDOW - self._scheduler.queued
        now = time.monotonic()
        for key in sorted(self._hungry, key=lambda key: len(self._scheduler.origin(key).queue)):
            state = self._scheduler.origin(key)
            empty = not state.queue
            if room <= 0 and not empty:
                break
            want = min(ORIGIN_WINDOW - len(state.queue), max(room, self._min_load if empty else 0))
            entries = self._store.queued_for(key, state.cursor, want, known=self._refresh)
            for entry in entries:
                via = tuple(entry.via.split("\n")) if entry.via else ()
                request = Request(entry.url, entry.origin, entry.depth, entry.hops, via, known=entry.known,
                                  lastmod=entry.lastmod)  # fmt: skip
                self._admit(request, now)
            if entries:
                state.cursor = entries[-1].seq
            room -= len(entries)
            state.more = len(entries) == want
            if not state.more or len(state.queue) >= self._low:
                self._hungry.discard(key)

    def _newly_found(self, origins: set[str]) -> None:
        for key in origins:
            state = self._scheduler.origin(key)
            state.more = True
            if len(state.queue) < self._low:
                self._hungry.add(key)

    def _admit(self, request: Request, now: float) -> None:
        """Queue a page on its origin, behind that origin's robots.txt; record it skipped if robots.txt
        forbids it."""
        state = self._scheduler.origin(request.origin)
        if not self.config.obey_robots:
            if not state.robots_requested:  # robots.txt, which also names sitemaps, is not read
                state.robots_requested = True
                self._read_sitemaps(state, RobotRules(), now)
            self._scheduler.push(request, now)
        elif state.rules is not None:
            if state.rules.allowed(request.url, self.config.user_agent):
                self._scheduler.push(request, now)
            else:
                self._refused.append(Refusal(request, state.rules.error_kind,
                                             state.rules.reason or "disallowed by robots.txt"))  # fmt: skip
        else:
            if not state.robots_requested:
                state.robots_requested = True
                self._scheduler.push(Request(robots_url(request.origin), request.origin, 0, robots=True), now)
            self._scheduler.push(request, now)

    def refusals(self) -> list[Refusal]:
        """Pages robots.txt forbids, taken out of the frontier's hands: the engine records them."""
        refused, self._refused = self._refused, []
        return refused

    # -- handing out -----------------------------------------------------------------------------------

    def next(self, now: float) -> Request | None:
        """A request that may start now; the page budget is counted here."""
        request = self._scheduler.pop(now)
        for capped in self._scheduler.capped:
            self._store.cap(capped.url)
        self._scheduler.capped.clear()
        if request is None:
            return None
        state = self._scheduler.origin(request.origin)
        if state.more and len(state.queue) < self._low:
            self._hungry.add(request.origin)
        if request.page and request.attempt == 1:
            self._started += 1
            if self._budget_left() <= 0:
                self.limit_reached = True
                self._scheduler.drop_new()
                self._hungry.clear()
        return request

    def returned(self, request: Request, now: float) -> None:
        """Free the origin's slot."""
        self._scheduler.finished(request, now)

    def retry(self, request: Request, at: float) -> None:
        """Hold the request until `at`, then put it first on its origin."""
        self._scheduler.later(request, at)

    def pause(self, origin_key: str, until: float, now: float) -> None:
        """A Retry-After: the origin starts nothing before `until`."""
        self._scheduler.pause(origin_key, until, now)

    # -- taking results back ---------------------------------------------------------------------------

    def complete(self, outcome: Outcome) -> bool:
        """Hand the page and what it found to the store, which writes them in one transaction. A URL handed
        to the frontier table before is left out: the table keeps its first entry."""
        seen, depth = self._in_table, self.config.depth
        found = [_entry(item) for item in outcome.found
                 if item.url not in seen and item.depth <= depth and self._in_scope(item.url)]  # fmt: skip
        self._newly_found(self._store.commit(outcome.row, outcome.links, self._remember(found),
                                             list(outcome.request.via)))  # fmt: skip
        return True

    def _remember(self, entries: list[FrontierEntry]) -> list[FrontierEntry]:
        """`entries`, about to be handed to the frontier table, noted as there (the memo cleared when full)."""
        if len(self._in_table) + len(entries) > IN_TABLE_MEMO:
            self._in_table.clear()
        self._in_table.update(entry.url for entry in entries)
        return entries

    def _in_scope(self, url: str) -> bool:
        return not self.config.same_host or host(url) in self._seed_hosts

    def robots_answered(self, request: Request, status: int | None, body: bytes, error_kind: str | None,
                        location: str | None, now: float) -> None:  # fmt: skip
        """Follow a redirect of robots.txt (up to five), else apply its rules and release the origin's pages."""
        state = self._scheduler.origin(request.origin)
        target = resolve(location, request.url) if location else None
        if status in REDIRECT_STATUSES and target and request.hops < ROBOTS_MAX_REDIRECTS:
            self._scheduler.push(Request(target, request.origin, 0, request.hops + 1, robots=True), now)
            return
        rules = RobotRules.from_response(status, body, error_kind)
        state.learn_robots(rules, self.config.delay, self.config.user_agent)
        for held in self._scheduler.unblock(state, now):
            if held.page:
                self._admit(held, now)
            else:  # a sitemap another origin's robots.txt named: allowed by that naming
                self._scheduler.push(held, now)
        self._read_sitemaps(state, rules, now)

    # -- sitemaps --------------------------------------------------------------------------------------

    def _read_sitemaps(self, state: Origin, rules: RobotRules, now: float) -> None:
        """Queue a seed origin's sitemaps: those its robots.txt names, and /sitemap.xml if robots.txt allows it
        (none when robots.txt keeps the crawler off the host)."""
        if not self.config.sitemaps or state.origin not in self._seed_origins:
            return
        usual = canonical(f"{state.origin}/sitemap.xml")
        allowed = rules.allowed(usual, self.config.user_agent) or not self.config.obey_robots
        for url in [*rules.sitemaps(), *([usual] if allowed else [])]:
            self._request_sitemap(url, origin(url), 0, 0, now)

    def _request_sitemap(self, url: str, key: str, nesting: int, hops: int, now: float) -> None:
        if url not in self._sitemaps_seen and not self.limit_reached:
            self._sitemaps_seen.add(url)
            self._scheduler.push(Request(url, key, 0, hops, sitemap=nesting), now)

    def _may_read(self, url: str, near: str) -> bool:
        """Whether a sitemap that a sitemap named (or redirected to) may be read: on the host of the one that
        named it (the protocol's rule), within --max-url-length, and not forbidden by its origin's robots.txt
        where that is known."""
        if host(url) != host(near) or len(url) > self.config.max_url_length:
            return False
        rules = self._scheduler.origin(origin(url)).rules
        return not self.config.obey_robots or rules is None or rules.allowed(url, self.config.user_agent)

    def sitemap_answered(self, request: Request, status: int | None, body: bytes, truncated: bool,
                         error_kind: str | None, error_message: str | None, location: str | None,
                         now: float) -> None:  # fmt: skip
        """Queue the pages a sitemap lists and the sitemaps it lists on its host, and record it
        (crawler.engine.sitemap_answer decides which)."""
        answer = answer_sitemap(request, status, body, truncated, error_kind, error_message, location, self.config,
                                self._may_read, self._in_scope)  # fmt: skip
        for url, nesting, hops in answer.sitemaps:
            self._request_sitemap(url, origin(url), nesting, hops, now)
        if answer.pages:
            self._newly_found(self._store.add_found(self._remember(
                [FrontierEntry(entry.url, origin(entry.url), SITEMAP_DEPTH, lastmod=entry.lastmod)
                 for entry in answer.pages]
            )))  # fmt: skip
        self._store.record_sitemap(answer.row)

    def stored_links(self, url: str) -> list[tuple[str, bool]]:
        """The links stored for the page at `url`."""
        return self._store.links_of(url)

    # -- the end ---------------------------------------------------------------------------------------

    def exhausted(self) -> bool:
        """Nothing in memory, nothing unwritten that could add URLs, nothing more in storage."""
        return (
            not self._scheduler.queued
            and not self._store.pending
            and not self._refused
            and (self.limit_reached or not self._hungry)
        )

    def next_wake(self) -> float | None:
        """The earliest timer: a delay, a pause or a retry."""
        return self._scheduler.next_timer()

    def tick(self) -> None:
        """Write a batch that is due, and the owner's heartbeat."""
        self._newly_found(self._store.flush_if_due())
        self._store.heartbeat()

    def flush(self) -> None:
        """Write everything completed so far."""
        self._newly_found(self._store.flush())
