"""The report's "Changes" section: what changed between the last two passes over the site, as `crawler changes`
lists it. Which passes those are is `storage.last_two_passes`'s answer, and what changed `storage.changes`'s."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import sqlite_utils

import storage
from crawler.views.html.charts import esc
from crawler.views.html.sections import section
from crawler.words import human_bytes
from storage import Change, StorageError

CHANGES_SHOWN = 20  # rows of each table of the section
MINUS = "\u2212"  # for a size that shrank


def _signed_bytes(delta: int) -> str:
    """+1.5 KB, \u22121.5 KB, \u00b10 B (the same size, another body)."""
    return ("\u00b1" if delta == 0 else "+" if delta > 0 else MINUS) + human_bytes(abs(delta))


def _size_cell(size: int | None) -> str:
    if size is None:
        return '<td class="num">—</td>'
    return f'<td class="num" title="{esc(f"{size:,} bytes")}">{esc(human_bytes(size))}</td>'


def _status_cell(status: int | None) -> str:
    return f'<td class="num">{esc("no response" if status is None else status)}</td>'


def _url_cell(url: str) -> str:
    return f'<td class="url mono" title="{esc(url)}">{esc(url)}</td>'


def _changes_table(
    table_id: str, heading: str, changes: list[Change], heads: Sequence[str], cells: Callable[[Change], str]
) -> str:
    """One kind of change: a heading with its count, then a row per change (the first CHANGES_SHOWN)."""
    if not changes:
        return ""
    shown = changes[:CHANGES_SHOWN]
    more = (
        f" (the first {len(shown)}; <code>crawler changes --csv</code> lists all)" if len(changes) > len(shown) else ""
    )
    columns = "".join('<col style="width:110px">' for _ in heads)
    rows = "".join(f"<tr>{_url_cell(change.url)}{cells(change)}</tr>" for change in shown)
    return (
        f'<h3 id="{table_id}-h">{esc(heading)}: {len(changes):,}{more}</h3>'
        f'<table class="pages" id="{table_id}"><colgroup><col>{columns}</colgroup><thead><tr><th>URL</th>'
        + "".join(f'<th class="num">{esc(head)}</th>' for head in heads)
        + f"</tr></thead><tbody>{rows}</tbody></table>"
    )


def _resized(change: Change) -> str:
    return (
        f"{_size_cell(change.size_a)}{_size_cell(change.size_b)}"
        f'<td class="num" title="{esc(f"{change.delta:+,} bytes")}">{esc(_signed_bytes(change.delta))}</td>'
    )


def changes(db: sqlite_utils.Database) -> str:
    """How many pages of each kind of change, then the largest content changes, the status changes, the new
    pages and the gone ones. With fewer than two complete passes (or no history), a line saying what would fill
    it."""
    heading = "Changes"
    note = "What changed between the last two passes over the site, as <code>crawler changes</code> lists it."
    refresh = "after a refresh (<code>crawler crawl --refresh</code>), this section shows what changed."
    try:
        run_a, run_b = storage.last_two_passes(db)
    except StorageError:
        if not storage.history_kept(db):
            why = "This database was written before the crawler kept a history of pages"
            return section("changes", heading, note, f'<p class="empty">{why}: {refresh}</p>')
        return section("changes", heading, note, f'<p class="empty">One pass over the site so far: {refresh}</p>')
    found = storage.changes(db, run_a, run_b)
    note = (
        f"The site as the last pass over it saw it (up to run #{run_b}) against the pass before (up to run "
        f"#{run_a}), as <code>crawler changes</code> lists it."
    )
    counts = [
        ("new", len(found.new)),
        ("gone", len(found.gone)),
        ("another status", len(found.status)),
        ("changed", len(found.resized)),
        ("unchanged", found.unchanged),
    ]
    summary = (
        '<table id="changes-counts"><thead><tr>'
        + "".join(f'<th class="num">{esc(name)}</th>' for name, _ in counts)
        + "</tr></thead><tbody><tr>"
        + "".join(f'<td class="num">{count:,}</td>' for _, count in counts)
        + "</tr></tbody></table>"
    )
    tables = [
        _changes_table("changes-resized", "Largest content changes", found.resized, ["was", "now", "change"], _resized),
        _changes_table(
            "changes-status",
            "Another status",
            found.status,
            ["was", "now"],
            lambda change: _status_cell(change.status_a) + _status_cell(change.status_b),
        ),
        _changes_table(
            "changes-new",
            "New",
            found.new,
            ["status", "size"],
            lambda change: _status_cell(change.status_b) + _size_cell(change.size_b),
        ),
        _changes_table(
            "changes-gone",
            "Gone (not reached any more)",
            found.gone,
            ["status", "size"],
            lambda change: _status_cell(change.status_a) + _size_cell(change.size_a),
        ),
    ]
    return section("changes", heading, note, summary + "".join(tables))
