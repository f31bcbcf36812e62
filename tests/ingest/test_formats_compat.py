"""Wire-format compatibility with what shippers really send, at the parse stage.

Loki's legacy (v0) push shape, Elasticsearch ``_id``s and single documents, OTLP's observed time,
and the one severity mapping every format shares (OpenTelemetry's SeverityNumber, with the
syslog column of the log data model's Appendix B). Real shippers drive the same paths end to end
in :mod:`tests.test_shippers`.
"""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord, ResourceLogs, ScopeLogs

from astralog.errors import BadRequest
from astralog.ingest import formats
from astralog.ingest.formats import (
    parse_es_bulk,
    parse_json_events,
    parse_loki_push,
    parse_otlp_logs,
)
from astralog.ingest.normalise import NormaliseContext, Parsed
from astralog.settings import IngestSettings

NOW_NS = time.time_ns()
DAY_NS = 86_400 * 10**9


def ctx() -> NormaliseContext:
    return NormaliseContext(
        org_id="org-1",
        source_id="src-1",
        now_ns=NOW_NS,
        min_timestamp_ns=NOW_NS - 30 * DAY_NS,
        retention_days=30,
        limits=IngestSettings(),
    )


def rows(parsed: Parsed) -> list[dict[str, Any]]:
    return parsed.table.to_pylist()


def ts_ns(row: dict[str, Any], column: str = "Timestamp") -> int:
    value = row[column]
    return int(value.value) if hasattr(value, "value") else int(value.timestamp() * 10**9)


def body(document: Any) -> bytes:
    return json.dumps(document).encode()


def ndjson(*lines: Any) -> bytes:
    return b"".join(json.dumps(line).encode() + b"\n" for line in lines)


# ---------------------------------------------------------------------------------------------
# Loki: the legacy (v0) push shape, as python-logging-loki's default emitter sends it


def test_loki_legacy_push_is_stored_with_labels_time_and_level() -> None:
    push = {
        "streams": [
            {
                "labels": '{application="billing", severity="warning", logger="app.db"}',
                "entries": [
                    {"ts": "2024-05-01T12:00:00.123456789Z", "line": "slow query"},
                    {"ts": "2024-05-01T14:00:00.5+02:00", "line": "second"},
                ],
            }
        ]
    }
    parsed = parse_loki_push(body(push), "application/json", _wide_ctx())
    assert not parsed.rejects, parsed.rejects
    first, second = rows(parsed)
    assert (first["Body"], second["Body"]) == ("slow query", "second")
    assert ts_ns(first) == 1_714_564_800_123_456_789
    assert ts_ns(second) == 1_714_564_800_500_000_000  # the offset applied
    assert first["ServiceName"] == "billing"
    assert (first["SeverityText"], first["SeverityNumber"]) == ("WARN", 13)
    assert dict(first["ResourceAttributes"])["logger"] == "app.db"


def _wide_ctx() -> NormaliseContext:
    """A context that accepts events from 2024, for fixed timestamps."""
    base = ctx()
    return NormaliseContext(
        base.org_id, base.source_id, base.now_ns, 0, base.retention_days, base.limits
    )


@pytest.mark.parametrize(
    ("labels", "expected"),
    [
        (r'{a="say \"hi\""}', {"a": 'say "hi"'}),
        (r'{a="back\\slash", b="tab\tnl\n"}', {"a": "back\\slash", "b": "tab\tnl\n"}),
        (r'{a="\u00e9\x41\101\U0001F600"}', {"a": "éAA\U0001f600"}),
        ("{a=`raw \\n`}", {"a": "raw \\n"}),
        ('{ a = "1" ,b="2" }', {"a": "1", "b": "2"}),
        ("{}", {}),
    ],
)
def test_loki_label_text_follows_logql_quoting(labels: str, expected: dict[str, str]) -> None:
    push = {"streams": [{"labels": labels, "entries": [{"ts": _now_rfc3339(), "line": "x"}]}]}
    [row] = rows(parse_loki_push(body(push), "application/json", ctx()))
    assert dict(row["ResourceAttributes"]) == expected


@pytest.mark.parametrize(
    "labels",
    [r'{a="bad \p escape"}', '{a="unterminated}', 'a="no braces"', '{1a="x"}', '{a="x" b}'],
)
def test_loki_label_text_that_loki_refuses_is_a_400(labels: str) -> None:
    push = {"streams": [{"labels": labels, "entries": [{"ts": _now_rfc3339(), "line": "x"}]}]}
    with pytest.raises(BadRequest, match="stream labels"):
        parse_loki_push(body(push), "application/json", ctx())


def _now_rfc3339() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S.000001Z", time.gmtime(NOW_NS // 10**9 - 5))


