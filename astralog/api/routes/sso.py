"""Single sign-on: an org's OpenID Providers (admin routes) and the browser's sign-in through them.

Admin (``sso:write``): ``/v1/sso/connections`` (the client secret is write-only) and the mapping
preview. Public: ``GET /v1/auth/sso/{id}/start`` sends the browser to the IdP with ``state``,
``nonce`` and PKCE S256 kept server-side under a single-use pre-auth cookie (SameSite=Lax, so the
IdP's redirect back carries it); ``GET /v1/auth/sso/callback`` checks everything and opens a
session, or sends the browser to ``/?signin_error=<reason>`` and audits the failure. Back-channel
logout (``POST /v1/auth/sso/{id}/backchannel-logout``) ends sessions by the IdP's ``sid``/``sub``;
``GET /v1/auth/sso/logout`` ends the session and continues to the IdP's end-session endpoint.

Modes of ``start``: ``signin``; ``test`` (an admin's session proves the connection works: it
records ``sso_tested_at`` and the connection on that very session, needed before enforcing SSO);
``link`` (the signed-in person links this IdP identity to their account: a new way in, so it
needs a recent sign-in at start and still at the callback, is recorded as a credential change,
and ends the person's other sessions); ``reauth`` (a fresh login at the IdP
renews the session's ``auth_time`` for sensitive actions); ``invitation`` (started by
``POST /v1/auth/invitations/sso``: the invitation token is the invited account's credential, so
the IdP identity of that same, verified email is linked to it and the invitation is spent;
the attempt keeps only the token's digest).
"""

from __future__ import annotations

import time
from typing import Any, Literal
from urllib.parse import urlencode, urlsplit

from fastapi import APIRouter, Form, Request, Response
from fastapi.responses import JSONResponse, RedirectResponse
from pydantic import Field

from astralog.api.deps import ActorDep, ClientDep, ManagementDep, RuntimeDep, SsoWrite
from astralog.api.models import Strict
from astralog.api.routes.auth import live_invitation
from astralog.api.routes.me import end_other_sessions
from astralog.api.signin import (
    REAUTH_SECONDS,
    audit_failure,
    audit_sign_in,
    clear_cookie,
    cookie_name,
    end_session,
    open_session,
    require_recent,
    session_id,
    set_cookie,
)
from astralog.auth import oidc
from astralog.auth.oidc import Attempt, SsoFailure
from astralog.auth.principal import Principal
from astralog.auth.roles import check_may_hold
from astralog.auth.sessions import PREAUTH_COOKIE, PREAUTH_SECONDS, Session
from astralog.controlplane import events as ev
from astralog.controlplane.accounts import invitation_digest
from astralog.controlplane.idp import Connection, ConnectionSpec, RoleRule, redact_claims
from astralog.controlplane.store import Actor
from astralog.errors import BadRequest, Conflict, Forbidden, NotFound, Unauthenticated
from astralog.ids import new_id
from astralog.runtime import Runtime

router = APIRouter(tags=["sso"])
CALLBACK = "/v1/auth/sso/callback"
Mode = Literal["signin", "test", "link", "reauth"]
NOT_INVITED = "this invitation is unknown, used or expired; ask an org admin for a new one"
LOCKOUT = (
    "the org enforces single sign-on and this is its last identity provider anyone has signed in "
    'through: removing it would lock everyone out. Turn off "Enforce SSO" first (PUT '
    "/v1/org/security-policy with enforce_sso false), or add another provider and sign in "
    "through it once"
)


# ---- admin: the org's identity providers ---------------------------------------------------


class RuleBody(Strict):
    claim: str = Field(min_length=1, max_length=100, examples=["groups"])
    value: str = Field(min_length=1, max_length=200, examples=["log-admins"])
    role: str = Field(examples=["admin"])
    sources: list[str] | None = Field(None, description="member/viewer only; null = all")


