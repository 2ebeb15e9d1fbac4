"""The pure parts: URL canonicalisation, seed reading, the parser, error classification, the registry."""

from __future__ import annotations

import io
import socket
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import pytest

from crawler.__main__ import wants_gevent
from crawler.bench.peers import PEERS
from crawler.commands.app import Backend, ParserName, Peer, SiteProfile
from crawler.engine.retries import retry_after_seconds
from crawler.engine.scheduler import Request, Scheduler
from crawler.engine.seeds import SeedError, load_seeds
from crawler.engine.summary import CrawlSummary
from crawler.engine.urls import canonical
from crawler.site.generate import PROFILES
from crawler.site.server import SiteServer
from crawler.views.progress import LOG_INTERVAL, Mode, ProgressDisplay, status_line
from crawler.views.text import summary_text
from crawler.words import human_bytes
from fetchers import BACKENDS, ErrorKind, FetchSettings, get_fetcher
from fetchers.base import environment_matters, os_error_kind
from fetchers.requests_http import new_session
from parsers import PARSERS, LxmlParser, Parser, SoupParser, is_html
from storage import FrontierEntry, PageStore
from tests.conftest import rows, run_cli


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("HTTP://Example.COM:80/a/./b/../c?x=1#frag", "http://example.com/a/c?x=1"),
        ("https://example.com:443", "https://example.com/"),
        ("https://example.com#top", "https://example.com/"),
        ("http://example.com:8080/x/../y", "http://example.com:8080/y"),
        ("http://example.com/%7euser/a b", "http://example.com/%7euser/a%20b"),  # escapes kept as they are
        ("http://0x7f.1/a%3Bb?q=%2F", "http://127.0.0.1/a%3Bb?q=%2F"),
        ("http:///x", "http://x/"),  # as browsers read it
        ("http://example.com?q=1", "http://example.com/?q=1"),
        ("http://example.com/a//b/", "http://example.com/a//b/"),
        ("  http://example.com/page  ", "http://example.com/page"),
    ],
)
def test_canonical_form(url: str, expected: str) -> None:
    assert canonical(url) == expected


