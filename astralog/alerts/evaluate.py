"""The evaluator: runs due alerts, moves their instances' state, enqueues what is to be told.

Stage: alert rule -> **evaluate** -> outbox. Each round takes the alerts whose schedule is due,
checks each owner's access *now* (a revoked token, a deprovisioned person or a source no longer
granted pauses the alert with the reason, and an ``error`` message goes to its endpoints, which
only admins manage), then scans. Alerts that read the same org and sources with the same access
share one scan, whatever their query and window: one plan (:func:`astralog.query.plan.make_plan`,
the search API's, with the owner's ``readable`` sources) over the union of their windows, one
DuckDB session, and one statement per distinct ``group_by`` holding a filtered count per
distinct (query, window) — so 1,000 alerts on a few sources read the data a few times a minute,
not 1,000. A round's evaluations of one scan commit in one transaction. Rounds start at the
next due time (alerts on the same interval grid run together), not on a polling cadence.

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
import itertools
import json
import logging
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from astralog.alerts.outbox import Message
from astralog.alerts.silences import Silence, active_silences
from astralog.alerts.state import InstanceState, Step, step
from astralog.alerts.store import AlertStore, Evaluation, Instance, RunState
from astralog.auth.principal import Principal
from astralog.controlplane.alert_rules import AlertRules, AlertSpec, spec_of
from astralog.controlplane.saved_searches import search_url
from astralog.controlplane.store import Actor
from astralog.dataplane import DataAccess
from astralog.errors import AstralogError, Unauthenticated
from astralog.metrics import EvaluationMetrics
from astralog.query.compile import compile_where
from astralog.query.engine import Session, facet_value, run
from astralog.query.language import parse
from astralog.query.plan import Plan, SearchScope, make_plan
from astralog.query.remote import fetch_remote
from astralog.query.timerange import iso

log = logging.getLogger("astralog.alerts")
S = 10**9
MAX_COUNTS = 200  # filtered counts per statement over a shared scan
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MIN_SLEEP = 0.001  # past the due time, so the round that wakes finds the alert due
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
    scan: str | None = None  # which shared scan read the data

    def scan_key(self) -> tuple[Any, ...]:
        """Alerts reading the same sources as the same reader share one scan, whatever their
        query and window: each gets its own filtered count over the data read once."""
        s = self.spec
        sources = tuple(s.sources) if s.sources is not None else None
        readable = None if self.reader.readable is None else tuple(sorted(self.reader.readable))
        return (self.alert["org_id"], sources, readable)

    def shape(self) -> tuple[Any, ...]:
        """What its count depends on: alerts of the same shape share one count."""
        s = self.spec
        return (tuple(s.group_by), s.query, self.start_ns, self.end_ns, self.watermark_us)


@dataclass(frozen=True)
class Config:
    base_url: str = "http://127.0.0.1:8080"
    settle_ns: int = 5 * S
    max_groups: int = 100
    threads: int = 1


class Evaluator:
    """``error_endpoints(org)``: the endpoints an org's admins flagged to receive every alert's
    ``error`` messages, besides the alert's own endpoints."""

    def __init__(
        self, rules: AlertRules, owners: Owners, data: DataAccess, outbox: Enqueue,
        store: AlertStore, config: Config, clock: Callable[[], int] = time.time_ns,
        metrics: EvaluationMetrics | None = None, *,
        error_endpoints: Callable[[str], Iterable[str]],
    ) -> None:  # fmt: skip
        self.rules, self.owners, self.data = rules, owners, data
        self.error_endpoints = error_endpoints
        self.outbox, self.store, self.config, self.clock = outbox, store, config, clock
        self.metrics = metrics or EvaluationMetrics()  # unregistered when nobody scrapes
        self.next_due_ns = 0  # the soonest alert due after the last round
        self._scans = itertools.count(1)
        self._silenced: tuple[int, dict[str, list[Silence]]] = (-1, {})  # this round's, by org

    async def tick(self) -> int:
        """One round: every due alert evaluated once. Returns how many ran."""
        now = self.clock()
        due = await asyncio.to_thread(self._select, now)
        groups: dict[tuple[Any, ...], list[Due]] = {}
        for job in due:
            groups.setdefault(job.scan_key(), []).append(job)
        for jobs in groups.values():
            await self._scan_and_step(jobs, now)
        return len(due)

    async def serve(self, interval_seconds: float) -> None:
        """Rounds at the next due time (alerts on the same grid run together), and at least
        every ``interval_seconds`` so new and resumed alerts start soon."""
        while True:
            wait = interval_seconds
            try:
                await self.tick()
                wait = min(wait, max(MIN_SLEEP, (self.next_due_ns - self.clock()) / S + MIN_SLEEP))
            except Exception:
                log.exception("evaluating alerts failed")
            await asyncio.sleep(wait)

    # ---- which alerts, as whom --------------------------------------------------------------

    def _select(self, now: int) -> list[Due]:
        """The alerts due now, from one read of the rules and one of their run states; notes
        when the next one is due."""
        runs = self.store.runs()
        due, soonest = [], now + 3600 * S
        for alert in self.rules.active():
            spec = spec_of(alert)
            run_state = runs.get(alert["id"])
            due_ns = run_state.next_due_ns if run_state else _first_due(spec, now)
            if due_ns > now:
                soonest = min(soonest, due_ns)
                continue
            soonest = min(soonest, spec.schedule.next_after(max(now, due_ns)))
            job = self._due(alert, spec, run_state, due_ns, now)
            if job is not None:
                due.append(job)
        self.next_due_ns = soonest
        return due

    def _due(
        self, alert: dict[str, Any], spec: AlertSpec, run_state: RunState | None, due_ns: int,
        now: int,
    ) -> Due | None:  # fmt: skip
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
                          self._told_of_errors(alert, spec), payload, now)  # fmt: skip
        self._enqueue(message)  # before the pause is recorded: a crash repeats the same id
        self.rules.pause(alert["org_id"], alert["id"], reason, SYSTEM)
        self.store.record_history(alert["id"], "", now, "paused", None, reason)
        self.metrics.ended("paused")
        log.warning("alert paused", extra={"alert_id": alert["id"], "reason": reason})

    def _enqueue(self, message: Message) -> None:
        if message.endpoint_ids:
            self.outbox.enqueue(message)

    def _told_of_errors(self, alert: dict[str, Any], spec: AlertSpec) -> tuple[str, ...]:
        """An alert's errors reach its own endpoints and the org's admins', each once."""
        admins = self.error_endpoints(alert["org_id"])
        return tuple(dict.fromkeys([*spec.endpoint_ids, *admins]))

    # ---- one shared scan ---------------------------------------------------------------------

    async def _scan_and_step(self, jobs: list[Due], now: int) -> None:
        first = jobs[0]
        try:
            await self._scan(jobs, now)
        except AstralogError as exc:
            await asyncio.to_thread(self._failed_all, jobs, exc.detail, now)
            return
        await asyncio.to_thread(self._step_all, jobs, now)
        log.debug("alert scan", extra={"alerts": len(jobs), "org_id": first.alert["org_id"]})

    async def _scan(self, jobs: list[Due], now: int) -> None:
        first = jobs[0]
        scan = f"{now:x}.{next(self._scans)}"
        for job in jobs:
            job.scan = scan
        start_ms = min(job.start_ns for job in jobs) // 1_000_000
        end_ms = -(-max(job.end_ns for job in jobs) // 1_000_000)  # rounded up: covers them all
        scope = SearchScope("", start_ms, max(end_ms, start_ms + 1), first.spec.sources)
        plan = make_plan(self.data, first.alert["org_id"], scope, now_ns=now,
                         readable=first.reader.readable)  # fmt: skip
        await fetch_remote(self.data, plan)
        session = Session(plan, self.config.threads)
        wm_now_us = (now - self.config.settle_ns) // 1000
        # run() closes the session in its worker thread: closing it here, on the loop, would wait
        # for a timed-out statement to unwind.
        await run(session, lambda s: _count_all(s, jobs, wm_now_us, self.config.max_groups))

    def _step_all(self, jobs: list[Due], now: int) -> None:
        """Every alert of one scan moves on; their messages are committed in the outbox before
        their new states are, in one transaction."""
        silences = self._silences(jobs[0].alert["org_id"], now)
        known = self.store.instances_of([job.alert["id"] for job in jobs])
        evaluations, messages = [], []
        for job in jobs:
            evaluation, told = self._step(job, known.get(job.alert["id"], {}), silences, now)
            evaluations.append(evaluation)
            messages += told
        for message in messages:
            self._enqueue(message)  # committed in the outbox before the states below
        self.store.commit(evaluations, now, prune=_quiet, done=self.clock)
        self.metrics.committed(len(jobs), self.clock() - min(job.due_ns for job in jobs))

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

    def _step(
        self, job: Due, known: dict[str, Instance], silences: Sequence[Silence], now: int
    ) -> tuple[Evaluation, list[Message]]:
        alert, spec = job.alert, job.spec
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
        next_due = spec.schedule.next_after(max(now, job.due_ns))
        rows = [(k, lb, o.state, v, _event(o)) for k, lb, o, v in updates]
        watermark = _new_watermark(job, now, self.config)
        return Evaluation(alert["id"], job.due_ns, next_due, watermark, rows, job.scan), messages

    def _failed_all(self, jobs: list[Due], error: str, now: int) -> None:
        for job in jobs:
            self._failed(job, error, now)
        self.metrics.ended("error", len(jobs))

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
                                  self._told_of_errors(alert, spec), payload, now))  # fmt: skip
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
    """Every job's counts from the one session: alerts of the same shape share a count, and
    the shapes that group by the same fields (or by none) share a statement, so the data is
    read once per distinct ``group_by`` rather than once per alert."""
    shapes: dict[tuple[Any, ...], list[Due]] = {}
    for job in jobs:
        shapes.setdefault(job.shape(), []).append(job)
    by_fields: dict[tuple[str, ...], list[list[Due]]] = {}
    for shape, members in shapes.items():
        by_fields.setdefault(shape[0], []).append(members)
    for fields, same in by_fields.items():
        for first in range(0, len(same), MAX_COUNTS):
            chunk = same[first : first + MAX_COUNTS]
            if fields:
                _grouped_counts(session, chunk, wm_now_us, max_groups)
            else:
                _plain_counts(session, chunk, wm_now_us)


