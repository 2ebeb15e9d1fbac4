"""`crawler report`'s HTML file: its figures against direct SQL, escaping, self-containment, old and empty
databases, a real crawl, and a real headless Chromium drawing it."""

from __future__ import annotations

import asyncio
import base64
import json
import math
import os
import random
import re
import shutil
import signal
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import sqlite_utils

from crawler.site.server import SiteServer
from crawler.views.html import ReportError, render_report
from crawler.views.html.charts import bucket_seconds
from storage import latest_run_ids, open_readonly
from tests.conftest import FAST_RETRIES, TEST_TIMEOUT, run_cli

HOSTILE_TITLE = "<script>alert(1)</script>"
HOSTILE_URL = 'http://host0.example/"><script>alert(2)</script>'
HOSTILE_HOST = "evil<b>.example"
GENERATED = datetime(2026, 11, 22, 6, 0, 0, tzinfo=UTC)
DASH = "\u2013"  # en dash, as in ranges
T0 = datetime(2026, 11, 22, 5, 0, 0, tzinfo=UTC)

PAGES_COLUMNS: dict[str, type] = {
    "url": str,
    "final_url": str,
    "host": str,
    "status": int,
    "content_type": str,
    "size": int,
    "truncated": int,
    "title": str,
    "depth": int,
    "link_count": int,
    "attempts": int,
    "fetched_at": str,
    "elapsed_ms": float,
    "backend": str,
    "error_kind": str,
    "error_message": str,
}
RUNS_COLUMNS: dict[str, type] = {
    "id": int,
    "started_at": str,
    "ended_at": str,
    "status": str,
    "backend": str,
    "parser": str,
    "concurrency": int,
    "per_host": int,
    "seeds": str,
    "settings": str,
    "pages": int,
    "errors": int,
    "bytes": int,
    "elapsed_s": float,
    "pages_per_second": float,
    "latency_p50_ms": float,
    "latency_p95_ms": float,
    "fetch_seconds": float,
    "cpu_seconds": float,
    "peak_rss_mb": float,
    "parse_seconds": float,
    "store_seconds": float,
}


@dataclass(frozen=True)
class RunSpec:
    """A run to fake: its id, backend, start (minutes after T0), length in seconds, pages and end state."""

    id: int
    backend: str
    start_min: int
    seconds: float
    pages: int
    status: str = "finished"


RUNS = [
    RunSpec(1, "asyncio", 0, 30.0, 160),
    RunSpec(2, "thread", 10, 44.5, 150),
    RunSpec(3, "process", 20, 38.0, 140),
    RunSpec(4, "asyncio", 30, 25.2, 170),
    RunSpec(5, "gevent", 40, 12.0, 40, "killed"),
]
OUTCOMES = [  # status, error kind, weight
    (200, None, 80),
    (301, None, 4),
    (404, "http", 6),
    (500, "http", 3),
    (None, "timeout", 3),
    (None, "dns", 2),
    (None, "robots", 1),
]


