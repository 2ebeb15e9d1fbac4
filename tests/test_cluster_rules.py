"""The shared frontier against what a review found: a worker of a replaced crawl or declared lost leases
nothing, pages robots.txt refuses spend no page budget, Crawl-delay holds from robots.txt to the first page,
and no robots.txt is fetched once the budget is spent. The local frontier behaves so too."""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from crawler.cluster.frontier import SharedFrontier
from crawler.cluster.schema import FrontierLost, connect, create_crawl, create_tables
from crawler.cluster.worker import WorkerSettings, _register, crawl_settings
from crawler.engine.config import CrawlConfig
from crawler.site.generate import Resource
from tests.conftest import Serve, page_count, page_html, run_cli
from tests.test_cluster import HOSTS, flat_site, query, scalar, starts


def _settings(config: CrawlConfig) -> dict[str, Any]:
    return crawl_settings({k: v for k, v in dataclasses.asdict(config).items() if k != "db_path"})


def _new_crawl(url: str, seeds: list[str], config: CrawlConfig) -> None:
    with connect(url) as conn:
        create_tables(conn)
        create_crawl(conn, seeds, _settings(config), [(s, s.rsplit("/", 1)[0], "page") for s in seeds],
                     config.obey_robots)  # fmt: skip


@contextmanager
def _frontier(url: str, seeds: list[str], config: CrawlConfig) -> Iterator[SharedFrontier]:
    with connect(url) as conn:
        worker = _register(conn, WorkerSettings("asyncio", "lxml", config.concurrency, 30.0))
        yield SharedFrontier(conn, config, seeds, worker, 30.0)


# The database refuses a lease to a worker whose crawl was replaced, or that was declared lost, at once (not at
# its next heartbeat): it would lease the new crawl's URLs under the old settings, or URLs the others reclaim.
def test_a_worker_of_a_replaced_crawl_leases_nothing_of_the_new_one(frontier_url: str) -> None:
    old = CrawlConfig(obey_robots=False, sitemaps=False, concurrency=4)
    _new_crawl(frontier_url, ["http://127.0.0.1:9/"], old)
    with _frontier(frontier_url, ["http://127.0.0.1:9/"], old) as frontier:
        # `crawl --restart` with other seeds and settings, while the worker runs:
        _new_crawl(frontier_url, ["http://127.0.0.2:9/"], dataclasses.replace(old, depth=0, per_host=1))
        with pytest.raises(FrontierLost, match="was replaced by a new one"):
            frontier.refill(True, 4)
        assert frontier.next(0.0) is None
    assert scalar(frontier_url, "SELECT count(*) FROM urls WHERE state <> 'queued'") == 0


def test_a_worker_declared_lost_leases_nothing(frontier_url: str) -> None:
    config = CrawlConfig(obey_robots=False, sitemaps=False, concurrency=4)
    _new_crawl(frontier_url, ["http://127.0.0.1:9/"], config)
    with _frontier(frontier_url, ["http://127.0.0.1:9/"], config) as frontier:
        query(frontier_url, "UPDATE workers SET status = 'lost' RETURNING id")  # what RECLAIM does to a stalled one
        with pytest.raises(FrontierLost, match="was declared lost"):
            frontier.refill(True, 4)
    assert scalar(frontier_url, "SELECT count(*) FROM urls WHERE state <> 'queued'") == 0


# Pages robots.txt forbids are leased, then refused without a fetch: they give back the page budget their lease
# took, as the local frontier never counts them.
def test_pages_robots_txt_refuses_spend_no_page_budget(frontier_url: str, serve: Serve, tmp_path: Path) -> None:
    site = {**flat_site(10), "/robots.txt": Resource("User-agent: *\nDisallow: /p/\n", content_type="text/plain")}
    server = serve(site)
    args = [f"{server.origin}/", "--max-pages", "3", "--no-sitemaps", "-q"]
    local = run_cli("crawl", *args, "--db", str(tmp_path / "local.db"))
    assert local.exit_code == 0, local.stderr
    local_rows = page_count(tmp_path / "local.db")
    shared = run_cli("crawl", *args, "--frontier", frontier_url)
    assert shared.exit_code == 0, shared.stderr
    shared_rows = scalar(frontier_url, "SELECT count(*) FROM results WHERE kind = 'page'")
    assert local_rows == 10  # the home page, and the 9 pages robots.txt forbids, recorded as refused
    assert shared_rows == local_rows, (shared_rows, local_rows)


# Crawl-delay holds between robots.txt and the origin's first page, as in the local frontier.
def test_crawl_delay_holds_between_robots_txt_and_the_first_page(frontier_url: str, serve: Serve) -> None:
    polite = {**flat_site(3), "/robots.txt": Resource("User-agent: *\nCrawl-delay: 1\n", content_type="text/plain")}
    server = serve(polite)
    run = run_cli("crawl", f"{server.origin}/", "--frontier", frontier_url, "--no-sitemaps", "-q")
    assert run.exit_code == 0, run.stderr
    times = starts(server, skip_robots=False)
    assert len(times) == 4
    gaps = [later - earlier for earlier, later in itertools.pairwise(times)]
    assert min(gaps) >= 0.95, gaps  # the first gap (robots.txt -> /) is ~0


# Once --max-pages is spent, no robots.txt is fetched for the origins found, as in the local frontier.
def test_no_robots_txt_is_fetched_once_the_budget_is_spent(frontier_url: str, serve: Serve) -> None:
    others = [serve(flat_site(2), host=host) for host in HOSTS[1:4]]
    seed = serve({"/": Resource(page_html("Home", [f"{o.origin}/" for o in others]))}, host=HOSTS[0])
    run = run_cli("crawl", f"{seed.origin}/", "--frontier", frontier_url, "--any-host", "--max-pages", "1",
                  "--no-sitemaps", "-q")  # fmt: skip
    assert run.exit_code == 0, run.stderr
    assert [hit.path for hit in seed.hits] == ["/robots.txt", "/"]
    assert [[hit.path for hit in o.hits] for o in others] == [[], [], []]
