"""`crawler compare`: runs side by side, each one's ratio to the fastest, and what held each one back."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from crawler.engine.metrics import in_flight, ms_per, share
from crawler.views.text import table

MIN_PAGES = 50  # a run shorter than this (or than MIN_SECONDS) says little about a backend
MIN_SECONDS = 1.0
ERROR_BOUND = 0.25  # share of pages failed
LATENCY_BOUND = 0.75  # share of the concurrency slots busy on average
CPU_BOUND = 0.85  # CPU seconds per second of wall-clock time
# Settings that do not change the work a crawl does, only how or where: left out of the like-for-like check.
HOW_SETTINGS = frozenset({"backend", "parser", "concurrency", "per_host", "db_path", "resume", "restart"})


@dataclass(frozen=True, slots=True)
class RunFigures:
    """One run's figures as `compare` shows them; rates derived from the `runs` row."""

    id: int
    backend: str
    status: str
    concurrency: int
    pages: int
    errors: int
    pages_per_second: float
    ratio_to_best: float
    latency_p50_ms: float | None
    latency_p95_ms: float | None
    in_flight: float  # mean requests in flight
    slot_use: float  # in_flight / concurrency
    cpu_seconds: float | None
    cpu_ms_per_page: float | None
    cores: float | None  # CPU seconds per wall-clock second
    peak_rss_mb: float | None
    parse_share: float | None  # of wall-clock time, in the main thread
    verdict: str


def diagnose(run: dict[str, Any]) -> str:
    """What limited a run, from its figures: errors, latency (all slots waiting), CPU, or politeness."""
    pages, elapsed = run["pages"] or 0, run["elapsed_s"] or 0.0
    if pages < MIN_PAGES or elapsed < MIN_SECONDS:
        return f"too short to judge ({pages} pages in {elapsed:.2f} s)"
    flight = in_flight(run["fetch_seconds"], elapsed)
    concurrency = run["concurrency"]
    error_share = (run["errors"] or 0) / pages
    if error_share >= ERROR_BOUND:
        return f"error-bound: {error_share:.0%} of pages failed; see `crawler stats --run {run['id']}`"
    if flight >= LATENCY_BOUND * concurrency:
        return (
            f"latency-bound: {flight:.1f} of {concurrency} requests in flight on average, "
            f"{run['latency_p50_ms']:.0f} ms each (median); more --concurrency would help where the sites allow"
        )
    cores = share(run["cpu_seconds"], elapsed)
    if cores is not None and cores >= CPU_BOUND:
        parse = share(run["parse_seconds"], elapsed) or 0.0  # elapsed > 0 here: None only for no parse time
        remedy = "--parser lxml or a leaner backend" if run["parser"] == "bs4" else "a leaner backend"
        return (
            f"CPU-bound: {cores:.2f} cores busy, {ms_per(run['cpu_seconds'], pages):.1f} ms of CPU a page, "
            f"{parse:.0%} of the time parsing; {remedy} would help"
        )
    settings = json.loads(run["settings"] or "{}")
    held = [f"--per-host {run['per_host']}"] if run["per_host"] < concurrency else []
    if settings.get("delay"):
        held.append(f"--delay {settings['delay']:g}")
    if run.get("retries"):
        held.append(f"{run['retries']} retries waiting out their backoff")
    cpu = f"{cores:.0%} of a core" if cores is not None else "CPU unknown"
    return (
        f"slots mostly idle: {flight:.1f} of {concurrency} requests in flight on average, {cpu}; "
        f"held back by {', '.join([*held, 'robots.txt Crawl-delay, or a frontier that ran dry'])}"
    )


