"""Crash-safe resume: the frontier lives in the database, so a crawl killed or interrupted anywhere
continues where it stopped, losing and repeating nothing."""

from __future__ import annotations

import contextlib
import os
import re
import selectors
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil

from crawler.site.generate import Resource, Site, generate_site
from crawler.site.server import SiteServer
from tests.conftest import (
    FAST_RETRIES,
    Serve,
    page_count,
    page_html,
    pages_by_url,
    rows,
    run_cli,
    run_line,
    wait_for,
)
from tests.support.hostile import Hostile, hostile


def slow_site(pages: int, delay: float) -> Site:
    """A generated site whose every answer takes `delay` seconds."""
    return {path: hostile(resource, delay=delay) for path, resource in generate_site(pages, 3).items()}


def start_crawl(
    server: SiteServer, backend: str, db: Path, *extra: str, start_new_session: bool = False
) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "crawler", "crawl", server.url("/"), "--backend", backend, "--db", str(db),
         "--depth", "100", "--max-pages", "5000", "--per-host", "4", *FAST_RETRIES, *extra],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=start_new_session,
    )  # fmt: skip


def wait_for_pages(db: Path, count: int) -> None:
    wait_for(f"{count} pages", lambda: page_count(db) >= count)


def frontier_states(db: Path) -> dict[str, int]:
    return {row["state"]: row["n"] for row in rows(db, "SELECT state, count(*) AS n FROM frontier GROUP BY state")}


def outcome(db: Path, server: SiteServer) -> set[tuple[str, int | None, int | None]]:
    return {(url.removeprefix(server.origin), row["status"], row["size"]) for url, row in pages_by_url(db).items()}


def test_kill_9_mid_crawl_then_resume_loses_nothing(serve: Serve, backend: str, tmp_path: Path) -> None:
    server = serve(slow_site(80, delay=0.02))
    reference = tmp_path / "reference.db"
    complete = start_crawl(server, backend, reference, "--quiet")
    assert complete.communicate(timeout=120) and complete.returncode == 0

    db = tmp_path / "crawl.db"
    process = start_crawl(server, backend, db, "--quiet")
    wait_for_pages(db, 25)
    process.send_signal(signal.SIGKILL)
    process.communicate(timeout=30)
    states = frontier_states(db)
    done_before = {url.removeprefix(server.origin) for url in pages_by_url(db)}
    assert states["done"] == len(done_before) >= 25
    assert states["queued"] > 0  # what was queued and in flight at the kill

    server.hits.clear()
    resumed = start_crawl(server, backend, db)
    stdout, stderr = resumed.communicate(timeout=120)
    assert resumed.returncode == 0, stderr
    assert f"resumed  after {states['done']:,} pages done in earlier runs" in stdout
    # The same pages, sizes and statuses as an uninterrupted crawl; nothing left queued.
    assert outcome(db, server) == outcome(reference, server)
    assert frontier_states(db) == {"done": len(outcome(reference, server))}
    # Pages written before the kill were not fetched again; the rest, in flight at the kill included, were.
    fetched_after = [hit.path for hit in server.hits if hit.path not in ("/robots.txt", "/sitemap.xml")]
    assert not done_before & set(fetched_after)
    assert set(fetched_after) == {page for page, _, _ in outcome(db, server)} - done_before
    # The killed run is closed when the next one starts, with what its pages tell; both own their pages.
    runs = rows(db, "SELECT id, status, pages, cpu_seconds FROM runs ORDER BY id")
    assert [(run["status"], run["pages"]) for run in runs] == [
        ("killed", len(done_before)),
        ("finished", len(set(fetched_after))),
    ]
    assert runs[0]["cpu_seconds"] is None and runs[1]["cpu_seconds"] > 0  # a killed run's CPU time is unknown
    assert rows(db, "SELECT run_id, count(*) AS n FROM pages GROUP BY run_id") == [
        {"run_id": 1, "n": len(done_before)},
        {"run_id": 2, "n": len(set(fetched_after))},
    ]


