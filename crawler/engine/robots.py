"""robots.txt rules for one origin, decided from the response to its robots.txt (RFC 9309), parsed by
Protego (Scrapy's parser: wildcards, Allow/Disallow precedence, Crawl-delay)."""

from __future__ import annotations

from dataclasses import dataclass

from protego import Protego

from crawler.engine.urls import canonical


def robots_url(origin: str) -> str:
    """Where the robots.txt of `origin` (scheme://host:port) lives."""
    return canonical(f"{origin}/robots.txt")


@dataclass(frozen=True, slots=True)
class RobotRules:
    """What robots.txt allows: parsed rules, or everything, or nothing (with the reason)."""

    parser: Protego | None = None
    allow_all: bool = True
    reason: str = ""
    error_kind: str = "robots"  # recorded for pages it forbids: why they were not fetched

    @classmethod
    def from_response(cls, status: int | None, body: bytes, error: str | None) -> RobotRules:
        # `error` is the fetch's error kind (timeout, dns, refused...) when no response came back.
        """Rules from the final response to a robots.txt request: 2xx parsed; 4xx (but 429) allow all;
        5xx, 429 or no response at all disallow the whole origin for this run."""
        if status is not None and 200 <= status < 300:
            return cls(parser=Protego.parse(body.decode("utf-8", errors="replace")))
        if status is not None and 400 <= status < 500 and status != 429:
            return cls(allow_all=True)
        if status is not None:
            return cls(allow_all=False, reason=f"robots.txt unavailable (HTTP {status}): the host is skipped")
        # No answer at all: the pages would fail the same way, so they carry the network error's kind.
        return cls(allow_all=False, reason=f"robots.txt unreachable ({error}): the host is skipped",
                   error_kind=error or "error")  # fmt: skip

    def allowed(self, url: str, user_agent: str) -> bool:
        """Whether `user_agent` may fetch `url`."""
        if self.parser is None:
            return self.allow_all
        return bool(self.parser.can_fetch(url, user_agent))

    def sitemaps(self) -> list[str]:
        """The sitemaps its `Sitemap:` lines name, canonical (those that are not http(s) URLs are left out)."""
        if self.parser is None:
            return []
        found = []
        for url in self.parser.sitemaps:
            try:
                found.append(canonical(url.strip()))
            except ValueError:
                continue
        return found

    def crawl_delay(self, user_agent: str) -> float:
        """The Crawl-delay for `user_agent`, 0 if none."""
        if self.parser is None:
            return 0.0
        return float(self.parser.crawl_delay(user_agent) or 0.0)
