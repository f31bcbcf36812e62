"""SQLite as every local store here uses it: WAL journal, durable commits, serialised writes."""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path


def connect(path: Path, *, read_only: bool = False) -> sqlite3.Connection:
    """Autocommit connection shared across threads (callers serialise with a lock)."""
    if read_only:
        return sqlite3.connect(f"file:{path}?mode=ro", uri=True, check_same_thread=False)
    _create_private(path)
    conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")  # a commit is on disk when it returns
    conn.execute("PRAGMA busy_timeout=5000")
    return conn


def _create_private(path: Path) -> None:
    """A new store is readable by this user alone (0600 in a 0700 directory), whatever the
    umask: these files hold key hashes, sessions and the audit history. SQLite gives the -wal
    and -shm files the database file's mode."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.close(os.open(path, os.O_RDWR | os.O_CREAT, 0o600))  # an existing file keeps its mode


@contextmanager
def transaction(
    conn: sqlite3.Connection, lock: threading.Lock | threading.RLock
) -> Iterator[sqlite3.Connection]:
    """One serialised write transaction: all or nothing."""
    with lock:
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")


class Database:
    """A SQLite file one process's threads share, with the same three verbs as
    :class:`astralog.pgsql.PgDatabase`: ``transaction``, ``reading`` and ``create``."""

    def __init__(self, path: Path) -> None:
        self._conn = connect(path)
        self._conn.row_factory = sqlite3.Row  # by name or position, as pgsql.Row
        self._lock = threading.Lock()

    def transaction(self) -> AbstractContextManager[sqlite3.Connection]:
        return transaction(self._conn, self._lock)

    @contextmanager
    def reading(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            yield self._conn

    def create(self, schema: str) -> None:
        with self._lock:
            self._conn.executescript(schema)

    def close(self) -> None:
        with self._lock:
            self._conn.close()
