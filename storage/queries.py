"""Read-only access to a page database: what `crawler stats`, `top` and `query` show."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlite_utils


class StorageError(Exception):
    """A problem with the database the user pointed at, worded for the user."""


class ReadOnlyError(StorageError):
    """A statement tried to change a database opened for reading."""


def open_readonly(path: str | Path) -> sqlite_utils.Database:
    """Open a page database for reading only; `StorageError` if it is missing or is not a crawl database."""
    path = Path(path)
    if not path.is_file():
        raise StorageError(f"no database at {path}: run `crawler crawl` first, or point --db at one")
    conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
    conn.execute("PRAGMA query_only = ON")
    db = sqlite_utils.Database(conn)
    try:
        tables = db.table_names()
    except sqlite3.DatabaseError as exc:
        db.close()
        raise StorageError(f"{path} is not a SQLite database ({exc})") from None
    if "pages" not in tables:
        db.close()
        raise StorageError(f"{path} is not a crawl database: it has no `pages` table")
    return db


@dataclass(frozen=True, slots=True)
class Stats:
    """Totals over a crawl database: page counts, sizes of the bodies fetched, breakdowns."""

    pages: int
    errors: int
    responses: int
    total_bytes: int
    mean_size: float
    median_size: float
    max_size: int
    by_status: list[tuple[str, int]]
    by_host: list[tuple[str, int, int, int]]  # host, pages, bytes, errors


def _median(db: sqlite_utils.Database, count: int) -> float:
    if count == 0:
        return 0.0
    middle = [
        row[0]
        for row in db.execute(
            "SELECT size FROM pages WHERE status IS NOT NULL ORDER BY size LIMIT ? OFFSET ?",
            [2 - count % 2, (count - 1) // 2],
        )
    ]
    return float(sum(middle) / len(middle))


def stats(db: sqlite_utils.Database) -> Stats:
    """Compute the figures `crawler stats` prints. Sizes count responses only (a timeout has no size)."""
    pages, errors, responses, total, mean, largest = db.execute(
        """SELECT count(*), count(error_kind), count(status), coalesce(sum(size), 0),
                  coalesce(avg(CASE WHEN status IS NOT NULL THEN size END), 0), coalesce(max(size), 0)
           FROM pages"""
    ).fetchone()
    by_status = [
        (str(status) if status is not None else f"({kind})", count)
        for status, kind, count in db.execute(
            """SELECT status, CASE WHEN status IS NULL THEN error_kind END AS kind, count(*)
               FROM pages GROUP BY 1, 2 ORDER BY count(*) DESC, 1, 2"""
        )
    ]
    by_host = [
        (host, count, size, errs)
        for host, count, size, errs in db.execute(
            """SELECT host, count(*), coalesce(sum(size), 0), count(error_kind)
               FROM pages GROUP BY host ORDER BY count(*) DESC, host"""
        )
    ]
    return Stats(pages, errors, responses, total, mean, _median(db, responses), largest, by_status, by_host)


TOP_COLUMNS = ["url", "size", "status", "content_type", "title"]


def top(db: sqlite_utils.Database, limit: int) -> list[dict[str, Any]]:
    """The `limit` largest pages, largest first."""
    return list(
        db.query(
            f"SELECT {', '.join(TOP_COLUMNS)} FROM pages WHERE size IS NOT NULL ORDER BY size DESC, url LIMIT ?",
            [limit],
        )
    )


def run_query(db: sqlite_utils.Database, sql: str) -> tuple[list[str], Iterator[tuple[Any, ...]]]:
    """Run one SQL statement; returns its column names and a row iterator. Writes raise `ReadOnlyError`."""
    try:
        cursor = db.execute(sql)
    except sqlite3.OperationalError as exc:
        if "readonly" in str(exc) or "query_only" in str(exc):
            raise ReadOnlyError(f"the database is opened read-only; `crawler query` cannot change it ({exc})") from None
        raise StorageError(f"SQL error: {exc}") from None
    except sqlite3.Error as exc:
        raise StorageError(f"SQL error: {exc}") from None
    columns = [description[0] for description in cursor.description or []]
    return columns, iter(cursor)
