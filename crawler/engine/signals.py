"""Handling the signals that stop a command (Ctrl-C, SIGTERM, SIGHUP) for as long as it runs."""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from types import FrameType

Handler = Callable[[int, FrameType | None], object]


@contextmanager
def handling(signums: Iterable[signal.Signals], handler: Handler, override_ignored: bool = False) -> Iterator[bool]:
    """Handle `signums` with `handler` while the block runs, then put back what was there before; yields
    whether the handlers were set. Only the main thread may set handlers: elsewhere nothing changes.

    A signal the process was started ignoring stays ignored (SIGHUP under nohup), unless `override_ignored`.
    A handler that was not set from Python (`signal.getsignal` gives None) comes back as the default."""
    if threading.current_thread() is not threading.main_thread():
        yield False
        return
    previous = {
        signum: signal.signal(signum, handler)
        for signum in signums
        if override_ignored or signal.getsignal(signum) != signal.SIG_IGN
    }
    try:
        yield True
    finally:
        for signum, old in previous.items():
            signal.signal(signum, signal.SIG_DFL if old is None else old)
