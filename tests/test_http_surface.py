"""The HTTP surface as an outsider meets it: every route, method and credential kind.

* Operator-only routes answer exactly like a path that does not exist to everyone else, for any
  method and any body.
* Authentication runs before a body is parsed: no credential and a malformed body is 401, an
  ingest key on a management route is 403, never a 422 that tells how the body should look.
* Every response carries the security headers; HTML pages a strict CSP.
* Only the real ingest routes get the large body cap.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.routing import APIRoute, iter_route_contexts
from fastapi.testclient import TestClient
from starlette.routing import Route

from astralog.api import deps
from astralog.api.app import ADMIN_BODY_LIMIT
from astralog.api.middleware import BodyLimit
from astralog.runtime import Bootstrap
from tests.conftest import bearer

METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")
MALFORMED = b'{"name": '
# (method, path pattern) that answer without any credential; every other route authenticates.
PUBLIC = {
    ("GET", "/"),  # the UI; an Elasticsearch probe there is told apart by its headers
    ("GET", "/healthz"),
    ("GET", "/readyz"),
    ("GET", "/metrics"),
    ("POST", "/v1/session"),
    ("GET", "/v1/auth/orgs/{org_name}"),  # an org's sign-in options, before signing in
    ("POST", "/v1/auth/password"),
    ("POST", "/v1/auth/invitations/accept"),
    ("POST", "/v1/auth/invitations/options"),  # the invitation token in the body is the proof
    ("POST", "/v1/auth/invitations/sso"),
    # single sign-on: the browser arrives before it has a session; the provider's back-channel
    # logout proves itself with a signed logout token, not a credential of ours
    ("GET", "/v1/auth/sso/{connection_id}/start"),
    ("GET", "/v1/auth/sso/callback"),
    ("GET", "/v1/auth/sso/logout"),
    ("POST", "/v1/auth/sso/{connection_id}/backchannel-logout"),
    ("GET", "/openapi.json"),
    ("HEAD", "/openapi.json"),
}
PUBLIC_PREFIXES = ("/docs", "/ui/", "/favicon.ico")


def _all(app: FastAPI) -> list[Route]:
    """Every route, those of included routers too (FastAPI keeps those nested)."""
    found = [context.original_route for context in iter_route_contexts(app.routes)]
    return [route for route in found if isinstance(route, Route)]


def _routes(app: FastAPI) -> Iterator[tuple[str, str, Route]]:
    for route in _all(app):
        for method in sorted(route.methods or ()):
            yield method, route.path, route


def _concrete(path: str) -> str:
    # A catch-all ({x:path}) gets an underscore segment, the shape Elasticsearch's API uses.
    path = re.sub(r"\{[^}]+:path\}", "_x1", path)
    return re.sub(r"\{[^}]+\}", "x1", path)


def _is_public(method: str, route: Route) -> bool:
    if route.path.startswith(PUBLIC_PREFIXES) or (method, route.path) in PUBLIC:
        return True
    # the UI's pages: static HTML, the data behind them needs a credential
    return method in ("GET", "HEAD") and route.name.startswith("ui-page")


def _is_operator(route: Route) -> bool:
    """Operator routes (orgs, plans, …) look absent to everyone else: told by the dependency."""
    dependant = getattr(route, "dependant", None)
    return dependant is not None and deps.operator_principal in _calls(dependant)


def _calls(dependant: Any) -> list[Any]:
    found = []
    for sub in dependant.dependencies:
        found.append(sub.call)
        found.extend(_calls(sub))
    return found


@pytest.fixture
def app(client: TestClient) -> FastAPI:
    application = client.app
    assert isinstance(application, FastAPI)
    return application


@pytest.fixture
def credentials(client: TestClient, boot: Bootstrap) -> dict[str, dict[str, str]]:
    """Every kind of caller that is not an operator."""
    return {
        "none": {},
        "garbage bearer": bearer("not-a-key"),
        "wrong scheme": {"Authorization": "Digest abc"},
        "ingest key": bearer(boot.ingest_key),
        "org admin": bearer(boot.admin_token),
        "garbage session": {"Cookie": "astralog_session=forged"},
    }


def _absent(client: TestClient, method: str, path: str, **kwargs: Any) -> tuple[int, Any]:
    response = client.request(method, path, **kwargs)
    body = response.json() if response.content else None
    if isinstance(body, dict):
        body.pop("instance", None)
    return response.status_code, body


def test_operator_routes_answer_like_a_missing_path_to_everyone_else(
    client: TestClient, app: FastAPI, credentials: dict[str, dict[str, str]]
) -> None:
    paths = sorted({_concrete(r.path) for r in _all(app)})
    operator_paths = [p for p in paths if p.startswith("/v1/orgs")]
    assert len(operator_paths) >= 4, operator_paths
    bodies: list[dict[str, Any]] = [{}, {"content": MALFORMED}, {"json": {"name": "x"}}]
    seen = 0
    for path in operator_paths:
        for method in METHODS:
            for who, headers in credentials.items():
                for body in bodies:
                    kwargs = {"headers": {**headers, "Content-Type": "application/json"}, **body}
                    got = _absent(client, method, path, **kwargs)
                    missing = _absent(client, method, f"/v1/no-such{path}", **kwargs)
                    assert got == missing, (method, path, who, body, got)
                    assert got[0] == 404
                    seen += 1
    assert seen > 300


def test_operator_still_gets_405_and_422(client: TestClient, boot: Bootstrap) -> None:
    op = bearer(boot.operator_token)
    assert client.delete("/v1/orgs", headers=op).status_code == 405
    malformed = client.post("/v1/orgs", content=MALFORMED, headers=op)
    assert malformed.status_code == 422, malformed.text


def test_every_route_authenticates_before_it_reads_the_body(
    client: TestClient, app: FastAPI, credentials: dict[str, dict[str, str]]
) -> None:
    checked = 0
    for method, path, route in _routes(app):
        if method == "HEAD" or _is_public(method, route):
            continue
        url = _concrete(path)
        for who in ("none", "garbage bearer", "wrong scheme", "garbage session"):
            headers = {**credentials[who], "Content-Type": "application/json"}
            response = client.request(method, url, content=MALFORMED, headers=headers)
            expected = 404 if _is_operator(route) else 401
            assert response.status_code == expected, (method, path, who, response.text[:300])
            checked += 1
    assert checked > 100


def test_management_routes_refuse_an_ingest_key_before_reading_the_body(
    client: TestClient, app: FastAPI, credentials: dict[str, dict[str, str]]
) -> None:
    checked = 0
    for method, path, route in _routes(app):
        if not isinstance(route, APIRoute) or route.body_field is None:
            continue
        if _is_public(method, route) or _is_operator(route):
            continue
        headers = {**credentials["ingest key"], "Content-Type": "application/json"}
        response = client.request(method, _concrete(path), content=MALFORMED, headers=headers)
        assert response.status_code == 403, (method, path, response.text[:300])
        checked += 1
    assert checked >= 8


# ---- security headers -------------------------------------------------------------------------

HEADERS = {"x-content-type-options": "nosniff", "referrer-policy": "no-referrer"}


@pytest.mark.parametrize(
    ("method", "path", "auth"),
    [
        ("GET", "/openapi.json", False),
        ("GET", "/healthz", False),
        ("GET", "/v1/sources", False),
        ("GET", "/v1/sources", True),
        ("POST", "/v1/search", True),
        ("GET", "/v1/nothing-here", False),
        ("DELETE", "/healthz", False),
        ("POST", "/v1/ingest", False),
        ("GET", "/docs", False),
        ("GET", "/", False),
    ],
)
def test_every_response_carries_the_security_headers(
    client: TestClient, boot: Bootstrap, method: str, path: str, auth: bool
) -> None:
    headers = bearer(boot.admin_token) if auth else {}
    response = client.request(method, path, headers=headers, json={"query": ""})
    for name, value in HEADERS.items():
        assert response.headers.get(name) == value, (path, name, dict(response.headers))
    csp = response.headers.get("content-security-policy", "")
    assert "frame-ancestors 'none'" in csp, (path, csp)
    assert response.headers.get("x-frame-options") == "DENY"
    if response.headers.get("content-type", "").startswith("text/html"):
        assert "script-src 'self'" in csp and "unsafe-inline" not in csp, csp
        assert "default-src 'self'" in csp and "object-src 'none'" in csp, csp


# ---- body cap ---------------------------------------------------------------------------------

INGEST_PATHS = [
    "/v1/ingest",
    "/v1/logs",
    "/loki/api/v1/push",
    "/v1/es/_bulk",
    "/v1/es/web/_bulk",
    "/v1/es/web/_doc",
    "/v1/es/web/_doc/id-1",
    "/v1/es/web/_create/id-1",
    "/_bulk",
    "/web/_bulk",
    "/web/_doc",
    "/web/_doc/id-1",
    "/web/_create/id-1",
]
OTHER_PATHS = [
    "/v1/connectors/x_bulk",
    "/v1/sources/_bulk",
    "/v1/search/_bulk/x",
    "/x_bulk",
    "/a/b/_bulk",
    "/web/_create",
    "/web/_doc/a/b",
    "/v1/ingestion",
    "/v1/ingest/x",
    "/v1/logs/x",
    "/loki/api/v1/pushy",
    "/v1/es_bulk",
    "/_bulkx",
    "/web/_bulk/",
    "//_bulk",
]


@pytest.mark.parametrize("path", INGEST_PATHS)
def test_ingest_routes_get_the_ingest_cap(path: str) -> None:
    limit = BodyLimit(app=None, default_limit=1, ingest_limit=2)  # type: ignore[arg-type]
    assert limit.limit_for(path) == 2


@pytest.mark.parametrize("path", OTHER_PATHS)
def test_other_paths_get_the_admin_cap_whatever_they_contain(path: str) -> None:
    limit = BodyLimit(app=None, default_limit=1, ingest_limit=2)  # type: ignore[arg-type]
    assert limit.limit_for(path) == 1


def test_a_large_body_to_a_bulk_lookalike_is_refused_unread(client: TestClient) -> None:
    body = b"x" * (ADMIN_BODY_LIMIT + 1)
    response = client.put("/v1/connectors/x_bulk", content=body)
    assert response.status_code == 413, response.text
