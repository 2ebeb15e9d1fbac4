"""Charts drawn as inline SVG, with nothing to load: columns, rows of horizontal bars in panels, and lines over
elapsed time; their axes, ticks and colours; and the formatting of the figures they show.

A chart is given its bars, panels or lines ready made, tooltips included: it knows nothing of crawls, and runs
no SQL. Every text it writes is escaped, since the figures' labels may come from the pages crawled.
"""

from __future__ import annotations

import html
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

ACCENT = "#2f62c9"
ERROR = "#c8553d"
MUTED = "#a3aab5"
TINT = "#8fa9e3"  # the accent, lighter: a second measure of the same rows
# Lines of a line chart, one colour each: the accent first, then hues that stay apart from it.
PALETTE = ("#2f62c9", "#e08a2c", "#2f9e6f", "#9a5cc6", "#d0506f", "#3aa3b8", "#8a8a2e", "#5b6472")
TONES = {"accent": ACCENT, "tint": TINT, "error": ERROR, "muted": MUTED}

MAX_POINTS = 120  # per line of a line chart
SHORT_BUCKETS = (0.1, 0.2, 0.5)  # for spans too short to give MIN_POINTS one-second buckets
MIN_POINTS = 20
BUCKET_SECONDS = (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400)
KB = 1024
DASH = "\u2013"  # en dash, for ranges


@dataclass(frozen=True, slots=True)
class Bar:
    """One bar of a chart: its axis label, its value, the tooltip (the SVG <title>) and its colour."""

    label: str
    value: float
    tooltip: str
    tone: str = "accent"  # accent, tint, error or muted


@dataclass(frozen=True, slots=True)
class Panel:
    """One column of horizontal bars in `bar_rows`: its axis label, bars, ticks and how values read."""

    axis_label: str
    bars: Sequence[Bar]
    ticks: list[float]
    tick_text: Callable[[float], str]
    value_text: Callable[[float], str]


@dataclass(frozen=True, slots=True)
class Point:
    """One point of a line: its height on the chart's axis, the count it stands for (its data-value) and its
    tooltip."""

    value: float
    count: float
    tooltip: str


@dataclass(frozen=True, slots=True)
class Line:
    """One line of a line chart: a point per time bucket, from the start."""

    label: str
    points: list[Point]


# -- formatting -------------------------------------------------------------------------------------------


def esc(value: object) -> str:
    """Text made safe for HTML element content and quoted attributes."""
    return html.escape(str(value), quote=True)


def number(value: float) -> str:
    """A value for a data- attribute, exact: 12 -> '12', 2.5 -> '2.5'."""
    return str(int(value)) if value == int(value) else repr(float(value))


def trim(value: float) -> str:
    """12 -> '12', 2.5 -> '2.5', 1234.0 -> '1,234', 0.25 -> '0.25'."""
    if value == int(value):
        return f"{int(value):,}"
    text = f"{value:,.2f}" if abs(value) < 1 else f"{value:,.1f}"
    return text.rstrip("0").rstrip(".")


def duration(seconds: float) -> str:
    """An axis tick of elapsed time: 0 s, 45 s, 2 min, 1.5 h."""
    if seconds < 60 or (seconds < 120 and seconds % 60):
        return f"{trim(seconds)} s"
    if seconds < 7200:
        return f"{trim(seconds / 60)} min"
    return f"{trim(seconds / 3600)} h"


def clip(text: str, width: float, size: float = 12) -> str:
    """`text` cut short with an ellipsis to fit `width` pixels at `size`."""
    chars = max(4, int(width / (size * 0.58)))
    return text if len(text) <= chars else text[: chars - 1] + "…"


def _text_width(text: str, size: float = 12) -> float:
    return len(text) * size * 0.58


# -- axes -------------------------------------------------------------------------------------------------


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


def bucket_seconds(span: float) -> float:
    """The narrowest bucket of 1 s or more that keeps a line of `span` seconds within MAX_POINTS points; for a
    span too short to give MIN_POINTS such buckets, the widest of 0.1, 0.2 or 0.5 s that gives that many."""
    if span < MIN_POINTS:
        return next((seconds for seconds in reversed(SHORT_BUCKETS) if span / seconds >= MIN_POINTS), 0.1)
    for seconds in BUCKET_SECONDS:
        if span / seconds < MAX_POINTS:
            return seconds
    return math.ceil(span / (MAX_POINTS - 1))


# -- SVG --------------------------------------------------------------------------------------------------


def _svg_open(chart_id: str, width: float, height: float, title: str, desc: str) -> str:
    return (
        f'<svg id="{chart_id}" class="chart" width="{width:.0f}" height="{height:.0f}" '
        f'viewBox="0 0 {width:.0f} {height:.0f}" role="img" aria-labelledby="{chart_id}-t {chart_id}-d">'
        f'<title id="{chart_id}-t">{esc(title)}</title><desc id="{chart_id}-d">{esc(desc)}</desc>'
    )


