"""The SQLite page database: one writer for the crawl, read-only access for the query commands."""

from __future__ import annotations

from storage.queries import (
    BROKEN_COLUMNS,
    EXPORT_TABLES,
    HostStats,
    PageFilter,
    ReadOnlyError,
    Stats,
    StorageError,
    broken_links,
    broken_links_sql,
    check_filter,
    latest_run_ids,
    open_readonly,
    run_query,
    runs,
    size_buckets,
    stats,
    table_rows,
    top,
)
from storage.writer import FAILED, FINISHED, INTERRUPTED, KILLED, LIMIT, RUNNING, FrontierEntry, PageStore

__all__ = [
    "BROKEN_COLUMNS",
    "EXPORT_TABLES",
    "FAILED",
    "FINISHED",
    "INTERRUPTED",
    "KILLED",
    "LIMIT",
    "RUNNING",
    "FrontierEntry",
    "HostStats",
    "PageFilter",
    "PageStore",
    "ReadOnlyError",
    "Stats",
    "StorageError",
    "broken_links",
    "broken_links_sql",
    "check_filter",
    "latest_run_ids",
    "open_readonly",
    "run_query",
    "runs",
    "size_buckets",
    "stats",
    "table_rows",
    "top",
]