def _plain_counts(session: Session, shapes: Sequence[list[Due]], wm_now_us: int) -> None:
    where, params = session.plan.where()
    counts = []
    for i, members in enumerate(shapes):
        own, own_params = _own_where(members[0], _tag(i), wm_now_us)
        counts.append(f"count(*) FILTER (WHERE {own})")
        params |= own_params
    sql = f"SELECT {', '.join(counts)} FROM logs WHERE {where}"
    row = session.conn.execute(sql, params).fetchone() or (0,) * len(shapes)
    for members, n in zip(shapes, row, strict=True):
        for job in members:
            job.counts = {(): int(n or 0)}


def _grouped_counts(
    session: Session, shapes: Sequence[list[Due]], wm_now_us: int, max_groups: int
) -> None:
    """Shapes grouping by the same fields: a filtered count per shape per group, and only each
    shape's top ``max_groups`` groups come back (QUALIFY), however many values a field has."""
    where, params = session.plan.where()
    columns = _group_columns(shapes[0][0].spec.group_by, params)
    owns, counts, tops = [], [], []
    for i, members in enumerate(shapes):
        own, own_params = _own_where(members[0], _tag(i), wm_now_us)
        params |= own_params
        owns.append(f"({own})")
        counts.append(f"count(*) FILTER (WHERE {own}) AS n{i}")
        tops.append(f"(n{i} > 0 AND row_number() OVER (ORDER BY n{i} DESC) <= {int(max_groups)})")
    sql = (
        f"SELECT {', '.join(columns)}, {', '.join(counts)} FROM logs "
        f"WHERE {where} AND ({' OR '.join(owns)}) "
        f"GROUP BY {', '.join(f'g{i}' for i in range(len(columns)))} QUALIFY {' OR '.join(tops)}"
    )
    rows = session.conn.execute(sql, params).fetchall()
    width = len(columns)
    for i, members in enumerate(shapes):
        seen = [(tuple(r[:width]), int(r[width + i])) for r in rows if r[width + i]]
        seen.sort(key=lambda group: -group[1])
        for job in members:
            job.counts = dict(seen[:max_groups])


