"""Encrypting an org export to a public key the customer holds (X25519 + AES-256-GCM).

Format ``astralog-export-enc/v1``: the magic line, the sender's ephemeral X25519 public key
(32 bytes) and a salt (16 bytes), then the archive in chunks of 64 KiB, each sealed with
AES-256-GCM under a key derived (HKDF-SHA256) from the X25519 shared secret. A chunk's nonce is
its index and a flag marking the last chunk, and the header is each chunk's associated data, so
reordering, dropping, truncating or splicing chunks fails to decrypt (the STREAM construction
age uses). Plain ``cryptography`` rather than an age binding: the customer supplies a PEM key as
for every other key here, and no further native dependency is needed.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from typing import BinaryIO

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from astralog.errors import BadRequest

MAGIC = b"astralog-export-enc/v1\n"
CHUNK = 64 * 1024
_TAG = 16
_HEADER = len(MAGIC) + 32 + 16


def recipient_key(pem: str) -> X25519PublicKey:
    """The customer's X25519 public key from PEM; BadRequest says what is wrong with it."""
    try:
        key = serialization.load_pem_public_key(pem.encode())
    except (ValueError, TypeError, UnicodeEncodeError) as exc:
        raise BadRequest(
            "recipient is not a PEM public key: send an X25519 public key, e.g. from "
            "`openssl genpkey -algorithm X25519 -out k.pem && openssl pkey -in k.pem -pubout`"
        ) from exc
    if not isinstance(key, X25519PublicKey):
        raise BadRequest("recipient must be an X25519 public key (the export is sealed to it)")
    return key


def fingerprint(key: X25519PublicKey) -> str:
    raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()


def _aead(shared: bytes, header: bytes) -> AESGCM:
    hkdf = HKDF(hashes.SHA256(), 32, header[len(MAGIC) + 32 :], b"astralog-export/v1")
    return AESGCM(hkdf.derive(shared))


def _nonce(index: int, last: bool) -> bytes:
    return index.to_bytes(11, "big") + (b"\x01" if last else b"\x00")


def _chunks(size: int) -> int:
    return max(1, -(-size // CHUNK))


def encrypt(source: BinaryIO, size: int, to: X25519PublicKey, out: BinaryIO) -> None:
    """Seal the ``size`` bytes of ``source`` to ``to`` into ``out``."""
    ephemeral = X25519PrivateKey.generate()
    public = ephemeral.public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )
    header = MAGIC + public + os.urandom(16)
    aead = _aead(ephemeral.exchange(to), header)
    out.write(header)
    count = _chunks(size)
    for index in range(count):
        out.write(aead.encrypt(_nonce(index, index == count - 1), source.read(CHUNK), header))


def encrypted_size(size: int) -> int:
    return _HEADER + size + _chunks(size) * _TAG


def decrypt(source: BinaryIO, size: int, key: X25519PrivateKey) -> Iterator[bytes]:
    """The plaintext of a sealed export of ``size`` bytes, chunk by chunk; ValueError when it
    is not one, was sealed to another key, or was altered."""
    header = source.read(_HEADER)
    if len(header) != _HEADER or not header.startswith(MAGIC):
        raise ValueError("not an encrypted Astralog export (astralog-export-enc/v1)")
    sender = X25519PublicKey.from_public_bytes(header[len(MAGIC) : len(MAGIC) + 32])
    aead = _aead(key.exchange(sender), header)
    body = size - _HEADER
    count = max(1, -(-body // (CHUNK + _TAG)))
    for index in range(count):
        sealed = source.read(CHUNK + _TAG)
        try:
            yield aead.decrypt(_nonce(index, index == count - 1), sealed, header)
        except InvalidTag:
            raise ValueError(
                f"chunk {index} does not decrypt: the file was altered, cut short, or sealed to "
                "another key"
            ) from None
