"""The figures a crawl is measured by, computed here once for every command, view and the bench: rates (pages
per second, CPU ms a page, requests in flight, the share of a resource), and the CPU time and memory
of a process and its descendants (the `process` backend's workers), read with psutil."""

from __future__ import annotations

import time

import psutil

# storage/run_record.py (a leaf package, which cannot import this module) computes the `runs` table's figures in
# SQL: pages_per_second as `per_second` does (but NULL, not 0, for no time), and the latency percentiles by
# nearest rank (the value at 1-based rank max(1, ceil(fraction * n)) in ascending order), which no other part
# computes. tests/test_metrics.py checks both against these definitions.


def per_second(count: float, seconds: float) -> float:
    """`count` a second over `seconds` of wall-clock time (0 for no time)."""
    return count / seconds if seconds > 0 else 0.0


def ms_per(seconds: float | None, count: int) -> float | None:
    """Milliseconds of `seconds` (CPU, parsing...) for each of `count` things (pages); None when unknown or none."""
    return 1000 * seconds / count if seconds is not None and count > 0 else None


def in_flight(busy_seconds: float | None, elapsed: float) -> float:
    """The mean number of requests in flight: the requests' summed durations over the wall-clock time."""
    return (busy_seconds or 0.0) / elapsed if elapsed > 0 else 0.0


def share(part: float | None, whole: float) -> float | None:
    """`part` as a fraction of `whole` (CPU seconds over wall-clock seconds: cores used); None when unknown."""
    return part / whole if part is not None and whole > 0 else None


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
