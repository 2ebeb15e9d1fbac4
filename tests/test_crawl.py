"""The crawl end to end, on every backend, against the fixture site on a real loopback server."""

from __future__ import annotations

import base64
import json
import shutil
import socket
import subprocess
import sys
import time
import uuid
from collections import Counter
from pathlib import Path

import pytest
from aiohttp import web

from crawler.engine.config import DEFAULT_PARSER
from crawler.site.generate import Resource, generate_site
from crawler.site.server import NOT_FOUND, SiteServer, serve_in_thread
from fetchers import BACKENDS
from parsers import get_parser
from tests.conftest import BIG, FAST_RETRIES, TEST_TIMEOUT, Serve, page_html, pages_by_url, rows, run_cli

FULL_SITE = [
    "/",
    "/about.html",
    "/docs/guide.html",
    "/docs/api.html",
    "/missing.html",
    "/broken",
    "/files/report.pdf",
    "/old",
    "/slow.html",
    "/docs/moved.html",
    "/docs/ref/intro.html",
    "/docs/api.html?v=2",
    "/docs/deep/one.html",
    "/docs/deep/two.html",
]


def crawl_site(site: SiteServer, backend: str, db: Path, *extra: str) -> tuple[str, str]:
    """Crawl the fixture site from `/`; returns (stdout, the unique User-Agent it used)."""
    agent = f"crawler-test/{uuid.uuid4()}"
    run = run_cli(
        "crawl",
        site.url("/"),
        "--backend",
        backend,
        "--db",
        str(db),
        "--timeout",
        TEST_TIMEOUT,
        "--user-agent",
        agent,
        *FAST_RETRIES,
        *extra,
    )
    assert run.exit_code == 0, run.stderr
    return run.stdout, agent


def size_of(site: SiteServer, path: str) -> int:
    return len(site.site[path].render(site.origin))


def test_full_crawl_records_every_page_exactly(site: SiteServer, backend: str, tmp_path: Path) -> None:
    db = tmp_path / "crawl.db"
    stdout, agent = crawl_site(site, backend, db, "--depth", "5")
    pages = pages_by_url(db)
    assert sorted(pages) == sorted(site.url(path) for path in FULL_SITE)

    def page(path: str) -> dict[str, object]:
        return pages[site.url(path)]

    for path in [
        "/",
        "/about.html",
        "/docs/guide.html",
        "/docs/api.html",
        "/docs/ref/intro.html",
        "/docs/api.html?v=2",
        "/docs/deep/one.html",
        "/docs/deep/two.html",
    ]:
        assert page(path)["status"] == 200
        assert page(path)["size"] == size_of(site, path)
        assert page(path)["content_type"] == "text/html; charset=utf-8"
        assert page(path)["error_kind"] is None
        assert page(path)["backend"] == backend
    assert page("/docs/ref/intro.html")["size"] > BIG
    assert {path: page(path)["title"] for path in ["/", "/about.html", "/docs/guide.html", "/docs/deep/two.html"]} == {
        "/": "Home",
        "/about.html": "About us",
        "/docs/guide.html": "Guide",
        "/docs/deep/two.html": "Two",
    }
    assert {path: page(path)["depth"] for path in FULL_SITE} == {
        "/": 0,
        "/about.html": 1,
        "/docs/guide.html": 1,
        "/docs/api.html": 1,
        "/missing.html": 1,
        "/broken": 1,
        "/files/report.pdf": 1,
        "/old": 1,
        "/slow.html": 1,
        "/docs/moved.html": 1,
        "/docs/ref/intro.html": 2,
        "/docs/api.html?v=2": 2,
        "/docs/deep/one.html": 2,
        "/docs/deep/two.html": 3,
    }
    # Failures are rows: HTTP errors keep their status, a timeout has none.
    assert (page("/missing.html")["status"], page("/missing.html")["error_kind"], page("/missing.html")["size"]) == (
        404,
        "http",
        len(NOT_FOUND),
    )
    assert page("/missing.html")["error_message"] == "HTTP 404 Not Found"
    assert (page("/broken")["status"], page("/broken")["error_kind"]) == (500, "http")
    assert (page("/slow.html")["status"], page("/slow.html")["error_kind"], page("/slow.html")["size"]) == (
        None,
        "timeout",
        None,
    )
    # A non-HTML body is recorded, not parsed.
    pdf = page("/files/report.pdf")
    assert (pdf["status"], pdf["content_type"], pdf["size"], pdf["title"], pdf["link_count"]) == (
        200,
        "application/pdf",
        size_of(site, "/files/report.pdf"),
        None,
        0,
    )
    # A redirect is a row of its own; its target is crawled at the same depth, and the row says where it went.
    old = page("/old")
    assert (old["status"], old["final_url"], old["title"], old["error_kind"]) == (
        301,
        site.url("/docs/moved.html"),
        None,
        None,
    )
    assert page("/docs/moved.html")["title"] == "Moved"
    assert "Crawled 14 pages" in stdout
    assert "errors   3  (" in stdout

    # Every spelling of a link led to one fetch; robots.txt was asked for once; the timeout and the 500 were
    # retried twice each.
    hits = Counter(hit.path for hit in site.hits if hit.user_agent == agent)
    assert hits == {path: 1 for path in FULL_SITE} | {
        "/robots.txt": 1,
        "/sitemap.xml": 1,
        "/slow.html": 3,
        "/broken": 3,
    }
    assert page("/slow.html")["attempts"] == 3
    assert page("/").get("attempts") == 1


