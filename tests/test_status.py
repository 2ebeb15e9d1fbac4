"""`crawler status`: a shared crawl read back from a real PostgreSQL, after a real crawl of loopback sites and
while one runs (a worker killed for real, another started with the command status prints)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from typing import Any

import pytest

from crawler.cluster.server import LocalPostgres
from crawler.site.generate import Resource, Site
from tests.conftest import Serve, page_html, run_cli, run_line
from tests.support.hostile import hostile


def status_of(url: str) -> dict[str, Any]:
    """`crawler status --json`, parsed."""
    run = run_cli("status", "--frontier", url, "--json")
    assert run.exit_code == 0, run.stderr
    data: dict[str, Any] = json.loads(run.stdout)
    return data


def status_text(url: str) -> str:
    run = run_cli("status", "--frontier", url)
    assert run.exit_code == 0, run.stderr
    return run.stdout


def closed_port() -> int:
    """A loopback port nothing listens on (connections to it are refused)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def line_of(text: str, start: str) -> str:
    """The first line of `text` that starts with `start` once indented no more."""
    return next(line.strip() for line in text.splitlines() if line.strip().startswith(start))


LINKS = ["/a.html", "/b.html", "/private.html", "/missing-1.html", "/missing-2.html", "/broken"]


def test_a_finished_crawl_in_exact_numbers_as_text_and_json(frontier_url: str, serve: Serve) -> None:
    gone = f"http://127.0.0.1:{closed_port()}/gone.html"  # its robots.txt refused: the page fails as refused
    site: Site = {
        "/robots.txt": Resource("User-agent: *\nDisallow: /private.html\n", content_type="text/plain"),
        "/": Resource(page_html("Home", [*LINKS, gone])),
        "/a.html": Resource(page_html("A", ["/", "/b.html"])),
        "/b.html": Resource(page_html("B", ["/a.html"])),
        "/private.html": Resource(page_html("Private", [])),
        "/broken": Resource(page_html("Oops", []), status=500),
    }  # and /sitemap.xml: a 404
    server = serve(site)
    run = run_cli("crawl", f"{server.origin}/", "--frontier", frontier_url, "-b", "thread", "--backoff", "0.01", "-q")
    assert run.exit_code == 0, run.stderr

    status = status_of(frontier_url)
    assert status["finished"] is True
    assert status["queue"] == {"queued": 0, "retries_queued": 0, "leased": 0, "done": 8, "capped": 0,
                               "sitemaps_queued": 0, "sitemaps_leased": 0, "sitemaps_done": 1}  # fmt: skip
    assert status["errors"] == {"http": 3, "refused": 1, "robots": 1}  # two 404s and a 500
    assert status["sitemap_errors"] == {"http": 1}
    assert status["hosts"] == {"origins": 2, "robots_pending": 0, "paused": 0, "busy": 0, "in_flight": 0}
    crawl = status["crawl"]
    # Of the 8 pages, 2 were refused by robots.txt without a fetch (one forbidden, one whose host refused the
    # connection to its robots.txt): they spend no page budget.
    assert (crawl["seeds"], crawl["depth"], crawl["max_pages"], crawl["started"]) == (1, 2, 500, 6)
    [worker] = status["workers"]
    assert (worker["backend"], worker["status"], worker["pages"], worker["sitemaps"], worker["leases"]) == (
        "thread", "finished", 8, 1, 0,
    )  # fmt: skip
    assert worker["pages_per_second"] > 0 and worker["since_heartbeat_s"] is None
    assert status["ended"] == {"finished": 1}

    text = status_text(frontier_url)
    assert text.startswith(f"Shared crawl in {frontier_url}: finished (")
    assert line_of(text, "limits") == "limits    depth 2, max-pages 500 (6 started: 1%), per-host 2, delay 0 s"
    assert line_of(text, "pages") == "pages     0 queued, 0 leased, 8 done"
    assert line_of(text, "sitemaps") == "sitemaps  0 queued, 0 leased, 1 done (1 failed: http 1)"
    assert line_of(text, "hosts") == (
        "hosts     2: 0 waiting for robots.txt, 0 paused by Retry-After, 0 with requests in flight (0)"
    )
    assert line_of(text, "errors") == "errors    5 pages of 8: http 3, refused 1, robots 1"
    assert line_of(text, "Workers:") == "Workers: 0 running; ended: 1 finished"
    assert "To continue" not in text


