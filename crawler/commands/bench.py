"""`crawler bench` (every backend and the peers on one generated site, measured and checked) and `crawler site`
(that site, served for crawls of your own)."""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import TYPE_CHECKING, Annotated

import typer

from crawler.commands.app import DEFAULT_PARSER_CHOICE, Backend, ParserOption, Peer, SiteProfile, app, fail
from crawler.words import install_hint

if TYPE_CHECKING:
    from crawler.bench.measure import RunResult


REALISTIC = SiteProfile("realistic")
# The generated site's options, the same for the bench that crawls it and for `crawler site` that serves it.
ProfileOption = Annotated[
    SiteProfile, typer.Option(help="Pages as heavy as real documentation (median ~30 KB, up to 1 MB), or light ones.")
]
LatencyOption = Annotated[float, typer.Option(metavar="MS", min=0, help="Server delay before every response, in ms.")]


@app.command()
def bench(
    ctx: typer.Context,
    pages: Annotated[int, typer.Option(min=1, help="Pages in the generated site (per host).")] = 2000,
    backends: Annotated[
        list[Backend] | None,
        typer.Option(
            "--backend",
            "-b",
            metavar="NAME",
            help=f"A backend to measure: {', '.join(Backend)} (repeat the option).",
            show_default="all four",
        ),
    ] = None,
    parser: ParserOption = DEFAULT_PARSER_CHOICE,
    rounds: Annotated[int, typer.Option(min=1, help="Crawls per backend; the table shows medians.")] = 3,
    latency_ms: LatencyOption = 0.0,
    hosts: Annotated[int, typer.Option(min=1, max=200, help="Loopback hosts (127.0.0.1, .2, ...), a site each.")] = 1,
    concurrency: Annotated[int, typer.Option(min=1, help="Requests in flight at once.")] = 64,
    per_host: Annotated[
        int | None, typer.Option(min=1, help="Requests in flight per host.", show_default="--concurrency")
    ] = None,
    site: ProfileOption = REALISTIC,
    peers: Annotated[
        list[Peer] | None,
        typer.Option(
            "--peer",
            help=f"Also measure a peer: scrapy ({install_hint('bench')}) or lean, a minimal aiohttp + lxml loop "
            "(repeat the option).",
        ),
    ] = None,
    crawl_timeout: Annotated[
        float,
        typer.Option(
            metavar="SECONDS", min=1, help="Seconds a crawl may take before it is killed and the bench fails."
        ),
    ] = 600.0,
    as_json: Annotated[bool, typer.Option("--json", help="Print every run and the medians as JSON.")] = False,
    workers: Annotated[
        str | None,
        typer.Option(
            metavar="N,N,...",
            help="Instead, measure a shared crawl (a throwaway PostgreSQL) with these numbers of workers, on 64 "
            "hosts x 100 light pages with 100 ms latency, per-host 1, each worker at concurrency 8 (unless "
            "--hosts, --pages, --latency-ms, --per-host or --concurrency say otherwise); then politeness (one "
            "host, --delay 0.2) and one worker against the SQLite mode on --site pages. Needs PostgreSQL's server "
            "programs.",
        ),
    ] = None,
) -> None:
    """Measure every backend on a generated site served on 127.0.0.1: pages/s, CPU, memory, checked."""
    if workers is not None:
        _bench_workers(ctx, workers, (backends or [Backend("asyncio")])[0].value, parser.value, site.value, as_json)
        return
    from crawler.bench.measure import PARSE_ALONE_NOTE, BenchOptions, helpers_note, medians, render
    from crawler.bench.measure import run as run_bench
    from crawler.site.server import SiteOptions

    options = BenchOptions(
        site=SiteOptions(pages=pages, hosts=hosts, latency_ms=latency_ms, profile=site.value),
        backends=[backend.value for backend in backends or list(Backend)],
        parser=parser.value,
        rounds=rounds,
        concurrency=concurrency,
        per_host=per_host or concurrency,
        peers=[peer.value for peer in peers or []],
        crawl_timeout=crawl_timeout,
    )

    def progress(result: RunResult) -> None:
        if not as_json:
            typer.echo(f"  {result.backend:8} {result.pages:,} pages in {result.seconds:.2f} s "
                       f"({result.pages_per_second:,.0f} pages/s)", err=True)  # fmt: skip

    typer.echo(
        f"Benchmark: {pages:,} {site.value} pages x {hosts} host(s), latency {latency_ms:g} ms, "
        f"concurrency {concurrency}, parser {parser.value}, {rounds} round(s)", err=True,
    )  # fmt: skip
    try:
        results = run_bench(options, progress, on_note=lambda note: typer.echo(note, err=True))
    except RuntimeError as exc:
        fail(str(exc), code=1)
    rows = medians(results)
    if as_json:
        record = {"runs": [asdict(result) for result in results], "medians": [asdict(row) for row in rows]}
        typer.echo(json.dumps(record, indent=2))
    else:
        typer.echo(render(rows))
        typer.echo(PARSE_ALONE_NOTE)
        for line in helpers_note(rows):
            typer.echo(line)
    if not all(row.correct for row in rows):
        for result in results:
            for problem in result.problems[:5]:
                typer.echo(f"{result.backend}: {problem}", err=True)
        raise typer.Exit(1)


