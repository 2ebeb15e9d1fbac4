"""`crawler serve`: a crawl of the fixture site served by a real Datasette on 127.0.0.1, read-only."""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import json
import os
import re
import shlex
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
import tomllib
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psutil
import pytest

from crawler.site.generate import Resource
from crawler.site.server import SiteServer
from crawler.views.serve import (
    CANNED_QUERIES,
    DEFAULT_PORT,
    HOST,
    DatasetteMissing,
    ServeError,
    datasette_command,
    metadata,
    port_taken,
    serve,
)
from crawler.words import install_hint
from storage import StorageError
from tests.conftest import FAST_RETRIES, TEST_TIMEOUT, page_html, rows, run_cli
from tests.support.media import can_mount_read_only, read_only_copy

pytest.importorskip("datasette", reason=f"Datasette is an optional extra: {install_hint('serve')}")

ROOT = Path(__file__).resolve().parents[1]
START_SECONDS = 30.0
# How soon `serve` must exit after the signal that stops it: well under STOP_SECONDS, so Datasette shut down
# when asked, rather than being killed once that ran out.
PROMPT_SECONDS = 5.0
# Runs serve() as `crawler serve` will, in a process of its own, so that a SIGINT to it is a Ctrl-C.
# It announces the URL as `crawler serve` does, and shows Datasette's log, which the tests read.
SERVE_SCRIPT = (
    "import sys; from pathlib import Path; from crawler.views.serve import serve; "
    "sys.exit(serve(Path(sys.argv[1]), 0, on_ready=lambda url: print(f'at {url}/', flush=True), log=sys.stderr))"
)
# `crawler serve` itself, for the tests of what it does on a signal (with Datasette's log, which they read).
CLI = ["-m", "crawler", "serve", "--port", "0", "--log", "--db"]
# What `crawler serve` prints, and all it prints, while it serves.
SERVING = re.compile(r"at (http://127\.0\.0\.1:\d+)/")
NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # 127.0.0.1 only, whatever the env says


def crawl(db: Path, origin: str) -> None:
    """Crawl a site from `origin`/ into `db` with the asyncio backend (serving is not backend behaviour)."""
    run = run_cli(
        "crawl", f"{origin}/", "--db", str(db), "--backend", "asyncio", "--depth", "5", "--timeout", TEST_TIMEOUT,
        *FAST_RETRIES,
    )  # fmt: skip
    assert run.exit_code == 0, run.stderr


