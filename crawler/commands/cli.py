"""The `crawler` command line: crawl, demo, and the read-only commands over the page database."""

from __future__ import annotations

import csv
import importlib.metadata
import json
import os
import shlex
import sqlite3
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn, TextIO

import sqlite_utils
import typer
import typer.core

from crawler import __version__
from crawler.engine.config import (
    DEFAULT_BACKOFF,
    DEFAULT_CONCURRENCY,
    DEFAULT_CONNECT_TIMEOUT,
    DEFAULT_DB,
    DEFAULT_DELAY,
    DEFAULT_DEPTH,
    DEFAULT_MAX_PAGES,
    DEFAULT_MAX_SIZE,
    DEFAULT_PER_HOST,
    DEFAULT_RETRIES,
    DEFAULT_TIMEOUT,
    DEFAULT_USER_AGENT,
)
from crawler.engine.job import DEMO, JobError, JobRequest, remove_demo_database, run_job
from crawler.engine.seeds import SeedError, load_seeds
from crawler.views.compare import compare_text, figures
from crawler.views.html_report import ReportError, render_report
from crawler.views.progress import ProgressDisplay
from crawler.views.serve import DEFAULT_PORT, ServeError, serve
from crawler.views.text import (
    broken_text,
    changes_text,
    refresh_text,
    runs_text,
    stats_text,
    summary_dict,
    summary_text,
    table,
)
from crawler.words import counted, human_bytes, install_hint
from storage import (
    BROKEN_COLUMNS,
    Owned,
    PageFilter,
    StorageError,
    broken_links,
    changes,
    check_filter,
    fetched_any,
    last_two_passes,
    latest_run_ids,
    latest_run_of_another_pass,
    open_readonly,
    run_query,
    runs,
    stats,
    table_rows,
    top,
)
from storage.columns import TABLES, plain
from storage.columns import markdown as schema_markdown

if TYPE_CHECKING:
    from crawler.bench.measure import RunResult

# crawler.bench.measure and crawler.site.server (aiohttp with them: a quarter of a second) are imported by the commands
# that use them, so that every other command, and a crawl, starts without them.

# click's UsageError (a bad option, value or command), which typer exports only as BadParameter's base.
_UsageError: type[Exception] = next(cls for cls in typer.BadParameter.__mro__ if cls.__name__ == "UsageError")


def _usage_error(exc: Exception) -> NoReturn:
    """Print a usage error as one line, where typer draws a box under the usage, and exit 2."""
    context = getattr(exc, "ctx", None)
    if type(exc).__name__ == "NoArgsIsHelpError" and context is not None:  # `crawler` alone: its help
        typer.echo(context.get_help())
        raise typer.Exit(EXIT_USAGE)
    message = exc.format_message() if hasattr(exc, "format_message") else str(exc)
    message = message.replace("Value error, ", "")  # typer's validation wording
    command = context.command_path if context is not None else "crawler"
    typer.echo(f"Error: {message.rstrip('.')}. Try '{command} -h'.", err=True)
    raise typer.Exit(EXIT_USAGE)


class _OneLineErrors(typer.core.TyperGroup):
    """The command group, its usage errors and its commands' printed as one line."""

    def make_context(self, info_name: str | None, args: list[str], parent: Any = None, **extra: Any) -> Any:
        """As typer's, a usage error in the group's own options or command name in one line."""
        try:
            return super().make_context(info_name, args, parent, **extra)
        except _UsageError as exc:
            _usage_error(exc)

    def invoke(self, ctx: Any) -> Any:
        """As typer's, a usage error in a command's options or arguments in one line."""
        try:
            return super().invoke(ctx)
        except _UsageError as exc:
            _usage_error(exc)


app = typer.Typer(
    help="A concurrent web crawler: crawl with one of four concurrency models, then query the page database.",
    cls=_OneLineErrors,
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _print_version(given: bool) -> None:
    if given:
        try:
            version = importlib.metadata.version("crawler")
        except importlib.metadata.PackageNotFoundError:  # run from a source tree that was never installed
            version = f"{__version__} (not installed)"
        typer.echo(f"crawler {version}")
        raise typer.Exit()


@app.callback()
def _options(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_print_version, is_eager=True, help="Print the version and exit."),
    ] = False,
) -> None:
    """The options of `crawler` itself, before a command (the app's help text is the one shown)."""


