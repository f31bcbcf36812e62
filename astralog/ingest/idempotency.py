"""``Idempotency-Key``: a retried ingest request within the window returns the first answer.

The answer is recorded after the events are durable in the WAL. A crash between the WAL fsync and
this record means a retry is stored again (at least once); the window otherwise makes it a no-op.
Concurrent duplicates are serialised per key so only one of them appends.
"""

from __future__ import annotations

import asyncio
import json
import re
import threading
import time
from pathlib import Path
from typing import Any

from astralog import sqlite
from astralog.errors import BadRequest

_VALID = re.compile(r"^[\x21-\x7e]{1,255}$")


def check_key(key: str) -> str:
    if not _VALID.match(key):
        raise BadRequest(
            "Idempotency-Key must be 1-255 printable ASCII characters without spaces "
            "(a UUID is a good choice)"
        )
    return key


class IdempotencyStore:
    def __init__(self, path: Path, window_seconds: int) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._conn = sqlite.connect(path)
        self._conn.execute(
            "CREATE TABLE IF NOT EXISTS answers (org_id TEXT, source_id TEXT, key TEXT, "
            "status INTEGER, body TEXT, expires REAL, PRIMARY KEY (org_id, source_id, key))"
        )
        self._window = window_seconds
        self._lock = threading.Lock()
        self._key_locks: dict[tuple[str, str, str], asyncio.Lock] = {}

    def key_lock(self, org_id: str, source_id: str, key: str) -> asyncio.Lock:
        ident = (org_id, source_id, key)
        lock = self._key_locks.get(ident)
        if lock is None:
            if len(self._key_locks) > 10_000:  # bounded: drop idle locks
                self._key_locks = {k: v for k, v in self._key_locks.items() if v.locked()}
            lock = self._key_locks[ident] = asyncio.Lock()
        return lock

    def lookup(self, org_id: str, source_id: str, key: str) -> tuple[int, Any] | None:
        with self._lock:
            row = self._conn.execute(
                "SELECT status, body FROM answers WHERE org_id = ? AND source_id = ? AND key = ? "
                "AND expires > ?",
                (org_id, source_id, key, time.time()),
            ).fetchone()
        return (int(row[0]), json.loads(row[1])) if row else None

    def remember(self, org_id: str, source_id: str, key: str, status: int, body: Any) -> None:
        with self._lock:
            self._conn.execute(
                "INSERT OR REPLACE INTO answers VALUES (?, ?, ?, ?, ?, ?)",
                (org_id, source_id, key, status, json.dumps(body), time.time() + self._window),
            )

    def purge(self) -> int:
        with self._lock:
            return self._conn.execute(
                "DELETE FROM answers WHERE expires <= ?", (time.time(),)
            ).rowcount

    def close(self) -> None:
        self._conn.close()
