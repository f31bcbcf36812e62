"""Which node runs the jobs that must run on one node at a time.

Signing checkpoints, retention and the purges it triggers, compaction, erasures and alert
evaluation each act on state every node shares: two nodes running one would compact the same
batches twice or send each alert twice. With a SQLite control plane there is one node, and it
leads (:class:`Alone`). With PostgreSQL, the node holding a session-level advisory lock leads
(:class:`PgLeadership`): the server releases the lock when that node's connection ends, however it
ends (a clean stop, a crash, kill -9, a lost network), and the next node to ask takes it.
"""

from __future__ import annotations

import logging
from typing import Protocol

import psycopg
from psycopg import sql

from astralog.errors import ConfigError
from astralog.pgsql import Connection, connect

log = logging.getLogger("astralog.leadership")

# One lock for the cluster, the same number on every node ("leader" in ASCII).
LEADER_LOCK = 0x6C6561646572


class Leadership(Protocol):
    def holds(self) -> bool:
        """Whether this node leads now; asks for the lead when nobody holds it. Blocking."""
        ...

    def close(self) -> None: ...


class Alone:
    """A single node: it always leads."""

    def holds(self) -> bool:
        return True

    def close(self) -> None:
        pass


class PgLeadership:
    """The lead is a PostgreSQL advisory lock held by a connection of its own."""

    def __init__(self, url: str) -> None:
        self._url = url
        self._conn: Connection | None = None
        self._held = False

    def holds(self) -> bool:
        try:
            if self._conn is None:
                self._conn = connect(self._url)
            if self._held:  # still connected, so still holding it
                self._conn.execute("SELECT 1")
                return True
            row = self._conn.execute(
                sql.SQL(f"SELECT pg_try_advisory_lock({LEADER_LOCK}) AS held")
            ).fetchone()
            self._held = bool(row and row["held"])
        except (psycopg.Error, ConfigError) as exc:
            if self._held:
                log.warning("lost the connection that held the lead: %s", exc)
            self.close()
        return self._held

    def close(self) -> None:
        """Give the lead up (the server releases the lock with the connection)."""
        self._held = False
        if self._conn is not None:
            conn, self._conn = self._conn, None
            conn.close()


def leadership(database_url: str) -> Leadership:
    return PgLeadership(database_url) if database_url else Alone()
