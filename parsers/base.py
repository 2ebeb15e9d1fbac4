"""What a parser makes of a page body, and the interface every parser implements."""

from __future__ import annotations

import codecs
import contextlib
import functools
from collections.abc import Iterable
from dataclasses import dataclass, field
from email.message import Message
from typing import Protocol

import ada_url
from bs4.dammit import EncodingDetector

HTML_TYPES = frozenset({"text/html", "application/xhtml+xml"})


@dataclass(frozen=True, slots=True)
class Page:
    """The parts of an HTML page the crawler keeps: its title, its outgoing http(s) links (absolute, in the
    crawler's canonical form, the WHATWG serialisation without fragment; in page order, without repeats),
    which of them only appear as rel=nofollow, whether a robots meta tag says not to follow any, and how
    many hrefs a browser could not resolve at all."""

    title: str | None = None
    links: list[str] = field(default_factory=list)
    nofollow: frozenset[str] = frozenset()
    meta_nofollow: bool = False
    unusable: int = 0


class Parser(Protocol):
    """Turns a body into a `Page`; `url` is the address the body came from (after redirects)."""

    def parse(self, body: bytes, url: str, content_type: str | None) -> Page:
        """Extract the title and the absolute, fragment-free http(s) links of an HTML body."""
        ...


def _header(content_type: str) -> Message:
    message = Message()
    message["Content-Type"] = content_type
    return message


def media_type(content_type: str | None) -> str | None:
    """`text/html; charset=utf-8` -> `text/html`; None when there is no header."""
    if not content_type:
        return None
    return _header(content_type).get_content_type()


def charset(content_type: str | None) -> str | None:
    """The charset parameter of a Content-Type header, if any."""
    if not content_type:
        return None
    value = _header(content_type).get_param("charset")
    return value if isinstance(value, str) else None


def is_html(content_type: str | None) -> bool:
    """Whether a response with this Content-Type is an HTML page to parse."""
    return media_type(content_type) in HTML_TYPES


_PREFIXES = ("http://", "https://")
_NO_BASE = ("data:", "javascript:")  # schemes a <base href> may not set (HTML Standard, frozen base URL)
_BOMS = (codecs.BOM_UTF8, codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE, codecs.BOM_UTF32_LE, codecs.BOM_UTF32_BE)
# Browsers (WHATWG Encoding) read these labels as windows-1252, which servers mean by them in practice.
_AS_CP1252 = frozenset({"ascii", "iso8859-1"})
# The Encoding Standard maps these labels to the superset a browser decodes and encodes with (Python's names).
_AS_BROWSERS_DO = {
    **dict.fromkeys(_AS_CP1252, "cp1252"),
    "iso8859-9": "cp1254",
    "tis-620": "cp874",
    "iso8859-11": "cp874",
    "shift_jis": "cp932",
    "euc_kr": "cp949",
    "gb2312": "gb18030",
    "gbk": "gb18030",
    "big5": "big5hkscs",
}


def absolute_link(base: str, href: str) -> str | None:
    """`href` resolved against the absolute URL `base` as a browser resolves it (the WHATWG URL Standard, by
    ada-url), without its fragment. None when the result is not http(s); `ValueError` when the standard
    rejects it (a link that goes nowhere in a browser either)."""
    return http_url(ada_url.join_url(base, href))  # join_url strips leading and trailing C0 controls and spaces


# A site's pages repeat most of their hrefs (navigation, cross-links, in-page anchors), and most hrefs resolve
# alike on every page of a site: resolved once, they are looked up after (0.1 ms less parsing a page on the
# bench's site, of 110 hrefs a page). Bounded in entries, and in their size: longer hrefs are not kept.
RESOLVED_CACHE_SIZE = 16_384
RESOLVED_HREF_LIMIT = 2_048
_ANY_BASE = "http://a/"  # an absolute http(s) href takes nothing from its base
_SCHEMES = ("http://", "https://")


@functools.lru_cache(maxsize=RESOLVED_CACHE_SIZE)
def _resolved(base: str, href: str) -> str | None:
    return absolute_link(base, href)  # (a ValueError is not cached: it is raised again, as it should be)


def resolve_shared(base: str, root: str | None, href: str) -> str | None:
    """`absolute_link(base, href)`, from the memo where the standard takes less than the whole base, so that
    other pages' links share it: a fragment-only href resolves to the base itself; one that starts with `/`
    (path-absolute, or scheme-relative) takes no more than the base's scheme and authority, which `root` (the
    base resolved with `/`; None if the base does not parse) has; an absolute http(s) one takes nothing."""
    if root is not None and len(href) <= RESOLVED_HREF_LIMIT:
        if href.startswith("#"):
            if href.isascii():  # resolves, whatever follows (non-ASCII could be a lone surrogate, which fails)
                return _resolved(base, "#")
        elif href.startswith("/"):
            return _resolved(root, href)
        elif href.startswith(_SCHEMES):
            return _resolved(_ANY_BASE, href)
    return absolute_link(base, href)  # relative to the base's own path: rarely the same on two pages


def http_url(serialised: str) -> str | None:
    """A WHATWG URL serialisation without its fragment (in it, the first `#` starts the fragment: others are
    escaped), or None when it is not http(s): the crawler's canonical form, for the parsers and crawler.engine.urls."""
    return serialised.partition("#")[0] if serialised.startswith(_PREFIXES) else None


def _codec(label: str) -> str | None:
    """Python's name for the codec of the charset `label`; None for a label Python does not know."""
    try:
        return codecs.lookup(label).name
    except LookupError:
        return None


