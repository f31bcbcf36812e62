"""Org purge: the last step of a deletion after its grace, for a whole org or a part of it.

What a deletion covers is a :class:`PurgeScope`: the whole org, one of its sources, or all the
org keeps in one destination (a connector being deleted). Every destination the scope ever used
(each batch in the catalog names its destination; the org's configured connectors and the
embedded bucket are asked too, for anything the catalog lost in a crash) is purged with the
retention purge's own primitive, ``delete_expired`` over the scope with a cutoff beyond any
timestamp ingest accepts. A legal hold in force over the scope's data stops the purge: it stays
pending and the hold is recorded (``OrgDeletionHeld``, ``ScopeDeletionHeld``). Rows acknowledged
but not yet flushed wait for their flush, so nothing lands after the purge. One destination that
fails leaves the deletion pending; the next pass retries (what was deleted stays deleted). The
end is a signed deletion certificate (:mod:`astralog.controlplane.org_deletion`), copied into the
destinations and then recorded in the log; :mod:`astralog.scope_purge` ends sources and
connectors the same way.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol, TypeVar

import pyarrow.compute as pc

from astralog.catalog import BatchCommitted
from astralog.controlplane.org_deletion import DeletedFrom, DeletionCertificate, OrgDeletions
from astralog.controlplane.store import Actor
from astralog.dataplane import LOCAL_DESTINATION, DataAccess, Destination

log = logging.getLogger("astralog.org_purge")
PURGER = Actor("system:org-deletion", "local")
BEYOND_ALL_DATA = datetime(2100, 1, 1, tzinfo=UTC)  # before ClickHouse DateTime's end (2106)
ALL_TIME_NS = 2**62
Due = TypeVar("Due")


class OrgPurgeAccess(DataAccess, Protocol):
    def destination_ids(self, org_id: str) -> list[str]:
        """The org's configured destinations (connector ids), used or not."""
        ...

    def source_ids(self, org_id: str) -> list[str]:
        """Every source of the org, pending deletion or not (searches see fewer)."""
        ...

    def org_name(self, org_id: str) -> str: ...

    def forget_org(self, org_id: str) -> None:
        """Drop what this instance keeps of the org beside its destinations and its log
        (deletion vectors, export jobs and archives, idempotency receipts, alert instances and
        history, the alert outbox and delivery log, endpoint secrets, credential use); its
        saved searches, alerts, silences and endpoints leave the projections with
        ``OrgDeleted``."""
        ...


@dataclass(frozen=True)
class PurgeScope:
    """What a deletion purges: the org, one source of it, or its data in one destination."""

    org_id: str
    source_id: str | None = None
    destination_id: str | None = None


async def purge_each(
    due: Iterable[Due], purge: Callable[[Due], Awaitable[dict[str, Any] | None]]
) -> list[dict[str, Any]]:
    """Purge every deletion whose grace is over; one that fails waits for the next pass."""
    issued = []
    for item in due:
        try:
            certificate = await purge(item)
        except Exception:
            log.exception("deletion purge failed", extra={"deletion": str(item)})
            continue
        if certificate is not None:
            issued.append(certificate)
    return issued


async def purge_due(
    data: OrgPurgeAccess, deletions: OrgDeletions, now: datetime | None = None
) -> list[dict[str, Any]]:
    """Purge every org whose grace is over; returns the certificates issued."""
    return await purge_each(
        deletions.due(now), lambda org_id: purge_org(data, deletions, org_id, PURGER)
    )


async def purge_org(
    data: OrgPurgeAccess, deletions: OrgDeletions, org_id: str, actor: Actor
) -> dict[str, Any] | None:
    """The org's final purge; None when a hold, unflushed rows or a destination stop it."""
    deletion = deletions.get(org_id)
    if deletion is None or deletion["state"] != "pending":
        return None
    deleted = await purge_scope(
        data, PurgeScope(org_id), lambda holds: deletions.held(org_id, holds, actor)
    )
    if deleted is None:
        return None
    data.forget_org(org_id)  # before the record: a crash in between retries it all
    certificate = DeletionCertificate(
        org_id, data.org_name(org_id), deletion["requested_at"], deleted,
        datetime.now(UTC).isoformat(),
    ).signed(data.sign)  # fmt: skip
    await deliver(data, org_id, certificate)
    deletions.deleted(certificate, actor)
    return certificate.document()


