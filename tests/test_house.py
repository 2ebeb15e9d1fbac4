"""House rules of the code base: what the product ships, and what only the tests carry.

The site server that `crawler demo` and the benchmark run answers every resource plainly; the misbehaviours the
tests need (late answers, trickled, stalled, cut or reset bodies, scripted failures) live in `tests.support`.
"""

from __future__ import annotations

import ast
import http.client
import time
import tomllib
from collections.abc import Iterator
from dataclasses import fields
from fnmatch import fnmatchcase
from pathlib import Path

import pytest

from crawler.site.generate import Resource
from crawler.site.server import SiteServer, serve_in_thread
from tests.conftest import page_html
from tests.support.hostile import Behaviour, Hostile, HostileServer, serve_hostile

ROOT = Path(__file__).resolve().parents[1]
PRODUCT = ("crawler", "fetchers", "parsers", "storage")
BEHAVIOURS: tuple[Behaviour, ...] = ("trickle", "stall", "short", "reset")


def product_modules() -> Iterator[tuple[str, ast.Module]]:
    for package in PRODUCT:
        for path in sorted((ROOT / package).rglob("*.py")):
            yield str(path.relative_to(ROOT)), ast.parse(path.read_text(), str(path))


def docstrings(tree: ast.Module) -> set[int]:
    """The ids of the docstring nodes of a module and of its classes and functions."""
    owners = [tree, *(node for node in ast.walk(tree) if isinstance(node, ast.ClassDef | ast.FunctionDef
                                                                     | ast.AsyncFunctionDef))]  # fmt: skip
    return {
        id(owner.body[0].value)
        for owner in owners
        if owner.body and isinstance(owner.body[0], ast.Expr) and isinstance(owner.body[0].value, ast.Constant)
    }


def get(server: SiteServer, path: str) -> tuple[int, dict[str, str], bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        connection.close()


def test_a_resource_is_a_body_a_status_and_headers_only() -> None:
    assert [field.name for field in fields(Resource)] == ["body", "status", "content_type", "headers"]
    assert [field.name for field in fields(Hostile)][:4] == ["body", "status", "content_type", "headers"]


def test_no_product_module_holds_a_misbehaviour_or_imports_the_tests() -> None:
    found = []
    for name, tree in product_modules():
        skip = docstrings(tree)
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and node.value in BEHAVIOURS and id(node) not in skip:
                found.append(f"{name}:{node.lineno}: the behaviour {node.value!r}")
            elif (isinstance(node, ast.Attribute) and node.attr == "SO_LINGER") or (
                isinstance(node, ast.Name) and node.id == "SO_LINGER"
            ):
                found.append(f"{name}:{node.lineno}: SO_LINGER (a reset connection)")
            elif isinstance(node, ast.Import | ast.ImportFrom):
                modules = [alias.name for alias in node.names] if isinstance(node, ast.Import) else [node.module or ""]
                found += [f"{name}:{node.lineno}: imports {m}" for m in modules if m.split(".")[0] == "tests"]
    assert found == []


def test_the_package_ships_no_tests() -> None:
    found = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]["find"]
    for package in ("tests", "tests.support"):
        assert not any(fnmatchcase(package, pattern) for pattern in found["include"]), package


@pytest.mark.parametrize("behaviour", BEHAVIOURS)
def test_the_product_server_answers_a_hostile_resource_plainly(behaviour: Behaviour) -> None:
    body = page_html("Plain", [], filler=2000)
    site: dict[str, Resource] = {"/x.html": Hostile(body, behaviour=behaviour, delay=30, failures=(503,),
                                                    retry_after="60")}  # fmt: skip
    with serve_in_thread(site) as server:
        assert type(server) is SiteServer
        start = time.monotonic()
        status, headers, received = get(server, "/x.html")
    assert time.monotonic() - start < 5  # neither the delay nor the misbehaviour
    assert (status, received.decode()) == (200, body)
    assert "Retry-After" not in headers


def test_the_hostile_server_fails_as_scripted_then_answers_late() -> None:
    body = page_html("Busy", [])
    site: dict[str, Resource] = {
        "/busy.html": Hostile(body, delay=0.3, failures=(503, 429), retry_after="1"),
        "/plain.html": Resource(body),
    }
    with serve_hostile(site) as server:
        assert isinstance(server, HostileServer)
        first, second = get(server, "/busy.html"), get(server, "/busy.html")
        start = time.monotonic()
        third = get(server, "/busy.html")
        late = time.monotonic() - start
        plain = get(server, "/plain.html")
    assert [(status, headers.get("Retry-After")) for status, headers, _ in (first, second)] == [(503, "1"), (429, "1")]
    assert (third[0], third[2].decode()) == (200, body)
    assert "ETag" in third[1]  # then the product server's own answer, validators and all
    assert late >= 0.3
    assert (plain[0], plain[2].decode()) == (200, body)


@pytest.mark.parametrize("behaviour", ["short", "reset"])
def test_the_hostile_server_cuts_a_body_short(behaviour: Behaviour) -> None:
    body = page_html("Cut", [], filler=4000)
    with serve_hostile({"/cut.html": Hostile(body, behaviour=behaviour)}) as server:
        connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
        try:
            connection.request("GET", "/cut.html")
            response = connection.getresponse()
            assert response.getheader("Content-Length") == str(len(body))
            with pytest.raises((http.client.IncompleteRead, ConnectionResetError)):
                response.read()
        finally:
            connection.close()
