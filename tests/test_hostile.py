"""Servers that hang, trickle, lie about lengths, bomb, loop, mislabel charsets and set traps: every
backend must record each case as a row and carry on."""

from __future__ import annotations

import codecs
import gzip
import socket
import time
from pathlib import Path

import pytest

from crawler.site.generate import ORIGIN, PORT, Resource, Site
from tests.conftest import FAST_RETRIES, Serve, page_html, pages_by_url, rows, run_cli
from tests.support.hostile import Behaviour, Hostile


def home(*links: str) -> Resource:
    return Resource(page_html("Home", list(links)))


def crawl(backend: str, db: Path, *args: str) -> tuple[dict[str, dict[str, object]], str]:
    """Crawl; return the rows keyed by path (URLs on other origins keep their origin) and stdout."""
    run = run_cli("crawl", *args, "--backend", backend, "--db", str(db), *FAST_RETRIES)
    assert run.exit_code == 0, run.stderr
    origin = args[0].rstrip("/")
    return {url.removeprefix(origin): row for url, row in pages_by_url(db).items()}, run.stdout


def test_deadlines_cut_off_hanging_stalling_and_trickling_servers(serve: Serve, backend: str, tmp_path: Path) -> None:
    body = page_html("Slowly", [], filler=200)
    server = serve({
        "/": home("/hang.html", "/stall.html", "/trickle.html"),
        "/hang.html": Hostile(body, delay=60),                         # never answers
        "/stall.html": Hostile(body, behaviour="stall"),               # headers, then nothing
        "/trickle.html": Hostile(body, behaviour="trickle", delay=0.05),  # a byte every 50 ms: 12 s in all
    })  # fmt: skip
    start = time.monotonic()
    pages, _ = crawl(backend, tmp_path / "a.db", server.url("/"), "--timeout", "1", "--retries", "0",
                     "--per-host", "4", "--ignore-robots")  # fmt: skip
    assert time.monotonic() - start < 8
    for path in ("/hang.html", "/stall.html", "/trickle.html"):
        assert pages[path]["error_kind"] == "timeout", path
        assert 900 <= float(pages[path]["elapsed_ms"]) < 2600, path  # type: ignore[arg-type]
    assert pages["/hang.html"]["status"] is None


def test_bodies_are_capped_even_when_compressed(serve: Serve, backend: str, tmp_path: Path) -> None:
    bomb = gzip.compress(b"\0" * (64 * 1024 * 1024), compresslevel=9)  # 64 MiB of zeros in ~64 KB
    zipped_page = page_html("Zipped", [], filler=5000).encode()
    server = serve({
        "/": home("/huge.bin", "/bomb.html", "/zipped.html", "/exact.bin"),
        "/huge.bin": Resource(b"x" * 3_000_000, content_type="application/octet-stream"),
        "/bomb.html": Resource(bomb, headers={"Content-Encoding": "gzip"}),
        "/zipped.html": Resource(gzip.compress(zipped_page), headers={"Content-Encoding": "gzip"}),
        "/exact.bin": Resource(b"y" * 100_000, content_type="application/octet-stream"),
    })  # fmt: skip
    pages, _ = crawl(backend, tmp_path / "a.db", server.url("/"), "--max-size", "100000", "--ignore-robots")
    assert (pages["/huge.bin"]["status"], pages["/huge.bin"]["size"], pages["/huge.bin"]["truncated"]) == (
        200, 100_000, 1,
    )  # fmt: skip
    assert (pages["/bomb.html"]["size"], pages["/bomb.html"]["truncated"]) == (100_000, 1)
    assert (pages["/exact.bin"]["size"], pages["/exact.bin"]["truncated"]) == (100_000, 0)
    # A compressed page is measured and parsed decoded.
    zipped = pages["/zipped.html"]
    assert (zipped["size"], zipped["title"], zipped["truncated"]) == (len(zipped_page), "Zipped", 0)


@pytest.mark.parametrize("behaviour", ["short", "reset"])
def test_a_body_cut_short_is_an_error_not_a_clean_200(
    serve: Serve, backend: str, tmp_path: Path, behaviour: Behaviour
) -> None:
    server = serve({"/": home("/cut.html"), "/cut.html": Hostile(page_html("Cut", [], 4000), behaviour=behaviour)})
    pages, _ = crawl(backend, tmp_path / "a.db", server.url("/"), "--ignore-robots", "--retries", "1")
    cut = pages["/cut.html"]
    assert cut["error_kind"] in ("incomplete", "connection")
    assert cut["title"] is None
    assert cut["attempts"] == 2  # retried once, failed the same way


