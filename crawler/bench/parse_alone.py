"""The parse alone: the CPU a parser takes on every HTML page the bench's site serves, in a fresh process that
does nothing else, so that the bench can say what a crawl spends beyond parsing.

`python -m crawler.bench.parse_alone {bs4|lxml|lean} ORIGIN... [site options]` prints one JSON line:
`{"pages": HTML pages parsed, "cpu_seconds": the process's CPU while it parsed them}`. The pages are the ones
the server serves with status 200 and an HTML type, rendered for the same origins, so they are byte for byte
the bodies the crawl parses; the site is generated and rendered before the clock starts. The crawler's own
parsers run with the collector set as a crawl sets it (crawler.engine.heap), so that the parse alone and the
parse in a crawl differ by the crawl, not by the collector; the lean peer's with CPython's defaults, as it runs.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

from crawler.engine.heap import collector_set_for_crawling
from crawler.site.server import SiteOptions

LEAN = "lean"  # the lean peer's own page work (crawler.bench.peers.LeanParser)


@dataclass(frozen=True, slots=True)
class ParseCost:
    """What one parser took alone on every HTML page of the site."""

    parser: str
    pages: int
    cpu_seconds: float

    @property
    def ms_per_page(self) -> float:
        """CPU milliseconds a page."""
        return 1000 * self.cpu_seconds / self.pages if self.pages else 0.0


def html_pages(options: SiteOptions, origins: list[str]) -> list[tuple[str, bytes, str | None]]:
    """(URL, body, Content-Type) of every page the server answers with status 200 and an HTML type."""
    from parsers import is_html

    return [
        (origin + path, resource.render(origin), resource.content_type)
        for site, origin in zip(options.sites(), origins, strict=True)
        for path, resource in site.items()
        if resource.status == 200 and is_html(resource.content_type)
    ]


def _parse_function(parser: str) -> Callable[[bytes, str, str | None], object]:
    if parser == LEAN:
        from crawler.bench.peers import LeanParser

        lean = LeanParser()
        return lambda body, url, _: lean.parse(body, url)
    from parsers import get_parser

    return get_parser(parser).parse


def parse_cpu(parser: str, pages: list[tuple[str, bytes, str | None]]) -> float:
    """The CPU seconds this process takes to parse `pages` with `parser` (a crawler parser's name, or lean)."""
    parse = _parse_function(parser)
    with collector_set_for_crawling() if parser != LEAN else contextlib.nullcontext():
        start = time.process_time()
        for url, body, content_type in pages:
            parse(body, url, content_type)
        return time.process_time() - start


def measure_parse(parser: str, options: SiteOptions, origins: list[str], timeout: float) -> ParseCost:
    """Run the parse alone in a fresh process (as a crawl runs in one) and return what it took."""
    command = [sys.executable, "-m", "crawler.bench.parse_alone", parser, *origins, *options.arguments()]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        raise RuntimeError(f"the {parser} parse alone did not finish within {timeout:g} s: killed") from None
    if done.returncode != 0:
        raise RuntimeError(f"the {parser} parse alone failed (exit code {done.returncode}): {done.stderr.strip()}")
    record = json.loads(done.stdout)
    return ParseCost(parser, record["pages"], record["cpu_seconds"])


def main(argv: list[str] | None = None) -> None:
    """Parse the command line, time the parse, print the JSON line."""
    command = SiteOptions.add_arguments(
        argparse.ArgumentParser(prog="python -m crawler.bench.parse_alone", description=__doc__.split("\n\n")[0])
    )
    command.add_argument("parser", choices=["bs4", "lxml", LEAN])
    command.add_argument("origins", nargs="+", metavar="ORIGIN")
    args = command.parse_args(argv)
    pages = html_pages(SiteOptions.from_arguments(args), args.origins)
    print(json.dumps({"pages": len(pages), "cpu_seconds": parse_cpu(args.parser, pages)}))  # noqa: T201


if __name__ == "__main__":
    main()
