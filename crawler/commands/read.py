"""The read-only commands over a page database: stats, top, runs, compare, changes, broken, query, schema."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Iterator
from dataclasses import asdict
from pathlib import Path
from typing import Annotated, Any

import sqlite_utils
import typer

from crawler.commands.app import DbOption, HostFilter, JsonFlag, RunFilter, app, fail, open_db
from crawler.commands.export import machine_format
from crawler.engine.config import DEFAULT_DB
from crawler.views.compare import compare_text, figures
from crawler.views.text import broken_text, changes_text, runs_text, stats_text, table
from crawler.words import human_bytes
from storage import (
    BROKEN_COLUMNS,
    PageFilter,
    StorageError,
    broken_links,
    changes,
    check_filter,
    fetched_any,
    last_two_passes,
    latest_run_ids,
    latest_run_of_another_pass,
    run_query,
    runs,
    stats,
    top,
)
from storage.columns import TABLES, plain
from storage.columns import markdown as schema_markdown


@app.command("stats")
def stats_command(db: DbOption = Path(DEFAULT_DB), host: HostFilter = None, run: RunFilter = None) -> None:
    """Totals, a page-size histogram, and pages by status, host and content type."""
    page_filter = PageFilter(host=host, run=run)
    with open_db(db) as database:
        try:
            check_filter(database, page_filter)
        except StorageError as exc:
            fail(str(exc))
        typer.echo(stats_text(stats(database, page_filter)))


@app.command("top")
def top_command(
    n: Annotated[int, typer.Option("-n", "--limit", min=1, help="How many pages to list.")] = 10,
    db: DbOption = Path(DEFAULT_DB),
    host: HostFilter = None,
) -> None:
    """The largest pages, largest first."""
    with open_db(db) as database:
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


def _runs(database: sqlite_utils.Database, ids: list[int] | None) -> list[dict[str, Any]]:
    try:
        return runs(database, ids)
    except StorageError as exc:
        fail(str(exc))


@app.command("runs")
def runs_command(db: DbOption = Path(DEFAULT_DB), as_json: JsonFlag = False) -> None:
    """Every crawl recorded in the database: when, how, and how it went."""
    with open_db(db) as database:
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
    with open_db(db) as database:
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
    writer = machine_format(as_csv, as_json, as_lines)
    ids = run_ids or []
    if len(ids) > 2:
        fail("give at most two runs: RUN_A and RUN_B")
    with open_db(db) as database:
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
    writer = machine_format(as_csv, as_json, as_lines)
    found = 0

    def counting(rows: Iterable[tuple[Any, ...]]) -> Iterator[tuple[Any, ...]]:  # streamed: any number of rows
        nonlocal found
        for row in rows:
            found += 1
            yield row

    with open_db(db) as database:
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


@app.command(help=f"Run SQL against the page database, opened read-only (tables: {', '.join(t.name for t in TABLES)}).")
def query(
    sql: Annotated[str, typer.Argument(metavar="SQL", help='One SQL statement, e.g. "SELECT url, size FROM pages".')],
    db: DbOption = Path(DEFAULT_DB),
    as_csv: Annotated[bool, typer.Option("--csv", help="Output CSV with a header row.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Output a JSON array, an object per row.")] = False,
    as_lines: Annotated[bool, typer.Option("--nl", help="Output JSON Lines, an object a line.")] = False,
) -> None:
    """`crawler query`: its help (above) names the tables from the schema's own list."""
    writer = machine_format(as_csv, as_json, as_lines)
    with open_db(db) as database:
        try:
            columns, rows = run_query(database, sql)
        except StorageError as exc:
            fail(str(exc))
        if writer is not None:
            writer(sys.stdout, columns, rows)
        else:
            typer.echo(table(columns, rows))


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
