"""`crawler serve`: browse a page database in Datasette (an optional extra), on 127.0.0.1 and read-only.

Datasette opens the file as a mutable database, so what a crawl still running writes shows up on the next
request (`--immutable` would promise SQLite the file never changes, which a crawl in WAL mode breaks). It
stays read-only all the same: Datasette reads through `mode=ro` connections, accepts only SELECT statements
as arbitrary SQL, and its one write path in 0.65, canned queries marked `write: true`, is never used here.
"""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from storage import broken_links_sql, open_readonly

HOST = "127.0.0.1"
DEFAULT_PORT = 8001
INSTALL_HINT = 'pip install "crawler[serve]"'
SQL_TIME_LIMIT_MS = 20_000  # Datasette's default, 1 s, is short for a join over the links of a large crawl
STOP_SECONDS = 10.0  # after Ctrl-C, how long Datasette may take to shut down before it is terminated


class ServeError(Exception):
    """`crawler serve` cannot start; the message is worded for the user."""


class DatasetteMissing(ServeError):
    """Datasette, an optional extra, is not installed in this Python environment."""

    def __init__(self) -> None:
        super().__init__(f"`crawler serve` needs Datasette, which is not installed: {INSTALL_HINT}")


PAGES_DESCRIPTIONS: dict[str, str] = {
    "url": "The URL requested, in canonical form (the primary key)",
    "final_url": "For a redirect, where its chain ended (or its target, if that was not crawled); else url",
    "host": "Host of url, without the port",
    "status": "HTTP status; NULL when no response came back (or robots.txt kept the crawler away)",
    "content_type": "The Content-Type header as sent",
    "size": "Body size in bytes, after content-encoding (gzip...) is decoded; NULL without a response",
    "truncated": "1 when the body was cut at --max-size",
    "title": "The <title>, whitespace collapsed; NULL if none or not HTML",
    "depth": "Link hops from the seed (seeds are 0; a redirect target keeps its redirect's depth)",
    "link_count": "Distinct outgoing http(s) links on the page",
    "attempts": "Requests made for it, retries included (0: not fetched, see error_kind)",
    "fetched_at": "When the fetch finished, UTC, ISO 8601",
    "elapsed_ms": "From sending the (last) request to the last byte of the body, in milliseconds",
    "backend": "The concurrency backend that fetched it",
    "error_kind": (
        "NULL on success; http (status 400 or more), timeout, dns, refused, connection, incomplete, "
        "redirects, robots, invalid-url, decoding or error"
    ),
    "error_message": "What went wrong, e.g. HTTP 404 Not Found",
    "run_id": "The crawl run that fetched it (runs.id)",
}
LINKS_DESCRIPTIONS: dict[str, str] = {
    "from_url": "The page the link is on (pages.url)",
    "to_url": "Where it points, canonical, so it joins pages.url when the target was crawled",
}
FRONTIER_DESCRIPTIONS: dict[str, str] = {
    "seq": "Discovery order, which is crawl order",
    "url": "Canonical URL",
    "origin": "scheme://host:port, the unit of politeness and robots.txt",
    "depth": "Link hops from the seed",
    "hops": "Redirects followed to reach this URL",
    "via": "The redirect chain that led here, one URL a line",
    "state": "queued (not in pages yet, including what was in flight) or done",
}
RUNS_DESCRIPTIONS: dict[str, str] = {
    "id": "Run number, in the order the runs started",
    "started_at": "When the run started, UTC, ISO 8601",
    "ended_at": "When it ended, UTC, ISO 8601; NULL while running (or if the process was killed)",
    "status": "running, finished, limit (stopped at --max-pages), interrupted or killed",
    "backend": "The concurrency backend",
    "parser": "The HTML parser",
    "concurrency": "Requests in flight at most",
    "per_host": "Requests in flight per host at most",
    "seeds": "The seed URLs, a JSON array",
    "settings": "The crawl settings, a JSON object",
    "pages": "Pages written by this run",
    "errors": "Of which errors",
    "bytes": "Body bytes fetched",
    "elapsed_s": "Wall-clock seconds",
    "pages_per_second": "Pages written per second of wall-clock time",
    "latency_p50_ms": "Median fetch time, in milliseconds",
    "latency_p95_ms": "95th percentile fetch time, in milliseconds",
    "fetch_seconds": "Seconds spent fetching, summed over fetches",
    "cpu_seconds": "CPU seconds, worker processes included",
    "peak_rss_mb": "Peak resident memory of the process tree, in MB",
    "parse_seconds": "Seconds spent parsing HTML",
    "store_seconds": "Seconds spent writing the database",
}

