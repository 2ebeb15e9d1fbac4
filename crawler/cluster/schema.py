"""The shared crawl's tables in PostgreSQL, and the crawl record: what defines the crawl for every worker.

One PostgreSQL database holds one crawl (its seeds and settings in `crawl`), its frontier (`urls`, one row a
URL, with its state and, while leased, its worker), its origins' politeness and robots.txt (`hosts`), its
workers (`workers`, one row a run: heartbeat, figures) and what they fetched (`results`, in the order they were
committed, which `crawler pull` follows). Locks are always taken in one order: the crawl row, then hosts
rows, then urls rows; within a table, in key order.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg.rows import dict_row

SCHEMA_VERSION = 1
QUEUED, LEASED, DONE, CAPPED = "queued", "leased", "done", "capped"
PAGE, SITEMAP, ROBOTS = "page", "sitemap", "robots"  # urls.kind; robots.txt is leased on its origin's row
# robots.txt of an origin: wanted (nobody has it yet), fetching (a worker has it leased), ready (stored)
WANTED, FETCHING, READY = "wanted", "fetching", "ready"
RUNNING, LOST = "running", "lost"  # a worker's status while it runs; one whose heartbeat stopped
NOT_A_WORKER = "CR001"  # the SQLSTATE the functions raise for a worker declared lost, or of a replaced crawl

DDL = f"""
CREATE TABLE IF NOT EXISTS crawl (
    id int PRIMARY KEY CHECK (id = 1),
    schema_version int NOT NULL,
    seeds jsonb NOT NULL,
    settings jsonb NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    started bigint NOT NULL DEFAULT 0          -- pages started, for --max-pages
);
CREATE TABLE IF NOT EXISTS hosts (
    origin text PRIMARY KEY,
    robots_state text NOT NULL DEFAULT '{WANTED}',
    robots_owner bigint,
    robots_status int,
    robots_body bytea,
    robots_error text,
    crawl_delay float8 NOT NULL DEFAULT 0,     -- the delay between starts: --delay or Crawl-delay, the longer
    in_flight int NOT NULL DEFAULT 0,          -- requests leased and not finished
    started bigint NOT NULL DEFAULT 0,         -- pages started, for --max-pages-per-host
    next_start timestamptz NOT NULL DEFAULT '-infinity',
    paused_until timestamptz NOT NULL DEFAULT '-infinity'  -- a Retry-After
);
CREATE TABLE IF NOT EXISTS urls (
    id bigserial PRIMARY KEY,
    url text NOT NULL UNIQUE,
    origin text NOT NULL,
    depth int NOT NULL,
    hops int NOT NULL DEFAULT 0,
    via text,
    kind text NOT NULL DEFAULT '{PAGE}',
    nesting int NOT NULL DEFAULT 0,           -- a sitemap: how many sitemap indexes led to it
    lastmod text,
    state text NOT NULL DEFAULT '{QUEUED}',
    attempt int NOT NULL DEFAULT 1,
    not_before timestamptz NOT NULL DEFAULT '-infinity',
    owner bigint,
    leased_at timestamptz,
    fetches int NOT NULL DEFAULT 0            -- times it was leased: more than its attempts means a lost lease
);
CREATE INDEX IF NOT EXISTS urls_queued ON urls (origin, id) WHERE state = '{QUEUED}';
CREATE INDEX IF NOT EXISTS urls_leased ON urls (owner) WHERE state = '{LEASED}';
CREATE TABLE IF NOT EXISTS workers (
    id bigserial PRIMARY KEY,
    machine text NOT NULL,
    pid int NOT NULL,
    backend text NOT NULL,
    parser text NOT NULL,
    concurrency int NOT NULL,
    lease_seconds float8 NOT NULL,
    status text NOT NULL DEFAULT '{RUNNING}',
    started_at timestamptz NOT NULL DEFAULT now(),
    alive_until timestamptz NOT NULL,
    crawl_created timestamptz NOT NULL,       -- which crawl of the database it worked on
    ended_at timestamptz,
    figures jsonb NOT NULL DEFAULT '{{}}'      -- elapsed_s, cpu_seconds, peak_rss_mb, parse_seconds...
);
CREATE TABLE IF NOT EXISTS results (
    seq bigserial PRIMARY KEY,
    url text NOT NULL,
    worker bigint NOT NULL,
    kind text NOT NULL,
    row jsonb NOT NULL,                       -- the pages (or sitemaps) row, as the SQLite database stores it
    links jsonb,                              -- [[target, followed], ...]
    redirected_from jsonb NOT NULL DEFAULT '[]',
    done_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS results_worker ON results (worker, done_at);
-- `crawler status` counts errors by kind from the failed rows alone; the statistics tell the planner how few
-- they are (it would assume nearly every row, and read the whole table).
CREATE INDEX IF NOT EXISTS results_errors ON results (worker, (row->>'error_kind'))
    WHERE row->>'error_kind' IS NOT NULL;
CREATE STATISTICS IF NOT EXISTS results_error_kind ON ((row->>'error_kind')) FROM results;

-- Refuses a worker declared lost (its heartbeat stopped past its lease) or of a crawl since replaced: it holds
-- nothing now, and may neither lease nor record (SQLSTATE NOT_A_WORKER).
CREATE OR REPLACE FUNCTION crawler_check_worker(me bigint) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM workers w, crawl c
                   WHERE w.id = me AND w.status = '{RUNNING}' AND c.id = 1 AND w.crawl_created = c.created_at) THEN
        RAISE EXCEPTION 'worker % may no longer lease or record', me USING ERRCODE = '{NOT_A_WORKER}';
    END IF;