def test_ctrl_c_stops_gracefully_and_resume_finishes(serve: Serve, backend: str, tmp_path: Path) -> None:
    server = serve(slow_site(60, delay=0.05))
    db = tmp_path / "crawl.db"
    process = start_crawl(server, backend, db)
    wait_for_pages(db, 10)
    process.send_signal(signal.SIGINT)
    stdout, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, stderr
    assert "Interrupted after" in stdout
    assert f"Interrupted: what was fetched is saved. To continue: crawler crawl --resume --db {db}" in stderr
    assert "Traceback" not in stderr
    interrupted = frontier_states(db)
    assert interrupted["done"] == len(rows(db, "SELECT url FROM pages")) and interrupted["queued"] > 0
    assert rows(db, "SELECT status, pages FROM runs") == [{"status": "interrupted", "pages": interrupted["done"]}]

    run = run_cli("crawl", "--resume", "--db", str(db), "--backend", backend, "--depth", "100", "--max-pages", "5000",
                  *FAST_RETRIES)  # fmt: skip
    assert run.exit_code == 0, run.stderr
    assert frontier_states(db) == {"done": len(rows(db, "SELECT url FROM pages"))}
    assert {page for page, status, _ in outcome(db, server) if status == 200} >= {
        path for path, resource in server.site.items() if resource.status == 200
    }


def test_a_second_stop_request_stops_at_once_and_leaves_nothing_behind(
    serve: Serve, backend: str, tmp_path: Path
) -> None:
    # The forced exit skipped the interpreter's exit handlers, multiprocessing's among them: the process backend's
    # resource tracker then printed a warning about 10 "leaked semaphore objects" after the hint.
    server = serve(slow_site(300, delay=0.02))
    db = tmp_path / "crawl.db"
    process = start_crawl(server, backend, db, "--quiet", start_new_session=True)
    wait_for_pages(db, 5)
    started = len(server.hits)
    server.latency = 60.0  # from now on, every request outlasts the test ...
    wait_for("a request started since", lambda: len(server.hits) > started)  # ... so the first stop must wait
    process.send_signal(signal.SIGTERM)  # systemd, docker stop: the crawl waits for what is in flight ...
    assert process.stderr is not None
    with selectors.DefaultSelector() as said:  # not select(): this process may hold more than 1,024 files
        said.register(process.stderr, selectors.EVENT_READ)
        assert said.select(30), "it did not say a word"
    stopping = process.stderr.readline().rstrip("\n")  # nothing follows it until the second signal
    assert process.poll() is None  # still waiting for that request
    process.send_signal(signal.SIGINT)  # ... and Ctrl-C stops it now
    sent = time.monotonic()
    stdout, stderr = process.communicate(timeout=30)
    assert time.monotonic() - sent < 5
    assert process.returncode == 143, stderr
    assert "Interrupted after" in stdout
    [hint] = stderr.splitlines()  # and nothing else: no warning, no traceback
    assert re.fullmatch(r"Stopping \(SIGTERM\): \d+ requests? in flight, up to \d+ s; press Ctrl-C again to stop now",
                        stopping), stopping  # fmt: skip
    assert hint == f"Interrupted: what was fetched is saved. To continue: crawler crawl --resume --db {db}"
    wait_for("no process of the crawl's left", lambda: not session_processes(process.pid), timeout=5)
    server.latency = 0.0
    resumed = run_line(hint.partition("To continue: ")[2])  # as printed
    assert resumed.exit_code == 0, resumed.stderr
    assert frontier_states(db) == {"done": len(rows(db, "SELECT url FROM pages"))}


def session_processes(session: int) -> list[psutil.Process]:
    """The processes still running in `session` (a crawl started in a session of its own, and what it started)."""
    left = []
    for process in psutil.process_iter():
        with contextlib.suppress(psutil.Error, OSError):
            if os.getsid(process.pid) == session and process.status() != psutil.STATUS_ZOMBIE:
                left.append(process)
    return left


