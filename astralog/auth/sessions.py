"""Browser sessions: an HttpOnly cookie names a server-side session; a CSRF token guards writes.

A session id is 256 random bits and only its SHA-256 is stored, so a copy of the database opens
no session. A session belongs to a person (password or SSO sign-in) or to the management token it
was started with (the bootstrap path); revoking that token or deprovisioning that person ends it.
Each session has an idle and an absolute lifetime (the org's policy), remembers when its holder
last proved who they are (``auth_time``, for re-authentication before sensitive actions) and, for
SSO, the IdP's ``sid``/``sub`` so a back-channel logout can end it.

``stage`` is "full", or "mfa" (password accepted, second factor pending) or "enrol" (the org
requires MFA and the person has none yet): such a session opens only the routes of that step.

Pre-authentication state (an SSO sign-in's state, nonce and PKCE verifier; a passkey ceremony's
challenge) lives here too, under its own random id, for ten minutes, tagged with its kind and
taken (read and deleted) exactly once, by that kind only. Anyone may start an SSO sign-in, so
the rows are bounded: expired ones go at every write, and past ``PREAUTH_MAX_PER_OWNER`` live
rows per client address (or session), or ``PREAUTH_MAX`` in all, a new one is refused (429).

State-changing requests that authenticate by cookie must echo the session's CSRF token in
``X-CSRF-Token`` (readable in the ``astralog_csrf`` cookie and from ``GET /v1/session``).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import sqlite3
import time
from contextlib import AbstractContextManager
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from astralog import sqlite
from astralog.errors import RateLimited
from astralog.pgsql import open_database, upsert

SESSION_COOKIE = "astralog_session"
CSRF_COOKIE = "astralog_csrf"
PREAUTH_COOKIE = "astralog_preauth"
CSRF_HEADER = "x-csrf-token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
PREAUTH_SECONDS = 600
PREAUTH_MAX = 10_000  # live pre-auth rows in all: a flood fills no disk
PREAUTH_MAX_PER_OWNER = 100  # per client address or session: room for an office behind one NAT
_TOUCH_SECONDS = 15  # last_seen is written at most this often per session


@dataclass(frozen=True)
class Session:
    digest: str
    org_id: str
    csrf: str
    created: float
    last_seen: float
    idle_seconds: int
    absolute_seconds: int
    auth_time: float
    method: str  # password, sso, token
    person_id: str | None = None
    token_id: str | None = None
    amr: tuple[str, ...] = ()
    stage: str = "full"
    connection_id: str | None = None
    idp_sid: str | None = None
    idp_sub: str | None = None
    id_token_hint: str | None = None  # for RP-initiated logout; never leaves the server otherwise
    sso_tested_at: float | None = None
    sso_tested_connection: str | None = None  # the connection that test sign-in went through
    role_version: int = 0
    client: str = ""
    user_agent: str = ""
    break_glass: bool = False

    def csrf_ok(self, presented: str | None) -> bool:
        return presented is not None and hmac.compare_digest(presented, self.csrf)

    def expires(self) -> float:
        """When the session ends if left alone: idle or absolute, whichever comes first."""
        return min(self.last_seen + self.idle_seconds, self.created + self.absolute_seconds)

    def authenticated_within(self, seconds: float, now: float | None = None) -> bool:
        return (now or time.time()) - self.auth_time <= seconds

    def view(self, current: str | None = None) -> dict[str, Any]:
        """What "my sessions" shows: never the id, the CSRF token or the IdP's session id."""
        return {
            "id": self.digest[:16],
            "current": self.digest == current,
            "method": self.method,
            "amr": list(self.amr),
            "created": self.created,
            "last_seen": self.last_seen,
            "expires": self.expires(),
            "client": self.client,
            "user_agent": self.user_agent,
        }


def digest(session_id: str) -> str:
    return hashlib.sha256(session_id.encode()).hexdigest()


_COLUMNS = tuple(f.name for f in Session.__dataclass_fields__.values())


