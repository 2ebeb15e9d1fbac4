"""URLs as browsers read them, and the one spelling the crawler keys each page by.

Every URL the crawler meets (a seed, a link, a `<base href>`, a redirect's `Location`) is parsed by the WHATWG URL
Standard's algorithm, through ada-url (the C++ parser Node.js uses), so the crawler requests what a browser would
request when a user clicks the same link. The canonical form is the WHATWG serialisation without its fragment,
which is never sent: exactly what a server receives, so that two URLs share a form only when a browser would send
the same request for both. The rules and the reasons: `docs/urls.md`.
"""

from __future__ import annotations

import functools

import ada_url

from parsers.base import absolute_link, http_url

SCHEMES = frozenset({"http", "https"})
# The same links recur on page after page (navigation, cross-links): most calls are repeats. Bounded, so
# memory does not grow with the crawl.
CANONICAL_CACHE_SIZE = 65_536


def resolve(href: str, base: str) -> str | None:
    """`href` resolved against `base` as a browser resolves a link (the parsers' own resolution), canonical;
    None when the result is not an http(s) URL or the standard rejects it. Never raises for any string."""
    try:
        return absolute_link(base, href)
    except ValueError:  # the standard's "failure"; a string that is not valid Unicode (lone surrogate) too
        return None


@functools.lru_cache(maxsize=CANONICAL_CACHE_SIZE)
def canonical(url: str) -> str:
    """The canonical spelling of an absolute http(s) URL: its WHATWG serialisation (scheme and host lower-cased,
    IDNA and IPv4 forms of the host normalised, default port dropped, dot segments resolved, characters a
    browser escapes escaped, nothing unescaped), without its fragment.

    Raises `ValueError` for anything that is not a valid absolute http(s) URL.
    """
    try:
        parsed = ada_url.normalize_url(url)
    except ValueError:
        raise ValueError(f"not a valid URL: {url!r}") from None
    link = http_url(parsed)  # an http(s) URL always has a host and a path, or the standard rejects it
    if link is None:
        raise ValueError(f"not an http(s) URL: {url!r}")
    return link


def _authority(url: str) -> tuple[str, str]:
    """(scheme://, host[:port]) of a canonical URL: its serialisation escapes `/` and `@` inside the userinfo,
    and a host holds neither, so string slicing is exact (and cheaper than a parse, with no cache to grow)."""
    start = url.index("://") + 3
    end = url.find("/", start)
    authority = url[start:] if end < 0 else url[start:end]
    return url[:start], authority[authority.rfind("@") + 1 :]


def host(url: str) -> str:
    """The host of a canonical URL, without port, as the standard serialises it (IPv6 in brackets)."""
    hostport = _authority(url)[1]
    if hostport.startswith("["):
        return hostport[: hostport.index("]") + 1]
    return hostport.partition(":")[0]


def origin(url: str) -> str:
    """scheme://host[:port] of a canonical URL: the unit of politeness and of robots.txt."""
    scheme, hostport = _authority(url)
    return scheme + hostport
