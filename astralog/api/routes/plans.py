"""Operator-only plan administration. To anyone but an operator these routes do not exist (404).

Every definition and edit is a PlanDefined event; orgs on the plan get the new limits at once."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from astralog.api.deps import ActorDep, ControlDep, OperatorDep
from astralog.api.models import Plan, PlanDefine, PlanEdit

router = APIRouter(prefix="/v1/plans", tags=["operator"])


@router.get("", response_model=list[Plan], response_model_exclude_none=True)
def list_plans(_: OperatorDep, control: ControlDep) -> list[dict[str, Any]]:
    return control.plans.list()


@router.post("", response_model=Plan, status_code=201, response_model_exclude_none=True)
def define_plan(
    body: PlanDefine, _: OperatorDep, control: ControlDep, actor: ActorDep
) -> dict[str, Any]:
    return control.plans.define(body.name, body.limits, body.based_on, actor)


@router.put("/{name}", response_model=Plan)
def edit_plan(
    name: str, body: PlanEdit, _: OperatorDep, control: ControlDep, actor: ActorDep
) -> dict[str, Any]:
    return control.plans.edit(name, body.limits, body.clamp, actor)
