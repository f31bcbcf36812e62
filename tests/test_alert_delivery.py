"""Alert delivery end to end: real loopback receivers, signatures checked by ``standardwebhooks``
(a verifier we did not write), retries, 410, crash recovery, SSRF at creation and delivery."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from prometheus_client import CollectorRegistry
from standardwebhooks import Webhook, WebhookVerificationError

from astralog.alerts.channels import WebhookPolicy
from astralog.alerts.deliver import DeliveryMetrics, DeliveryWorker, RetryPolicy
from astralog.alerts.outbox import Attempt, Message, Outbox
from astralog.api.app import create_app
from astralog.controlplane.endpoints import Endpoints
from astralog.runtime import Bootstrap, Runtime
from astralog.security import webhook_signing as signing
from astralog.settings import Settings, load_settings
from tests.alert_receiver import Script, receiver
from tests.conftest import bearer
from tests.rbac_helpers import ACTOR
from tests.test_egress import Rebinder

FAST = {
    "webhook_allow_private_networks": ["127.0.0.1/32"],
    "webhook_allow_http": True,
    "retry_schedule_seconds": [0.05, 0.05, 0.05],
    "retry_jitter": 0.0,
    "delivery_poll_seconds": 0.05,
}


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return load_settings(data_dir=tmp_path / "data", wal={"fsync": False}, alerts=FAST)


@pytest.fixture
def admin(boot: Bootstrap) -> dict[str, str]:
    return bearer(boot.admin_token)


@pytest.fixture
def script() -> Script:
    return Script()


@pytest.fixture
def url(script: Script) -> Iterator[str]:
    with receiver(script) as address:
        yield address


def _create(client: TestClient, admin: dict[str, str], url: str, name: str = "hook") -> Any:
    answer = client.post(
        "/v1/alert-endpoints", headers=admin, json={"name": name, "kind": "webhook", "target": url}
    )
    assert answer.status_code == 201, answer.text
    return answer.json()


def _wait(check: Any, timeout: float = 10.0) -> Any:
    deadline = time.monotonic() + timeout
    while not (value := check()):
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)
    return value


# ---- signing ---------------------------------------------------------------------------------


def test_our_signatures_verify_with_the_reference_library() -> None:
    secret, body = signing.new_secret(), b'{"type":"alert.firing"}'
    now = int(time.time())
    headers = signing.headers("msg_abc", now, body, [secret])
    assert Webhook(secret).verify(body, headers) == {"type": "alert.firing"}
    with pytest.raises(WebhookVerificationError):
        Webhook(signing.new_secret()).verify(body, headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(body + b" ", headers)


def test_during_a_rotation_either_secret_verifies() -> None:
    old, new, body = signing.new_secret(), signing.new_secret(), b"{}"
    headers = signing.headers("msg_x", int(time.time()), body, [new, old])
    assert len(headers["webhook-signature"].split(" ")) == 2
    for secret in (old, new):
        Webhook(secret).verify(body, headers)


# ---- through the API and a real receiver ---------------------------------------------------


def test_send_test_is_signed_and_the_secret_is_shown_once(
    client: TestClient, admin: dict[str, str], url: str, script: Script
) -> None:
    endpoint = _create(client, admin, url)
    secret = endpoint["secret"]
    assert secret.startswith("whsec_")
    sent = client.post(f"/v1/alert-endpoints/{endpoint['id']}/test", headers=admin)
    assert sent.status_code == 202, sent.text
    (got,) = script.wait_for(1)
    payload = Webhook(secret).verify(got.body, got.headers)
    assert payload["type"] == "alert.test"
    assert {"alert", "state", "labels", "value", "threshold", "window", "search_url"} <= set(
        payload["data"]
    )
    assert got.headers["webhook-id"] == sent.json()["message_id"]
    for path in ("/v1/alert-endpoints", f"/v1/alert-endpoints/{endpoint['id']}"):
        assert secret not in client.get(path, headers=admin).text
    log = _wait(lambda: _delivered(client, admin, endpoint["id"]))
    assert log[0]["attempts"][0]["status"] == 200


def _delivered(client: TestClient, admin: dict[str, str], endpoint_id: str) -> Any:
    rows = client.get(f"/v1/alert-endpoints/{endpoint_id}/deliveries", headers=admin).json()
    return rows if rows and rows[0]["state"] == "delivered" else None


def test_rotation_sends_both_signatures_for_the_overlap(
    client: TestClient, admin: dict[str, str], url: str, script: Script
) -> None:
    endpoint = _create(client, admin, url)
    old = endpoint["secret"]
    rotated = client.post(
        f"/v1/alert-endpoints/{endpoint['id']}/rotate-secret", headers=admin, json={}
    ).json()
    new = rotated["secret"]
    assert new != old and rotated["previous_valid_until"]
    client.post(f"/v1/alert-endpoints/{endpoint['id']}/test", headers=admin)
    (got,) = script.wait_for(1)
    assert len(got.headers["webhook-signature"].split(" ")) == 2
    Webhook(old).verify(got.body, got.headers)
    Webhook(new).verify(got.body, got.headers)
    # Without an overlap the old secret stops signing at once.
    third = client.post(
        f"/v1/alert-endpoints/{endpoint['id']}/rotate-secret",
        headers=admin,
        json={"overlap_hours": 0},
    ).json()["secret"]
    client.post(f"/v1/alert-endpoints/{endpoint['id']}/test", headers=admin)
    got = script.wait_for(2)[1]
    Webhook(third).verify(got.body, got.headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(new).verify(got.body, got.headers)


def test_500_then_429_retry_after_then_410_disables_the_endpoint(
    client: TestClient, admin: dict[str, str], url: str, script: Script
) -> None:
    script.answers = [(500, {}, 0.0), (429, {"Retry-After": "1"}, 0.0), (410, {}, 0.0)]
    endpoint = _create(client, admin, url)
    client.post(f"/v1/alert-endpoints/{endpoint['id']}/test", headers=admin)
    first, second, third = script.wait_for(3)
    assert {first.headers["webhook-id"], third.headers["webhook-id"]} == {
        second.headers["webhook-id"]
    }
    assert third.at - second.at >= 0.95  # Retry-After: 1 beat the 0.05 s schedule
    for got in (first, second, third):
        Webhook(endpoint["secret"]).verify(got.body, got.headers)
    view = _wait(
        lambda: (
            (v := client.get(f"/v1/alert-endpoints/{endpoint['id']}", headers=admin).json())[
                "enabled"
            ]
            is False
            and v
        )
    )
    assert "410" in view["disabled_reason"]
    (row,) = client.get(f"/v1/alert-endpoints/{endpoint['id']}/deliveries", headers=admin).json()
    assert row["state"] == "failed"
    assert [a["status"] for a in row["attempts"]] == [500, 429, 410]
    # Disabled: the next message is not sent, and says why.
    client.post(f"/v1/alert-endpoints/{endpoint['id']}/test", headers=admin)
    newest = _wait(
        lambda: (
            (
                r := client.get(
                    f"/v1/alert-endpoints/{endpoint['id']}/deliveries", headers=admin
                ).json()[0]
            )["state"]
            == "failed"
            and r
        )
    )
    assert "disabled" in newest["last_error"]
    assert len(script.received) == 3
    # Enabled again by an admin, deliveries resume.
    patched = client.patch(
        f"/v1/alert-endpoints/{endpoint['id']}", headers=admin, json={"enabled": True}
    )
    assert patched.json()["enabled"] is True and patched.json()["disabled_reason"] is None


def test_gives_up_after_the_schedule_then_replays_under_the_same_id(
    client: TestClient, admin: dict[str, str], url: str, script: Script
) -> None:
    script.default = 503
    endpoint = _create(client, admin, url)
    client.post(f"/v1/alert-endpoints/{endpoint['id']}/test", headers=admin)
    row = _wait(
        lambda: (
            (
                r := client.get(
                    f"/v1/alert-endpoints/{endpoint['id']}/deliveries", headers=admin
                ).json()[0]
            )["state"]
            == "failed"
            and r
        )
    )
    assert len(row["attempts"]) == 4  # the first and one per scheduled wait
    assert row["last_error"] == "answered 503"
    script.default = 200
    replayed = client.post(f"/v1/alert-deliveries/{row['id']}/replay", headers=admin)
    assert replayed.status_code == 202, replayed.text
    received = script.wait_for(5)
    assert len({r.headers["webhook-id"] for r in received}) == 1
    assert len({r.body for r in received}) == 1
    _wait(lambda: _delivered(client, admin, endpoint["id"]))


# ---- crash, restart, idempotence -------------------------------------------------------------


def _worker(outbox: Outbox, endpoints: Endpoints, policy: WebhookPolicy) -> DeliveryWorker:
    return DeliveryWorker(
        outbox, endpoints, policy, RetryPolicy((0.05, 0.05), 0.0),
        DeliveryMetrics(CollectorRegistry()), poll_seconds=0.05,
    )  # fmt: skip


def _endpoints(runtime: Runtime, policy: WebhookPolicy) -> Endpoints:
    return Endpoints(runtime.control, runtime.destinations.cipher, policy)


LOOPBACK = WebhookPolicy(allow_networks=("127.0.0.1/32",), allow_http=True, timeout_seconds=5)


def test_a_crash_mid_delivery_loses_nothing_and_keeps_the_id(
    runtime: Runtime, boot: Bootstrap, tmp_path: Path, url: str, script: Script
) -> None:
    org = str(boot.org["id"])
    endpoints = _endpoints(runtime, LOOPBACK)
    endpoint = endpoints.create(org, "crashy", "webhook", url, {}, ACTOR)
    path = tmp_path / "alerts.sqlite3"
    message = Message("msg_a1_k_7", org, "firing", (endpoint["id"],), {"type": "alert.firing"},
                      time.time_ns())  # fmt: skip
    outbox = Outbox(path)
    outbox.enqueue(message)
    outbox.enqueue(message)  # the evaluator re-running the same transition: a no-op
    script.answers = [(200, {}, 3.0)]  # the first attempt hangs until the worker is gone

    async def crash() -> None:
        task = asyncio.create_task(_worker(outbox, endpoints, LOOPBACK).run())
        while not script.received:
            await asyncio.sleep(0.01)
        task.cancel()  # the process dies mid-attempt: no answer was recorded
        await asyncio.gather(task, return_exceptions=True)

    asyncio.run(crash())
    outbox.close()
    reopened = Outbox(path)  # the next start, same file
    assert asyncio.run(_worker(reopened, endpoints, LOOPBACK).run_once()) == 0  # leased
    assert reopened.recover() == 1
    assert asyncio.run(_worker(reopened, endpoints, LOOPBACK).run_once()) == 1
    first, second = script.wait_for(2)
    assert first.headers["webhook-id"] == second.headers["webhook-id"] == message.id
    assert first.body == second.body
    (row,) = reopened.deliveries(org, endpoint["id"])
    assert row["state"] == "delivered"
    reopened.close()


def test_dns_rebinding_after_creation_is_refused_at_delivery(
    runtime: Runtime, boot: Bootstrap, tmp_path: Path, script: Script
) -> None:
    org = str(boot.org["id"])
    with receiver(script) as url:
        port = url.split(":")[2].split("/")[0]
        rebinder = Rebinder(first="127.0.0.1", later="169.254.169.254")
        policy = WebhookPolicy(("127.0.0.1/32",), True, 5.0, 1024, rebinder)
        endpoints = _endpoints(runtime, policy)
        endpoint = endpoints.create(
            org, "rebind", "webhook", f"http://hooks.customer.example:{port}/hook", {}, ACTOR
        )
        outbox = Outbox(tmp_path / "alerts.sqlite3")
        outbox.enqueue(Message("msg_r", org, "test", (endpoint["id"],), {}, time.time_ns()))
        assert asyncio.run(_worker(outbox, endpoints, policy).run_once()) == 1
    (row,) = outbox.deliveries(org, endpoint["id"])
    assert "refused at delivery time" in row["last_error"]
    assert "169.254.169.254" in row["last_error"] and "metadata" in row["last_error"]
    assert script.received == []
    assert rebinder.calls == 2
    outbox.close()


def test_retry_after_is_honoured_up_to_its_cap() -> None:
    policy = RetryPolicy((5.0, 60.0), jitter=0.0, retry_after_max_seconds=120.0)
    assert policy.delay(1, None) == 5.0
    assert policy.delay(1, 30.0) == 30.0
    assert policy.delay(1, 86_400.0) == 120.0
    assert policy.delay(2, 1.0) == 60.0
    assert policy.delay(3, None) is None
    jittered = RetryPolicy((100.0,), jitter=0.2)
    assert all(80.0 <= (jittered.delay(1, None) or 0) <= 120.0 for _ in range(50))


# ---- e-mail through a real SMTP server ---------------------------------------------------------


def test_email_goes_through_a_real_smtp_server(tmp_path: Path) -> None:
    from aiosmtpd.controller import Controller

    class Inbox:
        def __init__(self) -> None:
            self.mail: list[Any] = []

        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
            self.mail.append(envelope)
            return "250 OK"

    inbox = Inbox()
    controller = Controller(inbox, hostname="127.0.0.1", port=_free_port())
    controller.start()
    try:
        alerts = {**FAST, "smtp_host": "127.0.0.1", "smtp_port": controller.port,
                  "smtp_security": "none", "smtp_from": "alerts@astralog.example"}  # fmt: skip
        settings = load_settings(data_dir=tmp_path / "data", wal={"fsync": False}, alerts=alerts)
        runtime = Runtime(settings)
        boot = runtime.bootstrap()
        assert boot is not None
        with TestClient(create_app(settings, runtime)) as client:
            admin = bearer(boot.admin_token)
            made = client.post("/v1/alert-endpoints", headers=admin, json={
                "name": "oncall", "kind": "email", "target": "oncall@example.com"})  # fmt: skip
            assert made.status_code == 201, made.text
            assert "secret" not in made.json()
            client.post(f"/v1/alert-endpoints/{made.json()['id']}/test", headers=admin)
            _wait(lambda: inbox.mail)
        runtime.close()
    finally:
        controller.stop()
    (mail,) = inbox.mail
    assert mail.rcpt_tos == ["oncall@example.com"]
    text = mail.content.decode()
    assert "Subject: [Astralog] alert.test" in text
    assert "Message-ID: <msg_test_" in text


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_email_endpoints_need_an_smtp_server(client: TestClient, admin: dict[str, str]) -> None:
    made = client.post("/v1/alert-endpoints", headers=admin, json={
        "name": "oncall", "kind": "email", "target": "oncall@example.com"})  # fmt: skip
    assert made.status_code == 409
    assert "ASTRALOG_ALERTS__SMTP_HOST" in made.json()["detail"]


def test_payload_bytes_are_canonical_json(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path / "o.sqlite3")
    outbox.enqueue(Message("msg_1", "org", "firing", ("aep_1",), {"b": 1, "a": "é"}, 1))
    (due,) = outbox.claim(2, 10)
    assert due.body == '{"a":"é","b":1}'.encode()
    assert json.loads(due.body) == {"a": "é", "b": 1}
    outbox.close()


# ---- Retry-After as an HTTP date, the delivery log's age, the outbox gauge --------------------


def _one_attempt(
    runtime: Runtime, boot: Bootstrap, tmp_path: Path, url: str, retry: RetryPolicy
) -> dict[str, Any]:
    org = str(boot.org["id"])
    endpoints = _endpoints(runtime, LOOPBACK)
    endpoint = endpoints.create(org, "dated", "webhook", url, {}, ACTOR)
    outbox = Outbox(tmp_path / "alerts.sqlite3")
    outbox.enqueue(Message("msg_d", org, "test", (endpoint["id"],), {}, time.time_ns()))
    worker = DeliveryWorker(
        outbox, endpoints, LOOPBACK, retry, DeliveryMetrics(CollectorRegistry())
    )
    assert asyncio.run(worker.run_once()) == 1
    (row,) = outbox.deliveries(org, endpoint["id"])
    outbox.close()
    return row


@pytest.mark.parametrize("ahead", [30, 86_400])
def test_retry_after_as_an_http_date_is_honoured_up_to_its_cap(
    runtime: Runtime, boot: Bootstrap, tmp_path: Path, url: str, script: Script, ahead: int
) -> None:
    """RFC 9110 allows ``Retry-After: <HTTP-date>``; it waits like the seconds form, capped."""
    from email.utils import formatdate

    script.answers = [(503, {"Retry-After": formatdate(time.time() + ahead, usegmt=True)}, 0.0)]
    before = time.time_ns()
    row = _one_attempt(runtime, boot, tmp_path, url, RetryPolicy((0.05,), 0.0, 120.0))
    assert row["state"] == "pending" and row["attempts"][0]["status"] == 503
    waited = (row["next_attempt_ns"] - before) / 1e9
    expected = min(ahead, 120)
    assert expected - 2 <= waited <= expected + 2, waited


def test_old_delivered_and_failed_rows_leave_the_log(tmp_path: Path) -> None:
    day = 86_400 * 10**9
    now = time.time_ns()
    outbox = Outbox(tmp_path / "alerts.sqlite3")
    for n in range(3):
        outbox.enqueue(Message(f"msg_{n}", "org_a", "test", ("aep_1",), {}, now - 40 * day))
    old_ok, old_failed, still_due = outbox.claim(now - 40 * day, 10)
    outbox.record(old_ok, Attempt(now - 40 * day, 200, "", 1), "delivered")
    outbox.record(old_failed, Attempt(now - 40 * day, 500, "answered 500", 1), "failed")
    outbox.record(still_due, Attempt(now - 40 * day, 500, "answered 500", 1), "pending", now + day)
    outbox.enqueue(Message("msg_new", "org_a", "test", ("aep_1",), {}, now))
    (recent,) = outbox.claim(now, 10)
    outbox.record(recent, Attempt(now, 200, "", 1), "delivered")

    class Nowhere:
        def target(self, org_id: str, endpoint_id: str) -> None:
            return None

        def disable(self, org_id: str, endpoint_id: str, reason: str, actor: Any) -> None:
            raise AssertionError("nothing is delivered here")

    worker = DeliveryWorker(
        outbox, Nowhere(), LOOPBACK, RetryPolicy(), DeliveryMetrics(CollectorRegistry()),
        poll_seconds=0.01, log_days=30,
    )  # fmt: skip

    async def a_moment() -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(worker.run(), 0.3)

    asyncio.run(a_moment())
    left = outbox.deliveries("org_a", "aep_1", limit=10)
    assert sorted(r["message_id"] for r in left) == ["msg_2", "msg_new"]  # pending and recent
    assert outbox.counts() == {"pending": 1, "delivered": 1}
    with outbox._tx() as conn:  # the attempts of pruned rows go with them
        logged = {r[0] for r in conn.execute("SELECT delivery_id FROM delivery_attempts")}
    assert logged == {r["id"] for r in left}
    outbox.close()


def test_outbox_rows_per_state_are_a_gauge(
    client: TestClient, runtime: Runtime, boot: Bootstrap
) -> None:
    org = str(boot.org["id"])
    runtime.outbox.enqueue(Message("msg_g", org, "test", ("aep_gone",), {}, time.time_ns()))
    # The endpoint does not exist: the worker gives the row up at once, as failed.
    _wait(lambda: runtime.outbox.counts().get("failed") == 1)
    text = client.get("/metrics", headers=bearer(boot.operator_token)).text
    for state, count in (("pending", 0), ("delivering", 0), ("delivered", 0), ("failed", 1)):
        assert f'astralog_alert_outbox_rows{{state="{state}"}} {count}.0' in text, text[-2000:]
