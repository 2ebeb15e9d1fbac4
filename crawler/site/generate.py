"""A deterministic synthetic web site, for `crawler demo`, the test fixtures and the benchmark.

Bodies may hold the placeholders `__ORIGIN__` (`http://127.0.0.1:PORT`), `__NETLOC__` (`127.0.0.1:PORT`) and
`__PORT__`, filled in once the server knows its port.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field, replace

ORIGIN = "__ORIGIN__"
NETLOC = "__NETLOC__"
PORT = "__PORT__"
HTML = "text/html; charset=utf-8"

_VOCABULARY = """
crawler page site link index archive section article report guide data network request response
latency thread process event loop greenlet socket header body title anchor query status byte size
cache host robot frontier queue depth scope parser table column row sample measure result error
"""
_WORDS = _VOCABULARY.split()


@dataclass(frozen=True, slots=True)
class Resource:
    """One thing the server answers with: a body (may hold placeholders), a status, a Content-Type (none
    sent when None) and other headers (may hold placeholders too)."""

    body: str | bytes = b""
    status: int = 200
    content_type: str | None = HTML
    headers: dict[str, str] = field(default_factory=dict)

    def render(self, origin: str) -> bytes:
        """The body with the placeholders filled in for a server at `origin`."""
        return self.body if isinstance(self.body, bytes) else fill(self.body, origin).encode()

    def render_headers(self, origin: str) -> dict[str, str]:
        """The headers, placeholders filled in (a redirect's Location may name the origin)."""
        return {name: fill(value, origin) for name, value in self.headers.items()}


def fill(text: str, origin: str) -> str:
    """`text` with the placeholders filled in for a server at `origin` (http://host:port)."""
    netloc = origin.split("://", 1)[1]
    return text.replace(ORIGIN, origin).replace(NETLOC, netloc).replace(PORT, netloc.rsplit(":", 1)[1])


Site = dict[str, Resource]  # path (with query string, as requested) -> resource


def page_path(index: int) -> str:
    """Where generated page `index` lives: `/` for 0, then pages spread over five sections."""
    return "/" if index == 0 else f"/s{index % 5}/p{index}.html"


def _link_forms(rng: random.Random, source: int, target: int) -> str:
    """A link from page `source` to page `target`, in one of the spellings found on the web."""
    path = page_path(target)
    same_section = source != 0 and target != 0 and source % 5 == target % 5
    forms = [
        path,  # root-relative
        f"{ORIGIN}{path}",  # absolute
        f"//{NETLOC}{path}",  # protocol-relative
        f"{path}#part-{rng.randint(1, 4)}",  # with a fragment
        f"HTTP://{NETLOC}{path}",  # upper-case scheme
        f"/s{target % 5}/../s{target % 5}/{path.rsplit('/', 1)[1]}" if target else "/s0/../",  # dot segments
    ]
    if source != 0:
        forms.append(f"..{path}" if target else "../")  # parent-relative
    if same_section:
        forms += [path.rsplit("/", 1)[1], f"./{path.rsplit('/', 1)[1]}"]  # document-relative
    return rng.choice(forms)


def _paragraphs(rng: random.Random, size: int) -> str:
    chunks = []
    total = 0
    while total < size:
        text = " ".join(rng.choice(_WORDS) for _ in range(rng.randint(40, 120)))
        chunk = f"<p>{text.capitalize()}.</p>\n"
        chunks.append(chunk)
        total += len(chunk)
    return "".join(chunks)


PROFILES = ("realistic", "light")
# Page weights of the realistic profile (docs/performance.md says where they come from): log-normal with a
# median of 30 KB and a mean of about 52 KB, about 3% of pages over 200 KB, none over 1 MB.
REALISTIC_MEDIAN_KB = 30.0
REALISTIC_SIGMA = 1.05
REALISTIC_RANGE_KB = (4.0, 1024.0)
_NAV_LINKS = 40  # the sidebar every page repeats: links to the first pages of the site


def realistic_size(rng: random.Random) -> int:
    """A page weight in bytes, drawn from the realistic profile's distribution."""
    low, high = REALISTIC_RANGE_KB
    kb = min(high, max(low, REALISTIC_MEDIAN_KB * math.exp(rng.gauss(0.0, REALISTIC_SIGMA))))
    return int(1024 * kb)


def _code_block(rng: random.Random) -> str:
    """A highlighted code sample: a span per token, as documentation generators write them."""
    lines = []
    for _ in range(rng.randint(4, 14)):
        names = " ".join(f'<span class="n">{rng.choice(_WORDS)}</span>' for _ in range(rng.randint(1, 4)))
        lines.append(f'<span class="k">def</span> {names}<span class="p">(</span><span class="s">"{rng.choice(_WORDS)}"'
                     f'</span><span class="p">):</span>')  # fmt: skip
    return f'<div class="highlight"><pre><code class="language-python">{chr(10).join(lines)}</code></pre></div>\n'


def _table(rng: random.Random) -> str:
    """A reference table of a few columns."""
    head = "".join(f"<th>{rng.choice(_WORDS)}</th>" for _ in range(4))
    rows = "".join(
        "<tr>" + "".join(f"<td><code>{rng.choice(_WORDS)}</code></td>" for _ in range(4)) + "</tr>\n"
        for _ in range(rng.randint(3, 12))
    )
    return f'<table class="docutils"><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>\n'


def _documentation_page(rng: random.Random, title: str, anchors: list[str], pages: int, size: int) -> str:
    """A page shaped like generated documentation: a header, a sidebar of links every page repeats, the
    page's own links spread through its sections of prose, code and tables, and a footer, `size` bytes or
    a little more."""
    sidebar = "".join(
        f'<li class="toctree-l1"><a class="reference internal" href="{page_path(target)}">Section {target}</a></li>'
        for target in range(min(pages, _NAV_LINKS))
    )
    head = (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f'<title>{title}</title><link rel="stylesheet" href="/static/site.css"></head>\n'
        f'<body><header class="site-header"><a class="logo" href="/">Docs</a></header>\n'
        f'<div class="wrapper"><nav class="sidebar" aria-label="Contents"><ul>{sidebar}</ul></nav>\n'
        f'<main class="content"><article><h1>{title}</h1>\n'
    )
    foot = '</article></main></div><footer class="site-footer"><p>crawler bench</p></footer></body></html>\n'
    parts = [head]
    total = len(head) + len(foot)
    pending = list(anchors)
    section = 0
    while total < size or pending:
        section += 1
        take = rng.randint(1, 4)
        links = " ".join(pending[:take])
        del pending[:take]
        text = " ".join(rng.choice(_WORDS) for _ in range(rng.randint(30, 90)))
        block = (
            f'<section id="s{section}"><h2>{text.split()[0].capitalize()} {section}'
            f'<a class="headerlink" href="#s{section}">#</a></h2>\n<p>{text.capitalize()}. {links}</p>\n'
        )
        kind = rng.random()
        block += _code_block(rng) if kind < 0.3 else _table(rng) if kind < 0.45 else ""
        block += "</section>\n"
        parts.append(block)
        total += len(block)
    parts.append(foot)
    return "".join(parts)


def generate_site(
    pages: int = 200, seed: int = 1, min_kb: float = 5, max_kb: float = 80, fanout: int = 0, profile: str = "light"
) -> Site:
    """A site of `pages` HTML pages, every one reachable from `/`, with 10-30 links each in every relative
    form, plus a few errors, files and a redirect. `profile` "light": paragraphs of text, sizes log-uniform
    between `min_kb` and `max_kb`; "realistic": documentation-like markup (navigation, code, tables), sizes as
    real pages weigh (`realistic_size`). `fanout` makes a wide site, to grow a huge frontier: the home page
    links every page first, and every page adds `fanout` links to distinct URLs the site does not have."""
    if profile not in PROFILES:
        raise ValueError(f"unknown site profile {profile!r}; choose one of: {', '.join(PROFILES)}")
    rng = random.Random(seed)
    site: Site = {}
    for index in range(pages):
        title = f"Page {index}: {' '.join(rng.choice(_WORDS) for _ in range(3))}"
        targets = [index + 1] if index + 1 < pages else []
        targets += [rng.randrange(pages) for _ in range(rng.randint(10, 30) - len(targets))]
        if fanout and index == 0:
            targets = list(range(1, pages))
        anchors = [f'<a href="{_link_forms(rng, index, target)}">{page_path(target)}</a>' for target in targets]
        if index % 7 == 3:
            anchors.append(f'<a href="/missing/{index}.html">a dead link</a>')
        if index % 11 == 5:
            anchors += ['<a href="/files/data.csv">data</a>', '<a href="/files/logo.png">logo</a>']
        if index % 13 == 6:
            anchors += ['<a href="/old-home">old home</a>', '<a href="/error">flaky</a>']
        anchors += [f'<a href="/more/{index}/{k}.html">more</a>' for k in range(fanout)]
        anchors += [
            '<a href="mailto:webmaster@example.invalid">mail</a>',
            '<a href="javascript:void(0)">menu</a>',
            f'<a href="http://localhost:{PORT}/">mirror</a>' if index % 17 == 0 else "",
        ]
        if profile == "realistic":
            site[page_path(index)] = Resource(_documentation_page(rng, title, anchors, pages, realistic_size(rng)))
            continue
        size = int(1024 * math.exp(rng.uniform(math.log(min_kb), math.log(max_kb))))
        site[page_path(index)] = Resource(
            '<!DOCTYPE html>\n<html><head><meta charset="utf-8">'
            f"<title>{title}</title></head>\n<body><nav>{' '.join(anchors)}</nav>\n<main><h1>{title}</h1>\n"
            f"{_paragraphs(rng, size)}</main></body></html>\n"
        )
    site["/files/data.csv"] = Resource(
        "id,value\n" + "".join(f"{i},{i * i}\n" for i in range(500)), content_type="text/csv"
    )
    site["/files/logo.png"] = Resource(bytes(rng.randrange(256) for _ in range(4096)), content_type="image/png")
    site["/old-home"] = Resource("", status=301, headers={"Location": "/"})
    site["/error"] = Resource("<html><title>Server error</title></html>", status=500)
    return site


RETIRED_PATH = "/news/retired.html"  # the demo's page that the site's second edition deletes
ADDED_PATH = "/news/added.html"  # the page its second edition adds, listed only in the sitemap


def _sitemap(paths: list[str]) -> Resource:
    urls = "".join(f"  <url><loc>{ORIGIN}{path}</loc></url>\n" for path in paths)
    return Resource(
        '<?xml version="1.0" encoding="UTF-8"?>\n<urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">\n'
        f"{urls}</urlset>\n",
        content_type="application/xml",
    )


def demo_edition(pages: int, seed: int, edition: int) -> Site:
    """The site `crawler demo` serves, as it was (edition 1) and after it changed (2), so that a refresh and
    `crawler changes` have something to show. Edition 1 is the generated site plus a news page linked only
    from the home page, and a /sitemap.xml of every page. Edition 2 changes a tenth of the pages (half grow by
    2-8 KB, half lose half their text), makes one answer 404, deletes the news page and its link, and adds a
    page that only the sitemap lists."""
    site = generate_site(pages, seed)
    home = site["/"]
    site["/"] = replace(home, body=str(home.body).replace("<nav>", f'<nav><a href="{RETIRED_PATH}">news</a> ', 1))
    site[RETIRED_PATH] = Resource(page_html_simple("Retired news", _paragraphs(random.Random(seed), 3000)))
    if edition >= 2:
        rng = random.Random(seed + 1)
        del site[RETIRED_PATH]
        site["/"] = home
        candidates = [page_path(index) for index in range(1, pages)]
        changed = rng.sample(candidates, min(len(candidates), max(3, pages // 10)))
        gone_404, changed = changed[0], changed[1:]
        site[gone_404] = Resource(page_html_simple("Not found", "<p>This page was removed.</p>"), status=404)
        for number, path in enumerate(changed):
            body = str(site[path].body)
            if number % 2 == 0:
                body = body.replace("</main>", _paragraphs(rng, rng.randint(2048, 8192)) + "</main>", 1)
            else:
                start, end = body.index("</h1>") + len("</h1>"), body.index("</main>")
                body = body[:start] + body[start : start + (end - start) // 2] + body[end:]
            site[path] = replace(site[path], body=body)
        site[ADDED_PATH] = Resource(page_html_simple("Added news", _paragraphs(rng, 4000)))
    listed = [page_path(index) for index in range(pages)] + ([RETIRED_PATH] if edition < 2 else [ADDED_PATH])
    site["/sitemap.xml"] = _sitemap(listed)
    return site


def page_html_simple(title: str, content: str) -> str:
    """A plain page: a title, a link home, `content`."""
    return (
        f'<!DOCTYPE html>\n<html><head><meta charset="utf-8"><title>{title}</title></head>\n'
        f'<body><nav><a href="/">home</a></nav>\n<main><h1>{title}</h1>\n{content}</main></body></html>\n'
    )
