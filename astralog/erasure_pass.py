"""The erasure pass: each due request is masked at once (:mod:`astralog.erasure`), then its
objects rewritten (:mod:`astralog.erasure_rewrite`), unless a legal hold covers it."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime

from astralog.controlplane import events as ev
from astralog.controlplane.erasures import Due
from astralog.dataplane import DataAccess
from astralog.erasure import ERASER, ErasureData, mask
from astralog.erasure_rewrite import rewrite

log = logging.getLogger("astralog.erasure")


async def erase_once(data: ErasureData, now: datetime | None = None) -> int:
    """One pass over the due requests; returns how many were masked or completed."""
    now = now or datetime.now(UTC)
    done = 0
    for due in data.erasure_requests.due(now):
        # One request failing (a destination down) must not stop the others: retried next pass.
        try:
            done += await _advance(data, due, now)
        except Exception:
            log.exception("erasure failed", extra={"org": due.org_id, "erasure": due.id})
    return done


async def _advance(data: ErasureData, due: Due, now: datetime) -> int:
    if due.state in ("approved", "held"):
        holding = _holding(data, due)
        if holding:
            if tuple(holding) != due.held_by:
                data.erasure_requests.record(ev.ErasureHeld(due.id, due.org_id, holding), ERASER)
            return 0
        await mask(data, due)
        return 1
    if _holding(data, due):  # a hold placed after masking keeps the bytes; the mask stays
        return 0
    return int(await rewrite(data, due, now))


def _holding(data: DataAccess, due: Due) -> list[str]:
    """The holds in force over any of the request's sources and time range: a hold wins."""
    scope = due.scope
    return sorted(
        h.id
        for h in data.holds(due.org_id)
        if any(h.covers(s, scope.start_ns, scope.end_ns) for s in scope.sources)
    )


async def run_erasures(data: ErasureData, interval_seconds: float) -> None:
    """Carry out due erasures every ``interval_seconds`` until cancelled."""
    while True:
        await erase_once(data)
        await asyncio.sleep(interval_seconds)
