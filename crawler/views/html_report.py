"""`crawler report`: one self-contained HTML file about a page database, with charts drawn as inline SVG.

The file needs no network to be viewed: no scripts, fonts, stylesheets or images are loaded from anywhere.
Every figure comes from aggregating SQL (the database may hold millions of pages), mostly `storage`'s, and
every text taken from the database (URLs, titles, hosts, error kinds) is escaped, since the pages crawled
wrote it.
"""

from __future__ import annotations

import html
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from http import HTTPStatus
from typing import Any

import sqlite_utils

import storage
from crawler.views.text import size_range
from crawler.words import counted, human_bytes
from storage import Change, Stats, StorageError

ACCENT = "#2f62c9"
ERROR = "#c8553d"
MUTED = "#a3aab5"
TINT = "#8fa9e3"  # the accent, lighter: a second measure of the same rows
# Lines of the pages/s chart, one colour a run: the accent first, then hues that stay apart from it.
PALETTE = ("#2f62c9", "#e08a2c", "#2f9e6f", "#9a5cc6", "#d0506f", "#3aa3b8", "#8a8a2e", "#5b6472")
TONES = {"accent": ACCENT, "tint": TINT, "error": ERROR, "muted": MUTED}

TOP_HOSTS = 20
LARGEST_PAGES = 10
CHANGES_SHOWN = 20  # rows of each table of the changes section
MAX_POINTS = 120  # per line of the pages/s chart
SHORT_BUCKETS = (0.1, 0.2, 0.5)  # for runs too short to give MIN_POINTS one-second buckets
MIN_POINTS = 20
BUCKET_SECONDS = (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400)
KB = 1024
DASH = "\u2013"  # en dash, for ranges
MINUS = "\u2212"  # for a size that shrank


class ReportError(Exception):
    """The runs asked for with `run_ids` cannot be charted (an unknown id, or no runs recorded); worded for
    the user."""


# -- the figures ------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Bar:
    """One bar of a chart: its axis label, its value, the tooltip (the SVG <title>) and its colour."""

    label: str
    value: float
    tooltip: str
    tone: str = "accent"  # accent, tint, error or muted


@dataclass(frozen=True, slots=True)
class Series:
    """Pages written per time bucket, from a run's start: one line of the pages/s chart."""

    label: str
    counts: list[int]


def _run_label(run: dict[str, Any]) -> str:
    """`#3 asyncio`."""
    return f"#{run['id']} {run['backend']}"


def _chosen_runs(db: sqlite_utils.Database, run_ids: list[int] | None) -> list[dict[str, Any]] | None:
    """The rows of the runs to chart, oldest first: `run_ids`, or by default the latest run of each backend
    that has pages (as `crawler compare` chooses). None for a database written before runs were recorded."""
    if run_ids is None:
        if "runs" not in db.table_names():
            return None
        run_ids = storage.latest_run_ids(db)
    try:
        return storage.runs(db, sorted(set(run_ids)))
    except StorageError as exc:
        raise ReportError(str(exc)) from None


def _statuses(db: sqlite_utils.Database) -> list[Bar]:
    """HTTP statuses in order, then the kinds of error that left no response, most frequent first."""
    bars = []
    for status, count in db.execute(
        "SELECT status, count(*) FROM pages WHERE status IS NOT NULL GROUP BY status ORDER BY status"
    ):
        try:
            label = f"{status} {HTTPStatus(status).phrase}"
        except ValueError:
            label = str(status)
        tone = "error" if status >= 400 else "muted" if status >= 300 else "accent"
        bars.append(Bar(label, count, f"HTTP {label}: {counted(count, 'page')}", tone))
    for kind, count in db.execute(
        "SELECT coalesce(error_kind, 'unknown'), count(*) FROM pages WHERE status IS NULL "
        "GROUP BY 1 ORDER BY count(*) DESC, 1"
    ):
        bars.append(Bar(f"{kind} (no response)", count, f"{kind}, no response: {counted(count, 'page')}", "error"))
    return bars


def bucket_seconds(span: float) -> float:
    """The narrowest bucket of 1 s or more that keeps a line of `span` seconds within MAX_POINTS points; for a
    run too short to give MIN_POINTS such buckets, the widest of 0.1, 0.2 or 0.5 s that gives that many."""
    if span < MIN_POINTS:
        return next((seconds for seconds in reversed(SHORT_BUCKETS) if span / seconds >= MIN_POINTS), 0.1)
    for seconds in BUCKET_SECONDS:
        if span / seconds < MAX_POINTS:
            return seconds
    return math.ceil(span / (MAX_POINTS - 1))


