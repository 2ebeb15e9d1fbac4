"""The peers `crawler bench` measures our backends against, on the same served site in the same run.

`python -m crawler.bench.peers {scrapy|lean} --db DB --stats-json FILE --concurrency N --per-host N SEED_URL...`

Each crawls every page reachable by links from the seeds on the seeds' host:port, with no depth limit, and
writes what it fetched to `pages(url, status, size, title, link_count)` in DB, 200 rows per transaction, and
`{"pages": rows written, "elapsed": seconds from the start of the crawl to the last row written}` to FILE.

- `scrapy`: a minimal Scrapy spider with fairly tuned settings, as a Scrapy user would write it.
- `lean`: one aiohttp session, a queue, N workers and lxml: the floor of Python overhead for the same work.

Only the standard library is imported here: each peer imports its own libraries when it runs. Exit status
3 (and one line on stderr) when Scrapy is not installed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import json
import sqlite3
import sys
import time
from collections.abc import AsyncIterator, Iterable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urldefrag, urljoin, urlsplit

BATCH = 200  # rows per transaction
SCHEMA = "CREATE TABLE pages (url TEXT PRIMARY KEY, status INTEGER, size INTEGER, title TEXT, link_count INTEGER)"
HTML_TYPES = frozenset({"text/html", "application/xhtml+xml"})
EXIT_SCRAPY_MISSING = 3
SCRAPY_CONCURRENT_ITEMS = 8  # Scrapy starts this many tasks for the output of every response: 100 by default

Row = tuple[str, int, int, str | None, int]


class PageWriter:
    """The `pages` table of a new database, written in batches; times the crawl from its creation to the
    commit of the last row."""

    def __init__(self, db: Path) -> None:
        self._connection = sqlite3.connect(db)
        with self._connection:
            self._connection.execute("DROP TABLE IF EXISTS pages")
            self._connection.execute(SCHEMA)
        self._rows: list[Row] = []
        self.pages = 0
        self.started = self.finished = time.perf_counter()

    def add(self, row: Row) -> None:
        """Queue one fetched page's row; write the batch when it is full."""
        self._rows.append(row)
        if len(self._rows) >= BATCH:
            self.flush()

    def flush(self) -> None:
        """Write the queued rows in one transaction."""
        if not self._rows:
            return
        with self._connection:
            self._connection.executemany("INSERT INTO pages VALUES (?, ?, ?, ?, ?)", self._rows)
        self.pages += len(self._rows)
        self._rows = []
        self.finished = time.perf_counter()

    def close(self, stats_json: Path) -> None:
        """Write the last rows, close the database and write the stats JSON."""
        self.flush()
        self._connection.close()
        stats_json.write_text(json.dumps({"pages": self.pages, "elapsed": self.finished - self.started}))


def collapsed(title: str | None) -> str | None:
    """A title with its whitespace collapsed; None for a missing or blank one."""
    return " ".join(title.split()) or None if title is not None else None


def absolute_links(base: str, hrefs: Iterable[str]) -> set[str]:
    """The distinct absolute http(s) URLs, without fragments, that `hrefs` resolve to against `base`."""
    links = set()
    for href in hrefs:
        try:
            link = urldefrag(urljoin(base, href.strip())).url
        except ValueError:  # e.g. a malformed IPv6 host: a link that goes nowhere
            continue
        if link.startswith(("http://", "https://")):
            links.add(link)
    return links


def netloc(url: str) -> str:
    """host:port of a URL as written, lower-cased: the scope of a crawl."""
    return urlsplit(url).netloc.lower()


def run_scrapy(seeds: list[str], db: Path, stats_json: Path, concurrency: int, per_host: int) -> int:
    """Crawl with a minimal Scrapy spider run by `AsyncCrawlerProcess`; rows go through an item pipeline.
    Returns the exit status: `EXIT_SCRAPY_MISSING` when Scrapy is not installed."""
    try:
        import scrapy
    except ModuleNotFoundError as exc:
        if exc.name != "scrapy":
            raise
        from crawler.words import install_hint  # the standard library's importlib alone

        print(f"scrapy is not installed: {install_hint('bench')}", file=sys.stderr)  # noqa: T201
        return EXIT_SCRAPY_MISSING
    from scrapy.crawler import AsyncCrawlerProcess
    from scrapy.http import HtmlResponse, Request, Response
    from scrapy.utils.response import get_base_url

    hosts = {netloc(seed) for seed in seeds}

    written: list[bool] = []  # True once every row and the stats are written

    class PagePipeline:
        """Stores every item as a row of the `pages` table."""

        writer: PageWriter

        def open_spider(self) -> None:
            self.writer = PageWriter(db)

        def process_item(self, item: dict[str, Any]) -> dict[str, Any]:
            self.writer.add((item["url"], item["status"], item["size"], item["title"], item["link_count"]))
            return item

        def close_spider(self) -> None:
            self.writer.close(stats_json)
            written.append(True)

    class PeerSpider(scrapy.Spider):
        """Every response is an item; a successful HTML page's on-site links are followed."""

        name = "peer"

        async def start(self) -> AsyncIterator[Request]:
            for seed in seeds:  # not start_urls, whose requests skip the duplicate filter: `/` would be fetched twice
                yield Request(seed, callback=self.parse)

        def parse(self, response: Response, **kwargs: Any) -> Iterator[Request | dict[str, Any]]:
            title: str | None = None
            links: set[str] = set()
            if isinstance(response, HtmlResponse) and 200 <= response.status < 300:
                title = collapsed(response.css("title::text").get())
                links = absolute_links(get_base_url(response), response.css("a::attr(href), area::attr(href)").getall())
                yield from response.follow_all([link for link in links if netloc(link) in hosts], callback=self.parse)
            yield {"url": response.url, "status": response.status, "size": len(response.body), "title": title,
                   "link_count": len(links)}  # fmt: skip

    process = AsyncCrawlerProcess(
        settings={
            "USER_AGENT": "crawler-bench-peer (scrapy)",
            "ROBOTSTXT_OBEY": True,
            "CONCURRENT_REQUESTS": concurrency,
            "CONCURRENT_REQUESTS_PER_DOMAIN": per_host,
            "CONCURRENT_ITEMS": SCRAPY_CONCURRENT_ITEMS,
            "DOWNLOAD_DELAY": 0,
            "AUTOTHROTTLE_ENABLED": False,
            "DEPTH_LIMIT": 0,
            # Off, as Scrapy advises for broad crawls: cookies (which our crawler keeps) and Referer. If anything,
            # this favours Scrapy.
            "COOKIES_ENABLED": False,
            "REFERER_ENABLED": False,
            "HTTPERROR_ALLOW_ALL": True,  # 4xx/5xx responses reach the callback, to be rows like any other
            "ITEM_PIPELINES": {PagePipeline: 300},
            "LOG_LEVEL": "ERROR",
            "TELNETCONSOLE_ENABLED": False,
        }
    )
    process.crawl(PeerSpider)
    process.start()
    return 0 if written else 1  # Scrapy logs an exception in the pipeline and carries on: it is a failed run