def test_a_crawl_is_recorded_as_a_run(site: SiteServer, backend: str, tmp_path: Path) -> None:
    db = tmp_path / "crawl.db"
    crawl_site(site, backend, db, "--depth", "5", "--concurrency", "3")
    [run] = rows(db, "SELECT * FROM runs")
    pages = rows(db)
    assert {page["run_id"] for page in pages} == {run["id"]}
    assert (run["status"], run["backend"], run["parser"], run["concurrency"], run["pages"], run["errors"]) == (
        "finished", backend, "lxml", 3, 14, 3,
    )  # fmt: skip
    assert run["bytes"] == sum(page["size"] or 0 for page in pages)
    assert json.loads(run["seeds"]) == [site.url("/")]
    assert json.loads(run["settings"])["depth"] == 5
    latencies = sorted(page["elapsed_ms"] for page in pages if page["elapsed_ms"] is not None)
    assert len(latencies) == 14
    # Nearest rank: the 7th and the 14th of 14.
    assert (run["latency_p50_ms"], run["latency_p95_ms"]) == (latencies[6], latencies[13])
    assert run["fetch_seconds"] == pytest.approx(sum(latencies) / 1000)
    assert run["pages_per_second"] == pytest.approx(14 / run["elapsed_s"])
    assert run["started_at"] < run["ended_at"]
    assert run["cpu_seconds"] > 0 and run["peak_rss_mb"] > 20
    assert 0 < run["parse_seconds"] < run["cpu_seconds"] and 0 < run["store_seconds"] < run["elapsed_s"]


def test_links_are_absolute_canonical_and_http_only(site: SiteServer, backend: str, tmp_path: Path) -> None:
    db = tmp_path / "crawl.db"
    crawl_site(site, backend, db, "--depth", "1")
    links = rows(db, "SELECT from_url, to_url FROM links ORDER BY from_url, to_url")
    from_home = sorted(link["to_url"] for link in links if link["from_url"] == site.url("/"))
    assert from_home == sorted(
        [
            site.url("/about.html"),
            site.url("/docs/guide.html"),
            site.url("/docs/api.html"),
            site.url("/missing.html"),
            site.url("/broken"),
            site.url("/files/report.pdf"),
            site.url("/old"),
            site.url("/slow.html"),
            f"http://localhost:{site.port}/offsite.html",
        ]
    )
    assert pages_by_url(db)[site.url("/")]["link_count"] == 9
    # <base href> is honoured; links of error pages and non-HTML bodies are not taken.
    from_guide = sorted(link["to_url"] for link in links if link["from_url"] == site.url("/docs/guide.html"))
    assert from_guide == [site.url("/docs/api.html"), site.url("/docs/ref/intro.html")]
    assert not [link for link in links if "never" in link["to_url"]]


