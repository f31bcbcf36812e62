"""The product's SQL, written once for SQLite, run on PostgreSQL.

Every store here speaks SQL both engines understand (upserts are ``ON CONFLICT``, never
``INSERT OR REPLACE``; ``IS NOT DISTINCT FROM``, never ``IS ?``), with SQLite's ``?`` and ``?N``
parameters and rows read like :class:`sqlite3.Row`. :class:`Compat` is the one place that bridges
what remains:

* parameters: ``?`` becomes psycopg's ``%s``, ``?N`` is expanded in order, a literal ``%`` is
  doubled (psycopg reads it as the start of a placeholder), and text with a NUL character (which
  PostgreSQL cannot store) is a :class:`~astralog.errors.BadRequest`;
* rows: :class:`Row` reads by position, by column name (case-insensitive, as SQLite's), unpacks
  as a tuple and converts with ``dict(row)``;
* table definitions (any ``CREATE`` statement): :func:`ddl` widens SQLite's types to
  PostgreSQL's of the same range (``INTEGER`` is 64-bit in SQLite but 32-bit in PostgreSQL;
  ``REAL`` is a double in SQLite).
"""

from __future__ import annotations

import contextlib
import functools
import re
import sqlite3
import threading
import urllib.parse
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, ClassVar, cast

import psycopg
from psycopg import conninfo, sql
from psycopg.rows import RowMaker, dict_row

from astralog import sqlite
from astralog.errors import BadRequest, ConfigError, Unavailable

Connection = psycopg.Connection[dict[str, Any]]

# A string literal (kept whole, so a ``?`` inside it is text), a parameter, or a percent sign.
_TOKEN = re.compile(r"'(?:[^']|'')*'|\?(\d*)|%")
_TYPES = {"INTEGER": "BIGINT", "REAL": "DOUBLE PRECISION", "BLOB": "BYTEA"}
_TYPE = re.compile(r"\b(INTEGER|REAL|BLOB)\b")
_AUTOINCREMENT = re.compile(r"\bINTEGER\s+PRIMARY\s+KEY\s+AUTOINCREMENT\b", re.IGNORECASE)
_NO_ROWID = re.compile(r"\bWITHOUT\s+ROWID\b", re.IGNORECASE)
_COMMENT = re.compile(r"--[^\n]*")
_NAMED = re.compile(
    r"CREATE\s+(?:UNIQUE\s+)?(?:TABLE|INDEX)\s+IF\s+NOT\s+EXISTS\s+(\w+)", re.IGNORECASE
)
_CREATE = re.compile(r"\s*CREATE\s", re.IGNORECASE)


class Row(tuple[Any, ...]):
    """A row read the way :class:`sqlite3.Row` is. Each column list has a subclass of its own
    (:func:`_row_class`), which holds the names, so a row is a plain tuple underneath."""

    __slots__ = ()
    _index: ClassVar[dict[str, int]] = {}

    def __getitem__(self, key: Any) -> Any:
        if isinstance(key, str):
            try:
                key = self._index[key.lower()]
            except KeyError:
                raise IndexError(f"no such column: {key}") from None
        return tuple.__getitem__(self, key)

    def keys(self) -> list[str]:
        return list(self._index)


@functools.lru_cache(maxsize=1024)
def _row_class(names: tuple[str, ...]) -> type[Row]:
    index = {name.lower(): i for i, name in enumerate(names)}
    return type("Row", (Row,), {"__slots__": (), "_index": index})


def sqlite_rows(cursor: psycopg.Cursor[Any]) -> RowMaker[Row]:
    names = tuple(column.name for column in cursor.description or ())
    return _row_class(names)


def connect(url: str) -> Connection:
    """A connection in autocommit mode: reads see what other nodes committed, and writes open
    their own transaction (:meth:`PgDatabase.transaction`)."""
    try:
        return psycopg.connect(url, autocommit=True, row_factory=dict_row, connect_timeout=10)
    except psycopg.Error as exc:
        raise ConfigError(
            f"cannot open the PostgreSQL control plane at {without_password(url)}: "
            f"{_scrubbed(str(exc).strip(), url)}; check ASTRALOG_CONTROL__DATABASE_URL and that "
            "the server is up"
        ) from None  # the driver's exception quotes the URL, password included


def without_password(url: str) -> str:
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


def translate(query: str, params: Sequence[Any]) -> tuple[str, Sequence[Any]]:
    """``query`` with psycopg's placeholders, and the parameters in the order they appear.
    PostgreSQL's text cannot hold a NUL character: a parameter with one is refused here, as a
    request error, not left to fail in the driver."""
    if any(isinstance(param, str) and "\x00" in param for param in params):
        raise BadRequest("text may not contain the NUL character (U+0000)")
    order: list[int | None] = []

    def swap(match: re.Match[str]) -> str:
        text = match.group(0)
        if text.startswith("'"):
            return text.replace("%", "%%")
        if text == "%":
            return "%%"
        order.append(int(match.group(1)) - 1 if match.group(1) else None)
        return "%s"

    translated = _TOKEN.sub(swap, query)
    if any(number is not None for number in order):
        if None in order:
            raise ValueError("a statement mixes ? and ?N parameters")
        params = [params[number] for number in order if number is not None]
    return translated, params


