"""Review findings against alerts, saved searches and silences: each test states what the
product promises (and failed while the defect was there)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from astralog.runtime import Bootstrap, Runtime
from astralog.settings import Settings
from tests.rbac_helpers import ACTOR, add_member
from tests.search_corpus import add_source, ingest
from tests.test_alerts import Clock, alert_settings, define, events, tick
from tests.test_alerts import app as app

S = 10**9


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return alert_settings(tmp_path, webhook_timeout_seconds=1.0, delivery_concurrency=2,
                          delivery_poll_seconds=0.05, retry_schedule_seconds=[600.0],
                          max_groups=2)  # fmt: skip


def test_a_private_saved_search_cannot_be_read_through_an_alert(
    app: TestClient, runtime: Runtime, boot: Bootstrap
) -> None:
    """A private saved search 'answers like a missing one' to anyone but its owner; an alert
    built on it copies its query into the alert's spec, which any alerts:read caller reads."""
    org = str(boot.org["id"])
    alice = add_member(runtime, org, "member", tag="a")
    bob = add_member(runtime, org, "member", tag="b")
    body = {"name": "mine", "query": "user:ceo@example.com", "visibility": "private"}
    private = app.post("/v1/saved-searches", headers=alice.headers, json=body).json()
    assert app.get(f"/v1/saved-searches/{private['id']}", headers=bob.headers).status_code == 404
    stolen = app.post("/v1/alerts", headers=bob.headers,
                      json={"name": "peek", "saved_search_id": private["id"]})  # fmt: skip
    assert stolen.status_code in (400, 404), stolen.text
    assert "ceo@example.com" not in stolen.text


def test_a_member_cannot_pause_or_resume_an_admins_alert(
    app: TestClient, admin: dict[str, str], runtime: Runtime, boot: Bootstrap
) -> None:
    """'only the alert's owner or an org admin can change or delete it': pausing silences it."""
    alert = define(app, admin, name="prod down")
    member = add_member(runtime, str(boot.org["id"]), "member")
    paused = app.post(f"/v1/alerts/{alert['id']}/pause", headers=member.headers)
    assert paused.status_code == 403, paused.text
    assert app.get(f"/v1/alerts/{alert['id']}", headers=admin).json()["state"] == "active"


def test_a_silence_starting_at_the_dawn_of_time_is_a_4xx_not_a_500(
    app: TestClient, admin: dict[str, str]
) -> None:
    answer = app.post("/v1/silences", headers=admin, json={
        "matchers": [{"name": "alertname", "value": "x"}],
        "starts_at": "0001-01-01T00:00:00+14:00", "ends_at": "2030-01-01T00:00:00Z"})  # fmt: skip
    assert 400 <= answer.status_code < 500, answer.text


def test_alert_instances_do_not_show_values_of_sources_the_reader_is_not_granted(
    app: TestClient, admin: dict[str, str], runtime: Runtime, boot: Bootstrap
) -> None:
    """A member granted only 'web' must not learn what an admin's alert over 'payroll' counts
    and groups (here: which users failed to log in)."""
    web, _ = add_source(app, admin, "web")
    payroll, key = add_source(app, admin, "payroll")
    clock = Clock()
    ingest(app, key, events(["x"], clock.now - 60 * S, user="ceo@example.com"))
    alert = define(app, admin, name="payroll logins", sources=[payroll], group_by=["user"])
    evaluator = runtime_evaluator(runtime, clock)
    tick(app, evaluator)
    member = add_member(runtime, str(boot.org["id"]), "member", [web])
    assert app.get(f"/v1/alerts/{alert['id']}/instances", headers=admin).json()  # it did count
    seen = app.get(f"/v1/alerts/{alert['id']}/instances", headers=member.headers)
    assert "ceo@example.com" not in seen.text, seen.text
    preview = app.post("/v1/silences/preview", headers=member.headers, json={
        "matchers": [{"name": "alertname", "op": "=~", "value": "?*"}],
        "ends_at": "2030-01-01T00:00:00Z"})  # fmt: skip
    assert "ceo@example.com" not in preview.text, preview.text


def runtime_evaluator(runtime: Runtime, clock: Clock):  # type: ignore[no-untyped-def]
    from astralog.alerts.evaluate import Config, Evaluator

    return Evaluator(runtime.alert_rules, runtime.control.auth, runtime, runtime.outbox,
                     runtime.alert_state, Config(settle_ns=0), clock,
                     error_endpoints=runtime.alert_endpoints.for_errors)  # fmt: skip


def test_a_week_long_backtest_covers_the_recent_week_not_only_its_oldest_day(
    app: TestClient, admin: dict[str, str]
) -> None:
    """alerts.backtest_max_evaluations: 'a longer backtest steps coarser'. It truncates instead,
    keeping the oldest 1440 evaluations: a burst of errors a minute ago is never replayed."""
    source, key = add_source(app, admin, "web")
    ingest(app, key, events(["a", "b", "c"], time.time_ns() - 120 * S))
    day = app.post("/v1/alerts/backtest", headers=admin,
                   json={"name": "e", "sources": [source], "hours": 24}).json()  # fmt: skip
    assert day["fired"] == 1, day
    week = app.post("/v1/alerts/backtest", headers=admin,
                    json={"name": "e", "sources": [source], "hours": 168}).json()  # fmt: skip
    assert week["fired"] == 1, week  # the same burst is inside the last week too
    assert week["end"] >= day["end"][:13], week


