"""One description of the page database (storage/columns.py): it names exactly the columns a crawl creates,
with their types, and the README, `crawler schema` and Datasette's metadata all come from it."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from crawler.site.server import SiteServer
from crawler.views.serve import metadata
from storage.columns import TABLES, markdown, plain
from tests.conftest import TEST_TIMEOUT, run_cli

ROOT = Path(__file__).resolve().parents[1]


def test_the_description_names_every_column_a_crawl_creates(site: SiteServer, tmp_path: Path) -> None:
    db = tmp_path / "crawl.db"
    assert run_cli("crawl", site.url("/"), "--db", str(db), "--depth", "1", "--timeout", TEST_TIMEOUT).exit_code == 0
    conn = sqlite3.connect(db)
    try:
        created = {name for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        assert created == {table.name for table in TABLES}
        for table in TABLES:
            columns = [(name, kind) for _, name, kind, *_ in conn.execute(f"PRAGMA table_info([{table.name}])")]
            described = [(column.name, column.type.partition(",")[0]) for column in table.columns]
            assert described == columns, table.name
    finally:
        conn.close()


def test_the_readme_schema_is_what_crawler_schema_prints() -> None:
    printed = run_cli("schema", "--markdown")
    assert (printed.exit_code, printed.stdout) == (0, markdown())
    readme = (ROOT / "README.md").read_text()
    assert "\n" + markdown() + "\n<!-- end of `crawler schema --markdown` -->" in readme


def test_crawler_schema_describes_a_table_in_plain_text() -> None:
    run = run_cli("schema", "links")
    assert run.exit_code == 0, run.stderr
    assert run.stdout.splitlines() == [
        "links: one row per distinct link found on a successful HTML page, whether or not it was followed.",
        "column    type     meaning",
        "--------  -------  " + "-" * 113,
        "from_url  TEXT     the page the link is on (pages.url)",
        "to_url    TEXT     where it points, canonical, so it joins pages.url when the target was crawled",
        "follow    INTEGER  1 if the page lets it be followed, 0 if rel=nofollow or meta robots say not to; NULL if "
        "stored before this column",
    ]
    unknown = run_cli("schema", "page")
    assert (unknown.exit_code, unknown.stderr) == (
        2, "Error: no table 'page' in a page database: choose from pages, fetches, links, sitemaps, frontier, runs, "
        "crawl\n"
    )  # fmt: skip


def test_datasette_shows_the_same_descriptions(tmp_path: Path) -> None:
    tables = metadata(tmp_path / "crawl.db")["databases"]["crawl"]["tables"]
    assert list(tables) == [table.name for table in TABLES]
    for table in TABLES:
        assert tables[table.name]["columns"] == {column.name: plain(column.meaning) for column in table.columns}
    assert tables["crawl"]["description"] == "The crawl the database holds (one row; see docs/lifecycle.md)."
