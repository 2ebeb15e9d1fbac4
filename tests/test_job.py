"""A crawl is a durable job: its settings live in the database, one process owns it, a page the parser
chokes on is a row, per-host caps end cleanly, signals stop it like a server, and no file that is not ours
is touched."""

from __future__ import annotations

import hashlib
import json
import signal
import sqlite3
import time
from dataclasses import replace
from pathlib import Path

import psutil
import pytest

from crawler.engine import local_frontier
from crawler.engine.config import DEFAULT_PARSER, CrawlConfig
from crawler.engine.frontier import Found, Outcome, page_row
from crawler.engine.local_frontier import WINDOW, LocalFrontier
from crawler.engine.loop import WATCHDOG_GRACE
from crawler.site.generate import Resource, Site
from parsers import PARSERS, Page, SoupParser
from storage import FrontierEntry, PageStore
from tests.conftest import (
    FAST_RETRIES,
    Serve,
    crawl_process,
    page_count,
    page_html,
    pages_by_url,
    rows,
    run_cli,
    run_line,
    wait_for,
)
from tests.support.hostile import Hostile


def chain_site(pages: int, delay: float = 0.0, prefix: str = "/p") -> Site:
    """`/` links page 1, page i links page i+1 only: a crawl must go `pages` deep, one link at a time; every
    page answered `delay` seconds late."""
    site: Site = {"/": Hostile(page_html("Home", [f"{prefix}1.html"]), delay=delay)}
    for index in range(1, pages + 1):
        links = [f"{prefix}{index + 1}.html"] if index < pages else []
        site[f"{prefix}{index}.html"] = Hostile(page_html(f"Page {index}", links, filler=200 * index), delay=delay)
    return site


def outcome(db: Path, origin: str) -> set[tuple[str, int | None, int | None]]:
    return {(url.removeprefix(origin), row["status"], row["size"]) for url, row in pages_by_url(db).items()}


# -- settings live with the crawl ----------------------------------------------------------------------


def test_ctrl_c_then_the_printed_hint_verbatim_reaches_what_an_uninterrupted_crawl_does(
    serve: Serve, backend: str, tmp_path: Path
) -> None:
    # 40 pages deep: the default --depth 2 would stop at page 2, so a resume that forgot the settings shows.
    server = serve(chain_site(40, delay=0.03))
    flags = ("--backend", backend, "--depth", "100", "--concurrency", "3", "--per-host", "3", "--max-pages", "900")
    reference = tmp_path / "reference.db"
    assert run_cli("crawl", server.url("/"), "--db", str(reference), *flags, *FAST_RETRIES).exit_code == 0
    db = tmp_path / "crawl.db"
    process = crawl_process(server.url("/"), "--db", str(db), *flags)
    wait_for("10 pages", lambda: page_count(db) >= 10)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, stderr
    hint = stderr.split("To continue: ", 1)[1].strip()
    assert hint == f"crawler crawl --resume --db {db}"
    resumed = run_line(hint)
    assert resumed.exit_code == 0, resumed.stderr
    assert outcome(db, server.origin) == outcome(reference, server.origin)
    assert len(outcome(db, server.origin)) == 41  # / and 40 pages (robots.txt is not a page)
    first, second = rows(db, "SELECT settings, overrides, seeds FROM runs ORDER BY id")
    assert json.loads(first["settings"]) == json.loads(second["settings"])
    assert json.loads(second["settings"])["depth"] == 100 and json.loads(second["settings"])["per_host"] == 3
    assert (json.loads(second["overrides"]), json.loads(second["seeds"])) == ({}, [])


def test_a_flag_given_on_resume_overrides_is_told_and_recorded_and_new_seeds_are_crawled(
    serve: Serve, backend: str, tmp_path: Path
) -> None:
    others = {path: resource for path, resource in chain_site(3, prefix="/q").items() if path != "/"}
    server = serve({**chain_site(5), **others})  # /q1.html ... is linked from nowhere
    db = tmp_path / "crawl.db"
    base = ("--db", str(db), "--backend", backend, "--depth", "10")
    first = run_cli("crawl", server.url("/"), *base, "--max-pages", "3")
    assert first.exit_code == 0, first.stderr
    # A new seed, given with --resume and a raised page budget.
    second = run_cli("crawl", "--resume", server.url("/q1.html"), "--db", str(db), "--backend", backend,
                     "--max-pages", "50")  # fmt: skip
    assert second.exit_code == 0, second.stderr
    assert "Resuming the crawl in" in second.stderr and "3 pages done" in second.stderr
    assert "--max-pages 50 (the crawl had 3)" in second.stderr
    assert "1 new seed(s) added to it" in second.stderr
    paths = {url.removeprefix(server.origin) for url in pages_by_url(db)}
    assert paths == {"/", "/p1.html", "/p2.html", "/p3.html", "/p4.html", "/p5.html", "/q1.html", "/q2.html",
                     "/q3.html"}  # fmt: skip
    run = rows(db, "SELECT settings, overrides, seeds FROM runs ORDER BY id")[1]
    assert json.loads(run["overrides"]) == {"max_pages": 50}
    assert json.loads(run["settings"])["max_pages"] == 50 and json.loads(run["settings"])["depth"] == 10
    assert json.loads(run["seeds"]) == [server.url("/q1.html")]
    record = rows(db, "SELECT seeds, settings FROM crawl")[0]
    assert json.loads(record["seeds"]) == [server.url("/"), server.url("/q1.html")]


