"""The data catalog: which Parquet batches exist, where, and what time range they hold.

It is the record of :class:`BatchCommitted` facts the flusher appends after a connector wrote a
batch and before the WAL segment behind it is released; the query planner reads it to prune
files by org, source and time, and retention reads it to know what to purge. Promises:

* a fact is durable when :meth:`Catalog.record` returns (SQLite WAL journal, ``synchronous=FULL``,
  or a PostgreSQL commit), because the flusher deletes the WAL segment right after;
* recording is idempotent: the same object key (or batch id) recorded twice is stored once;
* safe to share between threads: one connection behind a lock, short transactions;
* with ``database_url``, kept in the control plane's PostgreSQL, so every node plans searches over
  the batches every node committed; write transactions take an advisory lock of their own, so a
  compaction's read-then-swap on one node never interleaves with another's.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Collection, Iterable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from astralog.pgsql import open_database, upsert

__all__ = ["BatchCommitted", "Catalog", "OrgUsage", "Retired"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS batches (
    object_key         TEXT PRIMARY KEY,
    batch_id           TEXT NOT NULL UNIQUE,
    destination_id     TEXT NOT NULL,
    org_id             TEXT NOT NULL,
    source_id          TEXT NOT NULL,
    min_ts_ns          INTEGER NOT NULL,
    max_ts_ns          INTEGER NOT NULL,
    rows               INTEGER NOT NULL,
    bytes              INTEGER NOT NULL,
    schema_fingerprint TEXT NOT NULL,
    segment_ids        TEXT NOT NULL,
    uri                TEXT NOT NULL,
    committed_at_ns    INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS batches_by_time ON batches (org_id, source_id, max_ts_ns);
-- A compaction under way: the object it writes, deleted after a crash if never swapped in.
CREATE TABLE IF NOT EXISTS compactions (
    new_key        TEXT PRIMARY KEY,
    org_id         TEXT NOT NULL,
    destination_id TEXT NOT NULL,
    started_ns     INTEGER NOT NULL
);
-- Batches a compaction replaced: kept until their objects are deleted after the grace.
CREATE TABLE IF NOT EXISTS retired (
    object_key      TEXT PRIMARY KEY,
    batch_id        TEXT NOT NULL,
    org_id          TEXT NOT NULL,
    destination_id  TEXT NOT NULL,
    replaced_by     TEXT NOT NULL,
    delete_after_ns INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS retired_by_batch ON retired (batch_id);
"""
_COLUMNS = (
    "object_key, batch_id, destination_id, org_id, source_id, min_ts_ns, max_ts_ns, rows, bytes, "
    "schema_fingerprint, segment_ids, uri, committed_at_ns"
)
# Every node's catalog writes take turns under this PostgreSQL advisory lock ("catalog").
CATALOG_LOCK = 0x636174616C6F67


_PUT_BATCH = upsert("batches", _COLUMNS, "object_key")
_PUT_COMPACTION = upsert("compactions", "new_key, org_id, destination_id, started_ns", "new_key")
_PUT_RETIRED = upsert(
    "retired", "object_key, batch_id, org_id, destination_id, replaced_by, delete_after_ns",
    "object_key",
)  # fmt: skip


@dataclass(frozen=True)
class BatchCommitted:
    """A batch of events was stored at a destination (immutable fact).

    ``min_ts_ns``/``max_ts_ns`` are the inclusive bounds of ``Timestamp`` in the batch;
    ``segment_ids`` are the WAL segments it was built from, so pending WAL data already in the
    catalog can be told apart.
    """

    object_key: str
    batch_id: str
    destination_id: str
    org_id: str
    source_id: str
    min_ts_ns: int
    max_ts_ns: int
    rows: int
    bytes: int
    schema_fingerprint: str
    segment_ids: tuple[str, ...]
    uri: str = ""
    committed_at: datetime | None = None  # set by Catalog.record when left empty


@dataclass(frozen=True)
class OrgUsage:
    org_id: str
    batches: int
    rows: int
    bytes: int


@dataclass(frozen=True)
class Retired:
    """An object a compaction replaced (``BatchesCompacted``): deleted once ``delete_after_ns``
    has passed, when no search planned before the swap can still be reading it."""

    object_key: str
    org_id: str
    destination_id: str
    replaced_by: str


