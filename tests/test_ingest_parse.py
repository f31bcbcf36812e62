"""Ingest body parsers: decode -> parse -> normalise, for every wire format.

Run this file as a script to print the NDJSON benchmark (events/s of parse_json_events versus
pyarrow's bare JSON reader on the same bytes).
"""

from __future__ import annotations

import gzip
import json
import random
import time
import tracemalloc
import uuid
import zlib
from datetime import UTC, datetime, timedelta
from typing import Any

import cramjam
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pj
import pytest
import zstandard
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import (
    AnyValue,
    ArrayValue,
    InstrumentationScope,
    KeyValue,
    KeyValueList,
)
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord, ResourceLogs, ScopeLogs
from opentelemetry.proto.resource.v1.resource_pb2 import Resource

from astralog.errors import BadRequest, PayloadTooLarge, UnsupportedMediaType
from astralog.ingest.decode import decompress
from astralog.ingest.formats import (
    bulk_response,
    loki,
    parse_es_bulk,
    parse_json_events,
    parse_loki_push,
    parse_otlp_logs,
)
from astralog.ingest.normalise import NormaliseContext, Parsed
from astralog.ingest.normalise.event_ids import new_event_ids
from astralog.ingest.normalise.severity import severity_of_number, severity_of_text
from astralog.ingest.normalise.text import float_text
from astralog.schema import log_schema
from astralog.settings import IngestSettings

NOW = datetime(2024, 6, 1, 12, 0, tzinfo=UTC)
NOW_NS = int(NOW.timestamp()) * 10**9
RETENTION_DAYS = 30


def ctx(**limits: Any) -> NormaliseContext:
    return NormaliseContext(
        org_id="org-1",
        source_id="src-1",
        now_ns=NOW_NS,
        min_timestamp_ns=NOW_NS - RETENTION_DAYS * 86_400 * 10**9,
        retention_days=RETENTION_DAYS,
        limits=IngestSettings(**limits),
    )


def ndjson(*events: Any) -> bytes:
    return b"\n".join(e if isinstance(e, bytes) else json.dumps(e).encode() for e in events)


def rows(parsed: Parsed) -> list[dict[str, Any]]:
    return parsed.table.to_pylist()


def attrs(row: dict[str, Any], column: str = "LogAttributes") -> dict[str, str]:
    return dict(row[column])


def ns(when: datetime) -> int:
    return int((when - datetime(1970, 1, 1, tzinfo=UTC)) / timedelta(microseconds=1)) * 1000


def ts_ns(row: dict[str, Any]) -> int:
    value = row["Timestamp"]
    return int(value.value) if hasattr(value, "value") else ns(value)


def parse_one(event: dict[str, Any], **limits: Any) -> dict[str, Any]:
    parsed = parse_json_events(ndjson(event), ctx(**limits))
    assert not parsed.rejects, parsed.rejects
    [row] = rows(parsed)
    return row


def reject_of(event: Any, **limits: Any) -> str:
    parsed = parse_json_events(ndjson({"message": "ok"}, event), ctx(**limits))
    assert parsed.table.num_rows == 1 and len(parsed.rejects) == 1, parsed.rejects
    reject = parsed.rejects[0]
    assert (reject.index, reject.line) == (1, 2)
    return reject.reason


# ---------------------------------------------------------------------------------------------
# decode


PAYLOAD = b'{"message":"hello"}\n' * 500


def _raw_deflate(data: bytes) -> bytes:
    compressor = zlib.compressobj(wbits=-zlib.MAX_WBITS)
    return compressor.compress(data) + compressor.flush()


@pytest.mark.parametrize(
    ("encoding", "encode"),
    [
        (None, lambda d: d),
        ("identity", lambda d: d),
        ("gzip", gzip.compress),
        ("x-gzip", gzip.compress),
        ("GZIP", gzip.compress),
        ("zstd", lambda d: zstandard.ZstdCompressor().compress(d)),
        ("deflate", zlib.compress),
        ("deflate", _raw_deflate),
        ("gzip, zstd", lambda d: zstandard.ZstdCompressor().compress(gzip.compress(d))),
        ("gzip", lambda d: gzip.compress(d[:100]) + gzip.compress(d[100:])),
    ],
)
def test_decompress_round_trips(encoding: str | None, encode: Any) -> None:
    assert decompress(encode(PAYLOAD), encoding, 1 << 20) == PAYLOAD


def test_zstd_stream_of_several_frames_without_content_size() -> None:
    compressor = zstandard.ZstdCompressor(write_content_size=False)
    body = compressor.compress(PAYLOAD[:3000]) + compressor.compress(PAYLOAD[3000:])
    assert decompress(body, "zstd", 1 << 20) == PAYLOAD


def test_unknown_encoding_is_unsupported_media_type() -> None:
    with pytest.raises(UnsupportedMediaType, match="supported: gzip, zstd, deflate") as info:
        decompress(PAYLOAD, "br", 1 << 20)
    assert info.value.status == 415


@pytest.mark.parametrize(
    ("encoding", "body", "message"),
    [
        ("gzip", b"this is not gzip", "gzip"),
        ("gzip", gzip.compress(PAYLOAD)[:-12], "gzip body is truncated"),
        ("zstd", b"this is not zstd", "zstd"),
        ("zstd", zstandard.ZstdCompressor().compress(PAYLOAD)[:-3], "zstd body is truncated"),
        ("deflate", b"\x00\x01garbage", "deflate"),
    ],
)
def test_corrupt_bodies_name_the_encoding(encoding: str, body: bytes, message: str) -> None:
    with pytest.raises(BadRequest, match=message) as info:
        decompress(body, encoding, 1 << 20)
    assert info.value.status == 400


@pytest.fixture(scope="module")
def bombs() -> dict[str, bytes]:
    """1 GiB of zeros, compressed as a stream so building it costs about a second."""
    zeros = bytes(1 << 20)
    gz = zlib.compressobj(1, zlib.DEFLATED, zlib.MAX_WBITS | 16)
    zs = zstandard.ZstdCompressor(level=1).compressobj()
    gz_parts, zs_parts = [], []
    for _ in range(1024):
        gz_parts.append(gz.compress(zeros))
        zs_parts.append(zs.compress(zeros))
    gz_parts.append(gz.flush())
    zs_parts.append(zs.flush())
    gzip_bomb = b"".join(gz_parts)
    raw = zlib.compressobj(1, zlib.DEFLATED, -zlib.MAX_WBITS)
    return {
        "gzip": gzip_bomb,
        "zstd": b"".join(zs_parts),
        "deflate": raw.compress(bytes(64 << 20)) + raw.flush(),
        "gzip, gzip": gzip.compress(gzip_bomb, compresslevel=1),
    }


