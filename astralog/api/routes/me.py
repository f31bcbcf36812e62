"""My account: password, TOTP and recovery codes, my sessions, my personal access tokens.

Changes to how one signs in, and new tokens, are made from a signed-in browser session (never
with a personal token, which could otherwise outlive itself) after a recent sign-in
(``require_recent``). A session at stage "enrol" (the org requires MFA) reaches only
``GET /v1/me`` and the set-up routes of TOTP and of passkeys; confirming either completes
its sign-in.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request, Response
from pydantic import Field

from astralog.api.deps import (
    GATE_MARK,
    ClientDep,
    PersonDep,
    RuntimeDep,
    authenticate,
    browser_session,
    person_principal,
)
from astralog.api.models import Strict, TokenCreate
from astralog.api.routes.auth import _audit, step_up
from astralog.api.signin import require_recent, session_id
from astralog.auth import totp
from astralog.auth.principal import Principal
from astralog.auth.sessions import Session
from astralog.controlplane import events as ev
from astralog.controlplane.store import Actor
from astralog.errors import Conflict, Forbidden, NotFound, Unauthenticated
from astralog.ids import new_id
from astralog.runtime import Runtime

router = APIRouter(prefix="/v1/me", tags=["my account"])


def enrolling(request: Request, runtime: RuntimeDep) -> Principal:
    """A person at stage "full", or at "enrol" (setting up the MFA the org requires)."""
    current = session_id(request)
    if current and "authorization" not in request.headers:
        session = browser_session(request, runtime, current)
        if session.stage == "enrol" and session.person_id is not None:
            principal = runtime.control.auth.person_principal(session.person_id)
            if principal.org_id != session.org_id:
                raise Unauthenticated("the session has expired or ended; sign in again")
            return replace(principal, session=session.digest)
    return person_principal(authenticate(request, runtime))


setattr(enrolling, GATE_MARK, True)  # judged before the body is read (deps.gate_for)
EnrollingDep = Annotated[Principal, Depends(enrolling)]


def _session(request: Request) -> Session:
    """The browser session behind this request; personal tokens cannot change credentials."""
    session: Session | None = getattr(request.state, "session", None)
    if session is None:
        raise Forbidden(
            "change how you sign in, and issue tokens, from a signed-in browser session, "
            "not with a token"
        )
    return session


def fresh_session(request: Request) -> Session:
    """The browser session behind this request, signed in recently enough for a sensitive
    change (a credential added, removed or issued)."""
    session = _session(request)
    require_recent(request)
    return session


class PasswordChange(Strict):
    current_password: str = Field(min_length=1, max_length=1024)
    new_password: str = Field(min_length=1, max_length=1024)


class TotpConfirm(Strict):
    code: str = Field(min_length=1, max_length=16)


class PersonalTokenCreate(TokenCreate):
    expires_in_days: int = Field(30, ge=1, le=365, description="1 to 365 days.")


@router.get("", summary="Who I am, how I sign in, and my org's sign-in policy")
def me(principal: EnrollingDep, request: Request, runtime: RuntimeDep) -> dict[str, Any]:
    org_id, person_id = principal.org_id or "", principal.person_id or ""
    person = runtime.control.people.get(org_id, person_id)
    session: Session | None = getattr(request.state, "session", None)
    return {
        "id": person_id,
        "org_id": org_id,
        "org": runtime.control.org(org_id)["name"],
        "email": person["email"],
        "name": person["name"],
        "role": person["role"],
        "sources": person["sources"],
        "scopes": sorted(principal.scopes),
        "break_glass": person["break_glass"],
        "password": runtime.accounts.has_password(person_id),
        "totp": runtime.accounts.has_totp(person_id),
        "passkeys": runtime.passkeys.count(person_id),
        "recovery_codes_left": runtime.accounts.recovery_codes_left(person_id),
        "identities": [_identity(i) for i in runtime.idps.identities(org_id, person_id)],
        "policy": runtime.control.people.policy(org_id).as_json(),
        "session": None if session is None else {**session.view(session.digest),
                                                  "stage": session.stage,
                                                  "auth_time": session.auth_time},
        "csrf_token": "" if session is None else session.csrf,
    }  # fmt: skip


def _identity(linked: dict[str, Any]) -> dict[str, Any]:
    """A linked IdP identity as its person sees it (the opaque subject stays on the server)."""
    return {k: linked[k] for k in ("connection_id", "connection_name", "issuer", "linked_at")}


@router.get("/identities", summary="My linked SSO identities, and the org's providers to link")
def my_identities(principal: PersonDep, runtime: RuntimeDep) -> dict[str, Any]:
    org_id, person_id = principal.org_id or "", principal.person_id or ""
    linked = [_identity(i) for i in runtime.idps.identities(org_id, person_id)]
    at = {i["connection_id"] for i in linked}
    connections = [{"id": c.id, "name": c.spec.name, "linked": c.id in at}
                   for c in runtime.idps.list(org_id)]  # fmt: skip
    return {"identities": linked, "connections": connections}


@router.delete("/identities/{connection_id}", summary="Unlink my identity at an identity provider")
def unlink_identity(
    connection_id: str,
    principal: PersonDep,
    request: Request,
    runtime: RuntimeDep,
    client: ClientDep,
) -> dict[str, Any]:
    fresh_session(request)
    org_id, person_id = principal.org_id or "", principal.person_id or ""
    linked = runtime.idps.identities(org_id, person_id)
    last = {i["connection_id"] for i in linked} == {connection_id}
    if last and not _password_signs_in(runtime, org_id, person_id):
        raise Conflict("this identity is the only way you sign in: unlinking it would lock you "
                       "out; link another identity provider first")  # fmt: skip
    unlinked = runtime.idps.unlink(org_id, connection_id, person_id, Actor(principal.id, client))
    return {"connection_id": connection_id, "unlinked": unlinked}


def _password_signs_in(runtime: Runtime, org_id: str, person_id: str) -> bool:
    """A password of theirs still opens a session here (not where SSO is enforced, unless they
    are the break-glass owner)."""
    if not runtime.accounts.has_password(person_id):
        return False
    if runtime.control.people.get(org_id, person_id)["break_glass"]:
        return True
    return not runtime.control.people.policy(org_id).enforce_sso


@router.post("/password", summary="Change my password (needs the current one)")
def change_password(
    body: PasswordChange,
    principal: PersonDep,
    request: Request,
    response: Response,
    runtime: RuntimeDep,
    client: ClientDep,
) -> dict[str, Any]:
    session = _session(request)
    person_id, org_id = principal.person_id or "", principal.org_id or ""
    if runtime.control.people.policy(org_id).enforce_sso and not session.break_glass:
        raise Forbidden("this org signs in with SSO: passwords are not used here",
                        code="sso_required")  # fmt: skip
    key = f"reauth|{person_id}"
    runtime.accounts.throttle.check(key, client)
    if not runtime.accounts.check_password(person_id, body.current_password):
        runtime.accounts.throttle.failed(key, client)
        raise Forbidden("the current password is wrong", code="wrong_credentials")
    runtime.accounts.set_password(org_id, person_id, body.new_password, Actor(principal.id, client))
    ended = end_other_sessions(runtime, session, "password changed")
    step_up(request, response, runtime, session, proved=False)
    return {"changed": True, "other_sessions_ended": ended}


def factor_added(
    request: Request,
    response: Response,
    runtime: Runtime,
    session: Session,
    client: str,
    reason: str,
    amr: str,
) -> int:
    """A new second factor: the person's other sessions end, and a sign-in waiting at the
    enrol stage (the org requires MFA) completes under a new session id."""
    ended = end_other_sessions(runtime, session, reason)
    if session.stage == "enrol":
        fresh = step_up(request, response, runtime, session, stage="full",
                        amr=(*session.amr, amr, "mfa"))  # fmt: skip
        _audit(runtime, fresh, client)
    return ended


def end_other_sessions(runtime: Runtime, session: Session, reason: str) -> int:
    """After a credential changes, whoever held the old one is signed out everywhere else."""
    others = [s for s in runtime.sessions.for_person(session.person_id or "") if
              s.digest != session.digest]  # fmt: skip
    for other in others:
        runtime.sessions.end_digest(other.digest, session.person_id)
    if others:
        event = ev.SessionsEnded(new_id("act"), session.org_id, session.person_id, reason,
                                 len(others))  # fmt: skip
        with runtime.control.store.transaction():
            runtime.control.store.append(event, Actor(f"person:{session.person_id}"), 0)
    return len(others)


@router.post("/totp", summary="Start setting up an authenticator app: secret and QR code")
def begin_totp(principal: EnrollingDep, request: Request, runtime: RuntimeDep) -> dict[str, Any]:
    fresh_session(request)
    org_id, person_id = principal.org_id or "", principal.person_id or ""
    person = runtime.control.people.get(org_id, person_id)
    secret = runtime.accounts.begin_totp(org_id, person_id)
    issuer = f"Astralog {runtime.control.org(org_id)['name']}"
    uri = totp.otpauth_uri(secret, person["email"], issuer)
    return {"secret": secret, "otpauth_uri": uri, "qr_svg": totp.qr_svg(uri)}


@router.post("/totp/confirm", summary="Finish TOTP set-up with a code; returns recovery codes")
def confirm_totp(
    body: TotpConfirm,
    principal: EnrollingDep,
    request: Request,
    response: Response,
    runtime: RuntimeDep,
    client: ClientDep,
) -> dict[str, Any]:
    session = _session(request)
    org_id, person_id = principal.org_id or "", principal.person_id or ""
    key = f"mfa|{person_id}"
    runtime.accounts.throttle.check(key, client)
    try:
        codes = runtime.accounts.confirm_totp(org_id, person_id, body.code)
    except Exception:
        runtime.accounts.throttle.failed(key, client)
        raise
    ended = factor_added(request, response, runtime, session, client,
                         "authenticator app set up", "otp")  # fmt: skip
    return {"recovery_codes": codes, "other_sessions_ended": ended}


@router.delete("/totp", summary="Remove my authenticator app (not my last factor under MFA)")
def remove_totp(principal: PersonDep, request: Request, runtime: RuntimeDep,
                client: ClientDep) -> dict[str, Any]:  # fmt: skip
    fresh_session(request)
    org_id, person_id = principal.org_id or "", principal.person_id or ""
    if not runtime.accounts.has_totp(person_id):
        raise NotFound("no authenticator app is set up")
    required = runtime.control.people.policy(org_id).require_mfa
    if required and not runtime.passkeys.count(person_id):
        raise Conflict("your org requires MFA and this is your last second factor: add a "
                       "passkey first, or set up a new authenticator app instead "
                       "(POST /v1/me/totp replaces the current one once confirmed)")  # fmt: skip
    runtime.accounts.remove_totp(org_id, person_id, Actor(principal.id, client))
    return {"totp": False}


@router.post("/recovery-codes", summary="Ten new recovery codes (the old ones stop working)")
def recovery_codes(principal: PersonDep, request: Request, runtime: RuntimeDep) -> dict[str, Any]:
    fresh_session(request)
    codes = runtime.accounts.new_recovery_codes(principal.org_id or "", principal.person_id or "")
    return {"recovery_codes": codes}


@router.get("/sessions", summary="My signed-in sessions")
def my_sessions(principal: PersonDep, request: Request, runtime: RuntimeDep) -> list[Any]:
    return [s.view(principal.session) for s in runtime.sessions.for_person(principal.person_id
                                                                           or "")]  # fmt: skip


@router.post("/sessions/{session_ref}/revoke", summary="Sign one of my sessions out")
def revoke_session(
    session_ref: str, principal: PersonDep, runtime: RuntimeDep, client: ClientDep
) -> dict[str, Any]:
    person_id = principal.person_id or ""
    found = [s for s in runtime.sessions.for_person(person_id) if s.digest[:16] == session_ref]
    if not found:
        raise NotFound(f"no session {session_ref[:20]!r} of yours is signed in")
    runtime.sessions.end_digest(found[0].digest, person_id)
    event = ev.SessionsEnded(new_id("act"), principal.org_id or "", person_id,
                             "signed out by its owner", 1)  # fmt: skip
    with runtime.control.store.transaction():
        runtime.control.store.append(event, Actor(principal.id, client), 0)
    return {"revoked": session_ref}


@router.get("/tokens", summary="My personal access tokens")
def my_tokens(principal: PersonDep, runtime: RuntimeDep) -> list[dict[str, Any]]:
    return runtime.control.person_tokens(principal.org_id or "", principal.person_id or "")


@router.post("/tokens", status_code=201, summary="Issue a personal access token (shown once)")
def issue_token(
    body: PersonalTokenCreate,
    principal: PersonDep,
    request: Request,
    runtime: RuntimeDep,
    client: ClientDep,
) -> dict[str, Any]:
    fresh_session(request)
    beyond = sorted(set(body.scopes) - principal.scopes)
    if beyond:
        raise Forbidden(f"your role does not hold {beyond}; a token can only narrow your rights")
    expires = datetime.now(UTC) + timedelta(days=body.expires_in_days)
    issued = runtime.control.issue_token(
        principal.org_id, body.name, body.scopes, Actor(principal.id, client),
        person_id=principal.person_id, expires_at=expires,
    )  # fmt: skip
    return {"token": issued.credential.secret, "info": issued.info}


@router.post("/tokens/{token_id}/revoke", summary="Revoke one of my personal access tokens")
def revoke_token(
    token_id: str, principal: PersonDep, runtime: RuntimeDep, client: ClientDep
) -> dict[str, Any]:
    org_id = principal.org_id or ""
    token = runtime.control.token(org_id, token_id)
    if token.get("person_id") != principal.person_id:
        raise NotFound(f"token {token_id[:40]!r} does not exist in this org")
    return runtime.control.revoke_token(org_id, token_id, Actor(principal.id, client))