class ConnectionBody(Strict):
    name: str = Field(min_length=1, max_length=100, examples=["Okta"])
    issuer: str = Field(min_length=1, max_length=300, examples=["https://example.okta.com"])
    client_id: str = Field(min_length=1, max_length=300)
    client_secret: str | None = Field(
        None,
        min_length=1,
        max_length=1000,
        description="Write-only: sealed at rest, never returned. Omit on update to keep it.",
    )
    scopes: list[str] = Field(default_factory=lambda: ["openid", "email", "profile"])
    role_rules: list[RuleBody] = Field(default_factory=list, max_length=100)
    strict: bool = Field(True, description="Refuse a sign-in that matches no rule.")
    default_role: str | None = Field(None, description="When not strict: member or viewer.")
    jit: bool = Field(True, description="Create accounts at first sign-in (verified domains).")

    def spec(self) -> ConnectionSpec:
        rules = [RoleRule(r.claim, r.value, r.role, r.sources) for r in self.role_rules]
        return ConnectionSpec(
            self.name,
            self.issuer.strip(),
            self.client_id,
            self.scopes,
            rules,
            self.strict,
            self.default_role,
            self.jit,
        )


def _may_configure(principal: Principal, spec: ConnectionSpec, verb: str) -> None:
    """A connection grants and removes the roles its rules name at every sign-in, so saving or
    removing one needs what granting those roles needs: an admin cannot mint an owner this way."""
    for named in {rule.role for rule in spec.rules} | {spec.default_role or "viewer"}:
        check_may_hold(principal, named, verb)


def _save(
    request: Request,
    runtime: Runtime,
    principal: Principal,
    connection_id: str | None,
    body: ConnectionBody,
    actor: Actor,
) -> dict[str, Any]:
    require_recent(request)
    org_id = str(principal.org_id)
    spec = body.spec()
    if connection_id is not None:
        _may_configure(principal, runtime.idps.get(org_id, connection_id).spec, "change rules of")
    _may_configure(principal, spec, "map claims to")
    runtime.idps.validate(org_id, spec)
    runtime.oidc.metadata(spec.issuer, fresh=True)  # the connection check: discovery answers
    saved = runtime.idps.configure(org_id, connection_id, spec, body.client_secret, actor)
    return _admin_view(runtime, saved)


def _admin_view(runtime: Runtime, connection: Connection) -> dict[str, Any]:
    base = runtime.settings.server.url()
    return {
        **connection.view(),
        "redirect_uri": base + CALLBACK,
        "backchannel_logout_uri": f"{base}/v1/auth/sso/{connection.id}/backchannel-logout",
        "post_logout_redirect_uri": base + "/",
        "sign_in_url": f"{base}/v1/auth/sso/{connection.id}/start",
    }


@router.get("/v1/sso/connections", summary="The org's identity providers")
def list_connections(org_id: SsoWrite, runtime: RuntimeDep) -> dict[str, Any]:
    return {"connections": [_admin_view(runtime, c) for c in runtime.idps.list(org_id)]}


@router.post("/v1/sso/connections", status_code=201, summary="Add an OpenID Provider")
def create_connection(
    body: ConnectionBody,
    _: SsoWrite,
    principal: ManagementDep,
    request: Request,
    runtime: RuntimeDep,
    actor: ActorDep,
) -> dict[str, Any]:
    return _save(request, runtime, principal, None, body, actor)


@router.get("/v1/sso/connections/{connection_id}", summary="One identity provider")
def get_connection(connection_id: str, org_id: SsoWrite, runtime: RuntimeDep) -> dict[str, Any]:
    return _admin_view(runtime, runtime.idps.get(org_id, connection_id))


@router.put("/v1/sso/connections/{connection_id}", summary="Replace an identity provider")
def update_connection(
    connection_id: str,
    body: ConnectionBody,
    _: SsoWrite,
    principal: ManagementDep,
    request: Request,
    runtime: RuntimeDep,
    actor: ActorDep,
) -> dict[str, Any]:
    return _save(request, runtime, principal, connection_id, body, actor)


@router.delete("/v1/sso/connections/{connection_id}", status_code=204)
def delete_connection(
    connection_id: str,
    org_id: SsoWrite,
    principal: ManagementDep,
    request: Request,
    runtime: RuntimeDep,
    actor: ActorDep,
) -> Response:
    require_recent(request)
    _may_configure(principal, runtime.idps.get(org_id, connection_id).spec, "remove rules of")
    _check_not_last(runtime, org_id, connection_id)
    runtime.idps.remove(org_id, connection_id, actor)
    return Response(status_code=204)


def _check_not_last(runtime: Runtime, org_id: str, connection_id: str) -> None:
    """Under enforced SSO some other connection must be known to work (someone signed in
    through it), or the sign-in page would offer nothing but the break-glass owner."""
    if not runtime.control.people.policy(org_id).enforce_sso:
        return
    others = [c for c in runtime.idps.list(org_id) if c.id != connection_id]
    if not any(c.last_sign_in for c in others):
        raise Conflict(LOCKOUT, code="last_sso_connection")


