"""asyncio backend: one `aiohttp.ClientSession` in an event loop on its own thread, tasks bounded by a
semaphore; callbacks run on the event-loop thread."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time

import aiohttp
from yarl import URL

from fetchers.base import (
    STOP_TIMEOUT,
    BodyReader,
    DeadlineExceeded,
    Delivery,
    ErrorKind,
    Fetcher,
    FetchResult,
    FetchSettings,
    Headers,
    environment_matters,
    error_result,
    os_error_kind,
    split_target,
)


def _error_kind(exc: BaseException) -> ErrorKind:
    if isinstance(exc, TimeoutError):  # asyncio's timeouts and aiohttp's ServerTimeoutError are TimeoutErrors
        return ErrorKind.TIMEOUT
    if isinstance(exc, aiohttp.InvalidURL | aiohttp.NonHttpUrlClientError | ValueError):  # as requests says
        return ErrorKind.INVALID_URL
    if isinstance(exc, aiohttp.ClientConnectorDNSError):
        return ErrorKind.DNS
    if isinstance(exc, aiohttp.ClientPayloadError):
        return ErrorKind.DECODING if "encoding" in str(exc).lower() else ErrorKind.INCOMPLETE
    return os_error_kind(exc)


def _as_given(url: str) -> URL:
    """`url` for aiohttp to send as it is written: the engine's URLs are already what a browser sends (the WHATWG
    serialisation), and yarl would re-encode them and drop an empty query (`/page?`). A malformed URL raises
    `ValueError`, as yarl does."""
    parsed = URL(url)  # validates the host and port
    authority, target = split_target(url)
    if authority is None or target is None:
        return parsed  # no path: aiohttp sends `/`, as a browser does
    return URL.build(scheme=parsed.scheme, authority=authority, path=target, encoded=True)


class AsyncioFetcher(Fetcher):
    """Coroutines on one event loop; `concurrency` requests at once through one connection pool."""

    name = "asyncio"

    def __init__(self, settings: FetchSettings) -> None:
        super().__init__(settings)
        self._loop = asyncio.new_event_loop()
        self._tasks: set[asyncio.Task[None]] = set()
        self._thread = threading.Thread(target=self._loop.run_forever, name="asyncio-fetcher", daemon=True)
        self._thread.start()
        self._session, self._slots = asyncio.run_coroutine_threadsafe(self._open(), self._loop).result()

    async def _open(self) -> tuple[aiohttp.ClientSession, asyncio.Semaphore]:
        session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(
                total=self.settings.timeout,  # covers reading the body too
                sock_connect=self.settings.connect_timeout,
            ),
            headers={"User-Agent": self.settings.user_agent},
            connector=aiohttp.TCPConnector(limit=self.settings.concurrency),
            trust_env=environment_matters(),  # honour HTTP(S)_PROXY / NO_PROXY and netrc, as requests does
        )
        return session, asyncio.Semaphore(self.settings.concurrency)

    async def _fetch(self, url: str, headers: Headers | None) -> FetchResult:
        start = time.perf_counter()
        status = None
        try:
            async with self._session.get(_as_given(url), headers=headers, allow_redirects=False) as response:
                status = response.status
                reader = BodyReader(self.settings, start)
                async for chunk in response.content.iter_any():  # decompressed, bounded per chunk
                    if not reader.add(chunk, time.perf_counter()):
                        break
                return reader.result(url, status, response.headers)
        except (aiohttp.ClientError, OSError, ValueError) as exc:
            # OSError includes asyncio's TimeoutError; ValueError is yarl rejecting a malformed URL.
            elapsed = time.perf_counter() - start
            kind = _error_kind(exc)
            if kind is ErrorKind.TIMEOUT and elapsed >= self.settings.timeout:
                # The total deadline, which aiohttp reports as a bare TimeoutError: say so as the other backends do.
                exc = DeadlineExceeded.after(self.settings.timeout)
            return error_result(url, kind, exc, elapsed * 1000, status)

    async def _fetch_and_report(self, url: str, delivery: Delivery, headers: Headers | None) -> None:
        with delivery.guard():
            async with self._slots:
                result = await self._fetch(url, headers)
            delivery(result)

    def _spawn(self, url: str, delivery: Delivery, headers: Headers | None) -> None:
        with delivery.guard():
            task = self._loop.create_task(self._fetch_and_report(url, delivery, headers))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    def _start(self, url: str, delivery: Delivery, headers: Headers | None) -> None:
        """Hand the URL to the event loop, which starts a task for it; safe to call from any thread."""
        self._loop.call_soon_threadsafe(self._spawn, url, delivery, headers)

    async def _shutdown(self) -> None:
        while self._tasks:
            await asyncio.gather(*self._tasks)
        await self._session.close()

    async def _cancel(self) -> None:
        for task in self._tasks:
            task.cancel()
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=STOP_TIMEOUT)
        await self._session.close()

    def _release(self) -> None:
        asyncio.run_coroutine_threadsafe(self._shutdown(), self._loop).result()
        self._stop_loop(None)

    def _stop_now(self) -> None:
        if self._loop.is_running():  # not stopped already by an interrupted close()
            # A task that ignores its cancellation does not hold this up: the loop is stopped under it.
            with contextlib.suppress(TimeoutError):
                asyncio.run_coroutine_threadsafe(self._cancel(), self._loop).result(2 * STOP_TIMEOUT)
        self._stop_loop(STOP_TIMEOUT)

    def _stop_loop(self, timeout: float | None) -> None:
        if self._loop.is_closed():
            return
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout)
        if not self._thread.is_alive():
            self._loop.close()
