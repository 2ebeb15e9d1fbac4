"""The crawl database's schema: every table and column (documented here, for users writing SQL), and the
check that a file is one of ours before anything writes to it."""

from __future__ import annotations

import sqlite3
from pathlib import Path

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
    "unusable_links": int,  # hrefs on the page a browser could not follow either (malformed URLs), or over-long
    "attempts": int,  # fetches made, retries included
    "fetched_at": str,  # UTC, ISO 8601
    "elapsed_ms": float,  # request start to last body byte, of the last attempt
    "backend": str,
    "error_kind": str,  # NULL on success; http, timeout, dns, refused, robots, redirects, ...
    "error_message": str,
    "run_id": int,  # the run that fetched it (runs.id)
    "content_hash": str,  # SHA-1 of the body (and a redirect's Location), hex: how a refresh tells an unchanged page
    "etag": str,  # the validators the server sent, for a refresh's conditional request
    "last_modified": str,
}
# Every fetch of every run: the pages columns, and how the page compared with what the database knew before.
FETCHES_COLUMNS: dict[str, type] = {
    **PAGES_COLUMNS,
    "change": str,  # new, changed or unchanged
    # How a refresh knew the page unchanged without its body: `304` (the server said so) or `lastmod` (a sitemap's
    # lastmod is older than the last fetch: not asked for); `hash` (the same body came again); NULL otherwise.
    "unchanged_by": str,
}
NEW, CHANGED, UNCHANGED = "new", "changed", "unchanged"
# fetches.unchanged_by: how a refresh knew a page unchanged; the first two spared its download.
BY_304, BY_LASTMOD, BY_HASH = "304", "lastmod", "hash"
LINKS_COLUMNS: dict[str, type] = {"from_url": str, "to_url": str, "follow": int}
SITEMAPS_COLUMNS: dict[str, type] = {
    "url": str,
    "run_id": int,
    "status": int,
    "pages": int,  # page URLs it listed
    "sitemaps": int,  # sitemaps it listed (a sitemap index)
    "error_kind": str,
    "error_message": str,
    "fetched_at": str,
}
FRONTIER_COLUMNS: dict[str, type] = {
    "seq": int,  # discovery order, which is crawl order
    "url": str,
    "origin": str,  # scheme://host:port, the unit of politeness and robots.txt
    "depth": int,
    "hops": int,  # redirects followed to reach this URL
    "via": str,  # the redirect chain that led here, one URL a line
    "state": str,  # queued (not yet in pages, including what is in flight), done, or capped (--max-pages-per-host)
    "lastmod": str,  # the <lastmod> a sitemap gave it, while it is queued: a refresh may then not ask for it
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
    "overrides": str,  # JSON object: the settings this run changed from the crawl's stored ones
    "pass": int,  # the pass over the site it belongs to: a new crawl or a refresh starts one, a resume continues it
    "refresh": int,  # 1 when the run was a refresh (conditional requests for the pages known)
    "unchanged": int,  # of its fetches, the pages found unchanged (304, or the same body)
    "changed": int,
    "new": int,
    "bytes_saved": int,  # body bytes a refresh did not download (the known size of each page a 304 or lastmod spared)
}
# The crawl this database holds: one row (id 1), written when a crawl starts, replaced when a new one does.
CRAWL_COLUMNS: dict[str, type] = {
    "id": int,
    "created_at": str,  # UTC, ISO 8601
    "made_by": str,  # the command that created it: crawl or demo (demo replaces only its own databases)
    "seeds": str,  # JSON array: every seed, those added when resuming included
    "settings": str,  # JSON object: every setting of the crawl; a resume continues with these
    "owner_pid": int,  # the live crawl that holds this database, NULL when none does
    "owner_host": str,
    "owner_started": float,  # the owner process's start time (epoch seconds), so a reused pid is not mistaken for it
    "heartbeat_at": str,  # UTC, ISO 8601: the owner writes it every few seconds
}
RUNNING, FINISHED, LIMIT, INTERRUPTED = "running", "finished", "limit", "interrupted"
FAILED, KILLED = "failed", "killed"  # stopped by an error; ended without closing its run (kill -9, power cut)
QUEUED, DONE, CAPPED = "queued", "done", "capped"
LINKS_TO_INDEX = "idx_links_to_url"


def _add_missing(table: sqlite_utils.db.Table, columns: dict[str, type]) -> None:
    """Add the columns a table written by an earlier release lacks (NULL in its rows), with the types the
    schema declares. sqlite-utils' `alter=True` adds columns the same way (`add_column`), but with types guessed
    from a row's values; `create(transform=True)` would copy the whole table to change anything else."""
    known = table.columns_dict
    for name, kind in columns.items():
        if name not in known:
            table.add_column(name, kind)


