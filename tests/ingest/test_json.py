"""The JSON events format: NDJSON, one object or an array; limits, partial success, body shapes."""

from __future__ import annotations

import json
from typing import Any

import pytest

from astralog.errors import BadRequest
from astralog.ingest.formats import parse_json_events
from astralog.schema import log_schema
from bench.parse import benchmark, realistic_ndjson
from tests.ingest.parsing import NOW, attrs, ctx, ndjson, parse_one, rows


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


def test_parse_benchmark_runs() -> None:
    """``python -m bench.parse`` in miniature, so the benchmark cannot rot unnoticed."""
    result = benchmark(n=500, rounds=1)
    assert result["events"] == 500 and result["parse_events_per_s"] > 0
