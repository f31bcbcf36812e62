"""Backups of a data dir's state: one archive, taken while the server serves and writes.

Stage: beside the control plane, run by the operator (``astralog backup`` / ``astralog restore``).

What an archive holds (``manifest.json`` first, then the files, each with its SHA-256):

* ``control.sqlite3``: the event log with its checkpoints and org chains, the projections and
  the secrets tables beside the log (password hashes, TOTP seeds, passkeys, encrypted
  connector secrets);
* ``idempotency.sqlite3``: receipts of flushed requests, so a shipper's retry after a restore
  is still answered from its receipt instead of storing the events twice;
* ``catalog.sqlite3``: every committed batch (the objects themselves stay in the bucket);
* ``deletion_vectors.sqlite3``: the events erasures hide, so a restore never shows them again;
* ``checkpoint-signing.key``: the Ed25519 key that signed the checkpoints. Kept, because a
  restored server that signed with a new key would break the line of signatures customers
  verify against the published public key; so the archive is a secret and is written 0600;
* ``master-dev.key`` in development mode only (production master keys live in the settings).

Each SQLite file is copied with SQLite's online backup API in one step, which reads one
consistent snapshot while writers go on. The files are copied control plane first, then
idempotency receipts, then the catalog: a receipt is released only after its batch is in the
catalog, so every receipt restored has its batch restored too.

Restore refuses a data dir that is in use or not empty (``force`` replaces the backed-up files
of a stopped one), checks every file against the manifest, checks each database's integrity and
the event log's hash chain and signatures (:mod:`astralog.controlplane.audit_verify`), and only
then moves the files into place.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import re
import shutil
import sqlite3
import tarfile
import tempfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from astralog import __version__
from astralog.errors import BadRequest, Conflict, NotFound
from astralog.settings import Settings

FORMAT = "astralog-backup/v1"
MANIFEST = "manifest.json"
_SIDECARS = ("-wal", "-shm", "-journal")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")

SKIPPED = (
    {
        "name": "sessions.sqlite3",
        "reason": "sign-in sessions are short-lived and restoring them would revive sessions "
        "ended since the backup; people sign in again",
    },
    {
        "name": "wal/",
        "reason": "the write-ahead log holds events in flight for seconds; copy the directory "
        "itself if its disk survived, and the next start flushes it",
    },
    {
        "name": "bucket/",
        "reason": "the embedded bucket holds the log data, not the control plane; keep it on "
        "durable storage or copy it with file tools (the catalog's paths follow it on restore)",
    },
)


@dataclass(frozen=True)
class Part:
    """One file of the state: its name in the archive, where it lives, what it is."""

    name: str
    path: Path
    role: str
    database: bool


def parts(settings: Settings) -> list[Part]:
    control = settings.path(settings.control.database)
    return [
        Part("control.sqlite3", control, "control plane: event log, checkpoints, secrets", True),
        Part(
            "idempotency.sqlite3",
            settings.data_dir / "idempotency.sqlite3",
            "idempotency receipts",
            True,
        ),
        Part("catalog.sqlite3", control.with_name("catalog.sqlite3"), "batch catalog", True),
        Part(
            "deletion_vectors.sqlite3",
            control.with_name("deletion_vectors.sqlite3"),
            "erasure deletion vectors",
            True,
        ),
        Part(
            "checkpoint-signing.key",
            settings.path(settings.control.signing_key_file),
            "checkpoint signing key (secret)",
            False,
        ),
        Part(
            "master-dev.key", settings.data_dir / "master-dev.key", "development master key", False
        ),
    ]


# ---- backup ---------------------------------------------------------------------------------


def backup(settings: Settings, target: Path) -> dict[str, Any]:
    """Write the archive to ``target`` (atomically, mode 0600); return its manifest."""
    present = [p for p in parts(settings) if p.path.is_file()]
    if not any(p.name == "control.sqlite3" for p in present):
        raise NotFound(
            f"no control plane at {settings.path(settings.control.database)}: nothing to back up "
            "(is ASTRALOG_DATA_DIR right?)"
        )
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=".astralog-backup-") as tmp:
        copies = [(part, _copy(part, Path(tmp) / part.name)) for part in present]
        manifest = _manifest(settings, copies)
        _write_archive(target, manifest, copies)
    return manifest


def _copy(part: Part, copy: Path) -> Path:
    if not part.database:
        shutil.copyfile(part.path, copy)
        return copy
    source = sqlite3.connect(f"file:{part.path}?mode=ro", uri=True)
    destination = sqlite3.connect(copy)
    try:
        source.backup(destination)  # pages=-1: one step, one read snapshot
        # A self-contained file: no -wal beside it that the archive would miss.
        destination.execute("PRAGMA journal_mode=DELETE")
    finally:
        destination.close()
        source.close()
    return copy


def _manifest(settings: Settings, copies: list[tuple[Part, Path]]) -> dict[str, Any]:
    control = next(copy for part, copy in copies if part.name == "control.sqlite3")
    seq, head = _head(control)
    return {
        "format": FORMAT,
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "astralog_version": __version__,
        "chain": {"head_seq": seq, "head_hash": head},
        "local_root": str(settings.path(settings.storage.local_root)),
        "files": [
            {
                "name": part.name,
                "role": part.role,
                "bytes": copy.stat().st_size,
                "sha256": _sha(copy),
            }
            for part, copy in copies
        ],
        "skipped": list(SKIPPED),
    }


def _head(database: Path) -> tuple[int, str]:
    with contextlib.closing(sqlite3.connect(f"file:{database}?mode=ro", uri=True)) as conn:
        row = conn.execute("SELECT seq, hash FROM events ORDER BY seq DESC LIMIT 1").fetchone()
    return (int(row[0]), str(row[1])) if row else (0, "0" * 64)


def _sha(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _write_archive(target: Path, manifest: dict[str, Any], copies: list[tuple[Part, Path]]) -> None:
    partial = target.with_name(f".{target.name}.partial")
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as raw, tarfile.open(fileobj=raw, mode="w:gz") as archive:
        text = json.dumps(manifest, indent=2).encode()
        info = tarfile.TarInfo(MANIFEST)
        info.size, info.mode = len(text), 0o600
        archive.addfile(info, io.BytesIO(text))
        for part, copy in copies:
            archive.add(copy, arcname=part.name, recursive=False)
        archive.close()
        raw.flush()
        os.fsync(raw.fileno())
    os.replace(partial, target)


# ---- restore --------------------------------------------------------------------------------


def restore(settings: Settings, archive: Path, *, force: bool = False) -> dict[str, Any]:
    """Check the archive completely, then move its files into the data dir; say what it did."""
    _check_data_dir(settings, force)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    by_name = {part.name: part for part in parts(settings)}
    with tempfile.TemporaryDirectory(dir=settings.data_dir, prefix=".astralog-restore-") as tmp:
        staged = Path(tmp)
        manifest = _extract(archive, staged, by_name)
        chain = _verify(staged, manifest)
        rewritten = _follow_bucket(staged / "catalog.sqlite3", manifest, settings)
        restored = [_install(by_name[f["name"]], staged / f["name"]) for f in manifest["files"]]
    removed = _end_sessions(settings) if force else []
    return {
        "restored": restored,
        "backup_created_at": manifest["created_at"],
        "chain": chain,
        "catalog_paths_rewritten": rewritten,
        "sessions_ended": removed,
        "skipped_by_backup": manifest.get("skipped", []),
        "next": "start the server (astralog serve); it signs a checkpoint at its first round",
    }


def _check_data_dir(settings: Settings, force: bool) -> None:
    data_dir = settings.data_dir
    wal = settings.path(settings.wal.directory)
    if (wal / "LOCK").exists():
        with _locked(wal / "LOCK"):
            pass
    if data_dir.exists() and any(data_dir.iterdir()) and not force:
        raise Conflict(
            f"the data dir {data_dir} is not empty; restore into an empty one, or stop the "
            "server and pass --force to replace its control plane, catalog and keys"
        )


@contextlib.contextmanager
def _locked(lock: Path) -> Iterator[None]:
    """The WAL's directory lock: held by a running server, so a restore under it is refused."""
    import fcntl

    with lock.open("ab") as handle:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise Conflict(
                f"a server is running on {lock.parent.parent} (it holds {lock}); stop it before "
                "restoring"
            ) from None
        yield


