"""Alerts end to end in one process: real ingest through the HTTP gateway, the search planner and
DuckDB, the evaluator on an injected clock, and the outbox's own rows as what would be delivered.
"""

from __future__ import annotations

import json
import sqlite3
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from astralog.alerts.evaluate import Config, Evaluator
from astralog.runtime import Bootstrap, Runtime
from astralog.settings import Settings, load_settings
from tests.conftest import bearer
from tests.rbac_helpers import ACTOR, add_member
from tests.search_corpus import add_source, ingest

S = 10**9
MIN = 60 * S


def alert_settings(tmp_path: Path, **alerts: Any) -> Settings:
    """Fast flushing, webhooks to loopback over http, and the evaluator driven by the test."""
    return load_settings(
        data_dir=tmp_path / "data",
        wal={"fsync": False, "segment_max_age_seconds": 0.2},
        flush={"interval_seconds": 0.1},
        alerts={"webhook_allow_http": True, "webhook_allow_private_networks": ["127.0.0.0/8"],
                "evaluate_every_seconds": 60, "ingest_settle_seconds": 0, **alerts},
    )  # fmt: skip


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return alert_settings(tmp_path)


@pytest.fixture
def app(client: TestClient) -> TestClient:
    """The conftest client under the name these tests read best with."""
    return client


class Clock:
    def __init__(self) -> None:
        self.now = time.time_ns() // MIN * MIN + 30 * S

    def __call__(self) -> int:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def evaluator(runtime: Runtime, clock: Clock, app: TestClient) -> Evaluator:
    return Evaluator(runtime.alert_rules, runtime.control.auth, runtime, runtime.outbox,
                     runtime.alert_state, Config(settle_ns=0), clock,
                     metrics=runtime.metrics.alerts,
                     error_endpoints=runtime.alert_endpoints.for_errors)  # fmt: skip


@pytest.fixture
def endpoint(app: TestClient, admin: dict[str, str]) -> str:
    made = app.post("/v1/alert-endpoints", headers=admin, json={
        "name": "oncall", "kind": "webhook", "target": "http://127.0.0.1:59999/hook"})  # fmt: skip
    assert made.status_code == 201, made.text
    return str(made.json()["id"])


def tick(app: TestClient, evaluator: Evaluator) -> int:
    return app.portal.call(evaluator.tick)  # type: ignore[union-attr]


def outbox(runtime: Runtime) -> list[dict[str, Any]]:
    with sqlite3.connect(runtime.settings.data_dir / "alerts.sqlite3") as conn:
        conn.row_factory = sqlite3.Row
        rows = conn.execute("SELECT * FROM outbox ORDER BY created_ns, message_id").fetchall()
    return [dict(r) | {"payload": json.loads(r["body"])} for r in rows]


def due_now(runtime: Runtime, alert_id: str, clock: Clock) -> None:
    """The schedule is tested on its own: here the alert is made due at the real time, since
    "new match" reads by the real receive time of what was ingested."""
    time.sleep(0.01)
    clock.now = time.time_ns()
    with sqlite3.connect(runtime.settings.data_dir / "alerts.sqlite3") as conn:
        conn.execute("UPDATE alert_runs SET next_due_ns = 0 WHERE alert_id = ?", (alert_id,))


def events(markers: list[str], at_ns: int | None = None, **fields: Any) -> bytes:
    stamp = {} if at_ns is None else {"timestamp": datetime.fromtimestamp(at_ns / S, UTC)
                                      .isoformat()}  # fmt: skip
    lines = [json.dumps({"message": f"boom {m}", "level": "error", **stamp, **fields})
             for m in markers]  # fmt: skip
    return ("\n".join(lines) + "\n").encode()


def define(app: TestClient, headers: dict[str, str], **spec: Any) -> dict[str, Any]:
    made = app.post("/v1/alerts", headers=headers, json={"name": "errors", **spec})
    assert made.status_code == 201, made.text
    return dict(made.json())


