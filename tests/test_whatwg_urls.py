"""Links as browsers read them: the WHATWG URL Standard's own test corpus (its http(s) cases, `tests/data/`),
run through the crawler's link path (`build_page` then `canonical`), through both real HTML parsers and through
`resolve`; a hand-written table of hrefs that must, or must not, be deduplicated; and random hrefs that must
never break anything."""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import NamedTuple

import ada_url
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from crawler.engine.urls import canonical, host, origin, resolve
from parsers import PARSERS, get_parser
from parsers.base import Page, _resolved, absolute_link, build_page, resolve_shared

DATA = Path(__file__).parent / "data" / "urltestdata.json"
PAGE_URL = "http://unrelated.example/page.html"  # where the corpus's HTML bodies claim to come from
CONTENT_TYPE = "text/html; charset=utf-8"
C0_OR_SPACE = "".join(map(chr, range(0x21)))  # what the URL parser strips from both ends of its input
HTTP_PREFIXES = ("http://", "https://")


class Case(NamedTuple):
    input: str
    base: str | None
    href: str | None  # None: the standard's "failure"


def load_cases() -> list[Case]:
    entries = json.loads(DATA.read_text(encoding="utf-8"))
    return [Case(e["input"], e["base"], None if e.get("failure") else e["href"]) for e in entries]


CASES = load_cases()


def effective_base(case: Case) -> str:
    """The case's base; for a case without one (an absolute http(s) input), a base of the *other* special
    scheme: a scheme that differs from the base's makes the parser treat the input as absolute (scheme state),
    so such a base cannot change the result, while the same scheme would make `http:foo` relative."""
    if case.base is not None:
        return case.base
    https = case.input.lstrip(C0_OR_SPACE)[:6].lower() == "https:"
    return "http://unrelated.example/dir/" if https else "https://unrelated.example/dir/"


class Outcome(NamedTuple):
    links: list[str]  # canonical forms
    unusable: int


def expected(case: Case) -> Outcome:
    if case.href is None:
        return Outcome([], 1)  # failure: counted, never followed
    if not case.href.startswith(("http:", "https:")):
        return Outcome([], 0)  # a base-relative href that leaves http(s) (none in the corpus, but the rule)
    return Outcome([case.href.partition("#")[0]], 0)


def outcome(page: Page) -> Outcome:
    return Outcome([canonical(link) for link in page.links], page.unusable)


def case_id(case: Case) -> str:
    return f"{case.input!a}" if case.base is None else f"{case.input!a} against {case.base!a}"


# Cases where the crawler knowingly differs from the standard: (input, base) -> why. Each is run as a strict
# xfail, so that it is reported if it ever starts to agree. ada-url passes the whole corpus: none.
INTENDED: dict[tuple[str, str | None], str] = {}


def corpus_params(cases: list[Case]) -> list[pytest.ParameterSet]:
    return [
        pytest.param(
            case,
            id=case_id(case),
            marks=[pytest.mark.xfail(strict=True, reason=INTENDED[case[:2]])] if case[:2] in INTENDED else [],
        )
        for case in cases
    ]


def test_the_corpus_is_the_http_subset_of_the_upstream_file() -> None:
    assert len(CASES) == 481
    assert sum(case.href is None for case in CASES) == 199
    assert sum(case.base is None for case in CASES) == 279
    for case in CASES:
        scheme_of = case.base if case.base is not None else case.input.lstrip(C0_OR_SPACE)
        assert scheme_of[:5].lower() == "http:" or scheme_of[:6].lower() == "https:", case
    assert set(INTENDED) <= {case[:2] for case in CASES}


# 1. The corpus through the link path, without HTML.


@pytest.mark.parametrize("case", corpus_params(CASES))
def test_corpus_through_the_link_path(case: Case) -> None:
    want = expected(case)
    if case.base is None:  # a seed: canonical() directly
        try:
            seed: str | None = canonical(case.input)
        except ValueError:
            seed = None
        assert seed == (want.links[0] if want.links else None)
    base = effective_base(case)
    assert outcome(build_page(base, None, None, [], [(case.input, None)])) == want
    assert resolve(case.input, base) == (want.links[0] if want.links else None)
    for link in want.links:
        assert_is_a_link(link)