def _extract(archive: Path, staged: Path, by_name: dict[str, Part]) -> dict[str, Any]:
    try:
        with tarfile.open(archive, "r:*") as tar:
            manifest = _read_manifest(tar)
            _check_members(tar, manifest, by_name)
            for entry in manifest["files"]:
                _extract_one(tar, entry, staged / entry["name"])
    except FileNotFoundError:
        raise NotFound(f"no backup at {archive}") from None
    except (tarfile.TarError, EOFError, zlib.error, OSError) as exc:
        raise BadRequest(f"{archive} is not a readable Astralog backup: {exc}") from None
    return manifest


def _read_manifest(tar: tarfile.TarFile) -> dict[str, Any]:
    member = tar.next()
    handle = tar.extractfile(member) if member and member.name == MANIFEST else None
    if handle is None or member is None or member.size > 1 << 20:
        raise BadRequest(f"the archive does not start with a {MANIFEST}: not an Astralog backup")
    try:
        manifest = json.loads(handle.read())
    except ValueError as exc:
        raise BadRequest(f"the backup's {MANIFEST} is not valid JSON: {exc}") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise BadRequest(f"the backup's {MANIFEST} is not of format {FORMAT}")
    return manifest


def _check_members(
    tar: tarfile.TarFile, manifest: dict[str, Any], by_name: dict[str, Part]
) -> None:
    files = manifest.get("files")
    if not isinstance(files, list) or not all(_valid_entry(f, by_name) for f in files):
        raise BadRequest(f"the backup's {MANIFEST} lists files it cannot hold")
    listed = {f["name"] for f in files}
    if "control.sqlite3" not in listed or len(listed) != len(files):
        raise BadRequest(f"the backup's {MANIFEST} lacks control.sqlite3 or lists a file twice")
    extra = sorted({m.name for m in tar.getmembers()} - listed - {MANIFEST})
    if extra:
        raise BadRequest(f"the archive holds files its manifest does not list: {extra[:5]}")


