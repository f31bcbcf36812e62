"""Commands on the control plane: validate against current state, then append events.

Each command runs in one serialised transaction (read projection, decide, append, project), so a
refused command leaves no trace and an accepted one is in the log and the projections together.
Reads for the hot path (``authenticate``) go through a short-lived cache, never the log.
"""

from __future__ import annotations

import json
import re
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from astralog.auth import credentials
from astralog.auth.credentials import Credential, Kind
from astralog.auth.principal import SCOPES, Principal, PrincipalKind
from astralog.controlplane import events as ev
from astralog.controlplane import projections
from astralog.controlplane.plans import DEFAULT_PLANS, LIMIT_HELP
from astralog.controlplane.store import Actor, EventStore
from astralog.errors import BadRequest, Conflict, Forbidden, NotFound, Unauthenticated
from astralog.ids import new_id

NAME_RULE = re.compile(r"^[a-z0-9][a-z0-9._-]{0,62}$")
MAX_GRACE_MINUTES = 7 * 24 * 60


def now() -> datetime:
    return datetime.now(UTC)


def check_name(name: str, what: str) -> str:
    if not NAME_RULE.match(name):
        raise BadRequest(
            f"invalid {what} name {name[:80]!r}: use 1-63 lowercase letters, digits, '.', '_' or "
            "'-', starting with a letter or digit"
        )
    return name


@dataclass(frozen=True)
class _CacheEntry:
    principal: Principal
    digest: str
    refusal: str
    valid_until: datetime | None
    fetched: float = field(default_factory=time.monotonic)


@dataclass(frozen=True)
class Issued:
    """A freshly issued credential: the only moment its secret exists outside the caller."""

    credential: Credential
    info: dict[str, Any]


