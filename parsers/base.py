"""What a parser makes of a page body, and the interface every parser implements."""

from __future__ import annotations

import codecs
from collections.abc import Iterable
from dataclasses import dataclass, field
from email.message import Message
from typing import Protocol

from yarl import URL

HTML_TYPES = frozenset({"text/html", "application/xhtml+xml"})


@dataclass(frozen=True, slots=True)
class Page:
    """The parts of an HTML page the crawler keeps: its title, its outgoing http(s) links (absolute, in
    page order, without repeats), which of them only appear as rel=nofollow, and whether a robots meta tag
    says not to follow any."""

    title: str | None = None
    links: list[str] = field(default_factory=list)
    nofollow: frozenset[str] = frozenset()
    meta_nofollow: bool = False


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


_SCHEMES = frozenset({"http", "https"})
_BOMS = (codecs.BOM_UTF8, codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE, codecs.BOM_UTF32_LE, codecs.BOM_UTF32_BE)
# Browsers (WHATWG Encoding) read these labels as windows-1252, which servers mean by them in practice.
_AS_CP1252 = frozenset({"ascii", "iso8859-1"})


def absolute_link(base: URL, href: str) -> str | None:
    """`href` resolved against `base`, without its fragment; None unless it is a well-formed http(s) URL."""
    try:
        url = base.join(URL(href.strip()))
    except (ValueError, TypeError):
        return None
    if url.scheme not in _SCHEMES or not url.host:
        return None
    return str(url.with_fragment(None))


def declared_encoding(body: bytes, content_type: str | None) -> str | None:
    """The encoding the HTTP header gives, as browsers would use it: a byte-order mark overrides it, and
    latin-1 or ASCII mean windows-1252. None leaves the choice to the parser (`<meta charset>`, then
    detection)."""
    name = charset(content_type)
    if name is None or body.startswith(_BOMS):
        return None
    try:
        codec = codecs.lookup(name).name
    except LookupError:
        return None
    return "cp1252" if codec in _AS_CP1252 else codec


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
) -> Page:
    """The `Page` every parser returns, from what it found: the title text, the first `<base href>`, the
    contents of `<meta name=robots>` tags, and each `<a>`/`<area>`'s href and rel, in page order."""
    base = URL(url)
    if base_href is not None:
        base = URL(absolute_link(base, base_href) or url)
    followable: dict[str, bool] = {}  # link -> whether any anchor to it may be followed; page order
    for href, rel in anchors:
        link = absolute_link(base, href)
        if link is not None:
            followable[link] = followable.get(link, False) or "nofollow" not in _tokens(rel)
    return Page(
        title=" ".join(title.split()) or None if title is not None else None,
        links=list(followable),
        nofollow=frozenset(link for link, follow in followable.items() if not follow),
        meta_nofollow=any(_tokens(content) & {"nofollow", "none"} for content in robots),
    )
