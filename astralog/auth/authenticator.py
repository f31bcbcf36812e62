"""Authentication on the hot path: a presented secret becomes a ``Principal``, or a refusal.

Reads the key and token projections through a short-lived cache (never the event log); a
revocation or rotation on this node forgets its entry at once. When a credential was last used
is operational data, not an event: it is noted in memory and stored in batches.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from astralog.auth import credentials
from astralog.auth.credentials import Credential, Kind
from astralog.auth.principal import Principal, PrincipalKind
from astralog.auth.roles import ROLES
from astralog.errors import Unauthenticated


def now() -> datetime:
    return datetime.now(UTC)


_OF_DELETED_ORG = (
    "SELECT 1 FROM org_deletions WHERE state = 'deleted' AND org_id IN (SELECT org_id FROM "
    "ingest_keys WHERE id = ?1 UNION ALL SELECT org_id FROM tokens WHERE id = ?1)"
)


class Projections(Protocol):
    """Where the key and token projections are read (the control-plane store)."""

    def reading(self) -> AbstractContextManager[sqlite3.Connection]: ...

    def transaction(self) -> AbstractContextManager[sqlite3.Connection]: ...


@dataclass(frozen=True)
class _CacheEntry:
    principal: Principal
    digest: str
    refusal: str
    valid_until: datetime | None
    fetched: float = field(default_factory=time.monotonic)


class Authenticator:
    def __init__(self, store: Projections, pepper: str, cache_seconds: float = 5.0) -> None:
        self._store = store
        self._pepper = pepper
        self._cache_seconds = cache_seconds
        self._cache: dict[str, _CacheEntry] = {}
        self._used: dict[str, float] = {}
        self._cache_lock = threading.Lock()
        self.on_used: Callable[[list[tuple[str, float]]], None] = lambda used: None
        """Told, after each batch is stored, which credentials were used and when."""
        self.on_lookup: Callable[[bool], None] = lambda hit: None
        """Told of every lookup whether the cache answered it."""
        with store.transaction() as conn:
            conn.execute(
                "CREATE TABLE IF NOT EXISTS credential_usage (id TEXT PRIMARY KEY, last_used REAL)"
            )

    def authenticate(self, secret: str) -> Principal:
        """Turn a presented secret into a Principal, or raise Unauthenticated saying why."""
        cred = credentials.parse(secret)  # shape and checksum: no lookup for a typo
        entry = self._entry(cred.key_id, lambda: self._load(cred))
        if not credentials.matches(cred.secret, entry.digest, self._pepper):
            raise Unauthenticated("unknown or wrong credential")
        if entry.refusal:
            raise Unauthenticated(entry.refusal)
        if entry.valid_until is not None and entry.valid_until <= now():
            raise Unauthenticated("this credential has expired or was rotated; use its replacement")
        self._used[cred.key_id] = time.time()  # a dict write on the hot path; stored in batches
        return entry.principal

    def token_principal(self, token_id: str) -> Principal:
        """The principal of a management token by id: a browser session remembers the token it
        was started with (never its secret), so revoking the token ends the session too."""
        entry = self._entry(token_id, lambda: self._load(Credential(Kind.MANAGEMENT, token_id, "")))
        if entry.refusal:
            raise Unauthenticated(entry.refusal + "; sign in again")
        return entry.principal

    def person_principal(self, person_id: str) -> Principal:
        """The principal of a person's browser session: their role's scopes, now."""
        entry = self._entry(person_id, lambda: self._load_person(person_id))
        if entry.refusal:
            raise Unauthenticated(entry.refusal + "; sign in again")
        return entry.principal

    def digest(self, secret: str) -> str:
        return credentials.digest(secret, self._pepper)

    def forget(self, key_id: str) -> None:
        with self._cache_lock:
            self._cache.pop(key_id, None)

    def clear(self) -> None:
        with self._cache_lock:
            self._cache.clear()

    def record_usage(self) -> int:
        """Store when credentials were last used (operational data, not an event)."""
        used, self._used = self._used, {}
        items = list(used.items())  # one C-level copy: a late writer cannot break the loop
        if items:
            with self._store.transaction() as conn:
                # A purged org's credentials still answer (410 Gone) but leave no trace.
                conn.executemany(
                    "INSERT INTO credential_usage (id, last_used) SELECT ?1, ?2 WHERE NOT EXISTS "
                    f"({_OF_DELETED_ORG}) "
                    "ON CONFLICT (id) DO UPDATE SET last_used = CASE WHEN excluded.last_used > "
                    "credential_usage.last_used THEN excluded.last_used "
                    "ELSE credential_usage.last_used END",
                    items,
                )
            self.on_used(items)
        return len(items)

    def forget_org_usage(self, org_id: str) -> None:
        """When the org's keys and tokens were last used: gone with the org's purge."""
        with self._store.transaction() as conn:
            conn.execute(
                "DELETE FROM credential_usage WHERE id IN (SELECT id FROM ingest_keys WHERE "
                "org_id = ?1 UNION ALL SELECT id FROM tokens WHERE org_id = ?1)",
                (org_id,),
            )

    def _entry(self, key_id: str, load: Callable[[], _CacheEntry]) -> _CacheEntry:
        entry = self._cache.get(key_id)
        hit = entry is not None and entry.fetched + self._cache_seconds >= time.monotonic()
        self.on_lookup(hit)
        if entry is None or not hit:
            entry = load()
            with self._cache_lock:
                self._cache[key_id] = entry
        return entry

    def _load(self, cred: Credential) -> _CacheEntry:
        table = "ingest_keys" if cred.kind is Kind.INGEST else "tokens"
        with self._store.reading() as conn:
            row = conn.execute(f"SELECT * FROM {table} WHERE id = ?", (cred.key_id,)).fetchone()
        if row is None:
            raise Unauthenticated("unknown or wrong credential")
        if cred.kind is Kind.INGEST:
            return _ingest_entry(dict(row))
        if row["person_id"]:
            return self._personal_entry(dict(row))
        return _token_entry(dict(row), cred.kind)

    def _person_row(self, person_id: str) -> dict[str, Any] | None:
        with self._store.reading() as conn:
            row = conn.execute("SELECT * FROM people WHERE id = ?", (person_id,)).fetchone()
        return None if row is None else dict(row)

    def _load_person(self, person_id: str) -> _CacheEntry:
        person = self._person_row(person_id)
        if person is None:
            raise Unauthenticated("unknown account")
        principal = _person_principal(person, ROLES[person["role"]].scopes)
        if person["kind"] != "person":
            return _CacheEntry(principal, "", "a service account cannot sign in", None)
        return _CacheEntry(principal, "", _person_refusal(person), None)

    def _sso_refusal(self, person: dict[str, Any]) -> str:
        """Where the org enforces SSO, a person's token works only while they have signed in
        with SSO within the org's absolute session lifetime: enforcement reaches API use by
        people, not only the browser. Service accounts and the break-glass owner are exempt."""
        if person["kind"] != "person" or person["break_glass"]:
            return ""
        with self._store.reading() as conn:
            policy = conn.execute(
                "SELECT enforce_sso, session_absolute_hours FROM org_policies WHERE org_id = ?",
                (person["org_id"],),
            ).fetchone()
        if policy is None or not policy[0]:
            return ""
        last = person["last_sso_sign_in"]
        hours = int(policy[1])
        if last and now() - datetime.fromisoformat(last) < timedelta(hours=hours):
            return ""
        return (
            f"this org enforces single sign-on: sign in with SSO to use your personal tokens "
            f"(they work for {hours} h after each SSO sign-in)"
        )

    def _personal_entry(self, row: dict[str, Any]) -> _CacheEntry:
        """A personal or service-account token: its scopes ∩ its owner's role, now."""
        person = self._person_row(row["person_id"])
        if person is None:
            raise Unauthenticated("unknown or wrong credential")
        scopes = frozenset(json.loads(row["scopes"])) & ROLES[person["role"]].scopes
        refusal = "this token was revoked" if row["revoked_at"] else _person_refusal(person)
        refusal = refusal or self._sso_refusal(person)
        expires = datetime.fromisoformat(row["expires_at"]) if row["expires_at"] else None
        return _CacheEntry(
            replace(_person_principal(person, scopes), id=f"token:{row['id']}"),
            row["digest"],
            refusal,
            expires,
        )


