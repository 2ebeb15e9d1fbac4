"""Fault injection (issue #9): a crawl killed with SIGKILL at ten random moments in a row, and resumed each time
by running the same command again, ends with exactly the pages of an uninterrupted crawl, each fetched at most
twice.

The site is a tree: every page is linked exactly once, from its parent, and by nothing else. A link lost at a kill
(say, a page committed before its outlinks) loses the whole subtree under it for good; a page written twice or a
frontier entry left behind shows in the tables; a resume that fetches more than what the kill interrupted shows as
a third request for a path on the server.

The kill schedule comes from a seeded `random.Random`; the seed is printed and named in every failure message, and
`CRAWLER_DURABILITY_SEED=<seed>` replays it.
"""

from __future__ import annotations

import math
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterable
from contextlib import closing, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from crawler.site.generate import ORIGIN, Resource, Site, page_path
from crawler.site.server import SiteServer
from tests.conftest import Serve

SEED_VARIABLE = "CRAWLER_DURABILITY_SEED"
TREE_PAGES = 2_000
TREE_SEED = 9  # the site is the same every time; only the kill schedule is random
BRANCHING = (3, 5)  # children per page, drawn per page
PAGE_BYTES = (3_000, 30_000)  # body sizes, log-uniform
# Until the last kill the server waits this long before each answer: 8 in flight make at most 160 pages/s, so that
# a store committing once a second (as today's does) writes ~150 pages a commit, and the kills, each at the first
# commit that reaches its GROWTH or a little after, leave ~500 pages or more for the last run (which goes at full
# speed). Whatever the batching, a run ends early only if each commit writes more than ~200 pages.
PAGE_DELAY = 0.05
KILLS = 10
GROWTH = (30, 120)  # pages committed between one kill and the next, drawn per kill; often overshot by a batch
SETTLE = (0.0, 0.3)  # seconds between reaching that growth and the kill, drawn per kill
MAX_FETCHES = 2  # per URL: once in the run that was killed with it in flight, once in the run that wrote it
# Not in the site: 404s (robots.txt then allows everything, and there is no sitemap), asked for each run; never counted.
SITE_FILES = frozenset({"/robots.txt", "/sitemap.xml"})
POLL_SECONDS = 0.02
STALL_SECONDS = 30.0  # a run that commits nothing for this long is stuck
LATE_HITS_SECONDS = 0.1  # for requests sent just before a kill to reach the server's log
FINAL_TIMEOUT = 60.0
TEST_TIMEOUT = 180  # seconds; a run takes 25-50 s on two busy cores (the process backend's workers start slowest)
VOCABULARY = """
crawler page site link index archive section article report guide data network request response latency thread
process event loop greenlet socket header body title anchor query status byte size cache host robot frontier queue
depth scope parser table column row sample measure result error tree branch leaf root node parent child subtree
"""
WORDS = VOCABULARY.split()  # of the filler text


@dataclass(frozen=True, slots=True)
class Tree:
    """A site shaped as a tree, and what a crawl of it must record."""

    site: Site
    parent: dict[str, str]  # path -> the one page that links to it (all but `/`)
    children: dict[str, list[str]]  # path -> the pages it links to, in page order
    depth: dict[str, int]  # path -> link hops from `/`


def _corpus(rng: random.Random, size: int) -> str:
    """`size` characters or more of sentences of words (no markup), to cut page bodies from."""
    sentences: list[str] = []
    total = 0
    while total < size:
        sentence = " ".join(rng.choice(WORDS) for _ in range(rng.randint(8, 30))).capitalize() + ".\n"
        sentences.append(sentence)
        total += len(sentence)
    return "".join(sentences)