@pytest.mark.parametrize("encoding", ["gzip", "zstd", "deflate", "gzip, gzip"])
def test_zip_bomb_is_refused_after_at_most_the_limit(
    bombs: dict[str, bytes], encoding: str
) -> None:
    limit = 1 << 20
    tracemalloc.start()
    started = time.perf_counter()
    try:
        with pytest.raises(PayloadTooLarge) as info:
            decompress(bombs[encoding], encoding, limit)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    elapsed = time.perf_counter() - started
    message = str(info.value)
    assert str(limit) in message and "ASTRALOG_INGEST__MAX_DECOMPRESSED_BYTES" in message
    assert info.value.status == 413
    # Expanding the bomb would take a gigabyte and seconds; stopping at the limit takes neither.
    assert peak < 3 * limit + 2 * len(bombs[encoding])
    assert elapsed < 1.0


def test_limit_applies_to_plain_bodies_too() -> None:
    with pytest.raises(PayloadTooLarge):
        decompress(bytes(2048), None, 1024)
    assert decompress(bytes(1024), None, 1024) == bytes(1024)


# ---------------------------------------------------------------------------------------------
# JSON events: timestamps


T0 = datetime(2024, 6, 1, 10, 30, 15, tzinfo=UTC)
T0_S = int(T0.timestamp())


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


# ---------------------------------------------------------------------------------------------
# JSON events: severity, body, service, trace context, host


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


TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
SPAN = "00f067aa0ba902b7"


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


# ---------------------------------------------------------------------------------------------
# JSON events: attributes, flattening, typed values


def test_flattening_and_typed_values() -> None:
    row = parse_one(
        {
            "message": "m",
            "http": {"status": 500, "request": {"method": "GET", "secure": True}},
            "duration": 1.5,
            "ratio": 1.0,
            "big": 1e20,
            "tags": ["a", 'b"c', "d\\e", "f\ng"],
            "codes": [1, 2, 3],
            "mixed": [1, "a", None, True],
            "objects": [{"a": 1}, {"b": "x"}],
            "nested_lists": [[1, 2], [3]],
            "empty": [],
            "nothing": None,
            "flag": False,
            "when": "2024-06-01",
            "unicode": "héllo ✓",
        }
    )
    assert attrs(row) == {
        "http.status": "500",
        "http.request.method": "GET",
        "http.request.secure": "true",
        "duration": "1.5",
        "ratio": "1",
        "big": "1e+20",
        "tags": '["a","b\\"c","d\\\\e","f\\ng"]',
        "codes": "[1,2,3]",
        "mixed": '[1,"a",null,true]',
        "objects": '[{"a":1},{"b":"x"}]',
        "nested_lists": "[[1,2],[3]]",
        "empty": "[]",
        "flag": "false",
        "when": "2024-06-01",
        "unicode": "héllo ✓",
    }


def test_attribute_arrays_are_valid_compact_json() -> None:
    tags = ["plain", 'quote"', "back\\slash", "new\nline", "tab\t", "bell\x07", "ü"]
    row = parse_one({"tags": tags, "floats": [0.5, 1e-7, 2.0]})
    assert json.loads(attrs(row)["tags"]) == tags
    assert attrs(row)["floats"] == "[0.5,1e-7,2]"


@pytest.mark.parametrize("as_array", [False, True])
def test_time_like_attributes_keep_their_text(as_array: bool) -> None:
    """pyarrow's reader turns ISO-looking text into timestamps; attributes get the text back."""
    events = [
        {
            "timestamp": "2024-06-01T10:30:15Z",
            "user": {"created": "2020-01-01T00:00:00+02:00", "born": "1990-05-17"},
            "seen": ["2024-01-01 10:00", "2024-01-02 11:00"],
        },
        {"time": "2024-06-01T10:30:15Z", "user": {"created": "2021-03-04 05:06:07"}},
    ]
    body = json.dumps(events).encode() if as_array else ndjson(*events)
    first, second = rows(parse_json_events(body, ctx()))
    assert ts_ns(first) == ts_ns(second) == ns(T0)
    assert attrs(first) == {
        "user.created": "2020-01-01T00:00:00+02:00",
        "user.born": "1990-05-17",
        "seen": '["2024-01-01 10:00","2024-01-02 11:00"]',
    }
    assert attrs(second) == {"user.created": "2021-03-04 05:06:07"}


def test_values_of_one_key_with_different_types_across_events() -> None:
    events = [{"user": 7}, {"user": "alice"}, {"user": {"id": 3}}, {"user": [1]}, {"user": 2.5}]
    parsed = parse_json_events(ndjson(*events), ctx())
    assert not parsed.rejects
    assert [attrs(r) for r in rows(parsed)] == [
        {"user": "7"},
        {"user": "alice"},
        {"user.id": "3"},
        {"user": "[1]"},
        {"user": "2.5"},
    ]


def test_fast_and_python_paths_give_the_same_events() -> None:
    """The same events, once read by pyarrow and once (because of a bad line) by Python."""
    events = [
        {
            "timestamp": "2024-06-01T10:30:15.25Z",
            "level": "warning",
            "message": "m",
            "service": {"name": "api"},
            "http": {"status": 200, "latency": 1.25, "ok": True},
            "count": 3.0,
            "tags": ["a", "b"],
            "ids": [1, 2],
            "trace_id": TRACE.upper(),
            "host": "h1",
            "day": "2024-06-01",
        },
        {"ts": T0_S, "lvl": 50, "msg": "second", "big": 12345678901.5},
    ]
    fast = parse_json_events(ndjson(*events), ctx())
    slow = parse_json_events(ndjson(*events, b"{broken"), ctx())
    assert [r.line for r in slow.rejects] == [3]
    drop = {"EventId", "ObservedTimestamp"}
    strip = lambda p: [{k: v for k, v in r.items() if k not in drop} for r in rows(p)]  # noqa: E731
    assert strip(fast) == strip(slow)


