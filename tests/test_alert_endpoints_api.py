"""Alert endpoints under hostile input: the SSRF corpus at creation, bad bodies, other orgs' ids,
and secrets that never reach an event, a log line or a later answer."""

from __future__ import annotations

import io
import logging
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from astralog.alerts.channels import WebhookPolicy
from astralog.controlplane.endpoints import Endpoints
from astralog.errors import BadRequest
from astralog.logs import JsonFormatter
from astralog.runtime import Bootstrap, Runtime
from astralog.security.egress import UnsafeEndpoint
from astralog.settings import Settings, load_settings
from tests.alert_receiver import Script, receiver
from tests.conftest import bearer
from tests.rbac_helpers import ACTOR, add_member
from tests.test_egress import HOSTILE_ENDPOINTS, HOSTILE_HOSTS, fake_resolve

FAST = {
    "webhook_allow_private_networks": ["127.0.0.1/32"],
    "webhook_allow_http": True,
    "retry_schedule_seconds": [0.05],
    "retry_jitter": 0.0,
    "delivery_poll_seconds": 0.05,
}


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return load_settings(data_dir=tmp_path / "data", wal={"fsync": False}, alerts=FAST)


@pytest.fixture
def admin(boot: Bootstrap) -> dict[str, str]:
    return bearer(boot.admin_token)


# ---- SSRF: the egress corpus against webhook URLs ---------------------------------------------

WEBHOOK_CASES = [f"https://{h}/hook" for h in HOSTILE_HOSTS] + [
    e for e in HOSTILE_ENDPOINTS if "://" in e or e.startswith(("http", "file", "javascript"))
]


def test_the_corpus_is_the_egress_one_and_large() -> None:
    assert len(WEBHOOK_CASES) >= 100


@pytest.fixture(scope="module")
def guarded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Endpoints]:
    """Endpoints whose DNS is the egress tests' fake one, on one runtime for the whole corpus."""
    data = tmp_path_factory.mktemp("ssrf") / "data"
    runtime = Runtime(load_settings(data_dir=data, wal={"fsync": False}))
    yield Endpoints(
        runtime.control, runtime.destinations.cipher, WebhookPolicy(resolve=fake_resolve)
    )
    runtime.close()


@pytest.mark.parametrize("url", WEBHOOK_CASES)
def test_hostile_webhook_urls_are_refused_at_creation(guarded: Endpoints, url: str) -> None:
    endpoints = guarded
    with pytest.raises(BadRequest) as refused:  # UnsafeEndpoint, or a malformed URL
        endpoints.create("org_x", "hook", "webhook", url, {}, ACTOR)
    assert refused.value.status == 400
    assert "secret" not in refused.value.detail
    assert endpoints.list("org_x") == []


def test_private_refusals_name_the_alerts_allow_list(runtime: Runtime) -> None:
    endpoints = Endpoints(
        runtime.control, runtime.destinations.cipher, WebhookPolicy(resolve=fake_resolve)
    )
    with pytest.raises(UnsafeEndpoint, match="ASTRALOG_ALERTS__WEBHOOK_ALLOW_PRIVATE_NETWORKS"):
        endpoints.create("org_x", "hook", "webhook", "https://10.0.0.1/hook", {}, ACTOR)


@pytest.mark.parametrize(
    "url",
    ["https://169.254.169.254/latest", "http://127.0.0.2:8080/x", "https://[::1]/x",
     "https://localhost/x", "gopher://127.0.0.1/", "https://u:p@example.com/x",
     "https://example.com/x?token=1"],
)  # fmt: skip
def test_the_api_refuses_them_too(client: TestClient, admin: dict[str, str], url: str) -> None:
    answer = client.post(
        "/v1/alert-endpoints", headers=admin, json={"name": "h", "kind": "webhook", "target": url}
    )
    assert answer.status_code == 400, answer.text
    assert answer.json()["detail"].startswith("refused endpoint")


