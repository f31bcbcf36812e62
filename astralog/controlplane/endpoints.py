"""Notification endpoints of alerts: a webhook URL or an e-mail address, per org.

Creating, changing, disabling, deleting an endpoint and rotating its secret are events in the
hash-chained log (``EndpointCreated`` ... ``EndpointSecretRotated``); the ``alert_endpoints``
projection is what the API and the delivery worker read. The signing secret (``whsec_``) and
any extra headers a receiver wants (they often carry its own token) never enter an event: they
are sealed with the connector secrets' :class:`FieldCipher` (associated data binding org,
endpoint and field) in a table beside the log, written in the same transaction as the event.
A secret is returned once, by the call that made it. A rotation keeps the previous secret in
force for an overlap, so deliveries carry both signatures until every receiver has the new one.
A webhook URL is checked as a server-side request target when it is set, and again at every
delivery (:mod:`astralog.controlplane.endpoint_targets`).
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from astralog.controlplane.commands import check_name
from astralog.controlplane.endpoint_targets import (
    Target,
    WebhookPolicy,
    check_email,
    check_headers,
)
from astralog.controlplane.events import Event
from astralog.controlplane.projections import handles
from astralog.controlplane.secret_tables import SecretTables
from astralog.controlplane.service import ControlPlane
from astralog.controlplane.store import Actor, Recorded
from astralog.errors import BadRequest, Conflict, NotFound
from astralog.ids import new_id
from astralog.security import webhook_signing as signing
from astralog.security.fieldcrypt import FieldCipher, SealedRecord

Kind = Literal["webhook", "email"]
MAX_OVERLAP_HOURS = 168


@dataclass(frozen=True)
class EndpointCreated(Event, aggregate="endpoint:{endpoint_id}"):
    """``target`` is the webhook URL or the e-mail address; ``header_names`` only name the
    sealed extra headers; ``errors``: it also receives every alert's errors in the org."""

    endpoint_id: str
    org_id: str
    name: str
    kind: str
    target: str
    header_names: list[str]
    errors: bool = False


@dataclass(frozen=True)
class EndpointUpdated(Event, aggregate="endpoint:{endpoint_id}"):
    """The whole definition after the change; ``enabled`` True re-enables a disabled one."""

    endpoint_id: str
    org_id: str
    name: str
    target: str
    header_names: list[str]
    enabled: bool
    errors: bool = False


@dataclass(frozen=True)
class EndpointDisabled(Event, aggregate="endpoint:{endpoint_id}"):
    """Nothing more is sent until an admin enables it; ``reason`` says why (e.g. a 410)."""

    endpoint_id: str
    org_id: str
    reason: str


@dataclass(frozen=True)
class EndpointDeleted(Event, aggregate="endpoint:{endpoint_id}"):
    endpoint_id: str
    org_id: str


@dataclass(frozen=True)
class EndpointSecretRotated(Event, aggregate="endpoint:{endpoint_id}"):
    """A new secret; the previous one still signs until ``previous_valid_until`` (ISO 8601)."""

    endpoint_id: str
    org_id: str
    previous_valid_until: str


@handles(EndpointCreated)
def _created(conn: sqlite3.Connection, e: EndpointCreated, r: Recorded) -> None:
    conn.execute(
        "INSERT INTO alert_endpoints (id, org_id, name, kind, target, header_names, enabled, "
        "errors, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, 1, ?, ?, ?)",
        (e.endpoint_id, e.org_id, e.name, e.kind, e.target, json.dumps(e.header_names),
         int(e.errors), r.at, r.at),
    )  # fmt: skip


@handles(EndpointUpdated)
def _updated(conn: sqlite3.Connection, e: EndpointUpdated, r: Recorded) -> None:
    conn.execute(
        "UPDATE alert_endpoints SET name = ?, target = ?, header_names = ?, enabled = ?, "
        "disabled_reason = CASE WHEN ? THEN NULL ELSE disabled_reason END, updated_at = ?, "
        "errors = ? WHERE id = ?",
        (e.name, e.target, json.dumps(e.header_names), int(e.enabled), e.enabled, r.at,
         int(e.errors), e.endpoint_id),
    )  # fmt: skip


