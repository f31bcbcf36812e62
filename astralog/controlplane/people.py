"""People and service accounts of one org: add, change role and source grants, deprovision; the
org's sign-in policy and its verified domains.

A person belongs to one org (the same human in two orgs has two accounts), so an org's identity
provider can never reach another org's accounts. Email is a contact and a unique name inside the
org, never an identity: an IdP identity is linked to an account only by that account itself.
"""

from __future__ import annotations

import builtins
import json
import re
from dataclasses import dataclass
from typing import Any

from astralog.auth.authenticator import Authenticator
from astralog.auth.roles import ROLES, role
from astralog.controlplane import events as ev
from astralog.controlplane.store import Actor, EventStore
from astralog.errors import BadRequest, Conflict, Forbidden, NotFound
from astralog.ids import new_id

_EMAIL = re.compile(r"^[^@\s\x00-\x1f]{1,64}@[A-Za-z0-9.-]{1,253}\.[A-Za-z]{2,63}$")
_DOMAIN = re.compile(r"^(?=.{4,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$")


def normalise_email(email: str) -> str:
    email = email.strip()
    if not _EMAIL.match(email):
        raise BadRequest(f"not an email address: {email[:80]!r}")
    local, _, domain = email.rpartition("@")
    return f"{local}@{domain.lower()}"


def normalise_domain(domain: str) -> str:
    domain = domain.strip().lower().rstrip(".")
    if not _DOMAIN.match(domain):
        raise BadRequest(f"not a domain name: {domain[:80]!r}")
    return domain


@dataclass(frozen=True)
class Policy:
    """An org's sign-in policy; the defaults hold until an admin sets one."""

    require_mfa: bool = False
    enforce_sso: bool = False
    session_idle_minutes: int = 30
    session_absolute_hours: int = 12

    def as_json(self) -> dict[str, Any]:
        return dict(vars(self))