class ControlPlane:
    def __init__(self, database: Path, pepper: str, cache_seconds: float = 5.0) -> None:
        self.store = EventStore(database, projections.project, projections.SCHEMA)
        self._pepper = pepper
        self._cache_seconds = cache_seconds
        self._cache: dict[str, _CacheEntry] = {}
        self._used: dict[str, float] = {}
        self.store.conn.execute(
            "CREATE TABLE IF NOT EXISTS credential_usage (id TEXT PRIMARY KEY, last_used REAL)"
        )
        self._cache_lock = threading.Lock()

    # ---- bootstrap and plans -------------------------------------------------------------

    def is_empty(self) -> bool:
        return self.store.head()[0] == 0

    def define_default_plans(self, actor: Actor) -> None:
        with self.store.transaction():
            for plan, limits in DEFAULT_PLANS.items():
                aggregate = f"plan:{plan}"
                if self.store.version(aggregate) == 0:
                    self.store.append(ev.PlanDefined(plan, limits), actor, 0)

    def plan_limits(self, org_id: str) -> dict[str, Any]:
        with self.store.reading() as conn:
            row = conn.execute(
                "SELECT p.limits, o.overrides FROM orgs o JOIN plans p ON p.name = o.plan "
                "WHERE o.id = ?",
                (org_id,),
            ).fetchone()
        if row is None:
            raise NotFound(f"org {org_id} does not exist")
        return {**json.loads(row["limits"]), **json.loads(row["overrides"])}

    # ---- orgs (operator only) ------------------------------------------------------------

    def create_org(self, name: str, plan: str, actor: Actor) -> dict[str, Any]:
        check_name(name, "org")
        org_id = new_id("org")
        with self.store.transaction() as conn:
            self._require_plan(conn, plan)
            if conn.execute("SELECT 1 FROM orgs WHERE name = ?", (name,)).fetchone():
                raise Conflict(f"an org named {name!r} already exists; choose another name")
            self.store.append(ev.OrgCreated(org_id, name, plan), actor, 0)
        return self.org(org_id)

    def set_plan(
        self, org_id: str, plan: str, overrides: dict[str, Any], actor: Actor
    ) -> dict[str, Any]:
        unknown = sorted(set(overrides) - set(LIMIT_HELP))
        if unknown:
            raise BadRequest(f"unknown plan limits {unknown}; known: {sorted(LIMIT_HELP)}")
        if overrides and plan != "enterprise":
            raise BadRequest("per-org overrides are only available on the enterprise plan")
        for name, value in overrides.items():
            expected = type(DEFAULT_PLANS["enterprise"][name])
            # Durations may be fractional; counts and sizes are whole numbers.
            allowed = (int, float) if name.endswith("_seconds") else (expected,)
            numeric = expected is not bool and not isinstance(value, bool)
            if type(value) not in allowed or (numeric and value <= 0):
                kind = "true or false" if expected is bool else "a positive number"
                raise BadRequest(f"plan limit {name!r} must be {kind}, got {value!r}")
        with self.store.transaction() as conn:
            self._require_plan(conn, plan)
            self._org_row(conn, org_id)
            version = self.store.version(org_id)
            self.store.append(ev.OrgPlanChanged(org_id, plan, overrides), actor, version)
        return self.org(org_id)

    def org(self, org_id: str) -> dict[str, Any]:
        with self.store.reading() as conn:
            row = self._org_row(conn, org_id)
        return {**row, "limits": self.plan_limits(org_id)}

    def orgs(self) -> list[dict[str, Any]]:
        with self.store.reading() as conn:
            return [_org_view(r) for r in conn.execute("SELECT * FROM orgs ORDER BY name")]

    def _org_row(self, conn: Any, org_id: str) -> dict[str, Any]:
        row = conn.execute("SELECT * FROM orgs WHERE id = ?", (org_id,)).fetchone()
        if row is None:
            raise NotFound(f"org {org_id} does not exist")
        return _org_view(row)

    @staticmethod
    def _require_plan(conn: Any, plan: str) -> None:
        if not conn.execute("SELECT 1 FROM plans WHERE name = ?", (plan,)).fetchone():
            known = [r[0] for r in conn.execute("SELECT name FROM plans ORDER BY name")]
            raise BadRequest(f"unknown plan {plan!r}; choose one of {known}")

    # ---- sources -------------------------------------------------------------------------

    def create_source(
        self, org_id: str, name: str, description: str, actor: Actor
    ) -> dict[str, Any]:
        check_name(name, "source")
        if len(description) > 1000:
            raise BadRequest("source description is longer than 1000 characters")
        limits = self.plan_limits(org_id)
        source_id = new_id("src")
        with self.store.transaction() as conn:
            if conn.execute(
                "SELECT 1 FROM sources WHERE org_id = ? AND name = ?", (org_id, name)
            ).fetchone():
                raise Conflict(f"a source named {name!r} already exists in this org")
            (count,) = conn.execute(
                "SELECT COUNT(*) FROM sources WHERE org_id = ?", (org_id,)
            ).fetchone()
            if count >= limits["max_sources"]:
                raise Forbidden(
                    f"the plan allows {limits['max_sources']} sources and the org has {count}; "
                    "upgrade the plan to add more"
                )
            self.store.append(ev.SourceCreated(source_id, org_id, name, description), actor, 0)
        return self.source(org_id, source_id)

    def sources(self, org_id: str) -> list[dict[str, Any]]:
        with self.store.reading() as conn:
            rows = conn.execute(
                "SELECT * FROM sources WHERE org_id = ? ORDER BY name", (org_id,)
            ).fetchall()
        return [dict(r) for r in rows]

    def source(self, org_id: str, source_id: str) -> dict[str, Any]:
        """A source of ``org_id``; another org's source is reported exactly like a missing one."""
        return self.store.tenant_row("sources", source_id, org_id, "source")

    def set_retention(
        self, org_id: str, source_id: str, days: int | None, actor: Actor
    ) -> dict[str, Any]:
        """Per-source retention inside the plan; None returns the source to the plan's value."""
        self.source(org_id, source_id)
        plan_days = int(self.plan_limits(org_id)["retention_days"])
        if days is not None and not 1 <= days <= plan_days:
            raise BadRequest(
                f"retention must be between 1 and the plan's {plan_days} days, got {days}; "
                "a longer retention needs a larger plan"
            )
        with self.store.transaction():
            version = self.store.version(source_id)
            self.store.append(ev.SourceRetentionSet(source_id, org_id, days), actor, version)
        return self.source(org_id, source_id)

    def retention(self, org_id: str) -> dict[str, Any]:
        """The plan's retention and each source's effective retention, in days."""
        limits = self.plan_limits(org_id)
        plan_days = int(limits["retention_days"])
        sources = [
            {
                "source_id": s["id"],
                "name": s["name"],
                "retention_days": s["retention_days"],
                "effective_days": min(s["retention_days"] or plan_days, plan_days),
            }
            for s in self.sources(org_id)
        ]
        plan = self.org(org_id)["plan"]
        return {"plan": plan, "plan_retention_days": plan_days, "sources": sources}

    # ---- ingest keys ---------------------------------------------------------------------

    def issue_key(
        self, org_id: str, source_id: str, actor: Actor, expires_in_days: int | None = None
    ) -> Issued:
        self.source(org_id, source_id)
        cred = credentials.generate(Kind.INGEST)
        expires = None
        if expires_in_days is not None:
            if not 1 <= expires_in_days <= 3650:
                raise BadRequest("expires_in_days must be between 1 and 3650")
            expires = (now() + timedelta(days=expires_in_days)).isoformat()
        with self.store.transaction():
            self.store.append(
                ev.IngestKeyIssued(
                    cred.key_id, org_id, source_id, self._digest(cred.secret), expires
                ),
                actor,
                0,
            )
        return Issued(cred, self.key(org_id, cred.key_id))

    def rotate_key(self, org_id: str, key_id: str, grace_minutes: int, actor: Actor) -> Issued:
        if not 0 <= grace_minutes <= MAX_GRACE_MINUTES:
            raise BadRequest(
                f"grace_minutes must be between 0 and {MAX_GRACE_MINUTES} (7 days), "
                f"got {grace_minutes}"
            )
        old = self.key(org_id, key_id)
        if old["state"] not in ("active",):
            raise Conflict(f"key {key_id} is {old['state']}; only an active key can be rotated")
        cred = credentials.generate(Kind.INGEST)
        valid_until = (now() + timedelta(minutes=grace_minutes)).isoformat()
        aggregate = f"key:{key_id}"
        with self.store.transaction():
            version = self.store.version(aggregate)
            self.store.append(
                ev.IngestKeyIssued(
                    cred.key_id,
                    org_id,
                    old["source_id"],
                    self._digest(cred.secret),
                    old["expires_at"],
                ),
                actor,
                0,
            )
            self.store.append(
                ev.IngestKeyRotated(key_id, org_id, cred.key_id, valid_until), actor, version
            )
        self._forget(key_id)
        return Issued(cred, self.key(org_id, cred.key_id))

    def revoke_key(self, org_id: str, key_id: str, actor: Actor) -> dict[str, Any]:
        key = self.key(org_id, key_id)
        if key["state"] == "revoked":
            return key
        with self.store.transaction():
            version = self.store.version(f"key:{key_id}")
            self.store.append(ev.IngestKeyRevoked(key_id, org_id), actor, version)
        self._forget(key_id)
        return self.key(org_id, key_id)

    def keys(self, org_id: str, source_id: str) -> list[dict[str, Any]]:
        self.source(org_id, source_id)
        self.record_usage()
        with self.store.reading() as conn:
            rows = conn.execute(
                "SELECT k.*, u.last_used FROM ingest_keys k "
                "LEFT JOIN credential_usage u ON u.id = k.id "
                "WHERE k.org_id = ? AND k.source_id = ? ORDER BY k.created_at",
                (org_id, source_id),
            ).fetchall()
        return [_key_view(dict(r)) for r in rows]

    def record_usage(self) -> int:
        """Store when credentials were last used (operational data, not an event)."""
        used, self._used = self._used, {}
        items = list(used.items())  # one C-level copy: a late writer cannot break the loop
        if items:
            with self.store.transaction() as conn:
                conn.executemany(
                    "INSERT INTO credential_usage (id, last_used) VALUES (?, ?) "
                    "ON CONFLICT (id) DO UPDATE SET last_used = max(last_used, excluded.last_used)",
                    items,
                )
        return len(items)

    def key(self, org_id: str, key_id: str) -> dict[str, Any]:
        return _key_view(self.store.tenant_row("ingest_keys", key_id, org_id, "key"))

    # ---- management and operator tokens --------------------------------------------------

    def issue_token(self, org_id: str | None, name: str, scopes: list[str], actor: Actor) -> Issued:
        check_name(name, "token")
        kind = Kind.OPERATOR if org_id is None else Kind.MANAGEMENT
        unknown = sorted(set(scopes) - set(SCOPES))
        if unknown:
            raise BadRequest(f"unknown scopes {unknown}; known scopes: {sorted(SCOPES)}")
        if kind is Kind.MANAGEMENT and not scopes:
            raise BadRequest("a management token needs at least one scope")
        cred = credentials.generate(kind)
        kind_name = "operator" if kind is Kind.OPERATOR else "management"
        event = ev.TokenIssued(
            cred.key_id, org_id, name, kind_name, sorted(set(scopes)), self._digest(cred.secret)
        )
        with self.store.transaction():
            self.store.append(event, actor, 0)
        return Issued(cred, self.token(org_id, cred.key_id))

    def revoke_token(self, org_id: str | None, token_id: str, actor: Actor) -> dict[str, Any]:
        token = self.token(org_id, token_id)
        if token["revoked_at"] is None:
            with self.store.transaction():
                version = self.store.version(f"token:{token_id}")
                self.store.append(ev.TokenRevoked(token_id, org_id), actor, version)
            self._forget(token_id)
        return self.token(org_id, token_id)

    def tokens(self, org_id: str) -> list[dict[str, Any]]:
        with self.store.reading() as conn:
            rows = conn.execute(
                "SELECT * FROM tokens WHERE org_id = ? ORDER BY created_at", (org_id,)
            ).fetchall()
        return [_token_view(dict(r)) for r in rows]

    def token(self, org_id: str | None, token_id: str) -> dict[str, Any]:
        return _token_view(self.store.tenant_row("tokens", token_id, org_id, "token"))

    # ---- authentication (hot path) -------------------------------------------------------

    def authenticate(self, secret: str) -> Principal:
        """Turn a presented secret into a Principal, or raise Unauthenticated saying why."""
        cred = credentials.parse(secret)  # shape and checksum: no lookup for a typo
        entry = self._cache.get(cred.key_id)
        if entry is None or entry.fetched + self._cache_seconds < time.monotonic():
            entry = self._load(cred)
            with self._cache_lock:
                self._cache[cred.key_id] = entry
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
        entry = self._cache.get(token_id)
        if entry is None or entry.fetched + self._cache_seconds < time.monotonic():
            entry = self._load(Credential(Kind.MANAGEMENT, token_id, ""))
            with self._cache_lock:
                self._cache[token_id] = entry
        if entry.refusal:
            raise Unauthenticated(entry.refusal + "; sign in again")
        return entry.principal

    def _load(self, cred: Credential) -> _CacheEntry:
        table = "ingest_keys" if cred.kind is Kind.INGEST else "tokens"
        with self.store.reading() as conn:
            row = conn.execute(f"SELECT * FROM {table} WHERE id = ?", (cred.key_id,)).fetchone()
        if row is None:
            raise Unauthenticated("unknown or wrong credential")
        row = dict(row)
        if cred.kind is Kind.INGEST:
            principal = Principal(
                f"key:{row['id']}", "ingest", row["org_id"], frozenset(), row["source_id"]
            )
            ends = [datetime.fromisoformat(v) for v in (row["expires_at"], row["valid_until"]) if v]
            refusal = "this ingest key was revoked" if row["revoked_at"] else ""
            return _CacheEntry(principal, row["digest"], refusal, min(ends, default=None))
        kind: PrincipalKind = "operator" if cred.kind is Kind.OPERATOR else "management"
        if row["kind"] != kind:
            raise Unauthenticated("unknown or wrong credential")
        principal = Principal(
            f"token:{row['id']}", kind, row["org_id"], frozenset(json.loads(row["scopes"]))
        )
        refusal = "this token was revoked" if row["revoked_at"] else ""
        return _CacheEntry(principal, row["digest"], refusal, None)

    def _forget(self, key_id: str) -> None:
        with self._cache_lock:
            self._cache.pop(key_id, None)

    def _digest(self, secret: str) -> str:
        return credentials.digest(secret, self._pepper)

    # ---- maintenance ---------------------------------------------------------------------

    def rebuild(self) -> int:
        with self.store.transaction() as conn:
            count = projections.rebuild(conn, self.store.records())
        with self._cache_lock:
            self._cache.clear()
        return count

    def close(self) -> None:
        self.store.close()


