"""`crawler pull`: a shared crawl's results in PostgreSQL become a SQLite crawl database that every read command
reads, one run per worker, one pass per crawl, a pull at a time adding only what is new."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from crawler.bench.measure import expected_pages
from crawler.cluster.server import LocalPostgres
from crawler.site.server import ServerProcess, SiteOptions, serve_in_subprocess
from crawler.words import counted
from tests.conftest import FAST_RETRIES, Serve, fixture_site, page_count, rows, run_cli, run_line, wait_for

SITE = SiteOptions(pages=20, latency_ms=20)
WHOLE_SITE = ("--depth", "50", "--max-pages", "1000", *FAST_RETRIES)


@pytest.fixture(scope="module")
def generated() -> Iterator[ServerProcess]:
    """The generated site, served for the module's tests."""
    with serve_in_subprocess(SITE) as server:
        yield server


def pg(url: str, sql: str, params: Any = None) -> list[dict[str, Any]]:
    """Rows of a query on the frontier's database, as dicts."""
    import psycopg
    from psycopg.rows import dict_row

    with psycopg.connect(url, row_factory=dict_row, autocommit=True) as conn:
        cursor = conn.execute(sql, params)
        return cursor.fetchall() if cursor.description else []


def done_pages(url: str) -> int:
    """The pages the shared crawl has done."""
    return int(pg(url, "SELECT count(*) AS n FROM urls WHERE state = 'done' AND kind = 'page'")[0]["n"])


def started(url: str) -> bool:
    """Whether a shared crawl was recorded there (its tables made)."""
    return bool(pg(url, "SELECT to_regclass('results') IS NOT NULL AS made")[0]["made"])


def shared_pages(url: str, up_to: int | None = None) -> dict[str, dict[str, Any]]:
    """URL -> the latest page result in PostgreSQL (up to sequence number `up_to`)."""
    found = pg(url, "SELECT url, row, links FROM results WHERE kind = 'page' AND seq <= coalesce(%s, seq) ORDER BY seq",
               [up_to])  # fmt: skip
    return {row["url"]: row for row in found}


def commands(output: str) -> list[str]:
    """The command lines a pull printed for the user."""
    return re.findall(r"crawler [a-z]+ --[^\n`]*", output)


def pull(url: str, db: Path, *more: str) -> str:
    """`crawler pull` into `db`, which must succeed; its output."""
    done = run_cli("pull", "--frontier", url, "--db", str(db), *more)
    assert done.exit_code == 0, done.stderr
    return done.stdout


def test_a_pull_writes_what_the_workers_fetched(
    backend: str, frontier_url: str, generated: ServerProcess, tmp_path: Path
) -> None:
    seed = f"{generated.origins[0]}/"
    crawled = run_cli("crawl", seed, "--frontier", frontier_url, "-b", backend, "-q", "--per-host", "8", *WHOLE_SITE)
    assert crawled.exit_code == 0, crawled.stderr
    db = tmp_path / "crawl.db"
    out = pull(frontier_url, db)
    shared = shared_pages(frontier_url)
    assert page_count(db) == done_pages(frontier_url) == len(shared)
    assert out.startswith(f"Pulled {len(shared)} pages and 1 sitemap from 1 worker into {db}: it holds {len(shared)} ")
    assert "The shared crawl is finished" in out
    pages = {row["url"]: row for row in rows(db)}
    assert {url: (row["status"], row["size"]) for url, row in pages.items()} == {
        url: (result["row"]["status"], result["row"]["size"]) for url, result in shared.items()
    }
    ok = {url: row["size"] for url, row in pages.items() if row["status"] == 200}
    assert ok == expected_pages(SITE, generated.origins)  # the whole site, each page its size
    links = rows(db, "SELECT from_url, count(*) AS n FROM links GROUP BY from_url")
    assert {row["from_url"]: row["n"] for row in links} == {
        url: len(result["links"]) for url, result in shared.items() if result["links"]
    }
    (run,) = rows(db, "SELECT * FROM runs")
    assert (run["backend"], run["status"], run["pages"], run["pass"]) == (backend, "finished", len(shared), 1)
    assert {row["run_id"] for row in pages.values()} == {run["id"]}
    assert rows(db, "SELECT made_by, seeds FROM crawl")[0] == {"made_by": "pull", "seeds": f'["{seed}"]'}
    # Again: nothing is new, nothing changes.
    fetches = rows(db, "SELECT count(*) AS n FROM fetches")
    assert pull(frontier_url, db).startswith(f"Nothing new to pull: {db} holds {len(shared)} pages from 1 run.")
    assert rows(db, "SELECT count(*) AS n FROM fetches") == fetches and page_count(db) == len(shared)


