"""A worker of a shared crawl: one run, on this machine, of the crawl recorded in PostgreSQL.

`start_crawl` records a new crawl (or finds the unfinished one it continues); `run_worker` works on it until
nothing is queued or leased anywhere, or a stop request, and records its run (status, figures) for `status`
and `pull`. What defines the crawl comes from its record; the worker brings only its machine's own settings:
backend, parser, concurrency and lease time.
"""

from __future__ import annotations

import json
import os
import socket
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields, replace
from typing import Any

import psycopg

from crawler.cluster.frontier import SharedFrontier
from crawler.cluster.schema import (
    PAGE,
    RUNNING,
    SITEMAP,
    ClusterError,
    FrontierLost,
    SharedCrawl,
    connect,
    create_crawl,
    create_tables,
    first_line,
    read_crawl,
    redacted,
    unfinished,
)
from crawler.engine.config import CrawlConfig
from crawler.engine.job import stop_signals
from crawler.engine.loop import Engine
from crawler.engine.metrics import ResourceMeter
from crawler.engine.summary import CrawlSummary, ProgressCallback
from crawler.engine.urls import canonical, origin
from fetchers import FetchSettings, get_fetcher
from parsers import get_parser
from storage import FAILED, FINISHED, INTERRUPTED, LIMIT

DEFAULT_LEASE_SECONDS = 30.0
# What a worker brings from its own machine; every other setting is the crawl's.
MACHINE_SETTINGS = ("backend", "parser", "concurrency")


@dataclass(frozen=True, slots=True)
class WorkerSettings:
    """A worker's own: its backend, parser, concurrency, and how long its leases outlive a missed heartbeat."""

    backend: str
    parser: str
    concurrency: int
    lease_seconds: float = DEFAULT_LEASE_SECONDS


def crawl_settings(settings: dict[str, Any]) -> dict[str, Any]:
    """The settings that define a crawl, for its record: all but the machine's own."""
    return {name: value for name, value in settings.items() if name not in MACHINE_SETTINGS}


def start_crawl(url: str, seeds: Sequence[str], settings: dict[str, Any], restart: bool,
                tell: Callable[[str], None]) -> None:  # fmt: skip
    """Record a crawl of `seeds` with `settings` in the frontier's database, unless it holds an unfinished one
    (then the seeds and settings must be those it has, and the caller joins it as a worker) and `restart` is
    not given. `ClusterError` if the database cannot be reached."""
    with connect(url) as conn:
        record = read_crawl(conn)
        if record is not None and not restart and unfinished(conn):
            wanted = crawl_settings(settings)
            differ = sorted(name for name, value in wanted.items() if record.settings.get(name) != value)
            if differ or sorted(seeds) != sorted(record.seeds):
                what = ", ".join("--" + name.replace("_", "-") for name in differ) or "its seeds"
                raise ClusterError(f"{redacted(url)} holds an unfinished crawl with other settings ({what}): join "
                                   "it with `crawler worker`, or add --restart to replace it")  # fmt: skip
            tell(f"Joining the unfinished crawl in {redacted(url)}.")
            return
        robots = bool(settings["obey_robots"])
        rows = [(seed, origin(seed), PAGE) for seed in seeds]
        if settings["sitemaps"] and not robots:  # no robots.txt to name them: /sitemap.xml of each seed site
            rows += [(canonical(f"{key}/sitemap.xml"), key, SITEMAP) for key in sorted({origin(s) for s in seeds})]
        create_crawl(conn, seeds, crawl_settings(settings), rows, robots)


@dataclass(slots=True)
class WorkerRun:
    """What a worker did: the crawl it worked on, its run's id and status, and the engine's summary."""

    crawl: SharedCrawl
    config: CrawlConfig
    worker: int
    status: str
    summary: CrawlSummary
    rejected: int = 0  # results not accepted: their lease had gone back to the queue
    retried: int = 0  # transactions retried after a deadlock or serialisation failure


def _config(crawl: SharedCrawl, own: WorkerSettings) -> CrawlConfig:
    names = {f.name for f in fields(CrawlConfig)}
    stored = {name: value for name, value in crawl.settings.items() if name in names and name != "db_path"}
    return replace(CrawlConfig(), **stored, backend=own.backend, parser=own.parser, concurrency=own.concurrency)