@pytest.mark.parametrize(
    "url", ["ftp://example.com/", "example.com", "mailto:a@example.com", "http://[::1/", "http://[::1.]/"]
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


@pytest.mark.parametrize("parser", [SoupParser(), LxmlParser()], ids=["bs4", "lxml"])
def test_parser_resolves_every_link_form(parser: Parser) -> None:
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
    page = parser.parse(html, "http://h.example/dir/page.html", "text/html")
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
    assert page.unusable == 1  # http://[::1/x


@pytest.mark.parametrize("parser", [SoupParser(), LxmlParser()], ids=["bs4", "lxml"])
def test_parser_honours_base_href_and_header_charset(parser: Parser) -> None:
    html = '<html><head><base href="http://cdn.example/s/"><title>Café</title></head><a href="x">x</a></html>'
    page = parser.parse(html.encode("latin-1"), "http://h.example/", "text/html; charset=ISO-8859-1")
    assert page == type(page)(title="Café", links=["http://cdn.example/s/x"])


@pytest.mark.parametrize("parser", [SoupParser(), LxmlParser()], ids=["bs4", "lxml"])
@pytest.mark.parametrize(
    ("base_href", "link"),
    [
        ("http://[::1.]/", "http://h.example/dir/x"),  # rejected by the URL Standard: the page's URL stays
        ("javascript:alert(1)//", "http://h.example/dir/x"),  # a scheme a <base> may not set
        ("data:text/html,hi/", "http://h.example/dir/x"),
        ("ftp://f.example/d/", None),  # a base it may set: the link leaves http(s)
        ("//cdn.example/s/", "http://cdn.example/s/x"),
    ],
)
def test_parser_sets_the_base_as_browsers_do(parser: Parser, base_href: str, link: str | None) -> None:
    body = f'<html><head><base href="{base_href}"></head><a href="x">x</a></html>'.encode()
    page = parser.parse(body, "http://h.example/dir/page.html", "text/html")
    assert (page.links, page.unusable) == ([link] if link else [], 0)


@pytest.mark.parametrize("parser", [SoupParser(), LxmlParser()], ids=["bs4", "lxml"])
@pytest.mark.parametrize(
    ("markup", "encoding", "content_type", "links"),
    [  # a browser encodes a link's query (only) in the page's encoding; what that encoding lacks is &#N;
        ("<a href='/\u00e9?q=\u00e9&r=\u65e5#\u00e9'>", "cp1252", "text/html; charset=windows-1252",
         ["/%C3%A9?q=%E9&r=%26%2326085%3B"]),
        ("<a href='?q=&eacute;'>", "ascii", "text/html; charset=us-ascii", ["/dir/page.html?q=%E9"]),
        ("<meta charset=shift_jis><a href='?q=\u65e5\u672c'>", "shift_jis", "text/html",
         ["/dir/page.html?q=%93%FA%96{"]),  # a trail byte in ASCII's range is sent as it is
        ("<a href='x?q=\u044f'>", "cp1251", "text/html; charset=windows-1251", ["/dir/x?q=%FF"]),
        ("<a href='x?q=\u00e9#\u00e9?'>", "utf-8", "text/html; charset=utf-8", ["/dir/x?q=%C3%A9"]),
        ("<a href='x#?\u00e9'>", "cp1252", "text/html; charset=windows-1252", ["/dir/x"]),  # no query
    ],
)  # fmt: skip
def test_parser_encodes_link_queries_in_the_page_encoding(
    parser: Parser, markup: str, encoding: str, content_type: str, links: list[str]
) -> None:
    body = f"<html><head><title>t</title></head><body>{markup}x</a></body></html>".encode(encoding, "xmlcharrefreplace")
    page = parser.parse(body, "http://h.example/dir/page.html", content_type)
    assert page.links == ["http://h.example" + link for link in links]


@pytest.mark.parametrize("parser", [SoupParser(), LxmlParser()], ids=["bs4", "lxml"])
@pytest.mark.parametrize("content_type", ["text/html", "text/html; charset=Shift_JIS"])
def test_parser_reads_a_label_as_the_superset_browsers_do(parser: Parser, content_type: str) -> None:
    # Shift_JIS pages are code page 932 to browsers; its circled digits made libxml2 stop at the first one.
    html = "<html><head><meta charset=shift_jis><title>\u65e5\u672c\u2460</title></head><body><a href=/a>a</a>"
    body = (html + "\u2460<a href=/b>b</a></body></html>").encode("cp932")
    page = parser.parse(body, "http://h.example/", content_type)
    assert (page.title, page.links) == ("\u65e5\u672c\u2460", ["http://h.example/a", "http://h.example/b"])


@pytest.mark.parametrize("parser", [SoupParser(), LxmlParser()], ids=["bs4", "lxml"])
def test_parser_reads_a_utf16_meta_as_utf8(parser: Parser) -> None:
    body = "<html><head><meta charset=utf-16><title>Caf\u00e9</title></head></html>".encode()
    assert parser.parse(body, "http://h.example/", "text/html").title == "Caf\u00e9"


@pytest.mark.parametrize("parser", [SoupParser(), LxmlParser()], ids=["bs4", "lxml"])
@pytest.mark.parametrize("codec", ["idna", "base64", "rot13", "undefined"])
def test_parser_passes_over_a_codec_that_is_no_text_encoding(parser: Parser, codec: str) -> None:
    # Python knows these names; libxml2 does not (lxml raised LookupError), and none decodes HTML.
    for content_type, meta in ((f"text/html; charset={codec}", ""), ("text/html", f"<meta charset={codec}>")):
        body = f"<html><head>{meta}<title>Café</title></head><a href='/a'>a</a></html>".encode()
        page = parser.parse(body, "http://h.example/", content_type)
        assert (page.title, page.links) == ("Café", ["http://h.example/a"])


@pytest.mark.parametrize("parser", [SoupParser(), LxmlParser()], ids=["bs4", "lxml"])
def test_parser_without_title_or_links(parser: Parser) -> None:
    page = parser.parse(b"<p>just text", "http://h.example/", None)
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
        (["bench", "--backend", "gevent"], False),  # measures gevent in a subprocess: must stay unpatched
        (["query", "--backend", "gevent"], False),
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


def test_parser_choices_match_the_registry() -> None:
    assert [name.value for name in ParserName] == list(PARSERS)


def test_bench_choices_match_the_site_profiles_and_peers() -> None:
    assert [profile.value for profile in SiteProfile] == list(PROFILES)
    assert [peer.value for peer in Peer] == list(PEERS)


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
    store.commit(row, [("http://h/a", True), ("http://h/b", False)], [], [])
    store.flush()
    assert store.links_of("http://h/") == [("http://h/a", True), ("http://h/b", False)]
    store.commit({**row, "size": 20}, [("http://h/c", True)], [], [])
    store.flush()
    store.commit({**row, "size": 20}, None, [], [])  # unchanged: the links stored stay
    store.close()
    assert [(r["url"], r["size"]) for r in rows(db)] == [("http://h/", 20)]
    assert rows(db, "SELECT to_url, follow FROM links") == [{"to_url": "http://h/c", "follow": 1}]


def test_a_url_found_by_several_pages_keeps_its_first_entry_in_the_frontier(tmp_path: Path) -> None:
    db = tmp_path / "crawl.db"
    row = {"url": "http://h/", "final_url": "http://h/", "host": "h", "status": 200, "size": 10, "depth": 0}
    store = PageStore(db)
    store.add_seeds([FrontierEntry("http://h/", "http://h", 0)])
    store.flush()
    shared, deeper = FrontierEntry("http://h/s", "http://h", 1), FrontierEntry("http://h/s", "http://h", 2, via="x")
    store.commit(row, [("http://h/s", True)], [shared], [])  # one batch: both pages, then one write
    store.commit({**row, "url": "http://h/a"}, [("http://h/s", True)], [deeper], [])
    assert store.flush() == {"http://h"}
    assert (store.queued, store.done) == (1, 1)  # the seed done, the shared URL queued once
    store.commit({**row, "url": "http://h/b"}, [("http://h/s", True)], [deeper], [])  # a later batch
    assert store.flush() == {"http://h"}  # may have new entries: duplicates are ignored
    assert (store.queued, store.done) == (1, 1)
    store.close()
    assert rows(db, "SELECT url, depth, via, state FROM frontier ORDER BY url") == [
        {"url": "http://h/", "depth": 0, "via": None, "state": "done"},
        {"url": "http://h/s", "depth": 1, "via": None, "state": "queued"},
    ]
    assert rows(db, "SELECT count(*) AS n FROM links WHERE to_url = 'http://h/s'") == [{"n": 3}]


def test_store_indexes_links_by_target_only_once_closed(tmp_path: Path) -> None:
    db = tmp_path / "crawl.db"
    row = {"url": "http://h/", "final_url": "http://h/", "host": "h", "status": 200, "size": 10, "depth": 0}
    to_url_indexes = "SELECT name FROM sqlite_master WHERE type = 'index' AND sql LIKE '%links%to_url%'"
    store = PageStore(db)
    store.commit(row, [("http://h/a", True)], [], [])
    store.close()
    assert rows(db, to_url_indexes) == [{"name": "idx_links_to_url"}]
    store = PageStore(db)  # a crawl writing to it: the index would slow every insert
    assert rows(db, to_url_indexes) == []
    store.close()
    assert rows(db, to_url_indexes) == [{"name": "idx_links_to_url"}]


def test_retry_after_in_seconds_or_as_a_date() -> None:
    now = datetime(2026, 11, 22, 12, 0, 0, tzinfo=UTC)
    assert retry_after_seconds("120", now) == 120
    assert retry_after_seconds("Sun, 22 Nov 2026 12:00:30 GMT", now) == 30
    assert retry_after_seconds("Sun, 22 Nov 2026 11:00:00 GMT", now) == 0  # in the past: no wait
    assert retry_after_seconds("soon", now) is None
    assert retry_after_seconds(None, now) is None


def test_scheduler_round_robin_per_host_limit_delay_and_pause() -> None:
    scheduler = Scheduler(per_host=2, delay=0.0)
    for name in ("a1", "a2", "a3"):
        scheduler.push(Request(f"http://a/{name}", "http://a", 0), now=0)
    scheduler.push(Request("http://b/b1", "http://b", 0), now=0)
    started = [scheduler.pop(0) for _ in range(4)]
    # a, b, a in turn; then a is at its limit of two in flight.
    assert [r.url if r else None for r in started] == ["http://a/a1", "http://b/b1", "http://a/a2", None]
    scheduler.finished(started[0], now=0)  # type: ignore[arg-type]
    assert scheduler.pop(0).url == "http://a/a3"  # type: ignore[union-attr]
    assert scheduler.queued == 0

    slow = Scheduler(per_host=4, delay=1.0)
    for index in range(2):
        slow.push(Request(f"http://c/{index}", "http://c", 0), now=10)
    assert slow.pop(10).url == "http://c/0"  # type: ignore[union-attr]
    assert slow.pop(10.5) is None and slow.next_timer() == 11
    assert slow.pop(11).url == "http://c/1"  # type: ignore[union-attr]

    paused = Scheduler(per_host=1, delay=0.0)
    paused.push(Request("http://d/1", "http://d", 0), now=0)
    paused.pause("http://d", until=5, now=0)
    assert paused.pop(4.9) is None
    assert paused.pop(5).url == "http://d/1"  # type: ignore[union-attr]


def test_scheduler_holds_retries_and_caps_pages_per_host() -> None:
    scheduler = Scheduler(per_host=1, delay=0.0, max_pages_per_host=2)
    first = Request("http://a/1", "http://a", 0)
    scheduler.push(first, now=0)
    scheduler.push(Request("http://a/2", "http://a", 0), now=0)
    scheduler.push(Request("http://a/3", "http://a", 0), now=0)
    assert scheduler.pop(0) is first
    scheduler.finished(first, now=0)
    scheduler.later(Request("http://a/1", "http://a", 0, attempt=2), at=3)
    assert scheduler.pop(1).url == "http://a/2"  # type: ignore[union-attr]
    scheduler.finished(Request("http://a/2", "http://a", 0), now=1)
    assert scheduler.pop(2) is None  # a/3 is over the cap; the retry is not due yet
    retry = scheduler.pop(3)
    assert (retry.url, retry.attempt) == ("http://a/1", 2)  # type: ignore[union-attr]
    assert scheduler.queued == 0


def test_counts_and_their_nouns_agree() -> None:
    # "Crawled 1 pages", "1 retries", "queued 1 URLs", "from 0 seeds" on resume, 1359 beside 1,359 (issue #11).
    one = CrawlSummary(backend="gevent", pages=1, errors=1, bytes=10, elapsed=1.0, retries=1, queued=1, capped=1,
                       resumed_from=1, in_flight=1, errors_by_kind=Counter({"timeout": 1}))  # fmt: skip
    assert summary_text(one, 0, "c.db").splitlines() == [
        "Crawled 1 page with the gevent backend in 1.00 s (1.0 pages/s)",
        "  ok       0",
        "  errors   1  (timeout 1)",
        "  retries  1",
        "  bytes    10 B (10)",
        "  database c.db",
        "  resumed  after 1 page done in earlier runs",
        "  queued   1 URL not crawled yet",
        "  capped   1 URL not fetched: over --max-pages-per-host",
    ]
    assert status_line(one) == "1 page  1 queued  1 in flight  1 error  1 retry  1.0 pages/s  10 B"
    many = CrawlSummary(backend="thread", pages=1359, errors=1001, elapsed=1.0, retries=2000)
    assert summary_text(many, 1, "c.db").splitlines()[:4] == [
        "Crawled 1,359 pages from 1 seed with the thread backend in 1.00 s (1,359.0 pages/s)",
        "  ok       358",
        "  errors   1,001",
        "  retries  2,000",
    ]
    assert summary_text(many, 2, "c.db").startswith("Crawled 1,359 pages from 2 seeds ")
    # Every page failed and no byte came back: it says so, in words (no line when a body had begun to arrive).
    offline = CrawlSummary(backend="thread", pages=5, errors=5, errors_by_kind=Counter({"dns": 4, "timeout": 1}))
    assert summary_text(offline, 1, "c.db").splitlines()[-1] == (
        "Nothing could be fetched: 4 DNS failures, 1 timeout. Offline, or are the sites down?"
    )


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_live_on_a_terminal_lines_otherwise_and_quiet() -> None:
    summary = CrawlSummary(backend="thread", pages=1234, errors=5, bytes=2048, elapsed=2.0, queued=77, in_flight=3)
    expected = "1,234 pages  77 queued  3 in flight  5 errors  0 retries  617.0 pages/s  2.0 KB"
    assert status_line(summary) == expected

    terminal = _Terminal()
    with ProgressDisplay.for_terminal(quiet=False, stream=terminal) as live:
        assert live.mode is Mode.LIVE
        live(summary)
        # The time elapsed first (a 1,234-page crawl is no bounded one: no bar), wrapped to the terminal.
        assert "0:02 elapsed " + " ".join(expected.split()) in " ".join(terminal.getvalue().split())

    piped = io.StringIO()
    with ProgressDisplay.for_terminal(quiet=False, stream=piped) as log:
        assert log.mode is Mode.LOG
        log(summary)  # the first line waits for the interval
        assert piped.getvalue() == ""
        log._last_log -= LOG_INTERVAL
        log(summary)
    assert piped.getvalue() == f"[    2.0 s] {expected}\n"

    silent = _Terminal()
    with ProgressDisplay.for_terminal(quiet=True, stream=silent) as quiet:
        quiet(summary)
    assert silent.getvalue() == ""


def test_crawl_progress_goes_to_stderr_unless_quiet(site: SiteServer, tmp_path: Path) -> None:
    run = run_cli("crawl", site.url("/about.html"), "--db", str(tmp_path / "a.db"), "--depth", "0", "--quiet")
    assert (run.exit_code, run.stderr) == (0, "")


@pytest.mark.usefixtures("plain_environment")
def test_clients_consult_the_environment_only_when_it_sets_proxies_or_netrc(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = FetchSettings(concurrency=1, timeout=1, connect_timeout=1, user_agent="t", max_size=1)
    assert (environment_matters(), new_session(settings).trust_env) == (False, False)
    monkeypatch.setenv("HTTPS_PROXY", "http://127.0.0.1:3128")
    assert (environment_matters(), new_session(settings).trust_env) == (True, True)
    monkeypatch.delenv("HTTPS_PROXY")
    (tmp_path / ".netrc").write_text("machine 127.0.0.1 login a password b\n")
    assert environment_matters()
