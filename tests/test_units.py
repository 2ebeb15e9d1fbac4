"""The pure parts: URL canonicalisation, seed reading, the parser, error classification, the registry."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from crawler.__main__ import wants_gevent
from crawler.cli import Backend
from crawler.report import human_bytes
from crawler.seeds import SeedError, load_seeds
from crawler.urls import canonical
from fetchers import BACKENDS, ErrorKind, FetchSettings, get_fetcher
from fetchers.base import os_error_kind
from parsers import SoupParser, is_html
from storage import PageStore
from tests.conftest import rows


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("HTTP://Example.COM:80/a/./b/../c?x=1#frag", "http://example.com/a/c?x=1"),
        ("https://example.com:443", "https://example.com/"),
        ("https://example.com#top", "https://example.com/"),
        ("http://example.com:8080/x/../y", "http://example.com:8080/y"),
        ("http://example.com/%7Euser/a b", "http://example.com/~user/a%20b"),
        ("http://example.com?q=1", "http://example.com/?q=1"),
        ("http://example.com/a//b/", "http://example.com/a//b/"),
        ("  http://example.com/page  ", "http://example.com/page"),
    ],
)
def test_canonical_form(url: str, expected: str) -> None:
    assert canonical(url) == expected


@pytest.mark.parametrize(
    "url", ["ftp://example.com/", "example.com", "mailto:a@example.com", "http://[::1/", "http:///x"]
)
def test_canonical_rejects_what_cannot_be_crawled(url: str) -> None:
    with pytest.raises(ValueError):
        canonical(url)


def test_load_seeds_merges_duplicates_and_numbers_bad_lines(tmp_path: Path) -> None:
    seeds = tmp_path / "seeds.txt"
    seeds.write_text(
        "\ufeff# comment\nhttps://a.example/\n\nHTTPS://A.example:443/#x\nnot a url\nhttp://b.example/x  # b\n"
    )
    urls, problems = load_seeds([str(seeds), "https://c.example", "gopher://d.example/"])
    assert urls == ["https://a.example/", "http://b.example/x", "https://c.example/"]
    assert [(p.source, p.line, p.text) for p in problems] == [
        (str(seeds), 5, "not a url"),
        ("command line", None, "gopher://d.example/"),
    ]
    assert str(problems[0]) == f"{seeds}:5: more than one thing on the line: 'not a url'"


@pytest.mark.parametrize(
    ("content", "message"),
    [(None, "seed file not found"), (b"\xff\xfe\xfa", "is not UTF-8 text")],
)
def test_unreadable_seed_files(tmp_path: Path, content: bytes | None, message: str) -> None:
    path = tmp_path / "seeds.txt"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(SeedError, match=message):
        load_seeds([str(path)])


def test_parser_resolves_every_link_form() -> None:
    html = b"""<html><head><title>
        Hello
        World </title></head><body>
        <a href="a.html#x">a</a> <a href="../up.html">up</a> <a href="/root">root</a>
        <a href="//other.example/p">proto</a> <a href="?q=1">query</a> <a href="">self</a>
        <a href="HTTPS://Other.example:443/z">abs</a> <area href="map.html">
        <a href="mailto:x@example.com">m</a> <a href="javascript:void(0)">j</a> <a href="tel:1">t</a>
        <a href="data:text/plain,hi">d</a> <a href="ftp://f.example/">f</a> <a href="http://[::1/x">bad</a>
        <a href="a.html">duplicate</a> <a name="no-href">n</a>
        </body></html>"""
    page = SoupParser().parse(html, "http://h.example/dir/page.html", "text/html")
    assert page.title == "Hello World"
    assert page.links == [
        "http://h.example/dir/a.html",
        "http://h.example/up.html",
        "http://h.example/root",
        "http://other.example/p",
        "http://h.example/dir/page.html?q=1",
        "http://h.example/dir/page.html",
        "https://other.example/z",
        "http://h.example/dir/map.html",
    ]


def test_parser_honours_base_href_and_header_charset() -> None:
    html = '<html><head><base href="http://cdn.example/s/"><title>Café</title></head><a href="x">x</a></html>'
    page = SoupParser().parse(html.encode("latin-1"), "http://h.example/", "text/html; charset=ISO-8859-1")
    assert page == type(page)(title="Café", links=["http://cdn.example/s/x"])


def test_parser_without_title_or_links() -> None:
    page = SoupParser().parse(b"<p>just text", "http://h.example/", None)
    assert (page.title, page.links) == (None, [])


@pytest.mark.parametrize(
    ("content_type", "expected"),
    [("text/html", True), ("text/html; charset=utf-8", True), ("application/xhtml+xml", True),
     ("TEXT/HTML", True), ("application/pdf", False), ("text/plain", False), (None, False)],
)  # fmt: skip
def test_is_html(content_type: str | None, expected: bool) -> None:
    assert is_html(content_type) is expected


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["crawl", "--backend", "gevent"], True),
        (["crawl", "--backend=gevent"], True),
        (["demo", "-b", "gevent"], True),
        (["crawl", "--backend", "thread"], False),
        (["crawl", "gevent"], False),
        (["crawl", "--backend"], False),
    ],
)
def test_wants_gevent(args: list[str], expected: bool) -> None:
    assert wants_gevent(args) is expected


def test_backend_choices_match_the_registry() -> None:
    assert [backend.value for backend in Backend] == list(BACKENDS)
    for name in BACKENDS:
        assert get_fetcher(name).name == name
    with pytest.raises(ValueError, match="choose one of: asyncio, thread, process, gevent"):
        get_fetcher("fibers")


def test_gevent_backend_refuses_to_run_unpatched() -> None:
    with pytest.raises(RuntimeError, match="monkey patching"):
        get_fetcher("gevent")(FetchSettings(concurrency=1, timeout=1, connect_timeout=1, user_agent="t", max_size=1))


@pytest.mark.parametrize(
    ("exc", "kind"),
    [
        (socket.gaierror(-2, "Name or service not known"), ErrorKind.DNS),
        (ConnectionRefusedError(111, "refused"), ErrorKind.REFUSED),
        (TimeoutError("timed out"), ErrorKind.TIMEOUT),
        (ConnectionResetError(104, "reset"), ErrorKind.CONNECTION),
    ],
)
def test_os_error_kind_looks_through_wrappers(exc: OSError, kind: ErrorKind) -> None:
    class WrapperError(Exception):
        def __init__(self, reason: BaseException) -> None:
            super().__init__("wrapped")
            self.reason = reason

    assert os_error_kind(exc) == kind
    wrapped = RuntimeError("outer")
    wrapped.__cause__ = WrapperError(exc)
    assert os_error_kind(wrapped) == kind


@pytest.mark.parametrize(
    ("count", "text"),
    [(0, "0 B"), (1023, "1023 B"), (1536, "1.5 KB"), (5 * 1024**2, "5.0 MB"), (3 * 1024**4, "3072.0 GB")],
)
def test_human_bytes(count: int, text: str) -> None:
    assert human_bytes(count) == text


def test_store_replaces_a_page_and_its_links_when_fetched_again(tmp_path: Path) -> None:
    db = tmp_path / "crawl.db"
    row = {"url": "http://h/", "final_url": "http://h/", "host": "h", "status": 200, "size": 10, "depth": 0}
    store = PageStore(db)
    store.add(row, ["http://h/a", "http://h/b"])
    store.flush()
    store.add({**row, "size": 20}, ["http://h/c"])
    store.close()
    assert [(r["url"], r["size"]) for r in rows(db)] == [("http://h/", 20)]
    assert rows(db, "SELECT to_url FROM links") == [{"to_url": "http://h/c"}]
