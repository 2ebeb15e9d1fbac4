"""Both parsers on every page of the bench's site: the same title, links, nofollow set and unusable count,
or the differences listed. The suite checks 60 realistic pages (tests/test_bench.py); this checks a whole
bench site, which takes about a minute at the default 2,000 pages.

    python -m tests.support.parser_parity [--pages 2000] [--site realistic|light]
"""

from __future__ import annotations

import argparse
import sys
import time

from crawler.bench.parse_alone import html_pages
from crawler.site.generate import PROFILES
from crawler.site.server import SiteOptions
from parsers import PARSERS, get_parser

ORIGIN = "http://127.0.0.1:8000"


def main() -> None:
    """Compare the parsers page by page; exit 1 if any page differs."""
    options = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    options.add_argument("--pages", type=int, default=2000)
    options.add_argument("--site", choices=PROFILES, default="realistic")
    args = options.parse_args()
    parsers = {name: get_parser(name) for name in PARSERS}
    seconds = dict.fromkeys(parsers, 0.0)
    compared = differ = 0
    for url, body, content_type in html_pages(SiteOptions(pages=args.pages, profile=args.site), [ORIGIN]):
        pages = {}
        for name, parser in parsers.items():
            start = time.perf_counter()
            pages[name] = parser.parse(body, url, content_type)
            seconds[name] += time.perf_counter() - start
        compared += 1
        if len(set(map(repr, pages.values()))) > 1:
            differ += 1
            print(f"differs: {url}", file=sys.stderr)  # noqa: T201
    timing = ", ".join(f"{name} {1000 * total / max(compared, 1):.2f} ms" for name, total in seconds.items())
    print(f"{compared} pages compared, {differ} differ; parse time per page: {timing}")  # noqa: T201
    sys.exit(1 if differ else 0)


if __name__ == "__main__":
    main()
