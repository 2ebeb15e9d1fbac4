"""`crawler crawl` and `crawler demo`: run a crawl job and print its summary and the commands that come next."""

from __future__ import annotations

import json
import shlex
import sqlite3
from pathlib import Path
from typing import Annotated, Any

import typer

from crawler.commands.app import (
    DEFAULT_BACKEND_CHOICE,
    DEFAULT_PARSER_CHOICE,
    BackendOption,
    DbOption,
    ParserOption,
    app,
    fail,
    interrupted,
)
from crawler.commands.cluster import DEFAULT_LEASE_SECONDS, LeaseOption, crawl_shared
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
    SETTINGS,
    CrawlConfig,
)
from crawler.engine.job import DEMO, JobError, JobRequest, remove_demo_database, run_job
from crawler.engine.seeds import SeedError, load_seeds
from crawler.views.progress import ProgressDisplay
from crawler.views.text import changes_text, refresh_text, stats_text, summary_dict, summary_text
from crawler.words import counted
from storage import Owned, changes, last_two_passes, open_readonly, stats


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
        interrupted(f"Interrupted: what was fetched is saved. To continue: {again}", summary.stopped_by, summary.forced)
    if summary.limit_reached and summary.queued:
        more = 2 * job.config.max_pages
        typer.echo(f"Stopped at --max-pages {job.config.max_pages}. To go on: {again} --max-pages {more}", err=True)


def _given(ctx: typer.Context, parameter: str) -> bool:
    """Whether the user named `parameter` (on the command line or in the environment), rather than leaving it
    to its default: a resumed crawl keeps its stored settings but for those."""
    source = ctx.get_parameter_source(parameter)
    return source is not None and source.name in ("COMMANDLINE", "ENVIRONMENT")


# Options whose sense is their setting's opposite: --ignore-robots sets obey_robots to False.
NEGATED = {"ignore_robots": "obey_robots", "ignore_nofollow": "obey_nofollow"}
# The options of `crawl` that are not crawl settings; every other option is one, by its CrawlConfig name.
NOT_SETTINGS = frozenset(
    {"seeds", "db", "resume", "restart", "refresh", "quiet", "stats_json", "frontier", "lease_seconds"}
)


def given_settings(ctx: typer.Context) -> dict[str, Any]:
    """The crawl settings the user named, by their `CrawlConfig` names, from the command's own parameters: a
    resumed crawl keeps its stored settings but for these."""
    given: dict[str, Any] = {}
    for option, value in ctx.params.items():
        if option in NOT_SETTINGS or not _given(ctx, option):
            continue
        name = NEGATED.get(option, option)
        if name not in SETTINGS:  # an option added to `crawl` without a setting, and not named above
            raise AssertionError(f"--{option.replace('_', '-')} is neither a crawl setting nor in NOT_SETTINGS")
        given[name] = (not value) if option in NEGATED else getattr(value, "value", value)
    return given


@app.command()
def crawl(
    ctx: typer.Context,
    seeds: Annotated[
        list[str] | None,
        typer.Argument(
            metavar="SEED", help="Seed files (one URL a line, # comments) or URLs.", show_default="seeds.txt"
        ),
    ] = None,
    backend: BackendOption = DEFAULT_BACKEND_CHOICE,
    parser: ParserOption = DEFAULT_PARSER_CHOICE,
    db: DbOption = Path(DEFAULT_DB),
    concurrency: Annotated[int, typer.Option(min=1, help="Requests in flight at once.")] = DEFAULT_CONCURRENCY,
    per_host: Annotated[int, typer.Option(min=1, help="Requests in flight at once to one host.")] = DEFAULT_PER_HOST,
    delay: Annotated[
        float,
        typer.Option(
            metavar="SECONDS",
            min=0,
            help="Seconds between requests to one host (robots.txt Crawl-delay wins if longer).",
        ),
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
        float,
        typer.Option(
            metavar="SECONDS", min=0.001, help="Seconds one request may take in all, connecting to last byte."
        ),
    ] = DEFAULT_TIMEOUT,
    connect_timeout: Annotated[
        float, typer.Option(metavar="SECONDS", min=0.001, help="Seconds to wait for a connection.")
    ] = (DEFAULT_CONNECT_TIMEOUT),
    retries: Annotated[
        int, typer.Option(min=0, help="Retries after a timeout, connection error, 408, 429, 500, 502, 503 or 504.")
    ] = DEFAULT_RETRIES,
    backoff: Annotated[
        float,
        typer.Option(metavar="SECONDS", min=0, help="Seconds before the first retry; doubles each time, with jitter."),
    ] = DEFAULT_BACKOFF,
    max_size: Annotated[
        int,
        typer.Option(
            metavar="BYTES", min=1, help="Bytes of a body to keep (after decompression); the rest is cut off."
        ),
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
    frontier: Annotated[
        str | None,
        typer.Option(
            metavar="URL",
            help="Share the crawl through this PostgreSQL database (postgresql://USER@HOST/DB) with any number "
            "of `crawler worker`s, and work on it; `crawler pull` then writes the SQLite database.",
        ),
    ] = None,
    lease_seconds: LeaseOption = DEFAULT_LEASE_SECONDS,
) -> None:
    """Crawl from seed URLs and record every page (status, size, title, links, timing) in a SQLite database.

    The database keeps the crawl's seeds and settings. Running it again on the same database (or with
    --resume) continues an unfinished crawl with them: options given then override them for the rest of it.
    """
    if resume + restart + refresh > 1:
        fail("choose one of --resume, --restart and --refresh")
    if frontier is not None and (resume or refresh or _given(ctx, "db")):
        fail("--frontier keeps the crawl in PostgreSQL, where --db, --resume and --refresh do not apply: continue "
             "it with `crawler worker --frontier URL`, and get a SQLite file with `crawler pull`")  # fmt: skip
    try:
        urls, problems = load_seeds(seeds or ([] if resume or refresh else ["seeds.txt"]))
    except SeedError as exc:
        fail(str(exc))
    for problem in problems:
        typer.echo(f"Skipped seed: {problem}", err=True)
    if not urls and not (resume or refresh):
        fail("no valid seed URL to crawl")
    if frontier is not None:
        crawl_shared(frontier, urls, {**CrawlConfig().settings(), **given_settings(ctx)}, restart, lease_seconds, quiet)
        return
    given = given_settings(ctx)
    request = JobRequest(str(db), urls, given, resume=resume, restart=restart, refresh=refresh)
    _crawl_and_report(request, quiet, stats_json)


@app.command()
def demo(
    backend: BackendOption = DEFAULT_BACKEND_CHOICE,
    parser: ParserOption = DEFAULT_PARSER_CHOICE,
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
