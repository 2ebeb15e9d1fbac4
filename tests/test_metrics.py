"""The figures a crawl is measured by (`crawler.engine.metrics`), with exact values, and the storage writer's
SQL computing the same figures for the `runs` table by the same definitions."""

from __future__ import annotations

import math
import random
from pathlib import Path

import pytest

from crawler.engine.metrics import in_flight, ms_per, per_second, share
from crawler.engine.summary import CrawlSummary
from storage import PageStore
from tests.conftest import rows


def percentile(ordered: list[float], fraction: float) -> float | None:
    """The nearest-rank percentile, the definition the `runs` table's latency_p50_ms and latency_p95_ms follow
    (`fraction` 0.5: the median) of values in ascending order; None for none."""
    if not ordered:
        return None
    return ordered[max(0, math.ceil(fraction * len(ordered)) - 1)]


def test_per_second() -> None:
    assert per_second(10, 4.0) == 2.5
    assert per_second(0, 4.0) == 0.0  # no pages
    assert per_second(10, 0.0) == 0.0  # no time
    assert per_second(10, -1.0) == 0.0


def test_ms_per() -> None:
    assert ms_per(0.5, 200) == 2.5
    assert ms_per(0.0, 4) == 0.0
    assert ms_per(None, 10) is None  # CPU unknown
    assert ms_per(1.0, 0) is None  # no pages


def test_in_flight() -> None:
    assert in_flight(12.0, 4.0) == 3.0
    assert in_flight(0.0, 4.0) == 0.0
    assert in_flight(None, 4.0) == 0.0  # no request timed
    assert in_flight(12.0, 0.0) == 0.0  # no time


def test_share() -> None:
    assert share(1.5, 2.0) == 0.75
    assert share(3.0, 2.0) == 1.5  # CPU seconds over wall-clock seconds: more than one core
    assert share(0.0, 2.0) == 0.0
    assert share(None, 2.0) is None  # unknown
    assert share(1.0, 0.0) is None  # no time


def test_percentile_by_nearest_rank() -> None:
    assert percentile([], 0.5) is None
    assert percentile([7.0], 0.5) == 7.0
    assert percentile([7.0], 0.95) == 7.0
    twenty = [float(value) for value in range(1, 21)]
    assert percentile(twenty, 0.95) == 19.0  # rank ceil(0.95 * 20) = 19
    assert percentile(twenty, 0.5) == 10.0  # rank 10: the lower middle, not the mean of 10 and 11
    assert percentile(twenty, 0.0) == 1.0
    assert percentile(twenty, 1.0) == 20.0
    assert percentile(twenty[:10], 0.95) == 10.0  # rank ceil(9.5) = 10
    assert percentile([1.0, 2.0, 3.0], 0.5) == 2.0


def test_a_summary_rates_pages_by_per_second() -> None:
    assert CrawlSummary("asyncio", pages=30, elapsed=4.0).pages_per_second == 7.5
    assert CrawlSummary("asyncio", pages=30).pages_per_second == 0.0  # no time yet


@pytest.mark.parametrize("fetches", [1, 7, 20])
def test_the_runs_table_figures_agree_with_metrics(tmp_path: Path, fetches: int) -> None:
    """The writer computes the latency percentiles and pages/s in SQL (storage cannot import crawler): they
    must be the figures `percentile` and `per_second` give."""
    latencies = [float(3 * value % 23 + 1) for value in range(fetches)]
    random.Random(fetches).shuffle(latencies)
    store = PageStore(tmp_path / "crawl.db")
    store.start_run({"backend": "asyncio", "parser": "lxml", "concurrency": 4, "per_host": 4}, ["http://h/"])
    for number, latency in enumerate(latencies):
        url = f"http://h/{number}"
        row = {"url": url, "final_url": url, "host": "h", "status": 200, "size": 10, "depth": 1, "elapsed_ms": latency}
        store.commit(row, [], [], [])
    store.finish_run("finished", {"elapsed_s": 2.5})
    store.close()
    [run] = rows(tmp_path / "crawl.db", "SELECT * FROM runs")
    ordered = sorted(latencies)
    assert run["latency_p50_ms"] == percentile(ordered, 0.5)
    assert run["latency_p95_ms"] == percentile(ordered, 0.95)
    assert run["pages_per_second"] == per_second(fetches, 2.5)
    assert run["fetch_seconds"] == pytest.approx(sum(latencies) / 1000)