EXIT_USAGE = 2
EXIT_INTERRUPTED = 130  # 128 + SIGINT, as shells report Ctrl-C
EXIT_TERMINATED = 143  # 128 + SIGTERM


class ParserName(StrEnum):
    """The HTML parsers (see `parsers.PARSERS`); they extract exactly the same."""

    bs4 = "bs4"
    lxml = "lxml"


ParserOption = Annotated[
    ParserName,
    typer.Option("--parser", help="HTML parser: lxml (libxml2 directly) or bs4 (beautifulsoup4: the same, slower)."),
]


class SiteProfile(StrEnum):
    """The generated site's pages (crawler.site.generate.PROFILES)."""

    realistic = "realistic"
    light = "light"


class Peer(StrEnum):
    """Other crawlers the bench can measure in the same run (crawler.bench.peers)."""

    scrapy = "scrapy"
    lean = "lean"


class Backend(StrEnum):
    """The fetch backends (see `fetchers.BACKENDS`)."""

    asyncio = "asyncio"
    thread = "thread"
    process = "process"
    gevent = "gevent"


BackendOption = Annotated[
    Backend,
    typer.Option("--backend", "-b", help="Concurrency model: asyncio (aiohttp), thread, process or gevent (requests)."),
]
DbOption = Annotated[Path, typer.Option("--db", help="The SQLite page database.")]


def fail(message: str, code: int = EXIT_USAGE) -> NoReturn:
    """Print `Error: message` on stderr and exit with `code` (2: the user's input was wrong)."""
    typer.echo(f"Error: {message}", err=True)
    raise typer.Exit(code)


def _crawl_and_report(request: JobRequest, quiet: bool, stats_json: Path | None = None) -> None:
    try:
        with ProgressDisplay.for_terminal(quiet) as progress:
            job, summary = run_job(request, progress, progress.message)
    except (JobError, Owned) as exc:
        fail(str(exc))
    except sqlite3.Error as exc:
        fail(f"cannot write the database {request.db_path}: {exc}", 1)
    if stats_json is not None:
        stats_json.write_text(json.dumps(summary_dict(summary)))
    typer.echo(summary_text(summary, len(job.seeds), request.db_path))
    if job.changes is not None:
        typer.echo(refresh_text(job.changes, summary.bytes_saved))
        typer.echo(f"What changed: crawler changes --db {shlex.quote(request.db_path)}")
    again = f"crawler crawl --resume --db {shlex.quote(request.db_path)}"
    if summary.interrupted:
        typer.echo(f"Interrupted: what was fetched is saved. To continue: {again}", err=True)
        sys.stdout.flush()
        sys.stderr.flush()
        # After a second stop request, fetches may still be running in threads that the interpreter would
        # wait for at exit: everything is written, so leave now.
        code = EXIT_TERMINATED if summary.stopped_by == "SIGTERM" else EXIT_INTERRUPTED
        if summary.forced:
            os._exit(code)
        raise typer.Exit(code)
    if summary.limit_reached and summary.queued:
        more = 2 * job.config.max_pages
        typer.echo(f"Stopped at --max-pages {job.config.max_pages}. To go on: {again} --max-pages {more}", err=True)


def _given(ctx: typer.Context, parameter: str) -> bool:
    """Whether the user named `parameter` (on the command line or in the environment), rather than leaving it
    to its default: a resumed crawl keeps its stored settings but for those."""
    source = ctx.get_parameter_source(parameter)
    return source is not None and source.name in ("COMMANDLINE", "ENVIRONMENT")


