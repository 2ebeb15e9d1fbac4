"""The database as a data tool: runs, compare, stats filters, broken links, export, and reading it safely."""

from __future__ import annotations

import csv
import io
import json
import sqlite3
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path
from typing import Any

import pytest

from crawler.commands.export import ExportTable
from crawler.site.generate import Resource
from crawler.site.server import SiteServer
from crawler.views.compare import diagnose
from fetchers import BACKENDS
from storage import EXPORT_TABLES, PageStore
from tests.conftest import FAST_RETRIES, TEST_TIMEOUT, Serve, page_html, rows, run_cli
from tests.support.hostile import Hostile


@pytest.fixture(scope="module")
def every_backend(site: SiteServer, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One database in which the fixture site was crawled by each backend in turn (runs 1 to 4)."""
    db = tmp_path_factory.mktemp("every") / "crawl.db"
    for backend in BACKENDS:
        run = run_cli("crawl", site.url("/"), "--backend", backend, "--db", str(db), "--depth", "5",
                      "--concurrency", "4", "--timeout", TEST_TIMEOUT, *FAST_RETRIES)  # fmt: skip
        assert run.exit_code == 0, run.stderr
    return db


def test_runs_lists_every_crawl(every_backend: Path, site: SiteServer) -> None:
    run = run_cli("runs", "--db", str(every_backend))
    assert run.exit_code == 0, run.stderr
    lines = [line.split() for line in run.stdout.splitlines()[2:]]
    assert [(line[0], line[1], line[4], line[5], line[6], line[7], line[8]) for line in lines] == [
        (str(number), str(number), "finished", backend, "4", "14", "3") for number, backend in enumerate(BACKENDS, 1)
    ]  # each crawl of the finished database was a new pass over the site
    assert all(line[-1] == site.url("/") for line in lines)
    as_json = json.loads(run_cli("runs", "--json", "--db", str(every_backend)).stdout)
    assert as_json == rows(every_backend, "SELECT * FROM runs ORDER BY id")


def test_compare_lays_the_latest_run_of_each_backend_side_by_side(every_backend: Path) -> None:
    run = run_cli("compare", "--json", "--db", str(every_backend))
    assert run.exit_code == 0, run.stderr
    compared = json.loads(run.stdout)
    recorded = rows(every_backend, "SELECT * FROM runs ORDER BY id")
    assert [(item["id"], item["backend"]) for item in compared] == [(row["id"], row["backend"]) for row in recorded]
    best = max(row["pages_per_second"] for row in recorded)
    for item, row in zip(compared, recorded, strict=True):
        assert item["ratio_to_best"] == pytest.approx(row["pages_per_second"] / best)
        assert item["cpu_ms_per_page"] == pytest.approx(1000 * row["cpu_seconds"] / 14)
        assert item["in_flight"] == pytest.approx(row["fetch_seconds"] / row["elapsed_s"])
        assert item["verdict"] == diagnose(row)
    text = run_cli("compare", "--db", str(every_backend)).stdout
    lines = [" ".join(line.split()) for line in text.splitlines()]
    assert lines[0] == "run 1 2 3 4"
    # A run named twice is one column.
    twice = run_cli("compare", "2", "2", "3", "--db", str(every_backend)).stdout
    assert " ".join(twice.splitlines()[0].split()) == "run 2 3"
    assert f"backend {' '.join(BACKENDS)}" in lines
    assert "pages 14 14 14 14" in lines
    fastest = max(recorded, key=lambda row: row["pages_per_second"])
    assert f"Fastest: run {fastest['id']} ({fastest['backend']}), {fastest['pages_per_second']:,.1f} pages/s." in lines
    assert sum(line.startswith(f"run {row['id']} ({row['backend']}): ") for row in recorded for line in lines) == 4
    assert not any(line.startswith("Note:") for line in lines)  # the same seeds and settings


def test_compare_named_runs_in_the_order_given_and_unknown_ones(every_backend: Path) -> None:
    run = run_cli("compare", "3", "1", "--json", "--db", str(every_backend))
    assert [item["id"] for item in json.loads(run.stdout)] == [3, 1]
    missing = run_cli("compare", "1", "9", "--db", str(every_backend))
    assert (missing.exit_code, missing.stderr.strip()) == (
        2,
        "Error: no run 9 in this database (`crawler runs` lists them)",
    )


def _run(**fields: Any) -> dict[str, Any]:
    """A runs row: 1,000 pages in 10 s at concurrency 10, 2 CPU s, unless `fields` say otherwise."""
    row: dict[str, Any] = {
        "id": 1, "pages": 1000, "errors": 0, "elapsed_s": 10.0, "fetch_seconds": 20.0, "concurrency": 10,
        "per_host": 10, "cpu_seconds": 2.0, "parse_seconds": 1.0, "latency_p50_ms": 20.0, "retries": 0,
        "settings": json.dumps({"delay": 0.0}), "parser": "lxml",
    }  # fmt: skip
    return row | fields


@pytest.mark.parametrize(
    ("fields", "verdict"),
    [
        ({"pages": 30}, "too short to judge (30 pages in 10.00 s)"),
        ({"errors": 300}, "error-bound: 30% of pages failed; see `crawler stats --run 1`"),
        ({"fetch_seconds": 90.0}, "latency-bound: 9.0 of 10 requests in flight on average, 20 ms each (median)"),
        ({"cpu_seconds": 9.5}, "CPU-bound: 0.95 cores busy, 9.5 ms of CPU a page, 10% of the time parsing; a leaner"),
        ({"cpu_seconds": 9.5, "parser": "bs4"}, "10% of the time parsing; --parser lxml or a leaner backend would"),
        ({"per_host": 2, "settings": json.dumps({"delay": 0.5})}, "held back by --per-host 2, --delay 0.5, "),
        ({"retries": 7}, "slots mostly idle: 2.0 of 10 requests in flight on average, 20% of a core; held back by 7"),
    ],
)
def test_diagnose_names_what_held_a_run_back(fields: dict[str, Any], verdict: str) -> None:
    assert verdict in diagnose(_run(**fields))


def test_stats_filters_by_run_and_host(every_backend: Path, site: SiteServer) -> None:
    # Each crawl fetched the site anew: `pages` holds the last run's rows, and the history every run's.
    last = run_cli("stats", "--run", "4", "--db", str(every_backend))
    assert last.exit_code == 0, last.stderr
    assert "pages 14" in [" ".join(line.split()) for line in last.stdout.splitlines()]
    first = run_cli("stats", "--run", "1", "--db", str(every_backend))
    assert "pages 14" in [" ".join(line.split()) for line in first.stdout.splitlines()]
    by_host = run_cli("stats", "--host", "127.0.0.1", "--db", str(every_backend))
    assert "pages 14" in [" ".join(line.split()) for line in by_host.stdout.splitlines()]
    for args, message in [
        (["--run", "99"], "Error: no run 99 in this database (`crawler runs` lists them)"),
        (["--host", "example.invalid"], "Error: no pages from host 'example.invalid' in this database"),
    ]:
        wrong = run_cli("stats", *args, "--db", str(every_backend))
        assert (wrong.exit_code, wrong.stderr.strip()) == (2, message)


def test_broken_lists_failed_targets_with_the_pages_linking_to_them(serve: Serve, backend: str, tmp_path: Path) -> None:
    server = serve({
        "/": Resource(page_html("Home", ["/a.html", "/b.html", "/dead.html", "/gone", "/private/x.html"])),
        "/a.html": Resource(page_html("A", ["/dead.html", "/error", "/"])),
        "/b.html": Resource(page_html("B", ["/dead.html"])),
        "/dead.html": Resource("gone", status=404),
        "/error": Resource("oops", status=503),
        "/gone": Resource("", status=301, headers={"Location": "/lost.html"}),  # which answers 404
        "/robots.txt": Resource("User-agent: *\nDisallow: /private/\n", content_type="text/plain"),
    })  # fmt: skip
    db = tmp_path / "crawl.db"
    crawled = run_cli("crawl", server.url("/"), "--backend", backend, "--db", str(db), "--retries", "0")
    assert crawled.exit_code == 0, crawled.stderr
    as_csv = run_cli("broken", "--csv", "--db", str(db))
    assert as_csv.exit_code == 0, as_csv.stderr
    failing = run_cli("broken", "--csv", "--fail", "--db", str(db))  # the same rows; the status says there are some
    assert (failing.exit_code, failing.stdout) == (1, as_csv.stdout)
    url = server.url
    # Robots-disallowed pages are not broken; a redirect is judged by where it ended.
    assert list(csv.reader(io.StringIO(as_csv.stdout))) == [
        ["url", "final_url", "status", "error_kind", "error_message", "from_url"],
        [url("/dead.html"), url("/dead.html"), "404", "http", "HTTP 404 Not Found", url("/")],
        [url("/dead.html"), url("/dead.html"), "404", "http", "HTTP 404 Not Found", url("/a.html")],
        [url("/dead.html"), url("/dead.html"), "404", "http", "HTTP 404 Not Found", url("/b.html")],
        [url("/error"), url("/error"), "503", "http", "HTTP 503 Service Unavailable", url("/a.html")],
        [url("/gone"), url("/lost.html"), "404", "http", "HTTP 404 Not Found", url("/")],
    ]
    text = run_cli("broken", "--db", str(db)).stdout.splitlines()
    assert text[:4] == [
        f"    404  {url('/dead.html')}  HTTP 404 Not Found",
        f"         linked from {url('/')}",
        f"         linked from {url('/a.html')}",
        f"         linked from {url('/b.html')}",
    ]
    assert f"    404  {url('/gone')} -> {url('/lost.html')}  HTTP 404 Not Found" in text
    assert text[-1] == "3 broken URLs."  # /lost.html is not linked: a redirect led there
    linking = [url("/"), url("/a.html"), url("/b.html"), url("/a.html"), url("/")]
    # --json is a JSON array and --nl JSON Lines, as in sqlite-utils and `query` (--json was JSON Lines here).
    as_json = json.loads(run_cli("broken", "--json", "--db", str(db)).stdout)
    assert [row["from_url"] for row in as_json] == linking
    as_lines = run_cli("broken", "--nl", "--db", str(db)).stdout.splitlines()
    assert [json.loads(line) for line in as_lines] == as_json
    both = run_cli("broken", "--json", "--nl", "--db", str(db))
    assert (both.exit_code, both.stderr) == (2, "Error: choose one of --csv, --json and --nl\n")


def test_broken_says_when_there_is_nothing_broken(serve: Serve, tmp_path: Path) -> None:
    server = serve({"/": Resource(page_html("Home", ["/a.html"])), "/a.html": Resource(page_html("A", []))})
    db = tmp_path / "crawl.db"
    assert run_cli("crawl", server.url("/"), "--db", str(db)).exit_code == 0
    run = run_cli("broken", "--db", str(db), "--fail")
    assert (run.exit_code, run.stdout.strip()) == (
        0,
        "No broken links: every link followed led to a page that answered.",
    )


def _parse(text: str, export_format: str) -> list[dict[str, Any]]:
    if export_format == "csv":
        return list(csv.DictReader(io.StringIO(text)))
    if export_format == "json":
        parsed: list[dict[str, Any]] = json.loads(text)
        return parsed
    return [json.loads(line) for line in text.splitlines()]


@pytest.mark.parametrize("export_format", ["csv", "json", "ndjson"])
@pytest.mark.parametrize("table", ["pages", "fetches", "links", "runs", "frontier", "sitemaps"])
def test_export_writes_every_row_of_a_table(every_backend: Path, table: str, export_format: str) -> None:
    run = run_cli("export", "--table", table, "--format", export_format, "--db", str(every_backend))
    assert run.exit_code == 0, run.stderr
    expected = rows(every_backend, f"SELECT * FROM {table} ORDER BY rowid")
    if export_format == "csv":  # CSV has text only, and NULL becomes an empty field
        expected = [{key: "" if value is None else str(value) for key, value in row.items()} for row in expected]
    assert _parse(run.stdout, export_format) == expected
    # fetches: the 14 pages of each of the 4 runs; sitemaps: each run asked for /sitemap.xml (a 404).
    assert len(expected) == {"pages": 14, "fetches": 56, "links": 15, "runs": 4, "frontier": 14, "sitemaps": 4}[table]


def test_export_to_a_file_takes_the_format_from_its_suffix(every_backend: Path, tmp_path: Path) -> None:
    for name, export_format in [("pages.csv", "csv"), ("pages.json", "json"), ("pages.jsonl", "ndjson")]:
        run = run_cli("export", "-o", str(tmp_path / name), "--db", str(every_backend))
        assert run.exit_code == 0, run.stderr
        assert run.stderr.strip() == f"Wrote pages to {tmp_path / name} ({export_format})."
        assert len(_parse((tmp_path / name).read_text(), export_format)) == 14
    # An unknown suffix was written as CSV without a word.
    unknown = run_cli("export", "-o", str(tmp_path / "pages.xlsx"), "--db", str(every_backend))
    assert (unknown.exit_code, unknown.stderr) == (
        2, "Error: cannot tell the format from 'pages.xlsx': name it .csv, .json, .ndjson or .jsonl, or give --format\n"
    )  # fmt: skip
    assert not (tmp_path / "pages.xlsx").exists()
    forced = run_cli("export", "-o", str(tmp_path / "pages.txt"), "--format", "ndjson", "--db", str(every_backend))
    assert forced.exit_code == 0, forced.stderr
    assert len(_parse((tmp_path / "pages.txt").read_text(), "ndjson")) == 14
    unwritable = run_cli("export", "-o", str(tmp_path / "no" / "such" / "dir.csv"), "--db", str(every_backend))
    assert unwritable.exit_code == 2
    assert unwritable.stderr.startswith(f"Error: cannot write {tmp_path / 'no' / 'such' / 'dir.csv'}: ")


def test_export_tables_match_storage() -> None:
    assert [table.value for table in ExportTable] == list(EXPORT_TABLES)


def test_export_streams_in_constant_memory(tmp_path: Path) -> None:
    db = tmp_path / "big.db"
    PageStore(db).close()  # the crawl schema
    with sqlite3.connect(db) as conn:
        conn.executemany(
            "INSERT INTO links (from_url, to_url) VALUES (?, ?)",
            ((f"http://127.0.0.1/page/{n // 20}.html", f"http://127.0.0.1/target/{n}.html") for n in range(200_000)),
        )
    out = tmp_path / "links.ndjson"
    tracemalloc.start()
    try:
        run = run_cli("export", "--table", "links", "-o", str(out), "--db", str(db))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert run.exit_code == 0, run.stderr
    assert len(out.read_text().splitlines()) == 200_000
    # Holding the rows would take tens of MB (200,000 tuples of two strings); streaming holds a few.
    assert peak < 5 * 2**20, f"export held {peak / 2**20:.1f} MB"


def test_read_commands_work_while_a_crawl_writes(serve: Serve, tmp_path: Path) -> None:
    pages = {f"/p{n}.html": Hostile(page_html(f"P{n}", [f"/p{n + 1}.html"]), delay=0.05) for n in range(60)}
    server = serve({"/": Resource(page_html("Home", ["/p0.html"])), **pages})
    db = tmp_path / "crawl.db"
    crawl = subprocess.Popen(
        [sys.executable, "-m", "crawler", "crawl", server.url("/"), "--db", str(db), "--depth", "100", "--quiet"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not (db.exists() and _pages(db) >= 5):
            time.sleep(0.05)
        for command in (["stats"], ["runs"], ["compare"], ["broken"], ["export"], ["top"], ["query", "SELECT 1"]):
            run = run_cli(*command, "--db", str(db))
            if command == ["compare"]:  # no run has ended, so none has pages counted yet
                assert run.stderr.startswith("Error: no run with pages"), run.stderr
                continue
            assert run.exit_code == 0, (command, run.stderr)
        assert crawl.poll() is None, "the crawl ended before the read commands ran: make the site slower"
        assert rows(db, "SELECT status FROM runs") == [{"status": "running"}]
    finally:
        _, stderr = crawl.communicate(timeout=60)
    assert crawl.returncode == 0, stderr
    assert _pages(db) == 62  # the home page, p0 to p59, and the p60 they link to, which is missing


def _pages(db: Path) -> int:
    try:
        return int(rows(db, "SELECT count(*) AS n FROM pages")[0]["n"])
    except sqlite3.OperationalError:  # the crawl has not created its tables yet
        return 0


def test_report_writes_one_self_contained_file(every_backend: Path, tmp_path: Path) -> None:
    out = tmp_path / "report.html"
    run = run_cli("report", "-o", str(out), "--db", str(every_backend))
    assert run.exit_code == 0, run.stderr
    assert run.stdout.startswith(f"Wrote {out} (")
    html = out.read_text()
    assert html.startswith("<!DOCTYPE html>")
    assert all(f"#{number} {backend}" in html for number, backend in enumerate(BACKENDS, 1))
    assert "<script" not in html and "<link" not in html
    chosen = run_cli("report", "-o", str(out), "--run", "2", "--run", "4", "--db", str(every_backend))
    assert chosen.exit_code == 0, chosen.stderr
    html = out.read_text()
    assert "#2 thread" in html and "#4 gevent" in html and "#1 asyncio" not in html
    unknown = run_cli("report", "-o", str(out), "--run", "9", "--db", str(every_backend))
    assert unknown.exit_code == 2 and unknown.stderr.startswith("Error: no run 9 in this database")
    unwritable = run_cli("report", "-o", str(tmp_path / "no" / "dir.html"), "--db", str(every_backend))
    assert unwritable.exit_code == 2 and unwritable.stderr.startswith(f"Error: cannot write {tmp_path / 'no'}")
