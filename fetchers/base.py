"""The one interface every fetch backend implements, and the picklable result that comes back to the engine."""

from __future__ import annotations

import errno
import os
import queue
import socket
import threading
import time
import urllib.request
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from enum import StrEnum
from types import TracebackType
from typing import ClassVar, TypeVar

T = TypeVar("T")

# A backend that fetches on the caller's thread (asyncio, gevent) gets a turn (`_catch_up`) at least this often
# (seconds) while the caller works through results already handed over, at its next `next_result`: answers that arrived
# meanwhile are read and new requests go out, so that a request's deadline and elapsed time are not spent on the
# caller's backlog. A turn costs some tens of us, and fewer events handled in each.
CATCH_UP_INTERVAL = 0.01

# How long `abandon` gives a backend's workers to wind down before it returns.
STOP_TIMEOUT = 1.0


class ErrorKind(StrEnum):
    """Why a fetch failed; stored in the `error_kind` column."""

    TIMEOUT = "timeout"
    DNS = "dns"
    REFUSED = "refused"
    CONNECTION = "connection"
    INCOMPLETE = "incomplete"  # the body ended before its Content-Length, or the connection broke mid-body
    INVALID_URL = "invalid-url"
    DECODING = "decoding"
    OTHER = "error"


def http_environment() -> dict[str, str]:
    """The environment variables HTTP clients consult, as set now: the proxy variables (HTTP_PROXY, NO_PROXY...,
    either case), NETRC and HOME (where a netrc file is found), and the CA bundle variables requests reads."""
    return {
        name: value
        for name, value in os.environ.items()
        if name.lower().endswith("_proxy") or name in ("NETRC", "HOME", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE")
    }


def environment_matters() -> bool:
    """Whether proxy variables (HTTP_PROXY, NO_PROXY...) or a netrc file are set. Only then must an HTTP
    client consult the environment (`trust_env`), which requests and aiohttp do on every request: an
    environment scan and netrc file checks, in aiohttp's case on an executor thread, about a tenth of the
    asyncio backend's samples when profiled."""
    netrc_files = [os.environ.get("NETRC", ""), os.path.expanduser("~/.netrc"), os.path.expanduser("~/_netrc")]
    return bool(urllib.request.getproxies()) or any(os.path.isfile(path) for path in netrc_files if path)


class DeadlineExceeded(TimeoutError):
    """The whole response did not arrive within the request's total deadline."""

    @classmethod
    def after(cls, timeout: float) -> DeadlineExceeded:
        """The error of a request that took longer than `timeout` seconds, with the same message on every backend."""
        return cls(f"the response took longer than {timeout:g} s")


@dataclass(frozen=True, slots=True)
class FetchSettings:
    """What every backend needs to know to fetch. Backends do not follow redirects: the engine does."""

    concurrency: int
    timeout: float  # total deadline for one request, from connecting to the last body byte
    connect_timeout: float
    user_agent: str
    max_size: int  # body bytes kept, counted after decompression; the rest is not read


@dataclass(frozen=True, slots=True)
class FetchResult:
    """The outcome of one request: a response, or an error kind and message. Builtins only, so it pickles."""

    url: str
    status: int | None = None
    content_type: str | None = None
    body: bytes = b""
    elapsed_ms: float = 0.0
    error_kind: str | None = None
    error_message: str | None = None
    location: str | None = None  # Location header of a redirect
    retry_after: str | None = None  # Retry-After header, as sent
    truncated: bool = False  # the body was longer than max_size and was cut there
    etag: str | None = None  # ETag header, as sent: a later request may ask "If-None-Match" with it
    last_modified: str | None = None  # Last-Modified header, as sent: for a later "If-Modified-Since"


ResultCallback = Callable[[FetchResult], None]
Headers = dict[str, str]  # request headers beyond the session's, a plain dict so that it pickles


def error_result(
    url: str, kind: str, exc: BaseException, elapsed_ms: float = 0.0, status: int | None = None
) -> FetchResult:
    """Build the result for a request that failed with `exc` (after the headers, if `status` is known)."""
    message = str(exc) or type(exc).__name__
    return FetchResult(url=url, status=status, elapsed_ms=elapsed_ms, error_kind=kind, error_message=message)


def split_target(url: str) -> tuple[str | None, str | None]:
    """(authority, request target) of an absolute URL as it is written, byte for byte and without fragment:
    `http://u@h:8080/a%41?q` -> (`u@h:8080`, `/a%41?q`); (None, None) when it has no `scheme://authority/`."""
    start = url.find("://")
    slash = url.find("/", start + 3) if start >= 0 else -1
    if slash < 0:
        return None, None
    return url[start + 3 : slash], url[slash:].partition("#")[0]


class BodyReader:
    """Collects body chunks up to `max_size` bytes before a deadline; shared by every backend's read loop."""

    def __init__(self, settings: FetchSettings, start: float) -> None:
        self._start = start
        self._max_size = settings.max_size
        self._timeout = settings.timeout
        self._deadline = start + settings.timeout
        self._chunks: list[bytes] = []
        self.size = 0
        self.truncated = False

    def add(self, chunk: bytes, now: float) -> bool:
        """Keep `chunk`; False once the cap is reached (stop reading). Raises `DeadlineExceeded` when late."""
        if now > self._deadline:
            raise DeadlineExceeded.after(self._timeout)
        self._chunks.append(chunk)
        self.size += len(chunk)
        if self.size > self._max_size:
            self.truncated = True
            return False
        return True

    def result(self, url: str, status: int, headers: Mapping[str, str]) -> FetchResult:
        """The result of the response read: its status, the headers that matter, the body kept."""
        return FetchResult(
            url=url,
            status=status,
            content_type=headers.get("Content-Type"),
            body=b"".join(self._chunks)[: self._max_size],
            elapsed_ms=(time.perf_counter() - self._start) * 1000,
            location=headers.get("Location"),
            retry_after=headers.get("Retry-After"),
            truncated=self.truncated,
            etag=headers.get("ETag"),
            last_modified=headers.get("Last-Modified"),
        )


def _chain(exc: BaseException) -> Iterator[BaseException]:
    """`exc`, then its causes, then the exceptions HTTP libraries keep in `args` or `reason`."""
    seen: set[int] = set()
    stack = [exc]
    while stack:
        current = stack.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        nested = [current.__cause__, current.__context__, getattr(current, "reason", None), *current.args]
        stack.extend(e for e in reversed(nested) if isinstance(e, BaseException))


def os_error_kind(exc: BaseException) -> ErrorKind:
    """Classify a network failure by the standard-library error somewhere in its chain of causes."""
    for cause in _chain(exc):
        if isinstance(cause, socket.gaierror):
            return ErrorKind.DNS
        if isinstance(cause, ConnectionRefusedError):
            return ErrorKind.REFUSED
        if isinstance(cause, TimeoutError):
            return ErrorKind.TIMEOUT
        if isinstance(cause, OSError) and cause.errno == errno.ECONNREFUSED:
            return ErrorKind.REFUSED  # aiohttp's ClientConnectorError copies the errno, not the class

    return ErrorKind.CONNECTION


class Delivery:
    """The way back for one submitted request: hands its result to `on_result`, once. A second result, or one
    for a request that was abandoned, is dropped. Backends run each fetch under `guard()`."""

    __slots__ = ("_book", "_on_result", "made", "url")

    def __init__(self, book: _Outstanding, url: str, on_result: ResultCallback) -> None:
        self._book = book
        self._on_result = on_result
        self.url = url
        self.made = False  # the result was handed over

    def __call__(self, result: FetchResult) -> None:
        """Hand `result` over, unless this request already has a result or was abandoned."""
        if self._book.settle(self):
            self._on_result(result)

    def fail(self, exc: BaseException) -> None:
        """Hand over an `error` result naming `exc`, which the fetch raised."""
        message = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        self(FetchResult(url=self.url, error_kind=ErrorKind.OTHER, error_message=message))

    @contextmanager
    def guard(self) -> Iterator[None]:
        """Run a fetch and its hand-over: any exception escaping them becomes the request's `error` result.
        One raised by `on_result` itself, once it has the result, is not hidden."""
        try:
            yield
        except Exception as exc:
            if self.made:
                raise
            self.fail(exc)


class _Outstanding:
    """The deliveries not made yet, so that `close` knows when every request has reported, and which were lost."""

    def __init__(self) -> None:
        self._changed = threading.Condition(threading.Lock())
        self._open: set[Delivery] = set()
        self._news = time.monotonic()  # when a request was last submitted or reported

    def open(self, url: str, on_result: ResultCallback) -> Delivery:
        """A delivery for a request being submitted."""
        delivery = Delivery(self, url, on_result)
        with self._changed:
            self._open.add(delivery)
            self._news = time.monotonic()
        return delivery

    def settle(self, delivery: Delivery) -> bool:
        """Close `delivery` as made; False if it was closed already (made, or abandoned)."""
        with self._changed:
            if delivery not in self._open:
                return False
            self._open.remove(delivery)
            delivery.made = True
            self._news = time.monotonic()
            if not self._open:
                self._changed.notify_all()  # `wait` is done; news alone only moves its time-out, which it rechecks
            return True

    def wait(self, patience: float, work: Callable[[float], None] | None = None) -> bool:
        """Wait until every delivery is made; False once `patience` seconds pass with no request submitted or
        reported. A backend that fetches on the waiting thread does so in `work(seconds)`, which returns once a
        request has reported or the seconds have passed."""
        while True:
            with self._changed:
                if not self._open:
                    return True
                left = self._news + patience - time.monotonic()
                if left <= 0:
                    return False
                if work is None:
                    self._changed.wait(left)
                    continue
            work(left)

    def pending(self) -> list[Delivery]:
        """The deliveries not made yet."""
        with self._changed:
            return list(self._open)

    def abandon(self) -> None:
        """Close every open delivery unmade: results that come later are dropped."""
        with self._changed:
            self._open.clear()
            self._changed.notify_all()


class Fetcher(ABC):
    """A backend: `submit` starts a fetch without blocking on the network, `next_result` waits for one,
    `close` waits for all of them, `abandon` stops at once.

    `on_result` is called exactly once per submitted URL, success or failure, whatever the backend raises, on
    whatever thread the backend uses; callers must only hand the result over (e.g. put it on a queue) from there,
    and wait for it with `next_result`: a backend may fetch on the caller's thread, while the caller waits (asyncio
    and gevent do). The base class keeps that promise (`Delivery`); a backend implements `_start`, `_release` and
    `_stop_now`; one that fetches on the caller's thread, `_catch_up`, and `_work` if it fetches only when the
    caller hands it the thread (asyncio).
    """

    name: ClassVar[str]
    # How long `close` waits, beyond the request deadline, for news of requests in flight before it declares
    # them lost (a process-pool worker killed mid-fetch never reports).
    close_grace: ClassVar[float] = 5.0

    def __init__(self, settings: FetchSettings) -> None:
        self.settings = settings
        self._outstanding = _Outstanding()
        self._stopped = False

    def submit(self, url: str, on_result: ResultCallback, headers: Headers | None = None) -> None:
        """Start fetching `url` without waiting for the network; `on_result` receives its `FetchResult`, once.
        `headers` are sent besides the session's (a conditional request's `If-None-Match`, for one). A backend
        failing to start it, or its fetch raising, gives an `error` result naming the exception."""
        delivery = self._outstanding.open(url, on_result)
        with delivery.guard():
            self._start(url, delivery, headers)

    def next_result(self, results: queue.Queue[T], timeout: float) -> T:
        """The next item the `on_result` callbacks put on `results`, waiting at most `timeout` seconds for it
        (`queue.Empty` after that). A backend that fetches on the caller's thread fetches meanwhile: with a
        `timeout` of 0 and nothing handed over yet, one turn over what is ready, so that a caller that polls
        between its own work keeps it going; while results wait, a turn every `CATCH_UP_INTERVAL`."""
        handed_over = not results.empty()
        if handed_over or timeout <= 0:  # no waiting: a turn when polled, or when one is due while results wait
            due = not handed_over or time.monotonic() - self._last_turn >= CATCH_UP_INTERVAL
            if self._catch_up is not None and due:
                self._catch_up()
                self._last_turn = time.monotonic()
            return results.get_nowait()
        if self._work is None:
            return results.get(timeout=timeout)
        self._work(timeout)
        self._last_turn = time.monotonic()
        return results.get_nowait()

    # Fetching on the caller's thread, for a backend that fetches only when handed the thread: run the requests in
    # flight until one reports or the seconds given have passed. None for one whose workers fetch by themselves.
    _work: Callable[[float], None] | None = None
    # For a backend that fetches on the caller's thread: one turn over what is ready (answers read, requests sent),
    # taken while the caller works through results already handed over. None for one that fetches by itself.
    _catch_up: Callable[[], None] | None = None
    _last_turn = 0.0  # time.monotonic() when `_work` or `_catch_up` last returned

    @abstractmethod
    def _start(self, url: str, delivery: Delivery, headers: Headers | None) -> None:
        """Start fetching `url` with `headers` without blocking on the network; the fetch runs under
        `delivery.guard()` (or, across a process boundary, its exception reaches `delivery.fail`) and hands its
        result to `delivery`."""

    @abstractmethod
    def _release(self) -> None:
        """Every request has reported: let the workers finish, then release them and the sessions."""

    @abstractmethod
    def _stop_now(self) -> None:
        """Stop every request in flight and release workers and sessions, within `STOP_TIMEOUT` or so."""

    def close(self) -> None:
        """Wait for every submitted fetch to report, then release sessions and workers.

        Never hangs: once `settings.timeout + close_grace` seconds pass with no request submitted or reported,
        those still out are lost (a worker died): each gets an `error` result, and the backend is stopped at once."""
        if self._stopped:
            return
        patience = self.settings.timeout + self.close_grace
        if self._outstanding.wait(patience, self._work):
            self._release()
        else:
            message = f"lost by the {self.name} backend: no result, and no news of any request for {patience:g} s"
            for delivery in self._outstanding.pending():
                delivery(FetchResult(url=delivery.url, error_kind=ErrorKind.OTHER, error_message=message))
            self._stop_now()
        self._stopped = True

    def abandon(self) -> None:
        """Stop now, without waiting for requests in flight (a forced stop, e.g. a second Ctrl-C): returns
        within a second or two, workers and sessions released. The requests not reported yet never are: once
        this returns, `on_result` is not called again (but for a call already under way). Safe after an
        interrupted `close`."""
        if self._stopped:
            return
        self._outstanding.abandon()
        self._stop_now()
        self._stopped = True

    def __enter__(self) -> Fetcher:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
