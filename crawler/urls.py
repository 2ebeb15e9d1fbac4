"""URL canonicalisation and scope: one spelling per page, so each is fetched once."""

from __future__ import annotations

import functools

from yarl import URL

SCHEMES = frozenset({"http", "https"})
# The same links recur on page after page (navigation, cross-links): most calls are repeats. Bounded, so
# memory does not grow with the crawl.
CANONICAL_CACHE_SIZE = 65_536


@functools.lru_cache(maxsize=CANONICAL_CACHE_SIZE)
def canonical(url: str) -> str:
    """The canonical spelling of an absolute http(s) URL: scheme and host lower-cased, default port and
    fragment dropped, dot segments resolved, percent-encoding normalised, empty path as `/`.

    Raises `ValueError` for anything that is not a well-formed absolute http(s) URL.
    """
    parsed = URL(url.strip()).with_fragment(None)  # yarl itself normalises case, port, dots and escapes
    if parsed.scheme not in SCHEMES:
        raise ValueError(f"not an http(s) URL: {url!r}")
    if not parsed.host:
        raise ValueError(f"no host in URL: {url!r}")
    if parsed.raw_path == "/" and not parsed.raw_query_string:
        parsed = parsed.with_path("/")  # yarl keeps "http://h" without its slash; one spelling only
    return str(parsed)


def host(url: str) -> str:
    """The host of a canonical URL (without port)."""
    return URL(url).host or ""


def origin(url: str) -> str:
    """scheme://host[:port] of a canonical URL: the unit of politeness and of robots.txt."""
    return str(URL(url).origin())
