"""What each table and column of the page database means: the one description that Datasette's metadata
(`crawler serve`), `crawler schema` and the README's schema section are made from. A test holds it to the
columns a crawl really creates, and the README to what `crawler schema --markdown` prints."""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Column:
    """One column: its name, its SQLite type (with its key, if any) and what it means, in Markdown."""

    name: str
    type: str
    meaning: str


@dataclass(frozen=True, slots=True)
class Table:
    """One table: what a row is, and its columns in the order the table has them."""

    name: str
    rows: str
    columns: tuple[Column, ...]


def plain(markdown: str) -> str:
    """The text without its code marks and links, for Datasette and the terminal."""
    return re.sub(r"\[([^]]*)\]\([^)]*\)", r"\1", markdown).replace("`", "")


TABLES: tuple[Table, ...] = (
    Table("pages", "one row per URL taken from the frontier: its latest status, size, title, timing or error "
          "(each fetch of every run is kept in `fetches`).", (
        Column("url", "TEXT, primary key", "the URL requested, in canonical form"),
        Column("final_url", "TEXT", "for a redirect, where its chain ended (or its target, if that was not "
               "crawled); else `url`"),
        Column("host", "TEXT", "host of `url`, without port"),
        Column("status", "INTEGER", "HTTP status; NULL when no response came back (or robots.txt kept us away)"),
        Column("content_type", "TEXT", "the `Content-Type` header as sent"),
        Column("size", "INTEGER", "body size in bytes, after content-encoding (gzip, ...) is decoded; NULL "
               "without a response"),
        Column("truncated", "INTEGER", "1 when the body was cut at `--max-size`"),
        Column("title", "TEXT", "the `<title>`, whitespace collapsed; NULL if none or not HTML"),
        Column("depth", "INTEGER", "link hops from the seed (seeds are 0; a redirect target keeps its redirect's "
               "depth)"),
        Column("link_count", "INTEGER", "distinct outgoing http(s) links on the page"),
        Column("unusable_links", "INTEGER", "hrefs on the page that no browser could follow either (malformed "
               "URLs) or over `--max-url-length`; NULL for pages crawled before this column existed"),
        Column("attempts", "INTEGER", "requests made for it, retries included (0: not fetched, see `error_kind`)"),
        Column("fetched_at", "TEXT", "when the fetch finished, UTC, ISO 8601"),
        Column("elapsed_ms", "REAL", "from sending the (last) request to the last byte of the body"),
        Column("backend", "TEXT", "the backend that fetched it"),
        Column("error_kind", "TEXT", "NULL on success; `http` (status 400 or more), `timeout`, `dns`, `refused`, "
               "`connection`, `incomplete` (body cut short), `redirects` (loop or too many), `robots`, "
               "`invalid-url`, `decoding`, `parse` (the parser choked on it) or `error`"),
        Column("error_message", "TEXT", "what went wrong, e.g. `HTTP 404 Not Found`"),
        Column("run_id", "INTEGER", "the run (`runs.id`) that fetched it last"),
        Column("content_hash", "TEXT", "SHA-1 of the body (and a redirect's `Location`), in hex: how a refresh "
               "tells an unchanged page when the server sends no validators; NULL without a response"),
        Column("etag", "TEXT", "the `ETag` header as sent: a refresh asks `If-None-Match` with it"),
        Column("last_modified", "TEXT", "the `Last-Modified` header as sent: a refresh asks `If-Modified-Since` "
               "with it"),
    )),
    Table("links", "one row per distinct link found on a successful HTML page, whether or not it was followed.", (
        Column("from_url", "TEXT", "the page the link is on (`pages.url`)"),
        Column("to_url", "TEXT", "where it points, canonical, so it joins `pages.url` when the target was crawled"),
        Column("follow", "INTEGER", "1 if the page lets it be followed, 0 if `rel=nofollow` or meta robots say "
               "not to; NULL if stored before this column"),
    )),
    Table("sitemaps", "one row per sitemap read in a run: robots.txt's `Sitemap:` lines and `/sitemap.xml` "
          "of each seed's site, and the sitemaps a sitemap index lists.", (
        Column("url", "TEXT", "the sitemap's URL"),
        Column("run_id", "INTEGER", "the run that read it"),
        Column("status", "INTEGER", "HTTP status; NULL when no response came back"),
        Column("pages", "INTEGER", "page URLs it listed (those in scope joined the frontier)"),
        Column("sitemaps", "INTEGER", "sitemaps it listed (a sitemap index)"),
        Column("error_kind", "TEXT", "NULL if it was read whole; `http`, `sitemap` (malformed, over the "
               "protocol's limits, nested too deep) or a network error kind"),
        Column("error_message", "TEXT", "what went wrong, or where it redirected"),
        Column("fetched_at", "TEXT", "UTC, ISO 8601"),
    )),
    Table("frontier", "every in-scope URL the crawl has found, in discovery (and crawl) order.", (
        Column("seq", "INTEGER, primary key", "discovery order, which is crawl order"),
        Column("url", "TEXT, unique", "canonical URL"),
        Column("origin", "TEXT", "`scheme://host:port`, the unit of politeness and robots.txt"),
        Column("depth", "INTEGER", "link hops from the seed"),
        Column("hops", "INTEGER", "redirects followed to reach it"),
        Column("via", "TEXT", "the redirect chain that led here, one URL a line"),
        Column("state", "TEXT", "`queued` (not written to `pages` yet, including what was in flight), `done`, or "
               "`capped` (skipped: over `--max-pages-per-host`)"),
        Column("lastmod", "TEXT", "the `<lastmod>` a sitemap gave it, as written: a refresh does not ask for a "
               "page fetched since"),
    )),
    Table("runs", "one row per `crawler crawl` (a resumed crawl is a new run).", (
        Column("id", "INTEGER, primary key", "run number, in the order the runs started"),
        Column("started_at", "TEXT", "when the run started, UTC, ISO 8601"),
        Column("ended_at", "TEXT", "when it ended, UTC, ISO 8601; NULL while running (or if it was killed)"),
        Column("status", "TEXT", "`running`, `finished`, `limit` (`--max-pages` reached), `interrupted` (Ctrl-C "
               "or SIGTERM), `failed`, or `killed` (the process died; set when the next run starts)"),
        Column("backend", "TEXT", "the concurrency backend"),
        Column("parser", "TEXT", "the HTML parser"),
        Column("concurrency", "INTEGER", "requests in flight at most"),
        Column("per_host", "INTEGER", "requests in flight per host at most"),
        Column("seeds", "TEXT", "JSON: the seed URLs given (on resume: only new ones; a refresh: all of the "
               "crawl's)"),
        Column("settings", "TEXT", "JSON: every setting it crawled with"),
        Column("pages", "INTEGER", "rows it wrote"),
        Column("retries", "INTEGER", "requests made again after a timeout, connection error, 429 or 5xx"),
        Column("errors", "INTEGER", "of its rows, the errors"),
        Column("bytes", "INTEGER", "body bytes fetched"),
        Column("elapsed_s", "REAL", "wall-clock seconds"),
        Column("pages_per_second", "REAL", "rows written per second of wall-clock time"),
        Column("latency_p50_ms", "REAL", "median fetch time (request to last byte), nearest rank"),
        Column("latency_p95_ms", "REAL", "95th percentile fetch time, nearest rank"),
        Column("fetch_seconds", "REAL", "fetch time summed over pages; divided by `elapsed_s`, the mean requests "
               "in flight"),
        Column("cpu_seconds", "REAL", "CPU time of the crawler's processes (workers included), sampled each "
               "second; NULL for a killed run"),
        Column("peak_rss_mb", "REAL", "peak memory of the crawler's processes, in MB; NULL for a killed run"),
        Column("parse_seconds", "REAL", "main-thread time parsing pages"),
        Column("store_seconds", "REAL", "main-thread time writing SQLite"),
        Column("overrides", "TEXT", "JSON: the settings this run changed from the crawl's stored ones (flags "
               "given on resume)"),
        Column("pass", "INTEGER", "the pass over the site it belongs to: a new crawl or a refresh starts one, a "
               "resume continues it"),
        Column("refresh", "INTEGER", "1 for a refresh (`crawler crawl --refresh`): conditional requests for the "
               "pages known"),
        Column("unchanged", "INTEGER", "of its fetches, pages as the pass before left them (a 304, or the same "
               "body)"),
        Column("changed", "INTEGER", "pages whose body or status changed since they were fetched before"),
        Column("new", "INTEGER", "pages fetched for the first time"),
        Column("bytes_saved", "INTEGER", "body bytes a refresh did not download: the known size of each page "
               "answered 304 or not asked for (`fetches.unchanged_by`)"),
    )),
    Table("crawl", "the crawl the database holds (one row; see [docs/lifecycle.md](docs/lifecycle.md)).", (
        Column("id", "INTEGER, primary key", "always 1: a database holds one crawl"),
        Column("created_at", "TEXT", "when the crawl started, UTC, ISO 8601"),
        Column("made_by", "TEXT", "`crawl` or `demo` (`demo` replaces only databases it made)"),
        Column("seeds", "TEXT", "JSON: every seed, those added on resume included"),
        Column("settings", "TEXT", "JSON: every setting; a resume continues with these"),
        Column("owner_pid", "INTEGER", "the process crawling it now; NULL when none"),
        Column("owner_host", "TEXT", "the host of that process"),
        Column("owner_started", "REAL", "that process's start time (epoch seconds), so that a reused pid is not "
               "mistaken for it"),
        Column("heartbeat_at", "TEXT", "when the owner last said it is alive, UTC, ISO 8601"),
    )),
)  # fmt: skip


