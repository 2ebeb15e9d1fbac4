"""Fixtures: a hand-written site on a real loopback server (a `HostileServer`, so that a test's site may hold
`Hostile` resources), and a way to run the CLI on every backend."""

from __future__ import annotations

import os
import shlex
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from crawler.commands import app
from crawler.site.generate import NETLOC, ORIGIN, PORT, Resource, Site
from fetchers import BACKENDS
from fetchers.base import http_environment
from tests.support.hostile import Hostile, HostileServer, serve_hostile

pytest_plugins = ["tests.support.postgres"]  # the `postgres` and `frontier_url` fixtures

# The tests signal the processes they start as a terminal would (Ctrl-C, a hang-up). Run as a background job of
# a script (which ignores SIGINT) or under nohup (SIGHUP), this process would hand those signals on ignored, and
# the crawler's commands rightly leave an ignored signal ignored; so the tests run as if from a terminal.
for _signum, _handler in ((signal.SIGINT, signal.default_int_handler), (signal.SIGHUP, signal.SIG_DFL)):
    if signal.getsignal(_signum) == signal.SIG_IGN:
        signal.signal(_signum, _handler)

BIG = 50_000
SLOW_DELAY = 4.0
TEST_TIMEOUT = "0.5"  # --timeout for crawls of the fixture site: /slow.html outlasts it
FAST_RETRIES = ("--backoff", "0.01")  # retries still happen, without waiting seconds for them


def page_html(title: str, links: list[str], filler: int = 0, head: str = "") -> str:
    """A small HTML page with a title, `head` markup, links and `filler` bytes of text."""
    anchors = "".join(f'<a href="{href}">{href}</a>\n' for href in links)
    return (
        f"<!DOCTYPE html><html><head><title>{title}</title>{head}</head>"
        f"<body>\n{anchors}<p>{'x' * filler}</p></body></html>"
    )


def fixture_site() -> Site:
    """A small site whose every page, size, status and link is known; depths from `/` in comments."""
    return {
        # depth 0
        "/": Resource(
            page_html(
                "Home",
                [
                    "about.html",  # document-relative
                    "./docs/../about.html#team",  # the same page: dot segments and a fragment
                    "/docs/guide.html",  # root-relative
                    f"{ORIGIN}/docs/api.html",  # absolute
                    f"HTTP://{NETLOC}/docs/api.html",  # the same page: upper-case scheme
                    f"//{NETLOC}/docs/api.html#x",  # the same page: protocol-relative
                    "/missing.html",
                    "/broken",
                    "/files/report.pdf",
                    "/old",
                    "/slow.html",
                    f"http://localhost:{PORT}/offsite.html",  # another host (same server)
                    "mailto:team@example.invalid",
                    "javascript:void(0)",
                    "tel:+100",
                    "http://[::1/bad",
                ],
            )
        ),
        # depth 1
        "/about.html": Resource(page_html("About   us\n", ["/"], filler=1000)),
        "/docs/guide.html": Resource(
            '<html><head><base href="/docs/ref/"><title>Guide</title></head>'
            '<body><a href="intro.html">intro</a> <a href="../api.html">api</a></body></html>'
        ),
        "/docs/api.html": Resource(page_html("API", ["?v=2", "deep/one.html"])),
        "/broken": Resource(page_html("Oops", ["/never-followed.html"]), status=500),
        "/files/report.pdf": Resource(
            b"%PDF-1.4 <a href='/never.html'>" + b"\0" * 2000, content_type="application/pdf"
        ),
        "/old": Resource("", status=301, headers={"Location": "/docs/moved.html"}),
        "/docs/moved.html": Resource(page_html("Moved", [])),  # only reachable through the redirect, at depth 1
        "/slow.html": Hostile(page_html("Slow", []), delay=SLOW_DELAY),
        # depth 2
        "/docs/ref/intro.html": Resource(page_html("Intro", [], filler=BIG)),
        "/docs/api.html?v=2": Resource(page_html("API v2", [])),
        "/docs/deep/one.html": Resource(page_html("One", ["two.html"])),
        # depth 3
        "/docs/deep/two.html": Resource(page_html("Two", [])),
        # only reachable with --any-host, through http://localhost:PORT
        "/offsite.html": Resource(page_html("Offsite", [])),
    }


