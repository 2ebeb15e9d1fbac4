"""`--timeout` is a total deadline on every backend, from connecting to the last byte, headers included: a
server that never answers, trickles its headers, stalls or trickles its body costs a request `timeout`
seconds (give or take the reaper's tick and a loaded machine's lag), not `timeout` per byte."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest

from tests.support.fetcher_probe import probe

TIMEOUT = 1.0
SLACK = 2.0  # the promise: within `timeout + 2 s`
DRIP = 0.1  # seconds between the bytes of a trickle
OK = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nok"
HEAD = b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: 100000\r\n\r\n"


@dataclass
class RawServer:
    """HTTP by hand on 127.0.0.1, one behaviour per path; `/ok` answers and keeps the connection open."""

    port: int = 0
    requests: list[tuple[str, int]] = field(default_factory=list)  # (path, number of the request on its connection)
    stopping: asyncio.Event = field(default_factory=asyncio.Event)
    connections: dict[asyncio.StreamWriter, asyncio.Task[None]] = field(default_factory=dict)

    def url(self, path: str) -> str:
        """The absolute URL of `path` on this server."""
        return f"http://127.0.0.1:{self.port}{path}"

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Answer the requests of one connection until the client or `stop` closes it."""
        task = asyncio.current_task()
        assert task is not None
        self.connections[writer] = task
        try:
            with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError):
                await self._answer(reader, writer)
        finally:
            writer.close()

    async def _answer(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        for number in itertools.count(1):
            head = await reader.readuntil(b"\r\n\r\n")
            path = head.split(b" ", 2)[1].decode()
            self.requests.append((path, number))
            if path == "/ok":
                writer.write(OK)
                continue
            if path == "/trickle-headers":  # a status line, then a header that never ends
                writer.write(b"HTTP/1.1 200 OK\r\nX-Slow: ")
            elif path in ("/stall-body", "/trickle-body"):
                writer.write(HEAD + b"<html><head>")
            while path.startswith("/trickle") and not self.stopping.is_set():
                await asyncio.sleep(DRIP)
                writer.write(b"a")
                await writer.drain()
            await self.stopping.wait()  # /silent and /stall-body: nothing more
            return

    async def stop(self) -> None:
        """Close every connection, letting each handler end."""
        self.stopping.set()
        for writer in self.connections:
            writer.close()  # wakes a handler waiting for a request
        await asyncio.gather(*self.connections.values())


@pytest.fixture
def raw_server() -> Iterator[RawServer]:
    """A `RawServer` on an event loop of its own, for this test."""
    server = RawServer()
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="raw-server", daemon=True)
    thread.start()
    listening = asyncio.run_coroutine_threadsafe(asyncio.start_server(server.handle, "127.0.0.1", 0), loop).result()
    server.port = listening.sockets[0].getsockname()[1]

    async def stop() -> None:
        listening.close()
        await server.stop()
        await listening.wait_closed()

    try:
        yield server
    finally:
        asyncio.run_coroutine_threadsafe(stop(), loop).result()
        loop.call_soon_threadsafe(loop.stop)
        thread.join()
        loop.close()


def test_each_kind_of_slow_response_ends_at_the_deadline(raw_server: RawServer, backend: str) -> None:
    # One request at a time, so that each takes the keep-alive connection its `/ok` left (all but the first).
    scenarios = ["/silent", "/trickle-headers", "/stall-body", "/trickle-body"]
    paths = [path for scenario in scenarios for path in ("/ok", scenario)][1:]
    report = probe(backend, [raw_server.url(path) for path in paths], concurrency=1, timeout=TIMEOUT)

    assert [raw_server.url(path) for path in paths] == [seen.url for seen in report.seen]
    assert [number > 1 for path, number in raw_server.requests if path != "/ok"] == [False, True, True, True]
    previous = 0.0
    for path, seen in zip(paths, report.seen, strict=True):
        if path == "/ok":
            assert seen.status == 200
        else:
            assert (seen.error_kind, seen.error_message) == ("timeout", "the response took longer than 1 s"), path
            assert TIMEOUT - 0.1 <= seen.at - previous < TIMEOUT + SLACK, path  # as the caller sees it
            assert TIMEOUT * 1000 - 100 <= seen.elapsed_ms < (TIMEOUT + SLACK) * 1000, path  # as it is recorded
        previous = seen.at
    statuses = {path: seen.status for path, seen in zip(paths, report.seen, strict=True) if path != "/ok"}
    assert statuses == {"/silent": None, "/trickle-headers": None, "/stall-body": 200, "/trickle-body": 200}
    assert report.leftover == []
