"""Alerts and silences: ``/v1/alerts`` (+ ``/backtest``, ``/{id}/instances``, ``/{id}/history``,
pause and resume) and ``/v1/silences`` (+ ``/preview``).

Reading needs ``alerts:read`` (viewers and up); defining, changing, silencing and backtesting
need ``alerts:write`` (members and up) and only on sources the caller may read: an alert runs as
its owner, and a member cannot watch what they could not search. Another org's ids answer 404,
and so does an alert over sources the reader may not all read (its spec, instances and history
hold values of those sources); admins see every alert. Pausing, resuming, changing and deleting
are its owner's or an admin's.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any, Literal

from fastapi import APIRouter, Response
from pydantic import AwareDatetime, Field

from astralog.alerts import backtest as bt
from astralog.alerts.evaluate import instance_labels, owner_access, plan_for
from astralog.alerts.silences import check_matchers, preview, silence_of
from astralog.alerts.store import WORST_FIRST, Summary
from astralog.api.deps import ActorDep, AlertsRead, AlertsWrite, ManagementDep, RuntimeDep
from astralog.api.models import Strict
from astralog.auth.principal import Principal
from astralog.controlplane.alert_rules import AlertSpec, spec_of, utc_bounds
from astralog.errors import BadRequest, Conflict, NotFound
from astralog.query.engine import Session, run
from astralog.query.remote import fetch_remote
from astralog.query.timerange import iso
from astralog.runtime import Runtime

router = APIRouter(tags=["alerts"])
S = 10**9
Name = Field(min_length=1, max_length=256)


class AlertBody(Strict):
    name: str = Field(min_length=1, max_length=200, examples=["API 5xx burst"])
    query: str = Field("", max_length=4096, examples=["service:api status>=500"])
    sources: list[str] | None = Field(None, max_length=100, description="Source ids; all if null")
    saved_search_id: str | None = Field(None, max_length=64)
    condition: Literal["count_above", "count_below", "new_match", "absence"] = "count_above"
    threshold: int = Field(0, ge=0, le=10**12)
    window_seconds: int = Field(300, ge=60, le=30 * 86_400, description="Look-back window")
    interval_seconds: int | None = Field(60, ge=1, le=7 * 86_400)
    cron: str | None = Field(None, max_length=120, examples=["*/5 * * * *"])
    timezone: str = Field("UTC", max_length=64, examples=["Europe/Paris"])
    group_by: list[str] = Field(default_factory=list, max_length=5)
    pending_for: int = Field(1, ge=1, le=100, description="Consecutive hits before firing")
    keep_firing_for_seconds: int = Field(0, ge=0, le=7 * 86_400)
    flap_window_seconds: int = Field(3600, ge=60, le=7 * 86_400)
    flap_max_changes: int = Field(4, ge=1, le=100)
    evaluation_delay_seconds: int = Field(0, ge=0, le=3600)
    endpoint_ids: list[str] = Field(default_factory=list, max_length=20)

    def spec(self, runtime: Runtime, org_id: str, who: Principal) -> AlertSpec:
        fields = self.model_dump(exclude={"hours"})
        if self.cron is not None and "interval_seconds" not in self.model_fields_set:
            fields["interval_seconds"] = None  # a cron schedule replaces the default interval
        if self.saved_search_id is not None:
            fields.update(_from_saved(runtime, org_id, who, self.saved_search_id))
        runtime.alert_endpoints.require(org_id, tuple(self.endpoint_ids))
        return AlertSpec(**fields)


def _from_saved(runtime: Runtime, org_id: str, who: Principal, search_id: str) -> dict[str, Any]:
    """An alert on a saved search watches its query and sources (a copy: editing the search
    later does not change what a running alert watches). Someone else's private search answers
    404, as it does when opened."""
    saved = runtime.saved_searches.get(org_id, search_id, who)
    return {"query": saved["query"], "sources": saved["sources"]}


def may_see(who: Principal, alert: dict[str, Any]) -> bool:
    """Whether ``who`` may read an alert's spec, instances and history: they hold values of its
    sources, so a reader must be able to read every one of them. An alert over every source
    (``sources`` null) runs with its owner's grants: only its owner and readers of every source
    see it."""
    if who.readable is None or "members:write" in who.scopes:
        return True
    sources = alert["spec"]["sources"]
    if sources is None:
        return bool(alert["owner"] == who.id)
    return set(sources) <= who.readable


def _alert(runtime: Runtime, org_id: str, alert_id: str, who: Principal) -> dict[str, Any]:
    alert = runtime.alert_rules.get(org_id, alert_id)
    if not may_see(who, alert):  # answers like a missing one: its name says enough already
        raise NotFound(f"alert {alert_id[:40]!r} does not exist in this org")
    return alert


class SilenceMatcher(Strict):
    name: str = Name
    op: Literal["=", "!=", "=~", "!~"] = "="
    value: str = Field("", max_length=256)


class SilenceBody(Strict):
    matchers: list[SilenceMatcher] = Field(min_length=1, max_length=20)
    starts_at: AwareDatetime | None = Field(None, description="Default: now; 1970 to 2200")
    ends_at: AwareDatetime = Field(description="In the future, before 2200")
    comment: str = Field("", max_length=1000)


class BacktestBody(AlertBody):
    hours: int = Field(24, ge=1, le=168, description="How far back to replay")


# ---- alerts ------------------------------------------------------------------------------------


@router.get("/v1/alerts", summary="The org's alerts with their state")
def list_alerts(
    org_id: AlertsRead, who: ManagementDep, runtime: RuntimeDep
) -> list[dict[str, Any]]:
    alerts = [a for a in runtime.alert_rules.for_org(org_id) if may_see(who, a)]
    summaries = runtime.alert_state.summaries([a["id"] for a in alerts])
    return [_with_summary(a, summaries.get(a["id"])) for a in alerts]


@router.post("/v1/alerts", status_code=201, summary="Define an alert")
def create_alert(
    body: AlertBody, org_id: AlertsWrite, who: ManagementDep, runtime: RuntimeDep, actor: ActorDep
) -> dict[str, Any]:
    alert = runtime.alert_rules.define(org_id, who, body.spec(runtime, org_id, who), actor)
    return _with_run(runtime, alert)


@router.post("/v1/alerts/backtest", summary="How often a definition would have fired")
async def backtest(
    body: BacktestBody, org_id: AlertsWrite, who: ManagementDep, runtime: RuntimeDep
) -> dict[str, Any]:
    spec = body.spec(runtime, org_id, who)
    runtime.alert_rules.check(org_id, who, spec)
    now = time.time_ns()
    cap = runtime.settings.alerts.backtest_max_evaluations
    runs = bt.evaluation_times(spec, now - body.hours * 3600 * S, now, cap)
    if not runs:
        raise BadRequest("the schedule does not run inside the backtest's span; widen 'hours'")
    width = bt.bucket_ns(spec, runs)
    origin = runs.first - spec.window_seconds * S - spec.evaluation_delay_seconds * S
    origin -= origin % width
    plan = plan_for(runtime, org_id, spec, who, origin, now, now)
    await fetch_remote(runtime, plan)
    session = Session(plan, runtime.settings.query.engine_threads)
    max_groups = runtime.settings.alerts.max_groups
    counts = await run(session, lambda s: bt.bucket_counts(s, spec, width, origin, max_groups))
    result = bt.replay(spec, runs, width, origin, counts)
    return {**result, **runs.covered(), "scanned_bytes": plan.scanned_bytes}


@router.get("/v1/alerts/{alert_id}", summary="One alert, its schedule and last evaluation")
def get_alert(
    alert_id: str, org_id: AlertsRead, who: ManagementDep, runtime: RuntimeDep
) -> dict[str, Any]:
    return _with_run(runtime, _alert(runtime, org_id, alert_id, who))


@router.put("/v1/alerts/{alert_id}", summary="Replace an alert's definition (it starts over)")
def update_alert(
    alert_id: str, body: AlertBody, org_id: AlertsWrite, who: ManagementDep, runtime: RuntimeDep,
    actor: ActorDep,
) -> dict[str, Any]:  # fmt: skip
    spec = body.spec(runtime, org_id, who)
    alert = runtime.alert_rules.update(org_id, alert_id, who, spec, actor)
    runtime.alert_state.forget(alert_id)
    return _with_run(runtime, alert)


@router.delete("/v1/alerts/{alert_id}", status_code=204, summary="Delete an alert")
def delete_alert(
    alert_id: str, org_id: AlertsWrite, who: ManagementDep, runtime: RuntimeDep, actor: ActorDep
) -> Response:
    runtime.alert_rules.delete(org_id, alert_id, who, actor)
    runtime.alert_state.forget(alert_id)
    return Response(status_code=204)


@router.post("/v1/alerts/{alert_id}/pause", summary="Stop evaluating an alert")
def pause_alert(
    alert_id: str, org_id: AlertsWrite, who: ManagementDep, runtime: RuntimeDep, actor: ActorDep
) -> dict[str, Any]:
    return runtime.alert_rules.pause(org_id, alert_id, "paused by hand", actor, who)


@router.post("/v1/alerts/{alert_id}/resume", summary="Evaluate a paused alert again")
def resume_alert(
    alert_id: str, org_id: AlertsWrite, who: ManagementDep, runtime: RuntimeDep, actor: ActorDep
) -> dict[str, Any]:
    alert = runtime.alert_rules.writable(org_id, alert_id, who)  # its owner's or an admin's
    if alert["state"] == "paused":
        # Resumed as it is, an alert whose owner lost access pauses again at the next round
        # and tells its endpoints once more: refuse, saying why, until it can run.
        reader = owner_access(runtime.control.auth, alert, spec_of(alert))
        if isinstance(reader, str):
            raise Conflict(
                f"this alert cannot run as its owner ({reader}): change its sources "
                f"(PUT /v1/alerts/{alert_id}) or define it again as someone who may read them"
            )
    return runtime.alert_rules.resume(org_id, alert_id, who, actor)


@router.get("/v1/alerts/{alert_id}/instances", summary="Each group's state")
def alert_instances(
    alert_id: str, org_id: AlertsRead, who: ManagementDep, runtime: RuntimeDep
) -> Any:
    return _instances(runtime, _alert(runtime, org_id, alert_id, who))


@router.get("/v1/alerts/{alert_id}/history", summary="Transitions, holds and errors, newest first")
def alert_history(
    alert_id: str, org_id: AlertsRead, who: ManagementDep, runtime: RuntimeDep
) -> Any:
    _alert(runtime, org_id, alert_id, who)
    return [
        {"at": iso(h["at_ns"]), "event": h["event"], "key": h["key"], "value": h["value"],
         "detail": h["detail"]}
        for h in runtime.alert_state.history(alert_id)
    ]  # fmt: skip


def _with_run(runtime: Runtime, alert: dict[str, Any]) -> dict[str, Any]:
    run_state = runtime.alert_state.run(alert["id"])
    return {
        **alert,
        "next_due": iso(run_state.next_due_ns) if run_state else None,
        "last_run": iso(run_state.last_run_ns) if run_state and run_state.last_run_ns else None,
        "last_error": run_state.last_error if run_state else None,
    }


def _with_summary(alert: dict[str, Any], summary: Summary | None) -> dict[str, Any]:
    """A list entry: the alert, its schedule and last run, and its instances counted by state
    (``worst`` is the worst of them, null before any), so a list needs no call per alert."""
    counts = {c: 0 for c in WORST_FIRST} | (summary.counts if summary else {})
    last_run = iso(summary.last_run_ns) if summary and summary.last_run_ns else None
    last_error = summary.last_error if summary else None
    return {
        **alert,
        "next_due": iso(summary.next_due_ns) if summary and summary.next_due_ns else None,
        "last_run": last_run,
        "last_error": last_error,
        "summary": {"instances": counts, "worst": summary.worst if summary else None,
                    "last_run": last_run, "last_error": last_error},
    }  # fmt: skip


def _instances(runtime: Runtime, alert: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        {"key": i.key, "labels": instance_labels(alert, i.labels), "state": i.state.condition,
         "notified": i.state.notified, "value": i.value, "flapping": len(i.state.changes) >
         alert["spec"]["flap_max_changes"]}
        for i in runtime.alert_state.instances(alert["id"]).values()
    ]  # fmt: skip


# ---- silences ----------------------------------------------------------------------------------


def _silence_parts(body: SilenceBody) -> tuple[list[dict[str, str]], datetime, datetime]:
    matchers = check_matchers([m.model_dump() for m in body.matchers])
    starts = body.starts_at or datetime.now(UTC)
    utc_bounds(starts, body.ends_at)  # a 400 for what cannot be a silence's time
    return matchers, starts, body.ends_at


@router.get("/v1/silences", summary="The org's silences, past and present")
def list_silences(org_id: AlertsRead, runtime: RuntimeDep) -> list[dict[str, Any]]:
    return runtime.alert_rules.silences(org_id)


@router.post("/v1/silences", status_code=201, summary="Mute matching alert instances for a time")
def create_silence(
    body: SilenceBody, org_id: AlertsWrite, runtime: RuntimeDep, actor: ActorDep
) -> dict[str, Any]:
    matchers, starts, ends = _silence_parts(body)
    return runtime.alert_rules.silence(org_id, matchers, starts, ends, body.comment, actor)


@router.post("/v1/silences/preview", summary="The instances a silence would mute now")
def preview_silence(
    body: SilenceBody, org_id: AlertsWrite, who: ManagementDep, runtime: RuntimeDep
) -> Any:
    """Among the alerts the caller may see (:func:`may_see`): a preview must not show the
    labels of alerts over sources the caller may not read."""
    matchers, starts, ends = _silence_parts(body)
    view = {"id": "preview", "matchers": matchers, "starts_at": starts.isoformat(),
            "ends_at": ends.isoformat()}  # fmt: skip
    instances = []
    for alert in runtime.alert_rules.for_org(org_id):
        if not may_see(who, alert):
            continue
        for instance in _instances(runtime, alert):
            instances.append({**instance, "alert_id": alert["id"], "alert": alert["name"]})
    muted = preview(silence_of(view), instances)
    return {"instances": muted, "count": len(muted)}


@router.post("/v1/silences/{silence_id}/end", summary="End a silence now")
def end_silence(
    silence_id: str, org_id: AlertsWrite, runtime: RuntimeDep, actor: ActorDep
) -> dict[str, Any]:
    return runtime.alert_rules.end_silence(org_id, silence_id, actor)
