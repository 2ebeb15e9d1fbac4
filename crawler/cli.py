"""The `crawler` command line: crawl, demo, and the read-only commands over the page database."""

from __future__ import annotations

import csv
import json
import sqlite3
import sys
from enum import StrEnum
from pathlib import Path
from typing import Annotated, NoReturn

import sqlite_utils
import typer

from crawler.config import (
    DEFAULT_CONCURRENCY,
    DEFAULT_DB,
    DEFAULT_DEPTH,
    DEFAULT_MAX_PAGES,
    DEFAULT_TIMEOUT,
    DEFAULT_USER_AGENT,
    CrawlConfig,
)
from crawler.engine import crawl as run_crawl
from crawler.report import stats_text, summary_text, table
from crawler.seeds import SeedError, load_seeds
from crawler.siteserver import serve_in_subprocess
from storage import StorageError, open_readonly, run_query, stats, top

app = typer.Typer(
    help="A concurrent web crawler: crawl with one of four concurrency models, then query the page database.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)

EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


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


def _crawl_and_report(config: CrawlConfig, seeds: list[str]) -> None:
    try:
        summary = run_crawl(config, seeds)
    except sqlite3.Error as exc:
        fail(f"cannot write the database {config.db_path}: {exc}", 1)
    typer.echo(summary_text(summary, len(seeds), config.db_path))
    if summary.interrupted:
        typer.echo("Interrupted: the pages fetched so far are in the database.", err=True)
        raise typer.Exit(EXIT_INTERRUPTED)


@app.command()
def crawl(
    seeds: Annotated[
        list[str] | None,
        typer.Argument(
            metavar="SEED", help="Seed files (one URL a line, # comments) or URLs.", show_default="seeds.txt"
        ),
    ] = None,
    backend: BackendOption = Backend.asyncio,
    db: DbOption = Path(DEFAULT_DB),
    concurrency: Annotated[int, typer.Option(min=1, help="Requests in flight at once.")] = DEFAULT_CONCURRENCY,
    depth: Annotated[
        int, typer.Option(min=0, help="Link hops to follow from the seeds (0: the seeds only).")
    ] = DEFAULT_DEPTH,
    max_pages: Annotated[int, typer.Option(min=1, help="Stop after fetching this many pages.")] = DEFAULT_MAX_PAGES,
    same_host: Annotated[
        bool, typer.Option("--same-host/--any-host", help="Follow links only to the seeds' hosts, or anywhere.")
    ] = True,
    timeout: Annotated[
        float, typer.Option(min=0.001, help="Seconds to wait to connect, and between bytes.")
    ] = DEFAULT_TIMEOUT,
    user_agent: Annotated[
        str, typer.Option(help="The User-Agent header sent with every request.")
    ] = DEFAULT_USER_AGENT,
) -> None:
    """Crawl from seed URLs and record every page (status, size, title, links, timing) in a SQLite database."""
    try:
        urls, problems = load_seeds(seeds or ["seeds.txt"])
    except SeedError as exc:
        fail(str(exc))
    for problem in problems:
        typer.echo(f"Skipped seed: {problem}", err=True)
    if not urls:
        fail("no valid seed URL to crawl")
    config = CrawlConfig(
        backend=backend.value,
        db_path=str(db),
        concurrency=concurrency,
        depth=depth,
        max_pages=max_pages,
        same_host=same_host,
        timeout=timeout,
        user_agent=user_agent,
    )
    _crawl_and_report(config, urls)


@app.command()
def demo(
    backend: BackendOption = Backend.asyncio,
    pages: Annotated[int, typer.Option(min=1, help="Pages in the generated site.")] = 300,
    db: DbOption = Path("demo.db"),
    concurrency: Annotated[int, typer.Option(min=1, help="Requests in flight at once.")] = 16,
) -> None:
    """Generate a site, serve it on 127.0.0.1, crawl it, and show the results. Needs no network."""
    for suffix in ("", "-wal", "-shm"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)
    typer.echo(f"Serving a generated site of {pages} pages on 127.0.0.1 ...")
    with serve_in_subprocess(pages) as origin:
        typer.echo(f"Crawling {origin}/ with the {backend.value} backend\n")
        config = CrawlConfig(
            backend=backend.value,
            db_path=str(db),
            concurrency=concurrency,
            depth=pages,
            max_pages=2 * pages + 100,
            timeout=DEFAULT_TIMEOUT,
        )
        _crawl_and_report(config, [f"{origin}/"])
    with open_readonly(db) as database:
        typer.echo("\n" + stats_text(stats(database)))
    typer.echo(f'\nExplore it: crawler top --db {db}   crawler query --db {db} "SELECT ..."')


def _open(db: Path) -> sqlite_utils.Database:
    try:
        return open_readonly(db)
    except StorageError as exc:
        fail(str(exc))


@app.command("stats")
def stats_command(db: DbOption = Path(DEFAULT_DB)) -> None:
    """Totals and size figures of the crawl, pages by status and by host."""
    with _open(db) as database:
        typer.echo(stats_text(stats(database)))


@app.command("top")
def top_command(
    n: Annotated[int, typer.Option("-n", "--limit", min=1, help="How many pages to list.")] = 10,
    db: DbOption = Path(DEFAULT_DB),
) -> None:
    """The largest pages, largest first."""
    with _open(db) as database:
        rows = top(database, n)
    typer.echo(
        table(
            ["size", "status", "url", "title"],
            [(f"{row['size']:,}", row["status"], row["url"], (row["title"] or "")[:60]) for row in rows],
        )
    )


@app.command()
def query(
    sql: Annotated[str, typer.Argument(help='One SQL statement, e.g. "SELECT url, size FROM pages".')],
    db: DbOption = Path(DEFAULT_DB),
    as_csv: Annotated[bool, typer.Option("--csv", help="Output CSV with a header row.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Output a JSON array of objects.")] = False,
) -> None:
    """Run SQL against the page database, opened read-only (tables: pages, links)."""
    if as_csv and as_json:
        fail("choose one of --csv and --json")
    with _open(db) as database:
        try:
            columns, rows = run_query(database, sql)
        except StorageError as exc:
            fail(str(exc))
        if as_csv:
            writer = csv.writer(sys.stdout, lineterminator="\n")
            writer.writerow(columns)
            writer.writerows(rows)
        elif as_json:
            typer.echo(json.dumps([dict(zip(columns, row, strict=True)) for row in rows], indent=2))
        else:
            typer.echo(table(columns, rows))
