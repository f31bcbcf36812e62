"""Erasure of matching events: preview, ask (with the preview), approve (a second admin), cancel.

``POST /v1/erasures`` answers with what the query matches now, found by the search planner and
engine: the count, a few events in full, the objects that hold them and the legal holds it would
wait for; ``POST /v1/erasures/preview`` answers the same for the same body without asking for
anything (no request, no event). Nothing is hidden until
another admin of the org approves and the cancel window (``storage.erasure_cancel_window_seconds``)
has passed; until the events are masked either admin may cancel. Both sides are people with the
``erasure:write`` scope (owner, admin): an org token belongs to no one, so two of them could be
one person approving their own request.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends
from pydantic import BaseModel, Field

from astralog.api.deps import ActorDep, ControlDep, ErasureWrite, ManagementDep, RuntimeDep
from astralog.api.models import Strict
from astralog.controlplane.erasures import ErasureScope
from astralog.erasure import find, holding
from astralog.errors import Forbidden
from astralog.query.plan import SearchScope, make_plan
from astralog.runtime import Runtime

router = APIRouter(prefix="/v1/erasures", tags=["erasures"])


def admin_in_person(principal: ManagementDep) -> str:
    """The person asking or approving; the second-admin rule compares people, not tokens."""
    if principal.kind != "person" or principal.person_id is None:
        raise Forbidden(
            "an erasure is asked for and approved by people: sign in as an owner or admin, or "
            "use a personal token (POST /v1/me/tokens); an org token belongs to no one"
        )
    return principal.person_id


PersonId = Annotated[str, Depends(admin_in_person)]


def events_reader(org_id: ErasureWrite, principal: ManagementDep) -> str:
    """A preview shows matched events in full: a token narrowed to ``erasure:write`` alone must
    not read through it what ``logs:read`` would refuse."""
    principal.require("logs:read")
    return org_id


ErasureReader = Annotated[str, Depends(events_reader)]


class ErasureCreate(Strict):
    query: str = Field(max_length=4096, examples=['user.email:"ana@example.com"'])
    start: str | int = Field(examples=["now-30d", "2026-01-01T00:00:00Z"])
    end: str | int = Field("now", examples=["now"])
    sources: list[str] | None = Field(None, max_length=100, description="Source ids; all if null")


class ErasureCancel(Strict):
    reason: str = Field("", max_length=2000)


class ObjectView(BaseModel):
    key: str
    destination_id: str
    source_id: str
    rows: int
    bytes: int


class ErasurePreview(BaseModel):
    """What a request matches: the same shape in a dry run and in a request asked for."""

    count: int
    sample: list[dict[str, Any]] = Field(description="A few matched events in full")
    objects: list[ObjectView] = Field(description="The stored objects holding matched events")
    pending_rows: int = Field(description="Matched rows still in the WAL, not yet in storage")
    held_by: list[str] = Field(
        [], description="Legal holds in force over the scope: the erasure waits for them"
    )


class Erasure(BaseModel):
    id: str
    org_id: str
    query: str
    start: str
    end: str
    sources: list[str]
    preview: ErasurePreview
    state: str  # awaiting_approval | approved | held | masked | completed | cancelled
    requested_by: str
    requested_at: str
    cancel_window_seconds: int
    approved_by: str | None
    due_at: str | None
    held_by: list[str] | None
    waiting: str | None
    events: int | None
    receipt: dict[str, Any] | None
    updated_at: str | None


def _scope(runtime: Runtime, org_id: str, body: ErasureCreate) -> ErasureScope:
    """The request as the planner reads it: its clamp and source checks apply as to a search."""
    requested = SearchScope(body.query, body.start, body.end, body.sources)
    plan = make_plan(runtime, org_id, requested, now_ns=time.time_ns())
    sources = tuple(sorted(plan.cutoffs))
    return ErasureScope(body.query, plan.start_ns, plan.end_ns, sources)


async def _preview(runtime: Runtime, org_id: str, scope: ErasureScope) -> dict[str, Any]:
    """Bounded as a search is: the plan's query timeout, ``MAX_EVENTS`` ids, a small sample."""
    matches = await find(runtime, org_id, scope)
    return matches.preview(holding(runtime, org_id, scope))


@router.post("/preview", response_model=ErasurePreview)
async def preview_erasure(
    body: ErasureCreate, org_id: ErasureReader, runtime: RuntimeDep
) -> dict[str, Any]:
    """What ``POST /v1/erasures`` with this body would match now; creates and records nothing.

    Any principal with ``erasure:write`` and ``logs:read`` may look, an org token too: the
    two-people rule guards the request, and a preview shows no more than a search does."""
    return await _preview(runtime, org_id, _scope(runtime, org_id, body))


@router.post("", response_model=Erasure, status_code=201)
async def request_erasure(
    body: ErasureCreate, org_id: ErasureReader, person: PersonId, runtime: RuntimeDep,
    actor: ActorDep,
) -> dict[str, Any]:  # fmt: skip
    """Asks to erase what ``query`` matches; answers with the preview. Another admin approves."""
    scope = _scope(runtime, org_id, body)
    preview = await _preview(runtime, org_id, scope)
    window = runtime.settings.storage.erasure_cancel_window_seconds
    control = runtime.control.erasures
    return control.request(org_id, person, scope, preview, window, actor)


@router.get("", response_model=list[Erasure])
def list_erasures(org_id: ErasureWrite, control: ControlDep) -> list[dict[str, Any]]:
    return control.erasures.list(org_id)


@router.get("/{erasure_id}", response_model=Erasure)
def get_erasure(erasure_id: str, org_id: ErasureWrite, control: ControlDep) -> dict[str, Any]:
    return control.erasures.get(org_id, erasure_id)


@router.post("/{erasure_id}/approve", response_model=Erasure)
def approve_erasure(
    erasure_id: str, org_id: ErasureWrite, person: PersonId, control: ControlDep, actor: ActorDep
) -> dict[str, Any]:
    """A second admin approves: the erasure is due once the cancel window has passed."""
    return control.erasures.approve(org_id, erasure_id, person, actor, datetime.now(UTC))


@router.post("/{erasure_id}/cancel", response_model=Erasure)
def cancel_erasure(
    erasure_id: str, body: ErasureCancel, org_id: ErasureWrite, _: PersonId, control: ControlDep,
    actor: ActorDep,
) -> dict[str, Any]:  # fmt: skip
    return control.erasures.cancel(org_id, erasure_id, body.reason, actor)