END $$;

-- A lease, in one transaction: the crawl row first (leases are taken one worker at a time, and it holds the
-- page budget), then robots.txt of origins that want it, then, for each origin that may start now (robots.txt
-- answered, fewer than per_host in flight, its delay and any Retry-After passed), its oldest queued URL; rows
-- another transaction holds are skipped, never waited for. Each origin's next start moves by its delay.
CREATE OR REPLACE FUNCTION crawler_lease(me bigint, n int, per_host int, cap int, robots boolean)
RETURNS TABLE (id bigint, url text, origin text, depth int, hops int, via text, kind text, nesting int,
               lastmod text, attempt int)
LANGUAGE plpgsql AS $$
DECLARE
    budget bigint;  -- pages never leased before that may still start (--max-pages; a page leased again after a
                    -- lost worker or a stop, or retried, was counted the first time)
    taken int := 0;
BEGIN
    SELECT (c.settings->>'max_pages')::bigint - c.started INTO budget FROM crawl c WHERE c.id = 1 FOR UPDATE;
    PERFORM crawler_check_worker(me);
    IF robots THEN
        RETURN QUERY
        WITH pick AS (  -- only for an origin with a URL a lease could take: none once the budget is spent
            SELECT h.origin FROM hosts h WHERE h.robots_state = '{WANTED}' AND h.paused_until <= now()
              AND EXISTS (SELECT 1 FROM urls q WHERE q.origin = h.origin AND q.state = '{QUEUED}'
                          AND (q.kind <> '{PAGE}' OR q.fetches > 0 OR (budget > 0 AND (cap = 0 OR h.started < cap))))
            ORDER BY h.origin LIMIT n FOR UPDATE SKIP LOCKED
        )
        UPDATE hosts h SET robots_state = '{FETCHING}', robots_owner = me, in_flight = h.in_flight + 1,
            next_start = now() + make_interval(secs => h.crawl_delay)
        FROM pick WHERE h.origin = pick.origin
        RETURNING NULL::bigint, NULL::text, h.origin, 0, 0, NULL::text, '{ROBOTS}'::text, 0, NULL::text, 1;
        GET DIAGNOSTICS taken = ROW_COUNT;
    END IF;
    IF n - taken <= 0 THEN
        RETURN;
    END IF;
    RETURN QUERY
    WITH ready AS (
        SELECT h.origin, h.started FROM hosts h
        WHERE h.robots_state = '{READY}' AND h.in_flight < per_host AND h.next_start <= now()
          AND h.paused_until <= now()
          AND EXISTS (SELECT 1 FROM urls q WHERE q.origin = h.origin AND q.state = '{QUEUED}'
                      AND q.not_before <= now()
                      AND (q.kind <> '{PAGE}' OR q.fetches > 0 OR (budget > 0 AND (cap = 0 OR h.started < cap))))
        ORDER BY h.next_start, h.origin
        LIMIT CASE WHEN budget > 0 THEN least(n - taken, budget) ELSE n - taken END  -- never past the budget
        FOR UPDATE OF h SKIP LOCKED
    ), pick AS (
        SELECT u.id FROM ready CROSS JOIN LATERAL (
            SELECT q.id FROM urls q
            WHERE q.origin = ready.origin AND q.state = '{QUEUED}' AND q.not_before <= now()
              AND (q.kind <> '{PAGE}' OR q.fetches > 0 OR (budget > 0 AND (cap = 0 OR ready.started < cap)))
            ORDER BY q.id LIMIT 1  -- crawl order, as urls_queued holds it
            FOR UPDATE OF q SKIP LOCKED
        ) u
    ), leased AS (
        UPDATE urls SET state = '{LEASED}', owner = me, leased_at = now(), fetches = urls.fetches + 1
        FROM pick WHERE urls.id = pick.id
        RETURNING urls.id, urls.url, urls.origin, urls.depth, urls.hops, urls.via, urls.kind, urls.nesting,
                  urls.lastmod, urls.attempt, urls.fetches
    ), counted AS (
        UPDATE hosts h SET in_flight = h.in_flight + 1, next_start = now() + make_interval(secs => h.crawl_delay),
            started = h.started + (SELECT count(*) FROM leased l
                                   WHERE l.origin = h.origin AND l.kind = '{PAGE}' AND l.fetches = 1)
        WHERE h.origin IN (SELECT l.origin FROM leased l)
    ), budget AS (
        UPDATE crawl c SET started = c.started + (SELECT count(*) FROM leased l
                                                  WHERE l.kind = '{PAGE}' AND l.fetches = 1)
        WHERE c.id = 1
    )
    SELECT l.id, l.url, l.origin, l.depth, l.hops, l.via, l.kind, l.nesting, l.lastmod, l.attempt FROM leased l;
