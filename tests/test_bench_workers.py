"""`crawler bench --workers`: a shared crawl measured on a throwaway PostgreSQL, checked, and cleaned up
whatever ends it."""

from __future__ import annotations

import json
import signal
import subprocess
import sys

import psutil

from crawler.cluster.server import LocalPostgres
from tests.conftest import run_cli, wait_for


def test_the_workers_bench_measures_and_checks_every_scenario(postgres: LocalPostgres) -> None:
    run = run_cli("bench", "--workers", "2,1", "--hosts", "2", "--pages", "10", "--latency-ms", "20", "--json")
    assert run.exit_code == 0, run.stderr
    results = json.loads(run.stdout)
    assert [(result["scenario"], result["workers"]) for result in results] == [
        ("latency", 1), ("latency", 2), ("polite", 1), ("polite", 2), ("overhead", 0), ("overhead", 1),
    ]  # fmt: skip
    pages = {result["scenario"]: result["pages"] for result in results}
    for result in results:
        assert result["problems"] == []
        assert result["pages"] == pages[result["scenario"]] > 0  # the same site, whoever crawls it
        assert result["worker_cpu_seconds"] > 0 and result["server_cpu_seconds"] > 0
        if result["workers"]:
            assert result["postgres_cpu_seconds"] > 0
    polite = [result["pages_per_second"] for result in results if result["scenario"] == "polite"]
    assert max(polite) <= 1 / 0.2 * 1.05  # --delay 0.2 on its one host, whatever the number of workers


def test_a_bad_workers_list_is_one_line() -> None:
    run = run_cli("bench", "--workers", "1,x")
    assert run.exit_code == 2
    assert run.stderr.strip() == "Error: --workers takes numbers of workers separated by commas (1,2,4), not '1,x'"


def test_sigterm_ends_the_workers_bench_and_everything_it_started(postgres: LocalPostgres) -> None:
    bench = subprocess.Popen([sys.executable, "-m", "crawler", "bench", "--workers", "1", "--hosts", "4",
                              "--pages", "400", "--latency-ms", "100"], stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE, text=True, start_new_session=True)  # fmt: skip
    process = psutil.Process(bench.pid)

    def working() -> bool:
        for child in process.children(recursive=True):
            try:
                if "--frontier" in child.cmdline():
                    return True
            except psutil.Error:  # a process that ended meanwhile
                continue
        return False

    wait_for("a crawl under way", working, timeout=60)
    started = process.children(recursive=True)
    servers = [p for p in psutil.process_iter(["username", "cmdline"])  # (a process that ended gives None)
               if p.info["username"] == "postgres" and "crawler-pg-" in " ".join(p.info["cmdline"] or [])]  # fmt: skip
    watched = [p for p in servers if str(postgres.datadir) not in " ".join(p.info["cmdline"])]  # the bench's
    assert watched
    bench.send_signal(signal.SIGTERM)
    _, err = bench.communicate(timeout=60)
    assert bench.returncode == 128 + signal.SIGTERM, err
    _, alive = psutil.wait_procs(started + watched, timeout=30)
    assert alive == []
