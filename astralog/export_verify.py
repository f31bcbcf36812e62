"""The offline verifier of an org export: the archive and the instance's public key suffice.

It checks that ``manifest.json`` comes first and is signed by the key, that every file the
manifest lists is in the archive once with the SHA-256 and size it states, and that the archive
holds nothing the manifest does not list. An encrypted export is decrypted on the way with the
customer's X25519 private key (:mod:`astralog.export_crypto`); nothing is written to disk.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import io
import json
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from astralog import export_crypto
from astralog.org_export import FORMAT, MANIFEST, signed_message


@dataclass
class ExportReport:
    ok: bool = True
    org_id: str | None = None
    export_id: str | None = None
    files: int = 0
    objects: int = 0
    bytes: int = 0
    problems: list[str] = field(default_factory=list)

    def fail(self, problem: str) -> None:
        self.ok = False
        self.problems.append(problem)

    def as_dict(self) -> dict[str, Any]:
        return dict(vars(self))


class _Chunks(io.RawIOBase):
    """A readable stream over decrypted chunks, for tarfile's streaming mode."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks, self._buffer = chunks, b""

    def readable(self) -> bool:
        return True

    def readinto(self, target: Any) -> int:
        while not self._buffer:
            try:
                self._buffer = next(self._chunks)
            except StopIteration:
                return 0
        size = min(len(target), len(self._buffer))
        target[:size], self._buffer = self._buffer[:size], self._buffer[size:]
        return size


def verify_export_archive(
    path: Path, key: Ed25519PublicKey, private: X25519PrivateKey | None = None
) -> ExportReport:
    report = ExportReport()
    with open(path, "rb") as raw:
        encrypted = raw.read(len(export_crypto.MAGIC)) == export_crypto.MAGIC
        raw.seek(0)
        if encrypted and private is None:
            report.fail("the export is encrypted: give the private key (--private-key PEM)")
            return report
        stream: IO[bytes] = raw
        if encrypted and private is not None:
            size = path.stat().st_size
            chunks = export_crypto.decrypt(raw, size, private)
            stream = io.BufferedReader(_Chunks(chunks), 1 << 16)
        try:
            _walk(stream, key, report)
        except ValueError as exc:  # a chunk that does not decrypt
            report.fail(str(exc))
        except (tarfile.TarError, EOFError, OSError) as exc:
            report.fail(f"not a readable export archive: {exc}")
    return report


def _walk(stream: IO[bytes], key: Ed25519PublicKey, report: ExportReport) -> None:
    with tarfile.open(fileobj=stream, mode="r|") as tar:
        expected: dict[str, dict[str, Any]] | None = None
        seen: set[str] = set()
        for member in tar:
            if expected is None:
                expected = _manifest(tar, member, key, report)
                if expected is None:
                    return
                continue
            _check_member(tar, member, expected, seen, report)
        if expected is None:
            report.fail("the archive is empty: no manifest.json")
            return
        for missing in sorted(set(expected) - seen):
            report.fail(f"{missing} is listed in the manifest but missing from the archive")


def _manifest(
    tar: tarfile.TarFile, member: tarfile.TarInfo, key: Ed25519PublicKey, report: ExportReport
) -> dict[str, dict[str, Any]] | None:
    handle = tar.extractfile(member) if member.name == MANIFEST else None
    if handle is None or member.size > 256 * 1024 * 1024:
        report.fail("the archive does not start with manifest.json")
        return None
    try:
        doc = json.loads(handle.read())
        body = {k: v for k, v in doc.items() if k != "signature"}
        files = {str(f["path"]): f for f in doc["files"]}
        signature = base64.b64decode(str(doc["signature"]), validate=True)
    except (ValueError, KeyError, TypeError, AttributeError, binascii.Error) as exc:
        report.fail(f"manifest.json is not a readable export manifest: {exc}")
        return None
    if doc.get("format") != FORMAT:
        report.fail(f"manifest.json is not {FORMAT}")
    try:
        key.verify(signature, signed_message(body))
    except InvalidSignature:
        report.fail("the manifest signature does not match this manifest and public key")
    report.org_id, report.export_id = doc.get("org_id"), doc.get("export_id")
    report.objects = len(doc.get("objects") or [])
    return files


def _check_member(
    tar: tarfile.TarFile,
    member: tarfile.TarInfo,
    expected: dict[str, dict[str, Any]],
    seen: set[str],
    report: ExportReport,
) -> None:
    name = member.name
    entry = expected.get(name)
    if entry is None or name in seen or not member.isfile():
        report.fail(f"{name} is in the archive but not (or not once) in the manifest")
        return
    seen.add(name)
    handle = tar.extractfile(member)
    digest, size = hashlib.sha256(), 0
    while handle is not None and (block := handle.read(1 << 20)):
        digest.update(block)
        size += len(block)
    if digest.hexdigest() != entry.get("sha256") or size != entry.get("bytes"):
        report.fail(f"{name} was altered: its SHA-256 or size differs from the manifest")
    report.files += 1
    report.bytes += size
