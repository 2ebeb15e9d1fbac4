"""What `crawler status` prints: a shared crawl on one screen, from the plain data of its status (the same
dict `--json` prints: see crawler.cluster.status for what each field means)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from crawler.views.progress import clock
from crawler.views.text import table
from crawler.words import counted


def _when(iso: str | None) -> str:
    """'2026-11-30T11:25:20+00:00' -> '2026-11-30 11:25:20 UTC'."""
    return "" if not iso else iso[:19].replace("T", " ") + " UTC"


def _kinds(counts: Mapping[str, int]) -> str:
    return ", ".join(f"{kind} {count:,}" for kind, count in counts.items())


def state_of(status: Mapping[str, Any]) -> str:
    """finished; running (a worker is alive); or stalled (unfinished, and no worker alive)."""
    if status["finished"]:
        return "finished"
    alive = [w for w in status["workers"] if w["status"] == "running" and not w["heartbeat_missed"]]
    return "running" if alive else "stalled"


def continue_line(status: Mapping[str, Any]) -> str:
    """The command that puts a worker on the crawl."""
    return f"crawler worker --frontier {status['frontier']}"


def _heartbeat(worker: Mapping[str, Any]) -> str:
    since = f"{worker['since_heartbeat_s']:.1f} s ago"
    return f"{since}, missed" if worker["heartbeat_missed"] else since


def cluster_text(status: Mapping[str, Any]) -> str:
    """The crawl (seeds, age, limits), its queue, hosts, errors, and workers: the live ones each on a line, the
    ended ones counted by status, the lost ones named."""
    crawl, queue, hosts = status["crawl"], status["queue"], status["hosts"]
    state = state_of(status)
    limits = [f"depth {crawl['depth']}",
              f"max-pages {crawl['max_pages']:,} ({crawl['started']:,} started: {crawl['budget_used']:.0%})",
              f"per-host {crawl['per_host']}", f"delay {crawl['delay']:g} s"]  # fmt: skip
    if crawl["max_pages_per_host"]:
        limits.insert(2, f"max-pages-per-host {crawl['max_pages_per_host']:,}")
    sitemap_errors = sum(status["sitemap_errors"].values())
    errors = sum(status["errors"].values())
    lines = [
        f"Shared crawl in {status['frontier']}: {state} ({_when(status['now'])})",
        f"  seeds     {crawl['seeds']:,}, created {_when(crawl['created_at'])}, {clock(crawl['age_s'])} ago",
        f"  limits    {', '.join(limits)}",
        f"  pages     {queue['queued']:,} queued"
        + (f" ({queue['retries_queued']:,} to retry)" if queue["retries_queued"] else "")
        + f", {queue['leased']:,} leased, {queue['done']:,} done"
        + (f", {queue['capped']:,} capped" if queue["capped"] or crawl["max_pages_per_host"] else ""),
        f"  sitemaps  {queue['sitemaps_queued']:,} queued, {queue['sitemaps_leased']:,} leased, "
        f"{queue['sitemaps_done']:,} done"
        + (f" ({sitemap_errors:,} failed: {_kinds(status['sitemap_errors'])})" if sitemap_errors else ""),
        f"  hosts     {hosts['origins']:,}: {hosts['robots_pending']:,} waiting for robots.txt, "
        f"{hosts['paused']:,} paused by Retry-After, {hosts['busy']:,} with requests in flight "
        f"({hosts['in_flight']:,})",
        f"  errors    {counted(errors, 'page')} of {queue['done']:,}"
        + (f": {_kinds(status['errors'])}" if errors else ""),
    ]
    running = [worker for worker in status["workers"] if worker["status"] == "running"]
    ended = ", ".join(f"{count:,} {name}" for name, count in sorted(status["ended"].items()))
    lines.append(f"Workers: {len(running):,} running" + (f"; ended: {ended}" if ended else ""))
    if running:
        rows = [
            (worker["id"], f"{worker['machine']}:{worker['pid']}", worker["backend"], worker["concurrency"],
             f"{worker['pages']:,}", f"{worker['pages_per_second_recent']:,.1f}", f"{worker['pages_per_second']:,.1f}",
             f"{worker['leases']:,}", _heartbeat(worker))
            for worker in running
        ]  # fmt: skip
        headers = ["id", "machine:pid", "backend", "conc.", "pages", "pages/s 1 min", "pages/s", "leases", "heartbeat"]
        lines += ["  " + line for line in table(headers, rows).splitlines()]
    for worker in status["workers"]:
        if worker["status"] == "lost":
            lines.append(f"  lost: worker {worker['id']} on {worker['machine']}:{worker['pid']} ({worker['backend']}), "
                         f"{counted(worker['pages'], 'page')} done, its heartbeat stopped (leases expired "
                         f"{_when(worker['ended_at'])})")  # fmt: skip
    if any(worker["heartbeat_missed"] for worker in running):
        lines.append("  A worker whose heartbeat is missed is declared lost, and its leases queued again, by the "
                     "next worker that looks.")  # fmt: skip
    if state == "stalled":
        lines.append(f"No worker is alive. To continue: {continue_line(status)}")
    return "\n".join(lines)
