"""Every crawl kept: a refresh with conditional requests, `crawler changes`, sitemaps, and the migration of a
database written by release 0.1.0. Against a real loopback server whose site changes between two crawls."""

from __future__ import annotations

import gzip
import json
import shutil
import sqlite3
from pathlib import Path

import pytest

from crawler.engine.loop import TICK_SECONDS
from crawler.site.generate import ORIGIN, Resource, Site, fill
from crawler.words import human_bytes
from storage import PageStore
from tests.conftest import Serve, page_html, rows, run_cli, run_line

PAGES = 38  # /p1.html ... /p38.html, linked from the home page
FILLER = 10_000
LEGACY_DB = Path(__file__).parent / "data" / "crawl-0.1.0.db"


def _urlset(paths: list[str]) -> str:
    # No <lastmod>: one older than the last fetch would spare the request (tested on its own below), and whether
    # it comes in time for a page depends on the race between the sitemap and the links.
    urls = "".join(f"<url><loc>{ORIGIN}{path}</loc></url>" for path in paths)
    return f'<?xml version="1.0"?><urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">{urls}</urlset>'


def edition(number: int, origin: str) -> Site:
    """The site before (1) and after (2) it changed. Edition 2: /p1.html grows by 4 KB, /p2.html shrinks by 4
    KB, /removed.html is deleted and its one link with it (so the home page changes too), /p3.html answers 404,
    and /new.html appears, listed only in the sitemap. robots.txt names a sitemap index, which names a gzipped
    sitemap (gzipped here, so its URLs are written for the server's `origin`)."""
    home_links = [f"p{i}.html" for i in range(1, PAGES + 1)] + (["removed.html"] if number == 1 else [])
    site: Site = {
        "/": Resource(page_html("Home", home_links)),
        "/robots.txt": Resource(
            f"User-agent: *\nAllow: /\nSitemap: {ORIGIN}/sitemap-index.xml\n", content_type="text/plain"
        ),
        "/sitemap-index.xml": Resource(
            '<?xml version="1.0"?><sitemapindex xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">'
            f"<sitemap><loc>{ORIGIN}/sitemap-pages.xml.gz</loc></sitemap></sitemapindex>",
            content_type="application/xml",
        ),
    }
    for i in range(1, PAGES + 1):
        filler = FILLER + (4_000 if (number, i) == (2, 1) else -4_000 if (number, i) == (2, 2) else 0)
        site[f"/p{i}.html"] = Resource(page_html(f"Page {i}", ["/"], filler))
    if number == 2:
        site["/p3.html"] = Resource(page_html("Not found", []), status=404)
        site["/new.html"] = Resource(page_html("New", ["/"], FILLER))
    else:
        site["/removed.html"] = Resource(page_html("Removed soon", ["/"], FILLER))
    listed = ["/", "/p1.html"] + (["/new.html"] if number == 2 else [])
    site["/sitemap-pages.xml.gz"] = Resource(
        gzip.compress(fill(_urlset(listed), origin).encode()), content_type="application/gzip"
    )
    return site


def _changes(db: Path, *args: str) -> list[dict[str, object]]:
    done = run_cli("changes", "--db", str(db), "--json", *args)
    assert done.exit_code == 0, done.stderr
    return json.loads(done.stdout)


