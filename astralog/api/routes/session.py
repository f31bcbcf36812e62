"""Sign-in for the browser: trade a management token for an HttpOnly session cookie."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response
from pydantic import Field

from astralog.api.deps import ManagementDep, RuntimeDep
from astralog.api.models import Strict
from astralog.auth.sessions import CSRF_COOKIE, SESSION_COOKIE
from astralog.errors import Forbidden
from astralog.runtime import SESSION_SECONDS

router = APIRouter(prefix="/v1/session", tags=["session"])
_LOOPBACK = {"localhost", "127.0.0.1", "::1", "[::1]"}


class SignIn(Strict):
    token: str = Field(min_length=1, max_length=200, description="A management token (alt_…).")


def _secure(request: Request) -> bool:
    # Browsers treat loopback as a secure context, so Secure cookies work there over http too.
    return request.url.scheme == "https" or (request.url.hostname or "") in _LOOPBACK


def _view(principal: Any, csrf: str) -> dict[str, Any]:
    return {
        "principal": principal.id,
        "org_id": principal.org_id,
        "scopes": sorted(principal.scopes),
        "csrf_token": csrf,
    }


@router.post("", summary="Sign in with a management token; sets the session cookie")
def sign_in(body: SignIn, request: Request, response: Response, runtime: RuntimeDep) -> Any:
    principal = runtime.control.authenticate(body.token)
    if principal.kind != "management" or principal.org_id is None:
        raise Forbidden("sign in with a management token of an org (alt_…)")
    session_id, session = runtime.sessions.start(principal.id.removeprefix("token:"))
    secure = _secure(request)
    response.set_cookie(
        SESSION_COOKIE,
        session_id,
        max_age=SESSION_SECONDS,
        httponly=True,
        secure=secure,
        samesite="strict",
        path="/",
    )
    response.set_cookie(
        CSRF_COOKIE,
        session.csrf,
        max_age=SESSION_SECONDS,
        httponly=False,
        secure=secure,
        samesite="strict",
        path="/",
    )
    return _view(principal, session.csrf)


@router.get("", summary="Who the session belongs to")
def whoami(principal: ManagementDep, request: Request) -> Any:
    return _view(principal, request.cookies.get(CSRF_COOKIE, ""))


@router.delete("", status_code=204, summary="Sign out")
def sign_out(_: ManagementDep, request: Request, runtime: RuntimeDep) -> Response:
    session_id = request.cookies.get(SESSION_COOKIE)
    if session_id:
        runtime.sessions.end(session_id)
    response = Response(status_code=204)
    response.delete_cookie(SESSION_COOKIE, path="/")
    response.delete_cookie(CSRF_COOKIE, path="/")
    return response
