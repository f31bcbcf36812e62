"""Every route, every role, two orgs: who may call what, and nothing crosses a tenant.

Routes come from the app's route table, so a new route joins the matrix without a change here.
What a role may do is derived, not copied: each route's dependencies say which scope it needs
(the mark ``scoped()`` leaves on its dependency), whether it is for people only, for ingest keys
only or for the operator, and ``roles.ROLES`` says which scopes each role carries. A person acts
through a fresh browser session per request (some routes, such as changing one's sign-in, take
no token; and a route that ends sessions must not end the next caller's); a service account
through its token, holding every scope, so its rights are its role's.

Each route is called twice per role: with the caller's own org's ids (in the path, the body and
the query) and with the other org's. The second must fail, and no answer to either may contain
anything of the other org (ids, names, emails) that the request did not itself send.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute, iter_route_contexts
from fastapi.testclient import TestClient

from astralog.api import deps
from astralog.api.routes.elasticsearch import PREFIX as ES_PREFIX
from astralog.api.routes.elasticsearch import _ElasticsearchRoute as ElasticsearchRoute
from astralog.auth.roles import ROLES
from astralog.runtime import Bootstrap, Runtime
from tests.rbac_helpers import ACTOR, Member, add_member, session_cookie

pytestmark = pytest.mark.slow
ALLOWED = -1  # expected: anything but 401/403
PUBLIC = 0  # no credential involved: only the no-leak rule applies


@dataclass
class Tenant:
    org_id: str
    members: dict[str, Member]
    ids: dict[str, str]  # path parameter name -> a real id of this org
    marks: set[str] = field(default_factory=set)  # what must never reach the other org


def _tenant(client: TestClient, runtime: Runtime, org_id: str, source_id: str, tag: str) -> Tenant:
    control = runtime.control
    members = {name: add_member(runtime, org_id, name, tag=tag) for name in ROLES}
    owner = members["owner"].headers
    ledger = control.create_source(org_id, f"{tag}-ledger", "", ACTOR)
    key = control.issue_key(org_id, source_id, ACTOR).info
    token = control.issue_token(org_id, f"{tag}-spare", ["sources:read"], ACTOR).info
    target = control.people.add(org_id, f"{tag}-target@example.com", f"{tag} target", "viewer",
                                [source_id], ACTOR)  # fmt: skip
    account = control.people.add(org_id, f"{tag}-robot", "robot", "ingest", [source_id], ACTOR,
                                 kind="service")  # fmt: skip
    connector = client.post("/v1/connectors", headers=owner, json={
        "name": f"{tag}-bucket", "kind": "s3",
        "config": {"bucket": f"{tag}-logs", "endpoint_url": "http://127.0.0.1:9"},
    })  # fmt: skip
    assert connector.status_code == 201, connector.text
    ids = {
        "org_id": org_id, "source_id": source_id, "key_id": key["id"], "token_id": token["id"],
        "member_id": target["id"], "account_id": account["id"],
        "connector_id": connector.json()["id"],
    }  # fmt: skip
    tenant = Tenant(org_id, members, ids)
    tenant.marks = {*ids.values(), ledger["id"], f"{tag}-ledger", f"{tag}-target@example.com",
                    f"{tag}-robot", f"{tag}-bucket", f"{tag}-logs"}  # fmt: skip
    tenant.marks |= {m.id for m in members.values()} | {m.email for m in members.values()}
    tenant.marks |= {m.token.split("_")[1] for m in members.values()}
    return tenant


@pytest.fixture
def world(client: TestClient, runtime: Runtime, boot: Bootstrap) -> tuple[Tenant, Tenant]:
    acme = _tenant(client, runtime, str(boot.org["id"]), str(boot.source["id"]), "acme")
    globex = runtime.control.create_org("globex", "pro", ACTOR)
    source = runtime.control.create_source(globex["id"], "globex-web", "", ACTOR)
    other = _tenant(client, runtime, globex["id"], source["id"], "globex")
    other.marks |= {"globex", "globex-web", source["id"]}
    return acme, other


# ---- what the route table says ---------------------------------------------------------------


def _calls(dependant: Dependant) -> Iterator[Any]:
    for sub in dependant.dependencies:
        if sub.call is not None:
            yield sub.call
        yield from _calls(sub)


def expectation(route: APIRoute, role: str) -> int:
    """403/404 where the route's dependencies refuse this role; ALLOWED or PUBLIC otherwise."""
    calls = list(_calls(route.dependant))
    if deps.operator_principal in calls:
        return 404  # operator routes look absent to everyone else
    if deps.authenticate not in calls:
        return PUBLIC
    if deps.ingest_principal in calls or deps.org_token_principal in calls:
        return 403  # every caller here is a person or a service account
    if deps.person_principal in calls and not ROLES[role].people:
        return 403
    needed = {getattr(call, deps.SCOPE_MARK) for call in calls if hasattr(call, deps.SCOPE_MARK)}
    return 403 if needed - ROLES[role].scopes else ALLOWED


