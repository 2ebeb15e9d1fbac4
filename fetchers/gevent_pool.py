"""gevent backend: `gevent.spawn` bounded by a `gevent.pool.Pool`, `gevent.joinall` to finish; callbacks run in
the fetching greenlet, on the main thread. Needs `gevent.monkey.patch_all()` before anything else is imported,
which the `crawler` command does when `--backend gevent` is chosen."""

from __future__ import annotations

import signal

import gevent
import gevent.monkey
import gevent.pool
import requests

from fetchers.base import STOP_TIMEOUT, Delivery, Fetcher, FetchSettings, Headers
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
        # Ctrl-C's KeyboardInterrupt would otherwise land in whichever greenlet is running, killing that fetch
        # with a traceback; deliver it to the main greenlet (the crawl loop) instead, as gevent does with system
        # errors. A SIGINT handler the caller installed is left to do its work.
        self._sigint = None
        if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
            self._sigint = gevent.signal_handler(signal.SIGINT, self._interrupt_main)
        # Idle sessions: a greenlet borrows one for its request, so there are at most `concurrency` of them.
        self._idle: list[requests.Session] = []
        self._all: list[requests.Session] = []
        # The catch-up (Fetcher.next_result) is a turn of the hub, in which the greenlets read what arrived while the
        # caller worked; `gevent.sleep(0)` would not poll for it.
        self._catch_up = gevent.idle

    def _fetch_and_report(self, url: str, delivery: Delivery, headers: Headers | None) -> None:
        with delivery.guard():
            session = self._idle.pop() if self._idle else self._new_session()
            try:
                result = fetch(session, url, self.settings, headers=headers)
            finally:
                self._idle.append(session)
            delivery(result)

    def _new_session(self) -> requests.Session:
        session = new_session(self.settings)
        self._all.append(session)
        return session

    @staticmethod
    def _interrupt_main() -> None:
        hub = gevent.get_hub()
        hub.loop.run_callback(hub.parent.throw, KeyboardInterrupt)

    def _start(self, url: str, delivery: Delivery, headers: Headers | None) -> None:
        """Spawn a greenlet for the fetch (waiting cooperatively if all `concurrency` slots are busy)."""
        self._pool.spawn(self._fetch_and_report, url, delivery, headers)
        # Let it send its request now: while results keep arriving the crawl loop never blocks, so without
        # this yield new requests would wait, unsent, until it did.
        gevent.sleep(0)

    def _release(self) -> None:
        gevent.joinall(list(self._pool))
        self._close_sessions()

    def _stop_now(self) -> None:
        self._pool.kill(timeout=STOP_TIMEOUT)  # GreenletExit in each fetch, wherever it waits
        self._close_sessions()

    def _close_sessions(self) -> None:
        if self._sigint is not None:
            self._sigint.cancel()
        for session in self._all:
            session.close()