def test_max_pages_counts_across_runs(site: SiteServer, backend: str, tmp_path: Path) -> None:
    db = tmp_path / "crawl.db"
    args = ("crawl", site.url("/"), "--backend", backend, "--db", str(db), "--timeout", "0.5", *FAST_RETRIES)
    first = run_cli(*args, "--max-pages", "3")
    assert first.exit_code == 0, first.stderr
    assert len(pages_by_url(db)) == 3
    hint = f"crawler crawl --resume --db {db} --max-pages 6"
    assert f"Stopped at --max-pages 3. To go on: {hint}" in first.stderr
    second = run_line(hint)
    assert second.exit_code == 0, second.stderr
    assert len(pages_by_url(db)) == 6
    assert "resumed  after 3 pages done in earlier runs" in second.stdout
    assert "--max-pages 6 (the crawl had 3)" in second.stderr
    # Nothing more to do at the same limit.
    third = run_cli(*args, "--max-pages", "6")
    assert (third.exit_code, len(pages_by_url(db))) == (0, 6)
    assert "Crawled 0 pages" in third.stdout


def test_restart_and_resume_flags(site: SiteServer, backend: str, tmp_path: Path) -> None:
    db = tmp_path / "crawl.db"
    base = ("--backend", backend, "--db", str(db), "--timeout", "0.5", *FAST_RETRIES)
    assert run_cli("crawl", site.url("/"), *base, "--depth", "0").exit_code == 0
    # A finished crawl is not resumable; the same command crawls anew.
    nothing = run_cli("crawl", "--resume", *base)
    assert (nothing.exit_code, nothing.stderr.strip()) == (2, f"Error: {db} holds no unfinished crawl to resume")
    again = run_cli("crawl", site.url("/"), *base, "--depth", "0")
    assert "Crawled 1 page from 1 seed" in again.stdout and "resumed" not in again.stdout
    # --restart forgets an unfinished crawl and starts from the seeds given.
    assert run_cli("crawl", site.url("/"), *base, "--depth", "5", "--max-pages", "2").exit_code == 0
    assert frontier_states(db)["queued"] > 0
    restarted = run_cli("crawl", site.url("/about.html"), *base, "--depth", "0", "--restart")
    assert "Crawled 1 page from 1 seed" in restarted.stdout and "resumed" not in restarted.stdout
    assert frontier_states(db) == {"done": 1}
    both = run_cli("crawl", "--resume", "--restart", *base)
    assert (both.exit_code, both.stderr.strip()) == (2, "Error: choose one of --resume, --restart and --refresh")


def test_resume_is_the_default_when_the_database_has_an_unfinished_crawl(
    site: SiteServer, backend: str, tmp_path: Path
) -> None:
    db = tmp_path / "crawl.db"
    args = ("--backend", backend, "--db", str(db), "--timeout", "0.5", *FAST_RETRIES)
    run_cli("crawl", site.url("/"), *args, "--max-pages", "2", "--depth", "5")
    run = run_cli("crawl", site.url("/"), *args, "--max-pages", "500")
    assert "resumed  after 2 pages done in earlier runs" in run.stdout
    assert len(pages_by_url(db)) == 14  # depth 5, stored with the crawl, though the second command left it out
    changed = run_cli("crawl", site.url("/"), *args, "--depth", "1", "--restart", "--max-pages", "2")
    assert changed.exit_code == 0
    refused = run_cli("crawl", site.url("/"), *args, "--depth", "3")
    assert (refused.exit_code, refused.stderr.strip()) == (
        2, "Error: --depth cannot change in an unfinished crawl (it is 1); leave it out to continue, "
        "or add --restart to start anew",
    )  # fmt: skip


def test_pages_in_flight_at_ctrl_c_still_hand_on_their_links(serve: Serve, backend: str, tmp_path: Path) -> None:
    server = serve({
        "/": Resource(page_html("Home", ["/hub.html"])),
        "/hub.html": Hostile(page_html("Hub", ["/only-from-hub.html"]), delay=2.0),  # in flight at the interrupt
        "/only-from-hub.html": Resource(page_html("Leaf", [])),
    })  # fmt: skip
    db = tmp_path / "crawl.db"
    process = start_crawl(server, backend, db)
    deadline = time.monotonic() + 30
    while "/hub.html" not in [hit.path for hit in server.hits] and time.monotonic() < deadline:
        time.sleep(0.02)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, stderr
    assert pages_by_url(db)[server.url("/hub.html")]["title"] == "Hub"
    resumed = run_cli("crawl", "--resume", "--db", str(db), "--backend", backend)
    assert resumed.exit_code == 0, resumed.stderr
    assert pages_by_url(db)[server.url("/only-from-hub.html")]["title"] == "Leaf"
