"""Browser sessions: an HttpOnly cookie names a server-side session; a CSRF token guards writes.

A session is started with a management token (SSO will start one from an identity provider) and
remembers which token it came from, so revoking the token ends its sessions too. Only a SHA-256
of the session id is stored. State-changing requests that authenticate by cookie must echo the
session's CSRF token in ``X-CSRF-Token`` (the token is also readable in the ``astralog_csrf``
cookie and from ``GET /v1/session``).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from astralog import sqlite

SESSION_COOKIE = "astralog_session"
CSRF_COOKIE = "astralog_csrf"
CSRF_HEADER = "x-csrf-token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


@dataclass(frozen=True)
class Session:
    token_id: str
    csrf: str
    expires: float

    def csrf_ok(self, presented: str | None) -> bool:
        return presented is not None and hmac.compare_digest(presented, self.csrf)


def _digest(session_id: str) -> str:
    return hashlib.sha256(session_id.encode()).hexdigest()


class SessionStore:
    def __init__(self, path: Path, lifetime_seconds: int) -> None:
        self._conn = sqlite.connect(path)
        self._conn.execute(
            "CREATE TABLE IF NOT EXISTS sessions (digest TEXT PRIMARY KEY, data TEXT, expires REAL)"
        )
        self._lifetime = lifetime_seconds
        self._lock = threading.Lock()

    def start(self, token_id: str) -> tuple[str, Session]:
        session_id = secrets.token_urlsafe(32)
        session = Session(token_id, secrets.token_urlsafe(24), time.time() + self._lifetime)
        data = json.dumps({"token_id": token_id, "csrf": session.csrf})
        with self._lock:
            self._conn.execute("DELETE FROM sessions WHERE expires <= ?", (time.time(),))
            self._conn.execute(
                "INSERT INTO sessions VALUES (?, ?, ?)",
                (_digest(session_id), data, session.expires),
            )
        return session_id, session

    def get(self, session_id: str) -> Session | None:
        with self._lock:
            row = self._conn.execute(
                "SELECT data, expires FROM sessions WHERE digest = ? AND expires > ?",
                (_digest(session_id), time.time()),
            ).fetchone()
        if row is None:
            return None
        data = json.loads(row[0])
        return Session(data["token_id"], data["csrf"], float(row[1]))

    def end(self, session_id: str) -> None:
        with self._lock:
            self._conn.execute("DELETE FROM sessions WHERE digest = ?", (_digest(session_id),))

    def close(self) -> None:
        self._conn.close()
