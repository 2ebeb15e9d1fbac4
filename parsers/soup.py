"""The default parser: beautifulsoup4 on lxml, building only the tags the crawler reads."""

from __future__ import annotations

import codecs

from bs4 import BeautifulSoup, Tag
from bs4.filter import SoupStrainer
from yarl import URL

from parsers.base import Page, charset

# Parsing only these tags skips building the rest of the tree; the title and links come out the same.
_WANTED = SoupStrainer(["title", "base", "meta", "a", "area"])
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
    latin-1 or ASCII mean windows-1252. None leaves the choice to bs4 (`<meta charset>`, then detection)."""
    name = charset(content_type)
    if name is None or body.startswith(_BOMS):
        return None
    try:
        codec = codecs.lookup(name).name
    except LookupError:
        return None
    return "cp1252" if codec in _AS_CP1252 else codec


def _tokens(value: str | list[str] | None) -> set[str]:
    if value is None:
        return set()
    words = value if isinstance(value, list) else value.replace(",", " ").split()
    return {word.strip().lower() for word in words}


class SoupParser:
    """beautifulsoup4 with the lxml tree builder: tolerant of broken markup, honours `<base href>`,
    rel=nofollow and `<meta name=robots>`."""

    name = "bs4"

    def parse(self, body: bytes, url: str, content_type: str | None) -> Page:
        """Extract the title and the absolute, fragment-free http(s) links of an HTML body."""
        soup = BeautifulSoup(body, "lxml", parse_only=_WANTED, from_encoding=declared_encoding(body, content_type))
        base = URL(url)
        base_tag = soup.find("base", href=True)
        if isinstance(base_tag, Tag):
            base = URL(absolute_link(base, str(base_tag["href"])) or url)
        title_tag = soup.find("title")
        title = " ".join(title_tag.get_text().split()) if isinstance(title_tag, Tag) else None
        meta_nofollow = any(
            _tokens(str(meta.get("content", ""))) & {"nofollow", "none"}
            for meta in soup.find_all("meta", attrs={"name": True})
            if str(meta["name"]).strip().lower() == "robots"
        )
        followable: dict[str, bool] = {}  # link -> whether any anchor to it may be followed; page order
        for anchor in soup.find_all(["a", "area"], href=True):
            link = absolute_link(base, str(anchor["href"]))
            if link is not None:
                may_follow = "nofollow" not in _tokens(anchor.get("rel"))
                followable[link] = followable.get(link, False) or may_follow
        return Page(
            title=title or None,
            links=list(followable),
            nofollow=frozenset(link for link, follow in followable.items() if not follow),
            meta_nofollow=meta_nofollow,
        )