# 2. The corpus through both real parsers, inside an HTML page with a <base href>.

# Inputs the HTML tokenizer changes before any URL parser sees them, and whose result that change alters. The
# HTML Standard replaces U+0000 in an attribute value by U+FFFD (unexpected-null-character) and turns CR and
# CRLF into LF (input stream preprocessing, harmless here: the URL parser drops LF); a lone surrogate cannot
# be written in a UTF-8 body at all (none of the corpus's http(s) cases has one). Only the cases below end up
# different; `test_what_html_does_to_the_excluded_inputs` shows that it is the tokenizer's doing and nothing else.
HTML_EXCLUDED: dict[str, str] = {
    "\x00\x1b\x04\x12 http://example.com/\x1f \r ": "leading NUL becomes U+FFFD, which the URL parser does not "
    "strip: the href turns relative",
    "https://x/\x00y": "NUL becomes U+FFFD: path %EF%BF%BD instead of %00",
    "https://x/?\x00y": "NUL becomes U+FFFD: query %EF%BF%BD instead of %00",
}
HTML_CASES = [case for case in CASES if case.input not in HTML_EXCLUDED]


def html_preprocessed(text: str) -> str:
    """What an HTML parser hands on for an attribute value written raw in a page (the changes URLs meet)."""
    return text.replace("\r\n", "\n").replace("\r", "\n").replace("\x00", "\ufffd")


def html_body(base: str, href: str) -> bytes:
    return (
        f'<!DOCTYPE html><html><head><base href="{html.escape(base, quote=True)}"></head>'
        f'<body><a href="{html.escape(href, quote=True)}">x</a></body></html>'
    ).encode()


def test_the_html_exclusions_stay_few_and_justified() -> None:
    assert len(HTML_EXCLUDED) == 3
    assert len(HTML_CASES) == len(CASES) - 3  # each excluded input is one corpus case
    assert all(html_preprocessed(text) != text for text in HTML_EXCLUDED)


@pytest.mark.parametrize("parser_name", list(PARSERS))
@pytest.mark.parametrize("case", corpus_params(HTML_CASES))
def test_corpus_through_the_parsers(case: Case, parser_name: str) -> None:
    page = get_parser(parser_name).parse(html_body(effective_base(case), case.input), PAGE_URL, CONTENT_TYPE)
    assert outcome(page) == expected(case)


@pytest.mark.parametrize("parser_name", list(PARSERS))
@pytest.mark.parametrize("case", [case for case in CASES if case.input in HTML_EXCLUDED], ids=case_id)
def test_what_html_does_to_the_excluded_inputs(case: Case, parser_name: str) -> None:
    base = effective_base(case)
    page = get_parser(parser_name).parse(html_body(base, case.input), PAGE_URL, CONTENT_TYPE)
    assert outcome(page) != expected(case)
    assert page == build_page(base, None, None, [], [(html_preprocessed(case.input), None)])


# 3. Deduplication: hrefs a browser requests as one URL must share a canonical form; hrefs it requests as two
# (the server may answer differently) must not. Written from the URL Standard, not from ada's answers.

P = "http://example.com/dir/page.html"
Q = "http://example.com/dir/page.html?a=1"
S = "https://example.com/dir/page.html"

