"""Alert instances, their history and each alert's schedule and watermark, in
``<data_dir>/alerts.sqlite3`` (WAL mode, beside the outbox's own tables).

These are the evaluator's working state, not facts of the control plane: an alert's definition
is in the hash-chained log; what it last saw and told is here. One transaction commits an
evaluation (every instance's new state, the history rows, the next due time and the watermark),
so a crash leaves the evaluation either done or not started.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from astralog import sqlite
from astralog.alerts.state import InstanceState

SCHEMA = """
CREATE TABLE IF NOT EXISTS alert_instances (
    alert_id TEXT NOT NULL, key TEXT NOT NULL, labels TEXT NOT NULL, state TEXT NOT NULL,
    value INTEGER, updated_ns INTEGER NOT NULL, PRIMARY KEY (alert_id, key)
);
CREATE TABLE IF NOT EXISTS alert_history (
    id INTEGER PRIMARY KEY AUTOINCREMENT, alert_id TEXT NOT NULL, key TEXT NOT NULL,
    at_ns INTEGER NOT NULL, event TEXT NOT NULL, value INTEGER, detail TEXT
);
CREATE INDEX IF NOT EXISTS alert_history_alert ON alert_history (alert_id, id);
CREATE TABLE IF NOT EXISTS alert_runs (
    alert_id TEXT PRIMARY KEY, next_due_ns INTEGER NOT NULL, watermark_us INTEGER,
    last_run_ns INTEGER, last_error TEXT, errors INTEGER NOT NULL DEFAULT 0
);
"""

Update = tuple[str, dict[str, str], InstanceState, int, str | None]
"""(instance key, labels, new state, value seen, what happened: an event, a hold or None)."""


@dataclass(frozen=True)
class Instance:
    key: str
    labels: dict[str, str]
    state: InstanceState
    value: int | None


@dataclass(frozen=True)
class RunState:
    next_due_ns: int
    watermark_us: int | None
    last_run_ns: int | None
    last_error: str | None
    errors: int


class AlertStore:
    def __init__(self, path: Path) -> None:
        self._conn = sqlite.connect(path)
        self._conn.row_factory = sqlite3.Row
        self._lock = threading.RLock()
        with sqlite.transaction(self._conn, self._lock) as conn:
            for statement in filter(str.strip, SCHEMA.split(";")):
                conn.execute(statement)

    def close(self) -> None:
        self._conn.close()

    def run(self, alert_id: str) -> RunState | None:
        with self._lock:
            row = self._conn.execute(
                "SELECT * FROM alert_runs WHERE alert_id = ?", (alert_id,)
            ).fetchone()
        if row is None:
            return None
        return RunState(row["next_due_ns"], row["watermark_us"], row["last_run_ns"],
                        row["last_error"], row["errors"])  # fmt: skip

    def instances(self, alert_id: str) -> dict[str, Instance]:
        with self._lock:
            rows = self._conn.execute(
                "SELECT * FROM alert_instances WHERE alert_id = ? ORDER BY key", (alert_id,)
            ).fetchall()
        return {r["key"]: _instance(r) for r in rows}

    def commit(
        self, alert_id: str, next_due_ns: int, watermark_us: int | None,
        updates: Sequence[Update], now: int, prune: Callable[[InstanceState], bool],
    ) -> None:  # fmt: skip
        """One evaluation, all or nothing. An instance back to quiet with nothing seen is
        dropped (``prune``), so groups that come and go do not pile up."""
        with sqlite.transaction(self._conn, self._lock) as conn:
            for key, labels, state, value, event in updates:
                if prune(state) and value == 0 and event is None:
                    conn.execute(
                        "DELETE FROM alert_instances WHERE alert_id = ? AND key = ?",
                        (alert_id, key),
                    )
                    continue
                conn.execute(
                    "INSERT OR REPLACE INTO alert_instances VALUES (?, ?, ?, ?, ?, ?)",
                    (alert_id, key, json.dumps(labels), json.dumps(asdict(state)), value, now),
                )
                if event is not None:
                    conn.execute(
                        "INSERT INTO alert_history (alert_id, key, at_ns, event, value) "
                        "VALUES (?, ?, ?, ?, ?)",
                        (alert_id, key, now, event, value),
                    )
            conn.execute(
                "INSERT INTO alert_runs (alert_id, next_due_ns, watermark_us, last_run_ns) "
                "VALUES (?, ?, ?, ?) ON CONFLICT (alert_id) DO UPDATE SET next_due_ns = "
                "excluded.next_due_ns, watermark_us = excluded.watermark_us, "
                "last_run_ns = excluded.last_run_ns, last_error = NULL",
                (alert_id, next_due_ns, watermark_us, now),
            )

    def fail(self, alert_id: str, next_due_ns: int, error: str, now: int) -> None:
        with sqlite.transaction(self._conn, self._lock) as conn:
            conn.execute(
                "INSERT INTO alert_runs (alert_id, next_due_ns, last_run_ns, last_error, errors) "
                "VALUES (?, ?, ?, ?, 1) ON CONFLICT (alert_id) DO UPDATE SET next_due_ns = "
                "excluded.next_due_ns, last_run_ns = excluded.last_run_ns, errors = errors + "
                "(last_error IS NULL), last_error = excluded.last_error",
                (alert_id, next_due_ns, now, error[:1000]),
            )
            conn.execute(
                "INSERT INTO alert_history (alert_id, key, at_ns, event, detail) "
                "VALUES (?, '', ?, 'error', ?)",
                (alert_id, now, error[:1000]),
            )

    def record_history(
        self, alert_id: str, key: str, now: int, event: str, value: int | None, detail: str
    ) -> None:
        with sqlite.transaction(self._conn, self._lock) as conn:
            conn.execute(
                "INSERT INTO alert_history (alert_id, key, at_ns, event, value, detail) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (alert_id, key, now, event, value, detail[:1000]),
            )

    def history(self, alert_id: str, limit: int = 100) -> list[dict[str, Any]]:
        with self._lock:
            rows = self._conn.execute(
                "SELECT * FROM alert_history WHERE alert_id = ? ORDER BY id DESC LIMIT ?",
                (alert_id, limit),
            ).fetchall()
        return [dict(r) for r in rows]

    def forget(self, alert_id: str) -> None:
        """An alert deleted or redefined starts over: its instances and schedule go."""
        with sqlite.transaction(self._conn, self._lock) as conn:
            for table in ("alert_instances", "alert_runs"):
                conn.execute(f"DELETE FROM {table} WHERE alert_id = ?", (alert_id,))


def _instance(row: sqlite3.Row) -> Instance:
    raw = json.loads(row["state"])
    raw["changes"] = tuple(raw["changes"])
    return Instance(row["key"], json.loads(row["labels"]), InstanceState(**raw), row["value"])
