"""Org export: one archive of everything an org has here, signed, optionally sealed to the customer.

Stage: beside the control plane and the data plane, on the serving process's event loop. A job
copies, through the connectors, every batch the catalog knows of the org in every destination it
used (the Parquet objects byte for byte; a ClickHouse destination stores rows, not objects, so
each of its batches is re-encoded as one Parquet file; so is a batch holding events an erasure
masked and has not rewritten yet, without them: an export never carries an erased event), the
org's projection rows as NDJSON
(secret columns, such as key digests and sealed credentials, left out) and its audit records with
their chain (:mod:`astralog.controlplane.audit_export`). ``manifest.json`` lists the SHA-256 of
every file and is signed with the instance's Ed25519 key; :mod:`astralog.export_verify` checks it
offline. The job's state lives in its own SQLite file under the data dir: each file copied is
recorded as it lands, so a job interrupted (a restart, a crash) continues where it stopped.
Rows acknowledged but still in the WAL when the job starts are waited for (flushed into objects)
rather than read from the WAL, so they are exported once, and masked like any other row.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import io
import json
import logging
import os
import shutil
import sqlite3
import tarfile
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from astralog import export_crypto, sqlite
from astralog.catalog import BatchCommitted
from astralog.connectors.base import Connector, without_events
from astralog.connectors.parquet import read_parquet
from astralog.controlplane import projections
from astralog.controlplane.audit_export import org_view
from astralog.controlplane.checkpoints import Signer, org_checkpoints
from astralog.controlplane.export_events import (
    ExportCompleted,
    ExportDownloaded,
    ExportExpired,
    ExportRequested,
)
from astralog.controlplane.store import Actor, EventStore, canonical_json
from astralog.dataplane import Destination, PendingData
from astralog.deletion_vectors import DeletionVectors, hour_of
from astralog.errors import AstralogError, Conflict, Gone, NotFound
from astralog.ids import new_id

log = logging.getLogger("astralog.export")

FORMAT = "astralog-org-export/v1"
SIGNED_PREFIX = b"astralog-org-export:v1:"
MANIFEST = "manifest.json"
_SECRET_MARKS = ("digest", "secret", "password")
_SCHEMA = """
CREATE TABLE IF NOT EXISTS exports (
    id TEXT PRIMARY KEY, org_id TEXT NOT NULL, person_id TEXT NOT NULL, recipient TEXT,
    state TEXT NOT NULL, created_at TEXT NOT NULL, completed_at TEXT,
    objects_total INTEGER NOT NULL DEFAULT 0, error TEXT, archive_bytes INTEGER,
    manifest_sha256 TEXT, expired_at TEXT
);
CREATE TABLE IF NOT EXISTS export_files (
    export_id TEXT NOT NULL, path TEXT NOT NULL, sha256 TEXT NOT NULL, bytes INTEGER NOT NULL,
    object TEXT, PRIMARY KEY (export_id, path)
);
"""


class ExportData(Protocol):
    """What the job needs of the data plane (the process wiring implements it)."""

    def destination(self, org_id: str, destination_id: str) -> Destination: ...

    def connector(self, org_id: str, destination: Destination) -> Connector: ...

    def pending(self) -> Sequence[PendingData]:
        """Rows this node acknowledged and has not flushed yet, per WAL segment."""
        ...

    @property
    def vectors(self) -> DeletionVectors:
        """The event ids erasures hide (masked, not yet or never rewritten)."""
        ...


@dataclass(frozen=True)
class Sources:
    store: EventStore
    signer: Signer
    data: ExportData
    batches: Callable[[str], list[BatchCommitted]]  # every committed batch of an org


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds")


def signed_message(body: dict[str, Any]) -> bytes:
    return SIGNED_PREFIX + canonical_json(body).encode()


class Exports:
    """The org export jobs of this instance and their files, under ``root``."""

    def __init__(self, root: Path, sources: Sources, retention_hours: float = 72.0) -> None:
        self.root = root
        self.sources = sources
        self.retention = timedelta(hours=retention_hours)
        self._lock = threading.Lock()
        self._conn = sqlite.connect(root / "exports.sqlite3")
        with self._lock:
            self._conn.executescript(_SCHEMA)
            columns = {str(c[1]) for c in self._conn.execute("PRAGMA table_info(exports)")}
            if "expired_at" not in columns:  # a job table from before archives expired
                self._conn.execute("ALTER TABLE exports ADD COLUMN expired_at TEXT")
        self._tasks: dict[str, asyncio.Task[None]] = {}

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        with sqlite.transaction(self._conn, self._lock) as conn:
            yield conn

    def close(self) -> None:
        self._conn.close()

    # ---- asking and reading ----------------------------------------------------------------

    def request(self, org_id: str, person_id: str, recipient_pem: str | None, actor: Actor) -> str:
        recipient = None if recipient_pem is None else export_crypto.recipient_key(recipient_pem)
        export_id = new_id("exp")
        event = ExportRequested(
            export_id, org_id, person_id, export_crypto.fingerprint(recipient) if recipient else ""
        )
        store = self.sources.store
        with store.transaction():
            store.append(event, actor, 0)
        with self._tx() as conn:
            conn.execute(
                "INSERT INTO exports (id, org_id, person_id, recipient, state, created_at)"
                " VALUES (?, ?, ?, ?, 'running', ?)",
                (export_id, org_id, person_id, recipient_pem, _now()),
            )
        return export_id

    def get(self, org_id: str, export_id: str) -> dict[str, Any]:
        """The export's state and progress; NotFound unless it is ``org_id``'s."""
        with self._lock:
            row = self._conn.execute(
                "SELECT id, state, created_at, completed_at, objects_total, error, archive_bytes,"
                " manifest_sha256, recipient IS NOT NULL, expired_at FROM exports"
                " WHERE id = ? AND org_id = ?",
                (export_id, org_id),
            ).fetchone()
            done = self._conn.execute(
                "SELECT COUNT(object), COALESCE(SUM(bytes), 0) FROM export_files"
                " WHERE export_id = ? AND object IS NOT NULL",
                (export_id,),
            ).fetchone()
        if row is None:
            raise NotFound(f"no export {export_id!r} in this org")
        keys = ("id", "state", "created_at", "completed_at", "objects_total", "error")
        view = dict(zip(keys, row[:6], strict=True))
        return view | {
            "objects_done": done[0],
            "bytes_done": done[1],
            "archive_bytes": row[6],
            "manifest_sha256": row[7],
            "encrypted": bool(row[8]),
            "expires_at": row[9] or self._expires_at(view["state"], view["completed_at"]),
        }

    def _expires_at(self, state: str, completed_at: str | None) -> str | None:
        if state != "done" or completed_at is None:
            return None
        return (datetime.fromisoformat(completed_at) + self.retention).isoformat()

    def list(self, org_id: str) -> list[dict[str, Any]]:
        with self._lock:
            ids = self._conn.execute(
                "SELECT id FROM exports WHERE org_id = ? ORDER BY created_at DESC", (org_id,)
            ).fetchall()
        return [self.get(org_id, i) for (i,) in ids]

    def archive(self, org_id: str, export_id: str) -> Path:
        """The finished archive's path; NotFound, or Conflict while it is not done."""
        state = self.get(org_id, export_id)
        path = self._dir(export_id) / _archive_name(export_id, state["encrypted"])
        if state["state"] == "expired" or (state["state"] == "done" and not path.is_file()):
            raise Gone(
                f"export {export_id} expired at {state['expires_at']}: an archive is kept "
                f"{self.retention.total_seconds() / 3600:g} hours after it is done, then "
                "deleted; ask for a new export (POST /v1/exports)",
                code="export_expired",
            )
        if state["state"] != "done":
            raise Conflict(f"export {export_id} is {state['state']}: download it once it is done")
        return path

    def downloaded(self, org_id: str, export_id: str, person_id: str, actor: Actor) -> None:
        event = ExportDownloaded(export_id, org_id, person_id)
        store = self.sources.store
        with store.transaction():
            store.append(event, actor, store.version(event.aggregate_id))

    def _dir(self, export_id: str) -> Path:
        return self.root / export_id

    # ---- expiring --------------------------------------------------------------------------

    def expire(self, now: datetime | None = None) -> Sequence[str]:
        """Delete the archives done, and the staged files of jobs failed, longer ago than the
        retention; each is audited (``ExportExpired``). Returns the export ids."""
        cutoff = (now or datetime.now(UTC)) - self.retention
        with self._lock:
            rows = self._conn.execute(
                "SELECT id, org_id FROM exports WHERE state IN ('done', 'failed')"
                " AND COALESCE(completed_at, created_at) <= ? ORDER BY created_at",
                (cutoff.isoformat(timespec="microseconds"),),
            ).fetchall()
        for export_id, org_id in rows:
            self._expire_one(str(export_id), str(org_id))
        return [str(r[0]) for r in rows]

    def _expire_one(self, export_id: str, org_id: str) -> None:
        shutil.rmtree(self._dir(export_id), ignore_errors=True)
        event = ExportExpired(export_id, org_id)
        store = self.sources.store
        with store.transaction():
            store.append(event, Actor("system:export", "local"), store.version(event.aggregate_id))
        with self._tx() as conn:
            conn.execute(
                "UPDATE exports SET state = 'expired', expired_at = ? WHERE id = ?",
                (_now(), export_id),
            )

    # ---- running ---------------------------------------------------------------------------

    def start(self, export_id: str) -> None:
        """Run the job on the current event loop unless it already runs here."""
        task = self._tasks.get(export_id)
        if task is None or task.done():
            self._tasks[export_id] = asyncio.create_task(self.run(export_id))

    async def resume_all(self) -> None:
        """At start: continue every job a stop interrupted."""
        with self._lock:
            ids = self._conn.execute("SELECT id FROM exports WHERE state = 'running'").fetchall()
        for (export_id,) in ids:
            self.start(export_id)

    async def stop(self) -> None:
        for task in self._tasks.values():
            task.cancel()
        await asyncio.gather(*self._tasks.values(), return_exceptions=True)

    async def run(self, export_id: str) -> None:
        with self._lock:
            row = self._conn.execute(
                "SELECT org_id, recipient, state FROM exports WHERE id = ?", (export_id,)
            ).fetchone()
        if row is None or row[2] != "running":
            return
        org_id, recipient = str(row[0]), row[1]
        try:
            await self._flushed(org_id)
            await self._copy_objects(export_id, org_id)
            await asyncio.to_thread(self._write_state, export_id, org_id)
            await asyncio.to_thread(self._finish, export_id, org_id, recipient)
        except AstralogError as exc:
            log.warning("org export failed", extra={"export": export_id, "org": org_id})
            with self._tx() as conn:
                conn.execute(
                    "UPDATE exports SET state = 'failed', error = ? WHERE id = ?",
                    (exc.detail, export_id),
                )

    def _done_paths(self, export_id: str) -> set[str]:
        with self._lock:
            rows = self._conn.execute(
                "SELECT path FROM export_files WHERE export_id = ?", (export_id,)
            ).fetchall()
        return {str(r[0]) for r in rows}

    async def _flushed(self, org_id: str) -> None:
        """Wait until the WAL segments that hold rows of the org when the job starts are
        flushed: the export then has them as objects, and what an erasure masked among them is
        left out like any masked row. Later ingest (new segments) is not waited for."""
        waiting = _segments_of(self.sources.data.pending(), org_id)
        pause = 0.05
        while waiting:
            await asyncio.sleep(pause)
            pause = min(pause * 2, 5.0)  # a destination down can take long: back off
            left = {p.segment_id for p in self.sources.data.pending()}
            waiting &= left

    async def _copy_objects(self, export_id: str, org_id: str) -> None:
        batches = self.sources.batches(org_id)
        with self._tx() as conn:
            conn.execute(
                "UPDATE exports SET objects_total = ? WHERE id = ?", (len(batches), export_id)
            )
        done = self._done_paths(export_id)
        erased = self.sources.data.vectors.of_org(org_id)
        for batch in batches:
            destination = self.sources.data.destination(org_id, batch.destination_id)
            as_stored = destination.kind != "clickhouse"
            path = f"objects/{batch.destination_id}/{batch.object_key}"
            path += "" if as_stored or path.endswith(".parquet") else ".parquet"
            if path in done:
                continue
            connector = self.sources.data.connector(org_id, destination)
            hidden = erased.get((batch.source_id, hour_of(batch.min_ts_ns)), set())
            copy = await _read(connector, batch.object_key, as_stored, hidden)
            about = {
                "destination_id": batch.destination_id,
                "destination_kind": destination.kind,
                "key": batch.object_key,
                "source_id": batch.source_id,
                "rows": batch.rows - copy.erased_rows,
                "erased_rows": copy.erased_rows,
                "as_stored": as_stored and not copy.erased_rows,
            }
            await asyncio.to_thread(self._stage, export_id, path, copy.payload, about)

    def _stage(
        self, export_id: str, path: str, payload: bytes, about: dict[str, Any] | None = None
    ) -> None:
        """Write one file of the export durably, then record it: a file recorded is complete."""
        with self._lock:
            exists = self._conn.execute("SELECT 1 FROM exports WHERE id = ?", (export_id,))
            if exists.fetchone() is None:  # deleted with its org while the job ran
                raise NotFound(f"export {export_id} was deleted with its org")
        target = self._dir(export_id) / "files" / path
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(target.name + ".partial")
        with open(partial, "wb") as handle:
            handle.write(payload)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(partial, target)
        digest = hashlib.sha256(payload).hexdigest()
        with self._tx() as conn:
            conn.execute(
                "INSERT OR REPLACE INTO export_files (export_id, path, sha256, bytes, object)"
                " VALUES (?, ?, ?, ?, ?)",
                (export_id, path, digest, len(payload), json.dumps(about) if about else None),
            )

    def _write_state(self, export_id: str, org_id: str) -> None:
        done = self._done_paths(export_id)
        with self.sources.store.reading() as conn:
            tables = {t: _org_rows(conn, t, org_id) for t in projections.TABLES}
        for table, rows in tables.items():
            path = f"control/{table}.ndjson"
            if path not in done:
                self._stage(export_id, path, b"".join(_line(r) for r in rows))
        if "audit.ndjson" not in done:
            lines = audit_lines(self.sources.store, self.sources.signer, org_id)
            self._stage(export_id, "audit.ndjson", b"".join(lines))

    def _finish(self, export_id: str, org_id: str, recipient: str | None) -> None:
        manifest = self._manifest(export_id, org_id)
        staged = self._dir(export_id) / "files"
        plain = self._dir(export_id) / "archive.tar.partial"
        with tarfile.open(plain, "w", format=tarfile.PAX_FORMAT) as tar:
            _add(tar, MANIFEST, io.BytesIO(manifest), len(manifest))
            for entry in json.loads(manifest)["files"]:
                with open(staged / entry["path"], "rb") as handle:
                    _add(tar, entry["path"], handle, entry["bytes"])
        final = self._dir(export_id) / _archive_name(export_id, recipient is not None)
        if recipient is not None:
            sealed = final.with_name(final.name + ".partial")
            with open(plain, "rb") as source, open(sealed, "wb") as out:
                key = export_crypto.recipient_key(recipient)
                export_crypto.encrypt(source, plain.stat().st_size, key, out)
            plain.unlink()
            plain = sealed
        os.replace(plain, final)
        shutil.rmtree(staged)
        self._completed(export_id, org_id, manifest, final.stat().st_size)

    def _manifest(self, export_id: str, org_id: str) -> bytes:
        with self._lock:
            rows = self._conn.execute(
                "SELECT path, sha256, bytes, object FROM export_files WHERE export_id = ?"
                " ORDER BY path",
                (export_id,),
            ).fetchall()
        files = [{"path": p, "sha256": s, "bytes": b} for p, s, b, _ in rows]
        objects = [{"path": p} | json.loads(o) for p, _, _, o in rows if o]
        body = {
            "format": FORMAT,
            "export_id": export_id,
            "org_id": org_id,
            "created_at": _now(),
            "files": files,
            "objects": objects,
        }
        signature = base64.b64encode(self.sources.signer.sign_bytes(signed_message(body)))
        return canonical_json(body | {"signature": signature.decode()}).encode()

    def _completed(self, export_id: str, org_id: str, manifest: bytes, size: int) -> None:
        doc = json.loads(manifest)
        digest = hashlib.sha256(manifest).hexdigest()
        event = ExportCompleted(
            export_id, org_id, len(doc["files"]), len(doc["objects"]), size, digest
        )
        store = self.sources.store
        with store.transaction():
            store.append(event, Actor("system:export", "local"), store.version(event.aggregate_id))
        with self._tx() as conn:
            conn.execute(
                "UPDATE exports SET state = 'done', completed_at = ?, archive_bytes = ?,"
                " manifest_sha256 = ?, error = NULL WHERE id = ?",
                (_now(), size, digest, export_id),
            )


