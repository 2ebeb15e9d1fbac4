"""`crawler bench`: the same crawl of a generated local site on every backend, and on peer crawlers, measured
and checked.

The site is served from a process of its own (so the server does not share the crawler's interpreter);
each crawl runs as a subprocess in a session of its own (so gevent's patching stays in its own process, and
the whole tree can be timed out and killed), measured by process_tree.py: the CPU of every process it started,
the largest sum of RSS over the tree; the parse/store split is the engine's own accounting of its main thread.
After each crawl the server says how often it served each URL: a page served twice is a problem, like a
missing one or a wrong size. Before the first round and after each, the crawlers' parsers parse the site's HTML
pages alone (parse_alone.py), so that each crawl's CPU splits into the parse alone, measured in the minutes
around it, and what the crawl spent beyond it.
"""

from __future__ import annotations

import json
import statistics
import sys
import tempfile
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from crawler.bench.parse_alone import LEAN, ParseCost, measure_parse
from crawler.bench.peers import EXIT_SCRAPY_MISSING
from crawler.bench.process_tree import measure, signals_end_the_bench, subreaper
from crawler.engine.config import DEFAULT_PARSER
from crawler.engine.metrics import ms_per, per_second, share
from crawler.site.server import ServerProcess, SiteOptions, serve_in_subprocess
from crawler.views.text import table
from storage import ok_page_sizes, open_readonly


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
    parser_cpu_seconds: float | None = None  # the parser's own CPU in the crawl (its thread's); None for a peer
    orphan_cpu_seconds: float = 0.0  # part of cpu_seconds: processes the crawl left unwaited (and their children)
    helper_processes: int = 0  # processes besides the crawl's own at its memory peak (the process backend's pool)
    helper_rss_mb: float = 0.0  # their RSS then, together (shared pages counted in each)
    helper_uss_mb: float = 0.0  # their unique memory then, together: what each costs beyond what they share
    # The crawl's parser alone on the site's HTML pages (those a complete crawl parses): CPU seconds, the mean of
    # the measurements before and after its round. None for a crawler whose parse the bench cannot run alone
    # (Scrapy's).
    parse_alone_seconds: float | None = None
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
    before = server.report()  # and count afresh
    tree = measure(command, options.crawl_timeout)
    after = server.report()
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
        server_cpu_seconds=after.cpu_seconds - before.cpu_seconds,
        parser_cpu_seconds=summary.get("parser_cpu_seconds"),
        orphan_cpu_seconds=tree.orphan_cpu_seconds,
        helper_processes=tree.peak_helpers,
        helper_rss_mb=tree.peak_helpers_rss / 2**20,
        helper_uss_mb=tree.peak_helpers_uss / 2**20,
        problems=check(db, expected, after.served),
    )


def parser_of(crawler: str, options: BenchOptions) -> str | None:
    """The parser a crawler parses with, as parse_alone.py runs it; None for Scrapy's."""
    if crawler in options.backends:
        return options.parser
    return LEAN if crawler == LEAN else None


