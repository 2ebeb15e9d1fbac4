"""The history of a crawl: the site as a run saw it, and what changed between two runs.

Every fetch is kept in `fetches`, per run. A pass over the site (a new crawl, or a refresh) may take several
runs (a crawl interrupted, then resumed), so the site as run N saw it is the latest fetch of each URL among the
runs of N's pass up to N. `changes` compares two such views: the pages that are new, gone, changed in status,
and changed in content (by how many bytes).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import sqlite_utils

from storage.queries import StorageError


def view_sql(alias: str, run: str) -> str:
    """A CTE body: the rows of `fetches` that make the site as run `:{run}` saw it (its pass, up to it)."""
    return f"""SELECT * FROM (
  SELECT f.*, row_number() OVER (PARTITION BY f.url ORDER BY f.run_id DESC) AS latest
  FROM fetches f
  WHERE f.run_id IN (SELECT id FROM runs WHERE pass = (SELECT pass FROM runs WHERE id = :{run}) AND id <= :{run})
) {alias} WHERE latest = 1"""


@dataclass(frozen=True, slots=True)
class Change:
    """One URL that differs between the two runs; `None` where a run has no row (new, gone) or no response."""

    url: str
    status_a: int | None
    status_b: int | None
    size_a: int | None
    size_b: int | None

    @property
    def delta(self) -> int:
        """Bytes gained (negative: lost) from run A to run B."""
        return (self.size_b or 0) - (self.size_a or 0)


@dataclass(slots=True)
class Changes:
    """What changed from run A to run B."""

    run_a: int
    run_b: int
    new: list[Change] = field(default_factory=list)  # in B, not in A
    gone: list[Change] = field(default_factory=list)  # in A, not reached in B
    status: list[Change] = field(default_factory=list)  # in both, with another status (200 -> 404)
    resized: list[Change] = field(default_factory=list)  # same status, another body: largest change first
    unchanged: int = 0

    def rows(self) -> list[dict[str, Any]]:
        """Every change, one dict each, for the machine formats: change, url, statuses, sizes, delta."""
        groups = (("new", self.new), ("gone", self.gone), ("status", self.status), ("changed", self.resized))
        keys = ("url", "status_a", "status_b", "size_a", "size_b", "delta")
        return [{"change": name} | {key: getattr(c, key) for key in keys} for name, group in groups for c in group]


def last_two_passes(db: sqlite_utils.Database) -> tuple[int, int]:
    """The last run of each of the crawl's last two passes; `StorageError` if it has had only one."""
    if "fetches" not in db.table_names() or "pass" not in db.table("runs").columns_dict:
        raise StorageError("this database was written before history was kept: crawl again to start one")
    rows = db.execute("SELECT max(id) FROM runs GROUP BY pass ORDER BY pass DESC LIMIT 2").fetchall()
    if len(rows) < 2:
        raise StorageError("the database holds one pass over the site: `crawler crawl --refresh` makes a second")
    return rows[1][0], rows[0][0]


def changes(db: sqlite_utils.Database, run_a: int, run_b: int, host: str | None = None, min_change: int = 0) -> Changes:
    """What changed from the site as run A saw it to the site as run B saw it. `host` keeps one host's pages;
    `min_change` keeps content changes of at least that many bytes either way."""
    if "fetches" not in db.table_names():
        raise StorageError("this database was written before history was kept: crawl again to start one")
    for run in (run_a, run_b):
        if db.execute("SELECT 1 FROM runs WHERE id = ?", [run]).fetchone() is None:
            raise StorageError(f"no run {run} in this database (`crawler runs` lists them)")
    host_clause = "AND host = :host" if host is not None else ""
    sql = f"""WITH a AS ({view_sql("a", "run_a")}), b AS ({view_sql("b", "run_b")}),
both_ AS (
  SELECT a.url, a.status AS status_a, b.status AS status_b, a.size AS size_a, b.size AS size_b,
         a.content_hash AS hash_a, b.content_hash AS hash_b, a.host AS host, 'pair' AS side
  FROM a JOIN b ON b.url = a.url
  UNION ALL
  SELECT a.url, a.status, NULL, a.size, NULL, NULL, NULL, a.host, 'gone' FROM a WHERE a.url NOT IN (SELECT url FROM b)
  UNION ALL
  SELECT b.url, NULL, b.status, NULL, b.size, NULL, NULL, b.host, 'new' FROM b WHERE b.url NOT IN (SELECT url FROM a)
)
SELECT url, status_a, status_b, size_a, size_b, hash_a, hash_b, side FROM both_
WHERE 1 {host_clause}
ORDER BY url"""
    result = Changes(run_a, run_b)
    params = {"run_a": run_a, "run_b": run_b, "host": host}
    for url, status_a, status_b, size_a, size_b, hash_a, hash_b, side in db.execute(sql, params):
        change = Change(url, status_a, status_b, size_a, size_b)
        if side == "new":
            result.new.append(change)
        elif side == "gone":
            result.gone.append(change)
        elif status_a != status_b:
            result.status.append(change)
        elif size_a != size_b or hash_a != hash_b:
            if abs(change.delta) >= min_change:
                result.resized.append(change)
        else:
            result.unchanged += 1
    result.resized.sort(key=lambda c: (-abs(c.delta), c.url))
    return result