@pytest.mark.parametrize("validators", [True, False], ids=["validators", "hash-only"])
def test_refresh_asks_only_for_changes_and_changes_lists_them(
    backend: str, validators: bool, serve: Serve, tmp_path: Path
) -> None:
    server = serve({}, validators=validators)
    server.replace_site(edition(1, server.origin))
    db = tmp_path / "crawl.db"
    first = run_cli("crawl", server.url("/"), "--db", str(db), "--backend", backend, "--quiet")
    assert first.exit_code == 0, first.stderr
    first_bytes = server.body_bytes
    # Every page, /robots.txt and both sitemaps answered once: nothing fetched twice.
    paths = [hit.path for hit in server.hits]
    assert sorted(paths) == sorted(
        ["/", "/robots.txt", "/sitemap.xml", "/sitemap-index.xml", "/sitemap-pages.xml.gz", "/removed.html"]
        + [f"/p{i}.html" for i in range(1, PAGES + 1)]
    )
    assert {row["url"]: row["pages"] for row in rows(db, "SELECT * FROM sitemaps")} == {
        server.url("/sitemap-index.xml"): 0,
        server.url("/sitemap-pages.xml.gz"): 2,
        server.url("/sitemap.xml"): 0,
    }

    server.replace_site(edition(2, server.origin))
    server.hits.clear()
    server.body_bytes = 0
    refresh = run_cli("crawl", "--refresh", "--db", str(db), "--backend", backend, "--quiet")
    assert refresh.exit_code == 0, refresh.stderr

    unchanged = PAGES - 3  # p4 ... p38
    if validators:
        assert server.not_modified == unchanged  # each unchanged page answered 304, counted at the server
    else:
        assert server.not_modified == 0
    assert server.body_bytes <= 0.2 * first_bytes if validators else server.body_bytes > 0.9 * first_bytes
    assert f"refresh  {unchanged} unchanged pages, 3 changed, 1 new, 1 gone, 1 with another status;" in refresh.stdout
    saved = sum(len(page_html(f"Page {i}", ["/"], FILLER)) for i in range(4, PAGES + 1)) if validators else 0
    assert f"; {human_bytes(saved)} not downloaded" in refresh.stdout

    grown = len(page_html("Page 1", ["/"], FILLER + 4_000))
    shrunk = len(page_html("Page 2", ["/"], FILLER - 4_000))
    old_home = len(page_html("Home", [f"p{i}.html" for i in range(1, PAGES + 1)] + ["removed.html"]))
    new_home = len(page_html("Home", [f"p{i}.html" for i in range(1, PAGES + 1)]))
    size = len(page_html("Page 4", ["/"], FILLER))
    url = server.url
    assert _changes(db) == [
        {"change": "new", "url": url("/new.html"), "status_a": None, "status_b": 200, "size_a": None,
         "size_b": len(page_html("New", ["/"], FILLER)), "delta": len(page_html("New", ["/"], FILLER))},
        {"change": "gone", "url": url("/removed.html"), "status_a": 200, "status_b": None,
         "size_a": len(page_html("Removed soon", ["/"], FILLER)), "size_b": None,
         "delta": -len(page_html("Removed soon", ["/"], FILLER))},
        {"change": "status", "url": url("/p3.html"), "status_a": 200, "status_b": 404, "size_a": size,
         "size_b": len(page_html("Not found", [])), "delta": len(page_html("Not found", [])) - size},
        {"change": "changed", "url": url("/p1.html"), "status_a": 200, "status_b": 200, "size_a": size,
         "size_b": grown, "delta": grown - size},
        {"change": "changed", "url": url("/p2.html"), "status_a": 200, "status_b": 200, "size_a": size,
         "size_b": shrunk, "delta": shrunk - size},
        {"change": "changed", "url": url("/"), "status_a": 200, "status_b": 200, "size_a": old_home,
         "size_b": new_home, "delta": new_home - old_home},
    ]  # fmt: skip
    # `pages` is the latest state; the history keeps both passes, each page once per run.
    latest = {row["url"]: row for row in rows(db)}
    assert latest[url("/p4.html")]["size"] == size and latest[url("/p3.html")]["status"] == 404
    assert latest[url("/removed.html")]["run_id"] == 1  # not reached again: its last state stays
    history = rows(db, "SELECT run_id, change, unchanged_by, count(*) AS n FROM fetches GROUP BY 1, 2, 3 ORDER BY 1, 2")
    assert [(r["run_id"], r["change"], r["unchanged_by"], r["n"]) for r in history] == [
        (1, "new", None, PAGES + 2),
        (2, "changed", None, 4),  # /, p1, p2, and p3 (another status)
        (2, "new", None, 1),
        (2, "unchanged", "304" if validators else "hash", unchanged),
    ]
    run = rows(db, "SELECT * FROM runs WHERE id = 2")[0]
    assert (run["pass"], run["refresh"], run["unchanged"], run["changed"], run["new"]) == (2, 1, unchanged, 4, 1)
    assert json.loads(run["seeds"]) == [url("/")]  # the crawl's seeds, which the refresh started from
    assert run["bytes_saved"] == saved
    # The unchanged pages' links were followed again from the database: the site was crawled whole.
    assert len(rows(db, "SELECT * FROM fetches WHERE run_id = 2")) == 1 + PAGES + 1  # home, p1-p38, new


