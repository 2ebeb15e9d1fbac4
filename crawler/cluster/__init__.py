"""One crawl shared by many workers on many machines through PostgreSQL: its tables and crawl record (schema),
the shared frontier that leases work under cluster-wide politeness (frontier), a worker's run (worker), and a
throwaway local server for the tests and the bench (server).

The only part that imports psycopg; the commands import it lazily, when a frontier URL is given. May import:
the engine, the leaf packages (fetchers, parsers, storage) and `crawler.words`. Never the commands, the views,
the demo site or the bench.
"""
