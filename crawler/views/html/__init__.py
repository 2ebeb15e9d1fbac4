"""`crawler report`: one self-contained HTML file about a page database, with charts drawn as inline SVG.

The file needs no network to be viewed: no scripts, fonts, stylesheets or images are loaded from anywhere.
Every figure comes from aggregating SQL (the database may hold millions of pages), all of it `storage`'s, and
every text taken from the database (URLs, titles, hosts, error kinds) is escaped, since the pages crawled
wrote it.

The package owns the report: `charts` draws SVG charts (no SQL, no knowledge of crawls), `sections` and
`changes` build the page's sections from what storage answers, `style` holds its stylesheet. It may import
`crawler.engine` (the rates of `crawler.engine.metrics`), `crawler.words`, `crawler.views.text` and storage;
never the commands, the demo site or the bench. Callers use `render_report` and `ReportError`.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

import sqlite_utils

import storage
from crawler.views.html import sections
from crawler.views.html.changes import changes
from crawler.views.html.charts import esc
from crawler.views.html.style import CSS
from storage import StorageError

__all__ = ["ReportError", "render_report"]


class ReportError(Exception):
    """The runs asked for with `run_ids` cannot be charted (an unknown id, or no runs recorded); worded for
    the user."""


def render_report(
    db: sqlite_utils.Database,
    db_path: str,
    generated_at: datetime | None = None,
    *,
    run_ids: Sequence[int] | None = None,
) -> str:
    """The report on the page database `db` as one self-contained HTML document (no script, nothing to load).

    Only SELECTs run, so a database opened with `storage.open_readonly` will do; every figure is aggregated in
    SQL. `db_path` is shown in the header; `generated_at` defaults to now (a naive one is taken as UTC). The
    pages/s and backend charts show the runs `run_ids`, or by default the latest run of each backend that has
    pages, as `crawler compare` does; each run's line counts every page it fetched. The changes section
    compares the last two passes over the site, when there are two. Raises `ReportError` when a run asked
    for is not in the database.
    """
    totals = storage.stats(db, hosts=sections.TOP_HOSTS)
    try:
        runs = storage.chosen_runs(db, list(run_ids) if run_ids else None)
    except StorageError as exc:
        raise ReportError(str(exc)) from None
    body = "".join(
        [
            sections.header(db, db_path, totals, sections.utc(generated_at or datetime.now(UTC))),
            sections.sizes(totals),
            sections.hosts(totals),
            sections.statuses(db, totals.pages),
            sections.timeline(db, runs),
            sections.compare(runs, chosen=bool(run_ids)),
            changes(db),
            sections.largest(db),
        ]
    )
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>Crawl report: {esc(db_path)}</title><style>{CSS}</style></head>"
        f"<body><main>{body}<footer>Made by <code>crawler report</code>. "
        "Hover a bar or point for its exact figures.</footer></main></body></html>\n"
    )
