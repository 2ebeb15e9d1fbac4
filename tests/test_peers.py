"""The bench's peers (`python -m crawler.bench.peers`): each crawls a generated site on a loopback server completely,
and leaves the database and the stats the bench reads."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from crawler.bench.measure import check
from crawler.bench.peers import EXIT_SCRAPY_MISSING, PEERS
from crawler.site.generate import HTML, Resource, Site, generate_site
from crawler.site.server import SiteServer, serve_in_thread
from crawler.words import install_hint
from tests.conftest import rows

REPO = Path(__file__).resolve().parents[1]
TITLE = re.compile(r"<title>(.*?)</title>")


@dataclass
class PeerRun:
    """What one run of a peer left behind."""

    exit_code: int
    stderr: str
    db: Path
    stats: dict[str, Any]
    pages: dict[str, dict[str, Any]]  # the `pages` table by URL


def run_peer(peer: str, tmp: Path, seed: str, *python_options: str) -> PeerRun:
    """`python [OPTIONS] -m crawler.bench.peers PEER ... SEED`, 8 requests in flight, warnings as errors."""
    db, stats = tmp / f"{peer}.db", tmp / f"{peer}.json"
    done = subprocess.run(
        [sys.executable, *python_options, "-m", "crawler.bench.peers", peer, "--db", str(db),
         "--stats-json", str(stats), "--concurrency", "8", "--per-host", "8", seed],
        capture_output=True, text=True, cwd=REPO, env={**os.environ, "PYTHONWARNINGS": "error"}, timeout=120,
        check=False,
    )  # fmt: skip
    return PeerRun(
        done.returncode,
        done.stderr,
        db,
        json.loads(stats.read_text()) if stats.exists() else {},
        {row["url"]: row for row in rows(db)} if db.exists() else {},
    )


def expected_pages(site: Site, server: SiteServer) -> dict[str, int]:
    """URL -> size of every page of `site` served with status 200, as `crawler.bench.measure.expected_pages` has it."""
    return {server.url(path): len(resource.render(server.origin)) for path, resource in site.items()
            if resource.status == 200}  # fmt: skip


Crawled = tuple[Site, SiteServer, dict[str, PeerRun]]


def expected_paths(site: Site) -> list[str]:
    """The paths of the pages a full crawl fetches with status 200."""
    return [path for path, resource in site.items() if resource.status == 200]


@pytest.fixture(scope="module")
def crawled(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Crawled]:
    """generate_site(40, seed=5), served, and crawled once by each peer."""
    site = generate_site(40, seed=5)
    tmp = tmp_path_factory.mktemp("peers")
    with serve_in_thread(site) as server:
        yield site, server, {peer: run_peer(peer, tmp, server.url("/")) for peer in PEERS}


@pytest.mark.parametrize("peer", sorted(PEERS))
def test_peer_crawls_the_whole_site(crawled: Crawled, peer: str) -> None:
    site, server, runs = crawled
    run = runs[peer]
    assert run.exit_code == 0, run.stderr
    assert "Traceback" not in run.stderr and "Warning" not in run.stderr, run.stderr
    assert run.stats["pages"] == len(run.pages) > 0
    assert run.stats["elapsed"] > 0
    expected = expected_pages(site, server)
    assert check(run.db, expected) == []  # the bench's own check
    assert {url for url, row in run.pages.items() if row["status"] == 200} == set(expected)
    assert all(url.startswith(server.origin + "/") for url in run.pages)  # never http://localhost:PORT/
    assert run.pages[server.url("/error")]["status"] == 500  # error responses are rows too
    assert run.pages[server.url("/missing/3.html")]["status"] == 404
    if peer == "scrapy":  # Scrapy follows the redirect to `/`, already crawled: no row of its own
        assert server.url("/old-home") not in run.pages
    else:  # the lean loop, like our crawler, records the redirect and takes its target as a link
        redirect = run.pages[server.url("/old-home")]
        assert (redirect["status"], redirect["link_count"]) == (301, 1)
    served = Counter(hit.path for hit in server.hits if hit.user_agent == f"crawler-bench-peer ({peer})")
    assert [path for path in expected_paths(site) if served[path] != 1] == []  # each page served once
    for path in (path for path, resource in site.items() if resource.status == 200 and resource.content_type == HTML):
        title = TITLE.search(site[path].render(server.origin).decode())
        assert title is not None
        assert run.pages[server.url(path)]["title"] == title.group(1), path
        assert run.pages[server.url(path)]["link_count"] > 0, path
    for path in ("/files/data.csv", "/files/logo.png"):  # fetched, not parsed
        assert (run.pages[server.url(path)]["title"], run.pages[server.url(path)]["link_count"]) == (None, 0)


def test_peers_agree_row_for_row(crawled: Crawled) -> None:
    _, _, runs = crawled
    redirect = next(url for url in runs["lean"].pages if url.endswith("/old-home"))
    assert runs["scrapy"].pages == {url: row for url, row in runs["lean"].pages.items() if url != redirect}


def test_user_agents_and_robots_txt(crawled: Crawled) -> None:
    _, server, _ = crawled
    assert {hit.user_agent for hit in server.hits} == {"crawler-bench-peer (scrapy)", "crawler-bench-peer (lean)"}
    # Scrapy obeys robots.txt; the lean loop, the floor of overhead, does not read it.
    assert [hit.user_agent for hit in server.hits if hit.path == "/robots.txt"] == ["crawler-bench-peer (scrapy)"]


def test_scrapy_obeys_robots_txt(tmp_path: Path) -> None:
    site = generate_site(40, seed=5)
    site["/robots.txt"] = Resource("User-agent: *\nDisallow: /s1/\n", content_type="text/plain")
    with serve_in_thread(site) as server:
        run = run_peer("scrapy", tmp_path, server.url("/"))
    assert run.exit_code == 0, run.stderr
    assert not any(hit.path.startswith("/s1/") for hit in server.hits)
    assert len(run.pages) > 10
    assert not any(url.startswith(server.url("/s1/")) for url in run.pages)


def test_scrapy_missing_is_one_line_and_exit_3(tmp_path: Path) -> None:
    # Without site-packages (`python -S`), Scrapy cannot be imported, as when the bench extra is not installed;
    # crawler.bench.peers itself imports only the standard library, and is found from the repository (the cwd).
    run = run_peer("scrapy", tmp_path, "http://127.0.0.1:9/", "-S")
    assert (run.exit_code, run.stderr) == (EXIT_SCRAPY_MISSING, f"scrapy is not installed: {install_hint('bench')}\n")
    assert not run.db.exists()