CANNED_QUERIES: dict[str, dict[str, str]] = {
    "largest_pages": {
        "title": "Largest pages",
        "description": "Pages by body size, largest first.",
        "sql": """SELECT url, size, status, content_type, title
FROM pages
WHERE size IS NOT NULL
ORDER BY size DESC, url""",
    },
    "errors_by_host": {
        "title": "Errors by host",
        "description": (
            "For each host with at least one failed page: pages crawled, errors, the share of errors and "
            "the count of each kind of error. A failed page has an error_kind (HTTP 400 or more, timeout, ...)."
        ),
        "sql": """SELECT host,
  count(*) AS pages,
  count(error_kind) AS errors,
  round(100.0 * count(error_kind) / count(*), 1) AS error_percent,
  (SELECT group_concat(kind, ', ') FROM (
    SELECT e.error_kind || ': ' || count(*) AS kind FROM pages e
    WHERE e.host = pages.host AND e.error_kind IS NOT NULL
    GROUP BY e.error_kind ORDER BY count(*) DESC, e.error_kind
  )) AS kinds
FROM pages
GROUP BY host
HAVING count(error_kind) > 0
ORDER BY errors DESC, host""",
    },
    "most_linked_pages": {
        "title": "Most linked pages",
        "description": (
            "URLs by the number of other pages linking to them, whether crawled or not (a link to itself "
            "does not count); status and title when the target was crawled."
        ),
        # Counting first, then joining pages to each target once, is several times faster than joining
        # every link (MATERIALIZED keeps SQLite from flattening it back into that).
        "sql": """WITH counts AS MATERIALIZED (
  SELECT to_url, count(*) AS linked_from FROM links WHERE from_url != to_url GROUP BY to_url
)
SELECT c.to_url AS url, c.linked_from, p.status, p.title
FROM counts c
LEFT JOIN pages p ON p.url = c.to_url
ORDER BY c.linked_from DESC, c.to_url""",
    },
    "broken_links": {
        "title": "Broken links",
        "description": (
            "Links whose target, after its redirects, answered 400 or more or failed (timeout, DNS, "
            "robots.txt...): the page with the link, the link, where it ended and what went wrong."
        ),
        "sql": broken_links_sql(),
    },
}


def database_name(db_path: Path) -> str:
    """The name Datasette gives the database: the file name without its extension."""
    return db_path.stem


def metadata(db_path: Path) -> dict[str, Any]:
    """Datasette metadata for a page database: title, descriptions of the tables and their columns, and
    the canned queries (read-only SELECTs) under the database's name."""
    tables: dict[str, dict[str, Any]] = {
        "pages": {
            "description": "One row per URL taken from the frontier: its status, size, title, timing or error.",
            "columns": PAGES_DESCRIPTIONS,
            "facets": ["host", "status", "error_kind"],
        },
        "links": {
            "description": "One row per distinct link found on a successful HTML page, whether or not it was followed.",
            "columns": LINKS_DESCRIPTIONS,
        },
        "frontier": {
            "description": "Every in-scope URL the crawl has found, in discovery (and crawl) order.",
            "columns": FRONTIER_DESCRIPTIONS,
        },
        "runs": {
            "description": "One row per crawl run (a crawl and each --resume of it), with its settings and figures.",
            "columns": RUNS_DESCRIPTIONS,
        },
    }
    return {
        "title": f"Crawl database {db_path.name}",
        "description": (
            "Pages fetched by `crawler crawl`, the links between them and the crawl frontier, served read-only. "
            "Run any SELECT, or start from the queries below."
        ),
        "databases": {
            database_name(db_path): {
                "description": f"The page database {db_path.name}.",
                "tables": tables,
                "queries": {name: dict(query) for name, query in CANNED_QUERIES.items()},
            }
        },
    }


def datasette_installed() -> bool:
    """Whether Datasette can be imported by this Python interpreter (the one `serve` runs it with)."""
    return importlib.util.find_spec("datasette") is not None


def datasette_command(db_path: Path, port: int, metadata_path: Path, open_browser: bool = False) -> list[str]:
    """The command line that serves `db_path` with Datasette on 127.0.0.1:`port` (0: any free port), as a
    mutable database (so a crawl may go on writing it) with the metadata in `metadata_path`."""
    command = [
        sys.executable,
        "-m",
        "datasette",
        "serve",
        str(db_path),
        "--host",
        HOST,
        "--port",
        str(port),
        "--metadata",
        str(metadata_path),
        "--setting",
        "sql_time_limit_ms",
        str(SQL_TIME_LIMIT_MS),
    ]
    if open_browser:
        command.append("--open")
    return command


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def serve(db_path: Path, port: int = DEFAULT_PORT, open_browser: bool = False) -> int:
    """Serve the page database read-only with Datasette on 127.0.0.1:`port` until it stops or the user
    presses Ctrl-C; returns Datasette's exit code (0 after Ctrl-C). Raises `DatasetteMissing` without
    Datasette, `storage.StorageError` if `db_path` is missing or not a page database, and `ServeError` for
    a path Datasette cannot open."""
    if not datasette_installed():
        raise DatasetteMissing
    open_readonly(db_path).close()  # StorageError, worded for the user, if it is no page database
    db_path = db_path.resolve()
    if any(char in str(db_path) for char in "?#%"):
        # Datasette opens `file:PATH?mode=ro` as a URI, where ? and # end the path and %XX is decoded.
        raise ServeError(f"Datasette cannot open a database whose path contains ?, # or %: {db_path}")
    if open_browser and port == 0:
        port = free_port()  # the browser needs the real port, which Datasette only learns when it listens
    with tempfile.TemporaryDirectory(prefix="crawler-serve-") as directory:
        metadata_path = Path(directory) / "metadata.json"
        metadata_path.write_text(json.dumps(metadata(db_path), indent=2))
        process = subprocess.Popen(datasette_command(db_path, port, metadata_path, open_browser))
        try:
            return process.wait()
        except KeyboardInterrupt:
            return 0  # Ctrl-C is how a server is stopped
        finally:
            stop(process)


def stop(process: subprocess.Popen[bytes]) -> None:
    """Stop Datasette as Ctrl-C does (a terminal sends it to Datasette too, but a signal to this process
    alone does not), wait for it to shut down, and terminate it, then kill it, if that takes too long."""
    if process.poll() is None and os.name == "posix":
        process.send_signal(signal.SIGINT)
    for ask in (process.terminate, process.kill):
        try:
            process.wait(STOP_SECONDS)
            return
        except subprocess.TimeoutExpired:
            ask()
    process.wait()
