"""Management tokens of the caller's org."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from astralog.api.deps import ActorDep, ControlDep, ManagementDep, OrgTokenDep, TokensWrite
from astralog.api.models import IssuedToken, Org, Token, TokenCreate
from astralog.errors import Forbidden

router = APIRouter(tags=["tokens"])


@router.get("/v1/org", response_model=Org)
def current_org(principal: ManagementDep, control: ControlDep) -> dict[str, Any]:
    if principal.org_id is None:
        raise Forbidden("an operator token belongs to no org; use GET /v1/orgs")
    return control.org(principal.org_id)


@router.get("/v1/tokens", response_model=list[Token])
def list_tokens(org_id: TokensWrite, control: ControlDep) -> list[dict[str, Any]]:
    return control.tokens(org_id)


@router.post("/v1/tokens", response_model=IssuedToken, status_code=201)
def issue_token(
    body: TokenCreate,
    org_id: TokensWrite,
    principal: OrgTokenDep,
    control: ControlDep,
    actor: ActorDep,
) -> dict[str, Any]:
    missing = sorted(set(body.scopes) - principal.scopes)
    if missing:
        raise Forbidden(f"a token cannot grant scopes it does not hold itself: {missing}")
    issued = control.issue_token(org_id, body.name, body.scopes, actor)
    return {"token": issued.credential.secret, "info": issued.info}


@router.post("/v1/tokens/{token_id}/revoke", response_model=Token)
def revoke_token(
    token_id: str, org_id: TokensWrite, control: ControlDep, actor: ActorDep
) -> dict[str, Any]:
    return control.revoke_token(org_id, token_id, actor)


@router.get("/v1/retention", tags=["retention"])
def retention(principal: ManagementDep, control: ControlDep) -> dict[str, Any]:
    """The plan's retention and each source's effective retention (days)."""
    if principal.org_id is None:
        raise Forbidden("an operator token belongs to no org")
    view = control.retention(principal.org_id)
    if principal.readable is not None:  # a source one may not read is absent here too
        view["sources"] = [s for s in view["sources"] if s["source_id"] in principal.readable]
    return view
