"""gevent backend: `gevent.spawn` bounded by a `gevent.pool.Pool`, `gevent.joinall` to finish; callbacks run in
the fetching greenlet, on the main thread. Needs `gevent.monkey.patch_all()` before anything else is imported,
which the `crawler` command does when `--backend gevent` is chosen."""

from __future__ import annotations

import signal

import gevent
import gevent.monkey
import gevent.pool
import requests

from fetchers.base import Fetcher, FetchSettings, ResultCallback
from fetchers.requests_http import fetch, new_session


class GeventFetcher(Fetcher):
    """Blocking requests calls made cooperative by monkey patching, one greenlet per request."""

    name = "gevent"

    def __init__(self, settings: FetchSettings) -> None:
        if not gevent.monkey.is_module_patched("socket"):
            raise RuntimeError(
                "the gevent backend needs gevent's monkey patching before the HTTP libraries load; "
                "run it through the `crawler` command (or call gevent.monkey.patch_all() first)"
            )
        super().__init__(settings)
        self._pool = gevent.pool.Pool(settings.concurrency)
        # Ctrl-C would otherwise land in whichever greenlet is running, killing that fetch with a traceback;
        # deliver it to the main greenlet (the crawl loop) instead, as gevent does with system errors.
        self._sigint = gevent.signal_handler(signal.SIGINT, self._interrupt_main)
        # Idle sessions: a greenlet borrows one for its request, so there are at most `concurrency` of them.
        self._idle: list[requests.Session] = []
        self._all: list[requests.Session] = []

    def _fetch_and_report(self, url: str, on_result: ResultCallback) -> None:
        session = self._idle.pop() if self._idle else self._new_session()
        try:
            result = fetch(session, url, self.settings)
        finally:
            self._idle.append(session)
        on_result(result)

    def _new_session(self) -> requests.Session:
        session = new_session(self.settings)
        self._all.append(session)
        return session

    @staticmethod
    def _interrupt_main() -> None:
        hub = gevent.get_hub()
        hub.loop.run_callback(hub.parent.throw, KeyboardInterrupt)

    def submit(self, url: str, on_result: ResultCallback) -> None:
        """Spawn a greenlet for the fetch (waiting cooperatively if all `concurrency` slots are busy)."""
        self._pool.spawn(self._fetch_and_report, url, on_result)
        # Let it send its request now: while results keep arriving the crawl loop never blocks, so without
        # this yield new requests would wait, unsent, until it did.
        gevent.sleep(0)

    def close(self) -> None:
        """Join every running greenlet, then close the sessions."""
        gevent.joinall(list(self._pool))
        self._sigint.cancel()
        for session in self._all:
            session.close()
