"""Browser sessions: HttpOnly cookie, CSRF on writes, logout, revocation ends the session."""

from __future__ import annotations

from fastapi.testclient import TestClient

from astralog.runtime import Bootstrap
from tests.conftest import bearer


def _sign_in(client: TestClient, token: str) -> str:
    response = client.post("/v1/session", json={"token": token})
    assert response.status_code == 200, response.text
    cookie = response.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie
    return str(response.json()["csrf_token"])


def test_session_cookie_authenticates_and_writes_need_csrf(
    client: TestClient, boot: Bootstrap
) -> None:
    csrf = _sign_in(client, boot.admin_token)
    assert client.get("/v1/sources").status_code == 200
    refused = client.post("/v1/sources", json={"name": "csrf"})
    assert refused.status_code == 403 and "CSRF" in refused.json()["detail"]
    wrong = client.post("/v1/sources", json={"name": "csrf"}, headers={"X-CSRF-Token": "nope"})
    assert wrong.status_code == 403
    ok = client.post("/v1/sources", json={"name": "csrf"}, headers={"X-CSRF-Token": csrf})
    assert ok.status_code == 201
    assert client.get("/v1/session").json()["org_id"] == boot.org["id"]
    assert client.delete("/v1/session", headers={"X-CSRF-Token": csrf}).status_code == 204
    client.cookies.clear()
    assert client.get("/v1/sources").status_code == 401


def test_revoking_the_token_ends_its_sessions(client: TestClient, boot: Bootstrap) -> None:
    admin = bearer(boot.admin_token)
    issued = client.post(
        "/v1/tokens", json={"name": "ui", "scopes": ["sources:read"]}, headers=admin
    )
    token = issued.json()
    _sign_in(client, token["token"])
    assert client.get("/v1/sources").status_code == 200
    client.post(f"/v1/tokens/{token['info']['id']}/revoke", headers=admin)
    assert client.get("/v1/sources").status_code == 401


def test_only_management_tokens_start_sessions(client: TestClient, boot: Bootstrap) -> None:
    for secret, status in ((boot.ingest_key, 403), (boot.operator_token, 403), ("alt_x", 401)):
        assert client.post("/v1/session", json={"token": secret}).status_code == status
    assert "set-cookie" not in client.post("/v1/session", json={"token": "x"}).headers


def test_a_stale_cookie_is_refused(client: TestClient) -> None:
    client.cookies.set("astralog_session", "forged")
    response = client.get("/v1/sources")
    assert response.status_code == 401 and "sign in" in response.json()["detail"]
