"""Passkeys (WebAuthn) of my account, and the options of a passkey sign-in step.

Adding a passkey follows the TOTP set-up's rules: from a signed-in browser session after a
recent sign-in, or at stage "enrol" where it completes a sign-in the org's require-MFA policy
held back. Removing one needs a recent sign-in, and is refused while the org requires MFA and it
is the person's last second factor. The answer to a sign-in or re-authentication challenge goes
to ``POST /v1/auth/mfa`` or ``POST /v1/auth/reauth`` as ``passkey``, beside ``code``.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response
from pydantic import Field

from astralog.api.deps import ClientDep, PersonDep, RuntimeDep
from astralog.api.models import Strict
from astralog.api.routes.auth import CurrentSession
from astralog.api.routes.me import EnrollingDep, _session, factor_added, fresh_session
from astralog.controlplane.store import Actor
from astralog.errors import Conflict, Forbidden, NotFound

router = APIRouter(tags=["my account"])


class PasskeyRegistration(Strict):
    ceremony: str = Field(min_length=1, max_length=100, description="From the options answer.")
    name: str = Field("", max_length=64, description="How you will recognise this passkey.")
    credential: dict[str, Any] = Field(description="navigator.credentials.create()'s answer.")


@router.post("/v1/me/passkeys/options", summary="Start adding a passkey: creation options")
def registration_options(
    principal: EnrollingDep, request: Request, runtime: RuntimeDep
) -> dict[str, Any]:
    session = fresh_session(request)
    return runtime.passkeys.registration_options(
        principal.org_id or "", principal.person_id or "", session.digest
    )


@router.post("/v1/me/passkeys", status_code=201, summary="Add a passkey from its creation answer")
def register(
    body: PasskeyRegistration,
    principal: EnrollingDep,
    request: Request,
    response: Response,
    runtime: RuntimeDep,
    client: ClientDep,
) -> dict[str, Any]:
    session = _session(request)
    org_id, person_id = principal.org_id or "", principal.person_id or ""
    passkey = runtime.passkeys.register(
        org_id, person_id, session.digest, body.ceremony, body.credential, body.name
    )
    ended = factor_added(request, response, runtime, session, client, "passkey added", "hwk")
    return {"passkey": passkey, "other_sessions_ended": ended}


@router.get("/v1/me/passkeys", summary="My passkeys")
def my_passkeys(principal: PersonDep, runtime: RuntimeDep) -> list[dict[str, Any]]:
    return runtime.passkeys.mine(principal.person_id or "")


@router.delete("/v1/me/passkeys/{passkey_id}", summary="Remove one of my passkeys")
def remove(
    passkey_id: str,
    principal: PersonDep,
    request: Request,
    runtime: RuntimeDep,
    client: ClientDep,
) -> dict[str, Any]:
    fresh_session(request)
    org_id, person_id = principal.org_id or "", principal.person_id or ""
    mine = {p["id"] for p in runtime.passkeys.mine(person_id)}
    if passkey_id not in mine:
        raise NotFound(f"no passkey {passkey_id[:40]!r} of yours exists")
    others = len(mine) - 1 + int(runtime.accounts.has_totp(person_id))
    if runtime.control.people.policy(org_id).require_mfa and others < 1:
        raise Conflict("your org requires MFA and this is your last second factor: add another "
                       "passkey or an authenticator app first")  # fmt: skip
    runtime.passkeys.remove(org_id, person_id, passkey_id, Actor(principal.id, client))
    return {"removed": passkey_id, "passkeys": runtime.passkeys.count(person_id)}


@router.post("/v1/auth/passkeys/options", summary="Options to answer with a passkey (MFA, re-auth)")
def authentication_options(session: CurrentSession, runtime: RuntimeDep) -> dict[str, Any]:
    """For the second step of a sign-in (stage "mfa") or a re-authentication (stage "full")."""
    if session.stage not in ("mfa", "full"):
        raise Forbidden("finish signing in first", code=f"{session.stage}_required")
    return runtime.passkeys.authentication_options(
        session.org_id, session.person_id or "", session.digest
    )