def test_fires_then_resolves_with_stable_message_ids(
    app: TestClient, admin: dict[str, str], boot: Bootstrap, runtime: Runtime,
    evaluator: Evaluator, clock: Clock, endpoint: str,
) -> None:  # fmt: skip
    source, key = add_source(app, admin, "web")
    alert = define(app, admin, query="level:error", sources=[source], threshold=2,
                   window_seconds=300, endpoint_ids=[endpoint])  # fmt: skip
    ingest(app, key, events(["a", "b", "c"], clock.now - 60 * S))
    assert tick(app, evaluator) == 1
    [firing] = outbox(runtime)
    assert firing["event"] == "firing" and firing["endpoint_id"] == endpoint
    data = firing["payload"]["data"]
    assert data["value"] == 3 and data["threshold"] == 2 and data["alert"]["id"] == alert["id"]
    assert data["search_url"].startswith("http://") and "level%3Aerror" in data["search_url"]
    assert tick(app, evaluator) == 0  # not due again within the minute
    clock.now += MIN
    tick(app, evaluator)  # still 3 errors in the window: told once only
    assert len(outbox(runtime)) == 1
    clock.now += 6 * MIN  # the errors left the window
    tick(app, evaluator)
    told = outbox(runtime)
    assert [m["event"] for m in told] == ["firing", "resolved"]
    assert told[0]["message_id"].endswith(".1") and told[1]["message_id"].endswith(".2")
    history = app.get(f"/v1/alerts/{alert['id']}/history", headers=admin).json()
    assert [h["event"] for h in history] == ["resolved", "firing"]


def test_crash_between_enqueue_and_commit_repeats_the_same_id(
    app: TestClient, admin: dict[str, str], runtime: Runtime, evaluator: Evaluator,
    clock: Clock, endpoint: str,
) -> None:  # fmt: skip
    source, key = add_source(app, admin, "web")
    define(app, admin, sources=[source], threshold=0, endpoint_ids=[endpoint])
    ingest(app, key, events(["a"], clock.now - 60 * S))

    def crash(*_: Any, **__: Any) -> None:
        raise RuntimeError("power cut")

    real = runtime.alert_state.commit
    runtime.alert_state.commit = crash  # type: ignore[method-assign]
    with pytest.raises(RuntimeError):
        tick(app, evaluator)
    runtime.alert_state.commit = real  # type: ignore[method-assign]
    tick(app, evaluator)
    [message] = outbox(runtime)  # enqueued twice under one id: one row
    assert message["event"] == "firing"


def test_new_match_counts_late_events_once(
    app: TestClient, admin: dict[str, str], runtime: Runtime, evaluator: Evaluator,
    clock: Clock, endpoint: str,
) -> None:  # fmt: skip
    source, key = add_source(app, admin, "web")
    alert = define(app, admin, sources=[source], condition="new_match", window_seconds=3600,
                   endpoint_ids=[endpoint])  # fmt: skip
    ingest(app, key, events(["late"], time.time_ns() - 20 * MIN))  # event time long past
    time.sleep(0.01)
    clock.now = time.time_ns()
    tick(app, evaluator)
    assert [m["payload"]["data"]["value"] for m in outbox(runtime)] == [1]
    due_now(runtime, alert["id"], clock)
    tick(app, evaluator)  # the same event is not new any more: resolved, nothing recounted
    assert [m["event"] for m in outbox(runtime)] == ["firing", "resolved"]
    ingest(app, key, events(["later"], time.time_ns() - 30 * MIN))  # late, and received now
    due_now(runtime, alert["id"], clock)
    tick(app, evaluator)
    told = outbox(runtime)
    assert [m["event"] for m in told] == ["firing", "resolved", "firing"]
    assert told[-1]["payload"]["data"]["value"] == 1
    assert app.get(f"/v1/alerts/{alert['id']}", headers=admin).json()["last_error"] is None


