"""CPU time and memory of a process and its descendants (the `process` backend's workers), read with psutil."""

from __future__ import annotations

import time

import psutil


def _tree(process: psutil.Process) -> list[psutil.Process]:
    try:
        return [process, *process.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def cpu_seconds(process: psutil.Process) -> float:
    """User plus system CPU seconds of one process, all its threads included."""
    times = process.cpu_times()
    return float(times.user + times.system)


class ResourceMeter:
    """The CPU seconds and peak memory of this process and its descendants since the meter was made.

    Descendants are sampled, not waited for: `sample` (which the crawl calls about once a second) reads
    every live one, so a worker's last second before it exits may go uncounted, and a memory peak between
    two samples may be missed.
    """

    def __init__(self, interval: float = 1.0) -> None:
        self._me = psutil.Process()
        self._interval = interval
        self._own_start = cpu_seconds(self._me)
        self._descendants: dict[tuple[int, float], float] = {}  # (pid, create time) -> CPU seconds last seen
        self._last = float("-inf")
        self.peak_rss = 0
        self.sample(force=True)

    def sample(self, force: bool = False) -> None:
        """Read the process tree, unless the last reading is younger than the interval (or `force`)."""
        now = time.monotonic()
        if not force and now - self._last < self._interval:
            return
        self._last = now
        rss = 0
        for process in _tree(self._me):
            try:
                with process.oneshot():
                    rss += process.memory_info().rss
                    if process.pid != self._me.pid:
                        self._descendants[(process.pid, process.create_time())] = cpu_seconds(process)
            except psutil.NoSuchProcess:
                continue
        self.peak_rss = max(self.peak_rss, rss)

    @property
    def cpu_seconds(self) -> float:
        """CPU seconds used since the meter was made: this process exactly, descendants as last sampled."""
        return cpu_seconds(self._me) - self._own_start + sum(self._descendants.values())