END $$;

-- Finished pages and sitemaps, in one transaction; each accepted only while `me` holds its lease (p_lease).
-- For those: the done mark, the origins and URLs they found (f_page: the index of the page that found it, from
-- 1), their results, and last their origins' in-flight counts. Locks in one order: each table's rows in key
-- order (the caller sorts the found URLs), the hosts rows last. Returns the leases it accepted.
CREATE OR REPLACE FUNCTION crawler_complete(
    me bigint, p_lease bigint[], p_url text[], p_kind text[], p_row jsonb[], p_links jsonb[], p_chain jsonb[],
    p_refused boolean[], new_host_state text, host_delay float8, f_page int[], f_url text[], f_origin text[],
    f_depth int[], f_hops int[], f_via text[], f_kind text[], f_nesting int[], f_lastmod text[]
) RETURNS SETOF bigint
LANGUAGE plpgsql AS $$
DECLARE
    accepted bigint[];
    origins text[];
    refunds boolean[];  -- pages robots.txt refused on their first lease: they give back the budget they took
    refunded bigint := 0;
    freed record;
BEGIN
    PERFORM crawler_check_worker(me);
    WITH done AS (
        UPDATE urls SET state = '{DONE}' WHERE urls.id = ANY(p_lease) AND state = '{LEASED}' AND owner = me
        RETURNING urls.id, urls.origin,
                  urls.kind = '{PAGE}' AND urls.fetches = 1 AND p_refused[array_position(p_lease, urls.id)] AS refund
    )
    SELECT coalesce(array_agg(done.id), '{{}}'), coalesce(array_agg(done.origin), '{{}}'),
           coalesce(array_agg(done.refund), '{{}}')
    INTO accepted, origins, refunds FROM done;
    IF cardinality(accepted) = 0 THEN
        RETURN;
    END IF;
    INSERT INTO hosts (origin, robots_state, crawl_delay)
    SELECT DISTINCT f.origin, new_host_state, host_delay FROM unnest(f_page, f_origin) AS f(page, origin)
    WHERE p_lease[f.page] = ANY(accepted) AND NOT EXISTS (SELECT 1 FROM hosts h WHERE h.origin = f.origin)
    ORDER BY f.origin
    ON CONFLICT (origin) DO NOTHING;
    INSERT INTO urls (url, origin, depth, hops, via, kind, nesting, lastmod)
    SELECT DISTINCT ON (f.url) f.url, f.origin, f.depth, f.hops, f.via, f.kind, f.nesting, f.lastmod
    FROM unnest(f_page, f_url, f_origin, f_depth, f_hops, f_via, f_kind, f_nesting, f_lastmod)
         AS f(page, url, origin, depth, hops, via, kind, nesting, lastmod)
    WHERE p_lease[f.page] = ANY(accepted)
      AND NOT EXISTS (SELECT 1 FROM urls u WHERE u.url = f.url)  -- most links are known: a lookup, not an insert
    ORDER BY f.url, f.depth
    ON CONFLICT (url) DO NOTHING;
    INSERT INTO results (url, worker, kind, row, links, redirected_from)
    SELECT p.url, me, p.kind, p.row, p.links, p.chain
    FROM unnest(p_lease, p_url, p_kind, p_row, p_links, p_chain) AS p(lease, url, kind, row, links, chain)
    WHERE p.lease = ANY(accepted);
    FOR freed IN
        SELECT o AS origin, count(*) AS n, count(*) FILTER (WHERE r) AS back
        FROM unnest(origins, refunds) AS x(o, r) GROUP BY o ORDER BY o
    LOOP
        UPDATE hosts SET in_flight = in_flight - freed.n, started = started - freed.back WHERE origin = freed.origin;
        refunded := refunded + freed.back;
    END LOOP;
    IF refunded > 0 THEN  -- the crawl row last: a lease holds it first, but never waits for a hosts row
        UPDATE crawl SET started = started - refunded WHERE id = 1;
    END IF;
    RETURN QUERY SELECT unnest(accepted);