def test_changes_options_and_errors(serve: Serve, tmp_path: Path) -> None:
    server = serve({})
    server.replace_site(edition(1, server.origin))
    db = tmp_path / "crawl.db"
    assert run_cli("crawl", server.url("/"), "--db", str(db), "--quiet").exit_code == 0
    once = run_cli("changes", "--db", str(db))
    assert (once.exit_code, once.stderr.strip()) == (
        2, "Error: the database holds fewer than two complete passes over the site: `crawler crawl --refresh` makes one"
    )  # fmt: skip
    same = run_cli("changes", "1", "--db", str(db))
    assert (same.exit_code, same.stderr.strip()) == (
        2, "Error: run 1 belongs to the latest pass: name an earlier run, or two runs"
    )  # fmt: skip
    server.replace_site(edition(2, server.origin))
    refresh = run_cli("crawl", "--refresh", "--db", str(db), "--quiet")
    assert refresh.exit_code == 0, refresh.stderr
    # The hint the summary prints runs as printed.
    hint = next(line for line in refresh.stdout.splitlines() if line.startswith("What changed: "))
    shown = run_line(hint.removeprefix("What changed: "))
    assert shown.exit_code == 0, shown.stderr
    assert shown.stdout.startswith(
        "From run 1 to run 2: 1 new, 1 gone, 1 with another status, 3 changed, 35 pages unchanged."
    )
    assert "Another status: 1\nwas    now    url\n-----  -----  " in shown.stdout
    # --min-change keeps the content changes of at least that many bytes; --host filters; the runs can be named.
    big = _changes(db, "--min-change", "1000")
    assert [(c["change"], c["url"]) for c in big if c["change"] == "changed"] == [
        ("changed", server.url("/p1.html")), ("changed", server.url("/p2.html"))
    ]  # fmt: skip
    assert _changes(db, "--host", "elsewhere.example") == []
    assert _changes(db, "2", "1")[0] == {
        "change": "new", "url": server.url("/removed.html"), "status_a": None, "status_b": 200,
        "size_a": None, "size_b": len(page_html("Removed soon", ["/"], FILLER)),
        "delta": len(page_html("Removed soon", ["/"], FILLER)),
    }  # fmt: skip
    csv_out = run_cli("changes", "--db", str(db), "--csv")
    assert csv_out.stdout.splitlines()[0] == "change,url,status_a,status_b,size_a,size_b,delta"
    missing = run_cli("changes", "7", "--db", str(db))
    assert (missing.exit_code, missing.stderr.strip()) == (
        2,
        "Error: no run 7 in this database (`crawler runs` lists them)",
    )
    # A refresh needs a finished crawl.
    fresh = run_cli("crawl", "--refresh", "--db", str(tmp_path / "none.db"))
    assert (fresh.exit_code, fresh.stderr.strip()) == (
        2, f"Error: {tmp_path / 'none.db'} holds no finished crawl to refresh: crawl first"
    )  # fmt: skip


def test_no_sitemaps_reads_none(serve: Serve, tmp_path: Path) -> None:
    server = serve({})
    server.replace_site(edition(2, server.origin))
    db = tmp_path / "crawl.db"
    assert run_cli("crawl", server.url("/"), "--db", str(db), "--no-sitemaps", "--quiet").exit_code == 0
    assert not [hit.path for hit in server.hits if "sitemap" in hit.path]
    assert server.url("/new.html") not in {row["url"] for row in rows(db)}  # only a sitemap lists it


