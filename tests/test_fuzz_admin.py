"""Fuzzing every admin request: each route of the OpenAPI document, with bodies of its model.

Routes come from the app itself (``app.openapi()``), so a new route is fuzzed without a change
here. Bodies are generated from the request model's JSON schema, valid-shaped and then broken;
path parameters are real ids of a separate fuzz org or hostile text; credentials vary. The
canary org is never named in a path, so its events must be intact afterwards: anything that
reaches them crossed a tenant boundary.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import pytest
from hypothesis import given
from hypothesis import strategies as st

from astralog.auth.principal import SCOPES
from tests.fuzz_strategies import (
    HOSTILE_TEXT,
    LONE_SURROGATES,
    FuzzApp,
    admin_bodies,
    budget,
    fuzz_app,
    in_url,
    texts,
)

pytestmark = pytest.mark.fuzz
__all__ = ["fuzz_app"]  # the fixture is used by name

# Ingest formats and the search API have their own fuzz modules; a tail never ends by itself.
ELSEWHERE = ("/v1/ingest", "/v1/logs", "/loki/", "/v1/es", "/v1/search/tail")


@dataclass(frozen=True)
class Operation:
    method: str
    path: str
    body: dict[str, Any] | None  # the request body's JSON schema
    query: dict[str, dict[str, Any]]  # query parameter -> its schema
    media: str = "application/json"  # a back-channel logout is a form post


def operations(app: FuzzApp) -> tuple[list[Operation], dict[str, Any]]:
    document = app.client.app.openapi()  # type: ignore[attr-defined]
    found = []
    for path, methods in document["paths"].items():
        if path.startswith(ELSEWHERE):
            continue
        for method, op in methods.items():
            content = op.get("requestBody", {}).get("content", {})
            query = {p["name"]: p["schema"] for p in op.get("parameters", []) if p["in"] == "query"}
            media = next(iter(content), "application/json")
            body = content[media]["schema"] if content else None
            found.append(Operation(method.upper(), path, body, query, media))
    return found, document["components"]["schemas"]


@dataclass(frozen=True)
class FuzzOrg:
    """A second org with one of everything, whose ids the fuzzers put into paths."""

    headers: dict[str, str]
    ids: dict[str, list[str]]


def _created(app: FuzzApp, path: str, body: dict[str, Any], headers: dict[str, str]) -> Any:
    response = app.send("POST", path, json=body, headers=headers)
    assert response.status_code == 201, response.text
    return response.json()


def fuzz_org(app: FuzzApp) -> FuzzOrg:
    org = _created(app, "/v1/orgs", {"name": "fuzz-org", "plan": "pro"}, app.operator)
    body = {"name": "fuzz-admin", "scopes": sorted(SCOPES)}
    token = _created(app, f"/v1/orgs/{org['id']}/tokens", body, app.operator)["token"]
    admin = {"Authorization": f"Bearer {token}"}
    spare = _created(app, "/v1/tokens", {"name": "spare", "scopes": ["logs:read"]}, admin)
    source = _created(app, "/v1/sources", {"name": "fuzz-source"}, admin)
    key = _created(app, f"/v1/sources/{source['id']}/keys", {}, admin)
    connector = {"name": "fuzz-bucket", "kind": "s3", "config": {"bucket": "fuzz-bucket"}}
    connector_id = _created(app, "/v1/connectors", connector, admin)["id"]
    return FuzzOrg(
        admin,
        {
            "org_id": [org["id"]],
            "source_id": [source["id"]],
            "key_id": [key["info"]["id"]],
            "token_id": [spare["info"]["id"]],  # never the fuzz admin's own: it would lock us out
            "connector_id": [connector_id],
        },
    )


def path_values(known: list[str]) -> st.SearchStrategy[str]:
    return st.one_of(
        st.sampled_from(known),
        st.sampled_from(known).map(lambda s: s + "x"),
        texts(),
        HOSTILE_TEXT,
        LONE_SURROGATES,
        st.sampled_from(["..", ".", "%2e%2e", "a/b", "deactivate", "org_" + "0" * 26]),
    )


def _fill(path: str, values: dict[str, str]) -> str:
    for name, value in values.items():
        raw = value.encode("utf-8", "surrogatepass")[:2000]  # httpx refuses URLs past 64 KiB
        path = path.replace("{" + name + "}", quote(raw, safe="") or "%20")
    return path


def test_every_admin_route(fuzz_app: FuzzApp) -> None:
    org = fuzz_org(fuzz_app)
    found, components = operations(fuzz_app)
    assert len(found) > 30, [f"{o.method} {o.path}" for o in found]
    credentials = st.sampled_from(
        [org.headers] * 6
        + [
            fuzz_app.operator,
            {},
            {"Authorization": "Bearer alt_garbage"},
            {"Authorization": "Basic %%%"},
            fuzz_app.ingest,
        ]
    )

    @st.composite
    def requests(draw: st.DrawFn) -> tuple[str, str, dict[str, Any]]:
        op = draw(st.sampled_from(found))
        names = [part[1:-1] for part in op.path.split("/") if part.startswith("{")]
        values = {n: draw(path_values(org.ids.get(n, ["x"]))) for n in names}
        kwargs: dict[str, Any] = {"headers": dict(draw(credentials))}
        if op.body is not None and draw(st.integers(0, 9)):
            if op.media == "application/json":
                kwargs["content"] = draw(admin_bodies(op.body, components))
            else:  # form fields of hostile text
                fields = st.dictionaries(
                    st.sampled_from(sorted(op.body.get("properties", {"x": 0}))), texts(200)
                )
                kwargs["data"] = draw(fields)
            kwargs["headers"]["content-type"] = op.media
        if op.query:
            params = draw(st.dictionaries(st.sampled_from(sorted(op.query)), texts(30)))
            kwargs["params"] = {k: in_url(v) for k, v in params.items()}
        return op.method, _fill(op.path, values), kwargs

    @budget(200)
    @given(requests())
    def run(request: tuple[str, str, dict[str, Any]]) -> None:
        method, path, kwargs = request
        fuzz_app.send(method, path, **kwargs)
        fuzz_app.client.cookies.clear()  # a session cookie from a sign-in must not leak on

    run()
    fuzz_app.assert_intact()
