"""A total deadline for blocking socket I/O, which socket timeouts alone cannot give.

A socket timeout bounds each read, not the response: a server that trickles a byte now and then holds a
blocking request for as long as it likes. Here one thread per process (started on first use; a greenlet under
gevent's monkey patching) keeps the deadlines of the requests in flight in a heap and, when one passes, shuts
that request's socket down: the blocked read returns at once and the fetch sees that its `Watch` expired.
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import os
import socket
import threading
import time

# A deadline is enforced up to this late, so that the reaper wakes at most this often per second, however many
# requests finish before their deadline.
TICK = 0.05
# The heap keeps released watches until their deadline comes up; it is rebuilt once they outnumber the live ones
# by this many, so that it stays about as large as the number of requests in flight.
COMPACT_AFTER = 256


class Watch:
    """One request's deadline, and the socket it reads from once it has one. `expired` turns true when the
    deadline passes or the request's group is expired; the socket is shut down then (or when attached later)."""

    __slots__ = ("deadline", "expired", "group", "live", "sock")

    def __init__(self, deadline: float, group: WatchGroup | None) -> None:
        self.deadline = deadline
        self.group = group
        self.expired = False
        self.live = True  # until released
        self.sock: socket.socket | None = None


class WatchGroup:
    """The requests of one fetcher, so that they can all be ended at once (`Reaper.expire_group`), and any
    request it starts afterwards ends as soon as it has a socket."""

    __slots__ = ("closed", "watches")

    def __init__(self) -> None:
        self.closed = False
        self.watches: set[Watch] = set()


def _shutdown(sock: socket.socket) -> None:
    # The base class's shutdown, also for an SSLSocket, whose own would tear down its TLS state from this thread.
    with contextlib.suppress(OSError):  # closed already, or never connected: nothing left to cut
        socket.socket.shutdown(sock, socket.SHUT_RDWR)


class Reaper:
    """Watches deadlines: `watch` when a request starts, `attach` its socket, `release` when it is over."""

    def __init__(self) -> None:
        self._reset()
        os.register_at_fork(after_in_child=self._reset)  # a forked child has none of the parent's threads

    def _reset(self) -> None:
        self._changed = threading.Condition(threading.Lock())
        self._heap: list[tuple[float, int, Watch]] = []
        self._order = itertools.count()  # ties between equal deadlines, so that watches are never compared
        self._live = 0
        self._thread: threading.Thread | None = None

    def watch(self, timeout: float, group: WatchGroup | None = None) -> Watch:
        """Start watching a request that must be over within `timeout` seconds from now."""
        watch = Watch(time.monotonic() + timeout, group)
        with self._changed:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="fetch-deadlines", daemon=True)
                self._thread.start()
            if group is not None:
                group.watches.add(watch)
                watch.expired = group.closed
            if not self._heap or watch.deadline < self._heap[0][0]:
                self._changed.notify()  # the reaper sleeps until the earliest deadline: this one is earlier
            heapq.heappush(self._heap, (watch.deadline, next(self._order), watch))
            self._live += 1
            if len(self._heap) > 2 * self._live + COMPACT_AFTER:
                self._heap = [entry for entry in self._heap if entry[2].live]
                heapq.heapify(self._heap)
        return watch

    def attach(self, watch: Watch, sock: socket.socket) -> None:
        """The request now reads from `sock`: shut it down at the deadline (at once if that has passed)."""
        with self._changed:
            watch.sock = sock
            if watch.expired:
                _shutdown(sock)

    def release(self, watch: Watch) -> bool:
        """The request is over: stop watching it. Returns whether its deadline passed (or it was expired)."""
        with self._changed:
            watch.live = False
            watch.sock = None
            self._live -= 1
            if watch.group is not None:
                watch.group.watches.discard(watch)
            return watch.expired

    def expire_group(self, group: WatchGroup) -> None:
        """End every request of `group` now, and any it starts from now on."""
        with self._changed:
            group.closed = True
            for watch in group.watches:
                self._expire(watch)

    def _expire(self, watch: Watch) -> None:
        watch.expired = True
        if watch.sock is not None:
            _shutdown(watch.sock)

    def _run(self) -> None:
        with self._changed:
            while True:
                now = time.monotonic()
                while self._heap and self._heap[0][0] <= now:
                    watch = heapq.heappop(self._heap)[2]
                    if watch.live:
                        self._expire(watch)
                self._changed.wait(self._heap[0][0] - now + TICK if self._heap else None)


REAPER = Reaper()