def exports_root(data_dir: Path) -> Path:
    """Where the export jobs of an instance keep their state, staged files and archives."""
    return data_dir / "exports"


def forget_org(root: Path, org_id: str) -> list[str]:
    """Delete every export of a deleted org (archives, staged files, then the job rows, so a
    retry after a crash finds what is left); the export ids."""
    database = root / "exports.sqlite3"
    if not database.exists():
        return []
    with contextlib.closing(sqlite.connect(database)) as conn:
        ids = [
            str(r[0]) for r in conn.execute("SELECT id FROM exports WHERE org_id = ?", (org_id,))
        ]
        for export_id in ids:
            shutil.rmtree(root / export_id, ignore_errors=True)
        with sqlite.transaction(conn, threading.Lock()):
            conn.execute(
                "DELETE FROM export_files WHERE export_id IN"
                " (SELECT id FROM exports WHERE org_id = ?)",
                (org_id,),
            )
            conn.execute("DELETE FROM exports WHERE org_id = ?", (org_id,))
    return ids


def _archive_name(export_id: str, encrypted: bool) -> str:
    return f"astralog-export-{export_id}.tar" + (".enc" if encrypted else "")


def _add(tar: tarfile.TarFile, name: str, handle: Any, size: int) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = size, 0o644, 0
    tar.addfile(info, handle)