@pytest.mark.parametrize(
    "value", [1.0, 1.5, 0.1, 1e-5, 1e-6, 1e-7, 1e9, 1e10, 123456.789, 2.5e-10, 1e21, -0.0, -3.75]
)
def test_float_text_matches_arrow(value: float) -> None:
    assert float_text(value) == pc.cast(pa.array([value]), pa.string())[0].as_py()


def test_float_text_matches_arrow_across_magnitudes() -> None:
    rnd = random.Random(7)
    values = (
        [rnd.choice([-1, 1]) * rnd.random() * 10.0 ** rnd.randint(-12, 22) for _ in range(3000)]
        + [float(i) for i in range(-50, 50)]
        + [10.0**e for e in range(-12, 22)]
    )
    arrow = pc.cast(pa.array(values), pa.string()).to_pylist()
    assert [float_text(v) for v in values] == arrow


# ---------------------------------------------------------------------------------------------
# JSON events: limits and partial success


@pytest.mark.parametrize(
    ("event", "limits", "kind", "setting"),
    [
        ({"message": "x" * 400}, {"max_event_bytes": 300}, "event_too_large", "MAX_EVENT_BYTES"),
        ({f"k{i}": i for i in range(6)}, {"max_fields": 5}, "too_many_fields", "MAX_FIELDS"),
        ({"a": {"b": {"c": 1}}}, {"max_depth": 2}, "too_deep", "MAX_DEPTH"),
        ({"a": [[1]]}, {"max_depth": 2}, "too_deep", "MAX_DEPTH"),
        ({"note": "y" * 100}, {"max_string_bytes": 64}, "string_too_long", "MAX_STRING_BYTES"),
        ({"message": "y" * 100}, {"max_string_bytes": 64}, "string_too_long", "MAX_STRING_BYTES"),
        ({"tags": ["y" * 40] * 2}, {"max_string_bytes": 64}, "string_too_long", "MAX_STRING_BYTES"),
    ],
)
def test_every_limit_rejects_only_that_event(
    event: dict[str, Any], limits: dict[str, int], kind: str, setting: str
) -> None:
    # The same check, once on pyarrow's path and once on Python's (a broken line forces it).
    for tail in ((), (b"{broken",)):
        parsed = parse_json_events(ndjson({"message": "fine"}, event, *tail), ctx(**limits))
        assert rows(parsed)[0]["Body"] == "fine"
        assert (parsed.rejects[0].index, parsed.rejects[0].line) == (1, 2)
        assert parsed.rejects[0].kind == kind
        assert f"ASTRALOG_INGEST__{setting}" in parsed.rejects[0].reason
        assert parsed.received == 2 + len(tail)


def test_events_within_the_limits_pass() -> None:
    limits = {"max_fields": 5, "max_depth": 3, "max_string_bytes": 64, "max_event_bytes": 300}
    row = parse_one({"a": {"b": {"c": "y" * 64}}, "d": 1, "e": 2, "f": 3, "g": 4}, **limits)
    assert len(attrs(row)) == 5


def test_invalid_utf8_rejects_that_line_only() -> None:
    body = b'{"message":"a"}\n{"message":"bad \xff byte"}\n{"message":"c"}\n'
    parsed = parse_json_events(body, ctx())
    assert [r["Body"] for r in rows(parsed)] == ["a", "c"]
    [reject] = parsed.rejects
    assert (reject.index, reject.line, reject.kind) == (1, 2, "invalid_utf8")
    assert "invalid UTF-8 at byte 17 of the line" in reject.reason


def test_invalid_utf8_in_a_single_pretty_printed_document() -> None:
    body = b'{\n  "message": "bad \xff byte"\n}'
    parsed = parse_json_events(body, ctx())
    assert parsed.table.num_rows == 0
    [reject] = parsed.rejects
    assert reject.kind == "invalid_utf8" and "invalid UTF-8 byte (0xff)" in reject.reason


@pytest.mark.parametrize(
    "line",
    [
        rb'{"message": "lone \ud800 surrogate"}',
        rb'{"tags": ["ok", "lone \udfff"]}',
        rb'{"k\ud800ey": 1}',
    ],
)
def test_unpaired_surrogate_escapes_reject_that_line(line: bytes) -> None:
    parsed = parse_json_events(b'{"message":"a"}\n' + line + b'\n{"message":"c"}', ctx())
    assert [r["Body"] for r in rows(parsed)] == ["a", "c"]
    assert [(r.line, r.kind) for r in parsed.rejects] == [(2, "invalid_utf8")]
    assert "unpaired surrogate" in parsed.rejects[0].reason


def test_partial_success_keeps_order_indexes_and_line_numbers() -> None:
    body = (
        b'{"message":"e0"}\n'
        b"\n"
        b'{"message":"e1"}\n'
        b'{"message": "e2", oops}\n'
        b"   \n"
        b'"just a string"\n'
        b'{"message":"e3"}\r\n'
        b'{"message":"e4","timestamp":"never"}\n'
        b'{"message":"e5"}'
    )
    parsed = parse_json_events(body, ctx())
    assert [r["Body"] for r in rows(parsed)] == ["e0", "e1", "e3", "e5"]
    assert parsed.received == 7
    got = [(r.index, r.line, r.kind) for r in parsed.rejects]
    assert got == [(2, 4, "invalid_json"), (3, 6, "not_an_object"), (5, 8, "invalid_timestamp")]
    assert parsed.rejects[0].reason == (
        "line 4: invalid JSON at column 19: Expecting property name enclosed in double quotes"
    )
    assert parsed.rejects[1].reason == "line 6: expected a JSON object, found a string"


def test_large_body_with_a_few_bad_lines_keeps_everything_else_in_order() -> None:
    lines = [json.dumps({"message": f"e{i}", "n": i}).encode() for i in range(5000)]
    lines[1234] = b'{"message": broken'
    lines[3000] = json.dumps({"message": "e3000", "n": "three thousand"}).encode()  # a type change
    lines[4999] = b"[1, 2]"
    parsed = parse_json_events(b"\n".join(lines), ctx())
    assert [(r.index, r.line) for r in parsed.rejects] == [(1234, 1235), (4999, 5000)]
    expected = [f"e{i}" for i in range(5000) if i not in (1234, 4999)]
    assert [r["Body"] for r in rows(parsed)] == expected
    assert attrs(rows(parsed)[2999]) == {"n": "three thousand"}