def routes(app: FastAPI) -> Iterator[tuple[str, APIRoute]]:
    for context in iter_route_contexts(app.routes):
        route = context.original_route
        # The Elasticsearch API's copy at the root answers only Elasticsearch clients' requests;
        # its twin under /v1/es is the same handler and is called here.
        root_copy = isinstance(route, ElasticsearchRoute) and not route.path.startswith(ES_PREFIX)
        if isinstance(route, APIRoute) and not root_copy:
            for method in sorted(route.methods - {"HEAD"}):
                yield method, route


# ---- the requests ----------------------------------------------------------------------------


def _bodies(ids: dict[str, str]) -> dict[tuple[str, str], Any]:
    """Valid bodies where a route needs one to reach its handler; others get ``{}``."""
    reads = {"start": "now-1h", "sources": [ids["source_id"]]}
    return {
        ("POST", "/v1/search"): reads,
        ("POST", "/v1/search/histogram"): reads,
        ("POST", "/v1/search/facets"): reads,
        ("POST", "/v1/sources"): {"name": "matrix-made"},
        ("PUT", "/v1/sources/{source_id}/retention"): {"days": 3},
        ("POST", "/v1/tokens"): {"name": "matrix", "scopes": ["sources:read"]},
        ("POST", "/v1/members"): {
            "email": "new@example.com",
            "role": "viewer",
            "sources": [ids["source_id"]],
        },
        ("PATCH", "/v1/members/{member_id}"): {"role": "viewer", "sources": [ids["source_id"]]},
        ("POST", "/v1/service-accounts"): {
            "name": "matrix-svc",
            "role": "ingest",
            "sources": [ids["source_id"]],
        },
        ("POST", "/v1/service-accounts/{account_id}/tokens"): {
            "name": "matrix",
            "scopes": ["sources:read"],
            "expires_in_days": 1,
        },
        ("PUT", "/v1/org/security-policy"): {
            "require_mfa": False,
            "enforce_sso": False,
            "session_idle_minutes": 30,
            "session_absolute_hours": 12,
        },
        ("PUT", "/v1/connectors/{connector_id}"): {"config": {"bucket": "matrix"}},
        ("POST", "/v1/orgs/{org_id}/domains"): {"domain": "matrix.example"},
        ("POST", "/v1/holds"): {"reason": "m", "case_id": "M-1", "sources": [ids["source_id"]]},
    }


@dataclass
class Answer:
    status: int
    text: str
    sent: str  # everything the request itself carried


def call(
    client: TestClient, method: str, route: APIRoute, headers: dict[str, str], ids: dict[str, str]
) -> Answer:
    path = re.sub(r"\{(\w+):path\}", "_x1", route.path)  # the shape of an Elasticsearch API path
    path = re.sub(r"\{(\w+)\}", lambda m: ids.get(m.group(1), "x1"), path)
    body = _bodies(ids).get((method, route.path), {}) if route.body_field is not None else None
    params = (
        {"sources": ids["source_id"], "start": "now-1h"} if path.startswith("/v1/search") else {}
    )
    sent = f"{path} {json.dumps(body)} {json.dumps(params)}"
    with client.stream(method, path, json=body, params=params, headers=headers) as response:
        streaming = response.headers.get("content-type", "").startswith("text/event-stream")
        text = "" if streaming else response.read().decode(errors="replace")
        return Answer(response.status_code, text + json.dumps(dict(response.headers)), sent)


