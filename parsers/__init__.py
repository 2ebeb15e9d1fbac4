"""Parsers: HTML body in, `Page` (title and absolute links) out. Run in the main process, after each fetch."""

from __future__ import annotations

from parsers.base import Page, Parser, is_html
from parsers.soup import SoupParser

__all__ = ["Page", "Parser", "SoupParser", "is_html"]
