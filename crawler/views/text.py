"""Text the CLI prints: the closing summary of a crawl, `stats`, and tables."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Iterable, Sequence
from itertools import groupby
from typing import Any

from tabulate import tabulate

from crawler.engine.summary import CrawlSummary
from crawler.words import counted, human_bytes
from storage import Change, Changes, Stats


def table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """An aligned plain-text table."""
    return tabulate(list(rows), headers=list(headers), tablefmt="simple", disable_numparse=True, missingval="")


# Errors that mean no server was reached, each named as a person would say it (singular, plural).
NETWORK_FAILURES = {
    "dns": ("DNS failure", "DNS failures"),
    "refused": ("connection refused", "connections refused"),
    "timeout": ("timeout", "timeouts"),
    "connection": ("connection error", "connection errors"),
}


def offline_text(summary: CrawlSummary) -> str | None:
    """When every page failed for want of a network (`nothing could be fetched: 4 DNS failures. Offline?`),
    the line that says so; else None."""
    kinds = summary.errors_by_kind
    if (
        not summary.pages
        or summary.errors != summary.pages
        or summary.bytes
        or not set(kinds) <= NETWORK_FAILURES.keys()
    ):
        return None  # something came back: a server was reached
    named = ", ".join(counted(count, *NETWORK_FAILURES[kind]) for kind, count in kinds.most_common())
    return f"Nothing could be fetched: {named}. Offline, or are the sites down?"


def summary_text(summary: CrawlSummary, seeds: int, db_path: str) -> str:
    """The one-screen summary printed when a crawl ends."""
    kinds = ", ".join(f"{kind} {count:,}" for kind, count in summary.errors_by_kind.most_common())
    state = "Interrupted after" if summary.interrupted else "Crawled"
    lines = [
        f"{state} {counted(summary.pages, 'page')}"
        + (f" from {counted(seeds, 'seed')}" if seeds else "")
        + f" with the {summary.backend} backend in {summary.elapsed:.2f} s ({summary.pages_per_second:,.1f} pages/s)",
        f"  ok       {summary.pages - summary.errors:,}",
        f"  errors   {summary.errors:,}" + (f"  ({kinds})" if kinds else ""),
        f"  retries  {summary.retries:,}",
        f"  bytes    {human_bytes(summary.bytes)} ({summary.bytes:,})",
        f"  database {db_path}",
    ]
    if summary.resumed_from:
        lines.append(f"  resumed  after {counted(summary.resumed_from, 'page')} done in earlier runs")
    if summary.queued:
        lines.append(f"  queued   {counted(summary.queued, 'URL')} not crawled yet")
    if summary.capped:
        lines.append(f"  capped   {counted(summary.capped, 'URL')} not fetched: over --max-pages-per-host")
    if (offline := offline_text(summary)) is not None:
        lines.append(offline)
    return "\n".join(lines)


def summary_dict(summary: CrawlSummary) -> dict[str, object]:
    """The summary as JSON-ready data."""
    data = dataclasses.asdict(summary)
    data["errors_by_kind"] = dict(summary.errors_by_kind)  # asdict would rebuild the Counter from pairs
    data["pages_per_second"] = summary.pages_per_second
    return data


BAR_WIDTH = 40
_EIGHTHS = " ▏▎▍▌▋▊▉"


def bar(value: float, largest: float, width: int = BAR_WIDTH) -> str:
    """A horizontal bar of block characters, `width` long for `largest`, in eighths of a character."""
    eighths = round(8 * width * value / largest) if largest > 0 else 0
    if value > 0 and eighths == 0:
        eighths = 1  # something is there: show it
    full, part = divmod(eighths, 8)
    return "█" * full + (_EIGHTHS[part] if part else "")


def size_range(low: int, high: int) -> str:
    """A size bucket's label: '< 1 KB', '1-2 KB', '512 KB-1 MB'."""
    if low == 0:
        return f"< {human_bytes(high, short=True)}"
    low_text, high_text = human_bytes(low, short=True), human_bytes(high, short=True)
    if low_text.split()[1] == high_text.split()[1]:
        low_text = low_text.split()[0]
    return f"{low_text}-{high_text}"


def histogram_text(histogram: list[tuple[int, int, int]]) -> str:
    """Page sizes in log-scale buckets, as bars scaled to the fullest bucket."""
    largest = max((count for _, _, count in histogram), default=0)
    return table(
        ["size", "pages", ""],
        [(size_range(low, high), f"{count:,}", bar(count, largest)) for low, high, count in histogram],
    )


def stats_text(stats: Stats) -> str:
    """What `crawler stats` prints: totals, the size histogram, then pages by status, host and content type."""
    share = f" ({stats.errors / stats.pages:.1%})" if stats.pages else ""
    totals = [
        ("pages", f"{stats.pages:,}"),
        ("errors", f"{stats.errors:,}{share}"),
        ("total size", f"{human_bytes(stats.total_bytes)} ({stats.total_bytes:,} bytes)"),
        ("mean size", human_bytes(stats.mean_size)),
        ("median size", human_bytes(stats.median_size)),
        ("max size", human_bytes(stats.max_size)),
    ]
    if stats.capped:
        totals.append(("not fetched", f"{counted(stats.capped, 'URL')} over --max-pages-per-host"))
    hosts = table(
        ["host", "pages", "bytes", "median size", "errors"],
        [
            (row.host, f"{row.pages:,}", human_bytes(row.bytes), human_bytes(row.median_size),
             f"{row.errors / row.pages:.1%}")
            for row in stats.by_host
        ],
    )  # fmt: skip
    if stats.hosts > len(stats.by_host):
        hosts += f"\n... and {stats.hosts - len(stats.by_host):,} more hosts (see --host)"
    parts = [
        tabulate(totals, tablefmt="plain", disable_numparse=True),
        histogram_text(stats.histogram),
        table(["status", "pages"], [(status, f"{count:,}") for status, count in stats.by_status]),
        hosts,
        table(
            ["content type", "pages", "bytes"],
            [(kind, f"{count:,}", human_bytes(size)) for kind, count, size in stats.by_content_type],
        ),
    ]
    return "\n\n".join(parts)