PAIRS: list[tuple[str, str, str, bool, str]] = [
    # relative paths and dot segments
    (P, "x.html", "./x.html", True, "./ is the current directory"),
    (P, "x.html", "/dir/x.html", True, "path-relative against /dir/"),
    (P, "x.html", "/x.html", False, "a different directory"),
    (P, "../x.html", "/x.html", True, "one level up from /dir/"),
    (P, "../../../x.html", "/x.html", True, "'..' beyond the root stays at the root"),
    (P, "/a/./b/../c", "/a/c", True, "dot segments are resolved"),
    (P, "/a/%2e%2e/b", "/b", True, "%2e%2e is a double-dot segment"),
    (P, "/a/%2E/b", "/a/b", True, "%2E is a single-dot segment"),
    (P, "/a%2e/b", "/a./b", False, "%2e inside a segment is not a dot segment, and is not decoded"),
    (P, "/dir", "/dir/", False, "a trailing slash is another path"),
    (P, "/a//b", "/a/b", False, "empty segments are kept"),
    (P, "http://example.com", "http://example.com/", True, "a special URL's empty path is /"),
    (P, "http://example.com?x", "http://example.com/?x", True, "empty path before a query is /"),
    # scheme-relative and slashes
    (P, "//example.com/x", "/x", True, "scheme-relative to the same host"),
    (P, "//Example.COM:80/x", "/x", True, "scheme-relative, host case and default port normalised"),
    (P, "//other.example/x", "/x", False, "scheme-relative to another host"),
    (P, "///x", "//x", True, "extra slashes before a special URL's authority are ignored: host x"),
    (P, "///x", "/x", False, "///x names host x, not path /x"),
    (S, "//example.com/x", "https://example.com/x", True, "scheme-relative takes the page's https"),
    # backslashes are slashes in special URLs
    (P, "\\x1.html", "/x1.html", True, "a leading backslash is root-relative"),
    (P, "sub\\x.html", "sub/x.html", True, "a backslash separates segments"),
    (P, "\\\\other.example\\x", "//other.example/x", True, "two backslashes start an authority"),
    (P, "a%5Cb", "a\\b", False, "%5C is not a separator; a raw backslash is"),
    (P, "http:\\\\other.example\\x", "http://other.example/x", True, "same-scheme, backslashes as slashes"),
    # the query
    (Q, "?", "page.html", False, "'?' keeps the path with an empty query, which is not no query"),
    (Q, "?", "page.html?", True, "both: the page's path, empty query"),
    (Q, "", "page.html?a=1", True, "an empty href is the page itself"),
    (Q, "?b=2", "page.html?b=2", True, "a query-only href keeps the path"),
    (Q, "?b=2", "?b=2&a=1", False, "another query"),
    (P, "x.html?#a", "x.html", False, "an empty query is still a query"),
    (P, "?q=a b", "?q=a%20b", True, "a space in a query is escaped as %20"),
    (P, "?q=a b", "?q=a+b", False, "'+' is not a space to the URL parser"),
    (P, "?a=1&b=2", "?b=2&a=1", False, "parameter order is kept"),
    (P, "?q=a'b", "?q=a%27b", True, "a special URL's query escapes '"),
    (P, "?q=é", "?q=%C3%A9", True, "non-ASCII in a query is UTF-8 escaped (a UTF-8 page)"),
    (P, "?q=%7e", "?q=~", False, "escapes are never decoded"),
    (P, "?q={x}", "?q=%7Bx%7D", False, "braces are not escaped in a query"),
    # fragments are never sent
    (Q, "#frag", "", True, "a fragment-only href is the page itself"),
    (P, "x.html#a", "x.html#b", True, "differ only by fragment"),
    (P, "x.html#", "x.html", True, "an empty fragment"),
    (P, "x.html#a b", "x.html", True, "a fragment with a space"),
    (P, "x.html?#", "x.html?", True, "empty query kept, fragment dropped"),
    # host: case, trailing dot, percent-escapes
    (P, "http://EXAMPLE.com/x", "http://example.com/x", True, "hosts are lower-cased"),
    (P, "HTTP://example.com/x", "http://example.com/x", True, "schemes are lower-cased"),
    (P, "http://example.com/X", "http://example.com/x", False, "paths are case-sensitive"),
    (P, "http://example.com./x", "http://example.com/x", False, "a trailing dot is another host name"),
    (P, "http://exa%6Dple.com/", "http://example.com/", True, "a host is percent-decoded before IDNA"),
    (P, "http://example.com%2E/", "http://example.com./", True, "an escaped trailing dot is a trailing dot"),
    # ports
    (P, "http://example.com:80/x", "http://example.com/x", True, "http's default port is dropped"),
    (S, "https://example.com:443/x", "https://example.com/x", True, "https's default port is dropped"),
    (P, "http://example.com:443/x", "http://example.com/x", False, "443 is not http's default port"),
    (S, "https://example.com:80/x", "https://example.com/x", False, "80 is not https's default port"),
    (P, "http://example.com:080/x", "http://example.com/x", True, "the port is a number: 080 is 80"),
    (P, "http://example.com:/x", "http://example.com/x", True, "an empty port is no port"),
    (P, "http://example.com:8080/x", "http://example.com/x", False, "a non-default port"),
    # IPv4 and IPv6
    (P, "http://0x7f.1/", "http://127.0.0.1/", True, "hex and short IPv4 forms"),
    (P, "http://2130706433/", "http://127.0.0.1/", True, "an IPv4 address as one number"),
    (P, "http://127.1/", "http://127.0.0.1/", True, "a two-part IPv4 address"),
    (P, "http://0177.0.0.1/", "http://127.0.0.1/", True, "an octal IPv4 part"),
    (P, "http://127.0.0.1./", "http://127.0.0.1/", True, "an IPv4 address's trailing dot is dropped"),
    (P, "http://[::1]/", "http://[0:0:0:0:0:0:0:1]/", True, "IPv6 is compressed"),
    (P, "http://[::ffff:127.0.0.1]/", "http://[::ffff:7f00:1]/", True, "IPv6 with an embedded IPv4 part"),
    (P, "http://[::1]/", "http://127.0.0.1/", False, "IPv6 and IPv4 loopback are other hosts"),
    # IDN (UTS #46, non-transitional)
    (P, "http://bücher.example/", "http://xn--bcher-kva.example/", True, "IDNA to punycode"),
    (P, "http://BÜCHER.example/", "http://bücher.example/", True, "IDNA maps to lower case"),
    (P, "http://faß.example/", "http://fass.example/", False, "non-transitional: ß is kept, not mapped to ss"),
    (P, "http://example\u3002com/", "http://example.com/", True, "the ideographic full stop is a dot"),
    (P, "http://\uff45\uff58.com/", "http://ex.com/", True, "full-width letters map to ASCII"),
    # percent-encoding in paths: never decoded, and the case of an escape is kept
    (P, "/%41", "/A", False, "%41 is not decoded to A"),
    (P, "/a%3Bb", "/a;b", False, "%3B is not ;"),
    (P, "/a%2Fb", "/a/b", False, "%2F is not a separator"),
    (P, "/%7e", "/%7E", False, "the case of an escape is kept: the bytes sent differ"),
    (P, "/~", "/%7E", False, "~ is not escaped, %7E is not decoded"),
    (P, "/%c3%a9", "/%C3%A9", False, "the case of an escape is kept"),
    (P, "/é", "/%C3%A9", True, "non-ASCII in a path is UTF-8 escaped in upper case"),
    (P, "/a b", "/a%20b", True, "a space in a path is escaped"),
    (P, '/a"b', "/a%22b", True, "the path set escapes a double quote"),
    (P, "/a<b>", "/a%3Cb%3E", True, "the path set escapes < and >"),
    (P, "/a{b}", "/a%7Bb%7D", True, "the path set escapes braces"),
    (P, "/a|b", "/a%7Cb", False, "| is not in the path set"),
    (P, "/a'b", "/a%27b", False, "' is not in the path set"),
    # whitespace in hrefs
    (P, "x\t.html", "x.html", True, "tabs are removed"),
    (P, "x\n.ht\rml", "x.html", True, "newlines are removed"),
    (P, "  x.html  ", "x.html", True, "leading and trailing spaces are stripped"),
    (P, "\x1fx.html", "x.html", True, "a leading C0 control is stripped"),
    (P, "x .html", "x%20.html", True, "an inner space is escaped, not removed"),
    (P, "\u00a0x.html", "x.html", False, "U+00A0 is not stripped: it is escaped"),
    (P, "\u3000x.html", "x.html", False, "U+3000 is not stripped: it is escaped"),
    # userinfo
    (P, "http://user:@example.com/", "http://user@example.com/", True, "an empty password is dropped"),
    (P, "http://@example.com/", "http://example.com/", True, "an empty userinfo is dropped"),
    (P, "http://:@example.com/", "http://example.com/", True, "empty username and password"),
    (P, "http://user@example.com/", "http://example.com/", False, "a username is sent"),
    (P, "http://User@example.com/", "http://user@example.com/", False, "usernames are case-sensitive"),
    # scheme with no slashes
    (P, "https:example.com/", "https://example.com/", True, "another scheme: absolute"),
    (P, "http:foo.html", "foo.html", True, "the page's own scheme without slashes: relative"),
    (P, "HTTP:foo.html", "foo.html", True, "the same, scheme case-insensitive"),
    (P, "http:/foo.html", "/foo.html", True, "the page's scheme and one slash: root-relative"),
    (P, "https:foo.html", "foo.html", False, "another scheme: host foo.html"),
    (S, "http:foo.html", "http://foo.html/", True, "on an https page http: is another scheme"),
]