def build_db(path: Path, *, runs: bool = True, hosts: int = 26) -> Path:
    """A deterministic database with hundreds of pages over `hosts` hosts (a few hostile strings among
    them), sizes from bytes to megabytes, every kind of outcome, and the runs of RUNS; without `runs`, as the
    previous release wrote it: no runs table and no pages.run_id."""
    rnd = random.Random(20261122)
    db = sqlite_utils.Database(path)
    db.table("pages").create({**PAGES_COLUMNS, **({"run_id": int} if runs else {})}, pk="url")
    db.table("links").create({"from_url": str, "to_url": str})
    names = [f"host{index}.example" for index in range(hosts)]
    names[3] = HOSTILE_HOST
    weights = [1 / (index + 1) for index in range(hosts)]
    rows: list[dict[str, Any]] = []
    for spec in RUNS:
        start = T0 + timedelta(minutes=spec.start_min)
        for index in range(spec.pages):
            host = rnd.choices(names, weights)[0]
            status, kind, _ = rnd.choices(OUTCOMES, [weight for *_, weight in OUTCOMES])[0]
            offset = spec.seconds * math.sqrt((index + rnd.random()) / spec.pages)  # ramps up, like a crawl
            size = None if status is None else min(int(rnd.lognormvariate(math.log(15_000), 1.3)), 3_000_000)
            row: dict[str, Any] = {
                "url": f"http://{host}/r{spec.id}/p{index}.html",
                "final_url": f"http://{host}/r{spec.id}/p{index}.html",
                "host": host,
                "status": status,
                "content_type": "text/html",
                "size": size,
                "truncated": 0,
                "title": f"Page {index}",
                "depth": index % 4,
                "link_count": 3,
                "attempts": 1,
                "fetched_at": (start + timedelta(seconds=offset)).isoformat(timespec="milliseconds"),
                "elapsed_ms": rnd.uniform(2, 400),
                "backend": spec.backend,
                "error_kind": kind,
                "error_message": None if kind is None else f"{kind} <b>failed</b>",
            }
            if runs:
                row["run_id"] = spec.id
            rows.append(row)
    # The largest pages: a hostile title and a hostile URL, which the largest-pages table shows.
    rows[0].update(status=200, error_kind=None, size=2_500_000, title=HOSTILE_TITLE)
    rows[1].update(status=200, error_kind=None, size=2_400_000, url=HOSTILE_URL)
    rows[2].update(status=200, error_kind=None, size=0)  # an empty body still counts, in the first bucket
    rows[3].update(status=200, error_kind=None, size=1024)  # on a bucket edge: 1-2 KB
    db.table("pages").insert_all(rows, pk="url")
    if runs:
        db.table("runs").create(RUNS_COLUMNS, pk="id")
        for spec in RUNS:
            start = T0 + timedelta(minutes=spec.start_min)
            killed = spec.status == "killed"
            db.table("runs").insert(
                {
                    "id": spec.id,
                    "started_at": start.isoformat(timespec="milliseconds"),
                    "ended_at": (start + timedelta(seconds=spec.seconds)).isoformat(timespec="milliseconds"),
                    "status": spec.status,
                    "backend": spec.backend,
                    "parser": "lxml",
                    "concurrency": 16,
                    "per_host": 4,
                    "seeds": json.dumps(["http://host0.example/"]),
                    "settings": "{}",
                    "pages": spec.pages,
                    "errors": spec.pages // 7,
                    "bytes": spec.pages * 20_000,
                    "elapsed_s": spec.seconds,
                    "pages_per_second": spec.pages / spec.seconds,
                    "latency_p50_ms": 40.0 + spec.id,
                    "latency_p95_ms": 300.0 + spec.id,
                    "fetch_seconds": 10.0,
                    "cpu_seconds": None if killed else 1.5 * spec.id,
                    "peak_rss_mb": None if killed else 60.0 + 10 * spec.id,
                    "parse_seconds": 0.5,
                    "store_seconds": 0.2,
                }
            )
    db.close()
    return path


# -- reading the HTML back -------------------------------------------------------------------------------


@dataclass
class Mark:
    """A bar (<rect class="bar">) or point (<circle class="point">) and its tooltip."""

    tag: str
    attrs: dict[str, str]
    title: str = ""

    @property
    def label(self) -> str:
        return self.attrs.get("data-label", "")

    @property
    def value(self) -> float:
        return float(self.attrs["data-value"])


@dataclass
class Page:
    """What the report holds: each chart's marks, each section's text, the header tiles, every tag."""

    charts: dict[str, list[Mark]] = field(default_factory=dict)
    series: dict[str, list[Mark]] = field(default_factory=dict)  # timeline points by line label
    sections: dict[str, str] = field(default_factory=dict)
    tiles: dict[str, str] = field(default_factory=dict)
    tags: list[tuple[str, dict[str, str]]] = field(default_factory=list)
    table_rows: dict[str, list[list[str]]] = field(default_factory=dict)