def _run_rows(db: sqlite_utils.Database) -> str:
    """The table holding each run's own rows: `fetches`, a row per page each run fetched; in a database
    written before history was kept, `pages` (where a page counts for the last run that fetched it only)."""
    return "fetches" if "fetches" in db.table_names() else "pages"


def _timeline(db: sqlite_utils.Database, runs: list[dict[str, Any]] | None) -> tuple[list[Series], float]:
    """Pages written per bucket since each run's start (its `started_at`, or its first page if earlier), and
    the bucket width: every page each run fetched, including those a later run fetched again. With `runs`
    None (none recorded), one line for all pages since the first."""
    day = 86400.0
    source = "pages" if runs is None else _run_rows(db)
    lines: list[tuple[str, str, list[Any], str | None]] = (  # label, which pages, their parameters, start
        [("all pages", "1", [], None)]
        if runs is None
        else [(_run_label(run), "run_id = ?", [run["id"]], run["started_at"]) for run in runs]
    )
    starts: list[tuple[str, str, list[Any], float]] = []
    spans = []
    for label, where, params, started_at in lines:
        given, first, last = db.execute(
            f"SELECT julianday(?), min(julianday(fetched_at)), max(julianday(fetched_at)) FROM {source} WHERE {where}",
            [started_at, *params],
        ).fetchone()
        if first is not None:
            start = first if given is None else min(given, first)
            starts.append((label, where, params, start))
            spans.append((last - start) * day)
    if not starts:
        return [], 1.0
    width = bucket_seconds(max(spans))
    series = []
    for label, where, params, start in starts:
        counts = dict(
            db.execute(
                f"SELECT CAST(max(0.0, (julianday(fetched_at) - ?) * {day}) / ? AS INTEGER), count(*) FROM {source} "
                f"WHERE {where} AND julianday(fetched_at) IS NOT NULL GROUP BY 1",
                [start, width, *params],
            ).fetchall()
        )
        series.append(Series(label, [counts.get(index, 0) for index in range(max(counts) + 1)]))
    return series, width


# -- formatting -------------------------------------------------------------------------------------------


def esc(value: object) -> str:
    """Text made safe for HTML element content and quoted attributes."""
    return html.escape(str(value), quote=True)


def _number(value: float) -> str:
    """A value for a data- attribute, exact: 12 -> '12', 2.5 -> '2.5'."""
    return str(int(value)) if value == int(value) else repr(float(value))


def _trim(value: float) -> str:
    """12 -> '12', 2.5 -> '2.5', 1234.0 -> '1,234', 0.25 -> '0.25'."""
    if value == int(value):
        return f"{int(value):,}"
    text = f"{value:,.2f}" if abs(value) < 1 else f"{value:,.1f}"
    return text.rstrip("0").rstrip(".")


def _duration(seconds: float) -> str:
    """An axis tick of elapsed time: 0 s, 45 s, 2 min, 1.5 h."""
    if seconds < 60 or (seconds < 120 and seconds % 60):
        return f"{_trim(seconds)} s"
    if seconds < 7200:
        return f"{_trim(seconds / 60)} min"
    return f"{_trim(seconds / 3600)} h"


def _optional(value: float | None, fmt: Callable[[float], str]) -> str:
    return "—" if value is None else fmt(value)


def nice_ticks(maximum: float, integer: bool = False, target: int = 5) -> list[float]:
    """Round tick values from 0 to at least `maximum`, about `target` intervals apart."""
    maximum = max(maximum, 1.0 if integer else 1e-9)
    raw = maximum / target
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)
    if integer:
        step = max(1.0, math.ceil(step))
    count = math.ceil(maximum / step - 1e-9)
    return [round(index * step, 10) for index in range(count + 1)]


def byte_ticks(maximum: float) -> list[float]:
    """Ticks for a byte axis, round in the unit the maximum is best shown in (bytes, KB, MB or GB)."""
    unit = 1
    while maximum >= unit * KB and unit < KB**3:
        unit *= KB
    return [tick * unit for tick in nice_ticks(maximum / unit, integer=unit == 1)]


def _time_ticks(maximum: float) -> list[float]:
    step = next((s for s in (*SHORT_BUCKETS, *BUCKET_SECONDS) if maximum / s <= 8), None)
    if step is None:
        return nice_ticks(maximum)
    return [index * step for index in range(math.floor(maximum / step + 1e-9) + 1)]


