"""Signed checkpoints and the offline verifier of the hash-chained event log.

A checkpoint signs ``astralog-checkpoint:v1:<seq>:<hash>`` with Ed25519. ``verify`` needs only the
SQLite file (opened read-only) and the public key: it recomputes every hash, checks every link and
every checkpoint signature, and names the first record that was edited, dropped or reordered.
Dropping records after the last checkpoint cannot be told from "they were never written"; the
checkpoint interval bounds that window (and with BYOB the checkpoints also go to the customer's
bucket, out of the operator's reach).
"""

from __future__ import annotations

import base64
import os
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from astralog.controlplane.store import GENESIS, EventStore, Recorded, connect, record_hash


def _message(seq: int, head: str) -> bytes:
    return f"astralog-checkpoint:v1:{seq}:{head}".encode()


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

    def checkpoint(self, store: EventStore) -> tuple[int, str] | None:
        """Sign the current head unless it is already signed; return (seq, hash) signed."""
        with store.transaction() as conn:
            seq, head = store.head()
            last = conn.execute("SELECT MAX(seq) FROM checkpoints").fetchone()[0] or 0
            if seq == 0 or seq <= last:
                return None
            signature = base64.b64encode(self._key.sign(_message(seq, head))).decode()
            conn.execute(
                "INSERT INTO checkpoints (seq, hash, signature, at) VALUES (?, ?, ?, ?)",
                (seq, head, signature, datetime.now(UTC).isoformat()),
            )
        return seq, head


def load_public_key(pem: bytes) -> Ed25519PublicKey:
    key = serialization.load_pem_public_key(pem)
    if not isinstance(key, Ed25519PublicKey):
        raise TypeError("not an Ed25519 public key")
    return key


@dataclass
class Report:
    ok: bool = True
    records: int = 0
    checkpoints: int = 0
    head_seq: int = 0
    head_hash: str = GENESIS
    first_bad_seq: int | None = None
    problems: list[str] = field(default_factory=list)

    def fail(self, seq: int | None, problem: str) -> None:
        if self.ok:
            self.first_bad_seq = seq
        self.ok = False
        self.problems.append(problem)


def verify(database: Path, public_key: Ed25519PublicKey) -> Report:
    """Check the whole chain and every checkpoint; never writes to the database."""
    conn = connect(database, read_only=True)
    try:
        rows = [Recorded(**dict(r)) for r in conn.execute("SELECT * FROM events ORDER BY seq")]
        sql = "SELECT seq, hash, signature FROM checkpoints ORDER BY seq"
        checkpoints = conn.execute(sql).fetchall()
    finally:
        conn.close()
    report = Report()
    hashes = _verify_chain(rows, report)
    for seq, head, signature in checkpoints:
        _verify_checkpoint(seq, head, signature, hashes, public_key, report)
        report.checkpoints += 1
    return report


def _verify_chain(rows: list[Recorded], report: Report) -> dict[int, str]:
    prev_seq, prev_hash = 0, GENESIS
    hashes: dict[int, str] = {}
    for row in rows:
        if row.seq != prev_seq + 1:
            report.fail(prev_seq + 1, f"record {prev_seq + 1} is missing (dropped)")
        elif row.prev_hash != prev_hash:
            report.fail(
                row.seq,
                f"record {row.seq} does not follow record {prev_seq}: "
                "records were reordered or one before it was replaced",
            )
        if record_hash(row.prev_hash, row.hashed_fields()) != row.hash:
            report.fail(
                row.seq, f"record {row.seq} was edited: its content does not match its hash"
            )
        hashes[row.seq] = row.hash
        prev_seq, prev_hash = row.seq, row.hash
    report.records = len(rows)
    report.head_seq, report.head_hash = prev_seq, prev_hash
    return hashes


def _verify_checkpoint(
    seq: int,
    head: str,
    signature: str,
    hashes: dict[int, str],
    public_key: Ed25519PublicKey,
    report: Report,
) -> None:
    try:
        public_key.verify(base64.b64decode(signature), _message(seq, head))
    except (InvalidSignature, ValueError):
        report.fail(seq, f"checkpoint at record {seq} has an invalid signature")
        return
    if seq not in hashes:
        report.fail(seq, f"record {seq} is missing: a signed checkpoint covers it (dropped)")
    elif hashes[seq] != head:
        report.fail(seq, f"record {seq} differs from the signed checkpoint (history rewritten)")
