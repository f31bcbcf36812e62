"""The append-only, hash-chained control-plane event log: its interface (:class:`EventStore`) and
its SQLite backend (:class:`SqliteEventStore`; PostgreSQL's is :mod:`.pgstore`).

Every record is hashed (SHA-256) over its canonical JSON together with the previous record's hash,
so editing, dropping or reordering a record breaks the chain. Triggers refuse UPDATE and DELETE.
Projections are updated by ``projector`` in the same transaction as the append, so state and log
never disagree. Appends check the aggregate version the command expected (optimistic concurrency).

Each org's records are also linked by a chain of their own (``org_chain``: a per-org sequence
number and hash that leave out the global ``seq``), so a tenant can verify its records from its
export without learning anything about other tenants' activity. The org chain is derived from
the records alone: a database written before it existed is linked on open.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from astralog import sqlite
from astralog.controlplane.events import Event
from astralog.errors import Conflict, NotFound

GENESIS = "0" * 64


def events_table(integer: str) -> str:
    """The log's table and its per-org index, the same on both engines but for the name of a
    64-bit integer (``INTEGER`` on SQLite, where ``INTEGER PRIMARY KEY`` is the rowid)."""
    return f"""
CREATE TABLE IF NOT EXISTS events (
    seq {integer} PRIMARY KEY,
    aggregate_id TEXT NOT NULL,
    version {integer} NOT NULL,
    type TEXT NOT NULL,
    payload TEXT NOT NULL,
    actor TEXT NOT NULL,
    client TEXT NOT NULL,
    at TEXT NOT NULL,
    org_id TEXT,
    prev_hash TEXT NOT NULL,
    hash TEXT NOT NULL,
    UNIQUE (aggregate_id, version)
);
CREATE INDEX IF NOT EXISTS events_org ON events (org_id, seq);
"""


_SCHEMA = (
    events_table("INTEGER")
    + """\