def test_resume_of_a_missing_database_creates_nothing(tmp_path: Path) -> None:
    db = tmp_path / "none.db"
    run = run_cli("crawl", "--resume", "--db", str(db))
    assert (run.exit_code, run.stderr.strip()) == (2, f"Error: {db} holds no crawl to resume")
    assert list(tmp_path.iterdir()) == []


# -- one owner ------------------------------------------------------------------------------------------


def test_a_second_crawl_of_an_owned_database_is_refused_and_a_dead_owners_is_taken_over(
    serve: Serve, backend: str, tmp_path: Path
) -> None:
    server = serve(chain_site(30, delay=0.1))
    db = tmp_path / "crawl.db"
    args = (server.url("/"), "--db", str(db), "--backend", backend, "--depth", "100")
    owner = crawl_process(*args)
    wait_for("3 pages", lambda: page_count(db) >= 3)
    second = run_cli("crawl", *args, *FAST_RETRIES)
    assert second.exit_code == 2
    assert second.stderr.startswith(f"Error: {db} is being crawled by pid {owner.pid} on ")
    assert len(second.stderr.strip().splitlines()) == 1
    assert run_cli("stats", "--db", str(db)).exit_code == 0  # reading needs no lease
    owner.send_signal(signal.SIGKILL)
    owner.communicate(timeout=30)
    taken_over = run_cli("crawl", *args, *FAST_RETRIES)
    assert taken_over.exit_code == 0, taken_over.stderr
    assert [row["status"] for row in rows(db, "SELECT status FROM runs ORDER BY id")] == ["killed", "finished"]
    assert len(pages_by_url(db)) == 31
    assert rows(db, "SELECT owner_pid FROM crawl") == [{"owner_pid": None}]


# -- failures that are rows -----------------------------------------------------------------------------


class ChokingParser(SoupParser):
    """bs4 standing in for the default parser, except on /choke.html, where it raises: a parser bug. No href
    can make the real parsers raise any more (test_links.py, test_whatwg_urls.py), so the engine's net under
    them is tested with this one."""

    def parse(self, body: bytes, url: str, content_type: str | None) -> Page:
        """Raise for /choke.html, else parse as bs4 does."""
        if url.endswith("/choke.html"):
            raise ValueError("a parser bug")
        return super().parse(body, url, content_type)


