"""Links end to end: a page of hrefs that browsers and naive URL libraries read differently, served on loopback
and crawled on every backend. The server must see exactly the request targets a browser sends, and no href, base
or Location may end the crawl. (The URL Standard's own test data is run through the link path in
test_whatwg_urls.py.)"""

from __future__ import annotations

import html
from collections import Counter
from pathlib import Path

from crawler.site.generate import Resource, Site
from tests.conftest import Serve, pages_by_url, rows, run_cli

# href on /dir/page.html?x=1 -> the request target a browser sends for it (all on the test server), from the
# WHATWG URL Standard: backslashes are slashes in http(s) URLs; only C0 controls and spaces are trimmed, and tabs
# and newlines removed; the path escapes ^ { } and the query ' (special-query set), but nothing is unescaped;
# numeric IPv4 forms and a trailing dot are the dotted quad; credentials are not part of the target.
TRICKY: dict[str, str] = {
    "\\x1.html": "/x1.html",
    "?": "/dir/page.html?",  # an empty query, which is not the same as no query
    "?q=a b": "/dir/page.html?q=a%20b",
    "?q='x'": "/dir/page.html?q=%27x%27",
    "?a=%2F": "/dir/page.html?a=%2F",
    "/a%3Bb.html": "/a%3Bb.html",
    "a%7eb.html": "/dir/a%7eb.html",
    "p|q[1]^{x}.html": "/dir/p|q[1]%5E%7Bx%7D.html",
    "\u00a0nbsp.html": "/dir/%C2%A0nbsp.html",  # U+00A0 is not trimmed: only C0 controls and space are
    " \tt\nab.html\x01": "/dir/tab.html",
    "../../../../up.html": "/up.html",
    "http:\\\\127.0.0.1:__PORT__\\back.html": "/back.html",
    "HTTP://127.0.0.1:__PORT__/CASE.html": "/CASE.html",
    "http://0x7f.1:__PORT__/ipv4.html": "/ipv4.html",
    "http://2130706433:__PORT__/int.html": "/int.html",
    "http://127.0.0.1.:__PORT__/dot.html": "/dot.html",
    "http://user:@127.0.0.1:__PORT__/cred.html": "/cred.html",
    "http:same-scheme.html": "/dir/same-scheme.html",  # a relative reference on an http page
    "/legacy.html": "/legacy.html",  # a windows-1252 page: the query of its link below is encoded in that
}
# On /legacy.html, served as windows-1252: a browser percent-encodes a link's query in the page's encoding.
LEGACY = {"/legacy.html?q=\u00e9": "/legacy.html?q=%E9", "/\u00e9.html?q=\u65e5": "/%C3%A9.html?q=%26%2326085%3B"}
# Rejected by the URL Standard (a browser follows none of them): counted on the page's row, never fatal.
UNUSABLE = [
    "http://[::1.]/",
    "http://256.256.256.256/",
    "http://[0:1:2:3:4:5:6:7:8]/",
    "//",
    "https://",
    "http://exa mple.com/",
]
# Resolved but not on the crawled host: recorded as links (and, off-host, not fetched).
ELSEWHERE = {
    "///x4.html": "http://x4.html/",
    "https:example.com/": "https://example.com/",
    "http://ex%41mple.com/": "http://example.com/",
    "https://xn--bcher-kva.example/": "https://xn--bcher-kva.example/",
    "http://b\u00fccher.example/": "http://xn--bcher-kva.example/",
    "http://a.b.c.xn--pokxncvks/": "http://a.b.c.xn--pokxncvks/",
    "http://256.256.256.256.example/": "http://256.256.256.256.example/",
}
SEED = "/dir/page.html?x=1"


def _tricky_site() -> Site:
    hrefs = [*TRICKY, *UNUSABLE, *ELSEWHERE]
    anchors = "".join(f'<a href="{html.escape(href, quote=True)}">{index}</a>\n' for index, href in enumerate(hrefs))
    site: Site = {SEED: Resource(f"<!DOCTYPE html><html><head><title>Tricky</title></head><body>{anchors}</body>")}
    legacy = "".join(f'<a href="{href}">x</a>' for href in LEGACY)
    site["/legacy.html"] = Resource(
        f"<!DOCTYPE html><title>Legacy</title>{legacy}".encode("cp1252", "xmlcharrefreplace"),
        content_type="text/html; charset=windows-1252",
    )
    for target in [*TRICKY.values(), *LEGACY.values()]:
        site.setdefault(target, Resource(f"<!DOCTYPE html><title>{html.escape(target)}</title>"))
    return site


def test_the_server_sees_exactly_what_a_browser_requests(serve: Serve, backend: str, tmp_path: Path) -> None:
    server = serve(_tricky_site())
    db = tmp_path / "crawl.db"
    run = run_cli("crawl", server.url(SEED), "--backend", backend, "--db", str(db))
    assert run.exit_code == 0, run.stdout + run.stderr

    targets = Counter(hit.path for hit in server.hits)
    assert targets == Counter(
        ["/robots.txt", "/sitemap.xml", SEED, *TRICKY.values(), *LEGACY.values()]
    )  # each once, nothing else

    pages = pages_by_url(db)
    seed = pages[server.url(SEED)]
    assert (seed["status"], seed["error_kind"], seed["unusable_links"]) == (200, None, len(UNUSABLE))
    credentials = server.url("/cred.html").replace("http://", "http://user@")  # the empty password is dropped
    fetched = {server.url(target) for target in TRICKY.values() if target != "/cred.html"} | {credentials}
    legacy = {server.url(target) for target in LEGACY.values()}
    assert {url for url in pages if url != server.url(SEED)} == fetched | legacy
    assert all(page["status"] == 200 for page in pages.values())

    links = {row["to_url"] for row in rows(db, f"SELECT to_url FROM links WHERE from_url = '{server.url(SEED)}'")}
    assert links == fetched | set(ELSEWHERE.values())


def test_an_unusable_base_or_location_is_a_row_not_the_end(serve: Serve, backend: str, tmp_path: Path) -> None:
    site: Site = {
        "/": Resource(
            '<!DOCTYPE html><head><base href="http://[::1.]/"></head><a href="a.html">a</a>'
            '<a href="/moved">m</a><a href="/to-mailto">t</a>'
        ),
        "/a.html": Resource("<!DOCTYPE html><title>A</title>"),  # the unusable base leaves the page's own URL
        # requests used to parse this Location itself (and read the whole body first): a connection error there
        "/moved": Resource("m" * 3000, status=301, headers={"Location": "http://[0:1:2:3:4:5:6:7:8]/"}),
        "/to-mailto": Resource(status=302, headers={"Location": "mailto:someone@example.com"}),
    }
    server = serve(site)
    db = tmp_path / "crawl.db"
    run = run_cli("crawl", server.url("/"), "--backend", backend, "--db", str(db))
    assert run.exit_code == 0, run.stdout + run.stderr
    found = {url: (page["status"], page["error_kind"], page["size"]) for url, page in pages_by_url(db).items()}
    assert found == {
        server.url("/"): (200, None, len(site["/"].render(server.origin))),
        server.url("/a.html"): (200, None, 31),
        server.url("/moved"): (301, "redirects", 3000),
        server.url("/to-mailto"): (302, "redirects", 0),
    }
    moved = pages_by_url(db)[server.url("/moved")]["error_message"]
    assert moved == "unusable redirect target 'http://[0:1:2:3:4:5:6:7:8]/': not an http(s) URL a browser would follow"