def test_a_database_of_release_0_1_0_is_migrated_whole(tmp_path: Path) -> None:
    db = tmp_path / "old.db"
    shutil.copy(LEGACY_DB, db)
    with sqlite3.connect(LEGACY_DB) as old:
        pages = old.execute("SELECT * FROM pages ORDER BY url").fetchall()
        links = old.execute("SELECT from_url, to_url FROM links ORDER BY 1, 2").fetchall()
        frontier = old.execute("SELECT * FROM frontier ORDER BY seq").fetchall()
        runs = old.execute("SELECT * FROM runs ORDER BY id").fetchall()
    assert (len(pages), len(runs)) == (37, 2)
    # Read commands read it as it is (read-only: no migration needed).
    assert run_cli("stats", "--db", str(db)).stdout.startswith("pages        37\n")
    PageStore(db).close()  # the writer migrates it
    with sqlite3.connect(db) as new:
        pages_columns = len(pages[0])  # the columns added since come after the old ones
        assert [row[:pages_columns] for row in new.execute("SELECT * FROM pages ORDER BY url")] == pages
        assert new.execute("SELECT from_url, to_url FROM links ORDER BY 1, 2").fetchall() == links
        assert [row[: len(frontier[0])] for row in new.execute("SELECT * FROM frontier ORDER BY seq")] == frontier
        assert [row[: len(runs[0])] for row in new.execute("SELECT * FROM runs ORDER BY id")] == runs
        # Its pages are its first history, each in the run that fetched it; the resume continued the first pass.
        assert new.execute("SELECT run_id, count(*) FROM fetches GROUP BY 1").fetchall() == [(1, 20), (2, 17)]
        assert new.execute("SELECT id, pass FROM runs").fetchall() == [(1, 1), (2, 1)]
    assert run_cli("stats", "--db", str(db), "--run", "1").stdout.startswith("pages        20\n")


def _index(origin: str, *locs: str) -> Resource:
    entries = "".join(f"<sitemap><loc>{origin}{loc}</loc></sitemap>" for loc in locs)
    return Resource(f"<sitemapindex>{entries}</sitemapindex>", content_type="application/xml")


