"""Read-only access to a page database: what `crawler stats`, `top` and `query` show."""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path
from typing import Any

import sqlite_utils


class StorageError(Exception):
    """A problem with the database the user pointed at, worded for the user."""


class ReadOnlyError(StorageError):
    """A statement tried to change a database opened for reading."""


def _connect(path: Path, writable: bool, immutable: bool = False) -> sqlite_utils.Database:
    options = "" if writable else "?mode=ro&immutable=1" if immutable else "?mode=ro"
    conn = sqlite3.connect(path.resolve().as_uri() + options, uri=True)
    conn.execute("PRAGMA query_only = ON")  # and `crawler query` refuses a PRAGMA that would turn it off
    return sqlite_utils.Database(conn)


def on_readonly_media(path: Path) -> bool:
    """Whether `path` is on a file system mounted read-only (a CD, a read-only share or bind mount)."""
    try:
        return bool(os.statvfs(path).f_flag & os.ST_RDONLY)
    except OSError:
        return False


def open_readonly(path: str | Path) -> sqlite_utils.Database:
    """Open a page database for reading only; `StorageError` if it is missing or is not a crawl database."""
    path = Path(path)
    if not path.is_file():
        raise StorageError(f"no database at {path}: run `crawler crawl` first, or point --db at one")
    # On read-only media SQLite cannot create the -shm file a database in WAL mode needs, even to read; nothing
    # can be writing there, so the file is opened as immutable (no locks, no -shm) if no -wal holds changes.
    real = path.resolve()  # through a symlink, the -wal file is beside the file SQLite opens
    wal = real.with_name(real.name + "-wal")
    media = on_readonly_media(real)
    if media and wal.exists() and wal.stat().st_size > 0:
        raise StorageError(
            f"cannot read {path} on read-only media: its {wal.name} file holds changes that only a writable copy "
            "can read (copy both files somewhere writable)"
        )
    db = _connect(path, writable=False, immutable=media)
    try:
        tables = db.table_names()
    except sqlite3.DatabaseError as exc:
        db.close()
        raise StorageError(f"{path} is not a SQLite database ({exc})") from None
    if "pages" not in tables:
        db.close()
        raise StorageError(f"{path} is not a crawl database: it has no `pages` table")
    # A read-only connection to a database in WAL mode creates its -wal and -shm files and cannot remove them
    # when it closes. Where they may be written, a read-write connection under query_only reads the same and,
    # as the last to close, removes them; on read-only media, mode=ro is all there is. Only a crawl database
    # gets one: another program's is left as the read-only connection found it.
    if not media and os.access(path, os.W_OK) and os.access(path.resolve().parent, os.W_OK):
        db.close()
        db = _connect(path, writable=True)
        db.execute("SELECT 1 FROM sqlite_master LIMIT 1")  # opens the WAL now: a statement reading none would not
    return db


@dataclass(frozen=True, slots=True)
class PageFilter:
    """Which pages a read command looks at: all, one host's, one run's, or both."""

    host: str | None = None
    run: int | None = None

    def where(self, prefix: str = "") -> tuple[str, list[Any]]:
        """An SQL condition (`1` when nothing is filtered) and its parameters; `prefix` qualifies columns."""
        clauses: list[str] = ["1"]
        params: list[Any] = []
        if self.host is not None:
            clauses.append(f"{prefix}host = ?")
            params.append(self.host)
        if self.run is not None:
            clauses.append(f"{prefix}run_id = ?")
            params.append(self.run)
        return " AND ".join(clauses), params

    def source(self, db: sqlite_utils.Database) -> str:
        """The table holding the rows the filter looks at: a run's own fetches from `fetches` (in `pages`, a
        page's run is only the last run that fetched it), unless the database predates history; else `pages`."""
        return "fetches" if self.run is not None and "fetches" in db.table_names() else "pages"


@dataclass(frozen=True, slots=True)
class HostStats:
    """One host's line in `crawler stats`."""

    host: str
    pages: int
    bytes: int
    median_size: float
    errors: int


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
    by_host: list[HostStats]  # the hosts with the most pages, at most `hosts` of them
    hosts: int  # hosts in all
    by_content_type: list[tuple[str, int, int]]  # media type (no parameters), pages, bytes
    histogram: list[tuple[int, int, int]]  # [low, high) bytes, pages of a size in it (log-scale buckets)
    capped: int = 0  # URLs found but skipped by --max-pages-per-host (none when the filter names a host or run)