def test_redirects_go_through_the_frontier(serve: Serve, backend: str, tmp_path: Path) -> None:
    chain = {f"/hop{i}": Resource("", status=302, headers={"Location": f"/hop{i + 1}"}) for i in range(12)}
    server = serve({
        "/": home("/a", "/r1", "/hop0", "/to-secret", "/to-other-host"),
        "/robots.txt": Resource("User-agent: *\nDisallow: /secret\n", content_type="text/plain"),
        "/a": Resource("", status=301, headers={"Location": "/b"}),
        "/b": Resource("", status=302, headers={"Location": "/a"}),
        "/r1": Resource("", status=301, headers={"Location": f"{ORIGIN}/r2"}),
        "/r2": Resource("", status=307, headers={"Location": "/end.html"}),
        "/end.html": Resource(page_html("The end", [])),
        "/to-secret": Resource("", status=302, headers={"Location": "/secret"}),
        "/secret": Resource(page_html("Secret", [])),
        "/to-other-host": Resource("", status=302, headers={"Location": f"http://localhost:{PORT}/end.html"}),
        **chain,
    })  # fmt: skip
    pages, _ = crawl(backend, tmp_path / "a.db", server.url("/"))
    # A loop is caught where it closes.
    assert (pages["/a"]["status"], pages["/a"]["final_url"], pages["/a"]["error_kind"]) == (301, server.url("/b"), None)
    assert (pages["/b"]["error_kind"], pages["/b"]["error_message"]) == (
        "redirects",
        f"redirect loop: {server.url('/a')} -> {server.url('/b')} -> {server.url('/a')}",
    )
    # Every row of a chain that ended somewhere says where.
    assert [pages[path]["final_url"] for path in ("/r1", "/r2")] == [server.url("/end.html")] * 2
    assert (pages["/end.html"]["title"], pages["/end.html"]["depth"]) == ("The end", 1)
    # Ten hops are followed, the eleventh is refused.
    assert [path for path in pages if path.startswith("/hop")] == [f"/hop{i}" for i in range(11)]
    assert (pages["/hop10"]["error_kind"], pages["/hop10"]["error_message"]) == ("redirects", "more than 10 redirects")
    # A target is subject to robots.txt and to scope like any link.
    assert (pages["/secret"]["error_kind"], pages["/secret"]["status"]) == ("robots", None)
    assert pages["/to-other-host"]["final_url"] == f"http://localhost:{server.port}/end.html"
    assert f"http://localhost:{server.port}/end.html" not in pages


JAPANESE = "日本語のページ"
# path -> (the title, how the page is encoded, the Content-Type header, bytes before the markup)
ENCODINGS: dict[str, tuple[str, str, str, bytes]] = {
    "/utf8.html": ("Grüße \u2014 \u2713", "utf-8", "text/html; charset=utf-8", b""),
    "/latin1.html": ("Café crème", "latin-1", "text/html; charset=iso-8859-1", b""),
    # Labelled latin-1 but written in windows-1252, as servers do: curly quotes live in 0x80-0x9f.
    "/cp1252.html": ("\u201cQuoted\u201d \u2013 fine", "cp1252", "text/html; charset=latin1", b""),
    "/utf16-bom.html": ("Ünïcödé sixteen", "utf-16-le", "text/html", codecs.BOM_UTF16_LE),
    "/bom-vs-header.html": ("Zoë", "utf-8", "text/html; charset=latin-1", codecs.BOM_UTF8),  # the BOM wins
}


def encoded_site() -> Site:
    site: Site = {
        path: Resource(prefix + f"<title>{title}</title>".encode(encoding), content_type=content_type)
        for path, (title, encoding, content_type, prefix) in ENCODINGS.items()
    }
    meta = f'<meta charset="shift_jis"><title>{JAPANESE}</title><p>{JAPANESE * 20}</p>'
    site["/sjis-meta.html"] = Resource(meta.encode("shift_jis"), content_type="text/html")
    undeclared = f"<title>{JAPANESE}</title><p>{'これは日本語の文章です。' * 40}</p>"  # detected
    site["/undeclared.html"] = Resource(undeclared.encode("shift_jis"), content_type="text/html")
    return site


