"""Deletion of one source or one connector: the org deletion's lifecycle at a smaller scope.

active → pending deletion → deleted, with a restore in between. An admin (``sources:write`` for a
source, ``connectors:write`` for a connector) asks; from that moment a source is stopped (its
ingest keys answer 410 Gone with when and why, searches leave it out, its keys cannot be issued
or rotated) and a connector takes no new batch (if it was the org's active destination the org
falls back to the embedded bucket, in the same transaction). Within the grace an admin restores
it. Once the grace is over the purge stage (:mod:`astralog.scope_purge`) deletes its data, unless
a legal hold covering it is in force: then it stays pending and says which holds keep it.

The end is a tombstone (this row and the log; a source's keys are revoked and its name is free
again, a connector's sealed secrets leave the state) and a signed deletion certificate in the
format of the org's, naming the scope (:class:`ScopeDeletionCertificate`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from astralog.auth.principal import Principal
from astralog.controlplane import events as ev
from astralog.controlplane.holds import _text
from astralog.controlplane.org_deletion import (
    FORMAT,
    DeletionCertificate,
    DeletionLog,
    _parse,
    _public,
    _view,
    holds_changed,
    pending_or_conflict,
    state_words,
)
from astralog.controlplane.signed_documents import file_stamp
from astralog.controlplane.store import Actor
from astralog.errors import Conflict, Gone

Scope = Literal["source", "connector"]
SCOPE_FORMAT = "astralog-scope-deletion-certificate/v1"
_TABLES: dict[str, str] = {"source": "sources", "connector": "connectors"}


class ScopeDeletions(DeletionLog):
    """The deletion state of every source and connector, and the commands that move it."""

    def request(
        self, org_id: str, scope: Scope, target_id: str, reason: str, grace_days: float,
        actor: Actor,
    ) -> dict[str, Any]:  # fmt: skip
        reason = _text(reason, "reason", 2000)
        purge_after = (datetime.now(UTC) + timedelta(days=grace_days)).isoformat(timespec="seconds")
        with self.store.transaction():
            current = self.get(org_id, scope, target_id)
            if current is not None:
                restore = "; POST .../restore takes it back until then"
                raise Conflict(f"{scope} {target_id} is already {state_words(current, restore)}")
            row = self.store.tenant_row(_TABLES[scope], target_id, org_id, scope)
            if scope == "connector":
                self._fall_back(org_id, target_id, actor)
            event = ev.ScopeDeletionRequested(
                org_id, scope, target_id, str(row["name"]), reason, purge_after
            )
            self._append(target_id, event, actor)
        return self._changed(org_id, scope, target_id)

    def _fall_back(self, org_id: str, connector_id: str, actor: Actor) -> None:
        """No new batch goes to a connector pending deletion: if it is the org's active one, the
        org's new batches go to the embedded bucket (what ``deactivate`` does)."""
        with self.store.reading() as conn:
            row = conn.execute(
                "SELECT 1 FROM destinations WHERE org_id = ? AND connector_id = ?",
                (org_id, connector_id),
            ).fetchone()
        if row is not None:
            version = self.store.version(f"destination:{org_id}")
            self.store.append(ev.DestinationChanged(org_id, None), actor, version)

    def restore(
        self, org_id: str, scope: Scope, target_id: str, reason: str, actor: Actor
    ) -> dict[str, Any]:
        reason = _text(reason, "reason", 2000)
        with self.store.transaction():
            current = self.get(org_id, scope, target_id)
            if current is None or current["state"] != "pending":
                self.state(org_id, scope, target_id)  # another org's: 404 like any missing one
                what = "is not pending deletion" if current is None else "is already deleted"
                raise Conflict(f"{scope} {target_id[:40]} {what}: there is nothing to restore")
            self._append(target_id, ev.ScopeRestored(org_id, scope, target_id, reason), actor)
        return self._changed(org_id, scope, target_id)

    def held(
        self, org_id: str, scope: Scope, target_id: str, holds: list[str], actor: Actor
    ) -> None:
        """Record, once per change of the set, that holds keep it from its purge."""
        with self.store.transaction():
            if not holds_changed(self.get(org_id, scope, target_id), holds):
                return
            event = ev.ScopeDeletionHeld(org_id, scope, target_id, sorted(holds))
            self._append(target_id, event, actor)
        self._changed(org_id, scope, target_id)

    def deleted(self, certificate: ScopeDeletionCertificate, actor: Actor) -> dict[str, Any]:
        org_id, scope, target_id = certificate.org_id, certificate.scope, certificate.target_id
        with self.store.transaction():
            pending_or_conflict(self.get(org_id, scope, target_id), f"{scope} {target_id}")
            event = ev.ScopeDeleted(
                org_id, scope, target_id, certificate.objects, certificate.rows,
                certificate.total_bytes, certificate.manifest, certificate.document(),
            )  # fmt: skip
            self._append(target_id, event, actor)
        return self._changed(org_id, scope, target_id)

    def get(self, org_id: str, scope: Scope, target_id: str) -> dict[str, Any] | None:
        """Its deletion, or None while it is active (or unknown to ``org_id``)."""
        with self.store.reading() as conn:
            row = conn.execute(
                "SELECT * FROM scope_deletions WHERE target_id = ? AND org_id = ? AND scope = ?",
                (target_id, org_id, scope),
            ).fetchone()
        return None if row is None else _view(dict(row))

    def check(
        self, org_id: str, scope: Scope, target_id: str, *, live: bool = False
    ) -> dict[str, Any] | None:
        """Its deletion, for a route about it: a purged one is gone (410); with ``live`` (a
        change, a new key, an activation), one pending deletion is refused (409)."""
        deletion = self.get(org_id, scope, target_id)
        if deletion is not None and deletion["state"] == "deleted":
            raise Gone(
                f"{scope} {target_id} was deleted at {deletion['deleted_at']}: "
                f"{deletion['reason']}; its deletion certificate is at "
                f"GET /v1/{scope}s/{target_id}/deletion"
            )
        if deletion is not None and live:
            raise Conflict(
                f"{scope} {target_id} is pending deletion (purged after "
                f"{deletion['purge_after']}): restore it first (POST /v1/{scope}s/{target_id}/"
                "restore)"
            )
        return deletion

    def of_org(self, org_id: str, scope: Scope) -> dict[str, dict[str, Any]]:
        """The org's sources (or connectors) pending deletion or deleted, by id."""
        with self.store.reading() as conn:
            rows = conn.execute(
                "SELECT * FROM scope_deletions WHERE org_id = ? AND scope = ?", (org_id, scope)
            ).fetchall()
        return {str(r["target_id"]): _view(dict(r)) for r in rows}

    def due(self, now: datetime | None = None) -> list[tuple[str, Scope, str]]:
        """``(org, scope, id)`` pending deletion whose grace is over, oldest request first."""
        rows = self._due_rows("scope_deletions", "org_id, scope, target_id", now)
        return [(str(r[0]), r[1], str(r[2])) for r in rows]

    def refuse(self, principal: Principal) -> None:
        """Gone (410) for an ingest key of a source pending deletion (or deleted)."""
        if principal.kind != "ingest" or principal.source_id is None:
            return
        stopped = self._stopped_sources().get(principal.source_id)
        if stopped is not None:
            code = f"source_{stopped['state']}"
            raise Gone(_gone_detail(stopped), code=code, deletion=_public(stopped))

    def _stopped_sources(self) -> dict[str, dict[str, Any]]:
        query = "SELECT * FROM scope_deletions WHERE scope = 'source'"
        return self._stopped_rows(query, "target_id")

    def state(self, org_id: str, scope: Scope, target_id: str) -> dict[str, Any]:
        """Its deletion, or ``state`` "active"; NotFound when it is not ``org_id``'s."""
        deletion = self.get(org_id, scope, target_id)
        if deletion is not None:
            return deletion
        self.store.tenant_row(_TABLES[scope], target_id, org_id, scope)
        return {"org_id": org_id, "scope": scope, "target_id": target_id, "state": "active"}

    def _changed(self, org_id: str, scope: Scope, target_id: str) -> dict[str, Any]:
        self._forget_cache()
        return self.state(org_id, scope, target_id)


