"""The default parser: beautifulsoup4 on lxml, building only the tags the crawler reads."""

from __future__ import annotations

from bs4 import BeautifulSoup, Tag
from bs4.filter import SoupStrainer
from yarl import URL

from parsers.base import Page, charset

# Parsing only these tags skips building the rest of the tree; the title and links come out the same.
_WANTED = SoupStrainer(["title", "base", "a", "area"])
_SCHEMES = frozenset({"http", "https"})


def absolute_link(base: URL, href: str) -> str | None:
    """`href` resolved against `base`, without its fragment; None unless it is a well-formed http(s) URL."""
    try:
        url = base.join(URL(href.strip()))
    except (ValueError, TypeError):
        return None
    if url.scheme not in _SCHEMES or not url.host:
        return None
    return str(url.with_fragment(None))


class SoupParser:
    """beautifulsoup4 with the lxml tree builder: tolerant of broken markup, honours `<base href>`."""

    name = "bs4"

    def parse(self, body: bytes, url: str, content_type: str | None) -> Page:
        """Extract the title and the absolute, fragment-free http(s) links of an HTML body."""
        soup = BeautifulSoup(body, "lxml", parse_only=_WANTED, from_encoding=charset(content_type))
        base = URL(url)
        base_tag = soup.find("base", href=True)
        if isinstance(base_tag, Tag):
            base = URL(absolute_link(base, str(base_tag["href"])) or url)
        title_tag = soup.find("title")
        title = " ".join(title_tag.get_text().split()) if isinstance(title_tag, Tag) else None
        links: dict[str, None] = {}  # ordered and without repeats
        for anchor in soup.find_all(["a", "area"], href=True):
            link = absolute_link(base, str(anchor["href"]))
            if link is not None:
                links[link] = None
        return Page(title=title or None, links=list(links))
