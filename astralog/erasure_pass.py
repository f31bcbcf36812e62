"""The erasure pass: each due request is masked at once (:mod:`astralog.erasure`), then its
objects rewritten (:mod:`astralog.erasure_rewrite`), unless a legal hold covers it."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime

from astralog.controlplane import events as ev
from astralog.controlplane.erasures import Due
from astralog.erasure import ERASER, ErasureData, holding, mask
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
        holds = holding(data, due.org_id, due.scope)
        if holds:
            if tuple(holds) != due.held_by:
                data.erasure_requests.record(ev.ErasureHeld(due.id, due.org_id, holds), ERASER)
            return 0
        await mask(data, due)
        return 1
    # A hold placed after masking keeps the bytes; the mask stays.
    if holding(data, due.org_id, due.scope):
        return 0
    return int(await rewrite(data, due, now))


async def run_erasures(data: ErasureData, interval_seconds: float) -> None:
    """Carry out due erasures every ``interval_seconds`` until cancelled."""
    while True:
        await erase_once(data)
        await asyncio.sleep(interval_seconds)
