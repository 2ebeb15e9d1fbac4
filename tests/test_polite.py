"""robots.txt, per-host limits, delays, Retry-After and retries, on every backend, against local servers."""

from __future__ import annotations

import itertools
import resource
import time
from pathlib import Path

from crawler.site.generate import Resource, Site
from crawler.site.server import SiteServer
from tests.conftest import FAST_RETRIES, Serve, page_html, pages_by_url, run_cli
from tests.support.hostile import Hostile

ROBOTS = """
User-agent: *
Disallow: /private/
Crawl-delay: 0.3

User-agent: picky
Disallow: /
"""
SLACK = 0.03  # timer and scheduling noise allowed below a required gap


def text(body: str, status: int = 200) -> Resource:
    return Resource(body, status, content_type="text/plain")


def pages(*paths: str, delay: float = 0.0) -> Site:
    """A home page linking to `paths`, each a small page of its own, answered `delay` seconds late."""
    site: Site = {"/": Resource(page_html("Home", list(paths)))}
    site.update({path: Hostile(page_html(path, []), delay=delay) for path in paths})
    return site


def crawl(backend: str, db: Path, *args: str) -> str:
    run = run_cli("crawl", *args, "--backend", backend, "--db", str(db), *FAST_RETRIES)
    assert run.exit_code == 0, run.stderr
    return run.stdout


def hit_times(server: SiteServer, agent: str | None = None) -> list[tuple[float, str]]:
    return [(hit.at, hit.path) for hit in server.hits if agent is None or hit.user_agent == agent]


def gaps(times: list[tuple[float, str]]) -> list[float]:
    starts = sorted(at for at, _ in times)
    return [later - earlier for earlier, later in itertools.pairwise(starts)]


def test_robots_txt_is_obeyed_for_our_user_agent(serve: Serve, backend: str, tmp_path: Path) -> None:
    site = pages("/private/a.html", "/public.html", "/p2.html") | {"/robots.txt": text(ROBOTS)}
    server = serve(site)
    crawl(backend, tmp_path / "a.db", server.url("/"))
    rows = pages_by_url(tmp_path / "a.db")
    assert {url.removeprefix(server.origin): row["status"] for url, row in rows.items()} == {
        "/": 200, "/public.html": 200, "/p2.html": 200, "/private/a.html": None,
    }  # fmt: skip
    private = rows[server.url("/private/a.html")]
    assert (private["error_kind"], private["error_message"], private["attempts"]) == (
        "robots", "disallowed by robots.txt", 0,
    )  # fmt: skip
    paths = [path for _, path in hit_times(server)]
    assert sorted(paths) == ["/", "/p2.html", "/public.html", "/robots.txt", "/sitemap.xml"]
    assert min(gaps(hit_times(server))) >= 0.3 - SLACK  # Crawl-delay: 0.3

    # The rules for our product token apply to our full User-Agent string.
    server.hits.clear()
    crawl(backend, tmp_path / "b.db", server.url("/"), "--user-agent", "picky/2.0 (+mailto:ops@example.invalid)")
    assert [(row["error_kind"], row["status"]) for row in pages_by_url(tmp_path / "b.db").values()] == [
        ("robots", None)
    ]
    assert [path for _, path in hit_times(server)] == ["/robots.txt"]

    server.hits.clear()
    crawl(backend, tmp_path / "c.db", server.url("/"), "--ignore-robots")
    assert pages_by_url(tmp_path / "c.db")[server.url("/private/a.html")]["status"] == 200
    assert "/robots.txt" not in [path for _, path in hit_times(server)]


def test_robots_txt_server_error_skips_the_host(serve: Serve, backend: str, tmp_path: Path) -> None:
    server = serve(pages("/a.html") | {"/robots.txt": text("down", status=503)})
    crawl(backend, tmp_path / "a.db", server.url("/"))
    (row,) = pages_by_url(tmp_path / "a.db").values()
    assert (row["status"], row["error_kind"]) == (None, "robots")
    assert row["error_message"] == "robots.txt unavailable (HTTP 503): the host is skipped"
    assert [path for _, path in hit_times(server)] == ["/robots.txt"] * 3  # tried, then retried twice


def test_per_host_limit_and_a_slow_host_does_not_stall_the_others(serve: Serve, backend: str, tmp_path: Path) -> None:
    slow = serve(pages(*[f"/s{i}.html" for i in range(6)], delay=0.3))
    fast = serve(pages(*[f"/f{i}.html" for i in range(12)]), host="127.0.0.2")
    crawl(backend, tmp_path / "a.db", slow.url("/"), fast.url("/"), "--per-host", "2", "--concurrency", "8")
    assert len(pages_by_url(tmp_path / "a.db")) == 7 + 13
    assert slow.max_active == 2
    assert fast.max_active <= 2
    # The fast host was done long before the slow one, though both shared one crawl.
    assert max(at for at, _ in hit_times(fast)) < max(at for at, _ in hit_times(slow)) - 0.3