def test_hostile_sitemaps_are_errors_recorded_and_the_crawl_goes_on(backend: str, serve: Serve, tmp_path: Path) -> None:
    server = serve({})
    origin = server.origin
    bomb = gzip.compress(b"\0" * (60 * 2**20), compresslevel=9)  # 60 MB once decompressed, 60 KB sent
    listed = ["/bomb.xml.gz", "/self.xml", "/deep/0.xml", "/not-xml.xml", "/cut.xml"]
    site: Site = {
        "/": Resource(page_html("Home", [])),
        "/robots.txt": Resource("".join(f"Sitemap: {origin}{path}\n" for path in listed), content_type="text/plain"),
        "/bomb.xml.gz": Resource(bomb, content_type="application/gzip"),
        "/self.xml": _index(origin, "/self.xml"),  # an index that lists itself
        "/not-xml.xml": Resource(page_html("Oops", [])),
        "/cut.xml": Resource(fill(_urlset(["/cut.html", "/never.html"]), origin)[:-40], content_type="application/xml"),
        "/cut.html": Resource(page_html("Listed before the cut", [])),
        "/sitemap.xml": Resource(fill(_urlset(["/listed.html"]), origin), content_type="application/xml"),
        "/listed.html": Resource(page_html("Listed", [])),
        "/deep.html": Resource(page_html("Too deep to be found", [])),
    }
    for level in range(10):  # ten indexes, each naming the next; the last lists a page
        site[f"/deep/{level}.xml"] = _index(origin, f"/deep/{level + 1}.xml")
    site["/deep/10.xml"] = Resource(fill(_urlset(["/deep.html"]), origin), content_type="application/xml")
    server.replace_site(site)
    db = tmp_path / "crawl.db"
    done = run_cli("crawl", server.url("/"), "--db", str(db), "--backend", backend, "--quiet")
    assert done.exit_code == 0, done.stderr
    # Pages: the seed, and what the sitemaps listed before their faults; nothing from the tenth level.
    assert sorted(row["url"] for row in rows(db)) == [server.url(p) for p in ("/", "/cut.html", "/listed.html")]
    found = {
        row["url"].removeprefix(origin): (row["status"], row["pages"], row["sitemaps"], row["error_kind"])
        for row in rows(db, "SELECT * FROM sitemaps")
    }
    assert found == {
        "/bomb.xml.gz": (200, 0, 0, "sitemap"),
        "/self.xml": (200, 0, 1, None),  # read once: it is not asked for again
        "/deep/0.xml": (200, 0, 1, None),
        "/deep/1.xml": (200, 0, 1, None),
        "/deep/2.xml": (200, 0, 1, "sitemap"),  # nested too deep: /deep/3.xml is not read
        "/not-xml.xml": (200, 0, 0, "sitemap"),
        "/cut.xml": (200, 1, 0, "sitemap"),
        "/sitemap.xml": (200, 1, 0, None),
    }
    messages = {row["url"].removeprefix(origin): row["error_message"] for row in rows(db, "SELECT * FROM sitemaps")}
    assert messages["/bomb.xml.gz"] == "larger than 50 MB once decompressed (the protocol's limit): not read"
    assert messages["/deep/2.xml"] == "sitemap indexes nested more than 2 deep: not followed"
    assert messages["/not-xml.xml"] == "not a sitemap (root element <html>)"


def test_a_crawl_stopped_by_its_page_budget_can_be_refreshed(serve: Serve, tmp_path: Path) -> None:
    server = serve({})
    server.replace_site(edition(1, server.origin))
    db = tmp_path / "crawl.db"
    budget = ("--max-pages", "10", "--no-sitemaps")
    first = run_cli("crawl", server.url("/"), "--db", str(db), *budget, "--quiet")
    assert first.exit_code == 0, first.stderr
    refresh = run_cli("crawl", "--refresh", "--db", str(db), "--quiet")
    assert refresh.exit_code == 0, refresh.stderr
    # The same budget, the same pages in the same order: all ten unchanged, answered 304.
    assert "refresh  10 unchanged pages, 0 changed, 0 new, 0 gone, 0 with another status;" in refresh.stdout
    assert server.not_modified == 10  # each page answered 304, the home page too (its links came from the database)
    runs = rows(db, "SELECT id, pass, status, refresh FROM runs")
    assert [(r["id"], r["pass"], r["status"], r["refresh"]) for r in runs] == [(1, 1, "limit", 0), (2, 2, "limit", 1)]


