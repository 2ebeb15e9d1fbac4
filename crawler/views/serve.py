"""`crawler serve`: browse a page database in Datasette (an optional extra), on 127.0.0.1 and read-only.

Datasette opens the file as a mutable database, so what a crawl still running writes shows up on the next
request (`--immutable` would promise SQLite the file never changes, which a crawl in WAL mode breaks; only
on read-only media, where nothing can write it and SQLite could not open it otherwise, is it immutable). It
stays read-only all the same: Datasette reads through `mode=ro` connections, accepts only SELECT statements
as arbitrary SQL, and its one write path in 0.65, canned queries marked `write: true`, is never used here.

Stopping. Ctrl-C (SIGINT), SIGTERM and SIGHUP all stop `serve` the same way: Datasette is asked to shut down
(SIGTERM, which uvicorn answers with the same graceful shutdown as Ctrl-C) and killed if it takes longer than
`STOP_SECONDS`; a second signal meanwhile kills it at once. Then the temporary metadata folder is removed and
`serve` returns 0, since a signal is how a server is meant to be stopped (systemd, Docker and supervisord count a
0 after SIGTERM as a clean stop; 128+signum would need configuring as a success). On Linux, Datasette is also
SIGKILLed by the kernel if the process that started it dies without cleaning up (SIGKILL, a crash), so the port
is always freed; only the small metadata folder in the temp directory is then left behind.
"""

from __future__ import annotations

import collections
import contextlib
import ctypes
import importlib.util
import json
import os
import queue
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import webbrowser
from collections.abc import Callable
from pathlib import Path
from types import FrameType, TracebackType
from typing import IO, Any, TextIO

from crawler.engine.signals import handling
from crawler.words import install_hint
from storage import StorageError, broken_links_sql, on_readonly_media, open_readonly
from storage.columns import TABLES, plain

HOST = "127.0.0.1"
DEFAULT_PORT = 8001
SQL_TIME_LIMIT_MS = 20_000  # Datasette's default, 1 s, is short for a join over the links of a large crawl
STOP_SECONDS = 10.0  # after Ctrl-C, SIGTERM or SIGHUP, how long Datasette may take to shut down before it is killed
# The signals that stop `serve` as Ctrl-C does (Windows has no SIGHUP).
STOP_SIGNALS: tuple[signal.Signals, ...] = tuple(
    getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, name)
)
EXITED = 0  # what StopSignals.wait() finds in its queue when Datasette exits (no signal is numbered 0)
WAKE_SECONDS = 0.1  # how soon serve sees a stop signal that a thread other than its main thread received
PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>


class ServeError(Exception):
    """`crawler serve` cannot start; the message is worded for the user."""


class DatasetteMissing(ServeError):
    """Datasette, an optional extra, is not installed in this Python environment."""

    def __init__(self) -> None:
        super().__init__(f"`crawler serve` needs Datasette, which is not installed: {install_hint('serve')}")


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
        table.name: {
            "description": plain(table.rows[0].upper() + table.rows[1:]),
            "columns": {column.name: plain(column.meaning) for column in table.columns},
        }
        for table in TABLES
    }
    tables["pages"]["facets"] = ["host", "status", "error_kind"]
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


