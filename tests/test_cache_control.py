"""API answers are never stored by a browser or a proxy: a cached 410 (or a cached list of keys)
outlives the state it described. The UI's assets keep their own caching."""

from __future__ import annotations

from fastapi.testclient import TestClient

from astralog.runtime import Bootstrap
from tests.conftest import bearer


def test_api_json_and_problem_documents_are_no_store(client: TestClient, boot: Bootstrap) -> None:
    admin = bearer(boot.admin_token)
    answers = [
        client.get("/v1/sources", headers=admin),  # JSON
        client.get("/v1/sources"),  # 401 problem
        client.get("/v1/sources/src_missing", headers=admin),  # 404 problem
        client.post("/v1/ingest", content=b"{", headers=bearer(boot.ingest_key)),  # 400 problem
        client.get("/v1/no-such-route"),  # the framework's own 404
    ]
    for answer in answers:
        assert answer.headers["cache-control"] == "no-store", (answer.request.url, answer.text)
    assert [a.status_code for a in answers] == [200, 401, 404, 400, 404]


def test_a_410_of_an_org_pending_deletion_is_not_cached(
    client: TestClient, boot: Bootstrap
) -> None:
    operator = bearer(boot.operator_token)
    org = boot.org["id"]
    asked = client.post(f"/v1/orgs/{org}/deletion", json={"reason": "test"}, headers=operator)
    assert asked.status_code == 202, asked.text
    gone = client.get("/v1/sources", headers=bearer(boot.admin_token))
    assert gone.status_code == 410
    assert gone.headers["cache-control"] == "no-store"
    ingest = client.post("/v1/ingest", content=b'{"m": 1}', headers=bearer(boot.ingest_key))
    assert (ingest.status_code, ingest.headers["cache-control"]) == (410, "no-store")


def test_a_route_that_sets_its_own_caching_keeps_it(client: TestClient) -> None:
    assert client.get("/healthz").headers.get("cache-control") is None  # outside /v1: as it was
    refused = client.post("/loki/api/v1/push", content=b"{}")  # a problem document, anywhere
    assert refused.headers["content-type"].startswith("application/problem+json"), refused.text
    assert refused.headers["cache-control"] == "no-store"
    page = client.get("/docs")
    assert page.headers["cache-control"] == "no-cache"
