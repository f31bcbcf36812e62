"""The audit trail: the control-plane event log itself, scoped to the caller's org."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query
from fastapi.responses import StreamingResponse

from astralog.api.deps import ManagementDep, RuntimeDep
from astralog.api.models import AuditPage, Verification
from astralog.controlplane.audit import Report, load_public_key, verify
from astralog.controlplane.store import EventStore, Recorded
from astralog.runtime import Runtime

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
    after: Annotated[
        int, Query(ge=0, le=2**63 - 1, description="Return events after this sequence number.")
    ] = 0,
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
def verify_chain(org_id: AuditOrg, runtime: RuntimeDep) -> dict[str, Any]:
    """Recompute the whole chain and check the signed checkpoints, as the offline verifier does.

    An org sees the verdict and its own records only: the chain's size and any problem belong
    to every tenant, so those details are the operator's. One verification serves every caller
    until the log moves, for a minute at most."""
    report = _verified(runtime, runtime.control.store.head()[0], int(time.monotonic() // 60))
    if org_id is None:
        return vars(report) | {"problems": report.problems}
    mine = runtime.control.store.records(org_id=org_id)
    return {
        "ok": report.ok,
        "records": len(mine),
        "checkpoints": report.checkpoints,
        "head_seq": mine[-1].seq if mine else 0,
        "first_bad_seq": None,
        "problems": [] if report.ok else ["the log failed verification; your operator has details"],
    }


_VERIFIED: dict[tuple[int, int, int], Report] = {}


def _verified(runtime: Runtime, head_seq: int, minute: int) -> Report:
    key = (id(runtime), head_seq, minute)
    if key not in _VERIFIED:
        settings = runtime.settings
        _VERIFIED.clear()
        _VERIFIED[key] = verify(
            settings.path(settings.control.database), load_public_key(runtime.signer.public_pem())
        )
    return _VERIFIED[key]
