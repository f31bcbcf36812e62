"""The audit trail: the control-plane event log itself, scoped to the caller's org."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query
from fastapi.responses import StreamingResponse

from astralog.api.deps import ManagementDep, RuntimeDep
from astralog.api.models import AuditPage, Verification
from astralog.controlplane.audit import load_public_key, verify
from astralog.controlplane.store import EventStore, Recorded

router = APIRouter(prefix="/v1/audit", tags=["audit"])


def audit_scope(principal: ManagementDep) -> str | None:
    """The org whose events the caller may read; None (all orgs) for an operator."""
    if principal.kind == "operator":
        return None
    principal.require("audit:read")
    return principal.org_id


AuditOrg = Annotated[str | None, Depends(audit_scope)]


def _view(record: Recorded) -> dict[str, Any]:
    return {
        "seq": record.seq,
        "type": record.type,
        "aggregate_id": record.aggregate_id,
        "actor": record.actor,
        "client": record.client,
        "at": record.at,
        "payload": json.loads(record.payload),
        "hash": record.hash,
        "prev_hash": record.prev_hash,
    }


@router.get(
    "", response_model=AuditPage, responses={200: {"content": {"application/x-ndjson": {}}}}
)
def list_events(
    org_id: AuditOrg,
    runtime: RuntimeDep,
    after: Annotated[int, Query(ge=0, description="Return events after this sequence number.")] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    format: Annotated[Literal["json", "ndjson"], Query(description="ndjson streams all")] = "json",
) -> Any:
    store = runtime.control.store
    if format == "ndjson":
        return StreamingResponse(
            _export(store, org_id, after),
            media_type="application/x-ndjson",
            headers={"Content-Disposition": 'attachment; filename="audit.ndjson"'},
        )
    records = store.records(after=after, org_id=org_id, limit=limit)
    next_after = records[-1].seq if len(records) == limit else None
    return {"events": [_view(r) for r in records], "next_after": next_after}


def _export(store: EventStore, org_id: str | None, after: int) -> Iterator[bytes]:
    while records := store.records(after=after, org_id=org_id, limit=1000):
        yield b"".join(json.dumps(_view(r)).encode() + b"\n" for r in records)
        after = records[-1].seq


@router.get("/verify", response_model=Verification)
def verify_chain(_: AuditOrg, runtime: RuntimeDep) -> dict[str, Any]:
    """Recompute the whole chain and check the signed checkpoints, as the offline verifier does."""
    settings = runtime.settings
    report = verify(
        settings.path(settings.control.database), load_public_key(runtime.signer.public_pem())
    )
    return vars(report) | {"problems": report.problems}
