"""`crawler bench`: the same crawl of a generated local site on every backend, and on peer crawlers, measured
and checked.

The site is served from a process of its own (so the server does not share the crawler's interpreter);
each crawl runs as a subprocess in a session of its own (so gevent's patching stays in its own process, and
the whole tree can be timed out and killed). CPU seconds are the kernel's rusage of every process the crawl
started: this process becomes a child subreaper, so the processes the crawl leaves unwaited (the `process`
backend's forkserver, which waited for its workers) are re-parented here and waited for. Peak RSS is the
largest sum of RSS over the crawl's process tree, sampled every 50 ms; the parse/store split is the engine's
own accounting of its main thread. After each crawl the server says how often it served each URL: a page
served twice is a problem, like a missing one or a wrong size.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import resource
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from crawler.bench.peers import EXIT_SCRAPY_MISSING
from crawler.engine.config import DEFAULT_PARSER
from crawler.engine.metrics import cpu_seconds, ms_per, per_second, share
from crawler.engine.signals import handling
from crawler.site.server import ServerProcess, SiteOptions, serve_in_subprocess
from crawler.views.text import table
from storage import ok_page_sizes, open_readonly

SAMPLE_SECONDS = 0.05
PR_SET_CHILD_SUBREAPER = 36  # from <linux/prctl.h>
ORPHAN_GRACE = 5.0  # seconds the crawl's leftover processes get to exit by themselves before they are killed


@dataclass(frozen=True, slots=True)
class BenchOptions:
    """What to measure: the site, the backends and peers, the crawl settings, how many rounds, and how long a
    crawl may take before it is killed."""

    site: SiteOptions
    backends: list[str]
    parser: str = DEFAULT_PARSER
    rounds: int = 3
    concurrency: int = 64
    per_host: int = 64
    peers: list[str] = field(default_factory=list)
    crawl_timeout: float = 600.0


@dataclass(slots=True)
class RunResult:
    """One crawl by one backend, or by a peer (`backend` names it; it has no parse/store accounting)."""

    backend: str
    pages: int
    seconds: float  # the crawl itself, as the crawler timed it
    cpu_seconds: float  # every process the crawl started, start-up included
    peak_rss_mb: float
    parse_seconds: float | None
    store_seconds: float | None
    server_cpu_seconds: float
    orphan_cpu_seconds: float = 0.0  # part of cpu_seconds: processes the crawl left unwaited (and their children)
    helper_processes: int = 0  # processes besides the crawl's own at its memory peak (the process backend's pool)
    helper_rss_mb: float = 0.0  # their RSS then, together (shared pages counted in each)
    helper_uss_mb: float = 0.0  # their unique memory then, together: what each costs beyond what they share
    problems: list[str] = field(default_factory=list)

    @property
    def pages_per_second(self) -> float:
        """Throughput."""
        return per_second(self.pages, self.seconds)


class PeerMissing(Exception):
    """A peer crawler that is not installed: the message says how to install it."""


def expected_pages(options: SiteOptions, origins: list[str]) -> dict[str, int]:
    """URL -> body size of every page the site serves with status 200: what a full crawl must find."""
    return {
        origin + path: len(resource.render(origin))
        for site, origin in zip(options.sites(), origins, strict=True)
        for path, resource in site.items()
        if resource.status == 200
    }


def check(db: Path, expected: dict[str, int], served: Counter[str] | None = None) -> list[str]:
    """What is wrong with a crawl's database compared with the site: missing pages, wrong sizes, and pages the
    server had to serve more than once (`served`: URL -> times served during the crawl)."""
    with open_readonly(db) as database:
        found = ok_page_sizes(database)
    problems = [f"missing {url}" for url in expected if url not in found]
    problems += [
        f"size of {url}: {found[url]} != {size}" for url, size in expected.items() if found.get(url, size) != size
    ]
    if served is not None:
        problems += [f"served {served[url]} times: {url}" for url in expected if served[url] > 1]
    return problems


@contextlib.contextmanager
def _subreaper() -> Iterator[None]:
    """While the block runs, the processes a crawl leaves behind are re-parented to this one when their parent
    dies, so that they can be waited for (their CPU counted, nothing left running). Linux only; elsewhere
    they go uncounted."""
    prctl = ctypes.CDLL(None, use_errno=True).prctl if sys.platform.startswith("linux") else None
    if prctl is not None:
        prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    try:
        yield
    finally:
        if prctl is not None:
            prctl(PR_SET_CHILD_SUBREAPER, 0, 0, 0, 0)


@contextlib.contextmanager
def _signals_end_the_bench() -> Iterator[None]:
    """While the block runs, SIGTERM and SIGHUP end the bench as Ctrl-C does: the crawl being measured (in a
    session of its own, out of the terminal's reach) is killed with its whole group, the server stopped and
    the temporary files removed; the exit status is 128 + the signal. Only the main thread can set handlers."""

    def stop(signum: int, _: object) -> None:
        raise SystemExit(128 + signum)

    with handling((signal.SIGTERM, signal.SIGHUP), stop):  # an ignored SIGHUP (nohup) stays ignored
        yield


@dataclass(slots=True)
class _Tree:
    """What was measured of one crawl's process tree."""

    returncode: int
    timed_out: bool
    cpu_seconds: float
    orphan_cpu_seconds: float
    peak_rss: int
    peak_helpers: int  # processes besides the crawl's own at the memory peak (pool workers, forkserver...)
    peak_helpers_rss: int  # their RSS then
    peak_helpers_uss: int  # their unique memory then
    errors: str


def _cpu(usage: resource.struct_rusage) -> float:
    return usage.ru_utime + usage.ru_stime


def _uss(member: psutil.Process) -> int:
    """The memory only this process holds (0 once it is gone)."""
    try:
        return int(member.memory_full_info().uss)
    except psutil.NoSuchProcess:
        return 0


def _reap_orphans(seen: dict[int, float], group: int) -> float:
    """Wait for the processes of the crawl's tree that were re-parented here; kill what is still running after
    ORPHAN_GRACE. Returns their CPU seconds (their own waited children's included)."""
    me = os.getpid()
    cpu = 0.0
    deadline = time.monotonic() + ORPHAN_GRACE
    while True:
        alive = []
        for pid, created in seen.items():
            try:
                process = psutil.Process(pid)
                if process.create_time() != created:
                    continue
                alive.append(pid)
                if process.ppid() != me:
                    continue
            except psutil.NoSuchProcess:
                continue
            reaped, _, usage = os.wait4(pid, os.WNOHANG)
            if reaped:
                cpu += _cpu(usage)
        if not alive:
            return cpu
        if time.monotonic() > deadline:
            with contextlib.suppress(ProcessLookupError, psutil.NoSuchProcess):
                os.killpg(group, signal.SIGKILL)
        time.sleep(SAMPLE_SECONDS / 5)


def _measure(command: list[str], timeout: float) -> _Tree:
    """Run `command` in a session of its own and measure its whole process tree; kill the tree if it runs
    past `timeout` seconds, or if this process is interrupted."""
    with tempfile.TemporaryFile() as errors:
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=errors, start_new_session=True)
        group = process.pid
        peak = helpers = helpers_rss = helpers_uss = 0
        seen: dict[int, float] = {}  # pid -> create time of every descendant sampled
        done = threading.Event()
        timed_out = threading.Event()

        def sample() -> None:  # one walk of the tree: its memory, and which processes it holds
            nonlocal peak, helpers, helpers_rss, helpers_uss
            while not done.is_set():
                rss = descendants_rss = 0
                descendants: list[psutil.Process] = []
                with contextlib.suppress(psutil.NoSuchProcess):
                    root = psutil.Process(process.pid)
                    for member in [root, *root.children(recursive=True)]:
                        with contextlib.suppress(psutil.NoSuchProcess), member.oneshot():
                            member_rss = member.memory_info().rss
                            rss += member_rss
                            if member.pid != root.pid:
                                seen.setdefault(member.pid, member.create_time())
                                descendants.append(member)
                                descendants_rss += member_rss
                if rss > peak:  # unique memory needs a read of every page map: only at a new peak
                    peak, helpers, helpers_rss = rss, len(descendants), descendants_rss
                    helpers_uss = sum(_uss(member) for member in descendants)
                done.wait(SAMPLE_SECONDS)

        def expire() -> None:
            timed_out.set()
            with contextlib.suppress(ProcessLookupError, psutil.NoSuchProcess):
                os.killpg(group, signal.SIGKILL)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        timer = threading.Timer(timeout, expire)
        timer.start()
        try:
            _, status, usage = os.wait4(process.pid, 0)
        except BaseException:  # Ctrl-C, SIGTERM or SIGHUP of the bench: the crawl ends with it
            expire()
            os.wait4(process.pid, 0)
            raise
        finally:
            timer.cancel()
            done.set()
            sampler.join()
        process.returncode = os.waitstatus_to_exitcode(status)
        orphan_cpu = _reap_orphans(seen, group)
        errors.seek(0)
        return _Tree(process.returncode, timed_out.is_set(), _cpu(usage) + orphan_cpu, orphan_cpu, peak, helpers,
                     helpers_rss, helpers_uss, errors.read().decode(errors="replace")[-2000:])  # fmt: skip