def test_delay_spaces_the_requests_to_a_host(serve: Serve, backend: str, tmp_path: Path) -> None:
    server = serve(pages("/a.html", "/b.html", "/c.html"))
    # Without the sitemap request: each request's arrival carries the backend's dispatch jitter (up to 0.1 s seen
    # on the process backend under CI load), and every extra gap is one more chance to see it.
    crawl(backend, tmp_path / "a.db", server.url("/"), "--delay", "0.25", "--per-host", "4", "--no-sitemaps")
    assert len(pages_by_url(tmp_path / "a.db")) == 4
    assert len(hit_times(server)) == 5  # robots.txt too
    assert min(gaps(hit_times(server))) >= 0.25 - SLACK


def test_retry_after_pauses_the_host_and_others_go_on(serve: Serve, backend: str, tmp_path: Path) -> None:
    busy_site = pages("/busy.html", "/x1.html", "/x2.html")
    busy_site["/busy.html"] = Hostile(page_html("Busy", []), failures=(503,), retry_after="1")
    busy = serve(busy_site)
    other = serve(pages(*[f"/y{i}.html" for i in range(6)], delay=0.1), host="127.0.0.2")
    crawl(backend, tmp_path / "a.db", busy.url("/"), other.url("/"), "--per-host", "1")
    row = pages_by_url(tmp_path / "a.db")[busy.url("/busy.html")]
    assert (row["status"], row["attempts"], row["error_kind"]) == (200, 2, None)
    first, second = [at for at, path in hit_times(busy) if path == "/busy.html"]
    assert second - first >= 1 - SLACK
    # Nothing else was asked of the paused host during the pause; the other host kept going.
    assert not [path for at, path in hit_times(busy) if first < at < first + 1 - SLACK]
    assert [path for at, path in hit_times(other) if first < at < first + 1]


def test_retries_with_backoff_then_the_final_outcome(serve: Serve, backend: str, tmp_path: Path) -> None:
    site = pages("/flaky.html", "/dead.html", "/gone.html")
    site["/flaky.html"] = Hostile(page_html("Flaky", []), failures=(502, 504))
    site["/dead.html"] = Resource("no", status=500)
    site["/gone.html"] = Resource("no", status=404)
    server = serve(site)
    run = run_cli("crawl", server.url("/"), "--backend", backend, "--db", str(tmp_path / "a.db"), "--backoff", "0.2")
    rows = {url.removeprefix(server.origin): row for url, row in pages_by_url(tmp_path / "a.db").items()}
    assert {path: (row["status"], row["attempts"], row["error_kind"]) for path, row in rows.items()} == {
        "/": (200, 1, None),
        "/flaky.html": (200, 3, None),
        "/dead.html": (500, 3, "http"),
        "/gone.html": (404, 1, "http"),  # not worth retrying
    }
    dead = [at for at, path in hit_times(server) if path == "/dead.html"]
    assert dead[1] - dead[0] >= 0.2 * 0.5 - SLACK  # the first backoff, with jitter of -50% at most
    assert dead[2] - dead[1] >= 0.4 * 0.5 - SLACK  # doubled
    assert "retries  4" in run.stdout

    server.hits.clear()
    crawl(backend, tmp_path / "b.db", server.url("/"), "--retries", "0")
    assert pages_by_url(tmp_path / "b.db")[server.url("/dead.html")]["attempts"] == 1
    assert [path for _, path in hit_times(server)].count("/dead.html") == 1


def _cpu_seconds() -> float:
    """CPU of this process (an in-process crawl, and the server's thread) and of its waited-for children (a
    crawl run as a subprocess)."""
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + children.ru_utime + children.ru_stime


def test_a_delay_that_falls_due_while_no_slot_is_free_costs_no_cpu(serve: Serve, backend: str, tmp_path: Path) -> None:
    # One request at a time to a host that answers in 0.3 s, with a delay between its requests that falls due
    # while the request is out: nothing can start until the answer comes, which the engine must wait for, not
    # poll for (a busy loop costs a second of CPU a second).
    server = serve(pages(*[f"/p{n}.html" for n in range(4)], delay=0.3))
    spent = {}
    for delay in ("0", "0.05"):
        began = _cpu_seconds()
        crawl(backend, tmp_path / f"{delay}.db", server.url("/"), "--concurrency", "1", "--delay", delay)
        spent[delay] = _cpu_seconds() - began
        assert len(pages_by_url(tmp_path / f"{delay}.db")) == 5
    assert spent["0.05"] < spent["0"] + 0.4, spent  # 4 answers of 0.3 s: 1.2 s of waiting either way