class ReportParser(HTMLParser):
    """Collects a `Page` from the report's HTML."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.page = Page()
        self._svg: str | None = None
        self._series: str | None = None
        self._section: str | None = None
        self._tile: str | None = None
        self._tile_depth = 0
        self._mark: Mark | None = None
        self._in_title = False
        self._table: str | None = None
        self._cell: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {name: value or "" for name, value in attrs}
        self.page.tags.append((tag, values))
        if tag == "section":
            self._section = values["id"]
            self.page.sections[self._section] = ""
        elif tag == "svg":
            self._svg = values["id"]
            self.page.charts[self._svg] = []
        elif tag == "g" and "series" in values.get("class", ""):
            self._series = values["data-label"]
            self.page.series[self._series] = []
        elif tag in ("rect", "circle") and values.get("class") in ("bar", "point") and self._svg:
            self._mark = Mark(tag, values)
            self.page.charts[self._svg].append(self._mark)
            if self._series is not None:
                self.page.series[self._series].append(self._mark)
        elif tag == "title" and self._mark is not None:
            self._in_title = True
        elif tag == "div" and values.get("class") == "tile":
            self._tile = values["id"].removeprefix("total-")
            self.page.tiles[self._tile] = ""
            self._tile_depth = 0
        elif tag == "div" and self._tile is not None:
            self._tile_depth += 1
        elif tag == "table":
            self._table = values.get("id") or values.get("class", "")
            self.page.table_rows[self._table] = []
        elif tag == "tr" and self._table is not None:
            self.page.table_rows[self._table].append([])
        elif tag in ("td", "th") and self._table is not None:
            self._cell = self.page.table_rows[self._table][-1]
            self._cell.append("")

    def handle_endtag(self, tag: str) -> None:
        if tag == "svg":
            self._svg = None
        elif tag == "g":
            self._series = None
        elif tag in ("rect", "circle"):
            self._mark = None
        elif tag == "title":
            self._in_title = False
        elif tag == "section":
            self._section = None
        elif tag == "div" and self._tile is not None:
            if self._tile_depth == 0:
                self._tile = None
            self._tile_depth -= 1
        elif tag == "table":
            self._table = None
        elif tag in ("td", "th"):
            self._cell = None

    def handle_data(self, data: str) -> None:
        if self._in_title and self._mark is not None:
            self._mark.title += data
        if self._section is not None:
            self.page.sections[self._section] += data
        if self._tile is not None:
            self.page.tiles[self._tile] += data
        if self._cell is not None:
            self._cell[-1] += data


def parse(text: str) -> Page:
    parser = ReportParser()
    parser.feed(text)
    parser.close()
    return parser.page


def values(marks: list[Mark]) -> dict[str, float]:
    return {mark.label: mark.value for mark in marks}


@pytest.fixture(scope="module")
def fake_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_db(tmp_path_factory.mktemp("report") / "crawl.db")


def report(path: Path, run_ids: list[int] | None = None) -> str:
    """The report on the database at `path`, opened read-only as the CLI opens it."""
    db = open_readonly(path)
    try:
        return render_report(db, str(path), GENERATED, run_ids=run_ids)
    finally:
        db.close()


def sql(path: Path, query: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    with sqlite3.connect(path) as conn:
        return conn.execute(query, params).fetchall()


# -- the figures ------------------------------------------------------------------------------------------


def test_header_shows_the_path_totals_and_generation_time(fake_db: Path) -> None:
    text = report(fake_db)
    page = parse(text)
    pages, errors, size, hosts = sql(
        fake_db, "SELECT count(*), count(error_kind), sum(size), count(DISTINCT host) FROM pages"
    )[0]
    assert page.tiles["pages"] == f"pages{pages:,}"
    assert page.tiles["errors"] == f"errors{errors:,} ({errors / pages:.1%})"
    assert page.tiles["bytes"] == f"bytes{size / 2**20:.1f} MB"
    assert page.tiles["hosts"] == f"hosts{hosts}"
    assert page.tiles["runs"] == "runs5"
    assert f"<code>{fake_db}</code>" in text
    assert "generated 2026-11-22 06:00:00 UTC" in text
    assert text.startswith("<!DOCTYPE html>")


def test_size_histogram_buckets_match_sql_counts(fake_db: Path) -> None:
    bars = parse(report(fake_db)).charts["chart-sizes"]
    (largest,) = sql(fake_db, "SELECT max(size) FROM pages WHERE status IS NOT NULL")[0]
    edges = [0, 1024]
    while edges[-1] <= largest:
        edges.append(edges[-1] * 2)
    assert len(bars) == len(edges) - 1 == 13  # <1 KB ... 2-4 MB for the 2.5 MB page
    for bar, low, high in zip(bars, edges, edges[1:], strict=False):
        (expected,) = sql(
            fake_db, "SELECT count(*) FROM pages WHERE status IS NOT NULL AND size >= ? AND size < ?", (low, high)
        )[0]
        assert bar.value == expected, (bar.label, low, high)
        assert bar.title == f"{bar.label}: {expected:,} page{'' if expected == 1 else 's'}"
    assert [bar.label for bar in bars[:3]] == ["< 1 KB", f"1{DASH}2 KB", f"2{DASH}4 KB"]
    assert [bar.label for bar in bars[-3:]] == [f"512 KB{DASH}1 MB", f"1{DASH}2 MB", f"2{DASH}4 MB"]
    assert sum(bar.value for bar in bars) == sql(fake_db, "SELECT count(*) FROM pages WHERE status IS NOT NULL")[0][0]


def test_hosts_chart_has_the_top_20_and_the_rest_as_other(fake_db: Path) -> None:
    marks = parse(report(fake_db)).charts["chart-hosts"]
    top = sql(
        fake_db,
        "SELECT host, count(*), coalesce(sum(size), 0) FROM pages GROUP BY host ORDER BY count(*) DESC, host LIMIT 20",
    )
    pages_bars, byte_bars = marks[: len(marks) // 2], marks[len(marks) // 2 :]
    assert len(pages_bars) == len(byte_bars) == 21
    assert [(bar.label, bar.value) for bar in pages_bars[:20]] == [(host, count) for host, count, _ in top]
    assert [(bar.label, bar.value) for bar in byte_bars[:20]] == [(host, size) for host, _, size in top]
    total_pages, total_bytes = sql(fake_db, "SELECT count(*), sum(size) FROM pages")[0]
    assert pages_bars[20].label == byte_bars[20].label == "other (6 hosts)"
    assert pages_bars[20].value == total_pages - sum(count for _, count, _ in top)
    assert byte_bars[20].value == total_bytes - sum(size for *_, size in top)
    assert pages_bars[0].title.startswith(f"{top[0][0]}: {top[0][1]} pages, ")


def test_status_chart_counts_statuses_then_error_kinds(fake_db: Path) -> None:
    bars = values(parse(report(fake_db)).charts["chart-status"])
    expected = {
        "200 OK": sql(fake_db, "SELECT count(*) FROM pages WHERE status = 200")[0][0],
        "301 Moved Permanently": sql(fake_db, "SELECT count(*) FROM pages WHERE status = 301")[0][0],
        "404 Not Found": sql(fake_db, "SELECT count(*) FROM pages WHERE status = 404")[0][0],
        "500 Internal Server Error": sql(fake_db, "SELECT count(*) FROM pages WHERE status = 500")[0][0],
    }
    for kind in ("timeout", "dns", "robots"):
        expected[f"{kind} (no response)"] = sql(
            fake_db, "SELECT count(*) FROM pages WHERE status IS NULL AND error_kind = ?", (kind,)
        )[0][0]
    assert bars == expected
    assert list(bars)[:4] == ["200 OK", "301 Moved Permanently", "404 Not Found", "500 Internal Server Error"]


def test_timeline_buckets_each_runs_pages_from_its_start(fake_db: Path) -> None:
    page = parse(report(fake_db))
    # By default the latest run of each backend: 2 thread, 3 process, 4 asyncio, 5 gevent.
    assert list(page.series) == ["#2 thread", "#3 process", "#4 asyncio", "#5 gevent"]
    for spec in RUNS[1:]:
        points = page.series[f"#{spec.id} {spec.backend}"]
        assert sum(point.value for point in points) == spec.pages
        # The longest run lasts under 45 s, so 1-second buckets; the last bucket holds the last page.
        start = T0 + timedelta(minutes=spec.start_min)
        (last,) = sql(fake_db, "SELECT max(fetched_at) FROM pages WHERE run_id = ?", (spec.id,))[0]
        assert len(points) == math.floor((datetime.fromisoformat(last) - start).total_seconds()) + 1
        for second in (0, len(points) // 2, len(points) - 1):
            low = (start + timedelta(seconds=second)).isoformat(timespec="milliseconds")
            high = (start + timedelta(seconds=second + 1)).isoformat(timespec="milliseconds")
            (expected,) = sql(
                fake_db,
                "SELECT count(*) FROM pages WHERE run_id = ? AND fetched_at >= ? AND fetched_at < ?",
                (spec.id, low, high),
            )[0]
            assert points[second].value == expected
        assert points[0].title.startswith(f"#{spec.id} {spec.backend}, 0 s{DASH}1 s: ")
    assert "time since the run started (1 s buckets)" in page.sections["timeline"]


def test_timeline_buckets_widen_to_stay_within_120_points(tmp_path: Path) -> None:
    db_path = tmp_path / "long.db"
    db = sqlite_utils.Database(db_path)
    db.table("pages").create({**PAGES_COLUMNS, "run_id": int}, pk="url")
    db.table("pages").insert_all(
        {
            "url": f"http://a.example/{minute}",
            "final_url": f"http://a.example/{minute}",
            "host": "a.example",
            "depth": 0,
            "status": 200,
            "size": 10,
            "fetched_at": (T0 + timedelta(minutes=minute)).isoformat(),  # microseconds, no milliseconds
            "run_id": 1,
        }
        for minute in range(0, 600, 3)  # ten hours
    )
    db.table("runs").create(RUNS_COLUMNS, pk="id")
    db.table("runs").insert({"id": 1, "backend": "thread", "started_at": T0.isoformat(), "pages": 200})
    db.close()
    page = parse(report(db_path))
    assert list(page.series) == ["#1 thread"]
    points = page.series["#1 thread"]
    assert len(points) <= 120
    assert sum(point.value for point in points) == 200
    assert "(300 s buckets)" in page.sections["timeline"]  # 9h57m / 300 s = 120 buckets


@pytest.mark.parametrize(
    ("span", "width"),
    [(0.0, 0.1), (0.9, 0.1), (5.0, 0.2), (15.0, 0.5), (25.0, 1), (119.9, 1), (200.0, 2), (3599.0, 30), (3600.0, 60)],
)
def test_bucket_width_keeps_lines_between_20_and_120_points(span: float, width: float) -> None:
    assert bucket_seconds(span) == width


def test_backend_comparison_shows_the_latest_run_of_each_backend(fake_db: Path) -> None:
    page = parse(report(fake_db))
    bars = page.charts["chart-backends"]
    assert [(bar.label, bar.value) for bar in bars] == [
        (f"#{spec.id} {spec.backend}", spec.pages / spec.seconds) for spec in RUNS[1:]
    ]
    rows = page.table_rows["runs-table"]
    assert rows[0] == [
        "run",
        "pages",
        "pages/s",
        "CPU\u00a0s",
        "CPU ms/page",
        "peak\u00a0RSS",
        "latency p50",
        "latency p95",
        "errors",
    ]
    thread = RUNS[1]
    assert rows[1] == [
        "#2 threadlxml · concurrency\u00a016 · finished",
        "150",
        f"{thread.pages / thread.seconds:.1f}",
        "3.00",
        f"{3.0 * 1000 / 150:.2f}",
        "80 MB",
        "42 ms",
        "302 ms",
        "21",
    ]
    assert rows[4][0] == "#5 geventlxml · concurrency\u00a016 · killed"
    assert rows[4][3:6] == ["—", "—", "—"]  # a killed run has no CPU or memory figures


def test_run_ids_choose_the_runs(fake_db: Path) -> None:
    page = parse(report(fake_db, run_ids=[4, 1]))
    assert [bar.label for bar in page.charts["chart-backends"]] == ["#1 asyncio", "#4 asyncio"]
    assert list(page.series) == ["#1 asyncio", "#4 asyncio"]
    assert "The runs asked for." in page.sections["compare"]
    assert list(parse(report(fake_db, run_ids=[3, 3])).series) == ["#3 process"]
    with pytest.raises(ReportError, match=r"^no run 9 in this database \(`crawler runs` lists them\)$"):
        report(fake_db, run_ids=[9, 1])


def test_default_runs_are_the_ones_compare_shows(tmp_path: Path) -> None:
    path = build_db(tmp_path / "crawl.db")
    conn = sqlite3.connect(path)
    with conn:  # a later thread run that failed before fetching anything: compare skips it, so does the report
        conn.execute("INSERT INTO runs (id, backend, status, pages) VALUES (6, 'thread', 'failed', 0)")
    conn.close()
    page = parse(report(path))
    expected = ["#2 thread", "#3 process", "#4 asyncio", "#5 gevent"]
    db = open_readonly(path)
    try:
        assert latest_run_ids(db) == [2, 3, 4, 5]
    finally:
        db.close()
    assert list(page.series) == expected
    assert [bar.label for bar in page.charts["chart-backends"]] == expected
    assert page.tiles["runs"] == "runs6"


def test_hostile_text_is_escaped(fake_db: Path) -> None:
    text = report(fake_db)
    assert "<script" not in text.lower()
    assert "<b>" not in text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text  # the title, in the largest-pages table
    assert "&quot;&gt;&lt;script&gt;alert(2)&lt;/script&gt;" in text  # the URL, also in a title="" attribute
    assert "evil&lt;b&gt;.example" in text  # a host, in the hosts chart
    page = parse(text)
    rows = page.table_rows["pages"]
    assert rows[1][0] == sql(fake_db, "SELECT url FROM pages WHERE title = ?", (HOSTILE_TITLE,))[0][0]
    assert rows[1][1] == HOSTILE_TITLE
    assert rows[2][0] == HOSTILE_URL
    assert HOSTILE_HOST in values(page.charts["chart-hosts"])


def test_the_file_loads_nothing_from_anywhere(fake_db: Path) -> None:
    text = report(fake_db)
    page = parse(text)
    assert not [tag for tag, _ in page.tags if tag in ("script", "link", "img", "iframe", "object", "embed")]
    for tag, attrs in page.tags:
        for name in ("src", "href", "xlink:href", "srcset", "action", "data"):
            assert name not in attrs, (tag, attrs)
    assert not re.search(r"""(?:src|href)\s*=\s*["']?\s*(?:https?:)?//""", text, re.IGNORECASE)
    assert "@import" not in text
    assert "url(" not in text
    assert "@font-face" not in text
    assert {tag for tag, _ in page.tags} >= {"style", "svg", "rect", "circle", "polyline", "title"}