@app.command()
def crawl(
    ctx: typer.Context,
    seeds: Annotated[
        list[str] | None,
        typer.Argument(
            metavar="SEED", help="Seed files (one URL a line, # comments) or URLs.", show_default="seeds.txt"
        ),
    ] = None,
    backend: BackendOption = Backend.asyncio,
    parser: ParserOption = ParserName.lxml,
    db: DbOption = Path(DEFAULT_DB),
    concurrency: Annotated[int, typer.Option(min=1, help="Requests in flight at once.")] = DEFAULT_CONCURRENCY,
    per_host: Annotated[int, typer.Option(min=1, help="Requests in flight at once to one host.")] = DEFAULT_PER_HOST,
    delay: Annotated[
        float, typer.Option(min=0, help="Seconds between requests to one host (robots.txt Crawl-delay wins if longer).")
    ] = DEFAULT_DELAY,
    depth: Annotated[int, typer.Option(min=0, help="Link hops to follow from the seeds (0: the seeds only).")] = (
        DEFAULT_DEPTH
    ),
    max_pages: Annotated[
        int, typer.Option(min=1, help="Stop after fetching this many pages (in all the runs of a crawl).")
    ] = DEFAULT_MAX_PAGES,
    max_pages_per_host: Annotated[
        int, typer.Option(min=0, help="Fetch at most this many pages from one host (0: no cap).")
    ] = 0,
    same_host: Annotated[
        bool, typer.Option("--same-host/--any-host", help="Follow links only to the seeds' hosts, or anywhere.")
    ] = True,
    timeout: Annotated[
        float, typer.Option(min=0.001, help="Seconds one request may take in all, connecting to last byte.")
    ] = DEFAULT_TIMEOUT,
    connect_timeout: Annotated[float, typer.Option(min=0.001, help="Seconds to wait for a connection.")] = (
        DEFAULT_CONNECT_TIMEOUT
    ),
    retries: Annotated[
        int, typer.Option(min=0, help="Retries after a timeout, connection error, 408, 429, 500, 502, 503 or 504.")
    ] = DEFAULT_RETRIES,
    backoff: Annotated[
        float, typer.Option(min=0, help="Seconds before the first retry; doubles each time, with jitter.")
    ] = DEFAULT_BACKOFF,
    max_size: Annotated[
        int, typer.Option(min=1, help="Bytes of a body to keep (after decompression); the rest is cut off.")
    ] = DEFAULT_MAX_SIZE,
    ignore_robots: Annotated[
        bool, typer.Option("--ignore-robots/--obey-robots", help="Do not fetch robots.txt or obey it.")
    ] = False,
    ignore_nofollow: Annotated[
        bool,
        typer.Option(
            "--ignore-nofollow/--obey-nofollow", help="Follow rel=nofollow links and pages with meta robots nofollow."
        ),
    ] = False,
    sitemaps: Annotated[
        bool,
        typer.Option(
            "--sitemaps/--no-sitemaps",
            help="Read the seed sites' sitemaps (robots.txt's Sitemap: lines and /sitemap.xml) and crawl the pages "
            "they list, under the same scope, depth and robots rules as links.",
        ),
    ] = True,
    user_agent: Annotated[
        str, typer.Option(help="The User-Agent header, also the name robots.txt rules are matched against.")
    ] = DEFAULT_USER_AGENT,
    resume: Annotated[
        bool, typer.Option("--resume", help="Continue the unfinished crawl in --db (seeds are then optional).")
    ] = False,
    restart: Annotated[
        bool, typer.Option("--restart", help="Forget an unfinished crawl in --db and start from the seeds.")
    ] = False,
    refresh: Annotated[
        bool,
        typer.Option(
            "--refresh",
            help="Crawl the finished crawl in --db again with its seeds and settings, downloading only the pages "
            "that changed (conditional requests); `crawler changes` then lists what changed.",
        ),
    ] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress display.")] = False,
    stats_json: Annotated[Path | None, typer.Option(hidden=True, help="Write the summary here as JSON.")] = None,
) -> None:
    """Crawl from seed URLs and record every page (status, size, title, links, timing) in a SQLite database.

    The database keeps the crawl's seeds and settings. Running it again on the same database (or with
    --resume) continues an unfinished crawl with them: options given then override them for the rest of it.
    """
    if resume + restart + refresh > 1:
        fail("choose one of --resume, --restart and --refresh")
    try:
        urls, problems = load_seeds(seeds or ([] if resume or refresh else ["seeds.txt"]))
    except SeedError as exc:
        fail(str(exc))
    for problem in problems:
        typer.echo(f"Skipped seed: {problem}", err=True)
    if not urls and not (resume or refresh):
        fail("no valid seed URL to crawl")
    values = {
        "backend": backend.value, "parser": parser.value, "concurrency": concurrency, "per_host": per_host,
        "delay": delay, "depth": depth, "max_pages": max_pages, "max_pages_per_host": max_pages_per_host,
        "same_host": same_host, "timeout": timeout, "connect_timeout": connect_timeout, "retries": retries,
        "backoff": backoff, "max_size": max_size, "obey_robots": not ignore_robots,
        "obey_nofollow": not ignore_nofollow, "sitemaps": sitemaps, "user_agent": user_agent,
    }  # fmt: skip
    options = {"obey_robots": "ignore_robots", "obey_nofollow": "ignore_nofollow"}
    given = {name: value for name, value in values.items() if _given(ctx, options.get(name, name))}
    request = JobRequest(str(db), urls, given, resume=resume, restart=restart, refresh=refresh)
    _crawl_and_report(request, quiet, stats_json)