def test_many_type_changes_fall_back_to_python_and_stay_correct() -> None:
    events = [{"message": f"e{i}", "v": i if i % 2 else str(i)} for i in range(3000)]
    parsed = parse_json_events(ndjson(*events), ctx())
    assert not parsed.rejects
    assert [attrs(r)["v"] for r in rows(parsed)] == [str(i) for i in range(3000)]


def test_over_size_line_in_a_large_body() -> None:
    lines = [json.dumps({"message": f"e{i}"}).encode() for i in range(3000)]
    lines[10] = json.dumps({"message": "x" * 5000}).encode()
    parsed = parse_json_events(b"\n".join(lines), ctx(max_event_bytes=1024))
    assert [(r.index, r.kind) for r in parsed.rejects] == [(10, "event_too_large")]
    assert "5015 bytes, more than the limit of 1024" in parsed.rejects[0].reason
    assert parsed.table.num_rows == 2999


# ---------------------------------------------------------------------------------------------
# JSON events: body shapes


def test_single_object_pretty_printed() -> None:
    body = json.dumps({"message": "hi", "level": "error", "x": {"y": 1}}, indent=2).encode()
    [row] = rows(parse_json_events(body, ctx()))
    assert (row["Body"], row["SeverityText"], attrs(row)) == ("hi", "ERROR", {"x.y": "1"})


@pytest.mark.parametrize("indent", [None, 2])
def test_json_array_of_objects(indent: int | None) -> None:
    events = [{"message": "a", "n": 1}, {"message": "b", "n": 2.5}, {"msg": "c"}]
    parsed = parse_json_events(json.dumps(events, indent=indent).encode(), ctx())
    assert [r["Body"] for r in rows(parsed)] == ["a", "b", "c"]
    assert [attrs(r) for r in rows(parsed)] == [{"n": "1"}, {"n": "2.5"}, {}]
    assert parsed.received == 3


def test_json_array_with_bad_elements() -> None:
    body = json.dumps([{"message": "a"}, "text", {"message": "b", "ts": "nope"}, None]).encode()
    parsed = parse_json_events(body, ctx())
    assert [r["Body"] for r in rows(parsed)] == ["a"]
    assert [(r.index, r.line, r.kind) for r in parsed.rejects] == [
        (1, None, "not_an_object"),
        (2, None, "invalid_timestamp"),
        (3, None, "not_an_object"),
    ]
    assert parsed.rejects[0].reason == "array element 1: expected a JSON object, found a string"


def test_large_json_array_checks_each_element_size() -> None:
    events: list[dict[str, Any]] = [{"message": f"e{i}"} for i in range(200)]
    events[50] = {"message": "x" * 2000}
    parsed = parse_json_events(json.dumps(events).encode(), ctx(max_event_bytes=1024))
    assert [(r.index, r.kind) for r in parsed.rejects] == [(50, "event_too_large")]
    assert parsed.table.num_rows == 199


@pytest.mark.parametrize("body", [b"", b"\n\n  \n", b"[]", b"\xef\xbb\xbf[]"])
def test_empty_bodies(body: bytes) -> None:
    parsed = parse_json_events(body, ctx())
    assert (parsed.table.num_rows, parsed.received, parsed.rejects) == (0, 0, [])
    assert parsed.table.schema.equals(log_schema())


@pytest.mark.parametrize(
    ("body", "words"),
    [
        (b"hello world\n", ["starts with 'h'", "column 1"]),
        (b"  42\n", ["starts with '4'", "column 3"]),
        (b'{"message": "a",\n"level" "x"}\n{"message":"b"}', ["line 2, column 9"]),
        (b'{"a":1\n{"b":2}\n', ["line 2, column 1"]),
        (b'[{"a": 1}, {"b": ]', ["line 1, column 18"]),
    ],
)
def test_body_that_is_not_json_events_is_a_bad_request(body: bytes, words: list[str]) -> None:
    with pytest.raises(BadRequest) as info:
        parse_json_events(body, ctx())
    for word in words:
        assert word in str(info.value)


def test_output_table_has_the_canonical_schema_and_tenant_columns() -> None:
    parsed = parse_json_events(ndjson({"message": "a"}, {"message": "b"}), ctx())
    assert parsed.table.schema.equals(log_schema(), check_metadata=True)
    for row in rows(parsed):
        assert (row["OrgId"], row["SourceId"]) == ("org-1", "src-1")
    for column in parsed.table.columns:
        assert column.null_count == 0


def test_ingest_event_schema_is_valid_and_documents_every_role() -> None:
    import jsonschema

    from astralog.ingest.normalise.records import well_known_fields
    from astralog.schema import schema_text

    spec = json.loads(schema_text("ingest_event.schema.json"))
    jsonschema.Draft202012Validator.check_schema(spec)
    jsonschema.validate({"timestamp": "2024-06-01T10:30:15Z", "level": 30, "x": {"y": 1}}, spec)
    roles = well_known_fields()
    assert set(roles) == {
        "timestamp", "severity", "body", "service", "trace_id", "span_id", "trace_flags", "host",
    }  # fmt: skip
    assert roles["timestamp"][:2] == ("timestamp", "@timestamp")
    assert "status" not in {name for names in roles.values() for name in names}
    assert all(prop.get("description") for prop in spec["properties"].values())


# ---------------------------------------------------------------------------------------------
# Event ids


def test_event_ids_are_uuid7_unique_and_increasing() -> None:
    first = new_event_ids(5000, NOW_NS).to_pylist()
    second = new_event_ids(3, NOW_NS - 10**9).to_pylist()  # a clock that stepped back
    ids = first + second
    parsed = [uuid.UUID(i) for i in ids]
    assert all(u.version == 7 and u.variant == uuid.RFC_4122 for u in parsed)
    assert len(set(ids)) == len(ids)
    assert ids == sorted(ids)
    assert all(str(u) == i for u, i in zip(parsed, ids, strict=True))
    millis = int.from_bytes(parsed[0].bytes[:6], "big")
    assert millis >= NOW_NS // 1_000_000


def test_event_ids_of_an_empty_batch() -> None:
    assert len(new_event_ids(0, NOW_NS)) == 0


