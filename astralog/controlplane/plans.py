"""Plans as data: what each plan allows. Defined as PlanDefined events at first start; the
operator defines more and edits them later (each change another PlanDefined of the plan).

Enterprise orgs may carry per-org overrides of any of these limits (OrgPlanChanged); the stages
that enforce them read a typed ``PlanLimits`` from the projection on every use, so an edit takes
effect at once. A retention cut below a source's own retention clamps that source (its setting
stays, its effective retention shrinks); the edit names those sources and needs ``clamp``.
"""

from __future__ import annotations

import json
import math
import sqlite3
from dataclasses import dataclass, fields
from typing import Any

from astralog.controlplane import events as ev
from astralog.controlplane.commands import check_name
from astralog.controlplane.store import Actor, EventStore
from astralog.errors import BadRequest, Conflict, NotFound

LIMIT_HELP: dict[str, str] = {
    "retention_days": "Longest time events are kept and searchable.",
    "max_sources": "Most sources an org may create.",
    "ingest_events_per_second": "Sustained ingest rate per org (token bucket refill).",
    "ingest_bytes_per_second": "Sustained ingest bytes per org, uncompressed.",
    "source_events_per_second": "Sustained ingest rate of any one source.",
    "source_bytes_per_second": "Sustained ingest bytes of any one source, uncompressed.",
    "ingest_burst_seconds": "Burst size of the ingest token buckets, in seconds of the rate.",
    "byob": "Whether the org may use its own bucket or ClickHouse.",
    "max_query_range_days": "Longest time range of one query.",
    "query_timeout_seconds": "A query running longer is cancelled.",
    "max_scan_bytes": "Most bytes one query may read from storage.",
}

# Upper bounds: what a limit may be set to at all (hostile or mistyped input stops here).
_MAX_DAYS = 36_500  # a hundred years
_MAX_SECONDS = 86_400.0
_MAX_COUNT = 2**53  # exact in JSON and in every engine's integers

DEFAULT_PLANS: dict[str, dict[str, Any]] = {
    "free": {
        "retention_days": 3,
        "max_sources": 3,
        "ingest_events_per_second": 2_000,
        "ingest_bytes_per_second": 2 * 2**20,
        "source_events_per_second": 2_000,
        "source_bytes_per_second": 2 * 2**20,
        "ingest_burst_seconds": 5,
        "byob": False,
        "max_query_range_days": 3,
        "query_timeout_seconds": 10,
        "max_scan_bytes": 2 * 2**30,
    },
    "pro": {
        "retention_days": 30,
        "max_sources": 50,
        "ingest_events_per_second": 50_000,
        "ingest_bytes_per_second": 50 * 2**20,
        "source_events_per_second": 25_000,
        "source_bytes_per_second": 25 * 2**20,
        "ingest_burst_seconds": 5,
        "byob": True,
        "max_query_range_days": 30,
        "query_timeout_seconds": 30,
        "max_scan_bytes": 50 * 2**30,
    },
    "enterprise": {
        "retention_days": 365,
        "max_sources": 1_000,
        "ingest_events_per_second": 500_000,
        "ingest_bytes_per_second": 500 * 2**20,
        "source_events_per_second": 250_000,
        "source_bytes_per_second": 250 * 2**20,
        "ingest_burst_seconds": 5,
        "byob": True,
        "max_query_range_days": 365,
        "query_timeout_seconds": 120,
        "max_scan_bytes": 1024 * 2**30,
    },
}


@dataclass(frozen=True)
class PlanLimits:
    """What an org's plan allows it, with the org's overrides applied (see ``LIMIT_HELP``)."""

    retention_days: int
    max_sources: int
    ingest_events_per_second: int
    ingest_bytes_per_second: int
    source_events_per_second: int
    source_bytes_per_second: int
    ingest_burst_seconds: float
    byob: bool
    max_query_range_days: int
    query_timeout_seconds: float
    max_scan_bytes: int

    @classmethod
    def from_json(cls, values: dict[str, Any]) -> PlanLimits:
        return cls(**{f.name: values[f.name] for f in fields(cls)})