def check_filter(db: sqlite_utils.Database, page_filter: PageFilter) -> None:
    """`StorageError` if the filter names a run or host the database does not have."""
    if page_filter.run is not None:
        if "runs" not in db.table_names():
            raise StorageError("this database has no runs table (it was written before runs were recorded)")
        if db.execute("SELECT 1 FROM runs WHERE id = ?", [page_filter.run]).fetchone() is None:
            raise StorageError(f"no run {page_filter.run} in this database (`crawler runs` lists them)")
    if (
        page_filter.host is not None
        and db.execute("SELECT 1 FROM pages WHERE host = ? LIMIT 1", [page_filter.host]).fetchone() is None
    ):
        raise StorageError(f"no pages from host {page_filter.host!r} in this database")


def _median(db: sqlite_utils.Database, count: int, source: str, where: str, params: list[Any]) -> float:
    if count == 0:
        return 0.0
    middle = [
        row[0]
        for row in db.execute(
            f"SELECT size FROM {source} WHERE status IS NOT NULL AND {where} ORDER BY size LIMIT ? OFFSET ?",
            [*params, 2 - count % 2, (count - 1) // 2],
        )
    ]
    return float(sum(middle) / len(middle))


def size_buckets(largest: int) -> list[tuple[int, int]]:
    """Log-scale [low, high) size buckets: under 1 KB, then doubling (1-2 KB, 2-4 KB, ...) up to `largest`."""
    bounds = [0, 1024]
    while bounds[-1] <= largest:
        bounds.append(2 * bounds[-1])
    return list(pairwise(bounds))


def _histogram(
    db: sqlite_utils.Database, largest: int, source: str, where: str, params: list[Any]
) -> list[tuple[int, int, int]]:
    buckets = size_buckets(largest)
    case = " ".join(f"WHEN size < {high} THEN {index}" for index, (_, high) in enumerate(buckets))
    counts = dict(
        db.execute(
            f"SELECT CASE {case} END AS bucket, count(*) FROM {source} WHERE size IS NOT NULL AND status IS NOT NULL "
            f"AND {where} GROUP BY bucket",
            params,
        ).fetchall()
    )
    return [(low, high, counts.get(index, 0)) for index, (low, high) in enumerate(buckets)]


def stats(db: sqlite_utils.Database, page_filter: PageFilter | None = None, hosts: int = 20) -> Stats:
    """Compute the figures `crawler stats` prints. Sizes count responses only (a timeout has no size). With a
    run in the filter, the pages that run fetched, as it fetched them (`PageFilter.source`)."""
    page_filter = page_filter or PageFilter()
    where, params = page_filter.where()
    source = page_filter.source(db)
    pages, errors, responses, total, mean, largest = db.execute(
        f"""SELECT count(*), count(error_kind), count(status), coalesce(sum(size), 0),
                   coalesce(avg(CASE WHEN status IS NOT NULL THEN size END), 0), coalesce(max(size), 0)
            FROM {source} WHERE {where}""",
        params,
    ).fetchone()
    by_status = [
        (str(status) if status is not None else f"({kind})", count)
        for status, kind, count in db.execute(
            f"""SELECT status, CASE WHEN status IS NULL THEN error_kind END AS kind, count(*)
                FROM {source} WHERE {where} GROUP BY 1, 2 ORDER BY count(*) DESC, 1, 2""",
            params,
        )
    ]
    host_rows = db.execute(
        f"""SELECT host, count(*), coalesce(sum(size), 0), count(error_kind), count(status)
            FROM {source} WHERE {where} GROUP BY host ORDER BY count(*) DESC, host""",
        params,
    ).fetchall()
    by_host = [
        HostStats(
            host=host,
            pages=count,
            bytes=size,
            median_size=_median(db, responses_of_host, source, f"{where} AND host = ?", [*params, host]),
            errors=errs,
        )
        for host, count, size, errs, responses_of_host in host_rows[:hosts]
    ]
    media_type = "lower(trim(substr(content_type, 1, instr(content_type || ';', ';') - 1)))"
    by_content_type = [
        (content_type or "(none)", count, size)
        for content_type, count, size in db.execute(
            f"""SELECT {media_type} AS media_type, count(*), coalesce(sum(size), 0)
                FROM {source} WHERE status IS NOT NULL AND {where} GROUP BY media_type ORDER BY count(*) DESC, 1""",
            params,
        )
    ]
    return Stats(
        pages=pages,
        errors=errors,
        responses=responses,
        total_bytes=total,
        mean_size=mean,
        median_size=_median(db, responses, source, where, params),
        max_size=largest,
        by_status=by_status,
        by_host=by_host,
        hosts=len(host_rows),
        by_content_type=by_content_type,
        histogram=_histogram(db, largest, source, where, params) if responses else [],
        capped=_capped(db) if page_filter == PageFilter() else 0,
    )


def _capped(db: sqlite_utils.Database) -> int:
    if "frontier" not in db.table_names():
        return 0
    return int(db.execute("SELECT count(*) FROM frontier WHERE state = 'capped'").fetchone()[0])


def runs(db: sqlite_utils.Database, ids: list[int] | None = None) -> list[dict[str, Any]]:
    """The runs with these ids (in that order), or all of them, oldest first. `StorageError` for an unknown id
    or a database written before runs were recorded."""
    if "runs" not in db.table_names():
        raise StorageError("this database has no runs table (it was written before runs were recorded)")
    if ids is None:
        return list(db.query("SELECT * FROM runs ORDER BY id"))
    found = {row["id"]: row for row in db.query(f"SELECT * FROM runs WHERE id IN ({', '.join('?' * len(ids))})", ids)}
    missing = [str(run_id) for run_id in ids if run_id not in found]
    if missing:
        raise StorageError(f"no run {', '.join(missing)} in this database (`crawler runs` lists them)")
    return [found[run_id] for run_id in ids]


def latest_run_ids(db: sqlite_utils.Database) -> list[int]:
    """The latest run of each backend that fetched anything, oldest first."""
    return [
        row[0]
        for row in db.execute("SELECT max(id) FROM runs WHERE pages > 0 GROUP BY backend ORDER BY max(id)").fetchall()
    ]


BROKEN_COLUMNS = ["url", "final_url", "status", "error_kind", "error_message", "from_url"]


def broken_links_sql(host: bool = False) -> str:
    """SQL for every link to a page that failed (4xx/5xx or no response; through redirects, judged by where
    they ended), a row per linking page, ordered by target: `BROKEN_COLUMNS`. Pages robots.txt kept the
    crawler from are not broken. With `host`, it takes a `:host` parameter and keeps targets on that host."""
    # Failed pages are few: finding them first, then their links, beats joining every link to pages twice
    # (ten times over on 2 million links without the to_url index, which a running crawl drops).
    # MATERIALIZED keeps SQLite from flattening the two steps back into one.
    return f"""WITH broken AS MATERIALIZED (
  SELECT t.url, t.final_url, f.status, f.error_kind, f.error_message
  FROM pages t
  JOIN pages f ON f.url = t.final_url
  WHERE f.error_kind IS NOT NULL AND f.error_kind != 'robots'{" AND t.host = :host" if host else ""}
)
SELECT b.url, b.final_url, b.status, b.error_kind, b.error_message, l.from_url
FROM broken b
JOIN links l ON l.to_url = b.url
ORDER BY b.url, l.from_url"""


def broken_links(db: sqlite_utils.Database, host: str | None = None) -> Iterator[tuple[Any, ...]]:
    """Run `broken_links_sql`, lazily; `host` keeps targets on that host."""
    return iter(db.execute(broken_links_sql(host is not None), {"host": host} if host is not None else {}))


EXPORT_TABLES = ("pages", "fetches", "links", "runs", "frontier", "sitemaps")


def table_rows(db: sqlite_utils.Database, name: str) -> tuple[list[str], Iterator[tuple[Any, ...]]]:
    """A table's column names and a lazy iterator over its rows in insertion order (constant memory)."""
    if name not in EXPORT_TABLES:
        raise StorageError(f"cannot export {name!r}: choose one of {', '.join(EXPORT_TABLES)}")
    if name not in db.table_names():
        raise StorageError(f"this database has no {name} table (it was written by an older crawler)")
    cursor = db.execute(f"SELECT * FROM [{name}] ORDER BY rowid")
    return [description[0] for description in cursor.description], iter(cursor)


TOP_COLUMNS = ["url", "size", "status", "content_type", "title"]


def top(db: sqlite_utils.Database, limit: int, host: str | None = None) -> list[dict[str, Any]]:
    """The `limit` largest pages (of `host`, if given), largest first."""
    where = "size IS NOT NULL" + (" AND host = ?" if host is not None else "")
    return list(
        db.query(
            f"SELECT {', '.join(TOP_COLUMNS)} FROM pages WHERE {where} ORDER BY size DESC, url LIMIT ?",
            [*([host] if host is not None else []), limit],
        )
    )


def fetched_any(db: sqlite_utils.Database) -> bool:
    """Whether any request of the crawl got a response (a crawl offline got none)."""
    return db.execute("SELECT 1 FROM pages WHERE status IS NOT NULL LIMIT 1").fetchone() is not None


# PRAGMAs that take an argument and only read: any other PRAGMA with a value sets something.
_READING_PRAGMAS = frozenset({
    "table_info", "table_xinfo", "table_list", "index_list", "index_info", "index_xinfo", "foreign_key_list",
    "foreign_key_check", "integrity_check", "quick_check", "function_list", "pragma_list", "module_list",
    "collation_list", "database_list", "compile_options",
})  # fmt: skip


class _Guard:
    """An SQLite authorizer for `crawler query`: a read-only connection still lets ATTACH create a file, VACUUM
    INTO write one, and a PRAGMA try to change the journal ("disk I/O error"). It refuses them, and remembers
    why, for the message."""

    def __init__(self) -> None:
        self.refused: str | None = None
        self.asked = False  # SQLite compiled something: a blank or comment-only text compiles nothing

    def __call__(self, action: int, arg1: str | None, arg2: str | None, database: str | None,
                 trigger: str | None) -> int:  # fmt: skip
        self.asked = True
        if action == sqlite3.SQLITE_ATTACH:  # VACUUM attaches its output (or a temporary database) too
            self.refused = "ATTACH and VACUUM write other files"
        elif action == sqlite3.SQLITE_DETACH:
            self.refused = "DETACH changes the connection"
        elif action in (sqlite3.SQLITE_TRANSACTION, sqlite3.SQLITE_SAVEPOINT):
            self.refused = "a transaction statement does nothing on its own"
        elif action == sqlite3.SQLITE_PRAGMA and arg2 is not None and (arg1 or "").lower() not in _READING_PRAGMAS:
            self.refused = f"PRAGMA {arg1} = ... changes a setting"
        else:
            return sqlite3.SQLITE_OK
        return sqlite3.SQLITE_DENY


def run_query(db: sqlite_utils.Database, sql: str) -> tuple[list[str], Iterator[tuple[Any, ...]]]:
    """Run one SQL statement; returns its column names and a row iterator. A statement that would write the
    database or any other file (ATTACH, VACUUM INTO, a PRAGMA setting), a transaction statement, or no
    statement at all raises `ReadOnlyError`."""
    guard = _Guard()
    db.conn.set_authorizer(guard)
    isolation = db.conn.isolation_level
    db.conn.isolation_level = None  # no implicit BEGIN before a write: the write itself is refused, and says so
    try:
        cursor = db.execute(sql)
    except sqlite3.DatabaseError as exc:
        if guard.refused is not None:
            raise ReadOnlyError(f"`crawler query` only reads the page database: {guard.refused}") from None
        if "readonly" in str(exc) or "query_only" in str(exc):
            raise ReadOnlyError(f"the database is opened read-only; `crawler query` cannot change it ({exc})") from None
        raise StorageError(f"SQL error: {exc}") from None
    except sqlite3.Error as exc:
        raise StorageError(f"SQL error: {exc}") from None
    finally:
        db.conn.set_authorizer(None)  # statements are authorised as they are compiled: this one is
        db.conn.isolation_level = isolation
    if not guard.asked:
        raise ReadOnlyError('no SQL statement to run: give one, e.g. "SELECT url, size FROM pages"')
    columns = [description[0] for description in cursor.description or []]
    return columns, iter(cursor)
