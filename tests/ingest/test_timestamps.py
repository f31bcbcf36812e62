"""Normalise: timestamps of every spelling in JSON events, and the ones refused."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from astralog.ingest.formats import parse_json_events
from tests.ingest.parsing import NOW_NS, T0, T0_S, attrs, ctx, ndjson, ns, parse_one, rows, ts_ns


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2024-06-01T10:30:15Z", ns(T0)),
        ("2024-06-01T10:30:15.123456789Z", ns(T0) + 123_456_789),
        ("2024-06-01T10:30:15.1Z", ns(T0) + 100_000_000),
        ("2024-06-01t10:30:15z", ns(T0)),
        ("2024-06-01T12:30:15+02:00", ns(T0)),
        ("2024-06-01T09:00:15-0130", ns(T0)),
        ("2024-06-01T12:30:15+02", ns(T0)),
        ("2024-06-01T10:30:15", ns(T0)),
        ("2024-06-01 10:30:15", ns(T0)),
        ("2024-06-01T10:30:15.5", ns(T0) + 500_000_000),
        ("2024-06-01 10:30:15,250", ns(T0) + 250_000_000),
        ("2024-06-01T10:30:15.1234567891234Z", ns(T0) + 123_456_789),
        ("2024-06-01T10:30Z", ns(T0) - 15 * 10**9),
        ("2024-06-01", ns(datetime(2024, 6, 1, tzinfo=UTC))),
        ("  2024-06-01T10:30:15Z ", ns(T0)),
        (T0_S, ns(T0)),
        (T0_S * 1000 + 250, ns(T0) + 250_000_000),
        (T0_S * 1_000_000 + 7, ns(T0) + 7_000),
        (T0_S * 10**9 + 42, ns(T0) + 42),
        (T0_S + 0.5, ns(T0) + 500_000_000),
        (T0_S * 1000 + 0.5, ns(T0) + 500_000),
        (str(T0_S), ns(T0)),
        (str(T0_S * 1000), ns(T0)),
        (f"{T0_S}.25", ns(T0) + 250_000_000),
    ],
)
def test_timestamp_formats(value: Any, expected: int) -> None:
    assert ts_ns(parse_one({"timestamp": value, "message": "m"})) == expected


@pytest.mark.parametrize(
    "key", ["timestamp", "@timestamp", "time", "ts", "datetime", "date", "_time", "eventTime"]
)
def test_every_timestamp_field_is_recognised(key: str) -> None:
    row = parse_one({key: "2024-06-01T10:30:15Z"})
    assert ts_ns(row) == ns(T0)
    assert key not in attrs(row)


def test_first_timestamp_field_wins_and_the_other_stays_an_attribute() -> None:
    row = parse_one({"time": "2024-06-01T09:00:00Z", "timestamp": "2024-06-01T10:30:15Z"})
    assert ts_ns(row) == ns(T0)
    assert attrs(row)["time"] == "2024-06-01T09:00:00Z"


def test_missing_timestamp_is_the_observed_time() -> None:
    row = parse_one({"message": "no time"})
    assert ts_ns(row) == NOW_NS
    assert row["ObservedTimestamp"] == row["Timestamp"]


def test_mixed_timestamp_formats_in_one_body() -> None:
    events = [
        {"ts": "2024-06-01T10:30:15Z"},
        {"ts": T0_S},
        {"ts": "2024-06-01 10:30:15"},
        {"message": "none"},
        {"ts": str(T0_S * 1000)},
    ]
    parsed = parse_json_events(ndjson(*events), ctx())
    assert not parsed.rejects
    assert [ts_ns(r) for r in rows(parsed)] == [ns(T0), ns(T0), ns(T0), NOW_NS, ns(T0)]


@pytest.mark.parametrize(
    ("event", "kind", "words"),
    [
        ({"timestamp": "yesterday"}, "invalid_timestamp", ["'timestamp'", "yesterday"]),
        ({"time": "2024-13-45T00:00:00Z"}, "invalid_timestamp", ["'time'"]),
        ({"ts": True}, "invalid_timestamp", ["'ts'", "true"]),
        (
            {"timestamp": "2024-04-01T00:00:00Z"},
            "timestamp_too_old",
            ["older than the plan's retention of 30 days", "2024-04-01T00:00:00Z"],
        ),
        (
            {"timestamp": "2024-06-01T15:00:00Z"},
            "timestamp_in_future",
            ["7200 seconds in the future", "ASTRALOG_INGEST__MAX_FUTURE_SECONDS"],
        ),
        ({"timestamp": 10**30}, "invalid_timestamp", ["1e+30", "between the years"]),
        ({"timestamp": -5}, "timestamp_too_old", ["older"]),
    ],
)
def test_timestamps_that_are_refused(event: dict[str, Any], kind: str, words: list[str]) -> None:
    parsed = parse_json_events(ndjson({"message": "ok"}, event), ctx())
    assert [r.kind for r in parsed.rejects] == [kind]
    reason = parsed.rejects[0].reason
    assert reason.startswith("line 2: ")
    for word in words:
        assert word in reason