def test_every_mark_has_a_tooltip(fake_db: Path) -> None:
    page = parse(report(fake_db))
    assert set(page.charts) == {"chart-sizes", "chart-hosts", "chart-status", "chart-timeline", "chart-backends"}
    for chart, marks in page.charts.items():
        assert marks, chart
        assert all(mark.title for mark in marks), chart


def test_an_old_database_without_runs_gets_one_line_and_no_comparison(tmp_path: Path) -> None:
    path = build_db(tmp_path / "old.db", runs=False)
    text = report(path)
    page = parse(text)
    assert "chart-backends" not in page.charts
    assert "This database has no runs table (an older crawler wrote it)" in page.sections["compare"]
    assert list(page.series) == ["all pages"]
    points = page.series["all pages"]
    assert sum(point.value for point in points) == sum(spec.pages for spec in RUNS)
    assert len(points) <= 120  # 40 minutes and 12 s from the first page to the last: 30 s buckets
    assert "(30 s buckets)" in page.sections["timeline"]
    assert page.tiles["runs"] == "runs— not recorded"
    with pytest.raises(ReportError, match=r"^this database has no runs table \(it was written before runs"):
        report(path, run_ids=[1])


def test_an_empty_database_shows_empty_states(tmp_path: Path) -> None:
    path = tmp_path / "empty.db"
    db = sqlite_utils.Database(path)
    db.table("pages").create({**PAGES_COLUMNS, "run_id": int}, pk="url")
    db.table("runs").create(RUNS_COLUMNS, pk="id")
    db.close()
    page = parse(report(path))
    assert page.charts == {}
    assert "No page got a response yet" in page.sections["sizes"]
    assert "No pages yet." in page.sections["hosts"]
    assert "No pages yet." in page.sections["statuses"]
    assert "No pages with a fetch time yet." in page.sections["timeline"]
    assert "No run has written pages yet." in page.sections["compare"]
    assert "No pages with a size yet." in page.sections["largest"]
    assert page.tiles["pages"] == "pages0"


