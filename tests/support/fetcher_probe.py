"""Drive one fetcher directly and report what its callbacks saw: for the fetcher contract and deadline tests.

`probe` runs the fetcher in this process for the thread, process and asyncio backends, and for gevent in a
subprocess that monkey-patches before anything else is imported. While probing, `BodyReader.result`, in
whichever process fetches, replaces each body with a description of where it runs (process, thread,
greenlet). A URL with `/boom` in it makes it raise a RuntimeError instead, and one with `/lost` kills the
process-pool worker fetching it, and the others with it; the other backends' probe classes drop such a request
in `_start`, as a backend with a bug would.
"""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import itertools
import json
import multiprocessing
import os
import queue
import signal
import subprocess
import sys
import threading
import time
import weakref
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import psutil

from fetchers import Fetcher, FetchResult, FetchSettings, get_fetcher
from fetchers.base import BodyReader, Delivery, Headers
from fetchers.process_pool import ProcessFetcher, fetch_one
from fetchers.reaper import REAPER

ROOT = Path(__file__).resolve().parents[2]


_greenlets: weakref.WeakKeyDictionary[Any, int] = weakref.WeakKeyDictionary()
_greenlet_numbers = itertools.count(1)


def _greenlet() -> int | None:
    """The number of the current greenlet, under gevent: unlike its id(), never reused."""
    if "gevent" not in sys.modules:
        return None
    import gevent

    current = gevent.getcurrent()
    if current not in _greenlets:
        _greenlets[current] = next(_greenlet_numbers)
    return _greenlets[current]


@dataclass(frozen=True)
class Place:
    """Where some code runs."""

    pid: int
    thread: str  # the thread's name
    os_thread: int  # native id of the operating-system thread
    greenlet: int | None  # under gevent

    @classmethod
    def here(cls) -> Place:
        """Where the caller runs."""
        return cls(os.getpid(), threading.current_thread().name, threading.get_native_id(), _greenlet())


@dataclass(frozen=True)
class Seen:
    """One call of `on_result`."""

    url: str
    status: int | None
    error_kind: str | None
    error_message: str | None
    elapsed_ms: float
    at: float  # seconds after the first submit
    fetched_in: Place | None  # where the body was read (pages only)
    called_in: Place  # where `on_result` ran


@dataclass
class Report:
    """What a probe saw."""

    seen: list[Seen]  # in the order of the calls, until close() or abandon() returned
    late: list[Seen]  # calls after close() or abandon() returned, until the fetcher's workers were all gone
    stop_seconds: float  # how long close() or abandon() took
    main: Place  # the probe's main thread
    leftover: list[str]  # workers the fetcher started that still ran 2 s after it stopped

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Report:
        """The report a subprocess printed."""
        return cls(
            seen=[_seen(item) for item in data["seen"]],
            late=[_seen(item) for item in data["late"]],
            stop_seconds=data["stop_seconds"],
            main=Place(**data["main"]),
            leftover=data["leftover"],
        )

    def by_url(self) -> dict[str, list[Seen]]:
        """The calls for each URL."""
        calls: dict[str, list[Seen]] = {}
        for seen in self.seen:
            calls.setdefault(seen.url, []).append(seen)
        return calls


def _seen(item: Mapping[str, Any]) -> Seen:
    fields = dict(item)
    fetched_in = fields.pop("fetched_in")
    called_in = fields.pop("called_in")
    return Seen(**fields, fetched_in=Place(**fetched_in) if fetched_in else None, called_in=Place(**called_in))


_original_result = BodyReader.result


def _probing_result(self: BodyReader, url: str, status: int, headers: Mapping[str, str]) -> FetchResult:
    if "/boom" in url:
        raise RuntimeError("injected into the body reader")
    if "/lost" in url:  # in a process-pool worker: kill every worker, busy or idle (see ProcessFetcher's _Pool)
        for worker in psutil.Process(os.getppid()).children():  # the forkserver's
            if worker.pid != os.getpid():
                worker.send_signal(signal.SIGKILL)
        os.kill(os.getpid(), signal.SIGKILL)
    result = _original_result(self, url, status, headers)
    return dataclasses.replace(result, body=json.dumps(asdict(Place.here())).encode())


@contextmanager
def _probing() -> Iterator[None]:
    BodyReader.result = _probing_result
    try:
        yield
    finally:
        BodyReader.result = _original_result


def probing_fetch_one(url: str, headers: Headers | None = None) -> FetchResult:
    """A process-pool worker's work while probing: `fetch_one`, its body reader instrumented."""
    BodyReader.result = _probing_result  # this worker process is the probe's alone
    return fetch_one(url, headers)


class ProbeProcessFetcher(ProcessFetcher):
    """The process backend, its workers probing."""

    work = staticmethod(probing_fetch_one)


