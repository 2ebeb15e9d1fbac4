"""The fetcher contract, on every backend, against real loopback servers: one `on_result` per `submit`
whatever happens, fetched by the workers of the backend's model and called back where the model says, a
`close` that never hangs, and an `abandon` that returns at once."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

from crawler.site.generate import Resource
from tests.conftest import Serve, page_html
from tests.support.fetcher_probe import Report, probe
from tests.support.hostile import Hostile

CONCURRENCY = 4
BAD_URLS = ["http://[::1/bad", "nope://127.0.0.1/"]


@pytest.fixture
def refused() -> Iterator[str]:
    """A URL whose port refuses connections: bound, but not listening."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield f"http://127.0.0.1:{sock.getsockname()[1]}/"


def assert_one_call_each(report: Report, urls: list[str]) -> None:
    calls = report.by_url()
    assert sorted(calls) == sorted(urls)
    assert {url: len(seen) for url, seen in calls.items()} == dict.fromkeys(urls, 1)
    assert report.late == []


def test_every_submit_gets_one_result_from_the_models_workers(serve: Serve, backend: str, refused: str) -> None:
    # Slow enough pages that each of the first CONCURRENCY is fetched while the others are.
    server = serve({f"/{n}.html": Hostile(page_html(f"Page {n}", []), delay=0.3) for n in range(2 * CONCURRENCY)})
    pages = [server.url(f"/{n}.html") for n in range(2 * CONCURRENCY)]
    urls = [*pages, refused, *BAD_URLS]
    report = probe(backend, urls, concurrency=CONCURRENCY)

    assert_one_call_each(report, urls)
    calls = {url: seen for url, (seen,) in report.by_url().items()}
    assert [calls[url].status for url in pages] == [200] * len(pages)
    assert calls[refused].error_kind == "refused"
    assert [calls[url].error_kind for url in BAD_URLS] == ["invalid-url", "invalid-url"]
    assert report.leftover == []

    main = report.main
    fetched = [calls[url].fetched_in for url in pages]
    assert None not in fetched
    workers = {(place.pid, place.os_thread, place.greenlet) for place in fetched if place}
    callers = {(seen.called_in.pid, seen.called_in.os_thread) for seen in calls.values()}
    if backend == "process":  # worker processes; callbacks on the pool's result-handler thread, in the parent
        assert len({pid for pid, _, _ in workers}) == CONCURRENCY
        assert main.pid not in {pid for pid, _, _ in workers}
        assert len(callers) == 1
        assert callers != {(main.pid, main.os_thread)}
        assert {seen.called_in.pid for seen in calls.values()} == {main.pid}
    elif backend == "thread":  # worker threads, each calling back itself
        assert len(workers) == CONCURRENCY
        assert {pid for pid, _, _ in workers} == {main.pid}
        assert all(calls[url].called_in == calls[url].fetched_in for url in pages)
        assert all(seen.called_in.thread.startswith("fetch_") for seen in calls.values())
    elif backend == "asyncio":  # one event loop, run by the thread that waits for the results, calling back there
        assert workers == {(main.pid, main.os_thread, None)}
        assert callers == {(main.pid, main.os_thread)}
    else:  # gevent: a greenlet per request, on the main thread, calling back itself
        assert len(workers) == len(pages)
        assert {(pid, os_thread) for pid, os_thread, _ in workers} == {(main.pid, main.os_thread)} == callers
        assert main.greenlet not in {greenlet for _, _, greenlet in workers}
        assert all(calls[url].called_in == calls[url].fetched_in for url in pages)


def test_an_exception_inside_the_fetch_is_one_error_result(serve: Serve, backend: str) -> None:
    server = serve({
        **{f"/boom{n}.html": Resource(page_html("Boom", [])) for n in range(2 * CONCURRENCY)},
        "/fine.html": Resource(page_html("Fine", [])),
    })  # fmt: skip
    booms = [server.url(f"/boom{n}.html") for n in range(2 * CONCURRENCY)]
    report = probe(backend, [*booms, server.url("/fine.html")], concurrency=CONCURRENCY)

    assert_one_call_each(report, [*booms, server.url("/fine.html")])
    calls = {url: seen for url, (seen,) in report.by_url().items()}
    for url in booms:
        assert (calls[url].error_kind, calls[url].error_message) == (
            "error", "RuntimeError: injected into the body reader",
        ), url  # fmt: skip
    assert calls[server.url("/fine.html")].status == 200
    assert report.stop_seconds < 2  # close() waited for nothing more
    assert report.leftover == []


def test_an_answer_is_read_while_the_caller_works_through_earlier_ones(serve: Serve, backend: str) -> None:
    # Twelve answers at once, then one 0.2 s late, within a 0.5 s deadline; the caller spends 0.05 s on each result,
    # 0.6 s on the twelve. The late answer arrives while it works: it must be read then, not after the caller's
    # backlog, or its deadline (and its elapsed time) would be spent on the caller's work.
    server = serve({
        **{f"/{n}.html": Resource(page_html(f"Page {n}", [])) for n in range(12)},
        "/late.html": Hostile(page_html("Late", []), delay=0.2),
    })  # fmt: skip
    urls = [*(server.url(f"/{n}.html") for n in range(12)), server.url("/late.html")]
    report = probe(backend, urls, concurrency=len(urls), timeout=0.5, work_per_result=0.05)

    assert_one_call_each(report, urls)
    late = report.by_url()[server.url("/late.html")][0]
    assert (late.status, late.error_kind) == (200, None)
    assert 200 <= late.elapsed_ms < 400


def test_close_gives_up_on_a_lost_request(serve: Serve, backend: str) -> None:
    # The process backend loses a request when the worker fetching it is killed (here with the other, idle one,
    # which takes the task queue's lock with it); the probe classes of the others drop it, as a backend with a
    # bug would. Either way close() must not wait for ever.
    server = serve({
        "/lost.html": Hostile(page_html("Lost", []), delay=0.3),  # answered once /fine.html is
        "/fine.html": Resource(page_html("Fine", [])),
    })  # fmt: skip
    urls = [server.url("/lost.html"), server.url("/fine.html")]
    timeout, grace = 0.5, 0.5
    report = probe(backend, urls, concurrency=2, timeout=timeout, grace=grace)

    assert_one_call_each(report, urls)
    lost, fine = (seen for (seen,) in (report.by_url()[url] for url in urls))
    assert fine.status == 200
    assert lost.error_kind == "error"
    assert lost.error_message == f"lost by the {backend} backend: no result, and no news of any request for 1 s"
    assert timeout + grace <= report.stop_seconds < timeout + grace + 3  # the patience, then a forced stop
    assert report.leftover == []


def test_abandon_returns_at_once_and_releases_the_workers(serve: Serve, backend: str) -> None:
    # Requests in flight, and more queued behind them; but gevent's pool makes submit wait for a free slot.
    count = CONCURRENCY if backend == "gevent" else 2 * CONCURRENCY
    server = serve({f"/hang{n}.html": Hostile(page_html("Hang", []), delay=60) for n in range(count)})
    urls = [server.url(f"/hang{n}.html") for n in range(count)]
    report = probe(backend, urls, concurrency=CONCURRENCY, timeout=30.0, abandon_after=0.5)

    assert server.max_active == CONCURRENCY
    assert report.stop_seconds < 2
    assert report.seen == report.late == []  # abandoned requests are not reported
    assert report.leftover == []  # threads, processes, greenlets: all gone (leftover waits up to 2 s)