def test_titles_come_out_right_in_every_encoding(serve: Serve, backend: str, tmp_path: Path) -> None:
    site = encoded_site()
    server = serve({"/": home(*site), **site})
    pages, _ = crawl(backend, tmp_path / "a.db", server.url("/"), "--ignore-robots", "--per-host", "4")
    expected = {path: title for path, (title, *_) in ENCODINGS.items()}
    assert {path: pages[path]["title"] for path in site} == expected | {
        "/sjis-meta.html": JAPANESE,
        "/undeclared.html": JAPANESE,
    }


def test_link_rules_nofollow_long_urls_and_traps(serve: Serve, backend: str, tmp_path: Path) -> None:
    long_link = "/long/" + "x" * 2100
    calendar = {f"/cal/{n}": Resource(page_html(f"Month {n}", [f"/cal/{n + 1}"])) for n in range(40)}
    site: Site = {
        "/": Resource(
            '<html><head><title>Home</title></head><body><a href="/followed.html">f</a>'
            '<a href="/nofollow.html" rel="nofollow">n</a> <a href="/both.html" rel="nofollow">b1</a>'
            f'<a href="/both.html">b2</a> <a href="{long_link}">long</a> <a href="/meta.html">m</a>'
            '<a href="/cal/0">calendar</a></body></html>'
        ),
        "/followed.html": Resource(page_html("Followed", [])),
        "/nofollow.html": Resource(page_html("Nofollow", [])),
        "/both.html": Resource(page_html("Both", [])),
        long_link: Resource(page_html("Long", [])),
        "/meta.html": Resource(
            page_html("Meta", ["/from-meta.html"], head='<meta name="ROBOTS" content="noindex, NoFollow">')
        ),
        "/from-meta.html": Resource(page_html("From meta", [])),
        **calendar,
    }
    server = serve(site)
    pages, _ = crawl(backend, tmp_path / "a.db", server.url("/"), "--depth", "50", "--ignore-robots")
    assert "/followed.html" in pages and "/both.html" in pages and "/meta.html" in pages
    assert "/nofollow.html" not in pages and "/from-meta.html" not in pages
    assert not [path for path in pages if path.startswith("/long/")]
    links = {row["to_url"] for row in rows(tmp_path / "a.db", "SELECT to_url FROM links")}
    assert server.url("/nofollow.html") in links and server.url("/from-meta.html") in links  # recorded all the same
    assert not [link for link in links if "/long/" in link]
    home = rows(tmp_path / "a.db", f"SELECT link_count, unusable_links FROM pages WHERE url = '{server.url('/')}'")
    assert home == [{"link_count": 5, "unusable_links": 1}]  # the long one counts as unusable, not as a link
    # The calendar runs 40 months and ends in a dead link: a trap, were it endless.
    assert len([path for path in pages if path.startswith("/cal/")]) == 41

    capped, _ = crawl(backend, tmp_path / "b.db", server.url("/"), "--depth", "50", "--ignore-robots",
                      "--ignore-nofollow", "--max-pages-per-host", "12")  # fmt: skip
    # Breadth first: home, its five links, the two pages they lead to, then the calendar until the cap.
    assert sorted(capped) == sorted([
        "/", "/followed.html", "/nofollow.html", "/both.html", "/meta.html", "/from-meta.html",
        *[f"/cal/{n}" for n in range(6)],
    ])  # fmt: skip


def test_connect_timeout_is_separate_from_the_deadline(backend: str, tmp_path: Path) -> None:
    # A listening socket whose accept backlog is full drops new SYNs: connecting hangs, on loopback.
    with socket.socket() as listener, socket.socket() as filler:
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        filler.connect(listener.getsockname())
        url = f"http://127.0.0.1:{listener.getsockname()[1]}/"
        start = time.monotonic()
        run = run_cli("crawl", url, "--backend", backend, "--db", str(tmp_path / "a.db"), "--connect-timeout", "0.5",
                      "--timeout", "30", "--retries", "0", "--ignore-robots")  # fmt: skip
        assert run.exit_code == 0, run.stderr
        assert time.monotonic() - start < 10
    row = pages_by_url(tmp_path / "a.db")[url]
    assert (row["status"], row["error_kind"]) == (None, "timeout")
    assert 400 <= row["elapsed_ms"] < 2000
