"""What installs an optional part of the crawler (its extras in pyproject.toml), said the same way everywhere."""

from __future__ import annotations

import importlib.metadata


def install_hint(extra: str) -> str:
    """The pip command that installs what the extra `extra` needs, from the installed package's own metadata:
    `pip install "datasette<1.0,>=0.65"` for "serve". It runs wherever the user is, unlike `".[serve]"`, which
    needs the project's directory, or `"crawler[serve]"`, which pip would look for on PyPI."""
    try:
        requirements = importlib.metadata.requires("crawler") or []
    except importlib.metadata.PackageNotFoundError:  # run from a source tree that was never installed
        return f'pip install ".[{extra}]" (in the crawler project directory)'
    wanted = [
        requirement.partition(";")[0].strip()
        for requirement in requirements
        if requirement.partition(";")[2].replace(" ", "").replace("'", '"') == f'extra=="{extra}"'
    ]
    return "pip install " + " ".join(f'"{requirement}"' for requirement in wanted)
