"""One crawl, many workers: a real PostgreSQL frontier, real workers (subprocesses, killed for real), real
loopback sites whose pages are each linked once, so that a lost link loses a whole subtree and shows."""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg.rows import dict_row

from crawler.cluster.server import LocalPostgres, local_postgres
from crawler.engine.config import DEFAULT_BACKEND
from crawler.site.generate import Resource, Site
from crawler.site.server import SiteServer
from crawler.words import install_hint
from fetchers import BACKENDS
from tests.conftest import Serve, page_count, page_html, rows, run_cli, run_line, wait_for
from tests.support.hostile import hostile
from tests.support.postgres import TEST_SETTINGS

HOSTS = [f"127.0.0.{index}" for index in range(1, 9)]
# The rules a shared crawl holds are the database's, whatever the backend: the `crawl` process (the default
# backend) and one worker on each other backend share each of the cluster-wide tests.
OTHER_BACKENDS = [backend for backend in BACKENDS if backend != DEFAULT_BACKEND]


def tree_site(pages: int, filler: int = 2000) -> Site:
    """`pages` pages in a binary tree from `/`: page i links pages 2i+1 and 2i+2, and nothing else links them."""

    def path(index: int) -> str:
        return "/" if index == 0 else f"/p/{index}.html"

    def children(index: int) -> list[str]:
        return [path(child) for child in (2 * index + 1, 2 * index + 2) if child < pages]

    return {path(index): Resource(page_html(f"Page {index}", children(index), filler)) for index in range(pages)}


def query(url: str, sql: str, params: Any = None) -> list[dict[str, Any]]:
    with psycopg.connect(url, autocommit=True, row_factory=dict_row) as conn:
        return conn.execute(sql, params).fetchall()


def scalar(url: str, sql: str, params: Any = None) -> Any:
    return next(iter(query(url, sql, params)[0].values()))


_started: list[subprocess.Popen[str]] = []


@pytest.fixture(autouse=True)
def _no_worker_outlives_its_test() -> Iterator[None]:
    """A test that fails midway leaves no worker running (nor its pipes open)."""
    yield
    while _started:
        process = _started.pop()
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
        process.communicate(timeout=30)


def start(*args: str) -> subprocess.Popen[str]:
    """`crawler ARGS` in a process group of its own (a kill -9 of the group takes the process backend's pool
    too), quiet, its output kept."""
    process = subprocess.Popen([sys.executable, "-m", "crawler", *args, "-q"], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, start_new_session=True)  # fmt: skip
    _started.append(process)
    return process


def worker(url: str, backend: str = "asyncio", concurrency: int = 4, lease: float = 2.0) -> subprocess.Popen[str]:
    return start("worker", "--frontier", url, "-b", backend, "--concurrency", str(concurrency),
                 "--lease-seconds", str(lease))  # fmt: skip


def finished(process: subprocess.Popen[str], timeout: float = 60) -> str:
    """Wait for `process`; its stdout; fail with its output unless it exited 0."""
    out, err = process.communicate(timeout=timeout)
    assert process.returncode == 0, (process.returncode, out, err)
    return out


def kill_group(process: subprocess.Popen[str]) -> None:
    os.killpg(process.pid, signal.SIGKILL)
    process.communicate(timeout=30)


@contextmanager
def sites(serve: Serve, site: Site, hosts: list[str], latency: float) -> Iterator[list[SiteServer]]:
    servers = [serve(site, host=host) for host in hosts]
    for server in servers:
        server.latency = latency
    yield servers


def served(servers: list[SiteServer]) -> Counter[str]:
    return Counter(server.origin + hit.path for server in servers for hit in server.hits)


def assert_complete(url: str, servers: list[SiteServer], pages: int) -> None:
    """Every page of every server's tree is a result exactly once, nothing is queued or leased, and no host
    counts a request in flight."""
    expected = {server.origin + path for server in servers for path in server.site}
    results = [row["url"] for row in query(url, "SELECT url FROM results WHERE kind = 'page'")]
    assert len(results) == len(set(results)) == len(expected) == pages * len(servers)
    assert set(results) == expected
    assert query(url, "SELECT state, count(*) AS n FROM urls GROUP BY state") == [{"state": "done", "n": len(expected)}]
    assert scalar(url, "SELECT sum(in_flight) FROM hosts") == 0


