"""Signing in with a local account: the org's sign-in options, email + password, the second
factor, re-authentication and accepting an invitation (SSO has its own routes under
/v1/auth/sso).

A wrong password, an unknown email and an account without a password get the same 401 after
the same Argon2id work; failures are throttled per typed account and per client address (429
with Retry-After), audited as ``SignInFailed`` with a digest of the typed email, never the text.

A password that passes opens a session at the stage the org's policy asks for: "mfa" when the
person has TOTP or a passkey, "enrol" when the org requires MFA and they have neither, else
"full". A session at "mfa" or "enrol" reaches only that step's routes (the CSRF token still
guards them).
"""

from __future__ import annotations

import time
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request, Response
from pydantic import Field

from astralog.api.deps import GATE_MARK, ClientDep, RuntimeDep, authenticate, browser_session
from astralog.api.models import Strict
from astralog.api.signin import (
    audit_failure,
    audit_sign_in,
    end_session,
    open_session,
    session_id,
    set_cookie,
)
from astralog.auth.sessions import CSRF_COOKIE, SESSION_COOKIE, Session
from astralog.controlplane import events as ev
from astralog.controlplane.store import Actor
from astralog.errors import Conflict, Forbidden, RateLimited, Unauthenticated
from astralog.ids import new_id
from astralog.runtime import Runtime

router = APIRouter(prefix="/v1/auth", tags=["sign-in"])

WRONG = "wrong email or password"
FACTOR_LOCKED = (
    "too many wrong second-factor answers in a row: this account's second factors are locked "
    "for {minutes} min, and sign-ins waiting for one were ended. Sign in again later; if this "
    "was not you, tell an org admin"
)
SSO_ONLY = (
    "this org signs in with single sign-on only: use its SSO button (the break-glass owner "
    "account is the one exception)"
)


class PasswordSignIn(Strict):
    org: str = Field(min_length=1, max_length=200, description="The org's name.")
    email: str = Field(min_length=1, max_length=320)
    password: str = Field(min_length=1, max_length=1024)


class PasskeyAnswer(Strict):
    ceremony: str = Field(min_length=1, max_length=100, description="From the options answer.")
    credential: dict[str, Any] = Field(description="navigator.credentials.get()'s answer.")


class SecondFactor(Strict):
    code: str | None = Field(None, max_length=16, description="The authenticator app's code.")
    recovery_code: str | None = Field(None, max_length=64, description="One recovery code.")
    passkey: PasskeyAnswer | None = Field(None, description="POST /v1/auth/passkeys/options.")


class Reauth(Strict):
    password: str = Field(min_length=1, max_length=1024)
    code: str | None = Field(None, max_length=16, description="TOTP code, when set up.")
    passkey: PasskeyAnswer | None = Field(None, description="Or a passkey, instead of code.")


class InvitationToken(Strict):
    token: str = Field(min_length=1, max_length=200)


class AcceptInvitation(Strict):
    token: str = Field(min_length=1, max_length=200)
    password: str = Field(min_length=1, max_length=1024)


SSO_INVITED = (
    'this org signs in with single sign-on only: join with its "Continue with" button on '
    "the invitation page (your invitation is still valid)"
)


def _org_by_name(runtime: Runtime, name: str) -> dict[str, Any] | None:
    wanted = name.strip().casefold()
    return next((o for o in runtime.control.orgs() if o["name"].casefold() == wanted), None)


def _sso_connections(runtime: Runtime, org_id: str) -> list[dict[str, str]]:
    with runtime.control.store.reading() as conn:
        rows = conn.execute(
            "SELECT id, name FROM idp_connections WHERE org_id = ? ORDER BY name", (org_id,)
        ).fetchall()
    return [{"id": r["id"], "name": r["name"]} for r in rows]


@router.get("/orgs/{org_name}", summary="How people of an org can sign in (public)")
def sign_in_options(org_name: str, runtime: RuntimeDep) -> dict[str, Any]:
    """An unknown org answers like an org with passwords and no SSO: names are not probed."""
    org = _org_by_name(runtime, org_name[:200])
    if org is None:
        return {"org": org_name[:200], "sso": [], "password": True}
    policy = runtime.control.people.policy(org["id"])
    return {
        "org": org_name[:200],  # as typed: the stored spelling would tell which orgs exist
        "sso": _sso_connections(runtime, org["id"]),
        "password": not policy.enforce_sso,
    }