def link_of(page_url: str, href: str) -> str:
    """The one canonical link a page at `page_url` with a single `<a href>` yields."""
    page = build_page(page_url, None, None, [], [(href, None)])
    assert len(page.links) == 1, f"{href!r} on {page_url}: {page}"
    return canonical(page.links[0])


def test_hrefs_deduplicate_as_a_browser_requests_them() -> None:
    assert len(PAIRS) >= 60
    assert len({(page_url, a, b) for page_url, a, b, _, _ in PAIRS}) == len(PAIRS)
    splits: list[str] = []
    merges: list[str] = []
    for page_url, a, b, same, why in PAIRS:
        link_a, link_b = link_of(page_url, a), link_of(page_url, b)
        if same and link_a != link_b:
            splits.append(f"{a!r} / {b!r} on {page_url} ({why}): {link_a} != {link_b}")
        elif not same and link_a == link_b:
            merges.append(f"{a!r} / {b!r} on {page_url} ({why}): both {link_a}")
    assert not splits and not merges, (
        f"{len(splits)} splits, {len(merges)} false merges in {len(PAIRS)} pairs:\n" + "\n".join(splits + merges)
    )


# 4. Random hrefs and bases: nothing but ValueError escapes canonical(), nothing at all escapes the rest, and
# every link that comes out is an http(s) URL without a fragment that canonical() leaves unchanged.

