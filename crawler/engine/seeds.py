"""Reading seeds: from files (one URL a line, `#` comments) and from URLs given on the command line."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from crawler.engine.urls import SCHEMES, canonical

_INLINE_COMMENT = re.compile(r"\s+#.*$")
_SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*):")  # RFC 3986: what a URL with a scheme starts with
_FILE_SUFFIXES = frozenset({"txt", "csv", "tsv", "lst", "list", "json", "jsonl", "urls"})  # not top-level domains
_HOST_AND_PORT = re.compile(r"[^/?#:\s]+:[0-9]*(?:[/?#].*)?")  # "127.0.0.1:8000/docs": no scheme, a port


class SeedError(Exception):
    """A seed source that cannot be read at all (missing file, not text)."""


@dataclass(frozen=True, slots=True)
class SeedProblem:
    """One seed that was skipped, and where it came from."""

    source: str
    line: int | None
    text: str
    reason: str

    def __str__(self) -> str:
        where = f"{self.source}:{self.line}" if self.line is not None else self.source
        return f"{where}: {self.reason}: {self.text!r}"


def meant_url(text: str) -> str | None:
    """The http URL that a seed without a scheme most likely means ("example.org", "127.0.0.1:8000/docs" ->
    "http://127.0.0.1:8000/docs"), as browsers and wget read one; None for text that has a scheme of its
    own ("javascript:alert(1)", "mailto:x") or that names no host with a dot, a port or "localhost"."""
    if _SCHEME.match(text) and not _HOST_AND_PORT.fullmatch(text):
        return None
    try:
        url = canonical(f"http://{text}")
    except ValueError:
        return None
    authority = url.removeprefix("http://").partition("/")[0]
    if authority.rpartition(".")[2] in _FILE_SUFFIXES:  # "seeds.txt": a file name, not a host
        return None
    return url if "." in authority or ":" in authority or authority == "localhost" else None


def _check(text: str) -> tuple[str | None, str]:
    """(canonical URL, "") for a usable seed, or (None, why not)."""
    if " " in text or "\t" in text:
        return None, "more than one thing on the line"
    if "://" not in text:
        meant = meant_url(text)
        if meant is not None:
            return None, f"not a URL (no scheme); did you mean {meant}?"
        named = _SCHEME.match(text)
        if named is not None:
            return None, f"unsupported scheme {named.group(1).lower()!r} (only http and https are crawled)"
        return None, "not a URL"
    scheme = text.partition(":")[0].lower()
    if scheme not in SCHEMES:
        return None, f"unsupported scheme {scheme!r} (only http and https are crawled)"
    try:
        return canonical(text), ""
    except ValueError:
        return None, "not a valid URL (a browser would reject it too)"


def _read_lines(path: Path) -> list[str]:
    try:
        return path.read_text(encoding="utf-8-sig").splitlines()
    except FileNotFoundError:
        raise SeedError(f"seed file not found: {path}") from None
    except IsADirectoryError:
        raise SeedError(f"seed file is a directory: {path}") from None
    except UnicodeDecodeError as exc:
        raise SeedError(f"seed file is not UTF-8 text: {path} ({exc.reason} at byte {exc.start})") from None
    except OSError as exc:
        raise SeedError(f"cannot read seed file {path}: {exc.strerror}") from None


def load_seeds(sources: Iterable[str]) -> tuple[list[str], list[SeedProblem]]:
    """Canonical seed URLs (duplicates merged, first order kept) and the problems with the skipped ones.

    Each source is a URL (it contains `://`) or the path of a seed file. Raises `SeedError` for a file
    that cannot be read; one that does not exist says which URL the source probably meant, if any.
    """
    seeds: dict[str, None] = {}
    problems: list[SeedProblem] = []
    for source in sources:
        url_given = "://" in source
        if not url_given and not Path(source).exists():
            meant = meant_url(source)
            if meant is not None:  # "example.org", "127.0.0.1:8000"
                raise SeedError(f"seed file not found: {source}; did you mean {meant}?")
            url_given = _SCHEME.match(source) is not None  # "javascript:alert(1)": skipped, saying why
        if url_given:
            entries: list[tuple[int | None, str]] = [(None, source.strip())]
            label = "command line"
        else:
            lines = _read_lines(Path(source))
            entries = [(number, _INLINE_COMMENT.sub("", line).strip()) for number, line in enumerate(lines, 1)]
            label = source
        for number, text in entries:
            if not text or text.startswith("#"):
                continue
            url, reason = _check(text)
            if url is None:
                problems.append(SeedProblem(label, number, text, reason))
            else:
                seeds.setdefault(url, None)
    return list(seeds), problems
