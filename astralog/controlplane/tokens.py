"""Management tokens (org-bound, with scopes) and operator tokens (no org): issue and revoke."""

from __future__ import annotations

import builtins
import json
from datetime import UTC, datetime
from typing import Any

from astralog.auth import credentials
from astralog.auth.authenticator import Authenticator
from astralog.auth.credentials import Kind
from astralog.auth.principal import SCOPES
from astralog.controlplane import events as ev
from astralog.controlplane.commands import Issued, check_name
from astralog.controlplane.store import Actor, EventStore
from astralog.errors import BadRequest


class Tokens:
    def __init__(self, store: EventStore, auth: Authenticator) -> None:
        self.store = store
        self.auth = auth

    def issue(
        self,
        org_id: str | None,
        name: str,
        scopes: list[str],
        actor: Actor,
        *,
        person_id: str | None = None,
        expires_at: datetime | None = None,
    ) -> Issued:
        """A management or operator token; with ``person_id``, a personal access token of a
        person (or a service account's token) whose rights are its scopes ∩ the owner's role."""
        check_name(name, "token")
        if person_id is not None and (org_id is None or expires_at is None):
            raise BadRequest("a personal or service-account token needs an org and an expiry")
        kind = Kind.OPERATOR if org_id is None else Kind.MANAGEMENT
        unknown = sorted(set(scopes) - set(SCOPES))
        if unknown:
            raise BadRequest(f"unknown scopes {unknown}; known scopes: {sorted(SCOPES)}")
        if kind is Kind.MANAGEMENT and not scopes:
            raise BadRequest("a management token needs at least one scope")
        cred = credentials.generate(kind)
        kind_name = "operator" if kind is Kind.OPERATOR else "management"
        if person_id is not None:
            kind_name = "service" if person_id.startswith("svc_") else "personal"
        event = ev.TokenIssued(
            cred.key_id,
            org_id,
            name,
            kind_name,
            sorted(set(scopes)),
            self.auth.digest(cred.secret),
            person_id,
            None if expires_at is None else expires_at.astimezone(UTC).isoformat(),
        )
        with self.store.transaction():
            self.store.append(event, actor, 0)
        return Issued(cred, self.get(org_id, cred.key_id))

    def revoke(self, org_id: str | None, token_id: str, actor: Actor) -> dict[str, Any]:
        token = self.get(org_id, token_id)
        if token["revoked_at"] is None:
            with self.store.transaction():
                version = self.store.version(f"token:{token_id}")
                self.store.append(ev.TokenRevoked(token_id, org_id), actor, version)
            self.auth.forget(token_id)
        return self.get(org_id, token_id)

    def list(self, org_id: str) -> list[dict[str, Any]]:
        with self.store.reading() as conn:
            rows = conn.execute(
                "SELECT * FROM tokens WHERE org_id = ? ORDER BY created_at", (org_id,)
            ).fetchall()
        return [_token_view(dict(r)) for r in rows]

    def for_person(self, org_id: str, person_id: str) -> builtins.list[dict[str, Any]]:
        with self.store.reading() as conn:
            rows = conn.execute(
                "SELECT * FROM tokens WHERE org_id = ? AND person_id = ? ORDER BY created_at",
                (org_id, person_id),
            ).fetchall()
        return [_token_view(dict(r)) for r in rows]

    def get(self, org_id: str | None, token_id: str) -> dict[str, Any]:
        return _token_view(self.store.tenant_row("tokens", token_id, org_id, "token"))


def _token_view(row: dict[str, Any]) -> dict[str, Any]:
    view = {k: v for k, v in row.items() if k != "digest"}
    view["scopes"] = json.loads(row["scopes"])
    view["state"] = "revoked" if row["revoked_at"] else "active"
    expires = row.get("expires_at")
    if expires and not row["revoked_at"] and datetime.fromisoformat(expires) <= datetime.now(UTC):
        view["state"] = "expired"
    view["prefix"] = f"{'alo' if row['kind'] == 'operator' else 'alt'}_{row['id']}_"
    return view
