"""An org's identity providers (OIDC connections), the IdP identities linked to its people, and
what an SSO sign-in does to a person. Stage: control plane (commands -> events -> projections).

What it promises:

* A connection's ``client_secret`` is sealed (AES-256-GCM, bound to the org and the connection)
  before it enters the log, and no view ever returns it.
* An identity is (connection, ``iss``, ``sub``), never an email. An identity unknown to the org
  becomes a new account only by JIT provisioning: the connection allows it, the email is
  verified by the IdP and its domain verified by the org, and no account has that email yet (an
  existing account links SSO itself, signed in with its own credentials).
* Claim -> role rules run in order; the highest-ranked matching role wins and the sources of its
  rules add up. Strict connections refuse a sign-in that matches no rule; otherwise the default
  role applies, and it can lower a person's role but never raise it (an empty result never
  widens). The role is synced at every sign-in (``PersonRoleChanged`` with ``via="sso"``), so a
  claim that goes away takes its role with it.
"""

from __future__ import annotations

import builtins
import contextlib
import json
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any
from urllib.parse import urlsplit

from astralog.auth.oidc import SsoFailure
from astralog.auth.roles import ROLES, role
from astralog.controlplane import events as ev
from astralog.controlplane.people import People, normalise_email
from astralog.controlplane.store import Actor, EventStore
from astralog.errors import BadRequest, Conflict, NotFound
from astralog.ids import new_id
from astralog.security.fieldcrypt import FieldCipher, SealedRecord

MAX_CONNECTIONS = 20
MAX_RULES = 100
_SCOPE = re.compile(r"^[\x21\x23-\x5b\x5d-\x7e]{1,100}$")
_CLAIM = re.compile(r"^[A-Za-z0-9_:/.\-]{1,100}$")
_SHOWN = {"iss", "aud", "azp", "sub", "iat", "exp", "auth_time", "amr", "acr", "email_verified"}
REDACTED = "[redacted]"


@dataclass(frozen=True)
class RoleRule:
    """``claim`` (a dotted path into the claims) equals ``value``, or is a list holding it."""

    claim: str
    value: str
    role: str
    sources: list[str] | None = None

    def matches(self, claims: Mapping[str, Any]) -> bool:
        found = claim_value(claims, self.claim)
        if isinstance(found, list):
            return self.value in [str(v) for v in found if isinstance(v, str | int | bool)]
        return found is not None and str(found) == self.value


@dataclass(frozen=True)
class ConnectionSpec:
    name: str
    issuer: str
    client_id: str
    scopes: list[str] = field(default_factory=lambda: ["openid", "email", "profile"])
    rules: list[RoleRule] = field(default_factory=list)
    strict: bool = True
    default_role: str | None = None
    jit: bool = True


@dataclass(frozen=True)
class Connection:
    id: str
    org_id: str
    spec: ConnectionSpec
    sealed_secret: dict[str, Any] = field(repr=False)
    last_sign_in: dict[str, Any] | None = None

    def view(self) -> dict[str, Any]:
        """What admins read: everything but the secret, which is write-only."""
        spec = asdict(self.spec)
        spec["role_rules"] = spec.pop("rules")  # the name the API takes them by
        last = self.last_sign_in["at"] if self.last_sign_in else None
        return {"id": self.id, **spec, "has_client_secret": True, "last_sign_in": last}


@dataclass(frozen=True)
class Mapped:
    role: str
    sources: list[str] | None
    matched: list[int]  # indexes of the rules that matched


@dataclass(frozen=True)
class SignIn:
    person: dict[str, Any]
    mapped: Mapped | None
    provisioned: bool = False


def claim_value(claims: Mapping[str, Any], path: str) -> Any:
    """``claims[path]``, or a nested value by dots (``realm_access.roles``) when not top-level."""
    if path in claims:
        return claims[path]
    value: Any = claims
    for part in path.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return None
        value = value[part]
    return value


def map_claims(rules: builtins.list[RoleRule], claims: Mapping[str, Any]) -> Mapped | None:
    """The role the claims earn: highest rank wins (the first such rule on a tie); the sources
    of every matching rule of that role add up (None, all sources, absorbs the rest)."""
    matched = [i for i, rule in enumerate(rules) if rule.matches(claims)]
    if not matched:
        return None
    best = max(matched, key=lambda i: (ROLES[rules[i].role].rank, -i))
    winner = rules[best].role
    same = [i for i in matched if rules[i].role == winner]
    sources: set[str] | None = set()
    for i in same:
        granted = rules[i].sources
        sources = None if granted is None or sources is None else sources | set(granted)
    return Mapped(winner, None if sources is None else sorted(sources), matched)