@pytest.mark.parametrize(
    ("depth", "expected"),
    [
        ("0", ["/"]),
        (
            "1",
            [
                "/",
                "/about.html",
                "/docs/guide.html",
                "/docs/api.html",
                "/missing.html",
                "/broken",
                "/files/report.pdf",
                "/old",
                "/slow.html",
                "/docs/moved.html",
            ],
        ),
    ],
)
def test_depth_limits_the_crawl(
    site: SiteServer, backend: str, tmp_path: Path, depth: str, expected: list[str]
) -> None:
    db = tmp_path / "crawl.db"
    crawl_site(site, backend, db, "--depth", depth)
    assert sorted(pages_by_url(db)) == sorted(site.url(path) for path in expected)


def test_one_request_at_a_time_still_crawls_everything(site: SiteServer, backend: str, tmp_path: Path) -> None:
    db = tmp_path / "crawl.db"
    stdout, _ = crawl_site(site, backend, db, "--depth", "5", "--concurrency", "1", "--retries", "0")
    assert sorted(pages_by_url(db)) == sorted(site.url(path) for path in FULL_SITE)
    assert "queued" not in stdout


def test_max_pages_stops_the_crawl(site: SiteServer, backend: str, tmp_path: Path) -> None:
    db = tmp_path / "crawl.db"
    stdout, _ = crawl_site(site, backend, db, "--depth", "5", "--max-pages", "4", "--concurrency", "2")
    pages = pages_by_url(db)
    assert len(pages) == 4
    assert site.url("/") in pages
    assert "Crawled 4 pages" in stdout
    assert rows(db, "SELECT status, pages FROM runs") == [{"status": "limit", "pages": 4}]


def test_any_host_follows_links_to_other_hosts(site: SiteServer, backend: str, tmp_path: Path) -> None:
    offsite = f"http://localhost:{site.port}/offsite.html"
    same = tmp_path / "same.db"
    crawl_site(site, backend, same, "--depth", "1")
    assert offsite not in pages_by_url(same)
    anywhere = tmp_path / "any.db"
    crawl_site(site, backend, anywhere, "--depth", "1", "--any-host")
    row = pages_by_url(anywhere)[offsite]
    assert (row["status"], row["title"], row["host"]) == (200, "Offsite", "localhost")


def test_user_agent_is_sent(site: SiteServer, backend: str, tmp_path: Path) -> None:
    _, agent = crawl_site(site, backend, tmp_path / "crawl.db", "--depth", "0")
    paths = [hit.path for hit in site.hits if hit.user_agent == agent]
    assert paths[0] == "/robots.txt"  # first, and the others after its answer, in either order
    assert sorted(paths[1:]) == ["/", "/sitemap.xml"]


class _HeaderServer(SiteServer):
    """A site server that also notes, by path, the Cookie and Authorization headers of each request."""

    seen: list[tuple[str, str | None, str | None]]

    async def respond(
        self, request: web.Request, path: str, resource: Resource, body: bytes, headers: dict[str, str]
    ) -> web.StreamResponse:
        """Note the request's headers, then answer as the site server does."""
        self.seen.append((path, request.headers.get("Cookie"), request.headers.get("Authorization")))
        return await super().respond(request, path, resource, body, headers)


