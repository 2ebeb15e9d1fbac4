"""Thread backend: `ThreadPoolExecutor.submit` + `add_done_callback`; callbacks run on the worker threads."""

from __future__ import annotations

import threading
from concurrent.futures import Future, ThreadPoolExecutor
from functools import partial

import requests

from fetchers.base import ErrorKind, Fetcher, FetchResult, FetchSettings, ResultCallback, error_result
from fetchers.requests_http import fetch, new_session


def _deliver(url: str, on_result: ResultCallback, future: Future[FetchResult]) -> None:
    exc = future.exception()
    on_result(error_result(url, ErrorKind.OTHER, exc) if exc else future.result())


class ThreadFetcher(Fetcher):
    """Blocking requests calls on a pool of `concurrency` threads, one `requests.Session` per thread."""

    name = "thread"

    def __init__(self, settings: FetchSettings) -> None:
        super().__init__(settings)
        self._executor = ThreadPoolExecutor(max_workers=settings.concurrency, thread_name_prefix="fetch")
        self._local = threading.local()
        self._sessions: list[requests.Session] = []
        self._sessions_lock = threading.Lock()

    def _session(self) -> requests.Session:
        session: requests.Session | None = getattr(self._local, "session", None)
        if session is None:
            session = self._local.session = new_session(self.settings)
            with self._sessions_lock:
                self._sessions.append(session)
        return session

    def _fetch(self, url: str) -> FetchResult:
        return fetch(self._session(), url, self.settings)

    def submit(self, url: str, on_result: ResultCallback) -> None:
        """Queue the fetch on the executor; the result is delivered from the worker thread."""
        future = self._executor.submit(self._fetch, url)
        future.add_done_callback(partial(_deliver, url, on_result))

    def close(self) -> None:
        """Wait for the threads to finish their fetches, then close every session."""
        self._executor.shutdown(wait=True)
        for session in self._sessions:
            session.close()