def test_group_by_instances_and_absence(
    app: TestClient, admin: dict[str, str], runtime: Runtime, evaluator: Evaluator,
    clock: Clock, endpoint: str,
) -> None:  # fmt: skip
    source, key = add_source(app, admin, "web")
    grouped = define(app, admin, sources=[source], threshold=1, group_by=["service"],
                     endpoint_ids=[endpoint])  # fmt: skip
    quiet = define(app, admin, name="heartbeat", query="service:cron", sources=[source],
                   condition="absence", endpoint_ids=[endpoint])  # fmt: skip
    ingest(app, key, events(["1", "2"], clock.now - 60 * S, service="api"))
    ingest(app, key, events(["3"], clock.now - 60 * S, service="db"))
    tick(app, evaluator)
    instances = app.get(f"/v1/alerts/{grouped['id']}/instances", headers=admin).json()
    states = {i["labels"]["service"]: i["state"] for i in instances}
    assert states == {"api": "firing", "db": "normal"}
    told = {(m["payload"]["data"]["alert"]["id"], m["event"]) for m in outbox(runtime)}
    assert told == {(grouped["id"], "firing"), (quiet["id"], "firing")}
    firing = [m for m in outbox(runtime) if m["payload"]["data"]["alert"]["id"] == grouped["id"]]
    assert firing[0]["payload"]["data"]["labels"] == {"service": "api"}


def test_the_list_summarises_instances_in_one_query_under_the_readers_grants(
    app: TestClient, admin: dict[str, str], boot: Bootstrap, runtime: Runtime,
    evaluator: Evaluator, clock: Clock,
) -> None:  # fmt: skip
    """The Alerts page shows every alert's state from the list alone (no call per alert), and
    a reader still sees only the alerts over sources they may all read."""
    web, key = add_source(app, admin, "web")
    other, _ = add_source(app, admin, "other")
    grouped = define(app, admin, sources=[web], threshold=1, group_by=["service"])
    hidden = define(app, admin, name="both", sources=[web, other])
    ingest(app, key, events(["1", "2"], clock.now - 60 * S, service="api"))
    ingest(app, key, events(["3"], clock.now - 60 * S, service="db"))
    fresh = {a["id"]: a["summary"] for a in app.get("/v1/alerts", headers=admin).json()}
    none = {"firing": 0, "pending": 0, "normal": 0}
    assert fresh[grouped["id"]] == {"instances": none, "worst": None, "last_run": None,
                                    "last_error": None}  # fmt: skip
    tick(app, evaluator)
    reads: list[str] = []
    runtime.alert_state._db._conn.set_trace_callback(reads.append)
    listed = {a["id"]: a for a in app.get("/v1/alerts", headers=admin).json()}
    runtime.alert_state._db._conn.set_trace_callback(None)
    assert len(reads) == 1, reads
    summary = listed[grouped["id"]]["summary"]
    assert summary["instances"] == {"firing": 1, "pending": 0, "normal": 1}
    assert summary["worst"] == "firing" and summary["last_error"] is None
    assert summary["last_run"] == listed[grouped["id"]]["last_run"] is not None
    member = add_member(runtime, str(boot.org["id"]), "viewer", [web])
    seen = [a["id"] for a in app.get("/v1/alerts", headers=member.headers).json()]
    assert grouped["id"] in seen and hidden["id"] not in seen


def test_evaluations_and_their_lag_are_on_metrics(
    app: TestClient, admin: dict[str, str], boot: Bootstrap, runtime: Runtime,
    evaluator: Evaluator, clock: Clock,
) -> None:  # fmt: skip
    web, key = add_source(app, admin, "web")
    other, _ = add_source(app, admin, "other")
    member = add_member(runtime, str(boot.org["id"]), "member", [web])
    define(app, admin, sources=[web], threshold=0)
    define(app, member.headers, name="theirs", sources=[web])
    runtime.control.people.set_role(str(boot.org["id"]), member.id, "member", [other], ACTOR)
    runtime.control.auth.clear()
    ingest(app, key, events(["a"], clock.now - 60 * S))
    assert tick(app, evaluator) == 1  # the member's alert paused: its owner lost access
    text = app.get("/metrics", headers=bearer(boot.operator_token)).text
    assert 'astralog_alert_evaluations_total{outcome="ok"} 1.0' in text, text
    assert 'astralog_alert_evaluations_total{outcome="paused"} 1.0' in text
    # Due on the minute grid, committed at the clock's 30 s past it: one scan, 30 s late.
    assert "astralog_alert_evaluation_lag_seconds_count 1.0" in text
    assert 'astralog_alert_evaluation_lag_seconds_bucket{le="20.0"} 0.0' in text
    assert 'astralog_alert_evaluation_lag_seconds_bucket{le="30.0"} 1.0' in text