@pytest.fixture(scope="session")
def site() -> Iterator[HostileServer]:
    """The fixture site, served on 127.0.0.1 for the whole session."""
    with serve_hostile(fixture_site()) as server:
        yield server


Serve = Callable[..., HostileServer]


@pytest.fixture
def serve() -> Iterator[Serve]:
    """Start servers for this test only: `serve(site)` or `serve(site, host="127.0.0.2")`; a site may hold
    `Hostile` resources."""
    with ExitStack() as stack:
        yield lambda site, **kwargs: stack.enter_context(serve_hostile(site, **kwargs))


@pytest.fixture
def plain_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """None of the variables HTTP clients read (proxies, NETRC, CA bundles), and a HOME in `tmp_path`, without
    a netrc file: whatever the machine has."""
    for name in http_environment():
        monkeypatch.delenv(name)
    monkeypatch.setenv("HOME", str(tmp_path))


@pytest.fixture(params=list(BACKENDS))
def backend(request: pytest.FixtureRequest) -> str:
    """Each test that takes `backend` runs once per fetch backend."""
    return str(request.param)


@dataclass
class Run:
    """What a CLI invocation left behind."""

    exit_code: int
    stdout: str
    stderr: str


def run_cli(*args: str, cwd: Path | None = None, columns: int = 200) -> Run:
    """Run `crawler ARGS`: in-process through Typer's runner, or as a subprocess when gevent is chosen, so
    that its monkey patching never reaches the test process. Help is rendered `columns` wide."""
    env = {"COLUMNS": str(columns)}
    if "gevent" in args:
        done = subprocess.run(
            [sys.executable, "-m", "crawler", *args],
            capture_output=True,
            text=True,
            cwd=cwd,
            env={**os.environ, **env, "PYTHONWARNINGS": "error"},
            timeout=120,
            check=False,
        )
        return Run(done.returncode, done.stdout, done.stderr)
    if cwd is not None:
        previous = Path.cwd()
        os.chdir(cwd)
    try:
        result = CliRunner().invoke(app, list(args), env=env, catch_exceptions=False, prog_name="crawler")
    finally:
        if cwd is not None:
            os.chdir(previous)
    return Run(result.exit_code, result.stdout, result.stderr)


def run_line(line: str, timeout: float = 120, cwd: Path | None = None) -> Run:
    """Run a command line the tool printed for the user, verbatim, as a subprocess (`crawler` is this
    Python's `-m crawler`), in `cwd` (by default the tests' own)."""
    words = shlex.split(line)
    assert words[0] == "crawler", line
    done = subprocess.run([sys.executable, "-m", "crawler", *words[1:]], capture_output=True, text=True, cwd=cwd,
                          env={**os.environ, "PYTHONWARNINGS": "error"}, timeout=timeout, check=False)  # fmt: skip
    return Run(done.returncode, done.stdout, done.stderr)


def crawl_process(*args: str) -> subprocess.Popen[str]:
    """`crawler crawl ARGS` (retries without long waits) as a subprocess, its output piped."""
    return subprocess.Popen(
        [sys.executable, "-m", "crawler", "crawl", *args, *FAST_RETRIES],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def wait_for(condition: str, check: Callable[[], bool], timeout: float = 60) -> None:
    """Poll `check` until it holds (a database being written may be locked meanwhile); fail after `timeout`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except sqlite3.Error:
            pass
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {condition}")


def page_count(db: Path) -> int:
    """Rows in `pages` (0 before the database exists)."""
    return len(rows(db, "SELECT url FROM pages")) if db.exists() else 0


def rows(db: Path, sql: str = "SELECT * FROM pages") -> list[dict[str, Any]]:
    """Rows of a query on a crawl database, as dicts (the connection closed: `with` on one only commits)."""
    with closing(sqlite3.connect(db)) as conn:
        conn.row_factory = sqlite3.Row
        return [dict(row) for row in conn.execute(sql)]


def pages_by_url(db: Path) -> dict[str, dict[str, Any]]:
    """The `pages` table keyed by URL."""
    return {row["url"]: row for row in rows(db)}
