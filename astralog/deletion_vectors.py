"""Deletion vectors: the event ids an erasure hides, per hour partition of a source.

Stage: beside the catalog, read by the query planner. Objects are written per org, source and
hour, so a vector keyed by ``(org, source, hour)`` is the vector of every object of that
partition: of those committed when the erasure was masked, of those the flusher commits later
from WAL rows that were still pending then, and of the rewritten objects that replace them. The
planner adds the ids of the hours a search reads to its WHERE, so an erased event leaves search,
histogram, facets, tail and export at once, from every destination. Vectors are kept after the
rewrite: they cost a few bytes an event and keep a late copy (a WAL segment replayed after a
crash) hidden too; an org export leaves them out of its copy of an object not yet rewritten.
They go with the org's data when the org is deleted. Durable when :meth:`DeletionVectors.add`
returns (SQLite, synchronous=FULL, or a PostgreSQL commit). With ``database_url`` they are kept in
the control plane's PostgreSQL, so an erasure hides its events from every node's searches.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from pathlib import Path

from astralog.pgsql import open_database

__all__ = ["DeletionVectors", "hour_of"]

HOUR_NS = 3600 * 10**9
VECTORS_LOCK = 0x76656374  # "vect": every node's writes take turns under it
_SCHEMA = """
CREATE TABLE IF NOT EXISTS deletion_vectors (
    org_id     TEXT NOT NULL,
    source_id  TEXT NOT NULL,
    hour_ns    INTEGER NOT NULL,
    event_id   TEXT NOT NULL,
    erasure_id TEXT NOT NULL,
    PRIMARY KEY (org_id, source_id, hour_ns, event_id)
);
CREATE INDEX IF NOT EXISTS deletion_vectors_erasure ON deletion_vectors (erasure_id);
"""


def hour_of(ts_ns: int) -> int:
    """The start of the hour partition holding ``ts_ns``: what a vector is keyed by."""
    return ts_ns - ts_ns % HOUR_NS


class DeletionVectors:
    def __init__(self, path: Path, database_url: str = "") -> None:
        self._db = open_database(Path(path), database_url, VECTORS_LOCK)
        self._db.create(_SCHEMA)

    def close(self) -> None:
        self._db.close()

    def add(self, org_id: str, erasure_id: str, events: Iterable[tuple[str, int, str]]) -> int:
        """Hide ``(source_id, timestamp_ns, event_id)`` events; return how many were new."""
        rows = [(org_id, s, hour_of(ts), e, erasure_id) for s, ts, e in events]
        with self._db.transaction() as conn:
            return conn.executemany(
                "INSERT INTO deletion_vectors VALUES (?, ?, ?, ?, ?) ON CONFLICT DO NOTHING", rows
            ).rowcount

    def erased(
        self, org_id: str, source_ids: Collection[str], start_ns: int, end_ns: int
    ) -> list[str]:
        """The hidden event ids of these sources' hours overlapping ``[start_ns, end_ns)``."""
        if not source_ids:
            return []
        marks = ", ".join("?" * len(source_ids))
        query = (
            "SELECT event_id FROM deletion_vectors WHERE org_id = ? AND hour_ns > ? "
            f"AND hour_ns < ? AND source_id IN ({marks}) ORDER BY event_id"
        )
        params = [org_id, start_ns - HOUR_NS, end_ns, *source_ids]
        with self._db.reading() as conn:
            return [str(r[0]) for r in conn.execute(query, params)]

    def of_erasure(self, erasure_id: str) -> dict[tuple[str, int], set[str]]:
        """``(source_id, hour_ns)`` -> the event ids one erasure hides there."""
        return self._by_partition("erasure_id", erasure_id)

    def of_org(self, org_id: str) -> dict[tuple[str, int], set[str]]:
        """``(source_id, hour_ns)`` -> the event ids every erasure of the org hides there."""
        return self._by_partition("org_id", org_id)

    def forget_org(self, org_id: str) -> int:
        """Drop the org's vectors once its data is purged everywhere; how many rows went."""
        with self._db.transaction() as conn:
            return conn.execute("DELETE FROM deletion_vectors WHERE org_id = ?", (org_id,)).rowcount

    def _by_partition(self, column: str, value: str) -> dict[tuple[str, int], set[str]]:
        query = f"SELECT source_id, hour_ns, event_id FROM deletion_vectors WHERE {column} = ?"
        out: dict[tuple[str, int], set[str]] = {}
        with self._db.reading() as conn:
            for source_id, hour_ns, event_id in conn.execute(query, (value,)):
                out.setdefault((str(source_id), int(hour_ns)), set()).add(str(event_id))
        return out