def _number_passes(db: sqlite_utils.Database) -> None:
    """Give runs recorded before passes were their pass. A crawl that ended unfinished was continued by the
    next run (a resume, which is what a crawl does with queued URLs left); one that finished was not."""
    rows = db.execute("SELECT id, status, pass FROM runs ORDER BY id").fetchall()
    if all(row[2] is not None for row in rows):
        return
    current, previous = 0, FINISHED
    for run_id, status, number in rows:
        current = number if number is not None else current + 1 if previous == FINISHED else current
        previous = status
        db.execute("UPDATE runs SET pass = ? WHERE id = ?", [current, run_id])


def create_schema(db: sqlite_utils.Database) -> None:
    """Create the tables and indexes that are not there yet, and bring a database written by an earlier
    release up to date without losing a row: new columns are added, and its pages become its first history."""
    db.table("pages").create(PAGES_COLUMNS, pk="url", not_null={"final_url", "host", "depth"}, if_not_exists=True)
    pages = db.table("pages")
    _add_missing(pages, PAGES_COLUMNS)
    db.table("runs").create(RUNS_COLUMNS, pk="id", if_not_exists=True)
    _add_missing(db.table("runs"), RUNS_COLUMNS)
    _number_passes(db)
    if "fetches" not in db.table_names():
        db.table("fetches").create(FETCHES_COLUMNS, pk=("run_id", "url"), not_null={"final_url", "host", "depth"})
        columns = ", ".join(f"[{name}]" for name in PAGES_COLUMNS)
        db.execute(f"INSERT INTO fetches ({columns}) SELECT {columns} FROM pages")  # the history kept so far
    db.table("fetches").create_index(["url"], if_not_exists=True)
    db.table("sitemaps").create(SITEMAPS_COLUMNS, if_not_exists=True)
    db.table("crawl").create(CRAWL_COLUMNS, pk="id", if_not_exists=True)
    pages.create_index(["run_id"], if_not_exists=True)
    # No primary key: a page's links are distinct already. The from_url index serves replacing a page's
    # links (its inserts land together, one place per page); the to_url index is built by create_link_index.
    db.table("links").create(LINKS_COLUMNS, if_not_exists=True)
    _add_missing(db.table("links"), LINKS_COLUMNS)
    db.table("links").create_index(["from_url"], if_not_exists=True)
    db.table("pages").create_index(["host"], if_not_exists=True)
    db.table("frontier").create(
        FRONTIER_COLUMNS, pk="seq", not_null={"url", "origin", "depth", "hops", "state"}, if_not_exists=True
    )
    _add_missing(db.table("frontier"), FRONTIER_COLUMNS)
    db.table("frontier").create_index(["url"], unique=True, if_not_exists=True)
    db.table("frontier").create_index(["state", "seq"], if_not_exists=True)
    # The window is refilled origin by origin (what can start now), in crawl order within each.
    db.table("frontier").create_index(["origin", "state", "seq"], if_not_exists=True)


# The columns that mark a table as ours: a file with a table of that name lacking them belongs to someone else.
_SIGNATURES: dict[str, set[str]] = {
    "pages": {"url", "final_url", "host", "status", "size", "depth"},
    "links": {"from_url", "to_url"},
    "frontier": {"seq", "url", "origin", "depth", "state"},
    "runs": {"id", "started_at", "status", "backend"},
    "crawl": {"id", "seeds", "settings", "owner_pid"},
}


class NotOurs(Exception):
    """The path holds something other than a crawl database of ours; the message is worded for the user."""


def check_ours(path: str | Path) -> bool:
    """Whether `path` holds a crawl database (True), or nothing yet (False: absent or an empty file).
    Raises `NotOurs` for anything else: a directory, a file that is not SQLite, a SQLite database of
    someone else's. Reads only: the file is left byte-identical."""
    path = Path(path)
    if path.is_dir():
        raise NotOurs(f"{path} is a directory, not a crawl database")
    if not path.exists():
        return False
    if not path.is_file():
        raise NotOurs(f"{path} is not a regular file")
    if path.stat().st_size == 0:
        return False
    try:
        conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
    except sqlite3.Error as exc:
        raise NotOurs(f"cannot open {path}: {exc}") from None
    try:
        tables = {
            name: {row[1] for row in conn.execute(f"PRAGMA table_info([{name}])")}
            for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
        }
    except sqlite3.DatabaseError as exc:
        raise NotOurs(f"{path} is not a SQLite database ({exc}); choose another --db") from None
    finally:
        conn.close()
    for name, columns in _SIGNATURES.items():
        if name in tables and not columns <= tables[name]:
            raise NotOurs(f"{path} is a SQLite database of something else (its `{name}` table is not a crawl's); "
                          "choose another --db")  # fmt: skip
    if not tables:
        return False
    if "pages" not in tables or "frontier" not in tables:
        raise NotOurs(f"{path} is a SQLite database of something else (no crawl tables); choose another --db")
    return True