@router.get(
    "/v1/sso/connections/{connection_id}/preview",
    summary="The last sign-in's claims (redacted) beside the role and sources they produce",
)
def preview(connection_id: str, org_id: SsoWrite, runtime: RuntimeDep) -> dict[str, Any]:
    return runtime.idps.preview(org_id, connection_id)


# ---- the browser's sign-in ----------------------------------------------------------------


def check_return_to(value: str) -> str:
    """A path on this site only: an absolute or scheme-relative URL would be an open redirect."""
    parts = urlsplit(value)
    if (
        not value.startswith("/")
        or value.startswith(("//", "/\\"))
        or parts.scheme
        or parts.netloc
        or any(ord(c) < 0x21 or c == "\\" for c in value)
        or len(value) > 2000
    ):
        raise BadRequest("return_to must be a path on this site, such as /search?q=error")
    return value


def _connection(runtime: Runtime, connection_id: str) -> Connection:
    found = runtime.idps.find(connection_id)
    if found is None:
        raise NotFound("no such identity provider; sign in from your org's sign-in page")
    return found


def _current_session(request: Request, runtime: Runtime, connection: Connection) -> Session:
    """The signed-in session that test, link and reauth act on, in the connection's org."""
    current = session_id(request)
    session = runtime.sessions.get(current) if current else None
    if session is None or session.stage != "full":
        raise Unauthenticated("sign in first; this mode acts on your current session")
    if session.org_id != connection.org_id:
        raise NotFound("no such identity provider; sign in from your org's sign-in page")
    return session


def _check_mode(runtime: Runtime, mode: str, session: Session) -> None:
    if mode in ("link", "reauth") and session.person_id is None:
        raise Forbidden("only a person's session can link or re-authenticate with SSO")
    if mode == "link":
        _check_recent(session)
    if mode == "test":
        principal = (
            runtime.control.auth.person_principal(session.person_id)
            if session.person_id
            else runtime.control.token_principal(session.token_id or "")
        )
        principal.require("sso:write")


def _check_recent(session: Session) -> None:
    """Linking adds a way to sign in as this person that outlives a password change: a stale or
    stolen session must not add one (the person re-authenticates first, as for a new factor)."""
    if not session.authenticated_within(REAUTH_SECONDS):
        raise SsoFailure(
            "reauth_required",
            "linking an identity provider needs a recent sign-in: re-authenticate, then link",
        )


@router.get("/v1/auth/sso/{connection_id}/start", summary="Go to the identity provider")
def start(
    connection_id: str,
    request: Request,
    runtime: RuntimeDep,
    client: ClientDep,
    return_to: str = "/",
    mode: Mode = "signin",
) -> RedirectResponse:
    connection = _connection(runtime, connection_id)
    state: dict[str, Any] = {"return_to": check_return_to(return_to), "mode": mode}
    try:
        if mode != "signin":
            session = _current_session(request, runtime, connection)
            _check_mode(runtime, mode, session)
            state |= {"session": session.digest, "person_id": session.person_id}
        url, preauth_id = _authorization(runtime, connection, state, client)
    except SsoFailure as failure:  # a browser navigation: back to the sign-in page, with why
        return RedirectResponse(f"/?{urlencode({'signin_error': failure.reason})}", 302)
    response = RedirectResponse(url, status_code=302, headers={"Cache-Control": "no-store"})
    set_cookie(request, response, PREAUTH_COOKIE, preauth_id, PREAUTH_SECONDS, script=False)
    return response


def _authorization(
    runtime: Runtime, connection: Connection, state: dict[str, Any], client: str
) -> tuple[str, str]:
    """The IdP's authorization URL, and the pre-auth id under which this attempt's secrets
    (state, nonce, PKCE verifier, and what ``state`` adds) wait for the callback; the client
    address bounds how many attempts one caller keeps open."""
    meta = runtime.oidc.metadata(connection.spec.issuer)
    attempt = Attempt.new()
    state = state | {
        "connection_id": connection.id,
        "org_id": connection.org_id,
        "started": time.time(),
        "state": attempt.state,
        "nonce": attempt.nonce,
        "verifier": attempt.verifier,
    }
    extra = {"prompt": "login", "max_age": "0"} if state["mode"] == "reauth" else {}
    url = oidc.authorization_url(
        meta,
        connection.spec.client_id,
        _redirect_uri(runtime),
        connection.spec.scopes,
        attempt,
        **extra,
    )
    return url, runtime.sessions.put_preauth("sso", state, owner=f"client:{client}")


