"""The audit trail: the control-plane event log itself, scoped to the caller's org.

An org sees its records in its own chain (its own sequence numbers and hashes, its own
checkpoints) and nothing of other tenants' activity; the operator sees the global chain. An
org's NDJSON export carries what ``astralog audit verify --export`` needs (see
:mod:`astralog.controlplane.audit_export`)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, Field

from astralog.api.deps import AuditRead, RuntimeDep
from astralog.api.models import AuditEvent, Verification
from astralog.controlplane.audit_export import org_view
from astralog.controlplane.audit_verify import OrgReport, Report, max_checkpoint_age
from astralog.controlplane.audit_view import Names, befores, display
from astralog.controlplane.checkpoints import SignedCheckpoint, load_public_key, org_checkpoints
from astralog.controlplane.events import Event
from astralog.controlplane.service import verify_log
from astralog.controlplane.store import EventStore, OrgLink, Recorded
from astralog.errors import BadRequest
from astralog.runtime import Runtime

router = APIRouter(prefix="/v1/audit", tags=["audit"])


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
        "org_id": record.org_id,
        "chain": "global",
    }


class AuditDisplay(BaseModel):
    """How a person reads the record; not part of the chain (nothing here is hashed)."""

    action: str
    actor: dict[str, str] = Field(description="id, current name, kind and a detail line.")
    target: dict[str, str] = Field(description="The entity the record is about, named.")
    summary: str = Field(description="An update's before → after, in one line.")
    changes: list[dict[str, str]] = Field(description="field, label, before, after")
    fields: list[dict[str, str]] = Field(description="field, label, value; never a secret")


class ReadableAuditEvent(AuditEvent):
    chain: str = Field(description="org: seq numbers the org's own records 1..n; global: all")
    display: AuditDisplay


class ReadableAuditPage(BaseModel):
    events: list[ReadableAuditEvent]
    next_after: int | None = Field(description="Pass as ?after= to read the next page.")


TypeFilter = Annotated[
    list[str],
    Query(
        max_length=100,
        description="Only records of these types (e.g. SourceRetentionSet); repeatable. "
        "The numbering stays the chain's, so a filtered page shows where the records sit.",
    ),
]


@router.get(
    "",
    response_model=ReadableAuditPage,
    responses={200: {"content": {"application/x-ndjson": {}}}},
)
def list_events(
    org_id: AuditRead,
    runtime: RuntimeDep,
    after: Annotated[
        int, Query(ge=0, le=2**63 - 1, description="Return events after this sequence number.")
    ] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    format: Annotated[Literal["json", "ndjson"], Query(description="ndjson streams all")] = "json",
    type: TypeFilter = [],  # noqa: B006 (FastAPI copies the default)
) -> Any:
    store = runtime.control.store
    types = _types(type)
    if format == "ndjson":
        if types:  # a filtered export has gaps, and an export is for verifying
            raise BadRequest("the NDJSON export is the whole chain; leave out ?type= to export")
        lines = _export(store, after) if org_id is None else _org_export(runtime, org_id, after)
        return StreamingResponse(
            lines,
            media_type="application/x-ndjson",
            headers={"Content-Disposition": 'attachment; filename="audit.ndjson"'},
        )
    if org_id is not None:  # the org's own sequence numbers: `after` counts its records only
        page = store.org_records(org_id, after=after, limit=limit, types=types)
        next_after = page[-1][1].org_seq if len(page) == limit else None
        views = [org_view(r, link) for r, link in page]
        return {
            "events": _readable(store, org_id, views, [r for r, _ in page]),
            "next_after": next_after,
        }
    records = store.records(after=after, limit=limit, types=types)
    next_after = records[-1].seq if len(records) == limit else None
    return {
        "events": _readable(store, None, [_view(r) for r in records], records),
        "next_after": next_after,
    }


def _types(names: list[str]) -> list[str]:
    unknown = sorted({n for n in names if n not in Event.registry})
    if unknown:
        known = ", ".join(sorted(Event.registry))
        raise BadRequest(
            f"unknown record type {unknown[0][:64]!r}; ?type= takes one of: {known}",
        )
    return sorted(set(names))


def _readable(
    store: EventStore, org_id: str | None, views: list[dict[str, Any]], records: list[Recorded]
) -> list[dict[str, Any]]:
    """Each view with its display: names in the reader's org, an update's before and after."""
    with store.reading() as conn:
        names = Names(conn, org_id)
        earlier = befores(conn, records, org_id)
        for view, record in zip(views, records, strict=True):
            view["display"] = display(record, names, earlier.get(record.seq))
    return views


def _export(store: EventStore, after: int) -> Iterator[bytes]:
    while records := store.records(after=after, limit=1000):
        yield b"".join(json.dumps(_view(r)).encode() + b"\n" for r in records)
        after = records[-1].seq


def _org_export(runtime: Runtime, org_id: str, after: int) -> Iterator[bytes]:
    """The org's records with their checkpoints; the last line also carries the signed end."""
    store = runtime.control.store
    with store.reading() as conn:
        signed = {c.seq: c for c in org_checkpoints(conn, org_id)}
    page = store.org_records(org_id, after=after, limit=1000)
    while page:
        following = store.org_records(org_id, after=page[-1][1].org_seq, limit=1000)
        views = [_exported(record, link, signed) for record, link in page]
        if not following:
            last = page[-1][1]
            end = runtime.signer.sign("export", org_id, last.org_seq, last.org_hash, after=after)
            views[-1]["export_end"] = end.document()
        yield b"".join(json.dumps(v).encode() + b"\n" for v in views)
        page = following