def run(options: BenchOptions, on_result: Callable[[RunResult], None] | None = None,
        on_note: Callable[[str], None] | None = None) -> list[RunResult]:  # fmt: skip
    """Every round crawls the site once with each backend and each peer in turn; returns every run. Before the
    first round and after each, every parser in use parses the site alone. A peer that is not installed is
    skipped; `on_note` hears of that, and of each parse alone."""
    results: list[RunResult] = []
    crawlers = [*options.backends, *options.peers]
    parsers = sorted({parser for crawler in crawlers if (parser := parser_of(crawler, options)) is not None})

    def parse_alone() -> dict[str, ParseCost]:
        costs = {parser: measure_parse(parser, options.site, server.origins, options.crawl_timeout)
                 for parser in parsers}  # fmt: skip
        if on_note is not None:
            on_note("  parse alone: " + ", ".join(f"{cost.parser} {cost.ms_per_page:.2f} ms an HTML page"
                                                  for cost in costs.values()))  # fmt: skip
        return costs

    with signals_end_the_bench(), subreaper(), serve_in_subprocess(options.site) as server, \
            tempfile.TemporaryDirectory(prefix="crawler-bench-") as tmp:  # fmt: skip
        expected = expected_pages(options.site, server.origins)
        before = parse_alone()
        for _ in range(options.rounds):
            this_round: list[RunResult] = []
            for crawler in list(crawlers):
                try:
                    result = run_one(crawler, options, server, Path(tmp), expected)
                except PeerMissing as missing:
                    crawlers.remove(crawler)
                    if on_note is not None:
                        on_note(f"{crawler} skipped: {missing}")
                    continue
                this_round.append(result)
                if on_result is not None:
                    on_result(result)
            after = parse_alone()
            for result in this_round:
                if (parser := parser_of(result.backend, options)) is not None:
                    result.parse_alone_seconds = (before[parser].cpu_seconds + after[parser].cpu_seconds) / 2
            results += this_round
            before = after
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
    parse_alone_ms_per_page: float | None = None  # the parse alone's CPU over the pages crawled
    beyond_parse_ms_per_page: float | None = None  # the crawl's CPU a page beyond that
    parse_in_crawl_ms_per_page: float | None = None  # the parser's own CPU in the crawl, over the pages crawled


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
            parse_alone_ms_per_page=_median(ms_per(run.parse_alone_seconds, run.pages) for run in runs),
            parse_in_crawl_ms_per_page=_median(ms_per(run.parser_cpu_seconds, run.pages) for run in runs),
            beyond_parse_ms_per_page=_median(
                ms_per(run.cpu_seconds - run.parse_alone_seconds, run.pages)
                for run in runs
                if run.parse_alone_seconds is not None
            ),
        )
        for backend, runs in by_backend.items()
    ]


def _percent(share: float | None) -> str:
    return "-" if share is None else f"{share:.0%}"


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def render(rows: list[Row]) -> str:
    """The results table; a `vs scrapy` column when Scrapy was measured. CPU ms/page splits into the parse
    alone and the rest (`PARSE_ALONE_NOTE`)."""
    with_scrapy = any(row.ratio_to_scrapy is not None for row in rows)
    header = ["backend", "pages", "pages/s", "CPU s", "CPU ms/page", "parse alone", "beyond it", "parse in crawl",
              "peak RSS MB", "parse", "store", "fetch+other", "server CPU", "vs best",
              *(["vs scrapy"] if with_scrapy else []), "check"]  # fmt: skip
    body = []
    for row in rows:
        other = None if row.parse_share is None else max(0.0, 1 - row.parse_share - (row.store_share or 0.0))
        body.append((
            row.backend, f"{row.pages:,}", f"{row.pages_per_second:,.0f}", f"{row.cpu_seconds:.2f}",
            _ms(row.cpu_ms_per_page), _ms(row.parse_alone_ms_per_page), _ms(row.beyond_parse_ms_per_page),
            _ms(row.parse_in_crawl_ms_per_page),
            f"{row.peak_rss_mb:.0f}",
            _percent(row.parse_share), _percent(row.store_share), _percent(other), _percent(row.server_cpu_share),
            f"{row.ratio_to_best:.2f}",
            *([f"{row.ratio_to_scrapy:.2f}" if row.ratio_to_scrapy is not None else "-"] if with_scrapy else []),
            "ok" if row.correct else "WRONG",
        ))  # fmt: skip
    return table(header, body)


PARSE_ALONE_NOTE = (
    "In each run, CPU ms/page = parse alone + beyond it (each column is its own median over the rounds). Parse "
    "alone: the crawl's parser on the same HTML pages in a process that does nothing else, measured before and "
    "after each round, over the pages crawled. Beyond it: start-up, fetching, storing, scheduling, and whatever "
    "makes the parse cost more in the crawl. Parse in crawl: the parser's own CPU in the crawl (its thread's), "
    "over the pages crawled; CPU ms/page - parse in crawl is the crawler's own work."
)


def helpers_note(rows: list[Row]) -> list[str]:
    """A line for each crawler that ran in several processes: how many, and the memory of each."""
    return [
        f"{row.backend}: {row.helper_processes} processes besides the crawl's own at the memory peak, "
        f"{row.helper_uss_mb / row.helper_processes:.0f} MB of its own each "
        f"({row.helper_rss_mb / row.helper_processes:.0f} MB RSS, shared pages counted in each)"
        for row in rows
        if row.helper_processes > 2  # more than a resource tracker and a forkserver
    ]