def test_a_redirect_is_not_followed(
    client: TestClient, admin: dict[str, str], runtime: Runtime
) -> None:
    script = Script(answers=[(302, {"Location": "http://169.254.169.254/latest"}, 0.0)] * 2)
    with receiver(script) as url:
        made = client.post("/v1/alert-endpoints", headers=admin,
                           json={"name": "r", "kind": "webhook", "target": url}).json()  # fmt: skip
        client.post(f"/v1/alert-endpoints/{made['id']}/test", headers=admin)
        row = _wait_state(client, admin, made["id"], "failed")
    assert len(script.received) == 2  # the first attempt and its one retry: both to the receiver
    assert "not followed" in row["attempts"][0]["error"]


def _wait_state(client: TestClient, admin: dict[str, str], endpoint_id: str, state: str) -> Any:
    deadline = time.monotonic() + 10
    while True:
        rows = client.get(f"/v1/alert-endpoints/{endpoint_id}/deliveries", headers=admin).json()
        if rows and rows[0]["state"] == state:
            return rows[0]
        assert time.monotonic() < deadline, rows
        time.sleep(0.02)


# ---- hostile bodies and ids ---------------------------------------------------------------------


@pytest.fixture
def made(client: TestClient, admin: dict[str, str]) -> Iterator[dict[str, Any]]:
    script = Script()
    with receiver(script) as url:
        answer = client.post("/v1/alert-endpoints", headers=admin,
                             json={"name": "mine", "kind": "webhook", "target": url})  # fmt: skip
        assert answer.status_code == 201
        yield answer.json()


BAD_CREATES = [
    ({"name": "x" * 64, "kind": "webhook", "target": "https://example.com/h"}, 422),
    ({"name": "Bad Name", "kind": "webhook", "target": "https://example.com/h"}, 400),
    ({"name": "h", "kind": "sms", "target": "+1555"}, 422),
    ({"name": "h", "kind": "webhook", "target": 123}, 422),
    ({"name": "h", "kind": "webhook", "target": ["https://example.com"]}, 422),
    ({"name": "h", "kind": "webhook", "target": "https://e.com/" + "a" * 3000}, 422),
    ({"name": "h", "kind": "webhook", "target": "https://e.com/h", "org_id": "org_x"}, 422),
    ({"name": "h", "kind": "webhook", "target": "https://e.com/h", "headers": {"Host": "x"}}, 400),
    ({"name": "h", "kind": "webhook", "target": "https://e.com/h",
      "headers": {"webhook-signature": "v1,forged"}}, 400),
    ({"name": "h", "kind": "webhook", "target": "https://e.com/h",
      "headers": {"X-Ok": "a\r\nInjected: 1"}}, 400),
    ({"name": "h", "kind": "webhook", "target": "https://e.com/h",
      "headers": {"Bad Name": "v"}}, 400),
    ({"name": "h", "kind": "webhook", "target": "https://e.com/h",
      "headers": {f"x-{i}": "v" for i in range(11)}}, 422),
    ({"name": "h", "kind": "email", "target": "not an address"}, 409),
    ([], 422),
    ("just text", 422),
]  # fmt: skip


@pytest.mark.parametrize(("body", "status"), BAD_CREATES)
def test_bad_creates_are_4xx_problems(
    client: TestClient, admin: dict[str, str], body: Any, status: int
) -> None:
    answer = client.post("/v1/alert-endpoints", headers=admin, json=body)
    assert answer.status_code == status, answer.text
    assert answer.headers["content-type"].startswith("application/problem+json")


def test_an_oversized_body_is_refused_cheaply(client: TestClient, admin: dict[str, str]) -> None:
    body = {"name": "h", "kind": "webhook", "target": "https://e.com/h", "pad": "x" * 200_000}
    assert client.post("/v1/alert-endpoints", headers=admin, json=body).status_code == 413


