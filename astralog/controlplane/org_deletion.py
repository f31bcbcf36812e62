"""Org deletion: active → pending deletion → purged, with a tombstone and a signed certificate.

An owner of the org (in person, freshly signed in) or an operator asks; from that moment the org
is stopped (:meth:`OrgDeletions.refuse`: ingest answers 410 Gone with when and why, searches and
every credential of the org are refused, its sessions end). Within the grace (a setting, default
30 days) an operator can restore it. Once the grace is over the purge stage
(:mod:`astralog.org_purge`) deletes the org's data from every destination it ever used, unless a
legal hold on the org is in force: then the org stays pending and says which holds keep it.

The end is a tombstone (the org's row and its audit trail stay, so the chain still verifies) and a
deletion certificate: every destination, object, row and byte deleted, the SHA-256 of that
manifest, signed with the instance's Ed25519 key, kept in the ``OrgDeleted`` record, handed to the
operator and copied into the destinations while they still exist.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from astralog.controlplane import events as ev
from astralog.controlplane.holds import _text
from astralog.controlplane.signed_documents import (
    SignedDocument,
    file_stamp,
    parse_object,
    sha256_of,
)
from astralog.controlplane.store import Actor, EventStore
from astralog.errors import Conflict, Gone, NotFound

Side = Literal["owner", "operator"]
FORMAT = "astralog-deletion-certificate/v1"


class DeletionLog:
    """What org, source and connector deletions share: their records in the log (one stream per
    deleted thing, ``deletion:<id>``), the due list and a cached view of what is stopped.

    Two classes stand on it, not one, because an org is the tenant and a source or connector is
    a thing inside one. :class:`OrgDeletions` is keyed by the org alone, asked by an owner or an
    operator, restored by an operator, and stops every credential, session and search of the
    org. :class:`~astralog.controlplane.scope_deletion.ScopeDeletions` is keyed by (org, scope,
    id): every lookup is tenant-scoped (another org's answers 404), a change to a pending one is
    a 409, only a source's ingest keys answer 410, and a connector's deletion moves the org back
    to the embedded bucket. The lifecycle (pending, restored, held, deleted with a certificate)
    is the same: its steps are written once (here and in the functions below); the commands
    stay per class, since their keys, events and refusals differ."""

    def __init__(self, store: EventStore, cache_seconds: float = 1.0) -> None:
        self.store = store
        self.cache_seconds = cache_seconds
        self._stopped: dict[str, dict[str, Any]] = {}
        self._loaded = -1e9

    def _append(self, target_id: str, event: ev.Event, actor: Actor) -> None:
        self.store.append(event, actor, self.store.version(f"deletion:{target_id}"))

    def _stopped_rows(self, query: str, key: str) -> dict[str, dict[str, Any]]:
        """``query``'s rows by ``key``, read at most once per ``cache_seconds``: the gateway
        asks on every request."""
        if time.monotonic() - self._loaded > self.cache_seconds:
            with self.store.reading() as conn:
                rows = conn.execute(query).fetchall()
            self._stopped = {str(r[key]): _view(dict(r)) for r in rows}
            self._loaded = time.monotonic()
        return self._stopped

    def _forget_cache(self) -> None:
        self._loaded = -1e9

    def _due_rows(self, table: str, columns: str, now: datetime | None) -> list[Any]:
        """``columns`` of the pending deletions whose grace is over, oldest request first."""
        moment = (now or datetime.now(UTC)).isoformat(timespec="seconds")
        with self.store.reading() as conn:
            return conn.execute(
                f"SELECT {columns} FROM {table} WHERE state = 'pending' AND purge_after <= ? "
                "ORDER BY requested_at",
                (moment,),
            ).fetchall()


def pending_or_conflict(current: dict[str, Any] | None, what: str) -> dict[str, Any]:
    if current is None or current["state"] != "pending":
        raise Conflict(f"{what} is not pending deletion")
    return current


def holds_changed(current: dict[str, Any] | None, holds: list[str]) -> bool:
    """Whether ``holds`` keeping a pending deletion is news (recorded once per change)."""
    return current is not None and current["state"] == "pending" and current["held_by"] != holds


class OrgDeletions(DeletionLog):
    """The deletion state of every org, and the commands that move it."""

    def request(
        self, org_id: str, side: Side, reason: str, grace_days: float, actor: Actor
    ) -> dict[str, Any]:
        reason = _text(reason, "reason", 2000)
        purge_after = datetime.now(UTC) + timedelta(days=grace_days)
        with self.store.transaction() as conn:
            if conn.execute("SELECT 1 FROM orgs WHERE id = ?", (org_id,)).fetchone() is None:
                raise NotFound(f"org {org_id[:40]!r} does not exist")
            current = self.get(org_id)
            if current is not None:
                raise Conflict(f"org {org_id} is already {state_words(current)}")
            event = ev.OrgDeletionRequested(
                org_id, side, reason, purge_after.isoformat(timespec="seconds")
            )
            self._append(org_id, event, actor)
        return self._changed(org_id)

    def restore(self, org_id: str, reason: str, actor: Actor) -> dict[str, Any]:
        reason = _text(reason, "reason", 2000)
        with self.store.transaction():
            current = self.get(org_id)
            if current is None or current["state"] != "pending":
                what = "is not pending deletion" if current is None else "is already deleted"
                raise Conflict(f"org {org_id[:40]} {what}: there is nothing to restore")
            self._append(org_id, ev.OrgRestored(org_id, reason), actor)
        return self._changed(org_id)

    def held(self, org_id: str, holds: list[str], actor: Actor) -> None:
        """Record, once per change of the set, that holds keep the org from its purge."""
        with self.store.transaction():
            if not holds_changed(self.get(org_id), holds):
                return
            self._append(org_id, ev.OrgDeletionHeld(org_id, sorted(holds)), actor)
        self._changed(org_id)

    def deleted(self, certificate: DeletionCertificate, actor: Actor) -> dict[str, Any]:
        org_id = certificate.org_id
        with self.store.transaction():
            pending_or_conflict(self.get(org_id), f"org {org_id}")
            event = ev.OrgDeleted(
                org_id, certificate.destination_ids, certificate.objects, certificate.rows,
                certificate.total_bytes, certificate.manifest, certificate.signature,
                certificate.document(),
            )  # fmt: skip
            self._append(org_id, event, actor)
        return self._changed(org_id)

    def get(self, org_id: str) -> dict[str, Any] | None:
        """The org's deletion, or None while it is active."""
        with self.store.reading() as conn:
            row = conn.execute("SELECT * FROM org_deletions WHERE org_id = ?", (org_id,)).fetchone()
        return None if row is None else _view(dict(row))

    def due(self, now: datetime | None = None) -> list[str]:
        """Orgs pending deletion whose grace is over, oldest request first."""
        return [str(r[0]) for r in self._due_rows("org_deletions", "org_id", now)]

    def refuse(self, org_id: str | None) -> None:
        """Gone (410) for anything an org pending deletion (or deleted) would do."""
        if org_id is None:
            return
        stopped = self.stopped(org_id)
        if stopped is not None:
            view = _public(stopped)
            raise Gone(_gone_detail(view), code=f"org_{view['state']}", deletion=view)

    def stopped(self, org_id: str) -> dict[str, Any] | None:
        """The org's deletion if it is pending or done (cached for ``cache_seconds``)."""
        return self._stopped_rows("SELECT * FROM org_deletions", "org_id").get(org_id)

    def _changed(self, org_id: str) -> dict[str, Any]:
        self._forget_cache()
        return self.get(org_id) or {"org_id": org_id, "state": "active"}


def _view(row: dict[str, Any]) -> dict[str, Any]:
    certificate = row.pop("certificate")
    held = row.pop("held_by")
    return row | {
        "held_by": None if held is None else json.loads(held),
        "certificate": None if certificate is None else json.loads(certificate),
    }


def _public(view: dict[str, Any]) -> dict[str, Any]:
    """What the org's own callers are told: when and why, never who asked."""
    keep = ("state", "reason", "requested_at", "purge_after", "deleted_at")
    return {k: view[k] for k in keep}


def state_words(view: dict[str, Any], restore: str = "") -> str:
    if view["state"] == "deleted":
        return f"deleted (at {view['deleted_at']})"
    return f"pending deletion (its data is purged after {view['purge_after']}{restore})"


def _gone_detail(view: dict[str, Any]) -> str:
    if view["state"] == "deleted":
        return f"this org was deleted at {view['deleted_at']}: {view['reason']}"
    return (
        f"this org is pending deletion ({view['reason']}): nothing is accepted or served, and "
        f"its data is purged after {view['purge_after']}; until then an operator can restore it"
    )


# ---- the signed deletion certificate ---------------------------------------------------------


@dataclass(frozen=True)
class DeletedFrom:
    """What left one destination: ``objects`` as ``(key, rows, bytes)``."""

    destination_id: str
    kind: str
    objects: tuple[tuple[str, int, int], ...]


@dataclass(frozen=True)
class DeletionCertificate(SignedDocument):
    PREFIX = b"astralog-deletion-certificate:v1:"
    NOUN = "certificate"

    org_id: str
    org_name: str
    requested_at: str
    destinations: tuple[DeletedFrom, ...]
    at: str
    signature: str = ""

    @property
    def destination_ids(self) -> list[str]:
        return [d.destination_id for d in self.destinations]

    @property
    def objects(self) -> int:
        return sum(len(d.objects) for d in self.destinations)

    @property
    def rows(self) -> int:
        return sum(o[1] for d in self.destinations for o in d.objects)

    @property
    def total_bytes(self) -> int:
        return sum(o[2] for d in self.destinations for o in d.objects)

    @property
    def manifest(self) -> str:
        """SHA-256 of ``[[destination, key, rows, bytes], ...]`` sorted, canonical JSON."""
        return sha256_of(
            sorted([d.destination_id, *o] for d in self.destinations for o in d.objects)
        )

    @property
    def name(self) -> str:
        return f"org-deletion-{file_stamp(self.at)}-{self.manifest[:12]}"

    def totals(self) -> tuple[tuple[str, object], ...]:
        """The document's totals, as they must read for its objects."""
        return (
            ("object_count", self.objects),
            ("rows", self.rows),
            ("bytes", self.total_bytes),
            ("manifest_sha256", self.manifest),
        )

    def _body(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "org_id": self.org_id,
            "org_name": self.org_name,
            "requested_at": self.requested_at,
            "destinations": [
                {"id": d.destination_id, "kind": d.kind, "objects": [list(o) for o in d.objects]}
                for d in self.destinations
            ],
            "object_count": self.objects,
            "rows": self.rows,
            "bytes": self.total_bytes,
            "manifest_sha256": self.manifest,
            "at": self.at,
        }


def verify_certificate(doc: object, key: Ed25519PublicKey) -> list[str]:
    """Problems with a deletion certificate (empty: intact and signed by ``key``)."""
    try:
        cert = _parse(doc)
    except (ValueError, TypeError, KeyError) as exc:
        return [f"not a readable deletion certificate: {exc}"]
    assert isinstance(doc, dict)
    return cert.problems(doc, cert.totals(), key)


def _parse(doc: object) -> DeletionCertificate:
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise ValueError(f"format {FORMAT!r} expected")
    texts = [str(doc[k]) for k in ("org_id", "org_name", "requested_at", "at", "signature")]
    destinations = tuple(
        DeletedFrom(str(d["id"]), str(d["kind"]), tuple(parse_object(o) for o in d["objects"]))
        for d in doc["destinations"]
    )
    return DeletionCertificate(texts[0], texts[1], texts[2], destinations, texts[3], texts[4])