class LeanParser:
    """The lean loop's page work: lxml's tree, the title and the hrefs by XPath, resolved by urljoin. Its own
    class so that the bench can time it alone, on the same pages (crawler.bench.parse_alone)."""

    def __init__(self) -> None:
        from lxml import etree

        self._tree = functools.partial(etree.fromstring, parser=etree.HTMLParser())
        self._title = etree.XPath("string(//title)")
        self._hrefs = etree.XPath("//a/@href | //area/@href")

    def parse(self, body: bytes, url: str) -> tuple[str | None, set[str]]:
        """The title and the distinct absolute links of an HTML body fetched from `url`."""
        root = self._tree(body)
        if root is None:
            return None, set()
        return collapsed(self._title(root)), absolute_links(url, self._hrefs(root))


async def _lean_crawl(seeds: list[str], db: Path, stats_json: Path, concurrency: int, per_host: int) -> None:
    import aiohttp

    parser = LeanParser()
    writer = PageWriter(db)  # the clock starts once the libraries are imported, as Scrapy's does
    hosts = {netloc(seed) for seed in seeds}
    seen = set(seeds)
    queue: asyncio.Queue[str] = asyncio.Queue()
    for seed in seeds:
        queue.put_nowait(seed)

    async def fetch(session: aiohttp.ClientSession, url: str) -> None:
        # A redirect is a row, and its target a link like any other: following it here would fetch a page
        # already seen again (the server counts every request).
        async with session.get(url, allow_redirects=False) as response:
            body = await response.read()
            status, content_type = response.status, response.content_type
            location = response.headers.get("Location")
        title: str | None = None
        links: set[str] = set()
        if 300 <= status < 400 and location:
            links = absolute_links(url, [location])
        elif 200 <= status < 300 and content_type in HTML_TYPES and body:
            title, links = parser.parse(body, url)
        for link in links:
            if link not in seen and netloc(link) in hosts:
                seen.add(link)
                queue.put_nowait(link)
        writer.add((url, status, len(body), title, len(links)))

    async def worker(session: aiohttp.ClientSession) -> None:
        while True:
            url = await queue.get()
            with contextlib.suppress(aiohttp.ClientError, TimeoutError):  # no response: no row
                await fetch(session, url)
            queue.task_done()

    async def finish(workers: list[asyncio.Task[None]]) -> None:
        await queue.join()
        writer.close(stats_json)
        for task in workers:
            task.cancel()

    connector = aiohttp.TCPConnector(limit=concurrency, limit_per_host=per_host)
    headers = {"User-Agent": "crawler-bench-peer (lean)"}
    # In a task group, an unexpected exception in any worker ends the crawl (and the run, with a traceback).
    async with aiohttp.ClientSession(connector=connector, headers=headers) as session, asyncio.TaskGroup() as group:
        group.create_task(finish([group.create_task(worker(session)) for _ in range(concurrency)]))


def run_lean(seeds: list[str], db: Path, stats_json: Path, concurrency: int, per_host: int) -> int:
    """Crawl with one aiohttp session, a queue, `concurrency` worker coroutines and lxml. The floor of Python
    overhead, not a crawler: no robots.txt, no retries, no politeness beyond the connection limits, and
    `<base href>` is ignored. Returns the exit status."""
    asyncio.run(_lean_crawl(seeds, db, stats_json, concurrency, per_host))
    return 0


PEERS = {"scrapy": run_scrapy, "lean": run_lean}


def main(argv: list[str] | None = None) -> int:
    """Parse the command line, run the peer, return its exit status."""
    parser = argparse.ArgumentParser(
        prog="python -m crawler.bench.peers", description="Crawl the seeds' sites as one of the bench's peers."
    )
    parser.add_argument("peer", choices=sorted(PEERS))
    parser.add_argument("--db", type=Path, required=True, help="the SQLite database to write")
    parser.add_argument("--stats-json", type=Path, required=True, help='where to write {"pages", "elapsed"}')
    parser.add_argument("--concurrency", type=int, default=64, help="requests in flight at most")
    parser.add_argument("--per-host", type=int, default=64, help="requests in flight to one host at most")
    parser.add_argument("seeds", nargs="+", metavar="SEED_URL")
    args = parser.parse_args(argv)
    return PEERS[args.peer](args.seeds, args.db, args.stats_json, args.concurrency, args.per_host)


if __name__ == "__main__":
    sys.exit(main())
