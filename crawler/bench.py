"""`crawler bench`: the same crawl of a generated local site on every backend, measured and checked.

The site is served from a process of its own (so the server does not share the crawler's interpreter);
each crawl runs as a `crawler crawl` subprocess (so gevent's patching stays in its own process, and the
memory of the `process` backend's workers is counted). CPU seconds come from the crawl's rusage, which
includes the worker processes it joined; peak RSS is the largest sum of RSS over the crawl's process tree,
sampled every 50 ms; the parse/store split is the engine's own accounting of its main thread.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from crawler.meter import cpu_seconds, tree_rss
from crawler.report import table
from crawler.siteserver import ServerProcess, SiteOptions, serve_in_subprocess
from storage import open_readonly

SAMPLE_SECONDS = 0.05


@dataclass(frozen=True, slots=True)
class BenchOptions:
    """What to measure: the site, the backends, the crawl settings, how many rounds."""

    site: SiteOptions
    backends: list[str]
    parser: str = "bs4"
    rounds: int = 3
    concurrency: int = 64
    per_host: int = 64


@dataclass(slots=True)
class RunResult:
    """One crawl by one backend."""

    backend: str
    pages: int
    seconds: float  # the crawl itself, as the engine timed it
    cpu_seconds: float  # the crawl's process and its workers, start-up included
    peak_rss_mb: float
    parse_seconds: float
    store_seconds: float
    server_cpu_seconds: float
    problems: list[str] = field(default_factory=list)

    @property
    def pages_per_second(self) -> float:
        """Throughput."""
        return self.pages / self.seconds if self.seconds else 0.0


def expected_pages(options: SiteOptions, origins: list[str]) -> dict[str, int]:
    """URL -> body size of every page the site serves with status 200: what a full crawl must find."""
    return {
        origin + path: len(resource.render(origin))
        for site, origin in zip(options.sites(), origins, strict=True)
        for path, resource in site.items()
        if resource.status == 200
    }


def check(db: Path, expected: dict[str, int]) -> list[str]:
    """What is wrong with a crawl's database compared with the site: missing pages, wrong sizes."""
    with open_readonly(db) as database:
        found = {url: size for url, size in database.execute("SELECT url, size FROM pages WHERE status = 200")}
    problems = [f"missing {url}" for url in expected if url not in found]
    problems += [
        f"size of {url}: {found[url]} != {size}" for url, size in expected.items() if found.get(url, size) != size
    ]
    return problems


def run_one(
    backend: str, options: BenchOptions, server: ServerProcess, workdir: Path, expected: dict[str, int]
) -> RunResult:
    """Crawl the served site once with `backend`; measure and check it."""
    db = workdir / f"{backend}.db"
    stats_path = workdir / f"{backend}.json"
    for stale in (db, stats_path):
        stale.unlink(missing_ok=True)
    command = [
        sys.executable, "-m", "crawler", "crawl", *[f"{origin}/" for origin in server.origins],
        "--backend", backend, "--parser", options.parser, "--db", str(db),
        "--depth", "1000000", "--max-pages", str(10 * len(expected) + 1000),
        "--concurrency", str(options.concurrency), "--per-host", str(options.per_host),
        "--backoff", "0.05", "--quiet", "--stats-json", str(stats_path),
    ]  # fmt: skip
    server_cpu = cpu_seconds(psutil.Process(server.pid))
    with tempfile.TemporaryFile() as errors:
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=errors)
        peak = 0
        done = threading.Event()

        def sample() -> None:
            nonlocal peak
            while not done.is_set():
                peak = max(peak, tree_rss(process.pid))
                done.wait(SAMPLE_SECONDS)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        _, status, usage = os.wait4(process.pid, 0)
        process.returncode = os.waitstatus_to_exitcode(status)
        done.set()
        sampler.join()
        if process.returncode != 0:
            errors.seek(0)
            raise RuntimeError(f"the {backend} crawl failed: {errors.read().decode(errors='replace')[-2000:]}")
    summary = json.loads(stats_path.read_text())
    return RunResult(
        backend=backend,
        pages=summary["pages"],
        seconds=summary["elapsed"],
        cpu_seconds=usage.ru_utime + usage.ru_stime,
        peak_rss_mb=peak / 2**20,
        parse_seconds=summary["parse_seconds"],
        store_seconds=summary["store_seconds"],
        server_cpu_seconds=cpu_seconds(psutil.Process(server.pid)) - server_cpu,
        problems=check(db, expected),
    )


def run(options: BenchOptions, on_result: Callable[[RunResult], None] | None = None) -> list[RunResult]:
    """Every round crawls the site once with each backend in turn; returns every run."""
    results: list[RunResult] = []
    with serve_in_subprocess(options.site) as server, tempfile.TemporaryDirectory(prefix="crawler-bench-") as tmp:
        expected = expected_pages(options.site, server.origins)
        for _ in range(options.rounds):
            for backend in options.backends:
                result = run_one(backend, options, server, Path(tmp), expected)
                results.append(result)
                if on_result is not None:
                    on_result(result)
    return results


@dataclass(frozen=True, slots=True)
class Row:
    """The median of one backend's rounds."""

    backend: str
    pages: int
    pages_per_second: float
    cpu_seconds: float
    cpu_ms_per_page: float
    peak_rss_mb: float
    parse_share: float
    store_share: float
    server_cpu_share: float
    ratio_to_best: float
    correct: bool


def medians(results: list[RunResult]) -> list[Row]:
    """One row per backend, the median of its rounds; `ratio_to_best` compares pages/s."""
    by_backend: dict[str, list[RunResult]] = {}
    for result in results:
        by_backend.setdefault(result.backend, []).append(result)
    rates = {backend: statistics.median(run.pages_per_second for run in runs) for backend, runs in by_backend.items()}
    best = max(rates.values(), default=0.0)
    return [
        Row(
            backend=backend,
            pages=int(statistics.median(run.pages for run in runs)),
            pages_per_second=rates[backend],
            cpu_seconds=statistics.median(run.cpu_seconds for run in runs),
            cpu_ms_per_page=statistics.median(1000 * run.cpu_seconds / max(run.pages, 1) for run in runs),
            peak_rss_mb=statistics.median(run.peak_rss_mb for run in runs),
            parse_share=statistics.median(run.parse_seconds / run.seconds for run in runs),
            store_share=statistics.median(run.store_seconds / run.seconds for run in runs),
            server_cpu_share=statistics.median(run.server_cpu_seconds / run.seconds for run in runs),
            ratio_to_best=rates[backend] / best if best else 0.0,
            correct=all(not run.problems for run in runs),
        )
        for backend, runs in by_backend.items()
    ]


def render(rows: list[Row]) -> str:
    """The results table."""
    return table(
        ["backend", "pages", "pages/s", "CPU s", "CPU ms/page", "peak RSS MB", "parse", "store",
         "fetch+other", "server CPU", "vs best", "check"],
        [
            (row.backend, f"{row.pages:,}", f"{row.pages_per_second:,.0f}", f"{row.cpu_seconds:.2f}",
             f"{row.cpu_ms_per_page:.2f}", f"{row.peak_rss_mb:.0f}", f"{row.parse_share:.0%}",
             f"{row.store_share:.0%}", f"{max(0.0, 1 - row.parse_share - row.store_share):.0%}",
             f"{row.server_cpu_share:.0%}", f"{row.ratio_to_best:.2f}", "ok" if row.correct else "WRONG")
            for row in rows
        ],
    )  # fmt: skip
