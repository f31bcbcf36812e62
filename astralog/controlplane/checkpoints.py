"""Signed checkpoints of the hash-chained event log, and their copies outside the box.

Stage: after the event log appends, before anyone verifies it. A checkpoint signs, with Ed25519,
a head of a chain: the global chain (the operator's) or one org's own chain (``store.org_chain``,
the tenant's). Its document (:class:`SignedCheckpoint`) is self-contained JSON that verifies with
the public key alone; :class:`Signer` signs every head that moved and re-signs the heartbeat, and
:class:`Publisher` writes org checkpoints into the org's destination (its bucket or ClickHouse),
out of the reach of whoever holds this machine. The verifier
(:mod:`astralog.controlplane.audit_verify`) reads what this module writes.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import os
import sqlite3
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, Protocol, TypeGuard

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from astralog.controlplane.store import EventStore, canonical_json

log = logging.getLogger("astralog.audit")

FORMAT = "astralog-checkpoint/v2"
Kind = Literal["global", "org", "heartbeat", "export"]
_KINDS = ("global", "org", "heartbeat", "export")


def _legacy_message(seq: int, head: str) -> bytes:
    """What checkpoints signed before the time was signed too (their ``at`` proves nothing)."""
    return f"astralog-checkpoint:v1:{seq}:{head}".encode()


@dataclass(frozen=True)
class SignedCheckpoint:
    """A signed head: ``seq``/``hash`` of the global chain or of ``org_id``'s chain, at ``at``.

    ``after`` is set on the signed end of a partial export only: the export holds the records
    after that one (signed, so dropping the first lines of a whole export is caught)."""

    kind: Kind
    org_id: str | None
    seq: int
    hash: str
    at: str
    signature: str
    after: int = 0

    def message(self) -> bytes:
        signed = {"kind": self.kind, "org_id": self.org_id, "seq": self.seq, "hash": self.hash}
        if self.after:  # absent when 0: every signature made before it existed still verifies
            signed["after"] = self.after
        return b"astralog-checkpoint:v2:" + canonical_json(signed | {"at": self.at}).encode()

    def document(self) -> dict[str, Any]:
        return {"format": FORMAT} | asdict(self)

    def to_bytes(self) -> bytes:
        return canonical_json(self.document()).encode()

    def valid(self, key: Ed25519PublicKey) -> bool:
        return _signed(key, self.signature, self.message())

    def valid_legacy(self, key: Ed25519PublicKey) -> bool:
        """Signed as checkpoints were before their time was signed too (v1)."""
        return _signed(key, self.signature, _legacy_message(self.seq, self.hash))

    def moment(self) -> datetime:
        return datetime.fromisoformat(self.at)

    @classmethod
    def from_document(cls, doc: object) -> SignedCheckpoint:
        """Parse a checkpoint document; ValueError says what is wrong with it."""
        if not isinstance(doc, dict) or doc.get("format") != FORMAT:
            raise ValueError(f"not an Astralog checkpoint (format {FORMAT!r} expected)")
        kind, org_id, seq, digest = (
            doc.get("kind"),
            doc.get("org_id"),
            doc.get("seq"),
            doc.get("hash"),
        )
        at, signature, after = doc.get("at"), doc.get("signature"), doc.get("after", 0)
        if kind not in _KINDS or not _count(seq) or not _count(after):
            raise ValueError("checkpoint has no valid kind, seq or after")
        if not all(isinstance(v, str) for v in (digest, at, signature)):
            raise ValueError("checkpoint lacks its hash, time or signature")
        if org_id is not None and not isinstance(org_id, str):
            raise ValueError("checkpoint org_id is not a string")
        try:
            datetime.fromisoformat(str(at))
        except ValueError as exc:
            raise ValueError(f"checkpoint time {at!r} is not ISO 8601") from exc
        return cls(kind, org_id, seq, str(digest), str(at), str(signature), after)


def _count(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _signed(key: Ed25519PublicKey, signature: str, message: bytes) -> bool:
    try:
        key.verify(base64.b64decode(signature, validate=True), message)
    except (InvalidSignature, ValueError, binascii.Error):
        return False
    return True


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds")


# -- signing ----------------------------------------------------------------------------------


class Signer:
    """The checkpoint signing key, created (mode 0600) on first use."""

    def __init__(self, key_file: Path) -> None:
        if key_file.exists():
            key = serialization.load_pem_private_key(key_file.read_bytes(), password=None)
            if not isinstance(key, Ed25519PrivateKey):
                raise TypeError(f"{key_file} does not hold an Ed25519 private key")
        else:
            key = Ed25519PrivateKey.generate()
            key_file.parent.mkdir(parents=True, exist_ok=True)
            pem = key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
            fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as handle:
                handle.write(pem)
        self._key = key

    def public_pem(self) -> bytes:
        return self._key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    def sign_bytes(self, message: bytes) -> bytes:
        """A raw Ed25519 signature of ``message`` (purge receipts sign their own documents)."""
        return self._key.sign(message)

    def sign(
        self, kind: Kind, org_id: str | None, seq: int, head: str, *, after: int = 0
    ) -> SignedCheckpoint:
        unsigned = SignedCheckpoint(kind, org_id, seq, head, _now(), "", after)
        signature = base64.b64encode(self._key.sign(unsigned.message())).decode()
        return SignedCheckpoint(kind, org_id, seq, head, unsigned.at, signature, after)

    def checkpoint(self, store: EventStore) -> tuple[int, str] | None:
        """Sign the global head and every org head that moved, and re-sign the heartbeat;
        return the global (seq, hash) newly signed, if any."""
        with store.transaction() as conn:
            seq, head = store.head()
            last = conn.execute("SELECT MAX(seq) FROM checkpoints").fetchone()[0] or 0
            self._sign_orgs(conn)
            beat = self.sign("heartbeat", None, seq, head)
            conn.execute(
                "INSERT INTO heartbeat (id, seq, hash, signature, at) VALUES (1, ?, ?, ?, ?)"
                " ON CONFLICT (id) DO UPDATE SET seq = excluded.seq, hash = excluded.hash,"
                " signature = excluded.signature, at = excluded.at",
                (seq, head, beat.signature, beat.at),
            )
            if seq == 0 or seq <= last:
                return None
            signed = self.sign("global", None, seq, head)
            conn.execute(
                "INSERT INTO checkpoints (seq, hash, signature, at) VALUES (?, ?, ?, ?)",
                (seq, head, signed.signature, signed.at),
            )
        return seq, head

    def _sign_orgs(self, conn: sqlite3.Connection) -> None:
        moved = conn.execute(
            "SELECT c.org_id, c.org_seq, c.org_hash FROM org_chain c"
            " JOIN (SELECT org_id, MAX(org_seq) AS top FROM org_chain GROUP BY org_id) h"
            " ON h.org_id = c.org_id AND h.top = c.org_seq"
            " LEFT JOIN (SELECT org_id, MAX(org_seq) AS top FROM org_checkpoints GROUP BY org_id)"
            " k ON k.org_id = c.org_id WHERE k.top IS NULL OR k.top < c.org_seq"
        ).fetchall()
        for org_id, org_seq, org_hash in moved:
            signed = self.sign("org", org_id, org_seq, org_hash)
            conn.execute(
                "INSERT INTO org_checkpoints (org_id, org_seq, hash, signature, at)"
                " VALUES (?, ?, ?, ?, ?)",
                (org_id, org_seq, org_hash, signed.signature, signed.at),
            )


def load_public_key(pem: bytes) -> Ed25519PublicKey:
    key = serialization.load_pem_public_key(pem)
    if not isinstance(key, Ed25519PublicKey):
        raise TypeError("not an Ed25519 public key")
    return key


def org_checkpoints(conn: sqlite3.Connection, org_id: str | None = None) -> list[SignedCheckpoint]:
    """The org checkpoints stored here (of one org, or all), in order."""
    sql = "SELECT org_id, org_seq, hash, at, signature FROM org_checkpoints"
    args: tuple[str, ...] = ()
    if org_id is not None:
        sql, args = sql + " WHERE org_id = ?", (org_id,)
    rows = conn.execute(sql + " ORDER BY org_id, org_seq", args).fetchall()
    return [SignedCheckpoint("org", o, s, h, a, sig) for o, s, h, a, sig in rows]


def latest_org_checkpoints(store: EventStore) -> list[SignedCheckpoint]:
    with store.reading() as conn:
        rows = conn.execute(
            "SELECT org_id, org_seq, hash, at, signature FROM org_checkpoints k WHERE org_seq ="
            " (SELECT MAX(org_seq) FROM org_checkpoints WHERE org_id = k.org_id) ORDER BY org_id"
        ).fetchall()
    return [SignedCheckpoint("org", o, s, h, a, sig) for o, s, h, a, sig in rows]


# -- copies outside the box -------------------------------------------------------------------


class CheckpointSink(Protocol):
    """What publishing needs of a destination (every connector has it)."""

    async def put_checkpoint(self, org_id: str, seq: int, document: bytes) -> None: ...


class Publisher:
    """Writes each org's newest checkpoint into the org's active destination.

    The newest is enough: it signs the head of a chain that links every earlier record. What a
    destination refused is tried again on the next round; a new destination gets the newest."""

    def __init__(self, destination: Callable[[str], tuple[str, CheckpointSink]]) -> None:
        self._destination = destination
        self._published: dict[str, tuple[str, int]] = {}

    async def publish(self, checkpoints: Iterable[SignedCheckpoint]) -> int:
        """Publish what is not yet there; return how many were written."""
        written = 0
        for checkpoint in checkpoints:
            if checkpoint.org_id is not None and await self._publish_one(
                checkpoint.org_id, checkpoint
            ):
                written += 1
        return written

    async def _publish_one(self, org_id: str, checkpoint: SignedCheckpoint) -> bool:
        where, sink = self._destination(org_id)
        if self._published.get(org_id) == (where, checkpoint.seq):
            return False
        try:
            await sink.put_checkpoint(org_id, checkpoint.seq, checkpoint.to_bytes())
        except Exception:  # the next round retries; signing must go on meanwhile
            log.exception("writing the checkpoint of org %s to %s failed", org_id, where)
            return False
        self._published[org_id] = (where, checkpoint.seq)
        return True


def parse_outside(documents: Iterable[tuple[str, bytes]]) -> Iterator[tuple[str, SignedCheckpoint]]:
    """``(where, document)`` pairs as checkpoints; an unreadable one raises ValueError naming it."""
    for where, raw in documents:
        try:
            yield where, SignedCheckpoint.from_document(json.loads(raw))
        except (ValueError, UnicodeDecodeError) as exc:
            raise ValueError(f"{where}: {exc}") from exc
