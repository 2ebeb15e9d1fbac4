"""Each run seen as it was: `crawler stats --run`, the report's per-run lines and its changes section read a
run's own fetches (`fetches`), not the latest state of each page (`pages`), which a later run overwrites.
Databases written by the crawler's own `PageStore`, two passes over a site that changed between them; and one
written by release 0.1.0, before history was kept."""

from __future__ import annotations

import shutil
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from crawler.engine.config import CrawlConfig
from crawler.engine.frontier import Request, page_row
from crawler.engine.loop import content_hash
from storage import HostStats, PageFilter, PageStore, open_readonly, stats
from storage.queries import Stats
from tests.conftest import run_cli
from tests.test_report import Page, parse, report

A = "http://a.example"
B = "http://b.example"
HOSTILE_NEW = f'{A}/new.html?q=<script>alert(3)</script>&x="y"'
LEGACY_DB = Path(__file__).parent / "data" / "crawl-0.1.0.db"
MINUS = "\u2212"
REFRESH_NOTE = "after a refresh (crawler crawl --refresh), this section shows what changed."


@dataclass(frozen=True)
class Fetch:
    """One page a run fetched: when (seconds after the run started), what came back, and the body it hashes
    (the same text: the same content hash)."""

    url: str
    offset: float
    status: int | None
    size: int | None = None
    body: str = ""
    error_kind: str | None = None
    not_modified: bool = False  # a refresh's 304: the engine keeps the known size and hash, and the links


PASS_1 = [
    Fetch(f"{A}/", 1.2, 200, 1000, "home"),
    Fetch(f"{A}/grow.html", 1.7, 200, 2000, "grow, first"),
    Fetch(f"{B}/shrink.html", 2.1, 200, 10_000, "shrink, first"),
    Fetch(f"{A}/same.html", 5.3, 200, 3000, "same"),
    Fetch(f"{A}/samesize.html", 5.5, 200, 700, "same size, first"),
    Fetch(f"{A}/moved.html", 9.9, 200, 1500, "moved"),
    Fetch(f"{B}/gone.html", 25.4, 200, 800, "gone soon"),
    Fetch(f"{A}/timeout.html", 30.4, None, error_kind="timeout"),
]
PASS_2 = [  # the refresh: every page again but /gone.html, and a new one
    Fetch(f"{A}/", 0.3, 200, 1000, "home"),
    Fetch(f"{A}/grow.html", 0.4, 200, 5000, "grow, second"),
    Fetch(f"{B}/shrink.html", 3.2, 200, 4000, "shrink, second"),
    Fetch(f"{A}/same.html", 3.3, 200, 3000, "same", not_modified=True),
    Fetch(f"{A}/samesize.html", 3.9, 200, 700, "same size, second"),
    Fetch(f"{A}/moved.html", 7.4, 404, 120, "not found", error_kind="http"),
    Fetch(f"{A}/timeout.html", 12.5, 200, 900, "answered now"),
    Fetch(HOSTILE_NEW, 20.1, 200, 2500, "new"),
]


def _row(fetch: Fetch, backend: str, started: datetime) -> dict[str, object]:
    """The row the engine would write for `fetch` (`page_row`, with the fields it passes)."""
    parts = urlsplit(fetch.url)
    request = Request(fetch.url, f"{parts.scheme}://{parts.netloc}", 0 if parts.path == "/" else 1)
    body = fetch.body.encode().ljust(fetch.size or 0, b" ")
    extra = {"unchanged_by": "304"} if fetch.not_modified else {}
    return page_row(request, backend, fetch.error_kind, f"{fetch.error_kind} failed" if fetch.error_kind else None,
                    status=fetch.status, content_type="text/html" if fetch.status is not None else None,
                    size=fetch.size, truncated=0, title=fetch.body, link_count=0, unusable_links=0, attempts=1,
                    elapsed_ms=12.5, content_hash=content_hash(body) if fetch.status is not None else None,
                    fetched_at=(started + timedelta(seconds=fetch.offset)).isoformat(timespec="milliseconds"),
                    **extra)  # fmt: skip