def _crawl_command(backend: str, options: BenchOptions, origins: list[str], db: Path, stats: Path,
                   expected: int) -> list[str]:  # fmt: skip
    if backend in options.peers:
        return [sys.executable, "-m", "crawler.bench.peers", backend, "--db", str(db), "--stats-json", str(stats),
                "--concurrency", str(options.concurrency), "--per-host", str(options.per_host),
                *[f"{origin}/" for origin in origins]]  # fmt: skip
    return [
        sys.executable, "-m", "crawler", "crawl", *[f"{origin}/" for origin in origins],
        "--backend", backend, "--parser", options.parser, "--db", str(db),
        "--depth", "1000000", "--max-pages", str(10 * expected + 1000),
        "--concurrency", str(options.concurrency), "--per-host", str(options.per_host),
        "--backoff", "0.05", "--quiet", "--stats-json", str(stats),
    ]  # fmt: skip


def run_one(
    backend: str, options: BenchOptions, server: ServerProcess, workdir: Path, expected: dict[str, int]
) -> RunResult:
    """Crawl the served site once with `backend` (or a peer); measure and check it. Raises `PeerMissing` for
    a peer that is not installed, `RuntimeError` for a crawl that failed."""
    db = workdir / f"{backend}.db"
    stats_path = workdir / f"{backend}.json"
    for stale in (db, stats_path):
        stale.unlink(missing_ok=True)
    command = _crawl_command(backend, options, server.origins, db, stats_path, len(expected))
    server_cpu = cpu_seconds(psutil.Process(server.pid))
    server.served()  # start counting afresh
    tree = _measure(command, options.crawl_timeout)
    served = server.served()
    if backend in options.peers and tree.returncode == EXIT_SCRAPY_MISSING:
        raise PeerMissing(tree.errors.strip().splitlines()[-1])
    if tree.timed_out:
        raise RuntimeError(f"the {backend} crawl did not finish within {options.crawl_timeout:g} s: killed")
    if tree.returncode != 0:
        raise RuntimeError(f"the {backend} crawl failed (exit code {tree.returncode}): {tree.errors}")
    summary = json.loads(stats_path.read_text())
    return RunResult(
        backend=backend,
        pages=summary["pages"],
        seconds=summary["elapsed"],
        cpu_seconds=tree.cpu_seconds,
        peak_rss_mb=tree.peak_rss / 2**20,
        parse_seconds=summary.get("parse_seconds"),
        store_seconds=summary.get("store_seconds"),
        server_cpu_seconds=cpu_seconds(psutil.Process(server.pid)) - server_cpu,
        orphan_cpu_seconds=tree.orphan_cpu_seconds,
        helper_processes=tree.peak_helpers,
        helper_rss_mb=tree.peak_helpers_rss / 2**20,
        helper_uss_mb=tree.peak_helpers_uss / 2**20,
        problems=check(db, expected, served),
    )


