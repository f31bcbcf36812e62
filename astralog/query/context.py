"""The events around one event: what happened just before and after it in the same source.

Stage: plan -> engine, like search. The anchor is found by id through the planner (so the
caller's org, granted sources, retention and deletion vectors apply to it exactly as to a
search); its neighbours are read through the planner too, restricted to the anchor's source (and
optionally its host or service), in windows that widen (a minute, an hour, a day, the plan's
longest range) until enough are found, so a busy source costs one small scan and a quiet one a
few more. The query text of the search the person came from does not apply: context shows what
the source logged, not what matched.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from astralog.dataplane import DataAccess
from astralog.errors import BadRequest, NotFound
from astralog.query.engine import Session, run
from astralog.query.language import Exists, Match, Node, Not, Pattern, resolve_field
from astralog.query.plan import DAY_NS, Plan, SearchScope, make_plan
from astralog.query.remote import fetch_remote

Same = Literal["host", "service"]
STEPS_NS = (60 * 10**9, 3600 * 10**9, 86_400 * 10**9)
MAX_SIDE = 500  # events per side: a screenful many times over, and one bounded scan


@dataclass(frozen=True)
class Reach:
    """What the serving process sets for every read: engine threads, how far ahead events go."""

    threads: int
    ahead_ns: int


@dataclass(frozen=True)
class ContextAsk:
    event_id: str
    before: int
    after: int
    same: Same | None = None
    start: str | int | None = None  # where to look for the anchor; default: the longest range
    end: str | int | None = None


@dataclass
class Context:
    anchor: dict[str, Any]
    older: list[dict[str, Any]]  # nearest first
    newer: list[dict[str, Any]]  # nearest first
    more_before: bool
    more_after: bool
    plans: list[Plan]

    def view(self) -> dict[str, Any]:
        """Oldest first, each event marked before/anchor/after."""
        events = [e | {"context": "before"} for e in reversed(self.older)]
        events.append(self.anchor | {"context": "anchor"})
        events += [e | {"context": "after"} for e in self.newer]
        return {
            "events": events,
            "anchor_index": len(self.older),
            "more_before": self.more_before,
            "more_after": self.more_after,
        }

    def audit_plan(self) -> Plan:
        """One plan spanning every window read, for the audit record."""
        first = self.plans[0]
        return replace(
            first,
            start_ns=min(p.start_ns for p in self.plans),
            end_ns=max(p.end_ns for p in self.plans),
        )


Disconnected = Callable[[], Awaitable[bool]]


async def surrounding(
    data: DataAccess, reach: Reach, org_id: str, readable: frozenset[str] | None,
    ask: ContextAsk, disconnected: Disconnected | None = None,
) -> Context:  # fmt: skip
    now_ns = time.time_ns()
    anchor, plan = await _anchor(data, reach, org_id, readable, ask, now_ns, disconnected)
    node = _same_node(anchor, ask.same)
    side = _Side(data, reach, org_id, readable, anchor, node, now_ns, disconnected)
    older, more_before = await side.read(older=True, limit=ask.before)
    newer, more_after = await side.read(older=False, limit=ask.after)
    anchor.pop("_ts_us")
    return Context(anchor, older, newer, more_before, more_after, [plan, *side.plans])


async def _anchor(
    data: DataAccess, reach: Reach, org_id: str, readable: frozenset[str] | None,
    ask: ContextAsk, now_ns: int, disconnected: Disconnected | None,
) -> tuple[dict[str, Any], Plan]:  # fmt: skip
    max_ns = data.limits(org_id).max_query_range_days * DAY_NS
    ahead_ns = reach.ahead_ns
    end = ask.end if ask.end is not None else (now_ns + ahead_ns) // 1_000_000
    start = ask.start if ask.start is not None else (now_ns + ahead_ns - max_ns) // 1_000_000
    plan = make_plan(data, org_id, SearchScope("", start, end), now_ns=now_ns,
                     readable=readable)  # fmt: skip
    await fetch_remote(data, plan)
    found = await run(Session(plan, reach.threads), lambda s: s.find(ask.event_id), disconnected)
    if found is None:
        raise NotFound(
            f"no event {ask.event_id!r} in the range searched: it may be older than the range "
            "(pass start and end around its time), past retention, erased, or in a source you "
            "cannot read"
        )
    return found, plan


def _same_node(anchor: dict[str, Any], same: Same | None) -> Node | None:
    """Neighbours with the anchor's host or service; without one, those that have none either."""
    if same is None:
        return None
    which = resolve_field(same)
    value = anchor["resource"].get("host.name") if same == "host" else anchor["service"]
    return Match(which, Pattern.literal(value)) if value else Not(Exists(which))