def _text_width(text: str, size: float = 12) -> float:
    return len(text) * size * 0.58


def _clip(text: str, width: float, size: float = 12) -> str:
    chars = max(4, int(width / (size * 0.58)))
    return text if len(text) <= chars else text[: chars - 1] + "…"


# -- SVG charts ---------------------------------------------------------------------------------------------


def _svg_open(chart_id: str, width: float, height: float, title: str, desc: str) -> str:
    return (
        f'<svg id="{chart_id}" class="chart" width="{width:.0f}" height="{height:.0f}" '
        f'viewBox="0 0 {width:.0f} {height:.0f}" role="img" aria-labelledby="{chart_id}-t {chart_id}-d">'
        f'<title id="{chart_id}-t">{esc(title)}</title><desc id="{chart_id}-d">{esc(desc)}</desc>'
    )


def _rect(x: float, y: float, w: float, h: float, bar: Bar) -> str:
    return (
        f'<rect class="bar" x="{x:.1f}" y="{y:.1f}" width="{max(w, 0):.1f}" height="{max(h, 0):.1f}" '
        f'fill="{TONES[bar.tone]}" data-label="{esc(bar.label)}" data-value="{_number(bar.value)}">'
        f"<title>{esc(bar.tooltip)}</title></rect>"
    )


def column_chart(
    chart_id: str,
    title: str,
    desc: str,
    bars: Sequence[Bar],
    *,
    y_label: str,
    x_label: str,
    edges: Sequence[str] | None = None,
    width: float = 1040,
    height: float = 300,
    value_text: Callable[[float], str] | None = None,
) -> str:
    """Vertical bars with a count axis. `edges` (one more than the bars) label the boundaries between bars,
    as a histogram's axis does; otherwise each bar's label sits under it, split on spaces into lines."""
    lines = 1 if edges is not None else max(len(bar.label.split()) for bar in bars)
    left, right, top, bottom = 64.0, 16.0, 24.0, 34.0 + 15 * lines
    plot_w, plot_h = width - left - right, height - top - bottom
    ticks = nice_ticks(max(bar.value for bar in bars), integer=all(bar.value == int(bar.value) for bar in bars))
    y_max = ticks[-1]
    parts = [_svg_open(chart_id, width, height, title, desc)]
    for tick in ticks:
        y = top + plot_h - tick / y_max * plot_h
        parts.append(f'<line class="grid" x1="{left}" x2="{width - right}" y1="{y:.1f}" y2="{y:.1f}"/>')
        parts.append(f'<text class="tick" x="{left - 8}" y="{y + 4:.1f}" text-anchor="end">{esc(_trim(tick))}</text>')
    slot = plot_w / len(bars)
    gap = min(slot * 0.18, 24.0) if edges is not None else slot * 0.3
    bar_w = min(slot - gap, 90.0)
    for index, bar in enumerate(bars):
        x = left + index * slot + (slot - bar_w) / 2
        h = bar.value / y_max * plot_h
        parts.append(_rect(x, top + plot_h - h, bar_w, h, bar))
        if value_text is not None:
            parts.append(
                f'<text class="value" x="{x + bar_w / 2:.1f}" y="{top + plot_h - h - 6:.1f}" '
                f'text-anchor="middle">{esc(value_text(bar.value))}</text>'
            )
        if edges is None:
            for line, word in enumerate(bar.label.split()):
                parts.append(
                    f'<text class="tick{" strong" if line == 0 else ""}" x="{x + bar_w / 2:.1f}" '
                    f'y="{top + plot_h + 16 + 14 * line:.1f}" text-anchor="middle">{esc(_clip(word, slot))}</text>'
                )
    if edges is not None:
        base = top + plot_h
        every = max(1, math.ceil(max(_text_width(edge, 11) for edge in edges) / (slot - 4)))
        for index, edge in enumerate(edges):
            if index % every == 0 or index == len(edges) - 1:
                x = left + index * slot
                parts.append(
                    f'<line class="axis" x1="{x:.1f}" x2="{x:.1f}" y1="{base:.1f}" y2="{base + 4:.1f}"/>'
                    f'<text class="tick" x="{x:.1f}" y="{top + plot_h + 17:.1f}" text-anchor="middle">'
                    f"{esc(edge)}</text>"
                )
    parts.append(
        f'<line class="axis" x1="{left}" x2="{width - right}" y1="{top + plot_h:.1f}" y2="{top + plot_h:.1f}"/>'
        f'<text class="label" x="{left + plot_w / 2:.1f}" y="{height - 6:.1f}" text-anchor="middle">'
        f"{esc(x_label)}</text>"
        f'<text class="label" transform="translate(16 {top + plot_h / 2:.1f}) rotate(-90)" text-anchor="middle">'
        f"{esc(y_label)}</text></svg>"
    )
    return "".join(parts)