class People:
    def __init__(self, store: EventStore, auth: Authenticator) -> None:
        self.store = store
        self.auth = auth

    # ---- people and service accounts ------------------------------------------------------

    def add(
        self,
        org_id: str,
        email: str,
        name: str,
        role_name: str,
        sources: builtins.list[str] | None,
        actor: Actor,
        *,
        kind: str = "person",
        break_glass: bool = False,
    ) -> dict[str, Any]:
        """Add a person (``email`` is their contact) or a service account (``email`` is a
        unique name such as ``ci@service``)."""
        email = normalise_email(email) if kind == "person" else _service_name(email)
        self._check_grant(org_id, kind, role_name, sources)
        if break_glass and role_name != "owner":
            raise BadRequest("only an owner can be the break-glass account")
        if len(name) > 200:
            raise BadRequest("name is longer than 200 characters")
        person_id = new_id("usr" if kind == "person" else "svc")
        with self.store.transaction() as conn:
            if conn.execute(
                "SELECT 1 FROM people WHERE org_id = ? AND email = ?", (org_id, email)
            ).fetchone():
                raise Conflict(f"{email!r} is already a member of this org")
            event = ev.PersonAdded(
                person_id, org_id, kind, email, name, role_name, _sorted(sources), break_glass
            )
            self.store.append(event, actor, 0)
        return self.get(org_id, person_id)

    def set_role(
        self,
        org_id: str,
        person_id: str,
        role_name: str,
        sources: builtins.list[str] | None,
        actor: Actor,
        *,
        via: str = "admin",
    ) -> dict[str, Any]:
        person = self.get(org_id, person_id)
        if person["state"] != "active":
            raise Conflict(
                f"{person['email']} was deprovisioned: their access ended for good, so a role "
                "or grant would change nothing"
            )
        self._check_grant(org_id, person["kind"], role_name, sources)
        if person["role"] == role_name and person["sources"] == _sorted(sources):
            return person
        with self.store.transaction() as conn:
            if person["role"] == "owner" and role_name != "owner":
                self._keep_an_owner(conn, org_id, person_id)
            version = self.store.version(person_id)
            event = ev.PersonRoleChanged(person_id, org_id, role_name, _sorted(sources), via)
            self.store.append(event, actor, version)
        self.auth.clear()
        return self.get(org_id, person_id)

    def deprovision(self, org_id: str, person_id: str, actor: Actor) -> dict[str, Any]:
        """End the person's access: tokens revoked, identities unlinked, sessions refused."""
        person = self.get(org_id, person_id)
        if person["state"] == "deprovisioned":
            return person
        with self.store.transaction() as conn:
            if person["role"] == "owner":
                self._keep_an_owner(conn, org_id, person_id)
            version = self.store.version(person_id)
            self.store.append(ev.PersonDeprovisioned(person_id, org_id), actor, version)
        self.auth.clear()
        return self.get(org_id, person_id)

    def note_credential(self, org_id: str, person_id: str, what: str, actor: Actor) -> None:
        with self.store.transaction():
            version = self.store.version(person_id)
            self.store.append(ev.PersonCredentialChanged(person_id, org_id, what), actor, version)

    def linked_identities(self, person_id: str) -> int:
        """How many IdP identities sign in as this person."""
        with self.store.reading() as conn:
            (count,) = conn.execute(
                "SELECT COUNT(*) FROM identities WHERE person_id = ?", (person_id,)
            ).fetchone()
        return int(count)

    def get(self, org_id: str, person_id: str) -> dict[str, Any]:
        return _view(self.store.tenant_row("people", person_id, org_id, "member"))

    def by_email(self, org_id: str, email: str) -> dict[str, Any] | None:
        with self.store.reading() as conn:
            row = conn.execute(
                "SELECT * FROM people WHERE org_id = ? AND email = ? AND kind = 'person'",
                (org_id, email),
            ).fetchone()
        return None if row is None else _view(dict(row))

    def list(self, org_id: str, kind: str | None = None) -> builtins.list[dict[str, Any]]:
        with self.store.reading() as conn:
            rows = conn.execute(
                "SELECT * FROM people WHERE org_id = ? AND kind = coalesce(?, kind) ORDER BY email",
                (org_id, kind),
            ).fetchall()
        return [_view(dict(r)) for r in rows]

    def _check_grant(
        self, org_id: str, kind: str, role_name: str, sources: builtins.list[str] | None
    ) -> None:
        granted = role(role_name)
        if kind == "person" and not granted.people:
            raise BadRequest(f"the '{role_name}' role is for service accounts only")
        if kind == "service" and not granted.services:
            raise BadRequest(f"a service account cannot hold the '{role_name}' role")
        if sources is None:
            return
        if not granted.source_grants:
            limited = sorted(n for n, r in ROLES.items() if r.source_grants)
            raise BadRequest(
                f"the '{role_name}' role covers every source; only {limited} can be limited "
                "to some sources (send sources: null)"
            )
        if len(sources) > 1000:
            raise BadRequest("at most 1000 sources can be granted one by one")
        with self.store.reading() as conn:
            known = {
                r[0] for r in conn.execute("SELECT id FROM sources WHERE org_id = ?", (org_id,))
            }
        unknown = sorted(set(sources) - known)
        if unknown:
            raise BadRequest(f"unknown sources {unknown[:5]}; GET /v1/sources lists yours")

    @staticmethod
    def _keep_an_owner(conn: Any, org_id: str, person_id: str) -> None:
        (others,) = conn.execute(
            "SELECT COUNT(*) FROM people WHERE org_id = ? AND role = 'owner' AND state = 'active' "
            "AND id != ?",
            (org_id, person_id),
        ).fetchone()
        if others == 0:
            raise Conflict("an org keeps at least one owner; make someone else owner first")

    # ---- the org's sign-in policy and domains ----------------------------------------------

    def policy(self, org_id: str) -> Policy:
        with self.store.reading() as conn:
            row = conn.execute("SELECT * FROM org_policies WHERE org_id = ?", (org_id,)).fetchone()
        if row is None:
            return Policy()
        return Policy(
            bool(row["require_mfa"]),
            bool(row["enforce_sso"]),
            int(row["session_idle_minutes"]),
            int(row["session_absolute_hours"]),
        )

    def set_policy(self, org_id: str, policy: Policy, actor: Actor) -> Policy:
        if not 5 <= policy.session_idle_minutes <= 24 * 60:
            raise BadRequest("session_idle_minutes must be between 5 and 1440")
        if not 1 <= policy.session_absolute_hours <= 30 * 24:
            raise BadRequest("session_absolute_hours must be between 1 and 720")
        if policy.session_idle_minutes > policy.session_absolute_hours * 60:
            raise BadRequest("the idle lifetime cannot be longer than the absolute lifetime")
        with self.store.transaction():
            version = self.store.version(f"policy:{org_id}")
            event = ev.OrgSecurityPolicySet(
                org_id,
                policy.require_mfa,
                policy.enforce_sso,
                policy.session_idle_minutes,
                policy.session_absolute_hours,
            )
            self.store.append(event, actor, version)
        self.auth.clear()  # enforcing SSO narrows personal tokens at once
        return self.policy(org_id)

    def verify_domain(self, org_id: str, domain: str, actor: Actor) -> dict[str, Any]:
        """Attest (as the operator) that ``org_id`` owns ``domain``. A domain belongs to one org."""
        domain = normalise_domain(domain)
        with self.store.transaction() as conn:
            row = conn.execute("SELECT org_id FROM domains WHERE domain = ?", (domain,)).fetchone()
            if row is not None and row[0] != org_id:
                raise Conflict(f"{domain} is verified for another org")
            if row is None:
                self.store.append(ev.DomainVerified(org_id, domain), actor, 0)
        return {"domain": domain, "org_id": org_id}

    def domains(self, org_id: str) -> builtins.list[str]:
        with self.store.reading() as conn:
            rows = conn.execute(
                "SELECT domain FROM domains WHERE org_id = ? ORDER BY domain", (org_id,)
            ).fetchall()
        return [r[0] for r in rows]


def _service_name(name: str) -> str:
    name = name.strip().lower()
    if not re.match(r"^[a-z0-9][a-z0-9._-]{0,62}$", name):
        raise BadRequest(
            f"invalid service account name {name[:80]!r}: use 1-63 lowercase letters, digits, "
            "'.', '_' or '-'"
        )
    return name


def _sorted(sources: builtins.list[str] | None) -> list[str] | None:
    return None if sources is None else sorted(set(sources))


def _view(row: dict[str, Any]) -> dict[str, Any]:
    if not row:
        raise NotFound("member does not exist in this org")
    view = dict(row)
    view["sources"] = None if row["sources"] is None else json.loads(row["sources"])
    view["break_glass"] = bool(row["break_glass"])
    view["mfa"] = bool(row["mfa"])
    return view


def require_active(person: dict[str, Any]) -> None:
    if person["state"] != "active":
        raise Forbidden("this account was deprovisioned")