def _who(runtime: Runtime, org_id: str, email: str) -> str:
    """The typed email as the audit log keeps it: a keyed digest, so a log reader cannot learn
    which addresses were tried, yet repeated tries of one address stand out."""
    return runtime.control.auth.digest(f"{org_id}:{email.strip().casefold()}")[:24]


@router.post("/password", summary="Sign in with email and password; sets the session cookie")
def password_sign_in(
    body: PasswordSignIn,
    request: Request,
    response: Response,
    runtime: RuntimeDep,
    client: ClientDep,
) -> dict[str, Any]:
    accounts = runtime.accounts
    key = f"{body.org.strip().casefold()}|{body.email.strip().casefold()}"
    accounts.throttle.check(key, client)
    org = _org_by_name(runtime, body.org)
    org_id = org["id"] if org else ""
    person = accounts.verify_password(org_id, body.email, body.password)
    enforced = org is not None and runtime.control.people.policy(org_id).enforce_sso
    break_glass = enforced and person is not None and bool(person["break_glass"])
    if enforced and not break_glass:
        # The same answer whether the password was right or not: with SSO enforced, only the
        # break-glass owner's password opens anything, so no one else's may be confirmed here.
        if person is None:
            accounts.throttle.failed(key, client)
        audit_failure(runtime, Actor("anonymous", client), org_id, "password",
                      "password refused: the org enforces SSO",
                      _who(runtime, org_id, body.email))  # fmt: skip
        raise Forbidden(SSO_ONLY, code="sso_required")
    if org is None or person is None:
        accounts.throttle.failed(key, client)
        if org is not None:
            audit_failure(runtime, Actor("anonymous", client), org_id, "password",
                          "wrong email or password", _who(runtime, org_id, body.email))  # fmt: skip
        raise Unauthenticated(WRONG, code="wrong_credentials")
    accounts.throttle.succeeded(key, client)
    stage = _stage(runtime, org_id, person["id"])
    _, session = open_session(request, response, runtime, org_id, "password",
                              person_id=person["id"], amr=("pwd",), stage=stage,
                              break_glass=break_glass)  # fmt: skip
    if stage == "full":
        _audit(runtime, session, client)
    return _answer(session)


def _stage(runtime: Runtime, org_id: str, person_id: str) -> str:
    if runtime.accounts.has_totp(person_id) or runtime.passkeys.count(person_id):
        return "mfa"
    return "enrol" if runtime.control.people.policy(org_id).require_mfa else "full"


def _audit(runtime: Runtime, session: Session, client: str, method: str = "password") -> None:
    actor = Actor(f"person:{session.person_id}", client)
    audit_sign_in(runtime, actor, session.org_id, session.person_id, method,
                  amr=list(session.amr), break_glass=session.break_glass)  # fmt: skip


def _answer(session: Session) -> dict[str, Any]:
    steps = {
        "full": None,
        "mfa": "POST /v1/auth/mfa with the authenticator code, a recovery code or a passkey",
        "enrol": "the org requires MFA: POST /v1/me/totp, then POST /v1/me/totp/confirm; or a "
        "passkey: POST /v1/me/passkeys/options, then POST /v1/me/passkeys",
    }
    return {
        "stage": session.stage,
        "next": steps[session.stage],
        "org_id": session.org_id,
        "person_id": session.person_id,
        "csrf_token": session.csrf,
        "break_glass": session.break_glass,
    }


def step_up(
    request: Request,
    response: Response,
    runtime: Runtime,
    session: Session,
    *,
    proved: bool = True,
    **changes: Any,
) -> Session:
    """The same session under a new id and CSRF token once its holder proved more (a second
    factor, a re-authentication): an id seen before that step opens nothing after it. With
    ``proved`` False (a password change) the id rotates but the sign-in does not count as
    recent: that would skip the second factor re-authentication asks for."""
    current = session_id(request) or ""
    rotated = runtime.sessions.rotate(current)
    if rotated is None:
        raise Unauthenticated("the session has expired or ended; sign in again")
    new_id, fresh = rotated
    if proved:
        changes["auth_time"] = time.time()
    fresh = runtime.sessions.update(fresh, **changes)
    left = max(1, int(fresh.created + fresh.absolute_seconds - time.time()))
    set_cookie(request, response, SESSION_COOKIE, new_id, left, script=False)
    set_cookie(request, response, CSRF_COOKIE, fresh.csrf, left, script=True)
    return fresh