def run(options: BenchOptions, on_result: Callable[[RunResult], None] | None = None,
        on_skip: Callable[[str], None] | None = None) -> list[RunResult]:  # fmt: skip
    """Every round crawls the site once with each backend and each peer in turn; returns every run. A peer
    that is not installed is skipped (`on_skip` gets the reason)."""
    results: list[RunResult] = []
    crawlers = [*options.backends, *options.peers]
    with _signals_end_the_bench(), _subreaper(), serve_in_subprocess(options.site) as server, \
            tempfile.TemporaryDirectory(prefix="crawler-bench-") as tmp:  # fmt: skip
        expected = expected_pages(options.site, server.origins)
        for _ in range(options.rounds):
            for crawler in list(crawlers):
                try:
                    result = run_one(crawler, options, server, Path(tmp), expected)
                except PeerMissing as missing:
                    crawlers.remove(crawler)
                    if on_skip is not None:
                        on_skip(f"{crawler} skipped: {missing}")
                    continue
                results.append(result)
                if on_result is not None:
                    on_result(result)
    return results


@dataclass(frozen=True, slots=True)
class Row:
    """The median of one backend's (or peer's) rounds."""

    backend: str
    pages: int
    pages_per_second: float
    cpu_seconds: float
    cpu_ms_per_page: float | None  # None when no round fetched a page
    peak_rss_mb: float
    parse_share: float | None  # None for a peer
    store_share: float | None
    server_cpu_share: float | None  # None when no round took any time
    ratio_to_best: float
    ratio_to_scrapy: float | None  # pages/s against Scrapy's in the same run, when it was measured
    correct: bool
    helper_processes: int = 0
    helper_rss_mb: float = 0.0
    helper_uss_mb: float = 0.0


