"""The default parser: beautifulsoup4 on lxml, building only the tags the crawler reads."""

from __future__ import annotations

from bs4 import BeautifulSoup, Tag
from bs4.filter import SoupStrainer

from parsers.base import Page, build_page, declared_encoding

# Parsing only these tags skips building the rest of the tree; the title and links come out the same.
_WANTED = SoupStrainer(["title", "base", "meta", "a", "area"])


class SoupParser:
    """beautifulsoup4 with the lxml tree builder: tolerant of broken markup, honours `<base href>`,
    rel=nofollow and `<meta name=robots>`."""

    name = "bs4"

    def parse(self, body: bytes, url: str, content_type: str | None) -> Page:
        """Extract the title and the absolute, fragment-free http(s) links of an HTML body."""
        soup = BeautifulSoup(body, "lxml", parse_only=_WANTED, from_encoding=declared_encoding(body, content_type))
        base_tag = soup.find("base", href=True)
        title_tag = soup.find("title")
        return build_page(
            url,
            title=title_tag.get_text() if isinstance(title_tag, Tag) else None,
            base_href=str(base_tag["href"]) if isinstance(base_tag, Tag) else None,
            robots=[
                str(meta.get("content", ""))
                for meta in soup.find_all("meta", attrs={"name": True})
                if str(meta["name"]).strip().lower() == "robots"
            ],
            anchors=[(str(anchor["href"]), anchor.get("rel")) for anchor in soup.find_all(["a", "area"], href=True)],
            encoding=soup.original_encoding,
        )
