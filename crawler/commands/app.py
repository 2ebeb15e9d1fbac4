"""The typer application every command registers on: one-line usage errors (exit 2), --version and -h,
and the options and helpers the commands share."""

from __future__ import annotations

import atexit
import importlib.metadata
import os
import sys
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, NoReturn

import sqlite_utils
import typer
import typer.core

from crawler import __version__
from crawler.bench.peers import PEERS
from crawler.engine.config import DEFAULT_BACKEND, DEFAULT_PARSER
from crawler.site.generate import PROFILES
from fetchers import BACKENDS
from parsers import PARSERS
from storage import StorageError, open_readonly

EXIT_USAGE = 2
EXIT_INTERRUPTED = 130  # 128 + SIGINT, as shells report Ctrl-C
EXIT_TERMINATED = 143  # 128 + SIGTERM

# How `crawler --help` lists the commands: crawling first, then reading the database, then writing it out.
HELP_ORDER = ("crawl", "worker", "status", "pull", "demo", "bench", "site", "stats", "top", "runs", "compare",
              "changes", "broken", "query", "schema", "export", "report", "serve")  # fmt: skip

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


# The metavar of an option that names none, by the type typer would show: a person reads "N", not "<int range>"
# (a repeatable option or a choice shows its values: "asyncio|thread|process|gevent").
METAVARS = {"int": "N", "int range": "N", "float": "NUMBER", "float range": "NUMBER", "path": "FILE", "str": "TEXT"}


def _readable_help(command: Any, ctx: Any) -> None:
    """Help that names values as a person reads them. typer shows a Python type beside every parameter
    (`<bool>` after a flag, `<list[str]>` after `SEED`, `<int range> [x>=1]`): a flag gets nothing, an argument
    its metavar alone, and an option its metavar (`N`, `SECONDS`, `FILE`) without the range, which the option
    still enforces and its error states."""
    for param in command.get_params(ctx):
        if getattr(param, "is_flag", False) or param.param_type_name == "argument":
            setattr(param, "display_type_rich", lambda ctx: None)  # noqa: B010 (typer's hook, no public option)
        if param.param_type_name == "argument" and (
            (param.required and param.nargs == 1) or (param.metavar or "").startswith("[")
        ):
            # The usage line as Unix tools write it: `crawler query SQL` where typer writes `{SQL}`, and an
            # optional argument's own metavar (`[RUN_A [RUN_B]]`) where typer wraps it again (`[[RUN_A ...]]...`).
            usage = param.metavar or param.name.upper()
            setattr(param, "_usage_display_name", lambda usage=usage: usage)  # noqa: B010
        elif param.metavar is None:
            shown = str(param.display_type(ctx)).strip("<>")
            shown = shown.removeprefix("list[").removesuffix("]")  # a repeatable option: its values alone
            param.metavar = METAVARS.get(shown, shown)  # choices as they are: asyncio|thread|process|gevent
        setattr(param, "_get_number_range_help_str", lambda: None)  # noqa: B010


class _OneLineErrors(typer.core.TyperGroup):
    """The command group: usage errors (its own and its commands') printed as one line, and readable help."""

    def make_context(self, info_name: str | None, args: list[str], parent: Any = None, **extra: Any) -> Any:
        """As typer's, a usage error in the group's own options or command name in one line."""
        try:
            return super().make_context(info_name, args, parent, **extra)
        except _UsageError as exc:
            _usage_error(exc)

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        """As typer's, the command's help made readable."""
        command = super().get_command(ctx, cmd_name)
        if command is not None:
            _readable_help(command, ctx)
        return command

    def format_help(self, ctx: Any, formatter: Any) -> None:
        """As typer's, with readable help for the group's own options."""
        _readable_help(self, ctx)
        super().format_help(ctx, formatter)

    def list_commands(self, ctx: Any) -> list[str]:
        """The commands in the order of `HELP_ORDER` (registration follows the modules' import order)."""
        names = super().list_commands(ctx)
        return sorted(names, key=lambda name: HELP_ORDER.index(name) if name in HELP_ORDER else len(HELP_ORDER))

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
    add_completion=False,
    rich_markup_mode="markdown",
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


# Choices offered on the command line, taken from the registries that define them (typer wants an Enum).
Backend = StrEnum("Backend", {name: name for name in BACKENDS})  # type: ignore[misc]
ParserName = StrEnum("ParserName", {name: name for name in PARSERS})  # type: ignore[misc]
SiteProfile = StrEnum("SiteProfile", {name: name for name in PROFILES})  # type: ignore[misc]
Peer = StrEnum("Peer", {name: name for name in PEERS})  # type: ignore[misc]
DEFAULT_BACKEND_CHOICE = Backend(DEFAULT_BACKEND)
DEFAULT_PARSER_CHOICE = ParserName(DEFAULT_PARSER)

BackendOption = Annotated[
    Backend,
    typer.Option(
        "--backend",
        "-b",
        metavar="NAME",
        help="Concurrency model: asyncio (aiohttp), thread, process or gevent (requests).",
    ),
]
ParserOption = Annotated[
    ParserName,
    typer.Option(
        "--parser",
        metavar="NAME",
        help="HTML parser: lxml (libxml2 directly) or bs4 (beautifulsoup4: the same, slower).",
    ),
]
DbOption = Annotated[Path, typer.Option("--db", help="The SQLite page database.")]


def fail(message: str, code: int = EXIT_USAGE) -> NoReturn:
    """Print `Error: message` on stderr and exit with `code` (2: the user's input was wrong)."""
    typer.echo(f"Error: {message}", err=True)
    raise typer.Exit(code)


def interrupted(hint: str, stopped_by: str | None, forced: bool) -> NoReturn:
    """End a stopped crawl or worker: `hint` (what to run to go on) on stderr, exit 143 after a SIGTERM, else 130.

    After a second stop request (`forced`), fetches abandoned in threads may still be running, which the
    interpreter would wait for at exit: everything is written, so the process leaves at once (`leave`)."""
    typer.echo(hint, err=True)
    code = EXIT_TERMINATED if stopped_by == "SIGTERM" else EXIT_INTERRUPTED
    if forced:
        leave(code)
    raise typer.Exit(code)


def leave(code: int) -> NoReturn:
    """End the process with `code` now, once everything is written: it runs the exit handlers a normal exit runs,
    first among them multiprocessing's, which unlink the process backend's semaphores (skipped, its resource
    tracker warns of "leaked semaphore objects"), and flushes standard output and error. What it skips: waiting
    for threads (abandoned fetches, after a forced stop) and the interpreter's teardown of every object, module by
    module, which took 0.2 s of CPU after a 2,000-page crawl."""
    atexit._run_exitfuncs()  # what os._exit skips: atexit's handlers (not the threads' join, which is threading's)
    for stream in (sys.stdout, sys.stderr):  # os._exit flushes nothing: the summary, and what those handlers wrote
        if stream is not None:  # None when the command was started with the stream closed (`>&-`)
            stream.flush()
    os._exit(code)


def open_db(db: Path) -> sqlite_utils.Database:
    """The page database at `db`, read-only; a missing or unreadable file is a one-line error (exit 2)."""
    try:
        return open_readonly(db)
    except StorageError as exc:
        fail(str(exc))


HostFilter = Annotated[str | None, typer.Option("--host", help="Only pages from this host.")]
RunFilter = Annotated[int | None, typer.Option("--run", help="Only pages fetched by this run (see `crawler runs`).")]
JsonFlag = Annotated[bool, typer.Option("--json", help="Output JSON.")]
