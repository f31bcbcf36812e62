"""Org purge: the last step of an org's deletion, after its grace.

Every destination the org ever used (each batch in the catalog names its destination; the org's
configured connectors and the embedded bucket are asked too, for anything the catalog lost in a
crash) is purged with the retention purge's own primitive, ``delete_expired`` over the whole org
with a cutoff beyond any timestamp ingest accepts. A legal hold in force on the org stops the
purge: the org stays pending and the hold is recorded (``OrgDeletionHeld``). Rows acknowledged
but not yet flushed wait for their flush, so nothing lands after the purge. One destination that
fails leaves the org pending; the next pass retries (what was deleted stays deleted). The end is
the signed deletion certificate (:mod:`astralog.controlplane.org_deletion`).
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any, Protocol

import pyarrow.compute as pc

from astralog.catalog import BatchCommitted
from astralog.controlplane.org_deletion import DeletedFrom, DeletionCertificate, OrgDeletions
from astralog.controlplane.store import Actor
from astralog.dataplane import LOCAL_DESTINATION, DataAccess, Destination

log = logging.getLogger("astralog.org_purge")
PURGER = Actor("system:org-deletion", "local")
BEYOND_ALL_DATA = datetime(2100, 1, 1, tzinfo=UTC)  # before ClickHouse DateTime's end (2106)
ALL_TIME_NS = 2**62


class OrgPurgeAccess(DataAccess, Protocol):
    def destination_ids(self, org_id: str) -> list[str]:
        """The org's configured destinations (connector ids), used or not."""
        ...

    def org_name(self, org_id: str) -> str: ...

    def forget_org(self, org_id: str) -> None:
        """Drop what this instance keeps of the org beside its destinations and its log
        (deletion vectors, export jobs and archives, idempotency receipts)."""
        ...


async def purge_due(
    data: OrgPurgeAccess, deletions: OrgDeletions, now: datetime | None = None
) -> list[dict[str, Any]]:
    """Purge every org whose grace is over; returns the certificates issued."""
    issued = []
    for org_id in deletions.due(now):
        try:
            certificate = await purge_org(data, deletions, org_id, PURGER)
        except Exception:
            log.exception("org purge failed", extra={"org": org_id})
            continue
        if certificate is not None:
            issued.append(certificate)
    return issued


async def purge_org(
    data: OrgPurgeAccess, deletions: OrgDeletions, org_id: str, actor: Actor
) -> dict[str, Any] | None:
    """The org's final purge; None when a hold, unflushed rows or a destination stop it."""
    deletion = deletions.get(org_id)
    if deletion is None or deletion["state"] != "pending":
        return None
    holds = data.holds(org_id)
    if holds:
        deletions.held(org_id, [h.id for h in holds], actor)
        return None
    if _unflushed(data, org_id):
        log.info("org purge waits for acknowledged rows to flush", extra={"org": org_id})
        return None
    deleted = [await _purge_destination(data, org_id, d) for d in _destinations(data, org_id)]
    if any(d is None for d in deleted):
        return None
    data.forget_org(org_id)  # before the record: a crash in between retries it all
    certificate = DeletionCertificate(
        org_id, data.org_name(org_id), deletion["requested_at"],
        tuple(d for d in deleted if d is not None), datetime.now(UTC).isoformat(),
    ).signed(data.sign)  # fmt: skip
    deletions.deleted(certificate, actor)
    await _deliver(data, org_id, certificate)
    return certificate.document()


def _unflushed(data: OrgPurgeAccess, org_id: str) -> bool:
    return any(pc.any(pc.equal(p.table["OrgId"], org_id)).as_py() for p in data.pending())


def _all_batches(data: OrgPurgeAccess, org_id: str) -> list[BatchCommitted]:
    sources = [s.source_id for s in data.retention_policy(org_id).sources]
    return data.batches(org_id, sources, 0, ALL_TIME_NS) if sources else []


def _destinations(data: OrgPurgeAccess, org_id: str) -> list[str]:
    used = {b.destination_id for b in _all_batches(data, org_id)}
    return sorted(used | set(data.destination_ids(org_id)) | {LOCAL_DESTINATION})


async def _purge_destination(
    data: OrgPurgeAccess, org_id: str, destination_id: str
) -> DeletedFrom | None:
    known = {b.object_key: b for b in _all_batches(data, org_id)}
    try:
        destination = data.destination(org_id, destination_id)
        connector = data.connector(org_id, destination)
        keys = await connector.delete_expired(org_id, None, BEYOND_ALL_DATA)
    except Exception:
        log.exception("org purge of a destination failed", extra={"org": org_id,
                      "destination": destination_id})  # fmt: skip
        return None
    data.forget_batches([k for k in keys if k in known])
    objects = tuple(
        (k, known[k].rows, known[k].bytes) if k in known else (k, 0, 0) for k in sorted(keys)
    )
    return DeletedFrom(destination.id, destination.kind, objects)


async def _deliver(data: OrgPurgeAccess, org_id: str, certificate: DeletionCertificate) -> None:
    """A copy for the customer in each destination still reachable; the audit record holds the
    certificate whatever a destination does with its copy."""
    for deleted in certificate.destinations:
        try:
            destination = Destination(deleted.destination_id, deleted.destination_id, deleted.kind)
            connector = data.connector(org_id, destination)
            await connector.put_receipt(org_id, certificate.name, certificate.to_bytes())
        except Exception:
            log.exception("writing deletion certificate %s failed", certificate.name)