def _group_columns(group_by: Sequence[str], params: dict[str, Any]) -> list[str]:
    columns = []
    for i, name in enumerate(group_by):
        value, extra = facet_value(name)
        if extra:
            value = value.replace("$fk", f"$gk{i}")
            params[f"gk{i}"] = extra["fk"]
        columns.append(f"coalesce(CAST({value} AS VARCHAR), '') AS g{i}")
    return columns


def _own_where(job: Due, prefix: str, wm_now_us: int) -> tuple[str, dict[str, Any]]:
    """The job's query and window inside the shared scan, its parameters named apart."""
    query, compiled = compile_where(parse(job.spec.query), "duckdb", param_prefix=prefix + "p")
    params: dict[str, Any] = dict(compiled)
    params[prefix + "start"], params[prefix + "end"] = _dt(job.start_ns), _dt(job.end_ns)
    where = f"({query}) AND Timestamp >= ${prefix}start AND Timestamp < ${prefix}end"
    if job.watermark_us is not None:  # new match: by receive order, after the watermark
        where += (f" AND epoch_us(ObservedTimestamp) > ${prefix}wm0"
                  f" AND epoch_us(ObservedTimestamp) <= ${prefix}wm1")  # fmt: skip
        params[prefix + "wm0"] = job.watermark_us
        params[prefix + "wm1"] = max(wm_now_us, job.watermark_us)
    return where, params


def _tag(i: int) -> str:
    """A parameter prefix of letters only (the compiler's rule): j + i in base 26 + _."""
    letters = ""
    while True:
        i, digit = divmod(i, 26)
        letters = chr(ord("a") + digit) + letters
        if i == 0:
            return f"j{letters}_"


def _dt(ns: int) -> datetime:
    """DuckDB timestamps are microseconds: bound as exact datetimes, like the planner's."""
    return EPOCH + timedelta(microseconds=ns // 1000)


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