def test_an_alert_cannot_be_defined_on_a_source_pending_deletion(
    app: TestClient, admin: dict[str, str]
) -> None:
    """A deleted source's keys answer 410 and searches leave it out; an alert saved on it only
    errors at every evaluation: refuse it when saved, naming the deletion."""
    source, _ = add_source(app, admin, "gone")
    assert app.delete(f"/v1/sources/{source}", headers=admin).status_code == 202
    made = app.post("/v1/alerts", headers=admin, json={"name": "e", "sources": [source]})
    assert made.status_code in (400, 404, 409, 410), made.text


@pytest.mark.slow
def test_expired_silences_do_not_slow_every_orgs_evaluation(
    app: TestClient, admin: dict[str, str], runtime: Runtime, boot: Bootstrap
) -> None:
    """Silences have no quota and every alert's evaluation re-reads and parses all of its org's
    silences, ended ones included; the evaluator is one loop for every org, so one org's pile of
    silences delays everyone's alerts (measured: 50 alerts, 5000 silences, 3.4 s -> 27 s)."""
    from astralog.controlplane.alert_rules import SilenceCreated

    for i in range(20):
        define(app, admin, name=f"a{i}", query=f"q{i}")
    clock = Clock()
    evaluator = runtime_evaluator(runtime, clock)

    def timed_tick() -> float:
        with runtime.alert_state._tx() as conn:
            conn.execute("DELETE FROM alert_runs")
        started = time.perf_counter()
        assert tick(app, evaluator) == 20
        return time.perf_counter() - started

    timed_tick()  # warm-up: the first scans open DuckDB and the catalog
    baseline = timed_tick()
    org = str(boot.org["id"])
    matchers = [{"name": "alertname", "op": "=", "value": "nothing"}]
    with runtime.control.store.transaction():
        for i in range(3000):  # all of them ended years ago
            event = SilenceCreated(f"sil_old{i}", org, matchers, "2001-01-01T00:00:00+00:00",
                                   "2001-01-02T00:00:00+00:00", "x" * 1000)  # fmt: skip
            runtime.control.store.append(event, ACTOR, 0)
    loaded = timed_tick()
    assert loaded < 2 * baseline + 0.5, f"tick {baseline:.2f} s -> {loaded:.2f} s"


def test_a_paused_alert_whose_owner_lost_access_is_not_resumed_into_an_error_loop(
    app: TestClient, admin: dict[str, str], runtime: Runtime, boot: Bootstrap
) -> None:
    """Resumed as it is, it would pause again at the next round and tell its endpoints again:
    resuming it is refused with the reason; another member may not resume it at all."""
    org = str(boot.org["id"])
    web, _ = add_source(app, admin, "web")
    other, _ = add_source(app, admin, "other")
    owner = add_member(runtime, org, "member", [web], tag="o")
    alert = define(app, owner.headers, sources=[web])
    runtime.control.people.set_role(org, owner.id, "member", [other], ACTOR)
    runtime.control.auth.clear()
    tick(app, runtime_evaluator(runtime, Clock()))
    assert app.get(f"/v1/alerts/{alert['id']}", headers=admin).json()["state"] == "paused"
    stranger = add_member(runtime, org, "member", [web], tag="s")
    assert app.post(f"/v1/alerts/{alert['id']}/resume", headers=stranger.headers).status_code == 403
    refused = app.post(f"/v1/alerts/{alert['id']}/resume", headers=admin)
    assert refused.status_code == 409 and "no longer read" in refused.json()["detail"]
    assert app.get(f"/v1/alerts/{alert['id']}", headers=admin).json()["state"] == "paused"


def test_the_owner_pauses_and_resumes_their_own_alert(
    app: TestClient, admin: dict[str, str], runtime: Runtime, boot: Bootstrap
) -> None:
    web, _ = add_source(app, admin, "web")
    owner = add_member(runtime, str(boot.org["id"]), "member", [web])
    alert = define(app, owner.headers, sources=[web])
    paused = app.post(f"/v1/alerts/{alert['id']}/pause", headers=owner.headers)
    assert paused.status_code == 200 and paused.json()["state"] == "paused"
    resumed = app.post(f"/v1/alerts/{alert['id']}/resume", headers=owner.headers)
    assert resumed.status_code == 200 and resumed.json()["state"] == "active"


