"""Every command through the CLI: seeds, help, stats, top, query, demo, errors and Ctrl-C."""

from __future__ import annotations

import csv
import inspect
import io
import json
import re
import shlex
import shutil
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
from importlib import metadata
from itertools import pairwise
from pathlib import Path

import pytest

from crawler.commands import app, crawl
from crawler.commands.app import HELP_ORDER
from crawler.engine.config import SETTINGS
from crawler.site.generate import generate_site, page_path
from crawler.site.server import SiteServer
from crawler.words import human_bytes
from tests.conftest import FAST_RETRIES, TEST_TIMEOUT, pages_by_url, rows, run_cli, run_line
from tests.support.media import can_mount_read_only, read_only_copy


@pytest.fixture(scope="module")
def crawled(site: SiteServer, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A database holding a full crawl of the fixture site."""
    db = tmp_path_factory.mktemp("crawled") / "crawl.db"
    run = run_cli("crawl", site.url("/"), "--db", str(db), "--depth", "5", "--timeout", TEST_TIMEOUT, *FAST_RETRIES)
    assert run.exit_code == 0, run.stderr
    return db


def test_bad_seed_lines_are_reported_and_the_rest_crawled(site: SiteServer, backend: str, tmp_path: Path) -> None:
    seeds = tmp_path / "seeds.txt"
    seeds.write_text(
        "# my sites\n"
        "\n"
        f"{site.url('/about.html')}   # inline comment\n"
        "example.com\n"
        "ftp://files.example.invalid/\n"
        "http://[::1/\n"
        f"{site.url('/docs/../docs/guide.html#top')}\n"
        f"{site.url('/about.html')}\n"
    )
    db = tmp_path / "crawl.db"
    run = run_cli("crawl", str(seeds), "--backend", backend, "--db", str(db), "--depth", "0")
    assert run.exit_code == 0, run.stderr
    skipped = [line for line in run.stderr.splitlines() if line.startswith("Skipped seed:")]
    assert [line.split(": ", 2)[1] for line in skipped] == [f"{seeds}:4", f"{seeds}:5", f"{seeds}:6"]
    assert "not a URL (no scheme); did you mean http://example.com/?" in skipped[0]
    assert "unsupported scheme 'ftp'" in skipped[1]
    assert sorted(pages_by_url(db)) == [site.url("/about.html"), site.url("/docs/guide.html")]
    assert "from 2 seeds" in run.stdout


@pytest.mark.parametrize(
    ("seed", "message"),
    [
        ("example.org", "seed file not found: example.org; did you mean http://example.org/?"),
        (
            "www.example.org/docs?x=1",
            "seed file not found: www.example.org/docs?x=1; did you mean http://www.example.org/docs?x=1?",
        ),
        ("missing-seeds.txt", "seed file not found: missing-seeds.txt"),  # a file name, not a host
        ("nohost", "seed file not found: nohost"),
    ],
)
def test_a_seed_without_a_scheme_says_which_url_it_means(tmp_path: Path, seed: str, message: str) -> None:
    run = run_cli("crawl", seed, "--db", str(tmp_path / "x.db"), cwd=tmp_path)
    assert (run.exit_code, run.stderr) == (2, f"Error: {message}\n")
    assert not (tmp_path / "x.db").exists()


def test_the_url_a_host_and_port_seed_means_crawls(site: SiteServer, tmp_path: Path) -> None:
    host_and_port = site.url("/").removeprefix("http://").removesuffix("/")
    run = run_cli("crawl", host_and_port, "--db", str(tmp_path / "x.db"), cwd=tmp_path)
    assert (run.exit_code, run.stderr) == (2, f"Error: seed file not found: {host_and_port}; did you mean "
                                              f"{site.url('/')}?\n")  # fmt: skip
    meant = run.stderr.rpartition("did you mean ")[2].removesuffix("?\n")
    run = run_cli("crawl", meant, "--db", str(tmp_path / "x.db"), "--depth", "0", cwd=tmp_path)
    assert run.exit_code == 0, run.stderr
    assert list(pages_by_url(tmp_path / "x.db")) == [site.url("/")]


def test_a_crawl_run_as_a_program_keeps_its_output_and_exit_code(
    site: SiteServer, backend: str, tmp_path: Path
) -> None:
    # `crawler crawl` ends without the interpreter's teardown (crawler.commands.app.leave): what it printed and its
    # exit code must survive that, with nothing on stderr.
    db = tmp_path / "x.db"
    fast = f"--timeout {TEST_TIMEOUT} {' '.join(FAST_RETRIES)}"
    run = run_line(f"crawler crawl {site.url('/')} --db {db} --depth 1 --backend {backend} --quiet {fast}")
    assert (run.exit_code, run.stderr) == (0, "")
    crawled = re.match(rf"Crawled (\d+) pages from 1 seed with the {backend} backend in ", run.stdout)
    assert crawled is not None, run.stdout
    assert int(crawled[1]) == len(pages_by_url(db)) > 1
    assert run.stdout.splitlines()[-1] == f"  database {db}"
    missing = run_line(f"crawler crawl {tmp_path / 'seeds.txt'} --db {db} --backend {backend}")
    assert (missing.exit_code, missing.stdout, missing.stderr) == (
        2, "", f"Error: seed file not found: {tmp_path / 'seeds.txt'}\n",
    )  # fmt: skip


@pytest.mark.parametrize("seed", ["javascript:alert(1)", "mailto:someone@example.org", "JavaScript:void(0)"])
def test_a_seed_with_another_scheme_gets_no_https_hint(tmp_path: Path, seed: str) -> None:
    # It was read as a file name ("seed file not found"), and in a seed file given "did you mean
    # https://javascript:alert(1)?".
    scheme = seed.partition(":")[0].lower()
    reason = f"unsupported scheme {scheme!r} (only http and https are crawled): {seed!r}"
    run = run_cli("crawl", seed, "--db", str(tmp_path / "x.db"), cwd=tmp_path)
    assert (run.exit_code, run.stderr.splitlines()) == (
        2, [f"Skipped seed: command line: {reason}", "Error: no valid seed URL to crawl"]
    )  # fmt: skip
    (tmp_path / "seeds.txt").write_text(seed + "\n")
    run = run_cli("crawl", "seeds.txt", "--db", str(tmp_path / "x.db"), cwd=tmp_path)
    assert run.stderr.splitlines()[0] == f"Skipped seed: seeds.txt:1: {reason}"


def test_seeds_default_to_seeds_txt(site: SiteServer, tmp_path: Path) -> None:
    (tmp_path / "seeds.txt").write_text(site.url("/docs/deep/two.html") + "\n")
    run = run_cli("crawl", "--db", "out.db", cwd=tmp_path)
    assert run.exit_code == 0, run.stderr
    assert list(pages_by_url(tmp_path / "out.db")) == [site.url("/docs/deep/two.html")]


@pytest.mark.parametrize(
    ("args", "line"),
    [
        (
            ["crawl", "--concurrency", "x"],
            "Invalid value for '--concurrency': Input should be a valid integer, "
            "unable to parse string as an integer. Try 'crawler crawl -h'.",
        ),
        (
            ["crawl", "--backend", "fibers"],
            "Invalid value for '--backend' / '-b': 'fibers' is not one of 'asyncio', "
            "'thread', 'process', 'gevent'. Try 'crawler crawl -h'.",
        ),
        (["stats", "--nope"], "No such option: --nope. Try 'crawler stats -h'."),
        (["nope"], "No such command 'nope'. Try 'crawler -h'."),
        (["--nope"], "No such option: --nope. Try 'crawler -h'."),
        (["query"], "Missing argument 'SQL'. Try 'crawler query -h'."),
    ],
)
def test_a_usage_error_is_one_line_whose_hint_runs(tmp_path: Path, args: list[str], line: str) -> None:
    # Typer drew a box of four or five lines under the usage, with a stray "Value error," in some messages.
    run = run_cli(*args, cwd=tmp_path)
    assert (run.exit_code, run.stdout, run.stderr) == (2, "", f"Error: {line}\n")
    hint = line.rpartition("Try '")[2].removesuffix("'.")
    helped = run_line(hint)
    assert helped.exit_code == 0
    assert helped.stdout.split()[: len(hint.split())] == ["Usage:", *hint.split()[:-1]]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["missing-seeds.txt"], "seed file not found: missing-seeds.txt"),
        (["ftp://example.invalid/"], "no valid seed URL"),
        (["--backend", "fibers", "http://127.0.0.1/"], "Invalid value for '--backend'"),
        (["--depth", "-1", "http://127.0.0.1/"], "Invalid value for '--depth'"),
    ],
)
def test_crawl_usage_errors_exit_2_without_traceback(tmp_path: Path, args: list[str], message: str) -> None:
    run = run_cli("crawl", "--db", str(tmp_path / "x.db"), *args, cwd=tmp_path)
    assert run.exit_code == 2
    assert message in run.stderr
    assert "Traceback" not in run.stderr + run.stdout
    assert not (tmp_path / "x.db").exists()


def test_every_command_has_help() -> None:
    commands = [command.name or command.callback.__name__ for command in app.registered_commands if command.callback]
    assert sorted(commands) == [
        "bench", "broken", "changes", "compare", "crawl", "demo", "export", "pull", "query", "report", "runs",
        "schema", "serve", "site", "stats", "status", "top", "worker",
    ]  # fmt: skip
    assert sorted(commands) == sorted(HELP_ORDER)
    for command in commands:
        run = run_cli(command, "--help")
        assert run.exit_code == 0
        assert "Usage: crawler " + command in run.stdout
        assert run_cli(command, "-h").stdout == run.stdout  # as most tools take it


def test_version_and_short_help() -> None:
    version = subprocess.run([sys.executable, "-m", "crawler", "--version"], capture_output=True, text=True)
    assert (version.returncode, version.stdout, version.stderr) == (0, f"crawler {metadata.version('crawler')}\n", "")
    assert run_cli("-h").stdout == run_cli("--help").stdout
    assert "Usage: crawler [OPTIONS] COMMAND" in run_cli("-h").stdout


def test_help_names_values_as_a_person_reads_them() -> None:
    # typer's defaults show Python types: `<bool>`, `<list[str]>`, `<int range> [x>=1]`, `{SQL}`.
    for command in [[], *([name] for name in HELP_ORDER)]:
        text = run_cli(*command, "--help").stdout
        for noise in ("<bool>", "<int", "<float", "<str>", "<path>", "<list", "[x>", "[x<", "{", "}"):
            assert noise not in text, (command, noise)
    assert "Usage: crawler query [OPTIONS] SQL" in run_cli("query", "-h").stdout
    assert "Usage: crawler crawl [OPTIONS] [SEED]..." in run_cli("crawl", "-h").stdout
    bench = " ".join(run_cli("bench", "-h").stdout.replace("│", " ").split())
    assert "--site realistic|light Pages as heavy" in bench
    assert "--latency-ms MS Server delay" in bench


def test_a_range_hidden_from_help_is_still_enforced() -> None:
    run = run_cli("crawl", "--concurrency", "0", "http://127.0.0.1:9/")
    assert (run.exit_code, run.stderr) == (
        2, "Error: Invalid value for '--concurrency': Input should be greater than or equal to 1. "
           "Try 'crawler crawl -h'.\n",
    )  # fmt: skip


def test_help_lists_the_commands_in_their_order() -> None:
    listed = [line.split()[1] for line in run_cli("--help").stdout.splitlines()
              if line.startswith("│ ") and len(line.split()) > 2 and line.split()[1].isalpha()
              and line[2] != " "]  # fmt: skip
    assert listed == [name for name in HELP_ORDER if name in listed]
    assert set(listed) >= {"crawl", "demo", "bench", "stats", "query", "serve"}


def test_every_crawl_option_is_a_crawl_setting_or_named_as_not_one() -> None:
    # The crawl command hands the settings the user named to the job by their CrawlConfig names: an option
    # renamed on one side only would otherwise be silently dropped (given_settings refuses it).
    crawl_command = next(command for command in app.registered_commands if command.callback is crawl.crawl)
    assert crawl_command.callback is not None
    options = set(inspect.signature(crawl_command.callback).parameters) - {"ctx"}
    settings = {crawl.NEGATED.get(option, option) for option in options - crawl.NOT_SETTINGS}
    assert settings <= set(SETTINGS)
    assert options >= crawl.NOT_SETTINGS
    assert set(SETTINGS) - settings == {"max_redirects", "max_url_length"}  # settings without an option, on purpose


def test_crawl_help_states_every_default() -> None:
    text = " ".join(run_cli("crawl", "--help").stdout.replace("│", " ").split())
    for fragment in [
        "Seed files (one URL a line, # comments) or URLs. [default: (seeds.txt)]",
        "[default: asyncio]",
        "[default: crawl.db]",
        "--concurrency N Requests in flight at once. [default: 8]",
        "--delay SECONDS Seconds between requests to one host",
        "--max-size BYTES Bytes of a body to keep",
        "(0: the seeds only). [default: 2]",
        "Stop after fetching this many pages (in all the runs of a crawl). [default: 500]",
        "--same-host --any-host Follow links only to the seeds' hosts, or anywhere. [default: same-host]",
        "connecting to last byte. [default: 30.0]",
        "Seconds to wait for a connection. [default: 10.0]",
        "Requests in flight at once to one host. [default: 2]",
        "(robots.txt Crawl-delay wins if longer). [default: 0.0]",
        "(0: no cap). [default: 0]",
        "503 or 504. [default: 2]",
        "doubles each time, with jitter. [default: 1.0]",
        "the rest is cut off. [default: 10485760]",
        "--ignore-robots --obey-robots Do not fetch robots.txt or obey it. [default: obey-robots]",
        "--ignore-nofollow",
        "--resume",
        "--restart",
        "--quiet",
        "[default: crawler/0.1.0]",
    ]:
        assert fragment in text


def test_stats_reports_totals_sizes_statuses_and_hosts(crawled: Path) -> None:
    run = run_cli("stats", "--db", str(crawled))
    assert run.exit_code == 0, run.stderr
    sizes = [row["size"] for row in rows(crawled) if row["status"] is not None]
    lines = [" ".join(line.split()) for line in run.stdout.splitlines()]
    assert "pages 14" in lines
    assert "errors 3 (21.4%)" in lines
    assert f"total size {sum(sizes) / 1024:.1f} KB ({sum(sizes):,} bytes)" in lines
    assert f"mean size {human_bytes(statistics.mean(sizes))}" in lines
    assert f"median size {human_bytes(statistics.median(sizes))}" in lines
    assert f"max size {max(sizes) / 1024:.1f} KB" in lines
    assert "200 10" in lines and "301 1" in lines and "404 1" in lines and "500 1" in lines
    assert "(timeout) 1" in lines
    median = human_bytes(statistics.median(sizes))
    assert f"127.0.0.1 14 {sum(sizes) / 1024:.1f} KB {median} 21.4%" in lines
    # Log-scale buckets up to the largest page (the 50 KB one), each with its count and a bar.
    labels = ["< 1 KB", "1-2 KB", "2-4 KB", "4-8 KB", "8-16 KB", "16-32 KB", "32-64 KB"]
    bounds = [0, *(2**k for k in range(10, 17))]
    counts = [sum(low <= size < high for size in sizes) for low, high in pairwise(bounds)]
    firsts = {label.split()[0] for label in labels}
    histogram = [line.rstrip("▏▎▍▌▋▊▉█ ") for line in lines if line.split(" ")[0] in firsts]
    assert histogram == [f"{label} {count}" for label, count in zip(labels, counts, strict=True)]
    assert [line for line in lines if "█" in line and line.startswith(labels[counts.index(max(counts))])]
    html = [row for row in rows(crawled) if (row["content_type"] or "").startswith("text/html") and row["status"]]
    assert f"text/html {len(html)} {human_bytes(sum(row['size'] for row in html))}" in lines
    [pdf] = [row["size"] for row in rows(crawled) if row["content_type"] == "application/pdf"]
    assert f"application/pdf 1 {human_bytes(pdf)}" in lines


def test_top_lists_the_largest_pages_first(crawled: Path, site: SiteServer) -> None:
    run = run_cli("top", "-n", "2", "--db", str(crawled))
    assert run.exit_code == 0, run.stderr
    body = run.stdout.splitlines()[2:]
    assert [line.split()[3] for line in body] == [site.url("/docs/ref/intro.html"), site.url("/files/report.pdf")]
    assert body[0].split()[-1] == "Intro"
    sizes = {row["url"]: row["size"] for row in rows(crawled)}
    assert body[0].split()[:2] == human_bytes(sizes[site.url("/docs/ref/intro.html")]).split()  # as a person reads it
    # --host keeps one host's pages; a host the crawl never saw is an error.
    mine = run_cli("top", "--host", "127.0.0.1", "-n", "1", "--db", str(crawled))
    assert mine.stdout.splitlines()[2].split()[3] == site.url("/docs/ref/intro.html")
    other = run_cli("top", "--host", "example.org", "--db", str(crawled))
    assert (other.exit_code, other.stderr) == (2, "Error: no pages from host 'example.org' in this database\n")


def test_query_prints_an_aligned_table(crawled: Path, site: SiteServer) -> None:
    run = run_cli("query", "SELECT url, status FROM pages WHERE depth = 3", "--db", str(crawled))
    assert run.exit_code == 0, run.stderr
    assert [line.split() for line in run.stdout.splitlines()] == [
        ["url", "status"],
        ["-" * len(site.url("/docs/deep/two.html")), "--------"],
        [site.url("/docs/deep/two.html"), "200"],
    ]


def test_query_csv_and_json(crawled: Path) -> None:
    sql = "SELECT url, size, title FROM pages WHERE status = 200 ORDER BY url"
    expected = [(row["url"], row["size"], row["title"]) for row in rows(crawled, sql)]
    as_csv = run_cli("query", sql, "--csv", "--db", str(crawled))
    assert as_csv.exit_code == 0, as_csv.stderr
    parsed = list(csv.reader(io.StringIO(as_csv.stdout)))
    assert parsed[0] == ["url", "size", "title"]
    assert [(url, int(size), title or None) for url, size, title in parsed[1:]] == expected
    as_json = run_cli("query", sql, "--json", "--db", str(crawled))
    assert [(item["url"], item["size"], item["title"]) for item in json.loads(as_json.stdout)] == expected


@pytest.mark.parametrize(
    ("sql", "message"),
    [
        ("DELETE FROM pages", "read-only"),
        ("UPDATE pages SET size = 0", "read-only"),
        ("DROP TABLE links", "read-only"),
        ("SELEC url FROM pages", "SQL error"),
        ("SELECT nope FROM pages", "SQL error: no such column: nope"),
    ],
)
def test_query_refuses_writes_and_reports_sql_errors(crawled: Path, sql: str, message: str) -> None:
    before = rows(crawled, "SELECT count(*) AS n FROM pages")
    run = run_cli("query", sql, "--db", str(crawled))
    assert run.exit_code == 2
    assert message in run.stderr
    assert "Traceback" not in run.stderr
    assert rows(crawled, "SELECT count(*) AS n FROM pages") == before
    assert rows(crawled, "SELECT count(*) AS n FROM links")[0]["n"] > 0


@pytest.mark.parametrize(
    ("sql", "why"),
    [
        ("ATTACH DATABASE '{other}' AS other", "ATTACH and VACUUM write other files"),
        ("VACUUM INTO '{other}'", "ATTACH and VACUUM write other files"),
        ("VACUUM", "ATTACH and VACUUM write other files"),
        ("PRAGMA journal_mode=DELETE", "PRAGMA journal_mode = ... changes a setting"),
        ("pragma USER_VERSION = 7", "PRAGMA USER_VERSION = ... changes a setting"),
        ("BEGIN", "a transaction statement does nothing on its own"),
        ("SAVEPOINT x", "a transaction statement does nothing on its own"),
    ],
)
def test_query_touches_no_other_file_and_changes_no_setting(crawled: Path, tmp_path: Path, sql: str,
                                                              why: str) -> None:  # fmt: skip
    # A read-only connection alone let ATTACH create a file and VACUUM INTO write one (exit 0), and turned a
    # journal change into "disk I/O error".
    other = tmp_path / "other.db"
    run = run_cli("query", sql.format(other=other), "--db", str(crawled))
    assert (run.exit_code, run.stdout, run.stderr) == (
        2,
        "",
        f"Error: `crawler query` only reads the page database: {why}\n",
    )
    assert not other.exists()
    assert [path.name for path in crawled.parent.iterdir()] == [crawled.name]  # nothing beside the database
    assert rows(crawled, "PRAGMA journal_mode") == [{"journal_mode": "wal"}]


def test_read_commands_leave_no_wal_or_shm_files_behind(crawled: Path, tmp_path: Path) -> None:
    # A read-only connection to a database in WAL mode creates them and cannot remove them (issue #11).
    before = rows(crawled, "SELECT * FROM pages ORDER BY url")
    commands = [["stats"], ["top"], ["runs"], ["broken"], ["query", "SELECT count(*) FROM links"], ["compare"],
                ["export", "-o", str(tmp_path / "pages.csv")], ["report", "-o", str(tmp_path / "r.html")]]  # fmt: skip
    for args in commands:
        run = run_cli(*args, "--db", str(crawled))
        assert run.exit_code == 0, (args, run.stderr)
        assert sorted(path.name for path in crawled.parent.iterdir()) == [crawled.name], args
    assert rows(crawled, "SELECT * FROM pages ORDER BY url") == before


@pytest.mark.parametrize("sql", ["", "   ", "/* only a comment */"])
def test_query_without_a_statement_says_so(crawled: Path, sql: str) -> None:
    run = run_cli("query", sql, "--db", str(crawled))
    assert (run.exit_code, run.stdout) == (2, "")
    assert run.stderr == 'Error: no SQL statement to run: give one, e.g. "SELECT url, size FROM pages"\n'


@pytest.mark.parametrize(
    ("sql", "output"),
    [
        ("PRAGMA journal_mode", ["journal_mode", "-" * 14, "wal"]),
        ("SELECT name FROM pragma_table_info('pages') LIMIT 1", ["name", "-" * 6, "url"]),
        ("PRAGMA table_info(pages)", None),
    ],
)
def test_query_still_reads_pragmas(crawled: Path, sql: str, output: list[str] | None) -> None:
    run = run_cli("query", sql, "--db", str(crawled))
    assert run.exit_code == 0, run.stderr
    if output is None:  # one row a column of `pages`
        assert run.stdout.splitlines()[2].split()[:3] == ["0", "url", "TEXT"]
    else:
        assert run.stdout.split() == output


def test_query_rejects_two_formats_and_writes_json_lines(crawled: Path) -> None:
    run = run_cli("query", "SELECT 1", "--csv", "--json", "--db", str(crawled))
    assert (run.exit_code, run.stderr.strip()) == (2, "Error: choose one of --csv, --json and --nl")
    sql = "SELECT url, size FROM pages ORDER BY url LIMIT 3"
    lines = run_cli("query", sql, "--nl", "--db", str(crawled)).stdout.splitlines()
    assert [json.loads(line) for line in lines] == json.loads(
        run_cli("query", sql, "--json", "--db", str(crawled)).stdout
    )
    assert len(lines) == 3


@pytest.mark.parametrize(
    "command",
    [["stats"], ["top"], ["query", "SELECT 1"], ["runs"], ["compare"], ["broken"], ["export"], ["report"], ["serve"]],
)
def test_read_commands_explain_a_missing_or_foreign_database(command: list[str], tmp_path: Path) -> None:
    missing = run_cli(*command, "--db", str(tmp_path / "none.db"))
    assert missing.exit_code == 2
    assert f"no database at {tmp_path / 'none.db'}" in missing.stderr
    assert not (tmp_path / "none.db").exists()

    text = tmp_path / "notes.db"
    text.write_text("these are not the pages you are looking for\n" * 100)
    foreign = run_cli(*command, "--db", str(text))
    assert (foreign.exit_code, "is not a SQLite database" in foreign.stderr) == (2, True)

    other = tmp_path / "other.db"
    with sqlite3.connect(other) as conn:
        conn.execute("CREATE TABLE things (id INTEGER)")
    unrelated = run_cli(*command, "--db", str(other))
    assert (unrelated.exit_code, "is not a crawl database" in unrelated.stderr) == (2, True)


def test_demo_crawls_a_generated_site_offline(backend: str, tmp_path: Path) -> None:
    db = tmp_path / "demo.db"
    run = run_cli("demo", "--backend", backend, "--pages", "40", "--db", str(db))
    assert run.exit_code == 0, run.stderr
    pages = pages_by_url(db)
    found = {url.split("/", 3)[3] for url, row in pages.items() if row["status"] == 200}
    expected = {page_path(index).lstrip("/") for index in range(40)}
    assert expected <= found
    assert {row["backend"] for row in pages.values()} == {backend}
    assert f"Crawled {len(pages)} pages from 1 seed with the {backend} backend" in run.stdout
    assert f"pages        {len(pages)}" in run.stdout
    explore = run.stdout.splitlines()[-4:]
    assert explore == ["Explore it:", f"  crawler broken --db {db}", f"  crawler report --db {db} -o report.html",
                       f"  crawler serve --db {db}"]  # fmt: skip
    if backend == "asyncio":  # the hints, run as printed (serve in test_serve.py)
        assert run_line(explore[1].strip(), cwd=tmp_path).exit_code == 0
        report = run_line(explore[2].strip(), cwd=tmp_path)
        assert (report.exit_code, (tmp_path / "report.html").is_file()) == (0, True), report.stderr


def test_demo_changes_its_site_refreshes_and_shows_what_changed(backend: str, tmp_path: Path) -> None:
    db = tmp_path / "demo.db"
    # The README's example is the default site's, on asyncio; the other backends crawl a smaller one.
    size = [] if backend == "asyncio" else ["--pages", "40"]
    run = run_cli("demo", "--changes", "--backend", backend, *size, "--db", str(db), "--quiet")
    assert run.exit_code == 0, run.stderr
    heading = next(line for line in run.stdout.splitlines() if line.startswith("From run "))
    refresh = next(line for line in run.stdout.splitlines() if line.startswith("  refresh  "))
    if backend == "asyncio":
        readme = (Path(__file__).parent.parent / "README.md").read_text()
        assert heading in readme and refresh in readme
        assert heading == "From run 1 to run 2: 1 new, 1 gone, 1 with another status, 30 changed, 316 pages unchanged."
    else:
        assert heading == "From run 1 to run 2: 1 new, 1 gone, 1 with another status, 4 changed, 45 pages unchanged."
    urls = {row["url"].split("/", 3)[3]: row for row in pages_by_url(db).values()}
    assert urls["news/added.html"]["status"] == 200  # only the sitemap lists it
    assert urls["news/retired.html"]["run_id"] == 1  # gone: not reached by the refresh
    # The hints, run as printed: the summary's, then the first to explore.
    hint = next(line for line in run.stdout.splitlines() if line.startswith("What changed: "))
    explore = run.stdout.splitlines()[-5:]
    assert explore[:2] == ["Explore it:", f"  crawler changes --db {db}"]
    for line in (hint.removeprefix("What changed: "), explore[1].strip()):
        shown = run_line(line, cwd=tmp_path)
        assert (shown.exit_code, shown.stdout.splitlines()[0]) == (0, heading), shown.stderr


def test_python_dash_m_crawler_runs() -> None:
    done = subprocess.run([sys.executable, "-m", "crawler", "--help"], capture_output=True, text=True, check=False)
    assert done.returncode == 0
    assert "crawl" in done.stdout and "demo" in done.stdout


def test_bench_measures_and_checks_every_backend() -> None:
    run = run_cli("bench", "--pages", "15", "--rounds", "1", "--concurrency", "4", "--hosts", "2", "--json")
    assert run.exit_code == 0, run.stderr
    record = json.loads(run.stdout)
    medians = {row["backend"]: row for row in record["medians"]}
    assert list(medians) == ["asyncio", "thread", "process", "gevent"]
    for row in medians.values():
        assert row["correct"] is True
        assert row["pages"] >= 2 * (15 + 2)  # each host: its pages and two files, besides redirects and errors
        assert row["pages_per_second"] > 0 and row["cpu_seconds"] > 0 and row["peak_rss_mb"] > 0
    assert {run["backend"] for run in record["runs"]} == set(medians)
    assert all(run["problems"] == [] for run in record["runs"])


def test_bench_prints_a_table() -> None:
    run = run_cli("bench", "--pages", "10", "--rounds", "1", "--concurrency", "2", "--backend", "thread")
    assert run.exit_code == 0, run.stderr
    header, _, row, note = run.stdout.splitlines()
    assert header.split()[:4] == ["backend", "pages", "pages/s", "CPU"]
    assert row.split()[0] == "thread" and row.split()[-1] == "ok"
    # CPU ms/page, parse alone, beyond it: the note says the first is the sum of the others, and it is.
    cpu, alone, beyond, in_crawl = map(float, row.split()[4:8])
    assert note.startswith("In each run, CPU ms/page = parse alone + beyond it")
    assert alone > 0 and cpu == pytest.approx(alone + beyond, abs=0.011)
    assert 0 < in_crawl < cpu  # the parser's own CPU in the crawl: part of the crawl's


READ_COMMANDS = [
    ["stats"], ["top"], ["runs"], ["compare"], ["broken"], ["query", "SELECT count(*) AS n FROM pages"],
    ["export", "-t", "links"], ["report", "-o", "/dev/null"],
]  # fmt: skip


@pytest.mark.skipif(not can_mount_read_only(), reason="needs `unshare -m` (root) to mount a read-only file system")
def test_read_commands_read_a_database_on_read_only_media(crawled: Path, tmp_path: Path) -> None:
    # A crawl database in WAL mode, on a read-only file system (a CD, a read-only share), was "not a SQLite
    # database": SQLite could not create its -shm file, even to read. Each command runs in a mount namespace
    # where a tmpfs holding a copy of the database is remounted read-only.
    mount = tmp_path / "media"
    mount.mkdir()
    expected = {" ".join(args): run_cli(*args, "--db", str(crawled)) for args in READ_COMMANDS}
    script = read_only_copy(mount, crawled)
    for args in READ_COMMANDS:
        line = shlex.join([sys.executable, "-m", "crawler", *args, "--db", f"{mount}/crawl.db"])
        script.append(f"echo '@@@ {' '.join(args)}'; {line}; echo \"rc=$?\"; ls {mount}")
    done = subprocess.run(["unshare", "-m", "sh", "-c", "; ".join(script)], capture_output=True, text=True,
                          cwd=tmp_path, timeout=300, check=False)  # fmt: skip
    assert done.returncode == 0 and "Error" not in done.stderr, done.stderr
    sections = done.stdout.split("@@@ ")[1:]
    assert len(sections) == len(READ_COMMANDS)
    for section, args in zip(sections, READ_COMMANDS, strict=True):
        name, _, rest = section.partition("\n")
        assert name == " ".join(args)
        output, _, listing = rest.rpartition("rc=")
        code, _, files = listing.partition("\n")
        assert (code, files.split()) == ("0", ["crawl.db"]), (name, section)  # and no -wal or -shm left
        want = expected[name].stdout.replace(str(crawled), f"{mount}/crawl.db")
        if args[0] == "report":  # the report names its database: its size differs with the path
            want, output = want.partition("(")[0], output.partition("(")[0]
        assert output == want, name


@pytest.mark.parametrize("stop_with", [signal.SIGINT, signal.SIGTERM], ids=lambda signum: signum.name)
def test_site_serves_the_generated_site_and_its_hint_crawls_all_of_it(
    tmp_path: Path, stop_with: signal.Signals
) -> None:
    with subprocess.Popen(
        [sys.executable, "-m", "crawler", "site", "--pages", "30", "--profile", "light", "--port", "0"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path,
    ) as server:  # fmt: skip
        try:
            assert server.stdout is not None and server.stderr is not None
            serving = server.stdout.readline()
            origin = serving.removeprefix("Serving ").partition("/ ")[0]
            assert re.fullmatch(r"http://127\.0\.0\.1:\d+", origin), serving
            assert serving == f"Serving {origin}/ (Ctrl-C to stop). Crawl it with:\n"
            hint = server.stdout.readline().strip()
            assert hint == (f"crawler crawl {origin}/ --depth 30 --max-pages 160 --per-host 16 --concurrency 16 "
                            "--db site.db")  # fmt: skip
            run = run_line(hint, cwd=tmp_path)
            assert run.exit_code == 0, run.stderr
            site = generate_site(30, 1, profile="light")
            fetched = {row["url"].removeprefix(origin): row["status"] for row in rows(tmp_path / "site.db")}
            served = {path: resource.status for path, resource in site.items() if path in fetched}
            assert served == {path: fetched[path] for path in served}
            assert {path for path, status in fetched.items() if status == 200} == {
                path for path, resource in site.items() if resource.status == 200 and path != "/robots.txt"
            }
            server.send_signal(stop_with)
            assert server.wait(10) == 0  # a server stopped as servers are: a clean exit
            said = server.stderr.read()
            assert re.fullmatch(
                r"Generating a light site of 30 pages \(seed 1\) \.\.\.\nGenerated in \d+\.\d s\.\n", said
            ), said
        finally:
            if server.poll() is None:
                server.kill()
                server.wait()


def test_site_on_a_busy_port_is_one_line_and_exit_2() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        run = run_line(f"crawler site --pages 5 --port {port}")
    assert (run.exit_code, run.stdout) == (2, "")
    assert run.stderr.splitlines()[-1] == (
        f"Error: cannot serve on port {port} of 127.0.0.1: Address already in use; choose another with --port (0: any)"
    )


@pytest.mark.skipif(not can_mount_read_only(), reason="needs `unshare -m` (root) to mount a read-only file system")
def test_read_only_media_with_unread_changes_is_refused_even_through_a_symlink(crawled: Path, tmp_path: Path) -> None:
    # A -wal file that holds changes cannot be read there: opened immutable, the database would show its old
    # state, silently. Through a symlink, the -wal file is beside the file the link points to.
    db = tmp_path / "crawl.db"
    shutil.copyfile(crawled, db)
    writer = sqlite3.connect(db)
    writer.execute("PRAGMA wal_autocheckpoint = 0")
    writer.execute("DELETE FROM pages")
    writer.commit()
    shutil.copyfile(db, tmp_path / "frozen.db")  # the main file, and the -wal beside it that deletes every page
    shutil.copyfile(f"{db}-wal", tmp_path / "frozen.db-wal")
    writer.close()
    mount = tmp_path / "media"
    mount.mkdir()
    (tmp_path / "link.db").symlink_to(mount / "frozen.db")
    script = read_only_copy(mount, tmp_path / "frozen.db", tmp_path / "frozen.db-wal")
    for path in (mount / "frozen.db", tmp_path / "link.db"):
        query = shlex.join(
            [sys.executable, "-m", "crawler", "query", "SELECT count(*) AS n FROM pages", "--db", str(path)]
        )
        script.append(f'{query}; echo "rc=$?"')
    done = subprocess.run(["unshare", "-m", "sh", "-c", "; ".join(script)], capture_output=True, text=True,
                          cwd=tmp_path, timeout=120, check=False)  # fmt: skip
    refused = (f"Error: cannot read {mount}/frozen.db on read-only media: its frozen.db-wal file holds changes "
               "that only a writable copy can read (copy both files somewhere writable)\n")  # fmt: skip
    assert done.stdout == "rc=2\nrc=2\n", done.stdout
    assert done.stderr == refused.replace(f"{mount}/frozen.db", str(mount / "frozen.db")) + refused.replace(
        f"{mount}/frozen.db", str(tmp_path / "link.db")
    )


def test_site_with_one_host_of_several_unavailable_says_which_and_leaks_nothing() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.2", 0))
        taken.listen()
        port = taken.getsockname()[1]
        run = run_line(f"crawler site --pages 5 --hosts 2 --port {port}")  # 127.0.0.1 binds, 127.0.0.2 does not
    assert (run.exit_code, run.stdout) == (2, "")
    assert run.stderr.splitlines()[2:] == [  # after the two lines about generating, nothing (no ResourceWarning)
        f"Error: cannot serve on port {port} of 127.0.0.2: Address already in use; choose another with --port (0: any)"
    ]