END $$;
"""
DDL_LOCK = 0x63726177  # an advisory lock: two workers starting at once must not create the functions together


def create_tables(conn: psycopg.Connection[dict[str, Any]]) -> None:
    """Create what is missing of the tables and (again) the functions, one connection at a time."""
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", [DDL_LOCK])
        conn.execute(DDL)


class ClusterError(Exception):
    """The shared crawl cannot be used as asked; the message is worded for the user (exit code 2)."""


class FrontierLost(ClusterError):
    """The connection to the frontier broke while a worker ran (the server stopped, the network failed)."""


def first_line(exc: BaseException) -> str:
    """An exception's message as one line: PostgreSQL's errors span several (the reason, then a hint)."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return " ".join(lines) if lines else type(exc).__name__


@dataclass(frozen=True, slots=True)
class SharedCrawl:
    """The crawl record: its seeds and every setting that defines it (the same for every worker)."""

    seeds: list[str]
    settings: dict[str, Any]
    created_at: str


def connect(url: str, autocommit: bool = True) -> psycopg.Connection[dict[str, Any]]:
    """A connection to the frontier's database; `ClusterError` (one line) if it cannot be reached."""
    try:
        return psycopg.connect(url, autocommit=autocommit, row_factory=dict_row, connect_timeout=10)
    except psycopg.Error as exc:
        raise ClusterError(f"cannot reach the frontier {redacted(url)}: {first_line(exc)}") from None
    except Exception as exc:  # a malformed URL: psycopg's conninfo parser raises ProgrammingError or ValueError
        raise ClusterError(f"not a PostgreSQL URL: {redacted(url)} ({exc})") from None