@app.command()
def demo(
    backend: BackendOption = Backend.asyncio,
    parser: ParserOption = ParserName.lxml,
    pages: Annotated[int, typer.Option(min=1, help="Pages in the generated site.")] = 300,
    db: DbOption = Path("demo.db"),
    concurrency: Annotated[int, typer.Option(min=1, help="Requests in flight at once.")] = 16,
    show_changes: Annotated[
        bool,
        typer.Option(
            "--changes",
            help="Then change the site (a tenth of its pages, one deleted, one now 404, one new in its sitemap), "
            "refresh the crawl, and show what changed.",
        ),
    ] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress display.")] = False,
) -> None:
    """Generate a site, serve it on 127.0.0.1, crawl it, and show the results. Needs no network.

    --db is replaced if `crawler demo` made it; any other file there is left alone.
    """
    try:
        remove_demo_database(db)
    except (JobError, Owned) as exc:
        fail(str(exc))
    from crawler.site.server import SiteOptions, serve_in_subprocess

    typer.echo(f"Serving a generated site of {counted(pages, 'page')} on 127.0.0.1 ...")
    with serve_in_subprocess(SiteOptions(pages, changing=show_changes)) as server:
        origin = server.origins[0]
        typer.echo(f"Crawling {origin}/ with the {backend.value} backend\n")
        # The whole site, as fast as it will go: it is our own server.
        given = {"backend": backend.value, "parser": parser.value, "concurrency": concurrency,
                 "per_host": concurrency, "depth": pages, "max_pages": 2 * pages + 100, "backoff": 0.1}  # fmt: skip
        _crawl_and_report(JobRequest(str(db), [f"{origin}/"], given, made_by=DEMO), quiet)
        if show_changes:
            server.change()
            typer.echo("\nThe site changed. Refreshing the crawl: only what changed is downloaded.\n")
            _crawl_and_report(JobRequest(str(db), [], {}, refresh=True, made_by=DEMO), quiet)
    quoted = shlex.quote(str(db))
    commands = ["broken", "report", "serve"]
    with open_readonly(db) as database:
        if show_changes:
            typer.echo("\n" + changes_text(changes(database, *last_two_passes(database))))
            commands.insert(0, "changes")
        else:
            typer.echo("\n" + stats_text(stats(database)))
    typer.echo("\nExplore it:")  # a command a line, each ready to paste
    for command in commands:
        typer.echo(f"  crawler {command} --db {quoted}" + (" -o report.html" if command == "report" else ""))


