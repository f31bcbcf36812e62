"""Plans administered by the operator: list, define, edit (PlanDefined events), with effects at
once on limits and retention, actionable refusals, and invisibility to everyone else."""

from __future__ import annotations

import json
from typing import Any

import pytest
from fastapi.testclient import TestClient

from astralog.cli import main
from astralog.controlplane import projections
from astralog.runtime import Bootstrap, Runtime
from astralog.settings import Settings
from tests.conftest import bearer


def _state(runtime: Runtime) -> tuple[tuple[int, str], dict[str, Any]]:
    store = runtime.control.store
    return store.head(), projections.dump(store.conn)


def _problem(response: Any, status: int) -> str:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    detail: str = response.json()["detail"]
    assert detail
    return detail


def test_operator_lists_defines_and_edits_plans(
    client: TestClient, boot: Bootstrap, runtime: Runtime
) -> None:
    op = bearer(boot.operator_token)
    plans = {p["name"]: p for p in client.get("/v1/plans", headers=op).json()}
    assert set(plans) == {"free", "pro", "enterprise"}
    assert plans["pro"]["limits"]["retention_days"] == 30 and plans["pro"]["orgs"] == 1

    made = client.post(
        "/v1/plans",
        json={"name": "team", "based_on": "pro", "limits": {"max_sources": 10}},
        headers=op,
    )
    assert made.status_code == 201, made.text
    assert made.json()["limits"] == {**plans["pro"]["limits"], "max_sources": 10}
    org = client.post("/v1/orgs", json={"name": "acme", "plan": "team"}, headers=op).json()
    assert org["limits"]["max_sources"] == 10

    edited = client.put("/v1/plans/team", json={"limits": {"max_sources": 12}}, headers=op)
    assert edited.status_code == 200, edited.text
    assert edited.json()["limits"]["max_sources"] == 12
    # The org's limits follow at once: nothing cached, nothing to restart.
    assert client.get(f"/v1/orgs/{org['id']}", headers=op).json()["limits"]["max_sources"] == 12
    recorded = [r for r in runtime.control.store.records() if r.aggregate_id == "plan:team"]
    assert [(r.type, r.version) for r in recorded] == [("PlanDefined", 1), ("PlanDefined", 2)]
    assert json.loads(recorded[-1].payload)["limits"]["max_sources"] == 12


def test_shrinking_retention_names_the_sources_it_clamps(
    client: TestClient, boot: Bootstrap, runtime: Runtime
) -> None:
    op, admin = bearer(boot.operator_token), bearer(boot.admin_token)
    source = boot.source["id"]
    put = client.put(f"/v1/sources/{source}/retention", json={"days": 20}, headers=admin)
    assert put.status_code == 200, put.text
    before = _state(runtime)
    detail = _problem(
        client.put("/v1/plans/pro", json={"limits": {"retention_days": 7}}, headers=op), 409
    )
    assert "demo/default (20 days)" in detail and "clamp" in detail
    assert _state(runtime) == before

    done = client.put(
        "/v1/plans/pro", json={"limits": {"retention_days": 7}, "clamp": True}, headers=op
    )
    assert done.status_code == 200, done.text
    assert done.json()["clamped_sources"] == [
        {"org": "demo", "source": "default", "retention_days": 20, "effective_days": 7}
    ]
    retention = client.get("/v1/retention", headers=admin).json()
    assert retention["plan_retention_days"] == 7
    assert retention["sources"][0]["effective_days"] == 7


@pytest.mark.parametrize(
    ("method", "path", "body", "words"),
    [
        ("post", "/v1/plans", {"name": "Bad Name!", "limits": {}}, "invalid plan name"),
        ("post", "/v1/plans", {"name": "pro", "based_on": "pro", "limits": {}}, "already exists"),
        ("post", "/v1/plans", {"name": "x", "limits": {"retention_days": 1}}, "missing limits"),
        ("post", "/v1/plans", {"name": "x", "based_on": "gold", "limits": {}}, "unknown plan"),
        ("put", "/v1/plans/pro", {"limits": {"retention_dayz": 3}}, "unknown plan limits"),
        ("put", "/v1/plans/pro", {"limits": {"retention_days": 0}}, "positive"),
        ("put", "/v1/plans/pro", {"limits": {"retention_days": 10**30}}, "at most"),
        ("put", "/v1/plans/pro", {"limits": {"retention_days": "30"}}, "positive"),
        ("put", "/v1/plans/pro", {"limits": {"byob": 1}}, "true or false"),
        ("put", "/v1/plans/pro", '{"limits": {"query_timeout_seconds": 1e400}}', "at most"),
        ("put", "/v1/plans/pro", '{"limits": {"query_timeout_seconds": NaN}}', "at most"),
        ("put", "/v1/plans/pro", {"limits": {}}, "no limits"),
        ("put", "/v1/plans/gold", {"limits": {"max_sources": 3}}, "unknown plan"),
        ("put", "/v1/plans/pro", {"limits": [1]}, ""),
        ("put", "/v1/plans/pro", {"limits": {"max_sources": 3}, "extra": 1}, ""),
    ],
)
def test_hostile_plan_input_is_refused_with_a_reason(
    client: TestClient,
    boot: Bootstrap,
    runtime: Runtime,
    method: str,
    path: str,
    body: dict[str, Any] | str,
    words: str,
) -> None:
    """``body`` as text is sent as it is: JSON that Python's encoder would refuse to write."""
    before = _state(runtime)
    content = body if isinstance(body, str) else json.dumps(body)
    headers = bearer(boot.operator_token) | {"Content-Type": "application/json"}
    response = getattr(client, method)(path, content=content, headers=headers)
    assert response.status_code in (400, 404, 409, 422), response.text
    assert words in response.json()["detail"] if words else response.status_code == 422
    assert _state(runtime) == before


def test_plans_do_not_exist_for_anyone_but_the_operator(
    client: TestClient, boot: Bootstrap, runtime: Runtime
) -> None:
    before = _state(runtime)
    for headers in ({}, bearer(boot.admin_token), bearer(boot.ingest_key), bearer("alo_x")):
        _problem(client.get("/v1/plans", headers=headers), 404)
        _problem(client.post("/v1/plans", json={"name": "x", "limits": {}}, headers=headers), 404)
        body = {"limits": {"retention_days": 1}}
        _problem(client.put("/v1/plans/pro", json=body, headers=headers), 404)
    assert _state(runtime) == before


def test_cli_plans(
    settings: Settings, boot: Bootstrap, capsys: pytest.CaptureFixture[str], monkeypatch: Any
) -> None:
    monkeypatch.setenv("ASTRALOG_DATA_DIR", str(settings.data_dir))
    assert main(["plans", "define", "--name", "team", "--based-on", "free"]) == 0
    assert json.loads(capsys.readouterr().out)["limits"]["retention_days"] == 3
    edit = ["plans", "edit", "--name", "team", "--limits", '{"retention_days": 9}']
    assert main(edit) == 0
    capsys.readouterr()
    assert main(["plans", "list"]) == 0
    listed = {p["name"]: p for p in json.loads(capsys.readouterr().out)}
    assert listed["team"]["limits"]["retention_days"] == 9
    assert main(["plans", "edit", "--name", "team"]) == 2
    assert "--limits" in capsys.readouterr().err
    assert main(["plans", "edit", "--name", "team", "--limits", '{"byob": "no"}']) == 2
    assert "true or false" in capsys.readouterr().err