def _current(request: Request, runtime: RuntimeDep) -> Session:
    """The person's browser session at any stage (CSRF-checked); a token is refused here."""
    current = session_id(request)
    if "authorization" in request.headers:
        authenticate(request, runtime)  # a bad credential is a 401 like anywhere else
        raise Forbidden("this is a step of a browser sign-in: it takes the session cookie")
    if not current:
        raise Unauthenticated("no session: sign in first (POST /v1/auth/password)")
    session = browser_session(request, runtime, current)
    if session.person_id is None:
        raise Forbidden(
            "this session was opened with an admin token, not by a person: to confirm it is "
            "you, sign in with that token again (POST /v1/session {token})",
            code="token_session",
        )
    return session


setattr(_current, GATE_MARK, True)  # judged before the body is read (deps.gate_for)
CurrentSession = Annotated[Session, Depends(_current)]


def _second_factor(runtime: Runtime, session: Session, body: SecondFactor, client: str) -> str:
    """Check a TOTP code, a recovery code or a passkey (throttled like passwords, and locked
    after ``FACTOR_FAILURES`` wrong ones in a row from anywhere); returns the amr."""
    person_id, org_id = session.person_id or "", session.org_id
    key = f"mfa|{person_id}"
    _check_factor_lock(runtime, person_id)
    runtime.accounts.throttle.check(key, client)
    refusal = "that code is wrong or was already used; enter the next code the app shows"
    if body.code:
        ok, amr = runtime.accounts.check_totp(org_id, person_id, body.code), "otp"
    elif body.recovery_code:
        ok, amr = runtime.accounts.use_recovery_code(org_id, person_id, body.recovery_code), "kba"
    elif body.passkey:
        answer, amr = body.passkey, "hwk"
        refusal = runtime.passkeys.refusal(org_id, person_id, session.digest, answer.ceremony,
                                           answer.credential) or ""  # fmt: skip
        ok = not refusal
    else:
        raise Unauthenticated("send code (the authenticator app's), recovery_code or passkey")
    if not ok:
        runtime.accounts.throttle.failed(key, client)
        audit_failure(runtime, Actor(f"person:{person_id}", client), org_id, "mfa",
                      "wrong, used or expired second factor: " + refusal)  # fmt: skip
        _factor_failed(runtime, session, client)
        raise Unauthenticated(refusal, code="mfa_invalid")
    runtime.accounts.throttle.succeeded(key, client)
    runtime.accounts.factor_succeeded(person_id)
    return amr


