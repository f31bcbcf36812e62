"""The control-plane event log in PostgreSQL, for several nodes sharing one control plane.

The same records as the SQLite store (:mod:`astralog.controlplane.store`): each hashed over its
canonical JSON and the previous record's hash, each org's records linked by a chain of their own,
appends checked against the aggregate version the command expected. What SQLite gets from being
one file written by one process, PostgreSQL gets from the database:

* **One chain, never forked.** Every write transaction first takes a transaction-level advisory
  lock, so two nodes appending at once queue up (each reads the head the other committed); the
  primary key on ``seq`` and the unique ``(aggregate_id, version)`` refuse a writer that skipped
  the lock, and that refusal is reported as the same :class:`~astralog.errors.Conflict`.
* **Append-only in the database.** Statement triggers refuse UPDATE, DELETE and TRUNCATE on the
  log, its org chain and its checkpoints; :func:`grant_writer_role` makes the role the service
  should log in as, which holds no UPDATE, DELETE or TRUNCATE privilege and, not owning the
  tables, cannot drop or disable the triggers.

Projections are written by the projector in the append's transaction. The product's handlers
(:mod:`astralog.controlplane.projections`) and every aggregate's reads are the same statements as
on SQLite: :class:`astralog.pgsql.Compat` runs SQLite's ``?`` parameters and reads rows like
:class:`sqlite3.Row`.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from typing import Any

import psycopg
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from psycopg import sql

from astralog.controlplane import projections
from astralog.controlplane.audit_verify import Report, Stored, compare_projections, verify_stored
from astralog.controlplane.checkpoints import SignedCheckpoint
from astralog.controlplane.store import (
    EventStore,
    Projector,
    Recorded,
    Watch,
    _recorded,
    events_table,
    version_conflict,
)
from astralog.errors import ConfigError, Conflict
from astralog.pgsql import PgDatabase, connect, ddl, without_password

log = logging.getLogger("astralog.controlplane")
Connection = psycopg.Connection[dict[str, Any]]

# One lock for the whole log: every record links to the one before it, so appends are serial.
# The number is arbitrary but fixed, shared by every node (it spells "astralog" in ASCII).
APPEND_LOCK = 0x617374726C6F67

# Every append is announced here, so each node drops the credentials it cached (a revocation on
# one node takes effect on the others at once, not after the cache bound).
CHANNEL = "astralog_events"
LISTEN_SECONDS = 0.5  # how long one wait for notifications lasts before checking for close
# Records of activity (every search appends one): they change nobody's rights, so a node keeps
# its cache when it hears only of them.
ACTIVITY = frozenset({"LogsRead", "TokenUsed"})

APPEND_ONLY_TABLES = ("events", "checkpoints", "org_chain", "org_checkpoints")

SCHEMA = (
    events_table("BIGINT")
    + """\
