"""Ingest key commands: issue, rotate with a grace overlap, revoke; each key belongs to one source.

Only a digest of a key is stored; its secret exists once, in the answer that issued it. Rotating
or revoking forgets the key in the authenticator's cache on this node at once.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from astralog.auth import credentials
from astralog.auth.authenticator import Authenticator, now
from astralog.auth.credentials import Kind
from astralog.controlplane import events as ev
from astralog.controlplane.commands import Issued
from astralog.controlplane.sources import Sources
from astralog.controlplane.store import Actor, EventStore
from astralog.errors import BadRequest, Conflict

MAX_GRACE_MINUTES = 7 * 24 * 60


class Keys:
    def __init__(self, store: EventStore, auth: Authenticator, sources: Sources) -> None:
        self.store = store
        self.auth = auth
        self.sources = sources

    def issue(
        self, org_id: str, source_id: str, actor: Actor, expires_in_days: int | None = None
    ) -> Issued:
        self.sources.get(org_id, source_id)
        cred = credentials.generate(Kind.INGEST)
        expires = None
        if expires_in_days is not None:
            if not 1 <= expires_in_days <= 3650:
                raise BadRequest("expires_in_days must be between 1 and 3650")
            expires = (now() + timedelta(days=expires_in_days)).isoformat()
        digest = self.auth.digest(cred.secret)
        with self.store.transaction():
            event = ev.IngestKeyIssued(cred.key_id, org_id, source_id, digest, expires)
            self.store.append(event, actor, 0)
        return Issued(cred, self.get(org_id, cred.key_id))

    def rotate(self, org_id: str, key_id: str, grace_minutes: int, actor: Actor) -> Issued:
        if not 0 <= grace_minutes <= MAX_GRACE_MINUTES:
            raise BadRequest(
                f"grace_minutes must be between 0 and {MAX_GRACE_MINUTES} (7 days), "
                f"got {grace_minutes}"
            )
        old = self.get(org_id, key_id)
        if old["state"] not in ("active",):
            raise Conflict(f"key {key_id} is {old['state']}; only an active key can be rotated")
        cred = credentials.generate(Kind.INGEST)
        valid_until = (now() + timedelta(minutes=grace_minutes)).isoformat()
        digest = self.auth.digest(cred.secret)
        with self.store.transaction():
            version = self.store.version(f"key:{key_id}")
            issued = ev.IngestKeyIssued(
                cred.key_id, org_id, old["source_id"], digest, old["expires_at"]
            )
            self.store.append(issued, actor, 0)
            self.store.append(
                ev.IngestKeyRotated(key_id, org_id, cred.key_id, valid_until), actor, version
            )
        self.auth.forget(key_id)
        return Issued(cred, self.get(org_id, cred.key_id))

    def revoke(self, org_id: str, key_id: str, actor: Actor) -> dict[str, Any]:
        key = self.get(org_id, key_id)
        if key["state"] == "revoked":
            return key
        with self.store.transaction():
            version = self.store.version(f"key:{key_id}")
            self.store.append(ev.IngestKeyRevoked(key_id, org_id), actor, version)
        self.auth.forget(key_id)
        return self.get(org_id, key_id)

    def list(self, org_id: str, source_id: str) -> list[dict[str, Any]]:
        self.sources.get(org_id, source_id)
        self.auth.record_usage()
        with self.store.reading() as conn:
            rows = conn.execute(
                "SELECT k.*, u.last_used FROM ingest_keys k "
                "LEFT JOIN credential_usage u ON u.id = k.id "
                "WHERE k.org_id = ? AND k.source_id = ? ORDER BY k.created_at",
                (org_id, source_id),
            ).fetchall()
        return [_key_view(dict(r)) for r in rows]

    def get(self, org_id: str, key_id: str) -> dict[str, Any]:
        return _key_view(self.store.tenant_row("ingest_keys", key_id, org_id, "key"))


def key_state(row: dict[str, Any], at: datetime | None = None) -> str:
    at = at or now()
    if row["revoked_at"]:
        return "revoked"
    if row["expires_at"] and datetime.fromisoformat(row["expires_at"]) <= at:
        return "expired"
    if row["valid_until"]:
        return "rotating" if datetime.fromisoformat(row["valid_until"]) > at else "rotated"
    return "active"


def _key_view(row: dict[str, Any]) -> dict[str, Any]:
    view = {k: v for k, v in row.items() if k not in ("digest", "last_used")}
    last_used = row.get("last_used")
    view["last_used_at"] = datetime.fromtimestamp(last_used, UTC).isoformat() if last_used else None
    view["state"] = key_state(row)
    view["prefix"] = f"alk_{row['id']}_"
    return view