@dataclass(frozen=True)
class _Copy:
    payload: bytes
    erased_rows: int  # rows a deletion vector hides, left out of ``payload``


async def _read(connector: Connector, key: str, as_stored: bool, erased: set[str]) -> _Copy:
    """The batch as stored; re-encoded as Parquet when the destination stores rows, or when an
    erasure masked some of its rows and has not rewritten it yet (the copy leaves them out)."""
    raw = await connector.read_object(key) if as_stored else None
    if raw is not None and not erased:
        return _Copy(raw, 0)
    if raw is not None:
        table = await asyncio.to_thread(read_parquet, pa.BufferReader(raw), key)
    else:
        table = await connector.read_batches([key])
    kept = without_events(table, erased) if erased else table
    if raw is not None and kept.num_rows == table.num_rows:
        return _Copy(raw, 0)  # the vector's rows are in another object of the hour
    return _Copy(await asyncio.to_thread(_parquet, kept), table.num_rows - kept.num_rows)


def _parquet(table: pa.Table) -> bytes:
    sink = io.BytesIO()
    pq.write_table(table, sink, compression="zstd")
    return sink.getvalue()


def _segments_of(pending: Sequence[PendingData], org_id: str) -> set[str]:
    return {p.segment_id for p in pending if pc.any(pc.equal(p.table["OrgId"], org_id)).as_py()}


