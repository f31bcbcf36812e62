"""Normalise: the well-known fields of JSON events (severity, body, service, trace, host)."""

from __future__ import annotations

import re
from typing import Any

import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from astralog.ingest.formats import parse_json_events
from astralog.ingest.normalise.fields import _hex_ok
from astralog.ingest.normalise.severity import severity_of_number, severity_of_text
from tests.ingest.parsing import SPAN, TRACE, attrs, ctx, ndjson, parse_one, rows


@pytest.mark.parametrize(
    ("value", "text", "number"),
    [
        ("info", "INFO", 9),
        ("INFO", "INFO", 9),
        ("Information", "INFO", 9),
        ("notice", "NOTICE", 10),  # syslog's notice is INFO2 in OpenTelemetry's Appendix B
        ("warning", "WARN", 13),
        ("warn", "WARN", 13),
        ("err", "ERROR", 17),
        ("error", "ERROR", 17),
        ("crit", "CRIT", 18),  # syslog: ERROR2
        ("critical", "FATAL", 21),
        ("fatal", "FATAL", 21),
        ("emerg", "FATAL", 21),
        ("alert", "ALERT", 19),  # syslog: ERROR3
        ("panic", "FATAL", 21),
        ("trace", "TRACE", 1),
        ("debug", "DEBUG", 5),
        ("dbg", "DEBUG", 5),
        ("info2", "INFO2", 10),
        ("verbose", "DEBUG", 5),
        (0, "FATAL", 21),
        (3, "ERROR", 17),
        (4, "WARN", 13),
        (6, "INFO", 9),
        (7, "DEBUG", 5),
        (30, "INFO", 9),
        (50, "ERROR", 17),
        (60, "FATAL", 21),
        (17, "ERROR", 17),
        (23, "FATAL3", 23),
        ("4", "WARN", 13),
        (2.5, "2.5", 0),
    ],
)
def test_severity_aliases(value: Any, text: str, number: int) -> None:
    row = parse_one({"level": value})
    assert (row["SeverityText"], row["SeverityNumber"]) == (text, number)
    assert "level" not in attrs(row)


@pytest.mark.parametrize(
    "event",
    [
        {"level": "warn"},
        {"severity": "warn"},
        {"severity_text": "warn"},
        {"loglevel": "warn"},
        {"log": {"level": "warn"}},
        {"log.level": "warn"},
        {"lvl": "warn"},
    ],
)
def test_every_severity_field_is_recognised(event: dict[str, Any]) -> None:
    row = parse_one(event)
    assert (row["SeverityText"], row["SeverityNumber"]) == ("WARN", 13)


def test_status_is_not_a_severity() -> None:
    row = parse_one({"status": 500, "message": "x"})
    assert (row["SeverityText"], row["SeverityNumber"]) == ("", 0)
    assert attrs(row)["status"] == "500"


def test_severity_helpers_agree_with_the_table_path() -> None:
    assert severity_of_text("WARNING") == ("WARN", 13)
    assert severity_of_number(5) == ("NOTICE", 10)  # syslog 5


@pytest.mark.parametrize(
    ("event", "body"),
    [
        ({"message": "a"}, "a"),
        ({"msg": "a"}, "a"),
        ({"body": "a"}, "a"),
        ({"log": "a\n"}, "a\n"),
        ({"text": "a"}, "a"),
        ({"@message": "a"}, "a"),
        ({"event": "a"}, "a"),
        ({"msg": "second", "message": "first"}, "first"),
        ({"message": 42}, "42"),
        ({"message": 1.5}, "1.5"),
        ({"message": True}, "true"),
        ({"message": ["a", 1]}, '["a",1]'),
        ({"message": ["x", "y"]}, '["x","y"]'),
        ({"other": "a"}, ""),
    ],
)
def test_body_detection(event: dict[str, Any], body: str) -> None:
    assert parse_one(event)["Body"] == body


def test_object_under_a_body_key_is_flattened_into_attributes() -> None:
    row = parse_one({"message": {"code": 7, "text": "x"}})
    assert row["Body"] == ""
    assert attrs(row) == {"message.code": "7", "message.text": "x"}