def test_sitemaps_keep_to_their_host_robots_txt_and_the_page_budget(serve: Serve, tmp_path: Path) -> None:
    other = serve({"/s.xml": Resource(_urlset(["/x.html"]), content_type="application/xml")}, host="127.0.0.2")
    server = serve({})
    origin = server.origin
    children = ["/private/s.xml", "/open/s.xml", "/moved.xml"]
    site: Site = {
        "/": Resource(page_html("Home", [])),
        "/robots.txt": Resource(f"User-agent: *\nDisallow: /private/\nSitemap: {origin}/index.xml\n",
                                content_type="text/plain"),
        "/index.xml": Resource(
            "<sitemapindex>" + "".join(f"<sitemap><loc>{origin}{c}</loc></sitemap>" for c in children)
            + f"<sitemap><loc>{other.url('/s.xml')}</loc></sitemap></sitemapindex>",
            content_type="application/xml",
        ),
        "/moved.xml": Resource("", status=301, headers={"Location": other.url("/s.xml")}),
        "/private/s.xml": Resource(fill(_urlset(["/private/p.html"]), origin), content_type="application/xml"),
        "/open/s.xml": Resource(fill(_urlset([f"/open/p{i}.html" for i in range(20)]), origin),
                                content_type="application/xml"),
        **{f"/open/p{i}.html": Resource(page_html(f"Open {i}", [])) for i in range(20)},
    }  # fmt: skip
    server.replace_site(site)
    db = tmp_path / "crawl.db"
    done = run_cli("crawl", server.url("/"), "--db", str(db), "--quiet")
    assert done.exit_code == 0, done.stderr
    asked = sorted(hit.path for hit in server.hits)
    assert asked == sorted(["/robots.txt", "/", "/index.xml", "/open/s.xml", "/moved.xml", "/sitemap.xml"]
                           + [f"/open/p{i}.html" for i in range(20)])  # fmt: skip
    assert other.hits == []  # another host: neither named nor redirected to, it is not read
    moved = rows(db, "SELECT error_kind, error_message FROM sitemaps WHERE url LIKE '%/moved.xml'")
    assert moved == [{"error_kind": "sitemap", "error_message": f"redirected to {other.url('/s.xml')}: not followed "
                      "(another host, or robots.txt)"}]  # fmt: skip
    assert not rows(db, "SELECT url FROM pages WHERE url LIKE '%.xml'")  # a sitemap is never a page

    # With the page budget spent (by the home page), no sitemap is asked for any more.
    server.hits.clear()
    small = tmp_path / "small.db"
    assert run_cli("crawl", server.url("/"), "--db", str(small), "--max-pages", "1", "--quiet").exit_code == 0
    assert sorted(hit.path for hit in server.hits) == ["/", "/robots.txt"]


def test_a_page_stored_without_a_hash_is_compared_by_size(tmp_path: Path) -> None:
    # Pages written before hashes were kept (release 0.1.0) have none: the same size is no change.
    db = tmp_path / "crawl.db"
    row = {"url": "http://h/", "final_url": "http://h/", "host": "h", "status": 200, "size": 10, "depth": 0}
    store = PageStore(db)
    store.commit(row, [], [], [])
    store.close()
    store = PageStore(db)
    store.start_run({"backend": "thread", "parser": "lxml", "concurrency": 1, "per_host": 1}, [])
    store.commit({**row, "content_hash": "ab" * 16}, [], [], [])
    store.commit({**row, "url": "http://h/b", "final_url": "http://h/b"}, [], [], [])
    store.flush()
    store.commit({**row, "url": "http://h/b", "final_url": "http://h/b", "size": 11, "content_hash": "cd" * 16},
                 [], [], [])  # fmt: skip
    store.close()
    assert [(r["url"], r["change"]) for r in rows(db, "SELECT url, change FROM fetches WHERE run_id = 1")] == [
        ("http://h/", "unchanged"), ("http://h/b", "changed")
    ]  # fmt: skip