def _bench_workers(ctx: typer.Context, workers: str, backend: str, parser: str, profile: str, as_json: bool) -> None:
    """`bench --workers`: the shared crawl's scaling, politeness and overhead (crawler.bench.cluster)."""
    from crawler.bench.cluster import ScaleOptions, ScaleRun, render, run
    from crawler.cluster.server import NoPostgres

    try:
        counts = sorted({int(count) for count in workers.split(",")})
    except ValueError:
        fail(f"--workers takes numbers of workers separated by commas (1,2,4), not {workers!r}")
    if not counts or counts[0] < 1:
        fail("--workers takes numbers of workers of 1 or more")
    defaults = ScaleOptions(workers=counts)
    given = {name: ctx.params[name] for name in ("hosts", "pages", "latency_ms", "per_host", "concurrency")
             if (source := ctx.get_parameter_source(name)) is not None and source.name == "COMMANDLINE"}  # fmt: skip
    options = ScaleOptions(
        workers=counts, backend=backend, parser=parser, overhead_profile=profile,
        **{name: value for name, value in given.items() if getattr(defaults, name) != value},
    )  # fmt: skip
    typer.echo(f"Shared-crawl benchmark: {counts} worker(s) of the {backend} backend at concurrency "
               f"{options.concurrency}; {options.hosts} hosts x {options.pages} pages, latency "
               f"{options.latency_ms:g} ms, per-host {options.per_host}", err=True)  # fmt: skip

    def progress(result: ScaleRun) -> None:
        if not as_json:
            who = "SQLite mode" if result.workers == 0 else f"{result.workers} worker(s)"
            typer.echo(f"  {result.scenario:8} {who:12} {result.pages:,} pages in {result.seconds:.2f} s "
                       f"({result.pages_per_second:,.1f} pages/s)", err=True)  # fmt: skip

    try:
        results = run(options, progress)
    except NoPostgres as exc:
        fail(f"the workers bench starts its own PostgreSQL: {exc}", code=1)
    except RuntimeError as exc:
        fail(str(exc), code=1)
    if as_json:
        typer.echo(json.dumps([{**asdict(result), "pages_per_second": result.pages_per_second}
                               for result in results], indent=2))  # fmt: skip
    else:
        typer.echo(render(results))
    for result in results:
        for problem in result.problems[:5]:
            typer.echo(f"{result.scenario} x {result.workers}: {problem}", err=True)
    if any(result.problems for result in results):
        raise typer.Exit(1)


@app.command()
def site(
    pages: Annotated[int, typer.Option(min=1, help="Pages in the generated site (per host).")] = 1000,
    profile: ProfileOption = REALISTIC,
    seed: Annotated[int, typer.Option(help="Another seed, another site; the same seed, the same site.")] = 1,
    port: Annotated[int, typer.Option("--port", "-p", min=0, max=65535, help="Port (0: any free one).")] = 8000,
    hosts: Annotated[
        int,
        typer.Option(
            min=1,
            max=200,
            help="Loopback hosts (127.0.0.1, .2, ...), a site each, all on --port (0: each on any free port).",
        ),
    ] = 1,
    latency_ms: LatencyOption = 0.0,
) -> None:
    """Serve the generated site that `crawler demo` and `crawler bench` crawl, on 127.0.0.1, until Ctrl-C:
    a site of your own to try settings on, or to crawl with other tools."""
    from crawler.site.server import PortUnavailable, SiteOptions, serve_until_stopped

    options = SiteOptions(pages=pages, seed=seed, hosts=hosts, latency_ms=latency_ms, profile=profile.value)

    def ready(origins: list[str]) -> None:
        typer.echo(f"Serving {', '.join(origin + '/' for origin in origins)} (Ctrl-C to stop). Crawl it with:")
        limits = f"--depth {pages} --max-pages {hosts * (2 * pages + 100)}"
        typer.echo(f"  crawler crawl {' '.join(origin + '/' for origin in origins)} {limits} --per-host 16 "
                   "--concurrency 16 --db site.db")  # fmt: skip

    try:
        serve_until_stopped(options, port, lambda line: typer.echo(line, err=True), ready)
    except PortUnavailable as exc:
        fail(f"{exc}; choose another with --port (0: any)")