@app.command()
def bench(
    pages: Annotated[int, typer.Option(min=1, help="Pages in the generated site (per host).")] = 2000,
    backends: Annotated[
        list[Backend] | None,
        typer.Option("--backend", "-b", help="Backends to measure (repeat the option).", show_default="all four"),
    ] = None,
    parser: ParserOption = ParserName.lxml,
    rounds: Annotated[int, typer.Option(min=1, help="Crawls per backend; the table shows medians.")] = 3,
    latency_ms: Annotated[float, typer.Option(min=0, help="Server delay before every response, in ms.")] = 0.0,
    hosts: Annotated[int, typer.Option(min=1, max=200, help="Loopback hosts (127.0.0.1, .2, ...), a site each.")] = 1,
    concurrency: Annotated[int, typer.Option(min=1, help="Requests in flight at once.")] = 64,
    per_host: Annotated[
        int | None, typer.Option(min=1, help="Requests in flight per host.", show_default="--concurrency")
    ] = None,
    site: Annotated[
        SiteProfile,
        typer.Option(help="Pages as heavy as real documentation (median ~30 KB, up to 1 MB), or light ones."),
    ] = SiteProfile.realistic,
    peers: Annotated[
        list[Peer] | None,
        typer.Option(
            "--peer",
            help=f"Also measure a peer: scrapy ({install_hint('bench')}) or lean, a minimal aiohttp + lxml loop "
            "(repeat the option).",
        ),
    ] = None,
    crawl_timeout: Annotated[
        float, typer.Option(min=1, help="Seconds a crawl may take before it is killed and the bench fails.")
    ] = 600.0,
    as_json: Annotated[bool, typer.Option("--json", help="Print every run and the medians as JSON.")] = False,
) -> None:
    """Measure every backend on a generated site served on 127.0.0.1: pages/s, CPU, memory, checked."""
    from crawler.bench.measure import BenchOptions, helpers_note, medians, render
    from crawler.bench.measure import run as run_bench
    from crawler.site.server import SiteOptions

    options = BenchOptions(
        site=SiteOptions(pages=pages, hosts=hosts, latency_ms=latency_ms, profile=site.value),
        backends=[backend.value for backend in backends or list(Backend)],
        parser=parser.value,
        rounds=rounds,
        concurrency=concurrency,
        per_host=per_host or concurrency,
        peers=[peer.value for peer in peers or []],
        crawl_timeout=crawl_timeout,
    )

    def progress(result: RunResult) -> None:
        if not as_json:
            typer.echo(f"  {result.backend:8} {result.pages:,} pages in {result.seconds:.2f} s "
                       f"({result.pages_per_second:,.0f} pages/s)", err=True)  # fmt: skip

    typer.echo(
        f"Benchmark: {pages:,} {site.value} pages x {hosts} host(s), latency {latency_ms:g} ms, "
        f"concurrency {concurrency}, parser {parser.value}, {rounds} round(s)", err=True,
    )  # fmt: skip
    try:
        results = run_bench(options, progress, on_skip=lambda reason: typer.echo(reason, err=True))
    except RuntimeError as exc:
        fail(str(exc), code=1)
    rows = medians(results)
    if as_json:
        record = {"runs": [asdict(result) for result in results], "medians": [asdict(row) for row in rows]}
        typer.echo(json.dumps(record, indent=2))
    else:
        typer.echo(render(rows))
        for line in helpers_note(rows):
            typer.echo(line)
    if not all(row.correct for row in rows):
        for result in results:
            for problem in result.problems[:5]:
                typer.echo(f"{result.backend}: {problem}", err=True)
        raise typer.Exit(1)


def _open(db: Path) -> sqlite_utils.Database:
    try:
        return open_readonly(db)
    except StorageError as exc:
        fail(str(exc))


HostFilter = Annotated[str | None, typer.Option("--host", help="Only pages from this host.")]
RunFilter = Annotated[int | None, typer.Option("--run", help="Only pages fetched by this run (see `crawler runs`).")]
JsonFlag = Annotated[bool, typer.Option("--json", help="Output JSON.")]


@app.command("stats")
def stats_command(db: DbOption = Path(DEFAULT_DB), host: HostFilter = None, run: RunFilter = None) -> None:
    """Totals, a page-size histogram, and pages by status, host and content type."""
    page_filter = PageFilter(host=host, run=run)
    with _open(db) as database:
        try:
            check_filter(database, page_filter)
        except StorageError as exc:
            fail(str(exc))
        typer.echo(stats_text(stats(database, page_filter)))


def _runs(database: sqlite_utils.Database, ids: list[int] | None) -> list[dict[str, Any]]:
    try:
        return runs(database, ids)
    except StorageError as exc:
        fail(str(exc))


