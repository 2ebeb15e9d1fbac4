"""The cost of URL handling per link: each page's anchors resolved by the parser's `build_page` (against the
page or its `<base href>`), then made canonical as the engine did before the parsers' links were canonical
themselves (kept, so that older commits compare; an upper bound for today's crawl), on the bench site's pages
in crawl order, caches cold at the start. The anchors are extracted once beforehand, so the figure is the
URL work alone.

    python -m tests.support.link_cost [--pages 2000] [--rounds 5]

It uses only `parsers.base.build_page` and `crawler.engine.urls.canonical`, so it runs unchanged on older commits (check
one out in a worktree and run it there to compare: docs/performance.md)."""

from __future__ import annotations

import argparse
import contextlib
import statistics
import time

from bs4 import BeautifulSoup

from crawler.engine import urls
from crawler.site.generate import fill, generate_site
from parsers.base import build_page

ORIGIN = "http://127.0.0.1:8000"


def main() -> None:
    """Print the median microseconds per link over `--rounds` passes."""
    options = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    options.add_argument("--pages", type=int, default=2000)
    options.add_argument("--rounds", type=int, default=5)
    args = options.parse_args()
    pages = []
    for path, resource in generate_site(args.pages).items():
        if resource.content_type and resource.content_type.startswith("text/html") and isinstance(resource.body, str):
            soup = BeautifulSoup(fill(resource.body, ORIGIN), "lxml")
            anchors = [(str(a["href"]), a.get("rel")) for a in soup.find_all(["a", "area"], href=True)]
            pages.append((ORIGIN + path, anchors))
    count = sum(len(anchors) for _, anchors in pages)
    timings = []
    for _ in range(args.rounds):
        urls.canonical.cache_clear()
        start = time.perf_counter()
        for url, anchors in pages:
            for link in build_page(url, None, None, [], anchors).links:
                with contextlib.suppress(ValueError):
                    urls.canonical(link)
        timings.append((time.perf_counter() - start) / count * 1e6)
    print(f"{count} links on {len(pages)} pages: {statistics.median(timings):.2f} us per link "  # noqa: T201
          f"(median of {args.rounds}; rounds {', '.join(f'{t:.2f}' for t in timings)})")  # fmt: skip


if __name__ == "__main__":
    main()
