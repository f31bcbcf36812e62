"""Org commands (operator only): create an org, move it to a plan with its overrides."""

from __future__ import annotations

import json
import sqlite3
from typing import Any

from astralog.controlplane import events as ev
from astralog.controlplane.commands import check_name
from astralog.controlplane.plans import Plans
from astralog.controlplane.store import Actor, EventStore
from astralog.errors import Conflict, NotFound
from astralog.ids import new_id


class Orgs:
    def __init__(self, store: EventStore, plans: Plans) -> None:
        self.store = store
        self.plans = plans

    def create(self, name: str, plan: str, actor: Actor) -> dict[str, Any]:
        check_name(name, "org")
        org_id = new_id("org")
        with self.store.transaction() as conn:
            self.plans.require(conn, plan)
            if conn.execute("SELECT 1 FROM orgs WHERE name = ?", (name,)).fetchone():
                raise Conflict(f"an org named {name!r} already exists; choose another name")
            self.store.append(ev.OrgCreated(org_id, name, plan), actor, 0)
        return self.get(org_id)

    def set_plan(
        self, org_id: str, plan: str, overrides: dict[str, Any], actor: Actor
    ) -> dict[str, Any]:
        self.plans.check_overrides(plan, overrides)
        with self.store.transaction() as conn:
            self.plans.require(conn, plan)
            _org_row(conn, org_id)
            version = self.store.version(org_id)
            self.store.append(ev.OrgPlanChanged(org_id, plan, overrides), actor, version)
        return self.get(org_id)

    def get(self, org_id: str) -> dict[str, Any]:
        with self.store.reading() as conn:
            row = _org_row(conn, org_id)
        return {**row, "limits": self.plans.limits_json(org_id)}

    def list(self) -> list[dict[str, Any]]:
        with self.store.reading() as conn:
            return [_org_view(r) for r in conn.execute("SELECT * FROM orgs ORDER BY name")]


def _org_row(conn: sqlite3.Connection, org_id: str) -> dict[str, Any]:
    row = conn.execute("SELECT * FROM orgs WHERE id = ?", (org_id,)).fetchone()
    if row is None:
        raise NotFound(f"org {org_id} does not exist")
    return _org_view(row)


def _org_view(row: sqlite3.Row) -> dict[str, Any]:
    data = dict(row)
    data["overrides"] = json.loads(data["overrides"])
    return data
