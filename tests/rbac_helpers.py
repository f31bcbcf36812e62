"""People for the role tests: a person or service account of a role, with a personal token or a
browser session, made through the control plane's real commands and session store."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from astralog.auth import credentials
from astralog.auth.credentials import Kind
from astralog.auth.principal import SCOPES
from astralog.auth.roles import ROLES
from astralog.controlplane import events as ev
from astralog.controlplane.store import Actor
from astralog.runtime import Runtime
from tests.conftest import bearer

ACTOR = Actor("test", "local")


@dataclass(frozen=True)
class Member:
    id: str
    org_id: str
    role: str
    email: str
    token: str  # a personal (or service account) token holding every scope: role ∩ all = role

    @property
    def headers(self) -> dict[str, str]:
        return bearer(self.token)


def personal_token(runtime: Runtime, org_id: str, person_id: str, scopes: list[str]) -> str:
    """A personal access token of ``person_id``: TokenIssued with its owner, as issuing one does."""
    cred = credentials.generate(Kind.MANAGEMENT)
    digest = runtime.control.auth.digest(cred.secret)
    event = ev.TokenIssued(cred.key_id, org_id, "pat", "personal", sorted(scopes), digest,
                           person_id=person_id)  # fmt: skip
    with runtime.control.store.transaction():
        runtime.control.store.append(event, ACTOR, 0)
    return cred.secret


def add_member(
    runtime: Runtime, org_id: str, role: str, sources: list[str] | None = None, *, tag: str = ""
) -> Member:
    """A person of ``role`` (a service account for a role people cannot hold) and its token."""
    kind = "person" if ROLES[role].people else "service"
    name = f"{role.replace('_', '-')}{tag}"
    email = (
        f"{name}@{org_id.replace('_', '-').lower()}.example.com"
        if kind == "person"
        else f"{name}-svc"
    )
    person = runtime.control.people.add(org_id, email, name, role, sources, ACTOR, kind=kind)
    token = personal_token(runtime, org_id, person["id"], sorted(SCOPES))
    return Member(person["id"], org_id, role, person["email"], token)


def session_cookie(runtime: Runtime, member: Member, **fields: Any) -> dict[str, str]:
    """Headers of a browser session of ``member`` (plain-HTTP cookie name, CSRF token)."""
    session_id, session = runtime.sessions.start(
        member.org_id, "password", idle_seconds=1800, absolute_seconds=43200,
        person_id=member.id, **fields,
    )  # fmt: skip
    return {"Cookie": f"astralog_session={session_id}", "X-CSRF-Token": session.csrf}
