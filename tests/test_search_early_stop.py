"""Newest-first search reads files in time order and stops early, with the exact full-scan answer.

Batches are written straight to Parquet with the product's writer, with overlapping and
disjoint time ranges and equal timestamps across batches (ties go to the EventId), plus rows
pending in memory; every page of every cursor walk must be what the reference evaluator selects
from all rows, in (microsecond, EventId) order, and a page of recent events must leave older
files unread. The API reports the counts in the search answer.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from astralog.api.app import create_app
from astralog.connectors.parquet import write_parquet
from astralog.query.engine import Cursor, Session
from astralog.query.language import parse
from astralog.query.plan import Plan
from astralog.runtime import Runtime
from astralog.schema import log_schema
from astralog.settings import load_settings
from tests.reference_filter import matches
from tests.search_corpus import add_source, bearer, ingest, rfc3339, seal_and_flush

ORG, SOURCE = "org_x", "src_x"
BASE_NS = 1_700_000_000 * 10**9
SECOND_NS = 10**9
Row = dict[str, Any]


def _row(ts_ns: int, event_id: str, level: str) -> Row:
    return {
        "Timestamp": ts_ns, "ObservedTimestamp": ts_ns, "EventId": event_id, "OrgId": ORG,
        "SourceId": SOURCE, "TraceId": "", "SpanId": "", "TraceFlags": 0, "SeverityText": level,
        "SeverityNumber": 17 if level == "ERROR" else 9, "ServiceName": "api",
        "Body": f"{level.lower()} {event_id}", "ResourceSchemaUrl": "", "ResourceAttributes": {},
        "ScopeSchemaUrl": "", "ScopeName": "", "ScopeVersion": "", "ScopeAttributes": {},
        "LogAttributes": {}, "EventName": "",
    }  # fmt: skip


def _table(rows: list[Row]) -> pa.Table:
    prepared = [
        r
        | {
            k: list(r[k].items())
            for k in ("ResourceAttributes", "ScopeAttributes", "LogAttributes")
        }
        for r in rows
    ]
    return pa.Table.from_pylist(prepared, schema=log_schema())


def _plan(query: str, directory: Path, batches: list[list[Row]], pending: list[Row]) -> Plan:
    plan = Plan(
        org_id=ORG, node=parse(query), start_ns=BASE_NS - 3600 * SECOND_NS,
        end_ns=BASE_NS + 3600 * SECOND_NS, requested_start_ns=BASE_NS - 3600 * SECOND_NS,
        cutoffs={SOURCE: 0}, retention_days=3,
    )  # fmt: skip
    for i, rows in enumerate(batches):
        path = str(directory / f"batch-{i:03d}.parquet")
        write_parquet(_table(rows), path, row_group_rows=4)
        plan.files.append(path)
        plan.spans[path] = (min(r["Timestamp"] for r in rows), max(r["Timestamp"] for r in rows))
    plan.pending = _table(pending) if pending else None
    return plan


def _expected(query: str, rows: list[Row], *, descending: bool = True) -> list[str]:
    node = parse(query)
    chosen = [r for r in rows if matches(node, r)]
    chosen.sort(key=lambda r: (r["Timestamp"] // 1000, r["EventId"]), reverse=descending)
    return [r["EventId"] for r in chosen]


def _walk(plan: Plan, limit: int) -> tuple[list[str], int]:
    """Every page through the cursor; the ids in order and the files read over all pages."""
    ids: list[str] = []
    cursor: Cursor | None = None
    read = 0
    while True:
        session = Session(plan, 1)
        try:
            events, next_cursor = session.search(limit, cursor)
        finally:
            session.close()
        read += session.files.read
        assert session.files.read + session.files.skipped == len(plan.files)
        ids += [e["event_id"] for e in events]
        if next_cursor is None:
            return ids, read
        cursor = Cursor.decode(next_cursor)


# Timestamps from a small pool, so batches overlap, touch and tie; some within one microsecond.
_instants = st.integers(0, 40).map(lambda s: BASE_NS + s * SECOND_NS) | st.integers(0, 3).map(
    lambda n: BASE_NS + 20 * SECOND_NS + n * 300
)
_batch = st.lists(st.tuples(_instants, st.sampled_from(["ERROR", "INFO"])), min_size=1, max_size=6)


def _numbered(batches: list[list[tuple[int, str]]], ids: list[int]) -> Iterator[list[Row]]:
    """Rows with unique EventIds, drawn so that id order runs against time order at random."""
    it = iter(ids)
    for batch in batches:
        yield [_row(ts, f"e{next(it):04d}", level) for ts, level in batch]


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    batches=st.lists(_batch, min_size=1, max_size=12),
    pending_n=st.integers(0, 3),
    query=st.sampled_from(["", "level:error", "-level:error"]),
    limit=st.integers(1, 7),
    data=st.data(),
)
def test_pages_equal_the_full_scan_whatever_the_batch_ranges(
    tmp_path_factory: pytest.TempPathFactory,
    batches: list[list[tuple[int, str]]],
    pending_n: int,
    query: str,
    limit: int,
    data: st.DataObject,
) -> None:
    total = sum(len(b) for b in batches)
    ids = data.draw(st.permutations(range(total)))
    rows = list(_numbered(batches, list(ids)))
    pending = rows.pop() if pending_n and len(rows) > 1 else []
    plan = _plan(query, tmp_path_factory.mktemp("b"), rows, pending)
    everything = [r for b in rows for r in b] + pending
    got, _ = _walk(plan, limit)
    assert got == _expected(query, everything)
    # Oldest-first reading (the newer side of an event's context), from an event mid-way.
    pivot = everything[len(everything) // 2]
    key = (pivot["Timestamp"] // 1000, pivot["EventId"])
    session = Session(plan, 1)
    try:
        newer = session.neighbours(*key, older=False, limit=limit)
    finally:
        session.close()
    later = [r for r in everything if (r["Timestamp"] // 1000, r["EventId"]) > key]
    assert [e["event_id"] for e in newer] == _expected(query, later, descending=False)[:limit]


def test_a_page_of_recent_events_leaves_older_files_unread(tmp_path: Path) -> None:
    # 20 disjoint batches one minute apart, 10 events each; a page of 10 lies in the newest one.
    batches = [
        [_row(BASE_NS + (b * 60 + i) * SECOND_NS, f"b{b:02d}-{i}", "INFO") for i in range(10)]
        for b in range(20)
    ]
    plan = _plan("", tmp_path, batches, [])
    session = Session(plan, 1)
    try:
        events, _ = session.search(10, None)
    finally:
        session.close()
    assert [e["event_id"] for e in events] == [f"b19-{i}" for i in reversed(range(10))]
    assert session.files.read <= 2 and session.files.skipped >= 18


def test_a_tie_on_the_page_boundary_reads_the_older_file_too(tmp_path: Path) -> None:
    """The first files read end the page with two events in one microsecond; an older file's
    newest event shares it with a higher id, so it sorts between them: that file must be read,
    or the page would end with the wrong event."""
    tie = BASE_NS + 30 * SECOND_NS
    latest = [_row(tie + 5 * SECOND_NS, "b0", "INFO")]
    newest = [_row(tie, "a0", "INFO"), _row(tie, "a1", "INFO"), _row(tie + SECOND_NS, "a2", "INFO")]
    touching = [_row(tie, "z9", "INFO")]
    older = [[_row(tie - (k + 1) * SECOND_NS, f"c{k}", "INFO")] for k in range(4)]
    plan = _plan("", tmp_path, [newest, *older, latest, touching], [])
    session = Session(plan, 1)
    try:
        events, _ = session.search(3, None)
    finally:
        session.close()
    assert [e["event_id"] for e in events] == ["b0", "a2", "z9"]
    got, _ = _walk(plan, 3)
    assert got == ["b0", "a2", "z9", "a1", "a0", "c0", "c1", "c2", "c3"]


def test_open_sessions_never_read_each_others_files(tmp_path: Path) -> None:
    """Sessions are cursors on one shared DuckDB database: a relation one of them names must
    stay its own, or two searches at once (two orgs' too) read each other's files."""
    mine, theirs = tmp_path / "mine", tmp_path / "theirs"
    mine.mkdir()
    theirs.mkdir()
    a = Session(_plan("", mine, [[_row(BASE_NS + SECOND_NS, "a0", "INFO")]], []), 1)
    b = Session(
        _plan("", theirs, [[_row(BASE_NS + i * SECOND_NS, f"z{i}", "INFO")] for i in range(3)], []),
        1,
    )
    try:
        assert a.count() == 1 and b.count() == 3
        assert [e["event_id"] for e in a.search(10, None)[0]] == ["a0"]
        assert [e["event_id"] for e in b.search(10, None)[0]] == ["z2", "z1", "z0"]
        assert [e["event_id"] for e in a.search(10, None)[0]] == ["a0"]
    finally:
        a.close()
        b.close()


@pytest.fixture
def client(tmp_path: Path) -> Iterator[tuple[TestClient, dict[str, str], str]]:
    app_settings = load_settings(
        data_dir=tmp_path / "data",
        wal={"fsync": False, "segment_max_age_seconds": 3600},
        flush={"interval_seconds": 0.05},
    )
    runtime = Runtime(app_settings)
    boot = runtime.bootstrap()
    assert boot is not None
    with TestClient(create_app(app_settings, runtime)) as test_client:
        admin = bearer(boot.admin_token)
        _, key = add_source(test_client, admin, "hours")
        now = time.time_ns()
        for hour in range(6):  # one batch per hour, flushed one request at a time
            stamp = rfc3339(now - hour * 3600 * SECOND_NS, 3)
            lines = [f'{{"timestamp": "{stamp}", "message": "h{hour}"}}'] * 3
            ingest(test_client, key, ("\n".join(lines) + "\n").encode())
            seal_and_flush(runtime)
        yield test_client, admin, key
    runtime.close()


def test_the_search_answer_counts_files_read_and_skipped(
    client: tuple[TestClient, dict[str, str], str],
) -> None:
    test_client, admin, _ = client
    answer = test_client.post("/v1/search", json={"start": "now-7h", "limit": 3}, headers=admin)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert [e["body"] for e in body["events"]] == ["h0"] * 3
    assert body["files_read"] + body["files_skipped"] == 6
    assert body["files_read"] <= 2
    everything = test_client.post(
        "/v1/search", json={"start": "now-7h", "limit": 100}, headers=admin
    )
    assert everything.json()["files_read"] == 6 and everything.json()["files_skipped"] == 0