def test_a_pull_writes_what_a_local_crawl_writes(frontier_url: str, serve: Serve, tmp_path: Path) -> None:
    site = fixture_site()  # redirects, errors, retries, a PDF, links of every form
    del site["/slow.html"]
    seed = f"{serve(site).origin}/"
    local, pulled = tmp_path / "local.db", tmp_path / "pulled.db"
    assert run_cli("crawl", seed, "--db", str(local), "-q", *FAST_RETRIES).exit_code == 0
    assert run_cli("crawl", seed, "--frontier", frontier_url, "-q", *FAST_RETRIES).exit_code == 0
    pull(frontier_url, pulled)
    for sql in (
        "SELECT url, final_url, host, status, content_type, size, truncated, title, depth, link_count, "
        "unusable_links, attempts, error_kind, error_message, content_hash, backend FROM pages ORDER BY url",
        "SELECT from_url, to_url, follow FROM links ORDER BY from_url, to_url",
        "SELECT url, status, pages, sitemaps, error_kind, error_message FROM sitemaps ORDER BY url",
        "SELECT url, final_url, status, change FROM fetches ORDER BY url",
    ):
        assert rows(pulled, sql) == rows(local, sql), sql
    assert len(rows(pulled, "SELECT url FROM pages WHERE final_url <> url")) == 1  # /old, to where it led


