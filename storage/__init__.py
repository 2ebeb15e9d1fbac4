"""The SQLite page database: one writer for the crawl, read-only access for the query commands."""

from __future__ import annotations

from storage.queries import ReadOnlyError, Stats, StorageError, open_readonly, run_query, stats, top
from storage.writer import FRONTIER_COLUMNS, LINKS_COLUMNS, PAGES_COLUMNS, FrontierEntry, PageStore, create_schema

__all__ = [
    "FRONTIER_COLUMNS",
    "LINKS_COLUMNS",
    "PAGES_COLUMNS",
    "FrontierEntry",
    "PageStore",
    "ReadOnlyError",
    "Stats",
    "StorageError",
    "create_schema",
    "open_readonly",
    "run_query",
    "stats",
    "top",
]
