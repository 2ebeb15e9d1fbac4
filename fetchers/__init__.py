"""Fetch backends, chosen by name and imported on first use (so gevent is never imported unless asked for)."""

from __future__ import annotations

import importlib

from fetchers.base import ErrorKind, Fetcher, FetchResult, FetchSettings, Headers, ResultCallback

__all__ = [
    "BACKENDS",
    "ErrorKind",
    "FetchResult",
    "FetchSettings",
    "Fetcher",
    "Headers",
    "ResultCallback",
    "get_fetcher",
]

# name -> "module:class"; adding a backend is one module and one line here.
BACKENDS: dict[str, str] = {
    "asyncio": "fetchers.asyncio_aiohttp:AsyncioFetcher",
    "thread": "fetchers.thread_pool:ThreadFetcher",
    "process": "fetchers.process_pool:ProcessFetcher",
    "gevent": "fetchers.gevent_pool:GeventFetcher",
}


def get_fetcher(name: str) -> type[Fetcher]:
    """Return the fetcher class registered as `name`; a `ValueError` lists the valid names otherwise."""
    try:
        target = BACKENDS[name]
    except KeyError:
        raise ValueError(f"unknown backend {name!r}; choose one of: {', '.join(BACKENDS)}") from None
    module_name, class_name = target.split(":")
    fetcher: type[Fetcher] = getattr(importlib.import_module(module_name), class_name)
    return fetcher
