"""asyncio backend: one `aiohttp.ClientSession` in an event loop on its own thread, tasks bounded by a
semaphore; callbacks run on the event-loop thread."""

from __future__ import annotations

import asyncio
import threading
import time

import aiohttp

from fetchers.base import (
    BodyReader,
    ErrorKind,
    Fetcher,
    FetchResult,
    FetchSettings,
    ResultCallback,
    environment_matters,
    error_result,
    os_error_kind,
)


def _error_kind(exc: BaseException) -> ErrorKind:
    if isinstance(exc, TimeoutError):  # asyncio's timeouts and aiohttp's ServerTimeoutError are TimeoutErrors
        return ErrorKind.TIMEOUT
    if isinstance(exc, aiohttp.InvalidURL | ValueError):
        return ErrorKind.INVALID_URL
    if isinstance(exc, aiohttp.ClientConnectorDNSError):
        return ErrorKind.DNS
    if isinstance(exc, aiohttp.ClientPayloadError):
        return ErrorKind.DECODING if "encoding" in str(exc).lower() else ErrorKind.INCOMPLETE
    return os_error_kind(exc)


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

    async def _fetch(self, url: str) -> FetchResult:
        start = time.perf_counter()
        status = None
        try:
            async with self._session.get(url, allow_redirects=False) as response:
                status = response.status
                reader = BodyReader(self.settings, start)
                async for chunk in response.content.iter_any():  # decompressed, bounded per chunk
                    if not reader.add(chunk, time.perf_counter()):
                        break
                return reader.result(url, status, response.headers)
        except (aiohttp.ClientError, OSError, ValueError) as exc:
            # OSError includes asyncio's TimeoutError; ValueError is yarl rejecting a malformed URL.
            return error_result(url, _error_kind(exc), exc, (time.perf_counter() - start) * 1000, status)

    async def _fetch_and_report(self, url: str, on_result: ResultCallback) -> None:
        async with self._slots:
            result = await self._fetch(url)
        on_result(result)

    def _start(self, url: str, on_result: ResultCallback) -> None:
        task = self._loop.create_task(self._fetch_and_report(url, on_result))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def submit(self, url: str, on_result: ResultCallback) -> None:
        """Hand the URL to the event loop, which starts a task for it; safe to call from any thread."""
        self._loop.call_soon_threadsafe(self._start, url, on_result)

    async def _shutdown(self) -> None:
        while self._tasks:
            await asyncio.gather(*self._tasks)
        await self._session.close()

    def close(self) -> None:
        """Wait for every task, close the session, stop the loop and its thread."""
        asyncio.run_coroutine_threadsafe(self._shutdown(), self._loop).result()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
        self._loop.close()
