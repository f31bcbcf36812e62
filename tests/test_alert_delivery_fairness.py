"""One org's slow or flooded webhook must not hold up another org's alerts: the worker keeps
its slots busy without waiting for a round's slowest attempt, caps what one endpoint and one org
hold, claims fairly across them, and test sends and replays are rate limited."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from astralog.alerts.outbox import Message, Outbox, Share
from astralog.runtime import Bootstrap, Runtime
from astralog.settings import Settings, load_settings
from tests.alert_receiver import Script, receiver
from tests.rbac_helpers import ACTOR, add_member
from tests.test_alerts import app as app


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return load_settings(
        data_dir=tmp_path / "data",
        wal={"fsync": False},
        alerts={"webhook_allow_http": True, "webhook_allow_private_networks": ["127.0.0.0/8"],
                "webhook_timeout_seconds": 1.0, "delivery_concurrency": 2,
                "delivery_poll_seconds": 0.05, "retry_schedule_seconds": [600.0]},
    )  # fmt: skip


def _hook(app: TestClient, headers: dict[str, str], url: str, name: str) -> str:
    made = app.post(
        "/v1/alert-endpoints",
        headers=headers,
        json={"name": name, "kind": "webhook", "target": url},
    )
    assert made.status_code == 201, made.text
    return str(made.json()["id"])


def test_one_orgs_slow_webhook_does_not_hold_up_another_orgs_alerts(
    app: TestClient, admin: dict[str, str], runtime: Runtime
) -> None:
    """A hostile tenant clicks 'test' on a webhook that never answers: with one shared
    first-come queue whose rounds wait for their slowest attempt, every other org's deliveries
    queued behind it (concurrency 2, timeout 1 s here; 8 and 10 s by default)."""
    rival = runtime.control.create_org("rival", "pro", ACTOR)
    other = add_member(runtime, rival["id"], "admin", tag="r").headers
    slow, fast = Script(default=200), Script(default=200)
    slow.answers = [(200, {}, 5.0)] * 50
    with receiver(slow) as slow_url, receiver(fast) as fast_url:
        hook = _hook(app, other, slow_url, "tar")
        mine = _hook(app, admin, fast_url, "ok")
        for _ in range(8):
            assert app.post(f"/v1/alert-endpoints/{hook}/test", headers=other).status_code == 202
        slow.wait_for(1, timeout=5)  # the tar pit is being attempted
        started = time.monotonic()
        assert app.post(f"/v1/alert-endpoints/{mine}/test", headers=admin).status_code == 202
        fast.wait_for(1, timeout=15)
        waited = time.monotonic() - started
        assert len(slow.received) == 1  # org B holds at most half of the two slots
    assert waited < 0.5, f"org A's test waited {waited:.1f} s behind org B's slow webhook"


def test_test_sends_and_replays_are_rate_limited_per_endpoint_and_per_org(
    app: TestClient, admin: dict[str, str], runtime: Runtime
) -> None:
    """Unlimited test clicks queued a flood in front of everyone and aimed it at any URL."""
    runtime.delivery.manual.per_org = 14
    script = Script()
    with receiver(script) as url:
        one, two = _hook(app, admin, url, "one"), _hook(app, admin, url, "two")
        for _ in range(10):
            assert app.post(f"/v1/alert-endpoints/{one}/test", headers=admin).status_code == 202
        refused = app.post(f"/v1/alert-endpoints/{one}/test", headers=admin)
        assert refused.status_code == 429, refused.text
        assert 1 <= int(refused.headers["retry-after"]) <= 6
        assert "per minute to one endpoint" in refused.json()["detail"]
        script.wait_for(10)
        delivered = _delivered_row(app, admin, one)
        again = app.post(f"/v1/alert-deliveries/{delivered}/replay", headers=admin)
        assert again.status_code == 429 and "retry-after" in again.headers, again.text
        for _ in range(4):
            assert app.post(f"/v1/alert-endpoints/{two}/test", headers=admin).status_code == 202
        org_wide = app.post(f"/v1/alert-endpoints/{two}/test", headers=admin)
        assert org_wide.status_code == 429, org_wide.text
        assert "per minute from one org" in org_wide.json()["detail"]


def _delivered_row(app: TestClient, admin: dict[str, str], endpoint_id: str) -> str:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        log = app.get(f"/v1/alert-endpoints/{endpoint_id}/deliveries", headers=admin).json()
        if done := [row["id"] for row in log if row["state"] == "delivered"]:
            return str(done[0])
        time.sleep(0.02)
    raise AssertionError("nothing was delivered")


def _due(outbox: Outbox, org: str, endpoint: str, n: int, at: int) -> None:
    for i in range(n):
        outbox.enqueue(Message(f"msg_{endpoint}_{i}", org, "test", (endpoint,), {}, at + i))


def test_claims_are_dealt_round_robin_over_orgs_and_endpoints_under_caps(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path / "alerts.sqlite3")
    _due(outbox, "org_busy", "aep_flood", 50, 1)  # the oldest rows: first-come would take them
    _due(outbox, "org_busy", "aep_other", 2, 100)
    _due(outbox, "org_quiet", "aep_page", 1, 200)
    now = time.time_ns()
    first = outbox.claim(now, 4, Share(per_endpoint=2, per_org=3))
    assert [(d.org_id, d.endpoint_id) for d in first] == [
        ("org_busy", "aep_flood"), ("org_quiet", "aep_page"),  # each org's first
        ("org_busy", "aep_other"), ("org_busy", "aep_flood"),  # then the busy org's next ones
    ]  # fmt: skip
    # Those four are running: the flood's endpoint and the busy org are at their caps.
    busy = Share(2, 3, {"aep_flood": 2, "aep_other": 1}, {"org_busy": 3, "org_quiet": 1})
    assert outbox.claim(now, 4, busy) == []
    outbox.close()


def test_a_receiver_that_never_answers_holds_one_slot_and_waits_its_schedule(
    app: TestClient, admin: dict[str, str], runtime: Runtime, boot: Bootstrap
) -> None:
    """At the default caps (8 slots, 4 per org, 2 per endpoint) an endpoint that never answers
    holds two slots and its org's other endpoint goes on; timed-out attempts are retried on the
    schedule (600 s here), not at once, so the tar pit cannot take its slots again and again."""
    runtime.delivery.concurrency, runtime.delivery.per_org = 8, 4
    slow, fast = Script(default=200), Script(default=200)
    slow.answers = [(200, {}, 3.0)] * 5
    with receiver(slow) as slow_url, receiver(fast) as fast_url:
        tar, ok = _hook(app, admin, slow_url, "tar"), _hook(app, admin, fast_url, "ok")
        for _ in range(3):
            app.post(f"/v1/alert-endpoints/{tar}/test", headers=admin)
        for _ in range(3):
            app.post(f"/v1/alert-endpoints/{ok}/test", headers=admin)
        fast.wait_for(3, timeout=0.5)  # the same org's other endpoint is not stuck behind it
        assert len(slow.received) == 2  # the tar pit's cap; its third row waits for a slot
        rows = _wait_timed_out(app, admin, tar)
    for row in rows:
        (attempt,) = row["attempts"]
        assert row["next_attempt_ns"] - attempt["at_ns"] >= 400 * 10**9, row


def _wait_timed_out(app: TestClient, admin: dict[str, str], endpoint_id: str) -> list[Any]:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        log = app.get(f"/v1/alert-endpoints/{endpoint_id}/deliveries", headers=admin).json()
        if all(row["attempts"] for row in log):
            return list(log)
        time.sleep(0.05)
    raise AssertionError("the slow endpoint's rows were not all attempted")