class InvitationSso(Strict):
    token: str = Field(min_length=1, max_length=200, description="The invitation's token.")
    connection_id: str = Field(min_length=1, max_length=100, examples=["idp_..."])


@router.post(
    "/v1/auth/invitations/sso",
    summary="Join an org through one of its identity providers (public; the invitation stays "
    "valid until the sign-in completes)",
)
def invitation_sso(
    body: InvitationSso, request: Request, runtime: RuntimeDep, client: ClientDep
) -> JSONResponse:
    """The token travels in this body and waits server-side with the attempt's secrets, so it is
    never in a URL: the browser goes to the answered ``authorization_url`` next."""
    org_id, person_id = live_invitation(runtime, body.token, client)
    connection = runtime.idps.find(body.connection_id)
    if connection is None or connection.org_id != org_id:
        raise NotFound("no such identity provider in the org that invited you")
    state = {"return_to": "/", "mode": "invitation", "person_id": person_id,
             "invitation": invitation_digest(body.token)}  # fmt: skip
    url, preauth_id = _authorization(runtime, connection, state, client)
    response = JSONResponse({"authorization_url": url}, headers={"Cache-Control": "no-store"})
    set_cookie(request, response, PREAUTH_COOKIE, preauth_id, PREAUTH_SECONDS, script=False)
    return response


def _redirect_uri(runtime: Runtime) -> str:
    return runtime.settings.server.url() + CALLBACK


@router.get(CALLBACK, summary="Where the identity provider sends the browser back")
def callback(request: Request, runtime: RuntimeDep, client: ClientDep) -> RedirectResponse:
    preauth_id = request.cookies.get(cookie_name(request, PREAUTH_COOKIE))
    preauth = runtime.sessions.take_preauth(preauth_id, "sso") if preauth_id else None
    try:
        if preauth is None:
            raise SsoFailure(
                "state_missing", "this sign-in was not started here, expired or was already used"
            )
        response = _complete(request, runtime, preauth, client)
    except SsoFailure as failure:
        if preauth is not None:
            audit_failure(
                runtime,
                Actor(f"sso:{preauth['connection_id']}", client),
                preauth["org_id"],
                "sso",
                f"{failure.reason}: {failure.detail}"[:300],
            )
        query = urlencode({"signin_error": failure.reason})
        response = RedirectResponse(f"/?{query}", status_code=302)
    response.headers["Cache-Control"] = "no-store"
    clear_cookie(request, response, PREAUTH_COOKIE)
    return response


def _verified_claims(
    runtime: Runtime, connection: Connection, preauth: dict[str, Any], params: Any
) -> tuple[dict[str, Any], str]:
    """The ID token's claims once state, iss, the code exchange and the token all check out."""
    if not oidc.same(params.get("state") or "", preauth["state"]):
        raise SsoFailure("state_mismatch", "the response does not belong to this sign-in")
    issuer = connection.spec.issuer
    meta = runtime.oidc.metadata(issuer)
    several = len(runtime.idps.list(connection.org_id)) > 1
    oidc.check_response_issuer(params.get("iss"), issuer, required=meta.iss_parameter or several)
    if params.get("error"):
        raise SsoFailure("idp_refused", f"the identity provider answered {params['error'][:60]}")
    if not params.get("code"):
        raise SsoFailure("code_missing", "the identity provider sent no authorization code")
    tokens = oidc.exchange_code(
        runtime.oidc.egress,
        meta,
        connection.spec.client_id,
        runtime.idps.client_secret(connection),
        params["code"],
        _redirect_uri(runtime),
        preauth["verifier"],
    )
    claims = oidc.verify_id_token(tokens["id_token"], _token_check(runtime, connection),
                                  preauth["nonce"])  # fmt: skip
    return claims, str(tokens["id_token"])


def _token_check(runtime: Runtime, connection: Connection) -> oidc.TokenCheck:
    """What the connection's tokens are checked against, with this installation's settings."""
    issuer, sso = connection.spec.issuer, runtime.settings.sso
    return oidc.TokenCheck(issuer, connection.spec.client_id, runtime.oidc.keys(issuer),
                           sso.algorithms, sso.clock_skew_seconds)  # fmt: skip


