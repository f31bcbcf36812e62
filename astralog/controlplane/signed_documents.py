"""Signed JSON documents: purge receipts, deletion certificates and erasure receipts.

Each is a canonical JSON body signed with the instance's Ed25519 key (the checkpoint key) over a
prefix naming its kind and version, then the body, so a signature of one kind never passes for
another. The document is the body plus its base64 ``signature``; a customer checks it offline
with the public key alone: the totals it states against the objects it lists, and the signature.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Callable, Iterable
from dataclasses import replace
from datetime import datetime
from typing import Any, ClassVar, Self

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from astralog.controlplane.checkpoints import _signed
from astralog.controlplane.store import canonical_json

Sign = Callable[[bytes], bytes]


def sha256_of(value: object) -> str:
    """SHA-256 of the canonical JSON of ``value`` (a manifest, sorted by the caller)."""
    return hashlib.sha256(canonical_json(value).encode()).hexdigest()


def signature_of(prefix: bytes, body: dict[str, Any], sign: Sign) -> str:
    return base64.b64encode(sign(prefix + canonical_json(body).encode())).decode()


def document_bytes(body: dict[str, Any], signature: str) -> bytes:
    return canonical_json(body | {"signature": signature}).encode()


def file_stamp(at: str) -> str:
    """``at`` as it starts a file name: time first, so listing by name is by time."""
    return datetime.fromisoformat(at).strftime("%Y%m%dT%H%M%S%fZ")


class SignedDocument:
    """For a frozen dataclass with a ``signature`` field (empty until signed) and a body."""

    PREFIX: ClassVar[bytes]
    NOUN: ClassVar[str]
    signature: str

    def _body(self) -> dict[str, Any]:
        raise NotImplementedError

    def message(self) -> bytes:
        return self.PREFIX + canonical_json(self._body()).encode()

    def document(self) -> dict[str, Any]:
        return self._body() | {"signature": self.signature}

    def to_bytes(self) -> bytes:
        return document_bytes(self._body(), self.signature)

    def signed(self, sign: Sign) -> Self:
        return replace(self, signature=signature_of(self.PREFIX, self._body(), sign))  # type: ignore[type-var]

    def problems(
        self, doc: dict[str, Any], totals: Iterable[tuple[str, object]], key: Ed25519PublicKey
    ) -> list[str]:
        """Totals ``doc`` states that its objects do not give; a signature not by ``key``."""
        found = [
            f"{name} says {doc.get(name)!r} but the objects listed give {actual!r}"
            for name, actual in totals
            if doc.get(name) != actual
        ]
        if not _signed(key, self.signature, self.message()):
            found.append(f"the signature does not match this {self.NOUN} and public key")
        return found


def parse_object(item: object) -> tuple[str, int, int]:
    """One ``[key, rows, bytes]`` entry of a document's object list."""
    if not (isinstance(item, list) and len(item) == 3 and isinstance(item[0], str)):
        raise ValueError("each object is [key, rows, bytes]")
    rows, size = item[1], item[2]
    if not all(isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in (rows, size)):
        raise ValueError(f"object {item[0]!r} has no valid rows or bytes")
    return item[0], rows, size
