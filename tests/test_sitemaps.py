"""crawler.engine.sitemaps: what one sitemap body lists (XML, gzipped or not, or text), and hostile bodies (bombs,
entity expansion, XXE, floods, garbage, truncation) read within bounds and without an exception."""

from __future__ import annotations

import gc
import gzip
import random
import struct
import sys
import time
import tracemalloc
import zlib
from pathlib import Path

import pytest

from crawler.engine import sitemaps
from crawler.engine.sitemaps import (
    EMPTY,
    ENTITIES,
    MAX_BYTES,
    MAX_URLS,
    NOT_XML_OR_TEXT,
    TOO_LARGE,
    TOO_LARGE_UNZIPPED,
    TOO_MANY,
    TOO_MANY_ELEMENTS,
    TOO_MANY_MEMBERS,
    Sitemap,
    SitemapEntry,
    parse_sitemap,
)

SITEMAP_URL = "https://example.com/sitemap.xml"
NS = b' xmlns="http://www.sitemaps.org/schemas/sitemap/0.9"'
URLSET = b"""<?xml version="1.0" encoding="UTF-8"?>
<?xml-stylesheet type="text/xsl" href="/sitemap.xsl"?>
<!-- generated -->
<urlset%s xmlns:image="http://www.google.com/schemas/sitemap-image/1.1">
  <url>
    <loc>https://example.com/</loc>
    <lastmod> 2024-05-01T10:00:00+00:00 </lastmod>
    <changefreq>daily</changefreq>
    <image:image><image:loc>https://example.com/logo.png</image:loc></image:image>
  </url>
  <url><lastmod></lastmod><loc>https://example.com/about</loc></url>
  <url><loc>https://example.com/search?q=a&amp;page=2</loc><priority>0.5</priority></url>
  <sitemap><loc>https://example.com/not-in-a-urlset.xml</loc></sitemap>
</urlset>
"""
URLSET_PAGES = [
    SitemapEntry("https://example.com/", "2024-05-01T10:00:00+00:00"),
    SitemapEntry("https://example.com/about", None),
    SitemapEntry("https://example.com/search?q=a&page=2", None),
]
INDEX = b"""<?xml version="1.0" encoding="UTF-8"?>
<sitemapindex xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">
  <sitemap><loc>https://example.com/sitemap-pages.xml.gz</loc><lastmod>2024-05-01</lastmod></sitemap>
  <sitemap><loc>https://example.com/sitemap-posts.xml</loc></sitemap>
  <url><loc>https://example.com/not-in-an-index</loc></url>
</sitemapindex>
"""
INDEX_SITEMAPS = ["https://example.com/sitemap-pages.xml.gz", "https://example.com/sitemap-posts.xml"]
LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE urlset [
  <!ENTITY lol "lol">
  <!ENTITY lol1 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
  <!ENTITY lol2 "&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;">
  <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
  <!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
  <!ENTITY lol5 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;">
  <!ENTITY lol6 "&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;">
  <!ENTITY lol7 "&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;">
  <!ENTITY lol8 "&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;">
  <!ENTITY lol9 "&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;">
]>
<urlset><url><loc>https://example.com/</loc><lastmod>&lol9;</lastmod></url><url><loc>https://example.com/&lol9;</loc></url>
</urlset>
"""


def parse(body: bytes) -> Sitemap:
    return parse_sitemap(body, SITEMAP_URL)


def pages(*paths: str) -> list[SitemapEntry]:
    return [SitemapEntry(f"https://example.com{path}", None) for path in paths]


def urlset(*locs: str) -> bytes:
    return b"<urlset>" + b"".join(b"<url><loc>%s</loc></url>" % loc.encode() for loc in locs) + b"</urlset>"


def gzip_of_zeros(mib: int) -> bytes:
    """A valid gzip file of `mib` MiB of zeros, built without compressing them all: after a full flush, each MiB
    of zeros deflates to the same bytes."""
    zeros = bytes(1 << 20)
    deflate = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)  # raw deflate: header and trailer written here
    block = deflate.compress(zeros) + deflate.flush(zlib.Z_FULL_FLUSH)
    crc = 0
    for _ in range(mib):
        crc = zlib.crc32(zeros, crc)
    header = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x02\xff"  # deflate, no flags, no time, best compression, unknown OS
    return header + block * mib + deflate.flush() + struct.pack("<II", crc, (mib << 20) & 0xFFFFFFFF)


@pytest.mark.parametrize("namespace", [NS, b""], ids=["namespaced", "no-namespace"])
def test_a_urlset_lists_its_pages_with_their_lastmod(namespace: bytes) -> None:
    # Only the root's <url> children count: not an image's <loc>, not a <sitemap> inside a urlset.
    assert parse(URLSET % namespace) == Sitemap(URLSET_PAGES, [])
    assert parse(b"\n\n  " + URLSET % namespace) == Sitemap(URLSET_PAGES, [])  # blank lines before <?xml: forgiven


def test_a_sitemap_index_lists_its_sitemaps() -> None:
    assert parse(INDEX) == Sitemap([], INDEX_SITEMAPS)


@pytest.mark.parametrize("body", [URLSET % NS, URLSET % b"", INDEX], ids=["namespaced", "no-namespace", "index"])
def test_gzipped_sitemaps_read_as_the_plain_ones(body: bytes) -> None:
    assert parse(gzip.compress(body)) == parse(body)
    assert parse(gzip.compress(body[:100]) + gzip.compress(body[100:])) == parse(body)  # two gzip members
    assert parse(gzip.compress(b"") + gzip.compress(body)) == parse(body)


def test_a_gzip_bomb_is_refused_after_50_mb_without_decompressing_it_whole() -> None:
    assert gzip.decompress(gzip_of_zeros(2)) == bytes(2 << 20)  # the bomb is a valid gzip file
    bomb = gzip_of_zeros(200)  # 200 MiB of zeros in 200 KB
    tracemalloc.start()
    start = time.perf_counter()
    try:
        result = parse(bomb)
        elapsed = time.perf_counter() - start
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert result == Sitemap([], [], TOO_LARGE_UNZIPPED)
    assert elapsed < 1.5
    assert peak < MAX_BYTES + (8 << 20)  # the 50 MB it may keep, and chunks: not 200 MB


def test_a_body_over_50_mb_is_not_read(monkeypatch: pytest.MonkeyPatch) -> None:
    text = b"https://example.com/\n"
    assert parse(text + b"\n" * (MAX_BYTES - len(text) + 1)) == Sitemap([], [], TOO_LARGE)
    monkeypatch.setattr(sitemaps, "MAX_BYTES", 1000)  # the limit's edge, without 50 MB to read
    for body in (text + b"\n" * (1000 - len(text)), text + b" " * (1000 - len(text))):
        assert parse(body) == Sitemap(pages("/"), [])
        assert parse(gzip.compress(body)) == Sitemap(pages("/"), [])
        assert parse(body + b"\n") == Sitemap([], [], TOO_LARGE)
        assert parse(gzip.compress(body + b"\n")) == Sitemap([], [], TOO_LARGE_UNZIPPED)


@pytest.mark.parametrize(
    ("body", "read", "reason"),
    [
        (b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x02\xff" + b"\xff" * 20, [], "invalid block type"),
        (b"\x1f\x8b\x09" + b"\x00" * 20, [], "unknown compression method"),
        (b"\x1f\x8b", [], "it is cut short"),
        (gzip.compress(URLSET % NS)[:-4], URLSET_PAGES, "it is cut short"),  # the trailer's length is missing
        (gzip.compress(URLSET % NS)[:-8] + b"\0\0\0\0" + gzip.compress(URLSET % NS)[-4:], [],
         "incorrect data check"),  # a wrong CRC, found with the last (here the only) chunk: which zlib withholds
    ],
)  # fmt: skip
def test_a_corrupt_gzip_file_is_an_error(body: bytes, read: list[SitemapEntry], reason: str) -> None:
    assert parse(body) == Sitemap(read, [], f"not a valid gzip file: {reason}")


def test_gzip_members_are_read_in_turn_up_to_1000() -> None:
    empty, text = gzip.compress(b""), gzip.compress(b"https://example.com/\n")
    assert parse(empty * 999 + text + b"trailing bytes") == Sitemap(pages("/"), [])
    assert parse(empty * 1000 + text) == Sitemap([], [], TOO_MANY_MEMBERS)
    assert parse(empty * 1_000_000) == Sitemap([], [], TOO_MANY_MEMBERS)  # 20 MB of them, not read one by one


def test_a_gzip_file_cut_short_keeps_what_came_before() -> None:
    body = gzip.compress(URLSET % NS)
    assert parse(body[:-8]) == Sitemap(URLSET_PAGES, [], "not a valid gzip file: it is cut short")


def test_billion_laughs_are_refused_without_expanding_anything(monkeypatch: pytest.MonkeyPatch) -> None:
    start = time.perf_counter()
    assert parse(LAUGHS) == Sitemap([], [], ENTITIES)
    assert time.perf_counter() - start < 0.5
    # An entity whose content is broken markup: lxml's event parser would hand out an element that libxml2 then
    # frees ("Tried to unregister unknown proxy" when it is collected). Refused before any event parser sees it.
    unraisable: list[object] = []
    monkeypatch.setattr(sys, "unraisablehook", unraisable.append)
    broken = b'<!DOCTYPE urlset [<!ENTITY e "x<x">]><urlset><url><loc>https://example.com/&e;</loc></url></urlset>'
    assert parse(broken) == Sitemap([], [], ENTITIES)
    gc.collect()
    assert unraisable == []


def test_external_entities_are_never_read(tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("SECRET-XXE-CONTENT")
    dtd = tmp_path / "evil.dtd"
    dtd.write_text(f'<!ENTITY xxe SYSTEM "{secret.as_uri()}">')
    general = (f'<!DOCTYPE urlset [<!ENTITY xxe SYSTEM "{secret.as_uri()}">]>'
               "<urlset><url><loc>https://example.com/&xxe;</loc></url></urlset>")  # fmt: skip
    parameter = (f'<!DOCTYPE urlset [<!ENTITY % evil SYSTEM "{dtd.as_uri()}"> %evil;]>'
                 "<urlset><url><loc>https://example.com/&xxe;</loc></url></urlset>")  # fmt: skip
    external = (f'<!DOCTYPE urlset SYSTEM "{dtd.as_uri()}">'
                "<urlset><url><loc>https://example.com/&xxe;</loc></url><url><loc>https://example.com/ok</loc></url>"
                "</urlset>")  # fmt: skip
    assert parse(general.encode()) == Sitemap([], [], ENTITIES)
    assert parse(parameter.encode()) == Sitemap([], [], ENTITIES)
    # The external DTD is not loaded: the entity stays a reference, and a <loc> holding one is no URL.
    assert parse(external.encode()) == Sitemap(pages("/ok"), [])


@pytest.mark.parametrize(
    ("body", "error"),
    [
        (b"<!DOCTYPE html>\n<html><head><title>Home</title></head><body><p>Hi</p></body></html>",
         "not a sitemap (root element <html>)"),
        (b'<html xmlns="http://www.w3.org/1999/xhtml"><body/></html>', "not a sitemap (root element <html>)"),
        (b'<?xml version="1.0"?><rss version="2.0"><channel/></rss>', "not a sitemap (root element <rss>)"),
        (b"<!doctype html><html><body><p>Hi<br></body></html>", NOT_XML_OR_TEXT),  # not even XML
        (b"Not Found\n", NOT_XML_OR_TEXT),
        (b"https://example.com/\nsee https://example.com/b\n", NOT_XML_OR_TEXT),  # one line is not a URL
        (b"https://example.com/\n/relative\n", NOT_XML_OR_TEXT),
        (b"https://example.com/\xff\n", NOT_XML_OR_TEXT),  # not UTF-8
        (b"", EMPTY),
        (b" \r\n\n\t", EMPTY),
    ],
)  # fmt: skip
def test_what_is_not_a_sitemap_lists_nothing(body: bytes, error: str) -> None:
    assert parse(body) == Sitemap([], [], error)


def test_names_from_the_document_are_cut_short_in_errors() -> None:
    name = b"x" * 10_000
    assert parse(b"<%s/>" % name) == Sitemap([], [], f"not a sitemap (root element <{'x' * 197}...>)")
    malformed = parse(b"<urlset><%s></urlset>" % name)
    assert (malformed.pages, malformed.sitemaps) == ([], [])
    assert malformed.error is not None
    assert malformed.error.startswith("malformed XML (Opening and ending tag mismatch: xxx")
    assert len(malformed.error) == len("malformed XML (): the rest is ignored") + 200


def test_a_text_sitemap_lists_one_url_a_line() -> None:
    body = (b"\xef\xbb\xbfhttps://example.com/\r\n\r\n  HTTPS://EXAMPLE.COM:443/a#top  \n"
            b"https://example.com/b\nhttps://example.com/a\nhttps://example.com/caf\xc3\xa9")  # fmt: skip
    assert parse(body) == Sitemap(pages("/", "/a", "/b", "/caf%C3%A9"), [])
    assert parse(gzip.compress(body)) == parse(body)


def test_more_than_50000_urls_keeps_the_first_50000() -> None:
    locs = [f"https://example.com/{n}" for n in range(MAX_URLS + 1)]
    expected = Sitemap([SitemapEntry(loc, None) for loc in locs[:MAX_URLS]], [], TOO_MANY)
    assert parse(urlset(*locs)) == expected
    assert parse("\n".join(locs).encode()) == expected


def test_the_url_limit_counts_entries_as_listed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sitemaps, "MAX_URLS", 3)  # the same count, without 50,000 URLs to read
    assert parse(urlset("https://example.com/a", "/relative", "https://example.com/a")) == Sitemap(pages("/a"), [])
    # An entry counts whether its <loc> is a URL, a repeat, or missing: the protocol limits what a file lists.
    too_many = (
        urlset("https://example.com/a", "/relative", "https://example.com/a", "https://example.com/b"),
        b"<urlset><url/><url/><url/><url><loc>https://example.com/b</loc></url></urlset>",
        b"https://example.com/a\n\nhttps://example.com/a\nhttps://example.com/c\nhttps://example.com/b\n",
    )
    for body, kept in zip(too_many, (["/a"], [], ["/a", "/c"]), strict=True):
        assert parse(body) == Sitemap(pages(*kept), [], TOO_MANY)
    index = b"<sitemapindex>" + b"<sitemap><loc>https://example.com/s.xml</loc></sitemap>" * 4 + b"</sitemapindex>"
    assert parse(index) == Sitemap([], ["https://example.com/s.xml"], TOO_MANY)


def test_a_flood_of_sitemap_elements_is_cut_short(monkeypatch: pytest.MonkeyPatch) -> None:
    assert sitemaps.MAX_ELEMENTS == 2_000_000
    monkeypatch.setattr(sitemaps, "MAX_ELEMENTS", 100)  # the same count, without 2 million elements to read
    head = b"<urlset><url><loc>https://example.com/</loc></url>"  # 3 elements
    assert parse(head + b"<url>" + b"<loc/>" * 96 + b"</url></urlset>") == Sitemap(pages("/"), [])
    assert parse(head + b"<url>" + b"<loc/>" * 97 + b"</url></urlset>") == Sitemap(pages("/"), [], TOO_MANY_ELEMENTS)
    # Other elements cost nothing but libxml2's time: they are not counted.
    assert parse(head + b"<url>" + b"<x/>" * 10_000 + b"</url></urlset>") == Sitemap(pages("/"), [])


def test_relative_and_non_http_locs_are_dropped() -> None:
    body = urlset("/relative", "page.html", "//example.com/scheme-relative", "ftp://example.com/file",
                  "mailto:someone@example.com", "javascript:alert(1)", "https://", "", "   ",
                  "https://example.com/kept", "http://[bad/")  # fmt: skip
    assert parse(body) == Sitemap(pages("/kept"), [])
    index = b"<sitemapindex><sitemap><loc>/s.xml</loc></sitemap><sitemap><loc>file:///etc/passwd</loc></sitemap>"
    assert parse(index + b"</sitemapindex>") == Sitemap([], [], None)


def test_locs_in_cdata_or_surrounded_by_whitespace() -> None:
    body = (b"<urlset><url><loc>\n    <![CDATA[https://example.com/a?x=1&y=<2>]]>\n  </loc></url>"
            b"<url><loc>\t https://example.com/b \r\n</loc><lastmod><![CDATA[2024-01-02]]></lastmod></url>"
            b"<url><loc>https://example.com/<!-- a comment -->c</loc></url>"
            b"<url><loc>https://example.com/<b>d</b></loc></url></urlset>")  # fmt: skip
    expected = [
        SitemapEntry("https://example.com/a?x=1&y=%3C2%3E", None),
        SitemapEntry("https://example.com/b", "2024-01-02"),
        SitemapEntry("https://example.com/c", None),  # the comment goes; a child element drops /d
    ]
    assert parse(body) == Sitemap(expected, [])


def test_a_url_listed_twice_is_kept_once_as_first_listed() -> None:
    body = (b"<urlset><url><loc>https://example.com/a</loc><lastmod>2024-01-01</lastmod></url>"
            b"<url><loc>https://example.com/b</loc></url>"
            b"<url><loc>HTTPS://Example.com:443/a#again</loc><lastmod>2025-01-01</lastmod></url>"
            b"<url><loc>https://example.com/b</loc></url>"
            b"<url><loc>https://example.com/c</loc><loc>https://example.com/d</loc></url></urlset>")  # fmt: skip
    expected = [SitemapEntry("https://example.com/a", "2024-01-01"), *pages("/b", "/c")]  # an entry's first <loc>
    assert parse(body) == Sitemap(expected, [])
    index = b"<sitemapindex>" + b"<sitemap><loc>https://example.com/s.xml</loc></sitemap>" * 3 + b"</sitemapindex>"
    assert parse(index) == Sitemap([], ["https://example.com/s.xml"])


def test_a_truncated_sitemap_keeps_the_entries_before_the_break() -> None:
    body = (URLSET % NS).rstrip()
    for end in range(len(body)):  # every cut: no exception, an error, and the pages read before it
        result = parse(body[:end])
        assert result.error is not None, end
        assert result.pages == URLSET_PAGES[: len(result.pages)], end
    cut = parse(body[: body.index(b"<url><loc>https://example.com/search")])
    assert cut.pages == URLSET_PAGES[:2]
    assert cut.error is not None
    assert cut.error.startswith("malformed XML (Premature end of data in tag urlset line 4")  # libxml2's words
    assert cut.error.endswith("): the rest is ignored")
    zipped = gzip.compress(body)
    for end in range(len(zipped)):
        result = parse(zipped[:end])
        assert result.error is not None, end
        assert result.pages == URLSET_PAGES[: len(result.pages)], end


def test_garbage_never_raises() -> None:
    rng = random.Random(20240501)
    pieces = [b"<urlset>", b"</urlset>", b"<url>", b"</url>", b"<loc>", b"</loc>", b"https://example.com/",
              b"<![CDATA[", b"]]>", b"<!--", b"-->", b"&amp;", b"&x;", b"<!DOCTYPE urlset [", b"]>", b"\x00", b"\xff",
              b"<?xml version='1.0' encoding='utf-16'?>", b"\x1f\x8b", b"\n", b" "]  # fmt: skip
    bodies = [bytes(rng.getrandbits(8) for _ in range(rng.randrange(1, 300))) for _ in range(200)]
    bodies += [b"\x1f\x8b" + body for body in bodies[:50]]
    bodies += [b"".join(rng.choice(pieces) for _ in range(rng.randrange(1, 40))) for _ in range(300)]
    bodies += [b"<urlset>" + b"<url>" * 300, b"<urlset><url><loc>" + b"a" * (11 << 20) + b"</loc></url></urlset>"]
    for body in bodies:
        result = parse(body)
        assert isinstance(result, Sitemap)
        assert all(entry.url.startswith(("http://", "https://")) for entry in result.pages)
    assert parse(bodies[0]) == Sitemap([], [], NOT_XML_OR_TEXT)
    too_long = parse(bodies[-1])  # a text node over 10 MB: libxml2's limit without huge_tree
    assert (too_long.pages, too_long.sitemaps) == ([], [])
    assert too_long.error is not None
    assert too_long.error.startswith("malformed XML (Resource limit exceeded: Text node too long")