def same_email(claimed: str, invited: str) -> bool:
    """Whether the IdP's email is the invited one. Only ASCII letters compare without case:
    Unicode case folding makes "\u212aate@" (Kelvin sign) equal "kate@", another mailbox. A
    non-ASCII local part or domain never matches here (invited domains are ASCII; an IdP that
    sends a domain's Unicode form is refused rather than guessed at)."""
    local, at, domain = claimed.strip().rpartition("@")
    invited_local, _, invited_domain = invited.rpartition("@")
    if not (at and local and claimed.isascii() and invited.isascii()):
        return False
    return (local.lower(), domain.lower()) == (invited_local.lower(), invited_domain.lower())


def redact_claims(claims: Mapping[str, Any], rules: builtins.list[RoleRule]) -> dict[str, Any]:
    """The claims that go into the audit log and the mapping preview: the ones rules read and the
    protocol's own, bounded; the email masked; every other value replaced by a marker."""
    used = {rule.claim.split(".")[0] for rule in rules}
    out: dict[str, Any] = {}
    for name, value in list(claims.items())[:100]:
        if name in used or name in _SHOWN:
            out[name] = _bounded(value)
        elif name == "email" and isinstance(value, str):
            local, _, domain = value.rpartition("@")
            out[name] = f"{local[:1]}***@{domain}"
        else:
            out[name] = REDACTED
    return out


def _bounded(value: Any, depth: int = 0) -> Any:
    if isinstance(value, str):
        return value[:200]
    if isinstance(value, list):
        return [_bounded(v, depth + 1) for v in value[:50]]
    if isinstance(value, dict) and depth < 3:
        return {str(k)[:100]: _bounded(v, depth + 1) for k, v in list(value.items())[:50]}
    if isinstance(value, int | float | bool) or value is None:
        return value
    return REDACTED