def test_a_pull_follows_the_crawl_as_it_goes(frontier_url: str, generated: ServerProcess, tmp_path: Path) -> None:
    db = tmp_path / "crawl.db"
    seed = f"{generated.origins[0]}/"
    crawl = subprocess.Popen(
        [sys.executable, "-m", "crawler", "crawl", seed, "--frontier", frontier_url, "-q", "--concurrency", "1",
         "--per-host", "1", "--delay", "0.2", *WHOLE_SITE],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    with crawl:
        wait_for("pages in PostgreSQL", lambda: started(frontier_url) and len(shared_pages(frontier_url)) >= 2)
        # While the worker runs: what it committed so far, its run marked running.
        out = pull(frontier_url, db)
        assert "The shared crawl goes on: 1 worker running" in out, out
        mark = rows(db, "SELECT seq FROM pulled")[0]["seq"]
        assert page_count(db) == len(shared_pages(frontier_url, mark)) >= 2
        assert rows(db, "SELECT status, ended_at FROM runs") == [{"status": "running", "ended_at": None}]
        crawl.send_signal(signal.SIGINT)
        assert crawl.wait(timeout=30) == 130
    # Stopped: the pull adds what came since, closes the run, and says how to go on.
    before = page_count(db)
    out = pull(frontier_url, db)
    now = page_count(db)
    assert now == done_pages(frontier_url) < len(expected_pages(SITE, generated.origins))
    assert out.startswith(f"Pulled {counted(now - before, 'page')} " if now > before else "Nothing new")
    (run,) = rows(db, "SELECT status, ended_at, elapsed_s, cpu_seconds FROM runs")
    assert run["status"] == "interrupted" and run["ended_at"] and run["elapsed_s"] > 0 and run["cpu_seconds"] > 0
    (go_on,) = [line for line in commands(out) if line.startswith("crawler worker")]
    assert go_on == f"crawler worker --frontier {frontier_url}"
    worked = run_line(go_on)
    assert worked.exit_code == 0, worked.stderr
    # The rest, and only the rest: the site is complete, each page once.
    before = page_count(db)
    out = pull(frontier_url, db)
    total = done_pages(frontier_url)
    assert out.startswith(f"Pulled {counted(total - before, 'page')} from 1 worker into {db}: it holds {total} pages")
    ok = {row["url"]: row["size"] for row in rows(db, "SELECT url, size FROM pages WHERE status = 200")}
    assert page_count(db) == total and ok == expected_pages(SITE, generated.origins)
    runs = rows(db, "SELECT id, status, pass FROM runs ORDER BY id")
    assert [(run["status"], run["pass"]) for run in runs] == [("interrupted", 1), ("finished", 1)]
    assert sum(row["n"] for row in rows(db, "SELECT count(*) AS n FROM pages GROUP BY run_id")) == total
    # Every command it printed works as printed, and so does every read command.
    assert commands(out) == [f"crawler stats --db {db}", f"crawler runs --db {db}", f"crawler compare --db {db} 1 2"]
    for line in commands(out):
        shown = run_line(line)
        assert shown.exit_code == 0, (line, shown.stderr)
    reads = [("top",), ("query", "SELECT count(*) FROM pages"), ("broken",), ("export", "-o", str(tmp_path / "p.csv")),
             ("report", "-o", str(tmp_path / "report.html"))]  # fmt: skip
    for args in reads:
        shown = run_cli(*args, "--db", str(db))
        assert shown.exit_code == 0, (args, shown.stderr)
    assert pull(frontier_url, db).startswith(f"Nothing new to pull: {db} holds {total} pages from 2 runs.")
    # A new crawl in the same PostgreSQL database is a new pass over the site.
    again = run_cli("crawl", seed, "--frontier", frontier_url, "-q", "--per-host", "8", *WHOLE_SITE)
    assert again.exit_code == 0, again.stderr
    out = pull(frontier_url, db)
    assert out.startswith(f"Pulled {total} pages and 1 sitemap from 1 worker into {db}: it holds {total} pages from 3 ")
    assert [run["pass"] for run in rows(db, "SELECT pass FROM runs ORDER BY id")] == [1, 1, 2]
    assert rows(db, "SELECT count(*) AS n FROM fetches")[0]["n"] == 2 * total
    changed = run_cli("changes", "--db", str(db))
    assert changed.exit_code == 0, changed.stderr


def test_what_cannot_be_pulled(frontier_url: str, postgres: LocalPostgres, generated: ServerProcess,
                               tmp_path: Path) -> None:  # fmt: skip
    db = tmp_path / "crawl.db"
    for url, why in ((postgres.url().replace(str(postgres.port), "1"), "Error: cannot reach the frontier "),
                     (frontier_url, f"Error: {frontier_url} holds no shared crawl: nothing to pull")):  # fmt: skip
        refused = run_cli("pull", "--frontier", url, "--db", str(db))
        assert (refused.exit_code, refused.stdout) == (2, "")
        assert refused.stderr.startswith(why) and refused.stderr.count("\n") == 1, refused.stderr
        assert not db.exists()
    # Files it does not write: someone else's, a crawl made by `crawler crawl`, one pulled from elsewhere.
    seed = f"{generated.origins[0]}/"
    assert run_cli("crawl", seed, "--frontier", frontier_url, "-q", "--depth", "0").exit_code == 0
    theirs = tmp_path / "notes.txt"
    theirs.write_text("not a database")
    local = tmp_path / "local.db"
    assert run_cli("crawl", seed, "--db", str(local), "-q", "--depth", "0").exit_code == 0
    pull(frontier_url, db, "-q")
    name = f"elsewhere_{uuid.uuid4().hex[:8]}"
    pg(postgres.url(), f"CREATE DATABASE {name}")
    elsewhere = postgres.url(name)
    assert run_cli("crawl", seed, "--frontier", elsewhere, "-q", "--depth", "0").exit_code == 0
    for target, why in ((theirs, "is not a SQLite database"), (local, "holds a crawl made by `crawler crawl`"),
                        (db, "holds results pulled from another frontier")):  # fmt: skip
        kept = target.read_bytes()
        refused = run_cli("pull", "--frontier", elsewhere, "--db", str(target))
        assert refused.exit_code == 2 and why in refused.stderr and refused.stderr.count("\n") == 1, refused.stderr
        assert target.read_bytes() == kept


def test_the_help_does_not_import_psycopg() -> None:
    code = "import sys, crawler.commands; assert 'psycopg' not in sys.modules"
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0