def datasette_command(db_path: Path, port: int, metadata_path: Path, immutable: bool = False) -> list[str]:
    """The command line that serves `db_path` with Datasette on 127.0.0.1:`port` (0: any free port), as a
    mutable database (so a crawl may go on writing it) with the metadata in `metadata_path`; `immutable` for a
    file on read-only media, where nothing can write it and SQLite could not open it otherwise."""
    command = [
        sys.executable,
        "-m",
        "datasette",
        "serve",
        "-i" if immutable else "",
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
    return [word for word in command if word]


def port_taken(port: int) -> bool:
    """Whether something already listens on 127.0.0.1:`port` (bound as uvicorn binds, with SO_REUSEADDR)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((HOST, port))
        except OSError:
            return True
        return False


def serve(
    db_path: Path,
    port: int = DEFAULT_PORT,
    open_browser: bool = False,
    on_ready: Callable[[str], None] | None = None,
    log: TextIO | None = None,
) -> int:
    """Serve the page database read-only with Datasette on 127.0.0.1:`port` until it stops, or until Ctrl-C,
    SIGTERM or SIGHUP stops it (see the module's docstring); returns 0 after such a signal, else Datasette's
    exit code (128+signum if a signal killed it), its last lines of log written to `log` or stderr.

    `on_ready(url)` is called once Datasette listens. Datasette's own log (uvicorn's, with a traceback for a
    query it refuses) goes to `log` if given, and is otherwise kept from the terminal.

    Raises `DatasetteMissing` without Datasette, `storage.StorageError` if `db_path` is missing or not a page
    database, and `ServeError` for a path Datasette cannot open."""
    if not datasette_installed():
        raise DatasetteMissing
    open_readonly(db_path).close()  # StorageError, worded for the user, if it is no page database
    db_path = db_path.resolve()
    if any(char in str(db_path) for char in "?#%"):
        # Datasette opens `file:PATH?mode=ro` as a URI, where ? and # end the path and %XX is decoded.
        raise ServeError(f"Datasette cannot open a database whose path contains ?, # or %: {db_path}")
    if port != 0 and port_taken(port):  # Datasette would print uvicorn's log and exit 3
        raise ServeError(f"port {port} on {HOST} is in use: choose another with --port (0: any free port)")
    with StopSignals() as signals, tempfile.TemporaryDirectory(prefix="crawler-serve-") as directory:
        metadata_path = Path(directory) / "metadata.json"
        metadata_path.write_text(json.dumps(metadata(db_path), indent=2))
        if signals.received():
            return 0  # stopped before Datasette started
        command = datasette_command(db_path, port, metadata_path, immutable=on_readonly_media(db_path))

        def ready(url: str) -> None:
            if on_ready is not None:
                on_ready(url)
            if open_browser:  # from here, not Datasette's --open: the browser would inherit Datasette's pipe
                webbrowser.open(url + "/")

        process = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, preexec_fn=die_with_parent()
        )
        assert process.stdout is not None
        output = DatasetteLog(process.stdout, ready, log)
        try:
            stopped = signals.wait(process)
        finally:
            signals.stopping = process  # from here on, a further signal kills Datasette at once
            stop(process)
            output.join(LOG_END_SECONDS)  # a child Datasette started may hold its pipe open
            # Datasette's read-only connections leave the -wal and -shm files behind; the last connection to
            # close, if it may write, removes them (open_readonly's, unless a crawl is still writing).
            with contextlib.suppress(StorageError, sqlite3.Error):
                open_readonly(db_path).close()
        if stopped or signals.received():
            return 0
        if log is None:  # Datasette stopped by itself: its last words say why
            sys.stderr.writelines(output.tail)
        return exit_code(process.returncode)


# uvicorn's line once it listens, which names the address (the port, when Datasette was given port 0).
LISTENING = re.compile(r"Uvicorn running on (http://\S+)")
TAIL_LINES = 20
LOG_END_SECONDS = 1.0


class DatasetteLog:
    """Datasette's output (its log and uvicorn's), read to the end on a thread of its own so that Datasette
    never blocks on a full pipe: the listening line calls `on_ready` with the URL; every line goes to `log`
    if given; the last `TAIL_LINES` are kept, to explain an exit."""

    def __init__(
        self, stream: IO[bytes], on_ready: Callable[[str], None] | None = None, log: TextIO | None = None
    ) -> None:
        self.tail: collections.deque[str] = collections.deque(maxlen=TAIL_LINES)
        self._stream, self._on_ready, self._log = stream, on_ready, log
        self._thread = threading.Thread(target=self._read, name="datasette-log", daemon=True)
        self._thread.start()

    def _read(self) -> None:
        ready = False
        for raw in self._stream:
            line = raw.decode(errors="replace")
            self.tail.append(line)
            if self._log is not None:
                self._log.write(line)
                self._log.flush()
            if not ready and (match := LISTENING.search(line)):
                ready = True
                if self._on_ready is not None:
                    self._on_ready(match[1])
        self._stream.close()

    def join(self, timeout: float) -> None:
        """Wait until Datasette's output has ended (it has exited) and been read, or `timeout` seconds."""
        self._thread.join(timeout)


