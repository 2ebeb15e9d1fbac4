"""`crawler pull`: the shared crawl's results, written into a SQLite crawl database that every read command reads.

Each result is handed to the SQLite writer (`PageStore.commit`) as the crawl that fetched it would have: its
row, its links, the redirect chain it ended. Each worker becomes one run, tagged on the pages it fetched; the
workers of one crawl of the PostgreSQL database are one pass. A pull takes what is committed up to a horizon,
and the file remembers that horizon and which run each worker is (tables `pulled` and `pulled_workers`), so
the next pull adds only what came after and updates the runs of workers that were still running.

The horizon is read under a SHARE lock on `results`, which waits for every transaction that is inserting a
result and holds new ones back for that instant: every sequence number at or below it then belongs to a
result that is committed, or to a transaction that rolled back for good. Without the lock a result committed
late under a lower number than one already pulled would be skipped for ever.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
import sqlite_utils

from crawler.cluster.schema import LEASED, LOST, PAGE, QUEUED, RUNNING, ClusterError, connect, read_crawl
from crawler.cluster.schema import redacted as redacted_url
from crawler.cluster.schema import unfinished as crawl_unfinished
from crawler.cluster.worker import MACHINE_SETTINGS
from crawler.engine.config import SETTINGS, CrawlConfig
from storage import KILLED, NotOurs, Owned, PageStore, check_ours
from storage import read_crawl as read_sqlite_crawl
from storage.run_record import close_run, now
from storage.schema import PAGES_COLUMNS
from storage.writer import create_link_index

PULL = "pull"  # the crawl record's made_by: a database written by `crawler pull`
CHUNK = 1000  # results read from PostgreSQL, and written to SQLite in one transaction, at a time
LOCK_TIMEOUT = "30s"  # how long the horizon waits for transactions inserting results
RUN_FIGURES = ("elapsed_s", "cpu_seconds", "peak_rss_mb", "parse_seconds", "store_seconds", "retries")
_PAGE_KEYS = frozenset(PAGES_COLUMNS) - {"run_id"}


@dataclass(slots=True)
class PullResult:
    """What a pull did, and where the shared crawl stands."""

    frontier: str  # its URL, the password hidden
    pages: int = 0  # page results written by this pull
    sitemaps: int = 0  # sitemap reads written by this pull
    workers: int = 0  # workers whose results this pull wrote
    new_runs: int = 0  # runs this pull added (one a worker)
    total_pages: int = 0  # rows of `pages` in the file now
    total_runs: int = 0
    pass_runs: list[int] = field(default_factory=list)  # the runs of the latest pass that fetched pages
    running: int = 0  # workers running now
    queued: int = 0  # pages of the shared crawl queued or in flight
    unfinished: bool = False  # pages are left to crawl (the page budget not spent)
    waiting: int = 0  # page results committed since the horizon: what a pull now would add


def _iso(moment: datetime | None) -> str | None:
    """A PostgreSQL timestamp as the crawl database writes every time: UTC, ISO 8601, milliseconds."""
    return moment.astimezone(UTC).isoformat(timespec="milliseconds") if moment is not None else None


def _instant(moment: datetime) -> str:
    """A PostgreSQL timestamp to the microsecond, in UTC: a crawl's or worker's identity, whatever the session's
    time zone."""
    return moment.astimezone(UTC).isoformat()


@dataclass(slots=True)
class Earlier:
    """What a file says of the pulls into it: the last result in (`seq`), the crawl it holds, and which run of
    the file each worker is (worker -> its `pulled_workers` row)."""

    seq: int = 0
    crawl_created: str | None = None
    workers: dict[int, dict[str, Any]] = field(default_factory=dict)

    @classmethod
    def of(cls, db: sqlite3.Connection) -> Earlier:
        """As `db` records it (nothing, before the first pull)."""
        tables = {name for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        if not {"pulled", "pulled_workers"} <= tables:
            return cls()
        mark = db.execute("SELECT seq, crawl_created FROM pulled WHERE id = 1").fetchone()
        cursor = db.execute("SELECT worker, run_id, started_at, crawl_created, status FROM pulled_workers")
        names = [column[0] for column in cursor.description]
        workers = {row[0]: dict(zip(names, row, strict=True)) for row in cursor}
        return cls(mark[0], mark[1], workers) if mark else cls(workers=workers)

    def check_source(self, url: str, path: str | Path, horizon: int, workers: list[dict[str, Any]]) -> None:
        """`ClusterError` if the file was pulled from another PostgreSQL database (or one made anew since): it
        is past the results there, or knows a worker that is not there."""
        started = {worker["id"]: _iso(worker["started_at"]) for worker in workers}
        if self.seq > horizon or any(started.get(id_) != row["started_at"] for id_, row in self.workers.items()):
            raise ClusterError(f"{path} holds results pulled from another frontier than {redacted_url(url)}; "
                               "pull into another --db")  # fmt: skip


def check_target(path: str | Path) -> Earlier:
    """`ClusterError` unless `path` is new, or a crawl database that holds no crawl or one pulled before; what
    it says of earlier pulls. Reads only."""
    try:
        exists = check_ours(path)
    except NotOurs as exc:
        raise ClusterError(str(exc)) from None
    if not exists:
        return Earlier()
    record, owner = read_sqlite_crawl(path)
    if owner is not None:
        raise ClusterError(f"{path} is being crawled by {owner.describe()}; wait for it to end, or choose another --db")
    if record is not None and record.made_by != PULL:
        raise ClusterError(f"{path} holds a crawl made by `crawler {record.made_by or 'crawl'}`; pull into another "
                           "--db (a pull writes the shared crawl's own record)")  # fmt: skip
    with closing(sqlite3.connect(f"{Path(path).resolve().as_uri()}?mode=ro", uri=True)) as db:
        return Earlier.of(db)


@contextmanager
def _frontier_errors(url: str) -> Iterator[None]:
    """PostgreSQL failing in the middle of a pull, as a `ClusterError`."""
    try:
        yield
    except psycopg.errors.LockNotAvailable:
        raise ClusterError(f"{redacted_url(url)}: a worker held the results table for over {LOCK_TIMEOUT}; "
                           "try again") from None  # fmt: skip
    except psycopg.errors.InsufficientPrivilege as exc:
        reason = str(exc).strip()
        raise ClusterError(f"{redacted_url(url)}: a pull locks the results table for an instant, and this role "
                           f"may not ({reason}); pull as the role that created the crawl") from None  # fmt: skip
    except psycopg.Error as exc:
        reason = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
        raise ClusterError(f"lost the frontier {redacted_url(url)}: {reason}") from None


def _horizon(conn: psycopg.Connection[dict[str, Any]]) -> int:
    """The last sequence number below which every result is committed or gone for good (see the module)."""
    with conn.transaction():
        conn.execute(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'")
        conn.execute("LOCK TABLE results IN SHARE MODE")
        row = conn.execute("SELECT coalesce(max(seq), 0) AS seq FROM results").fetchone()
    return int(row["seq"]) if row else 0


def _ensure_tables(db: sqlite_utils.Database) -> None:
    db.table("pulled").create(
        {"id": int, "frontier": str, "crawl_created": str, "seq": int, "pulled_at": str},
        pk="id", not_null={"seq"}, if_not_exists=True,
    )  # fmt: skip
    db.table("pulled_workers").create(
        {"worker": int, "run_id": int, "started_at": str, "crawl_created": str, "status": str},
        pk="worker", not_null={"run_id", "started_at", "crawl_created", "status"}, if_not_exists=True,
    )  # fmt: skip


def _run_fields(worker: dict[str, Any], clock: datetime) -> dict[str, Any]:
    """A worker's status, end and measures, for its run's row. A worker gone silent past its lease is taken
    for dead (the next worker to look will declare it lost); one still running is measured up to now."""
    status, ended = worker["status"], worker["ended_at"]
    if status == RUNNING and worker["alive_until"] < clock:
        status, ended = LOST, worker["alive_until"]
    figures = worker["figures"] or {}
    fields: dict[str, Any] = {name: figures.get(name) for name in RUN_FIGURES}
    if fields["elapsed_s"] is None:
        fields["elapsed_s"] = ((ended or clock) - worker["started_at"]).total_seconds()
    status = {LOST: KILLED}.get(status, status)
    return {"status": status, "ended_at": _iso(ended) if status != RUNNING else None, **fields}


class _Pull:
    """One pull: the PostgreSQL connection, the SQLite store, and the worker -> run map."""

    def __init__(self, url: str, conn: psycopg.Connection[dict[str, Any]], store: PageStore,
                 result: PullResult) -> None:  # fmt: skip
        self.url, self.conn, self.store, self.db, self.result = url, conn, store, store.db, result
        _ensure_tables(self.db)
        earlier = Earlier.of(self.db.conn)  # again, now that this pull owns the file
        self.earlier = earlier
        self.mark, self.crawl_created, self.known = earlier.seq, earlier.crawl_created, earlier.workers
        self.crawl_settings: dict[str, Any] = {}
        self.seeds: list[str] = []

    def record_crawl(self, workers: list[dict[str, Any]]) -> None:
        """The crawl record of the file: the shared crawl's seeds and settings, with the machine settings of
        its latest worker (or the defaults, before any)."""
        crawl = read_crawl(self.conn)
        assert crawl is not None
        row = self.conn.execute("SELECT created_at FROM crawl WHERE id = 1").fetchone()
        assert row is not None
        created = _instant(row["created_at"])
        mine = [worker for worker in workers if worker["current"]]
        machine = {name: mine[-1][name] for name in MACHINE_SETTINGS} if mine else {}
        settings = {**CrawlConfig().settings(), **{k: v for k, v in crawl.settings.items() if k in SETTINGS}, **machine}
        self.store.save_crawl(crawl.seeds, settings, made_by=PULL if created != self.crawl_created else None)
        self.crawl_created = created
        self.crawl_settings, self.seeds = settings, crawl.seeds

    def add_runs(self, workers: list[dict[str, Any]]) -> int:
        """A run for each worker not seen before, in the pass of its crawl (a new pass for a new crawl)."""
        added = 0
        for worker in workers:
            if worker["id"] in self.known:
                continue
            crawl_created = _instant(worker["crawl_created"])
            same = [row["run_id"] for row in self.known.values() if row["crawl_created"] == crawl_created]
            if same:
                number = self.db.execute("SELECT pass FROM runs WHERE id = ?", [same[0]]).fetchone()[0]
            else:
                number = (self.db.execute("SELECT max(pass) FROM runs").fetchone()[0] or 0) + 1
            machine = {name: worker[name] for name in MACHINE_SETTINGS}
            # A worker of an earlier crawl, first pulled now: that crawl's settings and seeds are gone.
            settings = {**self.crawl_settings, **machine} if worker["current"] else machine
            row = {
                "started_at": _iso(worker["started_at"]), "status": RUNNING, **machine,
                "per_host": settings.get("per_host", CrawlConfig().per_host),
                "seeds": json.dumps(self.seeds if worker["current"] else []), "settings": json.dumps(settings),
                "overrides": "{}", "pass": number, "refresh": 0,
            }  # fmt: skip
            run_id: int = self.db.table("runs").insert(row).last_pk  # type: ignore[assignment]
            known = {"worker": worker["id"], "run_id": run_id, "started_at": row["started_at"],
                     "crawl_created": crawl_created, "status": RUNNING}  # fmt: skip
            self.db.table("pulled_workers").insert(known)
            self.known[worker["id"]] = known
            added += 1
        return added

    def write(self, results: list[dict[str, Any]], touched: set[int]) -> None:
        """Hand a chunk of results to the writer, in their commit order, each tagged with its worker's run."""
        for item in results:
            self.store.run_id = self.known[item["worker"]]["run_id"]
            touched.add(item["worker"])
            if item["kind"] != PAGE:
                self.store.record_sitemap(item["row"])
                self.result.sitemaps += 1
                continue
            row = {key: value for key, value in item["row"].items() if key in _PAGE_KEYS}
            links = None if item["links"] is None else [(target, bool(follow)) for target, follow in item["links"]]
            self.store.commit(row, links, [], list(item["redirected_from"]))
            if item["redirected_from"]:
                # The writer points the chain's fetches at the page under the run it holds when it writes.
                self.store.flush()
            self.result.pages += 1
        self.store.flush()

    def close_runs(self, workers: list[dict[str, Any]], touched: set[int], clock: datetime) -> None:
        """Status, end, measures and page figures of the runs of workers that were running or wrote pages."""
        for worker in workers:
            known = self.known[worker["id"]]
            if worker["id"] not in touched and known["status"] != RUNNING and worker["status"] == known["status"]:
                continue
            close_run(self.db, known["run_id"], _run_fields(worker, clock))
            self.db.table("pulled_workers").update(worker["id"], {"status": worker["status"]})
            known["status"] = worker["status"]

    def set_mark(self, seq: int) -> None:
        """Record that every result up to `seq` is in the file."""
        self.db.table("pulled").upsert(
            {"id": 1, "frontier": redacted_url(self.url), "crawl_created": self.crawl_created, "seq": seq,
             "pulled_at": now()}, pk="id",
        )  # fmt: skip
        self.mark = seq

    def tally(self, touched: set[int]) -> None:
        """What the file holds now, into the result: its pages and runs, and the runs of the latest pass."""
        self.result.workers = len(touched)
        self.result.total_pages = self.db.execute("SELECT count(*) FROM pages").fetchone()[0]
        self.result.total_runs = self.db.execute("SELECT count(*) FROM runs").fetchone()[0]
        latest = [row["run_id"] for row in self.known.values() if row["crawl_created"] == self.crawl_created]
        found = self.db.execute(f"SELECT id FROM runs WHERE pages > 0 AND id IN ({', '.join('?' * len(latest))}) "
                                "ORDER BY id", latest)  # fmt: skip
        self.result.pass_runs = [run_id for (run_id,) in found]


