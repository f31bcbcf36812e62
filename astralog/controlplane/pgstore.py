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

Projections are written by the projector in the append's transaction, through this store's
connection. :func:`open_product_store` runs the product's own handlers
(:mod:`astralog.controlplane.projections`, SQL both engines speak, with ``?`` parameters) and
``rebuild(reset_projections)`` is ``events rebuild``. The commands' reads are still SQLite's
(docs/architecture.md, "PostgreSQL control plane").
"""

from __future__ import annotations

import contextlib
import re
import sqlite3
import threading
import urllib.parse
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, cast

import psycopg
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from psycopg import conninfo, sql
from psycopg.rows import dict_row

from astralog.controlplane import projections
from astralog.controlplane.audit_verify import Report, Stored, compare_projections, verify_stored
from astralog.controlplane.checkpoints import SignedCheckpoint, Signer
from astralog.controlplane.store import (
    EventQueries,
    Recorded,
    _recorded,
    events_table,
    replay,
    version_conflict,
)
from astralog.errors import ConfigError, Conflict

Connection = psycopg.Connection[dict[str, Any]]
PgProjector = Callable[[Connection, Recorded], None]

# One lock for the whole log: every record links to the one before it, so appends are serial.
# The number is arbitrary but fixed, shared by every node (it spells "astralog" in ASCII).
APPEND_LOCK = 0x617374726C6F67

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


def connect(url: str) -> Connection:
    """A connection in autocommit mode: reads see what other nodes committed, and writes open
    their own transaction (:meth:`PgEventStore.transaction`)."""
    try:
        return psycopg.connect(url, autocommit=True, row_factory=dict_row, connect_timeout=10)
    except psycopg.Error as exc:
        raise ConfigError(
            f"cannot open the PostgreSQL control plane at {_without_password(url)}: "
            f"{_scrubbed(str(exc).strip(), url)}; check ASTRALOG_CONTROL__DATABASE_URL and that "
            "the server is up"
        ) from None  # the driver's exception quotes the URL, password included


def _without_password(url: str) -> str:
    """Where ``url`` points, for a message: never its password."""
    try:
        info = conninfo.conninfo_to_dict(url)
    except psycopg.Error:
        return "the configured URL (unreadable)"
    return f"{info.get('host', 'localhost')}:{info.get('port', 5432)}/{info.get('dbname', '')}"


def _scrubbed(message: str, url: str) -> str:
    """The driver's ``message`` without the password of ``url``: psycopg quotes the URL, or the
    token it could not read, in its errors."""
    for secret in sorted(_passwords(url), key=len, reverse=True):
        message = message.replace(secret, "***")
    return message


def _passwords(url: str) -> set[str]:
    """Every spelling of the password in ``url`` (raw and percent-decoded), found even when the
    URL is unreadable to the driver."""
    found: set[str] = set()
    userinfo = re.match(r"[^:/?#]+://([^/?#]*)@", url)  # up to the authority's last @
    if userinfo and ":" in userinfo.group(1):
        found.add(userinfo.group(1).partition(":")[2])
    found |= {m.group(1) for m in re.finditer(r"password\s*=\s*([^&\s]+)", url)}
    with contextlib.suppress(psycopg.Error):
        found.add(str(conninfo.conninfo_to_dict(url).get("password") or ""))
    found |= {urllib.parse.unquote(secret) for secret in found}
    return {secret for secret in found if secret}


def create_schema(
    conn: Connection, projection_schema: str = "", tables: Sequence[str] = ()
) -> None:
    """The log's tables, its append-only triggers and the projections' tables, unless all are
    there already (so a node that logs in as the writer role, which may not create or alter
    tables, opens an existing database)."""
    if _enabled_triggers(conn) >= set(_TRIGGER_NAMES) and _have_tables(conn, tables):
        return
    with conn.transaction():
        conn.execute(sql.SQL(f"SELECT pg_advisory_xact_lock({APPEND_LOCK})"))
        conn.execute(sql.SQL(SCHEMA + _trigger_ddl()))
        if projection_schema:
            conn.execute(projection_schema)


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


def _no_projections(conn: Connection, record: Recorded) -> None:
    del conn, record


class PgEventStore(EventQueries):
    """The event store on PostgreSQL; the same reads and appends as the SQLite ``EventStore``."""

    def __init__(
        self,
        url: str,
        projector: PgProjector = _no_projections,
        projection_schema: str = "",
        projection_tables: Sequence[str] = (),
    ) -> None:
        self._projector = projector
        self._conn = connect(url)
        self._lock = threading.RLock()  # one connection, one statement at a time
        create_schema(self._conn, projection_schema, projection_tables)

    @property
    def conn(self) -> Connection:
        return self._conn

    @contextmanager
    def transaction(self) -> Iterator[Connection]:
        """One serialised write transaction across every node: read, decide, append; all or
        nothing. The advisory lock is released by the commit or rollback."""
        with self._lock, self._conn.transaction():
            self._conn.execute(sql.SQL(f"SELECT pg_advisory_xact_lock({APPEND_LOCK})"))
            yield self._conn

    @contextmanager
    def reading(self) -> Iterator[Connection]:
        with self._lock:
            yield self._conn

    def _insert(self, record: Recorded, expected_version: int) -> None:
        try:
            with self._conn.transaction():  # a savepoint: the caller's transaction stays usable
                super()._insert(record, expected_version)
        except psycopg.errors.UniqueViolation as exc:  # a writer that did not take the lock
            if exc.diag.constraint_name == "events_pkey":
                raise Conflict(
                    f"record {record.seq} was appended concurrently by a writer that did not "
                    "take the append lock; reload and try again"
                ) from exc
            raise version_conflict(record.aggregate_id, record.version, expected_version) from exc

    def rebuild(self, reset: Callable[[Connection], object]) -> int:
        """``events rebuild``: in one transaction, ``reset`` empties the projections and every
        record is replayed through the projector, in log order. Returns the records replayed."""
        with self.transaction() as conn:
            reset(conn)
            return replay(self.records(), lambda record: self._projector(conn, record))

    def checkpoint(self, signer: Signer) -> tuple[int, str] | None:
        """Sign the global head and every org head that moved, and re-sign the heartbeat, as
        :meth:`Signer.checkpoint` does on SQLite; return the global (seq, hash) newly signed."""
        with self.transaction() as conn:
            seq, head = self.head()
            last = conn.execute("SELECT COALESCE(MAX(seq), 0) AS s FROM checkpoints").fetchone()
            _sign_orgs(conn, signer)
            beat = signer.sign("heartbeat", None, seq, head)
            conn.execute(
                "INSERT INTO heartbeat (id, seq, hash, signature, at) VALUES (1, %s, %s, %s, %s)"
                " ON CONFLICT (id) DO UPDATE SET seq = excluded.seq, hash = excluded.hash,"
                " signature = excluded.signature, at = excluded.at",
                (seq, head, beat.signature, beat.at),
            )
            if seq == 0 or seq <= (last["s"] if last else 0):
                return None
            signed = signer.sign("global", None, seq, head)
            conn.execute(
                "INSERT INTO checkpoints (seq, hash, signature, at) VALUES (%s, %s, %s, %s)",
                (seq, head, signed.signature, signed.at),
            )
        return seq, head

    def close(self) -> None:
        self._conn.close()

    def _one(self, query: str, args: Sequence[Any] = ()) -> dict[str, Any] | None:
        with self._lock:
            return _QuestionMarks(self._conn).execute(query, args).fetchone()

    def _all(self, query: str, args: Sequence[Any]) -> list[dict[str, Any]]:
        with self._lock:
            return _QuestionMarks(self._conn).execute(query, args).fetchall()

    def _write(self, query: str, args: Sequence[Any]) -> None:
        _QuestionMarks(self._conn).execute(query, args)

    def _project(self, record: Recorded) -> None:
        self._projector(self._conn, record)


class _QuestionMarks:
    """The product's projection handlers on psycopg: they write SQLite's ``?`` parameters and
    otherwise SQL both engines speak (upserts are ``ON CONFLICT``, never ``INSERT OR REPLACE``);
    ``execute`` is all they call."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    def execute(self, query: str, params: Sequence[Any] = ()) -> psycopg.Cursor[dict[str, Any]]:
        if not params:  # no parameters: psycopg sends the text as it is
            return self._conn.execute(query)
        return self._conn.execute(query.replace("%", "%%").replace("?", "%s"), params)


