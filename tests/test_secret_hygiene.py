"""No secret ever appears in the service's logs or in any later API response."""

from __future__ import annotations

import io
import logging

from fastapi.testclient import TestClient

from astralog.logs import JsonFormatter, redact
from astralog.runtime import Bootstrap
from tests.conftest import bearer


def test_secrets_never_reach_logs_or_later_responses(client: TestClient, boot: Bootstrap) -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.addHandler(handler)
    old_level = root.level
    root.setLevel(logging.DEBUG)
    try:
        secrets, later = _exercise(client, boot)
    finally:
        root.removeHandler(handler)
        root.setLevel(old_level)
    logs = stream.getvalue()
    assert '"logger": "astralog.access"' in logs  # the requests were logged ...
    for secret in secrets:
        assert secret not in logs  # ... without a single secret
        assert all(secret not in text for text in later)


def _exercise(client: TestClient, boot: Bootstrap) -> tuple[list[str], list[str]]:
    admin, op = bearer(boot.admin_token), bearer(boot.operator_token)
    secrets = [boot.admin_token, boot.operator_token, boot.ingest_key]
    source = client.post("/v1/sources", json={"name": "hygiene"}, headers=admin).json()
    issued = client.post(f"/v1/sources/{source['id']}/keys", headers=admin).json()
    rotated = client.post(
        f"/v1/sources/{source['id']}/keys/{issued['info']['id']}/rotate",
        json={"grace_minutes": 5},
        headers=admin,
    ).json()
    token = client.post(
        "/v1/tokens", json={"name": "t", "scopes": ["logs:read"]}, headers=admin
    ).json()
    org = client.post("/v1/orgs", json={"name": "hyg"}, headers=op).json()
    org_token = client.post(
        f"/v1/orgs/{org['id']}/tokens", json={"name": "a", "scopes": ["audit:read"]}, headers=op
    ).json()
    secrets += [issued["key"], rotated["key"], token["token"], org_token["token"]]
    # Failed attempts with real secrets in the wrong place must not be echoed either.
    client.get("/v1/sources", headers=bearer(issued["key"]))
    client.get("/v1/orgs", headers=bearer(token["token"]))
    client.get(f"/v1/sources?key={issued['key']}", headers=admin)
    client.post("/v1/ingest", json={"message": "hello"}, headers=bearer(issued["key"]))
    later = [
        client.get(path, headers=headers).text
        for path, headers in [
            ("/v1/sources", admin),
            (f"/v1/sources/{source['id']}/keys", admin),
            ("/v1/tokens", admin),
            ("/v1/audit?limit=1000", admin),
            ("/v1/audit?format=ndjson", admin),
            ("/v1/audit?format=ndjson", op),
            ("/v1/orgs", op),
            ("/v1/org", admin),
            ("/metrics", {}),
            ("/openapi.json", {}),
        ]
    ]
    return secrets, later


def test_redaction_is_a_last_line_of_defence() -> None:
    from astralog.auth import credentials

    secret = credentials.generate(credentials.Kind.INGEST).secret
    assert secret not in redact(f"oops {secret} leaked")
    record = logging.LogRecord("x", logging.INFO, "", 0, "key=%s", (secret,), None)
    assert secret not in JsonFormatter().format(record)
