"""Entry point of `crawler` and `python -m crawler`.

gevent's monkey patching must happen before the HTTP libraries (and ssl) are imported, so the choice of
backend is read here, from the raw arguments, before the CLI and everything behind it is loaded.
"""

from __future__ import annotations

import json
import sqlite3
import sys
from pathlib import Path

# The commands that fetch in this process; `bench` runs each backend in a subprocess of its own.
FETCHING_COMMANDS = frozenset({"crawl", "demo", "worker"})


def _option(args: list[str], names: tuple[str, ...]) -> str | None:
    """The value of the last of the options `names` in `args` (`--name value`, `--name=value`, `-bvalue`)."""
    value = None
    for index, arg in enumerate(args):
        for name in names:
            if arg == name and index + 1 < len(args):
                value = args[index + 1]
            elif arg.startswith(name + "=") or (len(name) == 2 and arg.startswith(name) and len(arg) > 2):
                value = arg[len(name) :].removeprefix("=")
    return value


def stored_backend(db: str) -> str | None:
    """The backend of the unfinished crawl in `db`, which a resume without --backend continues with; read
    with the standard library alone, before anything gevent must patch is imported."""
    if not Path(db).is_file():
        return None
    try:
        conn = sqlite3.connect(f"{Path(db).resolve().as_uri()}?mode=ro", uri=True)
        try:
            unfinished = conn.execute("SELECT 1 FROM frontier WHERE state = 'queued' LIMIT 1").fetchone()
            row = conn.execute("SELECT settings FROM crawl WHERE id = 1").fetchone()
        finally:
            conn.close()
        backend = json.loads(row[0]).get("backend") if unfinished and row and row[0] else None
    except (sqlite3.Error, ValueError, AttributeError):
        return None  # not a crawl database: the command itself says so
    return backend if isinstance(backend, str) else None


def wants_gevent(args: list[str]) -> bool:
    """Whether the command line runs a fetching command on the gevent backend: `--backend gevent` (or
    `--backend=gevent`, `-b gevent`), or `crawl` without --backend continuing a gevent crawl."""
    if not args or args[0] not in FETCHING_COMMANDS:
        return False
    backend = _option(args, ("--backend", "-b"))
    if backend is None and args[0] == "crawl" and "--restart" not in args:
        backend = stored_backend(_option(args, ("--db",)) or "crawl.db")
    return backend == "gevent"


def main() -> None:
    """Run the crawler command line."""
    fetching = len(sys.argv) > 1 and sys.argv[1] in FETCHING_COMMANDS
    if wants_gevent(sys.argv[1:]):
        from gevent import monkey

        monkey.patch_all()
    from crawler.commands import app
    from crawler.commands.app import leave

    try:
        app(prog_name="crawler")
    except SystemExit as end:
        # A fetching command ends everything it started before it returns, and leaves a large heap behind:
        # the interpreter's teardown of it, object by object, would take 0.2 s of CPU after a 2,000-page crawl.
        if fetching and (end.code is None or isinstance(end.code, int)):
            leave(end.code or 0)
        raise


if __name__ == "__main__":
    main()
