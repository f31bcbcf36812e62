"""Alert instances, their history and each alert's schedule and watermark, in
``<data_dir>/alerts.sqlite3`` (WAL mode, beside the outbox's own tables), or in the control
plane's PostgreSQL when there is one: the node that leads evaluates, and the next leader goes on
from the same state instead of sending again what was sent.

These are the evaluator's working state, not facts of the control plane: an alert's definition
is in the hash-chained log; what it last saw and told is here. One transaction commits the
evaluations of one shared scan (every instance's new state, the history rows, each alert's next
due time, watermark and the scheduled and done times of this run), so a crash leaves them all
either done or not started, and a thousand alerts cost a few disk syncs a minute, not a thousand.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from astralog import sqlite
from astralog.alerts.state import InstanceState
from astralog.pgsql import open_database, upsert

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
    last_run_ns INTEGER, last_error TEXT, errors INTEGER NOT NULL DEFAULT 0,
    last_due_ns INTEGER, last_done_ns INTEGER, last_scan TEXT
);
"""
ALERTS_LOCK = 0x616C657274  # "alert": the evaluations' writes take turns under it
_PUT_INSTANCE = upsert(
    "alert_instances", "alert_id, key, labels, state, value, updated_ns", "alert_id, key"
)
# Added after the first release of the table, to SQLite files of older releases when missing.
RUN_COLUMNS = (
    ("last_due_ns", "INTEGER"),  # the scheduled time the last evaluation was for
    ("last_done_ns", "INTEGER"),  # when it was committed: done - due is the evaluation's lag
    ("last_scan", "TEXT"),  # the shared scan that read its data (alerts alike share one)
)

Update = tuple[str, dict[str, str], InstanceState, int, str | None]
"""(instance key, labels, new state, value seen, what happened: an event, a hold or None)."""
CHUNK = 500  # ids per IN (...) list, well under SQLite's limit on bound parameters


@dataclass(frozen=True)
class Instance:
    key: str
    labels: dict[str, str]
    state: InstanceState
    value: int | None


@dataclass(frozen=True)
class Evaluation:
    """One alert's evaluation to commit: what it saw per instance and when it runs next."""

    alert_id: str
    due_ns: int  # the scheduled time it was for
    next_due_ns: int
    watermark_us: int | None
    updates: Sequence[Update]
    scan: str | None = None  # the shared scan that read its data


@dataclass(frozen=True)
class RunState:
    next_due_ns: int
    watermark_us: int | None
    last_run_ns: int | None
    last_error: str | None
    errors: int


@dataclass(frozen=True)
class Summary:
    """What a list of alerts shows per alert, without reading each alert's instances."""

    counts: dict[str, int]  # instances by condition: normal, pending, firing
    next_due_ns: int | None
    last_run_ns: int | None
    last_error: str | None

    @property
    def worst(self) -> str | None:
        return next((c for c in WORST_FIRST if self.counts.get(c)), None)


WORST_FIRST = ("firing", "pending", "normal")
# An alert's run (state NULL) and each of its instances' states (run columns NULL).
SUMMARY_ROWS = """
SELECT alert_id, next_due_ns, last_run_ns, last_error, NULL AS state FROM alert_runs
WHERE alert_id IN ({marks})
UNION ALL
SELECT alert_id, NULL, NULL, NULL, state FROM alert_instances WHERE alert_id IN ({marks})
"""


