"""Request-scoped collaborators as ``Annotated`` dependencies: each route states what it needs.

The org always comes from the authenticated principal; no route reads it from a header or body.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable, Iterator
from dataclasses import replace
from typing import Annotated, Any, TypeVar

from fastapi import Depends, Request
from fastapi.dependencies.models import Dependant

from astralog.api.signin import session_id as signin_cookie
from astralog.auth.principal import Principal
from astralog.auth.sessions import CSRF_HEADER, SAFE_METHODS, Session
from astralog.controlplane.service import ControlPlane
from astralog.controlplane.store import Actor
from astralog.errors import Forbidden, NotFound, Unauthenticated
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


def client_address(request: Request) -> str:
    """The client as the server resolved it. ``astralog serve`` has uvicorn read X-Forwarded-For
    only from ``ASTRALOG_SERVER__TRUSTED_PROXIES`` (walking from the nearest hop, so a client
    cannot name itself by prepending an address); reading the header again here would let a
    forged leftmost entry through."""
    return request.client.host if request.client else "unknown"


def browser_session(request: Request, runtime: Runtime, session_id: str) -> Session:
    """The live session the cookie names, CSRF-checked for a state-changing request."""
    session = runtime.sessions.get(session_id)
    if session is None:
        raise Unauthenticated("the session has expired or ended; sign in again")
    if request.method not in SAFE_METHODS and not session.csrf_ok(request.headers.get(CSRF_HEADER)):
        raise Forbidden("missing or wrong X-CSRF-Token header; reload the page and try again")
    request.state.session = session
    return session


def _session_principal(request: Request, runtime: Runtime, session_id: str) -> Principal:
    session = browser_session(request, runtime, session_id)
    if session.person_id is None:
        principal = runtime.control.token_principal(session.token_id or "")
    else:
        principal = runtime.control.auth.person_principal(session.person_id)
    if principal.org_id != session.org_id:
        raise Unauthenticated("the session has expired or ended; sign in again")
    if session.stage != "full":
        raise Forbidden(
            "finish signing in first: "
            + ("enter your authenticator code" if session.stage == "mfa" else "set up MFA"),
            code=f"{session.stage}_required",
        )
    return replace(principal, session=session.digest)


def authenticate(request: Request, runtime: RuntimeDep) -> Principal:
    """From the Authorization header, or else from the browser's session cookie.

    Once per request: the gate (:func:`gate_for`) may have authenticated it already.
    """
    cached: Principal | None = getattr(request.state, "principal", None)
    if cached is not None:
        return cached
    session_id = signin_cookie(request)
    if "authorization" not in request.headers and session_id:
        principal = _session_principal(request, runtime, session_id)
    else:
        principal = runtime.control.authenticate(presented_secret(request))
    runtime.control.deletions.refuse(principal.org_id)  # 410 while pending deletion, and after
    runtime.control.scope_deletions.refuse(principal)  # the same for a source's ingest keys
    request.state.principal_id = principal.id
    request.state.principal = principal
    return principal


_Check = TypeVar("_Check", bound=Callable[..., object])
_CHECK_MARK = "astralog_principal_check"
SCOPE_MARK = "astralog_scope"
"""The scope a dependency requires, on the dependency itself: tests derive who may call a
route from its signature instead of a hand-kept table."""


def _principal_check(check: _Check) -> _Check:
    """Mark a dependency that only judges the principal, so the gate can run it early."""
    setattr(check, _CHECK_MARK, True)
    return check


@_principal_check
def management_principal(principal: Annotated[Principal, Depends(authenticate)]) -> Principal:
    if principal.kind == "ingest":
        raise Forbidden("an ingest key can only send events; use a management token here")
    return principal


@_principal_check
def person_principal(principal: Annotated[Principal, Depends(authenticate)]) -> Principal:
    """A person (browser session or personal token): "my account" routes."""
    if principal.kind != "person" or principal.person_id is None:
        raise Forbidden("this endpoint is about a person's own account: sign in as a member")
    return principal


@_principal_check
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


@_principal_check
def org_token_principal(
    principal: Annotated[Principal, Depends(management_principal)],
) -> Principal:
    """An org's own token, never a person or service account: for credentials that belong to
    no one and would outlive whoever minted them."""
    if principal.kind in ("person", "service"):
        raise Forbidden(
            "an org token belongs to no one and would outlive you: issue a personal token "
            "(POST /v1/me/tokens) or a service account's token "
            "(POST /v1/service-accounts/{id}/tokens) instead"
        )
    return principal


ManagementDep = Annotated[Principal, Depends(management_principal)]
OrgTokenDep = Annotated[Principal, Depends(org_token_principal)]
PersonDep = Annotated[Principal, Depends(person_principal)]
IngestDep = Annotated[Principal, Depends(ingest_principal)]
OperatorDep = Annotated[Principal, Depends(operator_principal)]
ClientDep = Annotated[str, Depends(client_address)]


def scoped(scope: str) -> Callable[[Principal], str]:
    """Dependency: the caller's org id, after checking a management token with ``scope``."""

    @_principal_check
    def org_id(principal: ManagementDep) -> str:
        if not principal.acts_for_org() or principal.org_id is None:
            raise Forbidden("this endpoint acts on one org: use a management token of that org")
        principal.require(scope)
        return principal.org_id

    setattr(org_id, SCOPE_MARK, scope)
    return org_id


