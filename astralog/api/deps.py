"""Request-scoped collaborators as ``Annotated`` dependencies: each route states what it needs.

The org always comes from the authenticated principal; no route reads it from a header or body.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
from collections.abc import Callable
from typing import Annotated

from fastapi import Depends, Request

from astralog.api.sessions import CSRF_HEADER, SAFE_METHODS, SESSION_COOKIE
from astralog.controlplane.service import ControlPlane
from astralog.controlplane.store import Actor
from astralog.errors import Forbidden, NotFound, Unauthenticated
from astralog.principal import Principal
from astralog.runtime import Runtime
from astralog.settings import Settings


def get_runtime(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]


def get_settings(runtime: RuntimeDep) -> Settings:
    return runtime.settings


def get_control(runtime: RuntimeDep) -> ControlPlane:
    return runtime.control


SettingsDep = Annotated[Settings, Depends(get_settings)]
ControlDep = Annotated[ControlPlane, Depends(get_control)]


def presented_secret(request: Request) -> str:
    """The secret from ``Bearer``, HTTP ``Basic`` (password) or Elasticsearch ``ApiKey``."""
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    scheme, value = scheme.lower(), value.strip()
    if not header:
        raise Unauthenticated(
            "no credential: send 'Authorization: Bearer <key>' (or the key as the Basic password)"
        )
    if scheme == "bearer" and value:
        return value
    if scheme in ("basic", "apikey") and value:
        try:
            decoded = base64.b64decode(value, validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            if scheme == "apikey":
                return value
            raise Unauthenticated("the Basic credential is not valid base64") from None
        return decoded.partition(":")[2] or decoded
    raise Unauthenticated("unsupported Authorization scheme: use Bearer, Basic or ApiKey")


def client_address(request: Request, settings: SettingsDep) -> str:
    peer = request.client.host if request.client else "unknown"
    if peer in settings.server.trusted_proxies:
        forwarded = request.headers.get("x-forwarded-for", "").split(",")[0].strip()
        try:
            return str(ipaddress.ip_address(forwarded))
        except ValueError:
            return peer
    return peer


def _session_principal(request: Request, runtime: Runtime, session_id: str) -> Principal:
    session = runtime.sessions.get(session_id)
    if session is None:
        raise Unauthenticated("the session has expired or ended; sign in again")
    if request.method not in SAFE_METHODS and not session.csrf_ok(request.headers.get(CSRF_HEADER)):
        raise Forbidden("missing or wrong X-CSRF-Token header; reload the page and try again")
    return runtime.control.token_principal(session.token_id)


def authenticate(request: Request, runtime: RuntimeDep) -> Principal:
    """From the Authorization header, or else from the browser's session cookie."""
    session_id = request.cookies.get(SESSION_COOKIE)
    if "authorization" not in request.headers and session_id:
        principal = _session_principal(request, runtime, session_id)
    else:
        principal = runtime.control.authenticate(presented_secret(request))
    request.state.principal_id = principal.id
    return principal


def management_principal(principal: Annotated[Principal, Depends(authenticate)]) -> Principal:
    if principal.kind == "ingest":
        raise Forbidden("an ingest key can only send events; use a management token here")
    return principal


def ingest_principal(principal: Annotated[Principal, Depends(authenticate)]) -> Principal:
    if principal.kind != "ingest":
        raise Forbidden("only a source's ingest key can send events; this is a management token")
    return principal


def operator_principal(request: Request, runtime: RuntimeDep) -> Principal:
    """Operator-only routes look absent (404) to everyone else, authenticated or not."""
    try:
        principal = authenticate(request, runtime)
    except Unauthenticated:
        raise NotFound("Not Found") from None
    if principal.kind != "operator":
        raise NotFound("Not Found")
    return principal


ManagementDep = Annotated[Principal, Depends(management_principal)]
IngestDep = Annotated[Principal, Depends(ingest_principal)]
OperatorDep = Annotated[Principal, Depends(operator_principal)]
ClientDep = Annotated[str, Depends(client_address)]


def scoped(scope: str) -> Callable[[Principal], str]:
    """Dependency: the caller's org id, after checking a management token with ``scope``."""

    def org_id(principal: ManagementDep) -> str:
        if principal.kind != "management" or principal.org_id is None:
            raise Forbidden("this endpoint acts on one org: use a management token of that org")
        principal.require(scope)
        return principal.org_id

    return org_id


def actor(principal: Annotated[Principal, Depends(authenticate)], client: ClientDep) -> Actor:
    return Actor(principal.id, client)


ActorDep = Annotated[Actor, Depends(actor)]
