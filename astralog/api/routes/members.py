"""Members of the caller's org: roles, invitations, source grants, service accounts and their
tokens, signing people out, the org's sign-in policy and its verified domains.

Nobody grants what they do not hold: giving, changing or taking away a role needs every scope of
that role (so only an owner, who holds ``owners:write``, makes or unmakes owners). A change of role
or grants and a deprovisioning end the person's sessions at once; the audit log records both.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request
from pydantic import Field

from astralog.api.deps import (
    ActorDep,
    ControlDep,
    ManagementDep,
    MembersWrite,
    OperatorDep,
    RuntimeDep,
    SsoWrite,
)
from astralog.api.models import NAME, Strict, TokenCreate
from astralog.api.signin import require_recent
from astralog.auth.principal import Principal
from astralog.auth.roles import ROLES, check_may_hold
from astralog.controlplane import events as ev
from astralog.controlplane.people import Policy
from astralog.controlplane.service import ControlPlane
from astralog.controlplane.store import Actor
from astralog.errors import BadRequest, Conflict, Forbidden, NotFound
from astralog.ids import new_id
from astralog.runtime import Runtime

router = APIRouter(tags=["members"])
SSO_TEST_SECONDS = 3600
"""Enforcing SSO needs a successful test sign-in this recent, in the same browser session."""


def _sources() -> Any:
    return Field(None, max_length=1000, description="Source ids it may read; null: every source")


class MemberInvite(Strict):
    email: str = Field(min_length=3, max_length=320, examples=["ana@example.com"])
    name: str = Field("", max_length=200)
    role: str = Field(examples=["member"])
    sources: list[Annotated[str, Field(max_length=64)]] | None = _sources()


class MemberChange(Strict):
    """Fields left out keep their value; ``sources: null`` means every source."""

    role: str | None = None
    sources: list[Annotated[str, Field(max_length=64)]] | None = _sources()


class ServiceAccountCreate(Strict):
    name: str = NAME
    role: str = Field(examples=["ingest"])
    sources: list[Annotated[str, Field(max_length=64)]] | None = _sources()


class ServiceTokenCreate(TokenCreate):
    expires_in_days: int = Field(ge=1, le=365)


class SecurityPolicy(Strict):
    require_mfa: bool
    enforce_sso: bool
    session_idle_minutes: int = Field(30, ge=5, le=24 * 60)
    session_absolute_hours: int = Field(12, ge=1, le=30 * 24)


class DomainVerify(Strict):
    domain: str = Field(min_length=4, max_length=253, examples=["example.com"])


# ---- roles and members ---------------------------------------------------------------------


@router.get("/v1/roles", summary="The roles, most powerful first, with their scopes")
def roles(_: ManagementDep) -> list[dict[str, Any]]:
    ordered = sorted(ROLES.values(), key=lambda r: -r.rank)
    return [
        {"name": r.name, "rank": r.rank, "summary": r.summary, "scopes": sorted(r.scopes),
         "people": r.people, "services": r.services, "source_grants": r.source_grants}
        for r in ordered
    ]  # fmt: skip


@router.get("/v1/members", summary="People and service accounts of the org")
def list_members(
    org_id: MembersWrite,
    runtime: RuntimeDep,
    kind: Annotated[Literal["person", "service"] | None, Query()] = None,
) -> list[dict[str, Any]]:
    """Each active person also says ``invited``: true until they accept (no password, no SSO
    identity yet), when a new invitation may replace a lost one."""
    members = runtime.control.people.list(org_id, kind)
    for m in members:
        if m["kind"] == "person" and m["state"] == "active":
            m["invited"] = _never_accepted(runtime, m["id"])
    return members


@router.post("/v1/members", status_code=201, summary="Invite a person: a one-time link to set up")
def invite(
    body: MemberInvite, org_id: MembersWrite, principal: ManagementDep, runtime: RuntimeDep,
    actor: ActorDep,
) -> dict[str, Any]:  # fmt: skip
    check_may_hold(principal, body.role, "grant")
    control = runtime.control
    member = control.people.add(org_id, body.email, body.name, body.role, body.sources, actor)
    return _invitation(runtime, member)


@router.post(
    "/v1/members/{member_id}/invitation", status_code=201,
    summary="A new invitation link for someone who never accepted one; earlier links end",
)  # fmt: skip
def reinvite(
    member_id: str, request: Request, org_id: MembersWrite, principal: ManagementDep,
    runtime: RuntimeDep,
) -> dict[str, Any]:  # fmt: skip
    require_recent(request)
    person = runtime.control.people.get(org_id, member_id)
    check_may_hold(principal, person["role"], "invite someone holding")
    _check_never_accepted(runtime, person)
    return _invitation(runtime, person)


def _invitation(runtime: Runtime, member: dict[str, Any]) -> dict[str, Any]:
    token = runtime.accounts.create_invitation(member["org_id"], member["id"])
    # The token rides in the fragment: it never reaches a server log or a Referer header.
    url = f"{runtime.settings.server.url()}/invitation#token={token}"
    return {"member": member, "invitation_token": token, "invitation_url": url}


def _never_accepted(runtime: Runtime, person_id: str) -> bool:
    return not (
        runtime.accounts.has_password(person_id)
        or runtime.control.people.linked_identities(person_id)
    )


def _check_never_accepted(runtime: Runtime, person: dict[str, Any]) -> None:
    """An invitation lets whoever holds the link choose the password, and the admin who asks
    for one holds it: so only for a person with no way in yet."""
    email = person["email"]
    if person["kind"] != "person":
        raise Conflict("a service account signs in with tokens, never an invitation")
    if person["state"] != "active":
        raise Conflict(f"{email} was deprovisioned; their access stays ended")
    if runtime.accounts.has_password(person["id"]):
        raise Conflict(
            f"{email} already accepted an invitation and chose a password; a new link would let "
            "whoever holds it (you) choose their password, so none is issued: they sign in with "
            "their password, or with SSO if the org has it"
        )
    if runtime.control.people.linked_identities(person["id"]):
        raise Conflict(f"{email} signs in with SSO; they need no invitation")


@router.patch("/v1/members/{member_id}", summary="Change the role or source grants")
def change(
    member_id: str, body: MemberChange, org_id: MembersWrite, principal: ManagementDep,
    runtime: RuntimeDep, actor: ActorDep,
) -> dict[str, Any]:  # fmt: skip
    people = runtime.control.people
    before = people.get(org_id, member_id)
    check_may_hold(principal, before["role"], "change someone holding")
    new_role = body.role or before["role"]
    check_may_hold(principal, new_role, "grant")
    sources = body.sources if "sources" in body.model_fields_set else before["sources"]
    after = people.set_role(org_id, member_id, new_role, sources, actor)
    if (after["role"], after["sources"]) != (before["role"], before["sources"]):
        # They sign in again and get the new rights in a fresh session.
        ended = runtime.sessions.end_person(member_id)
        if ended:
            _sessions_ended(runtime, actor, org_id, member_id, "role_changed", ended)
        # A pending link was issued (and may be held) by someone entitled to the old role only:
        # it ends, and whoever changed the role sends a fresh one (POST .../invitation).
        if runtime.accounts.end_invitations(member_id):
            return {**after, "invitation_ended": True}
    return after


@router.post("/v1/members/{member_id}/deprovision", summary="End access: tokens and sessions")
def deprovision(
    member_id: str, request: Request, org_id: MembersWrite, principal: ManagementDep,
    runtime: RuntimeDep, actor: ActorDep,
) -> dict[str, Any]:  # fmt: skip
    require_recent(request)
    people = runtime.control.people
    check_may_hold(principal, people.get(org_id, member_id)["role"], "deprovision someone holding")
    person = people.deprovision(org_id, member_id, actor)  # revokes their tokens
    ended = runtime.sessions.end_person(member_id)
    _sessions_ended(runtime, actor, org_id, member_id, "deprovisioned", ended)
    return {**person, "sessions_ended": ended}


@router.post("/v1/members/{member_id}/sign-out", summary="End every session of one person")
def sign_out(
    member_id: str, org_id: MembersWrite, runtime: RuntimeDep, actor: ActorDep
) -> dict[str, Any]:
    runtime.control.people.get(org_id, member_id)  # another org's person: 404
    ended = runtime.sessions.end_person(member_id)
    _sessions_ended(runtime, actor, org_id, member_id, "admin_sign_out", ended)
    return {"sessions_ended": ended}


@router.post("/v1/org/sign-out-everyone", summary="End every session of the org, yours too")
def sign_out_everyone(org_id: MembersWrite, runtime: RuntimeDep, actor: ActorDep) -> Any:
    ended = runtime.sessions.end_org(org_id)
    _sessions_ended(runtime, actor, org_id, None, "admin_sign_out_everyone", ended)
    return {"sessions_ended": ended}


# ---- service accounts ----------------------------------------------------------------------


@router.post("/v1/service-accounts", status_code=201, summary="An account for a machine")
def create_service_account(
    body: ServiceAccountCreate, request: Request, org_id: MembersWrite, principal: ManagementDep,
    control: ControlDep, actor: ActorDep,
) -> dict[str, Any]:  # fmt: skip
    require_recent(request, principal)
    check_may_hold(principal, body.role, "grant")
    people = control.people
    return people.add(org_id, body.name, body.name, body.role, body.sources, actor, kind="service")


@router.post(
    "/v1/service-accounts/{account_id}/tokens", status_code=201, summary="A service account token"
)
def issue_service_token(
    account_id: str, body: ServiceTokenCreate, request: Request, org_id: MembersWrite,
    principal: ManagementDep, control: ControlDep, actor: ActorDep,
) -> dict[str, Any]:  # fmt: skip
    require_recent(request, principal)  # an org-owned token outlives whoever issues it
    account = control.people.get(org_id, account_id)
    if account["kind"] != "service" or account["state"] != "active":
        raise NotFound(f"service account {account_id[:40]!r} does not exist in this org")
    _scopes_allowed(principal, account["role"], body.scopes)
    expires = datetime.now(UTC) + timedelta(days=body.expires_in_days)
    issued = control.issue_token(
        org_id, body.name, body.scopes, actor, person_id=account_id, expires_at=expires
    )
    return {"token": issued.credential.secret, "info": issued.info}


# ---- the org's sign-in policy and domains --------------------------------------------------


@router.get("/v1/org/security-policy", summary="Require MFA, enforce SSO, session lifetimes")
def get_policy(org_id: SsoWrite, control: ControlDep) -> dict[str, Any]:
    return control.people.policy(org_id).as_json()


@router.put("/v1/org/security-policy", summary="Set the sign-in policy (applies to new sign-ins)")
def set_policy(
    body: SecurityPolicy, request: Request, org_id: SsoWrite, runtime: RuntimeDep, actor: ActorDep
) -> dict[str, Any]:
    require_recent(request)
    control = runtime.control
    if body.enforce_sso and not control.people.policy(org_id).enforce_sso:
        _check_sso_tested(request, runtime, org_id)
    policy = Policy(**body.model_dump())
    return control.people.set_policy(org_id, policy, actor).as_json()


@router.get("/v1/org/domains", summary="Domains verified for the org (SSO may create accounts)")
def list_domains(org_id: SsoWrite, control: ControlDep) -> list[dict[str, str]]:
    return [{"domain": d} for d in control.people.domains(org_id)]


@router.post("/v1/orgs/{org_id}/domains", status_code=201, tags=["operator"])
def verify_domain(
    org_id: str, body: DomainVerify, _: OperatorDep, control: ControlDep, actor: ActorDep
) -> dict[str, Any]:
    """The operator attests that the org (id or name) owns the domain (checked out of band)."""
    return control.people.verify_domain(_org_id(control, org_id), body.domain, actor)


def _org_id(control: ControlPlane, org: str) -> str:
    """An org by id or by name (the CLI and people use names)."""
    for row in control.orgs():
        if org in (row["id"], row["name"]):
            return str(row["id"])
    raise NotFound(f"no org with id or name {org[:80]!r}; GET /v1/orgs lists them")


# ---- rules ---------------------------------------------------------------------------------


def _scopes_allowed(principal: Principal, role_name: str, scopes: list[str]) -> None:
    beyond_role = sorted(set(scopes) - ROLES[role_name].scopes)
    if beyond_role:
        raise BadRequest(
            f"the account's '{role_name}' role does not carry {beyond_role}; a token's rights are "
            "its scopes within its account's role, so leave them out or change the role"
        )
    beyond_caller = sorted(set(scopes) - principal.scopes)
    if beyond_caller:
        raise Forbidden(f"a token cannot grant scopes you do not hold yourself: {beyond_caller}")


def _check_sso_tested(request: Request, runtime: Runtime, org_id: str) -> None:
    """A recent test sign-in in this session, through a connection that still exists (a test
    followed by removing its connection would enforce SSO with nothing to sign in through)."""
    session = getattr(request.state, "session", None)
    tested = getattr(session, "sso_tested_at", None)
    through = runtime.idps.find(getattr(session, "sso_tested_connection", None) or "")
    if through is None or through.org_id != org_id:
        tested = None
    if tested is None or time.time() - tested > SSO_TEST_SECONDS:
        raise Conflict(
            "enforcing SSO could lock everyone out if the connection does not work: run a test "
            "sign-in first (Single sign-on → Test sign-in, GET /v1/auth/sso/{connection_id}/start"
            "?mode=test) in this browser session, then save the policy within the hour"
        )


def _sessions_ended(
    runtime: Runtime, actor: Actor, org_id: str, person_id: str | None, reason: str, count: int
) -> None:
    event = ev.SessionsEnded(new_id("act"), org_id, person_id, reason, count)
    with runtime.control.store.transaction():
        runtime.control.store.append(event, actor, 0)
