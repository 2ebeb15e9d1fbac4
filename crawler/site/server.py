"""Serves a `Site` over HTTP on 127.0.0.1 with aiohttp: on a background thread (test fixtures), or in a
process of its own (`crawler demo`, `crawler bench`, so that the crawler being measured does not share its
interpreter; `crawler site`, until Ctrl-C)."""

from __future__ import annotations

import argparse
import asyncio
import email.utils
import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from aiohttp import web

from crawler.site.generate import PROFILES, Resource, Site, demo_edition, generate_site

LOOPBACK = "127.0.0.1"
NOT_FOUND = b"<!DOCTYPE html><html><head><title>Not found</title></head><body>No such page.</body></html>"


@dataclass(frozen=True, slots=True)
class Hit:
    """One request the server received: its path, the User-Agent it carried, and when it came
    (time.monotonic(), comparable with the test's clock when the server runs in the test's process)."""

    path: str
    user_agent: str | None
    at: float


class SiteServer:
    """An aiohttp application answering every path of `site` (anything else is a 404), placeholders
    filled in for its own address. Records each request in `hits`. A subclass may answer some resources
    otherwise by overriding `respond`."""

    def __init__(
        self, site: Site, host: str = LOOPBACK, latency: float = 0.0, port: int = 0, validators: bool = True
    ) -> None:
        self.site = site
        self.latency = latency  # seconds before every answer, to model the network
        # ETag and Last-Modified on every 200, and 304 Not Modified to a conditional request they satisfy.
        self.validators = validators
        self.hits: list[Hit] = []
        self.not_modified = 0  # 304s answered
        self.body_bytes = 0  # body bytes sent
        self.active = 0  # requests being answered now
        self.max_active = 0
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            self._socket.bind((host, port))
        except OSError:
            self._socket.close()
            raise
        self.port: int = self._socket.getsockname()[1]
        self.origin = f"http://{host}:{self.port}"
        self._rendered: dict[str, tuple[Resource, bytes, dict[str, str]]] = {}
        self._modified: dict[str, float] = {}  # path -> when its body last changed (epoch seconds, whole)
        self._etags: dict[str, str] = {}  # path -> the ETag of its body
        self.replace_site(site)
        self._runner: web.AppRunner | None = None

    def replace_site(self, site: Site) -> None:
        """Serve `site` from now on: a page whose body changed gets a new Last-Modified (a second past the
        last one at least, the header's resolution) and, its ETag being the body's hash, a new ETag."""
        now = float(int(time.time()))
        rendered = {}
        for path, resource in site.items():
            body = resource.render(self.origin)
            old = self._rendered.get(path)
            if old is None or old[1] != body:
                self._modified[path] = max(now, self._modified.get(path, 0.0) + 1)
                self._etags[path] = f'"{hashlib.blake2b(body, digest_size=8).hexdigest()}"'
            rendered[path] = (resource, body, resource.render_headers(self.origin))
        self.site, self._rendered = site, rendered

    def url(self, path: str) -> str:
        """The absolute URL of `path` on this server."""
        return self.origin + path

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        path = request.raw_path
        self.hits.append(Hit(path, request.headers.get("User-Agent"), time.monotonic()))
        self.active += 1
        self.max_active = max(self.max_active, self.active)
        try:
            return await self._answer(request, path)
        finally:
            self.active -= 1

    async def _answer(self, request: web.Request, path: str) -> web.StreamResponse:
        if self.latency:
            await asyncio.sleep(self.latency)
        entry = self._rendered.get(path)
        if entry is None:
            return web.Response(body=NOT_FOUND, status=404, content_type="text/html", charset="utf-8")
        resource, body, headers = entry
        return await self.respond(request, path, resource, body, headers)

    async def respond(
        self, request: web.Request, path: str, resource: Resource, body: bytes, headers: dict[str, str]
    ) -> web.StreamResponse:
        """The answer to `request` for `path`, a path of the site: `resource`, with its body and headers
        rendered for this server. With validators on, a 200 carries ETag and Last-Modified, and is a 304 when
        the request's conditions say the client has this version already. Called after the latency; the hook
        for a subclass that answers some resources otherwise (and calls this for the rest)."""
        if self.validators and resource.status == 200:
            headers = {**headers, "ETag": self._etags[path],
                       "Last-Modified": email.utils.formatdate(self._modified[path], usegmt=True)}  # fmt: skip
            if _not_modified(request, headers["ETag"], self._modified[path]):
                self.not_modified += 1
                return web.Response(status=304, headers=headers)
        self.body_bytes += len(body)
        response = web.Response(body=body, status=resource.status, headers=headers)
        if resource.content_type:
            response.headers["Content-Type"] = resource.content_type
        return response

    async def start(self) -> None:
        """Start answering on the bound socket."""
        app = web.Application()
        app.router.add_route("GET", "/{tail:.*}", self._handle)
        # A short shutdown: a handler still waiting to answer must not hold up the end of the server.
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
        await self._runner.setup()
        await web.SockSite(self._runner, self._socket).start()

    async def stop(self) -> None:
        """Stop answering, close the socket, and cancel handlers still waiting out a delay."""
        if self._runner is not None:
            await self._runner.cleanup()
        else:  # never started: the socket is only bound
            self._socket.close()
        pending = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)


