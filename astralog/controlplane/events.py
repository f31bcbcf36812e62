"""Control-plane events: frozen, past-tense facts. The log of these is the source of truth.

Each event names its aggregate (``aggregate_id``) and, when it belongs to one, its org (``org``), so
the audit API can scope the log to a tenant. ``payload()`` and ``from_payload()`` are the only
(de)serialisation; the registry maps the stored type name back to the class.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, ClassVar


@dataclass(frozen=True)
class Event:
    registry: ClassVar[dict[str, type[Event]]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        Event.registry[cls.__name__] = cls

    @property
    def aggregate_id(self) -> str:
        raise NotImplementedError

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
class PlanDefined(Event):
    plan: str
    limits: dict[str, Any]

    @property
    def aggregate_id(self) -> str:
        return f"plan:{self.plan}"


@dataclass(frozen=True)
class OrgCreated(Event):
    org_id: str
    name: str
    plan: str

    @property
    def aggregate_id(self) -> str:
        return self.org_id


@dataclass(frozen=True)
class OrgPlanChanged(Event):
    org_id: str
    plan: str
    overrides: dict[str, Any] = field(default_factory=dict)

    @property
    def aggregate_id(self) -> str:
        return self.org_id


@dataclass(frozen=True)
class SourceCreated(Event):
    source_id: str
    org_id: str
    name: str
    description: str = ""

    @property
    def aggregate_id(self) -> str:
        return self.source_id


@dataclass(frozen=True)
class SourceRetentionSet(Event):
    """``days`` None means "the plan's retention"."""

    source_id: str
    org_id: str
    days: int | None

    @property
    def aggregate_id(self) -> str:
        return self.source_id


@dataclass(frozen=True)
class IngestKeyIssued(Event):
    key_id: str
    org_id: str
    source_id: str
    digest: str
    expires_at: str | None = None

    @property
    def aggregate_id(self) -> str:
        return f"key:{self.key_id}"


@dataclass(frozen=True)
class IngestKeyRotated(Event):
    """The old key stays valid until ``valid_until``; the replacement is its own IngestKeyIssued."""

    key_id: str
    org_id: str
    replaced_by: str
    valid_until: str

    @property
    def aggregate_id(self) -> str:
        return f"key:{self.key_id}"


@dataclass(frozen=True)
class IngestKeyRevoked(Event):
    key_id: str
    org_id: str

    @property
    def aggregate_id(self) -> str:
        return f"key:{self.key_id}"


@dataclass(frozen=True)
class TokenIssued(Event):
    """A management token (org-bound, with scopes) or an operator token (no org)."""

    token_id: str
    org_id: str | None
    name: str
    kind: str
    scopes: list[str]
    digest: str

    @property
    def aggregate_id(self) -> str:
        return f"token:{self.token_id}"


@dataclass(frozen=True)
class TokenRevoked(Event):
    token_id: str
    org_id: str | None

    @property
    def aggregate_id(self) -> str:
        return f"token:{self.token_id}"


@dataclass(frozen=True)
class ConnectorCreated(Event):
    """``secrets`` is a sealed record (AES-256-GCM, see astralog.security.fieldcrypt)."""

    connector_id: str
    org_id: str
    name: str
    kind: str
    config: dict[str, Any]
    secrets: dict[str, Any]

    @property
    def aggregate_id(self) -> str:
        return self.connector_id


@dataclass(frozen=True)
class ConnectorUpdated(Event):
    connector_id: str
    org_id: str
    config: dict[str, Any]
    secrets: dict[str, Any]

    @property
    def aggregate_id(self) -> str:
        return self.connector_id


@dataclass(frozen=True)
class ConnectorSecretsRewrapped(Event):
    """The data key was re-wrapped under a new master key; field ciphertexts are unchanged."""

    connector_id: str
    org_id: str
    secrets: dict[str, Any]
    key_id: str

    @property
    def aggregate_id(self) -> str:
        return self.connector_id


@dataclass(frozen=True)
class ConnectorTested(Event):
    connector_id: str
    org_id: str
    ok: bool
    failed: list[str]

    @property
    def aggregate_id(self) -> str:
        return self.connector_id


@dataclass(frozen=True)
class DestinationChanged(Event):
    """New batches of the org go to ``connector_id`` (None: the embedded bucket)."""

    org_id: str
    connector_id: str | None

    @property
    def aggregate_id(self) -> str:
        return f"destination:{self.org_id}"


@dataclass(frozen=True)
class RetentionPurged(Event):
    """Whole hour partitions older than ``before`` were deleted from a destination."""

    org_id: str
    source_id: str
    destination_id: str
    before: str
    objects: int
    rows: int

    @property
    def aggregate_id(self) -> str:
        return f"purge:{self.org_id}"
