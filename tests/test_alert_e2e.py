"""An alert fires and resolves end to end: real ingest, the evaluator, the outbox and the
delivery worker of a running app, a real HTTP receiver verifying with ``standardwebhooks`` and a
real SMTP server (aiosmtpd) on loopback."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from fastapi.testclient import TestClient
from standardwebhooks import Webhook

from astralog.alerts.evaluate import Config, Evaluator
from astralog.api.app import create_app
from astralog.runtime import Runtime
from astralog.settings import load_settings
from tests.alert_receiver import Received, Script, receiver
from tests.conftest import bearer
from tests.search_corpus import add_source, ingest
from tests.test_alerts import MIN, Clock, S, define, events, tick


class Inbox:
    def __init__(self) -> None:
        self.mail: list[Any] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.mail.append(envelope)
        return "250 OK"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def inbox() -> Iterator[tuple[Inbox, int]]:
    box = Inbox()
    controller = Controller(box, hostname="127.0.0.1", port=_free_port())
    controller.start()
    yield box, controller.port
    controller.stop()


def _wait(check: Any, timeout: float = 15.0) -> Any:
    deadline = time.monotonic() + timeout
    while not (value := check()):
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)
    return value


def test_an_alert_fires_and_resolves_through_a_webhook_and_email(
    tmp_path: Path, inbox: tuple[Inbox, int]
) -> None:
    box, smtp_port = inbox
    settings = load_settings(
        data_dir=tmp_path / "data",
        wal={"fsync": False, "segment_max_age_seconds": 0.2},
        flush={"interval_seconds": 0.1},
        alerts={"webhook_allow_http": True, "webhook_allow_private_networks": ["127.0.0.1/32"],
                "evaluate_every_seconds": 60, "ingest_settle_seconds": 0,
                "delivery_poll_seconds": 0.05, "smtp_host": "127.0.0.1", "smtp_port": smtp_port,
                "smtp_security": "none", "smtp_from": "alerts@astralog.example"},
    )  # fmt: skip
    runtime = Runtime(settings)
    boot = runtime.bootstrap()
    assert boot is not None
    script, clock = Script(), Clock()
    with receiver(script) as url, TestClient(create_app(settings, runtime)) as app:
        admin = bearer(boot.admin_token)
        hook = app.post(
            "/v1/alert-endpoints",
            headers=admin,
            json={"name": "hook", "kind": "webhook", "target": url},
        ).json()
        mail = app.post(
            "/v1/alert-endpoints",
            headers=admin,
            json={"name": "mail", "kind": "email", "target": "oncall@example.com"},
        ).json()
        source, key = add_source(app, admin, "web")
        alert = define(
            app,
            admin,
            query="level:error",
            sources=[source],
            threshold=2,
            window_seconds=300,
            endpoint_ids=[hook["id"], mail["id"]],
        )
        evaluator = Evaluator(
            runtime.alert_rules,
            runtime.control.auth,
            runtime,
            runtime.outbox,
            runtime.alert_state,
            Config(settle_ns=0),
            clock,
            error_endpoints=runtime.alert_endpoints.for_errors,
        )
        ingest(app, key, events(["a", "b", "c"], clock.now - 60 * S))
        assert tick(app, evaluator) == 1
        (firing,) = script.wait_for(1)
        clock.now += 7 * MIN  # the errors left the window
        tick(app, evaluator)
        resolved = script.wait_for(2)[1]
        _wait(lambda: len(box.mail) == 2)
    runtime.close()  # fmt: skip
    told = [_verified(got, hook["secret"]) for got in (firing, resolved)]
    assert [t["type"] for t in told] == ["alert.firing", "alert.resolved"]
    assert all(t["data"]["alert"]["id"] == alert["id"] for t in told)
    assert firing.headers["webhook-id"] != resolved.headers["webhook-id"]
    subjects = [m.content.decode() for m in box.mail]
    assert any("Subject: [Astralog] alert.firing: errors" in s for s in subjects)
    assert any("Subject: [Astralog] alert.resolved: errors" in s for s in subjects)
    assert all(m.rcpt_tos == ["oncall@example.com"] for m in box.mail)


def _verified(got: Received, secret: str) -> dict[str, Any]:
    payload = Webhook(secret).verify(got.body, got.headers)
    assert payload == json.loads(got.body)
    return dict(payload)