# ---------------------------------------------------------------------------------------------
# OTLP


def _kv(key: str, value: AnyValue) -> KeyValue:
    return KeyValue(key=key, value=value)


def _otlp_request() -> ExportLogsServiceRequest:
    t = ns(T0)
    records = [
        LogRecord(
            time_unix_nano=t,
            observed_time_unix_nano=t + 5,
            severity_number=17,
            severity_text="Error",
            body=AnyValue(string_value="boom"),
            attributes=[
                _kv("http.status", AnyValue(int_value=500)),
                _kv("ok", AnyValue(bool_value=False)),
                _kv("ratio", AnyValue(double_value=0.25)),
                _kv(
                    "tags",
                    AnyValue(
                        array_value=ArrayValue(
                            values=[AnyValue(string_value="a"), AnyValue(int_value=2)]
                        )
                    ),
                ),
                _kv(
                    "user",
                    AnyValue(
                        kvlist_value=KeyValueList(values=[_kv("id", AnyValue(string_value="u1"))])
                    ),
                ),
            ],
            trace_id=bytes.fromhex(TRACE),
            span_id=bytes.fromhex(SPAN),
            flags=1,
        ),
        LogRecord(
            observed_time_unix_nano=t,
            severity_number=9,
            body=AnyValue(kvlist_value=KeyValueList(values=[_kv("k", AnyValue(int_value=1))])),
        ),
        LogRecord(time_unix_nano=ns(T0 - timedelta(days=90)), body=AnyValue(string_value="old")),
        LogRecord(severity_text="warning", body=AnyValue(string_value="no time")),
    ]
    return ExportLogsServiceRequest(
        resource_logs=[
            ResourceLogs(
                resource=Resource(
                    attributes=[
                        _kv("service.name", AnyValue(string_value="checkout")),
                        _kv("host.name", AnyValue(string_value="h1")),
                    ]
                ),
                schema_url="https://opentelemetry.io/schemas/1.21.0",
                scope_logs=[
                    ScopeLogs(
                        scope=InstrumentationScope(
                            name="my.lib",
                            version="1.2",
                            attributes=[_kv("s", AnyValue(string_value="v"))],
                        ),
                        log_records=records,
                    )
                ],
            )
        ]
    )


def _check_otlp(parsed: Parsed) -> None:
    assert parsed.received == 4
    assert [(r.index, r.kind) for r in parsed.rejects] == [(2, "timestamp_too_old")]
    assert parsed.rejects[0].reason.startswith("log record 2: ")
    first, second, fourth = rows(parsed)
    assert ts_ns(first) == ns(T0)
    assert (first["SeverityText"], first["SeverityNumber"]) == ("ERROR", 17)
    assert (first["Body"], first["ServiceName"]) == ("boom", "checkout")
    assert attrs(first) == {
        "http.status": "500",
        "ok": "false",
        "ratio": "0.25",
        "tags": '["a",2]',
        "user.id": "u1",
    }
    assert attrs(first, "ResourceAttributes") == {"service.name": "checkout", "host.name": "h1"}
    assert first["ResourceSchemaUrl"] == "https://opentelemetry.io/schemas/1.21.0"
    assert (first["ScopeName"], first["ScopeVersion"]) == ("my.lib", "1.2")
    assert attrs(first, "ScopeAttributes") == {"s": "v"}
    assert (first["TraceId"], first["SpanId"], first["TraceFlags"]) == (TRACE, SPAN, 1)
    assert ts_ns(second) == ns(T0)  # observed time stands in for a missing time
    assert (second["SeverityText"], second["Body"]) == ("INFO", '{"k":1}')
    assert (second["TraceId"], second["SpanId"]) == ("", "")
    assert ts_ns(fourth) == NOW_NS
    assert (fourth["SeverityText"], fourth["SeverityNumber"]) == ("WARN", 13)
    assert parsed.table.schema.equals(log_schema())


def test_otlp_protobuf() -> None:
    body = _otlp_request().SerializeToString()
    _check_otlp(parse_otlp_logs(body, "application/x-protobuf", ctx()))


def _otlp_json() -> dict[str, Any]:
    t = str(ns(T0))
    return {
        "resourceLogs": [
            {
                "resource": {
                    "attributes": [
                        {"key": "service.name", "value": {"stringValue": "checkout"}},
                        {"key": "host.name", "value": {"stringValue": "h1"}},
                    ]
                },
                "schemaUrl": "https://opentelemetry.io/schemas/1.21.0",
                "scopeLogs": [
                    {
                        "scope": {
                            "name": "my.lib",
                            "version": "1.2",
                            "attributes": [{"key": "s", "value": {"stringValue": "v"}}],
                        },
                        "logRecords": [
                            {
                                "timeUnixNano": t,
                                "observedTimeUnixNano": t,
                                "severityNumber": 17,
                                "severityText": "Error",
                                "body": {"stringValue": "boom"},
                                "attributes": [
                                    {"key": "http.status", "value": {"intValue": "500"}},
                                    {"key": "ok", "value": {"boolValue": False}},
                                    {"key": "ratio", "value": {"doubleValue": 0.25}},
                                    {
                                        "key": "tags",
                                        "value": {
                                            "arrayValue": {
                                                "values": [{"stringValue": "a"}, {"intValue": 2}]
                                            }
                                        },
                                    },
                                    {
                                        "key": "user",
                                        "value": {
                                            "kvlistValue": {
                                                "values": [
                                                    {"key": "id", "value": {"stringValue": "u1"}}
                                                ]
                                            }
                                        },
                                    },
                                ],
                                "traceId": TRACE.upper(),
                                "spanId": SPAN,
                                "flags": 1,
                            },
                            {
                                "observedTimeUnixNano": t,
                                "severityNumber": "SEVERITY_NUMBER_INFO",
                                "body": {
                                    "kvlistValue": {
                                        "values": [{"key": "k", "value": {"intValue": "1"}}]
                                    }
                                },
                            },
                            {
                                "timeUnixNano": str(ns(T0 - timedelta(days=90))),
                                "body": {"stringValue": "old"},
                            },
                            {"severityText": "warning", "body": {"stringValue": "no time"}},
                        ],
                    }
                ],
            }
        ]
    }