@pytest.mark.parametrize("limit", ["--max-pages", "--max-pages-per-host"])
def test_a_crawl_its_limits_ended_is_finished_with_pages_left(frontier_url: str, serve: Serve, limit: str) -> None:
    flat: Site = {"/": Resource(page_html("Home", [f"/p/{index}.html" for index in range(1, 10)]))}
    servers = [serve(flat, host="127.0.0.1"), serve(flat, host="127.0.0.2")]
    run = run_cli("crawl", *(f"{server.origin}/" for server in servers), "--frontier", frontier_url, limit, "3",
                  "--no-sitemaps", "-q")  # fmt: skip
    assert run.exit_code == 0, run.stderr
    status = status_of(frontier_url)
    queue, crawl = status["queue"], status["crawl"]
    assert status["finished"] is True
    if limit == "--max-pages":
        assert (crawl["max_pages"], crawl["started"], crawl["budget_used"], queue["done"]) == (3, 3, 1.0, 3)
        assert queue["queued"] == 20 - 3 and status["ended"] == {"limit": 1}
    else:  # 3 pages of each host; the others capped, none left queued
        assert (crawl["started"], queue["done"], queue["capped"], queue["queued"]) == (6, 6, 20 - 6, 0)
        assert status["ended"] == {"finished": 1}
        assert "6 done, 14 capped" in line_of(status_text(frontier_url), "pages")


