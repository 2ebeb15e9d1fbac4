"""The crawl database's writer: the crawl record and its owner, the frontier, pages, links and runs, written
in one transaction per batch of whole pages (main thread only), so the file is consistent whenever the
process dies.

Over 400 lines on purpose: `PageStore` owns the one connection and the batch transaction that every write goes
through (a page, its links, its history and its done mark commit together), and splitting it would spread that
discipline over several modules. What stands on its own is elsewhere: the run record (run_record.py), the schema and
its migration (schema.py), the owner's lease (lease.py)."""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlite_utils

from storage import run_record
from storage.history import differs
from storage.lease import HEARTBEAT_SECONDS, Owned, Owner
from storage.schema import (
    CAPPED,
    CHANGED,
    DONE,
    FETCHES_COLUMNS,
    LINKS_TO_INDEX,
    NEW,
    QUEUED,
    UNCHANGED,
    create_schema,
)

DEFAULT_BATCH_SIZE = 200
DEFAULT_FLUSH_SECONDS = 1.0


@dataclass(frozen=True, slots=True)
class Known:
    """What the database knows of a page from an earlier pass: what a refresh asks the server about, and what
    an unchanged page's row carries over."""

    status: int | None
    content_type: str | None
    size: int | None
    truncated: int | None
    title: str | None
    link_count: int | None
    unusable_links: int | None
    content_hash: str | None
    etag: str | None
    last_modified: str | None
    error_kind: str | None  # a page the parser choked on stays so
    error_message: str | None
    fetched_at: str | None  # when it was last fetched: a sitemap's older lastmod says it has not changed since


_KNOWN_COLUMNS = ", ".join(f"p.{name}" for name in Known.__slots__)


@dataclass(frozen=True, slots=True)
class FrontierEntry:
    """A URL to crawl, as the frontier table holds it."""

    url: str
    origin: str
    depth: int
    hops: int = 0
    via: str | None = None
    seq: int = 0  # assigned by the database
    known: Known | None = None  # loaded for a refresh, when the page was fetched before
    lastmod: str | None = None  # a sitemap's <lastmod> for it


def create_link_index(db: sqlite_utils.Database) -> None:
    """Index links by target, for "who links here" queries. A crawl drops it while it writes, because each
    page's links land in that index at scattered places and the cost per insert grows with the table."""
    db.table("links").create_index(["to_url"], index_name=LINKS_TO_INDEX, if_not_exists=True)


def _placeholders(count: int) -> str:
    return ", ".join("?" * count)


@dataclass(frozen=True, slots=True)
class CrawlRecord:
    """The crawl a database holds: its seeds and every setting, so that a resume continues it as it was."""

    seeds: list[str]
    settings: dict[str, Any]
    made_by: str
    created_at: str


def read_crawl(path: str | Path) -> tuple[CrawlRecord | None, Owner | None]:
    """The crawl record of the crawl database at `path` and its live owner, if any, read without writing."""
    conn = sqlite3.connect(f"{Path(path).resolve().as_uri()}?mode=ro", uri=True)
    try:
        if not conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'crawl'").fetchone():
            return None, None
        row = conn.execute(
            "SELECT seeds, settings, made_by, created_at, owner_pid, owner_host, owner_started, heartbeat_at "
            "FROM crawl WHERE id = 1"
        ).fetchone()
    finally:
        conn.close()
    if row is None:
        return None, None
    record = CrawlRecord(json.loads(row[0]), json.loads(row[1]), row[2], row[3]) if row[1] is not None else None
    owner = Owner(row[4], row[5], row[6], row[7]) if row[4] is not None else None
    return record, owner if owner is not None and owner.alive() else None


@dataclass(slots=True)
class _Page:
    """One finished request and everything it caused: written together, in one transaction."""

    row: dict[str, Any]
    links: list[tuple[str, bool]] | None  # (target, followed); None: the page is unchanged, its links are kept
    found: list[FrontierEntry]
    redirected_from: list[str]  # pages of a redirect chain that ended at this one
    unchanged_by: str | None  # for `fetches` alone: 304, lastmod, hash, or None