def _complete(
    request: Request, runtime: Runtime, preauth: dict[str, Any], client: str
) -> RedirectResponse:
    connection = runtime.idps.find(preauth["connection_id"])
    if connection is None:
        raise SsoFailure("connection_removed", "this identity provider was removed meanwhile")
    claims, id_token = _verified_claims(runtime, connection, preauth, request.query_params)
    response = RedirectResponse(preauth["return_to"], status_code=302)
    mode = preauth["mode"]
    if mode == "invitation":
        _join(runtime, connection, preauth, claims, client)
    if mode in ("signin", "invitation"):
        _sign_in(request, response, runtime, connection, claims, id_token, client)
    else:
        _on_session(runtime, connection, preauth, claims, client)
    return response


def _sign_in(
    request: Request,
    response: Response,
    runtime: Runtime,
    connection: Connection,
    claims: dict[str, Any],
    id_token: str,
    client: str,
) -> None:
    result = runtime.idps.sign_in(connection, claims, Actor(f"sso:{connection.id}", client))
    person_id = result.person["id"]
    amr = [str(a) for a in claims.get("amr", []) if isinstance(a, str)][:10]
    open_session(
        request,
        response,
        runtime,
        connection.org_id,
        "sso",
        person_id=person_id,
        amr=tuple(amr),
        connection_id=connection.id,
        idp_sid=_text(claims.get("sid")),
        idp_sub=str(claims["sub"]),
        id_token_hint=id_token,
    )
    _audit(runtime, connection, person_id, "sso", claims, Actor(f"person:{person_id}", client))


def _join(
    runtime: Runtime,
    connection: Connection,
    preauth: dict[str, Any],
    claims: dict[str, Any],
    client: str,
) -> None:
    """An invited person's first sign-in: the invitation is spent and the IdP identity linked to
    the invited account only once the IdP vouches for that very email (never by email alone:
    the invitation token proved the account, the IdP proved the email)."""
    digest = preauth["invitation"]
    try:
        org_id, person_id = runtime.accounts.peek_invitation_digest(digest)
    except Forbidden:
        raise SsoFailure("invitation_invalid", NOT_INVITED) from None
    if (org_id, person_id) != (connection.org_id, preauth["person_id"]):
        raise SsoFailure("invitation_invalid", NOT_INVITED)
    runtime.idps.check_invited(connection, claims, person_id)
    try:
        runtime.accounts.use_invitation_digest(digest)
    except Conflict:
        raise SsoFailure("invitation_invalid", "this invitation was used meanwhile") from None
    actor = Actor(f"sso:{connection.id}", client)
    runtime.idps.link(connection, str(claims["iss"]), str(claims["sub"]), person_id, actor)


def _on_session(
    runtime: Runtime,
    connection: Connection,
    preauth: dict[str, Any],
    claims: dict[str, Any],
    client: str,
) -> None:
    """test, link and reauth act on the session that started them, if it is still live."""
    session = runtime.sessions.by_digest(preauth["session"])
    if session is None or session.person_id != preauth["person_id"]:
        raise SsoFailure("session_ended", "your session ended meanwhile; sign in again")
    mode, person_id = preauth["mode"], session.person_id
    actor = Actor(f"person:{person_id}" if person_id else f"token:{session.token_id}", client)
    if mode == "test":
        runtime.idps.check_mapping(connection, claims)
        runtime.sessions.update(session, sso_tested_at=time.time(),
                                sso_tested_connection=connection.id)  # fmt: skip
    elif mode == "link":
        _link(runtime, connection, session, claims, actor)
    else:
        _reauth(runtime, connection, session, preauth, claims)
    _audit(runtime, connection, person_id, f"sso_{mode}", claims, actor)


def _link(
    runtime: Runtime,
    connection: Connection,
    session: Session,
    claims: dict[str, Any],
    actor: Actor,
) -> None:
    """Link the IdP identity: still a recent sign-in (the IdP round trip took a while), then on
    the record like a new factor, and whoever else holds a session of the person is signed out."""
    _check_recent(session)
    person_id = str(session.person_id)
    linked = runtime.idps.person_for(connection, str(claims["iss"]), str(claims["sub"]))
    runtime.idps.link(connection, str(claims["iss"]), str(claims["sub"]), person_id, actor)
    if linked is None:  # newly linked (linking the same identity again changes nothing)
        runtime.control.people.note_credential(session.org_id, person_id, "sso_linked", actor)
        end_other_sessions(runtime, session, "sso identity linked")


