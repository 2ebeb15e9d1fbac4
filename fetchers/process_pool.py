"""Process backend: `multiprocessing.Pool.apply_async` with callbacks; callbacks run on the pool's
result-handler thread in the main process."""

from __future__ import annotations

import contextlib
import multiprocessing
import multiprocessing.pool
import os
import signal
import threading
import time
import weakref
from typing import Any

import requests

from fetchers.base import STOP_TIMEOUT, Delivery, Fetcher, FetchResult, FetchSettings, Headers, http_environment
from fetchers.requests_http import fetch, new_session

STARTUP_TIMEOUT = 60.0

# Per worker process, set by the pool initializer: a worker fetches one URL at a time on its own session.
_worker_session: requests.Session | None = None
_worker_settings: FetchSettings | None = None


def _init_worker(settings: FetchSettings, ready: threading.Barrier, environment: dict[str, str]) -> None:
    global _worker_session, _worker_settings
    # Ctrl-C is the main process's to handle; a worker interrupted mid-fetch would break the pool.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # What HTTP clients read from the environment, as the process that made the pool has it, not as the forkserver
    # does: the first pool of a process starts that server, with the environment of the time.
    for name in http_environment():
        del os.environ[name]
    os.environ.update(environment)
    _worker_session = new_session(settings)
    _worker_settings = settings
    # Broken once the start-up is over: this worker replaces one that died, and waits for nobody.
    with contextlib.suppress(threading.BrokenBarrierError):
        ready.wait(STARTUP_TIMEOUT)


def fetch_one(url: str, headers: Headers | None = None) -> FetchResult:
    """Fetch `url` (with `headers` besides the session's) in a worker process with that worker's session."""
    assert _worker_session is not None and _worker_settings is not None, "pool initializer did not run"
    return fetch(_worker_session, url, _worker_settings, headers=headers)


class _Pool(multiprocessing.pool.Pool):
    """multiprocessing's pool, with two mends.

    Its terminate() cannot hang on a worker killed while it waited for a task. Such a worker dies holding the
    task queue's read lock, which `terminate` takes before it drains the queue: it would wait for ever (CPython
    issue 96062). Here it waits `STOP_TIMEOUT` at most; a lock not released by then belongs to a dead worker,
    so nobody else reads the queue and it is drained without the lock.

    Its worker handler wakes only when a worker exits or the pool stops, to poll every worker (64 selectors at
    `--concurrency 64`) and replace the dead. multiprocessing's own also wakes for each result not read at once
    (the main thread is parsing), often more than once, and whenever no task is left in flight, which a crawl
    whose parser is slower than its fetches reaches every few pages: with 64 workers, the first cost 0.4 ms of
    CPU a page and the second about 1 ms, in GIL hand-overs with the parsing main thread."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._cache.notifier = _WhileStopping(self)  # type: ignore[attr-defined]

    def _get_sentinels(self) -> list[Any]:
        # What wakes the worker handler, besides the workers' own sentinels (one exited): the pool's notifier,
        # which close() and terminate() signal, and the last outstanding task's end once they have. As
        # multiprocessing's ThreadPool has it.
        return [self._change_notifier._reader]  # type: ignore[attr-defined]

    @staticmethod
    def _help_stuff_finish(inqueue: Any, task_handler: threading.Thread, size: int) -> None:
        inqueue._rlock.acquire(timeout=STOP_TIMEOUT)
        while task_handler.is_alive() and inqueue._reader.poll():  # as multiprocessing's own
            inqueue._reader.recv()
            time.sleep(0)


class _WhileStopping:
    """The notifier of a `_Pool`'s task cache, which tells the worker handler that no task is left in flight:
    what lets a closing pool's handler finish. While the pool runs, the handler has nothing to do with it (it
    replaces dead workers, whose sentinels wake it anyway), so it is told only once close() or terminate() has
    begun; both signal the notifier themselves after they change the pool's state, so no last task is missed."""

    def __init__(self, pool: _Pool) -> None:
        # A weak reference: the pool holds this notifier, and a pool left to the garbage collector would keep its
        # pipes and workers' sentinels open until a collection (it is otherwise freed, and its finaliser run, once
        # the fetcher lets go of it).
        self._pool = weakref.ref(pool)
        self._notifier = pool._change_notifier  # type: ignore[attr-defined]

    def put(self, item: object) -> None:
        """Pass the cache's news on, if the pool is stopping."""
        pool = self._pool()
        if pool is None or pool._state != multiprocessing.pool.RUN:  # type: ignore[attr-defined]
            self._notifier.put(item)


class ProcessFetcher(Fetcher):
    """`concurrency` worker processes, each doing blocking requests calls; bodies come back pickled."""

    name = "process"
    # What a worker runs for each URL. A module-level function, as it is sent to the workers by name; a subclass
    # may name another that wraps `fetch_one`.
    work = staticmethod(fetch_one)

    def __init__(self, settings: FetchSettings) -> None:
        super().__init__(settings)
        # forkserver: workers start from a clean single-threaded server, not a fork of a threaded parent. The
        # server imports this module (requests with it) once, so a worker is a copy-on-write fork of it: about
        # 17 ms of CPU and 7 MB of its own memory, where importing requests in each worker took 130 ms and 17 MB.
        # (Only the first pool of a process starts the server, so only its preload list counts.)
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload(["__main__", __name__])
        # Wait until every worker is up, so that the crawl (and its politeness timing) starts with them.
        ready = context.Barrier(settings.concurrency + 1)
        self._pool = _Pool(settings.concurrency, _init_worker, (settings, ready, http_environment()), context=context)
        ready.wait(STARTUP_TIMEOUT)
        ready.abort()  # a worker started later, to replace one that died, must not wait for the others

    def _start(self, url: str, delivery: Delivery, headers: Headers | None) -> None:
        """Send the URL to a worker; the result (or what the fetch raised) arrives on the pool's result-handler
        thread."""
        self._pool.apply_async(self.work, (url, headers), callback=delivery, error_callback=delivery.fail)

    def _release(self) -> None:
        self._pool.close()
        self._pool.join()

    def _stop_now(self) -> None:
        # Also what `close` needs once a worker died mid-fetch: the pool never forgets its task, so join() would
        # wait for ever.
        self._pool.terminate()
