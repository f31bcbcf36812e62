"""Commands on BYOB connectors and on where each org's new batches go.

Secrets are sealed per connector record (AES-256-GCM envelope, associated data binding org,
connector and field) before they enter an event; reads return the config and the *names* of
the secrets that are set, never their values. An org can only switch to a connector whose
connection check passed since it was last changed.
"""

from __future__ import annotations

import json
from typing import Any

from astralog import byob
from astralog.controlplane import events as ev
from astralog.controlplane.commands import check_name
from astralog.controlplane.service import ControlPlane
from astralog.controlplane.store import Actor
from astralog.errors import Conflict, Forbidden
from astralog.ids import new_id
from astralog.security.fieldcrypt import FieldCipher, SealedRecord


class Destinations:
    def __init__(self, control: ControlPlane, cipher: FieldCipher) -> None:
        self.control = control
        self.store = control.store
        self.cipher = cipher

    def create(
        self, org_id: str, name: str, kind: str, config: dict[str, Any], secrets: dict[str, Any],
        actor: Actor,
    ) -> dict[str, Any]:  # fmt: skip
        self._require_byob(org_id)
        check_name(name, "connector")
        clean = byob.validate_config(kind, config, None)
        connector_id = new_id("con")
        sealed = self._seal(org_id, connector_id, byob.validate_secrets(kind, secrets))
        with self.store.transaction() as conn:
            if conn.execute(
                "SELECT 1 FROM connectors WHERE org_id = ? AND name = ?", (org_id, name)
            ).fetchone():
                raise Conflict(f"a connector named {name!r} already exists in this org")
            event = ev.ConnectorCreated(connector_id, org_id, name, kind, clean, sealed)
            self.store.append(event, actor, 0)
        return self.get(org_id, connector_id)

    def update(
        self, org_id: str, connector_id: str, config: dict[str, Any], secrets: dict[str, Any],
        actor: Actor,
    ) -> dict[str, Any]:  # fmt: skip
        row = self._row(org_id, connector_id)
        previous = json.loads(row["config"])
        clean = byob.validate_config(row["kind"], config, previous)
        moved = [f for f in byob.LOCATION_FIELDS[row["kind"]] if clean.get(f) != previous.get(f)]
        if moved and self.ever_active(connector_id):
            raise Conflict(
                f"this connector has stored data, so {moved} cannot change (earlier batches must "
                "stay readable); create a new connector for the new location and activate it"
            )
        merged = {
            **self.secrets(org_id, connector_id),
            **byob.validate_secrets(row["kind"], secrets),
        }
        sealed = self._seal(org_id, connector_id, merged)
        with self.store.transaction():
            version = self.store.version(connector_id)
            self.store.append(
                ev.ConnectorUpdated(connector_id, org_id, clean, sealed), actor, version
            )
        return self.get(org_id, connector_id)

    def record_test(
        self, org_id: str, connector_id: str, ok: bool, failed: list[str], actor: Actor
    ) -> None:
        with self.store.transaction():
            version = self.store.version(connector_id)
            self.store.append(ev.ConnectorTested(connector_id, org_id, ok, failed), actor, version)

    def activate(self, org_id: str, connector_id: str, actor: Actor) -> dict[str, Any]:
        self._require_byob(org_id)
        view = self.get(org_id, connector_id)
        test = view["last_test"]
        if not test or not test["ok"] or test["at"] < view["updated_at"]:
            raise Conflict(
                "run a passing connection test (POST /v1/connectors/{id}/test) after the last "
                "change before sending data to this connector"
            )
        self._switch(org_id, connector_id, actor)
        return self.get(org_id, connector_id)

    def deactivate(self, org_id: str, actor: Actor) -> None:
        """New batches go back to the embedded bucket; what was written stays searchable."""
        self._switch(org_id, None, actor)

    def _switch(self, org_id: str, connector_id: str | None, actor: Actor) -> None:
        aggregate = f"destination:{org_id}"
        with self.store.transaction():
            version = self.store.version(aggregate)
            self.store.append(ev.DestinationChanged(org_id, connector_id), actor, version)

    def active(self, org_id: str) -> dict[str, Any] | None:
        """The org's active connector record (config and version), or None for embedded."""
        with self.store.reading() as conn:
            row = conn.execute(
                "SELECT c.* FROM destinations d JOIN connectors c ON c.id = d.connector_id "
                "WHERE d.org_id = ?",
                (org_id,),
            ).fetchone()
        return dict(row) if row else None

    def list(self, org_id: str) -> list[dict[str, Any]]:
        with self.store.reading() as conn:
            rows = conn.execute(
                "SELECT id FROM connectors WHERE org_id = ? ORDER BY created_at", (org_id,)
            ).fetchall()
        return [self.get(org_id, r["id"]) for r in rows]

    def get(self, org_id: str, connector_id: str) -> dict[str, Any]:
        row = self._row(org_id, connector_id)
        active = self.active(org_id)
        return {
            "id": row["id"],
            "name": row["name"],
            "kind": row["kind"],
            "config": json.loads(row["config"]),
            "secrets_set": sorted(json.loads(row["secrets"]).get("fields", {})),
            "active": bool(active and active["id"] == connector_id),
            "created_at": row["created_at"],
            "updated_at": row["updated_at"],
            "last_test": json.loads(row["last_test"]) if row["last_test"] else None,
        }

    def record(self, org_id: str, connector_id: str) -> dict[str, Any]:
        """The stored row (id, version, kind, config as JSON text) that builds a live
        connector (``DataPlane.connector``), as :meth:`active` gives it; secrets stay sealed."""
        return self._row(org_id, connector_id)

    def secrets(self, org_id: str, connector_id: str) -> dict[str, str]:
        """Plain secrets, for building the live connector only: never returned by the API."""
        sealed = SealedRecord.from_dict(json.loads(self._row(org_id, connector_id)["secrets"]))
        return {f: self.cipher.open_field(org_id, connector_id, sealed, f) for f in sealed.fields}

    def rewrap_all(self, actor: Actor) -> int:
        """Re-wrap every data key under the active master key (``astralog rotate-master``)."""
        with self.store.reading() as conn:
            rows = [dict(r) for r in conn.execute("SELECT * FROM connectors")]
        count = 0
        for row in rows:
            sealed = SealedRecord.from_dict(json.loads(row["secrets"]))
            if sealed.key_id == self.cipher.active_key_id:
                continue
            fresh = self.cipher.rewrap(sealed, row["org_id"], row["id"])
            with self.store.transaction():
                version = self.store.version(row["id"])
                event = ev.ConnectorSecretsRewrapped(
                    row["id"], row["org_id"], fresh.to_dict(), fresh.key_id
                )
                self.store.append(event, actor, version)
            count += 1
        return count

    def ever_active(self, connector_id: str) -> bool:
        """Whether the connector was ever an org's active destination (it may hold data)."""
        with self.store.reading() as conn:
            row = conn.execute(
                "SELECT 1 FROM events WHERE type = 'DestinationChanged' "
                "AND json_extract(payload, '$.connector_id') = ? LIMIT 1",
                (connector_id,),
            ).fetchone()
        return row is not None

    def _seal(self, org_id: str, connector_id: str, secrets: dict[str, str]) -> dict[str, Any]:
        return self.cipher.seal_record(org_id, connector_id, secrets).to_dict()

    def _row(self, org_id: str, connector_id: str) -> dict[str, Any]:
        return self.store.tenant_row("connectors", connector_id, org_id, "connector")

    def _require_byob(self, org_id: str) -> None:
        if not self.control.limits(org_id).byob:
            raise Forbidden(
                "the org's plan does not include bring-your-own storage; upgrade to pro"
            )
