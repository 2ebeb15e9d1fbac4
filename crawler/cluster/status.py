"""`crawler status`: what a shared crawl is doing, read from its PostgreSQL database in one read-only snapshot.

Every age and rate is on the database's clock (`now()`, the snapshot's start), never this machine's. Nothing is
written: a worker whose heartbeat stopped shows as `heartbeat_missed` until a worker declares it lost.

What it costs on a frontier of a million URLs and 400,000 results (measured: 0.3 s in all): `urls` is read
once, counted by state, kind, owner and retry (0.2 s, the count each worker makes every second; the partial
indexes hold the queued and leased rows only, not the done ones counted for each worker), which also tells
whether anything queued may still start (under --max-pages-per-host, each origin under its cap is looked up
in `urls_queued`); `hosts` and `workers` are a row an origin and a row a run; of `results`, only each
worker's last minute (index `results_worker`) and the failed rows (index `results_errors`) are read.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

import psycopg

from crawler.cluster.schema import (
    CAPPED,
    DONE,
    FETCHING,
    LEASED,
    PAGE,
    QUEUED,
    READY,
    ROBOTS,
    RUNNING,
    SITEMAP,
    ClusterError,
    connect,
    read_crawl,
    redacted,
    unfinished,
)
from crawler.engine.config import CrawlConfig
from crawler.engine.metrics import per_second, share

RATE_WINDOW = 60  # seconds: a live worker's recent rate is over this long (or its life, if shorter)

URLS = "SELECT state, kind, owner, attempt > 1 AS retry, count(*) AS n FROM urls GROUP BY state, kind, owner, retry"

HOSTS = f"""
SELECT count(*) AS origins,
       count(*) FILTER (WHERE robots_state <> '{READY}') AS robots_pending,
       count(*) FILTER (WHERE paused_until > now()) AS paused,
       count(*) FILTER (WHERE in_flight > 0) AS busy,
       coalesce(sum(in_flight), 0) AS in_flight
FROM hosts
"""

# The robots.txt files being fetched, by worker: leased on their origin's row, not in urls.
ROBOTS_LEASES = f"SELECT robots_owner AS owner, count(*) AS n FROM hosts WHERE robots_state = '{FETCHING}' GROUP BY 1"

# The crawl's workers (a database keeps the runs of the crawls it held before), with their last minute's pages.
WORKERS = f"""
SELECT w.id, w.machine, w.pid, w.backend, w.parser, w.concurrency, w.lease_seconds, w.status, w.started_at,
       w.ended_at,
       extract(epoch FROM coalesce(w.ended_at, now()) - w.started_at)::float8 AS elapsed,
       extract(epoch FROM now() - w.alive_until)::float8 + w.lease_seconds AS since_beat,
       w.alive_until < now() AS missed,
       extract(epoch FROM least(make_interval(secs => {RATE_WINDOW}), now() - w.started_at))::float8 AS window,
       (SELECT count(*) FROM results r
        WHERE r.worker = w.id AND r.done_at > now() - make_interval(secs => {RATE_WINDOW})
          AND r.kind = '{PAGE}') AS recent
FROM workers w
WHERE w.crawl_created = (SELECT created_at FROM crawl WHERE id = 1)
ORDER BY w.id
"""

ERRORS = """
SELECT kind, row->>'error_kind' AS error, count(*) AS n FROM results
WHERE worker = ANY(%s) AND row->>'error_kind' IS NOT NULL
GROUP BY kind, error
ORDER BY n DESC, error
"""


@dataclass(frozen=True, slots=True)
class CrawlFacts:
    """The crawl record: its seeds, when it was made, and the settings that shape its progress."""

    seeds: int
    created_at: str  # ISO 8601, UTC
    age_s: float
    depth: int
    max_pages: int
    started: int  # pages started: what --max-pages counts
    budget_used: float  # started as a share of max_pages
    max_pages_per_host: int  # 0: no cap
    per_host: int
    delay: float


@dataclass(frozen=True, slots=True)
class QueueFacts:
    """The frontier's URLs by state: pages, then sitemaps."""

    queued: int
    retries_queued: int  # of the queued: pages that failed and wait to be tried again
    leased: int
    done: int
    capped: int  # pages not fetched: over --max-pages-per-host
    sitemaps_queued: int
    sitemaps_leased: int
    sitemaps_done: int


@dataclass(frozen=True, slots=True)
class HostFacts:
    """The crawl's origins, now."""

    origins: int
    robots_pending: int  # robots.txt not yet stored: wanted, or being fetched
    paused: int  # held back by a Retry-After
    busy: int  # with requests in flight
    in_flight: int  # requests in flight, on all origins


@dataclass(frozen=True, slots=True)
class WorkerFacts:
    """One worker's run on this crawl."""

    id: int
    machine: str
    pid: int
    backend: str
    parser: str
    concurrency: int
    lease_seconds: float
    status: str  # running, finished, interrupted, limit, failed, or lost (its heartbeat stopped)
    started_at: str
    ended_at: str | None  # a lost worker's: when its last heartbeat's lease ran out
    pages: int  # pages it completed
    sitemaps: int  # sitemaps it completed
    leases: int  # what it holds now: pages, sitemaps and robots.txt files
    pages_last_minute: int
    pages_per_second_recent: float  # over the last minute, or its life if shorter (0 once it has ended)
    pages_per_second: float  # over its life
    since_heartbeat_s: float | None  # a running worker's; None once it has ended
    heartbeat_missed: bool  # running, yet its lease time has passed since its last heartbeat