def test_otlp_json() -> None:
    body = json.dumps(_otlp_json()).encode()
    _check_otlp(parse_otlp_logs(body, "application/json; charset=utf-8", ctx()))


@pytest.mark.parametrize(
    ("body", "content_type", "error", "words"),
    [
        (b"\xff\xff\xff", "application/x-protobuf", BadRequest, "ExportLogsServiceRequest"),
        (b"{", "application/json", BadRequest, "not valid JSON"),
        (b'{"resourceLogs": 5}', "application/json", BadRequest, "OTLP schema"),
        (
            json.dumps(
                {"resourceLogs": [{"scopeLogs": [{"logRecords": [{"traceId": "xyz"}]}]}]}
            ).encode(),
            "application/json",
            BadRequest,
            "logRecords[0].traceId is not hex",
        ),
        (b"", "text/plain", UnsupportedMediaType, "application/x-protobuf or application/json"),
    ],
)
def test_otlp_bad_bodies(body: bytes, content_type: str, error: type, words: str) -> None:
    with pytest.raises(error, match=words.replace("[", r"\[").replace("]", r"\]")):
        parse_otlp_logs(body, content_type, ctx())


def test_otlp_limits_reject_the_record() -> None:
    attributes = [_kv(f"k{i}", AnyValue(int_value=i)) for i in range(10)]
    request = ExportLogsServiceRequest(
        resource_logs=[
            ResourceLogs(
                scope_logs=[
                    ScopeLogs(
                        log_records=[
                            LogRecord(body=AnyValue(string_value="fine")),
                            LogRecord(attributes=attributes),
                            LogRecord(body=AnyValue(string_value="z" * 100)),
                        ]
                    )
                ]
            )
        ]
    )
    parsed = parse_otlp_logs(
        request.SerializeToString(), "application/protobuf", ctx(max_fields=5, max_string_bytes=64)
    )
    assert [r["Body"] for r in rows(parsed)] == ["fine"]
    assert [(r.index, r.kind) for r in parsed.rejects] == [
        (1, "too_many_fields"),
        (2, "string_too_long"),
    ]
    assert "ASTRALOG_INGEST__MAX_FIELDS" in parsed.rejects[0].reason


@pytest.mark.parametrize(
    ("number", "text", "expected"),
    [
        (1, "", ("TRACE", 1)),
        (5, "", ("DEBUG", 5)),  # an OTel number, not syslog's 5 (notice)
        (6, "", ("DEBUG2", 6)),
        (10, "", ("INFO2", 10)),
        (21, "", ("FATAL", 21)),
        (0, "warning", ("WARN", 13)),
        (13, "Warning", ("WARNING", 13)),  # both given: kept as sent, upper case
        (0, "", ("", 0)),
    ],
)
def test_otlp_severity(number: int, text: str, expected: tuple[str, int]) -> None:
    record = LogRecord(severity_number=number, severity_text=text)
    request = ExportLogsServiceRequest(
        resource_logs=[ResourceLogs(scope_logs=[ScopeLogs(log_records=[record])])]
    )
    [row] = rows(parse_otlp_logs(request.SerializeToString(), "application/x-protobuf", ctx()))
    assert (row["SeverityText"], row["SeverityNumber"]) == expected


def test_otlp_resource_over_a_limit_refuses_its_records_only() -> None:
    big = Resource(attributes=[_kv("note", AnyValue(string_value="n" * 100))])
    record = LogRecord(body=AnyValue(string_value="r"))
    request = ExportLogsServiceRequest(
        resource_logs=[
            ResourceLogs(resource=big, scope_logs=[ScopeLogs(log_records=[record, record])]),
            ResourceLogs(scope_logs=[ScopeLogs(log_records=[record])]),
        ]
    )
    parsed = parse_otlp_logs(
        request.SerializeToString(), "application/x-protobuf", ctx(max_string_bytes=64)
    )
    assert parsed.table.num_rows == 1
    assert [(r.index, r.kind) for r in parsed.rejects] == [
        (0, "string_too_long"),
        (1, "string_too_long"),
    ]
    assert "its resource or scope" in parsed.rejects[0].reason


def test_otlp_large_body_measures_each_record() -> None:
    records = [LogRecord(body=AnyValue(string_value="x" * 200)) for _ in range(10)]
    records[3] = LogRecord(body=AnyValue(string_value="y" * 600))
    request = ExportLogsServiceRequest(
        resource_logs=[ResourceLogs(scope_logs=[ScopeLogs(log_records=records)])]
    )
    parsed = parse_otlp_logs(
        request.SerializeToString(), "application/x-protobuf", ctx(max_event_bytes=512)
    )
    assert [(r.index, r.kind) for r in parsed.rejects] == [(3, "event_too_large")]


# ---------------------------------------------------------------------------------------------
# Elasticsearch _bulk


def test_es_bulk_actions_and_per_item_results() -> None:
    body = ndjson(
        {"index": {"_index": "logs-a", "_id": "given-1"}},
        {"message": "first", "level": "info"},
        {"create": {}},
        {"message": "second", "@timestamp": "2024-06-01T10:30:15Z"},
        {"delete": {"_index": "logs-a", "_id": "x"}},
        {"update": {"_id": "y"}},
        {"doc": {"message": "changed"}},
        {"index": {}},
        b"{not json",
        {"index": {"_index": "logs-b"}},
        {"message": "fourth", "time": "garbage"},
        {"create": {"_index": "logs-c"}},
        {"message": "fifth"},
    )
    parsed, items = parse_es_bulk(body + b"\n", "default-idx", ctx())
    assert [r["Body"] for r in rows(parsed)] == ["first", "second", "fifth"]
    assert parsed.received == 7
    assert parsed.accepted_indexes == [0, 1, 6]
    assert [(r.index, r.line) for r in parsed.rejects] == [(2, 5), (3, 6), (4, 9), (5, 11)]
    assert "delete action is not supported" in parsed.rejects[0].reason
    assert parsed.rejects[2].reason.startswith("line 9: invalid JSON")
    assert [(i.action, i.status) for i in items] == [
        ("index", 201),
        ("create", 201),
        ("delete", 400),
        ("update", 400),
        ("index", 400),
        ("index", 400),
        ("create", 201),
    ]
    ids = parsed.table.column("EventId").to_pylist()
    answered = [i.to_dict()[i.action]["_id"] for i in items if i.status == 201]
    assert answered == ["given-1", ids[1], ids[2]]
    assert [i.index for i in items] == [
        "logs-a", "default-idx", "logs-a", "default-idx", "default-idx", "logs-b", "logs-c",
    ]  # fmt: skip
    assert [attrs(r, "ResourceAttributes")["elasticsearch.index"] for r in rows(parsed)] == [
        "logs-a",
        "default-idx",
        "logs-c",
    ]
    response = bulk_response(items, 3)
    assert response["errors"] is True and response["took"] == 3
    assert response["items"][0] == {
        "index": {
            "_index": "logs-a",
            "_id": "given-1",
            "status": 201,
            "_version": 1,
            "result": "created",
            "_shards": {"total": 1, "successful": 1, "failed": 0},
            "_seq_no": 0,
            "_primary_term": 1,
        }
    }
    assert response["items"][4]["index"]["error"]["type"] == "document_parsing_exception"
    assert response["items"][5]["index"]["error"]["type"] == "illegal_argument_exception"


