"""The one error tree: every error of the product is drawn in ``astralog.errors``' docstring, and
a body over the limit is the tree's ``PayloadTooLarge`` however it arrives."""

from __future__ import annotations

import importlib
import pkgutil
import re
from collections.abc import Iterator

import pytest
from fastapi import FastAPI, Request
from fastapi.testclient import TestClient

import astralog
import astralog.connectors
from astralog import errors
from astralog.api import problems
from astralog.api.middleware import PROBLEM_BASE, BodyLimit


def every_error() -> set[type[errors.AstralogError]]:
    for package in (astralog, astralog.connectors):
        for module in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
            importlib.import_module(module.name)
    found: set[type[errors.AstralogError]] = set()
    todo = [errors.AstralogError]
    while todo:
        for sub in todo.pop().__subclasses__():
            found.add(sub)
            todo.append(sub)
    return found


def test_every_error_is_in_the_tree_with_its_status() -> None:
    drawn = dict(re.findall(r"[├└]── (\w+) \((\d+|raised)", errors.__doc__ or ""))
    public = {e for e in every_error() if not e.__name__.startswith("_")}
    missing = sorted(e.__name__ for e in public if e.__name__ not in drawn)
    assert missing == [], f"add these to the tree in astralog/errors.py's docstring: {missing}"
    wrong = sorted(
        e.__name__
        for e in public
        if drawn[e.__name__].isdigit() and int(drawn[e.__name__]) != e.status
    )
    assert wrong == [], f"statuses in the tree differ from the classes: {wrong}"


def small_app(limit: int) -> TestClient:
    app = FastAPI()
    problems.install(app)

    @app.post("/echo")
    async def echo(request: Request) -> dict[str, int]:
        return {"bytes": len(await request.body())}

    @app.post("/parsed")
    async def parsed(document: dict[str, str]) -> dict[str, int]:
        return {"fields": len(document)}

    app.add_middleware(BodyLimit, default_limit=limit, ingest_limit=limit)
    return TestClient(app)


@pytest.mark.parametrize("path", ["/echo", "/parsed"])
def test_a_body_over_the_limit_is_the_same_problem_declared_or_streamed(path: str) -> None:
    """``/parsed`` has FastAPI parse the body, which turns most errors into a 400."""
    client = small_app(limit=100)
    body = b'{"x": "' + b"x" * 150 + b'"}'

    def chunks() -> Iterator[bytes]:  # no Content-Length: counted as it streams in
        yield from (body[i : i + 40] for i in range(0, len(body), 40))

    json = {"content-type": "application/json"}
    declared = client.post(path, content=body, headers=json)
    streamed = client.post(path, content=chunks(), headers=json)
    for response in (declared, streamed):
        assert response.status_code == 413, response.text
        assert response.headers["content-type"].startswith("application/problem+json")
    expected = {
        "type": PROBLEM_BASE + errors.PayloadTooLarge.slug,
        "title": errors.PayloadTooLarge.title,
        "status": 413,
        "detail": "request body is larger than 100 bytes; send smaller batches",
        "instance": path,
    }
    assert declared.json() == expected
    assert streamed.json() == expected
    assert client.post(path, content=b'{"x": "y"}', headers=json).is_success