def project(conn: Connection, record: Recorded) -> None:
    """The product's projections (:mod:`astralog.controlplane.projections`), on PostgreSQL."""
    projections.project(cast(sqlite3.Connection, _QuestionMarks(conn)), record)


def reset_projections(conn: Connection) -> None:
    """Empty every projection table: the first step of ``events rebuild``."""
    for table in projections.TABLES:
        conn.execute(sql.SQL("DELETE FROM {}").format(sql.Identifier(table)))


def open_product_store(url: str) -> PgEventStore:
    """The control plane's event store on PostgreSQL, with the product's projections."""
    return PgEventStore(url, project, projections.SCHEMA, projections.TABLES)


def _sign_orgs(conn: Connection, signer: Signer) -> None:
    moved = conn.execute(
        "SELECT DISTINCT ON (c.org_id) c.org_id, c.org_seq, c.org_hash FROM org_chain c"
        " LEFT JOIN (SELECT org_id, MAX(org_seq) AS top FROM org_checkpoints GROUP BY org_id) k"
        " ON k.org_id = c.org_id WHERE k.top IS NULL OR k.top < c.org_seq"
        " ORDER BY c.org_id, c.org_seq DESC"
    ).fetchall()
    for row in moved:
        signed = signer.sign("org", row["org_id"], row["org_seq"], row["org_hash"])
        conn.execute(
            "INSERT INTO org_checkpoints (org_id, org_seq, hash, signature, at)"
            " VALUES (%s, %s, %s, %s, %s)",
            (row["org_id"], row["org_seq"], row["org_hash"], signed.signature, signed.at),
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
            f"{_without_password(url)} holds no Astralog event log (no events table)"
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
