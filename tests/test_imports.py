"""The house's rules, read from the code: which part of the crawler may import which (each package's docstring
states its own), found by parsing every module's imports, those inside functions included."""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LEAVES = ("fetchers", "parsers", "storage")
# part -> the parts it may import (besides itself). A part is a leaf package, a sub-package of crawler, or one of
# crawler's own modules (words: how things are said; crawler: its version; __main__: the entry point).
ALLOWED: dict[str, set[str]] = {
    "fetchers": set(),
    "parsers": set(),
    "storage": set(),
    "crawler": set(),
    "crawler.words": set(),
    "crawler.site": set(),
    "crawler.engine": {"fetchers", "parsers", "storage", "crawler", "crawler.words"},
    "crawler.views": {"crawler.engine", "storage", "crawler", "crawler.words"},
    "crawler.cluster": {"crawler.engine", "fetchers", "parsers", "storage", "crawler", "crawler.words"},
    "crawler.bench": {
        "crawler.engine", "crawler.cluster", "crawler.views", "crawler.site", "storage", "parsers", "crawler",
        "crawler.words",
    },
    "crawler.commands": {
        "crawler.engine", "crawler.cluster", "crawler.views", "crawler.site", "crawler.bench", "fetchers", "parsers",
        "storage", "crawler", "crawler.words",
    },
    "crawler.__main__": {"crawler.commands"},
}  # fmt: skip


def part(module: str) -> str | None:
    """The part a dotted module name belongs to, or None for anything not ours."""
    top, _, rest = module.partition(".")
    if top in LEAVES:
        return top
    if top != "crawler":
        return None
    first = rest.split(".")[0]
    if not first or not ((ROOT / "crawler" / first).is_dir() or (ROOT / "crawler" / f"{first}.py").is_file()):
        return "crawler"  # the package itself, or a name it defines (`from crawler import __version__`)
    return f"crawler.{first}"


def module_name(path: Path) -> str:
    """`crawler/engine/loop.py` -> `crawler.engine.loop`; a package's `__init__.py` is the package."""
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path, name: str | None = None) -> set[str]:
    """Every module `path` (module `name`, by default its place in the repository) imports, at its top or inside
    a function, absolute or relative."""
    name = name or module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names if part(f"{base}.{alias.name}") is not None)
    return found


def graph() -> dict[str, set[str]]:
    """part -> the other parts its modules import."""
    edges: dict[str, set[str]] = defaultdict(set)
    for package in ("crawler", *LEAVES):
        for path in sorted((ROOT / package).rglob("*.py")):
            source = part(module_name(path))
            assert source is not None
            edges[source].update(target for name in imports(path) if (target := part(name)) not in (None, source))
    return edges


def test_every_part_has_its_rule() -> None:
    assert set(graph()) <= set(ALLOWED), set(graph()) - set(ALLOWED)


@pytest.mark.parametrize("source", sorted(ALLOWED))
def test_a_part_imports_only_what_its_rule_allows(source: str) -> None:
    assert graph().get(source, set()) <= ALLOWED[source]


def test_the_leaves_import_nothing_of_the_crawler_nor_each_other() -> None:
    edges = graph()
    for leaf in LEAVES:
        assert edges.get(leaf, set()) == set(), leaf


def test_the_rules_can_fail(tmp_path: Path) -> None:
    # A module of the engine that imports a command lazily, and the site one that imports the engine relatively.
    engine_module = tmp_path / "sneaky.py"
    engine_module.write_text("def f():\n    from crawler.commands import app\n    return app\n")
    site_module = tmp_path / "__init__.py"
    site_module.write_text("from ..engine import urls\n")
    found = imports(engine_module, "crawler.engine.sneaky")
    assert "crawler.commands" in found and part("crawler.commands") not in ALLOWED["crawler.engine"]
    found = imports(site_module, "crawler.site")
    assert "crawler.engine" in found and part("crawler.engine.urls") not in ALLOWED["crawler.site"]
    assert part("aiohttp.web") is None and part("crawler") == part("crawler.__version__") == "crawler"