def tree_site(pages: int = TREE_PAGES, seed: int = TREE_SEED) -> Tree:
    """`pages` HTML pages numbered breadth first from `/`: each page links its 3-5 children once each (root-relative
    or absolute, at random), and nothing else; leaves link nothing. Bodies are a few KB to 30 KB of text."""
    rng = random.Random(seed)
    corpus = _corpus(rng, 2 * PAGE_BYTES[1])
    children: dict[int, list[int]] = {}
    depth = {0: 0}
    following = 1  # the next index to hand out; a parent's index is always below its children's
    for index in range(pages):
        count = min(rng.randint(*BRANCHING), pages - following)
        children[index] = list(range(following, following + count))
        following += count
        for child in children[index]:
            depth[child] = depth[index] + 1
    assert following == pages, "every page has a parent"
    site: Site = {}
    for index in range(pages):
        title = f"Page {index} at depth {depth[index]}"
        anchors = "".join(
            f'<li><a href="{rng.choice(("", ORIGIN))}{page_path(child)}">Page {child}</a></li>\n'
            for child in children[index]
        )
        size = int(math.exp(rng.uniform(math.log(PAGE_BYTES[0]), math.log(PAGE_BYTES[1]))))
        start = rng.randrange(len(corpus) - size)
        text = corpus[start : start + size]
        site[page_path(index)] = Resource(
            f'<!DOCTYPE html>\n<html><head><meta charset="utf-8"><title>{title}</title></head>\n'
            f"<body><h1>{title}</h1>\n<ul>\n{anchors}</ul>\n<main><p>{text}</p></main></body></html>\n",
        )
    return Tree(
        site=site,
        parent={page_path(child): page_path(index) for index, kids in children.items() for child in kids},
        children={page_path(index): [page_path(child) for child in kids] for index, kids in children.items()},
        depth={page_path(index): hops for index, hops in depth.items()},
    )


def _sample(items: Iterable[Any], count: int = 5) -> str:
    listed = sorted(items, key=str)
    more = f" and {len(listed) - count} more" if len(listed) > count else ""
    return ", ".join(map(str, listed[:count])) + more


def _query(db: Path, sql: str) -> list[tuple[Any, ...]]:
    """Rows of `sql` on `db`, read-only (a crawl may be writing it), on a connection closed at once."""
    with closing(sqlite3.connect(f"{db.as_uri()}?mode=ro", uri=True, timeout=5)) as conn:
        return conn.execute(sql).fetchall()


def committed_urls(db: Path) -> set[str] | None:
    """The URLs in `pages` now, or None while the database or its table is not there yet (or is locked)."""
    try:
        return {url for (url,) in _query(db, "SELECT url FROM pages")}
    except sqlite3.Error:
        return None


def committed_count(db: Path) -> int | None:
    """How many rows `pages` has now, or None while the database or its table is not there yet (or is locked)."""
    try:
        return int(_query(db, "SELECT count(*) FROM pages")[0][0])
    except sqlite3.Error:
        return None


def start_crawl(command: list[str], log: Path) -> subprocess.Popen[bytes]:
    """Start the crawl in a process group of its own (a process backend's workers included), stderr to `log`."""
    with log.open("ab") as stderr:
        return subprocess.Popen(
            command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=stderr, start_new_session=True
        )


def kill_group(process: subprocess.Popen[bytes]) -> None:
    """SIGKILL the crawl's whole process group, and reap its leader."""
    with suppress(ProcessLookupError):  # the group is gone already
        os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=30)


class EndedByItself(Exception):
    """The crawl exited before the test killed it."""


def wait_for_growth(process: subprocess.Popen[bytes], db: Path, count: int, pending: set[str]) -> set[str]:
    """Wait until `pages` holds `count` URLs or more, `pending` among them; returns them. Raises `EndedByItself` if
    the crawl exits first, AssertionError if it commits nothing for `STALL_SECONDS`."""
    last_size, last_change = None, time.monotonic()
    while True:
        size = committed_count(db)
        if size is not None and size >= count and (urls := committed_urls(db)) is not None and pending <= urls:
            return urls
        if process.poll() is not None:
            raise EndedByItself
        if size != last_size:
            last_size, last_change = size, time.monotonic()
        elif time.monotonic() - last_change > STALL_SECONDS:
            waiting = _sample(pending - (committed_urls(db) or set()))
            raise AssertionError(f"no page committed for {STALL_SECONDS:.0f} s, at {size} pages; waiting for {waiting}")
        time.sleep(POLL_SECONDS)


