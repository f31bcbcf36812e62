"""The erasure stage: preview, mask and rewrite what an approved erasure request matches.

Stage: control-plane request (:mod:`astralog.controlplane.erasures`) -> **erasure** -> storage.
What a request matches is found by the search planner and engine (the same retention clamp,
pruning, destinations and pending WAL rows as a search), so an erasure hides exactly what a search
for it shows. Promises:

* a request whose scope a legal hold covers is never carried out; it waits and says which holds;
* once due, its events are masked at once: their ids go into deletion vectors
  (:mod:`astralog.deletion_vectors`) that every read path applies;
* then (:mod:`astralog.erasure_rewrite`, run by :mod:`astralog.erasure_pass`) the objects
  that held them are rewritten without them.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any, Protocol

from astralog.catalog import BatchCommitted
from astralog.controlplane import events as ev
from astralog.controlplane.erasures import Due, Erasures, ErasureScope
from astralog.controlplane.store import Actor
from astralog.dataplane import DataAccess
from astralog.deletion_vectors import HOUR_NS, DeletionVectors
from astralog.errors import BadRequest
from astralog.query.engine import Session, run
from astralog.query.plan import Plan, SearchScope, make_plan
from astralog.query.remote import fetch_remote
from astralog.query.timerange import iso

log = logging.getLogger("astralog.erasure")
ERASER = Actor("system:erasure", "local")
MAX_EVENTS = 100_000  # one request's deletion vector; a larger erasure is several requests
SAMPLE = 5


class ErasureData(DataAccess, Protocol):
    """What the erasure stage needs beyond the query stages: the requests and the vectors."""

    @property
    def erasure_requests(self) -> Erasures: ...

    @property
    def vectors(self) -> DeletionVectors: ...

    @property
    def engine_threads(self) -> int: ...

    def replace_batch(self, old_key: str, new: BatchCommitted | None) -> None:
        """Swap one catalog fact for another in one transaction (None: only forget the old),
        and drop the old one's cached copies."""
        ...


@dataclass(frozen=True)
class Match:
    event_id: str
    source_id: str
    ts_ns: int


@dataclass(frozen=True)
class Matches:
    """What a scope matches now: the events, a few of them in full, the batches holding them."""

    events: list[Match]
    sample: list[dict[str, Any]]
    batches: list[BatchCommitted]
    pending: int  # matched rows not yet flushed from the WAL

    def preview(self, held_by: list[str]) -> dict[str, Any]:
        """What a request shows before it is approved; ``held_by``: the holds it would wait for."""
        return {
            "count": len(self.events),
            "sample": self.sample,
            "objects": [_object_view(b) for b in self.batches],
            "pending_rows": self.pending,
            "held_by": held_by,
        }


def holding(data: DataAccess, org_id: str, scope: ErasureScope) -> list[str]:
    """The holds in force over any of the scope's sources and time range: a hold wins."""
    return sorted(
        h.id
        for h in data.holds(org_id)
        if any(h.covers(s, scope.start_ns, scope.end_ns) for s in scope.sources)
    )


def search_scope(scope: ErasureScope) -> SearchScope:
    return SearchScope(scope.query, iso(scope.start_ns), iso(scope.end_ns), list(scope.sources))


async def find(data: ErasureData, org_id: str, scope: ErasureScope) -> Matches:
    """Every event ``scope`` matches, through the search planner and engine."""
    plan = make_plan(data, org_id, search_scope(scope), now_ns=time.time_ns())
    await fetch_remote(data, plan, partial=False)  # an erasure never works from part of the data
    pending_ids = _pending_ids(plan)
    session = Session(plan, data.engine_threads)
    rows, sample = await run(session, _matching)
    if len(rows) > MAX_EVENTS:
        raise BadRequest(
            f"this erasure matches more than {MAX_EVENTS} events; narrow the query or the time "
            "range and ask for several erasures"
        )
    events = [Match(e, s, ts) for e, s, ts in rows]
    hours = {(m.source_id, m.ts_ns - m.ts_ns % HOUR_NS) for m in events}
    batches = [b for b in _batches(data, plan) if (b.source_id, _hour(b)) in hours]
    pending = sum(m.event_id in pending_ids for m in events)
    return Matches(events, sample, batches, pending)


def _matching(session: Session) -> tuple[list[tuple[str, str, int]], list[dict[str, Any]]]:
    where, params = session.plan.where()
    conn = session.conn
    sql = (
        "SELECT EventId, SourceId, epoch_us(Timestamp) * 1000 FROM logs "
        f"WHERE {where} LIMIT {MAX_EVENTS + 1}"
    )
    rows = [(str(e), str(s), int(ts)) for e, s, ts in conn.execute(sql, params).fetchall()]
    sample = session.search(SAMPLE, None)[0]
    return rows, sample


def _pending_ids(plan: Plan) -> set[str]:
    if plan.pending is None:
        return set()
    return {str(e) for e in plan.pending["EventId"].to_pylist()}


def _batches(data: DataAccess, plan: Plan) -> list[BatchCommitted]:
    return data.batches(plan.org_id, sorted(plan.cutoffs), plan.start_ns, plan.end_ns)


def _hour(batch: BatchCommitted) -> int:
    return batch.min_ts_ns - batch.min_ts_ns % HOUR_NS


def _object_view(batch: BatchCommitted) -> dict[str, Any]:
    return {
        "key": batch.object_key,
        "destination_id": batch.destination_id,
        "source_id": batch.source_id,
        "rows": batch.rows,
        "bytes": batch.bytes,
    }


# ---- carrying out due requests ------------------------------------------------------------------


async def mask(data: ErasureData, due: Due) -> Matches:
    matches = await find(data, due.org_id, due.scope)
    data.vectors.add(
        due.org_id, due.id, ((m.source_id, m.ts_ns, m.event_id) for m in matches.events)
    )
    keys = [b.object_key for b in matches.batches]
    event = ev.ErasureMasked(due.id, due.org_id, len(matches.events), keys)
    data.erasure_requests.record(event, ERASER)
    return matches
