"""The generated web site that `crawler demo`, the benchmark and the tests crawl: its pages (generate), and a
plain HTTP server for it on 127.0.0.1 (server), run on a thread or as `python -m crawler.site.server`.

May import: nothing else of the crawler (the site must not know the crawler it is crawled by). The tests'
hostile behaviours (trickling, stalling, cut or reset bodies, scripted failures) live in `tests/support`.
"""