def _history(pages: Table) -> Table:
    """The `fetches` table: the columns of `pages`, as each run found the page, and how it compared."""
    columns = tuple(Column("run_id", "INTEGER", "the run (`runs.id`) that fetched it; with `url`, the primary key")
                    if column.name == "run_id" else Column(column.name, column.type.removesuffix(", primary key"),
                                                           column.meaning)
                    for column in pages.columns)  # fmt: skip
    return Table("fetches", "the history: one row per URL per run that fetched it, with the columns of `pages` as "
                 "that run found the page (`crawler changes` compares runs).", (
        *columns,
        Column("change", "TEXT", "`new` (not fetched before), `changed` (another body or status) or `unchanged`"),
        Column("unchanged_by", "TEXT", "how a refresh knew the page unchanged: `304` (the server answered "
               "`304 Not Modified`: no body came, and the size and title are the known ones), `lastmod` (a sitemap's "
               "`<lastmod>` is older than the last fetch: not asked for), `hash` (the same body came again); NULL "
               "otherwise"),
    ))  # fmt: skip


TABLES = (TABLES[0], _history(TABLES[0]), *TABLES[1:])


def markdown() -> str:
    """The schema as the README gives it: for each table, what a row is, then its columns."""
    parts = []
    for table in TABLES:
        rows = [f"| `{column.name}` | {column.type} | {column.meaning} |" for column in table.columns]
        parts.append("\n".join([f"`{table.name}`: {table.rows}", "", "| column | type | meaning |",
                                "| --- | --- | --- |", *rows]))  # fmt: skip
    return "\n\n".join(parts) + "\n"
