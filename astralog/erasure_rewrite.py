"""Rewriting after masking: the erased rows leave storage, and a signed receipt says so.

Stage: after :func:`astralog.erasure.mask`. For each object of the hours a request's deletion
vector covers that still holds an erased event, the destination stores it again without those
rows under a new key (ClickHouse deletes the rows in place, a lightweight DELETE); the catalog
swaps the old fact for the new one in one transaction, so a planner lists one or the other, never
both and never neither. The old objects are deleted on a later pass, once every search planned
before the swap has had its full time to finish (the plan's query timeout). Then the request's
query is run again without the mask: it must match none of the erased events. The receipt names
every object rewritten, is signed with the instance's Ed25519 key, goes into the audit record
(``ErasureCompleted``) and into each destination beside the purge receipts.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

from astralog.catalog import BatchCommitted
from astralog.connectors.layout import BatchKey, parse_object_key
from astralog.controlplane import events as ev
from astralog.controlplane.erasures import Due
from astralog.controlplane.signed_documents import document_bytes, sha256_of, signature_of
from astralog.deletion_vectors import HOUR_NS
from astralog.erasure import ERASER, ErasureData, search_scope
from astralog.query.engine import Session, run
from astralog.query.plan import make_plan
from astralog.query.remote import fetch_remote

FORMAT = "astralog-erasure-receipt/v1"
_PREFIX = b"astralog-erasure-receipt:v1:"


async def rewrite(data: ErasureData, due: Due, now: datetime) -> bool:
    """Advance a masked request: rewrite, then (after the grace) delete, verify and sign."""
    vector = data.vectors.of_erasure(due.id)
    ids = set().union(*vector.values()) if vector else set()
    if _still_pending(data, due.org_id, ids):
        return False  # the flusher will write them first; they are masked meanwhile
    if due.rewritten is None:
        replaced = await _rewrite_objects(data, due, vector)
        event = ev.ErasureRewritten(due.id, due.org_id, replaced, now.isoformat())
        data.erasure_requests.record(event, ERASER)
        return False
    grace = timedelta(seconds=data.limits(due.org_id).query_timeout_seconds)
    if now < datetime.fromisoformat(due.rewritten["at"]) + grace:
        return False
    await _delete_old(data, due.org_id, due.rewritten["objects"])
    await _verify(data, due, ids)
    await _complete(data, due, len(ids), due.rewritten["objects"])
    return True


def _still_pending(data: ErasureData, org_id: str, ids: set[str]) -> bool:
    for segment in data.pending():
        table = segment.table
        if any(e in ids for e in table["EventId"].to_pylist()):
            return True
    return False


async def _rewrite_objects(
    data: ErasureData, due: Due, vector: dict[tuple[str, int], set[str]]
) -> list[dict[str, Any]]:
    replaced = []
    for batch in _affected(data, due.org_id, vector):
        ids = vector[(batch.source_id, batch.min_ts_ns - batch.min_ts_ns % HOUR_NS)]
        destination = data.destination(due.org_id, batch.destination_id)
        connector = data.connector(due.org_id, destination)
        written = await connector.erase_rows(batch.object_key, ids, _replacement(batch, due.id))
        if written is None:
            continue
        new = None if not written.rows else _fact(batch, written.key, written.uri, written)
        data.replace_batch(batch.object_key, new)
        old_gone = new is None or new.object_key != batch.object_key
        replaced.append(
            {
                "destination_id": batch.destination_id,
                "old": batch.object_key,
                "new": new.object_key if new else None,
                "rows_erased": batch.rows - written.rows,
                "delete": old_gone,
            }
        )
    return replaced


def _affected(
    data: ErasureData, org_id: str, vector: dict[tuple[str, int], set[str]]
) -> list[BatchCommitted]:
    if not vector:
        return []
    sources = sorted({s for s, _ in vector})
    first = min(h for _, h in vector)
    last = max(h for _, h in vector) + HOUR_NS
    batches = data.batches(org_id, sources, first, last)
    return [b for b in batches if (b.source_id, b.min_ts_ns - b.min_ts_ns % HOUR_NS) in vector]


def _replacement(batch: BatchCommitted, erasure_id: str) -> BatchKey:
    """Deterministic per (batch, erasure): a retried rewrite overwrites, never duplicates."""
    key = parse_object_key(batch.object_key)
    suffix = hashlib.sha256(f"{batch.batch_id}:{erasure_id}".encode()).hexdigest()[:16]
    return replace(key, batch_id=f"{key.batch_id[:100]}.e{suffix}")


def _fact(batch: BatchCommitted, key: str, uri: str, written: Any) -> BatchCommitted:
    return replace(
        batch,
        object_key=key,
        batch_id=parse_object_key(key).batch_id,
        rows=written.rows,
        bytes=written.bytes or batch.bytes,
        uri=uri,
        committed_at=None,
    )


async def _delete_old(data: ErasureData, org_id: str, replaced: Sequence[dict[str, Any]]) -> None:
    by_destination: dict[str, list[str]] = {}
    for item in replaced:
        if item["delete"]:
            by_destination.setdefault(item["destination_id"], []).append(item["old"])
    for destination_id, keys in sorted(by_destination.items()):
        connector = data.connector(org_id, data.destination(org_id, destination_id))
        await connector.delete_objects(keys)
        data.batch_cache.drop(keys)  # a search planned before the rewrite may have cached one


async def _verify(data: ErasureData, due: Due, ids: set[str]) -> None:
    """The request's query, without the mask, must match none of the erased events."""
    plan = make_plan(data, due.org_id, search_scope(due.scope), now_ns=time.time_ns())
    plan.erased = []
    await fetch_remote(data, plan, partial=False)
    session = Session(plan, data.engine_threads)
    left = await run(session, lambda s: _count(s, sorted(ids)))
    if left:
        raise RuntimeError(f"erasure {due.id}: {left} erased events still match after rewriting")


def _count(session: Session, ids: list[str]) -> int:
    where, params = session.plan.where()
    sql = f"SELECT count(*) FROM logs WHERE {where} AND list_contains($ids, EventId)"
    row = session.conn.execute(sql, params | {"ids": ids}).fetchone()
    return int(row[0]) if row else 0


async def _complete(
    data: ErasureData, due: Due, events: int, replaced: Sequence[dict[str, Any]]
) -> None:
    objects = sorted([r["old"], r["new"] or "", r["rows_erased"]] for r in replaced)
    manifest = sha256_of(objects)
    body = {
        "format": FORMAT, "org_id": due.org_id, "erasure_id": due.id, "events": events,
        "objects": objects, "manifest_sha256": manifest,
        "at": datetime.now(UTC).isoformat(timespec="microseconds"),
    }  # fmt: skip
    signature = signature_of(_PREFIX, body, data.sign)
    document = document_bytes(body, signature)
    for destination_id in sorted({r["destination_id"] for r in replaced}):
        connector = data.connector(due.org_id, data.destination(due.org_id, destination_id))
        await connector.put_receipt(due.org_id, f"erasure-{due.id}", document)
    rewritten = [o[0] for o in objects]
    event = ev.ErasureCompleted(due.id, due.org_id, events, rewritten, manifest, signature)
    data.erasure_requests.record(event, ERASER)