def _check_factor_lock(runtime: Runtime, person_id: str) -> None:
    wait = runtime.accounts.factor_locked(person_id)
    if wait:
        raise RateLimited(FACTOR_LOCKED.format(minutes=max(1, wait // 60)), wait,
                          code="mfa_locked")  # fmt: skip


def _factor_failed(runtime: Runtime, session: Session, client: str) -> None:
    """Count a wrong second factor; at a lock, every sign-in of the person still waiting for
    one ends (a guesser's half-open sessions go), on the record."""
    person_id = session.person_id or ""
    lock = runtime.accounts.factor_failed(person_id)
    if not lock:
        return
    waiting = [s for s in runtime.sessions.for_person(person_id) if s.stage == "mfa"]
    for pending in waiting:
        runtime.sessions.end_digest(pending.digest, person_id)
    event = ev.SessionsEnded(new_id("act"), session.org_id, person_id, "second_factor_locked",
                             len(waiting))  # fmt: skip
    with runtime.control.store.transaction():
        runtime.control.store.append(event, Actor(f"person:{person_id}", client), 0)
    raise RateLimited(FACTOR_LOCKED.format(minutes=max(1, lock // 60)), lock, code="mfa_locked")


@router.post("/mfa", summary="Second step of a password sign-in: a TOTP or recovery code")
def mfa(
    body: SecondFactor,
    session: CurrentSession,
    request: Request,
    response: Response,
    runtime: RuntimeDep,
    client: ClientDep,
) -> dict[str, Any]:
    if session.stage != "mfa":
        raise Conflict(f"this session is at stage '{session.stage}', not waiting for a code")
    amr = _second_factor(runtime, session, body, client)
    fresh = step_up(request, response, runtime, session, stage="full",
                    amr=(*session.amr, amr, "mfa"))  # fmt: skip
    _audit(runtime, fresh, client)
    return _answer(fresh)


@router.post("/reauth", summary="Confirm your password (and TOTP) before a sensitive action")
def reauth(
    body: Reauth,
    session: CurrentSession,
    request: Request,
    response: Response,
    runtime: RuntimeDep,
    client: ClientDep,
) -> dict[str, Any]:
    if session.stage != "full":
        raise Forbidden("finish signing in first", code=f"{session.stage}_required")
    person_id = session.person_id or ""
    policy = runtime.control.people.policy(session.org_id)
    if policy.enforce_sso and not session.break_glass:
        raise Forbidden(SSO_ONLY + "; re-authenticate through SSO (mode=reauth)",
                        code="sso_required")  # fmt: skip
    key = f"reauth|{person_id}"
    runtime.accounts.throttle.check(key, client)
    if not runtime.accounts.check_password(person_id, body.password):
        runtime.accounts.throttle.failed(key, client)
        audit_failure(runtime, Actor(f"person:{person_id}", client), session.org_id, "reauth",
                      "wrong password")  # fmt: skip
        raise Unauthenticated("wrong password", code="wrong_credentials")
    runtime.accounts.throttle.succeeded(key, client)
    amr: tuple[str, ...] = ("pwd",)
    if runtime.accounts.has_totp(person_id) or runtime.passkeys.count(person_id):
        amr = (
            "pwd",
            _second_factor(
                runtime,
                session,
                SecondFactor(code=body.code, recovery_code=None, passkey=body.passkey),
                client,
            ),
            "mfa",
        )
    fresh = step_up(request, response, runtime, session, amr=amr)
    _audit(runtime, fresh, client, method="reauth")
    return _answer(fresh)


@router.post("/invitations/accept", summary="Choose a password from an invitation; signs in")
def accept_invitation(
    body: AcceptInvitation,
    request: Request,
    response: Response,
    runtime: RuntimeDep,
    client: ClientDep,
) -> dict[str, Any]:
    org_id, person_id = live_invitation(runtime, body.token, client)
    person = runtime.control.people.get(org_id, person_id)
    if runtime.control.people.policy(org_id).enforce_sso and not person["break_glass"]:
        # Refused before the invitation is spent: it still works for "Continue with <IdP>".
        raise Forbidden(SSO_INVITED, code="sso_required")
    runtime.accounts.accept_invitation(body.token, body.password)
    stage = _stage(runtime, org_id, person_id)
    _, session = open_session(request, response, runtime, org_id, "password",
                              person_id=person_id, amr=("pwd",), stage=stage)  # fmt: skip
    if stage == "full":
        _audit(runtime, session, client)
    return _answer(session)


def live_invitation(runtime: Runtime, token: str, client: str) -> tuple[str, str]:
    """(org_id, person_id) of a live invitation, unspent; a wrong token counts against the
    client address like a wrong password."""
    runtime.accounts.throttle.check("invitation", client)
    try:
        return runtime.accounts.peek_invitation(token)
    except Forbidden:
        runtime.accounts.throttle.client.failed(client)
        raise


@router.post("/invitations/options", summary="How an invited person can join (public)")
def invitation_options(
    body: InvitationToken, runtime: RuntimeDep, client: ClientDep
) -> dict[str, Any]:
    """What the invitation page offers: the org's SSO connections, and a password unless the
    org enforces SSO. The token travels in the body, never in a URL."""
    org_id, person_id = live_invitation(runtime, body.token, client)
    person = runtime.control.people.get(org_id, person_id)
    enforced = runtime.control.people.policy(org_id).enforce_sso
    return {
        "org": runtime.control.org(org_id)["name"],
        "email": person["email"],
        "sso": _sso_connections(runtime, org_id),
        "password": not enforced or bool(person["break_glass"]),
    }


@router.post("/sign-out", status_code=204, summary="End this browser's session, at any stage")
def sign_out(_: CurrentSession, request: Request, runtime: RuntimeDep) -> Response:
    """Also for a sign-in left half way (waiting for a code, or for MFA set-up), which the
    other routes refuse. The CSRF check applies: no cross-site request signs anyone out."""
    response = Response(status_code=204)
    end_session(request, response, runtime)
    return response
