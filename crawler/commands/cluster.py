"""`crawler worker`, and `crawler crawl --frontier`: one crawl shared by many workers through PostgreSQL.

psycopg is imported only here, lazily, once a frontier URL is given: without --frontier nothing changes.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated, Any

import typer

from crawler.commands.app import (
    DEFAULT_BACKEND_CHOICE,
    DEFAULT_PARSER_CHOICE,
    BackendOption,
    ParserOption,
    app,
    fail,
    interrupted,
)
from crawler.engine.config import DEFAULT_CONCURRENCY
from crawler.views.progress import ProgressDisplay
from crawler.views.text import summary_text
from crawler.words import install_hint

if TYPE_CHECKING:
    from crawler.cluster.worker import WorkerSettings

DEFAULT_LEASE_SECONDS = 30.0  # crawler.cluster.worker's, without importing psycopg to show the help

FrontierOption = Annotated[
    str,
    typer.Option(
        "--frontier",
        metavar="URL",
        envvar="CRAWLER_FRONTIER",
        help="The shared crawl's PostgreSQL database: postgresql://USER@HOST/DB (or $CRAWLER_FRONTIER).",
    ),
]
LeaseOption = Annotated[
    float,
    typer.Option(
        metavar="SECONDS",
        min=1,
        help="How long this worker's leases outlive its last heartbeat: if it dies, its URLs go back to the "
        "queue after this long.",
    ),
]


def cluster_modules() -> Any:
    """crawler.cluster.worker, or a one-line error naming the install command when psycopg is missing."""
    try:
        from crawler.cluster import worker
    except ImportError as exc:
        fail(f"a shared frontier needs psycopg ({exc.name} is missing): {install_hint('distributed')}")
    return worker


def work(url: str, own: WorkerSettings, quiet: bool, before: Callable[[Callable[[str], None]], None] | None = None
         ) -> None:  # fmt: skip
    """Run one worker on the crawl at `url` and print its summary; exit as `crawl` does."""
    worker = cluster_modules()
    from crawler.cluster.schema import ClusterError, FrontierLost, redacted

    try:
        with ProgressDisplay.for_terminal(quiet) as progress:
            if before is not None:
                before(progress.message)
            run = worker.run_worker(url, own, progress, progress.message)
    except FrontierLost as exc:
        fail(str(exc), 1)
    except ClusterError as exc:
        fail(str(exc))
    summary = run.summary
    typer.echo(summary_text(summary, len(run.crawl.seeds), redacted(url)))
    if run.rejected:
        typer.echo(f"  returned {run.rejected:,} leased when it stopped, for other workers")
    if summary.interrupted:
        hint = f"Interrupted: its leases went back to the queue. To continue: crawler worker --frontier {redacted(url)}"
        interrupted(hint, summary.stopped_by, summary.forced)
    typer.echo(f"Results: crawler pull --frontier {redacted(url)} --db crawl.db")


def crawl_shared(url: str, seeds: list[str], settings: dict[str, Any], restart: bool, lease_seconds: float,
                 quiet: bool) -> None:  # fmt: skip
    """`crawl --frontier`: record the crawl in PostgreSQL (or join the unfinished one there), then work on it."""
    worker = cluster_modules()
    from crawler.cluster.schema import ClusterError

    own = worker.WorkerSettings(settings["backend"], settings["parser"], settings["concurrency"], lease_seconds)

    def create(tell: Callable[[str], None]) -> None:
        try:
            worker.start_crawl(url, seeds, settings, restart, tell)
        except ClusterError as exc:
            fail(str(exc))

    work(url, own, quiet, create)


@app.command("worker")
def worker_command(
    frontier: FrontierOption,
    backend: BackendOption = DEFAULT_BACKEND_CHOICE,
    parser: ParserOption = DEFAULT_PARSER_CHOICE,
    concurrency: Annotated[int, typer.Option(min=1, help="Requests in flight at once.")] = DEFAULT_CONCURRENCY,
    lease_seconds: LeaseOption = DEFAULT_LEASE_SECONDS,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress display.")] = False,
) -> None:
    """Work on a shared crawl (started with `crawler crawl SEEDS --frontier URL`) until it is finished.

    Everything that defines the crawl (seeds, scope, depth, limits, per-host limits, delay, robots, user agent)
    comes from its record; a worker brings its backend, parser, concurrency and lease time. Start as many as
    you like, on any machine that reaches the database.
    """
    worker = cluster_modules()
    work(frontier, worker.WorkerSettings(backend.value, parser.value, concurrency, lease_seconds), quiet)
