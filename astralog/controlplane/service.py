"""The control plane of one process: the event store, the commands of each aggregate, and the
authenticator, under the names the API and the CLI call them by.

Each command runs in one serialised transaction (read projection, decide, append, project), so a
refused command leaves no trace and an accepted one is in the log and the projections together.
The commands live with their aggregate (``plans``, ``orgs``, ``sources``, ``keys``, ``tokens``);
reads for the hot path go through :class:`astralog.auth.authenticator.Authenticator`, never the log.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from astralog.auth.authenticator import Authenticator
from astralog.auth.principal import Principal
from astralog.controlplane import audit_verify, pgstore, projections
from astralog.controlplane import events as ev
from astralog.controlplane.audit_verify import Report
from astralog.controlplane.commands import Issued
from astralog.controlplane.erasures import Erasures
from astralog.controlplane.holds import Holds
from astralog.controlplane.keys import Keys
from astralog.controlplane.org_deletion import OrgDeletions
from astralog.controlplane.orgs import Orgs
from astralog.controlplane.people import People
from astralog.controlplane.plans import PlanLimits, Plans
from astralog.controlplane.scope_deletion import ScopeDeletions
from astralog.controlplane.sources import Retention, Sources
from astralog.controlplane.store import Actor, EventStore, SqliteEventStore
from astralog.controlplane.tokens import Tokens
from astralog.ids import new_id


class ControlPlane:
    def __init__(
        self, database: Path, pepper: str, cache_seconds: float = 5.0, database_url: str = ""
    ) -> None:
        self.store = open_store(database, database_url)
        self.auth = Authenticator(self.store, pepper, cache_seconds)
        if self.store.stale_projections:
            self.rebuild()
        self.plans = Plans(self.store)
        self._orgs = Orgs(self.store, self.plans)
        self._sources = Sources(self.store, self.plans)
        self._keys = Keys(self.store, self.auth, self._sources)
        self._tokens = Tokens(self.store, self.auth)
        self.people = People(self.store, self.auth)
        self.holds = Holds(self.store)
        self.deletions = OrgDeletions(self.store, min(cache_seconds, 1.0))
        self.scope_deletions = ScopeDeletions(self.store, min(cache_seconds, 1.0))
        self.erasures = Erasures(self.store)
        self._use_audited: dict[str, int] = {}  # token id -> hour of its last TokenUsed record
        self.auth.on_used = self._audit_token_use

    def is_empty(self) -> bool:
        return self.store.head()[0] == 0

    # ---- plans and orgs ------------------------------------------------------------------

    def define_default_plans(self, actor: Actor) -> None:
        self.plans.define_defaults(actor)

    def limits(self, org_id: str) -> PlanLimits:
        return self.plans.limits(org_id)

    def create_org(self, name: str, plan: str, actor: Actor) -> dict[str, Any]:
        return self._orgs.create(name, plan, actor)

    def set_plan(
        self, org_id: str, plan: str, overrides: dict[str, Any], actor: Actor
    ) -> dict[str, Any]:
        return self._orgs.set_plan(org_id, plan, overrides, actor)

    def org(self, org_id: str) -> dict[str, Any]:
        return self._orgs.get(org_id)

    def orgs(self) -> list[dict[str, Any]]:
        return self._orgs.list()

    # ---- sources and retention -----------------------------------------------------------

    def create_source(
        self, org_id: str, name: str, description: str, actor: Actor
    ) -> dict[str, Any]:
        return self._sources.create(org_id, name, description, actor)

    def sources(self, org_id: str) -> list[dict[str, Any]]:
        return self._sources.list(org_id)

    def source(self, org_id: str, source_id: str) -> dict[str, Any]:
        return self._sources.get(org_id, source_id)

    def set_retention(
        self, org_id: str, source_id: str, days: int | None, actor: Actor
    ) -> dict[str, Any]:
        return self._sources.set_retention(org_id, source_id, days, actor)

    def retention_policy(self, org_id: str) -> Retention:
        """The plan's retention and each source's effective retention, in days. A source
        pending deletion is left out, so searches and the retention purge no longer see it."""
        policy = self._sources.retention(org_id, self._orgs.get(org_id)["plan"])
        stopped = self.scope_deletions.of_org(org_id, "source")
        live = tuple(s for s in policy.sources if s.source_id not in stopped)
        return replace(policy, sources=live) if stopped else policy

    def retention(self, org_id: str) -> dict[str, Any]:
        return self.retention_policy(org_id).as_json()

    # ---- ingest keys and tokens ----------------------------------------------------------

    def issue_key(
        self, org_id: str, source_id: str, actor: Actor, expires_in_days: int | None = None
    ) -> Issued:
        return self._keys.issue(org_id, source_id, actor, expires_in_days)

    def rotate_key(self, org_id: str, key_id: str, grace_minutes: int, actor: Actor) -> Issued:
        return self._keys.rotate(org_id, key_id, grace_minutes, actor)

    def revoke_key(self, org_id: str, key_id: str, actor: Actor) -> dict[str, Any]:
        return self._keys.revoke(org_id, key_id, actor)

    def keys(self, org_id: str, source_id: str) -> list[dict[str, Any]]:
        return self._keys.list(org_id, source_id)

    def key(self, org_id: str, key_id: str) -> dict[str, Any]:
        return self._keys.get(org_id, key_id)

    def issue_token(
        self, org_id: str | None, name: str, scopes: list[str], actor: Actor, **owner: Any
    ) -> Issued:
        """``owner``: ``person_id`` and ``expires_at`` of a personal or service-account token."""
        return self._tokens.issue(org_id, name, scopes, actor, **owner)

    def person_tokens(self, org_id: str, person_id: str) -> list[dict[str, Any]]:
        return self._tokens.for_person(org_id, person_id)

    def revoke_token(self, org_id: str | None, token_id: str, actor: Actor) -> dict[str, Any]:
        return self._tokens.revoke(org_id, token_id, actor)

    def tokens(self, org_id: str) -> list[dict[str, Any]]:
        return self._tokens.list(org_id)

    def token(self, org_id: str | None, token_id: str) -> dict[str, Any]:
        return self._tokens.get(org_id, token_id)

    # ---- authentication (hot path) -------------------------------------------------------

    def authenticate(self, secret: str) -> Principal:
        return self.auth.authenticate(secret)

    def token_principal(self, token_id: str) -> Principal:
        return self.auth.token_principal(token_id)

    def record_usage(self) -> int:
        return self.auth.record_usage()

    def _audit_token_use(self, used: list[tuple[str, float]]) -> None:
        """Token use into the audit log: at most one TokenUsed per token per hour (ingest keys,
        used by every shipper request, are counted in ``credential_usage`` only)."""
        fresh = {i: at for i, at in used if self._use_audited.get(i) != int(at // 3600)}
        if not fresh:
            return
        marks = ",".join("?" * len(fresh))
        with self.store.transaction() as conn:
            rows = conn.execute(
                f"SELECT id, org_id FROM tokens WHERE id IN ({marks})", list(fresh)
            ).fetchall()
            for token_id, org_id in rows:
                at = fresh[token_id]
                first = datetime.fromtimestamp(at, UTC).isoformat()
                event = ev.TokenUsed(new_id("act"), org_id, token_id, first)
                self.store.append(event, Actor(f"token:{token_id}", "api"), 0)
                self._use_audited[token_id] = int(at // 3600)

    # ---- maintenance ---------------------------------------------------------------------

    def rebuild(self) -> int:
        with self.store.transaction() as conn:
            count = projections.rebuild(conn, self.store.records())
        self.auth.clear()
        return count

    def close(self) -> None:
        self.store.close()


def open_store(database: Path, database_url: str = "") -> EventStore:
    """The control plane's log with the product's projections: in PostgreSQL when
    ``database_url`` names one (several nodes share it), else in the SQLite file ``database``."""
    if database_url:
        return pgstore.open_product_store(database_url)
    return SqliteEventStore(
        database,
        projections.project,
        projections.SCHEMA,
        projections.TABLES,
        projections.SCHEMA_VERSION,
    )


def verify_log(
    database: Path, database_url: str, public_key: Ed25519PublicKey, **options: Any
) -> Report:
    """``audit verify`` of the control plane's log, wherever :func:`open_store` keeps it."""
    if database_url:
        return pgstore.verify(database_url, public_key, **options)
    return audit_verify.verify(database, public_key, **options)