def _org_rows(conn: sqlite3.Connection, table: str, org_id: str) -> list[dict[str, Any]]:
    """The org's rows of one projection, secret columns left out."""
    columns = [str(c[1]) for c in conn.execute(f"PRAGMA table_info({table})")]
    if table == "orgs":
        where, args = "id = ?", (org_id,)
    elif table == "plans":
        where, args = "name = (SELECT plan FROM orgs WHERE id = ?)", (org_id,)
    elif "org_id" in columns:
        where, args = "org_id = ?", (org_id,)
    else:
        return []
    kept = [c for c in columns if not any(mark in c for mark in _SECRET_MARKS)]
    select = ", ".join(f'"{c}"' for c in kept)
    rows = conn.execute(f"SELECT {select} FROM {table} WHERE {where} ORDER BY 1", args)
    return [{"table": table} | dict(zip(kept, row, strict=True)) for row in rows]


def _line(row: dict[str, Any]) -> bytes:
    return json.dumps(row, ensure_ascii=False, sort_keys=True).encode() + b"\n"


def audit_lines(store: EventStore, signer: Signer, org_id: str) -> Iterator[bytes]:
    """The org's audit export (as ``GET /v1/audit?format=ndjson`` gives it): its records in
    its own chain, their checkpoints, and the signed end on the last line."""
    with store.reading() as conn:
        signed = {c.seq: c for c in org_checkpoints(conn, org_id)}
    records = store.org_records(org_id)
    for index, (record, link) in enumerate(records):
        view = org_view(record, link)
        if link.org_seq in signed:
            view["checkpoint"] = signed[link.org_seq].document()
        if index == len(records) - 1:
            end = signer.sign("export", org_id, link.org_seq, link.org_hash)
            view["export_end"] = end.document()
        yield json.dumps(view).encode() + b"\n"
