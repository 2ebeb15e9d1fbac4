"""Progress while a crawl runs: on a terminal a live display (rich: time elapsed, a status line, and a bar
with the time left when --max-pages bounds the crawl), plain periodic lines when the output is a file or a
pipe, or nothing (--quiet)."""

from __future__ import annotations

import sys
import time
from enum import StrEnum
from types import TracebackType
from typing import TextIO

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.progress_bar import ProgressBar
from rich.table import Table
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


def clock(seconds: float) -> str:
    """12.5 -> '0:12', 3725 -> '1:02:05': a duration as a clock shows it."""
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02}:{secs:02}" if hours else f"{minutes}:{secs:02}"


def bounded(summary: CrawlSummary) -> bool:
    """Whether --max-pages bounds the crawl: the pages done and queued reach the budget, so the budget is the
    crawl's end (until then the frontier's size, which grows with every page, is no estimate of it)."""
    done = summary.resumed_from + summary.pages
    return summary.max_pages > 0 and done + summary.queued >= summary.max_pages


def live_view(summary: CrawlSummary) -> RenderableType:
    """The live display: time elapsed and the status line; when --max-pages bounds the crawl, above them a bar
    of the budget done and the time left at this run's rate."""
    status = Text(f"{clock(summary.elapsed)} elapsed  {status_line(summary)}")
    if not bounded(summary):
        return status
    done = min(summary.resumed_from + summary.pages, summary.max_pages)
    rate = summary.pages_per_second
    left = clock((summary.max_pages - done) / rate) if rate > 0 else "-:--"
    bar = Table.grid(padding=(0, 2))
    bar.add_row(
        ProgressBar(total=summary.max_pages, completed=done, width=40),
        Text(f"{done:,}/{summary.max_pages:,} pages (--max-pages)  {left} left"),
    )
    return Group(bar, status)


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
            self._live.update(live_view(summary), refresh=True)
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
