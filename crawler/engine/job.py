"""A crawl as a durable job: the database holds its seeds and settings and says who is crawling it.

`run_job` opens the crawl database (only one of ours, or a new one), takes ownership of it, decides whether
this is a new crawl or the continuation of an unfinished one, records a run, runs the engine with SIGINT and
SIGTERM turned into stop requests, and closes the run however it ends.
"""

from __future__ import annotations

import signal
import sqlite3
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import FrameType
from typing import Any

from crawler.engine.config import DEFAULT_DB, FIXED_SETTINGS, CrawlConfig
from crawler.engine.local_frontier import LocalFrontier
from crawler.engine.loop import Engine
from crawler.engine.metrics import ResourceMeter
from crawler.engine.signals import handling
from crawler.engine.summary import CrawlSummary, ProgressCallback, StopRequests
from crawler.engine.urls import origin
from crawler.words import counted
from fetchers import FetchSettings, get_fetcher
from parsers import get_parser
from storage import (
    FAILED,
    FINISHED,
    INTERRUPTED,
    LIMIT,
    Changes,
    CrawlRecord,
    FrontierEntry,
    NotOurs,
    Owned,
    PageStore,
    changes,
    check_ours,
    last_run_refreshed,
    last_run_status,
    previous_pass_end,
    read_crawl,
)

CRAWL, DEMO = "crawl", "demo"  # who made a database: `demo` replaces only databases it made


class JobError(Exception):
    """The crawl cannot start as asked; the message is worded for the user (exit code 2)."""


class NothingToResume(JobError):
    """--resume was asked for, but the database holds no unfinished crawl."""


@dataclass(frozen=True, slots=True)
class JobRequest:
    """What the user asked for: seeds, the settings given on the command line, and how to treat a database
    that holds an unfinished crawl."""

    db_path: str = DEFAULT_DB
    seeds: list[str] = field(default_factory=list)
    given: dict[str, Any] = field(default_factory=dict)  # settings named on the command line
    resume: bool = False  # insist on continuing an unfinished crawl
    restart: bool = False  # forget an unfinished crawl and start from the seeds
    refresh: bool = False  # crawl a finished crawl again, asking only for what changed
    made_by: str = CRAWL


@dataclass(slots=True)
class Job:
    """The crawl as it runs: its settings, and what this run changed or added."""

    config: CrawlConfig
    seeds: list[str]  # every seed of the crawl
    resumed: bool = False
    overrides: dict[str, tuple[Any, Any]] = field(default_factory=dict)  # setting -> (stored, now)
    new_seeds: list[str] = field(default_factory=list)  # seeds this run added to an unfinished crawl
    refresh: bool = False  # conditional requests for the pages an earlier pass fetched
    changes: Changes | None = None  # after a refresh that finished: what changed since the pass before


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _refuse_fixed_changes(stored: dict[str, Any], given: dict[str, Any]) -> None:
    """`JobError` if `given` changes a setting an unfinished crawl cannot change (its depth, its scope)."""
    for name in FIXED_SETTINGS:
        if name in given and name in stored and given[name] != stored[name]:
            raise JobError(f"{_flag(name)} cannot change in an unfinished crawl (it is {stored[name]}); "
                           "leave it out to continue, or add --restart to start anew")  # fmt: skip


def _continued(
    store: PageStore, request: JobRequest, record: CrawlRecord | None, fixed: bool
) -> tuple[CrawlConfig, dict[str, tuple[Any, Any]]]:
    """The crawl's stored settings with the given ones in place of theirs, and what those changed. With
    `fixed`, `JobError` if one given changes what an unfinished crawl cannot."""
    stored = record.settings if record else (store.legacy_settings() or {})
    base = replace(CrawlConfig(), **{k: v for k, v in stored.items() if k in CrawlConfig().settings()})
    if fixed:
        _refuse_fixed_changes(base.settings(), request.given)
    overrides = {
        name: (getattr(base, name), value) for name, value in request.given.items() if getattr(base, name) != value
    }
    return replace(base, db_path=request.db_path, **{name: now for name, (_, now) in overrides.items()}), overrides


def _seed_entries(seeds: list[str]) -> list[FrontierEntry]:
    return [FrontierEntry(url, origin(url), 0) for url in seeds]


def _plan_refresh(store: PageStore, request: JobRequest, record: CrawlRecord | None) -> Job:
    """A new pass over a crawl's site, with its seeds (and any given) and its settings: a crawl that finished,
    or that spent its page budget (--max-pages)."""
    if not store.done:
        raise JobError(f"{request.db_path} holds no finished crawl to refresh: crawl first")
    if store.queued and last_run_status(store.db) != LIMIT:
        raise JobError(f"the crawl in {request.db_path} is unfinished: continue it with --resume (or start anew "
                       "with --restart) before a refresh")  # fmt: skip
    config, overrides = _continued(store, request, record, fixed=False)
    known = record.seeds if record else []
    seeds = known + [url for url in request.seeds if url not in known]
    if not seeds:
        raise JobError(f"{request.db_path} does not record its seeds (an older crawler wrote it): give them")
    store.reset_frontier(_seed_entries(seeds))
    store.save_crawl(seeds, config.settings())
    return Job(config, seeds, overrides=overrides, new_seeds=seeds[len(known) :], refresh=True)


