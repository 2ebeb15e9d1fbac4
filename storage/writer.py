"""The crawl database: its schema, and a writer that batches pages, links and frontier changes into one
transaction per batch (main thread only), so the file is consistent whenever the process dies."""

from __future__ import annotations

import json
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlite_utils

# Column name -> SQLite type; the README documents these for users writing SQL.
PAGES_COLUMNS: dict[str, type] = {
    "url": str,  # the URL as requested, canonical form; one row per URL
    "final_url": str,  # where redirects ended
    "host": str,
    "status": int,  # HTTP status, NULL when no response came back
    "content_type": str,
    "size": int,  # body size in bytes, after content-encoding (gzip...) is decoded
    "truncated": int,  # 1 when the body was cut at --max-size
    "title": str,
    "depth": int,  # link hops from the seed it was reached from (seeds are 0)
    "link_count": int,  # distinct outgoing http(s) links found on the page
    "attempts": int,  # fetches made, retries included
    "fetched_at": str,  # UTC, ISO 8601
    "elapsed_ms": float,  # request start to last body byte, of the last attempt
    "backend": str,
    "error_kind": str,  # NULL on success; http, timeout, dns, refused, robots, redirects, ...
    "error_message": str,
    "run_id": int,  # the run that fetched it (runs.id)
}
LINKS_COLUMNS: dict[str, type] = {"from_url": str, "to_url": str}
FRONTIER_COLUMNS: dict[str, type] = {
    "seq": int,  # discovery order, which is crawl order
    "url": str,
    "origin": str,  # scheme://host:port, the unit of politeness and robots.txt
    "depth": int,
    "hops": int,  # redirects followed to reach this URL
    "via": str,  # the redirect chain that led here, one URL a line
    "state": str,  # queued (not yet written to pages, including what is in flight) or done
}
RUNS_COLUMNS: dict[str, type] = {
    "id": int,
    "started_at": str,  # UTC, ISO 8601
    "ended_at": str,
    "status": str,  # running, finished, limit (--max-pages reached), interrupted (Ctrl-C), failed, killed
    "backend": str,
    "parser": str,
    "concurrency": int,
    "per_host": int,
    "seeds": str,  # JSON array of the seed URLs given (empty when resuming)
    "settings": str,  # JSON object: every crawl setting
    "pages": int,  # rows this run wrote
    "retries": int,  # requests made again after a timeout, connection error, 429 or 5xx
    "errors": int,
    "bytes": int,
    "elapsed_s": float,
    "pages_per_second": float,
    "latency_p50_ms": float,  # of fetches (request start to last body byte), nearest rank
    "latency_p95_ms": float,
    "fetch_seconds": float,  # fetch time summed over pages: divided by elapsed_s, the mean requests in flight
    "cpu_seconds": float,  # the crawler's processes, sampled each second; NULL for a killed run
    "peak_rss_mb": float,  # the most memory the crawler's processes held at once (sampled)
    "parse_seconds": float,  # main-thread time parsing pages and handling links
    "store_seconds": float,  # main-thread time writing SQLite
}
RUNNING, FINISHED, LIMIT, INTERRUPTED = "running", "finished", "limit", "interrupted"
FAILED, KILLED = "failed", "killed"  # stopped by an error; ended without closing its run (kill -9, power cut)
QUEUED, DONE = "queued", "done"
LINKS_TO_INDEX = "idx_links_to_url"

DEFAULT_BATCH_SIZE = 200
DEFAULT_FLUSH_SECONDS = 1.0


@dataclass(frozen=True, slots=True)
class FrontierEntry:
    """A URL to crawl, as the frontier table holds it."""

    url: str
    origin: str
    depth: int
    hops: int = 0
    via: str | None = None
    seq: int = 0  # assigned by the database


def create_schema(db: sqlite_utils.Database) -> None:
    """Create the tables and indexes that are not there yet."""
    db.table("pages").create(PAGES_COLUMNS, pk="url", not_null={"final_url", "host", "depth"}, if_not_exists=True)
    # Columns added since the first release, for databases written by it.
    pages = db.table("pages")
    for column in ("truncated", "attempts", "run_id"):
        if column not in pages.columns_dict:
            pages.add_column(column, int)
    db.table("runs").create(RUNS_COLUMNS, pk="id", if_not_exists=True)
    pages.create_index(["run_id"], if_not_exists=True)
    # No primary key: a page's links are distinct already. The from_url index serves replacing a page's
    # links (its inserts land together, one place per page); the to_url index is built by create_link_index.
    db.table("links").create(LINKS_COLUMNS, if_not_exists=True)
    db.table("links").create_index(["from_url"], if_not_exists=True)
    db.table("pages").create_index(["host"], if_not_exists=True)
    db.table("frontier").create(
        FRONTIER_COLUMNS, pk="seq", not_null={"url", "origin", "depth", "hops", "state"}, if_not_exists=True
    )
    db.table("frontier").create_index(["url"], unique=True, if_not_exists=True)
    db.table("frontier").create_index(["state", "seq"], if_not_exists=True)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def create_link_index(db: sqlite_utils.Database) -> None:
    """Index links by target, for "who links here" queries. A crawl drops it while it writes, because each
    page's links land in that index at scattered places and the cost per insert grows with the table."""
    db.table("links").create_index(["to_url"], index_name=LINKS_TO_INDEX, if_not_exists=True)


