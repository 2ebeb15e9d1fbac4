"""One GET with requests, streamed under a deadline and a size cap, its exceptions turned into
`FetchResult` values; shared by the process, thread and gevent backends, which differ only in how they
run it."""

from __future__ import annotations

import time

import requests
import urllib3

from fetchers.base import (
    BodyReader,
    ErrorKind,
    FetchResult,
    FetchSettings,
    environment_matters,
    error_result,
    os_error_kind,
)

CHUNK_SIZE = 64 * 1024


def new_session(settings: FetchSettings) -> requests.Session:
    """A session for one worker: keep-alive connections and our User-Agent; proxies from the environment."""
    session = requests.Session()
    session.headers["User-Agent"] = settings.user_agent
    session.trust_env = environment_matters()
    return session


def _error_kind(exc: BaseException) -> ErrorKind:
    if isinstance(exc, TimeoutError | requests.Timeout | urllib3.exceptions.TimeoutError):
        return ErrorKind.TIMEOUT
    if isinstance(exc, requests.exceptions.InvalidURL | requests.exceptions.MissingSchema
                  | requests.exceptions.InvalidSchema | requests.exceptions.InvalidHeader):  # fmt: skip
        return ErrorKind.INVALID_URL
    if isinstance(exc, requests.exceptions.ContentDecodingError | urllib3.exceptions.DecodeError):
        return ErrorKind.DECODING
    if isinstance(exc, urllib3.exceptions.ProtocolError | requests.exceptions.ChunkedEncodingError):
        kind = os_error_kind(exc)
        return ErrorKind.TIMEOUT if kind is ErrorKind.TIMEOUT else ErrorKind.INCOMPLETE
    return os_error_kind(exc)


def fetch(session: requests.Session, url: str, settings: FetchSettings) -> FetchResult:
    """GET `url` without following redirects; never raises: a failure comes back as a result."""
    start = time.perf_counter()
    status = None
    try:
        with session.get(
            url, timeout=(settings.connect_timeout, settings.timeout), stream=True, allow_redirects=False
        ) as response:
            status = response.status_code
            reader = BodyReader(settings, start)
            # read1: one socket read per call, so a server trickling bytes still meets the deadline check.
            while chunk := response.raw.read1(CHUNK_SIZE, decode_content=True):
                if not reader.add(chunk, time.perf_counter()):
                    break
            return reader.result(url, status, response.headers)
    except (requests.RequestException, urllib3.exceptions.HTTPError, OSError, ValueError) as exc:
        # OSError covers our DeadlineExceeded; ValueError, urllib3's LocationParseError for malformed URLs.
        return error_result(url, _error_kind(exc), exc, (time.perf_counter() - start) * 1000, status)