CREATE TABLE IF NOT EXISTS checkpoints (
    seq BIGINT PRIMARY KEY, hash TEXT NOT NULL, signature TEXT NOT NULL, at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS org_chain (
    seq BIGINT PRIMARY KEY REFERENCES events (seq),
    org_id TEXT NOT NULL,
    org_seq BIGINT NOT NULL,
    org_prev_hash TEXT NOT NULL,
    org_hash TEXT NOT NULL,
    UNIQUE (org_id, org_seq)
);
CREATE TABLE IF NOT EXISTS org_checkpoints (
    org_id TEXT NOT NULL, org_seq BIGINT NOT NULL, hash TEXT NOT NULL,
    signature TEXT NOT NULL, at TEXT NOT NULL, PRIMARY KEY (org_id, org_seq)
);
CREATE TABLE IF NOT EXISTS heartbeat (
    id INTEGER PRIMARY KEY CHECK (id = 1), seq BIGINT NOT NULL, hash TEXT NOT NULL,
    signature TEXT NOT NULL, at TEXT NOT NULL
);
-- The shape of the projections (SQLite keeps it in PRAGMA user_version).
CREATE TABLE IF NOT EXISTS projection_version (
    id INTEGER PRIMARY KEY CHECK (id = 1), version BIGINT NOT NULL
);
CREATE OR REPLACE FUNCTION astralog_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '% is append-only', TG_TABLE_NAME USING ERRCODE = 'restrict_violation';
END $$;
"""
)

_TRIGGER = (
    "CREATE OR REPLACE TRIGGER {name} BEFORE {op} ON {table}"
    " FOR EACH STATEMENT EXECUTE FUNCTION astralog_append_only()"
)


_TRIGGER_NAMES = {
    f"{table}_no_{op.lower()}": (op, table)
    for table in APPEND_ONLY_TABLES
    for op in ("UPDATE", "DELETE", "TRUNCATE")
}


def _trigger_ddl() -> str:
    return ";\n".join(
        _TRIGGER.format(name=name, op=op, table=table)
        for name, (op, table) in _TRIGGER_NAMES.items()
    )


def create_schema(
    conn: Connection, projection_schema: str = "", tables: Sequence[str] = (), version: int = 0
) -> bool:
    """The log's tables, its append-only triggers and the projections' tables, unless all are
    there already (so a node that logs in as the writer role, which may not create or alter
    tables, opens an existing database). Projections of an older shape than ``version`` are
    dropped and made anew: returns whether they were, so the caller rebuilds them from the log."""
    ready = _enabled_triggers(conn) >= set(_TRIGGER_NAMES) and _have_tables(conn, tables)
    if ready and _projection_version(conn) >= version:
        return False
    with conn.transaction():
        conn.execute(sql.SQL(f"SELECT pg_advisory_xact_lock({APPEND_LOCK})"))
        conn.execute(sql.SQL(SCHEMA + _trigger_ddl()))
        stale = _projection_version(conn) < version
        if stale:
            for table in tables:
                conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(sql.Identifier(table)))
        if projection_schema:
            conn.execute(ddl(projection_schema))
        conn.execute(
            "INSERT INTO projection_version (id, version) VALUES (1, %s)"
            " ON CONFLICT (id) DO UPDATE SET version = excluded.version",
            (version,),
        )
    return stale


def _projection_version(conn: Connection) -> int:
    if not _have_tables(conn, ["projection_version"]):
        return 0
    row = conn.execute("SELECT version FROM projection_version").fetchone()
    return int(row["version"]) if row else 0


def _have_tables(conn: Connection, tables: Sequence[str]) -> bool:
    row = conn.execute(
        "SELECT count(*) AS n FROM pg_tables WHERE schemaname = current_schema()"
        " AND tablename = ANY(%s)",
        (list(tables),),
    ).fetchone()
    return row is not None and row["n"] == len(set(tables))


def grant_writer_role(conn: Connection, role: str) -> None:
    """Let ``role`` read every table and write the projections and the heartbeat row, but only
    read and append to the log: no UPDATE, DELETE or TRUNCATE on the append-only tables."""
    ident = sql.Identifier(role)
    tables = sql.SQL(", ").join(map(sql.Identifier, APPEND_ONLY_TABLES))
    with conn.transaction():
        conn.execute(
            sql.SQL(
                "GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {}"
            ).format(ident)
        )
        conn.execute(sql.SQL("REVOKE ALL ON {} FROM {}").format(tables, ident))
        conn.execute(sql.SQL("GRANT SELECT, INSERT ON {} TO {}").format(tables, ident))


def _no_projections(conn: sqlite3.Connection, record: Recorded) -> None:
    del conn, record


class PgEventStore(EventStore):
    """The event store on PostgreSQL; the same reads and appends as the SQLite one. The
    connection ``transaction`` and ``reading`` give reads like :mod:`sqlite3`
    (:class:`astralog.pgsql.Compat`), so the aggregates' statements run unchanged."""

    database_errors = (psycopg.Error,)

    def __init__(
        self,
        url: str,
        projector: Projector = _no_projections,
        projection_schema: str = "",
        projection_tables: Sequence[str] = (),
        projection_version: int = 0,
    ) -> None:
        self._projector = projector
        self._url = url
        self._db = PgDatabase(url, APPEND_LOCK)
        self.stale_projections = create_schema(
            self.conn, projection_schema, projection_tables, projection_version
        )

    @property
    def conn(self) -> Connection:
        """The connection of the moment (it is opened again after a lost one)."""
        return self._db.raw

    def transaction(self) -> AbstractContextManager[sqlite3.Connection]:
        """One serialised write transaction across every node: read, decide, append; all or
        nothing."""
        return self._db.transaction()

    def reading(self) -> AbstractContextManager[sqlite3.Connection]:
        return self._db.reading()

    def _insert(self, record: Recorded, expected_version: int) -> None:
        try:
            with self.conn.transaction():  # a savepoint: the caller's transaction stays usable
                super()._insert(record, expected_version)
                # Delivered to every listening node when (and only if) the append commits.
                self.conn.execute("SELECT pg_notify(%s, %s)", (CHANNEL, record.type))
        except psycopg.errors.UniqueViolation as exc:  # a writer that did not take the lock
            if exc.diag.constraint_name == "events_pkey":
                raise Conflict(
                    f"record {record.seq} was appended concurrently by a writer that did not "
                    "take the append lock; reload and try again"
                ) from exc
            raise version_conflict(record.aggregate_id, record.version, expected_version) from exc

    def close(self) -> None:
        self._db.close()

    def unreachable(self) -> str | None:
        return self._db.unreachable()

    def watch(self, changed: Callable[[], object]) -> Watch:
        return _Listener(self._url, changed)


class _Listener(Watch):
    """A thread with a connection of its own, listening on :data:`CHANNEL`. ``changed`` is called
    for every batch of notifications but of :data:`ACTIVITY`, and after every (re)connection,
    for what happened while nobody listened; a lost connection is retried every second, and
    meanwhile the cache bound still holds."""

    def __init__(self, url: str, changed: Callable[[], object]) -> None:
        self._url, self._changed = url, changed
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="astralog-pg-listen", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                with connect(self._url) as conn:
                    conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(CHANNEL)))
                    self._changed()
                    while not self._stop.is_set():
                        heard = {n.payload for n in conn.notifies(timeout=LISTEN_SECONDS)}
                        if heard - ACTIVITY:
                            self._changed()
            except (psycopg.Error, ConfigError) as exc:
                log.warning("listening for control-plane changes failed, retrying: %s", exc)
                self._stop.wait(1.0)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=LISTEN_SECONDS * 4)