@dataclass(frozen=True, slots=True)
class Kill:
    """One kill: when, and what the killed run left behind."""

    seconds: float  # the run's life, start to kill
    pages: int  # rows in `pages` after the kill
    lost: int  # URLs requested from the server but not in `pages` after the kill: in flight or not yet committed
    held_back: bool  # the growth came before the previous kill's lost URLs were committed: the kill waited for them


@dataclass(slots=True)
class Schedule:
    """What the kills did, and how the crawl ended."""

    kills: list[Kill] = field(default_factory=list)
    exit_code: int | None = None  # of the run that ended by itself: the last one, or one that beat its kill


def crawl_with_kills(command: list[str], db: Path, log: Path, server: SiteServer, rng: random.Random) -> Schedule:
    """Run `command`, SIGKILL its process group once `pages` has grown by a random `GROWTH` and a random `SETTLE`
    has passed, `KILLS` times; then run it to its end. Each kill also waits for what the previous kill interrupted
    to be committed again, so that no URL is caught in flight twice (it would be fetched three times)."""
    schedule = Schedule()
    pending: set[str] = set()  # what the last killed run requested without committing
    pages = 0
    process: subprocess.Popen[bytes] | None = None
    try:
        for _ in range(KILLS):
            started = time.monotonic()
            process = start_crawl(command, log)
            target = pages + rng.randint(*GROWTH)
            try:
                held_back = not pending <= wait_for_growth(process, db, target, set())
                if held_back:
                    wait_for_growth(process, db, target, pending)
            except EndedByItself:
                schedule.exit_code = process.returncode
                return schedule
            time.sleep(rng.uniform(*SETTLE))
            kill_group(process)
            time.sleep(LATE_HITS_SECONDS)
            committed = committed_urls(db)
            assert committed is not None, f"{db} unreadable after a kill"
            requested = {server.url(hit.path) for hit in server.hits if hit.path not in SITE_FILES}
            pending = requested - committed
            pages = len(committed)
            schedule.kills.append(Kill(time.monotonic() - started, pages, len(pending), held_back))
        server.latency = 0.0  # nothing left to time: the last run goes at full speed
        process = start_crawl(command, log)
        schedule.exit_code = process.wait(timeout=FINAL_TIMEOUT)
        return schedule
    finally:
        if process is not None:
            kill_group(process)  # a no-op unless something failed with the crawl running