CREATE TRIGGER IF NOT EXISTS events_no_update BEFORE UPDATE ON events
BEGIN SELECT RAISE(ABORT, 'the event log is append-only'); END;
CREATE TRIGGER IF NOT EXISTS events_no_delete BEFORE DELETE ON events
BEGIN SELECT RAISE(ABORT, 'the event log is append-only'); END;
CREATE TABLE IF NOT EXISTS checkpoints (
    seq INTEGER PRIMARY KEY,
    hash TEXT NOT NULL,
    signature TEXT NOT NULL,
    at TEXT NOT NULL
);
CREATE TRIGGER IF NOT EXISTS checkpoints_no_update BEFORE UPDATE ON checkpoints
BEGIN SELECT RAISE(ABORT, 'checkpoints are append-only'); END;
CREATE TRIGGER IF NOT EXISTS checkpoints_no_delete BEFORE DELETE ON checkpoints
BEGIN SELECT RAISE(ABORT, 'checkpoints are append-only'); END;
CREATE TABLE IF NOT EXISTS org_chain (
    seq INTEGER PRIMARY KEY,
    org_id TEXT NOT NULL,
    org_seq INTEGER NOT NULL,
    org_prev_hash TEXT NOT NULL,
    org_hash TEXT NOT NULL,
    UNIQUE (org_id, org_seq)
);
CREATE TRIGGER IF NOT EXISTS org_chain_no_update BEFORE UPDATE ON org_chain
BEGIN SELECT RAISE(ABORT, 'the org chain is append-only'); END;
CREATE TRIGGER IF NOT EXISTS org_chain_no_delete BEFORE DELETE ON org_chain
BEGIN SELECT RAISE(ABORT, 'the org chain is append-only'); END;
CREATE TABLE IF NOT EXISTS org_checkpoints (
    org_id TEXT NOT NULL,
    org_seq INTEGER NOT NULL,
    hash TEXT NOT NULL,
    signature TEXT NOT NULL,
    at TEXT NOT NULL,
    PRIMARY KEY (org_id, org_seq)
);
CREATE TRIGGER IF NOT EXISTS org_checkpoints_no_update BEFORE UPDATE ON org_checkpoints
BEGIN SELECT RAISE(ABORT, 'checkpoints are append-only'); END;
CREATE TRIGGER IF NOT EXISTS org_checkpoints_no_delete BEFORE DELETE ON org_checkpoints
BEGIN SELECT RAISE(ABORT, 'checkpoints are append-only'); END;
-- One row, re-signed every checkpoint interval even when the head did not move, so a verifier
-- can tell "nothing happened since" from "what happened since was removed".
CREATE TABLE IF NOT EXISTS heartbeat (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    seq INTEGER NOT NULL,
    hash TEXT NOT NULL,
    signature TEXT NOT NULL,
    at TEXT NOT NULL
);
"""
)

# Tables whose rows belong to one org (or, for operator tokens, to none): see ``tenant_row``.
TENANT_TABLES = frozenset(
    {"sources", "ingest_keys", "tokens", "connectors", "people", "idp_connections"}
)
_FIELDS = ("seq", "aggregate_id", "version", "type", "payload", "actor", "client", "at", "org_id")
# The org chain hashes the same fields, with the org's own sequence number instead of the global.
ORG_FIELDS = ("org_seq", *_FIELDS[1:])


def canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def record_hash(prev_hash: str, fields: dict[str, Any]) -> str:
    return hashlib.sha256((prev_hash + canonical_json(fields)).encode()).hexdigest()


@dataclass(frozen=True)
class Actor:
    """Who caused an event and from where."""

    principal: str
    client: str = "local"


@dataclass(frozen=True)
class Recorded:
    seq: int
    aggregate_id: str
    version: int
    type: str
    payload: str
    actor: str
    client: str
    at: str
    org_id: str | None
    prev_hash: str
    hash: str

    def event(self) -> Event:
        return Event.from_payload(self.type, json.loads(self.payload))

    def hashed_fields(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in _FIELDS}

    def org_hashed_fields(self, org_seq: int) -> dict[str, Any]:
        return {"org_seq": org_seq} | {name: getattr(self, name) for name in ORG_FIELDS[1:]}


@dataclass(frozen=True)
class OrgLink:
    """A record's place in its org's own chain."""

    org_seq: int
    org_prev_hash: str
    org_hash: str


Projector = Callable[[sqlite3.Connection, Recorded], None]


class EventLog(Protocol):
    """The event-store interface every backend keeps (SQLite here, PostgreSQL in ``pgstore``),
    checked by tests/test_event_store_contract.py. ``transaction`` yields the backend's own
    connection, which its projector writes through in the same transaction."""

    def transaction(self) -> AbstractContextManager[Any]: ...
    def append(self, event: Event, actor: Actor, expected_version: int) -> Recorded: ...
    def version(self, aggregate_id: str) -> int: ...
    def head(self) -> tuple[int, str]: ...
    def org_head(self, org_id: str) -> tuple[int, str]: ...
    def records(
        self,
        *,
        after: int = 0,
        org_id: str | None = None,
        limit: int | None = None,
        types: Sequence[str] = (),
    ) -> list[Recorded]: ...
    def org_records(
        self, org_id: str, *, after: int = 0, limit: int | None = None, types: Sequence[str] = ()
    ) -> list[tuple[Recorded, OrgLink]]: ...
    def close(self) -> None: ...


def connect(path: Path, *, read_only: bool = False) -> sqlite3.Connection:
    conn = sqlite.connect(path, read_only=read_only)
    conn.row_factory = sqlite3.Row
    return conn


class Watch:
    """What :meth:`EventStore.watch` started; ``close`` stops it."""

    def close(self) -> None:
        pass


class EventStore(ABC):
    """The control plane's log and projections, whatever the engine: SQLite
    (:class:`SqliteEventStore`, the embedded default) or PostgreSQL
    (:class:`astralog.controlplane.pgstore.PgEventStore`, shared by several nodes).

    The log's reads and its append are written here once, with ``?`` parameters; the aggregates'
    statements run on the connection ``transaction`` and ``reading`` give, which reads like
    :mod:`sqlite3` on both engines (:mod:`astralog.pgsql`). Each backend supplies the primitives
    below and reports its own write conflicts.
    """

    stale_projections = False
    """The projections were of an older shape and were dropped: the owner rebuilds them."""

    @abstractmethod
    def transaction(self) -> AbstractContextManager[sqlite3.Connection]:
        """One serialised write transaction: read state, decide, append; all or nothing."""

    @abstractmethod
    def reading(self) -> AbstractContextManager[sqlite3.Connection]: ...

    @abstractmethod
    def close(self) -> None: ...

    def unreachable(self) -> str | None:
        """Why the log cannot be used now (a database server gone), or None: for readiness.
        A SQLite file is this process's own."""
        return None

    def watch(self, changed: Callable[[], object]) -> Watch:
        """Call ``changed`` when another process appended to the log. SQLite has one: every
        change is made here, so there is nothing to watch."""
        del changed
        return Watch()

    def tenant_row(self, table: str, row_id: str, org_id: str | None, what: str) -> dict[str, Any]:
        """The row ``row_id`` of ``table`` if it belongs to ``org_id``: the tenant-scoping rule,
        in one place. Another org's row is reported exactly like a missing one."""
        if table not in TENANT_TABLES:
            raise ValueError(f"{table} is not a per-org table")
        if "\x00" in row_id:  # no id holds one (and PostgreSQL's text cannot)
            raise NotFound(f"{what} {row_id[:40]!r} does not exist in this org")
        with self.reading() as conn:
            row = conn.execute(
                f"SELECT * FROM {table} WHERE id = ? AND org_id IS NOT DISTINCT FROM ?",
                (row_id, org_id),
            ).fetchone()
        if row is None:
            raise NotFound(f"{what} {row_id[:40]!r} does not exist in this org")
        return dict(row)

    _projector: Projector
    """Updates the projections from a record, inside the append's transaction."""

    def _one(self, query: str, args: Sequence[Any] = ()) -> dict[str, Any] | None:
        with self.reading() as conn:
            row = conn.execute(query, args).fetchone()
        return dict(row) if row else None

    def _all(self, query: str, args: Sequence[Any]) -> list[dict[str, Any]]:
        with self.reading() as conn:
            return [dict(row) for row in conn.execute(query, args)]

    def _write(self, query: str, args: Sequence[Any]) -> None:
        """Run ``query`` inside the caller's transaction."""
        with self.reading() as conn:
            conn.execute(query, args)

    def _project(self, record: Recorded) -> None:
        with self.reading() as conn:
            self._projector(conn, record)

    def projection_rows(self, table: str) -> dict[object, tuple[Any, ...]] | None:
        """A projection table's rows by their first column; None when it cannot be read."""
        with self.reading() as conn:
            try:
                return {row[0]: tuple(row) for row in conn.execute(f"SELECT * FROM {table}")}
            except self.database_errors:
                return None

    database_errors: tuple[type[Exception], ...] = (sqlite3.DatabaseError,)
    """What the engine raises for a statement it cannot run."""

    def version(self, aggregate_id: str) -> int:
        row = self._one(
            "SELECT MAX(version) AS v FROM events WHERE aggregate_id = ?", (aggregate_id,)
        )
        return int(row["v"] or 0) if row else 0

    def head(self) -> tuple[int, str]:
        row = self._one("SELECT seq, hash FROM events ORDER BY seq DESC LIMIT 1")
        return (int(row["seq"]), str(row["hash"])) if row else (0, GENESIS)

    def org_head(self, org_id: str) -> tuple[int, str]:
        row = self._one(
            "SELECT org_seq, org_hash FROM org_chain WHERE org_id = ?"
            " ORDER BY org_seq DESC LIMIT 1",
            (org_id,),
        )
        return (int(row["org_seq"]), str(row["org_hash"])) if row else (0, GENESIS)

    def append(self, event: Event, actor: Actor, expected_version: int) -> Recorded:
        """Append inside the caller's transaction; ``expected_version`` 0 means a new aggregate."""
        current = self.version(event.aggregate_id)
        if current != expected_version:
            raise version_conflict(event.aggregate_id, current, expected_version)
        seq, prev_hash = self.head()
        fields: dict[str, Any] = {
            "seq": seq + 1,
            "aggregate_id": event.aggregate_id,
            "version": current + 1,
            "type": type(event).__name__,
            "payload": canonical_json(event.payload()),
            "actor": actor.principal,
            "client": actor.client,
            "at": datetime.now(UTC).isoformat(timespec="microseconds"),
            "org_id": event.org,
        }
        record = Recorded(**fields, prev_hash=prev_hash, hash=record_hash(prev_hash, fields))
        self._insert(record, expected_version)
        if record.org_id is not None:
            self._link(record.org_id, record)
        self._project(record)
        return record

    def _insert(self, record: Recorded, expected_version: int) -> None:
        del expected_version  # a backend that can detect a racing writer reports it with this
        columns = (*_FIELDS, "prev_hash", "hash")
        self._write(
            f"INSERT INTO events ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})",
            [getattr(record, c) for c in columns],
        )

    def _link(self, org_id: str, record: Recorded) -> None:
        """Append ``record`` to its org's chain (inside the caller's transaction)."""
        org_seq, prev = self.org_head(org_id)
        digest = record_hash(prev, record.org_hashed_fields(org_seq + 1))
        self._write(
            "INSERT INTO org_chain (seq, org_id, org_seq, org_prev_hash, org_hash)"
            " VALUES (?, ?, ?, ?, ?)",
            (record.seq, org_id, org_seq + 1, prev, digest),
        )

    def org_records(
        self, org_id: str, *, after: int = 0, limit: int | None = None, types: Sequence[str] = ()
    ) -> list[tuple[Recorded, OrgLink]]:
        """The org's records after its own sequence number ``after``, with their org links
        (only those of ``types``, when given)."""
        sql = (
            "SELECT e.*, c.org_seq, c.org_prev_hash, c.org_hash FROM org_chain c"
            " JOIN events e ON e.seq = c.seq WHERE c.org_id = ? AND c.org_seq > ?"
            + _of_types(types, "e.")
            + " ORDER BY c.org_seq"
        )
        args: list[Any] = [org_id, after, *types]
        if limit is not None:
            sql += " LIMIT ?"
            args.append(limit)
        return [(_recorded(row), _org_link(row)) for row in self._all(sql, args)]

    def records(
        self,
        *,
        after: int = 0,
        org_id: str | None = None,
        limit: int | None = None,
        types: Sequence[str] = (),
    ) -> list[Recorded]:
        sql = "SELECT * FROM events WHERE seq > ?" + _of_types(types)
        args: list[Any] = [after, *types]
        if org_id is not None:
            sql += " AND org_id = ?"
            args.append(org_id)
        sql += " ORDER BY seq"
        if limit is not None:
            sql += " LIMIT ?"
            args.append(limit)
        return [_recorded(row) for row in self._all(sql, args)]