@dataclass(frozen=True, slots=True)
class Panel:
    """One column of horizontal bars in `bar_rows`: its axis label, bars, ticks and how values read."""

    axis_label: str
    bars: Sequence[Bar]
    ticks: list[float]
    tick_text: Callable[[float], str]
    value_text: Callable[[float], str]


def bar_rows(chart_id: str, title: str, desc: str, labels: Sequence[str], panels: Sequence[Panel]) -> str:
    """Horizontal bars, a row per label, with one or more panels side by side (pages, bytes...)."""
    width, row_h, bottom, gap = 1040.0, 24.0, 40.0, 32.0
    top = 30.0 if len(panels) > 1 else 8.0  # room for the panels' headings
    label_w = min(280.0, max(_text_width(label) for label in labels) + 16)
    value_w = 64.0
    panel_w = (width - label_w - gap * (len(panels) - 1) - 8) / len(panels)
    plot_h = row_h * len(labels)
    height = top + plot_h + bottom
    parts = [_svg_open(chart_id, width, height, title, desc)]
    for row, label in enumerate(labels):
        y = top + row * row_h
        if row % 2:
            parts.append(f'<rect class="stripe" x="0" y="{y:.1f}" width="{width}" height="{row_h}"/>')
        parts.append(
            f'<text class="tick" x="{label_w - 10:.1f}" y="{y + row_h / 2 + 4:.1f}" text-anchor="end">'
            f"{esc(_clip(label, label_w - 14))}</text>"
        )
    for index, panel in enumerate(panels):
        x0 = label_w + index * (panel_w + gap)
        plot_w = panel_w - value_w
        x_max = panel.ticks[-1]
        if len(panels) > 1:
            parts.append(f'<text class="label strong" x="{x0:.1f}" y="{top - 12:.1f}">{esc(panel.axis_label)}</text>')
        parts.append(f'<line class="axis" x1="{x0:.1f}" x2="{x0:.1f}" y1="{top:.1f}" y2="{top + plot_h:.1f}"/>')
        for tick in panel.ticks:
            x = x0 + tick / x_max * plot_w
            parts.append(
                f'<line class="grid" x1="{x:.1f}" x2="{x:.1f}" y1="{top:.1f}" y2="{top + plot_h:.1f}"/>'
                f'<text class="tick" x="{x:.1f}" y="{top + plot_h + 16:.1f}" text-anchor="middle">'
                f"{esc(panel.tick_text(tick))}</text>"
            )
        for row, bar in enumerate(panel.bars):
            y = top + row * row_h + 4
            w = bar.value / x_max * plot_w
            parts.append(_rect(x0, y, w, row_h - 8, bar))
            parts.append(
                f'<text class="value" x="{x0 + w + 6:.1f}" y="{y + (row_h - 8) / 2 + 4:.1f}">'
                f"{esc(panel.value_text(bar.value))}</text>"
            )
        parts.append(
            f'<text class="label" x="{x0 + plot_w / 2:.1f}" y="{height - 6:.1f}" text-anchor="middle">'
            f"{esc(panel.axis_label)}</text>"
        )
    parts.append("</svg>")
    return "".join(parts)