async def purge_scope(
    data: OrgPurgeAccess, scope: PurgeScope, on_held: Callable[[list[str]], None]
) -> tuple[DeletedFrom, ...] | None:
    """Delete what ``scope`` covers everywhere it lives; None (and ``on_held`` told which
    holds) when a hold, unflushed rows or a failing destination stop it."""
    holds = _holding(data, scope)
    if holds:
        on_held(holds)
        return None
    if _unflushed(data, scope):
        log.info("deletion purge waits for acknowledged rows to flush", extra={"org": scope.org_id})
        return None
    deleted = [await _purge_destination(data, scope, d) for d in _destinations(data, scope)]
    if any(d is None for d in deleted):
        return None
    return tuple(d for d in deleted if d is not None)


def _holding(data: OrgPurgeAccess, scope: PurgeScope) -> list[str]:
    """The holds in force over any of the scope's data: a hold wins over a deletion."""
    holds = data.holds(scope.org_id)
    if scope.destination_id is not None:  # a destination holds many sources' hours
        stored = _batches(data, scope)
        return sorted(
            h.id for h in holds
            if any(h.covers(b.source_id, b.min_ts_ns, b.max_ts_ns + 1) for b in stored)
        )  # fmt: skip
    return sorted(
        h.id
        for h in holds
        if scope.source_id is None or h.sources is None or scope.source_id in h.sources
    )


def _unflushed(data: OrgPurgeAccess, scope: PurgeScope) -> bool:
    if scope.destination_id is not None:
        return False  # the org's new batches have gone elsewhere since the request
    for pending in data.pending():
        mine = pc.equal(pending.table["OrgId"], scope.org_id)
        if scope.source_id is not None:
            mine = pc.and_(mine, pc.equal(pending.table["SourceId"], scope.source_id))
        if pc.any(mine).as_py():
            return True
    return False


def _batches(data: OrgPurgeAccess, scope: PurgeScope) -> list[BatchCommitted]:
    sources = [scope.source_id] if scope.source_id else data.source_ids(scope.org_id)
    found = data.batches(scope.org_id, sources, 0, ALL_TIME_NS) if sources else []
    return [b for b in found if scope.destination_id in (None, b.destination_id)]


def _destinations(data: OrgPurgeAccess, scope: PurgeScope) -> list[str]:
    if scope.destination_id is not None:
        return [scope.destination_id]
    used = {b.destination_id for b in _batches(data, scope)}
    return sorted(used | set(data.destination_ids(scope.org_id)) | {LOCAL_DESTINATION})


async def _purge_destination(
    data: OrgPurgeAccess, scope: PurgeScope, destination_id: str
) -> DeletedFrom | None:
    org_id = scope.org_id
    known = {b.object_key: b for b in _batches(data, scope)}
    try:
        destination = data.destination(org_id, destination_id)
        connector = data.connector(org_id, destination)
        keys = await connector.delete_expired(org_id, scope.source_id, BEYOND_ALL_DATA)
    except Exception:
        log.exception("deletion purge of a destination failed", extra={"org": org_id,
                      "destination": destination_id})  # fmt: skip
        return None
    data.forget_batches([k for k in keys if k in known])
    objects = tuple(
        (k, known[k].rows, known[k].bytes) if k in known else (k, 0, 0) for k in sorted(keys)
    )
    return DeletedFrom(destination.id, destination.kind, objects)


async def deliver(data: OrgPurgeAccess, org_id: str, certificate: DeletionCertificate) -> None:
    """A copy for the customer in each destination still reachable, before the deletion is
    recorded (a connector's record, which opens it, goes with it); the audit record holds the
    certificate whatever a destination does with its copy."""
    for deleted in certificate.destinations:
        try:
            destination = Destination(deleted.destination_id, deleted.destination_id, deleted.kind)
            connector = data.connector(org_id, destination)
            await connector.put_receipt(org_id, certificate.name, certificate.to_bytes())
        except Exception:
            log.exception("writing deletion certificate %s failed", certificate.name)