def crawl_command(url: str, servers: list[SiteServer], *options: str) -> list[str]:
    return ["crawl", *(f"{server.origin}/" for server in servers), "--frontier", url, "--depth", "20",
            "--max-pages", "5000", "--no-sitemaps", *options]  # fmt: skip


def results_count(url: str) -> int:
    """Results so far; 0 before the crawl's tables exist."""
    try:
        return int(scalar(url, "SELECT count(*) FROM results"))
    except psycopg.errors.UndefinedTable:
        return 0


# -- 1 and 2: killed workers lose nothing ----------------------------------------------------------------


@pytest.mark.parametrize("backend", ["asyncio", "gevent"])
def test_a_worker_killed_mid_crawl_loses_nothing(frontier_url: str, serve: Serve, backend: str, tmp_path: Path) -> None:
    with sites(serve, tree_site(60), HOSTS, latency=0.1) as servers:
        first = start(*crawl_command(frontier_url, servers, "-b", backend, "--concurrency", "4",
                                     "--lease-seconds", "2"))  # fmt: skip
        wait_for("the crawl record", lambda: results_count(frontier_url) > 0, timeout=60)
        victim, third = worker(frontier_url, backend), worker(frontier_url, backend)
        wait_for("100 pages", lambda: results_count(frontier_url) >= 100, timeout=60)
        kill_group(victim)
        assert results_count(frontier_url) < 480  # killed mid-crawl
        finished(first)
        finished(third)
        assert_complete(frontier_url, servers, 60)
        twice = [page for page, count in served(servers).items() if count > 1]
        assert len(twice) <= 4, twice  # at most what the killed worker had in flight
        statuses = Counter(row["status"] for row in query(frontier_url, "SELECT status FROM workers"))
        assert statuses == {"finished": 2, "lost": 1}
        pulled = run_cli("pull", "--frontier", frontier_url, "--db", str(tmp_path / "crawl.db"), "-q")
        assert pulled.exit_code == 0, pulled.stderr
        assert {row["url"] for row in rows(tmp_path / "crawl.db")} == {
            server.origin + path for server in servers for path in server.site
        }
        assert page_count(tmp_path / "crawl.db") == 480  # each page once, in the file the user reads


def test_every_worker_killed_then_two_new_ones_finish_the_crawl(frontier_url: str, serve: Serve) -> None:
    lease = 2.0
    with sites(serve, tree_site(60), HOSTS, latency=0.1) as servers:
        first = start(*crawl_command(frontier_url, servers, "--concurrency", "4", "--lease-seconds", str(lease)))
        wait_for("the crawl record", lambda: results_count(frontier_url) > 0, timeout=60)
        others = [worker(frontier_url), worker(frontier_url, "thread")]
        wait_for("100 pages", lambda: results_count(frontier_url) >= 100, timeout=60)
        for process in [first, *others]:
            kill_group(process)
        killed_at = time.monotonic()
        dead = [row["id"] for row in query(frontier_url, "SELECT id FROM workers")]
        held = scalar(frontier_url, "SELECT count(*) FROM urls WHERE state = 'leased'")
        assert held > 0  # they died holding leases
        new = [worker(frontier_url, "gevent"), worker(frontier_url, "process")]
        wait_for(
            "the dead workers' leases back in the queue",
            lambda: (
                scalar(frontier_url, "SELECT count(*) FROM urls WHERE state = 'leased' AND owner = ANY(%s)", [dead])
                == 0
            ),
            timeout=lease + 5,
        )
        assert time.monotonic() - killed_at <= lease + 1
        for process in new:
            finished(process)
        assert_complete(frontier_url, servers, 60)
        assert len([page for page, count in served(servers).items() if count > 1]) <= 3 * 4


# -- 3 and 4: politeness holds across the cluster ------------------------------------------------------