def _plan(store: PageStore, request: JobRequest) -> Job:
    """A new crawl, the unfinished one continued with its stored settings and the given overrides, or a
    refresh of a finished one."""
    record = store.crawl_record()
    if request.refresh:
        return _plan_refresh(store, request, record)
    cap = request.given.get("max_pages_per_host")
    if (
        (request.resume or store.queued)
        and store.capped
        and record
        and cap is not None
        and cap != record.settings.get("max_pages_per_host")
    ):
        _refuse_fixed_changes(record.settings, request.given)  # before anything changes
        store.uncap()  # a raised cap: what the old one skipped is crawlable again
    if request.restart:
        store.reset_frontier(_seed_entries(request.seeds))
    elif store.queued:
        config, overrides = _continued(store, request, record, fixed=True)
        known = record.seeds if record else []
        new_seeds = [url for url in request.seeds if url not in known]
        store.save_crawl(known + new_seeds, config.settings())
        return Job(config, known + new_seeds, True, overrides, new_seeds, refresh=last_run_refreshed(store.db))
    elif request.resume:
        raise NothingToResume(f"{request.db_path} holds no unfinished crawl to resume")
    elif store.done or store.capped:
        store.reset_frontier(_seed_entries(request.seeds))  # the last crawl here ran to its end: start anew
    config = replace(CrawlConfig(db_path=request.db_path), **request.given)
    store.save_crawl(request.seeds, config.settings(), made_by=request.made_by)
    return Job(config, list(request.seeds))


@contextmanager
def stop_signals() -> Iterator[StopRequests]:
    """Count SIGINT and SIGTERM as stop requests while the block runs (in the main thread; elsewhere the
    default handlers stay)."""
    stops = StopRequests()

    def handler(signum: int, frame: FrameType | None) -> None:
        stops.count += 1
        stops.signal_name = stops.signal_name or signal.Signals(signum).name

    # Even if the crawl was started ignoring them (a background job in a script): it stops cleanly or not at all.
    with handling((signal.SIGINT, signal.SIGTERM), handler, override_ignored=True):
        yield stops


def open_store(path: str, resume: bool) -> PageStore:
    """Open the crawl database for writing: only one of ours, or a new one. `JobError` for anything else,
    with the file left as it was; with `resume`, a missing file is not created."""
    try:
        exists = check_ours(path)
    except NotOurs as exc:
        raise JobError(str(exc)) from None
    if resume and not exists:
        raise NothingToResume(f"{path} holds no crawl to resume")
    try:
        return PageStore(path)
    except sqlite3.Error as exc:
        raise JobError(f"cannot write the database {path}: {exc}") from None


def remove_demo_database(path: str | Path) -> None:
    """Delete the crawl database at `path` (and its WAL files) if `crawler demo` made it and no crawl owns
    it; nothing there is fine too. `JobError` for any other file, which is left alone."""
    try:
        exists = check_ours(path)
    except NotOurs as exc:
        raise JobError(f"{exc}: `crawler demo` replaces only a database it made") from None
    if not exists:
        if Path(path).exists():
            Path(path).unlink()  # an empty file
        return
    record, owner = read_crawl(path)
    if record is None or record.made_by != DEMO:
        raise JobError(f"{path} holds a crawl that `crawler demo` did not make; choose another --db")
    if owner is not None:
        raise Owned(f"{path} is being crawled by {owner.describe()}; wait for it to end, or stop it first")
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)


def run_job(request: JobRequest, progress: ProgressCallback | None = None,
            notify: Callable[[str], None] | None = None) -> tuple[Job, CrawlSummary]:  # fmt: skip
    """Run (or continue) the crawl in `request.db_path` to its end, its page budget, or a stop request."""
    tell = notify or (lambda message: None)
    store = open_store(request.db_path, request.resume)
    try:
        store.acquire()
        job = _plan(store, request)
        config = job.config
        if job.resumed:
            tell(
                f"Resuming the crawl in {config.db_path}: {counted(store.done, 'page')} done, {store.queued:,} queued."
            )
            for name, (was, now) in job.overrides.items():
                tell(f"  {_flag(name)} {now} (the crawl had {was})")
            if job.new_seeds:
                tell(f"  {len(job.new_seeds)} new seed(s) added to it")
        settings = FetchSettings(concurrency=config.concurrency, timeout=config.timeout,
                                 connect_timeout=config.connect_timeout, user_agent=config.user_agent,
                                 max_size=config.max_size)  # fmt: skip
        meter = ResourceMeter()
        overrides = {name: now for name, (_, now) in job.overrides.items()}
        # A refresh starts from every seed of the crawl, named or not; a resume records those it was given.
        given = job.seeds if job.refresh and not job.resumed else request.seeds
        run_id = store.start_run(config.settings(), given, overrides, new_pass=not job.resumed,
                                 refresh=job.refresh)  # fmt: skip
        started = time.perf_counter()

        def measured(summary: CrawlSummary) -> None:
            meter.sample()  # about once a second
            if progress is not None:
                progress(summary)

        engine: Engine | None = None
        status = FAILED
        try:
            with stop_signals() as stops:
                frontier = LocalFrontier(config, store, job.seeds, refresh=job.refresh)
                fetcher = get_fetcher(config.backend)(settings)
                engine = Engine(config, fetcher, get_parser(config.parser), frontier, stops, measured, tell)
                summary = engine.run()
            status = INTERRUPTED if summary.interrupted else LIMIT if summary.limit_reached else FINISHED
        finally:
            meter.sample(force=True)
            store.finish_run(status, {
                "elapsed_s": engine.summary.elapsed if engine else time.perf_counter() - started,
                "cpu_seconds": meter.cpu_seconds,
                "peak_rss_mb": meter.peak_rss / 2**20,
                "parse_seconds": engine.summary.parse_seconds if engine else None,
                "store_seconds": store.write_seconds,
                "retries": engine.summary.retries if engine else None,
            })  # fmt: skip
        previous = previous_pass_end(store.db, run_id)
        if job.refresh and status in (FINISHED, LIMIT) and previous is not None:
            job.changes = changes(store.db, previous, run_id)
        return job, summary
    finally:
        store.close()
