"""Commands that write a page database out: `export` (CSV, JSON, JSON Lines) and `report` (one HTML file);
the machine formats that `query`, `broken` and `changes` share."""

from __future__ import annotations

import csv
import json
import sys
from collections.abc import Callable, Iterable, Sequence
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, TextIO

import typer

from crawler.commands.app import DbOption, app, fail, open_db
from crawler.engine.config import DEFAULT_DB
from crawler.views.html import ReportError, render_report
from crawler.words import human_bytes
from storage import EXPORT_TABLES, StorageError, table_rows


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


def machine_format(as_csv: bool, as_json: bool, as_lines: bool) -> Callable[..., None] | None:
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


# The tables `crawler export` writes, from storage's list of them (typer wants an Enum).
ExportTable = StrEnum("ExportTable", {name: name for name in EXPORT_TABLES})  # type: ignore[misc]
PAGES = ExportTable("pages")


@app.command()
def export(
    table_name: Annotated[
        ExportTable,
        typer.Option("--table", "-t", metavar="TABLE", help=f"The table to export: {', '.join(EXPORT_TABLES)}."),
    ] = PAGES,
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
    with open_db(db) as database:
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
        typer.Option(
            "--run",
            metavar="RUN",
            help="Runs to chart and compare (repeat it).",
            show_default="the latest of each backend",
        ),
    ] = None,
) -> None:
    """One self-contained HTML file of charts: sizes, hosts, statuses, pages/s over each run, backends compared."""
    with open_db(db) as database:
        try:
            html = render_report(database, str(db), run_ids=run_ids or None)
        except (ReportError, StorageError) as exc:
            fail(str(exc))
    try:
        output.write_text(html, encoding="utf-8")
    except OSError as exc:
        fail(f"cannot write {output}: {exc.strerror or exc}")
    typer.echo(f"Wrote {output} ({human_bytes(len(html.encode()))}): open it in any browser, no network needed.")