def flat_site(pages: int) -> Site:
    return {
        "/": Resource(page_html("Home", [f"/p/{index}.html" for index in range(1, pages)])),
        **{f"/p/{index}.html": Resource(page_html(f"Page {index}", [])) for index in range(1, pages)},
    }


def starts(server: SiteServer, skip_robots: bool = True) -> list[float]:
    return sorted(hit.at for hit in server.hits if not (skip_robots and hit.path == "/robots.txt"))


def rate_with(workers: int, url: str, server: SiteServer, pages: int) -> tuple[list[float], float]:
    """Crawl the flat site with `workers` workers x concurrency 8 under --delay 0.2: the gaps between request
    starts at the server, and the pages a second."""
    server.hits.clear()
    first = start(*crawl_command(url, [server], "--delay", "0.2", "--per-host", "8", "--concurrency", "8",
                                 "--restart"))  # fmt: skip
    wait_for("the crawl record", lambda: len(server.hits) > 0, timeout=30)
    processes = [first, *(worker(url, backend, concurrency=8) for backend in OTHER_BACKENDS[: workers - 1])]
    for process in processes:
        finished(process)
    times = starts(server)
    assert len(times) == pages
    gaps = [later - earlier for earlier, later in itertools.pairwise(times)]
    return gaps, (len(times) - 1) / (times[-1] - times[0])


def test_the_delay_holds_across_workers_and_their_number_does_not_change_the_rate(
    frontier_url: str, serve: Serve
) -> None:
    pages = 25
    server = serve(flat_site(pages))
    one_gaps, one_rate = rate_with(1, frontier_url, server, pages)
    gaps, rate = rate_with(4, frontier_url, server, pages)
    for measured in (one_gaps, gaps):
        assert min(measured) >= 0.1, measured
        assert sum(gap >= 0.175 for gap in measured) >= 0.99 * len(measured), measured
    assert abs(rate - one_rate) <= 0.1 * one_rate, (rate, one_rate)


def test_per_host_holds_across_workers(frontier_url: str, serve: Serve) -> None:
    server = serve(flat_site(40))
    server.latency = 0.05
    first = start(*crawl_command(frontier_url, [server], "--per-host", "2", "--concurrency", "8"))
    wait_for("the crawl record", lambda: len(server.hits) > 0, timeout=30)
    processes = [first, *(worker(frontier_url, backend, concurrency=8) for backend in OTHER_BACKENDS)]
    for process in processes:
        finished(process)
    assert len(starts(server)) == 40
    assert server.max_active == 2


def test_robots_txt_is_fetched_once_per_origin_and_its_crawl_delay_is_obeyed_by_all(
    frontier_url: str, serve: Serve
) -> None:
    polite = {**flat_site(4), "/robots.txt": Resource("User-agent: *\nCrawl-delay: 1\n", content_type="text/plain")}
    servers = [serve(flat_site(30), host=host) for host in HOSTS[:3]] + [serve(polite, host=HOSTS[3])]
    for server in servers:
        server.latency = 0.02
    first = start(*crawl_command(frontier_url, servers, "--concurrency", "4"))
    wait_for("the crawl record", lambda: sum(len(server.hits) for server in servers) > 0, timeout=30)
    processes = [first, *(worker(frontier_url, backend) for backend in OTHER_BACKENDS)]
    for process in processes:
        finished(process)
    for server in servers:
        assert [hit.path for hit in server.hits].count("/robots.txt") == 1
    times = starts(servers[-1], skip_robots=False)
    assert len(times) == 5  # robots.txt, then 4 pages
    assert min(later - earlier for earlier, later in itertools.pairwise(times[1:])) >= 0.95  # between pages


