"""`crawler status --frontier URL`: a shared crawl's queue, hosts, workers and errors, on one screen or as JSON.

psycopg is imported only when the command runs (`crawler --help` never imports it).
"""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import Annotated

import typer

from crawler.commands.app import app, fail
from crawler.commands.cluster import FrontierOption
from crawler.views.cluster import cluster_text
from crawler.words import install_hint


@app.command("status")
def status_command(
    frontier: FrontierOption,
    as_json: Annotated[bool, typer.Option("--json", help="Output one JSON object (the same figures).")] = False,
) -> None:
    """What a shared crawl is doing: its queue, hosts, workers and errors.

    Each live worker with its pages/s (over the last minute and overall), leases and heartbeat; the workers
    that ended, by status, and those lost (their heartbeat stopped) by name. Ages and rates are on the
    database's clock. It only reads: run it as often as you like.
    """
    try:
        from crawler.cluster.schema import ClusterError
        from crawler.cluster.status import read_status
    except ImportError as exc:
        fail(f"a shared frontier needs psycopg ({exc.name} is missing): {install_hint('distributed')}")
    try:
        status = read_status(frontier)
    except ClusterError as exc:
        fail(str(exc))
    data = asdict(status)
    typer.echo(json.dumps(data, indent=2) if as_json else cluster_text(data))
