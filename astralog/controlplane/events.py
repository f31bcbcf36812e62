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
    """A management token (org-bound, with scopes), an operator token (no org), or a personal
    access token of a person or service account (``person_id``), whose rights are its scopes
    intersected with its owner's role at each use."""

    token_id: str
    org_id: str | None
    name: str
    kind: str
    scopes: list[str]
    digest: str
    person_id: str | None = None
    expires_at: str | None = None


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
    """Whole hour partitions older than ``before`` were deleted from a destination.

    The rest is the signed purge receipt (:mod:`astralog.controlplane.purge_receipts`): the
    deleted keys, their bytes, the manifest hash and the receipt's time and signature. Records
    written before receipts existed have their defaults."""

    org_id: str
    source_id: str
    destination_id: str
    before: str
    objects: int
    rows: int
    bytes: int = 0
    object_keys: list[str] = field(default_factory=list)
    manifest_sha256: str = ""
    receipt_at: str = ""
    signature: str = ""


# ---- people, identities, single sign-on and sign-in policy ---------------------------------


@dataclass(frozen=True)
class PersonAdded(Event, aggregate="{person_id}"):
    """A person (invited by email, or provisioned at a first SSO sign-in) or a service account.

    ``sources`` None: every source; else the source ids a member, viewer or ingest account reads.
    ``break_glass``: a local owner who may sign in with a password while SSO is enforced."""

    person_id: str
    org_id: str
    kind: str  # "person" | "service"
    email: str
    name: str
    role: str
    sources: list[str] | None = None
    break_glass: bool = False


@dataclass(frozen=True)
class PersonRoleChanged(Event, aggregate="{person_id}"):
    """``via``: "admin" (a person changed it) or "sso" (claims at a sign-in changed it)."""

    person_id: str
    org_id: str
    role: str
    sources: list[str] | None
    via: str = "admin"


@dataclass(frozen=True)
class PersonDeprovisioned(Event, aggregate="{person_id}"):
    """Sessions and tokens of the person end at once; the record stays for the audit trail."""

    person_id: str
    org_id: str


@dataclass(frozen=True)
class PersonCredentialChanged(Event, aggregate="{person_id}"):
    """The fact only: secrets (password hashes, TOTP seeds) never enter the log.

    ``what``: password, totp_enrolled, totp_removed, recovery_codes_issued, recovery_code_used,
    passkey_added, passkey_removed."""

    person_id: str
    org_id: str
    what: str


@dataclass(frozen=True)
class IdentityLinked(Event, aggregate="identity:{connection_id}:{subject}"):
    """An IdP identity (connection, issuer, subject) now signs in as ``person_id``."""

    connection_id: str
    org_id: str
    issuer: str
    subject: str
    person_id: str


@dataclass(frozen=True)
class IdentityUnlinked(Event, aggregate="identity:{connection_id}:{subject}"):
    connection_id: str
    org_id: str
    subject: str
    person_id: str


@dataclass(frozen=True)
class IdpConfigured(Event, aggregate="{connection_id}"):
    """An org's OpenID Provider. ``client_secret`` is a sealed record (fieldcrypt).

    ``role_rules``: ordered ``{"claim", "value", "role", "sources"}``; ``strict``: a sign-in whose
    claims match no rule is refused (else ``default_role``)."""

    connection_id: str
    org_id: str
    name: str
    issuer: str
    client_id: str
    client_secret: dict[str, Any]
    scopes: list[str]
    role_rules: list[dict[str, Any]]
    strict: bool = True
    default_role: str | None = None
    jit: bool = True


@dataclass(frozen=True)
class IdpRemoved(Event, aggregate="{connection_id}"):
    connection_id: str
    org_id: str


@dataclass(frozen=True)
class DomainVerified(Event, aggregate="domain:{domain}"):
    """An operator attests the org owns ``domain``: JIT provisioning is allowed for it."""

    org_id: str
    domain: str


@dataclass(frozen=True)
class OrgSecurityPolicySet(Event, aggregate="policy:{org_id}"):
    org_id: str
    require_mfa: bool
    enforce_sso: bool
    session_idle_minutes: int
    session_absolute_hours: int


