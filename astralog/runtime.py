"""The collaborators one process needs, built from settings: used by the server and the CLI.

``Runtime`` is the process wiring; the query, retention and purge stages see it only through
``astralog.dataplane.DataAccess``, which it implements.

The control plane opens at once (CLI commands need nothing else). The data plane (WAL, flusher,
catalog, limits) belongs to exactly one serving process per data dir: ``open_data_plane`` runs
in the server's lifespan, and the WAL's directory lock refuses a second server on the same dir.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import os
import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from astralog import byob, org_export
from astralog.alerts.deliver import build_worker, webhook_policy
from astralog.alerts.outbox import Outbox
from astralog.alerts.store import AlertStore
from astralog.auth.oidc import Providers
from astralog.auth.principal import SCOPES
from astralog.auth.sessions import SessionStore
from astralog.batch_cache import BatchCache
from astralog.catalog import BatchCommitted, Catalog
from astralog.compaction import Compactor
from astralog.connectors.base import Connector
from astralog.connectors.local import LocalConnector
from astralog.controlplane.accounts import Accounts
from astralog.controlplane.alert_rules import AlertLimits, AlertRules
from astralog.controlplane.checkpoints import Signer
from astralog.controlplane.destinations import Destinations
from astralog.controlplane.endpoints import Endpoints
from astralog.controlplane.erasures import Erasures
from astralog.controlplane.events import PurgeHeld, RetentionPurged
from astralog.controlplane.holds import Hold
from astralog.controlplane.idp import IdentityProviders
from astralog.controlplane.passkeys import Passkeys
from astralog.controlplane.plans import PlanLimits
from astralog.controlplane.saved_searches import SavedSearches
from astralog.controlplane.service import ControlPlane
from astralog.controlplane.sources import Retention
from astralog.controlplane.store import Actor
from astralog.dataplane import LOCAL, LOCAL_DESTINATION, Destination
from astralog.deletion_vectors import DeletionVectors
from astralog.ingest.flush import DestinationFailure, Flusher
from astralog.ingest.idempotency import IdempotencyStore
from astralog.ingest.ratelimit import RateLimiter
from astralog.ingest.wal import PendingData, WriteAheadLog
from astralog.leadership import leadership
from astralog.metrics import Metrics
from astralog.query_checks import QueryChecks
from astralog.retention import PurgeSchedule
from astralog.security.fieldcrypt import FieldCipher
from astralog.settings import Settings

SYSTEM = Actor("system:bootstrap", "local")
log = logging.getLogger("astralog.runtime")


@dataclass(frozen=True)
class Readiness:
    """What /readyz answers: ready, or degraded and why (liveness is /healthz, not this)."""

    reasons: list[str]
    failing: list[DestinationFailure] = field(default_factory=list)
    public_reasons: list[str] = field(default_factory=list)
    wal_bytes: int = 0
    wal_budget_bytes: int = 0
    quarantined: list[dict[str, Any]] = field(default_factory=list)  # the operator's view only

    @property
    def ready(self) -> bool:
        return not self.reasons

    def public_json(self) -> dict[str, Any]:
        """What an anonymous probe learns: the verdict and the kind of trouble, never an org id,
        a destination id or a destination's error text (those name tenants)."""
        return {
            "ready": self.ready,
            "status": "ready" if self.ready else "degraded",
            "reason": "; ".join(self.public_reasons),
            "detail": "an operator or metrics token also sees destinations and errors",
        }

    def as_json(self) -> dict[str, Any]:
        return {
            "ready": self.ready,
            "status": "ready" if self.ready else "degraded",
            "reason": "; ".join(self.reasons),
            "destinations": [f.as_dict() for f in self.failing],
            "wal": {"unflushed_bytes": self.wal_bytes, "budget_bytes": self.wal_budget_bytes},
            # Batches whose data no destination can encode, kept under <wal>/quarantine/.
            "quarantine": {"batches": len(self.quarantined), "recent": self.quarantined[-10:]},
        }


@dataclass(frozen=True)
class Bootstrap:
    """What the first start created; the secrets are printed once and never stored in clear."""

    org: dict[str, object]
    source: dict[str, object]
    ingest_key: str
    admin_token: str
    operator_token: str


