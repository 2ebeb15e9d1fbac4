"""A site server that misbehaves on purpose, for the tests: resources that answer late, trickle, stall, cut
their body short, reset the connection, or fail first with scripted statuses.

The product's `SiteServer` answers every resource plainly. `HostileServer` answers a `Hostile` resource with
its misbehaviour and leaves everything else, and a `Hostile` once its misbehaviour is done with, to
`SiteServer.respond`.
"""

from __future__ import annotations

import asyncio
import socket
import struct
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Literal

from aiohttp import web

from crawler.site.generate import Resource, Site
from crawler.site.server import LOOPBACK, SiteServer, serve_in_thread

# "trickle": one byte every `delay` seconds; "stall": headers, then nothing; "short": the body ends before its
# Content-Length; "reset": the connection is reset halfway through the body.
Behaviour = Literal["trickle", "stall", "short", "reset"]


@dataclass(frozen=True, slots=True)
class Hostile(Resource):
    """A resource that misbehaves: answered `delay` seconds late, or with a `behaviour`, after `failures`."""

    delay: float = 0.0  # seconds before the answer (with "trickle": between its bytes)
    behaviour: Behaviour | None = None
    failures: tuple[int, ...] = ()  # statuses answered, in turn, by the first requests
    retry_after: str | None = None  # Retry-After sent with those failures


def hostile(
    resource: Resource,
    *,
    delay: float = 0.0,
    behaviour: Behaviour | None = None,
    failures: tuple[int, ...] = (),
    retry_after: str | None = None,
) -> Hostile:
    """`resource` (its body, status and headers), misbehaving so."""
    return Hostile(resource.body, resource.status, resource.content_type, resource.headers,
                   delay, behaviour, failures, retry_after)  # fmt: skip


class HostileServer(SiteServer):
    """A `SiteServer` that answers each `Hostile` resource with its misbehaviour."""

    def __init__(
        self, site: Site, host: str = LOOPBACK, latency: float = 0.0, port: int = 0, validators: bool = True
    ) -> None:
        super().__init__(site, host, latency, port, validators)
        self.served: Counter[str] = Counter()  # path -> requests answered, for the scripted failures

    async def respond(
        self, request: web.Request, path: str, resource: Resource, body: bytes, headers: dict[str, str]
    ) -> web.StreamResponse:
        """A scripted failure while some remain, else the misbehaviour, else the plain answer `delay` late."""
        self.served[path] += 1
        if not isinstance(resource, Hostile):
            return await super().respond(request, path, resource, body, headers)
        if self.served[path] <= len(resource.failures):
            extra = {"Retry-After": resource.retry_after} if resource.retry_after else {}
            return web.Response(body=b"try later", status=resource.failures[self.served[path] - 1], headers=extra)
        if resource.behaviour:
            return await _misbehave(request, resource, body, headers)
        if resource.delay:
            await asyncio.sleep(resource.delay)
        return await super().respond(request, path, resource, body, headers)


async def _misbehave(
    request: web.Request, resource: Hostile, body: bytes, headers: dict[str, str]
) -> web.StreamResponse:
    """Announce the whole body in the headers, then do what `resource.behaviour` says instead of sending it."""
    response = web.StreamResponse(status=resource.status, headers=headers)
    if resource.content_type:
        response.headers["Content-Type"] = resource.content_type
    response.content_length = len(body)
    await response.prepare(request)
    if resource.behaviour == "trickle":
        for index in range(len(body)):
            await response.write(body[index : index + 1])
            await asyncio.sleep(resource.delay)
    elif resource.behaviour == "stall":
        await asyncio.sleep(3600)  # cancelled when the server stops
    elif resource.behaviour in ("short", "reset"):
        await response.write(body[: len(body) // 2])
        transport = request.transport
        assert transport is not None
        if resource.behaviour == "reset":  # SO_LINGER 0: close() sends a RST instead of a FIN
            sock = transport.get_extra_info("socket")
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        transport.close()
    return response


@contextmanager
def serve_hostile(site: Site, host: str = LOOPBACK, validators: bool = True) -> Iterator[HostileServer]:
    """Serve `site`, `Hostile` resources and all, from a background thread for as long as the block runs."""
    with serve_in_thread(site, host, validators, server_class=HostileServer) as server:
        assert isinstance(server, HostileServer)
        yield server
