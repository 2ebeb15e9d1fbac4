"""Python's cyclic garbage collector, set for a crawl.

A crawl allocates in bulk, and the bs4 parser most: each page's tree is a cycle (parents, children and
siblings point at each other) that only the collector frees. At CPython's default threshold, a young
collection every 700 new container objects, a 2,290-page bs4 crawl ran 2,371 young collections; a page's
tree was examined while it was being built, moved to the older generations, and freed there by full
collections that also walk every module, class and function the crawler imported. Two settings cut the
collector's time in that crawl from 1.9-2.4 s to about 1 s (docs/performance.md, "The collector"):

- what is alive when the crawl starts (the libraries, the settings, the fetcher) is frozen: no collection
  examines it again;
- a young collection runs every 10,000 new containers: most of a page's tree is then still young when it is
  found unreachable, and freed there.

Both are undone when the crawl ends, so a program that runs crawls in its own process (the test suite) keeps
its own settings. What a program froze itself stays frozen, and a block inside another changes nothing the
outer one set up.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager

YOUNG_THRESHOLD = 10_000  # new container objects between young collections (CPython's default: 700)


@contextmanager
def collector_set_for_crawling() -> Iterator[None]:
    """Freeze what is alive now and collect the young generation less often, until the block ends. Freezes
    only when nothing is frozen yet: `gc.unfreeze` thaws everything, and what another froze is not ours to thaw."""
    thresholds = gc.get_threshold()
    freezing = gc.get_freeze_count() == 0
    if freezing:
        gc.collect()  # garbage alive now would otherwise be frozen with the rest, never to be freed
        gc.freeze()
    gc.set_threshold(YOUNG_THRESHOLD, *thresholds[1:])
    try:
        yield
    finally:
        gc.set_threshold(*thresholds)
        if freezing:
            gc.unfreeze()
