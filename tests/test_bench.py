"""`crawler bench` measures honestly: the CPU of every process a crawl starts, a crawl that hangs is killed,
a page served twice is a problem, and the realistic site weighs what real pages weigh."""

from __future__ import annotations

import json
import re
import signal
import statistics
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from pathlib import Path

import psutil
import pytest
import sqlite_utils

from crawler.bench.measure import check
from crawler.bench.parse_alone import html_pages, measure_parse
from crawler.site.generate import generate_site
from crawler.site.server import SiteOptions, serve_in_subprocess
from crawler.words import install_hint
from parsers import PARSERS, get_parser
from storage import PageStore
from tests.conftest import run_cli, wait_for

ORIGIN = "http://127.0.0.1:8000"


def test_the_process_backends_workers_are_counted() -> None:
    run = run_cli("bench", "--pages", "15", "--rounds", "1", "--concurrency", "4", "--site", "light",
                  "--backend", "process", "--backend", "thread", "--json")  # fmt: skip
    assert run.exit_code == 0, run.stderr
    runs = {result["backend"]: result for result in json.loads(run.stdout)["runs"]}
    # The pool's workers are children of the forkserver, which the crawl never waits for: without the
    # subreaper their CPU was missing from the figure. The forkserver imports the crawler and requests (tens of
    # ms at least) before it forks them.
    process = runs["process"]
    assert process["orphan_cpu_seconds"] > 0.02 * 4
    assert process["cpu_seconds"] > process["orphan_cpu_seconds"]
    assert runs["thread"]["orphan_cpu_seconds"] == 0.0
    # Its memory per process is reported: 4 workers and the forkserver at least, the thread backend has none.
    # What each holds of its own is less than its RSS, which counts the pages they share.
    assert process["helper_processes"] >= 4 + 1 and process["helper_rss_mb"] > 4 * 5
    assert 0 < process["helper_uss_mb"] < process["helper_rss_mb"]
    assert runs["thread"]["helper_processes"] == 0


def test_a_crawl_past_its_timeout_is_killed_whole() -> None:
    start = time.monotonic()
    run = run_cli("bench", "--pages", "5", "--rounds", "1", "--concurrency", "2", "--site", "light",
                  "--latency-ms", "5000", "--crawl-timeout", "2", "--backend", "process")  # fmt: skip
    assert run.exit_code == 1
    assert run.stderr.splitlines()[-1] == "Error: the process crawl did not finish within 2 s: killed"
    assert time.monotonic() - start < 30
    leftovers = [p for p in psutil.process_iter(["cmdline"]) if "crawler-bench-" in " ".join(p.info["cmdline"] or [])]
    assert leftovers == []


def test_check_names_missing_resized_and_twice_served_pages(tmp_path: Path) -> None:
    db = tmp_path / "crawl.db"
    PageStore(db).close()  # the crawl schema
    rows = [{"url": f"{ORIGIN}/{name}", "final_url": f"{ORIGIN}/{name}", "host": "127.0.0.1", "depth": 0,
             "status": 200, "size": size} for name, size in (("a", 10), ("b", 11), ("c", 12))]  # fmt: skip
    sqlite_utils.Database(db).table("pages").insert_all(rows)
    expected = {f"{ORIGIN}/a": 10, f"{ORIGIN}/b": 99, f"{ORIGIN}/c": 12, f"{ORIGIN}/d": 5}
    served = Counter({f"{ORIGIN}/a": 1, f"{ORIGIN}/b": 1, f"{ORIGIN}/c": 2})
    assert check(db, expected, served) == [
        f"missing {ORIGIN}/d",
        f"size of {ORIGIN}/b: 11 != 99",
        f"served 2 times: {ORIGIN}/c",
    ]


def test_the_realistic_site_weighs_what_real_pages_weigh() -> None:
    site = generate_site(1000, profile="realistic")
    html = site["/"].content_type
    sizes = [len(page.render(ORIGIN)) for page in site.values() if page.content_type == html and page.status == 200]
    assert len(sizes) == 1000
    assert 25 * 1024 < statistics.median(sizes) < 40 * 1024
    assert statistics.mean(sizes) > 50 * 1024
    assert 0.01 < sum(size > 200 * 1024 for size in sizes) / len(sizes) < 0.08
    assert max(sizes) <= 1024 * 1024 + 4096
    with pytest.raises(ValueError, match="unknown site profile 'heavy'; choose one of: realistic, light"):
        generate_site(10, profile="heavy")


def test_both_parsers_read_the_realistic_site_alike() -> None:
    site = generate_site(60, seed=3, profile="realistic")
    for path, resource in site.items():
        if resource.content_type == site["/"].content_type and resource.status == 200:
            body = resource.render(ORIGIN)
            pages = {name: get_parser(name).parse(body, ORIGIN + path, resource.content_type) for name in PARSERS}
            assert len(set(map(repr, pages.values()))) == 1, path
            assert len(pages["bs4"].links) >= 40  # the sidebar, and the page's own links


def test_the_bench_server_says_what_it_served_since_it_was_last_asked_and_its_cpu() -> None:
    with serve_in_subprocess(SiteOptions(pages=5)) as server:
        page = f"{server.origins[0]}/s1/p1.html"
        for _ in range(2):
            with urllib.request.urlopen(page) as response:
                response.read()
        first, second = server.report(), server.report()
        assert first.served == Counter({page: 2})
        assert second.served == Counter()
        assert 0 < first.cpu_seconds <= second.cpu_seconds  # its own clock, never reset