class IdentityProviders:
    def __init__(self, store: EventStore, people: People, cipher: FieldCipher) -> None:
        self.store = store
        self.people = people
        self.cipher = cipher

    # ---- connections ---------------------------------------------------------------------

    def configure(
        self,
        org_id: str,
        connection_id: str | None,
        spec: ConnectionSpec,
        client_secret: str | None,
        actor: Actor,
    ) -> Connection:
        """Create (``connection_id`` None) or replace a connection; a None secret keeps the old."""
        self.validate(org_id, spec)
        old = None if connection_id is None else self.get(org_id, connection_id)
        connection_id = connection_id or new_id("idp")
        if old is None and not client_secret:
            raise BadRequest("client_secret is required when adding an identity provider")
        sealed = (
            old.sealed_secret
            if client_secret is None and old is not None
            else self._seal(org_id, connection_id, client_secret or "")
        )
        with self.store.transaction() as conn:
            self._check_unique(conn, org_id, connection_id, spec.name, creating=old is None)
            event = ev.IdpConfigured(
                connection_id,
                org_id,
                spec.name,
                spec.issuer,
                spec.client_id,
                sealed,
                list(spec.scopes),
                [asdict(r) for r in spec.rules],
                spec.strict,
                spec.default_role,
                spec.jit,
            )
            self.store.append(event, actor, self.store.version(connection_id))
        return self.get(org_id, connection_id)

    def remove(self, org_id: str, connection_id: str, actor: Actor) -> None:
        self.get(org_id, connection_id)
        with self.store.transaction():
            version = self.store.version(connection_id)
            self.store.append(ev.IdpRemoved(connection_id, org_id), actor, version)

    def get(self, org_id: str, connection_id: str) -> Connection:
        return _connection(
            self.store.tenant_row("idp_connections", connection_id, org_id, "identity provider")
        )

    def find(self, connection_id: str) -> Connection | None:
        """A connection by id alone, for the public sign-in routes (the id names the org)."""
        with self.store.reading() as conn:
            row = conn.execute(
                "SELECT * FROM idp_connections WHERE id = ?", (connection_id,)
            ).fetchone()
        return None if row is None else _connection(dict(row))

    def list(self, org_id: str) -> builtins.list[Connection]:
        with self.store.reading() as conn:
            rows = conn.execute(
                "SELECT * FROM idp_connections WHERE org_id = ? ORDER BY name", (org_id,)
            ).fetchall()
        return [_connection(dict(r)) for r in rows]

    def client_secret(self, connection: Connection) -> str:
        sealed = SealedRecord.from_dict(connection.sealed_secret)
        return self.cipher.open_field(connection.org_id, connection.id, sealed, "client_secret")

    def preview(self, org_id: str, connection_id: str) -> dict[str, Any]:
        """The last sign-in's claims (redacted when recorded) beside what the current rules make
        of them and the role the person holds now."""
        connection = self.get(org_id, connection_id)
        last = connection.last_sign_in
        if not last:
            return {"last_sign_in": None, "detail": "nobody has signed in through it yet"}
        mapped = map_claims(connection.spec.rules, last["claims"])
        result: dict[str, Any] = (
            {"role": mapped.role, "sources": mapped.sources, "matched_rules": mapped.matched}
            if mapped is not None
            else {
                "role": None if connection.spec.strict else connection.spec.default_role,
                "refused": connection.spec.strict,
                "matched_rules": [],
            }
        )
        person = None
        if last.get("person_id"):
            found = self.people.get(org_id, last["person_id"])
            person = {k: found[k] for k in ("id", "email", "role", "sources", "state")}
        return {
            "last_sign_in": last["at"],
            "claims": last["claims"],
            "result": result,
            "person": person,
        }

    # ---- identities and sign-in ------------------------------------------------------------

    def person_for(self, connection: Connection, issuer: str, subject: str) -> str | None:
        with self.store.reading() as conn:
            row = conn.execute(
                "SELECT person_id FROM identities WHERE connection_id = ? AND issuer = ? "
                "AND subject = ?",
                (connection.id, issuer, subject),
            ).fetchone()
        return None if row is None else str(row[0])

    def link(
        self, connection: Connection, issuer: str, subject: str, person_id: str, actor: Actor
    ) -> None:
        """Link an identity to a person who is signed in with their own credentials."""
        linked = self.person_for(connection, issuer, subject)
        if linked == person_id:
            return
        if linked is not None:
            raise SsoFailure("identity_in_use", "this IdP identity is linked to another account")
        self.people.get(connection.org_id, person_id)  # the same org, or NotFound
        event = ev.IdentityLinked(connection.id, connection.org_id, issuer, subject, person_id)
        with self.store.transaction():
            self.store.append(event, actor, self.store.version(event.aggregate_id))

    def identities(self, org_id: str, person_id: str) -> builtins.list[dict[str, Any]]:
        """The IdP identities linked to one person, each with its connection's name."""
        with self.store.reading() as conn:
            rows = conn.execute(
                "SELECT i.connection_id, c.name, i.issuer, i.subject, i.linked_at "
                "FROM identities i JOIN idp_connections c ON c.id = i.connection_id "
                "WHERE i.org_id = ? AND i.person_id = ? ORDER BY c.name, i.linked_at",
                (org_id, person_id),
            ).fetchall()
        keys = ("connection_id", "connection_name", "issuer", "subject", "linked_at")
        return [dict(zip(keys, row, strict=True)) for row in rows]

    def unlink(self, org_id: str, connection_id: str, person_id: str, actor: Actor) -> int:
        """Unlink the person's identities at one connection (a person may hold several)."""
        linked = [
            i for i in self.identities(org_id, person_id) if i["connection_id"] == connection_id
        ]
        if not linked:
            raise NotFound("no identity of yours is linked at this identity provider")
        with self.store.transaction():
            for identity in linked:
                event = ev.IdentityUnlinked(connection_id, org_id, identity["subject"], person_id)
                self.store.append(event, actor, self.store.version(event.aggregate_id))
        return len(linked)

    def check_invited(
        self, connection: Connection, claims: Mapping[str, Any], person_id: str
    ) -> None:
        """Before an invitation is spent on this IdP identity: the invited account is active, the
        IdP vouches for its email (verified, equal ignoring ASCII case), the identity is nobody
        else's, and the claims map to a role."""
        person = self.people.get(connection.org_id, person_id)
        if person["state"] != "active":
            raise SsoFailure("deprovisioned", "this account was deprovisioned")
        email = claims.get("email")
        verified = claims.get("email_verified") in (True, "true")
        if not (verified and isinstance(email, str) and same_email(email, str(person["email"]))):
            raise SsoFailure(
                "invitation_email_mismatch",
                "the identity provider's account does not have the invited email (verified): "
                "sign in there as the person the invitation was sent to",
            )
        linked = self.person_for(connection, str(claims["iss"]), str(claims["sub"]))
        if linked not in (None, person_id):
            raise SsoFailure("identity_in_use", "this IdP identity is linked to another account")
        self.check_mapping(connection, claims)

    def check_mapping(self, connection: Connection, claims: Mapping[str, Any]) -> Mapped | None:
        """What the rules make of the claims; a strict connection refuses when none match."""
        mapped = map_claims(connection.spec.rules, claims)
        if mapped is None and connection.spec.strict:
            raise SsoFailure(
                "no_role",
                "none of the identity provider's role rules match your claims; "
                "ask an org admin to map your groups to a role",
            )
        return mapped

    def sign_in(self, connection: Connection, claims: Mapping[str, Any], actor: Actor) -> SignIn:
        """The person these verified claims sign in as, provisioned or with their role synced."""
        person_id = self.person_for(connection, str(claims["iss"]), str(claims["sub"]))
        try:
            mapped = self.check_mapping(connection, claims)
        except SsoFailure:
            if person_id is not None:
                self._withdraw(connection, person_id, actor)
            raise
        if person_id is None:
            return SignIn(self._provision(connection, claims, mapped, actor), mapped, True)
        person = self.people.get(connection.org_id, person_id)
        if person["state"] != "active":
            raise SsoFailure("deprovisioned", "this account was deprovisioned")
        return SignIn(self._sync(connection, person, mapped, actor), mapped)

    def _withdraw(self, connection: Connection, person_id: str, actor: Actor) -> None:
        """A strict connection whose claims no longer map: the person keeps no access (a viewer of
        no source), so their sessions and tokens read nothing until an admin or a claim says."""
        person = self.people.get(connection.org_id, person_id)
        if person["state"] != "active" or not _manages(connection, person):
            return
        with contextlib.suppress(Conflict):  # the org's last owner keeps the role
            self.people.set_role(connection.org_id, person_id, "viewer", [], actor, via="sso")

    def _sync(
        self, connection: Connection, person: dict[str, Any], mapped: Mapped | None, actor: Actor
    ) -> dict[str, Any]:
        if not _manages(connection, person):
            return person
        if mapped is not None:
            target, sources = mapped.role, mapped.sources
        else:  # not strict, nothing matched: the default may lower the role, never raise it
            default = connection.spec.default_role or person["role"]
            if ROLES[default].rank >= ROLES[person["role"]].rank:
                return person
            target, sources = default, None
        try:
            return self.people.set_role(
                connection.org_id, person["id"], target, sources, actor, via="sso"
            )
        except Conflict:
            return person  # the org's last owner keeps the role; an admin resolves it

    def _provision(
        self,
        connection: Connection,
        claims: Mapping[str, Any],
        mapped: Mapped | None,
        actor: Actor,
    ) -> dict[str, Any]:
        org_id = connection.org_id
        email = self._jit_email(connection, claims)
        if self.people.by_email(org_id, email) is not None:
            raise SsoFailure(
                "email_in_use",
                "an account with this email already exists: sign in with your "
                "password and link SSO under My account",
            )
        target = mapped.role if mapped else str(connection.spec.default_role)
        sources = mapped.sources if mapped else None
        name = str(claims.get("name") or email)[:200]
        person = self.people.add(org_id, email, name, target, sources, actor)
        self.link(connection, str(claims["iss"]), str(claims["sub"]), person["id"], actor)
        return person

    def _jit_email(self, connection: Connection, claims: Mapping[str, Any]) -> str:
        not_linked = "no account is linked to this identity; ask an org admin to invite you"
        if not connection.spec.jit:
            raise SsoFailure("not_provisioned", not_linked)
        email = claims.get("email")
        if not isinstance(email, str) or claims.get("email_verified") not in (True, "true"):
            raise SsoFailure("email_unverified", f"{not_linked} (no verified email to provision)")
        try:
            email = normalise_email(email)
        except BadRequest:
            raise SsoFailure("email_unverified", f"{not_linked} (the email is malformed)") from None
        if email.rpartition("@")[2] not in self.people.domains(connection.org_id):
            raise SsoFailure(
                "domain_not_verified",
                f"{not_linked}: accounts are created at first sign-in "
                "only for the org's verified domains",
            )
        return email

    # ---- validation --------------------------------------------------------------------------

    def validate(self, org_id: str, spec: ConnectionSpec) -> None:
        if not 1 <= len(spec.name) <= 100:
            raise BadRequest("name must be 1 to 100 characters")
        _check_issuer(spec.issuer)
        if not 1 <= len(spec.client_id) <= 300:
            raise BadRequest("client_id must be 1 to 300 characters")
        if "openid" not in spec.scopes or len(spec.scopes) > 20:
            raise BadRequest("scopes must include 'openid' (at most 20 scopes)")
        if bad := [s for s in spec.scopes if not _SCOPE.match(s)]:
            raise BadRequest(f"invalid scopes {bad[:3]}")
        if len(spec.rules) > MAX_RULES:
            raise BadRequest(f"at most {MAX_RULES} role rules")
        for i, rule in enumerate(spec.rules):
            self._check_rule(org_id, i, rule)
        self._check_default(spec)

    def _check_rule(self, org_id: str, index: int, rule: RoleRule) -> None:
        if not _CLAIM.match(rule.claim) or not 1 <= len(rule.value) <= 200:
            raise BadRequest(
                f"role rule {index}: claim must be 1-100 characters of letters, digits and "
                "_:/.- and value 1-200 characters"
            )
        try:
            self.people._check_grant(org_id, "person", rule.role, rule.sources)
        except BadRequest as exc:
            raise BadRequest(f"role rule {index}: {exc.detail}") from None

    @staticmethod
    def _check_default(spec: ConnectionSpec) -> None:
        if spec.default_role is None:
            if not spec.strict:
                raise BadRequest("a connection that is not strict needs a default_role")
            return
        granted = role(spec.default_role)
        if not granted.people or granted.rank > ROLES["member"].rank:
            raise BadRequest(
                "default_role must be 'member' or 'viewer': a sign-in that no rule matches "
                "never earns more"
            )

    def _check_unique(
        self, conn: Any, org_id: str, connection_id: str, name: str, *, creating: bool
    ) -> None:
        rows = conn.execute(
            "SELECT id, name FROM idp_connections WHERE org_id = ?", (org_id,)
        ).fetchall()
        if any(r[1] == name and r[0] != connection_id for r in rows):
            raise Conflict(f"an identity provider named {name!r} exists in this org")
        if creating and len(rows) >= MAX_CONNECTIONS:
            raise Conflict(f"an org has at most {MAX_CONNECTIONS} identity providers")

    def _seal(self, org_id: str, connection_id: str, secret: str) -> dict[str, Any]:
        if not 1 <= len(secret) <= 1000:
            raise BadRequest("client_secret must be 1 to 1000 characters")
        sealed = self.cipher.seal_record(org_id, connection_id, {"client_secret": secret})
        return sealed.to_dict()