@dataclass(frozen=True)
class SignedIn(Event, aggregate="activity:{activity_id}"):
    """``method``: password, sso, token (a management token's bootstrap sign-in), reauth.
    ``claims``: the IdP claims of an SSO sign-in, redacted, for the mapping preview."""

    activity_id: str
    org_id: str
    person_id: str | None
    method: str
    idp: str | None = None
    amr: list[str] = field(default_factory=list)
    acr: str | None = None
    break_glass: bool = False
    claims: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class SignInFailed(Event, aggregate="activity:{activity_id}"):
    """A refused sign-in. ``who`` is a salted digest of the typed identifier, never the text."""

    activity_id: str
    org_id: str
    method: str
    reason: str
    who: str = ""


@dataclass(frozen=True)
class SessionsEnded(Event, aggregate="activity:{activity_id}"):
    """Sessions ended by an admin, a deprovisioning or an IdP back-channel logout.
    ``person_id`` None: every session of the org."""

    activity_id: str
    org_id: str
    person_id: str | None
    reason: str
    count: int


@dataclass(frozen=True)
class TokenUsed(Event, aggregate="activity:{activity_id}"):
    """A personal or service token was used (recorded at most once per token per hour)."""

    activity_id: str
    org_id: str | None  # None: an operator token
    token_id: str
    first_use_at: str


@dataclass(frozen=True)
class LogsRead(Event, aggregate="activity:{activity_id}"):
    """Who read which sources over which time range, and how many events came back."""

    activity_id: str
    org_id: str
    principal: str
    action: str  # search, histogram, facets, tail, export
    sources: list[str]
    start: str
    end: str
    events: int


# ---- legal holds ----------------------------------------------------------------------------


@dataclass(frozen=True)
class HoldProposed(Event, aggregate="hold:{hold_id}"):
    """A request to place a legal hold; it covers nothing until the other side approves it.

    ``side``: who asked, "owner" (an owner of the org, in person) or "operator". ``sources``
    None: every source of the org, present and future; ``start``/``end`` (ISO 8601, UTC) None:
    unbounded on that side."""

    hold_id: str
    org_id: str
    side: str
    reason: str
    case_id: str
    sources: list[str] | None = None
    start: str | None = None
    end: str | None = None


@dataclass(frozen=True)
class HoldPlaced(Event, aggregate="hold:{hold_id}"):
    """The other side approved the proposal: the hold is in force until a release is approved."""

    hold_id: str
    org_id: str
    side: str


@dataclass(frozen=True)
class HoldReleaseProposed(Event, aggregate="hold:{hold_id}"):
    """A request to release a hold; the hold stays in force until the other side approves."""

    hold_id: str
    org_id: str
    side: str
    reason: str


@dataclass(frozen=True)
class HoldReleased(Event, aggregate="hold:{hold_id}"):
    hold_id: str
    org_id: str
    side: str


@dataclass(frozen=True)
class HoldRequestWithdrawn(Event, aggregate="hold:{hold_id}"):
    """A pending request was taken back (or declined by the other side): a proposed hold is
    never placed; a hold whose release was asked for stays in force."""

    hold_id: str
    org_id: str
    side: str


@dataclass(frozen=True)
class PurgeHeld(Event, aggregate="purge:{org_id}"):
    """The purge kept the expired hour partitions of a source that the legal holds ``holds``
    cover (it deleted the other expired hours, before the retention cutoff ``before``);
    ``kept_from`` is the first of the kept hours, ``objects`` and ``rows`` what they hold."""

    org_id: str
    source_id: str
    holds: list[str]
    before: str
    kept_from: str
    objects: int
    rows: int


# ---- erasure of matching events -----------------------------------------------------------------


@dataclass(frozen=True)
class ErasureRequested(Event, aggregate="erasure:{erasure_id}"):
    """An admin asked to erase the events a query matches in a time range of some sources.

    The query text is kept (it says what is erased; the audit log is the org's own); ``preview``
    is what it matched when asked: count, affected objects. Nothing is hidden until another admin
    approves and the cancel window has passed."""

    erasure_id: str
    org_id: str
    requester: str  # the person who asked: never the one who approves
    query: str
    start: str
    end: str
    sources: list[str]
    preview: dict[str, Any]
    cancel_window_seconds: int


@dataclass(frozen=True)
class ErasureApproved(Event, aggregate="erasure:{erasure_id}"):
    """A second admin approved; the erasure is due at ``due_at`` unless cancelled before."""

    erasure_id: str
    org_id: str
    due_at: str


@dataclass(frozen=True)
class ErasureCancelled(Event, aggregate="erasure:{erasure_id}"):
    erasure_id: str
    org_id: str
    reason: str


