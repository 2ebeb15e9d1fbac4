"""What a sitemap's response means for a crawl, decided once for every frontier: the row that records it, the
pages it lists to queue, and the sitemaps to fetch next (an index's, or a redirect's target)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from crawler.engine.config import CrawlConfig
from crawler.engine.frontier import Request
from crawler.engine.loop import REDIRECT_STATUSES
from crawler.engine.sitemaps import SitemapEntry, parse_sitemap
from crawler.engine.urls import resolve

SITEMAP_MAX_REDIRECTS = 5
# Sitemap indexes followed into sitemap indexes at most (the protocol allows none; some sites nest one level).
SITEMAP_MAX_NESTING = 2
SITEMAP_DEPTH = 1  # a page a sitemap lists counts as one hop from the seed, as if the home page linked it


@dataclass(slots=True)
class SitemapAnswer:
    """A sitemap's response, decided: its `sitemaps` row, the pages to queue (at `SITEMAP_DEPTH`), and the
    sitemaps to request: (url, nesting, redirect hops)."""

    row: dict[str, Any]
    pages: list[SitemapEntry] = field(default_factory=list)
    sitemaps: list[tuple[str, int, int]] = field(default_factory=list)


def answer_sitemap(request: Request, status: int | None, body: bytes, truncated: bool, error_kind: str | None,
                   error_message: str | None, location: str | None, config: CrawlConfig,
                   may_read: Callable[[str, str], bool], in_scope: Callable[[str], bool]) -> SitemapAnswer:  # fmt: skip
    """The pages a sitemap lists (in scope by `in_scope`, within --max-url-length, if --depth reaches them) and
    the sitemaps it lists that `may_read(url, near)` allows; a redirect is followed (five at most); nesting
    deeper than `SITEMAP_MAX_NESTING` is an error. The row says what it held, or why it was unusable."""
    nesting = request.sitemap or 0
    target = resolve(location, request.url) if location else None
    row: dict[str, Any] = {"url": request.url, "fetched_at": datetime.now(UTC).isoformat(timespec="milliseconds"),
                           "status": status, "error_kind": error_kind, "error_message": error_message,
                           "pages": 0, "sitemaps": 0}  # fmt: skip
    answer = SitemapAnswer(row)
    if status in REDIRECT_STATUSES and target and request.hops < SITEMAP_MAX_REDIRECTS:
        if may_read(target, request.url):
            answer.sitemaps.append((target, nesting, request.hops + 1))
            row["error_message"] = f"redirected to {target}"
        else:
            row["error_kind"] = "sitemap"
            row["error_message"] = f"redirected to {target}: not followed (another host, or robots.txt)"
    elif status is not None and status != 200 and error_kind is None:
        row["error_kind"], row["error_message"] = "http", f"HTTP {status}"
    elif status == 200:
        sitemap = parse_sitemap(body, request.url)
        row["pages"], row["sitemaps"] = len(sitemap.pages), len(sitemap.sitemaps)
        faults = [sitemap.error] if sitemap.error else []
        if truncated:
            faults.insert(0, f"cut at --max-size ({config.max_size:,} bytes): the rest was not read")
        if sitemap.sitemaps and nesting >= SITEMAP_MAX_NESTING:
            faults.append(f"sitemap indexes nested more than {SITEMAP_MAX_NESTING} deep: not followed")
        else:
            answer.sitemaps += [(url, nesting + 1, 0) for url in sitemap.sitemaps if may_read(url, request.url)]
        if faults:
            row["error_kind"], row["error_message"] = "sitemap", "; ".join(faults)
        if config.depth >= SITEMAP_DEPTH:  # as links are: in scope, and not too long
            answer.pages = [entry for entry in sitemap.pages
                            if len(entry.url) <= config.max_url_length and in_scope(entry.url)]  # fmt: skip
    return answer