def figures(runs: list[dict[str, Any]]) -> list[RunFigures]:
    """The figures of `runs` (rows of the `runs` table), with each run's pages/s as a ratio to the fastest."""
    best = max((run["pages_per_second"] or 0.0 for run in runs), default=0.0)
    result = []
    for run in runs:
        elapsed, pages, cpu = run["elapsed_s"] or 0.0, run["pages"] or 0, run["cpu_seconds"]
        rate = run["pages_per_second"] or 0.0  # as the writer stored it: `per_second`, NULL for no time
        flight = in_flight(run["fetch_seconds"], elapsed)
        result.append(
            RunFigures(
                id=run["id"],
                backend=run["backend"],
                status=run["status"],
                concurrency=run["concurrency"],
                pages=pages,
                errors=run["errors"] or 0,
                pages_per_second=rate,
                ratio_to_best=rate / best if best > 0 else 0.0,
                latency_p50_ms=run["latency_p50_ms"],
                latency_p95_ms=run["latency_p95_ms"],
                in_flight=flight,
                slot_use=share(flight, run["concurrency"]) or 0.0,
                cpu_seconds=cpu,
                cpu_ms_per_page=ms_per(cpu, pages),
                cores=share(cpu, elapsed),
                peak_rss_mb=run["peak_rss_mb"],
                parse_share=share(run["parse_seconds"], elapsed),
                verdict=diagnose(run),
            )
        )
    return result


def unlike(runs: list[dict[str, Any]]) -> list[str]:
    """Warnings where the runs did different work: other seeds, or other settings than how they crawled."""
    notes = []
    if len({run["seeds"] for run in runs}) > 1:
        notes.append("the runs crawled different seeds, so they did different work")
    settings = [
        {key: value for key, value in json.loads(run["settings"] or "{}").items() if key not in HOW_SETTINGS}
        for run in runs
    ]
    differing = sorted({key for one in settings for key in one if len({json.dumps(s.get(key)) for s in settings}) > 1})
    if differing:
        notes.append(f"the runs differ in {', '.join(differing)}")
    if any(run["status"] != "finished" for run in runs):
        notes.append("not every run finished (see status); a partial crawl's rate may not be typical")
    return notes


def _number(value: float | None, spec: str) -> str:
    return "" if value is None else format(value, spec)


def compare_text(runs: list[dict[str, Any]]) -> str:
    """The runs side by side, a column each, then each run's verdict and any like-for-like warnings."""
    rows = figures(runs)
    lines: list[tuple[str, list[str]]] = [
        ("backend", [row.backend for row in rows]),
        ("status", [row.status for row in rows]),
        ("concurrency", [str(row.concurrency) for row in rows]),
        ("pages", [f"{row.pages:,}" for row in rows]),
        ("errors", [f"{row.errors:,} ({row.errors / row.pages:.0%})" if row.pages else "0" for row in rows]),
        ("pages/s", [f"{row.pages_per_second:,.1f}" for row in rows]),
        ("ratio to best", [f"{row.ratio_to_best:.2f}" for row in rows]),
        ("latency p50 ms", [_number(row.latency_p50_ms, ".1f") for row in rows]),
        ("latency p95 ms", [_number(row.latency_p95_ms, ".1f") for row in rows]),
        ("in flight (mean)", [f"{row.in_flight:.1f} ({row.slot_use:.0%})" for row in rows]),
        ("CPU s", [_number(row.cpu_seconds, ".2f") for row in rows]),
        ("CPU ms/page", [_number(row.cpu_ms_per_page, ".2f") for row in rows]),
        ("CPU cores busy", [_number(row.cores, ".2f") for row in rows]),
        ("parsing share", [_number(row.parse_share, ".0%") for row in rows]),
        ("peak RSS MB", [_number(row.peak_rss_mb, ".0f") for row in rows]),
    ]
    text = table(["run", *[str(row.id) for row in rows]], [(name, *values) for name, values in lines])
    verdicts = [f"run {row.id} ({row.backend}): {row.verdict}" for row in rows]
    fastest = max(rows, key=lambda row: row.pages_per_second)
    summary = [f"Fastest: run {fastest.id} ({fastest.backend}), {fastest.pages_per_second:,.1f} pages/s."]
    notes = [f"Note: {note}." for note in unlike(runs)]
    return "\n".join([text, "", *summary, *verdicts, *notes])