def _valid_entry(entry: object, by_name: dict[str, Part]) -> bool:
    return (
        isinstance(entry, dict)
        and entry.get("name") in by_name
        and isinstance(entry.get("sha256"), str)
        and bool(_SHA256.match(entry["sha256"]))
        and type(entry.get("bytes")) is int
    )


def _extract_one(tar: tarfile.TarFile, entry: dict[str, Any], path: Path) -> None:
    member = tar.getmember(entry["name"])
    handle = tar.extractfile(member) if member.isreg() else None
    if handle is None or member.size != entry["bytes"]:
        raise BadRequest(f"{entry['name']} in the archive is not the file its manifest describes")
    digest = hashlib.sha256()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as out:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
            out.write(block)
        out.flush()
        os.fsync(out.fileno())
    if digest.hexdigest() != entry["sha256"]:
        raise BadRequest(
            f"{entry['name']} does not match its SHA-256 in the manifest: the archive is corrupt"
        )


def _verify(staged: Path, manifest: dict[str, Any]) -> dict[str, Any]:
    """Each database intact, the chain's head the manifest's, its hashes and signatures good."""
    from astralog.controlplane.audit_verify import verify

    for entry in manifest["files"]:
        if entry["name"].endswith(".sqlite3"):
            _integrity(staged / entry["name"])
    key_file = staged / "checkpoint-signing.key"
    if not key_file.exists():
        raise BadRequest(
            "the backup holds no checkpoint signing key, so its chain cannot be checked"
        )
    report = verify(staged / "control.sqlite3", _public_key(key_file))
    head = {"head_seq": report.head_seq, "head_hash": report.head_hash}
    if report.verdict == "tampered" or head != manifest.get("chain"):
        problems = "; ".join(report.problems[:3]) or f"head {head} is not the manifest's"
        raise BadRequest(f"the backed-up event log does not verify: {problems}")
    return {
        **head,
        "verdict": report.verdict,
        "records": report.records,
        "warnings": report.warnings,
    }


def _integrity(database: Path) -> None:
    with contextlib.closing(sqlite3.connect(f"file:{database}?mode=ro", uri=True)) as conn:
        try:
            (result,) = conn.execute("PRAGMA quick_check").fetchone()
        except sqlite3.DatabaseError as exc:
            result = str(exc)
    if result != "ok":
        raise BadRequest(f"{database.name} in the backup is damaged: {result}")


def _public_key(key_file: Path) -> Any:
    try:
        key = serialization.load_pem_private_key(key_file.read_bytes(), password=None)
    except ValueError as exc:
        raise BadRequest(f"the backup's signing key is unreadable: {exc}") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise BadRequest("the backup's signing key is not an Ed25519 key")
    return key.public_key()


def _follow_bucket(catalog: Path, manifest: dict[str, Any], settings: Settings) -> int:
    """Embedded-bucket batches are recorded by absolute file URI: point them at this data dir's
    bucket when it lives somewhere else than the backed-up one did."""
    old, new = manifest.get("local_root"), settings.path(settings.storage.local_root)
    if not catalog.exists() or not isinstance(old, str) or Path(old) == new:
        return 0
    before, after = Path(old).as_uri() + "/", new.as_uri() + "/"
    sql = "UPDATE batches SET uri = ? || substr(uri, ?) WHERE substr(uri, 1, ?) = ?"
    try:
        with contextlib.closing(sqlite3.connect(catalog)) as conn, conn:
            changed = conn.execute(sql, (after, len(before) + 1, len(before), before)).rowcount
    except sqlite3.DatabaseError as exc:
        raise BadRequest(f"catalog.sqlite3 in the backup is not a batch catalog: {exc}") from None
    return int(changed)


def _install(part: Part, staged: Path) -> dict[str, Any]:
    part.path.parent.mkdir(parents=True, exist_ok=True)
    for suffix in _SIDECARS:  # a stale -wal would be replayed onto the restored file
        part.path.with_name(part.path.name + suffix).unlink(missing_ok=True)
    size = staged.stat().st_size
    os.replace(staged, part.path)
    return {"file": part.name, "path": str(part.path), "bytes": size, "role": part.role}


def _end_sessions(settings: Settings) -> list[str]:
    sessions = settings.data_dir / "sessions.sqlite3"
    removed = []
    for path in [sessions, *(sessions.with_name(sessions.name + s) for s in _SIDECARS)]:
        if path.exists():
            path.unlink()
            removed.append(str(path))
    return removed


__all__ = ["FORMAT", "backup", "parts", "restore"]