def _median(values: Iterable[float | None]) -> float | None:
    """The median of the known values; None when none is known."""
    known = [value for value in values if value is not None]
    return statistics.median(known) if known else None


def _share(runs: list[RunResult], part: Callable[[RunResult], float | None]) -> float | None:
    """The median over the rounds of `part` as a share of the crawl's time."""
    return _median(share(part(run), run.seconds) for run in runs)


def medians(results: list[RunResult]) -> list[Row]:
    """One row per backend and peer, the median of its rounds; `ratio_to_best` and `ratio_to_scrapy` compare
    pages/s."""
    by_backend: dict[str, list[RunResult]] = {}
    for result in results:
        by_backend.setdefault(result.backend, []).append(result)
    rates = {backend: statistics.median(run.pages_per_second for run in runs) for backend, runs in by_backend.items()}
    best = max(rates.values(), default=0.0)
    scrapy = rates.get("scrapy")
    return [
        Row(
            backend=backend,
            pages=int(statistics.median(run.pages for run in runs)),
            pages_per_second=rates[backend],
            cpu_seconds=statistics.median(run.cpu_seconds for run in runs),
            cpu_ms_per_page=_median(ms_per(run.cpu_seconds, run.pages) for run in runs),
            peak_rss_mb=statistics.median(run.peak_rss_mb for run in runs),
            parse_share=_share(runs, lambda run: run.parse_seconds),
            store_share=_share(runs, lambda run: run.store_seconds),
            server_cpu_share=_share(runs, lambda run: run.server_cpu_seconds),
            ratio_to_best=rates[backend] / best if best else 0.0,
            ratio_to_scrapy=rates[backend] / scrapy if scrapy else None,
            correct=all(not run.problems for run in runs),
            helper_processes=int(statistics.median(run.helper_processes for run in runs)),
            helper_rss_mb=statistics.median(run.helper_rss_mb for run in runs),
            helper_uss_mb=statistics.median(run.helper_uss_mb for run in runs),
        )
        for backend, runs in by_backend.items()
    ]


def _percent(share: float | None) -> str:
    return "-" if share is None else f"{share:.0%}"


def render(rows: list[Row]) -> str:
    """The results table; a `vs scrapy` column when Scrapy was measured."""
    with_scrapy = any(row.ratio_to_scrapy is not None for row in rows)
    header = ["backend", "pages", "pages/s", "CPU s", "CPU ms/page", "peak RSS MB", "parse", "store", "fetch+other",
              "server CPU", "vs best", *(["vs scrapy"] if with_scrapy else []), "check"]  # fmt: skip
    body = []
    for row in rows:
        other = None if row.parse_share is None else max(0.0, 1 - row.parse_share - (row.store_share or 0.0))
        body.append((
            row.backend, f"{row.pages:,}", f"{row.pages_per_second:,.0f}", f"{row.cpu_seconds:.2f}",
            "-" if row.cpu_ms_per_page is None else f"{row.cpu_ms_per_page:.2f}", f"{row.peak_rss_mb:.0f}",
            _percent(row.parse_share), _percent(row.store_share), _percent(other), _percent(row.server_cpu_share),
            f"{row.ratio_to_best:.2f}",
            *([f"{row.ratio_to_scrapy:.2f}" if row.ratio_to_scrapy is not None else "-"] if with_scrapy else []),
            "ok" if row.correct else "WRONG",
        ))  # fmt: skip
    return table(header, body)


def helpers_note(rows: list[Row]) -> list[str]:
    """A line for each crawler that ran in several processes: how many, and the memory of each."""
    return [
        f"{row.backend}: {row.helper_processes} processes besides the crawl's own at the memory peak, "
        f"{row.helper_uss_mb / row.helper_processes:.0f} MB of its own each "
        f"({row.helper_rss_mb / row.helper_processes:.0f} MB RSS, shared pages counted in each)"
        for row in rows
        if row.helper_processes > 2  # more than a resource tracker and a forkserver
    ]
