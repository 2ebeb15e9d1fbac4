"""`crawler serve`: the page database in Datasette, read-only, on 127.0.0.1."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from crawler.commands.app import DbOption, app, fail
from crawler.engine.config import DEFAULT_DB
from crawler.views.serve import DEFAULT_PORT, ServeError, serve
from crawler.words import install_hint
from storage import StorageError


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
    show_log: Annotated[
        bool, typer.Option("--log", help="Show Datasette's log (each request, and a traceback for a failed query).")
    ] = False,
) -> None:
    def ready(url: str) -> None:
        typer.echo(f"Serving {db} read-only at {url}/ (Ctrl-C to stop)")

    try:
        code = serve(db, port, open_browser, on_ready=ready, log=sys.stderr if show_log else None)
    except (StorageError, ServeError) as exc:
        fail(str(exc))
    raise typer.Exit(code)