class Catalog:
    """The catalog of committed batches, in the SQLite file ``path`` or, with ``database_url``,
    in PostgreSQL. Use as a context manager or call close()."""

    def __init__(self, path: Path, database_url: str = "") -> None:
        self.path = Path(path)
        self._db = open_database(self.path, database_url, CATALOG_LOCK)
        self._db.create(_SCHEMA)

    def __enter__(self) -> Catalog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._db.close()

    def _transaction(self) -> AbstractContextManager[sqlite3.Connection]:
        return self._db.transaction()

    def record(self, batch: BatchCommitted) -> bool:
        """Append the fact; return False when that object key or batch id was already recorded."""
        return self.record_many([batch]) == 1

    def record_many(self, batches: Iterable[BatchCommitted]) -> int:
        """Append several facts in one transaction (one fsync); return how many were new."""
        rows = [_to_row(b) for b in batches]
        if not rows:
            return 0
        placeholders = ", ".join("?" * len(rows[0]))
        added = 0
        with self._transaction() as conn:
            for row in rows:
                cursor = conn.execute(
                    f"INSERT INTO batches ({_COLUMNS}) VALUES ({placeholders})"
                    " ON CONFLICT DO NOTHING",
                    row,
                )
                added += cursor.rowcount
        return added

    def committed_batch_ids(self, batch_ids: Collection[str]) -> set[str]:
        """The subset of ``batch_ids`` already recorded (the flusher skips those after a crash)."""
        found: set[str] = set()
        ids = list(batch_ids)
        with self._db.reading() as conn:
            for chunk in _chunks(ids, 500):
                marks = ", ".join("?" * len(chunk))
                query = f"SELECT batch_id FROM batches WHERE batch_id IN ({marks})"
                found.update(r[0] for r in conn.execute(query, chunk))
                # A batch compacted into a larger one is committed too: never written again.
                query = f"SELECT batch_id FROM retired WHERE batch_id IN ({marks})"
                found.update(r[0] for r in conn.execute(query, chunk))
        return found

    def batches(
        self, org_id: str, source_ids: Collection[str] | None, start_ns: int, end_ns: int
    ) -> list[BatchCommitted]:
        """Batches of ``org_id`` (or only of ``source_ids``) overlapping ``[start_ns, end_ns)``.

        Oldest first; the query planner reads only the objects listed here.
        """
        query = (
            f"SELECT {_COLUMNS} FROM batches WHERE org_id = ? AND max_ts_ns >= ? AND min_ts_ns < ?"
        )
        params: list[object] = [org_id, start_ns, end_ns]
        if source_ids is not None:
            if not source_ids:
                return []
            query += f" AND source_id IN ({', '.join('?' * len(source_ids))})"
            params.extend(source_ids)
        query += " ORDER BY min_ts_ns, object_key"
        with self._db.reading() as conn:
            rows = conn.execute(query, params).fetchall()
        return [_from_row(r) for r in rows]

    def forget(self, object_keys: Iterable[str]) -> int:
        """Drop the facts of deleted objects (retention); return how many were known."""
        keys = list(object_keys)
        removed = 0
        with self._transaction() as conn:
            for chunk in _chunks(keys, 500):
                marks = ", ".join("?" * len(chunk))
                cursor = conn.execute(f"DELETE FROM batches WHERE object_key IN ({marks})", chunk)
                removed += cursor.rowcount
        return removed

    def replace(self, old_key: str, new: BatchCommitted | None) -> None:
        """Swap one fact for another (an erasure's rewrite) in one transaction, so a planner
        lists either the old object or the new one, never both and never neither.

        When the old fact is gone already (a compaction merged it into another batch, or this
        is a retry), the new one is not added: its rows are listed once, where they are now."""
        with self._transaction() as conn:
            gone = conn.execute("DELETE FROM batches WHERE object_key = ?", (old_key,))
            if new is not None and gone.rowcount:
                conn.execute(_PUT_BATCH, _to_row(new))

    def compaction_started(self, org_id: str, destination_id: str, new_key: str) -> None:
        """Note, before writing it, the object a compaction is about to write: if the process
        dies before :meth:`compacted`, the next pass finds it here and deletes it."""
        row = (new_key, org_id, destination_id, _to_ns(datetime.now(UTC)))
        with self._transaction() as conn:
            conn.execute(_PUT_COMPACTION, row)

    def unfinished_compactions(self) -> list[tuple[str, str, str]]:
        """``(org_id, destination_id, new_key)`` of compactions started and never swapped in."""
        with self._db.reading() as conn:
            rows = conn.execute(
                "SELECT org_id, destination_id, new_key FROM compactions ORDER BY started_ns"
            ).fetchall()
        return [(str(o), str(d), str(k)) for o, d, k in rows]

    def compaction_abandoned(self, new_key: str) -> None:
        """The object of an unfinished compaction is deleted (or was never written)."""
        with self._transaction() as conn:
            conn.execute("DELETE FROM compactions WHERE new_key = ?", (new_key,))

    def compacted(
        self, old_keys: Collection[str], new: BatchCommitted | None, delete_after_ns: int
    ) -> bool:
        """``BatchesCompacted``: the batches at ``old_keys`` are replaced by ``new`` (None when
        erasures left no row), in one transaction, so a planner lists the old objects or the new
        one, never both and never neither. False, and nothing changed, when one of the old
        batches is no longer listed (purged, erased or compacted meanwhile): the caller deletes
        its new object, whose rows would otherwise come back or count twice."""
        keys = sorted(set(old_keys))
        marks = ", ".join("?" * len(keys))
        with self._transaction() as conn:
            old = conn.execute(
                f"SELECT object_key, batch_id, org_id, destination_id FROM batches "
                f"WHERE object_key IN ({marks})",
                keys,
            ).fetchall()
            if len(old) != len(keys):
                return False
            if new is not None:
                conn.execute("DELETE FROM compactions WHERE new_key = ?", (new.object_key,))
            conn.execute(f"DELETE FROM batches WHERE object_key IN ({marks})", keys)
            replaced_by = new.object_key if new is not None else ""
            conn.executemany(_PUT_RETIRED, [(*row, replaced_by, delete_after_ns) for row in old])
            if new is not None:
                conn.execute(_PUT_BATCH, _to_row(new))
        return True

    def retired_due(self, now_ns: int) -> list[Retired]:
        """Replaced objects whose grace is over: nothing planned before the swap reads them."""
        with self._db.reading() as conn:
            rows = conn.execute(
                "SELECT object_key, org_id, destination_id, replaced_by FROM retired "
                "WHERE delete_after_ns <= ? ORDER BY object_key",
                (now_ns,),
            ).fetchall()
        return [Retired(str(k), str(o), str(d), str(r)) for k, o, d, r in rows]

    def forget_retired(self, object_keys: Iterable[str]) -> None:
        """The replaced objects are deleted from their destination."""
        keys = list(object_keys)
        with self._transaction() as conn:
            for chunk in _chunks(keys, 500):
                marks = ", ".join("?" * len(chunk))
                conn.execute(f"DELETE FROM retired WHERE object_key IN ({marks})", chunk)

    def usage(self, org_id: str | None = None) -> list[OrgUsage]:
        """Batches, rows and bytes stored per org (one org when ``org_id`` is given)."""
        query = (
            "SELECT org_id, COUNT(*), CAST(COALESCE(SUM(rows), 0) AS BIGINT),"
            " CAST(COALESCE(SUM(bytes), 0) AS BIGINT) FROM batches"
        )
        params: list[object] = []
        if org_id is not None:
            query += " WHERE org_id = ?"
            params.append(org_id)
        query += " GROUP BY org_id ORDER BY org_id"
        with self._db.reading() as conn:
            rows = conn.execute(query, params).fetchall()
        return [OrgUsage(*r) for r in rows]


