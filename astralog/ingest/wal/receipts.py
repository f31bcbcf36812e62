"""WAL receipts: facts about an append written in the same record as its rows.

Stage: WAL (receipts). An append may carry a receipt (JSON facts about it: the Idempotency-Key,
its answer and the SHA-256 of the request body, Elasticsearch document ids). Receipts are written
in the custom metadata of the same record batch as the rows, under the same fsync, so "the rows
are durable" and "the WAL knows this request was answered" are one fact. The
:class:`ReceiptLedger` hears of each receipt after its fsync and before any appender is answered,
hears of every receipt still in the WAL on open, and is asked to keep a segment's receipts before
the segment is deleted.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Protocol

import pyarrow as pa
import pyarrow.ipc as ipc

__all__ = ["Receipt", "ReceiptLedger", "read_receipts", "receipts_metadata"]

RECEIPTS_METADATA = b"astralog.receipts"

Receipt = dict[str, Any]
"""JSON facts written in the same record as an append's rows (see the module docstring)."""


class ReceiptLedger(Protocol):
    """Who keeps receipts beyond the WAL (the idempotency store)."""

    def committed(self, receipts: list[Receipt]) -> None:
        """Durable in the WAL. Called before any appender is answered, and on open for every
        receipt in an unreleased segment. Runs on the writer thread: fast, must not raise."""

    def releasing(self, receipts: list[Receipt]) -> None:
        """The segment holding these is about to be deleted: make them durable elsewhere first.
        Raising keeps the segment."""


def receipts_metadata(receipts: list[Receipt]) -> dict[bytes, bytes] | None:
    """The custom metadata of the record batch that carries ``receipts`` (None for none)."""
    return {RECEIPTS_METADATA: json.dumps(receipts).encode()} if receipts else None


def read_receipts(path: Path) -> list[Receipt]:
    """The receipts written in a segment file, in write order."""
    found: list[Receipt] = []
    with pa.memory_map(str(path)) as source:
        reader = ipc.open_stream(source)
        while True:
            try:
                batch = reader.read_next_batch_with_custom_metadata()
            except StopIteration:
                break
            raw = (batch.custom_metadata or {}).get(RECEIPTS_METADATA)
            if raw:
                found.extend(json.loads(raw))
    return found