def test_a_retry_after_pauses_every_worker_on_that_host_only(frontier_url: str, serve: Serve) -> None:
    paused = flat_site(8)
    paused["/p/1.html"] = hostile(paused["/p/1.html"], failures=(503,), retry_after="2")
    slow, other = serve(paused, host=HOSTS[0]), serve(flat_site(60), host=HOSTS[1])
    slow.latency = other.latency = 0.05
    first = start(*crawl_command(frontier_url, [slow, other], "--concurrency", "4", "--backoff", "0.01"))
    wait_for("the crawl record", lambda: len(slow.hits) > 0, timeout=30)
    processes = [first, *(worker(frontier_url, backend) for backend in OTHER_BACKENDS)]
    for process in processes:
        finished(process)
    failed = next(hit.at for hit in slow.hits if hit.path == "/p/1.html")
    answered = failed + slow.latency
    during = [hit for hit in slow.hits if answered + 0.05 < hit.at < answered + 1.9]
    assert during == []  # no worker asked that host anything for 2 s
    assert any(answered < hit.at < answered + 1.9 for hit in other.hits)  # the other host went on
    assert [hit.path for hit in slow.hits].count("/p/1.html") == 2
    assert scalar(frontier_url, "SELECT count(*) FROM results WHERE kind = 'page'") == 8 + 60


# -- 5: a graceful stop hands its leases back ------------------------------------------------------------


@pytest.mark.parametrize(
    ("stop", "backend"),
    list(zip(itertools.cycle([signal.SIGTERM, signal.SIGINT]), BACKENDS, strict=False)),
    ids=lambda value: getattr(value, "name", value),
)
def test_a_stopped_worker_hands_its_leases_back_at_once(
    frontier_url: str, serve: Serve, stop: signal.Signals, backend: str
) -> None:
    server = serve(flat_site(20))
    server.latency = 5.0  # every request outlasts the stop
    first = start(*crawl_command(frontier_url, [server], "-b", backend, "--per-host", "4", "--concurrency", "4",
                                 "--ignore-robots"))  # fmt: skip
    held = "SELECT count(*) FROM urls WHERE state = 'leased'"
    wait_for("the crawl record", lambda: len(server.hits) > 0, timeout=30)
    wait_for("four leases", lambda: scalar(frontier_url, held) == 4, timeout=30)
    stopped = time.monotonic()
    first.send_signal(stop)
    wait_for("the leases back", lambda: scalar(frontier_url, held) == 0, timeout=5)
    assert time.monotonic() - stopped <= 1.0
    _, err = first.communicate(timeout=30)
    assert first.returncode == (143 if stop == signal.SIGTERM else 130)
    assert query(frontier_url, "SELECT status FROM workers") == [{"status": "interrupted"}]
    assert scalar(frontier_url, "SELECT sum(in_flight) FROM hosts") == 0
    hint = err.strip().splitlines()[-1]
    assert (
        hint == f"Interrupted: its leases went back to the queue. To continue: crawler worker --frontier {frontier_url}"
    )
    server.latency = 0.0
    again = run_line(hint.partition("To continue: ")[2])  # as printed
    assert again.exit_code == 0, again.stderr
    assert scalar(frontier_url, "SELECT count(*) FROM results WHERE kind = 'page'") == 20


# -- gevent: psycopg waits cooperatively under monkey patching -------------------------------------------

COOPERATIVE = """
from gevent import monkey
monkey.patch_all()
import sys, time, gevent, psycopg, psycopg.waiting
ticks = []
def tick():
    while True:
        ticks.append(time.monotonic())
        gevent.sleep(0.02)
ticker = gevent.spawn(tick)
gevent.sleep(0)
with psycopg.connect(sys.argv[1]) as conn:
    start = time.monotonic()
    conn.execute("SELECT pg_sleep(0.5)")
    end = time.monotonic()
print(psycopg.waiting.wait.__name__, sum(start < at < end for at in ticks))
"""


def test_the_worker_commands_default_lease_is_the_workers() -> None:
    from crawler.cluster import worker as cluster_worker
    from crawler.commands import cluster as cluster_command

    # The command keeps its own copy, so that `crawler -h` does not import psycopg.
    assert cluster_command.DEFAULT_LEASE_SECONDS == cluster_worker.DEFAULT_LEASE_SECONDS


