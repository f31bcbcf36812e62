"""Retention purge: delete what is past each source's retention from every destination it used.

Queries hide expired data at once (the plan clamps the time range); this job frees the storage
on a schedule. Only whole hour partitions entirely older than the cutoff are deleted, except the
hours a legal hold keeps (:mod:`astralog.retention_holds`); each purge is a ``RetentionPurged``
event in the audit log with what was deleted, and the catalog forgets the deleted batches in the
same pass. Each purge also leaves a signed receipt
(:mod:`astralog.controlplane.purge_receipts`) in the audit record and in the destination it
purged. :func:`preview` answers, from the catalog alone, what a retention would delete and when,
and what the holds would keep.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from astralog.catalog import BatchCommitted
from astralog.connectors.base import Connector
from astralog.connectors.layout import HOUR, kept, partition_hour
from astralog.controlplane import events as ev
from astralog.controlplane.holds import purge_keeps
from astralog.controlplane.purge_receipts import PurgedObject, PurgeReceipt, new_receipt
from astralog.controlplane.store import Actor
from astralog.dataplane import DataAccess
from astralog.retention_holds import held_spans, split

log = logging.getLogger("astralog.retention")
PURGER = Actor("system:retention", "local")
DAY_NS = 86_400 * 10**9


@dataclass
class PurgeSchedule:
    """When the next pass runs (``run`` moves it), so a preview can say when data goes."""

    interval_seconds: float
    next_at: float = field(default_factory=time.time)


def cutoff_hour(cutoff_ns: int) -> datetime:
    """The purge deletes hour partitions ending at or before this hour."""
    return datetime.fromtimestamp(cutoff_ns // 10**9, UTC).replace(minute=0, second=0)


def expired_batches(
    data: DataAccess, org_id: str, source_id: str, cutoff_ns: int
) -> list[BatchCommitted]:
    """The source's committed batches in the hour partitions a purge at ``cutoff_ns`` deletes
    (holds aside): those ending at or before the cutoff's hour."""
    before = cutoff_hour(cutoff_ns)
    expired = data.batches(org_id, [source_id], 0, cutoff_ns)
    return [b for b in expired if b.max_ts_ns < cutoff_ns and _hour_of(b) + HOUR <= before]


async def purge_once(data: DataAccess, now_ns: int | None = None) -> int:
    """One pass over every org and source; returns the number of objects deleted."""
    now_ns = now_ns or time.time_ns()
    deleted = 0
    for org_id in data.org_ids():
        for source in data.retention_policy(org_id).sources:
            cutoff_ns = now_ns - source.effective_days * DAY_NS
            deleted += await _purge_source(data, org_id, source.source_id, cutoff_ns)
    return deleted


async def _purge_source(data: DataAccess, org_id: str, source_id: str, cutoff_ns: int) -> int:
    expired = expired_batches(data, org_id, source_id, cutoff_ns)
    keep = held_spans(data, org_id, source_id, cutoff_ns, expired, _hour_ns, PURGER)  # holds win
    expired = [b for b in expired if not kept(_hour_of(b), keep)]
    before = cutoff_hour(cutoff_ns)
    total = 0
    for destination_id in sorted({b.destination_id for b in expired}):
        gone = {b.object_key: b for b in expired if b.destination_id == destination_id}
        # One destination failing (unreachable, deleted connector, unreadable secret) must not
        # stop the others or the other orgs: it is retried on the next pass.
        try:
            connector = data.connector(org_id, data.destination(org_id, destination_id))
            keys = await connector.delete_expired(org_id, source_id, before, keep)
        except Exception:
            log.exception(
                "retention purge failed", extra={"org": org_id, "destination": destination_id}
            )
            continue
        data.forget_batches([k for k in keys if k in gone])
        receipt = _receipt(data, org_id, source_id, destination_id, before, keys, gone)
        data.record_purge(_event(receipt), PURGER)
        await _deliver(connector, receipt)
        total += len(keys)
    return total