@app.command("runs")
def runs_command(db: DbOption = Path(DEFAULT_DB), as_json: JsonFlag = False) -> None:
    """Every crawl recorded in the database: when, how, and how it went."""
    with _open(db) as database:
        rows = _runs(database, None)
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
    elif not rows:
        typer.echo(f"No runs recorded in {db} yet.")
    else:
        typer.echo(runs_text(rows))


@app.command()
def compare(
    run_ids: Annotated[
        list[int] | None,
        typer.Argument(
            metavar="[RUN]...", help="Run ids (see `crawler runs`).", show_default="the latest of each backend"
        ),
    ] = None,
    db: DbOption = Path(DEFAULT_DB),
    as_json: JsonFlag = False,
) -> None:
    """Runs side by side: pages/s and each one's ratio to the best, latency, CPU, memory, and what held it back."""
    with _open(db) as database:
        rows = _runs(database, list(dict.fromkeys(run_ids)) if run_ids else latest_run_ids(database))  # each once
    if not rows:
        fail(f"no run with pages in {db}: crawl first (e.g. with --backend thread, then --backend asyncio)")
    if as_json:
        typer.echo(json.dumps([asdict(row) for row in figures(rows)], indent=2))
    else:
        typer.echo(compare_text(rows))


@app.command("changes")
def changes_command(
    run_ids: Annotated[
        list[int] | None,
        typer.Argument(
            metavar="[RUN_A [RUN_B]]",
            help="The runs to compare (see `crawler runs`); each stands for the site as its pass had seen it then.",
            show_default="the last two passes over the site",
        ),
    ] = None,
    db: DbOption = Path(DEFAULT_DB),
    host: HostFilter = None,
    min_change: Annotated[
        int, typer.Option(min=0, metavar="BYTES", help="Only content changes of at least this many bytes.")
    ] = 0,
    as_csv: Annotated[bool, typer.Option("--csv", help="Output CSV, a row per changed URL.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Output a JSON array, an object per changed URL.")] = False,
    as_lines: Annotated[bool, typer.Option("--nl", help="Output JSON Lines, an object a line.")] = False,
) -> None:
    """What changed on the site between two crawls of it: pages new, gone, with another status, and changed
    in size (largest change first)."""
    writer = _machine_format(as_csv, as_json, as_lines)
    ids = run_ids or []
    if len(ids) > 2:
        fail("give at most two runs: RUN_A and RUN_B")
    with _open(db) as database:
        try:
            if len(ids) == 2:
                run_a, run_b = ids
            elif ids:
                run_a, run_b = ids[0], latest_run_of_another_pass(database, ids[0])
            else:
                run_a, run_b = last_two_passes(database)
            found = changes(database, run_a, run_b, host, min_change)
        except StorageError as exc:
            fail(str(exc))
    if writer is not None:
        rows = found.rows()
        columns = ["change", "url", "status_a", "status_b", "size_a", "size_b", "delta"]
        writer(sys.stdout, columns, ([row[column] for column in columns] for row in rows))
    else:
        typer.echo(changes_text(found))