# One dependency per scope, named by it: a route's signature says which scope it needs.
SourcesRead = Annotated[str, Depends(scoped("sources:read"))]
SourcesWrite = Annotated[str, Depends(scoped("sources:write"))]
KeysWrite = Annotated[str, Depends(scoped("keys:write"))]
TokensWrite = Annotated[str, Depends(scoped("tokens:write"))]
LogsRead = Annotated[str, Depends(scoped("logs:read"))]
MembersWrite = Annotated[str, Depends(scoped("members:write"))]
SsoWrite = Annotated[str, Depends(scoped("sso:write"))]
ConnectorsWrite = Annotated[str, Depends(scoped("connectors:write"))]
RetentionWrite = Annotated[str, Depends(scoped("retention:write"))]
HoldsWrite = Annotated[str, Depends(scoped("holds:write"))]
ErasureWrite = Annotated[str, Depends(scoped("erasure:write"))]
AlertsAdmin = Annotated[str, Depends(scoped("alerts:admin"))]
AlertsRead = Annotated[str, Depends(scoped("alerts:read"))]
SearchesWrite = Annotated[str, Depends(scoped("searches:write"))]
AlertsWrite = Annotated[str, Depends(scoped("alerts:write"))]


@_principal_check
def owner_in_person(principal: ManagementDep) -> Principal:
    """A legal hold's org side: an owner in person (a session or a personal token), never an org
    token, which belongs to no one and which an operator can mint."""
    if principal.kind != "person" or principal.role != "owner":
        raise Forbidden(
            "a legal hold needs an owner of the org in person: sign in as an owner or use an "
            "owner's personal token (POST /v1/me/tokens)"
        )
    return principal


OwnerInPerson = Annotated[Principal, Depends(owner_in_person)]


def audit_scope(principal: ManagementDep) -> str | None:
    """The org whose events the caller may read; None (all orgs) for an operator."""
    if principal.kind == "operator":
        return None
    principal.require("audit:read")
    return principal.org_id


setattr(audit_scope, SCOPE_MARK, "audit:read")


AuditRead = Annotated[str | None, Depends(audit_scope)]


def actor(principal: Annotated[Principal, Depends(authenticate)], client: ClientDep) -> Actor:
    return Actor(principal.id, client)


ActorDep = Annotated[Actor, Depends(actor)]


# ---- the gate: who may learn anything about a route ----------------------------------------

Gate = Callable[[Request, Runtime], None]


def _calls(dependant: Dependant) -> Iterator[Callable[..., Any]]:
    for sub in dependant.dependencies:
        if sub.call is not None:
            yield sub.call
        yield from _calls(sub)


GATE_MARK = "astralog_gate"
"""Set on a dependency ``(request, runtime)`` that authenticates on its own (a sign-in step):
the gate runs it instead of :func:`authenticate`."""


def gate_for(route: object) -> Gate | None:
    """The checks a caller must pass before a route tells it anything, even that a body is bad.

    FastAPI parses a JSON body and answers 405 before any dependency runs, so these errors
    would reach callers the route's own dependencies refuse. The problem handlers run this
    first: an operator route then looks absent, others answer 401/403.
    """
    dependant = getattr(route, "dependant", None)
    if not isinstance(dependant, Dependant):
        return None
    calls = list(_calls(dependant))
    if operator_principal in calls:
        return lambda request, runtime: _discard(operator_principal(request, runtime))
    gates = [call for call in calls if getattr(call, GATE_MARK, False)]
    if gates:  # routes that take a session at a sign-in stage judge the caller themselves
        return lambda request, runtime: _discard([gate(request, runtime) for gate in gates])
    if authenticate not in calls:
        return None
    checks = [call for call in calls if getattr(call, _CHECK_MARK, False)]

    def gate(request: Request, runtime: Runtime) -> None:
        principal = authenticate(request, runtime)
        for check in checks:
            check(principal)

    return gate


def _discard(_: object) -> None:
    return None