def line_chart(chart_id: str, title: str, desc: str, series: Sequence[Series], width_s: float) -> str:
    """Pages per second over time, a line per series, a point per bucket of `width_s` seconds (drawn at the
    bucket's middle); each point's <title> gives its bucket and count."""
    width, height, left, right, top, bottom = 1040.0, 300.0, 64.0, 20.0, 16.0, 48.0
    plot_w, plot_h = width - left - right, height - top - bottom
    x_max = max(len(line.counts) for line in series) * width_s
    rates = [count / width_s for line in series for count in line.counts]
    y_ticks = nice_ticks(max(rates))
    y_max = y_ticks[-1]
    parts = [_svg_open(chart_id, width, height, title, desc)]
    for tick in y_ticks:
        y = top + plot_h - tick / y_max * plot_h
        parts.append(
            f'<line class="grid" x1="{left}" x2="{width - right}" y1="{y:.1f}" y2="{y:.1f}"/>'
            f'<text class="tick" x="{left - 8}" y="{y + 4:.1f}" text-anchor="end">{esc(_trim(tick))}</text>'
        )
    for tick in _time_ticks(x_max):
        x = left + tick / x_max * plot_w
        parts.append(
            f'<line class="axis" x1="{x:.1f}" x2="{x:.1f}" y1="{top + plot_h:.1f}" y2="{top + plot_h + 4:.1f}"/>'
            f'<text class="tick" x="{x:.1f}" y="{top + plot_h + 17:.1f}" text-anchor="middle">'
            f"{esc(_duration(tick))}</text>"
        )
    for index, line in enumerate(series):
        colour = PALETTE[index % len(PALETTE)]
        points = [
            (left + (bucket + 0.5) * width_s / x_max * plot_w, top + plot_h - count / width_s / y_max * plot_h)
            for bucket, count in enumerate(line.counts)
        ]
        path = " ".join(f"{x:.1f},{y:.1f}" for x, y in points)
        parts.append(f'<g class="series" data-label="{esc(line.label)}">')
        parts.append(f'<polyline class="line" points="{path}" stroke="{colour}"/>')
        radius = 3.0 if len(points) <= 60 else 2.0
        for bucket, ((x, y), count) in enumerate(zip(points, line.counts, strict=True)):
            start = bucket * width_s
            tooltip = (
                f"{line.label}, {_duration(start)}{DASH}{_duration(start + width_s)}: "
                f"{counted(count, 'page')} ({_trim(round(count / width_s, 1))} pages/s)"
            )
            parts.append(
                f'<circle class="point" cx="{x:.1f}" cy="{y:.1f}" r="{radius}" fill="{colour}" '
                f'data-value="{count}"><title>{esc(tooltip)}</title></circle>'
            )
        parts.append("</g>")
    parts.append(
        f'<line class="axis" x1="{left}" x2="{width - right}" y1="{top + plot_h:.1f}" y2="{top + plot_h:.1f}"/>'
        f'<text class="label" x="{left + plot_w / 2:.1f}" y="{height - 6:.1f}" text-anchor="middle">'
        f"time since the run started ({_trim(width_s)} s buckets)</text>"
        f'<text class="label" transform="translate(16 {top + plot_h / 2:.1f}) rotate(-90)" text-anchor="middle">'
        "pages/s</text></svg>"
    )
    return "".join(parts)


# -- the page -----------------------------------------------------------------------------------------------

