"""The process backend's pool: multiprocessing's, with the mends in `fetchers.process_pool._Pool`."""

from __future__ import annotations

import multiprocessing.pool
import queue
import time
from typing import Any

import pytest

from crawler.site.generate import Resource
from fetchers import FetchResult, FetchSettings
from fetchers.process_pool import ProcessFetcher
from tests.conftest import Serve, page_html

PAGES = 150


def test_the_pool_does_not_poll_its_workers_for_every_result(serve: Serve, monkeypatch: pytest.MonkeyPatch) -> None:
    server = serve({"/": Resource(page_html("Home", []))})
    polls = 0
    maintain = multiprocessing.pool.Pool._maintain_pool  # type: ignore[attr-defined]

    def counting(*args: Any) -> None:  # a look at all the workers, by the pool's worker-handler thread
        nonlocal polls
        polls += 1
        maintain(*args)

    monkeypatch.setattr(multiprocessing.pool.Pool, "_maintain_pool", staticmethod(counting))
    fetcher = ProcessFetcher(FetchSettings(concurrency=8, timeout=10, connect_timeout=5, user_agent="t",
                                           max_size=1_000_000))  # fmt: skip
    results: queue.Queue[FetchResult] = queue.Queue()
    try:
        for _ in range(PAGES):
            fetcher.submit(server.url("/"), results.put)
        statuses = []
        for _ in range(PAGES):
            statuses.append(results.get(timeout=30).status)
            busy_until = time.perf_counter() + 0.002  # the main thread parses the page, holding the GIL
            while time.perf_counter() < busy_until:
                pass
    finally:
        fetcher.close()
    assert statuses == [200] * PAGES
    # multiprocessing's own pool woke for most results to poll every worker (about 100 times here): with 64
    # workers that was 0.4 ms of CPU a page. Now only starting and closing the pool make it look.
    assert polls <= 5, polls