def test_owner_losing_access_pauses_the_alert_and_tells_admins(
    app: TestClient, admin: dict[str, str], boot: Bootstrap, runtime: Runtime,
    evaluator: Evaluator, endpoint: str,
) -> None:  # fmt: skip
    web, _ = add_source(app, admin, "web")
    other, _ = add_source(app, admin, "other")
    member = add_member(runtime, str(boot.org["id"]), "member", [web])
    refused = app.post("/v1/alerts", headers=member.headers,
                       json={"name": "x", "sources": [other]})  # fmt: skip
    assert refused.status_code == 400 and "unknown sources" in refused.json()["detail"]
    alert = define(app, member.headers, sources=[web], endpoint_ids=[endpoint])
    runtime.control.people.set_role(str(boot.org["id"]), member.id, "member", [other], ACTOR)
    runtime.control.auth.clear()
    tick(app, evaluator)
    got = app.get(f"/v1/alerts/{alert['id']}", headers=admin).json()
    assert got["state"] == "paused" and "no longer read source" in got["paused_reason"]
    [error] = outbox(runtime)
    assert error["event"] == "error" and "no longer read" in error["payload"]["data"]["error"]


def test_silence_preview_and_muting(
    app: TestClient, admin: dict[str, str], runtime: Runtime, evaluator: Evaluator,
    clock: Clock, endpoint: str,
) -> None:  # fmt: skip
    source, key = add_source(app, admin, "web")
    alert = define(app, admin, sources=[source], group_by=["service"], endpoint_ids=[endpoint])
    ingest(app, key, events(["1"], clock.now - 60 * S, service="api"))
    ingest(app, key, events(["2"], clock.now - 60 * S, service="db"))
    body = {"matchers": [{"name": "service", "op": "=", "value": "api"}],
            "ends_at": datetime.fromtimestamp(clock.now / S + 3600, UTC).isoformat(),
            "starts_at": datetime.fromtimestamp(clock.now / S - 60, UTC).isoformat()}  # fmt: skip
    made = app.post("/v1/silences", headers=admin, json=body)
    assert made.status_code == 201, made.text
    tick(app, evaluator)
    told = [m["payload"]["data"]["labels"] for m in outbox(runtime)]
    assert told == [{"service": "db"}]  # api fired under the silence: not told
    preview = app.post("/v1/silences/preview", headers=admin, json=body).json()
    assert [i["labels"]["service"] for i in preview["instances"]] == ["api"]
    assert preview["instances"][0]["alert_id"] == alert["id"]
    audit = app.get("/v1/audit", headers=admin).json()
    assert "SilenceCreated" in json.dumps(audit)


def test_backtest_counts_firings_over_a_known_corpus(
    app: TestClient, admin: dict[str, str]
) -> None:
    source, key = add_source(app, admin, "web")
    now = time.time_ns()
    # Three bursts of 3 errors, 2 hours apart, and single errors between them.
    for hours in (2, 4, 6):
        at = now - hours * 3600 * S
        ingest(app, key, events([f"{hours}-{i}" for i in range(3)], at))
        ingest(app, key, events([f"{hours}-x"], at - 30 * MIN))
    answer = app.post("/v1/alerts/backtest", headers=admin, json={
        "name": "bt", "sources": [source], "threshold": 2, "window_seconds": 300,
        "interval_seconds": 300, "hours": 24})  # fmt: skip
    assert answer.status_code == 200, answer.text
    result = answer.json()
    assert result["fired"] == 3 and result["evaluations"] == 288


