"""The one interface every fetch backend implements, and the picklable result that comes back to the engine."""

from __future__ import annotations

import errno
import os
import socket
import time
import urllib.request
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from enum import StrEnum
from types import TracebackType
from typing import ClassVar


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


def environment_matters() -> bool:
    """Whether proxy variables (HTTP_PROXY, NO_PROXY...) or a netrc file are set. Only then must an HTTP
    client consult the environment (`trust_env`), which requests and aiohttp do on every request: an
    environment scan and netrc file checks, in aiohttp's case on an executor thread, about a tenth of the
    asyncio backend's samples when profiled."""
    netrc_files = [os.environ.get("NETRC", ""), os.path.expanduser("~/.netrc"), os.path.expanduser("~/_netrc")]
    return bool(urllib.request.getproxies()) or any(os.path.isfile(path) for path in netrc_files if path)


class DeadlineExceeded(TimeoutError):
    """The whole response did not arrive within the request's total deadline."""


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


ResultCallback = Callable[[FetchResult], None]


def error_result(
    url: str, kind: str, exc: BaseException, elapsed_ms: float = 0.0, status: int | None = None
) -> FetchResult:
    """Build the result for a request that failed with `exc` (after the headers, if `status` is known)."""
    message = str(exc) or type(exc).__name__
    return FetchResult(url=url, status=status, elapsed_ms=elapsed_ms, error_kind=kind, error_message=message)


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
            raise DeadlineExceeded(f"the response took longer than {self._timeout:g} s")
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


class Fetcher(ABC):
    """A backend: `submit` starts a fetch without blocking on the network, `close` waits for all of them.

    `on_result` is called exactly once per submitted URL, success or failure, on whatever thread the backend
    uses; callers must only hand the result over (e.g. put it on a queue) from there.
    """

    name: ClassVar[str]

    def __init__(self, settings: FetchSettings) -> None:
        self.settings = settings

    @abstractmethod
    def submit(self, url: str, on_result: ResultCallback) -> None:
        """Start fetching `url`; `on_result` receives its `FetchResult`."""

    @abstractmethod
    def close(self) -> None:
        """Wait for every submitted fetch to report, then release sessions and workers."""

    def __enter__(self) -> Fetcher:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
