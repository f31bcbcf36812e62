"""The evaluator: runs due alerts, moves their instances' state, enqueues what is to be told.

Stage: alert rule -> **evaluate** -> outbox. Each round takes the alerts whose schedule is due,
checks each owner's access *now* (a revoked token, a deprovisioned person or a source no longer
granted pauses the alert with the reason, and an ``error`` message goes to its endpoints, which
only admins manage), then scans. Alerts that read the same org, sources, window and query share
one scan: one plan (:func:`astralog.query.plan.make_plan`, the search API's, with the owner's
``readable`` sources) and one DuckDB session, with one grouped count per distinct ``group_by``.

Windows. Count and absence conditions read the look-back window ending ``evaluation_delay``
before the scheduled time, so alerts on the same grid share windows. "Any new match" reads by
*receive* order instead: the events received after the alert's ingest watermark (an
ObservedTimestamp, microseconds) up to ``now - ingest_settle`` (what was acked by then is
readable: search reads acked WAL rows), whatever their event time inside the look-back before
the watermark; then the watermark moves to that bound. A late event is counted once, by the
evaluation after it arrived: never missed for its old event time, never counted twice.

Delivery. A transition becomes a :class:`Message` whose id derives from (alert, instance key,
sequence number); it is enqueued (committed in the outbox) *before* the instance's new state is
committed here, so a crash in between re-evaluates to the same transition and the same id.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from astralog.alerts.outbox import Message
from astralog.alerts.silences import Silence, active_silences
from astralog.alerts.state import InstanceState, Step, step
from astralog.alerts.store import AlertStore
from astralog.auth.principal import Principal
from astralog.controlplane.alert_rules import AlertRules, AlertSpec, spec_of
from astralog.controlplane.saved_searches import search_url
from astralog.controlplane.store import Actor
from astralog.dataplane import DataAccess
from astralog.errors import AstralogError, Unauthenticated
from astralog.query.engine import Session, facet_value, run
from astralog.query.plan import Plan, SearchScope, make_plan
from astralog.query.remote import fetch_remote
from astralog.query.timerange import iso

log = logging.getLogger("astralog.alerts")
S = 10**9
SYSTEM = Actor("system:alerts", "evaluator")


class Enqueue(Protocol):
    def enqueue(self, message: Message) -> None: ...


class Owners(Protocol):
    """Who an alert runs as, now (the control plane's authenticator)."""

    def token_principal(self, token_id: str) -> Principal: ...
    def person_principal(self, person_id: str) -> Principal: ...


@dataclass
class Due:
    alert: dict[str, Any]
    spec: AlertSpec
    due_ns: int
    reader: Principal
    start_ns: int = 0
    end_ns: int = 0
    counts: dict[tuple[str, ...], int] = field(default_factory=dict)
    watermark_us: int | None = None

    def scan_key(self) -> tuple[Any, ...]:
        s = self.spec
        sources = tuple(s.sources) if s.sources is not None else None
        readable = None if self.reader.readable is None else tuple(sorted(self.reader.readable))
        return (self.alert["org_id"], sources, readable, s.query, self.start_ns, self.end_ns)


@dataclass(frozen=True)
class Config:
    base_url: str = "http://127.0.0.1:8080"
    settle_ns: int = 5 * S
    max_groups: int = 100
    threads: int = 1


class Evaluator:
    def __init__(
        self, rules: AlertRules, owners: Owners, data: DataAccess, outbox: Enqueue,
        store: AlertStore, config: Config, clock: Callable[[], int] = time.time_ns,
    ) -> None:  # fmt: skip
        self.rules, self.owners, self.data = rules, owners, data
        self.outbox, self.store, self.config, self.clock = outbox, store, config, clock
        self._silenced: tuple[int, dict[str, list[Silence]]] = (-1, {})  # this round's, by org

    async def tick(self) -> int:
        """One round: every due alert evaluated once. Returns how many ran."""
        now = self.clock()
        due = []
        for alert in await asyncio.to_thread(self.rules.active):
            job = await asyncio.to_thread(self._due, alert, now)
            if job is not None:
                due.append(job)
        groups: dict[tuple[Any, ...], list[Due]] = {}
        for job in due:
            groups.setdefault(job.scan_key(), []).append(job)
        for jobs in groups.values():
            await self._scan_and_step(jobs, now)
        return len(due)

    async def serve(self, interval_seconds: float) -> None:
        while True:
            try:
                await self.tick()
            except Exception:
                log.exception("evaluating alerts failed")
            await asyncio.sleep(interval_seconds)

    # ---- which alerts, as whom --------------------------------------------------------------

    def _due(self, alert: dict[str, Any], now: int) -> Due | None:
        spec = spec_of(alert)
        run_state = self.store.run(alert["id"])
        due_ns = run_state.next_due_ns if run_state else _first_due(spec, now)
        if due_ns > now:
            return None
        due_ns = max(due_ns, spec.schedule.latest(now))
        reader = self._reader(alert, spec)
        if isinstance(reader, str):
            self._pause(alert, spec, reader, now)
            return None
        job = Due(alert, spec, due_ns, reader)
        if spec.condition == "new_match":
            created = _ns(alert["created_at"])
            watermark = run_state.watermark_us if run_state else None
            job.watermark_us = watermark if watermark is not None else created // 1000
            job.start_ns = job.watermark_us * 1000 - spec.window_seconds * S
            job.end_ns = now + 3600 * S  # as far ahead as an event time can be
        else:
            job.end_ns = due_ns - spec.evaluation_delay_seconds * S
            job.start_ns = job.end_ns - spec.window_seconds * S
        return job

    def _reader(self, alert: dict[str, Any], spec: AlertSpec) -> Principal | str:
        """The owner's access now, or why the alert can no longer run as them."""
        return owner_access(self.owners, alert, spec)

    def _pause(self, alert: dict[str, Any], spec: AlertSpec, reason: str, now: int) -> None:
        version = self.rules.store.version(f"alert:{alert['id']}")
        payload = _payload("error", alert, {}, None, spec, None, self.config.base_url, now)
        payload["data"]["error"] = reason
        message = Message(f"msg_{alert['id']}.paused.{version}", alert["org_id"], "error",
                          tuple(spec.endpoint_ids), payload, now)  # fmt: skip
        self._enqueue(message)  # before the pause is recorded: a crash repeats the same id
        self.rules.pause(alert["org_id"], alert["id"], reason, SYSTEM)
        self.store.record_history(alert["id"], "", now, "paused", None, reason)
        log.warning("alert paused", extra={"alert_id": alert["id"], "reason": reason})

    def _enqueue(self, message: Message) -> None:
        if message.endpoint_ids:
            self.outbox.enqueue(message)

    # ---- one shared scan ---------------------------------------------------------------------

    async def _scan_and_step(self, jobs: list[Due], now: int) -> None:
        first = jobs[0]
        try:
            await self._scan(jobs, now)
        except AstralogError as exc:
            for job in jobs:
                await asyncio.to_thread(self._failed, job, exc.detail, now)
            return
        for job in jobs:
            await asyncio.to_thread(self._step, job, now)
        log.debug("alert scan", extra={"alerts": len(jobs), "org_id": first.alert["org_id"]})

    async def _scan(self, jobs: list[Due], now: int) -> None:
        first = jobs[0]
        scope = SearchScope(first.spec.query, first.start_ns // 1_000_000,
                            max(first.end_ns // 1_000_000, first.start_ns // 1_000_000 + 1),
                            first.spec.sources)  # fmt: skip
        plan = make_plan(self.data, first.alert["org_id"], scope, now_ns=now,
                         readable=first.reader.readable)  # fmt: skip
        await fetch_remote(self.data, plan)
        session = Session(plan, self.config.threads)
        wm_now_us = (now - self.config.settle_ns) // 1000
        await run(session, lambda s: _count_all(s, jobs, wm_now_us, self.config.max_groups))

    def _silences(self, org_id: str, now: int) -> list[Silence]:
        """The org's silences in force, read once per round (``now`` names the round) and only
        those not ended: a pile of ended silences costs no evaluation anything."""
        if self._silenced[0] != now:
            self._silenced = (now, {})
        by_org = self._silenced[1]
        if org_id not in by_org:
            views = self.rules.silences_in_force(org_id, datetime.fromtimestamp(now / S, UTC))
            by_org[org_id] = active_silences(views, now)
        return by_org[org_id]

    def _step(self, job: Due, now: int) -> None:
        alert, spec = job.alert, job.spec
        known = self.store.instances(alert["id"])
        silences = self._silences(alert["org_id"], now)
        keys = set(known) | {_key(k) for k in job.counts}
        labels_of = {_key(k): _labels(spec.group_by, k) for k in job.counts}
        by_key = {_key(k): v for k, v in job.counts.items()}
        updates, messages = [], []
        for key in sorted(keys):
            labels = labels_of.get(key) or (known[key].labels if key in known else {})
            value = by_key.get(key, 0)
            prev = known[key].state if key in known else InstanceState()
            muted = _muted(silences, alert, labels)
            out = step(prev, spec.hit(value), now, spec.policy, muted=muted)
            updates.append((key, labels, out, value))
            if out.transition is not None:
                messages.append(self._message(job, key, labels, value, out))
        for message in messages:
            self._enqueue(message)  # committed in the outbox before the state below
        next_due = spec.schedule.next_after(max(now, job.due_ns))
        rows = [(k, lb, o.state, v, _event(o)) for k, lb, o, v in updates]
        watermark = _new_watermark(job, now, self.config)
        self.store.commit(alert["id"], next_due, watermark, rows, now, prune=_quiet)

    def _failed(self, job: Due, error: str, now: int) -> None:
        """An evaluation that could not read: visible on the alert, told once per streak."""
        alert, spec = job.alert, job.spec
        run_state = self.store.run(alert["id"])
        first_error = run_state is None or run_state.last_error is None
        if first_error:
            errors = run_state.errors + 1 if run_state else 1
            payload = _payload("error", alert, {}, None, spec, job, self.config.base_url, now)
            payload["data"]["error"] = error
            self._enqueue(Message(f"msg_{alert['id']}.error.{errors}", alert["org_id"], "error",
                                  tuple(spec.endpoint_ids), payload, now))  # fmt: skip
        next_due = spec.schedule.next_after(max(now, job.due_ns))
        self.store.fail(alert["id"], next_due, error, now)

    def _message(
        self, job: Due, key: str, labels: dict[str, str], value: int, out: Step
    ) -> Message:
        assert out.transition is not None
        event = out.transition.event
        payload = _payload(event, job.alert, labels, value, job.spec, job, self.config.base_url,
                           self.clock())  # fmt: skip
        digest = hashlib.sha256(key.encode()).hexdigest()[:16]
        return Message(f"msg_{job.alert['id']}.{digest}.{out.transition.seq}",
                       job.alert["org_id"], event, tuple(job.spec.endpoint_ids), payload,
                       self.clock())  # fmt: skip


# ---- helpers -------------------------------------------------------------------------------------


def owner_access(owners: Owners, alert: dict[str, Any], spec: AlertSpec) -> Principal | str:
    owner: str = alert["owner"]
    try:
        if owner.startswith("token:"):
            reader = owners.token_principal(owner.removeprefix("token:"))
        elif alert["owner_person"]:
            reader = owners.person_principal(alert["owner_person"])
        else:
            return "the alert's owner can no longer be identified; an admin should recreate it"
    except Unauthenticated:
        return "the alert's owner no longer has access to this org (deprovisioned or revoked)"
    if reader.org_id != alert["org_id"] or "logs:read" not in reader.scopes:
        return "the alert's owner may no longer search this org's logs"
    if spec.sources is not None and reader.readable is not None:
        lost = sorted(set(spec.sources) - reader.readable)
        if lost:
            return f"the alert's owner may no longer read source(s) {lost[:5]}"
    return reader


def _count_all(session: Session, jobs: Sequence[Due], wm_now_us: int, max_groups: int) -> None:
    """Every job's counts from the one session: one statement per distinct query shape."""
    done: dict[tuple[Any, ...], dict[tuple[str, ...], int]] = {}
    for job in jobs:
        shape = (tuple(job.spec.group_by), job.watermark_us)
        if shape not in done:
            done[shape] = _counts(session, job, wm_now_us, max_groups)
        job.counts = done[shape]


def _counts(
    session: Session, job: Due, wm_now_us: int, max_groups: int
) -> dict[tuple[str, ...], int]:
    where, params = session.plan.where()
    if job.watermark_us is not None:
        where += " AND epoch_us(ObservedTimestamp) > $wm0 AND epoch_us(ObservedTimestamp) <= $wm1"
        params |= {"wm0": job.watermark_us, "wm1": max(wm_now_us, job.watermark_us)}
    columns = []
    for i, name in enumerate(job.spec.group_by):
        value, extra = facet_value(name)
        if extra:
            value = value.replace("$fk", f"$gk{i}")
            params[f"gk{i}"] = extra["fk"]
        columns.append(f"coalesce(CAST({value} AS VARCHAR), '')")
    if not columns:
        row = session.conn.execute(f"SELECT count(*) FROM logs WHERE {where}", params).fetchone()
        return {(): int(row[0]) if row else 0}
    sql = (
        f"SELECT {', '.join(columns)}, count(*) AS n FROM logs WHERE {where} "
        f"GROUP BY ALL ORDER BY n DESC LIMIT {int(max_groups)}"
    )
    return {tuple(r[:-1]): int(r[-1]) for r in session.conn.execute(sql, params).fetchall()}


def _key(values: tuple[str, ...]) -> str:
    return json.dumps(list(values))


def _labels(group_by: Sequence[str], values: tuple[str, ...]) -> dict[str, str]:
    return dict(zip(group_by, values, strict=True))


def _muted(silences: Sequence[Silence], alert: dict[str, Any], labels: dict[str, str]) -> bool:
    full = instance_labels(alert, labels)
    return any(s.matches(full) for s in silences)


def instance_labels(alert: dict[str, Any], labels: dict[str, str]) -> dict[str, str]:
    return {"alertname": alert["name"], "alert_id": alert["id"], **labels}


def _quiet(state: InstanceState) -> bool:
    return state.condition == "normal" and state.notified == "normal"


def _event(out: Step) -> str | None:
    if out.transition is not None:
        return out.transition.event
    return out.held


def _new_watermark(job: Due, now: int, config: Config) -> int | None:
    if job.watermark_us is None:
        return None
    return max(job.watermark_us, (now - config.settle_ns) // 1000)


def _first_due(spec: AlertSpec, now: int) -> int:
    """A new alert runs at once on an interval grid; a cron alert at its next time."""
    if spec.interval_seconds is not None:
        step_ns = spec.interval_seconds * S
        return now // step_ns * step_ns
    return spec.schedule.next_after(now)


def _ns(text: str) -> int:
    moment = datetime.fromisoformat(text)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1e6) * 1000


def _payload(
    event: str, alert: dict[str, Any], labels: dict[str, str], value: int | None,
    spec: AlertSpec, job: Due | None, base_url: str, now: int,
) -> dict[str, Any]:  # fmt: skip
    """The thin body of the note's shape: no events, only what the alert is and saw."""
    window = None
    if job is not None:
        window = {"start": iso(job.start_ns), "end": iso(job.end_ns if job.watermark_us is None
                                                        else min(job.end_ns, now))}  # fmt: skip
    start = window["start"] if window else f"now-{spec.window_seconds}s"
    end = window["end"] if window else "now"
    return {
        "type": f"alert.{event}",
        "timestamp": iso(now),
        "data": {
            "alert": {"id": alert["id"], "name": alert["name"]},
            "state": event,
            "labels": labels,
            "value": value,
            "threshold": spec.threshold,
            "condition": spec.condition,
            "window": window,
            "search_url": search_url(base_url, spec.query, spec.sources, start, end),
        },
    }


def plan_for(data: DataAccess, org_id: str, spec: AlertSpec, reader: Principal,
             start_ns: int, end_ns: int, now: int) -> Plan:  # fmt: skip
    scope = SearchScope(spec.query, start_ns // 1_000_000, end_ns // 1_000_000, spec.sources)
    return make_plan(data, org_id, scope, now_ns=now, readable=reader.readable)


__all__ = ["Config", "Evaluator", "instance_labels", "owner_access", "plan_for"]
