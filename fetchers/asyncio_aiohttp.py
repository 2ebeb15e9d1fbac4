"""asyncio backend: one `aiohttp.ClientSession` in an event loop, tasks bounded by a semaphore. The loop runs
on the caller's thread, while it waits for results (`next_result`, `close`), and calls back there; while the
caller works through results already handed over, `next_result` gives it one pass at least every
`fetchers.base.CATCH_UP_INTERVAL`, and one each time the caller polls (a timeout of 0), so that answers are
read and requests sent as they come.

A loop on a thread of its own fetches while the caller parses, but on the bench's site it cost more than it
overlapped: the same loop work (the same passes and I/O events) took its thread twice the CPU beside a
beautifulsoup4 parse, most likely from the GIL changing hands at each of the loop's system calls while the
parser takes it back for every element. On the caller's thread, a crawl took 0.5-0.8 ms a page less CPU with
bs4 and was faster with lxml too (docs/performance.md, "The event loop on the caller's thread")."""

from __future__ import annotations

import asyncio
import contextlib
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
    """Coroutines on one event loop, run by the caller's thread while it waits; `concurrency` requests at once
    through one connection pool. Used from one thread: the one that made it."""

    name = "asyncio"

    def __init__(self, settings: FetchSettings) -> None:
        super().__init__(settings)
        self._loop = asyncio.new_event_loop()
        self._tasks: set[asyncio.Task[None]] = set()
        self._waiting = False  # the loop runs for a caller waiting for a result: the next one ends the wait
        self._session, self._slots = self._loop.run_until_complete(self._open())
        self._work = self._run_until_result
        self._catch_up = self._one_pass

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
        try:
            with delivery.guard():
                async with self._slots:
                    result = await self._fetch(url, headers)
                delivery(result)
        finally:
            if self._waiting:
                self._loop.stop()  # after this pass of the loop: the caller has a result to handle

    def _run_until_result(self, seconds: float) -> None:
        """Run the loop until a request reports (with whatever else is ready in that pass) or `seconds` pass."""
        timer = self._loop.call_later(seconds, self._loop.stop)
        try:
            self._run()
        finally:
            timer.cancel()

    def _one_pass(self) -> None:
        """Run the loop once over what is ready."""
        self._loop.stop()  # before it runs: one pass, then back (asyncio's documented idiom)
        self._run()

    def _run(self) -> None:
        self._waiting = True
        try:
            self._loop.run_forever()
        finally:
            self._waiting = False

    def _start(self, url: str, delivery: Delivery, headers: Headers | None) -> None:
        """Start a task for the URL; it runs once the caller waits."""
        task = self._loop.create_task(self._fetch_and_report(url, delivery, headers))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

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
        self._loop.run_until_complete(self._shutdown())
        self._loop.close()

    def _stop_now(self) -> None:
        if self._loop.is_closed():  # by an interrupted close()
            return
        # A task that ignores its cancellation does not hold this up: the loop is closed under it.
        with contextlib.suppress(TimeoutError):
            self._loop.run_until_complete(asyncio.wait_for(self._cancel(), 2 * STOP_TIMEOUT))
        self._loop.close()