CSS = """
:root { --accent: __ACCENT__; --ink: #1f2430; --soft: #5d6675; --line: #e3e6eb; --bg: #f6f7f9; }
* { box-sizing: border-box; }
body { margin: 0; background: var(--bg); color: var(--ink);
  font: 14px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif; }
main { max-width: 1120px; margin: 0 auto; padding: 28px 24px 48px; }
header h1 { font-size: 24px; margin: 0 0 4px; letter-spacing: -0.01em; }
header .meta { color: var(--soft); margin: 0 0 18px; }
code, .mono { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, "Liberation Mono", monospace;
  font-size: 12.5px; }
.tiles { display: grid; grid-template-columns: repeat(auto-fit, minmax(150px, 1fr)); gap: 12px; margin-bottom: 20px; }
.tile { background: #fff; border: 1px solid var(--line); border-radius: 8px; padding: 10px 14px; }
.tile .n { font-size: 22px; font-weight: 600; font-variant-numeric: tabular-nums; }
.tile .n small { font-size: 14px; font-weight: 400; color: var(--soft); }
.tile .k { color: var(--soft); font-size: 12px; text-transform: uppercase; letter-spacing: 0.04em; }
section { background: #fff; border: 1px solid var(--line); border-radius: 8px; padding: 16px 20px 14px;
  margin-bottom: 20px; }
section h2 { font-size: 16px; margin: 0 0 2px; }
section .note { color: var(--soft); margin: 0 0 10px; font-size: 13px; }
.empty { color: var(--soft); font-style: italic; padding: 18px 0; margin: 0; }
svg.chart { display: block; max-width: 100%; height: auto; overflow: visible; }
svg text { font-family: inherit; font-size: 12px; fill: var(--ink); }
svg .tick { fill: var(--soft); font-size: 11px; font-variant-numeric: tabular-nums; }
svg .tick.strong { fill: var(--ink); font-weight: 600; }
svg .value { font-size: 11px; fill: var(--ink); font-variant-numeric: tabular-nums; }
svg .label { fill: var(--soft); font-size: 12px; }
svg .label.strong { fill: var(--ink); font-weight: 600; }
svg .grid { stroke: #eef0f3; }
svg .axis { stroke: #b8bec8; }
svg .stripe { fill: #fafbfc; }
svg .bar:hover { opacity: 0.8; }
svg .line { fill: none; stroke-width: 2; stroke-linejoin: round; }
svg .point:hover { r: 5; }
.legend { display: flex; flex-wrap: wrap; gap: 4px 18px; margin: 0 0 6px; padding: 0; list-style: none;
  font-size: 13px; }
.legend .sub { color: var(--soft); margin-left: 2px; }
.legend i { display: inline-block; width: 14px; height: 3px; border-radius: 2px; vertical-align: middle;
  margin-right: 6px; }
.compare { display: flex; flex-wrap: wrap; gap: 20px; align-items: flex-start; }
.compare svg { flex: 0 0 auto; }
.compare .table-wrap { flex: 1 1 560px; overflow-x: auto; }
#runs-table { font-size: 13px; }
#runs-table td:first-child { min-width: 12em; }
#runs-table td:first-child strong { white-space: nowrap; }
#runs-table th { vertical-align: bottom; }
table { border-collapse: collapse; width: 100%; font-variant-numeric: tabular-nums; }
th, td { text-align: left; padding: 5px 7px; border-bottom: 1px solid var(--line); vertical-align: baseline; }
th { font-size: 12px; color: var(--soft); font-weight: 600; }
td.num, th.num { text-align: right; }
td.num { white-space: nowrap; }
td .sub { color: var(--soft); font-size: 12px; }
table.pages { table-layout: fixed; }
table.pages td.url { overflow: hidden; text-overflow: ellipsis; white-space: nowrap; }
section h3 { font-size: 14px; margin: 18px 0 4px; }
#changes-counts { width: auto; margin-bottom: 4px; }
#changes-counts td, #changes-counts th { padding-right: 22px; }
#changes-counts td { font-size: 18px; font-weight: 600; }
footer { color: var(--soft); font-size: 12px; text-align: center; }
""".replace("__ACCENT__", ACCENT)


def _section(section_id: str, heading: str, note: str, body: str) -> str:
    return (
        f'<section id="{section_id}" aria-labelledby="{section_id}-h"><h2 id="{section_id}-h">{esc(heading)}</h2>'
        f'<p class="note">{note}</p>{body}</section>'
    )


def _empty(message: str) -> str:
    return f'<p class="empty">{esc(message)}</p>'


def _tile(name: str, figure: str, note: str, exact: str) -> str:
    tooltip = f' title="{esc(exact)}"' if exact else ""
    small = f"<small>{esc(note)}</small>" if note else ""
    return (
        f'<div class="tile" id="total-{name}"><div class="k">{esc(name)}</div>'
        f'<div class="n"{tooltip}>{esc(figure)}{small}</div></div>'
    )


def _header(db: sqlite_utils.Database, db_path: str, totals: Stats, runs_known: int | None, generated: datetime) -> str:
    share = f" ({totals.errors / totals.pages:.1%})" if totals.pages else ""
    tiles = [  # name, figure, a smaller note after it, the exact figure as a tooltip
        ("pages", f"{totals.pages:,}", "", ""),
        ("errors", f"{totals.errors:,}", share, ""),
        ("bytes", human_bytes(totals.total_bytes), "", f"{totals.total_bytes:,} bytes"),
        ("hosts", f"{totals.hosts:,}", "", ""),
        ("runs", "—", " not recorded", "") if runs_known is None else ("runs", f"{runs_known:,}", "", ""),
    ]
    first, last = db.execute("SELECT min(fetched_at), max(fetched_at) FROM pages").fetchone()
    span = f" · pages fetched {esc(_when(first))} to {esc(_when(last))}" if first else ""
    return (
        f'<header><h1>Crawl report</h1><p class="meta">Database <code>{esc(db_path)}</code>{span}'
        f" · generated {esc(generated.strftime('%Y-%m-%d %H:%M:%S UTC'))}</p>"
        f'<div class="tiles">{"".join(_tile(*tile) for tile in tiles)}</div></header>'
    )


