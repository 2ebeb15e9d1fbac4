"""When a failed request is tried again, and how long it waits: exponential backoff with jitter, and the
server's Retry-After for a 429 or 503, which also pauses the whole origin."""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

from crawler.words import status_text
from fetchers import ErrorKind, FetchResult

RETRY_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
RETRY_ERRORS = frozenset({ErrorKind.TIMEOUT, ErrorKind.CONNECTION, ErrorKind.REFUSED, ErrorKind.INCOMPLETE})
MAX_RETRY_AFTER = 300.0  # a longer Retry-After is not waited for: the page is recorded as failed


def http_error(status: int) -> str:
    """`HTTP 404 Not Found`: a status and its phrase, for error messages."""
    return f"HTTP {status_text(status)}"


def retry_after_seconds(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or an HTTP date); None if absent or bad."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


@dataclass(frozen=True, slots=True)
class Retry:
    """Try again after `wait` seconds; `pause`: the origin starts nothing for that long (a Retry-After)."""

    wait: float
    pause: float | None = None


def retry_for(result: FetchResult, attempt: int, retries: int, backoff: float, rng: random.Random) -> Retry | None:
    """Whether the request that got `result` on its `attempt`-th try is tried again, and when."""
    retryable = result.status in RETRY_STATUSES or result.error_kind in RETRY_ERRORS
    if not retryable or attempt > retries:
        return None
    wait = backoff * 2 ** (attempt - 1) * rng.uniform(0.5, 1.5)
    if result.status in (429, 503) and (pause := retry_after_seconds(result.retry_after)) is not None:
        return None if pause > MAX_RETRY_AFTER else Retry(max(wait, pause), pause)
    return Retry(wait)
