"""Per-origin politeness: which of the requests held in memory may start now.

Each origin (scheme://host:port) has its own FIFO queue, a limit of requests in flight, and the earliest
time its next request may start (the delay, robots.txt's Crawl-delay, a Retry-After pause). Origins that
can start now wait in a round-robin deque; the rest, and retries waiting out their backoff, in a heap of
timers. Picking the next request therefore costs O(log n), however many origins there are, and an origin
that is slow or paused never holds up the others.
"""

from __future__ import annotations

import heapq
import itertools
from collections import deque
from dataclasses import dataclass, field

from crawler.robots import RobotRules


@dataclass(slots=True)
class Request:
    """One fetch the engine wants: a page (or robots.txt), with where it came from."""

    url: str
    origin: str
    depth: int
    hops: int = 0  # redirects followed to get here
    via: tuple[str, ...] = ()  # the URLs that redirected here, first first
    attempt: int = 1
    robots: bool = False  # a robots.txt fetch: it goes first and holds the origin's pages until answered


@dataclass(eq=False, slots=True)
class Host:
    """The state of one origin."""

    origin: str
    delay: float
    queue: deque[Request] = field(default_factory=deque)
    in_flight: int = 0
    next_start: float = 0.0
    last_start: float = 0.0
    blocked: bool = False  # robots.txt is being fetched
    scheduled: bool = False  # in the ready deque or the timer heap
    pages: int = 0  # pages started, for the per-host cap
    rules: RobotRules | None = None
    robots_requested: bool = False


class Scheduler:
    """Hands out requests in per-origin FIFO order, round-robin across origins, within politeness limits."""

    def __init__(self, per_host: int, delay: float, max_pages_per_host: int = 0) -> None:
        self.per_host = per_host
        self.delay = delay
        self.max_pages_per_host = max_pages_per_host
        self.hosts: dict[str, Host] = {}
        self.queued = 0  # requests held in memory: in host queues and waiting on timers
        self._ready: deque[Host] = deque()
        self._timers: list[tuple[float, int, Host | Request]] = []
        self._order = itertools.count()

    def host(self, origin: str) -> Host:
        """The state of `origin`, created on first use."""
        host = self.hosts.get(origin)
        if host is None:
            host = self.hosts[origin] = Host(origin, self.delay)
        return host

    def _can_start(self, host: Host) -> bool:
        return bool(host.queue) and host.in_flight < self.per_host and (not host.blocked or host.queue[0].robots)

    def _schedule(self, host: Host, now: float) -> None:
        if host.scheduled or not self._can_start(host):
            return
        host.scheduled = True
        if host.next_start > now:
            heapq.heappush(self._timers, (host.next_start, next(self._order), host))
        else:
            self._ready.append(host)

    def push(self, request: Request, now: float, front: bool = False) -> None:
        """Queue `request` on its origin (robots.txt requests always go first)."""
        host = self.host(request.origin)
        if front or request.robots:
            host.queue.appendleft(request)
        else:
            host.queue.append(request)
        self.queued += 1
        self._schedule(host, now)

    def later(self, request: Request, at: float) -> None:
        """Hold `request` (a retry) until `at`, then queue it first on its origin."""
        heapq.heappush(self._timers, (at, next(self._order), request))
        self.queued += 1

    def _wake(self, now: float) -> None:
        while self._timers and self._timers[0][0] <= now:
            _, _, item = heapq.heappop(self._timers)
            if isinstance(item, Host):
                item.scheduled = False
                self._schedule(item, now)
            else:
                self.queued -= 1
                self.push(item, now, front=True)

    def pop(self, now: float) -> Request | None:
        """The next request that may start now, counted as in flight; None if none may."""
        self._wake(now)
        while self._ready:
            host = self._ready.popleft()
            host.scheduled = False
            if host.next_start > now:  # paused after it was scheduled
                self._schedule(host, now)
                continue
            if not self._can_start(host):
                continue
            request = host.queue.popleft()
            self.queued -= 1
            if self.max_pages_per_host and not request.robots and request.attempt == 1:
                if host.pages >= self.max_pages_per_host:
                    self._ready.appendleft(host)  # drop it (it stays queued in the database); try the next
                    host.scheduled = True
                    continue
                host.pages += 1
            host.in_flight += 1
            host.blocked = host.blocked or request.robots
            host.last_start = now
            host.next_start = now + host.delay
            self._schedule(host, now)
            return request
        return None

    def finished(self, request: Request, now: float) -> None:
        """`request` came back: its origin may start another."""
        host = self.host(request.origin)
        host.in_flight -= 1
        self._schedule(host, now)

    def pause(self, origin: str, until: float, now: float) -> None:
        """Start nothing on `origin` before `until` (a Retry-After)."""
        host = self.host(origin)
        host.next_start = max(host.next_start, until)
        self._schedule(host, now)

    def unblock(self, host: Host, delay: float, now: float) -> list[Request]:
        """robots.txt answered with `delay` between requests: take the origin's queued pages out (to be
        admitted again) and release the origin, its next start counted from robots.txt's."""
        host.blocked = False
        host.delay = delay
        host.next_start = max(host.next_start, host.last_start + delay)
        pages = [request for request in host.queue if not request.robots]
        host.queue = deque(request for request in host.queue if request.robots)
        self.queued -= len(pages)
        self._schedule(host, now)
        return pages

    def drop_new(self) -> None:
        """Forget every first attempt held in memory (the page budget is spent); retries stay."""
        for host in self.hosts.values():
            kept = deque(request for request in host.queue if request.attempt > 1 or request.robots)
            self.queued -= len(host.queue) - len(kept)
            host.queue = kept

    def next_timer(self) -> float | None:
        """When the earliest timer fires, if any."""
        return self._timers[0][0] if self._timers else None
