"""crawler.engine.signals.handling: what every command that stops on a signal installs, and what it puts back."""

from __future__ import annotations

import signal
import threading
from types import FrameType
from typing import Any

import pytest

from crawler.engine.signals import handling


def _mine(signum: int, frame: FrameType | None) -> None:
    """A handler for the tests."""


def test_handlers_are_put_back_as_they_were() -> None:
    before = signal.getsignal(signal.SIGUSR1)
    with handling([signal.SIGUSR1], _mine) as installed:
        assert installed and signal.getsignal(signal.SIGUSR1) is _mine
    assert signal.getsignal(signal.SIGUSR1) == before


def test_an_ignored_signal_stays_ignored_unless_overridden() -> None:
    previous = signal.signal(signal.SIGUSR2, signal.SIG_IGN)  # as nohup leaves SIGHUP
    try:
        with handling([signal.SIGUSR2], _mine):
            assert signal.getsignal(signal.SIGUSR2) == signal.SIG_IGN
        with handling([signal.SIGUSR2], _mine, override_ignored=True):
            assert signal.getsignal(signal.SIGUSR2) is _mine
        assert signal.getsignal(signal.SIGUSR2) == signal.SIG_IGN
    finally:
        signal.signal(signal.SIGUSR2, previous)


def test_a_handler_not_set_from_python_comes_back_as_the_default(monkeypatch: pytest.MonkeyPatch) -> None:
    # signal.signal() gives None for a handler that C code installed; handing None back to it raises TypeError
    # (job.stop_signals did so). Here signal.signal reports None for the handler it replaces.
    real = signal.signal
    given: list[object] = []

    def reporting_none(signum: int, handler: Any) -> None:
        given.append(handler)
        real(signum, handler)

    monkeypatch.setattr(signal, "signal", reporting_none)
    with handling([signal.SIGUSR1], _mine):
        pass
    monkeypatch.undo()
    assert given == [_mine, signal.SIG_DFL]
    assert signal.getsignal(signal.SIGUSR1) == signal.SIG_DFL


def test_off_the_main_thread_nothing_changes() -> None:
    seen: list[bool] = []
    worker = threading.Thread(target=lambda: seen.append(handling([signal.SIGUSR1], _mine).__enter__()))
    worker.start()
    worker.join()
    assert seen == [False]
    assert signal.getsignal(signal.SIGUSR1) is not _mine
