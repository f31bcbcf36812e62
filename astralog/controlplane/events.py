"""Control-plane events: frozen, past-tense facts. The log of these is the source of truth.

Each event class declares its aggregate once, as a template over its own fields
(``class KeyRevoked(Event, aggregate="key:{key_id}")``), and, when it belongs to one, names its
org (``org``), so the audit API can scope the log to a tenant. ``payload()`` and
``from_payload()`` are the only (de)serialisation; the registry maps the stored type name back
to the class.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, ClassVar


@dataclass(frozen=True)
class Event:
    registry: ClassVar[dict[str, type[Event]]] = {}
    aggregate: ClassVar[str]

    def __init_subclass__(cls, aggregate: str, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls.aggregate = aggregate
        Event.registry[cls.__name__] = cls

    @property
    def aggregate_id(self) -> str:
        """The stream this event extends (its optimistic-concurrency version counts there)."""
        return self.aggregate.format_map(vars(self))

    @property
    def org(self) -> str | None:
        value = getattr(self, "org_id", None)
        return str(value) if value else None

    def payload(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_payload(cls, type_name: str, payload: dict[str, Any]) -> Event:
        event_cls = Event.registry[type_name]
        return event_cls(**payload)


@dataclass(frozen=True)
class PlanDefined(Event, aggregate="plan:{plan}"):
    plan: str
    limits: dict[str, Any]


@dataclass(frozen=True)
class OrgCreated(Event, aggregate="{org_id}"):
    org_id: str
    name: str
    plan: str


@dataclass(frozen=True)
class OrgPlanChanged(Event, aggregate="{org_id}"):
    org_id: str
    plan: str
    overrides: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class SourceCreated(Event, aggregate="{source_id}"):
    source_id: str
    org_id: str
    name: str
    description: str = ""


@dataclass(frozen=True)
class SourceRetentionSet(Event, aggregate="{source_id}"):
    """``days`` None means "the plan's retention"."""

    source_id: str
    org_id: str
    days: int | None


@dataclass(frozen=True)
class IngestKeyIssued(Event, aggregate="key:{key_id}"):
    key_id: str
    org_id: str
    source_id: str
    digest: str
    expires_at: str | None = None


@dataclass(frozen=True)
class IngestKeyRotated(Event, aggregate="key:{key_id}"):
    """The old key stays valid until ``valid_until``; the replacement is its own IngestKeyIssued."""

    key_id: str
    org_id: str
    replaced_by: str
    valid_until: str


@dataclass(frozen=True)
class IngestKeyRevoked(Event, aggregate="key:{key_id}"):
    key_id: str
    org_id: str


@dataclass(frozen=True)
class TokenIssued(Event, aggregate="token:{token_id}"):
    """A management token (org-bound, with scopes) or an operator token (no org)."""

    token_id: str
    org_id: str | None
    name: str
    kind: str
    scopes: list[str]
    digest: str


@dataclass(frozen=True)
class TokenRevoked(Event, aggregate="token:{token_id}"):
    token_id: str
    org_id: str | None


@dataclass(frozen=True)
class ConnectorCreated(Event, aggregate="{connector_id}"):
    """``secrets`` is a sealed record (AES-256-GCM, see astralog.security.fieldcrypt)."""

    connector_id: str
    org_id: str
    name: str
    kind: str
    config: dict[str, Any]
    secrets: dict[str, Any]


@dataclass(frozen=True)
class ConnectorUpdated(Event, aggregate="{connector_id}"):
    connector_id: str
    org_id: str
    config: dict[str, Any]
    secrets: dict[str, Any]


@dataclass(frozen=True)
class ConnectorSecretsRewrapped(Event, aggregate="{connector_id}"):
    """The data key was re-wrapped under a new master key; field ciphertexts are unchanged."""

    connector_id: str
    org_id: str
    secrets: dict[str, Any]
    key_id: str


@dataclass(frozen=True)
class ConnectorTested(Event, aggregate="{connector_id}"):
    connector_id: str
    org_id: str
    ok: bool
    failed: list[str]


@dataclass(frozen=True)
class DestinationChanged(Event, aggregate="destination:{org_id}"):
    """New batches of the org go to ``connector_id`` (None: the embedded bucket)."""

    org_id: str
    connector_id: str | None


@dataclass(frozen=True)
class RetentionPurged(Event, aggregate="purge:{org_id}"):
    """Whole hour partitions older than ``before`` were deleted from a destination."""

    org_id: str
    source_id: str
    destination_id: str
    before: str
    objects: int
    rows: int