def test_es_bulk_all_good_has_no_errors() -> None:
    body = ndjson(*[x for i in range(50) for x in ({"index": {}}, {"message": f"m{i}"})])
    parsed, items = parse_es_bulk(body, None, ctx())
    assert parsed.table.num_rows == 50 and not parsed.rejects
    assert bulk_response(items, 1)["errors"] is False
    assert parsed.accepted_indexes == list(range(50))


def test_es_bulk_first_document_broken_is_a_per_item_error() -> None:
    body = b'{"index": {}}\n{broken\n{"index": {}}\n{"message": "ok"}\n'
    parsed, items = parse_es_bulk(body, "i", ctx())
    assert [i.status for i in items] == [400, 201]
    assert [(r.index, r.line, r.kind) for r in parsed.rejects] == [(0, 2, "invalid_json")]


@pytest.mark.parametrize(
    ("body", "words"),
    [
        (b'{"index": {}\n{"message": "a"}\n', "line 1: malformed action/metadata line"),
        (b'{"upsert": {}}\n{"message": "a"}\n', "found 'upsert'"),
        (b'{"index": {}, "create": {}}\n{}\n', "single action"),
        (b'{"index": {}}\n{"message": "a"}\n{"index": {}}\n', "line 3: the index action has no"),
    ],
)
def test_es_bulk_malformed_action_lines(body: bytes, words: str) -> None:
    with pytest.raises(BadRequest, match=words):
        parse_es_bulk(body, None, ctx())


# ---------------------------------------------------------------------------------------------
# Loki push


def test_loki_json_push() -> None:
    t = str(ns(T0))
    body = json.dumps(
        {
            "streams": [
                {
                    "stream": {"service_name": "api", "env": "prod", "level": "warn"},
                    "values": [
                        [t, "first line"],
                        [t, "second line", {"trace_id": TRACE, "detected_level": "error"}],
                        ["not-a-number", "bad"],
                    ],
                },
                {"stream": {"job": "batch"}, "values": [[t, "third"], [t]]},
            ]
        }
    ).encode()
    assert loki._loki_columnar(body, ctx()) is None  # metadata: entry by entry
    parsed = parse_loki_push(body, "application/json", ctx())
    assert parsed.received == 5
    assert [r["Body"] for r in rows(parsed)] == ["first line", "second line", "third"]
    first, second, third = rows(parsed)
    assert ts_ns(first) == ns(T0)
    assert first["ServiceName"] == "api"
    assert attrs(first, "ResourceAttributes") == {
        "service_name": "api",
        "env": "prod",
        "level": "warn",
    }
    assert (first["SeverityText"], second["SeverityText"]) == ("WARN", "ERROR")
    assert attrs(second) == {"trace_id": TRACE, "detected_level": "error"}
    assert (third["ServiceName"], third["SeverityNumber"]) == ("", 0)
    assert [(r.index, r.kind) for r in parsed.rejects] == [
        (2, "invalid_timestamp"),
        (4, "invalid_entry"),
    ]
    assert parsed.rejects[0].reason.startswith("streams[0].values[2]: ")


def _loki_streams() -> list[dict[str, Any]]:
    t = ns(T0)
    return [
        {
            "stream": {"service_name": "api", "level": "warn", "env": "prod"},
            "values": [[str(t + i), f"api line {i}"] for i in range(3)],
        },
        {"stream": {"app": "batch"}, "values": [[str(t), "batch line"], ["12x", "bad ts"]]},
        {"stream": {}, "values": []},
        {"stream": {"job": "old"}, "values": [[str(ns(T0 - timedelta(days=60))), "too old"]]},
    ]


def test_loki_json_in_bulk_matches_the_entry_by_entry_path() -> None:
    body = json.dumps({"streams": _loki_streams()}).encode()
    assert loki._loki_columnar(body, ctx()) is not None  # the bulk path takes this body
    columnar = parse_loki_push(body, "application/json", ctx())
    request = loki._loki_push_request()()
    for stream in _loki_streams():
        labels = ", ".join(f'{k}="{v}"' for k, v in stream["stream"].items())
        added = request.streams.add(labels="{" + labels + "}")
        for raw_ts, line in stream["values"]:
            entry = added.entries.add(line=line)
            if raw_ts.isdigit():
                entry.timestamp.seconds, entry.timestamp.nanos = divmod(int(raw_ts), 10**9)
    snappy = bytes(cramjam.snappy.compress_raw(request.SerializeToString()))
    python = parse_loki_push(snappy, "application/x-protobuf", ctx())
    drop = {"EventId", "ObservedTimestamp"}
    strip = lambda p: [{k: v for k, v in r.items() if k not in drop} for r in rows(p)]  # noqa: E731
    assert [r["Body"] for r in rows(columnar)] == [
        "api line 0",
        "api line 1",
        "api line 2",
        "batch line",
    ]
    assert strip(columnar) == strip(python)
    assert [r["ServiceName"] for r in rows(columnar)] == ["api", "api", "api", "batch"]
    assert rows(columnar)[0]["SeverityText"] == "WARN"
    assert [(r.index, r.kind, r.reason[:20]) for r in columnar.rejects] == [
        (4, "invalid_timestamp", "streams[1].values[1]"),
        (5, "timestamp_too_old", "streams[3].values[0]"),
    ]
    assert columnar.received == 6


