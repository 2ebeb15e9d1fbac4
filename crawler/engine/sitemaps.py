"""Sitemaps (the sitemaps.org protocol): the page and sitemap URLs that one fetched sitemap lists, read from its
body alone (the crawler fetches it). A sitemap is XML (a `<urlset>` of pages or a `<sitemapindex>` of sitemaps),
gzipped or not, or a UTF-8 text file of one URL per line.

Bodies come from anyone, so reading one is bounded: at most `MAX_BYTES` once decompressed (a gzip bomb stops being
decompressed as soon as it passes the limit), at most `MAX_URLS` entries, no DTD, entity or network access (XML that
declares entities is refused whole: billion laughs and XXE come to nothing), and no exception for any body.
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import Any

from lxml import etree

from crawler.engine.urls import canonical

MAX_URLS = 50_000  # the protocol's limit per sitemap file
MAX_BYTES = 50 * 1024 * 1024  # the protocol's limit per file, uncompressed
# The protocol's elements (<url>, <loc>... at any depth) read in one file at most: a 50 MB sitemap holds fewer (each
# takes 20 bytes or more), while a flood of them would cost Python's time for each.
MAX_ELEMENTS = 2_000_000

GZIP_MAGIC = b"\x1f\x8b"
GZIP_MEMBERS = 1_000  # gzip files (members) one after the other, read in turn: a file is rarely more than one
CHUNK = 64 * 1024  # bytes decompressed, and fed to the XML parser, at a time
# A sitemap's root element follows at most an XML declaration, a comment or a stylesheet: XML that has not started
# its root element by then is not a sitemap (and a DTD that long would only cost memory to parse).
PROLOG_LIMIT = 256 * 1024
# No DTD loaded, no entity substituted, nothing fetched, depth and text sizes within libxml2's default limits.
PARSER_OPTIONS: dict[str, bool] = {
    "resolve_entities": False,
    "no_network": True,
    "load_dtd": False,
    "huge_tree": False,
    "remove_comments": True,
    "remove_pis": True,
}
# The elements a sitemap is read from, in any namespace (or none).
URLSET_TAGS = ("{*}urlset", "{*}url", "{*}loc", "{*}lastmod")
INDEX_TAGS = ("{*}sitemapindex", "{*}sitemap", "{*}loc")
LEADING_BLANKS = re.compile(rb"[ \t\r\n]*")
TEXT_LINE = re.compile(rb"\S[^\r\n]*")  # a non-blank line from its first non-blank byte (linear: no backtracking)
TEXT_URL = re.compile(rb"https?://\S+", re.IGNORECASE)  # a line of a text sitemap, stripped
UTF8_BOM = b"\xef\xbb\xbf"

SHOWN = 200  # characters of a document's own text (a name) at most in an error
TOO_LARGE = "larger than 50 MB (the protocol's limit): not read"
TOO_LARGE_UNZIPPED = "larger than 50 MB once decompressed (the protocol's limit): not read"
TOO_MANY = "more than 50,000 URLs (the protocol's limit): the rest are ignored"
TOO_MANY_ELEMENTS = "more than 2,000,000 sitemap elements: the rest are ignored"
TOO_MANY_MEMBERS = "more than 1,000 gzip members (files one after the other): the rest are ignored"
NOT_XML_OR_TEXT = "not a sitemap: not XML, and not a list of URLs"
EMPTY = "empty: it lists no URLs"
ENTITIES = "declares XML entities (a sitemap never needs any): not read"


@dataclass(frozen=True, slots=True)
class SitemapEntry:
    """A page a sitemap lists."""

    url: str  # canonical (crawler.engine.urls.canonical), http(s) only
    lastmod: str | None  # the <lastmod> text as given, stripped; None if absent or empty


@dataclass(frozen=True, slots=True)
class Sitemap:
    """What one sitemap file lists: pages (a `<urlset>` or a text sitemap) or sitemaps (a `<sitemapindex>`)."""

    pages: list[SitemapEntry]  # <urlset><url><loc> (or lines of a text sitemap)
    sitemaps: list[str]  # <sitemapindex><sitemap><loc>, canonical, http(s) only
    error: str | None = None  # why the file was rejected or cut short, worded for a user (what was read before is kept)


def parse_sitemap(body: bytes, url: str) -> Sitemap:
    """The URLs the sitemap `body` (fetched from `url`) lists, canonical, in order, each once (its first entry).

    Locations must be absolute: nothing is resolved against `url`, and those that are not http(s) URLs are dropped.
    A gzipped body (by its magic bytes, whatever the headers said) is decompressed. A file that is not a sitemap,
    is too large, lists more than `MAX_URLS` URLs (the first `MAX_URLS` entries are read) or breaks off comes back
    with `error` set, and with whatever was read before the fault (nothing for a file over `MAX_BYTES`). Never
    raises for any body.
    """
    if len(body) > MAX_BYTES:
        return Sitemap([], [], TOO_LARGE)
    data: bytes | bytearray = body
    fault = None
    if body.startswith(GZIP_MAGIC):
        unzipped, fault = _gunzip(body)
        if unzipped is None:
            return Sitemap([], [], TOO_LARGE_UNZIPPED)
        data = unzipped
    sitemap = _from_xml(data)
    if sitemap is None:
        sitemap = _from_text(data)
    return sitemap if fault is None else replace(sitemap, error=fault)


def _gunzip(body: bytes) -> tuple[bytearray | None, str | None]:
    """`body` decompressed (each of its gzip members in turn, at most GZIP_MEMBERS), CHUNK bytes at a time, and
    None; for a corrupt or cut-short file, what came out before the fault and why; None for a file that
    decompresses to more than MAX_BYTES, found as soon as it passes the limit. Bytes after the last member are
    ignored."""
    out = bytearray()
    view = memoryview(body)
    position = 0  # of the first byte not yet given to an inflater
    try:
        for _ in range(GZIP_MEMBERS):
            if view[position : position + len(GZIP_MAGIC)] != GZIP_MAGIC:
                return out, None
            inflater = zlib.decompressobj(wbits=31)  # gzip header and trailer
            while not inflater.eof:
                # Input a chunk at a time too: what follows a member's end is copied (`unused_data`).
                given = inflater.unconsumed_tail or view[position : position + CHUNK]
                if not inflater.unconsumed_tail:
                    position += len(given)
                chunk = inflater.decompress(given, CHUNK)
                if len(out) + len(chunk) > MAX_BYTES:
                    return None, None
                out += chunk
                if not given and not chunk and not inflater.eof:  # all input read and output given, yet no end
                    return out, "not a valid gzip file: it is cut short"
            position -= len(inflater.unused_data)
    except zlib.error as exc:  # "Error -3 while decompressing data: invalid block type"
        return out, f"not a valid gzip file: {str(exc).partition(': ')[2] or exc}"
    if view[position : position + len(GZIP_MAGIC)] == GZIP_MAGIC:
        return out, TOO_MANY_MEMBERS
    return out, None


def _from_xml(data: bytes | bytearray) -> Sitemap | None:
    """The URLs of the XML sitemap `data`; None when it is not XML (no root element)."""
    # Blank lines before the XML declaration (a common slip of generators) would make it ill-formed: skipped.
    blanks = LEADING_BLANKS.match(data)
    view = memoryview(data)[blanks.end() if blanks else 0 :]
    root, refused = _root(view)
    if refused is not None:
        return Sitemap([], [], refused)
    if root is None:
        return None
    if root not in ("urlset", "sitemapindex"):
        return Sitemap([], [], f"not a sitemap (root element <{_shown(root)}>)")
    walk = _Walk(root)
    # Events for the protocol's elements only: a flood of others costs libxml2's time, not Python's.
    parser = etree.XMLPullParser(events=("start", "end"), tag=walk.tags, **PARSER_OPTIONS)
    try:
        for start in range(0, len(view), CHUNK):
            parser.feed(bytes(view[start : start + CHUNK]))
            if (stop := walk.run(parser.read_events())) is not None:
                return walk.result(stop)
            walk.trim()
        parser.close()
    except etree.XMLSyntaxError as exc:
        stop = walk.run(parser.read_events())  # the events before the fault
        return walk.result(stop or f"malformed XML ({_shown(' '.join(str(exc.msg).split()))}): the rest is ignored")
    return walk.result(walk.run(parser.read_events()))


def _root(view: memoryview) -> tuple[str | None, str | None]:
    """The name of the root element of the XML document `view`, without namespace; None when it is not XML (no
    root element in its first PROLOG_LIMIT bytes). Or why it is refused: its DTD declares entities.

    Read as a tree, without events: lxml's events can hand out elements of an entity's content that libxml2 frees
    when that content is malformed (lxml then fails "Tried to unregister unknown proxy"), so a document goes to
    the event parser only once this tree has shown that it declares no entity."""
    parser = etree.XMLParser(recover=True, **PARSER_OPTIONS)  # the prolog and the root's start, however broken after
    try:
        for start in range(0, min(len(view), PROLOG_LIMIT), CHUNK):
            parser.feed(bytes(view[start : start + CHUNK]))
        root = parser.close()
    except etree.XMLSyntaxError:  # "no element found", for one
        return None, None
    if root is None:
        return None, None
    dtd = root.getroottree().docinfo.internalDTD
    if dtd is not None and any(True for _ in dtd.iterentities()):
        return None, ENTITIES
    return _local_name(root), None


def _shown(text: str) -> str:
    """`text` from the document (a name, libxml2's message quoting one), cut to SHOWN characters for an error."""
    return text if len(text) <= SHOWN else text[: SHOWN - 3] + "..."


def _local_name(element: Any) -> str:
    """An element's name without its namespace: the protocol's names are matched in any namespace."""
    return str(element.tag).rpartition("}")[2]


def _text(element: Any) -> str | None:
    """An element's text (CDATA included), stripped; None when empty or when it holds anything but text."""
    if len(element) or element.text is None:  # a child element, or an entity left unexpanded
        return None
    return str(element.text).strip() or None


class _Listing:
    """The URLs read so far: canonical, each once."""

    def __init__(self) -> None:
        self.pages: list[SitemapEntry] = []
        self.sitemaps: list[str] = []
        self.seen: set[str] = set()

    def add(self, url: str, lastmod: str | None, index: bool) -> None:
        """Keep the canonical `url` (a sitemap if `index`, else a page) unless already kept."""
        if url in self.seen:
            return
        self.seen.add(url)
        if index:
            self.sitemaps.append(url)
        else:
            self.pages.append(SitemapEntry(url, lastmod))

    def result(self, error: str | None) -> Sitemap:
        """What was kept, with `error`."""
        return Sitemap(self.pages, self.sitemaps, error)


class _Walk:
    """Reads the sitemap whose root is `root` (urlset or sitemapindex) from the parser's events for `tags`: the
    `<loc>` and `<lastmod>` children of the root's `<url>` children (the `<loc>` of its `<sitemap>` children)."""

    def __init__(self, root: str) -> None:
        self.root_name = root
        self.index = root == "sitemapindex"
        self.entry_name = "sitemap" if self.index else "url"
        self.tags = INDEX_TAGS if self.index else URLSET_TAGS
        self.listing = _Listing()
        self.root: Any = None
        self.entry: Any = None  # the <url> (or <sitemap>) being read
        self.entries = 0  # the root's <url> (or <sitemap>) children: the URLs it lists, valid or not
        self.elements = 0  # the elements of `tags`, at any depth
        self.loc: str | None = None
        self.lastmod: str | None = None
        self.seen_loc = False  # an entry's first <loc> (and <lastmod>) is the one read
        self.seen_lastmod = False

    def run(self, events: Iterable[tuple[str, Any]]) -> str | None:
        """Take in `events`; the error to stop reading with, if any."""
        for event, element in events:
            if event == "start":
                self.elements += 1
                if self.elements > MAX_ELEMENTS:
                    return TOO_MANY_ELEMENTS
                if self.root is None:  # the first event: the root's start, as _root() found it
                    if (name := _local_name(element)) != self.root_name:
                        return f"not a sitemap (root element <{_shown(name)}>)"
                    self.root = element
                elif element.getparent() is self.root and _local_name(element) == self.entry_name:
                    self.entries += 1
                    if self.entries > MAX_URLS:
                        return TOO_MANY
                    self.entry, self.loc, self.lastmod = element, None, None
                    self.seen_loc = self.seen_lastmod = False
            elif element is self.entry:
                self.entry = None
                if (url := _canonical(self.loc)) is not None:
                    self.listing.add(url, self.lastmod, self.index)
            elif self.entry is not None and element.getparent() is self.entry:
                name = _local_name(element)
                if name == "loc" and not self.seen_loc:
                    self.seen_loc, self.loc = True, _text(element)
                elif name == "lastmod" and not self.seen_lastmod:
                    self.seen_lastmod, self.lastmod = True, _text(element)
        return None

    def trim(self) -> None:
        """Drop from the tree what has been parsed and read: all but the last child of each element on the path
        from the root to the element being parsed (open elements are last children), so memory stays flat."""
        node = self.root
        while node is not None and len(node):
            if len(node) > 1:
                del node[:-1]
            node = node[-1]

    def result(self, error: str | None) -> Sitemap:
        """What was read, with `error`."""
        return self.listing.result(error)


def _canonical(loc: str | None) -> str | None:
    """The canonical form of `loc`, None if it is not an absolute http(s) URL."""
    if loc is None:
        return None
    try:
        return canonical(loc)
    except ValueError:
        return None


def _from_text(data: bytes | bytearray) -> Sitemap:
    """The URLs of a text sitemap (UTF-8, one absolute http(s) URL per line, blank lines allowed); nothing, with
    the reason, when any other line is found."""
    listing = _Listing()
    for number, match in enumerate(TEXT_LINE.finditer(data, len(UTF8_BOM) if data.startswith(UTF8_BOM) else 0)):
        if number == MAX_URLS:
            return listing.result(TOO_MANY)
        line = match[0].rstrip()
        if not TEXT_URL.fullmatch(line):
            return Sitemap([], [], NOT_XML_OR_TEXT)
        try:
            url = canonical(line.decode("utf-8"))
        except ValueError:  # UnicodeDecodeError included
            return Sitemap([], [], NOT_XML_OR_TEXT)
        listing.add(url, None, index=False)
    return listing.result(None if listing.pages else EMPTY)
