"""Signals, as a server takes them: SIGTERM stops a crawl as Ctrl-C does; the first stop request says at
once what it waits for, a second stops within two seconds; everything finished is written either way."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

from crawler.sitegen import Resource
from tests.conftest import FAST_RETRIES, Serve, page_count, page_html, pages_by_url, rows, run_line, wait_for
from tests.test_job import chain_site


def test_sigterm_stops_a_crawl_as_ctrl_c_does(serve: Serve, backend: str, tmp_path: Path) -> None:
    server = serve(chain_site(40, delay=0.05))
    db = tmp_path / "crawl.db"
    process = subprocess.Popen(
        [sys.executable, "-m", "crawler", "crawl", server.url("/"), "--db", str(db), "--backend", backend,
         "--depth", "100", *FAST_RETRIES],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    wait_for("5 pages", lambda: page_count(db) >= 5)
    process.send_signal(signal.SIGTERM)
    stdout, stderr = process.communicate(timeout=30)
    assert process.returncode == 143, stderr
    assert "Interrupted after" in stdout and "Traceback" not in stderr
    hint = stderr.split("To continue: ", 1)[1].strip()
    assert rows(db, "SELECT status FROM runs") == [{"status": "interrupted"}]
    done = rows(db, "SELECT count(*) AS n FROM frontier WHERE state = 'done'")[0]["n"]
    assert done == page_count(db) >= 5
    resumed = run_line(hint)
    assert resumed.exit_code == 0, resumed.stderr
    assert len(pages_by_url(db)) == 41


def test_a_second_ctrl_c_stops_at_once_though_requests_hang(serve: Serve, backend: str, tmp_path: Path) -> None:
    hanging = [f"/hang{index}.html" for index in range(4)]
    server = serve({
        "/": Resource(page_html("Home", ["/a.html", "/b.html", *hanging])),
        "/a.html": Resource(page_html("A", [])),
        "/b.html": Resource(page_html("B", [])),
        **{path: Resource(page_html("Never", []), delay=60) for path in hanging},
    })  # fmt: skip
    db = tmp_path / "crawl.db"
    errors = tmp_path / "stderr.txt"
    with errors.open("w") as stderr_file:
        process = subprocess.Popen(
            [sys.executable, "-m", "crawler", "crawl", server.url("/"), "--db", str(db), "--backend", backend,
             "--timeout", "30", "--concurrency", "8", "--per-host", "8", "--ignore-robots", *FAST_RETRIES],
            stdout=subprocess.PIPE, stderr=stderr_file, text=True,
        )  # fmt: skip
        wait_for("the hanging requests", lambda: {hit.path for hit in server.hits} >= set(hanging))
        wait_for("3 pages written", lambda: page_count(db) >= 3)
        process.send_signal(signal.SIGINT)
        wait_for("the stopping message", lambda: "Stopping (SIGINT)" in errors.read_text(), timeout=1.5)
        assert "Stopping (SIGINT): 4 requests in flight, up to 30 s; press Ctrl-C again to stop now" in (
            errors.read_text()
        )
        time.sleep(0.3)
        assert process.poll() is None  # still waiting for the hanging requests
        second = time.monotonic()
        process.send_signal(signal.SIGINT)
        stdout, _ = process.communicate(timeout=10)
        assert time.monotonic() - second < 2.0
    stderr = errors.read_text()
    assert process.returncode == 130, stderr
    assert "Interrupted after 3 pages" in stdout and "Traceback" not in stderr
    assert f"To continue: crawler crawl --resume --db {db}" in stderr
    assert rows(db, "SELECT status, pages FROM runs") == [{"status": "interrupted", "pages": 3}]
    assert rows(db, "SELECT state, count(*) AS n FROM frontier GROUP BY state ORDER BY state") == [
        {"state": "done", "n": 3}, {"state": "queued", "n": 4},
    ]  # fmt: skip
