"""One GET with requests, within a total deadline and a size cap, its exceptions turned into `FetchResult`
values; shared by the process, thread and gevent backends, which differ only in how they run it.

requests' timeouts bound the connection and each socket read, not the response: a server trickling its headers
or body holds a request for as long as it likes. So the session's connections put their socket under the
current request's deadline when they wait for its response (a new connection or a reused keep-alive one alike),
and the reaper thread shuts the socket down when the deadline passes (`fetchers.reaper`).

requests and urllib3 also re-encode the URL they are given (they unescape `%41`, escape `|`, upper-case escapes), so
a server would not receive what a browser sends. The URL the engine gives is already what a browser sends (the
WHATWG serialisation), so the connections put its path and query on the request line byte for byte."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Mapping
from typing import Any

import requests
import requests.structures
import requests.utils
import urllib3
import urllib3.connection
import urllib3.poolmanager
import urllib3.response

from fetchers.base import (
    BodyReader,
    DeadlineExceeded,
    ErrorKind,
    FetchResult,
    FetchSettings,
    Headers,
    environment_matters,
    error_result,
    os_error_kind,
    split_target,
)
from fetchers.reaper import REAPER, Watch, WatchGroup

CHUNK_SIZE = 64 * 1024
READ_BACKSTOP = 1.0  # seconds the socket read timeout adds to the deadline, so that the reaper always ends first

# The deadline and request target of the request this thread (a greenlet, under gevent) is making, for its
# connection to find.
_current = threading.local()


def _exact(target: str) -> str:
    # urllib3 hands over its re-encoded origin-form target; a proxy's absolute-form one is left to it.
    exact: str | None = getattr(_current, "target", None)
    return exact if exact is not None and target.startswith("/") else target


def _watch(sock: Any) -> None:
    watch: Watch | None = getattr(_current, "watch", None)
    if watch is not None and sock is not None:
        REAPER.attach(watch, sock)


class _DeadlineHTTPConnection(urllib3.connection.HTTPConnection):
    def putrequest(self, method: str, url: str, *args: Any, **kwargs: Any) -> None:
        super().putrequest(method, _exact(url), *args, **kwargs)

    def getresponse(self) -> urllib3.response.HTTPResponse:  # type: ignore[override]  # as urllib3's own
        _watch(self.sock)
        return super().getresponse()


class _DeadlineHTTPSConnection(urllib3.connection.HTTPSConnection):
    def putrequest(self, method: str, url: str, *args: Any, **kwargs: Any) -> None:
        super().putrequest(method, _exact(url), *args, **kwargs)

    def getresponse(self) -> urllib3.response.HTTPResponse:  # type: ignore[override]  # as urllib3's own
        _watch(self.sock)  # an SSLSocket, its handshake done
        return super().getresponse()


class _DeadlineHTTPConnectionPool(urllib3.HTTPConnectionPool):
    ConnectionCls = _DeadlineHTTPConnection


class _DeadlineHTTPSConnectionPool(urllib3.HTTPSConnectionPool):
    ConnectionCls = _DeadlineHTTPSConnection


_POOL_CLASSES: dict[str, type[urllib3.HTTPConnectionPool]] = {
    "http": _DeadlineHTTPConnectionPool,
    "https": _DeadlineHTTPSConnectionPool,
}


def _use_deadline_pools(manager: urllib3.PoolManager) -> None:
    # urllib3's own pool classes are replaced; a SOCKS proxy manager's (from requests[socks]) are left alone.
    if manager.pool_classes_by_scheme is urllib3.poolmanager.pool_classes_by_scheme:
        manager.pool_classes_by_scheme = _POOL_CLASSES


class DeadlineAdapter(requests.adapters.HTTPAdapter):
    """requests' adapter, its connections (direct or through an HTTP proxy) under the current request's deadline."""

    def init_poolmanager(
        self, connections: int, maxsize: int, block: bool = requests.adapters.DEFAULT_POOLBLOCK, **pool_kwargs: Any
    ) -> None:
        """Create the pool manager as requests does, with connections that watch the deadline."""
        super().init_poolmanager(connections, maxsize, block, **pool_kwargs)
        _use_deadline_pools(self.poolmanager)

    def proxy_manager_for(self, proxy: str, **proxy_kwargs: Any) -> urllib3.ProxyManager:
        """The manager for `proxy`, as requests makes it, with connections that watch the deadline."""
        manager: urllib3.ProxyManager = super().proxy_manager_for(proxy, **proxy_kwargs)
        _use_deadline_pools(manager)
        return manager


class _EngineRedirects(requests.Session):
    """A session that leaves redirects to the engine entirely. Even told not to follow one, requests prepares
    the next request for `Response.next`: it reads the whole 3xx body (past the size cap) and parses the
    `Location`, so a malformed one made a redirect a connection error on these backends alone."""

    def resolve_redirects(self, *args: Any, **kwargs: Any) -> Iterator[Any]:
        """Nothing: the engine resolves a redirect's target as a browser does and puts it in the frontier."""
        return iter(())