def _receipt(
    data: DataAccess,
    org_id: str,
    source_id: str,
    destination_id: str,
    before: datetime,
    keys: list[str],
    known: dict[str, BatchCommitted],
) -> PurgeReceipt:
    """Rows and bytes from the catalog; a key it did not know (left by a crash) counts 0."""
    objects = [
        PurgedObject(k, known[k].rows, known[k].bytes) if k in known else PurgedObject(k, 0, 0)
        for k in keys
    ]
    return new_receipt(org_id, source_id, destination_id, before, objects).signed(data.sign)


def _event(receipt: PurgeReceipt) -> ev.RetentionPurged:
    return ev.RetentionPurged(
        receipt.org_id,
        receipt.source_id,
        receipt.destination_id,
        receipt.before,
        len(receipt.objects),
        receipt.rows,
        bytes=receipt.total_bytes,
        object_keys=sorted(o.key for o in receipt.objects),
        manifest_sha256=receipt.manifest,
        receipt_at=receipt.at,
        signature=receipt.signature,
    )


async def _deliver(connector: Connector, receipt: PurgeReceipt) -> None:
    """The audit record already holds the receipt: a destination that refuses its copy is
    logged; the record in the audit chain carries the same manifest hash and signature."""
    try:
        await connector.put_receipt(receipt.org_id, receipt.name, receipt.to_bytes())
    except Exception:
        log.exception("writing purge receipt %s failed", receipt.name)


async def run(
    data: DataAccess,
    interval_seconds: float,
    schedule: PurgeSchedule | None = None,
    then: Callable[[], Awaitable[object]] | None = None,
) -> None:
    """Purge every ``interval_seconds``; ``then`` runs after each pass (org deletions due)."""
    schedule = schedule or PurgeSchedule(interval_seconds)
    while True:
        try:
            await purge_once(data)
            if then is not None:
                await then()
        except Exception:
            log.exception("retention pass failed")
        schedule.next_at = time.time() + interval_seconds
        await asyncio.sleep(interval_seconds)


# -- preview -----------------------------------------------------------------------------------


def preview(
    data: DataAccess, org_id: str, source_id: str, days: int, next_purge: float
) -> dict[str, Any]:
    """What a retention of ``days`` hides at once, what the next purge then deletes, and what
    the legal holds in force keep from it (``held_*``: not counted as deleted)."""
    now_ns = time.time_ns()
    next_ns = max(int(next_purge * 10**9), now_ns)
    cutoff_ns = next_ns - days * DAY_NS
    expired = expired_batches(data, org_id, source_id, cutoff_ns)
    keeps = purge_keeps(data.holds(org_id), source_id, cutoff_ns)
    deleted, held = split(keeps, expired, _hour_ns)
    before = cutoff_hour(cutoff_ns)
    return held | {
        "source_id": source_id,
        "days": days,
        "hidden_before": _iso(now_ns - days * DAY_NS),
        "next_purge_at": _iso(next_ns),
        "deletes_before": before.isoformat(),
        "objects": len(deleted),
        "rows": sum(b.rows for b in deleted),
        "bytes": sum(b.bytes for b in deleted),
        "oldest_hour": _hour(deleted, min),
        "newest_hour": _hour(deleted, max),
        "destinations": sorted({b.destination_id for b in deleted}),
    }


def _hour_of(batch: BatchCommitted) -> datetime:
    """The batch's hour partition (from its key; its first event's hour if the key has none)."""
    hour = partition_hour(batch.object_key)
    return hour if hour is not None else cutoff_hour(batch.min_ts_ns)


def _hour_ns(batch: BatchCommitted) -> int:
    return int(_hour_of(batch).timestamp()) * 10**9


def _hour(batches: list[BatchCommitted], pick: Any) -> str | None:
    return pick(_hour_of(b) for b in batches).isoformat() if batches else None


def _iso(ns: int) -> str:
    return datetime.fromtimestamp(ns / 10**9, UTC).isoformat(timespec="seconds")
