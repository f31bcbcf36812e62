"""Idempotency: a retry within the window gets the first answer and stores nothing again.

Two kinds of facts, both per (org, source), make a retry safe:

* an ``Idempotency-Key``, the answer (status and JSON body) its first request got, and the
  SHA-256 of that request's decoded body: the key used again with another body is a 422 (as the
  IETF Idempotency-Key draft says), never a replay that would drop the new events. Receipts
  written before bodies were hashed have no hash and replay as before;
* Elasticsearch document ``_id`` values already stored.

**The WAL decides.** Both travel as a receipt in the same WAL record as the events they cover
(:mod:`astralog.ingest.wal`), so they are durable under the same fsync as the events, never one
without the other. This store is the WAL's :class:`~astralog.ingest.wal.ReceiptLedger`:

* ``committed``: the WAL reports each receipt after its fsync and before any appender is
  answered, and on open every receipt still in an unreleased segment. They are held in memory,
  bounded by what the WAL holds.
* ``releasing``: before a flushed segment is deleted, its receipts are written to SQLite (one
  transaction, synchronous=FULL) and only then dropped from memory.

A lookup reads memory, then SQLite. Where a SIGKILL can land, and what a retry then gets:

* before the WAL fsync: nothing is stored or acknowledged; the retry is the first request;
* after the fsync, before the answer is sent: the next start reads the receipt back from the WAL;
  the retry is answered from it and stores nothing;
* while a segment is released: the receipts are in SQLite before the file is unlinked; a crash
  in between leaves them in both places (writes are upserts).

Concurrent requests in one process are serialised per key (:meth:`key_lock`), and per source
for requests carrying document ids (:meth:`source_lock`), so only one of them appends.

**Document ids** (:func:`drop_known_documents`), per source within the window, as Elasticsearch
answers a retry: ``create`` of an ``_id`` already stored is a per-item 409
``version_conflict_engine_exception``; ``index`` of one is a retry too, answered 200 with
``result: noop`` and not stored again (Elasticsearch would overwrite the document; stored events
are immutable here). The same holds for an ``_id`` repeated within one request.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import re
import threading
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any, TypeVar

import pyarrow as pa

from astralog import sqlite
from astralog.errors import BadRequest, ValidationFailed
from astralog.ingest.formats.elasticsearch import BulkItem, EsBulk
from astralog.ingest.wal import Receipt
from astralog.pgsql import open_database, upsert

__all__ = ["IdempotencyStore", "check_key", "drop_known_documents"]

_VALID = re.compile(r"^[\x21-\x7e]{1,255}$")
_PURGE_EVERY_SECONDS = 60.0
_SQL_CHUNK = 500  # bound parameters per IN (...) query

_Ident = tuple[str, str, str]  # (org, source, key or document id)
_K = TypeVar("_K")
_AnswerRow = tuple[str, str, str, int, str, float, str | None]
_IdRow = tuple[str, str, str, float]


_SCHEMA = """
CREATE TABLE IF NOT EXISTS answers (
    org_id TEXT, source_id TEXT, key TEXT, status INTEGER, body TEXT, expires REAL,
    body_sha256 TEXT, PRIMARY KEY (org_id, source_id, key)
);
CREATE TABLE IF NOT EXISTS document_ids (
    org_id TEXT, source_id TEXT, doc_id TEXT, expires REAL, PRIMARY KEY (org_id, source_id, doc_id)
) WITHOUT ROWID;
"""
_PUT_ANSWER = upsert(
    "answers", "org_id, source_id, key, status, body, expires, body_sha256",
    "org_id, source_id, key",
)  # fmt: skip
_PUT_DOCUMENT_ID = upsert(
    "document_ids", "org_id, source_id, doc_id, expires", "org_id, source_id, doc_id"
)
IDEMPOTENCY_LOCK = 0x69646D70  # "idmp": every node's releases take turns under it


def check_key(key: str) -> str:
    if not _VALID.match(key):
        raise BadRequest(
            "Idempotency-Key must be 1-255 printable ASCII characters without spaces "
            "(a UUID is a good choice)"
        )
    return key


class IdempotencyStore:
    def __init__(self, path: Path, window_seconds: int, database_url: str = "") -> None:
        self._db = open_database(path, database_url, IDEMPOTENCY_LOCK)
        if isinstance(self._db, sqlite.Database):
            _older_sqlite_shapes(self._db)
        self._db.create(_SCHEMA)
        self._window = window_seconds
        self._mem_lock = threading.Lock()
        # -> (expires, status, body, SHA-256 of the request body or None)
        self._answers: dict[_Ident, tuple[float, int, Any, str | None]] = {}
        self._ids: dict[_Ident, float] = {}  # -> expires
        self._key_locks: dict[_Ident, asyncio.Lock] = {}
        self._source_locks: dict[tuple[str, str], asyncio.Lock] = {}
        self._last_purge = 0.0

    # -- serialising concurrent requests (one event loop) ------------------------------------

    def key_lock(self, org_id: str, source_id: str, key: str) -> asyncio.Lock:
        return _lock_for(self._key_locks, (org_id, source_id, key))

    def source_lock(self, org_id: str, source_id: str) -> asyncio.Lock:
        return _lock_for(self._source_locks, (org_id, source_id))

    # -- what a retry is answered from -------------------------------------------------------

    def receipt(
        self,
        org_id: str,
        source_id: str,
        *,
        key: str | None = None,
        answer: tuple[int, Any] | None = None,
        sha256: str | None = None,
        ids: Iterable[str] = (),
    ) -> Receipt:
        """The receipt to append with the events: written in the same WAL record."""
        receipt: Receipt = {"org": org_id, "source": source_id, "at": time.time()}
        if key is not None and answer is not None:
            receipt |= {"key": key, "status": answer[0], "body": answer[1]}
            if sha256 is not None:
                receipt["sha256"] = sha256
        doc_ids = list(ids)
        if doc_ids:
            receipt["ids"] = doc_ids
        return receipt

    def lookup(
        self, org_id: str, source_id: str, key: str, *, sha256: str | None = None
    ) -> tuple[int, Any] | None:
        """The first answer given to this key within the window, if any.

        With ``sha256`` (of this request's decoded body), a key first used with another body
        raises :class:`ValidationFailed` (422) instead of replaying an answer about other events.
        """
        now = time.time()
        with self._mem_lock:
            held = self._answers.get((org_id, source_id, key))
        if held is not None and held[0] > now:
            _same_body(held[3], sha256)
            return held[1], held[2]
        with self._db.reading() as conn:
            row = conn.execute(
                "SELECT status, body, body_sha256 FROM answers WHERE org_id = ? "
                "AND source_id = ? AND key = ? AND expires > ?",
                (org_id, source_id, key, now),
            ).fetchone()
        if row is None:
            return None
        _same_body(row[2], sha256)
        return int(row[0]), json.loads(row[1])

    def known_ids(self, org_id: str, source_id: str, ids: Iterable[str]) -> set[str]:
        """The document ids among ``ids`` stored for this source within the window."""
        now, wanted = time.time(), set(ids)
        with self._mem_lock:
            known = {i for i in wanted if self._ids.get((org_id, source_id, i), 0.0) > now}
        rest = sorted(wanted - known)
        for start in range(0, len(rest), _SQL_CHUNK):
            chunk = rest[start : start + _SQL_CHUNK]
            marks = ",".join("?" * len(chunk))
            with self._db.reading() as conn:
                rows = conn.execute(
                    "SELECT doc_id FROM document_ids WHERE org_id = ? AND source_id = ? "
                    f"AND expires > ? AND doc_id IN ({marks})",  # only "?" placeholders
                    (org_id, source_id, now, *chunk),
                ).fetchall()
            known.update(str(r[0]) for r in rows)
        return known

    # -- the WAL's receipt ledger ------------------------------------------------------------

    def committed(self, receipts: list[Receipt]) -> None:
        with self._mem_lock:
            for r in receipts:
                expires = float(r["at"]) + self._window
                org, source = str(r["org"]), str(r["source"])
                if "key" in r:
                    held = (expires, r["status"], r["body"], r.get("sha256"))
                    self._answers[(org, source, str(r["key"]))] = held
                for doc_id in r.get("ids", ()):
                    self._ids[(org, source, str(doc_id))] = expires

    def releasing(self, receipts: list[Receipt]) -> None:
        answers, ids = _rows(receipts, self._window)
        with self._db.transaction() as conn:
            conn.executemany(_PUT_ANSWER, answers)
            conn.executemany(_PUT_DOCUMENT_ID, ids)
        with self._mem_lock:  # only now: a lookup in between finds them in one place or both
            for org, source, key, *_ in answers:
                self._answers.pop((org, source, key), None)
            for org, source, doc_id, _ in ids:
                self._ids.pop((org, source, doc_id), None)
        if time.monotonic() - self._last_purge > _PURGE_EVERY_SECONDS:
            self.purge()

    def purge(self) -> int:
        """Forget what is past the window; the number of SQLite rows deleted."""
        now = time.time()
        self._last_purge = time.monotonic()
        with self._mem_lock:
            self._answers = {k: v for k, v in self._answers.items() if v[0] > now}
            self._ids = {k: v for k, v in self._ids.items() if v > now}
        with self._db.transaction() as conn:
            deleted = conn.execute("DELETE FROM answers WHERE expires <= ?", (now,)).rowcount
            deleted += conn.execute("DELETE FROM document_ids WHERE expires <= ?", (now,)).rowcount
        return int(deleted)

    def forget_org(self, org_id: str) -> int:
        """Forget every receipt of a deleted org at once, window or not; SQLite rows deleted."""
        with self._mem_lock:
            self._answers = {k: v for k, v in self._answers.items() if k[0] != org_id}
            self._ids = {k: v for k, v in self._ids.items() if k[0] != org_id}
        with self._db.transaction() as conn:
            deleted = conn.execute("DELETE FROM answers WHERE org_id = ?", (org_id,)).rowcount
            deleted += conn.execute("DELETE FROM document_ids WHERE org_id = ?", (org_id,)).rowcount
        return int(deleted)

    def close(self) -> None:
        self._db.close()


def _older_sqlite_shapes(db: sqlite.Database) -> None:
    """A store written before request bodies were hashed gets the column."""
    with db.transaction() as conn:
        columns = {row[1] for row in conn.execute("PRAGMA table_info(answers)")}
        if columns and "body_sha256" not in columns:
            conn.execute("ALTER TABLE answers ADD COLUMN body_sha256 TEXT")


def _same_body(stored: str | None, sha256: str | None) -> None:
    if stored is not None and sha256 is not None and stored != sha256:
        raise ValidationFailed(
            "this Idempotency-Key was used with a different request body; use a new key for a "
            "new request (a retry must send the same events)"
        )


def _lock_for(locks: dict[_K, asyncio.Lock], ident: _K) -> asyncio.Lock:
    lock = locks.get(ident)
    if lock is None:
        if len(locks) > 10_000:  # bounded: drop idle locks (in place: callers hold this dict)
            for idle in [k for k, v in locks.items() if not v.locked()]:
                del locks[idle]
        lock = locks[ident] = asyncio.Lock()
    return lock


def _rows(receipts: list[Receipt], window: int) -> tuple[list[_AnswerRow], list[_IdRow]]:
    """SQLite rows for receipts: (org, source, key, status, body, expires, body SHA-256),
    (org, source, id, expires)."""
    answers: list[_AnswerRow] = []
    ids: list[_IdRow] = []
    now = time.time()
    for r in receipts:
        expires = float(r["at"]) + window
        if expires <= now:
            continue  # already forgotten: a retry now is a new request
        org, source = str(r["org"]), str(r["source"])
        if "key" in r:
            body = json.dumps(r["body"])
            digest = r.get("sha256")
            answers.append((org, source, str(r["key"]), int(r["status"]), body, expires, digest))
        ids += [(org, source, str(doc_id), expires) for doc_id in r.get("ids", ())]
    return answers, ids


def drop_known_documents(bulk: EsBulk, known: set[str]) -> tuple[EsBulk, list[str]]:
    """Drop the rows whose ``_id`` is in ``known`` or repeats an earlier row of the request.

    Returns the bulk without them, its items answered as Elasticsearch answers a repeat, and the
    ids of the rows kept (to write in the receipt)."""
    accepted = bulk.parsed.accepted_indexes or []
    items, seen = list(bulk.items), set(known)
    keep: list[int] = []
    new_ids: list[str] = []
    for row, (item_index, doc_id) in enumerate(zip(accepted, bulk.row_ids, strict=True)):
        if doc_id is None or doc_id not in seen:
            keep.append(row)
            if doc_id is not None:
                seen.add(doc_id)
                new_ids.append(doc_id)
        else:
            items[item_index] = _repeat(items[item_index])
    if len(keep) == len(accepted):
        return bulk, new_ids
    parsed = dataclasses.replace(
        bulk.parsed,
        table=bulk.parsed.table.take(pa.array(keep, pa.int64())),
        accepted_indexes=[accepted[row] for row in keep],
    )
    return EsBulk(parsed, items), new_ids


def _repeat(item: BulkItem) -> BulkItem:
    if item.action == "create":
        reason = f"[{item.doc_id}]: version conflict, document already exists (current version [1])"
        return dataclasses.replace(
            item, status=409, error_type="version_conflict_engine_exception", reason=reason
        )
    return dataclasses.replace(item, status=200, result="noop")