class DataPlane:
    """WAL, flusher, catalog, limiter and idempotency of the serving process."""

    def __init__(self, settings: Settings, metrics: Metrics, destinations: Destinations) -> None:
        self.settings = settings
        self.metrics = metrics
        self.destinations = destinations
        self._connectors: dict[tuple[str, int], Connector] = {}
        self._retired: list[Connector] = []  # closed at shutdown; they may have calls in flight
        # The store first: the WAL hands it every receipt it still holds as it opens.
        self.idempotency = IdempotencyStore(
            settings.data_dir / "idempotency.sqlite3",
            settings.ingest.idempotency_window_seconds,
            settings.control.database_url,
        )
        self.wal = WriteAheadLog(
            settings.wal, settings.path(settings.wal.directory), ledger=self.idempotency
        )
        self.catalog = Catalog(
            settings.path(settings.control.database).with_name("catalog.sqlite3"),
            settings.control.database_url,
        )
        self.vectors = DeletionVectors(
            self.catalog.path.with_name("deletion_vectors.sqlite3"), settings.control.database_url
        )
        self.local = LocalConnector(
            settings.path(settings.storage.local_root), row_group_rows=settings.flush.row_group_rows
        )
        self.flusher = Flusher(
            self.wal, self.catalog, self.destination, settings.flush, metrics=metrics.flush
        )
        self.batch_cache = BatchCache(
            settings.path(settings.query.batch_cache_directory), settings.query.batch_cache_bytes
        )
        self.rate_limiter = RateLimiter()
        self._tasks: list[asyncio.Task[None]] = []

    def destination(self, org_id: str) -> tuple[str, Connector]:
        """Where the org's new batches go now: its active connector, or the embedded bucket."""
        record = self.destinations.active(org_id)
        if record is None:
            return LOCAL_DESTINATION, self.local
        return record["id"], self.connector(org_id, record)

    def connector(self, org_id: str, record: dict[str, Any]) -> Connector:
        """A live connector per (connector, version): a config change builds a new one."""
        key = (str(record["id"]), int(record["version"]))
        if key not in self._connectors:
            for stale in [k for k in self._connectors if k[0] == key[0]]:
                # An older version of this connector: closed when its calls finish.
                self._retired.append(self._connectors.pop(stale))
            secrets = self.destinations.secrets(org_id, key[0])
            config = json.loads(record["config"])
            self._connectors[key] = byob.build(
                record["kind"], config, secrets, self.settings.storage
            )
        return self._connectors[key]

    def readiness(self) -> Readiness:
        """Degraded when a destination has failed for too long or the WAL nears its budget."""
        failing = self.flusher.failures()
        too_long = self.settings.flush.degraded_after_seconds
        reasons = [_failing_reason(f) for f in failing if f.seconds() >= too_long]
        public = [f"{len(reasons)} destination(s) failing to store batches"] if reasons else []
        used, budget = self.wal.unflushed_bytes(), self.settings.wal.disk_budget_bytes
        if used >= budget * self.settings.wal.degraded_budget_share:
            wal = (
                f"the write-ahead log holds {used} bytes, {used / budget:.0%} of its {budget}-byte "
                "budget (ASTRALOG_WAL__DISK_BUDGET_BYTES); ingest is refused when it is full"
            )
            reasons.append(wal)
            public.append(wal)  # instance-wide numbers only
        return Readiness(
            reasons,
            failing,
            public,
            wal_bytes=used,
            wal_budget_bytes=budget,
            quarantined=self.flusher.quarantined(),
        )

    def destination_status(self, org_id: str) -> dict[str, Any]:
        """Where ``org_id``'s new batches go and whether writing there works, in its own view."""
        record = self.destinations.active(org_id)
        destination_id = LOCAL_DESTINATION if record is None else str(record["id"])
        failing = self.flusher.failure(org_id, destination_id)
        return {
            "destination_id": destination_id,
            "state": "ok" if failing is None else "failing",
            "failure": None if failing is None else failing.view_for(org_id),
        }

    def start(self) -> None:
        self._tasks.append(asyncio.create_task(self.flusher.run(), name="astralog-flusher"))

    async def stop(self, drain_seconds: float = 10.0) -> None:
        for task in self._tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await asyncio.to_thread(self.wal.force_seal)
        try:
            await asyncio.wait_for(self.flusher.flush_once(), drain_seconds)
        except (TimeoutError, Exception):
            log.warning("shutdown flush did not finish; the WAL keeps the rest for the next start")
        self.wal.close()
        self.catalog.close()
        self.vectors.close()
        for connector in [*self._connectors.values(), *self._retired]:
            with contextlib.suppress(Exception):
                await connector.close()
        self.idempotency.close()


def _failing_reason(failing: DestinationFailure) -> str:
    orgs = ", ".join(sorted(failing.org_ids))
    return (
        f"destination {failing.destination_id} (orgs {orgs}) has been failing for "
        f"{failing.seconds():.0f}s, {failing.attempts} attempts: {failing.error}: {failing.message}"
    )


