"""Projections: current state derived from the event log.

``project`` is the only code that writes these tables. The store calls it inside the append
transaction; ``rebuild`` empties the tables and runs it over the whole log from zero, so a rebuilt
state is identical to the live one by construction (and a test checks it).
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Iterable
from typing import Any

from astralog.controlplane import events as ev
from astralog.controlplane.store import Recorded, replay

SCHEMA = """
CREATE TABLE IF NOT EXISTS plans (name TEXT PRIMARY KEY, limits TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS orgs (
    id TEXT PRIMARY KEY, name TEXT NOT NULL UNIQUE, plan TEXT NOT NULL,
    overrides TEXT NOT NULL DEFAULT '{}', created_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS sources (
    id TEXT PRIMARY KEY, org_id TEXT NOT NULL, name TEXT NOT NULL, description TEXT NOT NULL,
    created_at TEXT NOT NULL, retention_days INTEGER, UNIQUE (org_id, name)
);
CREATE TABLE IF NOT EXISTS ingest_keys (
    id TEXT PRIMARY KEY, org_id TEXT NOT NULL, source_id TEXT NOT NULL, digest TEXT NOT NULL,
    created_at TEXT NOT NULL, expires_at TEXT, valid_until TEXT, replaced_by TEXT,
    revoked_at TEXT
);
CREATE INDEX IF NOT EXISTS ingest_keys_source ON ingest_keys (org_id, source_id);
CREATE TABLE IF NOT EXISTS tokens (
    id TEXT PRIMARY KEY, org_id TEXT, name TEXT NOT NULL, kind TEXT NOT NULL, scopes TEXT NOT NULL,
    digest TEXT NOT NULL, created_at TEXT NOT NULL, revoked_at TEXT, person_id TEXT,
    expires_at TEXT
);
CREATE INDEX IF NOT EXISTS tokens_person ON tokens (person_id);
CREATE TABLE IF NOT EXISTS connectors (
    id TEXT PRIMARY KEY, org_id TEXT NOT NULL, name TEXT NOT NULL, kind TEXT NOT NULL,
    config TEXT NOT NULL, secrets TEXT NOT NULL, version INTEGER NOT NULL,
    created_at TEXT NOT NULL, updated_at TEXT NOT NULL, last_test TEXT,
    UNIQUE (org_id, name)
);
CREATE TABLE IF NOT EXISTS destinations (org_id TEXT PRIMARY KEY, connector_id TEXT);
CREATE TABLE IF NOT EXISTS people (
    id TEXT PRIMARY KEY, org_id TEXT NOT NULL, kind TEXT NOT NULL, email TEXT NOT NULL,
    name TEXT NOT NULL, role TEXT NOT NULL, sources TEXT, break_glass INTEGER NOT NULL,
    state TEXT NOT NULL, mfa INTEGER NOT NULL DEFAULT 0, role_version INTEGER NOT NULL DEFAULT 0,
    created_at TEXT NOT NULL, last_sign_in TEXT, last_sso_sign_in TEXT, UNIQUE (org_id, email)
);
CREATE TABLE IF NOT EXISTS identities (
    connection_id TEXT NOT NULL, issuer TEXT NOT NULL, subject TEXT NOT NULL,
    org_id TEXT NOT NULL, person_id TEXT NOT NULL, linked_at TEXT NOT NULL,
    PRIMARY KEY (connection_id, issuer, subject)
);
CREATE TABLE IF NOT EXISTS idp_connections (
    id TEXT PRIMARY KEY, org_id TEXT NOT NULL, name TEXT NOT NULL, issuer TEXT NOT NULL,
    client_id TEXT NOT NULL, client_secret TEXT NOT NULL, scopes TEXT NOT NULL,
    role_rules TEXT NOT NULL, strict INTEGER NOT NULL, default_role TEXT, jit INTEGER NOT NULL,
    created_at TEXT NOT NULL, updated_at TEXT NOT NULL, last_sign_in TEXT,
    UNIQUE (org_id, name)
);
CREATE TABLE IF NOT EXISTS domains (domain TEXT PRIMARY KEY, org_id TEXT NOT NULL, at TEXT);
CREATE TABLE IF NOT EXISTS org_policies (
    org_id TEXT PRIMARY KEY, require_mfa INTEGER NOT NULL, enforce_sso INTEGER NOT NULL,
    session_idle_minutes INTEGER NOT NULL, session_absolute_hours INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS alert_endpoints (
    id TEXT PRIMARY KEY, org_id TEXT NOT NULL, name TEXT NOT NULL, kind TEXT NOT NULL,
    target TEXT NOT NULL, header_names TEXT NOT NULL, enabled INTEGER NOT NULL,
    disabled_reason TEXT, created_at TEXT NOT NULL, updated_at TEXT NOT NULL,
    secret_rotated_at TEXT, errors INTEGER NOT NULL DEFAULT 0, UNIQUE (org_id, name)
);
CREATE TABLE IF NOT EXISTS holds (
    id TEXT PRIMARY KEY, org_id TEXT NOT NULL, sources TEXT, start_at TEXT, end_at TEXT,
    reason TEXT NOT NULL, case_id TEXT NOT NULL, state TEXT NOT NULL,
    requested_by TEXT, requested_side TEXT, release_reason TEXT,
    proposed_at TEXT NOT NULL, placed_at TEXT, released_at TEXT
);
CREATE TABLE IF NOT EXISTS erasures (
    id TEXT PRIMARY KEY, org_id TEXT NOT NULL, query TEXT NOT NULL, start_at TEXT NOT NULL,
    end_at TEXT NOT NULL, sources TEXT NOT NULL, preview TEXT NOT NULL, state TEXT NOT NULL,
    requested_by TEXT NOT NULL, requested_at TEXT NOT NULL, cancel_window_seconds INTEGER NOT NULL,
    approved_by TEXT, due_at TEXT, held_by TEXT, events INTEGER, receipt TEXT, updated_at TEXT
);
CREATE TABLE IF NOT EXISTS saved_searches (
    id TEXT PRIMARY KEY, org_id TEXT NOT NULL, owner TEXT NOT NULL, name TEXT NOT NULL,
    visibility TEXT NOT NULL, query TEXT NOT NULL, sources TEXT, start_at TEXT NOT NULL,
    end_at TEXT NOT NULL, created_at TEXT NOT NULL, updated_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS alert_rules (
    id TEXT PRIMARY KEY, org_id TEXT NOT NULL, owner TEXT NOT NULL, owner_person TEXT,
    name TEXT NOT NULL, spec TEXT NOT NULL, state TEXT NOT NULL, paused_reason TEXT,
    created_at TEXT NOT NULL, updated_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS alert_rules_org ON alert_rules (org_id);
CREATE TABLE IF NOT EXISTS silences (
    id TEXT PRIMARY KEY, org_id TEXT NOT NULL, matchers TEXT NOT NULL, starts_at TEXT NOT NULL,
    ends_at TEXT NOT NULL, comment TEXT NOT NULL, created_by TEXT NOT NULL,
    created_at TEXT NOT NULL, ended_at TEXT
);
CREATE TABLE IF NOT EXISTS org_deletions (
    org_id TEXT PRIMARY KEY, state TEXT NOT NULL, side TEXT NOT NULL, reason TEXT NOT NULL,
    requested_by TEXT NOT NULL, requested_at TEXT NOT NULL, purge_after TEXT NOT NULL,
    held_by TEXT, deleted_at TEXT, certificate TEXT
);
CREATE TABLE IF NOT EXISTS scope_deletions (
    target_id TEXT PRIMARY KEY, org_id TEXT NOT NULL, scope TEXT NOT NULL, name TEXT NOT NULL,
    state TEXT NOT NULL, reason TEXT NOT NULL, requested_by TEXT NOT NULL,
    requested_at TEXT NOT NULL, purge_after TEXT NOT NULL, held_by TEXT, deleted_at TEXT,
    certificate TEXT
);
"""

SCHEMA_VERSION = 10
"""Raised whenever a projection table changes shape: an older database is rebuilt from its log."""

TABLES = (
    "alert_endpoints",
    "plans", "orgs", "sources", "ingest_keys", "tokens", "connectors", "destinations", "people",
    "identities", "idp_connections", "domains", "org_policies", "holds", "org_deletions",
    "erasures", "saved_searches", "alert_rules", "silences", "scope_deletions",
)  # fmt: skip

Handler = Callable[[sqlite3.Connection, Any, Recorded], None]
_HANDLERS: dict[type[ev.Event], Handler] = {}


def handles(event_type: type[ev.Event]) -> Callable[[Handler], Handler]:
    def register(func: Handler) -> Handler:
        _HANDLERS[event_type] = func
        return func

    return register


def project(conn: sqlite3.Connection, record: Recorded) -> None:
    event = record.event()
    _HANDLERS[type(event)](conn, event, record)


def rebuild(conn: sqlite3.Connection, records: Iterable[Recorded]) -> int:
    """Empty every projection and replay ``records`` into it (inside the caller's transaction)."""
    for table in TABLES:
        conn.execute(f"DELETE FROM {table}")
    return replay(records, lambda record: project(conn, record))


def dump(conn: sqlite3.Connection) -> dict[str, list[tuple[Any, ...]]]:
    """Every projection row, ordered: what a rebuild must reproduce exactly."""
    return {
        table: [tuple(row) for row in conn.execute(f"SELECT * FROM {table} ORDER BY 1")]
        for table in TABLES
    }


@handles(ev.PlanDefined)
def _plan_defined(conn: sqlite3.Connection, e: ev.PlanDefined, r: Recorded) -> None:
    conn.execute(
        "INSERT INTO plans (name, limits) VALUES (?, ?)"
        " ON CONFLICT (name) DO UPDATE SET limits = excluded.limits",
        (e.plan, json.dumps(e.limits, sort_keys=True)),
    )


@handles(ev.OrgCreated)
def _org_created(conn: sqlite3.Connection, e: ev.OrgCreated, r: Recorded) -> None:
    conn.execute(
        "INSERT INTO orgs (id, name, plan, created_at) VALUES (?, ?, ?, ?)",
        (e.org_id, e.name, e.plan, r.at),
    )


@handles(ev.OrgPlanChanged)
def _org_plan_changed(conn: sqlite3.Connection, e: ev.OrgPlanChanged, r: Recorded) -> None:
    conn.execute(
        "UPDATE orgs SET plan = ?, overrides = ? WHERE id = ?",
        (e.plan, json.dumps(e.overrides, sort_keys=True), e.org_id),
    )


@handles(ev.SourceCreated)
def _source_created(conn: sqlite3.Connection, e: ev.SourceCreated, r: Recorded) -> None:
    conn.execute(
        "INSERT INTO sources (id, org_id, name, description, created_at) VALUES (?, ?, ?, ?, ?)",
        (e.source_id, e.org_id, e.name, e.description, r.at),
    )


@handles(ev.SourceRetentionSet)
def _source_retention(conn: sqlite3.Connection, e: ev.SourceRetentionSet, r: Recorded) -> None:
    conn.execute("UPDATE sources SET retention_days = ? WHERE id = ?", (e.days, e.source_id))


@handles(ev.IngestKeyIssued)
def _key_issued(conn: sqlite3.Connection, e: ev.IngestKeyIssued, r: Recorded) -> None:
    conn.execute(
        "INSERT INTO ingest_keys (id, org_id, source_id, digest, created_at, expires_at) "
        "VALUES (?, ?, ?, ?, ?, ?)",
        (e.key_id, e.org_id, e.source_id, e.digest, r.at, e.expires_at),
    )


@handles(ev.IngestKeyRotated)
def _key_rotated(conn: sqlite3.Connection, e: ev.IngestKeyRotated, r: Recorded) -> None:
    conn.execute(
        "UPDATE ingest_keys SET valid_until = ?, replaced_by = ? WHERE id = ?",
        (e.valid_until, e.replaced_by, e.key_id),
    )


@handles(ev.IngestKeyRevoked)
def _key_revoked(conn: sqlite3.Connection, e: ev.IngestKeyRevoked, r: Recorded) -> None:
    conn.execute("UPDATE ingest_keys SET revoked_at = ? WHERE id = ?", (r.at, e.key_id))


@handles(ev.TokenIssued)
def _token_issued(conn: sqlite3.Connection, e: ev.TokenIssued, r: Recorded) -> None:
    conn.execute(
        "INSERT INTO tokens (id, org_id, name, kind, scopes, digest, created_at, person_id, "
        "expires_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (e.token_id, e.org_id, e.name, e.kind, json.dumps(sorted(e.scopes)), e.digest, r.at,
         e.person_id, e.expires_at),
    )  # fmt: skip


@handles(ev.TokenRevoked)
def _token_revoked(conn: sqlite3.Connection, e: ev.TokenRevoked, r: Recorded) -> None:
    conn.execute("UPDATE tokens SET revoked_at = ? WHERE id = ?", (r.at, e.token_id))


@handles(ev.ConnectorCreated)
def _connector_created(conn: sqlite3.Connection, e: ev.ConnectorCreated, r: Recorded) -> None:
    conn.execute(
        "INSERT INTO connectors (id, org_id, name, kind, config, secrets, version, created_at, "
        "updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (e.connector_id, e.org_id, e.name, e.kind, json.dumps(e.config, sort_keys=True),
         json.dumps(e.secrets, sort_keys=True), r.version, r.at, r.at),
    )  # fmt: skip


@handles(ev.ConnectorUpdated)
def _connector_updated(conn: sqlite3.Connection, e: ev.ConnectorUpdated, r: Recorded) -> None:
    conn.execute(
        "UPDATE connectors SET config = ?, secrets = ?, version = ?, updated_at = ? WHERE id = ?",
        (json.dumps(e.config, sort_keys=True), json.dumps(e.secrets, sort_keys=True), r.version,
         r.at, e.connector_id),
    )  # fmt: skip


@handles(ev.ConnectorSecretsRewrapped)
def _connector_rewrapped(
    conn: sqlite3.Connection, e: ev.ConnectorSecretsRewrapped, r: Recorded
) -> None:
    conn.execute(
        "UPDATE connectors SET secrets = ?, version = ? WHERE id = ?",
        (json.dumps(e.secrets, sort_keys=True), r.version, e.connector_id),
    )


@handles(ev.ConnectorTested)
def _connector_tested(conn: sqlite3.Connection, e: ev.ConnectorTested, r: Recorded) -> None:
    result = json.dumps({"ok": e.ok, "failed": e.failed, "at": r.at})
    conn.execute(
        "UPDATE connectors SET last_test = ?, version = ? WHERE id = ?",
        (result, r.version, e.connector_id),
    )


@handles(ev.DestinationChanged)
def _destination_changed(conn: sqlite3.Connection, e: ev.DestinationChanged, r: Recorded) -> None:
    conn.execute(
        "INSERT INTO destinations (org_id, connector_id) VALUES (?, ?)"
        " ON CONFLICT (org_id) DO UPDATE SET connector_id = excluded.connector_id",
        (e.org_id, e.connector_id),
    )


@handles(ev.RetentionPurged)
def _retention_purged(conn: sqlite3.Connection, e: ev.RetentionPurged, r: Recorded) -> None:
    """The purge is its own record in the audit log; no projection changes."""


def _sources(value: list[str] | None) -> str | None:
    return None if value is None else json.dumps(sorted(value))


@handles(ev.PersonAdded)
def _person_added(conn: sqlite3.Connection, e: ev.PersonAdded, r: Recorded) -> None:
    conn.execute(
        "INSERT INTO people (id, org_id, kind, email, name, role, sources, break_glass, state, "
        "created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'active', ?)",
        (e.person_id, e.org_id, e.kind, e.email, e.name, e.role, _sources(e.sources),
         int(e.break_glass), r.at),
    )  # fmt: skip


@handles(ev.PersonRoleChanged)
def _person_role(conn: sqlite3.Connection, e: ev.PersonRoleChanged, r: Recorded) -> None:
    conn.execute(
        "UPDATE people SET role = ?, sources = ?, role_version = role_version + 1 WHERE id = ?",
        (e.role, _sources(e.sources), e.person_id),
    )


@handles(ev.PersonDeprovisioned)
def _person_gone(conn: sqlite3.Connection, e: ev.PersonDeprovisioned, r: Recorded) -> None:
    conn.execute("UPDATE people SET state = 'deprovisioned' WHERE id = ?", (e.person_id,))
    conn.execute(
        "UPDATE tokens SET revoked_at = ? WHERE person_id = ? AND revoked_at IS NULL",
        (r.at, e.person_id),
    )
    conn.execute("DELETE FROM identities WHERE person_id = ?", (e.person_id,))


@handles(ev.PersonCredentialChanged)
def _person_credential(
    conn: sqlite3.Connection, e: ev.PersonCredentialChanged, r: Recorded
) -> None:
    """``people.mfa`` counts second factors, so the flag read from it stays true while any one
    remains: bit 0 is the authenticator app (set, not added: a new seed is enrolled over the
    old one), and each passkey adds 2."""
    conn.execute(
        "UPDATE people SET mfa = CASE ? WHEN 'totp_enrolled' THEN mfa | 1 "
        "WHEN 'totp_removed' THEN mfa & ~1 WHEN 'passkey_added' THEN mfa + 2 "
        "WHEN 'passkey_removed' THEN CASE WHEN mfa - 2 > (mfa & 1) THEN mfa - 2 ELSE mfa & 1 END "
        "ELSE mfa END WHERE id = ?",
        (e.what, e.person_id),
    )


@handles(ev.IdentityLinked)
def _identity_linked(conn: sqlite3.Connection, e: ev.IdentityLinked, r: Recorded) -> None:
    conn.execute(
        "INSERT INTO identities VALUES (?, ?, ?, ?, ?, ?)",
        (e.connection_id, e.issuer, e.subject, e.org_id, e.person_id, r.at),
    )


@handles(ev.IdentityUnlinked)
def _identity_unlinked(conn: sqlite3.Connection, e: ev.IdentityUnlinked, r: Recorded) -> None:
    conn.execute(
        "DELETE FROM identities WHERE connection_id = ? AND subject = ?",
        (e.connection_id, e.subject),
    )


@handles(ev.IdpConfigured)
def _idp_configured(conn: sqlite3.Connection, e: ev.IdpConfigured, r: Recorded) -> None:
    conn.execute(
        "INSERT INTO idp_connections (id, org_id, name, issuer, client_id, client_secret, scopes, "
        "role_rules, strict, default_role, jit, created_at, updated_at) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO UPDATE SET "
        "name = excluded.name, issuer = excluded.issuer, client_id = excluded.client_id, "
        "client_secret = excluded.client_secret, scopes = excluded.scopes, "
        "role_rules = excluded.role_rules, strict = excluded.strict, "
        "default_role = excluded.default_role, jit = excluded.jit, "
        "updated_at = excluded.updated_at",
        (e.connection_id, e.org_id, e.name, e.issuer, e.client_id,
         json.dumps(e.client_secret, sort_keys=True), json.dumps(e.scopes),
         json.dumps(e.role_rules, sort_keys=True), int(e.strict), e.default_role, int(e.jit),
         r.at, r.at),
    )  # fmt: skip


@handles(ev.IdpRemoved)
def _idp_removed(conn: sqlite3.Connection, e: ev.IdpRemoved, r: Recorded) -> None:
    conn.execute("DELETE FROM idp_connections WHERE id = ?", (e.connection_id,))
    conn.execute("DELETE FROM identities WHERE connection_id = ?", (e.connection_id,))


@handles(ev.DomainVerified)
def _domain_verified(conn: sqlite3.Connection, e: ev.DomainVerified, r: Recorded) -> None:
    conn.execute(
        "INSERT INTO domains VALUES (?, ?, ?) ON CONFLICT (domain)"
        " DO UPDATE SET org_id = excluded.org_id, at = excluded.at",
        (e.domain, e.org_id, r.at),
    )


@handles(ev.OrgSecurityPolicySet)
def _policy_set(conn: sqlite3.Connection, e: ev.OrgSecurityPolicySet, r: Recorded) -> None:
    conn.execute(
        "INSERT INTO org_policies VALUES (?, ?, ?, ?, ?) ON CONFLICT (org_id) DO UPDATE SET"
        " require_mfa = excluded.require_mfa, enforce_sso = excluded.enforce_sso,"
        " session_idle_minutes = excluded.session_idle_minutes,"
        " session_absolute_hours = excluded.session_absolute_hours",
        (e.org_id, int(e.require_mfa), int(e.enforce_sso), e.session_idle_minutes,
         e.session_absolute_hours),
    )  # fmt: skip


@handles(ev.HoldProposed)
def _hold_proposed(conn: sqlite3.Connection, e: ev.HoldProposed, r: Recorded) -> None:
    conn.execute(
        "INSERT INTO holds (id, org_id, sources, start_at, end_at, reason, case_id, state, "
        "requested_by, requested_side, proposed_at) VALUES (?, ?, ?, ?, ?, ?, ?, 'proposed', "
        "?, ?, ?)",
        (e.hold_id, e.org_id, _sources(e.sources), e.start, e.end, e.reason, e.case_id, r.actor,
         e.side, r.at),
    )  # fmt: skip


@handles(ev.HoldPlaced)
def _hold_placed(conn: sqlite3.Connection, e: ev.HoldPlaced, r: Recorded) -> None:
    conn.execute(
        "UPDATE holds SET state = 'active', placed_at = ?, requested_by = NULL, "
        "requested_side = NULL WHERE id = ?",
        (r.at, e.hold_id),
    )


@handles(ev.HoldReleaseProposed)
def _hold_release_asked(conn: sqlite3.Connection, e: ev.HoldReleaseProposed, r: Recorded) -> None:
    conn.execute(
        "UPDATE holds SET state = 'releasing', requested_by = ?, requested_side = ?, "
        "release_reason = ? WHERE id = ?",
        (r.actor, e.side, e.reason, e.hold_id),
    )


@handles(ev.HoldReleased)
def _hold_released(conn: sqlite3.Connection, e: ev.HoldReleased, r: Recorded) -> None:
    conn.execute(
        "UPDATE holds SET state = 'released', released_at = ?, requested_by = NULL, "
        "requested_side = NULL WHERE id = ?",
        (r.at, e.hold_id),
    )


@handles(ev.HoldRequestWithdrawn)
def _hold_withdrawn(conn: sqlite3.Connection, e: ev.HoldRequestWithdrawn, r: Recorded) -> None:
    conn.execute(
        "UPDATE holds SET state = CASE state WHEN 'releasing' THEN 'active' ELSE 'withdrawn' "
        "END, requested_by = NULL, requested_side = NULL, release_reason = NULL WHERE id = ?",
        (e.hold_id,),
    )


@handles(ev.PurgeHeld)
def _purge_held(conn: sqlite3.Connection, e: ev.PurgeHeld, r: Recorded) -> None:
    """What a hold kept is its own record in the audit log; no projection changes."""


@handles(ev.OrgDeletionRequested)
def _org_deletion(conn: sqlite3.Connection, e: ev.OrgDeletionRequested, r: Recorded) -> None:
    conn.execute(
        "INSERT INTO org_deletions (org_id, state, side, reason, requested_by, "
        "requested_at, purge_after) VALUES (?, 'pending', ?, ?, ?, ?, ?)"
        " ON CONFLICT (org_id) DO UPDATE SET state = excluded.state, side = excluded.side,"
        " reason = excluded.reason, requested_by = excluded.requested_by,"
        " requested_at = excluded.requested_at, purge_after = excluded.purge_after,"
        " held_by = NULL, deleted_at = NULL, certificate = NULL",
        (e.org_id, e.side, e.reason, r.actor, r.at, e.purge_after),
    )


@handles(ev.OrgRestored)
def _org_restored(conn: sqlite3.Connection, e: ev.OrgRestored, r: Recorded) -> None:
    conn.execute("DELETE FROM org_deletions WHERE org_id = ?", (e.org_id,))


@handles(ev.OrgDeletionHeld)
def _org_deletion_held(conn: sqlite3.Connection, e: ev.OrgDeletionHeld, r: Recorded) -> None:
    held = json.dumps(e.holds)
    conn.execute("UPDATE org_deletions SET held_by = ? WHERE org_id = ?", (held, e.org_id))


@handles(ev.OrgDeleted)
def _org_deleted(conn: sqlite3.Connection, e: ev.OrgDeleted, r: Recorded) -> None:
    conn.execute(
        "UPDATE org_deletions SET state = 'deleted', held_by = NULL, deleted_at = ?, "
        "certificate = ? WHERE org_id = ?",
        (r.at, json.dumps(e.certificate, sort_keys=True), e.org_id),
    )
    # The tombstone is the org's row, this one and the log: its alerting state leaves.
    for table in ("saved_searches", "alert_rules", "silences", "alert_endpoints"):
        conn.execute(f"DELETE FROM {table} WHERE org_id = ?", (e.org_id,))


@handles(ev.ScopeDeletionRequested)
def _scope_deletion(conn: sqlite3.Connection, e: ev.ScopeDeletionRequested, r: Recorded) -> None:
    conn.execute(
        "INSERT INTO scope_deletions (target_id, org_id, scope, name, state, reason, "
        "requested_by, requested_at, purge_after) VALUES (?, ?, ?, ?, 'pending', ?, ?, ?, ?)"
        " ON CONFLICT (target_id) DO UPDATE SET org_id = excluded.org_id,"
        " scope = excluded.scope, name = excluded.name, state = excluded.state,"
        " reason = excluded.reason, requested_by = excluded.requested_by,"
        " requested_at = excluded.requested_at, purge_after = excluded.purge_after,"
        " held_by = NULL, deleted_at = NULL, certificate = NULL",
        (e.target_id, e.org_id, e.scope, e.name, e.reason, r.actor, r.at, e.purge_after),
    )


@handles(ev.ScopeRestored)
def _scope_restored(conn: sqlite3.Connection, e: ev.ScopeRestored, r: Recorded) -> None:
    conn.execute("DELETE FROM scope_deletions WHERE target_id = ?", (e.target_id,))


@handles(ev.ScopeDeletionHeld)
def _scope_deletion_held(conn: sqlite3.Connection, e: ev.ScopeDeletionHeld, r: Recorded) -> None:
    held = json.dumps(e.holds)
    conn.execute("UPDATE scope_deletions SET held_by = ? WHERE target_id = ?", (held, e.target_id))


@handles(ev.ScopeDeleted)
def _scope_deleted(conn: sqlite3.Connection, e: ev.ScopeDeleted, r: Recorded) -> None:
    conn.execute(
        "UPDATE scope_deletions SET state = 'deleted', held_by = NULL, deleted_at = ?, "
        "certificate = ? WHERE target_id = ?",
        (r.at, json.dumps(e.certificate, sort_keys=True), e.target_id),
    )
    # The tombstone is the row above and the log: a source's keys stop for good and its name is
    # free again; a connector's row, with its sealed secrets, leaves the state.
    if e.scope == "source":
        conn.execute(
            "UPDATE ingest_keys SET revoked_at = ? WHERE source_id = ? AND revoked_at IS NULL",
            (r.at, e.target_id),
        )
        conn.execute("DELETE FROM sources WHERE id = ?", (e.target_id,))
    else:
        conn.execute("DELETE FROM destinations WHERE connector_id = ?", (e.target_id,))
        conn.execute("DELETE FROM connectors WHERE id = ?", (e.target_id,))


@handles(ev.SignedIn)
def _signed_in(conn: sqlite3.Connection, e: ev.SignedIn, r: Recorded) -> None:
    if e.person_id:
        conn.execute("UPDATE people SET last_sign_in = ? WHERE id = ?", (r.at, e.person_id))
        if e.method == "sso":
            conn.execute("UPDATE people SET last_sso_sign_in = ? WHERE id = ?", (r.at, e.person_id))
    if e.idp:
        preview = json.dumps({"at": r.at, "person_id": e.person_id, "claims": e.claims})
        conn.execute("UPDATE idp_connections SET last_sign_in = ? WHERE id = ?", (preview, e.idp))


@handles(ev.SignInFailed)
@handles(ev.SessionsEnded)
@handles(ev.TokenUsed)
@handles(ev.LogsRead)
def _activity(conn: sqlite3.Connection, e: ev.Event, r: Recorded) -> None:
    """Activity is its own record in the audit log; no projection changes."""


# ---- erasure requests ---------------------------------------------------------------------------


@handles(ev.ErasureRequested)
def _erasure_requested(conn: sqlite3.Connection, e: ev.ErasureRequested, r: Recorded) -> None:
    conn.execute(
        "INSERT INTO erasures (id, org_id, query, start_at, end_at, sources, preview, state, "
        "requested_by, requested_at, cancel_window_seconds, updated_at) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, 'awaiting_approval', ?, ?, ?, ?)",
        (e.erasure_id, e.org_id, e.query, e.start, e.end, json.dumps(e.sources),
         json.dumps(e.preview), e.requester, r.at, e.cancel_window_seconds, r.at),
    )  # fmt: skip


def _erasure(conn: sqlite3.Connection, erasure_id: str, at: str, **fields: Any) -> None:
    sets = ", ".join(f"{name} = ?" for name in fields)
    conn.execute(
        f"UPDATE erasures SET {sets}, updated_at = ? WHERE id = ?",
        (*fields.values(), at, erasure_id),
    )


@handles(ev.ErasureApproved)
def _erasure_approved(conn: sqlite3.Connection, e: ev.ErasureApproved, r: Recorded) -> None:
    _erasure(conn, e.erasure_id, r.at, state="approved", approved_by=r.actor, due_at=e.due_at)


@handles(ev.ErasureCancelled)
def _erasure_cancelled(conn: sqlite3.Connection, e: ev.ErasureCancelled, r: Recorded) -> None:
    _erasure(conn, e.erasure_id, r.at, state="cancelled")


@handles(ev.ErasureHeld)
def _erasure_held(conn: sqlite3.Connection, e: ev.ErasureHeld, r: Recorded) -> None:
    _erasure(conn, e.erasure_id, r.at, state="held", held_by=json.dumps(e.holds))


@handles(ev.ErasureMasked)
def _erasure_masked(conn: sqlite3.Connection, e: ev.ErasureMasked, r: Recorded) -> None:
    _erasure(conn, e.erasure_id, r.at, state="masked", held_by=None, events=e.events)


@handles(ev.ErasureRewritten)
def _erasure_rewritten(conn: sqlite3.Connection, e: ev.ErasureRewritten, r: Recorded) -> None:
    rewritten = {"at": e.at, "objects": e.objects}
    _erasure(conn, e.erasure_id, r.at, state="rewritten", receipt=json.dumps(rewritten))


@handles(ev.ErasureCompleted)
def _erasure_completed(conn: sqlite3.Connection, e: ev.ErasureCompleted, r: Recorded) -> None:
    receipt = {"manifest_sha256": e.manifest_sha256, "signature": e.signature,
               "rewritten": e.rewritten}  # fmt: skip
    _erasure(conn, e.erasure_id, r.at, state="completed", receipt=json.dumps(receipt))
