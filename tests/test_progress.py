"""The live display on a terminal: time elapsed, the status line, and a bar with the time left when --max-pages
bounds the crawl (what the engine reports for it is checked on every backend)."""

from __future__ import annotations

import io
import json
from pathlib import Path

from rich.console import Console

from crawler.engine.summary import CrawlSummary
from crawler.views.progress import bounded, clock, live_view
from tests.conftest import FAST_RETRIES, TEST_TIMEOUT, run_cli
from tests.support.hostile import HostileServer


def shown(summary: CrawlSummary) -> list[str]:
    """The live display's lines, as a 120-column terminal without colours shows them."""
    console = Console(width=120, record=True, color_system=None, file=io.StringIO())
    console.print(live_view(summary))
    return [line.rstrip() for line in console.export_text().splitlines()]


def test_clock_reads_like_a_clock() -> None:
    assert [clock(s) for s in (0, 12.5, 59.99, 60, 3599, 3600, 3725)] == [
        "0:00", "0:12", "0:59", "1:00", "59:59", "1:00:00", "1:02:05"
    ]  # fmt: skip


def test_an_unbounded_crawl_shows_elapsed_time_and_its_status() -> None:
    summary = CrawlSummary("asyncio", pages=125, elapsed=72.5, queued=90, max_pages=500, bytes=2048)
    assert not bounded(summary)  # 215 pages known: the site may end long before the budget
    assert shown(summary) == [
        "1:12 elapsed  125 pages  90 queued  0 in flight  0 errors  0 retries  1.7 pages/s  2.0 KB"
    ]


def test_a_crawl_bounded_by_max_pages_shows_a_bar_and_the_time_left() -> None:
    summary = CrawlSummary("thread", pages=100, resumed_from=25, elapsed=10.0, queued=900, max_pages=500)
    assert bounded(summary)
    bar, status = shown(summary)
    # 125 of 500 done: a quarter of the 40-column bar; 375 pages left at 10 pages/s of this run: 37.5 s.
    assert bar.startswith("━" * 10) and bar[10:40].strip() == ""
    assert bar[40:].strip() == "125/500 pages (--max-pages)  0:37 left"
    assert status == "0:10 elapsed  100 pages  900 queued  0 in flight  0 errors  0 retries  10.0 pages/s  0 B"


def test_before_the_first_page_the_time_left_is_unknown() -> None:
    summary = CrawlSummary("gevent", pages=0, elapsed=0.0, queued=600, max_pages=500)
    assert shown(summary)[0].endswith("0/500 pages (--max-pages)  -:-- left")


def test_every_backend_reports_the_page_budget_the_bar_is_drawn_from(
    site: HostileServer, backend: str, tmp_path: Path
) -> None:
    stats = tmp_path / "summary.json"
    run = run_cli("crawl", site.url("/"), "--backend", backend, "--db", str(tmp_path / "c.db"), "--max-pages", "3",
                  "--timeout", TEST_TIMEOUT, *FAST_RETRIES, "--stats-json", str(stats))  # fmt: skip
    assert run.exit_code == 0, run.stderr
    summary = json.loads(stats.read_text())
    assert (summary["pages"], summary["max_pages"], summary["limit_reached"]) == (3, 3, True)
