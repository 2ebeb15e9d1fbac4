"""Every knob of a crawl in one frozen object, with its defaults as named constants."""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

from crawler import __version__

DEFAULT_BACKEND = "asyncio"
DEFAULT_PARSER = "lxml"  # the same output as bs4, several times faster (README: Choosing a parser)
DEFAULT_DB = "crawl.db"
# Modest defaults: a crawl of a short seed list samples each site politely (two requests at a time per
# host, robots.txt obeyed) and ends within minutes.
DEFAULT_CONCURRENCY = 8
DEFAULT_PER_HOST = 2
DEFAULT_DELAY = 0.0
DEFAULT_DEPTH = 2
DEFAULT_MAX_PAGES = 500
DEFAULT_TIMEOUT = 30.0
DEFAULT_CONNECT_TIMEOUT = 10.0
DEFAULT_RETRIES = 2
DEFAULT_BACKOFF = 1.0
DEFAULT_MAX_SIZE = 10 * 1024 * 1024
DEFAULT_MAX_REDIRECTS = 10
DEFAULT_MAX_URL_LENGTH = 2083  # longer links are almost always traps or garbage (Scrapy's limit too)
DEFAULT_USER_AGENT = f"crawler/{__version__}"


@dataclass(frozen=True, slots=True)
class CrawlConfig:
    """What to crawl and how; tests derive variants with `dataclasses.replace`."""

    backend: str = DEFAULT_BACKEND
    parser: str = DEFAULT_PARSER
    db_path: str = DEFAULT_DB
    concurrency: int = DEFAULT_CONCURRENCY
    per_host: int = DEFAULT_PER_HOST
    delay: float = DEFAULT_DELAY  # seconds between request starts on one host (robots.txt may ask for more)
    depth: int = DEFAULT_DEPTH
    max_pages: int = DEFAULT_MAX_PAGES
    max_pages_per_host: int = 0  # 0: no cap
    same_host: bool = True
    timeout: float = DEFAULT_TIMEOUT  # total per request: connect, headers and body
    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT
    retries: int = DEFAULT_RETRIES
    backoff: float = DEFAULT_BACKOFF  # first retry waits about this long, then twice as long each time
    max_size: int = DEFAULT_MAX_SIZE
    max_redirects: int = DEFAULT_MAX_REDIRECTS
    max_url_length: int = DEFAULT_MAX_URL_LENGTH
    obey_robots: bool = True
    obey_nofollow: bool = True
    sitemaps: bool = True  # read the seed origins' sitemaps (robots.txt's Sitemap: lines and /sitemap.xml)
    user_agent: str = DEFAULT_USER_AGENT

    def settings(self) -> dict[str, Any]:
        """Every setting of the crawl, as the crawl record stores it (the database path aside)."""
        return {name: getattr(self, name) for name in SETTINGS}


# What the crawl record stores; a resume continues with these, and a flag given then overrides one.
SETTINGS: tuple[str, ...] = tuple(f.name for f in fields(CrawlConfig) if f.name != "db_path")
# Settings a crawl cannot change once it has begun: what is queued was chosen under them.
FIXED_SETTINGS: tuple[str, ...] = ("depth", "same_host")