def problems_with(db: Path, tree: Tree, server: SiteServer) -> list[str]:
    """What differs from an exact, complete crawl of `tree`: pages, frontier, and requests made to `server`."""
    problems: list[str] = []
    columns = "url, status, size, depth, link_count, error_kind"
    pages = {url: tuple(row) for url, *row in _query(db, f"SELECT {columns} FROM pages")}
    expected = {server.url(path): path for path in tree.site}
    if missing := expected.keys() - pages.keys():
        # The topmost missing pages hang below a page that is there: its outlinks were lost.
        orphaned = Counter(tree.parent[expected[url]] for url in missing)
        lost = [f"{parent} ({count})" for parent, count in orphaned.items() if server.url(parent) not in missing]
        problems.append(
            f"{len(missing)} pages missing; pages whose outlinks were lost (children missing): {_sample(lost)}"
        )
    if extra := pages.keys() - expected.keys():
        problems.append(f"{len(extra)} pages not in the site: {_sample(extra)}")
    if twice := _query(db, "SELECT url, count(*) FROM pages GROUP BY url HAVING count(*) > 1"):
        problems.append(f"{len(twice)} URLs in pages more than once: {_sample(twice)}")
    wrong = []
    for url, path in expected.items():
        want = (200, len(tree.site[path].render(server.origin)), tree.depth[path], len(tree.children[path]), None)
        if url in pages and pages[url] != want:
            wrong.append(f"{path}: {pages[url]}, not {want}")
    if wrong:
        problems.append(f"{len(wrong)} pages recorded wrong ({columns}): {_sample(wrong)}")
    if twice := _query(db, "SELECT url, count(*) FROM frontier GROUP BY url HAVING count(*) > 1"):
        problems.append(f"{len(twice)} URLs in the frontier more than once: {_sample(twice)}")
    frontier = dict(_query(db, "SELECT url, state FROM frontier"))
    if not_done := [(url, state) for url, state in frontier.items() if state != "done"]:
        problems.append(f"{len(not_done)} frontier entries not done: {_sample(not_done)}")
    if frontier.keys() != expected.keys():
        problems.append(f"frontier: {len(expected.keys() - frontier.keys())} URLs of the site missing, "
                        f"{len(frontier.keys() - expected.keys())} not in the site")  # fmt: skip
    requests = Counter(hit.path for hit in server.hits if hit.path not in SITE_FILES)
    if unknown := requests.keys() - tree.site.keys():
        problems.append(f"requests for paths not in the site: {_sample(unknown)}")
    if repeated := {path: count for path, count in requests.items() if count > MAX_FETCHES}:
        problems.append(f"{len(repeated)} paths requested more than {MAX_FETCHES} times: {_sample(repeated.items())}")
    return problems


@pytest.mark.timeout(TEST_TIMEOUT)
def test_sigkill_at_random_moments_then_resume_loses_and_repeats_nothing(
    serve: Serve, backend: str, tmp_path: Path
) -> None:
    """SIGKILL the crawl's process group `KILLS` times in a row, each after a random 30-120 more committed pages and
    a random 0-300 ms, running the same command again each time, then let it finish: exactly the tree's pages, once
    each, with their status, size, depth and link count; every frontier entry done, once; no path requested more
    than twice."""
    seed = int(os.environ.get(SEED_VARIABLE) or random.randrange(2**32))
    print(f"{SEED_VARIABLE}={seed} ({backend})")  # noqa: T201
    tree = tree_site()
    server: SiteServer = serve(tree.site)
    server.latency = PAGE_DELAY
    db, log = tmp_path / "crawl.db", tmp_path / "crawl.stderr"
    command = [sys.executable, "-m", "crawler", "crawl", server.url("/"), "--backend", backend, "--db", str(db)]
    command += ["--depth", "100", "--max-pages", "100000", "--concurrency", "8", "--per-host", "8", "--quiet"]
    began = time.monotonic()
    schedule = crawl_with_kills(command, db, log, server, random.Random(seed))
    for number, kill in enumerate(schedule.kills, 1):
        print(f"kill {number:2} after {kill.seconds:3.1f} s: {kill.pages:4} pages, {kill.lost:2} lost"  # noqa: T201
              f"{', held back for the lost of the kill before' if kill.held_back else ''}")  # fmt: skip
    print(f"{len(schedule.kills)} kills and the last run: {time.monotonic() - began:.1f} s")  # noqa: T201

    context = f"after {len(schedule.kills)} kills ({SEED_VARIABLE}={seed}, {backend})"
    stderr = log.read_text(errors="replace")
    assert schedule.exit_code == 0, f"the crawl exited {schedule.exit_code} {context}:\n{stderr[-3000:]}"
    problems = problems_with(db, tree, server)
    assert not problems, f"{context}:\n" + "\n".join(problems)
    # Last, since a crawl that lost links ends early: the schedule must have been carried out to the end.
    assert len(schedule.kills) == KILLS, f"the crawl finished {context}: make GROWTH smaller or PAGE_DELAY longer"
