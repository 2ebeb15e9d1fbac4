"""The sections of the report, each a <section> of HTML: the header and its totals, page sizes, pages and bytes
per host, statuses, pages per second over each run, and the backends compared (the changes between passes are
in `changes`).

Each section is given what storage found and draws it with `charts`; the rates come from
`crawler.engine.metrics`.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import sqlite_utils

import storage
from crawler.engine.metrics import ms_per, per_second, share
from crawler.views.html.charts import (
    DASH,
    Bar,
    Line,
    Panel,
    Point,
    bar_rows,
    bucket_seconds,
    byte_ticks,
    clip,
    column_chart,
    duration,
    esc,
    legend,
    line_chart,
    nice_ticks,
    trim,
)
from crawler.views.text import size_range
from crawler.words import counted, human_bytes, status_text
from storage import Stats

TOP_HOSTS = 20
LARGEST_PAGES = 10


def section(section_id: str, heading: str, note: str, body: str) -> str:
    """A section of the page: its heading, a note under it (HTML), then its body (HTML)."""
    return (
        f'<section id="{section_id}" aria-labelledby="{section_id}-h"><h2 id="{section_id}-h">{esc(heading)}</h2>'
        f'<p class="note">{note}</p>{body}</section>'
    )


def empty(message: str) -> str:
    """What a section shows when it has nothing to draw."""
    return f'<p class="empty">{esc(message)}</p>'


def run_label(run: dict[str, Any]) -> str:
    """`#3 asyncio`."""
    return f"#{run['id']} {run['backend']}"


def _optional(value: float | None, fmt: Callable[[float], str]) -> str:
    return "—" if value is None else fmt(value)


# -- the header -------------------------------------------------------------------------------------------


def _tile(name: str, figure: str, note: str, exact: str) -> str:
    tooltip = f' title="{esc(exact)}"' if exact else ""
    small = f"<small>{esc(note)}</small>" if note else ""
    return (
        f'<div class="tile" id="total-{name}"><div class="k">{esc(name)}</div>'
        f'<div class="n"{tooltip}>{esc(figure)}{small}</div></div>'
    )


def utc(moment: datetime) -> datetime:
    """`moment` in UTC; a naive one is taken to be UTC already, as the database's stamps are."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _when(stamp: str) -> str:
    try:
        return utc(datetime.fromisoformat(stamp)).strftime("%Y-%m-%d %H:%M:%S UTC")
    except ValueError:
        return stamp


def header(db: sqlite_utils.Database, db_path: str, totals: Stats, generated: datetime) -> str:
    """The title, the database and when its pages were fetched, and a tile per total."""
    errors = share(totals.errors, totals.pages)
    runs_known = storage.run_count(db)
    tiles = [  # name, figure, a smaller note after it, the exact figure as a tooltip
        ("pages", f"{totals.pages:,}", "", ""),
        ("errors", f"{totals.errors:,}", "" if errors is None else f" ({errors:.1%})", ""),
        ("bytes", human_bytes(totals.total_bytes), "", f"{totals.total_bytes:,} bytes"),
        ("hosts", f"{totals.hosts:,}", "", ""),
        ("runs", "—", " not recorded", "") if runs_known is None else ("runs", f"{runs_known:,}", "", ""),
    ]
    first, last = storage.fetch_span(db)
    span = f" · pages fetched {esc(_when(first))} to {esc(_when(last))}" if first and last else ""
    return (
        f'<header><h1>Crawl report</h1><p class="meta">Database <code>{esc(db_path)}</code>{span}'
        f" · generated {esc(generated.strftime('%Y-%m-%d %H:%M:%S UTC'))}</p>"
        f'<div class="tiles">{"".join(_tile(*tile) for tile in tiles)}</div></header>'
    )


# -- the charts -------------------------------------------------------------------------------------------


def sizes(totals: Stats) -> str:
    """The page-size histogram."""
    note = "Body sizes of the pages that got a response, after decoding; each bucket twice as wide as the last."
    if not totals.histogram:
        return section("sizes", "Page sizes", note, empty("No page got a response yet: there are no sizes."))
    bars = []
    for low, high, count in totals.histogram:
        label = size_range(low, high).replace("-", DASH)
        bars.append(Bar(label, count, f"{label}: {counted(count, 'page')}"))
    chart = column_chart(
        "chart-sizes",
        "Page size distribution",
        f"{len(bars)} size buckets from under 1 KB to {bars[-1].label}",
        bars,
        y_label="pages",
        x_label="body size (log scale)",
        edges=["0", *(human_bytes(high, short=True) for _, high, _ in totals.histogram)],
        value_text=lambda value: trim(value) if value else "",
    )
    return section("sizes", "Page sizes", note, chart)


