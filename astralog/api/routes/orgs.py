"""Operator-only org management. To anyone but an operator these routes do not exist (404)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from astralog.api.deps import ActorDep, ControlDep, OperatorDep
from astralog.api.models import IssuedToken, Org, OrgCreate, PlanChange, TokenCreate

router = APIRouter(prefix="/v1/orgs", tags=["operator"])


@router.get("", response_model=list[Org])
def list_orgs(_: OperatorDep, control: ControlDep) -> list[dict[str, Any]]:
    return control.orgs()


@router.post("", response_model=Org, status_code=201)
def create_org(body: OrgCreate, _: OperatorDep, control: ControlDep, actor: ActorDep) -> Any:
    return control.create_org(body.name, body.plan, actor)


@router.get("/{org_id}", response_model=Org)
def get_org(org_id: str, _: OperatorDep, control: ControlDep) -> dict[str, Any]:
    return control.org(org_id)


@router.put("/{org_id}/plan", response_model=Org)
def set_plan(
    org_id: str, body: PlanChange, _: OperatorDep, control: ControlDep, actor: ActorDep
) -> dict[str, Any]:
    return control.set_plan(org_id, body.plan, body.overrides, actor)


@router.post("/{org_id}/tokens", response_model=IssuedToken, status_code=201)
def issue_org_token(
    org_id: str, body: TokenCreate, _: OperatorDep, control: ControlDep, actor: ActorDep
) -> dict[str, Any]:
    control.org(org_id)
    issued = control.issue_token(org_id, body.name, body.scopes, actor)
    return {"token": issued.credential.secret, "info": issued.info}
