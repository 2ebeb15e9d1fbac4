"""What `crawler bench` reads of a crawl's database to check it against the site it crawled: one query that
our backends' databases and the peers' (whose `pages` table has only url, status, size, title, link_count)
both answer."""

from __future__ import annotations

import sqlite_utils


def ok_page_sizes(db: sqlite_utils.Database) -> dict[str, int]:
    """URL -> body size of every page that answered 200."""
    return {url: size for url, size in db.execute("SELECT url, size FROM pages WHERE status = 200")}
