"""Retention purge: delete what is past each source's retention from every destination it used.

Queries hide expired data at once (the plan clamps the time range); this job frees the storage
on a schedule. Only whole hour partitions entirely older than the cutoff are deleted, each purge
is a ``RetentionPurged`` event in the audit log with what was deleted, and the catalog forgets
the deleted batches in the same pass.
"""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import UTC, datetime

from astralog.controlplane import events as ev
from astralog.controlplane.store import Actor
from astralog.dataplane import DataAccess
from astralog.retention_holds import held_cutoff

log = logging.getLogger("astralog.retention")
PURGER = Actor("system:retention", "local")
DAY_NS = 86_400 * 10**9


async def purge_once(data: DataAccess, now_ns: int | None = None) -> int:
    """One pass over every org and source; returns the number of objects deleted."""
    now_ns = now_ns or time.time_ns()
    deleted = 0
    for org_id in data.org_ids():
        for source in data.retention_policy(org_id).sources:
            cutoff_ns = now_ns - source.effective_days * DAY_NS
            cutoff_ns = held_cutoff(data, org_id, source.source_id, cutoff_ns, PURGER)  # holds win
            deleted += await _purge_source(data, org_id, source.source_id, cutoff_ns)
    return deleted


async def _purge_source(data: DataAccess, org_id: str, source_id: str, cutoff_ns: int) -> int:
    expired = data.batches(org_id, [source_id], 0, cutoff_ns)
    expired = [b for b in expired if b.max_ts_ns < cutoff_ns]
    destinations = sorted({b.destination_id for b in expired})
    before = datetime.fromtimestamp(cutoff_ns // 10**9, UTC).replace(minute=0, second=0)
    total = 0
    for destination_id in destinations:
        connector = data.connector(org_id, data.destination(org_id, destination_id))
        try:
            keys = await connector.delete_expired(org_id, source_id, before)
        except Exception:
            log.exception(
                "retention purge failed", extra={"org": org_id, "destination": destination_id}
            )
            continue
        gone = {b.object_key: b for b in expired if b.destination_id == destination_id}
        forgotten = [k for k in keys if k in gone]
        data.forget_batches(forgotten)
        rows = sum(gone[k].rows for k in forgotten)
        event = ev.RetentionPurged(
            org_id, source_id, destination_id, before.isoformat(), len(keys), rows
        )
        data.record_purge(event, PURGER)
        total += len(keys)
    return total


async def run(data: DataAccess, interval_seconds: float) -> None:
    while True:
        try:
            await purge_once(data)
        except Exception:
            log.exception("retention pass failed")
        await asyncio.sleep(interval_seconds)
