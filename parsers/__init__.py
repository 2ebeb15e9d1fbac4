"""Parsers: HTML body in, `Page` (title and absolute links) out. Run in the main process, after each fetch.

Every parser extracts exactly the same: `lxml` (libxml2 directly, the default) and `bs4` (beautifulsoup4,
several times slower on markup-heavy pages). bs4's encoding detection serves both.
"""

from __future__ import annotations

from parsers.base import Page, Parser, is_html
from parsers.lxml_tree import LxmlParser
from parsers.soup import SoupParser

__all__ = ["PARSERS", "LxmlParser", "Page", "Parser", "SoupParser", "get_parser", "is_html"]

PARSERS: dict[str, type[Parser]] = {"bs4": SoupParser, "lxml": LxmlParser}


def get_parser(name: str) -> Parser:
    """A parser by name; a `ValueError` lists the valid names otherwise."""
    try:
        return PARSERS[name]()
    except KeyError:
        raise ValueError(f"unknown parser {name!r}; choose one of: {', '.join(PARSERS)}") from None
