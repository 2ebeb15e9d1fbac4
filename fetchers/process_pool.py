"""Process backend: `multiprocessing.Pool.apply_async` with callbacks; callbacks run on the pool's
result-handler thread in the main process."""

from __future__ import annotations

import multiprocessing
import signal
import threading
from functools import partial

import requests

from fetchers.base import ErrorKind, Fetcher, FetchResult, FetchSettings, ResultCallback, error_result
from fetchers.requests_http import fetch, new_session

STARTUP_TIMEOUT = 60.0

# Per worker process, set by the pool initializer: a worker fetches one URL at a time on its own session.
_worker_session: requests.Session | None = None
_worker_settings: FetchSettings | None = None


def _init_worker(settings: FetchSettings, ready: threading.Barrier) -> None:
    global _worker_session, _worker_settings
    # Ctrl-C is the main process's to handle; a worker interrupted mid-fetch would break the pool.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _worker_session = new_session(settings)
    _worker_settings = settings
    ready.wait(STARTUP_TIMEOUT)


def fetch_one(url: str) -> FetchResult:
    """Fetch `url` in a worker process with that worker's session."""
    assert _worker_session is not None and _worker_settings is not None, "pool initializer did not run"
    return fetch(_worker_session, url, _worker_settings)


def _report_failure(url: str, on_result: ResultCallback, exc: BaseException) -> None:
    on_result(error_result(url, ErrorKind.OTHER, exc))


class ProcessFetcher(Fetcher):
    """`concurrency` worker processes, each doing blocking requests calls; bodies come back pickled."""

    name = "process"

    def __init__(self, settings: FetchSettings) -> None:
        super().__init__(settings)
        # forkserver: workers start from a clean single-threaded server, not a fork of a threaded parent.
        context = multiprocessing.get_context("forkserver")
        # Wait until every worker is up, so that the crawl (and its politeness timing) starts with them.
        ready = context.Barrier(settings.concurrency + 1)
        self._pool = context.Pool(settings.concurrency, initializer=_init_worker, initargs=(settings, ready))
        ready.wait(STARTUP_TIMEOUT)

    def submit(self, url: str, on_result: ResultCallback) -> None:
        """Send the URL to a worker; the result arrives on the pool's result-handler thread."""
        self._pool.apply_async(
            fetch_one, (url,), callback=on_result, error_callback=partial(_report_failure, url, on_result)
        )

    def close(self) -> None:
        """Let the workers finish what they were sent, then stop them."""
        self._pool.close()
        self._pool.join()
