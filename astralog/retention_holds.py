"""Legal holds at the purge stage: a hold wins over retention.

Before the purge deletes a source's expired hour partitions it asks here how far back it may go:
never into an hour a hold in force covers (:func:`astralog.controlplane.holds.purge_cutoff`).
What a hold kept is recorded as a ``PurgeHeld`` event: once when the purge first finds expired
data under a set of holds, and again whenever that set changes (or the process restarts), so a
hold lasting years does not write a record every pass.
"""

from __future__ import annotations

from datetime import UTC, datetime

from astralog.controlplane import events as ev
from astralog.controlplane.holds import purge_cutoff
from astralog.controlplane.store import Actor
from astralog.dataplane import DataAccess

_recorded: dict[tuple[str, str], tuple[str, ...]] = {}  # (org, source) -> holds last recorded


def held_cutoff(data: DataAccess, org_id: str, source_id: str, cutoff_ns: int, actor: Actor) -> int:
    """The cutoff the purge of ``source_id`` may use, with what the holds kept recorded."""
    held_ns, holding = purge_cutoff(data.holds(org_id), source_id, cutoff_ns)
    if not holding:
        _recorded.pop((org_id, source_id), None)
        return cutoff_ns
    kept = [
        b for b in data.batches(org_id, [source_id], held_ns, cutoff_ns) if b.max_ts_ns < cutoff_ns
    ]
    if kept and _recorded.get((org_id, source_id)) != tuple(holding):
        event = ev.PurgeHeld(
            org_id, source_id, holding, _iso(cutoff_ns), _iso(held_ns), len(kept),
            sum(b.rows for b in kept),
        )  # fmt: skip
        data.record_purge(event, actor)
        _recorded[(org_id, source_id)] = tuple(holding)
    return held_ns


def _iso(ns: int) -> str:
    return datetime.fromtimestamp(ns // 10**9, UTC).isoformat()