def _workers(conn: psycopg.Connection[dict[str, Any]]) -> tuple[list[dict[str, Any]], datetime]:
    """Every worker (whether it worked on the crawl the database holds now: `current`), and the database's clock."""
    rows = conn.execute(
        "SELECT w.*, w.crawl_created = c.created_at AS current FROM workers w, crawl c WHERE c.id = 1 ORDER BY w.id"
    ).fetchall()
    clock = conn.execute("SELECT now() AS clock").fetchone()
    assert clock is not None
    return rows, clock["clock"]


def _abandon(store: PageStore) -> None:
    """Close the file after a failure without writing what the store still buffers: that chunk was rolled back
    with its mark, and the next pull writes it again."""
    try:
        create_link_index(store.db)
    finally:
        store.release()
        store.db.close()


def _count(conn: psycopg.Connection[dict[str, Any]], sql: str, params: Any = None) -> int:
    row = conn.execute(sql, params).fetchone()
    return int(row["n"]) if row else 0


def _copy(job: _Pull, horizon: int, tell: Callable[[str], None] | None) -> set[int]:
    """Write the results after the file's mark up to `horizon`, a chunk (and the mark past it) a transaction;
    returns the workers whose results were written."""
    conn, store = job.conn, job.store
    total = _count(conn, "SELECT count(*) AS n FROM results WHERE seq > %s AND seq <= %s", [job.mark, horizon])
    if tell is not None and total > CHUNK:
        tell(f"Pulling {total:,} results from {job.result.frontier} ...")
    touched: set[int] = set()
    while job.mark < horizon:
        chunk = conn.execute(
            "SELECT seq, worker, kind, row, links, redirected_from FROM results WHERE seq > %s AND seq <= %s "
            "ORDER BY seq LIMIT %s",
            [job.mark, horizon, CHUNK],
        ).fetchall()
        if not chunk:  # results are never deleted; should someone have, the mark moves past them
            break
        with store.db.atomic():  # the chunk and the mark that says it is in: together
            job.write(chunk, touched)
            job.set_mark(chunk[-1]["seq"] if len(chunk) == CHUNK else horizon)
    return touched


