"""Signed purge receipts: what one retention purge deleted, provable without Astralog.

Stage: after a purge deleted objects from a destination, beside the ``RetentionPurged`` record it
also appends. A receipt names every deleted object (key, rows, bytes), the totals and the SHA-256
of that manifest, and is signed with the instance's Ed25519 key (the checkpoint key,
:class:`astralog.controlplane.checkpoints.Signer`). The audit record carries the same manifest
hash and signature, and a copy of the document goes into the customer's destination, so the
customer can check offline, with the public key alone, what was deleted and that we said so.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from astralog.controlplane.signed_documents import (
    SignedDocument,
    file_stamp,
    parse_object,
    sha256_of,
)

FORMAT = "astralog-purge-receipt/v1"


@dataclass(frozen=True)
class PurgedObject:
    key: str
    rows: int
    bytes: int


def manifest_sha256(objects: Iterable[PurgedObject]) -> str:
    """SHA-256 of the canonical manifest: ``[[key, rows, bytes], ...]`` sorted by key."""
    return sha256_of(sorted([o.key, o.rows, o.bytes] for o in objects))


@dataclass(frozen=True)
class PurgeReceipt(SignedDocument):
    """Whole hour partitions of ``source_id`` older than ``before`` left ``destination_id``."""

    PREFIX = b"astralog-purge-receipt:v1:"
    NOUN = "receipt"

    org_id: str
    source_id: str
    destination_id: str
    before: str
    objects: tuple[PurgedObject, ...]
    at: str
    signature: str = ""

    @property
    def rows(self) -> int:
        return sum(o.rows for o in self.objects)

    @property
    def total_bytes(self) -> int:
        return sum(o.bytes for o in self.objects)

    @property
    def manifest(self) -> str:
        return manifest_sha256(self.objects)

    @property
    def name(self) -> str:
        """File name in the destination: time first, so listing by name is by time."""
        return f"purge-{file_stamp(self.at)}-{self.source_id}-{self.manifest[:12]}"

    def _body(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "org_id": self.org_id,
            "source_id": self.source_id,
            "destination_id": self.destination_id,
            "before": self.before,
            "objects": [[o.key, o.rows, o.bytes] for o in sorted(self.objects, key=_key)],
            "object_count": len(self.objects),
            "rows": self.rows,
            "bytes": self.total_bytes,
            "manifest_sha256": self.manifest,
            "at": self.at,
        }


def _key(o: PurgedObject) -> str:
    return o.key


def new_receipt(
    org_id: str, source_id: str, destination_id: str, before: datetime, objects: list[PurgedObject]
) -> PurgeReceipt:
    at = datetime.now(UTC).isoformat(timespec="microseconds")
    return PurgeReceipt(org_id, source_id, destination_id, before.isoformat(), tuple(objects), at)


def verify_receipt(doc: object, key: Ed25519PublicKey) -> list[str]:
    """Problems with a receipt document (empty: it is intact and signed by ``key``)."""
    try:
        receipt = _parse(doc)
    except (ValueError, TypeError) as exc:
        return [f"not a readable purge receipt: {exc}"]
    assert isinstance(doc, dict)
    totals = (
        ("object_count", len(receipt.objects)),
        ("rows", receipt.rows),
        ("bytes", receipt.total_bytes),
        ("manifest_sha256", receipt.manifest),
    )
    return receipt.problems(doc, totals, key)


def _parse(doc: object) -> PurgeReceipt:
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise ValueError(f"format {FORMAT!r} expected")
    texts = [doc.get(f) for f in ("org_id", "source_id", "destination_id", "before", "at")]
    if not all(isinstance(t, str) for t in texts) or not isinstance(doc.get("signature"), str):
        raise ValueError("org_id, source_id, destination_id, before, at and signature are text")
    objects = doc.get("objects")
    if not isinstance(objects, list):
        raise ValueError("objects is not a list")
    parsed = tuple(PurgedObject(*parse_object(o)) for o in objects)
    org, source, destination, before, at = (str(t) for t in texts)
    return PurgeReceipt(org, source, destination, before, parsed, at, str(doc["signature"]))