def _org_view(row: Any) -> dict[str, Any]:
    data = dict(row)
    data["overrides"] = json.loads(data["overrides"])
    return data


def key_state(row: dict[str, Any], at: datetime | None = None) -> str:
    at = at or now()
    if row["revoked_at"]:
        return "revoked"
    if row["expires_at"] and datetime.fromisoformat(row["expires_at"]) <= at:
        return "expired"
    if row["valid_until"]:
        return "rotating" if datetime.fromisoformat(row["valid_until"]) > at else "rotated"
    return "active"


def _key_view(row: dict[str, Any]) -> dict[str, Any]:
    view = {k: v for k, v in row.items() if k not in ("digest", "last_used")}
    last_used = row.get("last_used")
    view["last_used_at"] = datetime.fromtimestamp(last_used, UTC).isoformat() if last_used else None
    view["state"] = key_state(row)
    view["prefix"] = f"alk_{row['id']}_"
    return view


def _token_view(row: dict[str, Any]) -> dict[str, Any]:
    view = {k: v for k, v in row.items() if k != "digest"}
    view["scopes"] = json.loads(row["scopes"])
    view["state"] = "revoked" if row["revoked_at"] else "active"
    view["prefix"] = f"{'alo' if row['kind'] == 'operator' else 'alt'}_{row['id']}_"
    return view
