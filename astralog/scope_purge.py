"""Source and connector purge: the last step of their deletion, after the grace.

The org purge's steps (:func:`astralog.org_purge.purge_scope`) at a smaller scope: a source's
hour partitions in every destination the org used, or everything the org keeps in one connector.
A hold over that data keeps it pending (``ScopeDeletionHeld``). The end is a certificate naming
the source or connector, copied into the destinations and recorded as ``ScopeDeleted``.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Protocol

from astralog.controlplane.org_deletion import DeletedFrom
from astralog.controlplane.scope_deletion import Scope, ScopeDeletionCertificate, ScopeDeletions
from astralog.controlplane.store import Actor
from astralog.org_purge import PURGER, OrgPurgeAccess, PurgeScope, deliver, purge_each, purge_scope


class ScopePurgeAccess(OrgPurgeAccess, Protocol):
    def connector_used(self, connector_id: str) -> bool:
        """Whether the connector was ever the org's active destination."""
        ...


async def purge_due(
    data: ScopePurgeAccess, deletions: ScopeDeletions, now: datetime | None = None
) -> list[dict[str, Any]]:
    """Purge every source and connector whose grace is over; returns the certificates."""
    return await purge_each(
        deletions.due(now), lambda due: purge_one(data, deletions, *due, actor=PURGER)
    )


async def purge_one(
    data: ScopePurgeAccess, deletions: ScopeDeletions, org_id: str, scope: Scope,
    target_id: str, *, actor: Actor,
) -> dict[str, Any] | None:  # fmt: skip
    """The final purge of one source or connector; None when a hold, unflushed rows or a
    destination stop it."""
    deletion = deletions.get(org_id, scope, target_id)
    if deletion is None or deletion["state"] != "pending":
        return None
    deleted = await _purge(data, deletions, org_id, scope, target_id, actor)
    if deleted is None:
        return None
    certificate = ScopeDeletionCertificate(
        org_id, data.org_name(org_id), deletion["requested_at"], deleted,
        datetime.now(UTC).isoformat(), "", scope, target_id, deletion["name"],
    ).signed(data.sign)  # fmt: skip
    await deliver(data, org_id, certificate)
    deletions.deleted(certificate, actor)
    return certificate.document()


async def _purge(
    data: ScopePurgeAccess, deletions: ScopeDeletions, org_id: str, scope: Scope,
    target_id: str, actor: Actor,
) -> tuple[DeletedFrom, ...] | None:  # fmt: skip
    if scope == "connector" and not data.connector_used(target_id):
        return ()  # never active: nothing of the org's was written there, nothing to reach
    purge = (
        PurgeScope(org_id, source_id=target_id)
        if scope == "source"
        else PurgeScope(org_id, destination_id=target_id)
    )
    return await purge_scope(
        data, purge, lambda holds: deletions.held(org_id, scope, target_id, holds, actor)
    )