class AlertStore:
    def __init__(self, path: Path, database_url: str = "") -> None:
        self._db = open_database(path, database_url, ALERTS_LOCK)
        self._db.create(SCHEMA)
        if isinstance(self._db, sqlite.Database):
            _older_sqlite_shapes(self._db)

    def _tx(self) -> AbstractContextManager[sqlite3.Connection]:
        return self._db.transaction()

    def close(self) -> None:
        self._db.close()

    def run(self, alert_id: str) -> RunState | None:
        with self._db.reading() as conn:
            row = conn.execute(
                "SELECT * FROM alert_runs WHERE alert_id = ?", (alert_id,)
            ).fetchone()
        return None if row is None else _run_state(row)

    def runs(self) -> dict[str, RunState]:
        """Every alert's schedule and watermark in one read (the evaluator's round)."""
        with self._db.reading() as conn:
            rows = conn.execute("SELECT * FROM alert_runs").fetchall()
        return {r["alert_id"]: _run_state(r) for r in rows}

    def summaries(self, alert_ids: Sequence[str]) -> dict[str, Summary]:
        """Each alert's instance counts by state and last run: one statement per 500 alerts,
        the runs and the instances' states together (the states are counted here)."""
        out: dict[str, Summary] = {}
        with self._db.reading() as conn:
            for chunk in _chunks(list(dict.fromkeys(alert_ids)), CHUNK):
                ids = list(chunk)
                marks = ",".join("?" * len(ids))
                rows = conn.execute(SUMMARY_ROWS.format(marks=marks), ids + ids).fetchall()
                for alert_id in ids:
                    out[alert_id] = Summary({}, None, None, None)
                for alert_id, due, last, error, state in rows:
                    summary = out[alert_id]
                    if state is None:
                        out[alert_id] = Summary(summary.counts, due, last, error)
                    else:
                        condition = json.loads(state)["condition"]
                        summary.counts[condition] = summary.counts.get(condition, 0) + 1
        return out

    def instances(self, alert_id: str) -> dict[str, Instance]:
        return self.instances_of([alert_id]).get(alert_id, {})

    def instances_of(self, alert_ids: Sequence[str]) -> dict[str, dict[str, Instance]]:
        """The instances of many alerts in a few reads: {alert id: {key: instance}}."""
        out: dict[str, dict[str, Instance]] = {}
        with self._db.reading() as conn:
            for chunk in _chunks(alert_ids, CHUNK):
                marks = ",".join("?" * len(chunk))
                rows = conn.execute(
                    f"SELECT * FROM alert_instances WHERE alert_id IN ({marks}) ORDER BY key",
                    list(chunk),
                ).fetchall()
                for r in rows:
                    out.setdefault(r["alert_id"], {})[r["key"]] = _instance(r)
        return out

    def commit(
        self, evaluations: Sequence[Evaluation], now: int,
        prune: Callable[[InstanceState], bool], done: Callable[[], int] = time.time_ns,
    ) -> None:  # fmt: skip
        """Evaluations (those that shared a scan), all or nothing, in one transaction: one
        disk sync for the lot. An instance back to quiet with nothing seen is dropped
        (``prune``), so groups that come and go do not pile up."""
        with self._tx() as conn:
            for evaluation in evaluations:
                _write_instances(conn, evaluation, now, prune)
            done_ns = done()
            conn.executemany(
                "INSERT INTO alert_runs (alert_id, next_due_ns, watermark_us, last_run_ns, "
                "last_due_ns, last_done_ns, last_scan) VALUES (?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (alert_id) DO UPDATE SET next_due_ns = excluded.next_due_ns, "
                "watermark_us = excluded.watermark_us, last_run_ns = excluded.last_run_ns, "
                "last_due_ns = excluded.last_due_ns, last_done_ns = excluded.last_done_ns, "
                "last_scan = excluded.last_scan, last_error = NULL",
                [(e.alert_id, e.next_due_ns, e.watermark_us, now, e.due_ns, done_ns, e.scan)
                 for e in evaluations],
            )  # fmt: skip

    def fail(self, alert_id: str, next_due_ns: int, error: str, now: int) -> None:
        with self._tx() as conn:
            conn.execute(
                "INSERT INTO alert_runs (alert_id, next_due_ns, last_run_ns, last_error, errors) "
                "VALUES (?, ?, ?, ?, 1) ON CONFLICT (alert_id) DO UPDATE SET next_due_ns = "
                "excluded.next_due_ns, last_run_ns = excluded.last_run_ns, errors = "
                "alert_runs.errors + CASE WHEN alert_runs.last_error IS NULL THEN 1 ELSE 0 END, "
                "last_error = excluded.last_error",
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
        with self._tx() as conn:
            conn.execute(
                "INSERT INTO alert_history (alert_id, key, at_ns, event, value, detail) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (alert_id, key, now, event, value, detail[:1000]),
            )

    def history(self, alert_id: str, limit: int = 100) -> list[dict[str, Any]]:
        with self._db.reading() as conn:
            rows = conn.execute(
                "SELECT * FROM alert_history WHERE alert_id = ? ORDER BY id DESC LIMIT ?",
                (alert_id, limit),
            ).fetchall()
        return [dict(r) for r in rows]

    def forget(self, alert_id: str) -> None:
        """An alert deleted or redefined starts over: its instances and schedule go."""
        with self._tx() as conn:
            for table in ("alert_instances", "alert_runs"):
                conn.execute(f"DELETE FROM {table} WHERE alert_id = ?", (alert_id,))

    def forget_alerts(self, alert_ids: Sequence[str]) -> None:
        """Everything kept of these alerts, history included (their org is purged)."""
        with self._tx() as conn:
            for table in ("alert_instances", "alert_history", "alert_runs"):
                conn.executemany(
                    f"DELETE FROM {table} WHERE alert_id = ?", [(a,) for a in alert_ids]
                )


def _write_instances(
    conn: sqlite3.Connection, evaluation: Evaluation, now: int,
    prune: Callable[[InstanceState], bool],
) -> None:  # fmt: skip
    alert_id = evaluation.alert_id
    for key, labels, state, value, event in evaluation.updates:
        if prune(state) and value == 0 and event is None:
            conn.execute(
                "DELETE FROM alert_instances WHERE alert_id = ? AND key = ?", (alert_id, key)
            )
            continue
        conn.execute(
            _PUT_INSTANCE,
            (alert_id, key, json.dumps(labels), json.dumps(vars(state)), value, now),
        )
        if event is not None:
            conn.execute(
                "INSERT INTO alert_history (alert_id, key, at_ns, event, value) "
                "VALUES (?, ?, ?, ?, ?)",
                (alert_id, key, now, event, value),
            )


def _older_sqlite_shapes(db: sqlite.Database) -> None:
    """The run columns a file of an older release lacks."""
    with db.transaction() as conn:
        have = {row[1] for row in conn.execute("PRAGMA table_info(alert_runs)")}
        for name, declaration in RUN_COLUMNS:
            if name not in have:
                conn.execute(f"ALTER TABLE alert_runs ADD COLUMN {name} {declaration}")


def _chunks(items: Sequence[str], size: int) -> Iterator[Sequence[str]]:
    for first in range(0, len(items), size):
        yield items[first : first + size]


def _run_state(row: sqlite3.Row) -> RunState:
    return RunState(row["next_due_ns"], row["watermark_us"], row["last_run_ns"],
                    row["last_error"], row["errors"])  # fmt: skip


def _instance(row: sqlite3.Row) -> Instance:
    raw = json.loads(row["state"])
    raw["changes"] = tuple(raw["changes"])
    return Instance(row["key"], json.loads(row["labels"]), InstanceState(**raw), row["value"])