@dataclass(frozen=True)
class ErasureHeld(Event, aggregate="erasure:{erasure_id}"):
    """The erasure is due but legal holds ``holds`` cover its scope: it waits for their release."""

    erasure_id: str
    org_id: str
    holds: list[str]


@dataclass(frozen=True)
class ErasureMasked(Event, aggregate="erasure:{erasure_id}"):
    """Deletion vectors hide the ``events`` matched events from every read path from now on."""

    erasure_id: str
    org_id: str
    events: int
    objects: list[str]


@dataclass(frozen=True)
class ErasureRewritten(Event, aggregate="erasure:{erasure_id}"):
    """The affected objects were stored again without the erased rows and swapped in the catalog
    at ``at``; ``objects``: ``{destination_id, old, new, rows_erased, delete}`` each. The old
    objects are deleted once searches planned before the swap have finished."""

    erasure_id: str
    org_id: str
    objects: list[dict[str, Any]]
    at: str


@dataclass(frozen=True)
class ErasureCompleted(Event, aggregate="erasure:{erasure_id}"):
    """The affected objects were rewritten without the erased rows (and ClickHouse rows deleted),
    the query matched nothing afterwards; the signed receipt names the objects and its hash."""

    erasure_id: str
    org_id: str
    events: int
    rewritten: list[str]
    manifest_sha256: str
    signature: str


@dataclass(frozen=True)
class OrgDeletionRequested(Event, aggregate="deletion:{org_id}"):
    """The org stops at once (ingest 410, searches and credentials refused) and its data is
    purged from every destination it used once ``purge_after`` (ISO 8601) has passed, unless an
    operator restores it first. ``side``: "owner" (in person) or "operator"."""

    org_id: str
    side: str
    reason: str
    purge_after: str


@dataclass(frozen=True)
class OrgRestored(Event, aggregate="deletion:{org_id}"):
    """An operator took the org back out of pending deletion, within the grace."""

    org_id: str
    reason: str


@dataclass(frozen=True)
class OrgDeletionHeld(Event, aggregate="deletion:{org_id}"):
    """The grace is over but legal holds in force on the org stop the final purge."""

    org_id: str
    holds: list[str]


@dataclass(frozen=True)
class OrgDeleted(Event, aggregate="deletion:{org_id}"):
    """Every destination the org used was purged: the org is a tombstone. The deletion
    certificate (destinations, objects, rows, bytes, its manifest SHA-256) is signed with the
    instance's Ed25519 key; ``certificate`` is the whole signed document."""

    org_id: str
    destinations: list[str]
    objects: int
    rows: int
    bytes: int
    manifest_sha256: str
    signature: str
    certificate: dict[str, Any] = field(default_factory=dict)


# ---- deletion of one source or one connector (the org deletion's rules at their scope) ----------


@dataclass(frozen=True)
class ScopeDeletionRequested(Event, aggregate="deletion:{target_id}"):
    """A source or a connector (``scope``: "source" or "connector") of the org stops at once: a
    source's keys answer 410 and searches leave it out; no new batch goes to a connector (the
    org falls back to the embedded bucket if it was active). Its data is purged once
    ``purge_after`` (ISO 8601) has passed, unless an admin restores it first."""

    org_id: str
    scope: str
    target_id: str
    name: str
    reason: str
    purge_after: str


@dataclass(frozen=True)
class ScopeRestored(Event, aggregate="deletion:{target_id}"):
    """An admin took the source or connector back out of pending deletion, within the grace."""

    org_id: str
    scope: str
    target_id: str
    reason: str


@dataclass(frozen=True)
class ScopeDeletionHeld(Event, aggregate="deletion:{target_id}"):
    """The grace is over but legal holds in force over its data stop the final purge."""

    org_id: str
    scope: str
    target_id: str
    holds: list[str]


@dataclass(frozen=True)
class ScopeDeleted(Event, aggregate="deletion:{target_id}"):
    """Its data was purged from every destination it used (a connector: from that one) and a
    signed deletion certificate issued (``certificate``, the whole document). A source's keys
    are revoked and its name is free again; a connector's sealed secrets leave the state."""

    org_id: str
    scope: str
    target_id: str
    objects: int
    rows: int
    bytes: int
    manifest_sha256: str
    certificate: dict[str, Any] = field(default_factory=dict)


# ---- erasure of matching events -----------------------------------------------------------------
