"""Erasure requests: the control-plane side of erasing the events a query matches.

A request (query, time range, sources) is asked for by an admin in person with a preview of what
it matches; a second admin (never the requester) approves it; it is then due once its cancel
window has passed, and either side may cancel it until then. A due request is carried out by the
erasure stage (:mod:`astralog.erasure`): it waits while a legal hold covers its scope
(``ErasureHeld``), masks the matched events at once (``ErasureMasked``), rewrites the objects that
held them and ends with a signed receipt (``ErasureCompleted``). Every step is an event in the
hash-chained log; this module only appends them and reads the ``erasures`` projection.
"""

from __future__ import annotations

import builtins
import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from astralog.controlplane import events as ev
from astralog.controlplane.store import Actor, EventStore
from astralog.errors import BadRequest, Conflict, Forbidden, NotFound
from astralog.ids import new_id

CANCELLABLE = ("awaiting_approval", "approved", "held")
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class ErasureScope:
    """What to erase: ``query`` over ``sources`` in ``[start_ns, end_ns)``."""

    query: str
    start_ns: int
    end_ns: int
    sources: tuple[str, ...]


@dataclass(frozen=True)
class Due:
    """An approved request whose cancel window has passed (or one waiting for a hold)."""

    id: str
    org_id: str
    state: str
    scope: ErasureScope
    held_by: tuple[str, ...]
    rewritten: dict[str, Any] | None = None  # the swap, once the objects were rewritten


class Erasures:
    """Commands on erasure requests, scoped to one org, and the requests that are due."""

    def __init__(self, store: EventStore) -> None:
        self.store = store

    def request(
        self, org_id: str, requester: str, scope: ErasureScope, preview: dict[str, Any],
        cancel_window_seconds: int, actor: Actor,
    ) -> dict[str, Any]:  # fmt: skip
        erasure_id = new_id("era")
        event = ev.ErasureRequested(
            erasure_id, org_id, requester, scope.query, _iso(scope.start_ns), _iso(scope.end_ns),
            list(scope.sources), preview, cancel_window_seconds,
        )  # fmt: skip
        with self.store.transaction():
            self.store.append(event, actor, 0)
        return self.get(org_id, erasure_id)

    def approve(
        self, org_id: str, erasure_id: str, approver: str, actor: Actor, now: datetime
    ) -> dict[str, Any]:
        with self.store.transaction():
            request = self.get(org_id, erasure_id)
            if request["state"] != "awaiting_approval":
                raise Conflict(f"erasure {erasure_id} is {request['state']}: nothing to approve")
            if request["requested_by"] == approver:
                raise Forbidden(
                    "you asked for this erasure yourself: another admin of the org must approve it"
                )
            due = now + timedelta(seconds=request["cancel_window_seconds"])
            event = ev.ErasureApproved(erasure_id, org_id, due.isoformat())
            self._append(event, actor)
        return self.get(org_id, erasure_id)

    def cancel(self, org_id: str, erasure_id: str, reason: str, actor: Actor) -> dict[str, Any]:
        """Until the erasure is masked, either admin may take it back; after, nothing is hidden
        any more that could be shown again."""
        with self.store.transaction():
            request = self.get(org_id, erasure_id)
            if request["state"] not in CANCELLABLE:
                raise Conflict(
                    f"erasure {erasure_id} is {request['state']}: only a request that is not yet "
                    "masked can be cancelled"
                )
            self._append(ev.ErasureCancelled(erasure_id, org_id, _reason(reason)), actor)
        return self.get(org_id, erasure_id)

    def record(self, event: ev.Event, actor: Actor) -> None:
        """A step of the erasure stage (held, masked, completed)."""
        with self.store.transaction():
            self._append(event, actor)

    def _append(self, event: ev.Event, actor: Actor) -> None:
        self.store.append(event, actor, self.store.version(event.aggregate_id))

    def list(self, org_id: str) -> builtins.list[dict[str, Any]]:
        with self.store.reading() as conn:
            rows = conn.execute(
                "SELECT * FROM erasures WHERE org_id = ? ORDER BY requested_at, id", (org_id,)
            ).fetchall()
        return [_view(dict(r)) for r in rows]

    def get(self, org_id: str, erasure_id: str) -> dict[str, Any]:
        with self.store.reading() as conn:
            row = conn.execute(
                "SELECT * FROM erasures WHERE id = ? AND org_id = ?", (erasure_id, org_id)
            ).fetchone()
        if row is None:  # another org's request is reported exactly like a missing one
            raise NotFound(f"erasure {erasure_id[:40]!r} does not exist in this org")
        return _view(dict(row))

    def due(self, now: datetime) -> builtins.list[Due]:
        """Approved requests past their cancel window, held ones, and masked or rewritten ones to
        finish."""
        with self.store.reading() as conn:
            rows = conn.execute(
                "SELECT * FROM erasures WHERE state IN ('approved', 'held', 'masked', 'rewritten') "
                "ORDER BY requested_at, id"
            ).fetchall()
        views = [_view(dict(r)) for r in rows]
        return [_due(v) for v in views if datetime.fromisoformat(v["due_at"]) <= now]


def _reason(value: str) -> str:
    text = value.strip()
    if len(text) > 2000 or any(ord(c) < 32 and c not in "\t\n" for c in text):
        raise BadRequest("the reason must be at most 2000 printable characters")
    return text


def _iso(ns: int) -> str:
    return (EPOCH + timedelta(microseconds=ns // 1000)).isoformat()


def _ns(value: str) -> int:
    return (datetime.fromisoformat(value) - EPOCH) // timedelta(microseconds=1) * 1000


def _due(view: dict[str, Any]) -> Due:
    scope = ErasureScope(
        view["query"], _ns(view["start"]), _ns(view["end"]), tuple(view["sources"])
    )
    rewritten = view["receipt"] if view["state"] == "rewritten" else None
    held_by = tuple(view["held_by"] or ())
    return Due(view["id"], view["org_id"], view["state"], scope, held_by, rewritten)


def _view(row: dict[str, Any]) -> dict[str, Any]:
    held_by = json.loads(row["held_by"]) if row["held_by"] else None
    state = row["state"]
    return {
        "id": row["id"],
        "org_id": row["org_id"],
        "query": row["query"],
        "start": row["start_at"],
        "end": row["end_at"],
        "sources": json.loads(row["sources"]),
        "preview": json.loads(row["preview"]),
        "state": state,
        "requested_by": row["requested_by"],
        "requested_at": row["requested_at"],
        "cancel_window_seconds": row["cancel_window_seconds"],
        "approved_by": row["approved_by"],
        "due_at": row["due_at"],
        "held_by": held_by,
        "waiting": (
            f"legal holds {', '.join(held_by)} cover this erasure's scope: it waits until they "
            "are released"
            if state == "held" and held_by
            else None
        ),
        "events": row["events"],
        "receipt": json.loads(row["receipt"]) if row["receipt"] else None,
        "updated_at": row["updated_at"],
    }
