"""Org deletion, from the org's owner and from the operator.

An owner of the org, in person and freshly signed in, asks with ``POST /v1/org/deletion`` (naming
the org to confirm); an operator asks, restores within the grace, or runs the final purge once
the grace is over, under ``/v1/orgs/{org_id}/deletion`` (absent, 404, to anyone else). From the
request on, every credential of the org answers 410 Gone with when and why.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from pydantic import Field

from astralog import org_purge
from astralog.api.deps import (
    ActorDep,
    ControlDep,
    ManagementDep,
    OperatorDep,
    RuntimeDep,
    _principal_check,
    scoped,
)
from astralog.api.models import Strict
from astralog.api.signin import require_recent
from astralog.auth.principal import Principal
from astralog.controlplane.org_deletion import Side
from astralog.controlplane.store import Actor
from astralog.errors import BadRequest, Conflict, Forbidden
from astralog.runtime import Runtime

router = APIRouter(tags=["org deletion"])
OPERATOR = "/v1/orgs/{org_id}/deletion"


class DeletionRequest(Strict):
    reason: str = Field(min_length=1, max_length=2000, examples=["Contract ended"])


class OwnerDeletionRequest(DeletionRequest):
    confirm: str = Field(
        min_length=1, max_length=200, description="The org's name, typed to confirm."
    )


@_principal_check
def deleting_owner(principal: ManagementDep) -> Principal:
    """Deleting the org takes an owner in person, never an org token (an operator can mint
    those) nor an admin."""
    if principal.kind != "person" or principal.role != "owner" or principal.org_id is None:
        raise Forbidden(
            "deleting the org needs an owner of the org in person: sign in as an owner or use "
            "an owner's personal token (POST /v1/me/tokens)"
        )
    return principal


def _request(runtime: Runtime, org_id: str, side: Side, reason: str, actor: Actor) -> Any:
    grace = runtime.settings.storage.org_deletion_grace_days
    state = runtime.control.deletions.request(org_id, side, reason, grace, actor)
    runtime.sessions.end_org(org_id)
    return state


OrgDelete = Annotated[str, Depends(scoped("org:delete"))]


@router.post("/v1/org/deletion", status_code=202)
def owner_request(
    request: Request, body: OwnerDeletionRequest, _: OrgDelete,
    owner: Annotated[Principal, Depends(deleting_owner)], runtime: RuntimeDep, actor: ActorDep,
) -> Any:  # fmt: skip
    """Stops the org at once; its data is purged after the grace unless an operator restores it."""
    require_recent(request)
    org_id = str(owner.org_id)
    if body.confirm != runtime.control.org(org_id)["name"]:
        raise BadRequest("confirm must be this org's name, exactly as it is spelled")
    return _request(runtime, org_id, "owner", body.reason, actor)


@router.get(OPERATOR, tags=["operator"])
def operator_get(org_id: str, _: OperatorDep, control: ControlDep) -> Any:
    control.org(org_id)
    return control.deletions.get(org_id) or {"org_id": org_id, "state": "active"}


@router.post(OPERATOR, status_code=202, tags=["operator"])
def operator_request(
    org_id: str, body: DeletionRequest, _: OperatorDep, runtime: RuntimeDep, actor: ActorDep
) -> Any:
    return _request(runtime, org_id, "operator", body.reason, actor)


@router.post(OPERATOR + "/restore", tags=["operator"])
def operator_restore(
    org_id: str, body: DeletionRequest, _: OperatorDep, control: ControlDep, actor: ActorDep
) -> Any:
    control.org(org_id)
    return control.deletions.restore(org_id, body.reason, actor)


@router.post(OPERATOR + "/purge", tags=["operator"])
async def operator_purge(org_id: str, _: OperatorDep, runtime: RuntimeDep, actor: ActorDep) -> Any:
    """The final purge, once the grace is over; answers the signed deletion certificate."""
    deletions = runtime.control.deletions
    runtime.control.org(org_id)
    if org_id not in deletions.due():
        state = deletions.get(org_id)
        raise Conflict(_not_due(org_id, state))
    certificate = await org_purge.purge_org(runtime, deletions, org_id, actor)
    if certificate is None:
        raise Conflict(_stopped(deletions.get(org_id) or {}))
    return certificate


def _not_due(org_id: str, state: dict[str, Any] | None) -> str:
    if state is None:
        return f"org {org_id} is active: ask for its deletion first (POST {OPERATOR})"
    if state["state"] == "deleted":
        return f"org {org_id} was already deleted at {state['deleted_at']}"
    return f"org {org_id} is in its grace until {state['purge_after']}: restore it or wait"


def _stopped(state: dict[str, Any]) -> str:
    if state.get("held_by"):
        return (
            f"legal holds {state['held_by']} on the org are in force: the org stays pending "
            "deletion until they are released"
        )
    return (
        "the purge did not finish (rows still being flushed, or a destination failed; see the "
        "server log): the org stays pending and the next purge pass retries"
    )