def _not_modified(request: web.Request, etag: str, modified: float) -> bool:
    """Whether a GET's conditions say the client has this version (RFC 9110 13.2.2): If-None-Match when
    sent (weak comparison), else If-Modified-Since."""
    if (wanted := request.headers.get("If-None-Match")) is not None:
        tags = [tag.strip().removeprefix("W/") for tag in wanted.split(",")]
        return "*" in tags or etag in tags
    if (since := request.headers.get("If-Modified-Since")) is not None:
        try:
            return modified <= email.utils.parsedate_to_datetime(since).timestamp()
        except (TypeError, ValueError):
            return False  # an invalid date is ignored
    return False


@contextmanager
def serve_in_thread(
    site: Site, host: str = LOOPBACK, validators: bool = True, server_class: type[SiteServer] = SiteServer
) -> Iterator[SiteServer]:
    """Serve `site` from an event loop on a background thread for as long as the block runs, with a
    `server_class` server (a subclass of SiteServer that answers some resources otherwise)."""
    server = server_class(site, host, validators=validators)
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="site-server", daemon=True)
    thread.start()
    try:
        asyncio.run_coroutine_threadsafe(server.start(), loop).result()
        yield server
    finally:
        asyncio.run_coroutine_threadsafe(server.stop(), loop).result()
        loop.call_soon_threadsafe(loop.stop)
        thread.join()
        loop.close()


@dataclass(frozen=True, slots=True)
class SiteOptions:
    """What `python -m crawler.site.server` serves: the generated site on each of `hosts` loopback
    addresses (127.0.0.1, 127.0.0.2, ...; host i serves the site of seed `seed + i`)."""

    pages: int = 200
    seed: int = 1
    hosts: int = 1
    latency_ms: float = 0.0
    fanout: int = 0
    profile: str = "light"  # or "realistic" (crawler.site.generate.PROFILES)
    changing: bool = False  # the demo's site, in its first edition; SIGUSR2 switches to its second

    def sites(self, edition: int = 1) -> list[Site]:
        """The site each host serves, in host order (`edition`: of a changing site)."""
        if self.changing:
            return [demo_edition(self.pages, self.seed + index, edition) for index in range(self.hosts)]
        return [
            generate_site(self.pages, self.seed + index, fanout=self.fanout, profile=self.profile)
            for index in range(self.hosts)
        ]

    def arguments(self) -> list[str]:
        """Command-line arguments that make `main` serve these sites."""
        return ["--pages", str(self.pages), "--seed", str(self.seed), "--hosts", str(self.hosts),
                "--latency-ms", str(self.latency_ms), "--fanout", str(self.fanout),
                "--profile", self.profile] + (["--changing"] if self.changing else [])  # fmt: skip

    @staticmethod
    def add_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
        """`parser` with the options `arguments()` writes (for `main`, and for the bench's parse alone)."""
        parser.add_argument("--pages", type=int, default=200)
        parser.add_argument("--seed", type=int, default=1)
        parser.add_argument("--hosts", type=int, default=1, help="loopback hosts, each serving its own site")
        parser.add_argument("--latency-ms", type=float, default=0.0, help="delay before every response")
        parser.add_argument("--fanout", type=int, default=0, help="extra links per page to URLs the site lacks")
        parser.add_argument("--profile", choices=PROFILES, default="light", help="page weights and markup")
        parser.add_argument("--changing", action="store_true", help="the demo's site; SIGUSR2 changes it")
        return parser

    @classmethod
    def from_arguments(cls, args: argparse.Namespace) -> SiteOptions:
        """The options that `add_arguments`' parser read."""
        return cls(args.pages, args.seed, args.hosts, args.latency_ms, args.fanout, args.profile, args.changing)


@dataclass(frozen=True, slots=True)
class ServerReport:
    """A site server's answer to SIGUSR1."""

    served: Counter[str]  # URL -> how many times it was answered since the last report
    # The server's own CPU since it started, all threads: its process clock, exact to the nanosecond where the
    # kernel's per-process figures (psutil, /proc) come in clock ticks of 10 ms, which a small crawl stays under.
    cpu_seconds: float