class StopSignals:
    """While in its `with` block (in the main thread), SIGINT, SIGTERM and SIGHUP are recorded instead of
    raising KeyboardInterrupt or ending the process, so that `serve` stops Datasette and cleans up whenever
    one comes, even while it is starting Datasette; once `stopping` is set, a further one kills Datasette.

    The handlers only put the signal in a queue (`SimpleQueue.put` is reentrant, so safe in a handler) and
    never raise, so no cleanup can be cut short by an exception that a signal raised in the middle of it."""

    def __init__(self) -> None:
        self.events: queue.SimpleQueue[int] = queue.SimpleQueue()
        self.stopping: subprocess.Popen[bytes] | None = None
        self._handlers = contextlib.ExitStack()

    def __enter__(self) -> StopSignals:
        self._handlers.enter_context(handling(STOP_SIGNALS, self._handle))  # an ignored SIGHUP (nohup) stays so
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self._handlers.close()

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        self.events.put(signum)
        if self.stopping is not None:
            self.stopping.kill()  # a second Ctrl-C (or SIGTERM, SIGHUP) while Datasette shuts down

    def received(self) -> bool:
        """Whether a stop signal has come (and not been taken by `wait`)."""
        return not self.events.empty()

    def wait(self, process: subprocess.Popen[bytes]) -> bool:
        """Wait until Datasette exits or a stop signal comes, whichever is first; True for a signal."""

        def reap() -> None:
            process.wait()
            self.events.put(EXITED)

        threading.Thread(target=reap, name="datasette-reaper", daemon=True).start()
        # A signal's handler queues it, but Python runs handlers in the main thread only, and only once it wakes.
        # The kernel may hand the signal to another thread (this reaper, the log reader), which does not wake a
        # main thread asleep on a lock: so it wakes every WAKE_SECONDS to run the handler of such a signal.
        while True:
            with contextlib.suppress(queue.Empty):
                return self.events.get(timeout=WAKE_SECONDS) != EXITED


def die_with_parent() -> Callable[[], None] | None:
    """On Linux, a `preexec_fn` that has the kernel SIGKILL the child (Datasette) when the thread that started
    it ends, as it does when this process is killed with SIGKILL; elsewhere (or without prctl), None.

    PR_SET_PDEATHSIG needs nothing from the parent once set, so it holds however the parent dies, which no
    watchdog in the parent can promise. SIGKILL rather than SIGTERM: Datasette holds nothing that needs a
    graceful shutdown (its connections are read-only), and nobody is left to escalate if it ignored a SIGTERM.
    The usual hazard of preexec_fn, a lock some other thread held at the fork, does not arise in `crawler
    serve`, which has no other thread then (serve's own starts after it); prctl is looked up before the fork,
    so the child only calls it and getppid."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    prctl.argtypes = [ctypes.c_int, ctypes.c_ulong]
    prctl.restype = ctypes.c_int
    parent = os.getpid()

    def preexec() -> None:
        prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL))
        if os.getppid() != parent:  # the parent died before prctl took effect: nobody would stop Datasette
            os._exit(1)

    return preexec


def exit_code(returncode: int) -> int:
    """A process's exit code as a shell reports it: a death by signal N (negative in `Popen`) is 128+N."""
    return 128 - returncode if returncode < 0 else returncode


def stop(process: subprocess.Popen[bytes]) -> None:
    """Stop Datasette: SIGTERM, which uvicorn answers with the graceful shutdown it gives Ctrl-C (and which
    ends it quietly if it comes before uvicorn is up, where a SIGINT would print a traceback), then SIGKILL if
    it has not exited within `STOP_SECONDS`. Does nothing to a process that has already exited."""
    process.terminate()  # a no-op once it has exited
    try:
        process.wait(STOP_SECONDS)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