def _chunks(items: list[str], size: int) -> Iterator[list[str]]:
    # SQLite caps the number of bound parameters per statement.
    for i in range(0, len(items), size):
        yield items[i : i + size]


def _to_row(batch: BatchCommitted) -> tuple[object, ...]:
    return (
        batch.object_key,
        batch.batch_id,
        batch.destination_id,
        batch.org_id,
        batch.source_id,
        batch.min_ts_ns,
        batch.max_ts_ns,
        batch.rows,
        batch.bytes,
        batch.schema_fingerprint,
        json.dumps(list(batch.segment_ids)),
        batch.uri,
        _to_ns(batch.committed_at or datetime.now(UTC)),
    )


def _to_ns(moment: datetime) -> int:
    delta = moment - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86_400 + delta.seconds) * 1_000_000_000 + delta.microseconds * 1_000


def _from_row(row: tuple[Any, ...]) -> BatchCommitted:
    (key, batch_id, dest, org, source, lo, hi, rows, size, fp, segs, uri, at_ns) = row
    return BatchCommitted(
        object_key=str(key),
        batch_id=str(batch_id),
        destination_id=str(dest),
        org_id=str(org),
        source_id=str(source),
        min_ts_ns=int(lo),
        max_ts_ns=int(hi),
        rows=int(rows),
        bytes=int(size),
        schema_fingerprint=str(fp),
        segment_ids=tuple(json.loads(str(segs))),
        uri=str(uri),
        committed_at=datetime.fromtimestamp(int(at_ns) / 1e9, UTC),
    )
