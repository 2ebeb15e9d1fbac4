"""A crawl sets Python's collector for its bulk allocations while it runs, and gives the old settings back:
the test process itself runs crawls and keeps its own."""

from __future__ import annotations

import gc
from pathlib import Path

import pytest

from crawler.engine.heap import YOUNG_THRESHOLD, collector_set_for_crawling
from crawler.site.server import SiteOptions, serve_in_subprocess
from tests.conftest import page_count, run_cli


def test_the_setting_holds_inside_the_block_and_is_undone_after_it_even_by_an_exception() -> None:
    before = gc.get_threshold()
    assert gc.get_freeze_count() == 0
    with pytest.raises(KeyboardInterrupt), collector_set_for_crawling():
        assert gc.get_threshold() == (YOUNG_THRESHOLD, *before[1:])
        assert gc.get_freeze_count() > 1000  # every module and function imported so far
        raise KeyboardInterrupt
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == 0


def test_what_the_program_froze_stays_frozen_and_an_inner_block_leaves_the_outer_as_it_was() -> None:
    before = gc.get_threshold()
    gc.freeze()  # the program's own, as a server that forks workers does
    try:
        frozen = gc.get_freeze_count()
        with collector_set_for_crawling():
            assert gc.get_freeze_count() == frozen  # not thawed, nor frozen again
            with collector_set_for_crawling():
                pass
            assert gc.get_threshold() == (YOUNG_THRESHOLD, *before[1:])
        assert gc.get_freeze_count() == frozen
        assert gc.get_threshold() == before
    finally:
        gc.unfreeze()


def test_a_crawl_collects_with_the_crawl_setting_and_leaves_the_process_as_it_was(tmp_path: Path) -> None:
    # In this process (the default backend): a gevent crawl runs in a subprocess the test cannot look into.
    seen: set[tuple[int, bool]] = set()

    def look(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            seen.add((gc.get_threshold()[0], gc.get_freeze_count() > 0))

    before = gc.get_threshold()
    with serve_in_subprocess(SiteOptions(pages=30, profile="realistic")) as server:
        gc.callbacks.append(look)
        try:
            run = run_cli("crawl", f"{server.origins[0]}/", "--parser", "bs4", "--depth", "100",
                          "--db", str(tmp_path / "c.db"), "--quiet")  # fmt: skip
        finally:
            gc.callbacks.remove(look)
    assert run.exit_code == 0, run.stderr
    assert page_count(tmp_path / "c.db") >= 30
    assert (YOUNG_THRESHOLD, True) in seen  # 30 realistic pages make more than 10,000 containers
    assert gc.get_threshold() == before and gc.get_freeze_count() == 0
