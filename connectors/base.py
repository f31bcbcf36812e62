"""The connector contract: the one small interface every destination (sink) implements.

The flusher hands a connector one Arrow table per ``(org, source, hour, batch)`` and the
connector stores it in the customer's storage. Every connector promises:

* ``write_batch`` is idempotent: writing the same :class:`BatchKey` twice stores it once (the
  object is overwritten), so a crash between "written" and "committed" never duplicates data;
* objects follow the Hive layout of :mod:`astralog.connectors.layout`, so any engine can read
  them without us;
* ``list_objects`` and ``delete_expired`` prune by the partition path, never by reading data;
  ``delete_expired`` spares the hours a legal hold keeps, and only those;
* ``probe`` says exactly which step (write, read, list, delete, ...) failed
  (:mod:`astralog.connectors.probe` runs the steps);
* ``put_checkpoint`` / ``list_checkpoints`` keep the org's signed audit checkpoints in its own
  storage, so the org can prove its history even if this machine is lost or rewritten;
  ``put_receipt`` / ``list_receipts`` keep the signed receipts of retention purges there too;
* errors of the storage client are translated at the boundary into :class:`ConnectorError`
  (``raise ... from exc``) with ``retryable`` telling the flusher whether to back off and retry
  (the destination may recover) or to report a permanent problem.

How a kind of destination is configured and built is declared beside it
(:class:`astralog.connectors.registry.ConnectorKind`).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from astralog.errors import AstralogError
from astralog.schema import log_schema

from .layout import BatchKey

Spans = Sequence[tuple[datetime, datetime]]  # time spans whose hour partitions a purge keeps

__all__ = [
    "BatchKey",
    "Check",
    "Connector",
    "ConnectorError",
    "Pushdown",
    "Spans",
    "WrittenBatch",
    "canonical_rows",
    "without_events",
]


class ConnectorError(AstralogError):
    """A destination refused or failed an operation.

    ``retryable`` is True when the destination may recover without a change on our side (disk
    freed, permission fixed, endpoint back up): the flusher keeps the data and backs off.
    """

    status = 502
    title = "Destination error"
    slug = "destination"

    def __init__(self, detail: str, *, retryable: bool, **extra: Any) -> None:
        super().__init__(detail, retryable=retryable, **extra)
        self.retryable = retryable


@dataclass(frozen=True)
class Pushdown:
    """A search filter a destination may evaluate itself: a WHERE fragment and its bound
    parameters in one SQL dialect (see :func:`astralog.query.compile.compile_where`)."""

    dialect: str
    where: str
    params: dict[str, Any]


@dataclass(frozen=True)
class WrittenBatch:
    """What a connector stored: the key relative to its root, a URI engines can open, sizes."""

    key: str
    uri: str
    bytes: int
    rows: int


@dataclass(frozen=True)
class Check:
    """One step of a connection check, with a message an admin can act on when it failed."""

    name: str
    ok: bool
    detail: str = ""


class Connector(ABC):
    """A destination for Parquet batches. Implementations: local directory, S3, ClickHouse."""

    @abstractmethod
    async def write_batch(self, key: BatchKey, table: pa.Table) -> WrittenBatch:
        """Store ``table`` under ``key``; the same key again overwrites, never duplicates."""

    @abstractmethod
    async def delete_expired(
        self, org_id: str, source_id: str | None, before: datetime, keep: Spans = ()
    ) -> list[str]:
        """Delete every hour partition ending at or before ``before``, except the hours that
        overlap a span ``[start, end)`` of ``keep`` (legal holds); return the deleted keys."""

    @abstractmethod
    async def list_objects(
        self, org_id: str, source_id: str | None, start: datetime, end: datetime
    ) -> list[str]:
        """Keys of the batches whose hour partition overlaps ``[start, end)``, sorted."""

    @abstractmethod
    async def probe(self) -> list[Check]:
        """Run the connection check, one :class:`Check` per step, in order."""

    async def read_batches(
        self, object_keys: Sequence[str], pushdown: Pushdown | None = None
    ) -> pa.Table:
        """The rows of the batches at ``object_keys`` (keys as :meth:`write_batch` returned
        them), in the canonical schema; search reads BYOB destinations through this.

        A connector that can evaluate ``pushdown`` (its dialect) may return only the rows it
        selects; the caller filters again, so ignoring it is always correct."""
        raise NotImplementedError(
            f"{type(self).__name__} cannot read batches back, so what it stores is not "
            "searchable through Astralog; implement read_batches to make it so"
        )

    async def read_object(self, object_key: str) -> bytes:
        """The bytes of the batch at ``object_key`` exactly as stored: an org export copies
        them. A destination that stores rows, not objects, has none (the export re-encodes)."""
        raise NotImplementedError(f"{type(self).__name__} stores rows, not objects")

    async def put_checkpoint(self, org_id: str, seq: int, document: bytes) -> None:
        """Store the org's signed checkpoint ``document`` at its record ``seq``; idempotent."""
        raise NotImplementedError(f"{type(self).__name__} cannot keep audit checkpoints")

    async def list_checkpoints(self, org_id: str) -> list[tuple[str, bytes]]:
        """Every checkpoint document of the org stored here, as ``(where, document)``, by seq."""
        raise NotImplementedError(f"{type(self).__name__} cannot keep audit checkpoints")

    async def list_checkpoint_orgs(self) -> list[str]:
        """Every org with a checkpoint stored here, sorted: how a verifier finds the copies of an
        org whose records were wiped from the database together with its name."""
        raise NotImplementedError(f"{type(self).__name__} cannot keep audit checkpoints")

    async def put_receipt(self, org_id: str, name: str, document: bytes) -> None:
        """Store the org's signed purge receipt ``document`` as ``name``; idempotent."""
        raise NotImplementedError(f"{type(self).__name__} cannot keep purge receipts")

    async def list_receipts(self, org_id: str) -> list[tuple[str, bytes]]:
        """Every purge receipt of the org stored here, as ``(where, document)``, by name."""
        raise NotImplementedError(f"{type(self).__name__} cannot keep purge receipts")

    async def erase_rows(
        self, object_key: str, event_ids: Collection[str], replacement: BatchKey
    ) -> WrittenBatch | None:
        """Store the batch at ``object_key`` again without the rows whose EventId is in
        ``event_ids``, under ``replacement``; None when it holds none of them. A result with no
        rows means nothing is left to store. The old object stays until :meth:`delete_objects`,
        so a reader that planned with it still finds it; a retry writes the same replacement.
        """
        table = await self.read_batches([object_key])
        kept = without_events(table, event_ids)
        if kept.num_rows == table.num_rows:
            return None
        if not kept.num_rows:
            return WrittenBatch(key="", uri="", bytes=0, rows=0)
        return await self.write_batch(replacement, kept)

    async def delete_objects(self, object_keys: Sequence[str]) -> None:
        """Delete these batches (keys as :meth:`write_batch` returned them); absent is fine."""
        raise NotImplementedError(f"{type(self).__name__} cannot delete single batches")

    def is_retryable(self, exc: BaseException) -> bool:
        """Whether ``exc`` is a condition the destination may recover from on its own."""
        return isinstance(exc, ConnectorError) and exc.retryable

    async def close(self) -> None:  # noqa: B027 - optional hook, most connectors hold nothing
        """Release clients and connections."""


def without_events(table: pa.Table, event_ids: Collection[str]) -> pa.Table:
    """``table`` without the rows whose EventId is in ``event_ids``: what an erasure keeps of a
    batch, whether it rewrites it in place (:meth:`Connector.erase_rows`) or an org export
    copies it."""
    erased = pc.is_in(table["EventId"], value_set=pa.array(sorted(event_ids), pa.string()))
    return table.filter(pc.invert(erased))


def canonical_rows(tables: Sequence[pa.Table], what: str) -> pa.Table:
    """``tables`` concatenated in the canonical schema (its columns, order and types).

    A stored batch that cannot take that shape is not ours to guess about: ConnectorError.
    """
    schema = log_schema()
    try:
        shaped = [t.select(schema.names).cast(schema) for t in tables]
    except (KeyError, pa.ArrowException) as exc:
        raise ConnectorError(
            f"{what}: the stored rows do not fit the canonical schema ({exc})", retryable=False
        ) from exc
    return pa.concat_tables(shaped) if shaped else schema.empty_table()
