"""`crawler pull`: write a shared crawl's results (PostgreSQL) into a SQLite crawl database for the read commands.

The pull itself is crawler.cluster.pull, imported (with psycopg) only when the command runs.
"""

from __future__ import annotations

import shlex
import sqlite3
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from crawler.commands.app import DbOption, app, fail
from crawler.commands.cluster import FrontierOption, cluster_modules
from crawler.engine.config import DEFAULT_DB
from crawler.words import counted

if TYPE_CHECKING:
    from crawler.cluster.pull import PullResult


def pulled_text(result: PullResult, db: str) -> str:
    """Two lines: what the pull wrote and what the file holds, then where the shared crawl stands."""
    holds = f"{counted(result.total_pages, 'page')} from {counted(result.total_runs, 'run')}"
    if result.pages or result.sitemaps:
        sitemaps = f" and {counted(result.sitemaps, 'sitemap')}" if result.sitemaps else ""
        what = counted(result.pages, "page") + sitemaps
        first = f"Pulled {what} from {counted(result.workers, 'worker')} into {db}: it holds {holds}."
    else:
        first = f"Nothing new to pull: {db} holds {holds}."
    if result.running:
        since = f", {counted(result.waiting, 'page')} fetched since this pull" if result.waiting else ""
        second = (f"The shared crawl goes on: {counted(result.running, 'worker')} running, "
                  f"{result.queued:,} queued{since}. Pull again for what they fetch next.")  # fmt: skip
    elif result.unfinished:
        second = (f"The shared crawl is unfinished ({result.queued:,} queued) and no worker is running; to go on: "
                  f"crawler worker --frontier {shlex.quote(result.frontier)}")  # fmt: skip
    elif result.waiting:
        second = f"The shared crawl is finished; {counted(result.waiting, 'page')} came in since this pull: pull again."
    else:
        second = "The shared crawl is finished: nothing new next time."
    return f"{first}\n{second}"


def next_commands(result: PullResult, db: str) -> list[str]:
    """The commands worth running on the file now, each ready to paste."""
    quoted = shlex.quote(db)
    commands = [f"crawler stats --db {quoted}", f"crawler runs --db {quoted}"]
    if len(result.pass_runs) > 1:  # the workers of the crawl side by side
        commands.append(f"crawler compare --db {quoted} {' '.join(map(str, result.pass_runs))}")
    return commands


@app.command("pull")
def pull_command(
    frontier: FrontierOption,
    db: DbOption = Path(DEFAULT_DB),
    quiet: Annotated[
        bool, typer.Option("--quiet", "-q", help="Only what was pulled: no progress line, no commands to try.")
    ] = False,
) -> None:
    """Write a shared crawl's results into a SQLite crawl database, for stats, top, runs, compare, report...

    Each worker becomes a run of the database, and each crawl of the frontier a pass. Pull as often as you
    like, while workers run or after: each pull adds what was fetched since the last one.
    """
    cluster_modules()  # psycopg, or a one-line error with the command that installs it
    from crawler.cluster.pull import pull
    from crawler.cluster.schema import ClusterError

    def tell(text: str) -> None:
        if not quiet:
            typer.echo(text, err=True)

    try:
        result = pull(frontier, db, tell)
    except ClusterError as exc:
        fail(str(exc))
    except sqlite3.Error as exc:
        fail(f"cannot write the database {db}: {exc}", 1)
    typer.echo(pulled_text(result, str(db)))
    if not quiet:
        typer.echo("Explore it:")
        for command in next_commands(result, str(db)):
            typer.echo(f"  {command}")
