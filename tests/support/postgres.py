"""A real PostgreSQL for the tests: one server for the session (from Debian's binaries, in a temporary
directory, on 127.0.0.1 and a free port), and a fresh database for each test that asks."""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import pytest

from crawler.cluster.server import LocalPostgres, NoPostgres, local_postgres

# The tests kill workers, never the server: durability across a server crash is PostgreSQL's own, so the test
# server skips the fsyncs that would only slow the suite down.
TEST_SETTINGS = {"fsync": "off", "synchronous_commit": "off", "full_page_writes": "off"}
_names = itertools.count(1)


@pytest.fixture(scope="session")
def postgres() -> Iterator[LocalPostgres]:
    """The session's PostgreSQL server; the test is skipped, saying why, where it cannot be started."""
    try:
        with local_postgres(TEST_SETTINGS) as server:
            yield server
    except NoPostgres as exc:
        pytest.skip(f"no PostgreSQL here: {exc}")


@pytest.fixture
def frontier_url(postgres: LocalPostgres) -> str:
    """A URL of a new, empty database on the session's server, for one test."""
    import psycopg

    name = f"crawl_{next(_names)}"
    with psycopg.connect(postgres.url(), autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    return postgres.url(name)