def _crawl_noting_headers(backend: str, tmp_path: Path) -> list[tuple[str, str | None, str | None]]:
    """Crawl a three-page site one request at a time (so that every request goes through the one session,
    thread or worker that got a cookie) at a host name, not an address: aiohttp, like browsers, keeps no cookie
    for an IP address. Its home page sets a cookie."""
    site = {
        "/": Resource(page_html("Home", ["/a.html"]), headers={"Set-Cookie": "visit=42; Path=/"}),
        "/a.html": Resource(page_html("A", ["/b.html"])),
        "/b.html": Resource(page_html("B", [])),
    }
    with serve_in_thread(site, server_class=_HeaderServer) as server:
        assert isinstance(server, _HeaderServer)
        server.seen = []
        url = f"http://localhost:{server.port}/"
        # In this process (but for gevent): the process backend's workers are forks of a server that the first
        # pool of a process starts, so they must be given the environment of the time, not the server's.
        run = run_cli("crawl", url, "--backend", backend, "--db", str(tmp_path / "c.db"), "--concurrency", "1")
        assert run.exit_code == 0, run.stderr
    return server.seen


@pytest.mark.usefixtures("plain_environment")
def test_a_cookie_the_site_sets_is_sent_back(backend: str, tmp_path: Path) -> None:
    # As a browser (and Scrapy) would: a site may need its cookie to serve the rest of it.
    seen = _crawl_noting_headers(backend, tmp_path)
    assert seen == [("/", None, None), ("/a.html", "visit=42", None), ("/b.html", "visit=42", None)]