def test_report_of_a_real_crawl(site: SiteServer, tmp_path: Path) -> None:
    path = tmp_path / "crawl.db"
    run = run_cli(
        "crawl", site.url("/"), "--db", str(path), "--backend", "asyncio", "--depth", "5", "--timeout", TEST_TIMEOUT,
        *FAST_RETRIES,
    )  # fmt: skip
    assert run.exit_code == 0, run.stderr
    page = parse(report(path))
    (pages,) = sql(path, "SELECT count(*) FROM pages")[0]
    assert page.tiles["pages"] == f"pages{pages}"
    (size,) = sql(path, "SELECT sum(size) FROM pages")[0]
    assert [(bar.label, bar.value) for bar in page.charts["chart-hosts"]] == [("127.0.0.1", pages), ("127.0.0.1", size)]
    statuses = values(page.charts["chart-status"])
    assert statuses["200 OK"] == sql(path, "SELECT count(*) FROM pages WHERE status = 200")[0][0]
    assert statuses["404 Not Found"] == 1
    assert statuses["500 Internal Server Error"] == 1
    assert statuses["timeout (no response)"] == 1  # /slow.html
    sizes = page.charts["chart-sizes"]
    assert sum(bar.value for bar in sizes) == sql(path, "SELECT count(*) FROM pages WHERE status IS NOT NULL")[0][0]
    assert sizes[-1].label == f"32{DASH}64 KB"  # the 50,000-byte page
    assert sum(point.value for line in page.series.values() for point in line) == pages
    # A crawl of a few seconds gets sub-second buckets, so its line has points to draw.
    assert re.search(r"time since the run started \(0\.[125] s buckets\)", page.sections["timeline"])
    assert all(2 <= len(line) <= 120 for line in page.series.values())
    assert list(page.series) == ["#1 asyncio"]
    assert [bar.label for bar in page.charts["chart-backends"]] == ["#1 asyncio"]