@dataclass
class _Side:
    data: DataAccess
    reach: Reach
    org_id: str
    readable: frozenset[str] | None
    anchor: dict[str, Any]
    node: Node | None
    now_ns: int
    disconnected: Disconnected | None
    plans: list[Plan] = field(default_factory=list)

    async def read(self, *, older: bool, limit: int) -> tuple[list[dict[str, Any]], bool]:
        """The nearest ``limit`` events on one side, and whether there are more."""
        if limit == 0:
            return [], await self._any(older)
        events: list[dict[str, Any]] = []
        for span in self._spans():
            plan = self._plan(span, older)
            if plan is None:
                break
            events = await self._query(plan, older, limit + 1)
            if len(events) > limit or self._reaches_the_end(plan, older):
                break
        return events[:limit], len(events) > limit

    async def _any(self, older: bool) -> bool:
        """Whether ``read`` would find anything on this side: one query, over the widest window
        it would reach (a LIMIT 1 scan, so the width costs little)."""
        for span in reversed(self._spans()):
            plan = self._plan(span, older)
            if plan is not None:
                return bool(await self._query(plan, older, 1))
        return False

    def _spans(self) -> tuple[int, ...]:
        """The windows ``read`` widens through, up to the plan's longest range."""
        max_ns = self.data.limits(self.org_id).max_query_range_days * DAY_NS
        return (*(s for s in STEPS_NS if s < max_ns), max_ns)

    def _plan(self, span_ns: int, older: bool) -> Plan | None:
        ts_ns = int(self.anchor["_ts_us"]) * 1000
        if older:
            start, end = (ts_ns - span_ns) // 1_000_000, ts_ns // 1_000_000 + 1
        else:
            start, end = ts_ns // 1_000_000, (ts_ns + span_ns) // 1_000_000 + 1
        scope = SearchScope("", start, end, [self.anchor["source_id"]])
        try:
            plan = make_plan(self.data, self.org_id, scope, now_ns=self.now_ns,
                             readable=self.readable)  # fmt: skip
        except BadRequest:
            # A wider window than the plan allows to scan: answer with what the last one held.
            if span_ns == STEPS_NS[0]:
                raise
            return None
        if self.node is not None:
            plan.node = self.node
        self.plans.append(plan)
        return plan

    async def _query(self, plan: Plan, older: bool, limit: int) -> list[dict[str, Any]]:
        await fetch_remote(self.data, plan)
        ts_us, event_id = int(self.anchor["_ts_us"]), self.anchor["event_id"]
        session = Session(plan, self.reach.threads)
        return await run(
            session,
            lambda s: s.neighbours(ts_us, event_id, older=older, limit=limit),
            self.disconnected,
        )

    def _reaches_the_end(self, plan: Plan, older: bool) -> bool:
        """Nothing lies beyond this window: retention before it, the future window after it."""
        if older:
            return plan.start_ns > plan.requested_start_ns
        return plan.end_ns >= self.now_ns + self.reach.ahead_ns


__all__ = ["MAX_SIDE", "Context", "ContextAsk", "Reach", "Same", "surrounding"]