def test_peers_are_measured_and_checked_in_the_same_run() -> None:
    run = run_cli("bench", "--pages", "15", "--rounds", "1", "--concurrency", "4", "--backend", "asyncio",
                  "--peer", "scrapy", "--peer", "lean", "--json")  # fmt: skip
    assert run.exit_code == 0, run.stderr
    medians = {row["backend"]: row for row in json.loads(run.stdout)["medians"]}
    assert list(medians) == ["asyncio", "scrapy", "lean"]
    assert all(row["correct"] for row in medians.values())
    assert medians["scrapy"]["ratio_to_scrapy"] == 1.0
    assert (
        medians["asyncio"]["ratio_to_scrapy"]
        == medians["asyncio"]["pages_per_second"] / (medians["scrapy"]["pages_per_second"])
    )
    assert medians["lean"]["parse_share"] is None and medians["asyncio"]["parse_share"] > 0
    # The crawler's parser and the lean loop's were timed alone on the same pages; Scrapy's cannot be. One
    # round: a crawl's CPU a page is exactly its parse alone plus what it spent beyond it.
    assert medians["scrapy"]["parse_alone_ms_per_page"] is None
    # The crawler times its parser's own CPU in the crawl too; a peer does not.
    assert 0 < medians["asyncio"]["parse_in_crawl_ms_per_page"] < medians["asyncio"]["cpu_ms_per_page"]
    assert medians["lean"]["parse_in_crawl_ms_per_page"] is None
    for crawler in ("asyncio", "lean"):
        row = medians[crawler]
        assert row["parse_alone_ms_per_page"] > 0
        assert row["parse_alone_ms_per_page"] + row["beyond_parse_ms_per_page"] == pytest.approx(row["cpu_ms_per_page"])
    assert (
        re.findall(r"parse alone: (lean|lxml) [\d.]+ ms an HTML page, (lean|lxml) [\d.]+ ms", run.stderr)
        == [("lean", "lxml")] * 2
    )  # before the round and after it


def test_each_round_is_set_against_the_parse_alone_measured_just_before_and_after_it() -> None:
    run = run_cli("bench", "--pages", "15", "--rounds", "2", "--concurrency", "4", "--site", "light",
                  "--backend", "asyncio", "--json")  # fmt: skip
    assert run.exit_code == 0, run.stderr
    alone = [float(ms) for ms in re.findall(r"parse alone: lxml ([\d.]+) ms an HTML page", run.stderr)]
    assert len(alone) == 3  # before the first round, after each
    pages = len(html_pages(SiteOptions(pages=15), ["http://127.0.0.1:1"]))
    first, second = json.loads(run.stdout)["runs"]
    for result, around in ((first, alone[0:2]), (second, alone[1:3])):
        assert 1000 * result["parse_alone_seconds"] / pages == pytest.approx(statistics.mean(around), abs=0.006)


def test_the_parse_alone_parses_the_very_bodies_a_crawl_parses(tmp_path: Path) -> None:
    options = SiteOptions(pages=40, hosts=2, profile="realistic")
    with serve_in_subprocess(options) as server:
        run = run_cli("crawl", *[f"{origin}/" for origin in server.origins], "--db", str(tmp_path / "c.db"),
                      "--depth", "1000", "--max-pages", "1000", "--quiet")  # fmt: skip
        assert run.exit_code == 0, run.stderr
        alone = {cost.parser: cost for cost in (measure_parse(parser, options, server.origins, 60)
                                                for parser in ("bs4", "lean"))}  # fmt: skip
        bodies = {url: len(body) for url, body, _ in html_pages(options, server.origins)}
    crawled = {
        row["url"]: row["size"]
        for row in sqlite_utils.Database(tmp_path / "c.db").query(
            "SELECT url, size FROM pages WHERE status = 200 AND content_type LIKE 'text/html%'"
        )
    }
    assert bodies == crawled and len(crawled) == 2 * 40  # every page of both hosts, by URL and size
    assert alone["bs4"].pages == alone["lean"].pages == len(crawled)
    assert alone["bs4"].cpu_seconds > alone["lean"].cpu_seconds > 0


def test_the_help_says_what_installs_scrapy() -> None:
    run = run_cli("bench", "--help")
    assert f"scrapy ({install_hint('bench')})" in " ".join(run.stdout.replace("│", " ").split())
    assert install_hint("bench") == 'pip install "scrapy>=2.14"'


def test_the_table_says_how_many_processes_and_their_memory() -> None:
    run = run_cli("bench", "--pages", "10", "--rounds", "1", "--concurrency", "5", "--site", "light",
                  "--backend", "process")  # fmt: skip
    assert run.exit_code == 0, run.stderr
    note = run.stdout.splitlines()[-1]
    assert re.fullmatch(
        r"process: ([6-9]) processes besides the crawl's own at the memory peak, \d+ MB of its own each "
        r"\(\d+ MB RSS, shared pages counted in each\)",
        note,
    ), note


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_to_the_bench_ends_the_crawl_and_the_server_with_it(signum: int) -> None:
    bench = subprocess.Popen(
        [sys.executable, "-m", "crawler", "bench", "--pages", "20", "--rounds", "1", "--concurrency", "2",
         "--site", "light", "--latency-ms", "3000", "--backend", "process"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    family = psutil.Process(bench.pid)
    wait_for("the crawl's pool", lambda: len(family.children(recursive=True)) >= 4)
    members = family.children(recursive=True)
    bench.send_signal(signum)
    _, stderr = bench.communicate(timeout=30)
    assert bench.returncode == (143 if signum == signal.SIGTERM else 130), stderr
    _, alive = psutil.wait_procs(members, timeout=10)  # the crawl, its pool and forkserver, and the server
    assert alive == []
