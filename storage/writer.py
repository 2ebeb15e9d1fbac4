"""The page database: its schema, and a writer that batches rows into transactions (main thread only)."""

from __future__ import annotations

import time
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
    "title": str,
    "depth": int,  # link hops from the seed it was reached from (seeds are 0)
    "link_count": int,  # distinct outgoing http(s) links found on the page
    "fetched_at": str,  # UTC, ISO 8601
    "elapsed_ms": float,  # request start to last body byte
    "backend": str,
    "error_kind": str,  # NULL on success; http, timeout, dns, refused, connection, redirects, ...
    "error_message": str,
}
LINKS_COLUMNS: dict[str, type] = {"from_url": str, "to_url": str}

DEFAULT_BATCH_SIZE = 200
DEFAULT_FLUSH_SECONDS = 1.0


def create_schema(db: sqlite_utils.Database) -> None:
    """Create the `pages` and `links` tables and their indexes if they are not there yet."""
    db.table("pages").create(PAGES_COLUMNS, pk="url", not_null={"final_url", "host", "depth"}, if_not_exists=True)
    db.table("links").create(LINKS_COLUMNS, pk=("from_url", "to_url"), if_not_exists=True)
    db.table("links").create_index(["to_url"], if_not_exists=True)
    db.table("pages").create_index(["host"], if_not_exists=True)


class PageStore:
    """Buffers page rows and their links, and writes them in one transaction per batch (or per second)."""

    def __init__(
        self,
        path: str | Path,
        batch_size: int = DEFAULT_BATCH_SIZE,
        flush_seconds: float = DEFAULT_FLUSH_SECONDS,
    ) -> None:
        self.db = sqlite_utils.Database(path)
        self.db.enable_wal()  # readers (crawler query/stats) can look while the crawl writes
        create_schema(self.db)
        self._batch_size = batch_size
        self._flush_seconds = flush_seconds
        self._pages: list[dict[str, Any]] = []
        self._links: list[dict[str, str]] = []
        self._last_flush = time.monotonic()

    def add(self, page: dict[str, Any], links: list[str]) -> None:
        """Queue one page row and its outgoing links; writes when the batch is full or a second has passed."""
        self._pages.append(page)
        self._links.extend({"from_url": page["url"], "to_url": link} for link in links)
        if len(self._pages) >= self._batch_size:
            self.flush()
        else:
            self.flush_if_due()

    def flush_if_due(self) -> None:
        """Write what is queued if a flush interval has passed since the last write."""
        if time.monotonic() - self._last_flush >= self._flush_seconds:
            self.flush()

    def flush(self) -> None:
        """Write everything queued in one transaction; a page fetched again replaces its old row and links."""
        if self._pages:
            with self.db.atomic():
                urls = [page["url"] for page in self._pages]
                self.db.execute(f"DELETE FROM links WHERE from_url IN ({', '.join('?' * len(urls))})", urls)
                self.db.table("pages").insert_all(self._pages, pk="url", replace=True)
                self.db.table("links").insert_all(self._links, pk=("from_url", "to_url"), ignore=True)
        self._pages.clear()
        self._links.clear()
        self._last_flush = time.monotonic()

    def close(self) -> None:
        """Flush and close the database."""
        self.flush()
        self.db.close()