def _manages(connection: Connection, person: dict[str, Any]) -> bool:
    """Claims move an owner only on a connection with an owner rule, which only an owner can
    save: a connection an admin set up can never demote the org's owners."""
    return person["role"] != "owner" or any(r.role == "owner" for r in connection.spec.rules)


def _check_issuer(issuer: str) -> None:
    parts = urlsplit(issuer)
    if (
        parts.scheme not in ("https", "http")
        or not parts.netloc
        or "@" in parts.netloc
        or parts.query
        or parts.fragment
        or len(issuer) > 300
    ):
        raise BadRequest(
            f"issuer must be the provider's issuer URL exactly as it publishes it "
            f"(https://..., no query or fragment), not {issuer[:120]!r}"
        )


def _connection(row: dict[str, Any]) -> Connection:
    if not row:
        raise NotFound("identity provider does not exist in this org")
    spec = ConnectionSpec(
        name=row["name"],
        issuer=row["issuer"],
        client_id=row["client_id"],
        scopes=json.loads(row["scopes"]),
        rules=[RoleRule(**r) for r in json.loads(row["role_rules"])],
        strict=bool(row["strict"]),
        default_role=row["default_role"],
        jit=bool(row["jit"]),
    )
    last = json.loads(row["last_sign_in"]) if row.get("last_sign_in") else None
    return Connection(row["id"], row["org_id"], spec, json.loads(row["client_secret"]), last)