def _utc(moment: datetime) -> datetime:
    """`moment` in UTC; a naive one is taken to be UTC already, as the database's stamps are."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _when(stamp: str) -> str:
    try:
        return _utc(datetime.fromisoformat(stamp)).strftime("%Y-%m-%d %H:%M:%S UTC")
    except ValueError:
        return stamp


def _sizes_section(totals: Stats) -> str:
    note = "Body sizes of the pages that got a response, after decoding; each bucket twice as wide as the last."
    if not totals.histogram:
        return _section("sizes", "Page sizes", note, _empty("No page got a response yet: there are no sizes."))
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
        value_text=lambda value: _trim(value) if value else "",
    )
    return _section("sizes", "Page sizes", note, chart)


def _hosts_section(totals: Stats) -> str:
    note = f"The {TOP_HOSTS} hosts with the most pages; the rest are summed as “other”."
    if not totals.by_host:
        return _section("hosts", "Pages and bytes per host", note, _empty("No pages yet."))
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
    chart = bar_rows(
        "chart-hosts",
        "Pages and bytes per host",
        f"{len(pages)} rows of {totals.hosts:,} hosts: pages, then bytes",
        [bar.label for bar in pages],
        [
            Panel("pages", pages, nice_ticks(max(bar.value for bar in pages), integer=True), _trim, _trim),
            Panel(
                "bytes",
                sizes,
                byte_ticks(max(bar.value for bar in sizes)),
                lambda value: human_bytes(value, short=True) if value else "0",
                human_bytes,
            ),
        ],
    )
    return _section("hosts", "Pages and bytes per host", note, chart)


def _status_section(bars: list[Bar], pages: int) -> str:
    note = "HTTP statuses of the responses, then the kinds of error that left no response."
    if not bars:
        return _section("statuses", "Status breakdown", note, _empty("No pages yet."))

    def share(value: float) -> str:
        percent = value / pages
        return f"{_trim(value)} ({'<1%' if 0 < percent < 0.005 else f'{percent:.0%}'})"

    chart = bar_rows(
        "chart-status",
        "Status breakdown",
        f"{len(bars)} statuses and error kinds",
        [bar.label for bar in bars],
        [Panel("pages", bars, nice_ticks(max(bar.value for bar in bars), integer=True), _trim, share)],
    )
    return _section("statuses", "Status breakdown", note, chart)


def _timeline_section(db: sqlite_utils.Database, runs: list[dict[str, Any]] | None) -> str:
    series, width_s = _timeline(db, runs)
    if runs is None:
        note = "This database records no runs (an older crawler wrote it): one line for all its pages."
    else:
        note = (
            "Pages written per second since each run started, a line per run; a line's last point may cover "
            "only part of its bucket."
        )
    if not series:
        return _section("timeline", "Pages per second over the run", note, _empty("No pages with a fetch time yet."))
    legend = "".join(
        f'<li><i style="background:{PALETTE[index % len(PALETTE)]}"></i>{esc(line.label)} '
        f'<span class="sub">{sum(line.counts):,} pages</span></li>'
        for index, line in enumerate(series)
    )
    chart = line_chart(
        "chart-timeline",
        "Pages per second over the run",
        f"{counted(len(series), 'line')}, {_trim(width_s)}-second buckets",
        series,
        width_s,
    )
    return _section("timeline", "Pages per second over the run", note, f'<ul class="legend">{legend}</ul>{chart}')


def _compare_section(runs: list[dict[str, Any]] | None, chosen: bool) -> str:
    heading = "Backend comparison"
    note = (
        "The runs asked for." if chosen else "The latest run of each backend."
    ) + " Pages/s is pages written over the run's elapsed time; CPU and memory cover the crawler's processes."
    if runs is None:
        return _section(
            "compare",
            heading,
            note,
            _empty("This database has no runs table (an older crawler wrote it): there are no runs to compare."),
        )
    if not runs:
        return _section("compare", heading, note, _empty("No run has written pages yet."))
    bars = []
    for run in runs:
        label, rate = _run_label(run), run["pages_per_second"]
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
        cpu_ms_per_page = (
            run["cpu_seconds"] * 1000 / run["pages"] if run["cpu_seconds"] is not None and run["pages"] else None
        )
        cells = [
            _optional(run["pages"], _trim),
            _optional(run["pages_per_second"], lambda v: f"{v:,.1f}"),
            _optional(run["cpu_seconds"], lambda v: f"{v:,.2f}"),
            _optional(cpu_ms_per_page, lambda v: f"{v:,.2f}"),
            _optional(run["peak_rss_mb"], lambda v: f"{v:,.0f} MB"),
            _optional(run["latency_p50_ms"], lambda v: f"{v:,.0f} ms"),
            _optional(run["latency_p95_ms"], lambda v: f"{v:,.0f} ms"),
            _optional(run["errors"], _trim),
        ]
        rows.append(
            f'<tr><td><strong>{esc(_run_label(run))}</strong><div class="sub">{detail}</div></td>'
            + "".join(f'<td class="num">{esc(cell)}</td>' for cell in cells)
            + "</tr>"
        )
    heads = ["pages", "pages/s", "CPU\u00a0s", "CPU ms/page", "peak\u00a0RSS", "latency p50", "latency p95", "errors"]
    table = (
        '<div class="table-wrap"><table id="runs-table"><thead><tr><th>run</th>'
        + "".join(f'<th class="num">{head}</th>' for head in heads)
        + f"</tr></thead><tbody>{''.join(rows)}</tbody></table></div>"
    )
    return _section("compare", heading, note, f'<div class="compare">{chart}{table}</div>')


def _largest_section(db: sqlite_utils.Database) -> str:
    note = f"The {LARGEST_PAGES} largest bodies, as <code>crawler top</code> lists them."
    pages = storage.top(db, LARGEST_PAGES)
    if not pages:
        return _section("largest", "Largest pages", note, _empty("No pages with a size yet."))
    rows = "".join(
        f'<tr><td class="url mono" title="{esc(page["url"])}">{esc(page["url"])}</td>'
        f"<td>{esc(_clip(page['title'] or '', 1200))}</td>"
        f'<td class="num">{esc(human_bytes(page["size"]))}</td>'
        f'<td class="num">{esc(page["status"] if page["status"] is not None else "—")}</td></tr>'
        for page in pages
    )
    table = (
        '<table class="pages"><colgroup><col style="width:52%"><col><col style="width:90px"><col style="width:70px">'
        '</colgroup><thead><tr><th>URL</th><th>title</th><th class="num">size</th><th class="num">status</th></tr>'
        f"</thead><tbody>{rows}</tbody></table>"
    )
    return _section("largest", "Largest pages", note, table)


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


def _changes_section(db: sqlite_utils.Database) -> str:
    """What changed between the last two passes over the site (`crawler changes`): how many pages of each
    kind of change, then the largest content changes, the status changes, the new pages and the gone ones.
    With one pass only (or no history), a line saying what would fill it."""
    heading = "Changes"
    note = "What changed between the last two passes over the site, as <code>crawler changes</code> lists it."
    refresh = "after a refresh (<code>crawler crawl --refresh</code>), this section shows what changed."
    if "fetches" not in db.table_names():
        why = "This database was written before the crawler kept a history of pages"
        return _section("changes", heading, note, f'<p class="empty">{why}: {refresh}</p>')
    try:
        run_a, run_b = storage.last_two_passes(db)
    except StorageError:
        return _section("changes", heading, note, f'<p class="empty">One pass over the site so far: {refresh}</p>')
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

    def resized(change: Change) -> str:
        return (
            f"{_size_cell(change.size_a)}{_size_cell(change.size_b)}"
            f'<td class="num" title="{esc(f"{change.delta:+,} bytes")}">{esc(_signed_bytes(change.delta))}</td>'
        )

    tables = [
        _changes_table(
            "changes-resized",
            "Largest content changes",
            found.resized,
            ["was", "now", "change"],
            resized,
        ),
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
    return _section("changes", heading, note, summary + "".join(tables))


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
    totals = storage.stats(db, hosts=TOP_HOSTS)
    runs = _chosen_runs(db, list(run_ids) if run_ids else None)
    runs_known = None if runs is None else db.execute("SELECT count(*) FROM runs").fetchone()[0]
    body = "".join(
        [
            _header(db, db_path, totals, runs_known, _utc(generated_at or datetime.now(UTC))),
            _sizes_section(totals),
            _hosts_section(totals),
            _status_section(_statuses(db), totals.pages),
            _timeline_section(db, runs),
            _compare_section(runs, chosen=bool(run_ids)),
            _changes_section(db),
            _largest_section(db),
        ]
    )
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>Crawl report: {esc(db_path)}</title><style>{CSS}</style></head>"
        f"<body><main>{body}<footer>Made by <code>crawler report</code>. "
        "Hover a bar or point for its exact figures.</footer></main></body></html>\n"
    )