_SCHEMA = """
CREATE TABLE IF NOT EXISTS browser_sessions (
    digest TEXT PRIMARY KEY, org_id TEXT NOT NULL, person_id TEXT, token_id TEXT,
    connection_id TEXT, idp_sid TEXT, idp_sub TEXT, expires REAL NOT NULL, data TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS browser_sessions_person ON browser_sessions (person_id);
CREATE INDEX IF NOT EXISTS browser_sessions_org ON browser_sessions (org_id);
CREATE TABLE IF NOT EXISTS preauth (
    digest TEXT PRIMARY KEY, kind TEXT NOT NULL, owner TEXT NOT NULL,
    data TEXT NOT NULL, expires REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS preauth_owner ON preauth (owner, kind);
CREATE INDEX IF NOT EXISTS preauth_expires ON preauth (expires);
"""
_PUT_SESSION = upsert(
    "browser_sessions",
    "digest, org_id, person_id, token_id, connection_id, idp_sid, idp_sub, expires, data",
    "digest",
)
SESSIONS_LOCK = 0x73657373  # "sess": every node's session writes take turns under it


class SessionStore:
    """The sessions in the SQLite file ``path`` or, with ``database_url``, in PostgreSQL, where
    every node behind a load balancer knows every session."""

    def __init__(self, path: Path, database_url: str = "") -> None:
        self._db = open_database(path, database_url, SESSIONS_LOCK)
        if isinstance(self._db, sqlite.Database):
            _older_sqlite_shapes(self._db)
        self._db.create(_SCHEMA)

    def _tx(self) -> AbstractContextManager[sqlite3.Connection]:
        return self._db.transaction()

    # ---- sessions --------------------------------------------------------------------------

    def start(
        self,
        org_id: str,
        method: str,
        *,
        idle_seconds: int,
        absolute_seconds: int,
        **fields: Any,
    ) -> tuple[str, Session]:
        """A new session (never an id the client chose: sign-in always mints a fresh one)."""
        session_id = secrets.token_urlsafe(32)
        now = time.time()
        session = Session(
            digest=digest(session_id),
            org_id=org_id,
            csrf=secrets.token_urlsafe(24),
            created=now,
            last_seen=now,
            idle_seconds=idle_seconds,
            absolute_seconds=absolute_seconds,
            auth_time=now,
            method=method,
            **fields,
        )
        with self._tx() as conn:
            conn.execute("DELETE FROM browser_sessions WHERE expires <= ?", (now,))
            conn.execute("DELETE FROM preauth WHERE expires <= ?", (now,))
            self._write(conn, session)
        return session_id, session

    def get(self, session_id: str) -> Session | None:
        """The live session of ``session_id``, or None when unknown, idle too long or too old."""
        found = self.by_digest(digest(session_id))
        if found is None:
            return None
        now = time.time()
        if now - found.last_seen >= _TOUCH_SECONDS:
            found = replace(found, last_seen=now)
            with self._tx() as conn:
                self._write(conn, found)
        return found

    def by_digest(self, session_digest: str) -> Session | None:
        with self._db.reading() as conn:
            row = conn.execute(
                "SELECT data FROM browser_sessions WHERE digest = ? AND expires > ?",
                (session_digest, time.time()),
            ).fetchone()
        return None if row is None else _load(row[0])

    def update(self, session: Session, **changes: Any) -> Session:
        changed = replace(session, **changes)
        with self._tx() as conn:
            self._write(conn, changed)
        return changed

    def rotate(self, session_id: str) -> tuple[str, Session] | None:
        """The same session under a new id and CSRF token (after a role change or step-up)."""
        session = self.get(session_id)
        if session is None:
            return None
        new_id = secrets.token_urlsafe(32)
        rotated = replace(session, digest=digest(new_id), csrf=secrets.token_urlsafe(24))
        with self._tx() as conn:
            conn.execute("DELETE FROM browser_sessions WHERE digest = ?", (session.digest,))
            self._write(conn, rotated)
        return new_id, rotated

    def for_person(self, person_id: str) -> list[Session]:
        with self._db.reading() as conn:
            rows = conn.execute(
                "SELECT data FROM browser_sessions WHERE person_id = ? AND expires > ? "
                "ORDER BY expires",
                (person_id, time.time()),
            ).fetchall()
        return [_load(r[0]) for r in rows]

    def end(self, session_id: str) -> None:
        self.end_digest(digest(session_id))

    def end_digest(self, session_digest: str, person_id: str | None = None) -> int:
        """End one session; with ``person_id``, only if it is that person's."""
        return self._delete(
            "digest = ? AND person_id IS NOT DISTINCT FROM coalesce(?, person_id)",
            (session_digest, person_id),
        )

    def end_person(self, person_id: str) -> int:
        return self._delete("person_id = ?", (person_id,))

    def end_org(self, org_id: str) -> int:
        return self._delete("org_id = ?", (org_id,))

    def end_idp(self, connection_id: str, sid: str | None, sub: str | None) -> int:
        """A back-channel logout: every session of the IdP's ``sid``, or of ``sub``."""
        if sid:
            return self._delete("connection_id = ? AND idp_sid = ?", (connection_id, sid))
        return self._delete("connection_id = ? AND idp_sub = ?", (connection_id, sub))

    def _delete(self, where: str, params: tuple[Any, ...]) -> int:
        with self._tx() as conn:
            return int(conn.execute(f"DELETE FROM browser_sessions WHERE {where}", params).rowcount)

    @staticmethod
    def _write(conn: Any, session: Session) -> None:
        conn.execute(
            _PUT_SESSION,
            (session.digest, session.org_id, session.person_id, session.token_id,
             session.connection_id, session.idp_sid, session.idp_sub, session.expires(),
             json.dumps(asdict(session))),
        )  # fmt: skip

    # ---- pre-authentication state (SSO sign-ins, passkey ceremonies) -------------------------

    def put_preauth(
        self, kind: str, data: dict[str, Any], *, owner: str, only: bool = False
    ) -> str:
        """Keep ``data`` for ``PREAUTH_SECONDS`` under a new id. ``owner`` (a client address or a
        session digest) bounds how many one caller holds; with ``only``, the owner's earlier
        rows of this kind end (one live passkey ceremony per session and purpose)."""
        preauth_id = secrets.token_urlsafe(32)
        now = time.time()
        with self._tx() as conn:
            conn.execute("DELETE FROM preauth WHERE expires <= ?", (now,))
            if only:
                conn.execute("DELETE FROM preauth WHERE owner = ? AND kind = ?", (owner, kind))
            _check_room(conn, owner, now)
            conn.execute(
                "INSERT INTO preauth (digest, kind, owner, data, expires) VALUES (?, ?, ?, ?, ?)",
                (digest(preauth_id), kind, owner, json.dumps(data), now + PREAUTH_SECONDS),
            )
        return preauth_id

    def take_preauth(self, preauth_id: str, kind: str) -> dict[str, Any] | None:
        """The state of one attempt of ``kind``, exactly once: a replayed callback finds nothing,
        and an id of another kind (a passkey ceremony as an SSO cookie) finds nothing either."""
        with self._tx() as conn:
            row = conn.execute(
                "DELETE FROM preauth WHERE digest = ? AND kind = ? AND expires > ? RETURNING data",
                (digest(preauth_id), kind, time.time()),
            ).fetchone()
        return None if row is None else dict(json.loads(row[0]))

    def close(self) -> None:
        self._db.close()


