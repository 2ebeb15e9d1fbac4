"""The crawl database: its schema, and a writer that batches pages, links and frontier changes into one
transaction per batch (main thread only), so the file is consistent whenever the process dies."""

from __future__ import annotations

import time
from dataclasses import dataclass
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
    for column in ("truncated", "attempts"):
        if column not in pages.columns_dict:
            pages.add_column(column, int)
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

    def add(self, page: dict[str, Any], links: list[str]) -> None:
        """Queue one page row and its outgoing links; marks its frontier entry done when written."""
        self._pages.append(page)
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

    def close(self) -> None:
        """Flush, index the links by target and close the database."""
        self.flush()
        start = time.perf_counter()
        create_link_index(self.db)
        self.write_seconds += time.perf_counter() - start
        self.db.close()
