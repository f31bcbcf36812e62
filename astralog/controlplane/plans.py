"""Plans as data: what each plan allows. Defined as PlanDefined events at first start.

Enterprise orgs may carry per-org overrides of any of these limits (OrgPlanChanged); the stages
that enforce them read a typed ``PlanLimits``.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass, fields
from typing import Any

from astralog.controlplane import events as ev
from astralog.controlplane.store import Actor, EventStore
from astralog.errors import BadRequest, NotFound

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
            raise BadRequest(f"unknown plan {plan!r}; choose one of {known}")

    @staticmethod
    def check_overrides(plan: str, overrides: dict[str, Any]) -> None:
        unknown = sorted(set(overrides) - set(LIMIT_HELP))
        if unknown:
            raise BadRequest(f"unknown plan limits {unknown}; known: {sorted(LIMIT_HELP)}")
        if overrides and plan != "enterprise":
            raise BadRequest("per-org overrides are only available on the enterprise plan")
        for name, value in overrides.items():
            expected = type(DEFAULT_PLANS["enterprise"][name])
            # Durations may be fractional; counts and sizes are whole numbers.
            allowed = (int, float) if name.endswith("_seconds") else (expected,)
            numeric = expected is not bool and not isinstance(value, bool)
            if type(value) not in allowed or (numeric and value <= 0):
                kind = "true or false" if expected is bool else "a positive number"
                raise BadRequest(f"plan limit {name!r} must be {kind}, got {value!r}")