@pytest.mark.parametrize(
    ("change", "status", "words"),
    [
        ({"query": "x" * 5000}, 422, "4096"),
        ({"cron": "61 * * * *"}, 400, "invalid cron"),
        ({"cron": "*/5 * * * *", "timezone": "Mars/Olympus"}, 400, "unknown time zone"),
        ({"cron": "*/5 * * * *", "timezone": "../../etc/passwd"}, 400, "unknown time zone"),
        ({"interval_seconds": 10}, 400, "at most every 60 s"),
        ({"cron": "* * * * *", "interval_seconds": 60}, 400, "not both"),
        ({"query": "level:("}, 400, ""),
        ({"group_by": ["service"], "condition": "new_match"}, 400, "group_by"),
        ({"endpoint_ids": ["aep_nope"]}, 404, ""),
        ({"window_seconds": 10}, 422, ""),
    ],
)
def test_hostile_definitions_are_refused(
    app: TestClient, admin: dict[str, str], change: dict[str, Any], status: int, words: str
) -> None:
    answer = app.post("/v1/alerts", headers=admin, json={"name": "bad", **change})
    assert answer.status_code == status, answer.text
    assert words in answer.text


def test_other_orgs_ids_are_404_and_quota_holds(
    app: TestClient, admin: dict[str, str], runtime: Runtime, boot: Bootstrap
) -> None:
    alert = define(app, admin)
    org = runtime.control.create_org("rival", "pro", ACTOR)
    token = runtime.control.issue_token(org["id"], "t", ["alerts:read", "alerts:write"], ACTOR)
    rival = bearer(token.credential.secret)
    for method, path in [("GET", ""), ("GET", "/instances"), ("GET", "/history"),
                         ("POST", "/pause"), ("POST", "/resume"), ("DELETE", "")]:  # fmt: skip
        answer = app.request(method, f"/v1/alerts/{alert['id']}{path}", headers=rival)
        assert answer.status_code == 404, (method, path, answer.text)
    assert app.post("/v1/silences/sil_x/end", headers=rival).status_code == 404
    viewer = add_member(runtime, str(boot.org["id"]), "viewer")
    assert app.get("/v1/alerts", headers=viewer.headers).status_code == 200
    assert app.post("/v1/alerts", headers=viewer.headers, json={"name": "v"}).status_code == 403
    runtime.alert_rules.limits = type(runtime.alert_rules.limits)(max_alerts=1)
    over = app.post("/v1/alerts", headers=admin, json={"name": "two"})
    assert over.status_code == 403 and "quota" in over.json()["detail"]


def test_saved_searches_private_shared_and_by_url(
    app: TestClient, admin: dict[str, str], runtime: Runtime, boot: Bootstrap
) -> None:
    source, _ = add_source(app, admin, "web")
    member = add_member(runtime, str(boot.org["id"]), "member", [source])
    mine = app.post(
        "/v1/saved-searches",
        headers=member.headers,
        json={"name": "my errors", "query": "level:error", "sources": [source], "start": "now-1h"},
    )
    shared = app.post("/v1/saved-searches", headers=member.headers, json={
        "name": "team", "query": "service:api", "visibility": "shared"})  # fmt: skip
    assert mine.status_code == 201 and shared.status_code == 201, mine.text + shared.text
    url = mine.json()["search_url"]
    assert "q=level%3Aerror" in url and f"sources={source}" in url and "start=now-1h" in url
    seen = {s["name"] for s in app.get("/v1/saved-searches", headers=admin).json()}
    assert seen == {"team"}  # the member's private one is theirs alone
    private = app.get(f"/v1/saved-searches/{mine.json()['id']}", headers=admin)
    assert private.status_code == 404
    other, _ = add_source(app, admin, "secret")
    refused = app.post("/v1/saved-searches", headers=member.headers,
                       json={"name": "x", "sources": [other]})  # fmt: skip
    assert refused.status_code == 400
    alert = define(app, member.headers, saved_search_id=mine.json()["id"])
    assert alert["spec"]["query"] == "level:error" and alert["spec"]["sources"] == [source]