URLISH_PIECES = [
    *("http:", "https:", "HTTP:", "hTtPs:", "ftp:", "file:", "mailto:", "javascript:", "data:", "blob:", "ws:"),
    *("//", "/", "\\", "[", "]", ":", "@", "?", "#", "%", ".", "..", "%2e", "%2E%2e", "%41", "%zz", "%00", "%"),
    *("xn--", "xn--bcher-kva", "xn--zz", "example.com", "a", "bücher", "faß", "\u3002", "\uff0e", "\u2024"),
    *("0", "1", "08", "0x", "0xff", "255", "256", "4294967295", "4294967296", "127.0.0.1", "::", "::ffff:"),
    *(":80", ":443", ":65535", ":65536", ":-1", "user:pass@", "\t", "\n", "\r", " ", "\x00", "\x1f", "\x7f"),
    *("\u00a0", "\u3000", "\u200b", "\ufeff", "\ufffd", "\ufdd0", "\U0001f600", "\ud800", "\udfff", "&amp;"),
]
ANY_TEXT = st.text(st.characters())  # every code point, lone surrogates included
URLISH = st.lists(st.one_of(st.sampled_from(URLISH_PIECES), st.characters()), max_size=16).map("".join)
HREFS = st.one_of(ANY_TEXT, URLISH)
FUZZ = settings(max_examples=150, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])


def assert_is_a_link(link: str) -> None:
    assert link.startswith(HTTP_PREFIXES), link
    assert "#" not in link, link
    assert canonical(link) == link
    parsed = ada_url.URL(link)  # host() and origin() slice the string: they must agree with a parse
    assert (host(link), origin(link)) == (parsed.hostname, parsed.origin), link


def assert_is_a_page(page: Page) -> None:
    for link in page.links:
        assert_is_a_link(link)
    assert page.nofollow <= set(page.links)


@FUZZ
@given(HREFS)
def test_canonical_raises_only_value_error(text: str) -> None:
    try:
        link = canonical(text)
    except ValueError:
        return
    assert_is_a_link(link)