def _leaks(answer: Answer, other: Tenant) -> list[str]:
    return sorted(m for m in other.marks if m in answer.text and m not in answer.sent)


def test_every_route_every_role_two_orgs(
    client: TestClient, runtime: Runtime, world: tuple[Tenant, Tenant]
) -> None:
    app = client.app
    assert isinstance(app, FastAPI)
    wrong: list[str] = []
    checked = denied = 0
    for me, other in (world, world[::-1]):
        for method, route in routes(app):
            for role, who in me.members.items():
                expected = expectation(route, role)
                for ids, foreign in ((me.ids, False), (other.ids, True)):
                    person = ROLES[role].people
                    headers = session_cookie(runtime, who) if person else who.headers
                    answer = call(client, method, route, headers, ids)
                    named = any(v in answer.sent for v in other.ids.values())
                    where = f"{role} {method} {route.path} {'other' if foreign else 'own'} ids"
                    if leaks := _leaks(answer, other):
                        wrong.append(f"{where}: leaks {leaks} in {answer.text[:200]}")
                    if expected in (403, 404) and answer.status != expected:
                        wrong.append(f"{where}: {answer.status}, expected {expected}")
                    elif expected == ALLOWED and answer.status in (401, 403):
                        wrong.append(f"{where}: {answer.status} {answer.text[:200]}")
                    elif expected == ALLOWED and foreign and answer.status < 400 and named:
                        wrong.append(f"{where}: {answer.status} with another org's ids")
                    checked += 1
                    denied += expected in (403, 404)
    assert not wrong, "\n".join(wrong[:40]) + f"\n... {len(wrong)} in all"
    assert checked > 1000 and denied > 300, (checked, denied)


def test_the_expectations_are_derived_not_blanket(client: TestClient) -> None:
    """A guard on the guard: the derived table tells the roles apart where the brief says so."""
    app = client.app
    assert isinstance(app, FastAPI)
    table = {(m, r.path): {role: expectation(r, role) for role in ROLES} for m, r in routes(app)}
    assert table[("PUT", "/v1/sources/{source_id}/retention")]["retention_admin"] == ALLOWED
    assert table[("PUT", "/v1/sources/{source_id}/retention")]["storage_admin"] == 403
    assert table[("POST", "/v1/connectors")]["storage_admin"] == ALLOWED
    assert table[("POST", "/v1/connectors")]["retention_admin"] == 403
    assert table[("POST", "/v1/search")]["viewer"] == ALLOWED
    assert table[("POST", "/v1/search")]["ingest"] == 403
    assert table[("POST", "/v1/sources/{source_id}/keys")]["ingest"] == ALLOWED
    assert table[("POST", "/v1/members")]["member"] == 403
    assert table[("POST", "/v1/members")]["admin"] == ALLOWED
    assert table[("GET", "/v1/orgs")]["owner"] == 404
    assert table[("POST", "/v1/holds")]["owner"] == ALLOWED
    assert table[("POST", "/v1/holds")]["admin"] == 403
    assert table[("GET", "/v1/holds")]["retention_admin"] == ALLOWED
    assert table[("POST", "/v1/orgs/{org_id}/holds/{hold_id}/approve")]["owner"] == 404


# Routes any caller of an org may use, whatever its role: who am I, my org, its retention, roles.
# A new route that reads or changes org data must name its scope, or be added here on purpose.
UNSCOPED = {
    ("GET", "/v1/session"),
    ("DELETE", "/v1/session"),
    ("GET", "/v1/org"),
    ("GET", "/v1/retention"),
    ("GET", "/v1/roles"),
}


def test_no_org_route_forgets_its_scope(client: TestClient) -> None:
    app = client.app
    assert isinstance(app, FastAPI)
    special = {deps.operator_principal, deps.ingest_principal, deps.person_principal}
    unscoped = set()
    for method, route in routes(app):
        calls = list(_calls(route.dependant))
        if deps.authenticate not in calls or special & set(calls):
            continue
        if not any(hasattr(call, deps.SCOPE_MARK) for call in calls):
            unscoped.add((method, route.path))
    assert unscoped == UNSCOPED
