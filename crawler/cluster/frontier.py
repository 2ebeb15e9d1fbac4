"""The shared frontier: a `Frontier` whose queue, politeness and results live in PostgreSQL, for many workers.

A worker leases only what it starts at once: `refill` is told how many slots are free and leases at most
that many, and the engine starts them before it asks again. The lease is one statement that picks, for each
origin that may start now (robots.txt answered, fewer than --per-host in flight, its delay and any
Retry-After passed: all on the database's clock), its oldest queued URL, skipping rows another worker holds
locked; leases are serialised on the crawl row, which also holds the page budget. A lease lives as long as
its worker's heartbeat: a worker that stops beating for its lease time is declared lost by the next worker
that looks, and its URLs are queued again. Completing a page (its row, its done mark, its outlinks, its
origin's in-flight count) is one transaction, accepted only while the worker still holds the lease.

Over 400 lines: it is one class, the `Frontier` interface's twenty methods on PostgreSQL, each short; a lease's
whole life (taken, held by the heartbeat, completed, retried, handed back, reclaimed) reads best in one place.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, NamedTuple, TypeVar

import psycopg
from psycopg import errors

from crawler.cluster.schema import (
    CAPPED,
    DONE,
    FETCHING,
    LEASED,
    LOST,
    NOT_A_WORKER,
    PAGE,
    QUEUED,
    READY,
    ROBOTS,
    RUNNING,
    SITEMAP,
    WANTED,
    FrontierLost,
    unfinished,
)
from crawler.engine.config import CrawlConfig
from crawler.engine.frontier import Frontier, Outcome, Refusal, Request
from crawler.engine.local_frontier import ROBOTS_MAX_REDIRECTS
from crawler.engine.loop import REDIRECT_STATUSES
from crawler.engine.robots import RobotRules, robots_url
from crawler.engine.sitemap_answer import SITEMAP_DEPTH, answer_sitemap
from crawler.engine.urls import canonical, host, origin, resolve

T = TypeVar("T")
LEASE_BATCH = 4  # a worker leases once 1/LEASE_BATCH of its slots are free
POLL_SECONDS = 0.25  # at most this long between two looks for work when none was found (others add work)
KNOWN_URLS = 200_000  # URLs a worker remembers having queued (about 30 MB), the newest
MIN_WAIT_SECONDS = 0.002  # the least wait before another look: the two clocks may disagree by that much
STATUS_SECONDS = 2.0  # how often the queue's size is counted for the progress display
TRANSIENT = (errors.DeadlockDetected, errors.SerializationFailure)
TRANSIENT_TRIES = 5


class Found(NamedTuple):
    """A URL to add to the shared frontier."""

    url: str
    origin: str
    depth: int
    hops: int = 0
    via: str | None = None
    kind: str = PAGE
    nesting: int = 0
    lastmod: str | None = None


class _Finished(NamedTuple):
    """A finished page or sitemap waiting for the transaction that records it."""

    lease: int
    url: str
    kind: str
    row: str  # JSON
    links: str | None  # JSON
    chain: str  # JSON: the URLs whose redirects ended here
    refused: bool  # robots.txt forbade it: it was not fetched, and gives back the page budget its lease took
    found: list[Found]


COMPLETE = (
    "SELECT crawler_complete(%s::bigint, %s::bigint[], %s::text[], %s::text[], %s::jsonb[], %s::jsonb[], "
    "%s::jsonb[], %s::boolean[], %s, %s::float8, %s::int[], %s::text[], %s::text[], %s::int[], %s::int[], "
    "%s::text[], %s::text[], %s::int[], %s::text[]) AS accepted"
)
FLUSH_SECONDS = 0.1  # finished pages wait at most this long for the transaction that records them

# When an origin held back by its delay or a Retry-After may start, among those with a URL queued that a lease
# could take (crawler_lease's test: a sitemap, a page leased before, or a page within the budget and the host's
# cap); a retry's own wait is left to the next poll.
NEXT_WAKE = f"""
SELECT extract(epoch FROM min(greatest(h.next_start, h.paused_until)) - now()) AS wait
FROM hosts h, crawl c
WHERE c.id = 1 AND h.robots_state = '{READY}' AND h.in_flight < %(per_host)s
  AND EXISTS (SELECT 1 FROM urls q WHERE q.origin = h.origin AND q.state = '{QUEUED}'
              AND (q.kind <> '{PAGE}' OR q.fetches > 0
                   OR (c.started < (c.settings->>'max_pages')::bigint AND (%(cap)s = 0 OR h.started < %(cap)s))))