def _gone_detail(view: dict[str, Any]) -> str:
    name = view["name"]
    if view["state"] == "deleted":
        return f"source {name!r} was deleted at {view['deleted_at']}: {view['reason']}"
    return (
        f"source {name!r} is pending deletion ({view['reason']}): nothing is accepted for it, "
        f"and its data is purged after {view['purge_after']}; until then an admin can restore "
        "it (POST /v1/sources/{id}/restore)"
    )


# ---- the signed deletion certificate ---------------------------------------------------------


@dataclass(frozen=True)
class ScopeDeletionCertificate(DeletionCertificate):
    """The org's certificate, naming the source or connector it is about."""

    PREFIX = b"astralog-scope-deletion-certificate:v1:"

    scope: Scope = "source"
    target_id: str = ""
    target_name: str = ""

    @property
    def name(self) -> str:
        return f"{self.scope}-deletion-{file_stamp(self.at)}-{self.manifest[:12]}"

    def _body(self) -> dict[str, Any]:
        about = {"scope": self.scope, "id": self.target_id, "name": self.target_name}
        return super()._body() | {"format": SCOPE_FORMAT, "deleted": about}


def verify_scope_certificate(doc: object, key: Ed25519PublicKey) -> list[str]:
    """Problems with a source or connector deletion certificate (empty: intact and signed)."""
    try:
        if not isinstance(doc, dict) or doc.get("format") != SCOPE_FORMAT:
            raise ValueError(f"format {SCOPE_FORMAT!r} expected")
        about = doc["deleted"]
        scope = about["scope"]
        if scope not in ("source", "connector"):
            raise ValueError("deleted.scope must be 'source' or 'connector'")
        base = _parse(doc | {"format": FORMAT})
        cert = ScopeDeletionCertificate(
            base.org_id, base.org_name, base.requested_at, base.destinations, base.at,
            base.signature, scope, str(about["id"]), str(about["name"]),
        )  # fmt: skip
    except (ValueError, TypeError, KeyError) as exc:
        return [f"not a readable deletion certificate: {exc}"]
    return cert.problems(doc, cert.totals(), key)
