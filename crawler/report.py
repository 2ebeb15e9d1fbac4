"""Text the CLI prints: the closing summary of a crawl, `stats`, and tables."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from typing import Any

from tabulate import tabulate

from crawler.engine import CrawlSummary
from storage import Stats


def human_bytes(count: float) -> str:
    """1536 -> '1.5 KB' (powers of 1024, as file managers show)."""
    for unit in ("B", "KB", "MB", "GB"):
        if abs(count) < 1024 or unit == "GB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1024
    raise AssertionError("unreachable")


def table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """An aligned plain-text table."""
    return tabulate(list(rows), headers=list(headers), tablefmt="simple", disable_numparse=True, missingval="")


def summary_text(summary: CrawlSummary, seeds: int, db_path: str) -> str:
    """The one-screen summary printed when a crawl ends."""
    kinds = ", ".join(f"{kind} {count}" for kind, count in summary.errors_by_kind.most_common())
    state = "Interrupted after" if summary.interrupted else "Crawled"
    lines = [
        f"{state} {summary.pages} pages from {seeds} seed{'s' if seeds != 1 else ''} "
        f"with the {summary.backend} backend in {summary.elapsed:.2f} s ({summary.pages_per_second:.1f} pages/s)",
        f"  ok       {summary.pages - summary.errors}",
        f"  errors   {summary.errors}" + (f"  ({kinds})" if kinds else ""),
        f"  retries  {summary.retries}",
        f"  bytes    {human_bytes(summary.bytes)} ({summary.bytes:,})",
        f"  database {db_path}",
    ]
    if summary.resumed_from:
        lines.append(f"  resumed  after {summary.resumed_from:,} pages done in earlier runs")
    if summary.queued:
        lines.append(f"  queued   {summary.queued:,} URLs not crawled yet")
    return "\n".join(lines)


def summary_dict(summary: CrawlSummary) -> dict[str, object]:
    """The summary as JSON-ready data."""
    data = dataclasses.asdict(summary)
    data["errors_by_kind"] = dict(summary.errors_by_kind)  # asdict would rebuild the Counter from pairs
    data["pages_per_second"] = summary.pages_per_second
    return data


def stats_text(stats: Stats) -> str:
    """What `crawler stats` prints: totals, then pages by status and by host."""
    share = f" ({stats.errors / stats.pages:.1%})" if stats.pages else ""
    totals = [
        ("pages", f"{stats.pages:,}"),
        ("errors", f"{stats.errors:,}{share}"),
        ("total size", f"{human_bytes(stats.total_bytes)} ({stats.total_bytes:,} bytes)"),
        ("mean size", human_bytes(stats.mean_size)),
        ("median size", human_bytes(stats.median_size)),
        ("max size", human_bytes(stats.max_size)),
    ]
    parts = [
        tabulate(totals, tablefmt="plain", disable_numparse=True),
        table(["status", "pages"], [(status, f"{count:,}") for status, count in stats.by_status]),
        table(
            ["host", "pages", "bytes", "errors"],
            [(host, f"{pages:,}", human_bytes(size), f"{errors:,}") for host, pages, size, errors in stats.by_host],
        ),
    ]
    return "\n\n".join(parts)