def _register(conn: psycopg.Connection[dict[str, Any]], own: WorkerSettings) -> int:
    row = conn.execute(
        "INSERT INTO workers (machine, pid, backend, parser, concurrency, lease_seconds, alive_until, crawl_created) "
        "SELECT %s, %s, %s, %s, %s, %s, now() + make_interval(secs => %s), created_at FROM crawl WHERE id = 1 "
        "RETURNING id",
        [socket.gethostname(), os.getpid(), own.backend, own.parser, own.concurrency, own.lease_seconds,
         own.lease_seconds],
    ).fetchone()  # fmt: skip
    assert row is not None
    return int(row["id"])


def run_worker(url: str, own: WorkerSettings, progress: ProgressCallback | None = None,
               notify: Callable[[str], None] | None = None) -> WorkerRun:  # fmt: skip
    """Work on the crawl in the frontier at `url` until it is finished (nothing queued or leased by anyone),
    its page budget is spent, or a stop request; record the run. `ClusterError` if the database cannot be
    reached or holds no crawl."""
    tell = notify or (lambda message: None)
    conn = connect(url)
    try:
        create_tables(conn)  # a database from an older release gains what is new
        # A commit does not wait for its WAL to reach the disk: a crash of the server (not of a worker) may undo
        # the last fraction of a second of transactions, each whole, so those pages are leased and fetched again;
        # nothing is lost or half-written. It halves the time of a page's two transactions (PostgreSQL's
        # documentation: "Asynchronous Commit").
        conn.execute("SET synchronous_commit = off")
        crawl = read_crawl(conn)
        if crawl is None:
            raise ClusterError(f"{redacted(url)} holds no crawl: start one with "
                               f"`crawler crawl SEEDS --frontier {redacted(url)}`")  # fmt: skip
        config = _config(crawl, own)
        worker = _register(conn, own)
        tell(f"Worker {worker} on {socket.gethostname()}: {own.backend} backend, concurrency {own.concurrency}.")
        settings = FetchSettings(concurrency=config.concurrency, timeout=config.timeout,
                                 connect_timeout=config.connect_timeout, user_agent=config.user_agent,
                                 max_size=config.max_size)  # fmt: skip
        meter = ResourceMeter()
        started = time.perf_counter()

        def measured(summary: CrawlSummary) -> None:
            meter.sample()
            if progress is not None:
                progress(summary)

        engine: Engine | None = None
        frontier: SharedFrontier | None = None
        status = FAILED
        try:
            with stop_signals() as stops:
                frontier = SharedFrontier(conn, config, crawl.seeds, worker, own.lease_seconds)
                fetcher = get_fetcher(config.backend)(settings)
                engine = Engine(config, fetcher, get_parser(config.parser), frontier, stops, measured, tell)
                try:
                    summary = engine.run()
                except psycopg.OperationalError as exc:
                    raise FrontierLost(
                        f"lost the frontier {redacted(url)}: {first_line(exc)}; what this worker held goes back to "
                        f"the queue {own.lease_seconds:g} s after its last heartbeat (--lease-seconds)"
                    ) from None
            status = INTERRUPTED if summary.interrupted else LIMIT if summary.limit_reached else FINISHED
        finally:
            meter.sample(force=True)
            figures = {
                "elapsed_s": engine.summary.elapsed if engine else time.perf_counter() - started,
                "cpu_seconds": meter.cpu_seconds,
                "peak_rss_mb": meter.peak_rss / 2**20,
                "parse_seconds": engine.summary.parse_seconds if engine else None,
                "store_seconds": frontier.store_seconds if frontier else None,
                "retries": engine.summary.retries if engine else None,
                "lost_leases": frontier.rejected if frontier else 0,
                "transactions_retried": frontier.retried if frontier else 0,
            }
            if not conn.closed and not conn.broken:
                conn.execute(
                    f"UPDATE workers SET status = %s, ended_at = now(), figures = %s WHERE id = %s "
                    f"AND status = '{RUNNING}'",
                    [status, json.dumps(figures), worker],
                )
        return WorkerRun(crawl, config, worker, status, summary, frontier.rejected, frontier.retried)
    finally:
        conn.close()
