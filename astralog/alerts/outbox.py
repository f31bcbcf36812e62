"""The durable outbox of alert messages, and the delivery log beside it.

Stage: alert delivery (outbox). What it promises: :meth:`Outbox.enqueue` writes one row per
(message, endpoint) to ``<data_dir>/alerts.sqlite3`` with ``INSERT OR IGNORE`` and returns once
it is committed (synchronous=FULL), so enqueuing the same message twice is a no-op and a crash
after the call loses nothing. The body is serialised once, at enqueue, so every attempt and
every replay sends the same bytes under the same ``webhook-id`` (the message id). A row is
claimed with a lease: a worker that dies mid-attempt leaves it to be claimed again (at once by
:meth:`Outbox.recover` at the next start, or when the lease runs out), never under a new id.
Claims are fair: due rows are dealt round-robin over orgs, then over an org's endpoints, under
per-endpoint and per-org caps, so one tenant's backlog never queues in front of the others'.
Each attempt is a row of ``delivery_attempts``: the delivery log an admin reads and replays.
"""

from __future__ import annotations

import hashlib
import json
import re
import sqlite3
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from astralog import sqlite
from astralog.errors import BadRequest, NotFound

__all__ = [
    "EVENTS",
    "Attempt",
    "Delivery",
    "Message",
    "Outbox",
    "Share",
    "State",
    "delivery_id",
]

EVENTS = ("firing", "resolved", "error", "test")
State = Literal["pending", "delivering", "delivered", "failed"]
_MESSAGE_ID = re.compile(r"^msg_[A-Za-z0-9._-]{1,120}$")
_MAX_BODY = 256 * 1024

SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    delivery_id TEXT PRIMARY KEY, message_id TEXT NOT NULL, endpoint_id TEXT NOT NULL,
    org_id TEXT NOT NULL, event TEXT NOT NULL, body TEXT NOT NULL, created_ns INTEGER NOT NULL,
    state TEXT NOT NULL, attempts INTEGER NOT NULL DEFAULT 0,
    round_start INTEGER NOT NULL DEFAULT 0, next_at_ns INTEGER NOT NULL,
    lease_until_ns INTEGER, last_status INTEGER, last_error TEXT, updated_ns INTEGER NOT NULL,
    UNIQUE (message_id, endpoint_id)
);
CREATE INDEX IF NOT EXISTS outbox_due ON outbox (state, next_at_ns);
CREATE INDEX IF NOT EXISTS outbox_endpoint ON outbox (org_id, endpoint_id, created_ns);
CREATE INDEX IF NOT EXISTS outbox_endpoint_due
    ON outbox (endpoint_id, state, next_at_ns, created_ns);
