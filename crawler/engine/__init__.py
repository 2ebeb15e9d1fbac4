"""The crawl itself: its settings (config), seeds, URLs, robots.txt, sitemaps, the frontier and its per-origin
politeness (scheduler), retries, the loop that drives a fetch backend (loop), and the crawl as a durable job (job).

May import: the leaf packages (fetchers, parsers, storage) and `crawler.words`. Never the commands, the views,
the demo site or the bench, which are built on it.
"""
