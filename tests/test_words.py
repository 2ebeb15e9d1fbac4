"""crawler.words: how counts, sizes and statuses are said, the same in every command, view and message."""

from __future__ import annotations

from crawler.engine.retries import http_error
from crawler.words import counted, human_bytes, status_text


def test_a_count_agrees_with_its_noun() -> None:
    assert [counted(n, "page") for n in (0, 1, 2, 1359)] == ["0 pages", "1 page", "2 pages", "1,359 pages"]
    assert counted(1, "retry", "retries") == "1 retry" and counted(3, "retry", "retries") == "3 retries"


def test_sizes_in_powers_of_1024() -> None:
    assert [human_bytes(n) for n in (0, 1023, 1536, 2**20, 5 * 2**30)] == [
        "0 B", "1023 B", "1.5 KB", "1.0 MB", "5.0 GB"
    ]  # fmt: skip
    assert human_bytes(2048, short=True) == "2 KB"


def test_a_status_with_its_phrase_in_one_place() -> None:
    assert [status_text(s) for s in (200, 304, 404, 429, 503)] == [
        "200 OK", "304 Not Modified", "404 Not Found", "429 Too Many Requests", "503 Service Unavailable"
    ]  # fmt: skip
    assert status_text(599) == "599"  # no registered phrase: the number alone
    assert http_error(404) == "HTTP 404 Not Found" and http_error(599) == "HTTP 599"