def test_a_running_crawl_its_live_worker_then_a_killed_one_lost(frontier_url: str, serve: Serve) -> None:
    pages = 30
    flat: Site = {
        "/": Resource(page_html("Home", [f"/p/{index}.html" for index in range(1, pages)])),
        **{f"/p/{index}.html": Resource(page_html(f"Page {index}", [])) for index in range(1, pages)},
    }
    paused = {**flat, "/p/1.html": hostile(flat["/p/1.html"], failures=(503,), retry_after="2")}
    servers = [serve(flat, host="127.0.0.1"), serve(paused, host="127.0.0.2")]
    for server in servers:
        server.latency = 0.5
    first = subprocess.Popen(
        [sys.executable, "-m", "crawler", "crawl", *(f"{server.origin}/" for server in servers), "--frontier",
         frontier_url, "--concurrency", "4", "--lease-seconds", "1", "--no-sitemaps", "-q"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while True:  # a live worker holding leases, requests in flight, the 503's host paused by its Retry-After
            run = run_cli("status", "--frontier", frontier_url, "--json")
            if run.exit_code == 0:
                status = json.loads(run.stdout)
                live = [w for w in status["workers"] if w["status"] == "running" and w["leases"] > 0
                        and not w["heartbeat_missed"]]  # fmt: skip
                if live and status["hosts"]["busy"] and status["hosts"]["paused"] == 1:
                    break
            assert time.monotonic() < deadline, (run.stderr, run.stdout)
            time.sleep(0.05)
        [worker] = live
        assert (worker["backend"], worker["concurrency"], worker["pid"]) == ("asyncio", 4, first.pid)
        assert worker["since_heartbeat_s"] <= worker["lease_seconds"] == 1
        assert status["queue"]["leased"] <= worker["leases"] <= 4  # pages, and a robots.txt perhaps
        assert status["hosts"]["in_flight"] >= status["hosts"]["busy"] >= 1
        assert status["finished"] is False
        text = status_text(frontier_url)
        assert ": running (" in text.splitlines()[0]
        row = next(line.split() for line in text.splitlines() if line.split()[:1] == [str(worker["id"])])
        assert row[1:4] == [f"{worker['machine']}:{first.pid}", "asyncio", "4"]

        # Killed while it surely holds pages: they take 2 s to answer from now, and it is killed as soon as a
        # snapshot shows it holding some (a worker may hold none for a moment, between two pages).
        for server in servers:
            server.latency = 2.0
        time.sleep(0.6)  # the pages asked for before are answered
        while status_of(frontier_url)["queue"]["leased"] == 0:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        os.killpg(first.pid, signal.SIGKILL)
        first.communicate(timeout=30)
    finally:
        if first.poll() is None:
            os.killpg(first.pid, signal.SIGKILL)
            first.communicate(timeout=30)
    for server in servers:
        server.latency = 0.0

    # Its lease time (1 s) passes: status says so, yet only reads, so the worker stays `running`, leases held.
    deadline = time.monotonic() + 10
    while not (missed := status_of(frontier_url))["workers"][0]["heartbeat_missed"]:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    dead = missed["workers"][0]
    assert dead["status"] == "running" and dead["since_heartbeat_s"] > 1
    assert dead["leases"] >= missed["queue"]["leased"] > 0
    text = status_text(frontier_url)
    assert ": stalled (" in text.splitlines()[0]
    assert line_of(text, str(dead["id"])).endswith(" s ago, missed")
    hint = line_of(text, "No worker is alive.")
    assert hint == f"No worker is alive. To continue: crawler worker --frontier {frontier_url}"

    # The line it printed, run verbatim: a worker that declares the killed one lost and finishes the crawl.
    continued = run_line(hint.partition("To continue: ")[2], timeout=60)
    assert continued.exit_code == 0, continued.stderr
    status = status_of(frontier_url)
    assert status["finished"] is True
    assert status["queue"]["done"] == 2 * pages and status["queue"]["queued"] == status["queue"]["leased"] == 0
    assert status["errors"] == {}
    assert status["ended"] == {"finished": 1, "lost": 1}
    lost, second = status["workers"]
    assert (lost["id"], lost["status"]) == (dead["id"], "lost")
    assert second["status"] == "finished" and lost["pages"] + second["pages"] == 2 * pages
    text = status_text(frontier_url)
    assert line_of(text, "Workers:") == "Workers: 0 running; ended: 1 finished, 1 lost"
    assert line_of(text, "lost:").startswith(f"lost: worker {lost['id']} on {lost['machine']}:{lost['pid']} (asyncio)")


def test_an_unreachable_frontier_is_one_line_and_exit_2(postgres: LocalPostgres) -> None:
    unused = f"postgresql://crawler:secret@127.0.0.1:{closed_port()}/nothing"
    for args in (["status", "--frontier", unused], ["status", "--frontier", unused, "--json"]):
        run = run_cli(*args)
        assert run.exit_code == 2 and run.stdout == ""
        assert run.stderr.startswith("Error: cannot reach the frontier postgresql://crawler:***@127.0.0.1:")
        assert len(run.stderr.strip().splitlines()) == 1


def test_a_database_without_a_crawl_is_one_line_and_exit_2(frontier_url: str) -> None:
    run = run_cli("status", "--frontier", frontier_url, "--json")
    assert run.exit_code == 2 and run.stdout == ""
    assert run.stderr == f"Error: {frontier_url} holds no crawl\n"


NO_PSYCOPG = """
import sys
from typer.testing import CliRunner
from crawler.commands import app
result = CliRunner().invoke(app, sys.argv[1:])
print(result.exit_code, sys.modules.get("psycopg") is not None)  # a hidden psycopg is None there
print(result.output)
"""


@pytest.mark.parametrize("hidden", [False, True])
def test_psycopg_is_imported_only_to_run_it(hidden: bool) -> None:
    script = ("import sys; sys.modules['psycopg'] = None\n" if hidden else "") + NO_PSYCOPG
    args = ["status", "--frontier", "postgresql://nobody@127.0.0.1/x"] if hidden else ["status", "--help"]
    done = subprocess.run([sys.executable, "-c", script, *args], capture_output=True, text=True, timeout=60,
                          check=True)  # fmt: skip
    code, imported = done.stdout.split()[:2]
    assert (code, imported) == ("2" if hidden else "0", "False")
    if hidden:
        assert "a shared frontier needs psycopg" in done.stdout and "pip install" in done.stdout