def hosts(totals: Stats) -> str:
    """Pages and bytes of the hosts with the most pages, the rest summed as one row; pages only when no page
    brought a byte back (every one failed), as there is no byte to draw an axis for."""
    note = f"The {TOP_HOSTS} hosts with the most pages; the rest are summed as “other”."
    if not totals.by_host:
        return section("hosts", "Pages and bytes per host", note, empty("No pages yet."))
    pages: list[Bar] = []
    sizes: list[Bar] = []

    def add(host: str, count: int, size: int, errors: int, other: bool = False) -> None:
        tooltip = f"{host}: {counted(count, 'page')}, {counted(errors, 'error')}"
        pages.append(Bar(host, count, tooltip, "muted" if other else "accent"))
        sizes.append(Bar(host, size, f"{host}: {human_bytes(size)} ({size:,} bytes)", "muted" if other else "tint"))

    for row in totals.by_host:
        add(row.host, row.pages, row.bytes, row.errors)
    rest = totals.hosts - len(totals.by_host)
    if rest > 0:
        add(
            f"other ({counted(rest, 'host')})",
            totals.pages - sum(row.pages for row in totals.by_host),
            totals.total_bytes - sum(row.bytes for row in totals.by_host),
            totals.errors - sum(row.errors for row in totals.by_host),
            other=True,
        )
    panels = [Panel("pages", pages, nice_ticks(max(bar.value for bar in pages), integer=True), trim, trim)]
    if totals.total_bytes > 0:
        panels.append(
            Panel(
                "bytes",
                sizes,
                byte_ticks(max(bar.value for bar in sizes)),
                lambda value: human_bytes(value, short=True) if value else "0",
                human_bytes,
            )
        )
        title, measures = "Pages and bytes per host", "pages, then bytes"
    else:
        note += " No page brought a byte back, so there are pages only."
        title, measures = "Pages per host", "pages"
    chart = bar_rows(
        "chart-hosts",
        title,
        f"{len(pages)} rows of {totals.hosts:,} hosts: {measures}",
        [bar.label for bar in pages],
        panels,
    )
    return section("hosts", "Pages and bytes per host", note, chart)


def statuses(db: sqlite_utils.Database, pages: int) -> str:
    """HTTP statuses in order, then the kinds of error that left no response, most frequent first."""
    note = "HTTP statuses of the responses, then the kinds of error that left no response."
    bars = []
    for status, count in storage.status_counts(db):
        label = status_text(status)
        tone = "error" if status >= 400 else "muted" if status >= 300 else "accent"
        bars.append(Bar(label, count, f"HTTP {label}: {counted(count, 'page')}", tone))
    for kind, count in storage.failure_counts(db):
        bars.append(Bar(f"{kind} (no response)", count, f"{kind}, no response: {counted(count, 'page')}", "error"))
    if not bars:
        return section("statuses", "Status breakdown", note, empty("No pages yet."))

    def with_share(value: float) -> str:
        part = share(value, pages) or 0.0
        return f"{trim(value)} ({'<1%' if 0 < part < 0.005 else f'{part:.0%}'})"

    chart = bar_rows(
        "chart-status",
        "Status breakdown",
        f"{len(bars)} statuses and error kinds",
        [bar.label for bar in bars],
        [Panel("pages", bars, nice_ticks(max(bar.value for bar in bars), integer=True), trim, with_share)],
    )
    return section("statuses", "Status breakdown", note, chart)


def _line(label: str, counts: list[int], width_s: float) -> Line:
    """A run's line of the pages/s chart from its pages per bucket of `width_s` seconds."""
    points = []
    for bucket, count in enumerate(counts):
        rate = per_second(count, width_s)
        start = bucket * width_s
        tooltip = (
            f"{label}, {duration(start)}{DASH}{duration(start + width_s)}: "
            f"{counted(count, 'page')} ({trim(round(rate, 1))} pages/s)"
        )
        points.append(Point(rate, count, tooltip))
    return Line(label, points)


def timeline(db: sqlite_utils.Database, runs: list[dict[str, Any]] | None) -> str:
    """Pages per second since each run's start (its `started_at`, or its first page if earlier), a line per run
    of `runs` that fetched a page: every page it fetched, including those a later run fetched again. With `runs`
    None (none recorded), one line for all pages since the first."""
    heading = "Pages per second over the run"
    if runs is None:
        note = "This database records no runs (an older crawler wrote it): one line for all its pages."
    else:
        note = (
            "Pages written per second since each run started, a line per run; a line's last point may cover "
            "only part of its bucket."
        )
    spans = storage.run_spans(db, None if runs is None else [run["id"] for run in runs])
    if not spans:
        return section("timeline", heading, note, empty("No pages with a fetch time yet."))
    labels = {run["id"]: run_label(run) for run in runs or []}
    width_s = bucket_seconds(max(span.seconds for span in spans))
    lines = [
        _line(labels.get(span.run_id, "all pages"), storage.bucket_counts(db, span, width_s), width_s) for span in spans
    ]
    key = legend([(line.label, f"{sum(int(point.count) for point in line.points):,} pages") for line in lines])
    chart = line_chart(
        "chart-timeline",
        heading,
        f"{counted(len(lines), 'line')}, {trim(width_s)}-second buckets",
        lines,
        width_s,
        x_label=f"time since the run started ({trim(width_s)} s buckets)",
        y_label="pages/s",
    )
    return section("timeline", heading, note, key + chart)


