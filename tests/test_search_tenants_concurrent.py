"""Two orgs searching one app at the same time each see only their own events, with exact
counts: searches, histograms, facets and context run on cursors of one shared DuckDB database,
so anything a search names there must stay its own (real threads against a real app)."""

from __future__ import annotations

import json
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from astralog.runtime import Bootstrap, Runtime
from astralog.settings import Settings, load_settings
from tests.conftest import bearer
from tests.test_byob import FAST, committed

POSTS, PER_POST = 4, {"acme": 6, "globex": 9}  # each post its own batch file
ROUNDS = 12  # of every read, per org, all at once


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return load_settings(data_dir=tmp_path / "data", **FAST)


class Tenant:
    def __init__(self, name: str, org_id: str, token: str, ingest_key: str) -> None:
        self.name, self.org_id = name, org_id
        self.headers, self.key = bearer(token), bearer(ingest_key)
        self.total = POSTS * PER_POST[name]

    def seed(self, client: TestClient, runtime: Runtime) -> None:
        start = datetime.now(UTC) - timedelta(minutes=30)
        for post in range(POSTS):
            lines = []
            for i in range(PER_POST[self.name]):
                at = start + timedelta(seconds=post * 60 + i)
                lines.append({"timestamp": at.isoformat(), "message": f"{self.name} {post}.{i}"})
            body = "\n".join(json.dumps(line) for line in lines)
            answer = client.post("/v1/ingest", content=body, headers=self.key)
            assert answer.json()["accepted"] == len(lines), answer.text
            committed(runtime, self.org_id, (post + 1) * PER_POST[self.name])


def globex(client: TestClient, boot: Bootstrap) -> Tenant:
    op = bearer(boot.operator_token)
    org = client.post("/v1/orgs", json={"name": "globex", "plan": "pro"}, headers=op).json()
    scopes = ["sources:write", "keys:write", "logs:read"]
    token = client.post(
        f"/v1/orgs/{org['id']}/tokens", json={"name": "admin", "scopes": scopes}, headers=op
    ).json()["token"]
    source = client.post("/v1/sources", json={"name": "web"}, headers=bearer(token)).json()
    key = client.post(f"/v1/sources/{source['id']}/keys", headers=bearer(token)).json()["key"]
    return Tenant("globex", org["id"], token, key)


def reads(client: TestClient, tenant: Tenant) -> list[Callable[[], None]]:
    """Each read of ``tenant``, checking its answer holds its own events and exact counts."""
    scope = {"start": "now-1h"}

    def own(events: list[dict[str, Any]]) -> list[str]:
        bodies = [str(e["body"]) for e in events]
        assert all(b.startswith(f"{tenant.name} ") for b in bodies), (tenant.name, bodies)
        return bodies

    def post(path: str, body: dict[str, Any]) -> dict[str, Any]:
        answer = client.post(path, json=scope | body, headers=tenant.headers)
        assert answer.status_code == 200, answer.text
        return dict(answer.json())

    def everything() -> None:
        assert len(own(post("/v1/search", {"limit": 1000})["events"])) == tenant.total

    def newest() -> None:  # stops early: reads the newest files first
        first = PER_POST[tenant.name] - 1
        assert own(post("/v1/search", {"limit": 3})["events"])[0] == f"{tenant.name} 3.{first}"

    def histogram() -> None:
        buckets = post("/v1/search/histogram", {})["buckets"]
        assert sum(b["total"] for b in buckets) == tenant.total

    def facets() -> None:
        values = post("/v1/search/facets", {"fields": ["source"]})["facets"]["source"]
        assert sum(v["count"] for v in values) == tenant.total and len(values) == 1

    def context() -> None:
        found = post("/v1/search", {"limit": 1, "query": f'"{tenant.name} 2.1"'})["events"]
        assert own(found) == [f"{tenant.name} 2.1"], (tenant.name, found)
        anchor = found[0]
        answer = client.get(
            "/v1/search/context",
            params={"event_id": anchor["event_id"], "before": 2, "after": 2},
            headers=tenant.headers,
        )
        assert answer.status_code == 200, answer.text
        assert own(answer.json()["events"])[1:4] == [f"{tenant.name} 2.{i}" for i in (0, 1, 2)]

    return [everything, newest, histogram, facets, context]


def test_two_orgs_searching_at_once_see_only_their_own_events(
    client: TestClient, runtime: Runtime, boot: Bootstrap
) -> None:
    acme = Tenant("acme", str(boot.org["id"]), boot.admin_token, boot.ingest_key)
    other = globex(client, boot)
    for tenant in (acme, other):
        tenant.seed(client, runtime)
    work = [read for _ in range(ROUNDS) for t in (acme, other) for read in reads(client, t)]
    with ThreadPoolExecutor(max_workers=8) as pool:
        running = [(read.__name__, pool.submit(read)) for read in work]
    wrong = [f"{name}: {done.exception()!r}"[:300] for name, done in running if done.exception()]
    assert wrong == [], f"{len(wrong)} of {len(work)} answers wrong:\n" + "\n".join(wrong)