@dataclass(frozen=True, slots=True)
class ClusterStatus:
    """A shared crawl as one snapshot of its database shows it."""

    frontier: str  # the database's URL, its password hidden
    now: str  # the database's clock, ISO 8601, UTC
    finished: bool  # nothing queued that may start, nothing leased, every robots.txt stored
    crawl: CrawlFacts
    queue: QueueFacts
    hosts: HostFacts
    workers: list[WorkerFacts]  # every run on this crawl, oldest first
    ended: dict[str, int]  # workers that ended, by status
    errors: dict[str, int]  # failed pages by error kind, most first
    sitemap_errors: dict[str, int]  # failed sitemaps by error kind


def _utc(moment: datetime | None) -> str | None:
    return None if moment is None else moment.astimezone(UTC).isoformat(timespec="seconds")


def read_status(url: str) -> ClusterStatus:
    """The status of the crawl in the frontier at `url`. `ClusterError` if the database cannot be reached or
    holds no crawl."""
    with connect(url) as conn:
        conn.read_only = True
        conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ  # one snapshot, one now()
        with conn.transaction():
            return _snapshot(conn, url)


def _snapshot(conn: psycopg.Connection[dict[str, Any]], url: str) -> ClusterStatus:
    record = read_crawl(conn)
    if record is None:
        raise ClusterError(f"{redacted(url)} holds no crawl")
    row = conn.execute(
        "SELECT now() AS now, created_at, started, extract(epoch FROM now() - created_at)::float8 AS age "
        "FROM crawl WHERE id = 1"
    ).fetchone()
    assert row is not None
    settings = {**asdict(CrawlConfig()), **record.settings}  # a setting the record lacks has its default
    crawl = CrawlFacts(
        seeds=len(record.seeds), created_at=_utc(row["created_at"]) or "", age_s=row["age"],
        depth=int(settings["depth"]), max_pages=int(settings["max_pages"]), started=int(row["started"]),
        budget_used=share(int(row["started"]), int(settings["max_pages"])) or 0.0,
        max_pages_per_host=int(settings["max_pages_per_host"]), per_host=int(settings["per_host"]),
        delay=float(settings["delay"]),
    )  # fmt: skip

    counts: dict[tuple[str, str], int] = {}
    by_owner: dict[tuple[str, str, int], int] = {}
    retries = 0
    for item in conn.execute(URLS):
        key = (item["state"], item["kind"])
        counts[key] = counts.get(key, 0) + item["n"]
        if item["owner"] is not None:
            by_owner[(*key, item["owner"])] = by_owner.get((*key, item["owner"]), 0) + item["n"]
        if key == (QUEUED, PAGE) and item["retry"]:
            retries += item["n"]
    queue = QueueFacts(
        queued=counts.get((QUEUED, PAGE), 0), retries_queued=retries, leased=counts.get((LEASED, PAGE), 0),
        done=counts.get((DONE, PAGE), 0),
        capped=counts.get((CAPPED, PAGE), 0), sitemaps_queued=counts.get((QUEUED, SITEMAP), 0),
        sitemaps_leased=counts.get((LEASED, SITEMAP), 0), sitemaps_done=counts.get((DONE, SITEMAP), 0),
    )  # fmt: skip

    hosts_row = conn.execute(HOSTS).fetchone()
    assert hosts_row is not None
    hosts = HostFacts(**{name: int(value) for name, value in hosts_row.items()})
    for item in conn.execute(ROBOTS_LEASES):
        by_owner[(LEASED, ROBOTS, item["owner"])] = item["n"]

    workers = [_worker(item, by_owner) for item in conn.execute(WORKERS)]
    ended: dict[str, int] = {}
    for worker in workers:
        if worker.status != RUNNING:
            ended[worker.status] = ended.get(worker.status, 0) + 1

    errors: dict[str, int] = {}
    sitemap_errors: dict[str, int] = {}
    for item in conn.execute(ERRORS, [[worker.id for worker in workers]]):
        (errors if item["kind"] == PAGE else sitemap_errors)[item["error"]] = item["n"]

    return ClusterStatus(redacted(url), _utc(row["now"]) or "", not unfinished(conn), crawl, queue,
                         hosts, workers, ended, errors, sitemap_errors)  # fmt: skip


def _worker(row: dict[str, Any], by_owner: dict[tuple[str, str, int], int]) -> WorkerFacts:
    running = row["status"] == RUNNING
    pages = by_owner.get((DONE, PAGE, row["id"]), 0)
    leases = sum(by_owner.get((LEASED, kind, row["id"]), 0) for kind in (PAGE, SITEMAP, ROBOTS))
    return WorkerFacts(
        id=row["id"], machine=row["machine"], pid=row["pid"], backend=row["backend"], parser=row["parser"],
        concurrency=row["concurrency"], lease_seconds=row["lease_seconds"], status=row["status"],
        started_at=_utc(row["started_at"]) or "", ended_at=_utc(row["ended_at"]), pages=pages,
        sitemaps=by_owner.get((DONE, SITEMAP, row["id"]), 0), leases=leases, pages_last_minute=row["recent"],
        pages_per_second_recent=per_second(row["recent"], row["window"]) if running else 0.0,
        pages_per_second=per_second(pages, row["elapsed"]),
        since_heartbeat_s=max(0.0, row["since_beat"]) if running else None,
        heartbeat_missed=running and bool(row["missed"]),
    )  # fmt: skip
