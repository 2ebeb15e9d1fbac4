"""Every knob of a crawl in one frozen object, with its defaults as named constants."""

from __future__ import annotations

from dataclasses import dataclass

from crawler import __version__

DEFAULT_BACKEND = "asyncio"
DEFAULT_DB = "crawl.db"
# Modest defaults: a crawl of a short seed list samples each site and ends within minutes, and never
# keeps more than a handful of requests open (issue #3 adds per-host limits and delays).
DEFAULT_CONCURRENCY = 8
DEFAULT_DEPTH = 2
DEFAULT_MAX_PAGES = 500
DEFAULT_TIMEOUT = 10.0
DEFAULT_USER_AGENT = f"crawler/{__version__}"


@dataclass(frozen=True, slots=True)
class CrawlConfig:
    """What to crawl and how; tests derive variants with `dataclasses.replace`."""

    backend: str = DEFAULT_BACKEND
    db_path: str = DEFAULT_DB
    concurrency: int = DEFAULT_CONCURRENCY
    depth: int = DEFAULT_DEPTH
    max_pages: int = DEFAULT_MAX_PAGES
    same_host: bool = True
    timeout: float = DEFAULT_TIMEOUT
    user_agent: str = DEFAULT_USER_AGENT