def chart_ticks(text: str, chart_id: str) -> list[str]:
    """The tick labels of a chart of the report, in the order drawn."""
    svg = re.search(rf'<svg id="{chart_id}".*?</svg>', text)
    assert svg is not None, chart_id
    return re.findall(r'<text class="tick"[^>]*>([^<]*)</text>', svg.group())


def test_the_timeline_draws_every_run_it_lists(site: SiteServer, tmp_path: Path, backend: str) -> None:
    # A crawl, then a refresh that fetches every page again: `pages` keeps the refresh's fetch of each page only,
    # but the first run still has its line, with every page it fetched.
    path = tmp_path / "crawl.db"
    common = ("--db", str(path), "--backend", backend, "--depth", "5", "--timeout", TEST_TIMEOUT, *FAST_RETRIES)
    for extra in ((), ("--refresh",)):
        run = run_cli("crawl", site.url("/"), *common, *extra)
        assert run.exit_code == 0, run.stderr
    fetched = dict(sql(path, "SELECT run_id, count(*) FROM fetches GROUP BY run_id"))
    assert set(fetched) == {1, 2}
    assert sql(path, "SELECT count(*) FROM pages WHERE run_id = 1")[0][0] == 0  # the refresh overwrote them all
    page = parse(report(path, run_ids=[1, 2]))
    labels = [f"#1 {backend}", f"#2 {backend}"]
    assert list(page.series) == labels
    assert {label: sum(point.value for point in page.series[label]) for label in labels} == {
        labels[0]: fetched[1],
        labels[1]: fetched[2],
    }
    for run, label in enumerate(labels, 1):  # the legend lists each line with its pages
        assert f"{label} {fetched[run]:,} pages" in page.sections["timeline"]
    assert [bar.label for bar in page.charts["chart-backends"]] == labels


