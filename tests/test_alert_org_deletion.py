"""An org pending deletion is stopped for alerting too: its alerts are not evaluated and nothing
already in its outbox is delivered (the row fails, saying why, and can be replayed once an
operator restores the org); restored, its alerts run again."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from astralog.alerts.evaluate import Evaluator
from astralog.alerts.outbox import Message
from astralog.runtime import Bootstrap, Runtime
from tests.alert_receiver import Script, receiver
from tests.conftest import bearer
from tests.search_corpus import add_source, ingest
from tests.test_alerts import Clock, S, define, events, outbox, tick
from tests.test_alerts import app as app
from tests.test_alerts import clock as clock
from tests.test_alerts import evaluator as evaluator
from tests.test_alerts import settings as settings


@pytest.fixture
def script() -> Script:
    return Script()


@pytest.fixture
def url(script: Script) -> Iterator[str]:
    with receiver(script) as address:
        yield address


def _rows(runtime: Runtime, event: str) -> list[dict[str, object]]:
    return [m for m in outbox(runtime) if m["event"] == event]


def _wait_failed(runtime: Runtime, message_id: str) -> dict[str, object]:
    deadline = time.monotonic() + 10
    while True:
        (row,) = [m for m in outbox(runtime) if m["message_id"] == message_id]
        if row["state"] == "failed":
            return row
        assert time.monotonic() < deadline, row
        time.sleep(0.05)


def test_an_org_pending_deletion_neither_evaluates_nor_delivers(
    app: TestClient, admin: dict[str, str], boot: Bootstrap, runtime: Runtime,
    evaluator: Evaluator, clock: Clock, url: str, script: Script,
) -> None:  # fmt: skip
    org, op = str(boot.org["id"]), bearer(boot.operator_token)
    made = app.post("/v1/alert-endpoints", headers=admin,
                    json={"name": "oncall", "kind": "webhook", "target": url})  # fmt: skip
    assert made.status_code == 201, made.text
    endpoint = made.json()["id"]
    source, key = add_source(app, admin, "web")
    define(app, admin, query="level:error", sources=[source], threshold=0,
           endpoint_ids=[endpoint])  # fmt: skip
    ingest(app, key, events(["a"], clock.now - 60 * S))

    asked = app.post(f"/v1/orgs/{org}/deletion", json={"reason": "closing"}, headers=op)
    assert asked.status_code == 202, asked.text
    # A message that was waiting in the outbox when the deletion was asked for.
    runtime.outbox.enqueue(Message("msg_waiting", org, "test", (endpoint,), {}, time.time_ns()))
    assert tick(app, evaluator) == 0  # no alert of the org runs
    assert _rows(runtime, "firing") == []
    waiting = _wait_failed(runtime, "msg_waiting")
    assert "pending deletion" in str(waiting["last_error"])
    assert script.received == []

    restored = app.post(f"/v1/orgs/{org}/deletion/restore", json={"reason": "oops"}, headers=op)
    assert restored.status_code == 200, restored.text
    assert tick(app, evaluator) == 1
    assert len(_rows(runtime, "firing")) == 1
    (got,) = script.wait_for(1)
    assert got.headers["webhook-id"].startswith("msg_") and got.headers["webhook-id"] != (
        "msg_waiting"
    )