def _rect(x: float, y: float, w: float, h: float, bar: Bar) -> str:
    return (
        f'<rect class="bar" x="{x:.1f}" y="{y:.1f}" width="{max(w, 0):.1f}" height="{max(h, 0):.1f}" '
        f'fill="{TONES[bar.tone]}" data-label="{esc(bar.label)}" data-value="{number(bar.value)}">'
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
        parts.append(f'<text class="tick" x="{left - 8}" y="{y + 4:.1f}" text-anchor="end">{esc(trim(tick))}</text>')
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
                    f'y="{top + plot_h + 16 + 14 * line:.1f}" text-anchor="middle">{esc(clip(word, slot))}</text>'
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
    parts.append(_closing_axes(left, width - right, top, plot_w, plot_h, height, x_label, y_label))
    return "".join(parts)


def _closing_axes(
    left: float, right: float, top: float, plot_w: float, plot_h: float, height: float, x_label: str, y_label: str
) -> str:
    """A plot's x axis (from `left` to `right`, under a plot `plot_w` x `plot_h` from `top`), its two axis labels,
    and the end of the SVG."""
    base = top + plot_h
    return (
        f'<line class="axis" x1="{left}" x2="{right}" y1="{base:.1f}" y2="{base:.1f}"/>'
        f'<text class="label" x="{left + plot_w / 2:.1f}" y="{height - 6:.1f}" text-anchor="middle">'
        f"{esc(x_label)}</text>"
        f'<text class="label" transform="translate(16 {top + plot_h / 2:.1f}) rotate(-90)" text-anchor="middle">'
        f"{esc(y_label)}</text></svg>"
    )


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
            f"{esc(clip(label, label_w - 14))}</text>"
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


def line_chart(
    chart_id: str, title: str, desc: str, lines: Sequence[Line], width_s: float, *, x_label: str, y_label: str
) -> str:
    """A line per series over elapsed time, a point per bucket of `width_s` seconds (drawn at the bucket's
    middle), each with its tooltip as its <title>."""
    width, height, left, right, top, bottom = 1040.0, 300.0, 64.0, 20.0, 16.0, 48.0
    plot_w, plot_h = width - left - right, height - top - bottom
    x_max = max(len(line.points) for line in lines) * width_s
    y_ticks = nice_ticks(max(point.value for line in lines for point in line.points))
    y_max = y_ticks[-1]
    parts = [_svg_open(chart_id, width, height, title, desc)]
    for tick in y_ticks:
        y = top + plot_h - tick / y_max * plot_h
        parts.append(
            f'<line class="grid" x1="{left}" x2="{width - right}" y1="{y:.1f}" y2="{y:.1f}"/>'
            f'<text class="tick" x="{left - 8}" y="{y + 4:.1f}" text-anchor="end">{esc(trim(tick))}</text>'
        )
    for tick in _time_ticks(x_max):
        x = left + tick / x_max * plot_w
        parts.append(
            f'<line class="axis" x1="{x:.1f}" x2="{x:.1f}" y1="{top + plot_h:.1f}" y2="{top + plot_h + 4:.1f}"/>'
            f'<text class="tick" x="{x:.1f}" y="{top + plot_h + 17:.1f}" text-anchor="middle">'
            f"{esc(duration(tick))}</text>"
        )
    for index, line in enumerate(lines):
        colour = PALETTE[index % len(PALETTE)]
        xys = [
            (left + (bucket + 0.5) * width_s / x_max * plot_w, top + plot_h - point.value / y_max * plot_h)
            for bucket, point in enumerate(line.points)
        ]
        path = " ".join(f"{x:.1f},{y:.1f}" for x, y in xys)
        parts.append(f'<g class="series" data-label="{esc(line.label)}">')
        parts.append(f'<polyline class="line" points="{path}" stroke="{colour}"/>')
        radius = 3.0 if len(xys) <= 60 else 2.0
        for (x, y), point in zip(xys, line.points, strict=True):
            parts.append(
                f'<circle class="point" cx="{x:.1f}" cy="{y:.1f}" r="{radius}" fill="{colour}" '
                f'data-value="{number(point.count)}"><title>{esc(point.tooltip)}</title></circle>'
            )
        parts.append("</g>")
    parts.append(_closing_axes(left, width - right, top, plot_w, plot_h, height, x_label, y_label))
    return "".join(parts)


def legend(entries: Sequence[tuple[str, str]]) -> str:
    """The key to a line chart's lines, in their order and colours: each line's label and a note after it."""
    items = "".join(
        f'<li><i style="background:{PALETTE[index % len(PALETTE)]}"></i>{esc(label)} '
        f'<span class="sub">{esc(note)}</span></li>'
        for index, (label, note) in enumerate(entries)
    )
    return f'<ul class="legend">{items}</ul>'