@pytest.mark.usefixtures("plain_environment")
def test_a_netrc_login_for_the_host_is_sent(backend: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # First with no netrc: no login is sent, and the process backend's fork server, which the first pool of a
    # process starts, is running before the netrc is named.
    (tmp_path / "before").mkdir()
    assert [auth for _, _, auth in _crawl_noting_headers(backend, tmp_path / "before")] == [None, None, None]
    netrc = tmp_path / "netrc"
    netrc.write_text("machine localhost login crawler password s3cret\n")
    netrc.chmod(0o600)
    monkeypatch.setenv("NETRC", str(netrc))
    basic = "Basic " + base64.b64encode(b"crawler:s3cret").decode()
    seen = _crawl_noting_headers(backend, tmp_path)
    assert seen == [("/", None, basic), ("/a.html", "visit=42", basic), ("/b.html", "visit=42", basic)]


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_refused_connection_is_a_row_and_the_crawl_exits_0(backend: str, tmp_path: Path) -> None:
    db = tmp_path / "crawl.db"
    url = f"http://127.0.0.1:{_closed_port()}/"
    run = run_cli("crawl", url, "--backend", backend, "--db", str(db), *FAST_RETRIES)
    assert run.exit_code == 0, run.stderr
    row = pages_by_url(db)[url]
    # robots.txt could not be fetched, so the host was skipped, for the same reason.
    assert (row["status"], row["size"], row["error_kind"], row["attempts"]) == (None, None, "refused", 0)
    assert row["error_message"].startswith("robots.txt unreachable (refused)")
    assert "errors   1  (refused 1)" in run.stdout
    # It says so plainly; `broken` does not claim every link is fine, and with --fail it fails.
    assert "Nothing could be fetched: 1 connection refused. Offline, or are the sites down?" in run.stdout
    checked = run_cli("broken", "--db", str(db), "--fail")
    assert (checked.exit_code, checked.stdout) == (
        1, "Nothing was fetched (no request got a response), so no link could be checked: see `crawler stats`.\n"
    )  # fmt: skip

    ignoring = tmp_path / "ignoring.db"
    run = run_cli("crawl", url, "--backend", backend, "--db", str(ignoring), "--ignore-robots", *FAST_RETRIES)
    row = pages_by_url(ignoring)[url]
    assert (row["status"], row["error_kind"], row["attempts"]) == (None, "refused", 3)
    assert "retries  4" in run.stdout  # the page's two, and /sitemap.xml's (robots.txt unread, it is tried)


def _can_unshare_network() -> bool:
    if shutil.which("unshare") is None:
        return False
    return subprocess.run(["unshare", "-n", "true"], capture_output=True, check=False).returncode == 0


@pytest.mark.skipif(not _can_unshare_network(), reason="needs `unshare -n` (root) for a DNS failure offline")
def test_dns_failure_is_a_row(backend: str, tmp_path: Path) -> None:
    # In a network namespace of its own the resolver is unreachable, so the lookup fails without any packet
    # leaving the machine.
    db = tmp_path / "crawl.db"
    url = "http://nowhere.invalid/"
    done = subprocess.run(
        [
            "unshare",
            "-n",
            sys.executable,
            "-m",
            "crawler",
            "crawl",
            url,
            "--backend",
            backend,
            "--db",
            str(db),
            "--timeout",
            "5",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    row = pages_by_url(db)[url]
    assert (row["status"], row["error_kind"]) == (None, "dns")


def test_every_backend_gives_the_same_pages_and_sizes(tmp_path: Path) -> None:
    site = generate_site(pages=60, seed=7)
    with serve_in_thread(site) as server:
        results = {}
        for name in BACKENDS:
            db = tmp_path / f"{name}.db"
            run = run_cli(
                "crawl",
                server.url("/"),
                "--backend",
                name,
                "--db",
                str(db),
                "--depth",
                "100",
                "--max-pages",
                "1000",
                "--concurrency",
                "8",
                "--per-host",
                "8",
                *FAST_RETRIES,
            )
            assert run.exit_code == 0, run.stderr
            results[name] = {(row["url"], row["status"], row["size"]) for row in rows(db)}
        truth = {
            (server.url(path), resource.status, len(resource.render(server.origin)))
            for path, resource in site.items()
            if resource.status == 200
        }
    # Every generated page and file was found, with the size the server sent...
    assert truth <= results["asyncio"]
    # ...the rest are the site's dead links, redirect and error page...
    extra = {url.removeprefix(server.origin) for url, _, _ in results["asyncio"] - truth}
    assert extra and all(path.startswith("/missing/") or path in ("/old-home", "/error") for path in extra)
    # ...and every backend found exactly the same.
    assert results["thread"] == results["process"] == results["gevent"] == results["asyncio"]


HEAVY_LINKS = 20_000  # a page the parser takes about a tenth of a second over (the test measures it)


def test_a_fetched_page_frees_its_slot_before_it_is_parsed(serve: Serve, backend: str, tmp_path: Path) -> None:
    # Two requests at a time. The seed links to two heavy pages, then to two light ones. The heavy pages come
    # back at once: the light ones must be asked for then, while the heavy ones wait for the parser, not once a
    # heavy page is parsed. And the server never has more than two requests at once.
    heavy = page_html("Heavy", [f"x{n}.html" for n in range(HEAVY_LINKS)])
    server = serve({
        "/": Resource(page_html("Seed", ["/h1.html", "/h2.html", "/l1.html", "/l2.html"])),
        "/h1.html": Resource(heavy),
        "/h2.html": Resource(heavy),
        "/l1.html": Resource(page_html("Light 1", [])),
        "/l2.html": Resource(page_html("Light 2", [])),
    })  # fmt: skip
    began = time.perf_counter()
    get_parser(DEFAULT_PARSER).parse(heavy.encode(), server.url("/h1.html"), "text/html")
    parse_seconds = time.perf_counter() - began
    db = tmp_path / "crawl.db"
    run = run_cli("crawl", server.url("/"), "--backend", backend, "--db", str(db), "--depth", "1",
                  "--concurrency", "2", "--per-host", "2", "--timeout", TEST_TIMEOUT)  # fmt: skip
    assert run.exit_code == 0, run.stderr

    pages = ["/", "/h1.html", "/h2.html", "/l1.html", "/l2.html"]
    assert {row["url"]: row["status"] for row in rows(db)} == {server.url(path): 200 for path in pages}
    asked = {hit.path: hit.at for hit in server.hits}
    heavy_asked, light_asked = max(asked["/h1.html"], asked["/h2.html"]), min(asked["/l1.html"], asked["/l2.html"])
    assert heavy_asked < light_asked < heavy_asked + parse_seconds / 2, (parse_seconds, light_asked - heavy_asked)
    assert server.max_active <= 2
