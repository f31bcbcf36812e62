"""The collaborators one process needs, built from settings: used by the server and the CLI.

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
from dataclasses import dataclass
from typing import Any

from astralog import byob
from astralog.api.sessions import SessionStore
from astralog.catalog import Catalog
from astralog.connectors.base import Connector
from astralog.connectors.local import LocalConnector
from astralog.controlplane.audit import Signer
from astralog.controlplane.destinations import Destinations
from astralog.controlplane.service import ControlPlane
from astralog.controlplane.store import Actor
from astralog.ingest.flush import Flusher
from astralog.ingest.idempotency import IdempotencyStore
from astralog.ingest.ratelimit import RateLimiter
from astralog.ingest.wal import WriteAheadLog
from astralog.metrics import Metrics
from astralog.principal import SCOPES
from astralog.security.fieldcrypt import FieldCipher
from astralog.settings import Settings

SYSTEM = Actor("system:bootstrap", "local")
LOCAL_DESTINATION = "local"
SESSION_SECONDS = 12 * 3600
log = logging.getLogger("astralog.runtime")


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
            settings.data_dir / "idempotency.sqlite3", settings.ingest.idempotency_window_seconds
        )
        self.wal = WriteAheadLog(
            settings.wal, settings.path(settings.wal.directory), ledger=self.idempotency
        )
        self.catalog = Catalog(
            settings.path(settings.control.database).with_name("catalog.sqlite3")
        )
        self.local = LocalConnector(
            settings.path(settings.storage.local_root), row_group_rows=settings.flush.row_group_rows
        )
        self.flusher = Flusher(self.wal, self.catalog, self.destination, settings.flush)
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
        for connector in [*self._connectors.values(), *self._retired]:
            with contextlib.suppress(Exception):
                await connector.close()
        self.idempotency.close()


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
        )
        self.signer = Signer(settings.path(settings.control.signing_key_file))
        self.destinations = Destinations(self.control, field_cipher(settings))
        self.metrics = Metrics(tenant_labels=settings.metrics.tenant_labels)
        self.sessions = SessionStore(settings.data_dir / "sessions.sqlite3", SESSION_SECONDS)
        self._data: DataPlane | None = None

    @property
    def data(self) -> DataPlane:
        if self._data is None:
            raise RuntimeError("the data plane is not open: only the serving process has it")
        return self._data

    def open_data_plane(self) -> DataPlane:
        if self._data is None:
            self._data = DataPlane(self.settings, self.metrics, self.destinations)
        return self._data

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

    def ready(self) -> tuple[bool, str]:
        if self._data is None:
            return False, "the write-ahead log is not open yet"
        return True, ""

    def close(self) -> None:
        self.sessions.close()
        self.control.close()
