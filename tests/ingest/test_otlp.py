"""The OTLP/HTTP logs format, protobuf and JSON encodings."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest
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

from astralog.errors import BadRequest, UnsupportedMediaType
from astralog.ingest.formats import parse_otlp_logs
from astralog.ingest.normalise import Parsed
from astralog.schema import log_schema
from tests.ingest.parsing import NOW_NS, SPAN, T0, TRACE, attrs, ctx, ns, rows, ts_ns


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
    assert (first["SeverityText"], first["SeverityNumber"]) == ("Error", 17)  # as sent
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
    assert (fourth["SeverityText"], fourth["SeverityNumber"]) == ("warning", 13)
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
        (0, "warning", ("warning", 13)),  # the text as sent, its level in the number
        (13, "Warning", ("Warning", 13)),  # both given: both kept as sent
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
