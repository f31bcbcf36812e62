"""What every way of signing in shares: the session cookies, the org's session lifetimes, the
audit record of the sign-in, and the re-authentication rule for sensitive actions.

Over HTTPS (and on loopback, which browsers treat as secure) the session cookie is named
``__Host-astralog_session``: Secure, host-only, path ``/``, so no sibling subdomain can plant one
(session fixation). Over plain HTTP elsewhere (development only) it is ``astralog_session``; a
secure request never reads that name.
"""

from __future__ import annotations

from typing import Any

from fastapi import Request, Response

from astralog.auth.principal import Principal
from astralog.auth.sessions import CSRF_COOKIE, SESSION_COOKIE, Session
from astralog.controlplane import events as ev
from astralog.controlplane.store import Actor
from astralog.errors import Forbidden
from astralog.ids import new_id
from astralog.runtime import Runtime

_LOOPBACK = {"localhost", "127.0.0.1", "::1", "[::1]"}
REAUTH_SECONDS = 5 * 60
"""A sensitive action (tokens, MFA, IdP settings, deletion, export) needs a sign-in this recent."""


def secure(request: Request) -> bool:
    """Browsers reach the service over TLS: the request says so, or it is loopback (a secure
    context), or the public URL is https (TLS ends at a proxy in front of us)."""
    public_url: str = request.app.state.runtime.settings.server.public_url
    return (
        request.url.scheme == "https"
        or (request.url.hostname or "") in _LOOPBACK
        or public_url.startswith("https://")
    )


def cookie_name(request: Request, base: str) -> str:
    return f"__Host-{base}" if secure(request) else base


def session_id(request: Request) -> str | None:
    return request.cookies.get(cookie_name(request, SESSION_COOKIE))


def set_cookie(
    request: Request, response: Response, base: str, value: str, max_age: int, *, script: bool
) -> None:
    response.set_cookie(
        cookie_name(request, base),
        value,
        max_age=max_age,
        httponly=not script,
        secure=secure(request),
        samesite="strict" if base != "astralog_preauth" else "lax",
        path="/",
    )


def clear_cookie(request: Request, response: Response, base: str) -> None:
    response.delete_cookie(
        cookie_name(request, base), path="/", secure=secure(request), httponly=True
    )


def open_session(
    request: Request,
    response: Response,
    runtime: Runtime,
    org_id: str,
    method: str,
    **fields: Any,
) -> tuple[str, Session]:
    """Start a fresh session (any session the browser had ends: no fixation) with the org's
    lifetimes, and set its cookies on ``response``."""
    old = session_id(request)
    if old:
        runtime.sessions.end(old)
    policy = runtime.control.people.policy(org_id)
    absolute = policy.session_absolute_hours * 3600
    new_id_, session = runtime.sessions.start(
        org_id,
        method,
        idle_seconds=policy.session_idle_minutes * 60,
        absolute_seconds=absolute,
        client=request.client.host if request.client else "",
        user_agent=request.headers.get("user-agent", "")[:200],
        **fields,
    )
    set_cookie(request, response, SESSION_COOKIE, new_id_, absolute, script=False)
    set_cookie(request, response, CSRF_COOKIE, session.csrf, absolute, script=True)
    return new_id_, session


def end_session(request: Request, response: Response, runtime: Runtime) -> None:
    current = session_id(request)
    if current:
        runtime.sessions.end(current)
    clear_cookie(request, response, SESSION_COOKIE)
    clear_cookie(request, response, CSRF_COOKIE)


def audit_sign_in(runtime: Runtime, actor: Actor, org_id: str, person_id: str | None, method: str,
                  **details: Any) -> None:  # fmt: skip
    """A sign-in into the hash chain: who, how (method, IdP, amr/acr), and break-glass use."""
    event = ev.SignedIn(new_id("act"), org_id, person_id, method, **details)
    with runtime.control.store.transaction():
        runtime.control.store.append(event, actor, 0)


def audit_failure(runtime: Runtime, actor: Actor, org_id: str, method: str, reason: str,
                  who: str = "") -> None:  # fmt: skip
    event = ev.SignInFailed(new_id("act"), org_id, method, reason, who)
    with runtime.control.store.transaction():
        runtime.control.store.append(event, actor, 0)


def require_recent(
    request: Request, principal: Principal | None = None, seconds: float = REAUTH_SECONDS
) -> None:
    """Sensitive actions by a browser session need a sign-in within ``seconds``; a token (no
    session) proved itself on this very request. Given the ``principal``, a person's or service
    account's token is refused outright: minting credentials that outlive a token's owner takes
    a person at a browser, freshly signed in."""
    session: Session | None = getattr(request.state, "session", None)
    if session is None:
        if principal is not None and principal.kind in ("person", "service"):
            raise Forbidden(
                "do this from a signed-in browser session: a personal or service account token "
                "cannot mint credentials",
                code="session_required",
            )
        return
    if session.authenticated_within(seconds):
        return
    if session.person_id is None:  # signed in with an org token: it is the only proof there is
        raise Forbidden(
            "this action needs a recent sign-in: this session was opened with an admin token, "
            "so sign in with that token again (POST /v1/session {token}), then retry",
            code="reauth_required",
            signed_in_with="token",
        )
    raise Forbidden(
        "this action needs a recent sign-in: confirm your password or sign in with SSO "
        "again (POST /v1/auth/reauth), then retry",
        code="reauth_required",
    )