def test_a_crawl_in_which_every_page_failed_gets_sensible_axes(site: SiteServer, tmp_path: Path, backend: str) -> None:
    path = tmp_path / "crawl.db"
    run = run_cli(
        "crawl", site.url("/slow.html"), "--db", str(path), "--backend", backend, "--timeout", TEST_TIMEOUT,
        "--retries", "0",
    )  # fmt: skip
    assert run.exit_code == 0, run.stderr
    assert sql(path, "SELECT status, error_kind, size FROM pages") == [(None, "timeout", None)]
    text = report(path)
    page = parse(text)
    assert page.tiles["bytes"] == "bytes0 B"
    assert "No page got a response yet: there are no sizes." in page.sections["sizes"]
    # No byte came back: the hosts chart has a pages axis only, not a bytes axis from 0 to "1 B".
    assert [(bar.label, bar.value) for bar in page.charts["chart-hosts"]] == [("127.0.0.1", 1)]
    assert chart_ticks(text, "chart-hosts") == ["127.0.0.1", "0", "1"]
    assert "No page brought a byte back, so there are pages only." in page.sections["hosts"]
    assert values(page.charts["chart-status"]) == {"timeout (no response)": 1}
    assert sum(point.value for line in page.series.values() for point in line) == 1
    for chart in page.charts:
        ticks = [tick for tick in chart_ticks(text, chart) if tick[0].isdigit()]
        assert len(ticks) == len(set(ticks)) >= 2, (chart, ticks)
        assert "1 B" not in ticks


# -- a real browser -----------------------------------------------------------------------------------------

CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    "--disable-dev-shm-usage",
    "--hide-scrollbars",
    "--window-size=1280,1000",
]

INSPECT_JS = """
(() => {
  const charts = {};
  for (const svg of document.querySelectorAll('svg.chart')) {
    const box = svg.getBoundingClientRect();
    const bars = [...svg.querySelectorAll('rect.bar')];
    const texts = [...svg.querySelectorAll('text')].map(t => t.getBoundingClientRect());
    charts[svg.id] = {
      width: box.width,
      height: box.height,
      bars: bars.length,
      barsDrawn: bars.filter(b => { const r = b.getBoundingClientRect(); return r.width > 0 && r.height > 0; }).length,
      barsNonZero: bars.filter(b => Number(b.dataset.value) > 0).length,
      points: svg.querySelectorAll('circle.point').length,
      lines: svg.querySelectorAll('polyline.line').length,
      titled: svg.querySelectorAll('rect.bar > title, circle.point > title').length,
      textsOutside: texts.filter(r => r.left < box.left - 1 || r.right > box.right + 1
                                   || r.top < box.top - 1 || r.bottom > box.bottom + 1).length,
    };
  }
  return {
    charts,
    resources: performance.getEntriesByType('resource').length,
    scripts: document.scripts.length,
    scrollWidth: document.documentElement.scrollWidth,
    innerWidth: window.innerWidth,
    fontFamily: getComputedStyle(document.body).fontFamily,
  };
})()
"""


