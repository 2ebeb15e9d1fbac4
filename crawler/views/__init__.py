"""What the commands show: the text summaries and tables (text), the live progress display, `compare`, the HTML
report, and Datasette for `serve`.

May import: `crawler.engine` (a run's summary), storage (the read-only queries) and `crawler.words`. Never the
commands, the demo site or the bench. Views compute no figures of their own: storage answers the queries, and
`crawler.engine.metrics` the rates.
"""