class PageStore:
    """The crawl database, written by the crawl's main thread only.

    A finished page is handed over whole (`commit`): its row, its links, the URLs it adds to the frontier and
    the redirect chain it ends. Pages are buffered and written in one transaction per batch (or per second),
    never split across two, so the file is consistent and complete whenever the process dies: a page is
    `done` in the frontier exactly when its row and its outlinks are there too.
    """

    def __init__(
        self,
        path: str | Path,
        batch_size: int = DEFAULT_BATCH_SIZE,
        flush_seconds: float = DEFAULT_FLUSH_SECONDS,
    ) -> None:
        self.path = str(path)
        self.db = sqlite_utils.Database(path)
        self.db.enable_wal()  # readers (crawler query/stats) can look while the crawl writes
        # In WAL mode, NORMAL survives a crash or kill -9 of the crawler (only a power cut may lose the last
        # transactions) and spares an fsync per commit.
        self.db.execute("PRAGMA synchronous = NORMAL")
        with self.db.atomic():  # a migration is whole or not at all
            create_schema(self.db)
        self.db.execute(f"DROP INDEX IF EXISTS {LINKS_TO_INDEX}")  # built again by close()
        self._batch_size = batch_size
        self._flush_seconds = flush_seconds
        self._pages: list[_Page] = []
        self._seeds: list[FrontierEntry] = []
        self._capped: list[str] = []
        self._sitemaps: list[dict[str, Any]] = []
        self._last_flush = time.monotonic()
        self._last_heartbeat = 0.0
        self._owner: Owner | None = None
        counts = dict(self.db.execute("SELECT state, count(*) FROM frontier GROUP BY state").fetchall())
        self.queued: int = counts.get(QUEUED, 0)  # kept current by flush()
        self.done: int = counts.get(DONE, 0)
        self.capped: int = counts.get(CAPPED, 0)
        self.write_seconds = 0.0  # time spent writing, for the benchmark's breakdown
        self.run_id: int | None = None  # set by start_run; written on every page row

    # -- the crawl record and its owner ---------------------------------------------------------------

    @contextmanager
    def _immediate(self) -> Iterator[sqlite3.Connection]:
        """A write transaction that holds SQLite's write lock from its first statement (no read-then-write
        race between two processes)."""
        conn = self.db.conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    def acquire(self) -> None:
        """Make this process the database's owner. `Owned` if a live crawl owns it; a dead owner's lease
        (kill -9, power cut) is taken over."""
        me = Owner.me()
        with self._immediate() as conn:
            row = conn.execute(
                "SELECT owner_pid, owner_host, owner_started, heartbeat_at FROM crawl WHERE id = 1"
            ).fetchone()
            if row is not None and row[0] is not None:
                owner = Owner(row[0], row[1], row[2], row[3])
                if owner.alive():
                    heartbeat = f", last heartbeat {owner.heartbeat_at}" if owner.host != me.host else ""
                    raise Owned(f"{self.path} is being crawled by {owner.describe()}{heartbeat}; "
                                "wait for it to end, or stop it first")  # fmt: skip
            conn.execute(
                "INSERT INTO crawl (id, owner_pid, owner_host, owner_started, heartbeat_at) VALUES (1, ?, ?, ?, ?) "
                "ON CONFLICT (id) DO UPDATE SET owner_pid = excluded.owner_pid, owner_host = excluded.owner_host, "
                "owner_started = excluded.owner_started, heartbeat_at = excluded.heartbeat_at",
                [me.pid, me.host, me.started, run_record.now()],
            )
        self._owner = me
        self._last_heartbeat = time.monotonic()

    def heartbeat(self) -> None:
        """Tell other processes the owner is alive, every `HEARTBEAT_SECONDS` at most."""
        if self._owner is not None and time.monotonic() - self._last_heartbeat >= HEARTBEAT_SECONDS:
            with self.db.atomic():
                self.db.execute("UPDATE crawl SET heartbeat_at = ? WHERE id = 1", [run_record.now()])
            self._last_heartbeat = time.monotonic()

    def release(self) -> None:
        """Give up ownership (when the crawl ends, however it ends)."""
        if self._owner is not None:
            with self.db.atomic():
                self.db.execute(
                    "UPDATE crawl SET owner_pid = NULL, owner_host = NULL, owner_started = NULL, heartbeat_at = NULL "
                    "WHERE id = 1 AND owner_pid = ?",
                    [self._owner.pid],
                )
            self._owner = None

    def crawl_record(self) -> CrawlRecord | None:
        """The crawl this database holds, or None: new, or written before crawls were recorded."""
        row = self.db.execute("SELECT seeds, settings, made_by, created_at FROM crawl WHERE id = 1").fetchone()
        if row is None or row[1] is None:
            return None
        return CrawlRecord(json.loads(row[0]), json.loads(row[1]), row[2], row[3])

    def legacy_settings(self) -> dict[str, Any] | None:
        """For a database written before crawls were recorded: the settings of its last run, if any."""
        row = self.db.execute(
            "SELECT settings FROM runs WHERE settings IS NOT NULL ORDER BY id DESC LIMIT 1"
        ).fetchone()
        return json.loads(row[0]) if row else None

    def save_crawl(self, seeds: Sequence[str], settings: dict[str, Any], made_by: str | None = None) -> None:
        """Record the crawl's seeds and settings (`made_by` only when a new crawl starts)."""
        with self.db.atomic():
            self.db.table("crawl").insert({"id": 1}, ignore=True)
            self.db.execute(
                "UPDATE crawl SET seeds = ?, settings = ? WHERE id = 1", [json.dumps(list(seeds)), json.dumps(settings)]
            )
            if made_by is not None:
                self.db.execute(
                    "UPDATE crawl SET made_by = ?, created_at = ? WHERE id = 1", [made_by, run_record.now()]
                )

    # -- the frontier ---------------------------------------------------------------------------------

    def add_seeds(self, entries: list[FrontierEntry]) -> None:
        """Queue seed URLs (those the frontier holds already are ignored), written at once."""
        self._seeds.extend(entries)
        self.flush()

    def add_found(self, entries: list[FrontierEntry]) -> set[str]:
        """Queue URLs found outside any page (a sitemap's), written at once; returns what `flush` returns."""
        self._seeds.extend(entries)
        return self.flush()

    def record_sitemap(self, row: dict[str, Any]) -> None:
        """Record a sitemap fetch of this run (written with the next batch); it was fetched now unless the row
        says when (a pull of a shared crawl's)."""
        self._sitemaps.append({"fetched_at": run_record.now(), **row, "run_id": self.run_id})

    def commit(
        self,
        row: dict[str, Any],
        links: list[tuple[str, bool]] | None,
        found: list[FrontierEntry],
        redirected_from: list[str],
    ) -> set[str]:
        """Hand over one finished page with everything it caused: its row (which marks its frontier entry
        done, and joins the history), its links (None keeps those stored: the page is unchanged), the URLs it
        adds to the frontier (those already there are ignored), and the pages of the redirect chain that ended
        at it. They are written together, in the same transaction. Returns what `flush` returns if the batch
        was written now, else nothing."""
        page_row = {**row, "run_id": self.run_id}
        self._pages.append(_Page(page_row, links, found, redirected_from, page_row.pop("unchanged_by", None)))
        if len(self._pages) >= self._batch_size:
            return self.flush()
        return set()

    def cap(self, url: str) -> None:
        """Mark a queued URL as skipped by the per-host cap (written with the next batch)."""
        self._capped.append(url)

    def uncap(self) -> int:
        """Queue again the URLs a per-host cap skipped (the cap was raised); returns how many."""
        self.flush()
        with self.db.atomic():
            count = self.db.execute(f"UPDATE frontier SET state = '{QUEUED}' WHERE state = '{CAPPED}'").rowcount
        self.queued += count
        self.capped -= count
        return count

    @property
    def pending(self) -> int:
        """Finished pages handed over but not written yet."""
        return len(self._pages)

    def flush_if_due(self) -> set[str]:
        """Write what is buffered if a flush interval has passed since the last write."""
        if time.monotonic() - self._last_flush >= self._flush_seconds:
            return self.flush()
        return set()

    def flush(self) -> set[str]:
        """Write everything buffered in one transaction; a page fetched again replaces its old row and links.
        Returns the origins that got new frontier entries (or may have: duplicates are ignored)."""
        origins: set[str] = set()
        if self._pages or self._seeds or self._capped or self._sitemaps:
            start = time.perf_counter()
            found = [entry for page in self._pages for entry in page.found] + self._seeds
            with self.db.atomic():
                conn = self.db.conn
                if self._pages:
                    urls = [page.row["url"] for page in self._pages]
                    self._write_history(conn, urls)
                    self.db.table("pages").insert_all([page.row for page in self._pages], pk="url", replace=True)
                    parsed = [page for page in self._pages if page.links is not None]
                    reparsed = [page.row["url"] for page in parsed]
                    conn.execute(f"DELETE FROM links WHERE from_url IN ({_placeholders(len(reparsed))})", reparsed)
                    conn.executemany(
                        "INSERT INTO links (from_url, to_url, follow) VALUES (?, ?, ?)",
                        [(page.row["url"], link, int(follow)) for page in parsed for link, follow in page.links or ()],
                    )
                    done = conn.execute(
                        f"UPDATE frontier SET state = '{DONE}' "
                        f"WHERE state = '{QUEUED}' AND url IN ({_placeholders(len(urls))})",
                        urls,
                    ).rowcount
                    self.queued -= done
                    self.done += done
                if found:
                    before = conn.total_changes
                    # INSERT OR IGNORE keeps a URL's first entry. The local frontier leaves out the URLs it
                    # handed over before (crawler.engine.local_frontier), so few repeats reach this far.
                    conn.executemany(
                        "INSERT OR IGNORE INTO frontier (url, origin, depth, hops, via, state, lastmod) "
                        f"VALUES (?, ?, ?, ?, ?, '{QUEUED}', ?)",
                        [(e.url, e.origin, e.depth, e.hops, e.via, e.lastmod) for e in found],
                    )
                    self.queued += conn.total_changes - before
                    conn.executemany(  # a URL queued already: a sitemap's lastmod for it still counts
                        f"UPDATE frontier SET lastmod = ? WHERE url = ? AND state = '{QUEUED}'",
                        [(e.lastmod, e.url) for e in found if e.lastmod is not None],
                    )
                    origins = {entry.origin for entry in found}
                for page in self._pages:
                    if page.redirected_from:
                        chain = _placeholders(len(page.redirected_from))
                        conn.execute(f"UPDATE pages SET final_url = ? WHERE url IN ({chain})",
                                     [page.row["url"], *page.redirected_from])  # fmt: skip
                        conn.execute(f"UPDATE fetches SET final_url = ? WHERE run_id IS ? AND url IN ({chain})",
                                     [page.row["url"], self.run_id, *page.redirected_from])  # fmt: skip
                if self._sitemaps:
                    self.db.table("sitemaps").insert_all(self._sitemaps)
                if self._capped:
                    capped = conn.execute(
                        f"UPDATE frontier SET state = '{CAPPED}' "
                        f"WHERE state = '{QUEUED}' AND url IN ({_placeholders(len(self._capped))})",
                        self._capped,
                    ).rowcount
                    self.queued -= capped
                    self.capped += capped
            self.write_seconds += time.perf_counter() - start
        self._pages.clear()
        self._seeds.clear()
        self._capped.clear()
        self._sitemaps.clear()
        self._last_flush = time.monotonic()
        return origins

    def _write_history(self, conn: sqlite3.Connection, urls: list[str]) -> None:
        """Add the batch's pages to `fetches`, each marked new, changed or unchanged against the page's
        previous state (its status, and its body's hash, or its size where a hash is missing), before `pages`
        takes the new state."""
        before = {
            url: (status, size, content_hash)
            for url, status, size, content_hash in conn.execute(
                f"SELECT url, status, size, content_hash FROM pages WHERE url IN ({_placeholders(len(urls))})", urls
            )
        }
        rows = []
        for page in self._pages:
            row = page.row
            known = before.get(row["url"])
            if known is None:
                change = NEW
            else:
                status, size, content_hash = known
                same = status == row.get("status") and not differs(size, row.get("size"), content_hash,
                                                                     row.get("content_hash"))  # fmt: skip
                change = UNCHANGED if same else CHANGED
            rows.append({**row, "change": change, "unchanged_by": page.unchanged_by})
        self.db.table("fetches").insert_all(rows, pk=("run_id", "url"), replace=True, columns=FETCHES_COLUMNS)

    def links_of(self, url: str) -> list[tuple[str, bool]]:
        """The links stored for the page at `url`: (target, followed), for an unchanged page's frontier."""
        return [
            (to_url, follow is None or bool(follow))  # NULL: written before the flag was, when links were followed
            for to_url, follow in self.db.execute("SELECT to_url, follow FROM links WHERE from_url = ?", [url])
        ]

    def queued_origins(self) -> list[str]:
        """The origins with queued frontier entries."""
        return [row[0] for row in self.db.execute(f"SELECT DISTINCT origin FROM frontier WHERE state = '{QUEUED}'")]

    def queued_for(self, origin: str, after: int, limit: int, known: bool = False) -> list[FrontierEntry]:
        """Up to `limit` queued frontier entries of `origin` with a sequence number above `after`, in crawl
        order; with `known`, each with what the database knows of its page, if it was fetched before."""
        where = f"WHERE f.origin = ? AND f.state = '{QUEUED}' AND f.seq > ? ORDER BY f.seq LIMIT ?"
        if not known:
            rows = self.db.execute(f"SELECT url, origin, depth, hops, via, seq FROM frontier f {where}",
                                   [origin, after, limit])  # fmt: skip
            return [FrontierEntry(*row) for row in rows]
        rows = self.db.execute(
            f"SELECT f.url, f.origin, f.depth, f.hops, f.via, f.seq, f.lastmod, p.url, {_KNOWN_COLUMNS} "
            f"FROM frontier f LEFT JOIN pages p ON p.url = f.url {where}",
            [origin, after, limit],
        )
        return [
            FrontierEntry(url, key, depth, hops, via, seq, Known(*rest) if page is not None else None, lastmod)
            for url, key, depth, hops, via, seq, lastmod, page, *rest in rows
        ]

    def done_by_origin(self) -> dict[str, int]:
        """How many pages each origin has in the frontier as done (for per-host caps when resuming)."""
        return dict(self.db.execute(f"SELECT origin, count(*) FROM frontier WHERE state = '{DONE}' GROUP BY origin"))

    def seed_origins(self) -> list[str]:
        """The origins of the frontier's seeds (depth 0), for databases written before crawls were recorded."""
        return [row[0] for row in self.db.execute("SELECT DISTINCT origin FROM frontier WHERE depth = 0")]

    def reset_frontier(self, seeds: list[FrontierEntry]) -> None:
        """Forget the frontier and queue `seeds` in its place, in one transaction (a crawl stopped now has its
        seeds to start from), to start a new crawl or pass in this database (the pages stay)."""
        self.flush()
        with self.db.atomic():
            self.db.table("frontier").delete_where()
            self.db.table("frontier").insert_all(
                ({"url": entry.url, "origin": entry.origin, "depth": 0, "hops": 0, "state": QUEUED} for entry in seeds),
                ignore=True,  # a seed given twice is queued once
            )
        self.queued, self.done, self.capped = len({entry.url for entry in seeds}), 0, 0

    # -- runs (the record itself: storage/run_record.py) -----------------------------------------------

    def start_run(self, settings: dict[str, Any], seeds: Sequence[str], overrides: dict[str, Any] | None = None,
                  new_pass: bool = True, refresh: bool = False) -> int:  # fmt: skip
        """Open a run (see `run_record.open_run`) and tag the pages written from now on with its id."""
        self.run_id = run_record.open_run(self.db, settings, seeds, overrides, new_pass, refresh)
        return self.run_id

    def finish_run(self, status: str, measures: dict[str, float | None]) -> None:
        """Write everything queued, then close the current run: its status, the measures the crawl took
        (elapsed_s, cpu_seconds, peak_rss_mb, parse_seconds, store_seconds, retries) and the figures of its
        pages."""
        self.flush()
        if self.run_id is not None:
            run_record.close_run(self.db, self.run_id, {"status": status, "ended_at": run_record.now(), **measures})

    def close(self) -> None:
        """Flush, index the links by target, give up ownership and close the database."""
        try:
            self.flush()
            start = time.perf_counter()
            create_link_index(self.db)
            self.write_seconds += time.perf_counter() - start
        finally:
            self.release()
            self.db.close()
