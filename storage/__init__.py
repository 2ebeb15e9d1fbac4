"""The SQLite page database: one writer for the crawl, read-only access for the query commands."""

from __future__ import annotations

from storage.queries import ReadOnlyError, Stats, StorageError, open_readonly, run_query, stats, top
from storage.writer import FAILED, FINISHED, INTERRUPTED, KILLED, LIMIT, RUNNING, FrontierEntry, PageStore

__all__ = [
    "FAILED",
    "FINISHED",
    "INTERRUPTED",
    "KILLED",
    "LIMIT",
    "RUNNING",
    "FrontierEntry",
    "PageStore",
    "ReadOnlyError",
    "Stats",
    "StorageError",
    "open_readonly",
    "run_query",
    "stats",
    "top",
]