def field_cipher(settings: Settings) -> FieldCipher:
    """The master keys from settings; in development a local key file made on first use."""
    if settings.storage.master_keys or settings.mode == "production":
        return FieldCipher.from_settings(settings.storage)
    path = settings.data_dir / "master-dev.key"
    if not path.exists():
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(base64.b64encode(secrets.token_bytes(32)).decode())
    return FieldCipher({"dev": base64.b64decode(path.read_text())}, "dev")


class Runtime:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        self.control = ControlPlane(
            settings.path(settings.control.database),
            settings.auth.key_pepper,
            settings.auth.key_cache_seconds,
            settings.control.database_url,
        )
        self.signer = Signer(settings.path(settings.control.signing_key_file))
        self.leadership = leadership(settings.control.database_url)
        self.purge_schedule = PurgeSchedule(settings.storage.purge_interval_seconds)
        self.destinations = Destinations(self.control, field_cipher(settings))
        self.idps = IdentityProviders(
            self.control.store, self.control.people, self.destinations.cipher
        )
        self.oidc = Providers(settings.sso)  # discovery documents and JWKS, cached per process
        self.metrics = Metrics(tenant_labels=settings.metrics.tenant_labels)
        lookups = self.metrics.auth_lookups
        hits, misses = lookups.labels("hit"), lookups.labels("miss")
        self.control.auth.on_lookup = lambda hit: (hits if hit else misses).inc()
        self.sessions = SessionStore(
            settings.data_dir / "sessions.sqlite3", settings.control.database_url
        )
        self.accounts = Accounts(self.control, self.destinations.cipher)
        self.passkeys = Passkeys(self.control, self.sessions, settings.server.url())
        alerts = settings.alerts
        self.alert_endpoints = Endpoints(
            self.control, self.destinations.cipher, webhook_policy(alerts),
            email_enabled=bool(alerts.smtp_host), max_per_org=alerts.endpoints_per_org,
        )  # fmt: skip
        self.outbox = Outbox(settings.data_dir / "alerts.sqlite3")  # alert messages to deliver
        deletions = self.control.deletions
        self.delivery = build_worker(
            self.outbox, self.alert_endpoints, alerts, self.metrics.registry,
            lambda org_id: deletions.stopped(org_id) is not None,
        )  # fmt: skip
        grammar = QueryChecks()  # the search language's checks, handed down to the control plane
        self.saved_searches = SavedSearches(self.control.store, settings.server.url(), grammar)
        self.alert_rules = AlertRules(self.control.store, AlertLimits(
            alerts.max_alerts_per_org, alerts.min_interval_seconds, alerts.max_window_seconds
        ), grammar)  # fmt: skip
        self.alert_state = AlertStore(  # instances, history: with the leader's successor too
            settings.data_dir / "alerts.sqlite3", settings.control.database_url
        )
        self._data: DataPlane | None = None

    @property
    def data(self) -> DataPlane:
        if self._data is None:
            raise RuntimeError("the data plane is not open: only the serving process has it")
        return self._data

    def restore_projections(self) -> list[str]:
        """Current state is derived from the log: a projection row edited outside it (an
        un-revoked key, widened token scopes) is rebuilt from the log before serving, with one
        error line saying what differed. Returns the differences found."""
        from astralog.controlplane.audit_verify import projection_differences

        store = self.control.store
        differences = projection_differences(store.projection_rows, store.records())
        if differences:
            log.error(
                "projections differ from the event log; rebuilt from the log before serving",
                extra={"differences": differences[:10], "count": len(differences)},
            )
            self.control.rebuild()
        return differences

    def open_data_plane(self) -> DataPlane:
        if self._data is None:
            self._data = DataPlane(self.settings, self.metrics, self.destinations)
        return self._data

    def compactor(self) -> Compactor:
        """Compaction over this process's catalog; batches of unreleased WAL segments wait."""
        wal = self.data.wal
        return Compactor(
            self, self.data.catalog, self.settings.compaction,
            in_wal=lambda: {s.segment_id for s in wal.sealed_segments()},
            metrics=self.metrics.compaction,
        )  # fmt: skip

    async def close_data_plane(self) -> None:
        if self._data is not None:
            await self._data.stop()
            self._data = None

    def bootstrap(self) -> Bootstrap | None:
        """On an empty control plane: plans, a demo org, a source, its key and admin tokens."""
        if not self.control.is_empty():
            return None
        self.control.define_default_plans(SYSTEM)
        org = self.control.create_org("demo", "pro", SYSTEM)
        source = self.control.create_source(org["id"], "default", "Created at first start", SYSTEM)
        key = self.control.issue_key(org["id"], source["id"], SYSTEM)
        admin = self.control.issue_token(org["id"], "bootstrap-admin", sorted(SCOPES), SYSTEM)
        operator = self.control.issue_token(None, "bootstrap-operator", [], SYSTEM)
        self.signer.checkpoint(self.control.store)
        return Bootstrap(
            org, source, key.credential.secret, admin.credential.secret, operator.credential.secret
        )

    # ---- astralog.dataplane.DataAccess: what the query and purge stages may ask -------------

    def limits(self, org_id: str) -> PlanLimits:
        return self.control.limits(org_id)

    def retention_policy(self, org_id: str) -> Retention:
        return self.control.retention_policy(org_id)

    def org_ids(self) -> list[str]:
        return [str(org["id"]) for org in self.control.orgs()]

    def batches(
        self, org_id: str, source_ids: Sequence[str], start_ns: int, end_ns: int
    ) -> list[BatchCommitted]:
        return self.data.catalog.batches(org_id, list(source_ids), start_ns, end_ns)

    def forget_batches(self, object_keys: Iterable[str]) -> None:
        keys = list(object_keys)
        self.data.catalog.forget(keys)
        self.data.batch_cache.drop(keys)  # purged rows must not stay on local disk

    def pending(self) -> Sequence[PendingData]:
        return self.data.wal.pending_tables()

    def erased(
        self, org_id: str, source_ids: Sequence[str], start_ns: int, end_ns: int
    ) -> list[str]:
        return self.data.vectors.erased(org_id, source_ids, start_ns, end_ns)

    # ---- astralog.erasure.ErasureData --------------------------------------------------------

    @property
    def erasure_requests(self) -> Erasures:
        return self.control.erasures

    @property
    def vectors(self) -> DeletionVectors:
        return self.data.vectors

    @property
    def engine_threads(self) -> int:
        return self.settings.query.engine_threads

    @property
    def batch_cache(self) -> BatchCache:
        return self.data.batch_cache

    def replace_batch(self, old_key: str, new: BatchCommitted | None) -> None:
        self.data.catalog.replace(old_key, new)
        self.data.batch_cache.drop([old_key])  # erased rows must not stay on local disk

    def destination(self, org_id: str, destination_id: str) -> Destination:
        if destination_id == LOCAL_DESTINATION:
            return LOCAL
        record = self.destinations.record(org_id, destination_id)
        return Destination(str(record["id"]), str(record["name"]), str(record["kind"]))

    def connector(self, org_id: str, destination: Destination) -> Connector:
        if destination.id == LOCAL_DESTINATION:
            return self.data.local
        return self.data.connector(org_id, self.destinations.record(org_id, destination.id))

    def holds(self, org_id: str) -> list[Hold]:
        return self.control.holds.in_force(org_id)

    def destination_ids(self, org_id: str) -> list[str]:
        return [str(c["id"]) for c in self.destinations.list(org_id)]

    def source_ids(self, org_id: str) -> list[str]:
        return [str(s["id"]) for s in self.control.sources(org_id)]

    def connector_used(self, connector_id: str) -> bool:
        return self.destinations.ever_active(connector_id)

    def org_name(self, org_id: str) -> str:
        return str(self.control.org(org_id)["name"])

    def forget_org(self, org_id: str) -> None:
        self.data.vectors.forget_org(org_id)
        self.data.idempotency.forget_org(org_id)
        org_export.forget_org(org_export.exports_root(self.settings.data_dir), org_id)
        self.alert_state.forget_alerts(self.alert_rules.ever(org_id))
        self.outbox.forget_org(org_id)
        self.alert_endpoints.forget_org(org_id)
        self.control.auth.forget_org_usage(org_id)

    def record_purge(self, event: RetentionPurged | PurgeHeld, actor: Actor) -> None:
        store = self.control.store
        with store.transaction():
            store.append(event, actor, store.version(event.aggregate_id))

    def sign(self, message: bytes) -> bytes:
        return self.signer.sign_bytes(message)

    def readiness(self) -> Readiness:
        if self._data is None:
            starting = ["the write-ahead log is not open yet"]
            return Readiness(starting, public_reasons=starting)
        ready = self._data.readiness()
        unreachable = self.control.store.unreachable()
        if unreachable:  # nothing can be authenticated: a load balancer should send elsewhere
            ready.reasons.append(unreachable)
            ready.public_reasons.append("the control plane's database is unreachable")
        return ready

    def close(self) -> None:
        self.leadership.close()
        self.sessions.close()
        self.outbox.close()
        self.alert_state.close()
        self.control.close()
