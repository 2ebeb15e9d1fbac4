"""The history of a crawl: the site as a run saw it, and what changed between two runs.

Every fetch is kept in `fetches`, per run. A pass over the site (a new crawl, or a refresh) may take several
runs (a crawl interrupted, then resumed), so the site as run N saw it is the latest fetch of each URL among the
runs of N's pass up to N. `changes` compares two such views: the pages that are new, gone, changed in status,
and changed in content (by how many bytes). The writer marks each fetch by the same rule (`differs`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import sqlite_utils

from storage.queries import StorageError


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


# The passes a default comparison takes: those that ran to their end or to their page budget. An interrupted or
# killed pass has not reached every page yet, and would show the rest as gone.
_COMPLETE = ("finished", "limit")


def _require_history(db: sqlite_utils.Database) -> None:
    if "fetches" not in db.table_names() or "pass" not in db.table("runs").columns_dict:
        raise StorageError(
            "this database was written before history was kept: its next crawl (`crawler crawl --refresh`) starts one"
        )


def last_two_passes(db: sqlite_utils.Database) -> tuple[int, int]:
    """The last run of each of the last two complete passes over the site (ended `finished` or at `--max-pages`);
    `StorageError` if there are fewer."""
    _require_history(db)
    rows = db.execute(
        "SELECT id FROM runs r WHERE id = (SELECT max(id) FROM runs WHERE pass = r.pass) "
        f"AND status IN ({', '.join('?' * len(_COMPLETE))}) ORDER BY pass DESC LIMIT 2",
        list(_COMPLETE),
    ).fetchall()
    if len(rows) < 2:
        raise StorageError(
            "the database holds fewer than two complete passes over the site: `crawler crawl --refresh` makes one"
        )
    return rows[1][0], rows[0][0]


def latest_run_of_another_pass(db: sqlite_utils.Database, run: int) -> int:
    """The last run of the latest pass, for comparing with `run`; `StorageError` if `run` is in that pass."""
    _require_history(db)
    latest = db.execute("SELECT max(id) FROM runs").fetchone()[0]
    if latest is None:
        raise StorageError("no runs in this database yet: crawl first")
    same = db.execute("SELECT (SELECT pass FROM runs WHERE id = ?) = (SELECT pass FROM runs WHERE id = ?)",
                      [run, latest]).fetchone()[0]  # fmt: skip
    if same:
        raise StorageError(f"run {run} belongs to the latest pass: name an earlier run, or two runs")
    return int(latest)


def differs(size_a: int | None, size_b: int | None, hash_a: str | None, hash_b: str | None) -> bool:
    """Whether a page changed (same status): by its body's hash, or by its size where a hash is missing (a page
    written before hashes were kept)."""
    if hash_a is None or hash_b is None:
        return size_a != size_b
    return hash_a != hash_b


# For each URL, its latest fetch on each side (the runs of a pass up to the run named), then both sides side by
# side: one pass over the rows of the two passes, however many pages they hold.
_CHANGES_SQL = """WITH sides AS (
  SELECT 'a' AS side, id FROM runs WHERE pass = (SELECT pass FROM runs WHERE id = :run_a) AND id <= :run_a
  UNION ALL
  SELECT 'b', id FROM runs WHERE pass = (SELECT pass FROM runs WHERE id = :run_b) AND id <= :run_b
), latest AS (
  SELECT s.side, f.url, f.host, f.status, f.size, f.content_hash,
         row_number() OVER (PARTITION BY s.side, f.url ORDER BY f.run_id DESC) AS n
  FROM sides s JOIN fetches f ON f.run_id = s.id
)
SELECT url, max(side = 'a'), max(side = 'b'),
       max(CASE side WHEN 'a' THEN status END), max(CASE side WHEN 'b' THEN status END),
       max(CASE side WHEN 'a' THEN size END), max(CASE side WHEN 'b' THEN size END),
       max(CASE side WHEN 'a' THEN content_hash END), max(CASE side WHEN 'b' THEN content_hash END)
FROM latest WHERE n = 1 {host} GROUP BY url ORDER BY url"""


def changes(db: sqlite_utils.Database, run_a: int, run_b: int, host: str | None = None, min_change: int = 0) -> Changes:
    """What changed from the site as run A saw it to the site as run B saw it. `host` keeps one host's pages;
    `min_change` keeps content changes of at least that many bytes either way."""
    _require_history(db)
    for run in (run_a, run_b):
        if db.execute("SELECT 1 FROM runs WHERE id = ?", [run]).fetchone() is None:
            raise StorageError(f"no run {run} in this database (`crawler runs` lists them)")
    sql = _CHANGES_SQL.format(host="AND host = :host" if host is not None else "")
    result = Changes(run_a, run_b)
    params = {"run_a": run_a, "run_b": run_b, "host": host}
    for url, in_a, in_b, status_a, status_b, size_a, size_b, hash_a, hash_b in db.execute(sql, params):
        change = Change(url, status_a, status_b, size_a, size_b)
        if not in_a:
            result.new.append(change)
        elif not in_b:
            result.gone.append(change)
        elif status_a != status_b:
            result.status.append(change)
        elif differs(size_a, size_b, hash_a, hash_b):
            if abs(change.delta) >= min_change:
                result.resized.append(change)
        else:
            result.unchanged += 1
    result.resized.sort(key=lambda c: (-abs(c.delta), c.url))
    return result
