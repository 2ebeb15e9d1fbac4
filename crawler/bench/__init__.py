"""`crawler bench`: every backend, and peer crawlers (Scrapy, a lean aiohttp + lxml loop), crawling the same
generated site in the same run, each measured (pages/s, CPU of its whole process tree, memory) and checked page by
page against the site.

May import: `crawler.engine`, `crawler.cluster` (the workers bench), `crawler.views`, `crawler.site`, storage,
parsers (to time a crawl's parser alone on the same pages) and `crawler.words`. Never the commands.
"""