def compare(runs: list[dict[str, Any]] | None, chosen: bool) -> str:
    """The runs' pages per second as bars, and a table of each run's figures."""
    heading = "Backend comparison"
    note = (
        "The runs asked for." if chosen else "The latest run of each backend."
    ) + " Pages/s is pages written over the run's elapsed time; CPU and memory cover the crawler's processes."
    if runs is None:
        return section(
            "compare",
            heading,
            note,
            empty("This database has no runs table (an older crawler wrote it): there are no runs to compare."),
        )
    if not runs:
        return section("compare", heading, note, empty("No run has written pages yet."))
    bars = []
    for run in runs:
        label, rate = run_label(run), run["pages_per_second"]
        bars.append(
            Bar(label, rate or 0.0, f"{label}: " + ("pages/s not recorded" if rate is None else f"{rate:,.1f} pages/s"))
        )
    chart = column_chart(
        "chart-backends",
        "Pages per second by run",
        f"{counted(len(runs), 'run')}",
        bars,
        y_label="pages/s",
        x_label="run",
        width=max(260.0, min(1040.0, 100.0 + 60.0 * len(bars))),  # many runs: the table wraps below
        height=280,
        value_text=lambda value: f"{value:,.1f}",
    )
    rows = []
    for run in runs:
        concurrency = f"concurrency\u00a0{run['concurrency']}" if run["concurrency"] is not None else None
        detail = " · ".join(esc(part) for part in (run["parser"], concurrency, run["status"]) if part)
        cells = [
            _optional(run["pages"], trim),
            _optional(run["pages_per_second"], lambda v: f"{v:,.1f}"),
            _optional(run["cpu_seconds"], lambda v: f"{v:,.2f}"),
            _optional(ms_per(run["cpu_seconds"], run["pages"] or 0), lambda v: f"{v:,.2f}"),
            _optional(run["peak_rss_mb"], lambda v: f"{v:,.0f} MB"),
            _optional(run["latency_p50_ms"], lambda v: f"{v:,.0f} ms"),
            _optional(run["latency_p95_ms"], lambda v: f"{v:,.0f} ms"),
            _optional(run["errors"], trim),
        ]
        rows.append(
            f'<tr><td><strong>{esc(run_label(run))}</strong><div class="sub">{detail}</div></td>'
            + "".join(f'<td class="num">{esc(cell)}</td>' for cell in cells)
            + "</tr>"
        )
    heads = ["pages", "pages/s", "CPU\u00a0s", "CPU ms/page", "peak\u00a0RSS", "latency p50", "latency p95", "errors"]
    table = (
        '<div class="table-wrap"><table id="runs-table"><thead><tr><th>run</th>'
        + "".join(f'<th class="num">{head}</th>' for head in heads)
        + f"</tr></thead><tbody>{''.join(rows)}</tbody></table></div>"
    )
    return section("compare", heading, note, f'<div class="compare">{chart}{table}</div>')


def largest(db: sqlite_utils.Database) -> str:
    """The largest bodies, as `crawler top` lists them."""
    note = f"The {LARGEST_PAGES} largest bodies, as <code>crawler top</code> lists them."
    pages = storage.top(db, LARGEST_PAGES)
    if not pages:
        return section("largest", "Largest pages", note, empty("No pages with a size yet."))
    rows = "".join(
        f'<tr><td class="url mono" title="{esc(page["url"])}">{esc(page["url"])}</td>'
        f"<td>{esc(clip(page['title'] or '', 1200))}</td>"
        f'<td class="num">{esc(human_bytes(page["size"]))}</td>'
        f'<td class="num">{esc(page["status"] if page["status"] is not None else "—")}</td></tr>'
        for page in pages
    )
    table = (
        '<table class="pages"><colgroup><col style="width:52%"><col><col style="width:90px"><col style="width:70px">'
        '</colgroup><thead><tr><th>URL</th><th>title</th><th class="num">size</th><th class="num">status</th></tr>'
        f"</thead><tbody>{rows}</tbody></table>"
    )
    return section("largest", "Largest pages", note, table)