@handles(EndpointDisabled)
def _disabled(conn: sqlite3.Connection, e: EndpointDisabled, r: Recorded) -> None:
    conn.execute(
        "UPDATE alert_endpoints SET enabled = 0, disabled_reason = ?, updated_at = ? WHERE id = ?",
        (e.reason, r.at, e.endpoint_id),
    )


@handles(EndpointDeleted)
def _deleted(conn: sqlite3.Connection, e: EndpointDeleted, r: Recorded) -> None:
    conn.execute("DELETE FROM alert_endpoints WHERE id = ?", (e.endpoint_id,))


@handles(EndpointSecretRotated)
def _rotated(conn: sqlite3.Connection, e: EndpointSecretRotated, r: Recorded) -> None:
    conn.execute(
        "UPDATE alert_endpoints SET secret_rotated_at = ? WHERE id = ?", (r.at, e.endpoint_id)
    )


SECRETS_SCHEMA = """
CREATE TABLE IF NOT EXISTS alert_endpoint_secrets (
    endpoint_id TEXT PRIMARY KEY, org_id TEXT NOT NULL, sealed TEXT NOT NULL,
    previous_until REAL NOT NULL DEFAULT 0
)
"""


class Endpoints(SecretTables):
    def __init__(
        self, control: ControlPlane, cipher: FieldCipher, policy: WebhookPolicy,
        *, email_enabled: bool = False, max_per_org: int = 50,
    ) -> None:  # fmt: skip
        super().__init__(control, SECRETS_SCHEMA)
        self.store = control.store
        self.cipher = cipher
        self.policy = policy
        self.email_enabled = email_enabled
        self.max_per_org = max_per_org

    # ---- commands ----------------------------------------------------------------------------

    def create(
        self, org_id: str, name: str, kind: Kind, target: str, headers: Mapping[str, Any],
        actor: Actor, *, errors: bool = False,
    ) -> dict[str, Any]:  # fmt: skip
        """The new endpoint's view; a webhook's also carries its ``secret``, shown this once."""
        check_name(name, "endpoint")
        target, clean = self._check_target(kind, target), check_headers(headers)
        endpoint_id, secret = new_id("aep"), signing.new_secret()
        with self._tx() as conn:
            self._check_room(conn, org_id, name)
            event = EndpointCreated(endpoint_id, org_id, name, kind, target, sorted(clean),
                                    errors)  # fmt: skip
            self.store.append(event, actor, 0)
            self._store_sealed(conn, org_id, endpoint_id, {"secret": secret}, clean, 0.0)
        view = self.get(org_id, endpoint_id)
        return {**view, "secret": secret} if kind == "webhook" else view

    def update(
        self, org_id: str, endpoint_id: str, changes: Mapping[str, Any], actor: Actor
    ) -> dict[str, Any]:
        """``changes``: any of name, target, headers (replaces them all), enabled, errors."""
        row = self._row(org_id, endpoint_id)
        name = check_name(changes.get("name") or row["name"], "endpoint")
        target = row["target"]
        if changes.get("target") is not None:
            target = self._check_target(row["kind"], changes["target"])
        enabled = bool(row["enabled"] if changes.get("enabled") is None else changes["enabled"])
        errors = bool(row["errors"] if changes.get("errors") is None else changes["errors"])
        with self._tx() as conn:
            secrets, headers, until = self._open(conn, org_id, endpoint_id)
            if changes.get("headers") is not None:
                headers = check_headers(changes["headers"])
                self._store_sealed(conn, org_id, endpoint_id, secrets, headers, until)
            if name != row["name"] and self._named(conn, org_id, name):
                raise Conflict(f"an endpoint named {name!r} already exists in this org")
            event = EndpointUpdated(endpoint_id, org_id, name, target, sorted(headers), enabled,
                                    errors)  # fmt: skip
            self.store.append(event, actor, self.store.version(event.aggregate_id))
        return self.get(org_id, endpoint_id)

    def disable(self, org_id: str, endpoint_id: str, reason: str, actor: Actor) -> None:
        with self._tx():
            event = EndpointDisabled(endpoint_id, org_id, reason[:500])
            self.store.append(event, actor, self.store.version(event.aggregate_id))

    def delete(self, org_id: str, endpoint_id: str, actor: Actor) -> None:
        self._row(org_id, endpoint_id)
        with self._tx() as conn:
            event = EndpointDeleted(endpoint_id, org_id)
            self.store.append(event, actor, self.store.version(event.aggregate_id))
            conn.execute("DELETE FROM alert_endpoint_secrets WHERE endpoint_id = ?", (endpoint_id,))

    def forget_org(self, org_id: str) -> None:
        """The org's sealed secrets and headers (its endpoints leave with ``OrgDeleted``)."""
        with self._tx() as conn:
            conn.execute("DELETE FROM alert_endpoint_secrets WHERE org_id = ?", (org_id,))

    def rotate(
        self, org_id: str, endpoint_id: str, overlap_hours: float, actor: Actor
    ) -> dict[str, Any]:
        """A new secret, returned this once; the current one signs too for ``overlap_hours``."""
        row = self._row(org_id, endpoint_id)
        if row["kind"] != "webhook":
            raise BadRequest("only a webhook endpoint has a signing secret")
        if not 0 <= overlap_hours <= MAX_OVERLAP_HOURS:
            raise BadRequest(f"overlap_hours must be from 0 to {MAX_OVERLAP_HOURS}")
        secret, until = signing.new_secret(), time.time() + overlap_hours * 3600
        with self._tx() as conn:
            current, headers, _ = self._open(conn, org_id, endpoint_id)
            kept = {"secret": secret, "previous": current["secret"]} if overlap_hours else {}
            self._store_sealed(conn, org_id, endpoint_id, kept or {"secret": secret}, headers,
                               until if overlap_hours else 0.0)  # fmt: skip
            valid = datetime.fromtimestamp(until, UTC).isoformat(timespec="seconds")
            event = EndpointSecretRotated(endpoint_id, org_id, valid)
            self.store.append(event, actor, self.store.version(event.aggregate_id))
        return {**self.get(org_id, endpoint_id), "secret": secret, "previous_valid_until": valid}

    # ---- reads -------------------------------------------------------------------------------

    def list(self, org_id: str) -> list[dict[str, Any]]:
        with self.store.reading() as conn:
            rows = conn.execute(
                "SELECT * FROM alert_endpoints WHERE org_id = ? ORDER BY created_at, id", (org_id,)
            ).fetchall()
        return [_view(dict(r)) for r in rows]

    def get(self, org_id: str, endpoint_id: str) -> dict[str, Any]:
        return _view(self._row(org_id, endpoint_id))

    def for_errors(self, org_id: str) -> tuple[str, ...]:
        """The org's enabled endpoints that receive every alert's errors."""
        with self.store.reading() as conn:
            rows = conn.execute(
                "SELECT id FROM alert_endpoints WHERE org_id = ? AND errors = 1 AND enabled = 1",
                (org_id,),
            ).fetchall()
        return tuple(str(r[0]) for r in rows)

    def require(self, org_id: str, endpoint_ids: tuple[str, ...]) -> None:
        """404 unless every id is an endpoint of this org (for the alerts that name them)."""
        for endpoint_id in endpoint_ids:
            self._row(org_id, endpoint_id)

    def target(self, org_id: str, endpoint_id: str) -> Target | None:
        """For the delivery worker: None once the endpoint is deleted. Plain secrets: never
        returned by the API."""
        try:
            row = self._row(org_id, endpoint_id)
        except NotFound:
            return None
        with self.store.reading() as conn:
            secrets, headers, until = self._open(conn, org_id, endpoint_id)
        in_force = [secrets["secret"]]
        if "previous" in secrets and time.time() < until:
            in_force.append(secrets["previous"])
        return Target(endpoint_id, org_id, row["kind"], row["target"], bool(row["enabled"]),
                      tuple(in_force), headers)  # fmt: skip

    # ---- inside -----------------------------------------------------------------------------

    def _check_target(self, kind: str, target: Any) -> str:
        if not isinstance(target, str):
            raise BadRequest("target must be a string: the webhook URL or the e-mail address")
        if kind == "email":
            if not self.email_enabled:
                raise Conflict(
                    "e-mail endpoints need an SMTP server: the operator sets "
                    "ASTRALOG_ALERTS__SMTP_HOST and ASTRALOG_ALERTS__SMTP_FROM"
                )
            return check_email(target)
        if kind != "webhook":
            raise BadRequest("kind must be 'webhook' or 'email'")
        return self.policy.check(target).url

    def _check_room(self, conn: sqlite3.Connection, org_id: str, name: str) -> None:
        if self._named(conn, org_id, name):
            raise Conflict(f"an endpoint named {name!r} already exists in this org")
        count = conn.execute(
            "SELECT count(*) FROM alert_endpoints WHERE org_id = ?", (org_id,)
        ).fetchone()[0]
        if count >= self.max_per_org:
            raise Conflict(f"an org has at most {self.max_per_org} alert endpoints; delete one")

    @staticmethod
    def _named(conn: sqlite3.Connection, org_id: str, name: str) -> bool:
        return bool(
            conn.execute(
                "SELECT 1 FROM alert_endpoints WHERE org_id = ? AND name = ?", (org_id, name)
            ).fetchone()
        )

    def _store_sealed(
        self, conn: sqlite3.Connection, org_id: str, endpoint_id: str,
        secrets: Mapping[str, str], headers: Mapping[str, str], previous_until: float,
    ) -> None:  # fmt: skip
        fields = {**secrets, "headers": json.dumps(dict(headers))}
        sealed = self.cipher.seal_record(org_id, endpoint_id, fields).to_json()
        conn.execute(
            "INSERT INTO alert_endpoint_secrets VALUES (?, ?, ?, ?) ON CONFLICT (endpoint_id)"
            " DO UPDATE SET org_id = excluded.org_id, sealed = excluded.sealed,"
            " previous_until = excluded.previous_until",
            (endpoint_id, org_id, sealed, previous_until),
        )

    def _open(
        self, conn: sqlite3.Connection, org_id: str, endpoint_id: str
    ) -> tuple[dict[str, str], dict[str, str], float]:
        row = conn.execute(
            "SELECT sealed, previous_until FROM alert_endpoint_secrets "
            "WHERE endpoint_id = ? AND org_id = ?",
            (endpoint_id, org_id),
        ).fetchone()
        if row is None:
            raise NotFound(f"endpoint {endpoint_id[:40]!r} does not exist in this org")
        sealed = SealedRecord.from_json(row[0])
        plain = {f: self.cipher.open_field(org_id, endpoint_id, sealed, f) for f in sealed.fields}
        headers = json.loads(plain.pop("headers", "{}"))
        return plain, headers, float(row[1])

    def _row(self, org_id: str, endpoint_id: str) -> dict[str, Any]:
        with self.store.reading() as conn:
            row = conn.execute(
                "SELECT * FROM alert_endpoints WHERE id = ? AND org_id = ?", (endpoint_id, org_id)
            ).fetchone()
        if row is None:
            raise NotFound(f"endpoint {endpoint_id[:40]!r} does not exist in this org")
        return dict(row)


def _view(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": row["id"],
        "name": row["name"],
        "kind": row["kind"],
        "target": row["target"],
        "headers_set": json.loads(row["header_names"]),
        "enabled": bool(row["enabled"]),
        "errors": bool(row["errors"]),
        "disabled_reason": row["disabled_reason"],
        "created_at": row["created_at"],
        "updated_at": row["updated_at"],
        "secret_rotated_at": row["secret_rotated_at"],
    }
