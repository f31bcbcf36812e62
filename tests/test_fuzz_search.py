"""Fuzzing the search language and the search API: a query is a tree or a 400, never a crash.

The parser and both SQL compilers are driven directly (fast, thousands of inputs); the search,
histogram, facets, export and tail endpoints get the same queries inside hostile request bodies
through the real app, whose canary events must be found intact afterwards.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from astralog.errors import SyntaxErrorAt
from astralog.query.compile import compile_where
from astralog.query.language import parse
from tests.fuzz_strategies import (
    TIMES,
    FuzzApp,
    budget,
    dumps,
    fuzz_app,
    in_url,
    queries,
    search_bodies,
)

pytestmark = pytest.mark.fuzz
__all__ = ["fuzz_app"]  # the fixture is used by name


@budget(300)
@given(queries())
def test_the_parser_answers_a_tree_or_a_syntax_error(text: str) -> None:
    try:
        node = parse(text)
    except SyntaxErrorAt as exc:
        assert exc.detail, text
        assert 0 <= exc.position <= len(text), (exc.position, text)
        return
    for dialect in ("duckdb", "clickhouse"):
        where, params = compile_where(node, dialect)
        assert where, (text, dialect)
        assert all(isinstance(v, str | int | float) for v in params.values()), params


def _cursors(app: FuzzApp) -> list[str]:
    """Real cursors of the canary pages, which the fuzzers then mangle."""
    body = {"query": f"marker:canary-{app.run}-*", "start": "now-1h", "limit": 2}
    cursor = app.send("POST", "/v1/search", json=body, headers=app.admin).json()["next_cursor"]
    return [cursor] if cursor else []


@pytest.mark.parametrize("endpoint", ["search", "histogram", "facets"])
def test_search_endpoints(fuzz_app: FuzzApp, endpoint: str) -> None:
    path = "/v1/search" if endpoint == "search" else f"/v1/search/{endpoint}"
    cursors = _cursors(fuzz_app)
    headers = {**fuzz_app.admin, "content-type": "application/json"}

    @budget(30)
    @given(search_bodies(endpoint, cursors), st.booleans())
    def run(body: Any, ascii_only: bool) -> None:
        content = dumps(body, ascii_only=ascii_only)
        response = fuzz_app.send("POST", path, content=content, headers=headers)
        if response.status_code == 200:
            assert "range" in response.json()

    run()
    fuzz_app.assert_intact()


PARAMS = st.one_of(queries(), TIMES.map(str), st.sampled_from(["csv", "ndjson", "xml", ""]))


def test_export_and_tail(fuzz_app: FuzzApp) -> None:
    @budget(30)
    @given(
        st.sampled_from(["export", "tail"]),
        st.dictionaries(
            st.sampled_from(["query", "start", "end", "sources", "format"]), PARAMS, max_size=5
        ),
    )
    def run(endpoint: str, params: dict[str, str]) -> None:
        params = {k: in_url(v) for k, v in params.items()}
        with fuzz_app.client.stream(
            "GET", f"/v1/search/{endpoint}", params=params, headers=fuzz_app.admin
        ) as response:
            assert response.status_code < 500, (endpoint, params, response.read()[:300])
            if response.status_code != 200:
                body = response.read()
                assert b"detail" in body, body
            elif endpoint == "export":
                response.read()  # an export streams to its end without failing midway

    run()
    fuzz_app.assert_intact()