"""

# A worker whose heartbeat stopped is lost: its leases go back to the queue (urls, then hosts: the fixed order).
RECLAIM = f"""
WITH lost AS (
    UPDATE workers SET status = '{LOST}', ended_at = alive_until
    WHERE status = '{RUNNING}' AND alive_until < now() RETURNING id
), freed AS (
    UPDATE urls SET state = '{QUEUED}', owner = NULL
    WHERE state = '{LEASED}' AND owner IN (SELECT w.id FROM workers w WHERE w.status <> '{RUNNING}'
                                           UNION SELECT id FROM lost)
    RETURNING origin
)
SELECT origin, count(*) AS n FROM freed GROUP BY origin ORDER BY origin
"""


class SharedFrontier(Frontier):
    """The frontier of a crawl in PostgreSQL, as one worker sees it."""

    def __init__(self, conn: psycopg.Connection[dict[str, Any]], config: CrawlConfig, seeds: Sequence[str],
                 worker: int, lease_seconds: float) -> None:  # fmt: skip
        """Work on the crawl `conn` holds (of `seeds`, whose hosts are its scope) as worker `worker`, whose
        leases live `lease_seconds` past each heartbeat."""
        self.config = config
        self._conn = conn
        self._me = worker
        self._lease_seconds = lease_seconds
        self._beat_every = min(1.0, lease_seconds / 4)
        self._batch = max(1, config.concurrency // LEASE_BATCH)
        self._seed_hosts = {host(url) for url in seeds}
        self._seed_origins = {origin(url) for url in seeds}
        self._pending: list[_Finished] = []  # finished, for the next transaction
        # URLs this worker has put in the frontier lately (insertion-ordered): a site's navigation links, on every
        # page, are sent once, not once a page. Those the database has from others are filtered there.
        self._known: dict[str, None] = {}
        self._pending_since = 0.0
        self._ready: list[Request] = []  # leased this round, handed out by next() before the engine asks again
        self._leases: dict[str, int] = {}  # url -> urls.id of what this worker holds
        self._rules: dict[str, RobotRules] = {}
        self._refused: list[Refusal] = []
        self._refusing: set[str] = set()  # URLs refused, until their rows are taken
        self._later: list[tuple[float, Request]] = []  # robots.txt retries and redirects: held by this worker
        self._wake = 0.0  # time.monotonic() before which another look for work would find none (0: look now)
        self._free = 0  # the engine's free slots at the last refill
        self._last_beat = 0.0
        self._last_count = 0.0
        self._store_seconds = 0.0
        self.rejected = 0  # completions refused because the lease was lost (a stop, or a missed heartbeat)
        self.retried = 0  # transactions retried after a deadlock or serialisation failure
        self.resumed_from = self._scalar(f"SELECT count(*) FROM urls WHERE state = '{DONE}' AND kind = '{PAGE}'")
        self._count(final=True)

    # -- the database ----------------------------------------------------------------------------------

    def _scalar(self, sql: str, params: Any = None) -> int:
        row = self._conn.execute(sql, params).fetchone()
        return int(next(iter(row.values())) or 0) if row else 0

    def _retrying(self, work: Callable[[], T]) -> T:
        """Run `work` (one transaction), again after a deadlock or serialisation failure (counted)."""
        for attempt in range(TRANSIENT_TRIES):
            try:
                return work()
            except TRANSIENT:
                self.retried += 1
                if attempt == TRANSIENT_TRIES - 1:
                    raise
                time.sleep(0.01 * (attempt + 1))
            except psycopg.Error as exc:
                if exc.sqlstate == NOT_A_WORKER:  # the database refused this worker a lease or a result
                    self.heartbeat()  # says why (lost, or the crawl replaced) with FrontierLost
                    raise FrontierLost(f"worker {self._me} may no longer lease or record") from None
                raise
        raise AssertionError("unreachable")

    @contextmanager
    def _timed(self) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self._store_seconds += time.perf_counter() - start

    @property
    def store_seconds(self) -> float:
        """Time spent talking to PostgreSQL."""
        return self._store_seconds

    def _count(self, final: bool = False) -> None:
        """The queue's size for the progress display (URLs queued or leased, sitemaps included: counted from the
        partial indexes alone); at the end, `final`, exactly: pages alone, and those capped."""
        if final:
            counts = {
                row["state"]: row["n"]
                for row in self._conn.execute(
                    f"SELECT state, count(*) AS n FROM urls WHERE kind = '{PAGE}' AND state IN "
                    f"('{QUEUED}', '{LEASED}', '{CAPPED}') GROUP BY state"
                )
            }
            self.queued = counts.get(QUEUED, 0) + counts.get(LEASED, 0)
            self.capped = counts.get(CAPPED, 0)
        else:
            self.queued = self._scalar(
                f"SELECT (SELECT count(*) FROM urls WHERE state = '{QUEUED}') "
                f"+ (SELECT count(*) FROM urls WHERE state = '{LEASED}') AS n"
            )
        self._last_count = time.monotonic()

    # -- leasing ---------------------------------------------------------------------------------------

    def refill(self, idle: bool, free: int) -> None:
        """Lease up to `free` requests that may start now (robots.txt first, then pages), once a quarter of the
        slots are free: a lease costs a round trip to the database whatever its size."""
        now = time.monotonic()
        while self._later and self._later[0][0] <= now and free > 0:
            self._ready.append(self._later.pop(0)[1])
            free -= 1
        if self._pending and (free >= self._batch or now - self._pending_since >= FLUSH_SECONDS):
            self._flush()  # first: the lease then sees the slots these pages free on their hosts
        self._free = free
        if free < self._batch or now < self._wake:
            return
        with self._timed():
            leased = self._retrying(lambda: self._lease(free))
            if len(leased) < free:  # the rest waits for a delay or a pause to pass, or for others' results
                limits = {"per_host": self.config.per_host, "cap": self.config.max_pages_per_host}
                row = self._conn.execute(NEXT_WAKE, limits).fetchone()
                wait = row["wait"] if row and row["wait"] is not None else POLL_SECONDS
                # From now, not from the start of this call: the database measured `wait` after the lease.
                self._wake = time.monotonic() + min(POLL_SECONDS, max(MIN_WAIT_SECONDS, float(wait)))
        for request in leased:
            if request.robots or not self.config.obey_robots or request.sitemap is not None:
                self._ready.append(request)
                continue
            rules = self._rules_of(request.origin)
            if rules.allowed(request.url, self.config.user_agent):
                self._ready.append(request)
            else:
                self._refused.append(Refusal(request, rules.error_kind, rules.reason or "disallowed by robots.txt"))
                self._refusing.add(request.url)

    def _lease(self, free: int) -> list[Request]:
        """One call of `crawler_lease` (crawler.cluster.schema): robots.txt first, then pages, in one transaction."""
        rows = self._conn.execute(
            "SELECT * FROM crawler_lease(%s::bigint, %s::int, %s::int, %s::int, %s)",
            [self._me, free, self.config.per_host, self.config.max_pages_per_host, self.config.obey_robots],
        ).fetchall()
        requests = []
        for row in rows:
            if row["kind"] == ROBOTS:
                requests.append(Request(robots_url(row["origin"]), row["origin"], 0, robots=True))
                continue
            self._leases[row["url"]] = row["id"]
            via = tuple(row["via"].split("\n")) if row["via"] else ()
            sitemap = row["nesting"] if row["kind"] == SITEMAP else None
            requests.append(Request(row["url"], row["origin"], row["depth"], row["hops"], via, row["attempt"],
                                    lastmod=row["lastmod"], sitemap=sitemap))  # fmt: skip
        return requests

    def _rules_of(self, key: str) -> RobotRules:
        """The robots.txt rules of origin `key`, stored by whichever worker fetched it (ready before any of
        its pages is leased)."""
        if key not in self._rules:
            row = self._conn.execute(
                "SELECT robots_status, robots_body, robots_error FROM hosts WHERE origin = %s", [key]
            ).fetchone()
            assert row is not None
            self._rules[key] = RobotRules.from_response(row["robots_status"], bytes(row["robots_body"] or b""),
                                                        row["robots_error"])  # fmt: skip
        return self._rules[key]

    def next(self, now: float) -> Request | None:
        """The next request leased this round."""
        return self._ready.pop(0) if self._ready else None

    def refusals(self) -> list[Refusal]:
        """Leased pages robots.txt forbids: the engine records them (which completes their lease)."""
        refused, self._refused = self._refused, []
        return refused

    def returned(self, request: Request, now: float) -> None:
        """Nothing to do: the lease ends with the transaction that completes or requeues the request."""

    # -- finishing -------------------------------------------------------------------------------------

    def _finish(self, request: Request, kind: str, row: dict[str, Any], links: list[tuple[str, bool]] | None,
                found: list[Found]) -> bool:  # fmt: skip
        """Take a finished page or sitemap to record with the next batch (`_flush`); False if this worker no
        longer holds its lease (it handed it back on a stop)."""
        lease = self._leases.pop(request.url, None)
        if lease is None:
            self.rejected += 1
            return False
        if not self._pending:
            self._pending_since = time.monotonic()
        self._pending.append(_Finished(lease, request.url, kind, json.dumps(row),
                                       None if links is None else json.dumps(links),
                                       json.dumps(list(request.via)), request.url in self._refusing,
                                       found))  # fmt: skip
        self._refusing.discard(request.url)
        if len(self._pending) >= self._batch:
            self._flush()
        return True

    def _flush(self) -> None:
        """Record the finished pages in one transaction (`crawler_complete` in crawler.cluster.schema): each
        whole, and only if this worker still holds its lease (one that does not is counted in `rejected`)."""
        if not self._pending:
            return
        pending, self._pending = self._pending, []
        found = sorted(((index, item) for index, page in enumerate(pending, 1) for item in page.found),
                       key=lambda pair: pair[1].url)  # fmt: skip
        pages = [list(column) for column in zip(*(page[:7] for page in pending), strict=True)]
        columns = [[index for index, _ in found], *(list(column) for column in zip(*(item for _, item in found),
                                                                                  strict=True))]  # fmt: skip
        if not found:
            columns = [[] for _ in range(len(Found._fields) + 1)]
        arguments = [self._me, *pages, WANTED if self.config.obey_robots else READY, self.config.delay, *columns]

        def work() -> set[int]:
            return {row["accepted"] for row in self._conn.execute(COMPLETE, arguments)}

        with self._timed():
            accepted = self._retrying(work)
        self.rejected += len(pending) - len(accepted)
        for page in pending:
            if page.lease in accepted:  # what it found is in the frontier now: no need to send it again
                self._known.update(dict.fromkeys(item.url for item in page.found))
        if len(self._known) > KNOWN_URLS:
            self._known = dict.fromkeys(list(self._known)[-KNOWN_URLS // 2 :])  # the newest half
        self._wake = 0.0  # slots freed on their hosts, perhaps new work: look again

    def _insert_found(self, found: list[Found], origins: list[str]) -> None:
        if not found:
            return
        state = WANTED if self.config.obey_robots else READY
        self._conn.execute(
            "INSERT INTO hosts (origin, robots_state, crawl_delay) SELECT unnest(%s::text[]), %s, %s "
            "ON CONFLICT (origin) DO NOTHING",
            [origins, state, self.config.delay],
        )
        self._conn.execute(
            "INSERT INTO urls (url, origin, depth, hops, via, kind, nesting, lastmod) "
            "SELECT * FROM unnest(%s::text[], %s::text[], %s::int[], %s::int[], %s::text[], %s::text[], %s::int[], "
            "%s::text[]) ON CONFLICT (url) DO NOTHING",
            [list(column) for column in zip(*found, strict=True)],
        )

    def complete(self, outcome: Outcome) -> bool:
        """Record a finished page and the URLs it found in scope and within the depth limit."""
        found = [
            Found(item.url, origin(item.url), item.depth, item.hops, "\n".join(item.via) or None)
            for item in outcome.found
            if item.url not in self._known and item.depth <= self.config.depth and self._in_scope(item.url)
        ]
        return self._finish(outcome.request, PAGE, outcome.row, outcome.links, found)

    def _in_scope(self, url: str) -> bool:
        return not self.config.same_host or host(url) in self._seed_hosts

    def retry(self, request: Request, at: float) -> None:
        """Queue `request` again, for any worker, not before `at`; robots.txt stays with this worker."""
        if request.robots:
            self._hold(request, at)
            return
        lease = self._leases.pop(request.url, None)
        if lease is None:
            return
        wait = max(0.0, at - time.monotonic())

        def work() -> None:
            with self._conn.transaction():
                mine = self._conn.execute(
                    f"UPDATE urls SET state = '{QUEUED}', owner = NULL, attempt = %s, "
                    "not_before = now() + make_interval(secs => %s) "
                    f"WHERE id = %s AND state = '{LEASED}' AND owner = %s RETURNING origin",
                    [request.attempt, wait, lease, self._me],
                ).fetchone()
                if mine is not None:
                    self._conn.execute("UPDATE hosts SET in_flight = in_flight - 1 WHERE origin = %s",
                                       [mine["origin"]])  # fmt: skip

        with self._timed():
            self._retrying(work)

    def _hold(self, request: Request, at: float) -> None:
        self._later.append((at, request))
        self._later.sort(key=lambda item: item[0])

    def pause(self, origin_key: str, until: float, now: float) -> None:
        """A Retry-After: no worker starts anything on the origin before `until`."""
        with self._timed():
            self._conn.execute(
                "UPDATE hosts SET paused_until = greatest(paused_until, now() + make_interval(secs => %s)) "
                "WHERE origin = %s",
                [max(0.0, until - now), origin_key],
            )

    # -- robots.txt and sitemaps -----------------------------------------------------------------------

    def robots_answered(self, request: Request, status: int | None, body: bytes, error_kind: str | None,
                        location: str | None, now: float) -> None:  # fmt: skip
        """Follow a redirect (five at most, still holding the origin's robots.txt), else store what it said for
        every worker, with the origin's delay (the longer of --delay and Crawl-delay), and queue the seed
        origin's sitemaps."""
        target = resolve(location, request.url) if location else None
        if status in REDIRECT_STATUSES and target and request.hops < ROBOTS_MAX_REDIRECTS:
            self._hold(Request(target, request.origin, 0, request.hops + 1, robots=True), now)
            return
        rules = RobotRules.from_response(status, body, error_kind)
        self._rules[request.origin] = rules
        delay = max(self.config.delay, rules.crawl_delay(self.config.user_agent))
        found = self._sitemaps_of(request.origin, rules)

        def work() -> None:
            with self._conn.transaction():
                self._insert_found(found, sorted({item.origin for item in found}))
                self._conn.execute(
                    f"UPDATE hosts SET robots_state = '{READY}', robots_status = %s, robots_body = %s, "
                    "robots_error = %s, crawl_delay = %s, in_flight = in_flight - 1, "
                    # its Crawl-delay holds from robots.txt to the first page too
                    "next_start = greatest(next_start, now() + make_interval(secs => %s)) "
                    f"WHERE origin = %s AND robots_state = '{FETCHING}' AND robots_owner = %s",
                    [status, body, error_kind, delay, delay, request.origin, self._me],
                )

        with self._timed():
            self._retrying(work)
        self._wake = 0.0

    def _sitemaps_of(self, key: str, rules: RobotRules) -> list[Found]:
        """A seed origin's sitemaps: those its robots.txt names, and /sitemap.xml if robots.txt allows it."""
        if not self.config.sitemaps or key not in self._seed_origins:
            return []
        usual = canonical(f"{key}/sitemap.xml")
        allowed = rules.allowed(usual, self.config.user_agent) or not self.config.obey_robots
        return [Found(url, origin(url), 0, kind=SITEMAP) for url in [*rules.sitemaps(), *([usual] if allowed else [])]]

    def _may_read(self, url: str, near: str) -> bool:
        if host(url) != host(near) or len(url) > self.config.max_url_length:
            return False
        return not self.config.obey_robots or self._rules_of_known(origin(url)).allowed(url, self.config.user_agent)

    def _rules_of_known(self, key: str) -> RobotRules:
        row = self._conn.execute("SELECT robots_state FROM hosts WHERE origin = %s", [key]).fetchone()
        return self._rules_of(key) if row and row["robots_state"] == READY else RobotRules()

    def sitemap_answered(self, request: Request, status: int | None, body: bytes, truncated: bool,
                         error_kind: str | None, error_message: str | None, location: str | None,
                         now: float) -> None:  # fmt: skip
        """Queue, for every worker, the pages a sitemap lists and the sitemaps it lists on its host, and record
        it (crawler.engine.sitemap_answer decides which)."""
        answer = answer_sitemap(request, status, body, truncated, error_kind, error_message, location, self.config,
                                self._may_read, self._in_scope)  # fmt: skip
        found = [
            Found(url, origin(url), 0, hops, kind=SITEMAP, nesting=nesting) for url, nesting, hops in answer.sitemaps
        ]
        found += [Found(entry.url, origin(entry.url), SITEMAP_DEPTH, lastmod=entry.lastmod) for entry in answer.pages]
        self._finish(request, SITEMAP, answer.row, None, found)

    def stored_links(self, url: str) -> list[tuple[str, bool]]:
        """None: a shared crawl is never a refresh, so no page is found unchanged."""
        return []

    # -- the end, the heartbeat, a stop ----------------------------------------------------------------

    def exhausted(self) -> bool:
        """Nothing is queued that may still start (budget and caps considered) and nothing is leased, by any
        worker; nothing is held here either."""
        self._flush()
        if self._ready or self._refused or self._later or self._leases:
            return False
        with self._timed():
            if self.config.max_pages_per_host:  # what a host's cap keeps out is capped, not queued
                self._retrying(lambda: self._conn.execute(
                    f"UPDATE urls SET state = '{CAPPED}' WHERE state = '{QUEUED}' AND kind = '{PAGE}' AND fetches = 0 "
                    "AND origin IN (SELECT origin FROM hosts WHERE started >= %s)",
                    [self.config.max_pages_per_host],
                ))  # fmt: skip
            busy = unfinished(self._conn)
        self.limit_reached = self._scalar("SELECT started FROM crawl") >= self.config.max_pages
        if busy:
            return False
        self._count(final=True)  # the summary's queued and capped, as the crawl ends
        return True

    def next_wake(self) -> float | None:
        """When this worker looks for work again, a held robots.txt request is due, or finished pages are to be
        recorded. A look waiting for a free slot wakes nothing (a result frees the slot), or the engine would
        spin."""
        times = [at for at, _ in self._later[:1]]
        if self._wake and self._free >= self._batch:  # a look is due then, with slots to fill
            times.append(self._wake)
        if self._pending:
            times.append(self._pending_since + FLUSH_SECONDS)
        return min(times, default=None)

    def tick(self) -> None:
        """The heartbeat (which keeps this worker's leases), and a look for lost workers to reclaim."""
        now = time.monotonic()
        if self._pending and now - self._pending_since >= FLUSH_SECONDS:
            self._flush()
        if now - self._last_beat >= self._beat_every:
            self._last_beat = now
            with self._timed():
                self.heartbeat()
                self._retrying(self._reclaim)
        if now - self._last_count >= STATUS_SECONDS:
            self._count()

    def heartbeat(self) -> None:
        """Tell the cluster this worker is alive for another lease time. `FrontierLost` if it is too late: the
        others declared it lost (its heartbeat stopped for longer than its lease: the process was stopped, or
        the machine paused), or the crawl it works on was replaced by a new one."""
        row = self._conn.execute(
            "UPDATE workers w SET alive_until = now() + make_interval(secs => %s) "
            f"WHERE w.id = %s AND w.status = '{RUNNING}' "
            "RETURNING w.crawl_created = (SELECT created_at FROM crawl WHERE id = 1) AS same",
            [self._lease_seconds, self._me],
        ).fetchone()
        if row is None:
            raise FrontierLost(f"worker {self._me} missed its heartbeat for longer than its lease "
                               f"({self._lease_seconds:g} s, --lease-seconds) and was declared lost: the others "
                               "took what it held; start a worker again to go on")  # fmt: skip
        if not row["same"]:
            raise FrontierLost("the crawl this worker worked on was replaced by a new one (crawl --restart); "
                               "start a worker again to work on the new one")  # fmt: skip

    def _reclaim(self) -> None:
        with self._conn.transaction():
            freed = self._conn.execute(RECLAIM).fetchall()
            if freed:
                self._conn.execute(
                    "UPDATE hosts SET in_flight = in_flight - f.n FROM unnest(%s::text[], %s::int[]) AS f(origin, n) "
                    "WHERE hosts.origin = f.origin",
                    [[row["origin"] for row in freed], [row["n"] for row in freed]],
                )
            self._conn.execute(
                f"UPDATE hosts SET robots_state = '{WANTED}', robots_owner = NULL, in_flight = in_flight - 1 "
                f"WHERE robots_state = '{FETCHING}' "
                f"AND robots_owner IN (SELECT id FROM workers WHERE status <> '{RUNNING}')"
            )
        if freed:
            self._wake = 0.0

    def stopping(self) -> bool:
        """A stop was asked for: record what is finished, then hand every lease back at once; what is in
        flight is abandoned."""
        self._flush()
        self._ready.clear()
        self._later.clear()
        self._leases.clear()

        def work() -> None:
            with self._conn.transaction():
                freed = self._conn.execute(
                    f"UPDATE urls SET state = '{QUEUED}', owner = NULL WHERE state = '{LEASED}' AND owner = %s "
                    "RETURNING origin",
                    [self._me],
                ).fetchall()
                counts: dict[str, int] = {}
                for row in freed:
                    counts[row["origin"]] = counts.get(row["origin"], 0) + 1
                self._conn.execute(
                    "UPDATE hosts SET in_flight = in_flight - f.n FROM unnest(%s::text[], %s::int[]) AS f(origin, n) "
                    "WHERE hosts.origin = f.origin",
                    [sorted(counts), [counts[key] for key in sorted(counts)]],
                )
                self._conn.execute(
                    f"UPDATE hosts SET robots_state = '{WANTED}', robots_owner = NULL, in_flight = in_flight - 1 "
                    f"WHERE robots_state = '{FETCHING}' AND robots_owner = %s",
                    [self._me],
                )

        with self._timed():
            self._retrying(work)
        return True

    def flush(self) -> None:
        """Record every finished page."""
        self._flush()
