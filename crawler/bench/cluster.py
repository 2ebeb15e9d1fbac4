"""`crawler bench --workers 1,2,4`: how a shared crawl scales with its workers, and what it costs.

A throwaway PostgreSQL (crawler.cluster.server) and the generated site (a process of its own) serve three
scenarios, each crawled once per worker count, every worker a `crawler worker` process of its own:

- latency: many hosts, a delay on every response, one request in flight per host. A worker is bound by its
  concurrency, so N workers should crawl about N times as fast, up to the hosts' own bound.
- polite: one host with --delay 0.2. Politeness is the bound, so the number of workers must not change the rate.
- overhead: one worker against the SQLite mode (`crawler crawl --db`) on a site that answers at once: what the
  shared frontier costs a page. Its pages are realistic by default (`--site`), as heavy as real documentation, as
  every CPU figure of `crawler bench` is; the other two scenarios are bound by the network, and use light pages.

Each crawl is checked against the site: every page found once, with its size, none served twice. The CPU of the
workers, of PostgreSQL (the server and every backend it ran) and of the site's server is measured for each.
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

from crawler.bench.measure import expected_pages
from crawler.bench.process_tree import signals_end_the_bench
from crawler.engine.metrics import cpu_seconds, per_second
from crawler.site.server import ServerProcess, SiteOptions, serve_in_subprocess
from crawler.views.text import table

LATENCY, POLITE, OVERHEAD = "latency", "polite", "overhead"
POLITE_DELAY = 0.2


@dataclass(frozen=True, slots=True)
class ScaleOptions:
    """What to measure: worker counts, the latency scenario's site, each worker's backend and concurrency."""

    workers: list[int]
    hosts: int = 64
    pages: int = 100
    latency_ms: float = 100.0
    concurrency: int = 8
    per_host: int = 1
    backend: str = "asyncio"
    parser: str = "lxml"
    timeout: float = 600.0
    overhead_profile: str = "realistic"  # the overhead scenario's pages (crawler.site.generate.PROFILES)
    # The overhead scenario's concurrency, for both modes: `crawler bench`'s, which keeps a CPU-bound crawl busy.
    overhead_concurrency: int = 64

    @property
    def polite_pages(self) -> int:
        """Pages of the polite scenario's one host: 8 s a crawl at --delay 0.2 (fewer for a small bench)."""
        return min(40, self.pages)

    @property
    def overhead_pages(self) -> int:
        """Pages of each of the overhead scenario's four hosts."""
        return 5 * self.pages


@dataclass(slots=True)
class ScaleRun:
    """One crawl of one scenario by `workers` workers (0: the SQLite mode), measured and checked."""

    scenario: str
    workers: int
    pages: int
    seconds: float
    worker_cpu_seconds: float
    postgres_cpu_seconds: float
    server_cpu_seconds: float
    problems: list[str] = field(default_factory=list)

    @property
    def pages_per_second(self) -> float:
        """Throughput."""
        return per_second(self.pages, self.seconds)


def _postgres_cpu(pid: int) -> float:
    """CPU seconds of the PostgreSQL server: the postmaster, the backends it has reaped, and those alive."""
    postmaster = psutil.Process(pid)
    times = postmaster.cpu_times()
    alive = 0.0
    for child in postmaster.children(recursive=True):
        try:
            alive += cpu_seconds(child)
        except psutil.Error:  # it ended meanwhile: the postmaster has reaped it, its CPU is in children_*
            continue
    return times.user + times.system + times.children_user + times.children_system + alive


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _command(*args: str) -> list[str]:
    return [sys.executable, "-m", "crawler", *args, "--quiet"]


