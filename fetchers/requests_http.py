"""One GET with requests, its exceptions turned into `FetchResult` values; shared by the process, thread and
gevent backends, which differ only in how they run it."""

from __future__ import annotations

import time

import requests

from fetchers.base import ErrorKind, FetchResult, FetchSettings, error_result, os_error_kind


def new_session(settings: FetchSettings) -> requests.Session:
    """A session for one worker: keep-alive connections, our User-Agent, the redirect limit."""
    session = requests.Session()
    session.headers["User-Agent"] = settings.user_agent
    session.max_redirects = settings.max_redirects
    return session


def _error_kind(exc: Exception) -> ErrorKind:
    if isinstance(exc, requests.TooManyRedirects):
        return ErrorKind.REDIRECTS
    if isinstance(
        exc,
        requests.exceptions.InvalidURL
        | requests.exceptions.MissingSchema
        | requests.exceptions.InvalidSchema
        | requests.exceptions.InvalidHeader,
    ):
        return ErrorKind.INVALID_URL
    if isinstance(exc, requests.exceptions.ContentDecodingError):
        return ErrorKind.DECODING
    if isinstance(exc, requests.Timeout):
        return ErrorKind.TIMEOUT
    return os_error_kind(exc)


def fetch(session: requests.Session, url: str, settings: FetchSettings) -> FetchResult:
    """GET `url`, following redirects; never raises: a failure comes back as a result with its error kind."""
    start = time.perf_counter()
    try:
        with session.get(url, timeout=(settings.timeout, settings.timeout)) as response:
            body = response.content
            return FetchResult(
                url=url,
                final_url=response.url,
                status=response.status_code,
                content_type=response.headers.get("Content-Type"),
                body=body,
                elapsed_ms=(time.perf_counter() - start) * 1000,
            )
    except (requests.RequestException, OSError, ValueError) as exc:
        # requests raises ValueError subclasses (urllib3's LocationParseError) for some malformed URLs.
        return error_result(url, _error_kind(exc), exc, (time.perf_counter() - start) * 1000)