def test_loki_legacy_entry_with_a_bad_time_is_rejected_alone() -> None:
    push = {
        "streams": [
            {
                "labels": '{app="x"}',
                "entries": [
                    {"ts": "yesterday", "line": "bad"},
                    {"ts": 12, "line": "bad too"},
                    {"ts": _now_rfc3339(), "line": "good"},
                    {"ts": _now_rfc3339()},
                ],
            }
        ]
    }
    parsed = parse_loki_push(body(push), "application/json", ctx())
    assert [r["Body"] for r in rows(parsed)] == ["good"]
    reasons = [r.reason for r in parsed.rejects]
    assert reasons[0].startswith("streams[0].entries[0]: ") and "RFC 3339" in reasons[0]
    assert "RFC 3339" in reasons[1]
    assert reasons[2].startswith("streams[0].entries[3]: ") and "line" in reasons[2]


def test_loki_v1_and_legacy_streams_in_one_body_are_both_stored() -> None:
    now = str(NOW_NS - 10**9)
    push = {
        "streams": [
            {"stream": {"app": "v1"}, "values": [[now, "from v1"]]},
            {"labels": '{app="v0"}', "entries": [{"ts": _now_rfc3339(), "line": "from v0"}]},
        ]
    }
    parsed = parse_loki_push(body(push), "application/json", ctx())
    assert sorted(r["Body"] for r in rows(parsed)) == ["from v0", "from v1"]


@pytest.mark.parametrize(
    "push",
    [
        {"streams": [{"labels": '{app="x"}', "lines": ["a"]}]},
        {"streams": [{"stream": {"app": "x"}}]},
        {"streams": [{"stream": {"app": "x"}, "values": [[str(NOW_NS), "ok"]]}, {"foo": 1}]},
        {"streams": []},
        {"streams": [{"stream": {"app": "x"}, "values": []}]},
    ],
)
def test_loki_body_without_recognisable_entries_is_a_400(push: dict[str, Any]) -> None:
    with pytest.raises(BadRequest) as raised:
        parse_loki_push(body(push), "application/json", ctx())
    detail = raised.value.detail
    assert "values" in detail and "entries" in detail, detail


# ---------------------------------------------------------------------------------------------
# Elasticsearch: _id kept and stored; single documents


def test_bulk_ids_are_kept_per_row_and_stored_as_an_attribute() -> None:
    payload = ndjson(
        {"index": {"_id": "a-1"}},
        {"message": "one"},
        {"create": {"_index": "other", "_id": 42}},
        {"message": "two"},
        {"index": {}},
        {"message": "three"},
        {"create": {"_id": "bad"}},
        "not an object",
        {"delete": {"_id": "gone"}},
    )
    result = parse_es_bulk(payload, "logs", ctx())
    parsed, items = result
    assert [r["Body"] for r in rows(parsed)] == ["one", "two", "three"]
    assert result.row_ids == ["a-1", "42", None]
    stored = [dict(r["ResourceAttributes"]) for r in rows(parsed)]
    assert [s.get("elasticsearch.id") for s in stored] == ["a-1", "42", None]
    assert [s["elasticsearch.index"] for s in stored] == ["logs", "other", "logs"]
    assert [item.doc_id for item in items] == ["a-1", "42", None, "bad", "gone"]
    # Without an _id the answer names the stored event, as Elasticsearch names the id it made.
    answered = [item.to_dict() for item in items]
    assert answered[2]["index"]["_id"] == rows(parsed)[2]["EventId"]
    assert answered[3]["create"]["_id"] == "bad" and answered[3]["create"]["status"] == 400


@pytest.mark.parametrize(
    ("action", "doc_id"), [("index", None), ("index", "given"), ("create", "c-1")]
)
def test_single_document_is_one_bulk_item(action: str, doc_id: str | None) -> None:
    pretty = json.dumps({"message": "hello", "level": "error", "n": {"x": 1}}, indent=2).encode()
    result = formats.parse_es_document(pretty, "logs", doc_id, action, ctx())
    [row] = rows(result.parsed)
    [item] = result.items
    assert (row["Body"], row["SeverityNumber"]) == ("hello", 17)
    assert dict(row["LogAttributes"])["n.x"] == "1"
    assert result.row_ids == [doc_id]
    assert (item.action, item.index, item.doc_id, item.status) == (action, "logs", doc_id, 201)


@pytest.mark.parametrize("document", [b"[1, 2]", b"{not json", b'"text"'])
def test_single_document_that_is_not_an_object_is_a_failed_item(document: bytes) -> None:
    result = formats.parse_es_document(document, "logs", "x", "index", ctx())
    [item] = result.items
    assert result.parsed.table.num_rows == 0
    assert item.status == 400 and item.error_type == "document_parsing_exception"