def _reauth(
    runtime: Runtime,
    connection: Connection,
    session: Session,
    preauth: dict[str, Any],
    claims: dict[str, Any],
) -> None:
    linked = runtime.idps.person_for(connection, str(claims["iss"]), str(claims["sub"]))
    if linked is None or linked != session.person_id:
        raise SsoFailure("identity_mismatch", "this IdP identity is not the signed-in person's")
    auth_time = claims.get("auth_time")
    skew = runtime.settings.sso.clock_skew_seconds
    if not isinstance(auth_time, int | float) or auth_time < preauth["started"] - skew:
        raise SsoFailure("reauth_stale", "the identity provider did not ask for your login again")
    runtime.sessions.update(session, auth_time=time.time())


def _audit(
    runtime: Runtime,
    connection: Connection,
    person_id: str | None,
    method: str,
    claims: dict[str, Any],
    actor: Actor,
) -> None:
    amr = [str(a) for a in claims.get("amr", []) if isinstance(a, str)][:10]
    audit_sign_in(
        runtime,
        actor,
        connection.org_id,
        person_id,
        method,
        idp=connection.id,
        amr=amr,
        acr=_text(claims.get("acr")),
        claims=redact_claims(claims, connection.spec.rules),
    )


def _text(value: Any) -> str | None:
    return value[:200] if isinstance(value, str) else None


# ---- logout ----------------------------------------------------------------------------------


@router.post(
    "/v1/auth/sso/{connection_id}/backchannel-logout",
    summary="OpenID Connect Back-Channel Logout: the IdP ends sessions by sid or sub",
)
def backchannel_logout(
    connection_id: str,
    runtime: RuntimeDep,
    client: ClientDep,
    logout_token: str = Form(max_length=20_000),
) -> Response:
    headers = {"Cache-Control": "no-store"}
    try:
        connection = _connection(runtime, connection_id)
        claims = _logout_claims(runtime, connection, logout_token)
    except (SsoFailure, NotFound) as exc:
        body = {"error": "invalid_request", "error_description": exc.detail[:200]}
        return JSONResponse(body, status_code=400, headers=headers)
    sid, sub = _text(claims.get("sid")), _text(claims.get("sub"))
    ended = runtime.sessions.end_idp(connection.id, sid, sub)
    person_id = runtime.idps.person_for(connection, connection.spec.issuer, sub) if sub else None
    event = ev.SessionsEnded(new_id("act"), connection.org_id, person_id, "idp_logout", ended)
    with runtime.control.store.transaction():
        runtime.control.store.append(event, Actor(f"sso:{connection.id}", client), 0)
    return Response(status_code=200, headers=headers)


def _logout_claims(runtime: Runtime, connection: Connection, token: str) -> dict[str, Any]:
    claims = oidc.verify_logout_token(token, _token_check(runtime, connection))
    expires = float(claims.get("exp") or claims["iat"] + oidc.LOGOUT_TOKEN_SECONDS)
    if not runtime.oidc.seen.first_use(f"{connection.id}:{claims['jti']}", expires):
        raise SsoFailure("replayed", "this logout token was already used")
    return claims


@router.get("/v1/auth/sso/logout", summary="Sign out here and at the identity provider")
def logout(request: Request, runtime: RuntimeDep) -> RedirectResponse:
    """RP-initiated logout: the session ends here first, then the IdP ends its own."""
    current = session_id(request)
    session = runtime.sessions.get(current) if current else None
    target = "/"
    if session is not None and session.connection_id and session.id_token_hint:
        target = _end_session_url(runtime, session) or "/"
    response = RedirectResponse(target, status_code=302, headers={"Cache-Control": "no-store"})
    end_session(request, response, runtime)
    return response


def _end_session_url(runtime: Runtime, session: Session) -> str | None:
    connection = runtime.idps.find(str(session.connection_id))
    if connection is None:
        return None
    try:
        meta = runtime.oidc.metadata(connection.spec.issuer)
    except SsoFailure:
        return None  # signed out here; the IdP session stays, as the IdP is unreachable
    if meta.end_session_endpoint is None:
        return None
    query = urlencode(
        {
            "id_token_hint": session.id_token_hint,
            "post_logout_redirect_uri": runtime.settings.server.url() + "/",
            "client_id": connection.spec.client_id,
        }
    )
    separator = "&" if "?" in meta.end_session_endpoint else "?"
    return f"{meta.end_session_endpoint}{separator}{query}"