def _ingest_entry(row: dict[str, Any]) -> _CacheEntry:
    principal = Principal(
        f"key:{row['id']}", "ingest", row["org_id"], frozenset(), row["source_id"]
    )
    ends = [datetime.fromisoformat(v) for v in (row["expires_at"], row["valid_until"]) if v]
    refusal = "this ingest key was revoked" if row["revoked_at"] else ""
    return _CacheEntry(principal, row["digest"], refusal, min(ends, default=None))


def _person_refusal(person: dict[str, Any]) -> str:
    return "" if person["state"] == "active" else "this account was deprovisioned"


def _person_principal(person: dict[str, Any], scopes: frozenset[str]) -> Principal:
    readable = None if person["sources"] is None else frozenset(json.loads(person["sources"]))
    kind: PrincipalKind = "person" if person["kind"] == "person" else "service"
    return Principal(
        f"person:{person['id']}",
        kind,
        person["org_id"],
        scopes,
        person_id=person["id"],
        role=person["role"],
        readable=readable,
    )


def _token_entry(row: dict[str, Any], presented: Kind) -> _CacheEntry:
    kind: PrincipalKind = "operator" if presented is Kind.OPERATOR else "management"
    if row["kind"] != kind:
        raise Unauthenticated("unknown or wrong credential")
    principal = Principal(
        f"token:{row['id']}", kind, row["org_id"], frozenset(json.loads(row["scopes"]))
    )
    refusal = "this token was revoked" if row["revoked_at"] else ""
    return _CacheEntry(principal, row["digest"], refusal, None)