def open_product_store(url: str) -> PgEventStore:
    """The control plane's event store on PostgreSQL, with the product's projections."""
    return PgEventStore(
        url,
        projections.project,
        projections.SCHEMA,
        projections.TABLES,
        projections.SCHEMA_VERSION,
    )


def read_stored(url: str) -> Stored:
    """Everything ``audit verify`` checks, read from the PostgreSQL log in one snapshot."""
    with connect(url) as conn, conn.transaction():
        conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        rows = [_recorded(r) for r in conn.execute("SELECT * FROM events ORDER BY seq")]
        checkpoints = conn.execute("SELECT seq, hash, signature, at FROM checkpoints ORDER BY seq")
        org_checkpoints = conn.execute(
            "SELECT org_id, org_seq, hash, at, signature FROM org_checkpoints"
            " ORDER BY org_id, org_seq"
        ).fetchall()
        links = conn.execute("SELECT seq, org_id, org_seq, org_hash FROM org_chain").fetchall()
        heartbeat = conn.execute("SELECT seq, hash, signature, at FROM heartbeat").fetchone()
        return Stored(
            rows,
            [(r["seq"], r["hash"], r["signature"], r["at"]) for r in checkpoints],
            [SignedCheckpoint("org", *r.values()) for r in org_checkpoints],
            {r["seq"]: (r["org_id"], r["org_seq"], r["org_hash"]) for r in links},
            tuple(heartbeat.values()) if heartbeat else None,
            _enabled_triggers(conn),
        )


def _enabled_triggers(conn: Connection) -> frozenset[str]:
    """The append-only triggers in force: a disabled one counts as dropped."""
    rows = conn.execute(
        "SELECT tgname FROM pg_trigger WHERE NOT tgisinternal AND tgenabled <> 'D'"
    ).fetchall()
    return frozenset(str(r["tgname"]) for r in rows)


def verify(url: str, public_key: Ed25519PublicKey, **options: Any) -> Report:
    """``audit verify`` on PostgreSQL: the chain, org chains, checkpoints, triggers, and the
    projections against a replay of the log."""
    try:
        stored = read_stored(url)
    except psycopg.errors.UndefinedTable as exc:
        raise ConfigError(
            f"{without_password(url)} holds no Astralog event log (no events table)"
        ) from exc
    with connect(url) as conn:
        return verify_stored(
            stored,
            public_key,
            projections=lambda rows, report: compare_projections(
                lambda table: _table_rows(conn, table), rows, report
            ),
            **options,
        )


def _table_rows(conn: Connection, table: str) -> dict[object, tuple[Any, ...]] | None:
    try:
        rows = conn.execute(sql.SQL("SELECT * FROM {}").format(sql.Identifier(table)))
        return {values[0]: values for values in (tuple(r.values()) for r in rows)}
    except psycopg.errors.UndefinedTable:
        return None
