"""Progress while a crawl runs: a live status line on a terminal (rich), plain periodic lines when the
output is a file or a pipe, or nothing (--quiet)."""

from __future__ import annotations

import sys
import time
from enum import StrEnum
from types import TracebackType
from typing import TextIO

from rich.console import Console
from rich.live import Live
from rich.text import Text

from crawler.engine.summary import CrawlSummary
from crawler.words import counted, human_bytes

LOG_INTERVAL = 5.0


class Mode(StrEnum):
    """How progress is shown."""

    LIVE = "live"
    LOG = "log"
    QUIET = "quiet"


def status_line(summary: CrawlSummary) -> str:
    """One line: what is done, queued and in flight, errors, rate and bytes."""
    return (
        f"{counted(summary.pages, 'page')}  {summary.queued:,} queued  {summary.in_flight:,} in flight  "
        f"{counted(summary.errors, 'error')}  {counted(summary.retries, 'retry', 'retries')}  "
        f"{summary.pages_per_second:,.1f} pages/s  "
        f"{human_bytes(summary.bytes)}"
    )


class ProgressDisplay:
    """A progress callback for the engine; use it as a context manager so a live line is cleared."""

    def __init__(self, mode: Mode, stream: TextIO | None = None) -> None:
        self.mode = mode
        self._stream = stream or sys.stderr
        self._live: Live | None = None
        self._last_log = time.monotonic()

    @classmethod
    def for_terminal(cls, quiet: bool, stream: TextIO | None = None) -> ProgressDisplay:
        """Live on a terminal, periodic lines otherwise, nothing when `quiet`."""
        stream = stream or sys.stderr
        if quiet:
            return cls(Mode.QUIET, stream)
        return cls(Mode.LIVE if stream.isatty() else Mode.LOG, stream)

    def __enter__(self) -> ProgressDisplay:
        if self.mode is Mode.LIVE:
            # No refresh thread: the engine calls us every quarter second (and gevent wants no threads).
            self._live = Live(console=Console(file=self._stream), auto_refresh=False, transient=True)
            self._live.start()
        return self

    def __call__(self, summary: CrawlSummary) -> None:
        if self._live is not None:
            self._live.update(Text(status_line(summary)), refresh=True)
        elif self.mode is Mode.LOG and time.monotonic() - self._last_log >= LOG_INTERVAL:
            self._last_log = time.monotonic()
            print(f"[{summary.elapsed:7.1f} s] {status_line(summary)}", file=self._stream, flush=True)

    def message(self, text: str) -> None:
        """Say something to the user now (above the live line, if there is one), even when quiet."""
        if self._live is not None:
            self._live.console.print(text, markup=False, highlight=False)
        else:
            print(text, file=self._stream, flush=True)

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._live is not None:
            self._live.stop()
