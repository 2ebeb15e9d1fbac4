"""The aggregate queries behind `crawler report`: which runs it charts, the statuses and error kinds of the pages,
when they were fetched, and each run's pages per time bucket.

Every figure is aggregated in SQL (the database may hold millions of pages); the report draws what these return.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import sqlite_utils

from storage.history import _require_history
from storage.queries import StorageError, latest_run_ids, runs

DAY = 86400.0  # seconds in a Julian day, SQLite's julianday() unit


def chosen_runs(db: sqlite_utils.Database, run_ids: list[int] | None) -> list[dict[str, Any]] | None:
    """The rows of the runs to chart, oldest first: `run_ids`, or by default the latest run of each backend that
    has pages (as `crawler compare` chooses). None for a database written before runs were recorded; `StorageError`
    for a run it does not hold (or, with `run_ids`, when it has no runs table)."""
    if run_ids is None:
        if "runs" not in db.table_names():
            return None
        run_ids = latest_run_ids(db)
    return runs(db, sorted(set(run_ids)))


def run_count(db: sqlite_utils.Database) -> int | None:
    """How many runs the database records; None when it was written before runs were recorded."""
    if "runs" not in db.table_names():
        return None
    return int(db.execute("SELECT count(*) FROM runs").fetchone()[0])


def fetch_span(db: sqlite_utils.Database) -> tuple[str | None, str | None]:
    """The `fetched_at` of the first page fetched and of the last (None, None without pages)."""
    first, last = db.execute("SELECT min(fetched_at), max(fetched_at) FROM pages").fetchone()
    return first, last


def status_counts(db: sqlite_utils.Database) -> list[tuple[int, int]]:
    """Pages per HTTP status, by status."""
    return [
        (status, count)
        for status, count in db.execute(
            "SELECT status, count(*) FROM pages WHERE status IS NOT NULL GROUP BY status ORDER BY status"
        )
    ]


def failure_counts(db: sqlite_utils.Database) -> list[tuple[str, int]]:
    """Pages that got no response, per kind of error ('unknown' where none was recorded), most frequent first."""
    return [
        (kind, count)
        for kind, count in db.execute(
            "SELECT coalesce(error_kind, 'unknown'), count(*) FROM pages WHERE status IS NULL "
            "GROUP BY 1 ORDER BY count(*) DESC, 1"
        )
    ]


def history_kept(db: sqlite_utils.Database) -> bool:
    """Whether the database keeps every fetch of every run (one written before history was kept does not)."""
    try:
        _require_history(db)
    except StorageError:
        return False
    return True


@dataclass(frozen=True, slots=True)
class RunSpan:
    """When a run's pages were fetched: from `start` (a Julian day: the run's start, or its first page if that is
    earlier) over `seconds` to its last page. `run_id` None: every page of a database that records no runs."""

    run_id: int | None
    start: float
    seconds: float


def _source(db: sqlite_utils.Database, run_id: int | None) -> tuple[str, str, list[Any]]:
    """The table holding a run's own rows (`fetches`, a row per page each run fetched; in a database written
    before history was kept, `pages`, where a page counts for the last run that fetched it only), the condition
    that keeps them, and its parameters."""
    if run_id is None:
        return "pages", "1", []
    return ("fetches" if "fetches" in db.table_names() else "pages"), "run_id = ?", [run_id]


def run_spans(db: sqlite_utils.Database, run_ids: list[int] | None) -> list[RunSpan]:
    """The span of each run of `run_ids` that fetched a page with a fetch time, every page it fetched included
    (those a later run fetched again too). With `run_ids` None (no runs recorded), one span for all pages."""
    spans = []
    for run_id in [None] if run_ids is None else run_ids:
        source, where, params = _source(db, run_id)
        started = "?" if run_id is None else "(SELECT started_at FROM runs WHERE id = ?)"
        given, first, last = db.execute(
            f"SELECT julianday({started}), min(julianday(fetched_at)), max(julianday(fetched_at)) FROM {source} "
            f"WHERE {where}",
            [run_id, *params],
        ).fetchone()
        if first is not None:
            start = first if given is None else min(given, first)
            spans.append(RunSpan(run_id, start, (last - start) * DAY))
    return spans


def bucket_counts(db: sqlite_utils.Database, span: RunSpan, seconds: float) -> list[int]:
    """Pages the run of `span` fetched in each bucket of `seconds` from its start, up to its last page's."""
    source, where, params = _source(db, span.run_id)
    counts = dict(
        db.execute(
            f"SELECT CAST(max(0.0, (julianday(fetched_at) - ?) * {DAY}) / ? AS INTEGER), count(*) FROM {source} "
            f"WHERE {where} AND julianday(fetched_at) IS NOT NULL GROUP BY 1",
            [span.start, seconds, *params],
        ).fetchall()
    )
    return [counts.get(index, 0) for index in range(max(counts) + 1)]