class _Bench:
    def __init__(self, options: ScaleOptions, postgres_pid: int, url: str) -> None:
        self.options = options
        self.postgres_pid = postgres_pid
        self.url = url

    def _settings(self, server: ServerProcess, expected: int, concurrency: int, *extra: str) -> list[str]:
        return [*(f"{origin}/" for origin in server.origins), "--depth", "1000000", "--max-pages",
                str(10 * expected + 1000), "--no-sitemaps", "--backoff", "0.05", "-b", self.options.backend,
                "--parser", self.options.parser, "--concurrency", str(concurrency), *extra]  # fmt: skip

    def _run(self, commands: list[list[str]]) -> None:
        """Start the first command, then the others once it has recorded the crawl; wait for all of them."""
        first = subprocess.Popen(commands[0], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        processes = [first]
        try:
            if len(commands) > 1:
                self._wait_for_crawl(first)
                processes += [subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
                              for command in commands[1:]]  # fmt: skip
            deadline = time.monotonic() + self.options.timeout
            for process in processes:
                _, errors = process.communicate(timeout=max(1.0, deadline - time.monotonic()))
                if process.returncode != 0:
                    raise RuntimeError(f"a crawl failed (exit code {process.returncode}): {errors.strip()[-500:]}")
        except subprocess.TimeoutExpired:
            raise RuntimeError(f"the crawl did not finish within {self.options.timeout:g} s: killed") from None
        finally:
            for process in processes:
                if process.poll() is None:
                    process.kill()
                    process.wait()

    def _wait_for_crawl(self, first: subprocess.Popen[str]) -> None:
        """Until the first command has recorded its new crawl and started working on it (a worker that joined
        the previous crawl would be stopped by the new one)."""
        from crawler.cluster.schema import connect

        with connect(self.url) as conn:
            row = conn.execute("SELECT now() AS started").fetchone()
            assert row is not None
            started = row["started"]
            while first.poll() is None:
                made = conn.execute("SELECT to_regclass('workers') IS NOT NULL AS made").fetchone()
                if (
                    made
                    and made["made"]
                    and conn.execute(
                        "SELECT 1 FROM workers w, crawl c WHERE w.crawl_created = c.created_at AND c.created_at >= %s",
                        [started],
                    ).fetchone()
                ):
                    return
                time.sleep(0.05)

    def _shared_result(self) -> tuple[int, float, dict[str, int]]:
        """Pages, seconds from the crawl's creation to its last result, and URL -> size of the 200 pages."""
        from crawler.cluster.schema import connect

        with connect(self.url) as conn:
            row = conn.execute(
                "SELECT count(*) AS pages, extract(epoch FROM max(r.done_at) - c.created_at) AS seconds "
                "FROM results r, crawl c WHERE r.kind = 'page' AND r.done_at >= c.created_at GROUP BY c.created_at"
            ).fetchone()
            sizes = {
                found["url"]: int(found["size"])
                for found in conn.execute(
                    "SELECT r.url, r.row->>'size' AS size FROM results r, crawl c WHERE r.kind = 'page' "
                    "AND r.done_at >= c.created_at AND (r.row->>'status')::int = 200"
                )
            }
        assert row is not None
        return int(row["pages"]), float(row["seconds"]), sizes

    def measure(self, scenario: str, workers: int, server: ServerProcess, expected: dict[str, int],
                extra: list[str]) -> ScaleRun:  # fmt: skip
        """Crawl the served site with `workers` workers (0: the SQLite mode, in a temporary file)."""
        before = (_children_cpu(), _postgres_cpu(self.postgres_pid), server.report().cpu_seconds)  # and count afresh
        concurrency = self.options.overhead_concurrency if scenario == OVERHEAD else self.options.concurrency
        settings = self._settings(server, len(expected), concurrency, *extra)
        with tempfile.TemporaryDirectory(prefix="crawler-bench-") as tmp:
            if workers == 0:
                stats = Path(tmp) / "stats.json"
                self._run([_command("crawl", *settings, "--db", str(Path(tmp) / "crawl.db"), "--stats-json",
                                    str(stats))])  # fmt: skip
                summary = json.loads(stats.read_text())
                pages, seconds = int(summary["pages"]), float(summary["elapsed"])
                from storage import ok_page_sizes, open_readonly

                with open_readonly(Path(tmp) / "crawl.db") as database:
                    sizes = ok_page_sizes(database)
            else:
                first = _command("crawl", *settings, "--frontier", self.url, "--restart")
                rest = _command("worker", "--frontier", self.url, "-b", self.options.backend, "--parser",
                                self.options.parser, "--concurrency", str(concurrency))  # fmt: skip
                self._run([first] + [rest] * (workers - 1))
                pages, seconds, sizes = self._shared_result()
        report = server.report()
        served = report.served
        problems = [f"missing {url}" for url in expected if url not in sizes]
        problems += [f"size of {url}: {sizes[url]} != {size}" for url, size in expected.items()
                     if sizes.get(url, size) != size]  # fmt: skip
        problems += [f"served {served[url]} times: {url}" for url in expected if served[url] > 1]  # 500s are retried
        return ScaleRun(scenario, workers, pages, seconds, _children_cpu() - before[0],
                        _postgres_cpu(self.postgres_pid) - before[1],
                        report.cpu_seconds - before[2], problems)  # fmt: skip


def run(options: ScaleOptions, on_result: Callable[[ScaleRun], None] | None = None) -> list[ScaleRun]:
    """Every scenario, each with every worker count (the overhead scenario: one worker and the SQLite mode).
    `NoPostgres` (crawler.cluster.server) if PostgreSQL's server is not installed."""
    from crawler.cluster.server import local_postgres

    results: list[ScaleRun] = []
    scenarios: list[tuple[str, SiteOptions, list[int], list[str]]] = [
        (LATENCY, SiteOptions(options.pages, hosts=options.hosts, latency_ms=options.latency_ms),
         options.workers, ["--per-host", str(options.per_host)]),
        (POLITE, SiteOptions(options.polite_pages), options.workers,
         ["--delay", str(POLITE_DELAY), "--per-host", str(options.concurrency)]),
        (OVERHEAD, SiteOptions(options.overhead_pages, hosts=4, profile=options.overhead_profile), [0, 1],
         ["--per-host", str(options.overhead_concurrency)]),
    ]  # fmt: skip
    with signals_end_the_bench(), local_postgres() as postgres:  # SIGTERM stops the workers and servers too
        pid = int((postgres.datadir / "postmaster.pid").read_text().split()[0])
        bench = _Bench(options, pid, postgres.url())
        for scenario, site, counts, extra in scenarios:
            with serve_in_subprocess(site) as server:
                expected = expected_pages(site, server.origins)
                for workers in counts:
                    result = bench.measure(scenario, workers, server, expected, extra)
                    results.append(result)
                    if on_result is not None:
                        on_result(result)
    return results


def render(results: list[ScaleRun]) -> str:
    """A table a scenario a block: pages/s, the ratio to one worker, and where the CPU went."""
    rows: list[list[Any]] = []
    for result in results:
        base = next((other for other in results if other.scenario == result.scenario and other.workers == 1), result)
        rows.append([
            result.scenario,
            "SQLite" if result.workers == 0 else result.workers,
            f"{result.pages:,}",
            f"{result.seconds:.2f}",
            f"{result.pages_per_second:,.1f}",
            f"{result.pages_per_second / base.pages_per_second:.2f}x" if base.pages_per_second else "-",
            f"{result.worker_cpu_seconds:.2f}",
            f"{result.postgres_cpu_seconds:.2f}",
            f"{result.server_cpu_seconds:.2f}",
            "yes" if not result.problems else f"NO ({len(result.problems)})",
        ])  # fmt: skip
    headers = ["scenario", "workers", "pages", "seconds", "pages/s", "vs 1 worker", "CPU s workers",
               "CPU s PostgreSQL", "CPU s server", "checked"]  # fmt: skip
    return table(headers, rows)