def _older_sqlite_shapes(db: sqlite.Database) -> None:
    """Drop what an older release left in its SQLite file: the sessions of tokens only (before
    people), and untagged pre-auth rows (ten minutes of state, so nothing is lost)."""
    with db.transaction() as conn:
        conn.execute("DROP TABLE IF EXISTS sessions")
        columns = {row[1] for row in conn.execute("PRAGMA table_info(preauth)")}
        if columns and "kind" not in columns:
            conn.execute("DROP TABLE preauth")


def _check_room(conn: Any, owner: str, now: float) -> None:
    """Refuse a new pre-auth row past the caller's or the service's cap, saying when one frees."""
    for where, params, cap in (
        ("owner = ?", (owner,), PREAUTH_MAX_PER_OWNER),
        ("1 = 1", (), PREAUTH_MAX),
    ):
        count, first = conn.execute(
            f"SELECT count(*), min(expires) FROM preauth WHERE {where}", params
        ).fetchone()
        if count >= cap:
            wait = max(1, int(float(first) - now + 0.999))
            raise RateLimited(
                f"too many sign-ins are under way; finish one, or try again in {wait} s", wait
            )


def _load(data: str) -> Session:
    values = json.loads(data)
    values["amr"] = tuple(values.get("amr", ()))
    return Session(**{k: values[k] for k in _COLUMNS if k in values})