def test_a_sitemaps_lastmod_spares_the_request_for_a_page_fetched_since(
    backend: str, serve: Serve, tmp_path: Path
) -> None:
    server = serve({}, validators=False)  # no 304s here: what is not asked for is the sitemap's doing
    origin = server.origin
    entries = [("/old.html", "2000-01-01"), ("/fresh.html", "2999-01-01T00:00:00+00:00"), ("/bad.html", "soon")]
    listed = "".join(f"<url><loc>{origin}{path}</loc><lastmod>{when}</lastmod></url>" for path, when in entries)
    site: Site = {
        "/": Resource(page_html("Home", [])),  # the sitemap alone lists the others
        "/sitemap.xml": Resource(f"<urlset>{listed}</urlset>", content_type="application/xml"),
        **{path: Resource(page_html(path, [], 2_000)) for path, _ in entries},
    }
    server.replace_site(site)
    db = tmp_path / "crawl.db"
    assert run_cli("crawl", server.url("/"), "--db", str(db), "--backend", backend, "--quiet").exit_code == 0
    server.hits.clear()
    refresh = run_cli("crawl", "--refresh", "--db", str(db), "--backend", backend, "--quiet")
    assert refresh.exit_code == 0, refresh.stderr
    # Not modified since 2000: not asked for. A lastmod in the future, or unreadable, is asked.
    assert sorted(hit.path for hit in server.hits) == ["/", "/bad.html", "/fresh.html", "/robots.txt", "/sitemap.xml"]
    fetched = {r["url"].removeprefix(origin): r for r in rows(db, "SELECT * FROM fetches WHERE run_id = 2")}
    old = fetched["/old.html"]
    assert (old["change"], old["unchanged_by"], old["attempts"], old["elapsed_ms"], old["status"]) == (
        "unchanged", "lastmod", 0, None, 200
    )  # fmt: skip
    assert old["size"] == len(page_html("/old.html", [], 2_000))
    assert [fetched[p]["unchanged_by"] for p in ("/", "/fresh.html", "/bad.html")] == ["hash", "hash", "hash"]
    assert rows(db, "SELECT bytes_saved FROM runs WHERE id = 2") == [{"bytes_saved": old["size"]}]


def test_pages_a_sitemap_spares_take_no_slot(backend: str, serve: Serve, tmp_path: Path) -> None:
    # Ten times as many pages spared by their lastmod as requests in flight: a fill goes on past them, rather than
    # leaving its slots empty until the loop's next tick (a quarter of a second each time).
    server = serve({}, validators=False)
    paths = [f"/p{n}.html" for n in range(80)]
    listed = "".join(f"<url><loc>{server.origin}{path}</loc><lastmod>2000-01-01</lastmod></url>" for path in paths)
    server.replace_site({
        "/": Resource(page_html("Home", [])),
        "/sitemap.xml": Resource(f"<urlset>{listed}</urlset>", content_type="application/xml"),
        **{path: Resource(page_html(path, [])) for path in paths},
    })  # fmt: skip
    db = tmp_path / "crawl.db"
    assert run_cli("crawl", server.url("/"), "--db", str(db), "--backend", backend, "--quiet").exit_code == 0
    server.hits.clear()
    refresh = run_cli("crawl", "--refresh", "--db", str(db), "--backend", backend, "--concurrency", "8", "--quiet")
    assert refresh.exit_code == 0, refresh.stderr
    assert sorted(hit.path for hit in server.hits) == ["/", "/robots.txt", "/sitemap.xml"]
    fetched = {row["url"]: row["unchanged_by"] for row in rows(db, "SELECT * FROM fetches WHERE run_id = 2")}
    assert fetched == {server.url("/"): "hash", **{server.url(path): "lastmod" for path in paths}}
    (run,) = rows(db, "SELECT elapsed_s FROM runs WHERE id = 2")
    assert run["elapsed_s"] < len(paths) / 8 * TICK_SECONDS / 2  # 10 fills of 8: 2.5 s if each waited a tick


def test_a_redirect_to_somewhere_else_is_a_change(backend: str, serve: Serve, tmp_path: Path) -> None:
    def site(target: str) -> Site:
        return {
            "/": Resource(page_html("Home", ["/moved"])),
            "/moved": Resource("", status=301, headers={"Location": target}),
            "/a.html": Resource(page_html("A", [])),
            "/b.html": Resource(page_html("B", [])),
        }

    server = serve(site("/a.html"))
    db = tmp_path / "crawl.db"
    assert run_cli("crawl", server.url("/"), "--db", str(db), "--backend", backend, "--quiet").exit_code == 0
    server.replace_site(site("/b.html"))
    assert run_cli("crawl", "--refresh", "--db", str(db), "--backend", backend, "--quiet").exit_code == 0
    # The same empty body, another Location: changed (and its new target is new, the old one gone).
    assert [(c["change"], c["url"].removeprefix(server.origin)) for c in _changes(db)] == [
        ("new", "/b.html"), ("gone", "/a.html"), ("changed", "/moved")
    ]  # fmt: skip