class Plans:
    """Plan definitions and each org's effective limits."""

    def __init__(self, store: EventStore) -> None:
        self.store = store

    def define_defaults(self, actor: Actor) -> None:
        with self.store.transaction():
            for plan, limits in DEFAULT_PLANS.items():
                if self.store.version(f"plan:{plan}") == 0:
                    self.store.append(ev.PlanDefined(plan, limits), actor, 0)

    def list(self) -> list[dict[str, Any]]:
        """Every plan, its limits and the orgs on it."""
        sql = (
            "SELECT p.name, p.limits, COUNT(o.id) AS orgs FROM plans p"
            " LEFT JOIN orgs o ON o.plan = p.name GROUP BY p.name ORDER BY p.name"
        )
        with self.store.reading() as conn:
            rows = conn.execute(sql).fetchall()
        return [{"name": r[0], "limits": json.loads(r[1]), "orgs": r[2]} for r in rows]

    def get(self, name: str) -> dict[str, Any]:
        for plan in self.list():
            if plan["name"] == name:
                return plan
        raise NotFound(f"unknown plan {name[:63]!r}; `astralog plans list` shows them")

    def define(
        self, name: str, limits: dict[str, Any], based_on: str | None, actor: Actor
    ) -> dict[str, Any]:
        """A new plan: every limit given, or taken from ``based_on`` where left out."""
        check_name(name, "plan")
        check_limits(limits)
        with self.store.transaction() as conn:
            if self.store.version(f"plan:{name}"):
                raise Conflict(f"plan {name!r} already exists; edit it with PUT /v1/plans/{name}")
            base: dict[str, Any] = {}
            if based_on is not None:
                self.require(conn, based_on)
                base = self._stored(conn, based_on)
            complete = {**base, **limits}
            missing = sorted(set(LIMIT_HELP) - set(complete))
            if missing:
                raise BadRequest(
                    f"missing limits {missing}: give them all, or name a plan to copy the rest "
                    "from (based_on, CLI --based-on)"
                )
            self.store.append(ev.PlanDefined(name, complete), actor, 0)
        return self.get(name)

    def edit(self, name: str, changes: dict[str, Any], clamp: bool, actor: Actor) -> dict[str, Any]:
        """Change some limits of a plan (the rest keep their values); effective at once."""
        if not changes:
            raise BadRequest(f"no limits to change; known: {sorted(LIMIT_HELP)}")
        check_limits(changes)
        with self.store.transaction() as conn:
            self.get(name)  # an unknown plan in the path is a 404
            limits = {**self._stored(conn, name), **changes}
            clamped = _clamped_sources(conn, name, limits["retention_days"])
            if clamped and not clamp:
                # The sources as data too (the first 100), for a client to list them.
                message = _clamp_message(clamped, limits["retention_days"])
                raise Conflict(message, code="clamp_required", clamped_sources=clamped[:100],
                               clamped_count=len(clamped))  # fmt: skip
            version = self.store.version(f"plan:{name}")
            self.store.append(ev.PlanDefined(name, limits), actor, version)
        return {**self.get(name), "clamped_sources": clamped}

    @staticmethod
    def _stored(conn: sqlite3.Connection, name: str) -> dict[str, Any]:
        row = conn.execute("SELECT limits FROM plans WHERE name = ?", (name,)).fetchone()
        limits: dict[str, Any] = json.loads(row[0])
        return limits

    def limits_json(self, org_id: str) -> dict[str, Any]:
        """The org's limits as stored (plan, then overrides): what the API shows."""
        with self.store.reading() as conn:
            row = conn.execute(
                "SELECT p.limits, o.overrides FROM orgs o JOIN plans p ON p.name = o.plan "
                "WHERE o.id = ?",
                (org_id,),
            ).fetchone()
        if row is None:
            raise NotFound(f"org {org_id} does not exist")
        return {**json.loads(row["limits"]), **json.loads(row["overrides"])}

    def limits(self, org_id: str) -> PlanLimits:
        return PlanLimits.from_json(self.limits_json(org_id))

    @staticmethod
    def require(conn: sqlite3.Connection, plan: str) -> None:
        if not conn.execute("SELECT 1 FROM plans WHERE name = ?", (plan,)).fetchone():
            known = [r[0] for r in conn.execute("SELECT name FROM plans ORDER BY name")]
            raise BadRequest(f"unknown plan {plan[:63]!r}; choose one of {known}")

    @staticmethod
    def check_overrides(plan: str, overrides: dict[str, Any]) -> None:
        check_limits(overrides, enterprise_only=plan != "enterprise")


def check_limits(values: dict[str, Any], *, enterprise_only: bool = False) -> None:
    """Every name a known limit, every value of its kind and within its bounds."""
    unknown = sorted(set(values) - set(LIMIT_HELP))
    if unknown:
        raise BadRequest(f"unknown plan limits {unknown}; known: {sorted(LIMIT_HELP)}")
    if values and enterprise_only:
        raise BadRequest("per-org overrides are only available on the enterprise plan")
    for name, value in values.items():
        _check_limit(name, value)


def _check_limit(name: str, value: Any) -> None:
    expected = type(DEFAULT_PLANS["enterprise"][name])
    # Durations may be fractional; counts and sizes are whole numbers.
    allowed = (int, float) if name.endswith("_seconds") else (expected,)
    numeric = expected is not bool and not isinstance(value, bool)
    if type(value) not in allowed or (numeric and value <= 0):
        kind = "true or false" if expected is bool else "a positive number"
        raise BadRequest(f"plan limit {name!r} must be {kind}, got {str(value)[:40]!r}")
    if numeric and (not math.isfinite(value) or value > _upper(name)):
        raise BadRequest(f"plan limit {name!r} must be at most {_upper(name)}, got {value:.3g}")


def _upper(name: str) -> float:
    if name.endswith("_days"):
        return _MAX_DAYS
    return _MAX_SECONDS if name.endswith("_seconds") else _MAX_COUNT


def _clamped_sources(conn: sqlite3.Connection, plan: str, days: int) -> list[dict[str, Any]]:
    """Sources on ``plan`` whose own retention is longer than ``days`` (orgs whose overrides
    set their own retention are not bound by the plan's)."""
    sql = (
        "SELECT o.name, s.name, s.retention_days, o.overrides FROM sources s"
        " JOIN orgs o ON o.id = s.org_id WHERE o.plan = ? AND s.retention_days > ?"
        " ORDER BY o.name, s.name"
    )
    return [
        {"org": org, "source": source, "retention_days": own, "effective_days": days}
        for org, source, own, overrides in conn.execute(sql, (plan, days))
        if "retention_days" not in json.loads(overrides)
    ]


def _clamp_message(clamped: list[dict[str, Any]], days: int) -> str:
    named = ", ".join(
        f"{c['org']}/{c['source']} ({c['retention_days']} days)" for c in clamped[:10]
    ) + (f" and {len(clamped) - 10} more" if len(clamped) > 10 else "")
    return (
        f"a retention of {days} days clamps {len(clamped)} source(s) that keep longer: {named}; "
        "their events older than that stop being searchable at once and are purged on schedule. "
        'Send the change again with "clamp": true (CLI --clamp) to accept'
    )
