"""Source commands, scoped to one org: create a source, set its retention inside the plan."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from astralog.controlplane import events as ev
from astralog.controlplane.commands import check_name
from astralog.controlplane.plans import Plans
from astralog.controlplane.store import Actor, EventStore
from astralog.errors import BadRequest, Conflict, Forbidden
from astralog.ids import new_id


@dataclass(frozen=True)
class SourceRetention:
    source_id: str
    name: str
    retention_days: int | None  # None: the plan's
    effective_days: int


@dataclass(frozen=True)
class Retention:
    """The plan's retention and each source's effective retention, in days."""

    plan: str
    plan_retention_days: int
    sources: tuple[SourceRetention, ...]

    def as_json(self) -> dict[str, Any]:
        return {
            "plan": self.plan,
            "plan_retention_days": self.plan_retention_days,
            "sources": [vars(s) for s in self.sources],
        }


class Sources:
    def __init__(self, store: EventStore, plans: Plans) -> None:
        self.store = store
        self.plans = plans

    def create(self, org_id: str, name: str, description: str, actor: Actor) -> dict[str, Any]:
        check_name(name, "source")
        if len(description) > 1000:
            raise BadRequest("source description is longer than 1000 characters")
        max_sources = self.plans.limits(org_id).max_sources
        source_id = new_id("src")
        with self.store.transaction() as conn:
            if conn.execute(
                "SELECT 1 FROM sources WHERE org_id = ? AND name = ?", (org_id, name)
            ).fetchone():
                raise Conflict(f"a source named {name!r} already exists in this org")
            (count,) = conn.execute(
                "SELECT COUNT(*) FROM sources WHERE org_id = ?", (org_id,)
            ).fetchone()
            if count >= max_sources:
                raise Forbidden(
                    f"the plan allows {max_sources} sources and the org has {count}; "
                    "upgrade the plan to add more"
                )
            self.store.append(ev.SourceCreated(source_id, org_id, name, description), actor, 0)
        return self.get(org_id, source_id)

    def list(self, org_id: str) -> list[dict[str, Any]]:
        with self.store.reading() as conn:
            rows = conn.execute(
                "SELECT * FROM sources WHERE org_id = ? ORDER BY name", (org_id,)
            ).fetchall()
        return [dict(r) for r in rows]

    def get(self, org_id: str, source_id: str) -> dict[str, Any]:
        """A source of ``org_id``; another org's source is reported exactly like a missing one."""
        return self.store.tenant_row("sources", source_id, org_id, "source")

    def set_retention(
        self, org_id: str, source_id: str, days: int | None, actor: Actor
    ) -> dict[str, Any]:
        """Per-source retention inside the plan; None returns the source to the plan's value."""
        self.get(org_id, source_id)
        plan_days = int(self.plans.limits(org_id).retention_days)
        if days is not None and not 1 <= days <= plan_days:
            raise BadRequest(
                f"retention must be between 1 and the plan's {plan_days} days, got {days}; "
                "a longer retention needs a larger plan"
            )
        with self.store.transaction():
            version = self.store.version(source_id)
            self.store.append(ev.SourceRetentionSet(source_id, org_id, days), actor, version)
        return self.get(org_id, source_id)

    def retention(self, org_id: str, plan: str) -> Retention:
        plan_days = int(self.plans.limits(org_id).retention_days)
        sources = tuple(
            SourceRetention(
                source_id=s["id"],
                name=s["name"],
                retention_days=s["retention_days"],
                effective_days=min(s["retention_days"] or plan_days, plan_days),
            )
            for s in self.list(org_id)
        )
        return Retention(plan, plan_days, sources)
