"""Bring-your-own storage: configure, test, activate. Secrets are write-only.

``DELETE`` puts a connector in pending deletion: no new batch goes there (if it was active, the
org's new batches go to the embedded bucket at once) and it cannot be changed, tested or
activated; what it holds stays searchable until the grace ends, when the org's data in it is
purged and its sealed secrets dropped (:mod:`astralog.controlplane.scope_deletion`).
``POST .../restore`` takes it back within the grace (activate it again to send batches there).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body
from pydantic import Field

from astralog import byob
from astralog.api.deps import ActorDep, ConnectorsWrite, RuntimeDep
from astralog.api.models import Strict
from astralog.api.routes.org_deletion import DeletionRequest
from astralog.connectors.base import Check
from astralog.errors import AstralogError
from astralog.runtime import Runtime

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
    stopped = runtime.control.scope_deletions.of_org(org_id, "connector")
    return [c | {"deletion": stopped.get(c["id"])} for c in runtime.destinations.list(org_id)]


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
    return _connector(runtime, org_id, connector_id)


@router.put("/{connector_id}", summary="Change config or replace secrets (needs a new test)")
def update(
    connector_id: str, body: ConnectorUpdate, org_id: ConnectorsWrite, runtime: RuntimeDep,
    actor: ActorDep,
) -> dict[str, Any]:  # fmt: skip
    _connector(runtime, org_id, connector_id, live=True)
    return runtime.destinations.update(org_id, connector_id, body.config, body.secrets, actor)


@router.post("/{connector_id}/test", summary="Connection check: each step, and what is missing")
async def test(
    connector_id: str, org_id: ConnectorsWrite, runtime: RuntimeDep, actor: ActorDep
) -> dict[str, Any]:
    destinations = runtime.destinations
    view = _connector(runtime, org_id, connector_id, live=True)
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
    view = _connector(runtime, org_id, connector_id)
    return byob.policy(view["kind"], view["config"], runtime.settings.storage)


@router.post("/{connector_id}/activate", summary="Send the org's new batches here")
def activate(
    connector_id: str, org_id: ConnectorsWrite, runtime: RuntimeDep, actor: ActorDep
) -> dict[str, Any]:
    runtime.control.scope_deletions.check(org_id, "connector", connector_id, live=True)
    return runtime.destinations.activate(org_id, connector_id, actor)


@router.post("/deactivate", status_code=204, summary="Back to the embedded bucket")
def deactivate(org_id: ConnectorsWrite, runtime: RuntimeDep, actor: ActorDep) -> None:
    runtime.destinations.deactivate(org_id, actor)


@router.delete("/{connector_id}", status_code=202, summary="Delete a connector (restorable)")
def delete(
    connector_id: str, org_id: ConnectorsWrite, runtime: RuntimeDep, actor: ActorDep,
    body: Annotated[DeletionRequest | None, Body()] = None,
) -> dict[str, Any]:  # fmt: skip
    """No new batch goes there from now on (the active one falls back to the embedded bucket);
    after the grace the org's data in it is purged, unless restored first or a hold covers it.
    ``destination_id`` says where the org's new batches go now."""
    grace = runtime.settings.storage.connector_deletion_grace_days
    reason = body.reason if body else "no reason given"
    deletions = runtime.control.scope_deletions
    state = deletions.request(org_id, "connector", connector_id, reason, grace, actor)
    return state | {"destination_id": runtime.data.destination_status(org_id)["destination_id"]}


@router.post("/{connector_id}/restore", summary="Take a connector back out of pending deletion")
def restore(
    connector_id: str, body: DeletionRequest, org_id: ConnectorsWrite, runtime: RuntimeDep,
    actor: ActorDep,
) -> dict[str, Any]:  # fmt: skip
    """It stays inactive: activate it again to send new batches there."""
    deletions = runtime.control.scope_deletions
    return deletions.restore(org_id, "connector", connector_id, body.reason, actor)


@router.get("/{connector_id}/deletion", summary="The connector's deletion: pending, held or done")
def deletion(connector_id: str, org_id: ConnectorsWrite, runtime: RuntimeDep) -> dict[str, Any]:
    return runtime.control.scope_deletions.state(org_id, "connector", connector_id)


def _connector(
    runtime: Runtime, org_id: str, connector_id: str, live: bool = False
) -> dict[str, Any]:
    """The connector's view with its deletion; a purged one is gone (410), and with ``live`` one
    pending deletion is refused (409)."""
    deletion = runtime.control.scope_deletions.check(org_id, "connector", connector_id, live=live)
    return runtime.destinations.get(org_id, connector_id) | {"deletion": deletion}