def test_psycopg_yields_to_other_greenlets_under_gevent(frontier_url: str) -> None:
    done = subprocess.run([sys.executable, "-c", COOPERATIVE, frontier_url], capture_output=True, text=True,
                          timeout=60, check=True)  # fmt: skip
    wait, ticks = done.stdout.split()
    assert wait != "wait_c"  # the C wait blocks the whole process
    assert int(ticks) >= 10  # the other greenlet ran while the query waited


# -- the command line ----------------------------------------------------------------------------------

NO_PSYCOPG = """
import sys
from typer.testing import CliRunner
from crawler.commands import app
result = CliRunner().invoke(app, sys.argv[1:])
print(result.exit_code, sys.modules.get("psycopg") is not None)
print(result.output)
"""


def test_without_a_frontier_psycopg_is_never_imported(site: SiteServer, tmp_path: Path) -> None:
    db = tmp_path / "crawl.db"
    done = subprocess.run([sys.executable, "-c", NO_PSYCOPG, "crawl", f"{site.origin}/", "--db", str(db), "-q"],
                          capture_output=True, text=True, timeout=120, check=True)  # fmt: skip
    assert done.stdout.split()[:2] == ["0", "False"]


def test_without_psycopg_a_worker_names_what_to_install(tmp_path: Path) -> None:
    hidden = "import sys; sys.modules['psycopg'] = None\n" + NO_PSYCOPG
    done = subprocess.run([sys.executable, "-c", hidden, "worker", "--frontier", "postgresql://nobody@127.0.0.1/x"],
                          capture_output=True, text=True, timeout=60, check=True)  # fmt: skip
    assert done.stdout.split()[:2] == ["2", "False"]
    hint = install_hint("distributed")
    assert hint.startswith('pip install "psycopg[binary]') or hint.startswith('pip install ".[distributed]"')
    assert f"a shared frontier needs psycopg (psycopg is missing): {hint}" in done.stdout


def test_an_unreachable_frontier_is_one_line_and_exit_2(postgres: LocalPostgres) -> None:
    unused = f"postgresql://crawler@127.0.0.1:{postgres.port + 1 if postgres.port < 65535 else 1}/nothing"
    for args in (["worker", "--frontier", unused], ["crawl", "http://127.0.0.1:9/", "--frontier", unused]):
        run = run_cli(*args)
        assert run.exit_code == 2
        assert run.stderr.startswith("Error: cannot reach the frontier postgresql://crawler@127.0.0.1:")
        assert len(run.stderr.strip().splitlines()) == 1


def test_a_database_without_a_crawl_is_one_line_and_exit_2(frontier_url: str) -> None:
    run = run_cli("worker", "--frontier", frontier_url)
    assert run.exit_code == 2
    assert run.stderr.strip() == (
        f"Error: {frontier_url} holds no crawl: start one with `crawler crawl SEEDS --frontier {frontier_url}`"
    )


def test_a_worker_follows_the_crawl_record_and_prints_what_to_run_next(
    frontier_url: str, serve: Serve, tmp_path: Path
) -> None:
    server = serve(tree_site(30))
    run = run_cli("crawl", f"{server.origin}/", "--frontier", frontier_url, "--depth", "2", "--max-pages", "5000")
    assert run.exit_code == 0, run.stderr
    assert scalar(frontier_url, "SELECT count(*) FROM results WHERE kind = 'page'") == 7  # depths 0, 1 and 2
    # A second crawl of other seeds while none is unfinished replaces it; a worker then has nothing to do.
    again = run_cli("worker", "--frontier", frontier_url, "--backend", "thread")
    assert again.exit_code == 0, again.stderr
    assert "Crawled 0 pages" in again.stdout
    hint = next(line for line in run.stdout.splitlines() if line.startswith("Results: "))
    pulled = run_line(hint.removeprefix("Results: "), cwd=tmp_path)
    assert pulled.exit_code == 0, pulled.stderr
    assert page_count(tmp_path / "crawl.db") == 7


