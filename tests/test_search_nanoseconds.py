"""The nanoseconds of answered events come from where each row lives (astralog.query.nanos):
Parquet files written by the destinations' writer, and the in-memory tables. The API-level
checks are in test_search_reference (every data state), test_byob (S3 and ClickHouse) and
test_ingest_conformance (OTLP search and export)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from astralog.connectors.parquet import WHOLE_MICROSECONDS, write_parquet
from astralog.query.nanos import Exact, located
from astralog.schema import log_schema

T0 = 1_795_800_000_123_456_000  # a whole microsecond


def _table(offsets_ns: list[int], observed_extra_ns: int = 0) -> pa.Table:
    rows = len(offsets_ns)
    columns: dict[str, Any] = {}
    for field in log_schema():
        if field.name == "Timestamp":
            columns[field.name] = pa.array([T0 + o for o in offsets_ns], field.type)
        elif field.name == "ObservedTimestamp":
            columns[field.name] = pa.array([T0 + observed_extra_ns] * rows, field.type)
        elif pa.types.is_map(field.type):
            columns[field.name] = pa.array([[]] * rows, field.type)
        elif pa.types.is_string(field.type):
            columns[field.name] = pa.array(["x"] * rows, field.type)
        else:
            columns[field.name] = pa.array([0] * rows, field.type)
    return pa.table(columns, schema=log_schema())


def _rows(table: pa.Table, place: str, numbers: list[int]) -> list[dict[str, Any]]:
    ns = table["Timestamp"].cast(pa.int64()).to_pylist()
    observed = table["ObservedTimestamp"].cast(pa.int64()).to_pylist()
    return [
        {
            "filename": place,
            "file_row_number": n,
            "ts_us": ns[n] // 1000,
            "observed_us": observed[n] // 1000,
        }
        for n in numbers
    ]


def _footer(path: Path) -> str:
    return pq.ParquetFile(path).metadata.metadata[WHOLE_MICROSECONDS.encode()].decode()


def test_rows_of_a_file_get_their_stored_nanoseconds_across_row_groups(tmp_path: Path) -> None:
    offsets = [i * 1_000 + (i % 7) * 111 for i in range(50)]  # sub-microsecond parts
    path = tmp_path / "batch.parquet"
    write_parquet(_table(offsets, observed_extra_ns=5), str(path), row_group_rows=8)
    assert _footer(path) == ""
    stored = pq.read_table(path)
    numbers = [49, 0, 17, 8, 7, 33, 17]  # out of order, repeated, on both sides of a boundary
    rows = Exact({}).fill(_rows(stored, str(path), numbers))
    expected = stored["Timestamp"].cast(pa.int64()).to_pylist()
    assert [r["ts_ns"] for r in rows] == [expected[n] for n in numbers]
    assert {r["observed_ns"] for r in rows} == {T0 + 5}
    assert any(r["ts_ns"] % 1000 for r in rows)


def test_a_file_of_whole_microseconds_is_not_read_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "whole.parquet"
    table = _table([i * 1_000 for i in range(20)])
    write_parquet(table, str(path), row_group_rows=8)
    assert _footer(path) == "Timestamp,ObservedTimestamp"

    def refused(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the footer says whole microseconds: nothing to read")

    monkeypatch.setattr(pq.ParquetFile, "read_row_group", refused)
    rows = Exact({}).fill(_rows(pq.read_table(path), str(path), [3, 12]))
    assert [r["ts_ns"] for r in rows] == [T0 + 3_000, T0 + 12_000]
    assert [r["observed_ns"] for r in rows] == [T0, T0]


def test_one_column_with_nanoseconds_is_enough_to_read_the_file(tmp_path: Path) -> None:
    path = tmp_path / "observed.parquet"
    write_parquet(_table([0, 1_000], observed_extra_ns=1), str(path), row_group_rows=8)
    assert _footer(path) == "Timestamp"
    rows = Exact({}).fill(_rows(pq.read_table(path), str(path), [1]))
    assert (rows[0]["ts_ns"], rows[0]["observed_ns"]) == (T0 + 1_000, T0 + 1)


def test_rows_of_an_in_memory_table_and_a_missing_file(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    table = _table([5, 1_000_007, 2_000_009])
    memory = located("memory:pending", table)
    assert memory["file_row_number"].to_pylist() == [0, 1, 2]
    rows = _rows(table, "memory:pending", [2, 0])
    gone = _rows(table, str(tmp_path / "gone.parquet"), [1])
    filled = Exact({"memory:pending": memory}).fill(rows + gone)
    assert [r["ts_ns"] for r in filled] == [T0 + 2_000_009, T0 + 5, T0 + 1_000_000]
    # A file that cannot be read answers its microseconds, and says so in the log.
    assert "reading nanosecond timestamps back failed" in caplog.text
