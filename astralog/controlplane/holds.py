"""Legal holds: data an org must preserve, whatever its retention says.

A hold covers an org (every source, present and future), some of its sources, or a time range of
either; it has a reason and a case id, and it never expires by itself. Placing or releasing one
takes two parties, an owner of the org (in person) and an operator: one side proposes, the other
approves; the same person can never do both, and a pending request can be withdrawn by either
side. Each step is an event in the hash-chained log (``HoldProposed``, ``HoldPlaced``,
``HoldReleaseProposed``, ``HoldReleased``, ``HoldRequestWithdrawn``).

A hold in force (placed, release not yet approved) stops the purge of every hour partition it
covers, and only those (:func:`purge_keeps`, :mod:`astralog.retention_holds`). It keeps data;
it never widens what searches show.
"""

from __future__ import annotations

import builtins
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from astralog.controlplane import events as ev
from astralog.controlplane.store import Actor, EventStore
from astralog.errors import BadRequest, Conflict, Forbidden, NotFound
from astralog.ids import new_id

Side = Literal["owner", "operator"]
IN_FORCE = ("active", "releasing")
HOUR_NS = 3600 * 10**9
MAX_SOURCES = 1000
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class HoldScope:
    """What a hold covers: ``sources`` None is every source; a None bound is unbounded."""

    sources: list[str] | None = None
    start: datetime | None = None
    end: datetime | None = None


@dataclass(frozen=True)
class Hold:
    """A hold in force, as the purge (and, later, erasure) checks it."""

    id: str
    sources: frozenset[str] | None
    start_ns: int | None
    end_ns: int | None

    def covers(self, source_id: str, start_ns: int, end_ns: int) -> bool:
        """Whether the hold covers any of ``source_id``'s data in ``[start_ns, end_ns)``."""
        if self.sources is not None and source_id not in self.sources:
            return False
        starts_before_end = self.start_ns is None or self.start_ns < end_ns
        return starts_before_end and (self.end_ns is None or self.end_ns > start_ns)

    def kept_hours(self, before_ns: int) -> tuple[int, int]:
        """The hour partitions ``[first, end)`` before ``before_ns`` (an hour) the hold keeps:
        every hour it touches, the partial first and last ones too."""
        first = 0 if self.start_ns is None else self.start_ns - self.start_ns % HOUR_NS
        end = before_ns if self.end_ns is None else min(_ceil_hour(self.end_ns), before_ns)
        return first, end


@dataclass(frozen=True)
class Kept:
    """What the holds keep from a purge: hour spans ``[start_ns, end_ns)`` (sorted, disjoint)
    and the holds, by id, that cover each."""

    spans: list[tuple[int, int, list[str]]]

    @property
    def holds(self) -> list[str]:
        return sorted({h for _, _, ids in self.spans for h in ids})

    def keeps(self, hour_ns: int) -> bool:
        return any(start <= hour_ns < end for start, end, _ in self.spans)


def purge_keeps(holds: Sequence[Hold], source_id: str, cutoff_ns: int) -> Kept:
    """The expired hours of ``source_id`` (before the cutoff's hour) that holds keep.

    The purge deletes every other expired hour partition: a time-range hold keeps exactly the
    hours it touches, not the younger expired hours after it."""
    before = cutoff_ns - cutoff_ns % HOUR_NS
    covering = [h for h in holds if h.covers(source_id, 0, before)]
    spans: list[tuple[int, int, list[str]]] = []
    for start, end, hold_id in sorted((*h.kept_hours(before), h.id) for h in covering):
        if spans and start <= spans[-1][1]:  # overlapping or adjacent: one span
            last = spans[-1]
            spans[-1] = (last[0], max(last[1], end), sorted({*last[2], hold_id}))
        else:
            spans.append((start, end, [hold_id]))
    return Kept(spans)


