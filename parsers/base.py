"""What a parser makes of a page body, and the interface every parser implements."""

from __future__ import annotations

from dataclasses import dataclass, field
from email.message import Message
from typing import Protocol

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