def missing(conn: Connection, schema: str) -> list[str]:
    """The statements of ``schema`` whose table or index is not there yet. The others are left
    out: PostgreSQL checks the privilege to create before it looks whether the object exists, so
    a role that may write the tables but not own them (the writer role of
    docs/several-nodes.md) could not even run ``CREATE TABLE IF NOT EXISTS`` on them."""
    statements = [s.strip() for s in _COMMENT.sub("", schema).split(";") if s.strip()]
    todo = []
    for statement in statements:
        named = _NAMED.match(statement)
        if named:
            row = conn.execute("SELECT to_regclass(%s) AS found", (named.group(1),)).fetchone()
            if row is not None and row["found"] is not None:
                continue
        todo.append(statement)
    return todo


def upsert(table: str, columns: str, key: str) -> str:
    """Insert a row, or replace the one with the same ``key``: SQLite's ``INSERT OR REPLACE``
    in SQL both engines speak."""
    names = [name.strip() for name in columns.split(",")]
    keys = {name.strip() for name in key.split(",")}
    updates = ", ".join(f"{name} = excluded.{name}" for name in names if name not in keys)
    return (
        f"INSERT INTO {table} ({', '.join(names)}) VALUES ({', '.join('?' * len(names))})"
        f" ON CONFLICT ({key}) DO UPDATE SET {updates}"
    )


def ddl(schema: str) -> str:
    """SQLite table definitions with PostgreSQL's types of the same range, an identity column
    for ``AUTOINCREMENT``, and without SQLite's storage hint ``WITHOUT ROWID``."""
    schema = _AUTOINCREMENT.sub("BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY", schema)
    return _TYPE.sub(lambda match: _TYPES[match.group(1)], _NO_ROWID.sub("", schema))


class Compat:
    """A psycopg connection used the way the product uses :mod:`sqlite3`: ``execute`` and
    ``executemany`` with SQLite's parameters, rows like :class:`sqlite3.Row`."""

    def __init__(self, conn: Connection) -> None:
        self.raw = conn

    def execute(self, query: str, params: Sequence[Any] = ()) -> psycopg.Cursor[Row]:
        cursor = self.raw.cursor(row_factory=sqlite_rows)
        if _CREATE.match(query):
            query = ";\n".join(missing(self.raw, ddl(query)))
            if not query:
                return cursor  # all there already
        if not params:  # no parameters: psycopg sends the text as it is
            return cursor.execute(query)
        return cursor.execute(*translate(query, params))

    def executemany(self, query: str, rows: Iterable[Sequence[Any]]) -> psycopg.Cursor[Row]:
        cursor = self.raw.cursor(row_factory=sqlite_rows)
        translated = [translate(query, row) for row in rows]
        if translated:
            cursor.executemany(translated[0][0], [params for _, params in translated])
        return cursor


class PgDatabase:
    """One PostgreSQL connection a store's threads share (one statement at a time), used the way
    the SQLite stores use theirs: ``transaction`` and ``reading`` give a connection that reads like
    :mod:`sqlite3`. Every write transaction first takes the advisory lock ``lock_key``, so writers
    on every node take turns as they do on one SQLite file: a read-then-write (the next sequence
    number, whether a batch is still listed) sees what the last writer committed."""

    def __init__(self, url: str, lock_key: int) -> None:
        self.url = url
        self.raw = connect(url)
        self.lock_key = lock_key
        self._compat = cast(sqlite3.Connection, Compat(self.raw))
        self._lock = threading.RLock()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """All or nothing; the advisory lock is released by the commit or rollback."""
        with self._lock, self._unreachable_is_503():
            raw = self._live()
            with raw.transaction():
                raw.execute(sql.SQL(f"SELECT pg_advisory_xact_lock({int(self.lock_key)})"))
                yield self._compat

    @contextmanager
    def reading(self) -> Iterator[sqlite3.Connection]:
        with self._lock, self._unreachable_is_503():
            self._live()
            yield self._compat

    def _live(self) -> Connection:
        """The connection, opened again if the last one was lost (a restarted server, a cut)."""
        if self.raw.broken or self.raw.closed:
            self.raw = connect(self.url)
            self._compat = cast(sqlite3.Connection, Compat(self.raw))
        return self.raw

    @contextmanager
    def _unreachable_is_503(self) -> Iterator[None]:
        """A lost server is the client's "try again" (503 and Retry-After), never a 500; the
        next statement reconnects."""
        try:
            yield
        except (psycopg.OperationalError, psycopg.InterfaceError, ConfigError) as exc:
            detail = _scrubbed(str(exc).strip(), self.url)
            raise Unavailable(
                f"the PostgreSQL control plane at {without_password(self.url)} did not answer "
                f"({detail}); try again",
                retry_after=1,
            ) from None

    def unreachable(self) -> str | None:
        """Why the database cannot be used now, or None (for readiness)."""
        try:
            with self.reading() as conn:
                conn.execute("SELECT 1").fetchone()
        except Unavailable as exc:
            return exc.detail
        return None

    def create(self, schema: str) -> None:
        """Run SQLite table definitions (``CREATE ... IF NOT EXISTS``) for what is missing, under
        the lock: two nodes starting at once would otherwise race to create the same table."""
        with self._lock:
            if not missing(self.raw, ddl(schema)):
                return
        with self.transaction():
            todo = missing(self.raw, ddl(schema))  # again, under the lock
            if todo:
                self.raw.execute(";\n".join(todo))

    def close(self) -> None:
        self.raw.close()


def open_database(path: Path, url: str, lock_key: int) -> sqlite.Database | PgDatabase:
    """A store's database: PostgreSQL when ``url`` names one (shared by every node, writes
    taking turns under the advisory lock ``lock_key``), else the SQLite file ``path``."""
    return PgDatabase(url, lock_key) if url else sqlite.Database(path)
