"""The parsers are interchangeable: bs4 and lxml extract exactly the same from every page we serve."""

from __future__ import annotations

from pathlib import Path

import pytest

from crawler.site.generate import Site, generate_site
from crawler.site.server import SiteServer
from parsers import PARSERS, LxmlParser, SoupParser, get_parser, is_html
from tests.conftest import TEST_TIMEOUT, fixture_site, rows, run_cli
from tests.test_hostile import encoded_site

ORIGIN = "http://127.0.0.1:8080"
LINK_RULES = (
    b'<html><head><base href="/b/"><meta name="robots" content="index,follow">'
    b'<meta name="Robots" content="NOFOLLOW"></head><body><a href="x" rel="nofollow,noopener">x</a>'
    b'<a href="y" rel="external NoFollow">y</a><a href="z">z</a><a href="z#again" rel="nofollow">z</a>'
    b'<a href="">self</a><a href="  spaced.html  ">s</a><area href="map.html"><a href="http://[::1">bad</a>'
    b"<title>first</title><svg><title>second</title></svg></body></html>"
)


def html_pages() -> list[tuple[str, bytes, str | None]]:
    sites: list[Site] = [fixture_site(), generate_site(150, 11), encoded_site()]
    pages = [
        (ORIGIN + path, resource.render(ORIGIN), resource.content_type)
        for site in sites
        for path, resource in site.items()
        if is_html(resource.content_type) and not resource.headers
    ]
    return [*pages, (ORIGIN + "/rules.html", LINK_RULES, "text/html"), (ORIGIN + "/empty.html", b"", "text/html")]


def test_both_parsers_extract_exactly_the_same() -> None:
    pages = html_pages()
    assert len(pages) > 150
    soup, lxml = SoupParser(), LxmlParser()
    for url, body, content_type in pages:
        assert soup.parse(body, url, content_type) == lxml.parse(body, url, content_type), url
    # ...and what they extract is not trivially empty.
    assert sum(len(soup.parse(body, url, kind).links) for url, body, kind in pages) > 2000


@pytest.mark.parametrize("name", list(PARSERS))
def test_link_rules_page(name: str) -> None:
    page = get_parser(name).parse(LINK_RULES, ORIGIN + "/dir/page.html", "text/html")
    assert page.title == "first"
    assert page.links == [f"{ORIGIN}/b/{path}" for path in ("x", "y", "z", "", "spaced.html", "map.html")]
    assert page.nofollow == {f"{ORIGIN}/b/x", f"{ORIGIN}/b/y"}
    assert page.meta_nofollow is True


def test_unknown_parser() -> None:
    with pytest.raises(ValueError, match="choose one of: bs4, lxml"):
        get_parser("regex")


def test_a_crawl_with_either_parser_gives_the_same_database(site: SiteServer, backend: str, tmp_path: Path) -> None:
    tables = {}
    for name in PARSERS:
        db = tmp_path / f"{name}.db"
        run = run_cli("crawl", site.url("/"), "--backend", backend, "--parser", name, "--db", str(db),
                      "--depth", "5", "--timeout", TEST_TIMEOUT, "--retries", "0")  # fmt: skip
        assert run.exit_code == 0, run.stderr
        tables[name] = (
            rows(db, "SELECT url, status, size, title, link_count, error_kind FROM pages ORDER BY url"),
            rows(db, "SELECT from_url, to_url FROM links ORDER BY from_url, to_url"),
        )
    assert tables["bs4"] == tables["lxml"]
    assert len(tables["bs4"][0]) == 14
