"""The data plane as the query, retention and purge stages see it: one narrow protocol.

Those stages need an org's limits and retention, its committed batches, the rows acknowledged
but not yet flushed, and a live connector for a destination. They ask :class:`DataAccess` for
them and get typed values back; the process wiring (``astralog.runtime.Runtime``) implements it,
so nothing below the wiring imports the wiring, and a test can hand them something smaller.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

from astralog.batch_cache import BatchCache
from astralog.catalog import BatchCommitted
from astralog.connectors.base import Connector
from astralog.controlplane.events import PurgeHeld, RetentionPurged
from astralog.controlplane.holds import Hold
from astralog.controlplane.plans import PlanLimits
from astralog.controlplane.sources import Retention, SourceRetention
from astralog.controlplane.store import Actor
from astralog.ingest.wal import PendingData

__all__ = [
    "LOCAL_DESTINATION",
    "DataAccess",
    "Destination",
    "PendingData",
    "PlanLimits",
    "Retention",
    "SourceRetention",
]

LOCAL_DESTINATION = "local"  # the embedded bucket's destination id in catalog facts


@dataclass(frozen=True)
class Destination:
    """Where committed batches live: the embedded bucket or one of the org's BYOB connectors."""

    id: str
    name: str
    kind: str

    @property
    def label(self) -> str:
        """As people know it, for errors and warnings: 'name' (kind, id)."""
        return f"{self.name!r} ({self.kind}, {self.id})"


LOCAL = Destination(LOCAL_DESTINATION, "embedded bucket", "local")


class DataAccess(Protocol):
    def limits(self, org_id: str) -> PlanLimits:
        """The org's plan limits with its overrides; NotFound for an unknown org."""
        ...

    def retention_policy(self, org_id: str) -> Retention:
        """The plan's retention and each source's effective retention."""
        ...

    def org_ids(self) -> list[str]: ...

    def batches(
        self, org_id: str, source_ids: Sequence[str], start_ns: int, end_ns: int
    ) -> list[BatchCommitted]:
        """Committed batches of these sources overlapping ``[start_ns, end_ns)``."""
        ...

    def forget_batches(self, object_keys: Iterable[str]) -> None:
        """The objects were deleted from their destination: drop their catalog facts and their
        cached copies."""
        ...

    def pending(self) -> Sequence[PendingData]:
        """Rows this node acknowledged and has not flushed yet, per WAL segment."""
        ...

    def erased(
        self, org_id: str, source_ids: Sequence[str], start_ns: int, end_ns: int
    ) -> list[str]:
        """Event ids that erasures hide in these sources' hours overlapping the range."""
        ...

    def destination(self, org_id: str, destination_id: str) -> Destination:
        """One of the org's destinations; NotFound when it is not (or no longer) the org's."""
        ...

    def connector(self, org_id: str, destination: Destination) -> Connector:
        """The live connector of a destination; an AstralogError when it cannot be opened."""
        ...

    @property
    def batch_cache(self) -> BatchCache:
        """Local copies of batch objects read from BYOB buckets (bounded, versioned)."""
        ...

    def holds(self, org_id: str) -> list[Hold]:
        """The org's legal holds in force: the purge never deletes what they cover."""
        ...

    def record_purge(self, event: RetentionPurged | PurgeHeld, actor: Actor) -> None:
        """Append a purge (or what a hold kept from it) to the audited control-plane log."""
        ...

    def sign(self, message: bytes) -> bytes:
        """An Ed25519 signature of ``message`` with the instance's key (purge receipts)."""
        ...
