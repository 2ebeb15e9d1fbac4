"""The process backend's pool: multiprocessing's, with the mends in `fetchers.process_pool._Pool`."""

from __future__ import annotations

import contextlib
import gc
import multiprocessing.pool
import os
import queue
import time
from pathlib import Path
from typing import Any

import pytest

from crawler.site.generate import Resource
from fetchers import FetchResult, FetchSettings
from fetchers.process_pool import ProcessFetcher
from tests.conftest import Serve, page_html

PAGES = 150


@pytest.mark.parametrize("in_flight", [PAGES, 1], ids=["all-at-once", "one-at-a-time"])
def test_the_pool_does_not_poll_its_workers_for_every_result(
    serve: Serve, monkeypatch: pytest.MonkeyPatch, in_flight: int
) -> None:
    # One at a time, every result leaves no task in flight, as a crawl whose parser is slower than its fetches
    # often does: multiprocessing's pool woke its worker handler for each of them.
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
        for _ in range(in_flight):
            fetcher.submit(server.url("/"), results.put)
        statuses = []
        for done in range(1, PAGES + 1):
            statuses.append(results.get(timeout=30).status)
            if done + in_flight <= PAGES:
                fetcher.submit(server.url("/"), results.put)
            busy_until = time.perf_counter() + 0.002  # the main thread parses the page, holding the GIL
            while time.perf_counter() < busy_until:
                pass
    finally:
        fetcher.close()
    assert statuses == [200] * PAGES
    # multiprocessing's own pool woke for most results to poll every worker (about 100 times here, all at once;
    # 150 times one at a time): with 64 workers that was 0.4 ms and 1 ms of CPU a page. Now only starting and
    # closing the pool make it look.
    assert polls <= 5, polls


def open_pipes() -> set[tuple[str, str]]:
    """This process's open pipes (its sockets are left out: the test server closes its own in its own time)."""
    pipes = set()
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):  # closed meanwhile
            if (target := os.readlink(f"/proc/self/fd/{fd}")).startswith("pipe:"):
                pipes.add((fd, target))
    return pipes


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="counts this process's files in /proc")
@pytest.mark.parametrize("stop", ["close", "abandon"])
def test_a_closed_pool_leaves_no_pipe_open(serve: Serve, stop: str) -> None:
    # A pool in a reference cycle kept its queues' pipes and its workers' sentinels open until the garbage
    # collector came by: a process running crawl after crawl, as the tests do, went past a thousand files.
    server = serve({"/": Resource(page_html("Home", []))})
    settings = FetchSettings(concurrency=4, timeout=10, connect_timeout=5, user_agent="t", max_size=1_000_000)
    ProcessFetcher(settings).abandon()  # the forkserver and resource tracker, started once a process, stay
    gc.collect()
    before = open_pipes()
    gc.disable()  # the pool must go when the fetcher does, not when a collection finds it
    try:
        fetcher = ProcessFetcher(settings)
        results: queue.Queue[FetchResult] = queue.Queue()
        fetcher.submit(server.url("/"), results.put)
        assert results.get(timeout=30).status == 200
        getattr(fetcher, stop)()
        del fetcher
        assert open_pipes() <= before
    finally:
        gc.enable()
