"""Legal holds at the purge stage: a hold wins over retention, for exactly the hours it covers.

Before the purge deletes a source's expired hour partitions it asks here which of them holds in
force keep (:func:`astralog.controlplane.holds.purge_keeps`); it deletes every other expired
hour, the younger ones after a time-range hold included. What the holds kept is recorded as a
``PurgeHeld`` event: once when the purge first finds expired data under a set of holds, and again
whenever that set changes (or the process restarts), so a hold lasting years does not write a
record every pass. The retention preview asks the same question (:func:`split`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from astralog.catalog import BatchCommitted
from astralog.controlplane import events as ev
from astralog.controlplane.holds import HOUR_NS, Kept, purge_keeps
from astralog.controlplane.store import Actor
from astralog.dataplane import DataAccess

_recorded: dict[tuple[str, str], tuple[str, ...]] = {}  # (org, source) -> holds last recorded
HourOf = Callable[[BatchCommitted], int]  # a batch's hour partition, in ns


def held_spans(
    data: DataAccess, org_id: str, source_id: str, cutoff_ns: int,
    expired: Sequence[BatchCommitted], hour_of: HourOf, actor: Actor,
) -> list[tuple[datetime, datetime]]:  # fmt: skip
    """The spans of hours the purge of ``source_id`` must keep, with what they kept recorded."""
    keeps = purge_keeps(data.holds(org_id), source_id, cutoff_ns)
    if not keeps.spans:
        _recorded.pop((org_id, source_id), None)
        return []
    kept = [b for b in expired if keeps.keeps(hour_of(b))]
    if kept and _recorded.get((org_id, source_id)) != tuple(keeps.holds):
        event = ev.PurgeHeld(
            org_id, source_id, keeps.holds, _iso(cutoff_ns), _iso(keeps.spans[0][0]), len(kept),
            sum(b.rows for b in kept),
        )  # fmt: skip
        data.record_purge(event, actor)
        _recorded[(org_id, source_id)] = tuple(keeps.holds)
    return [(_at(start), _at(end)) for start, end, _ in keeps.spans]


def split(
    keeps: Kept, expired: Sequence[BatchCommitted], hour_of: HourOf
) -> tuple[list[BatchCommitted], dict[str, Any]]:
    """``expired`` as a purge treats it: what it deletes, and what the holds keep, by span."""
    deleted = [b for b in expired if not keeps.keeps(hour_of(b))]
    spans = []
    for start, end, holds in keeps.spans:
        inside = [b for b in expired if start <= hour_of(b) < end]
        if inside:  # the hours with data in them: a span from 1970 would say nothing
            first, last = min(map(hour_of, inside)), max(map(hour_of, inside))
            spans.append({"start": _iso(first), "end": _iso(last + HOUR_NS), "holds": holds})
    held = [b for b in expired if keeps.keeps(hour_of(b))]
    return deleted, {
        "held_by": sorted({h for s in spans for h in s["holds"]}),
        "held_hours": spans,
        "held_objects": len(held),
        "held_rows": sum(b.rows for b in held),
        "held_bytes": sum(b.bytes for b in held),
    }


def _at(ns: int) -> datetime:
    return datetime.fromtimestamp(ns // 10**9, UTC)


def _iso(ns: int) -> str:
    return _at(ns).isoformat()