CREATE TABLE IF NOT EXISTS delivery_attempts (
    delivery_id TEXT NOT NULL, attempt INTEGER NOT NULL, at_ns INTEGER NOT NULL,
    status INTEGER, error TEXT NOT NULL, duration_ms INTEGER NOT NULL, outcome TEXT NOT NULL,
    PRIMARY KEY (delivery_id, attempt)
);
"""


@dataclass(frozen=True)
class Message:
    id: str  # "msg_" + stable id: the same across retries and re-evaluation
    org_id: str
    event: str  # "firing" | "resolved" | "error" | "test"
    endpoint_ids: tuple[str, ...]
    payload: dict[str, Any]  # the JSON body (thin: alert, state, labels, counts, window, link)
    created_ns: int


@dataclass(frozen=True)
class Delivery:
    """One claimed (message, endpoint) row: what one attempt needs."""

    delivery_id: str
    message_id: str
    endpoint_id: str
    org_id: str
    event: str
    body: bytes
    created_ns: int
    attempts: int  # made before this one, over the row's whole life
    round_attempts: int  # made since it was enqueued or last replayed (indexes the schedule)


@dataclass(frozen=True)
class Share:
    """How many attempts one endpoint and one org may have running at once, and how many
    each has running now (endpoint or org id -> count)."""

    per_endpoint: int
    per_org: int
    endpoints: Mapping[str, int] = field(default_factory=dict)
    orgs: Mapping[str, int] = field(default_factory=dict)


# Take each endpoint's first due rows by a skip-scan of ``outbox_endpoint_due`` (one index
# probe per endpoint, however deep a flooded endpoint's backlog), plus rows whose lease ran out;
# rank them within their endpoint, then within their org, counting the attempts already
# running there; keep the rows under both caps; deal them out by org rank first (round-robin
# over orgs), then endpoint rank (round-robin over an org's endpoints), then age (due time,
# creation, insertion order).
_CLAIM = """
WITH RECURSIVE endpoint(id) AS (
    SELECT min(endpoint_id) FROM outbox
    UNION ALL
    SELECT (SELECT min(endpoint_id) FROM outbox WHERE endpoint_id > endpoint.id)
    FROM endpoint WHERE endpoint.id IS NOT NULL
), heads AS (
    SELECT o.rowid AS n, o.endpoint_id, o.org_id, o.next_at_ns, o.created_ns
    FROM endpoint JOIN outbox AS o ON o.rowid IN (
        SELECT rowid FROM outbox
        WHERE endpoint_id = endpoint.id AND state = 'pending' AND next_at_ns <= :now
        ORDER BY next_at_ns, created_ns, rowid LIMIT :per_endpoint
    )
    UNION
    SELECT rowid, endpoint_id, org_id, next_at_ns, created_ns FROM outbox
    WHERE state = 'delivering' AND lease_until_ns <= :now
), due AS (
    SELECT n, org_id, next_at_ns, created_ns,
        row_number() OVER (PARTITION BY endpoint_id ORDER BY next_at_ns, created_ns, n)
        + coalesce((SELECT value FROM json_each(:endpoints) WHERE key = endpoint_id), 0)
        AS endpoint_rank
    FROM heads
), fair AS (
    SELECT n, next_at_ns, created_ns, endpoint_rank,
        row_number() OVER (PARTITION BY org_id ORDER BY endpoint_rank, next_at_ns, created_ns, n)
        + coalesce((SELECT value FROM json_each(:orgs) WHERE key = org_id), 0) AS org_rank
    FROM due WHERE endpoint_rank <= :per_endpoint
)
SELECT outbox.* FROM fair JOIN outbox ON outbox.rowid = fair.n
WHERE org_rank <= :per_org
ORDER BY org_rank, endpoint_rank, fair.next_at_ns, fair.created_ns, fair.n
LIMIT :limit
"""


@dataclass(frozen=True)
class Attempt:
    """The result of one attempt, as the log shows it."""

    at_ns: int
    status: int | None  # the receiver's HTTP status; None for e-mail or no answer
    error: str  # "" when delivered
    duration_ms: int


def delivery_id(message_id: str, endpoint_id: str) -> str:
    """Deterministic, so the same (message, endpoint) is one row however often enqueued."""
    digest = hashlib.sha256(f"{message_id}\0{endpoint_id}".encode()).hexdigest()
    return "dlv_" + digest[:26]


def _body(message: Message) -> str:
    if not _MESSAGE_ID.match(message.id):
        raise ValueError(f"message id {message.id[:60]!r} must be 'msg_' + 1-120 of [A-Za-z0-9._-]")
    if message.event not in EVENTS:
        raise ValueError(f"event {message.event!r} is not one of {EVENTS}")
    body = json.dumps(message.payload, separators=(",", ":"), sort_keys=True, ensure_ascii=False)
    if len(body.encode()) > _MAX_BODY:
        raise ValueError(f"an alert payload is at most {_MAX_BODY} bytes; keep it thin")
    return body


class Outbox:
    """Stores and delivers what it is given: who receives a message is the sender's choice."""

    def __init__(self, path: Path, *, lease_seconds: float = 120.0) -> None:
        self.path = path
        self.lease_ns = int(lease_seconds * 1e9)
        self._conn = sqlite.connect(path)
        self._conn.row_factory = sqlite3.Row
        self._lock = threading.RLock()
        with self._tx() as conn:
            for statement in filter(str.strip, SCHEMA.split(";")):
                conn.execute(statement)

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        with sqlite.transaction(self._conn, self._lock) as conn:
            yield conn

    def enqueue(self, message: Message) -> None:
        """One row per endpoint, committed before it returns; a repeat is a no-op."""
        body = _body(message)
        rows = [
            (delivery_id(message.id, endpoint), message.id, endpoint, message.org_id,
             message.event, body, message.created_ns, message.created_ns)
            for endpoint in dict.fromkeys(message.endpoint_ids)
        ]  # fmt: skip
        with self._tx() as conn:
            conn.executemany(
                "INSERT OR IGNORE INTO outbox (delivery_id, message_id, endpoint_id, org_id, "
                "event, body, created_ns, state, next_at_ns, updated_ns) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, 'pending', 0, ?)",  # due at once, whatever the clock
                rows,
            )

    def claim(self, now_ns: int, limit: int, share: Share | None = None) -> list[Delivery]:
        """Due rows, leased to the caller; a row whose lease ran out is due again. With a
        ``share``, no endpoint or org goes past its cap, and the rows are dealt round-robin:
        each org's first row before any org's second, and within an org each endpoint's
        oldest first, so one busy tenant's backlog does not sit in front of everyone else's."""
        share = share or Share(limit, limit)
        with self._tx() as conn:
            rows = conn.execute(
                _CLAIM,
                {"now": now_ns, "limit": limit, "per_endpoint": share.per_endpoint,
                 "per_org": share.per_org, "endpoints": json.dumps(share.endpoints),
                 "orgs": json.dumps(share.orgs)},
            ).fetchall()  # fmt: skip
            conn.executemany(
                "UPDATE outbox SET state = 'delivering', lease_until_ns = ? WHERE delivery_id = ?",
                [(now_ns + self.lease_ns, r["delivery_id"]) for r in rows],
            )
        return [_delivery(r) for r in rows]

    def record(
        self, delivery: Delivery, attempt: Attempt, state: State, next_at_ns: int = 0
    ) -> bool:
        """Log one attempt and move the row on: ``delivered``, ``failed`` (given up) or
        ``pending`` again at ``next_at_ns``. False if the row changed meanwhile (replayed)."""
        number = delivery.attempts + 1
        outcome = {"pending": "retry"}.get(state, state)
        with self._tx() as conn:
            moved = conn.execute(
                "UPDATE outbox SET state = ?, attempts = ?, next_at_ns = ?, lease_until_ns = NULL,"
                " last_status = ?, last_error = ?, updated_ns = ? "
                "WHERE delivery_id = ? AND state = 'delivering' AND attempts = ?",
                (state, number, next_at_ns or attempt.at_ns, attempt.status, attempt.error,
                 attempt.at_ns, delivery.delivery_id, delivery.attempts),
            ).rowcount  # fmt: skip
            if not moved:
                return False
            conn.execute(
                "INSERT OR IGNORE INTO delivery_attempts VALUES (?, ?, ?, ?, ?, ?, ?)",
                (delivery.delivery_id, number, attempt.at_ns, attempt.status, attempt.error,
                 attempt.duration_ms, outcome),
            )  # fmt: skip
        return True

    def skip(self, delivery: Delivery, at_ns: int, reason: str) -> None:
        """Give a row up without an attempt (its endpoint is disabled or gone)."""
        self.record(delivery, Attempt(at_ns, None, reason, 0), "failed")

    def recover(self) -> int:
        """At the worker's start: rows a previous process was delivering are due again now."""
        with self._tx() as conn:
            return conn.execute(
                "UPDATE outbox SET state = 'pending', lease_until_ns = NULL "
                "WHERE state = 'delivering'"
            ).rowcount

    def replay(self, org_id: str, delivery_id: str, now_ns: int) -> dict[str, Any]:
        """Send a row again, same body and ``webhook-id``, with a fresh retry schedule."""
        with self._tx() as conn:
            row = self._row(conn, org_id, delivery_id)
            if row["state"] in ("pending", "delivering"):
                raise BadRequest(f"delivery {delivery_id!r} is still {row['state']}; wait for it")
            conn.execute(
                "UPDATE outbox SET state = 'pending', next_at_ns = ?, round_start = attempts, "
                "updated_ns = ? WHERE delivery_id = ?",
                (now_ns, now_ns, delivery_id),
            )
        return self.delivery(org_id, delivery_id)

    def deliveries(
        self, org_id: str, endpoint_id: str, limit: int = 50, state: str | None = None
    ) -> list[dict[str, Any]]:
        """The endpoint's newest rows first, each with its attempts: the delivery log."""
        with self._lock:
            rows = self._conn.execute(
                "SELECT * FROM outbox WHERE org_id = ? AND endpoint_id = ? AND state = "
                "coalesce(?, state) ORDER BY created_ns DESC, delivery_id LIMIT ?",
                (org_id, endpoint_id, state, limit),
            ).fetchall()
            return [self._view(r) for r in rows]

    def delivery(self, org_id: str, delivery_id: str) -> dict[str, Any]:
        with self._lock:
            return self._view(self._row(self._conn, org_id, delivery_id))

    def prune(self, before_ns: int) -> int:
        """Drop delivered and failed rows last changed before ``before_ns``, with their
        attempts: the delivery log keeps a set age, not everything ever sent."""
        with self._tx() as conn:
            old = "SELECT delivery_id FROM outbox WHERE state IN ('delivered', 'failed') AND "
            old += "updated_ns < ?"
            conn.execute(
                f"DELETE FROM delivery_attempts WHERE delivery_id IN ({old})", (before_ns,)
            )
            return conn.execute(
                f"DELETE FROM outbox WHERE delivery_id IN ({old})", (before_ns,)
            ).rowcount

    def forget_org(self, org_id: str) -> int:
        """Every row of the org and its attempts, whatever their state (the org is purged)."""
        with self._tx() as conn:
            mine = "SELECT delivery_id FROM outbox WHERE org_id = ?"
            conn.execute(f"DELETE FROM delivery_attempts WHERE delivery_id IN ({mine})", (org_id,))
            return conn.execute("DELETE FROM outbox WHERE org_id = ?", (org_id,)).rowcount

    def counts(self) -> dict[str, int]:
        """Rows per state (the metrics' gauge)."""
        with self._lock:
            rows = self._conn.execute("SELECT state, count(*) FROM outbox GROUP BY state")
            return {state: n for state, n in rows}

    def _row(self, conn: sqlite3.Connection, org_id: str, delivery_id: str) -> sqlite3.Row:
        row = conn.execute(
            "SELECT * FROM outbox WHERE delivery_id = ? AND org_id = ?", (delivery_id, org_id)
        ).fetchone()
        if row is None:
            raise NotFound(f"delivery {delivery_id[:40]!r} does not exist in this org")
        return row  # type: ignore[no-any-return]

    def _view(self, row: sqlite3.Row) -> dict[str, Any]:
        attempts = self._conn.execute(
            "SELECT attempt, at_ns, status, error, duration_ms, outcome FROM delivery_attempts "
            "WHERE delivery_id = ? ORDER BY attempt",
            (row["delivery_id"],),
        ).fetchall()
        return {
            "id": row["delivery_id"],
            "message_id": row["message_id"],
            "endpoint_id": row["endpoint_id"],
            "event": row["event"],
            "state": row["state"],
            "attempts": [dict(a) for a in attempts],
            "next_attempt_ns": row["next_at_ns"] if row["state"] == "pending" else None,
            "last_status": row["last_status"],
            "last_error": row["last_error"],
            "created_ns": row["created_ns"],
            "payload": json.loads(row["body"]),
        }

    def close(self) -> None:
        with self._lock:
            self._conn.close()


def _delivery(row: sqlite3.Row) -> Delivery:
    return Delivery(
        row["delivery_id"], row["message_id"], row["endpoint_id"], row["org_id"], row["event"],
        row["body"].encode(), row["created_ns"], row["attempts"],
        row["attempts"] - row["round_start"],
    )  # fmt: skip