@pytest.mark.parametrize(
    ("matcher", "ok"),
    [
        ({"name": "alertname", "op": "=~", "value": "*?*"}, False),
        ({"name": "alertname", "op": "=~", "value": "[a-z]*"}, False),
        ({"name": "user", "op": "=", "value": ""}, False),
        ({"name": "alertname", "op": "=~", "value": "pay*"}, True),
    ],
)
def test_a_silence_must_narrow(
    app: TestClient, admin: dict[str, str], matcher: dict[str, str], ok: bool
) -> None:
    body = {"matchers": [matcher], "ends_at": "2100-01-01T00:00:00Z"}
    answer = app.post("/v1/silences/preview", headers=admin, json=body)
    assert answer.status_code == (200 if ok else 400), answer.text


@pytest.mark.parametrize(
    ("bounds", "words"),
    [
        ({"starts_at": "0001-01-01T00:00:00+14:00"}, "starts_at"),
        ({"ends_at": "9999-12-31T23:59:59-14:00"}, "ends_at"),
        ({"ends_at": "2001-01-01T00:00:00Z"}, "in the past"),
        ({"starts_at": "2099-01-01T00:00:00Z", "ends_at": "2098-01-01T00:00:00Z"}, "after"),
    ],
)
def test_silence_times_out_of_range_are_400_with_the_field(
    app: TestClient, admin: dict[str, str], bounds: dict[str, str], words: str
) -> None:
    body = {"matchers": [{"name": "alertname", "value": "x"}], "ends_at": "2030-01-01T00:00:00Z"}
    for path in ("/v1/silences", "/v1/silences/preview"):
        answer = app.post(path, headers=admin, json=body | bounds)
        assert answer.status_code == 400 and words in answer.json()["detail"], answer.text


def test_silences_in_force_have_a_quota_and_ended_ones_do_not_count(
    app: TestClient, admin: dict[str, str], runtime: Runtime
) -> None:
    from astralog.controlplane.alert_rules import AlertLimits

    runtime.alert_rules.limits = AlertLimits(max_active_silences=2)
    body = {"matchers": [{"name": "alertname", "value": "x"}], "ends_at": "2100-01-01T00:00:00Z"}
    first = app.post("/v1/silences", headers=admin, json=body).json()
    assert app.post("/v1/silences", headers=admin, json=body).status_code == 201
    refused = app.post("/v1/silences", headers=admin, json=body)
    assert refused.status_code == 403 and "quota is 2" in refused.json()["detail"]
    assert app.post(f"/v1/silences/{first['id']}/end", headers=admin).status_code == 200
    assert app.post("/v1/silences", headers=admin, json=body).status_code == 201


@pytest.mark.parametrize("name", ["\u0000", "a b", "user:x", "", " user", "x)"])
def test_group_by_takes_field_names_only(app: TestClient, admin: dict[str, str], name: str) -> None:
    answer = app.post("/v1/alerts", headers=admin, json={"name": "g", "group_by": [name]})
    assert answer.status_code in (400, 422), answer.text
    if answer.status_code == 400:
        assert "not a field name" in answer.json()["detail"]


def test_a_saved_search_cannot_be_saved_on_a_source_pending_deletion(
    app: TestClient, admin: dict[str, str]
) -> None:
    source, _ = add_source(app, admin, "gone")
    assert app.delete(f"/v1/sources/{source}", headers=admin).status_code == 202
    body = {"name": "s", "sources": [source]}
    answer = app.post("/v1/saved-searches", headers=admin, json=body)
    assert answer.status_code == 400 and "pending deletion" in answer.json()["detail"]
    assert f"/v1/sources/{source}/restore" in answer.json()["detail"]


def test_a_long_backtest_says_it_stepped_coarser_and_keeps_a_burst_between_its_steps(
    app: TestClient, admin: dict[str, str], runtime: Runtime
) -> None:
    """Replayed in steps of several runs, a 1-minute window burst that only one skipped run
    sees still fires: each replayed evaluation takes the run closest to firing."""
    source, key = add_source(app, admin, "web")
    ingest(app, key, events(["a", "b", "c"], time.time_ns() - 30 * 3600 * S))
    spec = {"name": "e", "sources": [source], "threshold": 2, "window_seconds": 60, "hours": 48}
    answer = app.post("/v1/alerts/backtest", headers=admin, json=spec).json()
    assert answer["fired"] == 1, answer
    assert answer["runs_per_evaluation"] == 2 and "stands for 2" in answer["note"]
    assert answer["scheduled_runs"] in (2879, 2880) and answer["evaluations"] <= 1440


def test_backtest_keeps_the_busiest_groups_in_the_engine(
    app: TestClient, admin: dict[str, str]
) -> None:
    source, key = add_source(app, admin, "web")
    at = time.time_ns() - 120 * S
    for service, n in (("api", 5), ("db", 3), ("web", 1)):
        ingest(app, key, events([str(i) for i in range(n)], at, service=service))
    spec = {"name": "e", "sources": [source], "group_by": ["service"], "threshold": 0}
    answer = app.post("/v1/alerts/backtest", headers=admin, json=spec).json()
    assert sorted(f["labels"]["service"] for f in answer["firings"]) == ["api", "db"]  # max 2