def _browser_codec(label: str) -> str | None:
    """The Python codec a browser decodes the charset `label` with: the Encoding Standard maps several labels
    to a superset. None for a label Python does not know."""
    codec = _codec(label)
    return None if codec is None else _AS_BROWSERS_DO.get(codec, codec)


def declared_encoding(body: bytes, content_type: str | None) -> str | None:
    """The encoding the page declares, as browsers would use it: the HTTP header's, unless a byte-order mark
    overrides it; else a `<meta charset>` whose label a browser reads as another encoding (Shift_JIS as code
    page 932, latin-1 as windows-1252, UTF-16 as UTF-8...). None leaves the choice to the parser (the `<meta
    charset>` as it is, then detection)."""
    if body.startswith(_BOMS):
        return None
    name = charset(content_type)
    if name is not None:
        return _browser_codec(name)
    meta = EncodingDetector.find_declared_encoding(body, is_html=True)
    codec = _codec(meta) if meta is not None else None
    if codec is not None and codec.startswith("utf-16"):
        return "utf-8"  # a page that could be read for its own <meta> is no UTF-16 (HTML Standard)
    return _AS_BROWSERS_DO.get(codec) if codec is not None else None


def query_encoding(encoding: str | None) -> str | None:
    """The codec a browser percent-encodes link queries in, for a page decoded with `encoding`: None for
    UTF-8 (and UTF-16, whose pages use UTF-8 in URLs), else the page's own encoding as the Encoding Standard
    defines it (latin-1 and ASCII are windows-1252, Shift_JIS is code page 932...)."""
    codec = _browser_codec(encoding) if encoding is not None else None
    return None if codec is None or codec.startswith(("utf-8", "utf-16", "utf-32")) else codec


# The special-query percent-encode set's ASCII part; a multi-byte encoding's trail bytes may be ASCII.
_QUERY_ESCAPED = frozenset(range(0x21)) | {ord(c) for c in "\"#<>'"} | {0x7F}


def _escaped(char: str, encoding: str) -> str:
    """`char` of a query, percent-encoded after encoding (URL Standard); one the encoding lacks is `&#N;`."""
    if 0xD800 <= ord(char) <= 0xDFFF:
        char = "\ufffd"  # a lone surrogate is U+FFFD by then (the DOM's scalar value string)
    try:
        data = char.encode(encoding)
    except UnicodeEncodeError:
        return f"%26%23{ord(char)}%3B"
    return "".join(chr(byte) if byte < 0x80 and byte not in _QUERY_ESCAPED else f"%{byte:02X}" for byte in data)


def legacy_query(href: str, encoding: str) -> str:
    """`href` with the non-ASCII characters of its query percent-encoded in `encoding`, as a browser does on a
    page in a legacy encoding (URL Standard, query state; the path and fragment stay UTF-8). The first `?`
    before any `#` starts an http(s) URL's query: a host or a path cannot hold one."""
    start = href.find("?")
    hash_at = href.find("#")
    if start < 0 or 0 <= hash_at < start:
        return href
    end = hash_at if hash_at >= 0 else len(href)
    query = href[start:end]
    if query.isascii():
        return href
    return href[:start] + "".join(c if c.isascii() else _escaped(c, encoding) for c in query) + href[end:]


def _tokens(value: str | list[str] | None) -> set[str]:
    """Lower-case words of an attribute such as rel or a robots meta's content (space or comma separated)."""
    if value is None:
        return set()
    text = " ".join(value) if isinstance(value, list) else value
    return {word.lower() for word in text.replace(",", " ").split()}


def build_page(
    url: str,
    title: str | None,
    base_href: str | None,
    robots: Iterable[str],
    anchors: Iterable[tuple[str, str | list[str] | None]],
    encoding: str | None = None,
) -> Page:
    """The `Page` every parser returns, from what it found: the title text, the first `<base href>`, the
    contents of `<meta name=robots>` tags, and each `<a>`/`<area>`'s href and rel, in page order; `encoding`
    is the one the page was decoded with (it decides how link queries are percent-encoded)."""
    legacy = query_encoding(encoding)
    if legacy is not None:
        base_href = legacy_query(base_href, legacy) if base_href is not None else None
        anchors = [(legacy_query(href, legacy), rel) for href, rel in anchors]
    base = url
    if base_href is not None:
        # As browsers set the frozen base URL: a `<base href>` that does not parse, or is a data: or
        # javascript: URL, leaves the page's own URL as the base.
        with contextlib.suppress(ValueError):
            resolved = ada_url.join_url(url, base_href)
            if not resolved.startswith(_NO_BASE):
                base = resolved
    try:
        root: str | None = ada_url.join_url(base, "/")  # scheme://userinfo@host:port/ of the base
    except ValueError:  # a base the standard rejects: its links are resolved (and rejected) one by one
        root = None
    followable: dict[str, bool] = {}  # link -> whether any anchor to it may be followed; page order
    unusable = 0
    for href, rel in anchors:
        try:
            link = resolve_shared(base, root, href)
        except ValueError:  # the standard's failure; a string that is not valid Unicode too
            unusable += 1
            continue
        if link is not None:
            followable[link] = followable.get(link, False) or "nofollow" not in _tokens(rel)
    return Page(
        title=" ".join(title.split()) or None if title is not None else None,
        links=list(followable),
        nofollow=frozenset(link for link, follow in followable.items() if not follow),
        meta_nofollow=any(_tokens(content) & {"nofollow", "none"} for content in robots),
        unusable=unusable,
    )