def _ceil_hour(ns: int) -> int:
    return -(-ns // HOUR_NS) * HOUR_NS


class Holds:
    """The two-party commands on holds, scoped to one org, and the holds in force."""

    def __init__(self, store: EventStore) -> None:
        self.store = store

    def propose(
        self, org_id: str, side: Side, scope: HoldScope, reason: str, case_id: str, actor: Actor
    ) -> dict[str, Any]:
        _check_scope(scope)
        hold_id = new_id("hold")
        start, end = (None if t is None else t.isoformat() for t in (scope.start, scope.end))
        reason, case_id = _text(reason, "reason", 2000), _text(case_id, "case id", 100)
        sources = None if scope.sources is None else sorted(set(scope.sources))
        with self.store.transaction() as conn:
            if sources is not None:
                _check_sources(conn, org_id, sources)
            event = ev.HoldProposed(hold_id, org_id, side, reason, case_id, sources, start, end)
            self.store.append(event, actor, 0)
        return self.get(org_id, hold_id)

    def approve(self, org_id: str, hold_id: str, side: Side, actor: Actor) -> dict[str, Any]:
        with self.store.transaction():
            hold = self.get(org_id, hold_id)
            _check_other_party(hold, side, actor)
            event: ev.Event = (
                ev.HoldPlaced(hold_id, org_id, side)
                if hold["state"] == "proposed"
                else ev.HoldReleased(hold_id, org_id, side)
            )
            self.store.append(event, actor, self.store.version(f"hold:{hold_id}"))
        return self.get(org_id, hold_id)

    def propose_release(
        self, org_id: str, hold_id: str, side: Side, reason: str, actor: Actor
    ) -> dict[str, Any]:
        with self.store.transaction():
            hold = self.get(org_id, hold_id)
            if hold["state"] != "active":
                raise Conflict(
                    f"hold {hold_id} is {hold['state']}: only an active hold with no pending "
                    "request can be asked to be released"
                )
            event = ev.HoldReleaseProposed(hold_id, org_id, side, _text(reason, "reason", 2000))
            self.store.append(event, actor, self.store.version(f"hold:{hold_id}"))
        return self.get(org_id, hold_id)

    def withdraw(self, org_id: str, hold_id: str, side: Side, actor: Actor) -> dict[str, Any]:
        """Either side may take a pending request back: it never lessens what is preserved."""
        with self.store.transaction():
            hold = self.get(org_id, hold_id)
            if hold["pending"] is None:
                raise Conflict(f"hold {hold_id} has no pending request to withdraw")
            event = ev.HoldRequestWithdrawn(hold_id, org_id, side)
            self.store.append(event, actor, self.store.version(f"hold:{hold_id}"))
        return self.get(org_id, hold_id)

    def list(self, org_id: str) -> list[dict[str, Any]]:
        with self.store.reading() as conn:
            rows = conn.execute(
                "SELECT * FROM holds WHERE org_id = ? ORDER BY proposed_at, id", (org_id,)
            ).fetchall()
        return [_view(dict(r)) for r in rows]

    def get(self, org_id: str, hold_id: str) -> dict[str, Any]:
        with self.store.reading() as conn:
            row = conn.execute(
                "SELECT * FROM holds WHERE id = ? AND org_id = ?", (hold_id, org_id)
            ).fetchone()
        if row is None:  # another org's hold is reported exactly like a missing one
            raise NotFound(f"hold {hold_id[:40]!r} does not exist in this org")
        return _view(dict(row))

    def in_force(self, org_id: str) -> builtins.list[Hold]:
        return [_hold(h) for h in self.list(org_id) if h["state"] in IN_FORCE]


def _check_other_party(hold: dict[str, Any], side: Side, actor: Actor) -> None:
    pending = hold["pending"]
    if pending is None:
        raise Conflict(f"hold {hold['id']} has no pending request to approve")
    if pending["by"] == actor.principal:
        raise Forbidden(
            "you asked for this yourself: the other party must approve it "
            f"({'an operator' if side == 'owner' else 'an owner of the org'})"
        )
    if pending["side"] == side:
        other = "an operator" if side == "owner" else "an owner of the org"
        raise Forbidden(f"this request came from the {side} side: {other} must approve it")


def _check_scope(scope: HoldScope) -> None:
    for moment in (scope.start, scope.end):
        if moment is not None and (moment.tzinfo is None or not 1970 <= moment.year < 2262):
            raise BadRequest("start and end need a time zone and a year from 1970 to 2261")
    if scope.start is not None and scope.end is not None and scope.start >= scope.end:
        raise BadRequest("the hold's start must be before its end")
    if scope.sources is not None and not 0 < len(scope.sources) <= MAX_SOURCES:
        raise BadRequest(
            f"name 1 to {MAX_SOURCES} sources, or leave sources out to hold every source"
        )


def _check_sources(conn: Any, org_id: str, sources: list[str]) -> None:
    known = {r[0] for r in conn.execute("SELECT id FROM sources WHERE org_id = ?", (org_id,))}
    unknown = sorted(set(sources) - known)
    if unknown:
        shown = [s[:40] for s in unknown[:5]]
        raise BadRequest(f"unknown sources {shown}; GET /v1/sources lists this org's sources")


def _text(value: str, what: str, limit: int) -> str:
    text = value.strip()
    if not text or len(text) > limit or any(ord(c) < 32 and c not in "\t\n" for c in text):
        raise BadRequest(f"the {what} must be 1 to {limit} printable characters")
    return text


def _view(row: dict[str, Any]) -> dict[str, Any]:
    pending = None
    if row["requested_side"] is not None:
        action = "place" if row["state"] == "proposed" else "release"
        pending = {"action": action, "side": row["requested_side"], "by": row["requested_by"]}
    return {
        "id": row["id"],
        "org_id": row["org_id"],
        "sources": None if row["sources"] is None else json.loads(row["sources"]),
        "start": row["start_at"],
        "end": row["end_at"],
        "reason": row["reason"],
        "case_id": row["case_id"],
        "state": row["state"],
        "in_force": row["state"] in IN_FORCE,
        "pending": pending,
        "release_reason": row["release_reason"],
        "proposed_at": row["proposed_at"],
        "placed_at": row["placed_at"],
        "released_at": row["released_at"],
    }


def _ns(value: str | None) -> int | None:
    if value is None:
        return None
    return (datetime.fromisoformat(value) - EPOCH) // timedelta(microseconds=1) * 1000


def _hold(view: dict[str, Any]) -> Hold:
    sources = None if view["sources"] is None else frozenset(view["sources"])
    return Hold(view["id"], sources, _ns(view["start"]), _ns(view["end"]))