def _standing(conn: psycopg.Connection[dict[str, Any]], result: PullResult, horizon: int,
              workers: list[dict[str, Any]], clock: datetime) -> None:  # fmt: skip
    """Where the shared crawl stands: workers running, pages queued, results committed since the horizon."""
    result.running = sum(worker["status"] == RUNNING and worker["alive_until"] >= clock for worker in workers)
    result.queued = _count(
        conn, f"SELECT count(*) AS n FROM urls WHERE kind = '{PAGE}' AND state IN ('{QUEUED}', '{LEASED}')"
    )
    result.unfinished = crawl_unfinished(conn)
    result.waiting = _count(conn, f"SELECT count(*) AS n FROM results WHERE seq > %s AND kind = '{PAGE}'", [horizon])


def pull(url: str, path: str | Path, tell: Callable[[str], None] | None = None) -> PullResult:
    """Write what the shared crawl at `url` committed since the last pull into the crawl database at `path`
    (a new file, or one pulled from the same frontier before). `tell` hears of a long pull as it starts.
    `ClusterError` (worded for the user) if the frontier cannot be reached or holds no crawl, or the file
    cannot take it; `sqlite3.Error` if the file cannot be written."""
    earlier = check_target(path)
    result = PullResult(redacted_url(url))
    with connect(url) as conn, _frontier_errors(url):
        if read_crawl(conn) is None:
            raise ClusterError(f"{redacted_url(url)} holds no shared crawl: nothing to pull")
        horizon = _horizon(conn)
        workers, clock = _workers(conn)
        earlier.check_source(url, path, horizon, workers)  # before the file is touched
        store = PageStore(path, batch_size=CHUNK + 1)  # written a chunk at a time, by `_copy`
        try:
            try:
                store.acquire()
            except Owned as exc:
                raise ClusterError(str(exc)) from None
            job = _Pull(url, conn, store, result)
            job.earlier.check_source(url, path, horizon, workers)
            with store.db.atomic():
                job.record_crawl(workers)
                result.new_runs = job.add_runs(workers)
            touched = _copy(job, horizon, tell)
            with store.db.atomic():
                job.close_runs(workers, touched, clock)
                job.set_mark(horizon)
            job.tally(touched)
        except BaseException:
            _abandon(store)
            raise
        store.close()
        _standing(conn, result, horizon, workers, clock)
    return result
