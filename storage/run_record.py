"""The run record: a run opened (with its settings, seeds and pass), closed with the figures of its fetches,
and what a later run asks of the earlier ones (how the last ended, whether it was a refresh, where the last
complete pass ended)."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import sqlite_utils

from storage.schema import BY_304, BY_LASTMOD, CHANGED, FINISHED, KILLED, LIMIT, NEW, RUNNING, UNCHANGED

SPARED = f"'{BY_304}', '{BY_LASTMOD}'"  # the unchanged_by values of pages whose body was not downloaded


def now() -> str:
    """The time now, as every timestamp in the database is written (UTC, ISO 8601, milliseconds)."""
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def open_run(db: sqlite_utils.Database, settings: dict[str, Any], seeds: Sequence[str],
             overrides: dict[str, Any] | None = None, new_pass: bool = True, refresh: bool = False) -> int:  # fmt: skip
    """Record a new run (status `running`) with its settings, the seeds it was given and the settings it
    changed from the crawl's (`overrides`); returns its id. It starts a new pass over the site (`new_pass`: a
    new crawl or a refresh) or continues the last one (a resume). Runs still marked running were killed (only
    the owner writes runs): they are closed first, with the figures their pages give."""
    for (stale,) in db.execute(f"SELECT id FROM runs WHERE status = '{RUNNING}'").fetchall():
        ended = db.execute("SELECT max(fetched_at) FROM fetches WHERE run_id = ?", [stale]).fetchone()[0]
        started = db.table("runs").get(stale)["started_at"]
        elapsed = (datetime.fromisoformat(ended) - datetime.fromisoformat(started)).total_seconds() if ended else 0
        close_run(db, stale, {"status": KILLED, "ended_at": ended, "elapsed_s": elapsed})
    row = {
        "started_at": now(),
        "status": RUNNING,
        "backend": settings["backend"],
        "parser": settings["parser"],
        "concurrency": settings["concurrency"],
        "per_host": settings["per_host"],
        "seeds": json.dumps(list(seeds)),
        "settings": json.dumps(settings),
        "overrides": json.dumps(overrides or {}),
        "pass": (db.execute("SELECT max(pass) FROM runs").fetchone()[0] or 0) + int(new_pass) or 1,
        "refresh": int(refresh),
    }
    with db.atomic():
        run_id: int = db.table("runs").insert(row).last_pk  # type: ignore[assignment]
    return run_id


def last_run_status(db: sqlite_utils.Database) -> str | None:
    """How the latest run ended (`running` while it runs, or if it was killed), if there was one."""
    row = db.execute("SELECT status FROM runs ORDER BY id DESC LIMIT 1").fetchone()
    return str(row[0]) if row else None


def last_run_refreshed(db: sqlite_utils.Database) -> bool:
    """Whether the latest run was a refresh (so that its resume is one too)."""
    row = db.execute("SELECT refresh FROM runs ORDER BY id DESC LIMIT 1").fetchone()
    return bool(row and row[0])


def previous_pass_end(db: sqlite_utils.Database, run_id: int) -> int | None:
    """The last run of the latest complete pass over the site (it ended `finished` or at `--max-pages`)
    before `run_id`'s, if there was one."""
    found = db.execute(
        "SELECT max(id) FROM runs r WHERE pass < (SELECT pass FROM runs WHERE id = ?) "
        f"AND id = (SELECT max(id) FROM runs WHERE pass = r.pass) AND status IN ('{FINISHED}', '{LIMIT}')",
        [run_id],
    ).fetchone()[0]
    return int(found) if found is not None else None


def close_run(db: sqlite_utils.Database, run_id: int, fields: dict[str, Any]) -> None:
    """Close run `run_id` with `fields` (its status, end, measures) and the figures of its fetches."""
    pages, errors, size, fetch_ms, fetches, unchanged, changed, new, saved = db.execute(
        f"SELECT count(*), count(error_kind), coalesce(sum(CASE WHEN unchanged_by IN ({SPARED}) "
        "THEN 0 ELSE size END), 0), "
        "coalesce(sum(elapsed_ms), 0), count(elapsed_ms), "
        f"count(CASE change WHEN '{UNCHANGED}' THEN 1 END), count(CASE change WHEN '{CHANGED}' THEN 1 END), "
        f"count(CASE change WHEN '{NEW}' THEN 1 END), "
        f"coalesce(sum(CASE WHEN unchanged_by IN ({SPARED}) THEN size END), 0) "
        "FROM fetches WHERE run_id = ?",
        [run_id],
    ).fetchone()
    elapsed = fields.get("elapsed_s") or 0.0

    def percentile(share: float) -> float | None:
        if not fetches:
            return None
        rank = max(1, math.ceil(fetches * share))  # nearest rank
        return float(db.execute(
            "SELECT elapsed_ms FROM fetches WHERE run_id = ? AND elapsed_ms IS NOT NULL "
            "ORDER BY elapsed_ms LIMIT 1 OFFSET ?", [run_id, rank - 1],
        ).fetchone()[0])  # fmt: skip

    figures = {
        "pages": pages,
        "errors": errors,
        "bytes": size,
        "pages_per_second": pages / elapsed if elapsed > 0 else None,
        "latency_p50_ms": percentile(0.5),
        "latency_p95_ms": percentile(0.95),
        "fetch_seconds": fetch_ms / 1000,
        "unchanged": unchanged,
        "changed": changed,
        "new": new,
        "bytes_saved": saved,
    }
    with db.atomic():
        db.table("runs").update(run_id, {**fields, **figures})