class Cdp:
    """A minimal Chrome DevTools Protocol client over one websocket: calls in turn, events kept."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.events: list[dict[str, Any]] = []
        self._next_id = 0

    async def _receive(self) -> dict[str, Any]:
        message: dict[str, Any] = json.loads(await self.ws.receive_str())
        if "method" in message:
            self.events.append(message)
        return message

    async def call(self, method: str, **params: Any) -> dict[str, Any]:
        self._next_id += 1
        await self.ws.send_json({"id": self._next_id, "method": method, "params": params})
        while True:
            message = await self._receive()
            if message.get("id") == self._next_id:
                assert "error" not in message, message
                result: dict[str, Any] = message["result"]
                return result

    async def wait_for(self, method: str) -> dict[str, Any]:
        seen = 0
        while True:
            for event in self.events[seen:]:
                if event["method"] == method:
                    return event
            seen = len(self.events)
            await self._receive()


async def inspect_in_browser(port: int, url: str, screenshot: Path) -> tuple[dict[str, Any], list[str]]:
    """Load `url` in the browser's first tab, watching the network; returns what INSPECT_JS finds and the
    URLs of every request made. Saves a full-page screenshot."""
    async with aiohttp.ClientSession() as http:
        async with http.get(f"http://127.0.0.1:{port}/json/list") as response:
            targets = await response.json()
        tab = next(target for target in targets if target["type"] == "page")
        async with http.ws_connect(tab["webSocketDebuggerUrl"], max_msg_size=0) as ws:
            cdp = Cdp(ws)
            async with asyncio.timeout(60):
                await cdp.call("Network.enable")
                await cdp.call("Page.enable")
                await cdp.call("Page.navigate", url=url)
                await cdp.wait_for("Page.loadEventFired")
                found = await cdp.call("Runtime.evaluate", expression=INSPECT_JS, returnByValue=True)
                metrics = await cdp.call("Page.getLayoutMetrics")
                size = metrics["cssContentSize"]
                shot = await cdp.call(
                    "Page.captureScreenshot",
                    format="png",
                    captureBeyondViewport=True,
                    clip={"x": 0, "y": 0, "width": size["width"], "height": size["height"], "scale": 1},
                )
            screenshot.write_bytes(base64.b64decode(shot["data"]))
            requests = [
                event["params"]["request"]["url"]
                for event in cdp.events
                if event["method"] == "Network.requestWillBeSent"
            ]
            return found["result"]["value"], requests


@pytest.fixture
def chromium(tmp_path: Path) -> Iterator[int]:
    """A headless Chromium with remote debugging on 127.0.0.1; yields its DevTools port."""
    executable = shutil.which("chromium")
    if executable is None:
        pytest.skip("chromium not installed: apt-get install chromium")
    profile = tmp_path / "profile"
    log = (tmp_path / "chromium.log").open("wb")
    process = subprocess.Popen(
        [executable, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "--remote-debugging-port=0", "about:blank"],
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=log,
        start_new_session=True,  # its own process group: the renderers and helpers go with it
    )
    try:
        active = profile / "DevToolsActivePort"
        deadline = time.monotonic() + 30
        while not (active.exists() and active.read_text().count("\n") >= 1):
            assert process.poll() is None, (tmp_path / "chromium.log").read_text(errors="replace")
            assert time.monotonic() < deadline, "chromium did not open its DevTools port within 30 s"
            time.sleep(0.05)
        yield int(active.read_text().splitlines()[0])
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        log.close()


def test_chromium_draws_every_chart_without_loading_anything(chromium: int, fake_db: Path, tmp_path: Path) -> None:
    text = report(fake_db)
    expected = parse(text)
    path = tmp_path / "report.html"
    path.write_text(text, encoding="utf-8")
    screenshot = tmp_path / "report.png"
    found, requests = asyncio.run(inspect_in_browser(chromium, path.as_uri(), screenshot))
    assert requests == [path.as_uri()]  # the document itself, nothing else
    assert found["resources"] == 0
    assert found["scripts"] == 0
    assert found["scrollWidth"] <= found["innerWidth"]  # nothing wider than the window
    assert "system-ui" in found["fontFamily"]
    charts = found["charts"]
    assert set(charts) == set(expected.charts)
    for chart_id, marks in expected.charts.items():
        drawn = charts[chart_id]
        assert drawn["width"] > 200 and drawn["height"] > 100, (chart_id, drawn)
        bars = [mark for mark in marks if mark.tag == "rect"]
        assert drawn["bars"] == len(bars), chart_id
        assert drawn["barsDrawn"] == drawn["barsNonZero"] == sum(1 for bar in bars if bar.value > 0), chart_id
        assert drawn["points"] == len(marks) - len(bars), chart_id
        assert drawn["titled"] == len(marks), chart_id
        assert drawn["textsOutside"] == 0, (chart_id, drawn)
    assert charts["chart-sizes"]["bars"] == 13
    assert charts["chart-hosts"]["bars"] == 2 * 21
    assert charts["chart-status"]["bars"] == len(OUTCOMES)
    assert charts["chart-timeline"]["lines"] == 4
    assert charts["chart-timeline"]["points"] == sum(len(points) for points in expected.series.values())
    assert charts["chart-backends"]["bars"] == 4
    assert screenshot.read_bytes().startswith(b"\x89PNG") and screenshot.stat().st_size > 20_000