def test_bad_changes_are_4xx(
    client: TestClient, admin: dict[str, str], made: dict[str, Any]
) -> None:
    path = f"/v1/alert-endpoints/{made['id']}"
    for body, status in [
        ({"enabled": "yes"}, 422),
        ({"target": "https://169.254.169.254/x"}, 400),
        ({"name": 5}, 422),
        ({"headers": {"Content-Length": "1"}}, 400),
    ]:
        answer = client.patch(path, headers=admin, json=body)
        assert answer.status_code == status, (body, answer.text)
    for body in ({"overlap_hours": 1000}, {"overlap_hours": -1}, {"overlap_hours": "a"}):
        answer = client.post(path + "/rotate-secret", headers=admin, json=body)
        assert answer.status_code == 422, answer.text
    deliveries = client.get(path + "/deliveries?limit=100000", headers=admin)
    assert deliveries.status_code == 422


def test_another_orgs_ids_are_not_found(
    client: TestClient, runtime: Runtime, admin: dict[str, str], made: dict[str, Any]
) -> None:
    client.post(f"/v1/alert-endpoints/{made['id']}/test", headers=admin)
    delivery = client.get(f"/v1/alert-endpoints/{made['id']}/deliveries", headers=admin).json()[0]
    globex = runtime.control.create_org("globex", "pro", ACTOR)
    other = add_member(runtime, globex["id"], "admin", tag="g").headers
    path = f"/v1/alert-endpoints/{made['id']}"
    calls = [
        ("GET", path, None), ("PATCH", path, {"name": "stolen"}), ("DELETE", path, None),
        ("POST", path + "/rotate-secret", {}), ("POST", path + "/test", None),
        ("GET", path + "/deliveries", None),
        ("POST", f"/v1/alert-deliveries/{delivery['id']}/replay", None),
    ]  # fmt: skip
    for method, url, body in calls:
        answer = client.request(method, url, headers=other, json=body)
        assert answer.status_code == 404, (method, url, answer.text)
        assert made["name"] not in answer.text
    assert client.get("/v1/alert-endpoints", headers=other).json() == []
    assert client.get(path, headers=admin).json()["name"] == "mine"  # untouched


def test_members_and_viewers_cannot_touch_endpoints(
    client: TestClient, runtime: Runtime, boot: Bootstrap
) -> None:
    for role in ("member", "viewer"):
        headers = add_member(runtime, str(boot.org["id"]), role).headers
        answer = client.get("/v1/alert-endpoints", headers=headers)
        assert answer.status_code == 403
        assert "alerts:admin" in answer.json()["detail"]


# ---- secret hygiene ------------------------------------------------------------------------------


def test_secrets_never_reach_events_logs_or_later_answers(
    client: TestClient, runtime: Runtime, admin: dict[str, str]
) -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.addHandler(handler)
    old_level = root.level
    root.setLevel(logging.DEBUG)
    header_value = "receiver-token-" + "z" * 24
    script = Script(default=500)
    try:
        with receiver(script) as url:
            made = client.post("/v1/alert-endpoints", headers=admin, json={
                "name": "h", "kind": "webhook", "target": url,
                "headers": {"Authorization": f"Bearer {header_value}"}}).json()  # fmt: skip
            rotated = client.post(f"/v1/alert-endpoints/{made['id']}/rotate-secret",
                                  headers=admin, json={}).json()  # fmt: skip
            client.post(f"/v1/alert-endpoints/{made['id']}/test", headers=admin)
            _wait_state(client, admin, made["id"], "failed")
    finally:
        root.removeHandler(handler)
        root.setLevel(old_level)
    secrets = [made["secret"], rotated["secret"], header_value]
    assert script.received[0].headers["authorization"] == f"Bearer {header_value}"
    later = [
        client.get("/v1/alert-endpoints", headers=admin).text,
        client.get(f"/v1/alert-endpoints/{made['id']}", headers=admin).text,
        client.get(f"/v1/alert-endpoints/{made['id']}/deliveries", headers=admin).text,
        client.get("/v1/audit/events", headers=admin).text,
    ]
    events = [r.payload for r in runtime.control.store.records()]
    logs = stream.getvalue()
    assert "alert delivery" in logs and "failed on attempt" in logs
    for secret in secrets:
        assert secret not in logs
        assert all(secret not in text for text in later)
        assert all(secret not in payload for payload in events)
    assert client.get(f"/v1/alert-endpoints/{made['id']}", headers=admin).json()["headers_set"] == [
        "authorization"
    ]