def write_run(
    path: Path,
    fetches: list[Fetch],
    backend: str,
    *,
    new_pass: bool = True,
    refresh: bool = False,
    status: str = "finished",
) -> int:
    """One run of a crawl, written by `PageStore` as a crawl writes it; its pages fetched `offset` seconds after
    the start it recorded. Returns the run's id."""
    store = PageStore(path)
    try:
        settings = CrawlConfig(backend=backend).settings()
        run_id = store.start_run(settings, [f"{A}/"], new_pass=new_pass, refresh=refresh)
        started = datetime.fromisoformat(store.db.table("runs").get(run_id)["started_at"])
        for fetch in fetches:
            store.commit(_row(fetch, backend, started), None if fetch.not_modified else [], [], [])
        store.finish_run(status, {"elapsed_s": max(fetch.offset for fetch in fetches) + 0.5})
    finally:
        store.close()
    return run_id


@pytest.fixture(scope="module")
def two_passes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A crawl (run 1, thread backend), then a refresh of it (run 2, asyncio)."""
    path = tmp_path_factory.mktemp("views") / "crawl.db"
    assert write_run(path, PASS_1, "thread") == 1
    assert write_run(path, PASS_2, "asyncio", refresh=True) == 2
    return path


def _stats(path: Path, page_filter: PageFilter | None = None) -> Stats:
    db = open_readonly(path)
    try:
        return stats(db, page_filter)
    finally:
        db.close()


def _tables(path: Path) -> list[str]:
    with sqlite3.connect(path) as conn:
        return [row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")]


# -- crawler stats --run ---------------------------------------------------------------------------------


def test_stats_of_a_run_are_its_own_fetches_after_a_later_run_fetched_them_again(two_passes: Path) -> None:
    first = _stats(two_passes, PageFilter(run=1))
    assert first == Stats(
        pages=8,
        errors=1,
        responses=7,
        total_bytes=19_000,
        mean_size=19_000 / 7,
        median_size=1500.0,  # of 700, 800, 1000, 1500, 2000, 3000, 10000
        max_size=10_000,
        by_status=[("200", 7), ("(timeout)", 1)],
        by_host=[HostStats("a.example", 6, 8200, 1500.0, 1), HostStats("b.example", 2, 10_800, 5400.0, 0)],
        hosts=2,
        by_content_type=[("text/html", 7, 19_000)],
        histogram=[(0, 1024, 3), (1024, 2048, 2), (2048, 4096, 1), (4096, 8192, 0), (8192, 16384, 1)],
        capped=0,
    )
    second = _stats(two_passes, PageFilter(run=2))
    assert (second.pages, second.errors, second.responses, second.total_bytes, second.max_size) == (
        8,
        1,
        8,
        17_220,
        5000,
    )
    assert second.median_size == 1750.0  # of 120, 700, 900, 1000, 2500, 3000, 4000, 5000
    assert second.by_status == [("200", 7), ("404", 1)]
    assert second.by_host == [HostStats("a.example", 7, 13_220, 1000.0, 1), HostStats("b.example", 1, 4000, 4000.0, 0)]
    # A run and a host together: run 1's two pages of b.example, though run 2 fetched one of them again.
    both = _stats(two_passes, PageFilter(host="b.example", run=1))
    assert (both.pages, both.total_bytes, both.by_status) == (2, 10_800, [("200", 2)])
    # With no run named, the latest state of each page, as before: run 2's eight and run 1's /gone.html.
    latest = _stats(two_passes)
    assert (latest.pages, latest.errors, latest.total_bytes) == (9, 1, 18_020)
    host = _stats(two_passes, PageFilter(host="b.example"))
    assert (host.pages, host.total_bytes) == (2, 4800)
    db = open_readonly(two_passes)
    try:
        assert [PageFilter(run=1).source(db), PageFilter(host="a.example").source(db), PageFilter().source(db)] == [
            "fetches",
            "pages",
            "pages",
        ]
    finally:
        db.close()


def test_stats_command_with_run(two_passes: Path) -> None:
    done = run_cli("stats", "--db", str(two_passes), "--run", "1")
    assert done.exit_code == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[:3] == ["pages        8", "errors       1 (12.5%)", "total size   18.6 KB (19,000 bytes)"]
    missing = run_cli("stats", "--db", str(two_passes), "--run", "3")
    assert missing.exit_code != 0
    assert "no run 3 in this database" in missing.stderr


# -- the report --------------------------------------------------------------------------------------------


def test_report_lines_each_run_with_its_own_pages(two_passes: Path) -> None:
    page = parse(report(two_passes))
    # The latest run of each backend, both runs here; 1-second buckets (the longer run lasts 30.4 s).
    assert list(page.series) == ["#1 thread", "#2 asyncio"]
    first = [0] * 31
    for second, count in {1: 2, 2: 1, 5: 2, 9: 1, 25: 1, 30: 1}.items():
        first[second] = count
    second_run = [0] * 21
    for second, count in {0: 2, 3: 3, 7: 1, 12: 1, 20: 1}.items():
        second_run[second] = count
    assert [point.value for point in page.series["#1 thread"]] == first
    assert [point.value for point in page.series["#2 asyncio"]] == second_run
    assert "#1 thread 8 pages" in page.sections["timeline"]
    assert "#2 asyncio 8 pages" in page.sections["timeline"]
    assert "(1 s buckets)" in page.sections["timeline"]
    only = parse(report(two_passes, run_ids=[1]))
    assert [point.value for point in only.series["#1 thread"]] == first


def _changes_tables(page: Page) -> dict[str, list[list[str]]]:
    return {name: rows for name, rows in page.table_rows.items() if name.startswith("changes-")}


def test_report_shows_what_changed_between_the_last_two_passes(two_passes: Path) -> None:
    text = report(two_passes)
    page = parse(text)
    assert list(page.sections) == ["sizes", "hosts", "statuses", "timeline", "compare", "changes", "largest"]
    assert _changes_tables(page) == {
        "changes-counts": [["new", "gone", "another status", "changed", "unchanged"], ["1", "1", "2", "3", "2"]],
        "changes-resized": [
            ["URL", "was", "now", "change"],
            [f"{B}/shrink.html", "9.8 KB", "3.9 KB", f"{MINUS}5.9 KB"],
            [f"{A}/grow.html", "2.0 KB", "4.9 KB", "+2.9 KB"],
            [f"{A}/samesize.html", "700 B", "700 B", "\u00b10 B"],
        ],
        "changes-status": [
            ["URL", "was", "now"],
            [f"{A}/moved.html", "200", "404"],
            [f"{A}/timeout.html", "no response", "200"],
        ],
        "changes-new": [["URL", "status", "size"], [HOSTILE_NEW, "200", "2.4 KB"]],
        "changes-gone": [["URL", "status", "size"], [f"{B}/gone.html", "200", "800 B"]],
    }
    section = page.sections["changes"]
    assert "up to run #2) against the pass before (up to run #1)" in section
    for heading in ("Largest content changes: 3", "Another status: 2", "New: 1", "Gone (not reached any more): 1"):
        assert heading in section
    assert "the first" not in section
    # The exact figures are the tooltips; the hostile URL is escaped, in the cell and in its title.
    for tooltip in ('title="-6,000 bytes"', 'title="+3,000 bytes"', 'title="+0 bytes"', 'title="10,000 bytes"'):
        assert tooltip in text
    assert "<script" not in text.lower()
    assert "new.html?q=&lt;script&gt;alert(3)&lt;/script&gt;&amp;x=&quot;y&quot;" in text


def test_report_of_one_pass_says_a_refresh_fills_the_changes(tmp_path: Path) -> None:
    path = tmp_path / "crawl.db"
    # One pass in two runs: a crawl interrupted after five pages, then its resume.
    assert write_run(path, PASS_1[:5], "thread", status="interrupted") == 1
    assert write_run(path, PASS_1[5:], "thread", new_pass=False) == 2
    page = parse(report(path))
    assert page.sections["changes"].endswith(f"One pass over the site so far: {REFRESH_NOTE}")
    assert _changes_tables(page) == {}
    assert [(s.pages, s.total_bytes) for s in (_stats(path, PageFilter(run=1)), _stats(path, PageFilter(run=2)))] == [
        (5, 16_700),
        (3, 2300),
    ]
    # Its resume lists by default (the latest thread run); asked for, the interrupted run has its own line.
    assert {label: sum(p.value for p in points) for label, points in parse(report(path, [1, 2])).series.items()} == {
        "#1 thread": 5,
        "#2 thread": 3,
    }
    # A refresh compares with the whole pass: both of its runs.
    assert write_run(path, PASS_2, "asyncio", refresh=True) == 3
    page = parse(report(path))
    assert "up to run #3) against the pass before (up to run #2)" in page.sections["changes"]
    assert page.table_rows["changes-counts"][1] == ["1", "1", "2", "3", "2"]
    assert [row[0] for row in page.table_rows["changes-gone"][1:]] == [f"{B}/gone.html"]


def test_changes_tables_show_the_first_20(tmp_path: Path) -> None:
    path = tmp_path / "crawl.db"
    write_run(path, [Fetch(f"{A}/p{i:02}.html", i / 10, 200, 1000, f"p{i}") for i in range(30)], "thread")
    write_run(
        path,
        [Fetch(f"{A}/p{i:02}.html", i / 10, 200, 1000 + (i + 1) * 100, f"p{i} again") for i in range(30)]
        + [Fetch(f"{A}/n{i:02}.html", 3 + i / 10, 200, 500, f"n{i}") for i in range(25)],
        "thread",
        refresh=True,
    )
    page = parse(report(path))
    section = page.sections["changes"]
    assert "Largest content changes: 30 (the first 20; crawler changes --csv lists all)" in section
    assert "New: 25 (the first 20; crawler changes --csv lists all)" in section
    assert [row[0] for row in page.table_rows["changes-resized"][1:]] == [f"{A}/p{i:02}.html" for i in range(29, 9, -1)]
    assert page.table_rows["changes-resized"][1][1:] == ["1000 B", "3.9 KB", "+2.9 KB"]
    assert [row[0] for row in page.table_rows["changes-new"][1:]] == [f"{A}/n{i:02}.html" for i in range(20)]
    assert set(_changes_tables(page)) == {"changes-counts", "changes-resized", "changes-new"}
    assert page.table_rows["changes-counts"][1] == ["25", "0", "0", "30", "0"]


# -- a database written before history was kept ------------------------------------------------------------


@pytest.fixture
def legacy(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "crawl-0.1.0.db"
    shutil.copyfile(LEGACY_DB, path)
    yield path
    assert "fetches" not in _tables(path)  # read commands never migrate


def test_a_database_without_history_still_reports_and_stats_by_run(legacy: Path) -> None:
    assert "fetches" not in _tables(legacy)
    page = parse(report(legacy, [1, 2]))
    assert {label: sum(p.value for p in points) for label, points in page.series.items()} == {
        "#1 thread": 20,
        "#2 thread": 17,
    }
    assert page.sections["changes"].endswith(
        f"This database was written before the crawler kept a history of pages: {REFRESH_NOTE}"
    )
    assert "changes-counts" not in page.table_rows
    first, second = _stats(legacy, PageFilter(run=1)), _stats(legacy, PageFilter(run=2))
    assert (first.pages, first.errors, first.total_bytes) == (20, 0, 77_584)
    assert (second.pages, second.errors, second.total_bytes) == (17, 4, 41_547)
    done = run_cli("stats", "--db", str(legacy), "--run", "2")
    assert done.exit_code == 0, done.stderr
    assert done.stdout.splitlines()[:3] == [
        "pages        17",
        "errors       4 (23.5%)",
        "total size   40.6 KB (41,547 bytes)",
    ]
    db = open_readonly(legacy)
    try:
        assert PageFilter(run=1).source(db) == "pages"
    finally:
        db.close()