def fetcher_class(backend: str, grace: float | None) -> type[Fetcher]:
    """The backend's class for probing: `/lost` requests lost, `close_grace` set if `grace` is given."""
    base = ProbeProcessFetcher if backend == "process" else get_fetcher(backend)

    class Probe(base):
        close_grace = base.close_grace if grace is None else grace

        def _start(self, url: str, delivery: Delivery, headers: Headers | None) -> None:
            if "/lost" in url and backend != "process":
                return  # the process backend loses it by a worker's death
            super()._start(url, delivery, headers)

    return Probe


def _workers(baseline: set[int]) -> list[str]:
    """Threads, greenlets and child processes that were not there at `baseline` (ids)."""
    found = [f"thread {thread.name}" for thread in threading.enumerate() if thread.ident not in baseline]
    found += [f"process {child.pid}" for child in multiprocessing.active_children()]
    if "gevent" in sys.modules:
        import gevent

        found += [
            f"greenlet {greenlet!r}"
            for greenlet in gc.get_objects()
            if isinstance(greenlet, gevent.Greenlet) and not greenlet.dead and id(greenlet) not in baseline
        ]
    return found


def _baseline() -> set[int]:
    idents = {thread.ident for thread in threading.enumerate() if thread.ident is not None}
    if "gevent" in sys.modules:
        import gevent

        idents |= {id(greenlet) for greenlet in gc.get_objects() if isinstance(greenlet, gevent.Greenlet)}
    return idents


def run_probe(
    backend: str,
    urls: list[str],
    concurrency: int = 4,
    timeout: float = 5.0,
    abandon_after: float | None = None,
    grace: float | None = None,
    work_per_result: float | None = None,
) -> Report:
    """Submit `urls` at once, then close() the fetcher, or abandon() it `abandon_after` seconds later. With
    `work_per_result`, first take the results one at a time as a crawl does, and keep the CPU busy that many
    seconds after each (a parse), until every URL has reported."""
    REAPER.release(REAPER.watch(0.0))  # the deadline thread, started for good, is not one of the fetcher's
    baseline = _baseline()
    settings = FetchSettings(
        concurrency=concurrency, timeout=timeout, connect_timeout=timeout, user_agent="probe", max_size=1_000_000
    )
    calls: list[tuple[FetchResult, Place, float]] = []
    arrived: queue.Queue[FetchResult] = queue.Queue()

    def on_result(result: FetchResult) -> None:
        calls.append((result, Place.here(), time.perf_counter()))
        arrived.put(result)

    with _probing():
        fetcher = fetcher_class(backend, grace)(settings)
        start = time.perf_counter()
        for url in urls:
            fetcher.submit(url, on_result)
        for _ in urls if work_per_result is not None else ():
            fetcher.next_result(arrived, timeout + 5)
            busy_until = time.perf_counter() + (work_per_result or 0.0)
            while time.perf_counter() < busy_until:  # no I/O, no yielding: a parse
                pass
        if abandon_after is None:
            fetcher.close()
        else:
            while (left := start + abandon_after - time.perf_counter()) > 0:  # waiting as a crawl does
                with contextlib.suppress(queue.Empty):
                    fetcher.next_result(arrived, left)
            stopping = time.perf_counter()
            fetcher.abandon()
        stopped = time.perf_counter()
        made = len(calls)
        # Once its workers are gone a fetcher can call back no more: until then, calls are late ones.
        leftover = _workers(baseline)
        for _ in range(20):
            if not leftover:
                break
            time.sleep(0.1)
            leftover = _workers(baseline)

    def seen(result: FetchResult, place: Place, at: float) -> Seen:
        fetched_in = Place(**json.loads(result.body)) if result.body.startswith(b"{") else None
        return Seen(
            result.url, result.status, result.error_kind, result.error_message, result.elapsed_ms, at - start,
            fetched_in, place,
        )  # fmt: skip

    return Report(
        seen=[seen(*call) for call in calls[:made]],
        late=[seen(*call) for call in calls[made:]],
        stop_seconds=stopped - (start if abandon_after is None else stopping),
        main=Place.here(),
        leftover=leftover,
    )


def probe(backend: str, urls: list[str], **options: Any) -> Report:
    """`run_probe`, for gevent in a subprocess of its own, monkey-patched."""
    if backend != "gevent":
        return run_probe(backend, urls, **options)
    code = "from gevent import monkey; monkey.patch_all(); from tests.support.fetcher_probe import main; main()"
    done = subprocess.run(
        [sys.executable, "-c", code, json.dumps({"backend": backend, "urls": urls, **options})],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONWARNINGS": "error"},
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return Report.from_json(json.loads(done.stdout))


def main() -> None:
    """Run the probe that the JSON in argv[1] describes; print its report as JSON."""
    report = run_probe(**json.loads(sys.argv[1]))
    sys.stdout.write(json.dumps(asdict(report)))
