"""Thread backend: `ThreadPoolExecutor.submit` + `add_done_callback`; callbacks run on the worker threads."""

from __future__ import annotations

import threading
from concurrent.futures import Future, ThreadPoolExecutor
from functools import partial

import requests

from fetchers.base import Delivery, Fetcher, FetchResult, FetchSettings, Headers
from fetchers.reaper import REAPER, WatchGroup
from fetchers.requests_http import fetch, new_session


def _deliver(delivery: Delivery, future: Future[FetchResult]) -> None:
    with delivery.guard():  # `result()` raises what the fetch raised (or CancelledError, once abandoned)
        delivery(future.result())


class ThreadFetcher(Fetcher):
    """Blocking requests calls on a pool of `concurrency` threads, one `requests.Session` per thread."""

    name = "thread"

    def __init__(self, settings: FetchSettings) -> None:
        super().__init__(settings)
        self._executor = ThreadPoolExecutor(max_workers=settings.concurrency, thread_name_prefix="fetch")
        self._local = threading.local()
        self._sessions: list[requests.Session] = []
        self._sessions_lock = threading.Lock()
        self._watches = WatchGroup()  # the requests in flight, for `abandon` to end them all at once

    def _session(self) -> requests.Session:
        session: requests.Session | None = getattr(self._local, "session", None)
        if session is None:
            session = self._local.session = new_session(self.settings)
            with self._sessions_lock:
                self._sessions.append(session)
        return session

    def _fetch(self, url: str, headers: Headers | None) -> FetchResult:
        session = self._session()
        try:
            return fetch(session, url, self.settings, self._watches, headers)
        finally:
            if self._watches.closed:  # stopped: this thread fetches no more, and its connections must not linger
                session.close()

    def _start(self, url: str, delivery: Delivery, headers: Headers | None) -> None:
        """Queue the fetch on the executor; the result is delivered from the worker thread."""
        future = self._executor.submit(self._fetch, url, headers)
        future.add_done_callback(partial(_deliver, delivery))

    def _release(self) -> None:
        self._executor.shutdown(wait=True)
        self._close_sessions()

    def _stop_now(self) -> None:
        # Every request in flight has its socket shut down, so each worker thread ends at once (the interpreter
        # joins them at exit); queued ones never start.
        REAPER.expire_group(self._watches)
        self._executor.shutdown(wait=False, cancel_futures=True)
        self._close_sessions()

    def _close_sessions(self) -> None:
        with self._sessions_lock:
            for session in self._sessions:
                session.close()