@pytest.mark.parametrize(
    "event",
    [
        {"service": "api"},
        {"service": {"name": "api"}},
        {"service.name": "api"},
        {"service_name": "api"},
        {"app": "api"},
        {"application": "api"},
        {"resource": {"service": {"name": "api"}}},
        {"service": "", "app": "api"},
    ],
)
def test_service_detection(event: dict[str, Any]) -> None:
    row = parse_one(event)
    assert row["ServiceName"] == "api"
    assert "api" not in attrs(row).values()


@pytest.mark.parametrize(
    ("event", "trace", "span", "kept"),
    [
        ({"trace_id": TRACE, "span_id": SPAN}, TRACE, SPAN, {}),
        ({"traceId": TRACE.upper(), "spanId": SPAN.upper()}, TRACE, SPAN, {}),
        ({"trace": {"id": TRACE}, "span": {"id": SPAN}}, TRACE, SPAN, {}),
        ({"traceid": TRACE, "spanid": SPAN}, TRACE, SPAN, {}),
        ({"trace_id": "not-a-trace"}, "", "", {"trace_id": "not-a-trace"}),
        ({"trace_id": "0" * 32}, "", "", {"trace_id": "0" * 32}),
        ({"trace_id": TRACE[:-1]}, "", "", {"trace_id": TRACE[:-1]}),
        ({"span_id": 1234}, "", "", {"span_id": "1234"}),
    ],
)
def test_trace_context(event: dict[str, Any], trace: str, span: str, kept: dict[str, str]) -> None:
    row = parse_one(event)
    assert (row["TraceId"], row["SpanId"]) == (trace, span)
    assert attrs(row) == kept


def test_trace_ids_in_bulk_mixed_valid_and_invalid() -> None:
    events = [{"trace_id": TRACE}, {"trace_id": "zz" * 16}, {"trace_id": TRACE.upper()}, {}]
    parsed = parse_json_events(ndjson(*events), ctx())
    assert [r["TraceId"] for r in rows(parsed)] == [TRACE, "", TRACE, ""]
    assert [attrs(r).get("trace_id") for r in rows(parsed)] == [None, "zz" * 16, None, None]


def test_trace_flags() -> None:
    assert parse_one({"trace_flags": 1})["TraceFlags"] == 1
    assert parse_one({"traceFlags": "3"})["TraceFlags"] == 3
    row = parse_one({"trace_flags": 300})
    assert (row["TraceFlags"], attrs(row)) == (0, {"trace_flags": "300"})


@pytest.mark.parametrize(
    "event", [{"host": "web-1"}, {"hostname": "web-1"}, {"host": {"name": "web-1"}}]
)
def test_host_is_a_resource_attribute(event: dict[str, Any]) -> None:
    row = parse_one(event)
    assert attrs(row, "ResourceAttributes") == {"host.name": "web-1"}
    assert attrs(row) == {}


_NEAR_HEX = "0123456789abcdefABCDEF/:@G`g\x00é"


@settings(max_examples=200, deadline=None)
@given(
    st.sampled_from([16, 32]),
    st.lists(st.text(_NEAR_HEX, min_size=1, max_size=4), min_size=1, max_size=30),
    st.integers(0, 2),
)
def test_the_bytewise_hex_check_agrees_with_a_regex(
    digits: int, seeds: list[str], skip: int
) -> None:
    """Ids of one length take the bytewise path: bytes next to the digits and letters in ASCII
    (``/ : @ G ` g``), all-zero ids and ids in a sliced array are judged as a regex would."""
    ids = [(seed * digits)[:digits] for seed in seeds]
    ids = [i if len(i.encode()) == digits else "0" * digits for i in ids]  # é takes 2 bytes
    values = pa.array(["f" * digits] * skip + ids).slice(skip)
    expected = [bool(re.fullmatch(f"[0-9a-fA-F]{{{digits}}}", i)) and set(i) != {"0"} for i in ids]
    assert _hex_ok(values, digits).tolist() == expected
