"""Browser sessions: HttpOnly cookie, CSRF on writes, logout, revocation ends the session."""

from __future__ import annotations

from pathlib import Path
from unittest.mock import patch

import pytest
from fastapi.testclient import TestClient

from astralog.api.app import create_app
from astralog.auth.sessions import PREAUTH_MAX_PER_OWNER
from astralog.errors import RateLimited
from astralog.runtime import Bootstrap, Runtime
from astralog.settings import load_settings
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


def test_behind_a_tls_proxy_the_cookie_is_secure_and_host_only(tmp_path: Path) -> None:
    """TLS ends at a proxy, the request reaches us over plain http: the https public URL
    decides, so the session cookie is still ``__Host-``, Secure and HttpOnly."""
    settings = load_settings(data_dir=tmp_path, server={"public_url": "https://logs.example.com"})
    runtime = Runtime(settings)
    boot = runtime.bootstrap()
    assert boot is not None
    with TestClient(create_app(settings, runtime), base_url="http://logs.example.com") as client:
        answer = client.post("/v1/session", json={"token": boot.admin_token})
    cookie = next(c for c in answer.headers.get_list("set-cookie") if "astralog_session=" in c)
    assert cookie.startswith("__Host-astralog_session=")
    for attribute in ("Secure", "HttpOnly", "Path=/", "SameSite=strict"):
        assert attribute in cookie
    assert "Domain" not in cookie


def test_pre_auth_rows_are_tagged_bounded_and_purged(runtime: Runtime) -> None:
    """An SSO start is public: expired rows go at every write, one owner (client address or
    session) holds at most PREAUTH_MAX_PER_OWNER live rows and the service PREAUTH_MAX (429
    past either), and a row is taken only as its own kind."""
    store = runtime.sessions
    ids = [
        store.put_preauth("sso", {"n": i}, owner="client:a") for i in range(PREAUTH_MAX_PER_OWNER)
    ]
    with pytest.raises(RateLimited) as refused:
        store.put_preauth("sso", {}, owner="client:a")
    assert refused.value.retry_after > 0
    store.put_preauth("sso", {}, owner="client:b")  # another address is not held back
    assert store.take_preauth(ids[0], "passkey:authenticate") is None  # another kind: nothing
    assert store.take_preauth(ids[0], "sso") == {"n": 0}  # ... and the row was left alone
    assert store.take_preauth(ids[0], "sso") is None  # once
    with store._tx() as conn:
        conn.execute("UPDATE preauth SET expires = 0")
    store.put_preauth("sso", {}, owner="client:a")
    with store._tx() as conn:
        assert conn.execute("SELECT count(*) FROM preauth").fetchone()[0] == 1
    with patch("astralog.auth.sessions.PREAUTH_MAX", 3):
        store.put_preauth("sso", {}, owner="client:c")
        store.put_preauth("sso", {}, owner="client:d")
        with pytest.raises(RateLimited):
            store.put_preauth("sso", {}, owner="client:e")
