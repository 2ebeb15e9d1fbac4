"""How the crawler says a few things the same way everywhere: a count with its noun, a size in bytes, an HTTP
status with its phrase, and the command that installs an optional part (its extras in pyproject.toml)."""

from __future__ import annotations

import importlib.metadata
from http import HTTPStatus


def install_hint(extra: str) -> str:
    """The pip command that installs what the extra `extra` needs, from the installed package's own metadata:
    `pip install "datasette<1.0,>=0.65"` for "serve". It runs wherever the user is, unlike `".[serve]"`, which
    needs the project's directory, or `"crawler[serve]"`, which pip would look for on PyPI."""
    from_source = f'pip install ".[{extra}]" (in the crawler project directory)'
    try:
        requirements = importlib.metadata.requires("crawler") or []
    except importlib.metadata.PackageNotFoundError:  # run from a source tree that was never installed
        return from_source
    wanted = [
        requirement.partition(";")[0].strip()
        for requirement in requirements
        if requirement.partition(";")[2].replace(" ", "").replace("'", '"') == f'extra=="{extra}"'
    ]
    if not wanted:  # installed before the extra existed: the source tree has it
        return from_source
    return "pip install " + " ".join(f'"{requirement}"' for requirement in wanted)


def human_bytes(count: float, short: bool = False) -> str:
    """1536 -> '1.5 KB' (powers of 1024, as file managers show); `short` drops a '.0' (2048 -> '2 KB')."""
    for unit in ("B", "KB", "MB", "GB"):
        if abs(count) < 1024 or unit == "GB":
            text = f"{count:.0f}" if unit == "B" else f"{count:.1f}"
            return f"{text.removesuffix('.0') if short else text} {unit}"
        count /= 1024
    raise AssertionError("unreachable")


def counted(count: int, singular: str, plural: str | None = None) -> str:
    """1 -> '1 page', 1359 -> '1,359 pages': a count and its noun, agreeing."""
    noun = singular if count == 1 else (plural or singular + "s")
    return f"{count:,} {noun}"


def status_text(status: int) -> str:
    """404 -> '404 Not Found': a status and its phrase (the number alone for one without a registered phrase)."""
    try:
        return f"{status} {HTTPStatus(status).phrase}"
    except ValueError:
        return str(status)