def test_loki_json_line_limits() -> None:
    t = str(ns(T0))
    body = json.dumps(
        {"streams": [{"stream": {"a": "b"}, "values": [[t, "ok"], [t, "x" * 300]]}]}
    ).encode()
    parsed = parse_loki_push(body, "application/json", ctx(max_string_bytes=128))
    assert [(r.index, r.kind) for r in parsed.rejects] == [(1, "string_too_long")]
    assert "ASTRALOG_INGEST__MAX_STRING_BYTES" in parsed.rejects[0].reason


def test_loki_protobuf_snappy_push() -> None:
    message = loki._loki_push_request()
    request = message()
    stream = request.streams.add(labels='{job="api", path="a\\"b", env="prod"}')
    entry = stream.entries.add(line="hello")
    entry.timestamp.seconds, entry.timestamp.nanos = T0_S, 42
    entry.structuredMetadata.add(name="level", value="error")
    body = bytes(cramjam.snappy.compress_raw(request.SerializeToString()))
    parsed = parse_loki_push(body, "application/x-protobuf", ctx())
    [row] = rows(parsed)
    assert (row["Body"], ts_ns(row), row["SeverityText"]) == ("hello", ns(T0) + 42, "ERROR")
    assert attrs(row, "ResourceAttributes") == {"job": "api", "path": 'a"b', "env": "prod"}


@pytest.mark.parametrize(
    ("body", "content_type", "error", "words"),
    [
        (b"{}", "application/json", BadRequest, "streams"),
        (b'{"streams": [{"stream": 1}]}', "application/json", BadRequest, "streams\\[0\\]"),
        (b"nope", "application/x-protobuf", BadRequest, "snappy"),
        (b"{}", "text/plain", UnsupportedMediaType, "application/json"),
    ],
)
def test_loki_bad_bodies(body: bytes, content_type: str, error: type, words: str) -> None:
    with pytest.raises(error, match=words):
        parse_loki_push(body, content_type, ctx())


def test_loki_snappy_bomb_is_refused_before_decompressing() -> None:
    body = bytes(cramjam.snappy.compress_raw(bytes(4 << 20)))
    with pytest.raises(PayloadTooLarge, match="ASTRALOG_INGEST__MAX_DECOMPRESSED_BYTES"):
        parse_loki_push(body, "application/x-protobuf", ctx(max_decompressed_bytes=1 << 20))


# ---------------------------------------------------------------------------------------------
# Benchmark (not a test): python tests/test_ingest_parse.py


def realistic_ndjson(n: int, now: float, seed: int = 1) -> bytes:
    """``n`` NDJSON lines of about 300 bytes, shaped like an HTTP service's structured logs."""
    rnd = random.Random(seed)
    services = ["checkout-api", "payments", "search", "auth", "frontend"]
    levels = ["info"] * 6 + ["debug", "warn", "error"]
    paths = ["/api/v1/orders", "/api/v1/cart", "/healthz", "/api/v2/search", "/login"]
    lines = []
    for _ in range(n):
        at = now - rnd.random() * 3600
        path, status = rnd.choice(paths), rnd.choice([200, 200, 200, 201, 404, 500])
        method = rnd.choice(["GET", "POST"])
        event = {
            "timestamp": datetime.fromtimestamp(at, UTC).isoformat().replace("+00:00", "Z"),
            "level": rnd.choice(levels),
            "service": rnd.choice(services),
            "message": f"{method} {path}/{rnd.randint(1, 99999)} completed with {status}",
            "http": {
                "method": method,
                "path": path,
                "status": status,
                "duration_ms": round(rnd.random() * 200, 3),
            },
            "trace_id": f"{rnd.getrandbits(128):032x}",
            "span_id": f"{rnd.getrandbits(64):016x}",
            "host": f"web-{rnd.randint(1, 12)}",
            "user_id": f"u-{rnd.randint(1, 50000)}",
            "region": rnd.choice(["eu-west-1", "us-east-1"]),
        }
        lines.append(json.dumps(event, separators=(",", ":")).encode())
    return b"\n".join(lines) + b"\n"


def benchmark(n: int = 100_000, rounds: int = 7) -> dict[str, float]:
    """Events/s of parse_json_events vs pyarrow's bare JSON reader on the same bytes."""
    body = realistic_ndjson(n, time.time())
    read_options = pj.ReadOptions(block_size=16 << 20)

    def bench_ctx() -> NormaliseContext:
        now = time.time_ns()
        return NormaliseContext("org", "src", now, now - 30 * 86_400 * 10**9, 30, IngestSettings())

    raw_best = ours_best = float("inf")
    for _ in range(rounds):  # interleaved, so both see the same machine load
        started = time.perf_counter()
        pj.read_json(pa.BufferReader(body), read_options=read_options)
        raw_best = min(raw_best, time.perf_counter() - started)
        started = time.perf_counter()
        parsed = parse_json_events(body, bench_ctx())
        ours_best = min(ours_best, time.perf_counter() - started)
        assert parsed.table.num_rows == n and not parsed.rejects
    return {
        "events": n,
        "bytes_per_event": len(body) / n,
        "raw_events_per_s": n / raw_best,
        "parse_events_per_s": n / ours_best,
        "ratio": raw_best / ours_best,
    }


def test_benchmark_body_parses_cleanly() -> None:
    """Keeps the benchmark honest: its data must take the fast path without rejects."""
    body = realistic_ndjson(2000, NOW.timestamp())
    assert 250 <= len(body) / 2000 <= 400
    parsed = parse_json_events(body, ctx())
    assert parsed.table.num_rows == 2000 and not parsed.rejects
    first = rows(parsed)[0]
    assert first["TraceId"] and first["ServiceName"] and first["SeverityNumber"]
    assert set(attrs(first)) == {
        "http.method", "http.path", "http.status", "http.duration_ms", "user_id", "region",
    }  # fmt: skip


if __name__ == "__main__":
    result = benchmark()
    print(
        f"{result['events']:,} events of {result['bytes_per_event']:.0f} bytes: "
        f"pyarrow.json.read_json {result['raw_events_per_s']:,.0f} events/s, "
        f"parse_json_events {result['parse_events_per_s']:,.0f} events/s "
        f"({result['ratio']:.0%} of the raw reader)"
    )