class SqliteEventStore(EventStore):
    def __init__(
        self,
        path: Path,
        projector: Projector,
        projection_schema: str,
        projection_tables: tuple[str, ...] = (),
        projection_version: int = 0,
    ) -> None:
        self.path = path
        self._projector = projector
        self._conn = connect(path)
        self._lock = threading.RLock()
        (stored,) = self._conn.execute("PRAGMA user_version").fetchone()
        self.stale_projections = stored < projection_version
        if self.stale_projections:  # an older shape: the caller rebuilds them from the log
            for table in projection_tables:
                self._conn.execute(f"DROP TABLE IF EXISTS {table}")
        self._conn.executescript(_SCHEMA + projection_schema)
        self._conn.execute(f"PRAGMA user_version = {int(projection_version)}")
        self._link_orgs()

    @property
    def conn(self) -> sqlite3.Connection:
        return self._conn

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        with sqlite.transaction(self._conn, self._lock) as conn:
            yield conn

    @contextmanager
    def reading(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            yield self._conn

    def _link_orgs(self) -> None:
        """Link the org records a database written before the org chain existed holds."""
        sql = (
            "SELECT e.* FROM events e LEFT JOIN org_chain c ON c.seq = e.seq"
            " WHERE e.org_id IS NOT NULL AND c.seq IS NULL ORDER BY e.seq"
        )
        with self.transaction() as conn:
            for row in conn.execute(sql).fetchall():
                self._link(row["org_id"], Recorded(**dict(row)))

    def close(self) -> None:
        self._conn.close()


def replay(records: Iterable[Recorded], project: Callable[[Recorded], object]) -> int:
    """Feed every record to ``project`` in log order; return how many. A record that cannot be
    read or projected stops the replay with a message naming it (the caller's transaction then
    leaves the projections as they were), never a bare TypeError from deep inside."""
    count = 0
    for record in records:
        try:
            project(record)
        except Exception as exc:
            raise Conflict(
                f"event {record.seq} ({record.type}) cannot be replayed: "
                f"{type(exc).__name__}: {exc}. A payload this version cannot read means the log "
                "was changed outside Astralog or comes from a newer version; `astralog audit "
                "verify` shows whether its chain holds. Nothing was rebuilt."
            ) from exc
        count += 1
    return count


def version_conflict(aggregate_id: str, current: int, expected: int) -> Conflict:
    return Conflict(
        f"{aggregate_id} changed concurrently (version {current}, expected {expected}); "
        "reload and try again"
    )


def _of_types(types: Sequence[str], prefix: str = "") -> str:
    return f" AND {prefix}type IN ({', '.join('?' * len(types))})" if types else ""


def _recorded(row: Mapping[str, Any]) -> Recorded:
    return Recorded(**{k: row[k] for k in (*_FIELDS, "prev_hash", "hash")})


def _org_link(row: Mapping[str, Any]) -> OrgLink:
    return OrgLink(row["org_seq"], row["org_prev_hash"], row["org_hash"])