def test_a_worker_that_loses_its_database_says_so_in_one_line(serve: Serve) -> None:
    server = serve(tree_site(200))
    server.latency = 0.05
    with local_postgres(TEST_SETTINGS) as postgres:
        url = postgres.url()
        first = start(*crawl_command(url, [server], "--concurrency", "2"))
        wait_for("some pages", lambda: results_count(url) >= 5, timeout=30)
        postgres.stop()
        out, err = first.communicate(timeout=60)
    assert first.returncode == 1, (out, err)
    said = err.strip().splitlines()
    assert said[0].startswith("Worker 1 on ")
    assert said[1].startswith(f"Error: lost the frontier {url}: "), err
    assert said[1].endswith("after its last heartbeat (--lease-seconds)"), err
    assert len(said) == 2, err


def test_a_worker_paused_past_its_lease_is_declared_lost_and_stops(frontier_url: str, serve: Serve) -> None:
    with sites(serve, tree_site(60), HOSTS[:4], latency=0.1) as servers:
        first = start(*crawl_command(frontier_url, servers, "--concurrency", "4", "--lease-seconds", "1"))
        wait_for("the crawl record", lambda: results_count(frontier_url) > 0, timeout=60)
        paused = worker(frontier_url, lease=1.0)
        wait_for(
            "its leases", lambda: scalar(frontier_url, "SELECT count(*) FROM urls WHERE owner = 2") > 0, timeout=30
        )
        paused.send_signal(signal.SIGSTOP)  # a stopped process, a paused virtual machine
        wait_for("the pause noticed", lambda: query(frontier_url, "SELECT status FROM workers WHERE id = 2")
                 == [{"status": "lost"}], timeout=10)  # fmt: skip
        paused.send_signal(signal.SIGCONT)
        out, err = paused.communicate(timeout=60)
        assert paused.returncode == 1, (out, err)
        assert err.strip().splitlines()[-1] == (
            "Error: worker 2 missed its heartbeat for longer than its lease (1 s, --lease-seconds) and was declared "
            "lost: the others took what it held; start a worker again to go on"
        )
        finished(first)
        assert_complete(frontier_url, servers, 60)


def test_the_page_budget_holds_across_workers(frontier_url: str, serve: Serve) -> None:
    with sites(serve, tree_site(60), HOSTS[:4], latency=0.02) as servers:
        command = crawl_command(frontier_url, servers, "--concurrency", "8")
        first = start(*command[: command.index("--max-pages")], "--max-pages", "50", "--no-sitemaps")
        wait_for("the crawl record", lambda: results_count(frontier_url) > 0, timeout=60)
        processes = [first, *(worker(frontier_url, backend, concurrency=8) for backend in OTHER_BACKENDS)]
        for process in processes:
            finished(process)
    assert scalar(frontier_url, "SELECT count(*) FROM results WHERE kind = 'page'") == 50
    assert scalar(frontier_url, "SELECT started FROM crawl") == 50
    assert sum(len(server.hits) for server in servers) == 50 + len(servers)  # and each robots.txt
    assert query(frontier_url, "SELECT DISTINCT status FROM workers") == [{"status": "limit"}]


STARTS_A_SERVER = """
import sys, time
from crawler.cluster.server import local_postgres
with local_postgres() as server:
    print(server.port, server.datadir, flush=True)
    time.sleep(600)
"""


@pytest.mark.parametrize("how", [signal.SIGKILL, signal.SIGTERM, signal.SIGINT])
def test_a_throwaway_postgresql_ends_with_the_process_that_started_it(postgres: LocalPostgres, how: int) -> None:
    with subprocess.Popen([sys.executable, "-c", STARTS_A_SERVER], stdout=subprocess.PIPE, text=True) as starter:
        assert starter.stdout is not None
        port, datadir = starter.stdout.readline().split()
        url = f"postgresql://crawler@127.0.0.1:{port}/postgres"
        assert scalar(url, "SELECT 1 AS one") == 1
        starter.send_signal(how)
        starter.wait(timeout=30)

    def gone() -> bool:
        try:
            psycopg.connect(url, connect_timeout=2).close()
        except psycopg.OperationalError:
            return not Path(datadir).exists()
        return False

    wait_for("the server stopped and its files deleted", gone, timeout=30)
