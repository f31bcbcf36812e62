"""Alert errors reach the admins: an endpoint flagged ``errors: true`` receives every alert's
``error`` messages in its org (an evaluation that failed, an alert paused because its owner lost
access), besides the alert's own endpoints; other endpoints do not."""

from __future__ import annotations

from fastapi.testclient import TestClient

from astralog.alerts.evaluate import Evaluator
from astralog.runtime import Bootstrap, Runtime
from tests.rbac_helpers import ACTOR, add_member
from tests.search_corpus import add_source
from tests.test_alerts import app as app
from tests.test_alerts import clock as clock
from tests.test_alerts import define, outbox, tick
from tests.test_alerts import evaluator as evaluator
from tests.test_alerts import settings as settings


def _endpoint(app: TestClient, admin: dict[str, str], name: str, **extra: object) -> str:
    body = {"name": name, "kind": "webhook", "target": "http://127.0.0.1:59999/" + name}
    made = app.post("/v1/alert-endpoints", headers=admin, json=body | extra)
    assert made.status_code == 201, made.text
    return str(made.json()["id"])


def test_error_messages_also_go_to_the_orgs_error_endpoints(
    app: TestClient, admin: dict[str, str], boot: Bootstrap, runtime: Runtime,
    evaluator: Evaluator,
) -> None:  # fmt: skip
    own = _endpoint(app, admin, "team")
    admins = _endpoint(app, admin, "admins", errors=True)
    quiet = _endpoint(app, admin, "other")
    assert app.get(f"/v1/alert-endpoints/{admins}", headers=admin).json()["errors"] is True
    assert app.get(f"/v1/alert-endpoints/{quiet}", headers=admin).json()["errors"] is False
    web, _ = add_source(app, admin, "web")
    other, _ = add_source(app, admin, "other")
    member = add_member(runtime, str(boot.org["id"]), "member", [web])
    alert = define(app, member.headers, sources=[web], endpoint_ids=[own])
    runtime.control.people.set_role(str(boot.org["id"]), member.id, "member", [other], ACTOR)
    runtime.control.auth.clear()
    tick(app, evaluator)  # the owner lost access: paused, and the admins are told

    told = {(m["endpoint_id"], m["event"]) for m in outbox(runtime)}
    assert told == {(own, "error"), (admins, "error")}
    (one,) = {m["message_id"] for m in outbox(runtime)}  # one message, one webhook-id
    assert alert["id"] in one

    lone = define(app, member.headers, name="no endpoints", sources=[other])
    runtime.control.people.set_role(str(boot.org["id"]), member.id, "member", [web], ACTOR)
    runtime.control.auth.clear()
    tick(app, evaluator)  # an alert with no endpoint of its own: the admins are told still
    told = [m for m in outbox(runtime) if lone["id"] in m["message_id"]]
    assert [(m["endpoint_id"], m["event"]) for m in told] == [(admins, "error")]


def test_the_flag_is_changed_like_any_other_field(app: TestClient, admin: dict[str, str]) -> None:
    endpoint = _endpoint(app, admin, "later")
    changed = app.patch(f"/v1/alert-endpoints/{endpoint}", headers=admin, json={"errors": True})
    assert changed.status_code == 200 and changed.json()["errors"] is True, changed.text
    off = app.patch(f"/v1/alert-endpoints/{endpoint}", headers=admin, json={"name": "renamed"})
    assert off.json()["errors"] is True  # a change that does not name it keeps it
    bad = app.patch(f"/v1/alert-endpoints/{endpoint}", headers=admin, json={"errors": "yes"})
    assert bad.status_code == 422