@dataclass(frozen=True, slots=True)
class ServerProcess:
    """A site server running in a process of its own."""

    pid: int
    origins: list[str]
    process: subprocess.Popen[str]

    def report(self) -> ServerReport:
        """What the server answered since the last call, and its CPU so far (SIGUSR1 makes it report)."""
        assert self.process.stdout is not None
        os.kill(self.pid, signal.SIGUSR1)
        report = json.loads(self.process.stdout.readline())
        return ServerReport(Counter(report["served"]), report["cpu_seconds"])

    def change(self) -> None:
        """Switch a changing site to its second edition (SIGUSR2), and wait until it serves it."""
        assert self.process.stdout is not None
        os.kill(self.pid, signal.SIGUSR2)
        if self.process.stdout.readline().strip() != "changed":
            raise RuntimeError("the site server did not change its site")


@contextmanager
def serve_in_subprocess(options: SiteOptions) -> Iterator[ServerProcess]:
    """Serve the generated site(s) from a separate Python process for as long as the block runs."""
    process = subprocess.Popen(
        [sys.executable, "-m", "crawler.site.server", *options.arguments()], stdout=subprocess.PIPE, text=True
    )
    try:
        assert process.stdout is not None
        origins = process.stdout.readline().split()
        if not origins:
            raise RuntimeError(f"the site server did not start (exit code {process.wait()})")
        yield ServerProcess(process.pid, origins, process)
    finally:
        process.terminate()
        process.wait(timeout=10)
        if process.stdout is not None:
            process.stdout.close()


class PortUnavailable(Exception):
    """A server could not bind its address: the port is in use, or the address is not there."""

    def __init__(self, host: str, port: int, error: OSError) -> None:
        super().__init__(f"cannot serve on port {port} of {host}: {error.strerror or error}")


async def _serve(
    options: SiteOptions,
    sites: list[Site],
    started: Callable[[list[SiteServer]], None],
    port: int = 0,
    protocol: bool = True,
) -> None:
    """Serve `sites` (host i on 127.0.0.i+1, on `port`), call `started` with the servers, and serve until SIGTERM
    or SIGINT. With `protocol` (the bench's and the demo's subprocess), SIGUSR1 prints a JSON line of what
    was answered since the last one (URL -> times) and the server's CPU seconds so far, and SIGUSR2 switches a
    changing site to its second edition."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    servers = []
    for index, site in enumerate(sites):
        try:
            servers.append(SiteServer(site, f"127.0.0.{index + 1}", latency=options.latency_ms / 1000, port=port))
        except OSError as exc:
            for server in servers:
                await server.stop()
            raise PortUnavailable(f"127.0.0.{index + 1}", port, exc) from exc
    for server in servers:
        await server.start()
    started(servers)

    def report_hits() -> None:  # what each URL was requested since the last report, for the bench's check
        served = Counter(server.origin + hit.path for server in servers for hit in server.hits)
        for server in servers:
            server.hits.clear()
        print(json.dumps({"served": served, "cpu_seconds": time.process_time()}), flush=True)  # noqa: T201

    def change() -> None:  # a changing site's second edition, from now on
        for server, site in zip(servers, options.sites(edition=2), strict=True):
            server.replace_site(site)
        print("changed", flush=True)  # noqa: T201

    if protocol:
        loop.add_signal_handler(signal.SIGUSR1, report_hits)
        loop.add_signal_handler(signal.SIGUSR2, change)
    await stop.wait()
    for server in servers:
        await server.stop()


def serve_until_stopped(
    options: SiteOptions, port: int, say: Callable[[str], None], ready: Callable[[list[str]], None]
) -> None:
    """`crawler site`: generate the sites (saying so first: a large one takes a while), serve them on `port`
    until Ctrl-C or SIGTERM, and call `ready` with their origins once they answer. Raises `PortUnavailable` if
    an address cannot be bound."""
    kind = "changing demo" if options.changing else options.profile
    hosts = f" for each of {options.hosts} hosts" if options.hosts > 1 else ""
    say(f"Generating a {kind} site of {options.pages:,} pages{hosts} (seed {options.seed}) ...")
    began = time.perf_counter()
    sites = options.sites()
    say(f"Generated in {time.perf_counter() - began:.1f} s.")

    def started(servers: list[SiteServer]) -> None:
        ready([server.origin for server in servers])

    asyncio.run(_serve(options, sites, started, port, protocol=False))


def main(argv: list[str] | None = None) -> None:
    """`python -m crawler.site.server --pages N [--seed S] [--hosts H] [--latency-ms L] [--fanout F]
    [--profile realistic|light] [--changing]`: print the origins on one line, serve until SIGTERM; on SIGUSR1,
    print a JSON line of what was answered since the last one (URL -> times) and the CPU seconds used so far;
    on SIGUSR2, serve a changing site's second edition and print `changed`."""
    parser = SiteOptions.add_arguments(argparse.ArgumentParser(description=__doc__))
    options = SiteOptions.from_arguments(parser.parse_args(argv))

    def started(servers: list[SiteServer]) -> None:  # the parent process reads the origins from this line
        print(" ".join(server.origin for server in servers), flush=True)  # noqa: T201

    asyncio.run(_serve(options, options.sites(), started))


if __name__ == "__main__":
    main()
