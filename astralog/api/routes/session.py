"""The browser's session: who it is, sign out, and the bootstrap sign-in with a management token
(people sign in with a password or SSO under /v1/auth)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response
from pydantic import Field

from astralog.api.deps import ClientDep, ManagementDep, RuntimeDep
from astralog.api.models import Strict
from astralog.api.signin import audit_sign_in, end_session, open_session
from astralog.auth.principal import Principal
from astralog.controlplane.store import Actor
from astralog.errors import Forbidden

router = APIRouter(prefix="/v1/session", tags=["session"])


class SignIn(Strict):
    token: str = Field(min_length=1, max_length=200, description="A management token (alt_…).")


def view(principal: Principal, csrf: str) -> dict[str, Any]:
    return {
        "principal": principal.id,
        "kind": principal.kind,
        "org_id": principal.org_id,
        "person_id": principal.person_id,
        "role": principal.role,
        "sources": None if principal.readable is None else sorted(principal.readable),
        "scopes": sorted(principal.scopes),
        "csrf_token": csrf,
    }


@router.post("", summary="Sign in with a management token (bootstrap); sets the session cookie")
def sign_in(
    body: SignIn, request: Request, response: Response, runtime: RuntimeDep, client: ClientDep
) -> Any:
    principal = runtime.control.authenticate(body.token)
    if principal.kind != "management" or principal.org_id is None:
        raise Forbidden("sign in with a management token of an org (alt_…)")
    token_id = principal.id.removeprefix("token:")
    _, session = open_session(request, response, runtime, principal.org_id, "token",
                              token_id=token_id)  # fmt: skip
    audit_sign_in(runtime, Actor(principal.id, client), principal.org_id, None, "token")
    return view(principal, session.csrf)


@router.get("", summary="Who the session belongs to")
def whoami(principal: ManagementDep, request: Request) -> Any:
    session = getattr(request.state, "session", None)
    return view(principal, session.csrf if session is not None else "")


@router.delete("", status_code=204, summary="Sign out")
def sign_out(_: ManagementDep, request: Request, runtime: RuntimeDep) -> Response:
    response = Response(status_code=204)
    end_session(request, response, runtime)
    return response
