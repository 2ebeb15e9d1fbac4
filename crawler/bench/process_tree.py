"""A crawl's whole process tree, measured: the kernel's CPU time of every process it started (this process
becomes a child subreaper, so what the crawl leaves unwaited, like the `process` backend's forkserver and
workers, is re-parented here, waited for and counted), its peak memory sampled every 50 ms, and a timeout
that kills the whole tree; and the signals that end the bench, ending the crawl with it."""

from __future__ import annotations

import contextlib
import ctypes
import os
import resource
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

import psutil

from crawler.engine.signals import handling

SAMPLE_SECONDS = 0.05
PR_SET_CHILD_SUBREAPER = 36  # from <linux/prctl.h>
ORPHAN_GRACE = 5.0  # seconds the crawl's leftover processes get to exit by themselves before they are killed


@contextlib.contextmanager
def subreaper() -> Iterator[None]:
    """While the block runs, the processes a crawl leaves behind are re-parented to this one when their parent
    dies, so that they can be waited for (their CPU counted, nothing left running). Linux only; elsewhere
    they go uncounted."""
    prctl = ctypes.CDLL(None, use_errno=True).prctl if sys.platform.startswith("linux") else None
    if prctl is not None:
        prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    try:
        yield
    finally:
        if prctl is not None:
            prctl(PR_SET_CHILD_SUBREAPER, 0, 0, 0, 0)


@contextlib.contextmanager
def signals_end_the_bench() -> Iterator[None]:
    """While the block runs, SIGTERM and SIGHUP end the bench as Ctrl-C does: the crawl being measured (in a
    session of its own, out of the terminal's reach) is killed with its whole group, the server stopped and
    the temporary files removed; the exit status is 128 + the signal. Only the main thread can set handlers."""

    def stop(signum: int, _: object) -> None:
        raise SystemExit(128 + signum)

    with handling((signal.SIGTERM, signal.SIGHUP), stop):  # an ignored SIGHUP (nohup) stays ignored
        yield


@dataclass(slots=True)
class Tree:
    """What was measured of one crawl's process tree."""

    returncode: int
    timed_out: bool
    cpu_seconds: float
    orphan_cpu_seconds: float
    peak_rss: int
    peak_helpers: int  # processes besides the crawl's own at the memory peak (pool workers, forkserver...)
    peak_helpers_rss: int  # their RSS then
    peak_helpers_uss: int  # their unique memory then
    errors: str


def _cpu(usage: resource.struct_rusage) -> float:
    return usage.ru_utime + usage.ru_stime


def _uss(member: psutil.Process) -> int:
    """The memory only this process holds (0 once it is gone)."""
    try:
        return int(member.memory_full_info().uss)
    except psutil.NoSuchProcess:
        return 0


def _reap_orphans(seen: dict[int, float], group: int) -> float:
    """Wait for the processes of the crawl's tree that were re-parented here; kill what is still running after
    ORPHAN_GRACE. Returns their CPU seconds (their own waited children's included)."""
    me = os.getpid()
    cpu = 0.0
    deadline = time.monotonic() + ORPHAN_GRACE
    while True:
        alive = []
        for pid, created in seen.items():
            try:
                process = psutil.Process(pid)
                if process.create_time() != created:
                    continue
                alive.append(pid)
                if process.ppid() != me:
                    continue
            except psutil.NoSuchProcess:
                continue
            reaped, _, usage = os.wait4(pid, os.WNOHANG)
            if reaped:
                cpu += _cpu(usage)
        if not alive:
            return cpu
        if time.monotonic() > deadline:
            with contextlib.suppress(ProcessLookupError, psutil.NoSuchProcess):
                os.killpg(group, signal.SIGKILL)
        time.sleep(SAMPLE_SECONDS / 5)


def measure(command: list[str], timeout: float) -> Tree:
    """Run `command` in a session of its own and measure its whole process tree; kill the tree if it runs
    past `timeout` seconds, or if this process is interrupted."""
    with tempfile.TemporaryFile() as errors:
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=errors, start_new_session=True)
        group = process.pid
        peak = helpers = helpers_rss = helpers_uss = 0
        seen: dict[int, float] = {}  # pid -> create time of every descendant sampled
        done = threading.Event()
        timed_out = threading.Event()

        def sample() -> None:  # one walk of the tree: its memory, and which processes it holds
            nonlocal peak, helpers, helpers_rss, helpers_uss
            while not done.is_set():
                rss = descendants_rss = 0
                descendants: list[psutil.Process] = []
                with contextlib.suppress(psutil.NoSuchProcess):
                    root = psutil.Process(process.pid)
                    for member in [root, *root.children(recursive=True)]:
                        with contextlib.suppress(psutil.NoSuchProcess), member.oneshot():
                            member_rss = member.memory_info().rss
                            rss += member_rss
                            if member.pid != root.pid:
                                seen.setdefault(member.pid, member.create_time())
                                descendants.append(member)
                                descendants_rss += member_rss
                if rss > peak:  # unique memory needs a read of every page map: only at a new peak
                    peak, helpers, helpers_rss = rss, len(descendants), descendants_rss
                    helpers_uss = sum(_uss(member) for member in descendants)
                done.wait(SAMPLE_SECONDS)

        def expire() -> None:
            timed_out.set()
            with contextlib.suppress(ProcessLookupError, psutil.NoSuchProcess):
                os.killpg(group, signal.SIGKILL)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        timer = threading.Timer(timeout, expire)
        timer.start()
        try:
            _, status, usage = os.wait4(process.pid, 0)
        except BaseException:  # Ctrl-C, SIGTERM or SIGHUP of the bench: the crawl ends with it
            expire()
            os.wait4(process.pid, 0)
            raise
        finally:
            timer.cancel()
            done.set()
            sampler.join()
        process.returncode = os.waitstatus_to_exitcode(status)
        orphan_cpu = _reap_orphans(seen, group)
        errors.seek(0)
        return Tree(process.returncode, timed_out.is_set(), _cpu(usage) + orphan_cpu, orphan_cpu, peak, helpers,
                     helpers_rss, helpers_uss, errors.read().decode(errors="replace")[-2000:])  # fmt: skip
