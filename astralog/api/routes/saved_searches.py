"""Saved searches: ``/v1/saved-searches``. Anyone who may search lists and opens the org's
shared searches and their own private ones (``search_url`` opens one in the search page);
saving needs ``searches:write`` and only names sources the caller may read."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Response
from pydantic import Field

from astralog.api.deps import ActorDep, LogsRead, ManagementDep, RuntimeDep, SearchesWrite
from astralog.api.models import Strict
from astralog.controlplane.saved_searches import SearchDefinition

router = APIRouter(prefix="/v1/saved-searches", tags=["saved searches"])


class SavedSearchBody(Strict):
    name: str = Field(min_length=1, max_length=200, examples=["API errors"])
    query: str = Field("", max_length=4096, examples=['level:error service:api "timeout"'])
    sources: list[str] | None = Field(None, max_length=100, description="Source ids; all if null")
    start: str = Field("now-15m", max_length=64, examples=["now-1h", "2026-01-31T12:00:00Z"])
    end: str = Field("now", max_length=64)
    visibility: Literal["private", "shared"] = "private"

    def definition(self) -> SearchDefinition:
        return SearchDefinition(self.name, self.query, self.sources, self.start, self.end,
                                self.visibility)  # fmt: skip


@router.get("", summary="The org's shared saved searches and the caller's private ones")
def list_searches(org_id: LogsRead, who: ManagementDep, runtime: RuntimeDep) -> Any:
    return runtime.saved_searches.list(org_id, who)


@router.post("", status_code=201, summary="Save a search")
def save_search(
    body: SavedSearchBody, org_id: SearchesWrite, who: ManagementDep, runtime: RuntimeDep,
    actor: ActorDep,
) -> dict[str, Any]:  # fmt: skip
    return runtime.saved_searches.save(org_id, who, body.definition(), actor)


@router.get("/{search_id}", summary="One saved search, with the URL that opens it")
def get_search(search_id: str, org_id: LogsRead, who: ManagementDep, runtime: RuntimeDep) -> Any:
    return runtime.saved_searches.get(org_id, search_id, who)


@router.put("/{search_id}", summary="Replace a saved search (its owner, or an admin)")
def replace_search(
    search_id: str, body: SavedSearchBody, org_id: SearchesWrite, who: ManagementDep,
    runtime: RuntimeDep, actor: ActorDep,
) -> dict[str, Any]:  # fmt: skip
    return runtime.saved_searches.save(org_id, who, body.definition(), actor, search_id)


@router.delete("/{search_id}", status_code=204, summary="Delete a saved search")
def delete_search(
    search_id: str, org_id: SearchesWrite, who: ManagementDep, runtime: RuntimeDep,
    actor: ActorDep,
) -> Response:  # fmt: skip
    runtime.saved_searches.delete(org_id, search_id, who, actor)
    return Response(status_code=204)