@app.command()
def broken(
    db: DbOption = Path(DEFAULT_DB),
    host: Annotated[str | None, typer.Option("--host", help="Only broken targets on this host.")] = None,
    as_csv: Annotated[bool, typer.Option("--csv", help="Output CSV, a row per (broken URL, linking page).")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Output a JSON array, an object per row.")] = False,
    as_lines: Annotated[bool, typer.Option("--nl", help="Output JSON Lines, an object a line.")] = False,
    fail_on_broken: Annotated[
        bool, typer.Option("--fail", help="Exit with status 1 if there is a broken link (for CI jobs).")
    ] = False,
) -> None:
    """Links that lead to a 4xx/5xx page or a failed fetch, with the pages that link to them."""
    writer = _machine_format(as_csv, as_json, as_lines)
    found = 0

    def counting(rows: Iterable[tuple[Any, ...]]) -> Iterator[tuple[Any, ...]]:  # streamed: any number of rows
        nonlocal found
        for row in rows:
            found += 1
            yield row

    with _open(db) as database:
        fetched = fetched_any(database)  # links come from pages that answered: none, and nothing could be checked
        if writer is not None:
            writer(sys.stdout, BROKEN_COLUMNS, counting(broken_links(database, host)))
        elif not fetched:
            typer.echo("Nothing was fetched (no request got a response), so no link could be checked: see "
                       "`crawler stats`.")  # fmt: skip
        else:
            typer.echo(broken_text(counting(broken_links(database, host))))
    if fail_on_broken and (found or not fetched):
        raise typer.Exit(1)


class ExportFormat(StrEnum):
    """What `crawler export` writes."""

    csv = "csv"
    json = "json"
    ndjson = "ndjson"


def _write_csv(out: TextIO, columns: list[str], rows: Iterable[Sequence[Any]]) -> None:
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(columns)
    writer.writerows(rows)


def _write_ndjson(out: TextIO, columns: list[str], rows: Iterable[Sequence[Any]]) -> None:
    for row in rows:
        out.write(json.dumps(dict(zip(columns, row, strict=True))) + "\n")


def _write_json(out: TextIO, columns: list[str], rows: Iterable[Sequence[Any]]) -> None:
    out.write("[")
    for index, row in enumerate(rows):
        out.write(("," if index else "") + "\n" + json.dumps(dict(zip(columns, row, strict=True))))
    out.write("\n]\n")


WRITERS = {ExportFormat.csv: _write_csv, ExportFormat.json: _write_json, ExportFormat.ndjson: _write_ndjson}


def _machine_format(as_csv: bool, as_json: bool, as_lines: bool) -> Callable[..., None] | None:
    """The writer that --csv, --json (an array) or --nl (JSON Lines) asks for, as sqlite-utils has them; None
    for the aligned table."""
    chosen = [writer for flag, writer in ((as_csv, _write_csv), (as_json, _write_json), (as_lines, _write_ndjson))
              if flag]  # fmt: skip
    if len(chosen) > 1:
        fail("choose one of --csv, --json and --nl")
    return chosen[0] if chosen else None


SUFFIXES = {
    ".csv": ExportFormat.csv,
    ".json": ExportFormat.json,
    ".ndjson": ExportFormat.ndjson,
    ".jsonl": ExportFormat.ndjson,
}


class ExportTable(StrEnum):
    """The tables `crawler export` writes (see `storage.EXPORT_TABLES`)."""

    pages = "pages"
    fetches = "fetches"
    links = "links"
    runs = "runs"
    frontier = "frontier"
    sitemaps = "sitemaps"


@app.command()
def export(
    table_name: Annotated[ExportTable, typer.Option("--table", "-t", help="The table to export.")] = ExportTable.pages,
    export_format: Annotated[
        ExportFormat | None,
        typer.Option(
            "--format",
            "-f",
            help="csv, json (an array) or ndjson (an object a line).",
            show_default="from -o, else csv",
        ),
    ] = None,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="File to write.", show_default="stdout")] = None,
    db: DbOption = Path(DEFAULT_DB),
) -> None:
    """Write a table as CSV, JSON or NDJSON, row by row: any size exports in constant memory."""
    if export_format is None and output is not None and output.suffix.lower() not in SUFFIXES:
        fail(f"cannot tell the format from {output.name!r}: name it .csv, .json, .ndjson or .jsonl, or give --format")
    chosen = export_format or (SUFFIXES[output.suffix.lower()] if output else ExportFormat.csv)
    with _open(db) as database:
        try:
            columns, rows = table_rows(database, table_name.value)
        except StorageError as exc:
            fail(str(exc))
        if output is None:
            WRITERS[chosen](sys.stdout, columns, rows)
            return
        try:
            with output.open("w", encoding="utf-8", newline="") as out:
                WRITERS[chosen](out, columns, rows)
        except OSError as exc:
            fail(f"cannot write {output}: {exc.strerror or exc}")
    typer.echo(f"Wrote {table_name.value} to {output} ({chosen.value}).", err=True)


