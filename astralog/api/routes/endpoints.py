"""Alert endpoints (webhooks and e-mail), their signing secrets and their delivery log.

They hold secrets and make the server reach the network, so every route needs ``alerts:admin``
(admins and owners). A secret is in the answer of the call that made it (create, rotate) and in
no other; extra headers are write-only like connector secrets.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any, Literal

from fastapi import APIRouter, Query
from pydantic import Field, StrictBool

from astralog.alerts.outbox import Message
from astralog.api.deps import ActorDep, AlertsAdmin, RuntimeDep
from astralog.api.models import Strict
from astralog.runtime import Runtime

router = APIRouter(tags=["alerts"])
PREFIX = "/v1/alert-endpoints"

Headers = dict[str, str]


ERRORS = (
    "true: it also receives every alert's error messages in the org (an evaluation that failed, "
    "an alert paused because its owner lost access), besides the alert's own endpoints."
)


class EndpointCreate(Strict):
    name: str = Field(min_length=1, max_length=63, examples=["oncall-webhook"])
    kind: Literal["webhook", "email"]
    target: str = Field(
        min_length=1, max_length=2048, description="The https URL, or the e-mail address."
    )
    headers: Headers = Field(
        default_factory=dict,
        max_length=10,
        description="Write-only extra headers (e.g. the receiver's own token); never returned.",
    )
    errors: StrictBool = Field(False, description=ERRORS)


class EndpointChange(Strict):
    name: str | None = Field(None, min_length=1, max_length=63)
    target: str | None = Field(None, min_length=1, max_length=2048)
    headers: Headers | None = Field(None, max_length=10, description="Replaces all of them.")
    enabled: StrictBool | None = Field(None, description="true enables a disabled endpoint.")
    errors: StrictBool | None = Field(None, description=ERRORS)


class Rotation(Strict):
    overlap_hours: float | None = Field(
        None, ge=0, le=168, description="How long the old secret still signs (default 24 h)."
    )


@router.get(PREFIX, summary="The org's alert endpoints (never their secrets)")
def list_endpoints(org_id: AlertsAdmin, runtime: RuntimeDep) -> list[dict[str, Any]]:
    return runtime.alert_endpoints.list(org_id)


@router.post(PREFIX, status_code=201, summary="Add an endpoint; a webhook's secret is shown once")
def create(
    body: EndpointCreate, org_id: AlertsAdmin, runtime: RuntimeDep, actor: ActorDep
) -> dict[str, Any]:
    return runtime.alert_endpoints.create(
        org_id, body.name, body.kind, body.target, body.headers, actor, errors=body.errors
    )


@router.get(PREFIX + "/{endpoint_id}")
def get(endpoint_id: str, org_id: AlertsAdmin, runtime: RuntimeDep) -> dict[str, Any]:
    return runtime.alert_endpoints.get(org_id, endpoint_id)


@router.patch(PREFIX + "/{endpoint_id}", summary="Rename, retarget, replace headers, enable")
def update(
    endpoint_id: str, body: EndpointChange, org_id: AlertsAdmin, runtime: RuntimeDep,
    actor: ActorDep,
) -> dict[str, Any]:  # fmt: skip
    changes = body.model_dump(exclude_none=True)
    return runtime.alert_endpoints.update(org_id, endpoint_id, changes, actor)


@router.delete(PREFIX + "/{endpoint_id}", status_code=204)
def delete(endpoint_id: str, org_id: AlertsAdmin, runtime: RuntimeDep, actor: ActorDep) -> None:
    runtime.alert_endpoints.delete(org_id, endpoint_id, actor)


@router.post(PREFIX + "/{endpoint_id}/rotate-secret", summary="A new secret, shown once")
def rotate(
    endpoint_id: str, org_id: AlertsAdmin, runtime: RuntimeDep, actor: ActorDep,
    body: Rotation | None = None,
) -> dict[str, Any]:  # fmt: skip
    overlap = runtime.settings.alerts.secret_overlap_hours
    if body is not None and body.overlap_hours is not None:
        overlap = body.overlap_hours
    return runtime.alert_endpoints.rotate(org_id, endpoint_id, overlap, actor)


@router.post(PREFIX + "/{endpoint_id}/test", status_code=202, summary="Send a test event")
async def send_test(endpoint_id: str, org_id: AlertsAdmin, runtime: RuntimeDep) -> dict[str, Any]:
    """Through the outbox like any alert: signed, retried, in the delivery log. Rate limited
    per endpoint and per org (429 with Retry-After), like replays."""
    endpoint = await asyncio.to_thread(runtime.alert_endpoints.get, org_id, endpoint_id)
    runtime.delivery.manual.take(org_id, endpoint["id"])
    message = probe_message(runtime, org_id, endpoint["id"], time.time_ns())
    await asyncio.to_thread(runtime.outbox.enqueue, message)
    runtime.delivery.wake()
    deliveries = await asyncio.to_thread(runtime.outbox.deliveries, org_id, endpoint_id, 1)
    return {"message_id": message.id, "delivery": deliveries[0]}


@router.get(PREFIX + "/{endpoint_id}/deliveries", summary="The delivery log, newest first")
def deliveries(
    endpoint_id: str, org_id: AlertsAdmin, runtime: RuntimeDep,
    limit: int = Query(50, ge=1, le=500),
    state: Literal["pending", "delivering", "delivered", "failed"] | None = None,
) -> list[dict[str, Any]]:  # fmt: skip
    runtime.alert_endpoints.get(org_id, endpoint_id)  # 404 for another org's endpoint
    return runtime.outbox.deliveries(org_id, endpoint_id, limit, state)


@router.post("/v1/alert-deliveries/{delivery_id}/replay", status_code=202)
async def replay(delivery_id: str, org_id: AlertsAdmin, runtime: RuntimeDep) -> dict[str, Any]:
    """Send a delivered or failed message again: same body, same ``webhook-id`` (receivers that
    already processed it may ignore it), a fresh retry schedule. Rate limited like tests."""
    row = await asyncio.to_thread(runtime.outbox.delivery, org_id, delivery_id)
    if row["state"] in ("delivered", "failed"):  # else replay refuses it: no token spent
        runtime.delivery.manual.take(org_id, row["endpoint_id"])
    view = await asyncio.to_thread(runtime.outbox.replay, org_id, delivery_id, time.time_ns())
    runtime.delivery.wake()
    return view


def probe_message(runtime: Runtime, org_id: str, endpoint_id: str, now_ns: int) -> Message:
    """A ``test`` event in the alert payload's shape; a new message id per click."""
    at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now_ns / 1e9))
    payload = {
        "type": "alert.test",
        "timestamp": at,
        "data": {
            "alert": {"id": None, "name": "Test from Astralog"},
            "state": "test",
            "labels": {},
            "value": 0,
            "threshold": 0,
            "window": {"start": at, "end": at},
            "search_url": runtime.settings.server.url().rstrip("/") + "/search",
        },
    }
    message_id = f"msg_test_{endpoint_id}_{now_ns}"
    return Message(message_id, org_id, "test", (endpoint_id,), payload, now_ns)