def _placeholders(count: int) -> str:
    return ", ".join("?" * count)


class PageStore:
    """Buffers pages, links, newly found URLs and redirect outcomes; writes them in one transaction per
    batch (or per second). A page and its frontier entry's `done` mark are always written together."""

    def __init__(
        self,
        path: str | Path,
        batch_size: int = DEFAULT_BATCH_SIZE,
        flush_seconds: float = DEFAULT_FLUSH_SECONDS,
    ) -> None:
        self.db = sqlite_utils.Database(path)
        self.db.enable_wal()  # readers (crawler query/stats) can look while the crawl writes
        # In WAL mode, NORMAL survives a crash or kill -9 of the crawler (only a power cut may lose the last
        # transactions) and spares an fsync per commit.
        self.db.execute("PRAGMA synchronous = NORMAL")
        create_schema(self.db)
        self.db.execute(f"DROP INDEX IF EXISTS {LINKS_TO_INDEX}")  # built again by close()
        self._batch_size = batch_size
        self._flush_seconds = flush_seconds
        self._pages: list[dict[str, Any]] = []
        self._links: list[tuple[str, str]] = []
        self._found: list[tuple[str, str, int, int, str | None]] = []
        self._final_urls: list[tuple[str, list[str]]] = []
        self._last_flush = time.monotonic()
        counts = dict(self.db.execute("SELECT state, count(*) FROM frontier GROUP BY state").fetchall())
        self.queued: int = counts.get(QUEUED, 0)  # kept current by flush()
        self.done: int = counts.get(DONE, 0)
        self.added = 0  # frontier entries this store has inserted: only ever grows
        self.write_seconds = 0.0  # time spent writing, for the benchmark's breakdown
        self.run_id: int | None = None  # set by start_run; written on every page row

    def add(self, page: dict[str, Any], links: list[str]) -> None:
        """Queue one page row and its outgoing links; marks its frontier entry done when written."""
        self._pages.append({**page, "run_id": self.run_id})
        self._links.extend((page["url"], link) for link in links)
        if len(self._pages) >= self._batch_size:
            self.flush()
        else:
            self.flush_if_due()

    def discover(self, entries: list[FrontierEntry]) -> None:
        """Queue URLs for the frontier; those it already holds (queued or done) are ignored when written."""
        self._found.extend((e.url, e.origin, e.depth, e.hops, e.via) for e in entries)

    def set_final_url(self, urls: list[str], final_url: str) -> None:
        """Record where a chain of redirects ended, on every page of the chain."""
        self._final_urls.append((final_url, urls))

    @property
    def has_unwritten_discoveries(self) -> bool:
        """Whether URLs are waiting to be written to the frontier."""
        return bool(self._found)

    def flush_if_due(self) -> None:
        """Write what is queued if a flush interval has passed since the last write."""
        if time.monotonic() - self._last_flush >= self._flush_seconds:
            self.flush()

    def flush(self) -> None:
        """Write everything queued in one transaction; a page fetched again replaces its old row and links."""
        if self._pages or self._found or self._final_urls:
            start = time.perf_counter()
            with self.db.atomic():
                conn = self.db.conn
                if self._pages:
                    urls = [page["url"] for page in self._pages]
                    conn.execute(f"DELETE FROM links WHERE from_url IN ({_placeholders(len(urls))})", urls)
                    self.db.table("pages").insert_all(self._pages, pk="url", replace=True)
                    conn.executemany("INSERT INTO links (from_url, to_url) VALUES (?, ?)", self._links)
                    done = conn.execute(
                        f"UPDATE frontier SET state = '{DONE}' "
                        f"WHERE state = '{QUEUED}' AND url IN ({_placeholders(len(urls))})",
                        urls,
                    ).rowcount
                    self.queued -= done
                    self.done += done
                if self._found:
                    before = conn.total_changes
                    conn.executemany(
                        "INSERT OR IGNORE INTO frontier (url, origin, depth, hops, via, state) "
                        f"VALUES (?, ?, ?, ?, ?, '{QUEUED}')",
                        self._found,
                    )
                    self.added += conn.total_changes - before
                    self.queued += conn.total_changes - before
                for final_url, urls in self._final_urls:
                    conn.execute(
                        f"UPDATE pages SET final_url = ? WHERE url IN ({_placeholders(len(urls))})", [final_url, *urls]
                    )
            self.write_seconds += time.perf_counter() - start
        self._pages.clear()
        self._links.clear()
        self._found.clear()
        self._final_urls.clear()
        self._last_flush = time.monotonic()

    def queued_after(self, seq: int, limit: int) -> list[FrontierEntry]:
        """Up to `limit` queued frontier entries with a sequence number above `seq`, in crawl order."""
        rows = self.db.execute(
            f"SELECT url, origin, depth, hops, via, seq FROM frontier WHERE state = '{QUEUED}' AND seq > ? "
            "ORDER BY seq LIMIT ?",
            [seq, limit],
        )
        return [FrontierEntry(*row) for row in rows]

    def done_by_origin(self) -> dict[str, int]:
        """How many pages each origin has in the frontier as done (for per-host caps when resuming)."""
        return dict(self.db.execute(f"SELECT origin, count(*) FROM frontier WHERE state = '{DONE}' GROUP BY origin"))

    def seed_origins(self) -> list[str]:
        """The origins of the frontier's seeds (depth 0): a resumed crawl's scope."""
        return [row[0] for row in self.db.execute("SELECT DISTINCT origin FROM frontier WHERE depth = 0")]

    def reset_frontier(self) -> None:
        """Forget the frontier, to start a new crawl in this database (pages stay until fetched again)."""
        self.flush()
        with self.db.atomic():
            self.db.execute("DELETE FROM frontier")
        self.queued = self.done = 0

    def start_run(self, settings: dict[str, Any], seeds: Sequence[str]) -> int:
        """Record a new run (status `running`) and tag the pages written from now on with its id. Runs
        still marked running were killed: they are closed first, with the figures their pages give."""
        for (stale,) in self.db.execute(f"SELECT id FROM runs WHERE status = '{RUNNING}'").fetchall():
            ended = self.db.execute("SELECT max(fetched_at) FROM pages WHERE run_id = ?", [stale]).fetchone()[0]
            started = self.db.table("runs").get(stale)["started_at"]
            elapsed = (datetime.fromisoformat(ended) - datetime.fromisoformat(started)).total_seconds() if ended else 0
            self._finish(stale, {"status": KILLED, "ended_at": ended, "elapsed_s": elapsed})
        row = {
            "started_at": _now(),
            "status": RUNNING,
            "backend": settings["backend"],
            "parser": settings["parser"],
            "concurrency": settings["concurrency"],
            "per_host": settings["per_host"],
            "seeds": json.dumps(list(seeds)),
            "settings": json.dumps(settings),
        }
        with self.db.atomic():
            run_id: int = self.db.table("runs").insert(row).last_pk  # type: ignore[assignment]
        self.run_id = run_id
        return run_id

    def finish_run(self, status: str, measures: dict[str, float | None]) -> None:
        """Write everything queued, then close the current run: its status, the measures the crawl took
        (elapsed_s, cpu_seconds, peak_rss_mb, parse_seconds, store_seconds, retries) and the figures of its
        pages."""
        self.flush()
        if self.run_id is not None:
            self._finish(self.run_id, {"status": status, "ended_at": _now(), **measures})

    def _finish(self, run_id: int, fields: dict[str, Any]) -> None:
        pages, errors, size, fetch_ms, fetches = self.db.execute(
            "SELECT count(*), count(error_kind), coalesce(sum(size), 0), coalesce(sum(elapsed_ms), 0), "
            "count(elapsed_ms) FROM pages WHERE run_id = ?",
            [run_id],
        ).fetchone()
        elapsed = fields.get("elapsed_s") or 0.0

        def percentile(share: float) -> float | None:
            if not fetches:
                return None
            rank = max(1, math.ceil(fetches * share))  # nearest rank
            return float(self.db.execute(
                "SELECT elapsed_ms FROM pages WHERE run_id = ? AND elapsed_ms IS NOT NULL "
                "ORDER BY elapsed_ms LIMIT 1 OFFSET ?", [run_id, rank - 1],
            ).fetchone()[0])  # fmt: skip

        figures = {
            "pages": pages,
            "errors": errors,
            "bytes": size,
            "pages_per_second": pages / elapsed if elapsed > 0 else None,
            "latency_p50_ms": percentile(0.5),
            "latency_p95_ms": percentile(0.95),
            "fetch_seconds": fetch_ms / 1000,
        }
        with self.db.atomic():
            self.db.table("runs").update(run_id, {**fields, **figures})

    def close(self) -> None:
        """Flush, index the links by target and close the database."""
        self.flush()
        start = time.perf_counter()
        create_link_index(self.db)
        self.write_seconds += time.perf_counter() - start
        self.db.close()
