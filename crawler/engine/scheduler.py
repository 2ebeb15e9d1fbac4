"""Per-origin politeness in memory: which of the requests held may start now.

Each origin (scheme://host:port) has an `Origin`: its policy (robots.txt rules, the delay between starts,
which robots.txt's Crawl-delay may lengthen, a Retry-After pause, the per-host page cap) and its FIFO queue
of requests. Origins that can start now wait in a round-robin deque; the rest, and retries waiting out
their backoff, in a heap of timers. Picking the next request therefore costs O(log n), however many
origins there are, and an origin that is slow or paused never holds up the others.
"""

from __future__ import annotations

import heapq
import itertools
from collections import deque
from dataclasses import dataclass, field

from crawler.engine.frontier import Request
from crawler.engine.robots import RobotRules


@dataclass(eq=False, slots=True)
class Origin:
    """One origin's policy and queue."""

    origin: str
    delay: float  # seconds between starts: --delay, or robots.txt's Crawl-delay when longer
    cap: int = 0  # pages to start at most (--max-pages-per-host); 0: no cap
    queue: deque[Request] = field(default_factory=deque)
    in_flight: int = 0
    next_start: float = 0.0  # not before: the delay since the last start, or a Retry-After pause
    last_start: float = 0.0
    blocked: bool = False  # robots.txt is being fetched
    scheduled: bool = False  # in the ready deque or the timer heap
    pages: int = 0  # pages started, for the cap
    rules: RobotRules | None = None  # None until robots.txt has answered
    robots_requested: bool = False
    cursor: int = 0  # the highest frontier sequence number loaded into the queue
    more: bool = True  # storage may hold queued entries beyond `cursor`

    def over_cap(self) -> bool:
        """Whether the per-host cap forbids starting another page."""
        return bool(self.cap) and self.pages >= self.cap

    def learn_robots(self, rules: RobotRules, delay: float, user_agent: str) -> None:
        """robots.txt answered: its rules apply, and its Crawl-delay if longer than `delay`."""
        self.rules = rules
        self.blocked = False
        self.delay = max(delay, rules.crawl_delay(user_agent))
        self.next_start = max(self.next_start, self.last_start + self.delay)


class Scheduler:
    """Hands out requests in per-origin FIFO order, round-robin across origins, within politeness limits."""

    def __init__(self, per_host: int, delay: float, max_pages_per_host: int = 0) -> None:
        self.per_host = per_host
        self.delay = delay
        self.max_pages_per_host = max_pages_per_host
        self.origins: dict[str, Origin] = {}
        self.queued = 0  # requests held in memory: in origin queues and waiting on timers
        self.capped: list[Request] = []  # first attempts the cap turned away, for the frontier to record
        self._ready: deque[Origin] = deque()
        self._timers: list[tuple[float, int, Origin | Request]] = []
        self._order = itertools.count()

    def origin(self, key: str) -> Origin:
        """The state of origin `key`, created on first use."""
        state = self.origins.get(key)
        if state is None:
            state = self.origins[key] = Origin(key, self.delay, self.max_pages_per_host)
        return state

    def _can_start(self, state: Origin) -> bool:
        return bool(state.queue) and state.in_flight < self.per_host and (not state.blocked or state.queue[0].robots)

    def _schedule(self, state: Origin, now: float) -> None:
        if state.scheduled or not self._can_start(state):
            return
        state.scheduled = True
        if state.next_start > now:
            heapq.heappush(self._timers, (state.next_start, next(self._order), state))
        else:
            self._ready.append(state)

    def push(self, request: Request, now: float, front: bool = False) -> None:
        """Queue `request` on its origin (robots.txt requests always go first)."""
        state = self.origin(request.origin)
        if front or request.robots:
            state.queue.appendleft(request)
        else:
            state.queue.append(request)
        self.queued += 1
        self._schedule(state, now)

    def later(self, request: Request, at: float) -> None:
        """Hold `request` (a retry) until `at`, then queue it first on its origin."""
        heapq.heappush(self._timers, (at, next(self._order), request))
        self.queued += 1

    def _wake(self, now: float) -> None:
        while self._timers and self._timers[0][0] <= now:
            _, _, item = heapq.heappop(self._timers)
            if isinstance(item, Origin):
                item.scheduled = False
                self._schedule(item, now)
            else:
                self.queued -= 1
                self.push(item, now, front=True)

    def pop(self, now: float) -> Request | None:
        """The next request that may start now, counted as in flight; None if none may. First attempts over
        their origin's cap are moved to `capped` on the way."""
        self._wake(now)
        while self._ready:
            state = self._ready.popleft()
            state.scheduled = False
            if state.next_start > now:  # paused after it was scheduled
                self._schedule(state, now)
                continue
            while self._can_start(state) and state.queue[0].attempt == 1 and state.queue[0].page:
                if not state.over_cap():
                    break
                self.capped.append(state.queue.popleft())
                self.queued -= 1
            if not self._can_start(state):
                continue
            request = state.queue.popleft()
            self.queued -= 1
            if request.attempt == 1 and request.page:
                state.pages += 1
            state.in_flight += 1
            state.blocked = state.blocked or request.robots
            state.last_start = now
            state.next_start = now + state.delay
            self._schedule(state, now)
            return request
        return None

    def finished(self, request: Request, now: float) -> None:
        """`request` came back: its origin may start another."""
        state = self.origin(request.origin)
        state.in_flight -= 1
        self._schedule(state, now)

    def pause(self, key: str, until: float, now: float) -> None:
        """Start nothing on origin `key` before `until` (a Retry-After)."""
        state = self.origin(key)
        state.next_start = max(state.next_start, until)
        self._schedule(state, now)

    def unblock(self, state: Origin, now: float) -> list[Request]:
        """robots.txt answered: take the origin's queued pages out (to be admitted again under its rules)
        and release the origin."""
        pages = [request for request in state.queue if not request.robots]
        state.queue = deque(request for request in state.queue if request.robots)
        self.queued -= len(pages)
        self._schedule(state, now)
        return pages

    def drop_new(self) -> None:
        """Forget every first attempt held in memory (the page budget is spent); retries stay."""
        for state in self.origins.values():
            kept = deque(request for request in state.queue if request.attempt > 1 or request.robots)
            self.queued -= len(state.queue) - len(kept)
            state.queue = kept

    def next_timer(self) -> float | None:
        """When the earliest timer fires, if any."""
        return self._timers[0][0] if self._timers else None
