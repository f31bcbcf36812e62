"""Bring-your-own storage: configure, test, activate. Secrets are write-only."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter
from pydantic import Field

from astralog import byob
from astralog.api.deps import ActorDep, ConnectorsWrite, RuntimeDep
from astralog.api.models import Strict
from astralog.connectors.base import Check
from astralog.errors import AstralogError

router = APIRouter(prefix="/v1/connectors", tags=["storage"])


class ConnectorBody(Strict):
    name: str = Field(min_length=1, max_length=63, examples=["prod-bucket"])
    kind: Literal["s3", "clickhouse"]
    config: dict[str, Any] = Field(examples=[{"bucket": "logs", "region": "eu-west-1"}])
    secrets: dict[str, str] = Field(
        default_factory=dict,
        description="Write-only: stored encrypted, never returned. Omit a field to keep it.",
    )


class ConnectorUpdate(Strict):
    config: dict[str, Any]
    secrets: dict[str, str] = Field(default_factory=dict)


@router.get("", summary="The org's connectors (config and which secrets are set)")
def list_connectors(org_id: ConnectorsWrite, runtime: RuntimeDep) -> list[dict[str, Any]]:
    return runtime.destinations.list(org_id)


@router.post("", status_code=201, summary="Add a connector (not used until activated)")
def create(
    body: ConnectorBody, org_id: ConnectorsWrite, runtime: RuntimeDep, actor: ActorDep
) -> Any:
    return runtime.destinations.create(
        org_id, body.name, body.kind, body.config, body.secrets, actor
    )


@router.get("/status", summary="Where new batches go now, and whether writing there works")
def status(org_id: ConnectorsWrite, runtime: RuntimeDep) -> dict[str, Any]:
    """``state`` is ``ok`` or ``failing``; a failure carries the org's own last error, since
    when and how many attempts. Declared before ``/{connector_id}`` so it is not taken for an id.
    """
    return runtime.data.destination_status(org_id)


@router.get("/{connector_id}")
def get(connector_id: str, org_id: ConnectorsWrite, runtime: RuntimeDep) -> dict[str, Any]:
    return runtime.destinations.get(org_id, connector_id)


@router.put("/{connector_id}", summary="Change config or replace secrets (needs a new test)")
def update(
    connector_id: str, body: ConnectorUpdate, org_id: ConnectorsWrite, runtime: RuntimeDep,
    actor: ActorDep,
) -> dict[str, Any]:  # fmt: skip
    return runtime.destinations.update(org_id, connector_id, body.config, body.secrets, actor)


@router.post("/{connector_id}/test", summary="Connection check: each step, and what is missing")
async def test(
    connector_id: str, org_id: ConnectorsWrite, runtime: RuntimeDep, actor: ActorDep
) -> dict[str, Any]:
    destinations = runtime.destinations
    view = destinations.get(org_id, connector_id)
    try:
        secrets = destinations.secrets(org_id, connector_id)
        connector = byob.build(view["kind"], view["config"], secrets, runtime.settings.storage)
    except AstralogError as exc:
        checks = [Check("endpoint", False, exc.detail)]
    else:
        try:
            checks = await connector.probe()
        finally:
            await connector.close()
    ok = all(c.ok for c in checks)
    destinations.record_test(org_id, connector_id, ok, [c.name for c in checks if not c.ok], actor)
    return {"ok": ok, "checks": [{"name": c.name, "ok": c.ok, "detail": c.detail} for c in checks]}


@router.get("/{connector_id}/policy", summary="Least-privilege policy to paste into your cloud")
def policy(connector_id: str, org_id: ConnectorsWrite, runtime: RuntimeDep) -> dict[str, Any]:
    view = runtime.destinations.get(org_id, connector_id)
    return byob.policy(view["kind"], view["config"], runtime.settings.storage)


@router.post("/{connector_id}/activate", summary="Send the org's new batches here")
def activate(
    connector_id: str, org_id: ConnectorsWrite, runtime: RuntimeDep, actor: ActorDep
) -> dict[str, Any]:
    return runtime.destinations.activate(org_id, connector_id, actor)


@router.post("/deactivate", status_code=204, summary="Back to the embedded bucket")
def deactivate(org_id: ConnectorsWrite, runtime: RuntimeDep, actor: ActorDep) -> None:
    runtime.destinations.deactivate(org_id, actor)