def _exported(
    record: Recorded, link: OrgLink, signed: dict[int, SignedCheckpoint]
) -> dict[str, Any]:
    view = org_view(record, link)
    if link.org_seq in signed:
        view["checkpoint"] = signed[link.org_seq].document()
    return view


@router.get("/verify", response_model=Verification)
def verify_chain(org_id: AuditRead, runtime: RuntimeDep) -> dict[str, Any]:
    """Recompute the whole chain and check the signed checkpoints, as the offline verifier does.

    An org sees its own chain only (its records, checkpoints and head, in its own numbering);
    the global chain's size and problems elsewhere are the operator's. One verification serves
    every caller until the log moves, for a minute at most."""
    report = _verified(runtime, runtime.control.store.head()[0], int(time.monotonic() // 60))
    if org_id is None:
        return report.as_dict()
    return _org_verification(report, report.orgs.get(org_id, OrgReport()))


def _org_verification(report: Report, org: OrgReport) -> dict[str, Any]:
    problems = list(org.problems)
    if report.verdict != "intact" and not problems:
        problems.append(
            "the log failed verification outside your records; your operator has details"
        )
    warnings = []
    if org.head_seq > org.proven_seq:
        warnings.append(
            f"records {org.proven_seq + 1}..{org.head_seq} are not yet covered by a signed "
            "checkpoint (one is signed every checkpoint interval)"
        )
    tampered = bool(org.problems) or report.verdict == "tampered"
    return {
        "ok": not problems,
        "verdict": "tampered" if tampered else report.verdict,
        "records": org.records,
        "checkpoints": org.checkpoints,
        "head_seq": org.head_seq,
        "proven_seq": org.proven_seq,
        "proven_at": org.proven_at,
        "unproven_records": org.head_seq - org.proven_seq,
        "first_bad_seq": None,
        "problems": problems,
        "warnings": warnings,
    }


_VERIFIED: dict[tuple[int, int, int], Report] = {}


def _verified(runtime: Runtime, head_seq: int, minute: int) -> Report:
    key = (id(runtime), head_seq, minute)
    if key not in _VERIFIED:
        settings = runtime.settings
        _VERIFIED.clear()
        _VERIFIED[key] = verify_log(
            settings.path(settings.control.database),
            settings.control.database_url,
            load_public_key(runtime.signer.public_pem()),
            max_age=max_checkpoint_age(settings.control.checkpoint_interval_seconds),
        )
    return _VERIFIED[key]
