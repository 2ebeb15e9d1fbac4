"""crawler: a concurrent web crawler for the terminal, on four Python concurrency models.

Its parts, each a sub-package that says what it owns and what it may import:
- `engine`: the crawl (settings, seeds, URLs, robots.txt, sitemaps, the frontier, politeness, the loop, the job);
- `views`: what the commands show (text, progress, compare, the HTML report, Datasette);
- `commands`: the typer command line;
- `site`: the generated site and its server, for the demo, the bench and the tests;
- `bench`: `crawler bench` and the peers it measures against;
- `words`: how counts, sizes and install hints are said everywhere.
Beside it, the leaf packages `fetchers`, `parsers` and `storage` import none of these and none of each other.
"""

__version__ = "0.1.0"