def runs_text(runs: list[dict[str, Any]]) -> str:
    """What `crawler runs` prints: a line per run, oldest first."""

    def seeds(value: str) -> str:
        urls = json.loads(value or "[]")
        return (urls[0] + (f" +{len(urls) - 1}" if len(urls) > 1 else "")) if urls else "(resumed)"

    def number(value: float | None, spec: str) -> str:
        return "" if value is None else format(value, spec)

    return table(
        ["id", "pass", "started (UTC)", "status", "backend", "conc.", "pages", "errors", "pages/s", "p50 ms",
         "p95 ms", "CPU s", "RSS MB", "seeds"],
        [
            (run["id"], f"{run.get('pass') or ''}{' refresh' if run.get('refresh') else ''}",
             (run["started_at"] or "")[:19].replace("T", " "), run["status"], run["backend"],
             run["concurrency"], f"{run['pages'] or 0:,}", f"{run['errors'] or 0:,}",
             number(run["pages_per_second"], ",.1f"), number(run["latency_p50_ms"], ".1f"),
             number(run["latency_p95_ms"], ".1f"), number(run["cpu_seconds"], ".2f"),
             number(run["peak_rss_mb"], ".0f"), seeds(run["seeds"]))
            for run in runs
        ],
    )  # fmt: skip


BROKEN_REFERRERS_SHOWN = 5


def broken_text(rows: Iterable[Sequence[Any]]) -> str:
    """What `crawler broken` prints: each broken URL, why, and up to five pages that link to it.
    `rows` are `storage.BROKEN_COLUMNS`, ordered by URL."""
    blocks: list[str] = []
    for (url, final_url, status, error_kind, message), group in groupby(rows, key=lambda row: tuple(row[:5])):
        referrers = [row[5] for row in group]
        why = f"{status}" if status is not None else f"({error_kind})"
        lines = [f"{why:>7}  {url}" + (f" -> {final_url}" if final_url != url else "") + f"  {message or ''}".rstrip()]
        lines += [f"         linked from {referrer}" for referrer in referrers[:BROKEN_REFERRERS_SHOWN]]
        if len(referrers) > BROKEN_REFERRERS_SHOWN:
            lines.append(f"         ... and {len(referrers) - BROKEN_REFERRERS_SHOWN:,} more pages (--csv lists all)")
        blocks.append("\n".join(lines))
    if not blocks:
        return "No broken links: every link followed led to a page that answered."
    return "\n".join(blocks) + f"\n\n{len(blocks):,} broken URL{'s' if len(blocks) != 1 else ''}."


def _signed(delta: int) -> str:
    return ("+" if delta >= 0 else "-") + human_bytes(abs(delta))


def refresh_text(changes: Changes, bytes_saved: int) -> str:
    """The summary's line on a refresh: how the site changed since the pass before, and the bytes it did not
    download (pages answered 304, or older than their sitemap's lastmod)."""
    parts = [
        counted(changes.unchanged, "unchanged page"),
        f"{len(changes.resized):,} changed",
        f"{len(changes.new):,} new",
        f"{len(changes.gone):,} gone",
        f"{len(changes.status):,} with another status",
    ]
    return f"  refresh  {', '.join(parts)}; {human_bytes(bytes_saved)} not downloaded"


CHANGES_SHOWN = 20


def changes_text(changes: Changes, limit: int = CHANGES_SHOWN) -> str:
    """What `crawler changes` prints: a count of each kind of change, then the changes of each kind (content
    changes largest first), at most `limit` of each."""
    heading = (
        f"From run {changes.run_a} to run {changes.run_b}: {len(changes.new):,} new, {len(changes.gone):,} gone, "
        f"{len(changes.status):,} with another status, {len(changes.resized):,} changed, "
        f"{counted(changes.unchanged, 'page')} unchanged."
    )
    blocks = [heading]

    def size(value: int | None) -> str:
        return human_bytes(value) if value is not None else "-"

    def status(value: int | None) -> str:
        return str(value) if value is not None else "(none)"

    def new(c: Change) -> tuple[str, ...]:
        return status(c.status_b), size(c.size_b), c.url

    def gone(c: Change) -> tuple[str, ...]:
        return status(c.status_a), size(c.size_a), c.url

    def restatus(c: Change) -> tuple[str, ...]:
        return status(c.status_a), status(c.status_b), c.url

    def resized(c: Change) -> tuple[str, ...]:
        return _signed(c.delta), size(c.size_a), size(c.size_b), c.url

    sections: list[tuple[str, list[Change], list[str], Callable[[Change], tuple[str, ...]]]] = [
        ("New", changes.new, ["status", "size", "url"], new),
        ("Gone (not reached any more)", changes.gone, ["status", "size", "url"], gone),
        ("Another status", changes.status, ["was", "now", "url"], restatus),
        ("Changed, largest change first", changes.resized, ["change", "was", "now", "url"], resized),
    ]
    for title, items, headers, row in sections:
        if not items:
            continue
        more = f" (the first {limit}; --csv lists all)" if len(items) > limit else ""
        blocks.append(f"{title}: {len(items):,}{more}\n" + table(headers, (row(c) for c in items[:limit])))
    return "\n\n".join(blocks)