# gevent crawls in a subprocess (its monkey patching must not reach the tests), which this parser cannot reach.
@pytest.mark.parametrize("backend", ["asyncio", "thread", "process"])
def test_a_page_the_parser_chokes_on_is_a_row_and_the_crawl_goes_on(
    serve: Serve, backend: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(PARSERS, DEFAULT_PARSER, ChokingParser)
    choking = page_html("Choke", ["/never.html"])
    server = serve({
        "/": Resource(page_html("Home", ["/choke.html", "/fine.html"])),
        "/choke.html": Resource(choking),
        "/fine.html": Resource(page_html("Fine", [])),
    })  # fmt: skip
    db = tmp_path / "crawl.db"
    run = run_cli("crawl", server.url("/"), "--db", str(db), "--backend", backend, *FAST_RETRIES)
    assert run.exit_code == 0, run.stderr
    pages = {url.removeprefix(server.origin): row for url, row in pages_by_url(db).items()}
    assert set(pages) == {"/", "/choke.html", "/fine.html"}
    bad = pages["/choke.html"]
    assert (bad["status"], bad["size"], bad["error_kind"], bad["title"]) == (200, len(choking), "parse", None)
    assert bad["error_message"] == "the page could not be parsed: ValueError: a parser bug"
    assert rows(db, "SELECT status FROM runs") == [{"status": "finished"}]


# -- per-host caps end cleanly ----------------------------------------------------------------------------


def test_a_per_host_cap_ends_the_crawl_and_is_counted(serve: Serve, backend: str, tmp_path: Path) -> None:
    server = serve(chain_site(8))
    db = tmp_path / "crawl.db"
    base = ("--db", str(db), "--backend", backend, "--depth", "100", "--ignore-robots")
    run = run_cli("crawl", server.url("/"), *base, "--max-pages-per-host", "3")
    assert run.exit_code == 0, run.stderr
    assert "capped   1 URL not fetched: over --max-pages-per-host" in run.stdout
    assert len(pages_by_url(db)) == 3
    assert rows(db, "SELECT state, count(*) AS n FROM frontier GROUP BY state ORDER BY state") == [
        {"state": "capped", "n": 1}, {"state": "done", "n": 3},
    ]  # fmt: skip
    assert rows(db, "SELECT status FROM runs") == [{"status": "finished"}]
    assert "not fetched  1 URL over --max-pages-per-host" in run_cli("stats", "--db", str(db)).stdout
    again = run_cli("crawl", "--resume", *base)
    assert (again.exit_code, again.stderr.strip()) == (2, f"Error: {db} holds no unfinished crawl to resume")
    # A raised cap continues the crawl from the URLs the old one skipped.
    raised = run_cli("crawl", "--resume", *base, "--max-pages-per-host", "6")
    assert raised.exit_code == 0, raised.stderr
    assert len(pages_by_url(db)) == 6
    assert rows(db, "SELECT state, count(*) AS n FROM frontier GROUP BY state ORDER BY state") == [
        {"state": "capped", "n": 1}, {"state": "done", "n": 6},
    ]  # fmt: skip


# -- the window starves no host --------------------------------------------------------------------------


def test_a_host_with_a_huge_queue_does_not_keep_another_hosts_urls_in_the_database(tmp_path: Path) -> None:
    store = PageStore(tmp_path / "crawl.db")
    slow = [FrontierEntry(f"http://slow.test/{index}", "http://slow.test", 1) for index in range(WINDOW + 2000)]
    fast = [FrontierEntry(f"http://fast.test/{index}", "http://fast.test", 1) for index in range(20)]
    store.add_seeds(slow + fast)  # crawl order: every slow URL first
    config = CrawlConfig(per_host=1, delay=60.0, obey_robots=False, max_pages=100_000)
    frontier = LocalFrontier(config, store, [])
    handed: list[str] = []
    now = time.monotonic()
    for step in range(20):
        frontier.refill(idle=True, free=8)
        while (request := frontier.next(now + step * 60)) is not None:
            handed.append(request.url)
            frontier.returned(request, now + step * 60)
    # One slow URL a minute (its delay), and the fast host's in between, each also a minute apart.
    assert [url for url in handed if "fast" in url] == [f"http://fast.test/{index}" for index in range(20)]
    assert len([url for url in handed if "slow" in url]) == 20
    store.close()


@pytest.mark.parametrize("memo", [local_frontier.IN_TABLE_MEMO, 1])
def test_a_url_found_again_keeps_its_first_entry_and_one_found_out_of_reach_still_joins_later(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, memo: int
) -> None:
    # The frontier remembers the URLs it handed to the table, so that a repeat costs nothing: it must not
    # remember one it left out (too deep, another host), and forgetting (the memo full) must lose nothing.
    monkeypatch.setattr(local_frontier, "IN_TABLE_MEMO", memo)
    store = PageStore(tmp_path / "crawl.db")
    frontier = LocalFrontier(CrawlConfig(depth=2, obey_robots=False, sitemaps=False), store, ["http://h/"])
    frontier.refill(idle=True, free=8)
    home = frontier.next(time.monotonic())
    assert home is not None and home.url == "http://h/"
    finds = {
        "http://h/": [Found("http://h/a", 1), Found("http://h/c", 1), Found("http://h/b", 3), Found("http://x/", 1)],
        "http://h/a": [Found("http://h/", 2), Found("http://h/b", 2, via=("http://h/a",)), Found("http://h/c", 2)],
        "http://h/c": [Found("http://h/b", 2), Found("http://h/a", 2), Found("http://h/c", 2)],
    }
    for url, found in finds.items():
        request = replace(home, url=url, depth=found[0].depth - 1)
        assert frontier.complete(Outcome(request, page_row(request, "thread", status=200), [], found))
        if url == "http://h/":
            store.flush()  # /a and /c in one batch: /a's entry for /b is not in the table when /c finds it
    store.close()
    assert rows(tmp_path / "crawl.db", "SELECT url, depth, via, state FROM frontier ORDER BY seq") == [
        {"url": "http://h/", "depth": 0, "via": None, "state": "done"},
        {"url": "http://h/a", "depth": 1, "via": None, "state": "done"},
        {"url": "http://h/c", "depth": 1, "via": None, "state": "done"},
        {"url": "http://h/b", "depth": 2, "via": "http://h/a", "state": "queued"},  # not at depth 3: too deep
    ]


# -- files that are not ours -------------------------------------------------------------------------------


def alien_database(path: Path) -> None:
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE pages (id INTEGER PRIMARY KEY, body TEXT)")
        conn.execute("INSERT INTO pages (body) VALUES ('mine')")
    conn.close()


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize("command", ["crawl", "demo"])
@pytest.mark.parametrize("kind", ["alien", "text", "directory"])
def test_crawl_and_demo_leave_a_file_that_is_not_ours_alone(tmp_path: Path, command: str, kind: str) -> None:
    target = tmp_path / "precious.db"
    if kind == "alien":
        alien_database(target)
    elif kind == "text":
        target.write_text("my notes\n")
    else:
        target.mkdir()
    before = digest(target) if target.is_file() else None
    args = ("crawl", "http://127.0.0.1:9/") if command == "crawl" else ("demo", "--pages", "5")
    run = run_cli(*args, "--db", str(target))
    assert run.exit_code == 2
    assert run.stderr.startswith("Error: ") and len(run.stderr.strip().splitlines()) == 1
    assert "Traceback" not in run.stderr
    expected = {"alien": "a SQLite database of something else", "text": "is not a SQLite database",
                "directory": "is a directory"}[kind]  # fmt: skip
    assert expected in run.stderr
    if before is not None:
        assert digest(target) == before
    assert sorted(path.name for path in tmp_path.iterdir()) == ["precious.db"]


def test_a_database_in_an_unwritable_place_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    run = run_cli("crawl", "http://127.0.0.1:9/", "--db", str(tmp_path / "file" / "crawl.db"))
    assert run.exit_code == 2
    assert run.stderr.startswith(f"Error: cannot write the database {tmp_path / 'file' / 'crawl.db'}: ")


def test_demo_replaces_only_a_database_it_made(tmp_path: Path) -> None:
    db = tmp_path / "demo.db"
    assert run_cli("demo", "--pages", "5", "--db", str(db), "-q").exit_code == 0
    first = rows(db, "SELECT made_by, created_at FROM crawl")[0]
    assert first["made_by"] == "demo"
    assert run_cli("demo", "--pages", "5", "--db", str(db), "-q").exit_code == 0
    assert rows(db, "SELECT created_at FROM crawl")[0]["created_at"] > first["created_at"]
    crawled = tmp_path / "crawl.db"
    run_cli("crawl", "http://127.0.0.1:9/", "--db", str(crawled), "--retries", "0")
    before = digest(crawled)
    refused = run_cli("demo", "--pages", "5", "--db", str(crawled))
    assert refused.exit_code == 2
    assert (
        refused.stderr.strip()
        == f"Error: {crawled} holds a crawl that `crawler demo` did not make; choose another --db"
    )
    assert digest(crawled) == before


# -- no backend can hang a crawl ----------------------------------------------------------------------------


def test_a_request_its_backend_never_answers_is_a_timeout_row_and_the_crawl_ends(serve: Serve, tmp_path: Path) -> None:
    # The one real way to lose a callback: a process-pool worker killed mid-fetch (multiprocessing.Pool never
    # reports its task). The engine's watchdog records it when its deadline and grace have passed.
    server = serve({
        "/": Resource(page_html("Home", ["/stall.html", "/fine.html"])),
        "/stall.html": Hostile(page_html("Stall", []), delay=60),
        "/fine.html": Resource(page_html("Fine", [])),
    })  # fmt: skip
    db = tmp_path / "crawl.db"
    process = crawl_process(server.url("/"), "--db", str(db), "--backend", "process", "--timeout", "2",
                            "--retries", "0", "--ignore-robots", "--concurrency", "2")  # fmt: skip
    wait_for("the stalling request", lambda: "/stall.html" in {hit.path for hit in server.hits})
    crawler = psutil.Process(process.pid)
    forkserver = next(child for child in crawler.children() if "forkserver" in " ".join(child.cmdline()))
    for worker in forkserver.children():
        worker.send_signal(signal.SIGKILL)
    killed = time.monotonic()
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 0, stderr
    assert time.monotonic() - killed < 2 + WATCHDOG_GRACE + 4
    stalled = pages_by_url(db)[server.url("/stall.html")]
    assert (stalled["status"], stalled["error_kind"]) == (None, "timeout")
    assert stalled["error_message"] == "no answer from the process backend within 2 s"
    assert pages_by_url(db)[server.url("/fine.html")]["status"] == 200
    assert rows(db, "SELECT status FROM runs") == [{"status": "finished"}]