@app.command("report")
def report_command(
    output: Annotated[Path, typer.Option("--output", "-o", help="The HTML file to write.")] = Path("report.html"),
    db: DbOption = Path(DEFAULT_DB),
    run_ids: Annotated[
        list[int] | None,
        typer.Option("--run", help="Runs to chart and compare (repeat it).", show_default="the latest of each backend"),
    ] = None,
) -> None:
    """One self-contained HTML file of charts: sizes, hosts, statuses, pages/s over each run, backends compared."""
    with _open(db) as database:
        try:
            html = render_report(database, str(db), run_ids=run_ids or None)
        except (ReportError, StorageError) as exc:
            fail(str(exc))
    try:
        output.write_text(html, encoding="utf-8")
    except OSError as exc:
        fail(f"cannot write {output}: {exc.strerror or exc}")
    typer.echo(f"Wrote {output} ({human_bytes(len(html.encode()))}): open it in any browser, no network needed.")


@app.command(
    "serve",
    help=f"Browse the page database in Datasette, read-only, on 127.0.0.1 (needs Datasette: {install_hint('serve')}).",
)
def serve_command(
    db: DbOption = Path(DEFAULT_DB),
    port: Annotated[int, typer.Option("--port", "-p", min=0, max=65535, help="Port on 127.0.0.1 (0: any free).")] = (
        DEFAULT_PORT
    ),
    open_browser: Annotated[bool, typer.Option("--open", help="Open it in your web browser.")] = False,
) -> None:
    try:
        code = serve(db, port, open_browser)
    except (StorageError, ServeError) as exc:
        fail(str(exc))
    raise typer.Exit(code)


@app.command("schema")
def schema_command(
    tables: Annotated[
        list[str] | None,
        typer.Argument(metavar="[TABLE]...", help="Tables to describe.", show_default="all of them"),
    ] = None,
    as_markdown: Annotated[bool, typer.Option("--markdown", help="Print Markdown tables, as the README has.")] = False,
) -> None:
    """What each table of the page database holds, and what each column means."""
    known = {table.name: table for table in TABLES}
    unknown = [name for name in tables or [] if name not in known]
    if unknown:
        fail(f"no table {unknown[0]!r} in a page database: choose from {', '.join(known)}")
    if as_markdown:
        if tables:
            fail("--markdown prints every table, as the README has them")
        typer.echo(schema_markdown(), nl=False)
        return
    chosen = [known[name] for name in tables] if tables else list(TABLES)
    typer.echo("\n\n".join(
        f"{described.name}: {plain(described.rows)}\n"
        + table(["column", "type", "meaning"], [(c.name, c.type, plain(c.meaning)) for c in described.columns])
        for described in chosen
    ))  # fmt: skip


@app.command("top")
def top_command(
    n: Annotated[int, typer.Option("-n", "--limit", min=1, help="How many pages to list.")] = 10,
    db: DbOption = Path(DEFAULT_DB),
    host: HostFilter = None,
) -> None:
    """The largest pages, largest first."""
    with _open(db) as database:
        if host is not None:
            try:
                check_filter(database, PageFilter(host=host))
            except StorageError as exc:
                fail(str(exc))
        rows = top(database, n, host)
    typer.echo(
        table(
            ["size", "status", "url", "title"],
            [(human_bytes(row["size"]), row["status"], row["url"], (row["title"] or "")[:60]) for row in rows],
        )
    )


@app.command()
def query(
    sql: Annotated[str, typer.Argument(help='One SQL statement, e.g. "SELECT url, size FROM pages".')],
    db: DbOption = Path(DEFAULT_DB),
    as_csv: Annotated[bool, typer.Option("--csv", help="Output CSV with a header row.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Output a JSON array, an object per row.")] = False,
    as_lines: Annotated[bool, typer.Option("--nl", help="Output JSON Lines, an object a line.")] = False,
) -> None:
    """Run SQL against the page database, opened read-only (tables: pages, links, runs, frontier, crawl)."""
    writer = _machine_format(as_csv, as_json, as_lines)
    with _open(db) as database:
        try:
            columns, rows = run_query(database, sql)
        except StorageError as exc:
            fail(str(exc))
        if writer is not None:
            writer(sys.stdout, columns, rows)
        else:
            typer.echo(table(columns, rows))