def redacted(url: str) -> str:
    """`url` with its password, if any, replaced by ***."""
    scheme, sep, rest = url.partition("://")
    userinfo, at, place = rest.rpartition("@")
    if not sep or not at or ":" not in userinfo:
        return url
    return f"{scheme}://{userinfo.split(':', 1)[0]}:***@{place}"


def read_crawl(conn: psycopg.Connection[dict[str, Any]]) -> SharedCrawl | None:
    """The crawl record, if the database holds one."""
    exists = conn.execute("SELECT to_regclass('crawl') IS NOT NULL AS present").fetchone()
    if not exists or not exists["present"]:
        return None
    row = conn.execute("SELECT seeds, settings, created_at FROM crawl WHERE id = 1").fetchone()
    if row is None:
        return None
    return SharedCrawl(row["seeds"], row["settings"], row["created_at"].isoformat(timespec="milliseconds"))


# Whether the crawl is unfinished: something is leased, a robots.txt is being read, or a queued URL may still
# start (its origin's robots.txt, if wanted, is read first): a sitemap, a page leased before (a retry, or one a
# lost worker held), or a page within --max-pages and its host's --max-pages-per-host. The one rule for workers
# (is there anything left to wait for?), `crawl --frontier` (join or replace?) and `status` (finished?).
BUSY = f"""
SELECT EXISTS (SELECT 1 FROM urls WHERE state = '{LEASED}')
    OR EXISTS (SELECT 1 FROM hosts WHERE robots_state = '{FETCHING}')
    OR EXISTS (
        SELECT 1 FROM urls q, hosts h, crawl c
        WHERE q.state = '{QUEUED}' AND h.origin = q.origin AND c.id = 1
          AND (q.kind <> '{PAGE}' OR q.fetches > 0
               OR (c.started < (c.settings->>'max_pages')::bigint
                   AND (coalesce((c.settings->>'max_pages_per_host')::int, 0) = 0
                        OR h.started < (c.settings->>'max_pages_per_host')::int)))
    ) AS busy
"""


def unfinished(conn: psycopg.Connection[dict[str, Any]]) -> bool:
    """Whether the crawl there is unfinished (`BUSY`)."""
    row = conn.execute(BUSY).fetchone()
    return bool(row and row["busy"])


def create_crawl(conn: psycopg.Connection[dict[str, Any]], seeds: Sequence[str], settings: dict[str, Any],
                 rows: Sequence[tuple[str, str, str]], robots: bool) -> None:  # fmt: skip
    """Make the database hold a new crawl of `seeds` with `settings`, replacing any crawl it held (its
    results and workers stay, and `pull` keeps reading them in order). `rows` are the first URLs (url, origin,
    kind): the seeds, and the sitemaps to read when robots.txt is not. Origins start with their robots.txt
    wanted if `robots`, else ready."""
    with conn.transaction():
        create_tables(conn)
        conn.execute("LOCK TABLE crawl IN ACCESS EXCLUSIVE MODE")  # two `crawl --frontier` at once: one wins
        conn.execute("TRUNCATE urls, hosts, crawl")
        conn.execute(
            "INSERT INTO crawl (id, schema_version, seeds, settings) VALUES (1, %s, %s, %s)",
            [SCHEMA_VERSION, json.dumps(list(seeds)), json.dumps(settings)],
        )
        origins = sorted({key for _, key, _ in rows})
        conn.execute(
            "INSERT INTO hosts (origin, robots_state, crawl_delay) SELECT unnest(%s::text[]), %s, %s",
            [origins, WANTED if robots else READY, settings["delay"]],
        )
        conn.execute(
            "INSERT INTO urls (url, origin, depth, kind) SELECT u, o, 0, k "
            "FROM unnest(%s::text[], %s::text[], %s::text[]) AS s(u, o, k) ORDER BY u ON CONFLICT (url) DO NOTHING",
            [[url for url, _, _ in rows], [key for _, key, _ in rows], [kind for _, _, kind in rows]],
        )