# ---------------------------------------------------------------------------------------------
# OTLP: the client's observed time


def test_otlp_keeps_the_clients_observed_time() -> None:
    observed = NOW_NS - 3 * 10**9
    records = [
        LogRecord(time_unix_nano=NOW_NS - 5 * 10**9, observed_time_unix_nano=observed),
        LogRecord(time_unix_nano=NOW_NS - 5 * 10**9),
        LogRecord(observed_time_unix_nano=observed),
    ]
    request = ExportLogsServiceRequest(
        resource_logs=[ResourceLogs(scope_logs=[ScopeLogs(log_records=records)])]
    )
    parsed = parse_otlp_logs(request.SerializeToString(), "application/x-protobuf", ctx())
    kept, absent, only_observed = rows(parsed)
    assert ts_ns(kept, "ObservedTimestamp") == observed
    assert ts_ns(absent, "ObservedTimestamp") == NOW_NS
    assert ts_ns(only_observed, "ObservedTimestamp") == observed
    assert ts_ns(only_observed) == observed  # no event time: the observed time stands in


# ---------------------------------------------------------------------------------------------
# Severity: one mapping for every format


SEVERITIES = [
    ("notice", ("NOTICE", 10)),
    ("NOTICE", ("NOTICE", 10)),
    ("info", ("INFO", 9)),
    ("warning", ("WARN", 13)),
    ("crit", ("CRIT", 18)),
    ("alert", ("ALERT", 19)),
    ("emerg", ("FATAL", 21)),
    ("critical", ("FATAL", 21)),
    ("fine", ("FINE", 6)),
    ("finer", ("DEBUG", 5)),
    ("finest", ("TRACE", 1)),
    ("verbose", ("DEBUG", 5)),
    ("info2", ("INFO2", 10)),
]


def _via_json(level: str) -> tuple[str, int]:
    [row] = rows(parse_json_events(ndjson({"level": level, "message": "m"}), ctx()))
    return row["SeverityText"], row["SeverityNumber"]


def _via_bulk(level: str) -> tuple[str, int]:
    [row] = rows(parse_es_bulk(ndjson({"index": {}}, {"level": level}), "i", ctx()).parsed)
    return row["SeverityText"], row["SeverityNumber"]


def _via_loki(level: str) -> tuple[str, int]:
    push = {"streams": [{"stream": {"level": level}, "values": [[str(NOW_NS - 10**9), "m"]]}]}
    [row] = rows(parse_loki_push(body(push), "application/json", ctx()))
    return row["SeverityText"], row["SeverityNumber"]


def _via_loki_legacy(level: str) -> tuple[str, int]:
    entry = {"ts": _now_rfc3339(), "line": "m"}
    push = {"streams": [{"labels": f'{{severity="{level}"}}', "entries": [entry]}]}
    [row] = rows(parse_loki_push(body(push), "application/json", ctx()))
    return row["SeverityText"], row["SeverityNumber"]


def _via_otlp(level: str) -> tuple[str, int]:
    record = LogRecord(time_unix_nano=NOW_NS - 10**9, severity_text=level)
    request = ExportLogsServiceRequest(
        resource_logs=[ResourceLogs(scope_logs=[ScopeLogs(log_records=[record])])]
    )
    [row] = rows(parse_otlp_logs(request.SerializeToString(), "application/x-protobuf", ctx()))
    return row["SeverityText"], row["SeverityNumber"]


@pytest.mark.parametrize(("level", "expected"), SEVERITIES)
@pytest.mark.parametrize("via", [_via_json, _via_bulk, _via_loki, _via_loki_legacy, _via_otlp])
def test_every_format_maps_severity_text_the_same_way(
    via: Any, level: str, expected: tuple[str, int]
) -> None:
    # OTLP keeps its severity text as sent (the data model's "original string"): the level it
    # maps to is in the severity number, which every format gives the same.
    text = level if via is _via_otlp else expected[0]
    assert via(level) == (text, expected[1])


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        (0, ("FATAL", 21)),
        (1, ("ALERT", 19)),
        (2, ("CRIT", 18)),
        (3, ("ERROR", 17)),
        (4, ("WARN", 13)),
        (5, ("NOTICE", 10)),
        (6, ("INFO", 9)),
        (7, ("DEBUG", 5)),
    ],
)
def test_syslog_severity_codes_follow_the_otel_appendix(
    code: int, expected: tuple[str, int]
) -> None:
    [row] = rows(parse_json_events(ndjson({"level": code, "message": "m"}), ctx()))
    assert (row["SeverityText"], row["SeverityNumber"]) == expected
