"""Alert rules and silences, as events in the hash-chained log.

An alert watches a query over some sources: on a schedule (an interval, or cron in a time zone)
it counts the matches of a look-back window (optionally per ``group_by`` value) and fires when
the count is above or below a threshold, when anything new matches, or when nothing arrived.
Its owner is whoever defined it, and it runs with the owner's access *at each evaluation*
(:mod:`astralog.alerts.evaluate`); an owner who loses access pauses it, with the reason.

Every change is an event (``AlertDefined``, ``AlertUpdated``, ``AlertPaused``,
``AlertResumed``, ``AlertDeleted``, ``SilenceCreated``, ``SilenceEnded``), so the audit log says
who changed which alert and who silenced what, when. Per-org quotas bound the number of alerts
and how often they may run; the instance state lives with the evaluator, not here.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from astralog.auth.principal import Principal
from astralog.controlplane.alert_schedule import Policy, Schedule
from astralog.controlplane.events import Event
from astralog.controlplane.projections import handles
from astralog.controlplane.saved_searches import QueryGrammar, check_sources, org_sources
from astralog.controlplane.store import Actor, EventStore, Recorded
from astralog.errors import BadRequest, Conflict, Forbidden, NotFound
from astralog.ids import new_id

ConditionKind = Literal["count_above", "count_below", "new_match", "absence"]
S = 10**9


# ---- events ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AlertDefined(Event, aggregate="alert:{alert_id}"):
    alert_id: str
    org_id: str
    owner: str  # the principal id it runs as (a person's, or a token's)
    owner_person: str | None
    spec: dict[str, Any]


@dataclass(frozen=True)
class AlertUpdated(Event, aggregate="alert:{alert_id}"):
    alert_id: str
    org_id: str
    spec: dict[str, Any]


@dataclass(frozen=True)
class AlertPaused(Event, aggregate="alert:{alert_id}"):
    alert_id: str
    org_id: str
    reason: str


@dataclass(frozen=True)
class AlertResumed(Event, aggregate="alert:{alert_id}"):
    alert_id: str
    org_id: str


@dataclass(frozen=True)
class AlertDeleted(Event, aggregate="alert:{alert_id}"):
    alert_id: str
    org_id: str


@dataclass(frozen=True)
class SilenceCreated(Event, aggregate="silence:{silence_id}"):
    silence_id: str
    org_id: str
    matchers: list[dict[str, str]]
    starts_at: str
    ends_at: str
    comment: str


@dataclass(frozen=True)
class SilenceEnded(Event, aggregate="silence:{silence_id}"):
    silence_id: str
    org_id: str


# ---- the definition ----------------------------------------------------------------------------


@dataclass(frozen=True)
class AlertLimits:
    max_alerts: int = 1000
    min_interval_seconds: int = 60
    max_window_seconds: int = 7 * 86_400
    max_active_silences: int = 1000  # in force or still to come; ended ones cost nothing


@dataclass(frozen=True)
class AlertSpec:
    name: str
    query: str = ""
    sources: list[str] | None = None  # None: every source the owner may read
    condition: ConditionKind = "count_above"
    threshold: int = 0
    window_seconds: int = 300  # the look-back window
    interval_seconds: int | None = 60
    cron: str | None = None
    timezone: str = "UTC"
    group_by: list[str] = field(default_factory=list)
    pending_for: int = 1
    keep_firing_for_seconds: int = 0
    flap_window_seconds: int = 3600
    flap_max_changes: int = 4
    evaluation_delay_seconds: int = 0
    endpoint_ids: list[str] = field(default_factory=list)
    saved_search_id: str | None = None

    @property
    def schedule(self) -> Schedule:
        return Schedule(self.interval_seconds, self.cron, self.timezone)

    @property
    def policy(self) -> Policy:
        return Policy(
            pending_for=self.pending_for,
            keep_firing_for_ns=self.keep_firing_for_seconds * S,
            flap_window_ns=self.flap_window_seconds * S,
            flap_max_changes=self.flap_max_changes,
        )

    def hit(self, value: int) -> bool:
        if self.condition == "count_above":
            return value > self.threshold
        if self.condition == "count_below":
            return value < self.threshold
        if self.condition == "new_match":
            return value > 0
        return value == 0  # absence

    def check(self, limits: AlertLimits, grammar: QueryGrammar) -> None:
        if not 0 < len(self.name.strip()) <= 200 or not self.name.isprintable():
            raise BadRequest("the alert's name must be 1 to 200 printable characters")
        if len(self.query) > 4096:
            raise BadRequest("the query is longer than 4096 characters")
        grammar.check_query(self.query)
        if not 60 <= self.window_seconds <= limits.max_window_seconds:
            raise BadRequest(
                f"window_seconds must be 60 to {limits.max_window_seconds} (the look-back window)"
            )
        if self.condition == "new_match" and self.group_by:
            raise BadRequest("'new_match' counts every new event: it takes no group_by")
        if len(self.group_by) > 5 or len(set(self.group_by)) != len(self.group_by):
            raise BadRequest("group_by takes at most 5 distinct fields")
        for name in self.group_by:
            _check_field(name, grammar)
        self.schedule.check(limits.min_interval_seconds)
        try:
            self.policy  # noqa: B018 - validates its bounds
        except ValueError as exc:
            raise BadRequest(str(exc)) from None
        if len(self.endpoint_ids) > 20:
            raise BadRequest("an alert notifies at most 20 endpoints")


def _check_field(name: str, grammar: QueryGrammar) -> None:
    """A group_by name is a field name as the search language reads one (``_exists_:name``)."""
    if grammar.is_field(name):
        return
    raise BadRequest(
        f"group_by field {name[:60]!r} is not a field name: 1 to 256 letters, digits and "
        "_ . - @ / (as in the search box, e.g. 'service' or 'http.status')"
    )


# ---- commands ----------------------------------------------------------------------------------


class AlertRules:
    def __init__(self, store: EventStore, limits: AlertLimits, grammar: QueryGrammar) -> None:
        self.store = store
        self.limits = limits
        self.grammar = grammar

    def define(self, org_id: str, who: Principal, spec: AlertSpec, actor: Actor) -> dict[str, Any]:
        self.check(org_id, who, spec)
        alert_id = new_id("alrt")
        with self.store.transaction() as conn:
            (count,) = conn.execute(
                "SELECT COUNT(*) FROM alert_rules WHERE org_id = ?", (org_id,)
            ).fetchone()
            if count >= self.limits.max_alerts:
                raise Forbidden(
                    f"this org has {count} alerts, its quota is {self.limits.max_alerts}; "
                    "delete alerts it no longer needs"
                )
            event = AlertDefined(alert_id, org_id, who.id, who.person_id, asdict(spec))
            self.store.append(event, actor, 0)
        return self.get(org_id, alert_id)

    def update(
        self, org_id: str, alert_id: str, who: Principal, spec: AlertSpec, actor: Actor
    ) -> dict[str, Any]:
        self.check(org_id, who, spec)
        with self.store.transaction():
            self.writable(org_id, alert_id, who)
            event = AlertUpdated(alert_id, org_id, asdict(spec))
            self.store.append(event, actor, self.store.version(f"alert:{alert_id}"))
        return self.get(org_id, alert_id)

    def pause(
        self, org_id: str, alert_id: str, reason: str, actor: Actor, who: Principal | None = None
    ) -> dict[str, Any]:
        """Pause it: a person or token (``who``) only as its owner or an org admin; without
        ``who``, the evaluator pausing an alert whose owner lost access."""
        with self.store.transaction():
            view = (
                self.get(org_id, alert_id) if who is None else self.writable(org_id, alert_id, who)
            )
            if view["state"] != "paused":
                event = AlertPaused(alert_id, org_id, reason[:500])
                self.store.append(event, actor, self.store.version(f"alert:{alert_id}"))
        return self.get(org_id, alert_id)

    def resume(self, org_id: str, alert_id: str, who: Principal, actor: Actor) -> dict[str, Any]:
        """Only its owner or an org admin resumes it (the caller checks first that its owner
        may still run it, or it would pause again at the next round)."""
        with self.store.transaction():
            if self.writable(org_id, alert_id, who)["state"] == "paused":
                event = AlertResumed(alert_id, org_id)
                self.store.append(event, actor, self.store.version(f"alert:{alert_id}"))
        return self.get(org_id, alert_id)

    def delete(self, org_id: str, alert_id: str, who: Principal, actor: Actor) -> None:
        with self.store.transaction():
            self.writable(org_id, alert_id, who)
            event = AlertDeleted(alert_id, org_id)
            self.store.append(event, actor, self.store.version(f"alert:{alert_id}"))

    def for_org(self, org_id: str) -> list[dict[str, Any]]:
        with self.store.reading() as conn:
            rows = conn.execute(
                "SELECT * FROM alert_rules WHERE org_id = ? ORDER BY name, id", (org_id,)
            ).fetchall()
        return [_view(dict(r)) for r in rows]

    def ever(self, org_id: str) -> list[str]:
        """Every alert the org ever defined, deleted ones too (from the log): what its purge
        forgets beside the log."""
        with self.store.reading() as conn:
            rows = conn.execute(
                "SELECT DISTINCT aggregate_id FROM events WHERE org_id = ? AND aggregate_id "
                "LIKE 'alert:%'",
                (org_id,),
            ).fetchall()
        return [str(r[0]).removeprefix("alert:") for r in rows]

    def get(self, org_id: str, alert_id: str) -> dict[str, Any]:
        with self.store.reading() as conn:
            row = conn.execute(
                "SELECT * FROM alert_rules WHERE id = ? AND org_id = ?", (alert_id, org_id)
            ).fetchone()
        if row is None:  # another org's alert answers like a missing one
            raise NotFound(f"alert {alert_id[:40]!r} does not exist in this org")
        return _view(dict(row))

    def active(self) -> list[dict[str, Any]]:
        """Every alert of every org that runs (the evaluator's work list): an org pending
        deletion (or deleted) is stopped, its alerts too."""
        with self.store.reading() as conn:
            rows = conn.execute(
                "SELECT * FROM alert_rules WHERE state = 'active' "
                "AND org_id NOT IN (SELECT org_id FROM org_deletions)"
            ).fetchall()
        return [_view(dict(r)) for r in rows]

    def check(self, org_id: str, who: Principal, spec: AlertSpec) -> None:
        spec.check(self.limits, self.grammar)
        if spec.sources is not None:
            check_sources(spec.sources, who.readable, org_sources(self.store, org_id))

    def writable(self, org_id: str, alert_id: str, who: Principal) -> dict[str, Any]:
        view = self.get(org_id, alert_id)
        if view["owner"] != who.id and "members:write" not in who.scopes:
            raise Forbidden("only the alert's owner or an org admin can change or delete it")
        return view

    # ---- silences ------------------------------------------------------------------------------

    def silence(
        self, org_id: str, matchers: list[dict[str, str]], starts: datetime, ends: datetime,
        comment: str, actor: Actor,
    ) -> dict[str, Any]:  # fmt: skip
        silence_id = new_id("sil")
        start, end = utc_bounds(starts, ends)
        event = SilenceCreated(silence_id, org_id, matchers, start, end, comment)
        with self.store.transaction() as conn:
            (count,) = conn.execute(
                "SELECT COUNT(*) FROM silences WHERE org_id = ? AND ended_at IS NULL "
                "AND ends_at > ?",
                (org_id, _now_text()),
            ).fetchone()
            if count >= self.limits.max_active_silences:
                raise Forbidden(
                    f"this org has {count} silences in force or to come, its quota is "
                    f"{self.limits.max_active_silences}; end those it no longer needs"
                )
            self.store.append(event, actor, 0)
        return self.get_silence(org_id, silence_id)

    def end_silence(self, org_id: str, silence_id: str, actor: Actor) -> dict[str, Any]:
        with self.store.transaction():
            if self.get_silence(org_id, silence_id)["ended_at"] is not None:
                raise Conflict(f"silence {silence_id} has already ended")
            event = SilenceEnded(silence_id, org_id)
            self.store.append(event, actor, self.store.version(f"silence:{silence_id}"))
        return self.get_silence(org_id, silence_id)

    def silences_in_force(self, org_id: str, now: datetime) -> list[dict[str, Any]]:
        """The silences not ended and not past their end at ``now`` (in force or still to
        come): ended ones, however many, are never read again."""
        with self.store.reading() as conn:
            rows = conn.execute(
                "SELECT * FROM silences WHERE org_id = ? AND ended_at IS NULL AND ends_at > ?",
                (org_id, _text(now)),
            ).fetchall()
        return [_silence_view(dict(row)) for row in rows]

    def silences(self, org_id: str) -> list[dict[str, Any]]:
        with self.store.reading() as conn:
            rows = conn.execute(
                "SELECT * FROM silences WHERE org_id = ? ORDER BY starts_at, id", (org_id,)
            ).fetchall()
        return [_silence_view(dict(r)) for r in rows]

    def get_silence(self, org_id: str, silence_id: str) -> dict[str, Any]:
        with self.store.reading() as conn:
            row = conn.execute(
                "SELECT * FROM silences WHERE id = ? AND org_id = ?", (silence_id, org_id)
            ).fetchone()
        if row is None:
            raise NotFound(f"silence {silence_id[:40]!r} does not exist in this org")
        return _silence_view(dict(row))


EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
LATEST = datetime(2200, 1, 1, tzinfo=UTC)


def utc_bounds(starts: datetime, ends: datetime) -> tuple[str, str]:
    """A silence's bounds as UTC text, or a 400: both aware, from 1970 to 2200 in UTC (a far
    offset must not overflow), the end after the start and still to come."""
    texts = []
    for moment, what in ((starts, "starts_at"), (ends, "ends_at")):
        try:
            ok = moment.tzinfo is not None and EARLIEST <= moment < LATEST
        except (OverflowError, TypeError):
            ok = False
        if not ok:
            raise BadRequest(
                f"{what} must be a time with its offset from 1970 to 2200, e.g. "
                "'2030-01-01T00:00:00Z'"
            )
        texts.append(_text(moment))
    if ends <= datetime.now(UTC):
        raise BadRequest("ends_at is in the past: a silence must end in the future")
    if ends <= starts:
        raise BadRequest("a silence must end after it starts (ends_at after starts_at)")
    return texts[0], texts[1]


def _text(moment: datetime) -> str:
    """Fixed-width UTC text (microseconds always written), so text order is time order."""
    return moment.astimezone(UTC).isoformat(timespec="microseconds")


def _now_text() -> str:
    return _text(datetime.now(UTC))


def spec_of(view: dict[str, Any]) -> AlertSpec:
    return AlertSpec(**view["spec"])


def _view(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": row["id"],
        "org_id": row["org_id"],
        "name": row["name"],
        "owner": row["owner"],
        "owner_person": row["owner_person"],
        "state": row["state"],
        "paused_reason": row["paused_reason"],
        "spec": json.loads(row["spec"]),
        "created_at": row["created_at"],
        "updated_at": row["updated_at"],
    }


def _silence_view(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": row["id"],
        "matchers": json.loads(row["matchers"]),
        "starts_at": row["starts_at"],
        "ends_at": row["ends_at"],
        "comment": row["comment"],
        "created_by": row["created_by"],
        "created_at": row["created_at"],
        "ended_at": row["ended_at"],
    }


# ---- projections -------------------------------------------------------------------------------


@handles(AlertDefined)
def _defined(conn: sqlite3.Connection, e: AlertDefined, r: Recorded) -> None:
    conn.execute(
        "INSERT INTO alert_rules (id, org_id, owner, owner_person, name, spec, state, "
        "created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, 'active', ?, ?)",
        (e.alert_id, e.org_id, e.owner, e.owner_person, e.spec["name"], json.dumps(e.spec),
         r.at, r.at),
    )  # fmt: skip


@handles(AlertUpdated)
def _updated(conn: sqlite3.Connection, e: AlertUpdated, r: Recorded) -> None:
    conn.execute(
        "UPDATE alert_rules SET name = ?, spec = ?, updated_at = ? WHERE id = ?",
        (e.spec["name"], json.dumps(e.spec), r.at, e.alert_id),
    )


@handles(AlertPaused)
def _paused(conn: sqlite3.Connection, e: AlertPaused, r: Recorded) -> None:
    conn.execute(
        "UPDATE alert_rules SET state = 'paused', paused_reason = ?, updated_at = ? WHERE id = ?",
        (e.reason, r.at, e.alert_id),
    )


@handles(AlertResumed)
def _resumed(conn: sqlite3.Connection, e: AlertResumed, r: Recorded) -> None:
    conn.execute(
        "UPDATE alert_rules SET state = 'active', paused_reason = NULL, updated_at = ? "
        "WHERE id = ?",
        (r.at, e.alert_id),
    )


@handles(AlertDeleted)
def _deleted(conn: sqlite3.Connection, e: AlertDeleted, r: Recorded) -> None:
    conn.execute("DELETE FROM alert_rules WHERE id = ?", (e.alert_id,))


@handles(SilenceCreated)
def _silenced(conn: sqlite3.Connection, e: SilenceCreated, r: Recorded) -> None:
    conn.execute(
        "INSERT INTO silences (id, org_id, matchers, starts_at, ends_at, comment, created_by, "
        "created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        (e.silence_id, e.org_id, json.dumps(e.matchers), e.starts_at, e.ends_at, e.comment,
         r.actor, r.at),
    )  # fmt: skip


@handles(SilenceEnded)
def _silence_ended(conn: sqlite3.Connection, e: SilenceEnded, r: Recorded) -> None:
    conn.execute("UPDATE silences SET ended_at = ? WHERE id = ?", (r.at, e.silence_id))