@pytest.fixture(scope="module")
def crawled(site: SiteServer, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A crawl database of the whole fixture site."""
    db = tmp_path_factory.mktemp("serve") / "crawl.db"
    crawl(db, site.origin)
    return db


class Served:
    """A running `serve()`: its base URL, and its process, log and Datasette for the test to look at."""

    def __init__(self, process: subprocess.Popen[str], log: list[str], url: str, datasette: psutil.Process) -> None:
        self.process = process
        self.log = log
        self.url = url
        self.port = int(url.rsplit(":", 1)[1])
        self.datasette = datasette
        arguments = datasette.cmdline()
        self.folder = Path(arguments[arguments.index("--metadata") + 1]).parent  # serve()'s temporary folder

    def get(self, path: str, **params: str) -> tuple[int, Any]:
        """GET `path` with query `params`; the status and the decoded JSON body (or the text if not JSON)."""
        return self.request(path, None, **params)

    def request(self, path: str, data: bytes | None, **params: str) -> tuple[int, Any]:
        """GET, or POST `data`; the status and the decoded body."""
        url = self.url + path + ("?" + urllib.parse.urlencode(params) if params else "")
        try:
            with NO_PROXY.open(urllib.request.Request(url, data=data), timeout=30) as response:
                status, body = response.status, response.read().decode()
        except urllib.error.HTTPError as exc:
            status, body = exc.code, exc.read().decode()
            exc.close()
        try:
            return status, json.loads(body)
        except json.JSONDecodeError:
            return status, body

    def query(self, name: str) -> list[dict[str, Any]]:
        """The rows of a canned query, through Datasette's JSON API."""
        status, body = self.get(f"/crawl/{name}.json", _shape="array")
        assert status == 200, body
        assert isinstance(body, list)
        return body


def _runs_datasette(process: psutil.Process) -> bool:
    """Whether `process` is Datasette (serve's other child, with --open, may be the browser it starts)."""
    try:
        return "datasette" in process.cmdline()
    except psutil.NoSuchProcess:
        return False


@contextmanager
def launched(db: Path, command: list[str] | None = None) -> Iterator[Served]:
    """Run `serve(db, port=0)`, or `command` + [db] with this Python, in a subprocess of its own until Datasette
    answers; on the way out, kill what is left of it and its Datasette."""
    process = subprocess.Popen(
        [sys.executable, *(command or ["-c", SERVE_SCRIPT]), str(db)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # its own process group: a signal to it reaches Datasette only through serve()
    )
    assert process.stdout is not None
    output = process.stdout
    log: list[str] = []
    listening = threading.Event()

    def drain() -> None:  # Datasette logs every request: read on, so that it never blocks on a full pipe
        for line in output:
            log.append(line)
            if SERVING.search(line):
                listening.set()

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    datasette: psutil.Process | None = None
    try:
        deadline = time.monotonic() + START_SECONDS
        while not listening.wait(0.1):
            assert process.poll() is None, "".join(log)
            assert time.monotonic() < deadline, "".join(log)
        match = SERVING.search("".join(log))
        assert match, "".join(log)
        [datasette] = [child for child in psutil.Process(process.pid).children() if _runs_datasette(child)]
        yield Served(process, log, match[1], datasette)
    finally:
        if process.poll() is None or (datasette and not dead(datasette)):
            # serve() did not stop, or not its Datasette: kill them, its process group
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        reader.join(10)
        output.close()


@contextmanager
def served(db: Path, stop_with: signal.Signals = signal.SIGINT, command: list[str] | None = None) -> Iterator[Served]:
    """`launched(db, command)`; on the way out, stop it with `stop_with` (by default a Ctrl-C, as a user would)
    and check that it stopped promptly and cleanly: exit code 0 and no traceback, its Datasette shut down and
    gone, the port closed and the metadata folder removed."""
    with launched(db, command) as server:
        yield server
        served_log = len(server.log)  # what follows is the log of stopping
        if server.process.poll() is None:
            server.process.send_signal(stop_with)
        sent = time.monotonic()
        code = server.process.wait(30)
        took = time.monotonic() - sent
    log = "".join(server.log)
    assert code == 0, log
    assert took < PROMPT_SECONDS, (took, log)
    # (Datasette logs a traceback for a 500, which test_writes_are_refused provokes, so only stopping's log.)
    assert "Traceback" not in "".join(server.log[served_log:]), log
    if len(server.log) > 1:  # Datasette's log was shown (--log): it shut down, not merely orphaned ...
        assert "Finished server process" in log
    else:  # ... or all that was said was where to look
        assert SERVING.search(log), log
    assert not server.datasette.is_running()  # ... and is gone (serve() reaped it: not even a zombie)
    assert not accepts_connections(server.port)
    assert not server.folder.exists()  # its metadata file is gone
    # Datasette's read-only connections leave -wal and -shm files; serve removes them once it has stopped it.
    assert sorted(path.name for path in db.parent.glob(db.name + "*")) == [db.name]


def dead(process: psutil.Process) -> bool:
    """Whether `process` has exited (a zombie has: only its exit status is left for its parent to collect)."""
    try:
        return not process.is_running() or process.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def accepts_connections(port: int) -> bool:
    """Whether something listens on 127.0.0.1:`port`."""
    try:
        socket.create_connection((HOST, port), timeout=5).close()
    except ConnectionRefusedError:
        return False
    return True


def test_serve_says_one_line_and_keeps_datasettes_log_to_itself(crawled: Path) -> None:
    # uvicorn's log used to fill the terminal, and a query Datasette refuses with a 500 printed a traceback.
    command = ["-m", "crawler", "serve", "--port", "0", "--db"]
    with launched(crawled, command) as server:
        for name in CANNED_QUERIES:  # a POST to a canned query: a 500 in Datasette 0.65.5, with a traceback
            server.request(f"/crawl/{name}", b"sql=DELETE+FROM+pages")
        assert server.get("/crawl.json", sql="SELECT count(*) AS n FROM pages")[0] == 200
        server.process.send_signal(signal.SIGINT)
        assert server.process.wait(30) == 0
    assert server.log == [f"Serving {crawled} read-only at {server.url}/ (Ctrl-C to stop)\n"]


def test_datasettes_last_words_are_shown_when_it_dies_by_itself(crawled: Path) -> None:
    # The log kept from the terminal is not lost when it would explain something: Datasette killed under
    # serve() (by the OOM killer, say) ends serve with its exit code, and its last lines of log.
    command = ["-m", "crawler", "serve", "--port", "0", "--db"]
    with launched(crawled, command) as server:
        server.datasette.kill()
        assert server.process.wait(30) == 128 + signal.SIGKILL
    assert server.log[0] == f"Serving {crawled} read-only at {server.url}/ (Ctrl-C to stop)\n"
    assert any(line.startswith("INFO:     Uvicorn running on ") for line in server.log[1:]), server.log


@pytest.fixture(scope="module")
def server(crawled: Path) -> Iterator[Served]:
    """Datasette serving the fixture crawl for this module's tests."""
    with served(crawled) as running:
        yield running


def test_command_serves_on_loopback_from_this_python(tmp_path: Path) -> None:
    db, meta = tmp_path / "my.crawl.db", tmp_path / "m.json"
    command = datasette_command(db, 8123, meta)
    assert command[:4] == [sys.executable, "-m", "datasette", "serve"]
    assert str(db) in command
    assert command[command.index("--host") + 1] == HOST == "127.0.0.1"
    assert command[command.index("--port") + 1] == "8123"
    assert command[command.index("--metadata") + 1] == str(meta)
    assert "--immutable" not in command and "-i" not in command  # a running crawl may still be writing it
    assert "--open" not in command  # serve opens the browser itself: one Datasette started would hold its pipe
    assert datasette_command(db, 8123, meta, immutable=True)[4:6] == ["-i", str(db)]  # read-only media


def test_metadata_describes_tables_and_read_only_queries(tmp_path: Path) -> None:
    meta = metadata(tmp_path / "my.crawl.db")
    assert meta["title"]
    database = meta["databases"]["my.crawl"]  # Datasette names a database after its file, less the extension
    assert set(database["tables"]) == {"pages", "fetches", "links", "sitemaps", "frontier", "runs", "crawl"}
    for table in database["tables"].values():
        assert table["description"]
        assert all(table["columns"].values())
    assert {"url", "final_url", "status", "size", "error_kind"} <= set(database["tables"]["pages"]["columns"])
    assert set(database["queries"]) == {"largest_pages", "errors_by_host", "most_linked_pages", "broken_links"}
    for query in database["queries"].values():
        assert query["title"] and query["description"]
        assert "write" not in query
        assert re.match(r"(SELECT|WITH)\b", query["sql"])
    json.dumps(meta)  # Datasette reads it from a JSON file


def test_canned_queries_answer_exactly(server: Served, crawled: Path, site: SiteServer) -> None:
    largest = server.query("largest_pages")
    expected = rows(crawled, "SELECT url, size FROM pages WHERE size IS NOT NULL ORDER BY size DESC, url")
    assert [(row["url"], row["size"]) for row in largest] == [(row["url"], row["size"]) for row in expected]
    assert largest[0]["url"] == site.url("/docs/ref/intro.html")
    assert largest[0]["size"] == len(site.site["/docs/ref/intro.html"].render(site.origin))
    assert largest[0]["title"] == "Intro"

    # /missing.html answers 404, /broken 500 and /slow.html outlasts the timeout: 3 of the 14 pages.
    assert server.query("errors_by_host") == [
        {"host": "127.0.0.1", "pages": 14, "errors": 3, "error_percent": 21.4, "kinds": "http: 2, timeout: 1"}
    ]

    most_linked = server.query("most_linked_pages")
    # /docs/api.html is linked from / (three spellings, one link) and from the guide (through its <base>).
    assert most_linked[0] == {"url": site.url("/docs/api.html"), "linked_from": 2, "status": 200, "title": "API"}
    assert {row["linked_from"] for row in most_linked[1:]} == {1}
    offsite = [row for row in most_linked if "localhost" in row["url"]]
    assert offsite == [
        {"url": f"http://localhost:{site.port}/offsite.html", "linked_from": 1, "status": None, "title": None}
    ]

    home = site.url("/")
    [timed_out] = rows(crawled, "SELECT error_message FROM pages WHERE error_kind = 'timeout'")
    timeout_message = timed_out["error_message"]
    assert timeout_message
    assert server.query("broken_links") == [
        {
            "from_url": home,
            "url": site.url("/broken"),
            "final_url": site.url("/broken"),
            "status": 500,
            "error_kind": "http",
            "error_message": "HTTP 500 Internal Server Error",
        },
        {
            "from_url": home,
            "url": site.url("/missing.html"),
            "final_url": site.url("/missing.html"),
            "status": 404,
            "error_kind": "http",
            "error_message": "HTTP 404 Not Found",
        },
        {
            "from_url": home,
            "url": site.url("/slow.html"),
            "final_url": site.url("/slow.html"),
            "status": None,
            "error_kind": "timeout",
            "error_message": timeout_message,  # the backend's wording
        },
    ]
    # The redirect /old -> /docs/moved.html (200) is not broken, though /old itself has no page of its own.
    assert site.url("/old") not in {row["url"] for row in server.query("broken_links")}


def test_metadata_is_shown(server: Served) -> None:
    status, served_metadata = server.get("/-/metadata.json")
    assert status == 200
    assert served_metadata["title"] == "Crawl database crawl.db"
    assert set(served_metadata["databases"]["crawl"]["queries"]) == set(CANNED_QUERIES)
    status, home = server.get("/")
    assert status == 200 and "Crawl database crawl.db" in home
    status, database = server.get("/crawl")
    assert all(query["title"] in database for query in CANNED_QUERIES.values())
    status, pages = server.get("/crawl/pages")
    assert status == 200 and "HTTP status; NULL when no response came back" in pages  # a column description


def digest(db: Path) -> tuple[str, list[dict[str, Any]], list[dict[str, Any]]]:
    """The database file's hash and its pages and links, to tell whether anything changed it."""
    return (
        hashlib.sha256(db.read_bytes()).hexdigest(),
        rows(db, "SELECT * FROM pages ORDER BY url"),
        rows(db, "SELECT * FROM links ORDER BY from_url, to_url"),
    )


def test_writes_are_refused(server: Served, crawled: Path) -> None:
    before = digest(crawled)
    # Arbitrary SQL must look like a SELECT ...
    for sql in ["DELETE FROM pages", "UPDATE pages SET title = 'x'", "DROP TABLE links", "PRAGMA journal_mode=delete"]:
        status, body = server.get("/crawl.json", sql=sql)
        assert status == 400 and not body["ok"], (sql, body)
    # ... and one that gets past that check meets a connection SQLite opened read-only.
    status, body = server.get("/crawl.json", sql="WITH x AS (SELECT 1) DELETE FROM pages")
    assert not body["ok"] and body["error"] == "attempt to write a readonly database", body
    status, body = server.get(
        "/crawl.json", sql="WITH x AS (SELECT 1) INSERT INTO links (from_url, to_url) VALUES ('a', 'b')"
    )
    assert not body["ok"] and body["error"] == "attempt to write a readonly database", body
    # POST is how Datasette writes: the SQL page refuses it, and no canned query is a writable one (0.65.5 answers
    # a POST to a read-only canned query with a 500 after running its SELECT; either way nothing is written).
    status, _ = server.request("/crawl", b"sql=DELETE+FROM+pages")
    assert status == 405
    for name in CANNED_QUERIES:
        status, _ = server.request(f"/crawl/{name}", b"sql=DELETE+FROM+pages")
        assert status in {405, 500}, (name, status)
    assert digest(crawled) == before
    assert server.process.poll() is None  # still serving


def test_a_crawl_writing_while_it_serves_shows_up(
    crawled: Path, tmp_path: Path, serve: Callable[..., SiteServer]
) -> None:
    db = tmp_path / "crawl.db"
    shutil.copyfile(crawled, db)
    more = serve({
        "/": Resource(page_html("More", ["/gone"])),
        "/gone": Resource("", status=301, headers={"Location": "/lost.html"}),
    })  # fmt: skip
    with served(db) as server:
        assert len(server.query("broken_links")) == 3
        crawl(db, more.origin)  # the crawler writes while Datasette has the file open
        broken = server.query("broken_links")
    # /gone redirects to /lost.html, which that site does not have: the link to /gone is broken.
    assert len(broken) == 4
    assert {
        "from_url": more.url("/"),
        "url": more.url("/gone"),
        "final_url": more.url("/lost.html"),
        "status": 404,
        "error_kind": "http",
        "error_message": "HTTP 404 Not Found",
    } in broken


def test_serve_explains_what_is_missing_or_unusable(
    crawled: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(StorageError, match="no database"):
        serve(tmp_path / "none.db", 0)
    odd = tmp_path / "50%#1" / "crawl.db"
    odd.parent.mkdir()
    shutil.copyfile(crawled, odd)
    with pytest.raises(ServeError, match="contains"):
        serve(odd, 0)
    monkeypatch.setattr("crawler.views.serve.datasette_installed", lambda: False)
    with pytest.raises(DatasetteMissing, match=re.escape('pip install "datasette<1.0,>=0.65"')):
        serve(crawled, 0)
    assert issubclass(DatasetteMissing, ServeError)
    # From the command line: one line, exit 2, as for any unusable input (it was 1).
    run = run_cli("serve", "--db", str(crawled))
    assert (run.exit_code, run.stderr) == (
        2, 'Error: `crawler serve` needs Datasette, which is not installed: pip install "datasette<1.0,>=0.65"\n'
    )  # fmt: skip


def test_the_install_hints_name_what_the_extras_install() -> None:
    # The hint is read from the installed package's metadata, so it is the extra's requirement as pyproject.toml
    # states it; the README and each command's help give the same command. (Running it would install from
    # PyPI: not in a test.) It was 'pip install "crawler[serve]"', which pip looks for on PyPI, where this is not.
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    for extra, command in (("serve", "serve"), ("bench", "bench")):
        [requirement] = extras[extra]
        hint = install_hint(extra)
        assert _clauses(hint.removeprefix('pip install "').removesuffix('"')) == _clauses(requirement)
        assert hint in (ROOT / "README.md").read_text()
        assert hint in " ".join(run_cli(command, "--help").stdout.replace("│", " ").split())


def _clauses(requirement: str) -> tuple[str, set[str]]:
    name = re.match(r"[A-Za-z0-9_.-]+", requirement)
    assert name is not None, requirement
    return name[0], set(requirement[name.end() :].split(","))


def test_the_demos_serve_hint_runs_as_printed(tmp_path: Path) -> None:
    demo = run_cli("demo", "--pages", "20", "--db", str(tmp_path / "demo.db"), "--quiet")
    hint = demo.stdout.splitlines()[-1].strip()
    words = shlex.split(hint)
    assert words[:2] == ["crawler", "serve"], hint
    if port_taken(DEFAULT_PORT):
        pytest.skip(f"port {DEFAULT_PORT}, which the hint serves on, is in use here")
    # launched() runs this Python with the words given and the database last: the hint's own words.
    with served(Path(words[-1]), signal.SIGINT, ["-m", "crawler", *words[1:-1]]) as server:
        assert server.url == f"http://{HOST}:{DEFAULT_PORT}"
        assert server.get("/-/versions.json")[0] == 200


def test_a_port_in_use_is_one_line_and_exit_2(crawled: Path) -> None:
    # Datasette printed uvicorn's startup log and "address already in use", and exited 3.
    with socket.socket() as taken:
        taken.bind((HOST, 0))
        taken.listen()
        port = taken.getsockname()[1]
        run = run_cli("serve", "--db", str(crawled), "--port", str(port))
    assert (run.exit_code, run.stdout) == (2, "")
    assert run.stderr == f"Error: port {port} on 127.0.0.1 is in use: choose another with --port (0: any free port)\n"


@pytest.mark.parametrize("stop_with", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP], ids=lambda signum: signum.name)
def test_a_signal_stops_it_as_ctrl_c_does(crawled: Path, stop_with: signal.Signals, tmp_path: Path) -> None:
    # SIGTERM (kill, systemd, docker stop) and SIGHUP (the terminal closed) used to kill `crawler serve` alone,
    # leaving Datasette on the port and the metadata folder behind; served() checks that all of it stops. (A
    # copy of the database: the module's server keeps the shared one open, with its -wal and -shm files.)
    db = tmp_path / "crawl.db"
    shutil.copyfile(crawled, db)
    with served(db, stop_with, CLI) as server:
        assert server.get("/-/versions.json")[0] == 200


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="tgkill and /proc/PID/task are Linux's")
@pytest.mark.parametrize("stop_with", [signal.SIGINT, signal.SIGTERM], ids=lambda signum: signum.name)
def test_a_signal_another_thread_receives_still_stops_it(
    crawled: Path, stop_with: signal.Signals, tmp_path: Path
) -> None:
    # The kernel hands a signal sent to a process to any thread that does not block it, and Python runs the
    # handler in the main thread only once that thread wakes: serve's main thread slept on a lock until Datasette
    # exited, so a Ctrl-C that the log reader's or the reaper's thread received was never seen (a CI run hung
    # on it once). Here each signal goes to one of serve's other threads, as the kernel may send it.
    db = tmp_path / "crawl.db"
    shutil.copyfile(crawled, db)
    tgkill = ctypes.CDLL(None, use_errno=True).tgkill
    with served(db, stop_with, CLI) as server:
        pid = server.process.pid
        others = [int(tid) for tid in os.listdir(f"/proc/{pid}/task") if int(tid) != pid]
        assert others, "serve runs no other thread"
        assert tgkill(pid, others[0], int(stop_with)) == 0, os.strerror(ctypes.get_errno())
        server.process.wait(PROMPT_SECONDS)  # served() would send the signal again, to the process


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Datasette dies with its parent on Linux only")
def test_datasette_dies_with_a_killed_serve(crawled: Path) -> None:
    with launched(crawled, CLI) as server:
        try:
            server.process.kill()  # SIGKILL: serve() gets no chance to stop Datasette; the kernel does it
            server.process.wait()
            deadline = time.monotonic() + PROMPT_SECONDS
            # Datasette is now a child of init, which may not reap it (in a container): a zombie is dead enough.
            # Its main thread turns zombie before its other threads have exited and closed its socket: wait
            # for both.
            while not dead(server.datasette) or accepts_connections(server.port):
                assert time.monotonic() < deadline, "Datasette outlived a SIGKILLed serve()"
                time.sleep(0.05)
        finally:
            shutil.rmtree(server.folder)  # what a SIGKILL does leave behind: nothing was left to remove it


def test_open_shows_it_in_the_browser_and_ctrl_c_still_stops_it(
    crawled: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Datasette's --open started the browser with Datasette's output pipe, which serve reads to its end: a
    # browser still running held serve after Ctrl-C. The "browser" here records its URL and runs on 8 s.
    opened = tmp_path / "opened"
    browser = tmp_path / "browser.sh"
    browser.write_text(f'#!/bin/sh\necho "$1" > {shlex.quote(str(opened))}\nsleep 8 &\n')
    browser.chmod(0o755)
    monkeypatch.setenv("BROWSER", str(browser))
    db = tmp_path / "crawl.db"
    shutil.copyfile(crawled, db)
    with served(db, signal.SIGINT, [*CLI[:-1], "--open", "--db"]) as server:
        deadline = time.monotonic() + PROMPT_SECONDS
        while not opened.exists() or not opened.read_text():
            assert time.monotonic() < deadline, "the browser was not started"
            time.sleep(0.05)
        assert opened.read_text() == server.url + "/\n"


@pytest.mark.skipif(not can_mount_read_only(), reason="needs `unshare -m` (root) to mount a read-only file system")
def test_a_database_on_read_only_media_is_served(crawled: Path, tmp_path: Path) -> None:
    # Datasette opened it read-write (mutable), which SQLite cannot do there: a traceback and exit 1. On read-only
    # media nothing can write the file, so serve has Datasette open it immutable.
    mount = tmp_path / "media"
    mount.mkdir()
    with contextlib.closing(sqlite3.connect(crawled)) as conn:
        pages = conn.execute("SELECT count(*) FROM pages").fetchone()[0]
    serve_it = shlex.join([sys.executable, "-m", "crawler", "serve", "--port", "0", "--db", f"{mount}/crawl.db"])
    script = "; ".join([*read_only_copy(mount, crawled), f"exec {serve_it}"])
    with subprocess.Popen(["unshare", "-m", "sh", "-c", script], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True, cwd=tmp_path) as process:  # fmt: skip
        try:
            assert process.stdout is not None
            line = process.stdout.readline()
            match = SERVING.search(line)
            assert match, line + process.stdout.read()
            sql = urllib.parse.urlencode({"sql": "SELECT count(*) AS n FROM pages", "_shape": "array"})
            with NO_PROXY.open(f"{match[1]}/crawl.json?{sql}", timeout=30) as response:
                assert json.loads(response.read()) == [{"n": pages}]
            process.send_signal(signal.SIGINT)
            assert process.wait(30) == 0
            assert process.stdout.read() == ""  # nothing more than the one line
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