def new_session(settings: FetchSettings) -> requests.Session:
    """A session for one worker: keep-alive connections under a total deadline, our User-Agent, and proxies
    from the environment if it sets any. Redirects are returned, never followed."""
    session = _EngineRedirects()
    session.headers["User-Agent"] = settings.user_agent
    session.trust_env = environment_matters()
    for prefix in ("http://", "https://"):
        session.mount(prefix, DeadlineAdapter())
    return session


def _open(
    session: requests.Session, url: str, headers: Headers | None, timeout: tuple[float, float]
) -> requests.Response:
    """What `session.get(url, headers=headers, timeout=timeout, stream=True, allow_redirects=False)` does, in
    requests' own public steps (a `PreparedRequest`, then `Session.send`), minus work that changes nothing here.
    `Session.request` copies the session's cookie jar into a new one for every request and merges its settings
    through `typing` protocol checks: a sixth of a request's CPU, one request at a time (0.36-0.39 ms against
    0.43-0.46 a page of the bench site). Here the jar is read as it is (the same Cookie header), the headers are
    merged with a plain update, and the environment is read only when `environment_matters()` said so when the
    session was made (`trust_env`). For the sessions `new_session` makes: no session-wide auth or params."""
    request = requests.PreparedRequest()
    merged = requests.structures.CaseInsensitiveDict(session.headers)
    if headers:
        merged.update(headers)
    auth = requests.utils.get_netrc_auth(url) if session.trust_env else None
    request.prepare(method="GET", url=url, headers=merged, cookies=session.cookies, auth=auth, hooks=session.hooks)
    options: Mapping[str, Any] = {"stream": True}  # and the session's proxies, verify and cert, which send() adds
    if session.trust_env:
        options = session.merge_environment_settings(request.url, {}, True, None, None)
    return session.send(request, timeout=timeout, allow_redirects=False, **options)


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


def _get(session: requests.Session, url: str, settings: FetchSettings, start: float, watch: Watch,
         headers: Headers | None) -> FetchResult:  # fmt: skip
    status = None
    try:
        # Connecting may take no longer than the whole request. The reaper ends the request at its deadline; the
        # read timeout, a little longer, is only a backstop.
        timeout = (min(settings.connect_timeout, settings.timeout), settings.timeout + READ_BACKSTOP)
        with _open(session, url, headers, timeout) as response:
            if watch.expired:  # the headers were cut off by the deadline: their status is not the response's
                raise DeadlineExceeded.after(settings.timeout)
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


def fetch(session: requests.Session, url: str, settings: FetchSettings, group: WatchGroup | None = None,
          headers: Headers | None = None) -> FetchResult:  # fmt: skip
    """GET `url` (with `headers` besides the session's) without following redirects, within `settings.timeout`
    seconds from connecting to the last byte. A network failure comes back as a result, a deadline passed as a
    `timeout` one; `group` lets the caller end the request early (`REAPER.expire_group`)."""
    start = time.perf_counter()
    watch = _current.watch = REAPER.watch(settings.timeout, group)
    _current.target = split_target(url)[1]
    result = None
    try:
        result = _get(session, url, settings, start, watch, headers)
    except Exception:
        if not watch.expired:
            raise
        # else: whatever a socket shut down under it made the HTTP library raise, the deadline is the cause
    finally:
        _current.watch = _current.target = None
        expired = REAPER.release(watch)
    if result is None or expired:
        status = result.status if result is not None else None
        elapsed_ms = (time.perf_counter() - start) * 1000
        return error_result(url, ErrorKind.TIMEOUT, DeadlineExceeded.after(settings.timeout), elapsed_ms, status)
    return result
