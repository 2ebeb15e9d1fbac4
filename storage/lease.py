"""Who owns a crawl database: one live crawl at a time. The owner is a process (pid, host, start time) that
writes a heartbeat; a second crawl is refused while the owner lives, and takes over once it is dead."""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from datetime import UTC, datetime

import psutil

HEARTBEAT_SECONDS = 5.0  # how often the owner writes its heartbeat
STALE_SECONDS = 60.0  # an owner on another host is taken for dead when its heartbeat is older than this


@dataclass(frozen=True, slots=True)
class Owner:
    """The process that holds a crawl database."""

    pid: int
    host: str
    started: float  # the process's start time, epoch seconds
    heartbeat_at: str | None = None  # UTC, ISO 8601

    @classmethod
    def me(cls) -> Owner:
        """This process."""
        return cls(os.getpid(), socket.gethostname(), psutil.Process().create_time())

    def alive(self, now: datetime | None = None) -> bool:
        """Whether the owner still runs. On this host, by its pid and start time (a pid can be reused; this
        process never counts, so a crawl that did not release its own lease is not locked out by it); on
        another host, by the age of its heartbeat."""
        if self.host == socket.gethostname():
            if self.pid == os.getpid():
                return False
            try:
                return abs(psutil.Process(self.pid).create_time() - self.started) < 1.0
            except psutil.Error:
                return False
        if self.heartbeat_at is None:
            return False
        age = ((now or datetime.now(UTC)) - datetime.fromisoformat(self.heartbeat_at)).total_seconds()
        return age < STALE_SECONDS

    def describe(self) -> str:
        """'pid 1234 on host web1, since 21:30:02 UTC' style text for messages."""
        since = datetime.fromtimestamp(self.started, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
        return f"pid {self.pid} on {self.host} (started {since})"


class Owned(Exception):
    """A live crawl owns the database; the message names it."""