@FUZZ
@given(href=HREFS, base_href=HREFS)
def test_link_path_never_raises(href: str, base_href: str) -> None:
    resolved = resolve(href, PAGE_URL)
    if resolved is not None:
        assert_is_a_link(resolved)
    alone = build_page(PAGE_URL, None, None, [], [(href, None)])
    assert alone.links == ([resolved] if resolved is not None else [])
    assert_is_a_page(alone)
    assert_is_a_page(build_page(PAGE_URL, None, base_href, [], [(href, None), (base_href, "nofollow")]))
    for encoding in ("cp1252", "shift_jis", "iso2022_jp"):  # link queries encoded as on a legacy page
        assert_is_a_page(build_page(PAGE_URL, None, base_href, [], [(href, None)], encoding=encoding))
    for result in (resolve(href, base_href), resolve(base_href, href)):  # bases that are no URL at all too
        if result is not None:
            assert_is_a_link(result)


@FUZZ
@given(href=HREFS, base_href=HREFS, parser_name=st.sampled_from(sorted(PARSERS)))
def test_parsers_never_raise(href: str, base_href: str, parser_name: str) -> None:
    # A lone surrogate is written as the bytes Python's surrogatepass gives: invalid UTF-8 in the body.
    body = (
        f'<!DOCTYPE html><html><head><base href="{html.escape(base_href, quote=True)}"></head>'
        f'<body><a href="{html.escape(href, quote=True)}">x</a><a href={html.escape(href)}>y</a></body></html>'
    ).encode("utf-8", "surrogatepass")
    assert_is_a_page(get_parser(parser_name).parse(body, PAGE_URL, CONTENT_TYPE))


# 5. The memo of resolutions (`parsers.base`): an href resolved once for many bases must resolve exactly as it
# would against each of them, failures included.

MEMO_BASES = sorted(
    {case.base for case in CASES if case.base is not None}
    | {
        PAGE_URL,
        "https://user:pass@example.org:8443/a/b/c.html?q=1#top",
        "http://[::1]:8080/dir/",
        "http://example.org/C:/x/y",
        "file:///C:/x/y",
        "ftp://example.org/a/b",
        "foo://host/a/b?c",
        "foo:/opaque/path",
        "mailto:someone@example.org",
        "data:text/html,x",
        "not a url",  # bases the standard rejects: each href fails as it would alone
        "",
        "http://[::1/",
    }
)
MEMO_HREFS = sorted(
    {case.input for case in CASES}
    | {
        "/",
        "//host/x",
        "/\\host/x",
        "/\t/host/x",
        "/\n\\host/x",
        "/\r/host",
        "/a/../b?c#d",
        "#",
        "#x y",
        "#\ud800",
        "#caf\u00e9",
        "/\ud800",
        "http://\ud800/",
        "https://x/\ty",
        "http:x",
        "HTTP://X/",
        "/%zz",
        " /a",
        "\x00/a",
        "/a\x00",
        "?q",
        "p.html",
        "../p.html",
        "",
        "/" + "x" * 3_000,  # longer than the memo keeps
    }
)


def direct(base: str, href: str) -> str | BaseException | None:
    try:
        return absolute_link(base, href)
    except ValueError as error:
        return type(error)("failure")


def memoised(base: str, href: str) -> str | BaseException | None:
    try:
        root: str | None = ada_url.join_url(base, "/")
    except ValueError:
        root = None
    try:
        return resolve_shared(base, root, href)
    except ValueError as error:
        return type(error)("failure")


def same(a: str | BaseException | None, b: str | BaseException | None) -> bool:
    return repr(a) == repr(b)  # a failure equals a failure of the same kind


def test_a_memoised_resolution_is_the_resolution_against_every_base() -> None:
    _resolved.cache_clear()
    for href in MEMO_HREFS:  # every href against every base, so that each memo entry serves many bases
        for base in MEMO_BASES:
            assert same(memoised(base, href), direct(base, href)), (base, href)
    shared = _resolved.cache_info()
    assert shared.hits > len(MEMO_HREFS) * len(MEMO_BASES) // 4  # the memo is shared across bases


@FUZZ
@given(href=HREFS, base=st.sampled_from(MEMO_BASES), other=st.sampled_from(MEMO_BASES))
def test_a_memoised_resolution_never_carries_one_base_into_another(href: str, base: str, other: str) -> None:
    for page in (base, other, base):  # whichever base filled the memo entry, each gets its own resolution
        assert same(memoised(page, href), direct(page, href)), (page, href)
