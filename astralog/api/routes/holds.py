"""Legal holds, from both sides of the two-party rule.

The org side (``/v1/holds``) is an owner of the org in person; the operator side
(``/v1/orgs/{org_id}/holds``) is absent (404) to everyone but an operator. Either side proposes
placing or releasing a hold, the other approves; the same person never does both. Reading the
org's holds needs ``retention:write``: whoever sets retention should see why data is kept.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from pydantic import AwareDatetime, BaseModel, Field

from astralog.api.deps import (
    ActorDep,
    ControlDep,
    HoldsWrite,
    OperatorDep,
    OwnerInPerson,
    RetentionWrite,
)
from astralog.api.models import Strict
from astralog.controlplane.holds import HoldScope, Side
from astralog.controlplane.service import ControlPlane
from astralog.controlplane.store import Actor

router = APIRouter(tags=["holds"])
OPERATOR = "/v1/orgs/{org_id}/holds"


class HoldCreate(Strict):
    reason: str = Field(min_length=1, max_length=2000, examples=["Litigation hold: Doe v. Acme"])
    case_id: str = Field(min_length=1, max_length=100, examples=["CASE-2024-017"])
    sources: list[str] | None = Field(
        None, max_length=1000, description="Source ids held; null: every source of the org."
    )
    start: AwareDatetime | None = Field(None, description="Start of the held time range.")
    end: AwareDatetime | None = Field(None, description="End (exclusive) of the held range.")


class HoldRelease(Strict):
    reason: str = Field(min_length=1, max_length=2000)


class PendingRequest(BaseModel):
    action: str  # place | release
    side: str  # owner | operator
    by: str


class Hold(BaseModel):
    id: str
    org_id: str
    sources: list[str] | None
    start: str | None
    end: str | None
    reason: str
    case_id: str
    state: str  # proposed | active | releasing | released | withdrawn
    in_force: bool
    pending: PendingRequest | None
    release_reason: str | None
    proposed_at: str
    placed_at: str | None
    released_at: str | None


def _propose(
    control: ControlPlane, org_id: str, side: Side, body: HoldCreate, actor: Actor
) -> dict[str, Any]:
    scope = HoldScope(body.sources, body.start, body.end)
    return control.holds.propose(org_id, side, scope, body.reason, body.case_id, actor)


# ---- the org side: an owner in person ----------------------------------------------------------


@router.get("/v1/holds", response_model=list[Hold])
def list_holds(org_id: RetentionWrite, control: ControlDep) -> list[dict[str, Any]]:
    return control.holds.list(org_id)


@router.get("/v1/holds/{hold_id}", response_model=Hold)
def get_hold(hold_id: str, org_id: RetentionWrite, control: ControlDep) -> dict[str, Any]:
    return control.holds.get(org_id, hold_id)


@router.post("/v1/holds", response_model=Hold, status_code=201)
def propose_hold(
    body: HoldCreate, org_id: HoldsWrite, _: OwnerInPerson, control: ControlDep, actor: ActorDep
) -> dict[str, Any]:
    """Proposes a hold; it covers nothing until an operator approves it."""
    return _propose(control, org_id, "owner", body, actor)


@router.post("/v1/holds/{hold_id}/approve", response_model=Hold)
def approve_hold(
    hold_id: str, org_id: HoldsWrite, _: OwnerInPerson, control: ControlDep, actor: ActorDep
) -> dict[str, Any]:
    """Approves the operator's pending request (placing or releasing)."""
    return control.holds.approve(org_id, hold_id, "owner", actor)


@router.post("/v1/holds/{hold_id}/release", response_model=Hold)
def propose_release(
    hold_id: str, body: HoldRelease, org_id: HoldsWrite, _: OwnerInPerson, control: ControlDep,
    actor: ActorDep,
) -> dict[str, Any]:  # fmt: skip
    """Asks to release a hold; it stays in force until an operator approves."""
    return control.holds.propose_release(org_id, hold_id, "owner", body.reason, actor)


@router.post("/v1/holds/{hold_id}/withdraw", response_model=Hold)
def withdraw_request(
    hold_id: str, org_id: HoldsWrite, _: OwnerInPerson, control: ControlDep, actor: ActorDep
) -> dict[str, Any]:
    return control.holds.withdraw(org_id, hold_id, "owner", actor)


# ---- the operator side ------------------------------------------------------------------------


@router.get(OPERATOR, response_model=list[Hold], tags=["operator"])
def operator_list(org_id: str, _: OperatorDep, control: ControlDep) -> list[dict[str, Any]]:
    control.org(org_id)
    return control.holds.list(org_id)


@router.get(OPERATOR + "/{hold_id}", response_model=Hold, tags=["operator"])
def operator_get(org_id: str, hold_id: str, _: OperatorDep, control: ControlDep) -> Any:
    return control.holds.get(org_id, hold_id)


@router.post(OPERATOR, response_model=Hold, status_code=201, tags=["operator"])
def operator_propose(
    org_id: str, body: HoldCreate, _: OperatorDep, control: ControlDep, actor: ActorDep
) -> dict[str, Any]:
    control.org(org_id)
    return _propose(control, org_id, "operator", body, actor)


@router.post(OPERATOR + "/{hold_id}/approve", response_model=Hold, tags=["operator"])
def operator_approve(
    org_id: str, hold_id: str, _: OperatorDep, control: ControlDep, actor: ActorDep
) -> dict[str, Any]:
    return control.holds.approve(org_id, hold_id, "operator", actor)


@router.post(OPERATOR + "/{hold_id}/release", response_model=Hold, tags=["operator"])
def operator_release(
    org_id: str, hold_id: str, body: HoldRelease, _: OperatorDep, control: ControlDep,
    actor: ActorDep,
) -> dict[str, Any]:  # fmt: skip
    return control.holds.propose_release(org_id, hold_id, "operator", body.reason, actor)


@router.post(OPERATOR + "/{hold_id}/withdraw", response_model=Hold, tags=["operator"])
def operator_withdraw(
    org_id: str, hold_id: str, _: OperatorDep, control: ControlDep, actor: ActorDep
) -> dict[str, Any]:
    return control.holds.withdraw(org_id, hold_id, "operator", actor)
