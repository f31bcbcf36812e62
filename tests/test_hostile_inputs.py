"""Inputs found by review that once answered 500: each is now a 4xx, and tenants stay apart."""

from __future__ import annotations

import json
import math
import re
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pyarrow as pa
import pytest
from fastapi.testclient import TestClient
from google.protobuf.internal.encoder import _VarintBytes
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import (
    ExportLogsServiceRequest,
    ExportLogsServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, ArrayValue
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord, ResourceLogs, ScopeLogs

from astralog.ingest import formats
from astralog.ingest.formats import parse_otlp_logs
from astralog.ingest.normalise import NormaliseContext, Parsed
from astralog.ingest.normalise.records import Reject
from astralog.ingest.normalise.severity import severity_of_number
from astralog.ingest.normalise.text import schema_keeping_time_text
from astralog.ingest.prescan import PROTOBUF_MAX_DEPTH
from astralog.runtime import Bootstrap
from astralog.schema import log_schema
from astralog.settings import IngestSettings
from tests.conftest import bearer
from tests.gateway import Gateway, gateway_fixture  # noqa: F401


@pytest.mark.parametrize("number", [math.nan, math.inf, -math.inf])
def test_a_non_finite_severity_number_maps_to_no_level(number: float) -> None:
    assert severity_of_number(number) == ("", 0)


@pytest.mark.parametrize("stamp", ["9999-12-31T23:59:59-14:00", "0001-01-01T00:00:00+14:00"])
def test_an_unrepresentable_timestamp_rejects_only_its_event(
    client: TestClient, boot: Bootstrap, stamp: str
) -> None:
    body = "\n".join(
        [json.dumps({"message": "bad", "timestamp": stamp}), json.dumps({"message": "good"})]
    )
    response = client.post("/v1/ingest", content=body, headers=bearer(boot.ingest_key))
    assert response.status_code == 200, response.text
    result = response.json()
    assert result["accepted"] == 1 and result["errors"][0]["index"] == 0
    assert "timestamp" in result["errors"][0]["reason"]


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/v1/ingest", "[" * 5000 + "]" * 5000),
        ("/v1/es/_bulk", '{"index":{}}\n{"m":' + "[" * 5000 + "]" * 5000 + "}\n"),
    ],
)
def test_absurd_nesting_is_a_client_error(
    client: TestClient, boot: Bootstrap, path: str, body: str
) -> None:
    headers = {**bearer(boot.ingest_key), "content-type": "application/x-ndjson"}
    response = client.post(path, content=body, headers=headers)
    # Refused whole by the pre-scan, before any parser, in the format's own error shape.
    assert response.status_code == 400, response.text
    if path == "/v1/es/_bulk":
        assert "levels deep" in response.json()["error"]["reason"]


@pytest.mark.parametrize(
    "bounds",
    [
        {"start": "²"},
        {"start": 10**20, "end": 10**20 + 1},
        {"start": -(10**15), "end": -(10**15) + 1},
    ],
)
def test_impossible_time_bounds_are_a_400(
    client: TestClient, boot: Bootstrap, bounds: dict[str, object]
) -> None:
    response = client.post("/v1/search", json=bounds, headers=bearer(boot.admin_token))
    assert response.status_code == 400, response.text
    export = client.get("/v1/search/export?start=%C2%B2", headers=bearer(boot.admin_token))
    assert export.status_code == 400


def test_audit_cursor_beyond_64_bits_is_a_422(client: TestClient, boot: Bootstrap) -> None:
    response = client.get(f"/v1/audit?after={10**30}", headers=bearer(boot.admin_token))
    assert response.status_code == 422


def test_chain_verification_tells_a_tenant_only_about_its_own_records(
    client: TestClient, boot: Bootstrap
) -> None:
    op = bearer(boot.operator_token)
    org = client.post("/v1/orgs", json={"name": "quiet", "plan": "pro"}, headers=op).json()
    token = client.post(
        f"/v1/orgs/{org['id']}/tokens", json={"name": "a", "scopes": ["audit:read"]}, headers=op
    ).json()["token"]
    everything = client.get("/v1/audit/verify", headers=op).json()
    theirs = client.get("/v1/audit/verify", headers=bearer(token)).json()
    assert everything["ok"] and theirs["ok"]
    own = client.get("/v1/audit?limit=1000", headers=bearer(token)).json()["events"]
    assert theirs["records"] == len(own) < everything["records"]
    assert theirs["head_seq"] == own[-1]["seq"]


# ---- Structure: nesting, found by review of main at eb4899a --------------------------------

NOW_NS = str(time.time_ns())


def _deep(kind: str, depth: int) -> str:
    if kind == "arrays":
        return "[" * depth + "1" + "]" * depth
    return '{"a":' * depth + "1" + "}" * depth


def _wire_bodies(kind: str, depth: int) -> list[tuple[str, str, str]]:
    """(path, content type, body) carrying one deep value, in every JSON wire format."""
    deep = _deep(kind, depth)
    return [
        ("/v1/ingest", "application/json", deep),
        ("/v1/ingest", "application/x-ndjson", '{"m":' + deep + "}"),
        ("/v1/es/_bulk", "application/x-ndjson", '{"index":{}}\n{"m":' + deep + "}\n"),
        (
            "/loki/api/v1/push",
            "application/json",
            '{"streams":[{"stream":{"a":' + deep + '},"values":[["' + NOW_NS + '","x"]]}]}',
        ),
        ("/v1/logs", "application/json", '{"resourceLogs":[' + deep + "]}"),
    ]


@pytest.mark.parametrize("kind", ["arrays", "objects"])
def test_twenty_thousand_levels_do_not_kill_the_gateway(gateway: Gateway, kind: str) -> None:
    """A segfault in pyarrow's reader once took the process down for every tenant."""
    headers = bearer(gateway.ingest_key)
    for path, content_type, body in _wire_bodies(kind, 20_000):
        try:
            response = httpx.post(
                gateway.url + path,
                content=body,
                headers={**headers, "content-type": content_type},
                timeout=30,
            )
        except httpx.HTTPError as exc:
            pytest.fail(f"{path} {content_type}: {exc!r}\n{gateway.log_tail()}")
        assert response.status_code == 400, (path, response.text)
        assert "levels deep" in response.text, (path, response.text)
    assert httpx.get(gateway.url + "/healthz", timeout=5).status_code == 200


@pytest.mark.parametrize("kind", ["arrays", "objects"])
@pytest.mark.parametrize("depth", [2_000, 10_000])
def test_deep_nesting_is_refused_in_milliseconds_in_every_format(
    client: TestClient, boot: Bootstrap, kind: str, depth: int
) -> None:
    """Objects 2,000 deep answered 500 (RecursionError); 10,000 arrays cost 11-22 s of CPU."""
    for path, content_type, body in _wire_bodies(kind, depth):
        started = time.perf_counter()
        response = client.post(
            path, content=body, headers={**bearer(boot.ingest_key), "content-type": content_type}
        )
        elapsed = time.perf_counter() - started
        assert response.status_code == 400, (path, response.text)
        assert "more than 100 levels deep" in response.text, (path, response.text)
        assert "ASTRALOG_INGEST__MAX_NESTING" in response.text
        # A complexity guard, generous for a loaded machine: before the pre-scan it took 11-22 s.
        assert elapsed < 5.0, f"{path}: {elapsed:.1f} s to refuse {len(body)} bytes"


def test_an_event_too_deep_for_max_depth_is_refused_alone(
    client: TestClient, boot: Bootstrap
) -> None:
    body = '{"m":"good"}\n{"m":' + _deep("objects", 30) + "}\n"
    response = client.post("/v1/ingest", content=body, headers=bearer(boot.ingest_key))
    assert response.status_code == 200, response.text
    result = response.json()
    assert result["accepted"] == 1 and result["errors"][0]["line"] == 2
    assert "ASTRALOG_INGEST__MAX_DEPTH" in result["errors"][0]["reason"]


def test_a_deeply_nested_schema_is_walked_without_recursion() -> None:
    kind: pa.DataType = pa.timestamp("s")
    for _ in range(3_000):
        kind = pa.struct([("a", kind)])
    assert isinstance(schema_keeping_time_text(pa.schema([("x", kind)])), pa.Schema)


def _otlp_nested_body(depth: int) -> bytes:
    value = AnyValue(string_value="x")
    for _ in range(depth):
        value = AnyValue(array_value=ArrayValue(values=[value]))
    record = LogRecord(time_unix_nano=time.time_ns(), body=value)
    return ExportLogsServiceRequest(
        resource_logs=[ResourceLogs(scope_logs=[ScopeLogs(log_records=[record])])]
    ).SerializeToString()


def _otlp_wire_nested(depth: int) -> bytes:
    """The same shape written by hand: protobuf refuses to build messages this deep itself."""
    value = AnyValue(string_value="x").SerializeToString()
    for _ in range(depth):
        array = b"\x0a" + _VarintBytes(len(value)) + value  # ArrayValue.values = 1
        value = b"\x2a" + _VarintBytes(len(array)) + array  # AnyValue.array_value = 5
    record = b"\x2a" + _VarintBytes(len(value)) + value  # LogRecord.body = 5
    scope = b"\x12" + _VarintBytes(len(record)) + record  # ScopeLogs.log_records = 2
    resource = b"\x12" + _VarintBytes(len(scope)) + scope  # ResourceLogs.scope_logs = 2
    return b"\x0a" + _VarintBytes(len(resource)) + resource


def test_protobuf_nesting_is_bounded_by_upb(client: TestClient, boot: Bootstrap) -> None:
    """upb refuses messages nested more than PROTOBUF_MAX_DEPTH deep, cheaply; a value deeper
    than max_depth but within that bound rejects only its record."""
    headers = {**bearer(boot.ingest_key), "content-type": "application/x-protobuf"}
    within = client.post("/v1/logs", content=_otlp_nested_body(30), headers=headers)
    assert within.status_code == 200, within.text
    reply = ExportLogsServiceResponse.FromString(within.content)
    assert reply.partial_success.rejected_log_records == 1
    assert "ASTRALOG_INGEST__MAX_DEPTH" in reply.partial_success.error_message
    levels_per_value = 2  # AnyValue -> ArrayValue -> AnyValue
    assert 4 + levels_per_value * 50 > PROTOBUF_MAX_DEPTH
    for depth in (50, 10_000):
        body = _otlp_wire_nested(depth)
        started = time.perf_counter()
        response = client.post("/v1/logs", content=body, headers=headers)
        assert response.status_code == 400, response.text
        assert time.perf_counter() - started < 2.0


# ---- Lone surrogates -----------------------------------------------------------------------


def _loki(labels: str, entry: str) -> str:
    return '{"streams":[{"stream":' + labels + ',"values":[["' + NOW_NS + '",' + entry + "]]}]}"


@pytest.mark.parametrize(
    ("path", "body", "content_type"),
    [
        (
            "/loki/api/v1/push",
            _loki('{"a":"b"}', '"\\ud800"'),
            "application/json",
        ),
        (
            "/loki/api/v1/push",
            _loki('{"a":"\\ud800"}', '"x"'),
            "application/json",
        ),
        (
            "/loki/api/v1/push",
            _loki('{"a":"b"}', '"x",{"\\udc00":"v"}'),
            "application/json",
        ),
        ("/v1/es/_bulk", '{"index":{"_index":"\\ud800"}}\n{"m":"x"}\n', "application/x-ndjson"),
        ("/v1/es/_bulk", '{"index":{"_id":"\\ud800"}}\n{"m":"x"}\n', "application/x-ndjson"),
    ],
    # Fixed ids: the bodies hold the current time, and every test process must collect alike.
    ids=["loki-line", "loki-label", "loki-metadata", "es-index", "es-id"],
)
def test_a_lone_surrogate_is_a_client_error(
    client: TestClient, boot: Bootstrap, path: str, body: str, content_type: str
) -> None:
    headers = {**bearer(boot.ingest_key), "content-type": content_type}
    response = client.post(path, content=body, headers=headers)
    assert response.status_code == 400, response.text
    assert "unpaired surrogate" in response.text


def test_a_lone_surrogate_in_facet_fields_is_a_client_error(
    client: TestClient, boot: Bootstrap
) -> None:
    headers = {**bearer(boot.admin_token), "content-type": "application/json"}
    response = client.post("/v1/search/facets", content='{"fields":["\\ud800"]}', headers=headers)
    assert response.status_code == 422, response.text
    assert "body.fields.0" in response.text


# ---- Values: non-finite numbers and long keys -----------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        '{"m":"ok"}\n{"m":"a","v":NaN}\n{"m":"b","v":[1,-Infinity]}\n{"m":"c","v":{"w":Infinity}}',
        '[{"m":"ok"},{"m":"a","v":[NaN]},{"m":"b","v":[-Infinity]},{"m":"c","v":[Infinity]}]',
        '[{"m":"ok","v":1.5},{"m":"a","v":NaN},{"m":"b","v":-Infinity},{"m":"c","v":Infinity}]',
    ],
)
def test_nan_and_infinity_reject_their_event(
    client: TestClient, boot: Bootstrap, body: str
) -> None:
    """pyarrow's reader accepted them, and they were stored as the text "nan" and "inf"."""
    response = client.post("/v1/ingest", content=body, headers=bearer(boot.ingest_key))
    assert response.status_code == 200, response.text
    result = response.json()
    assert result["accepted"] == 1, result
    assert [e["index"] for e in result["errors"]] == [1, 2, 3]
    assert all("non-finite number" in e["reason"] for e in result["errors"]), result


def test_nan_in_a_body_read_as_one_document_refuses_it(client: TestClient, boot: Bootstrap) -> None:
    body = '[{"m":"ok"},{"m":"a","v":NaN},{"m":"b","v":"text"}]'
    response = client.post("/v1/ingest", content=body, headers=bearer(boot.ingest_key))
    assert response.status_code == 400, response.text
    assert "non-finite number" in response.text


def test_nan_in_an_otlp_attribute_rejects_its_record(client: TestClient, boot: Bootstrap) -> None:
    record = {"timeUnixNano": NOW_NS, "attributes": [{"key": "v", "value": {"doubleValue": "NaN"}}]}
    body = {"resourceLogs": [{"scopeLogs": [{"logRecords": [record, {"timeUnixNano": NOW_NS}]}]}]}
    headers = {**bearer(boot.ingest_key), "content-type": "application/json"}
    response = client.post("/v1/logs", content=json.dumps(body), headers=headers)
    assert response.status_code == 200, response.text
    partial = response.json()["partialSuccess"]
    assert partial["rejectedLogRecords"] == "1" and "non-finite number" in partial["errorMessage"]


def test_an_attribute_key_over_the_limit_rejects_its_event(
    client: TestClient, boot: Bootstrap
) -> None:
    long_key = "k" * 100_000
    body = json.dumps({"m": "long", long_key: 1}) + "\n" + json.dumps({"m": "ok", "k": 1})
    response = client.post("/v1/ingest", content=body, headers=bearer(boot.ingest_key))
    assert response.status_code == 200, response.text
    result = response.json()
    assert result["accepted"] == 1 and result["errors"][0]["index"] == 0
    assert "ASTRALOG_INGEST__MAX_KEY_BYTES" in result["errors"][0]["reason"]
    record = {"timeUnixNano": NOW_NS, "attributes": [{"key": long_key, "value": {"intValue": 1}}]}
    otlp = {"resourceLogs": [{"scopeLogs": [{"logRecords": [record]}]}]}
    headers = {**bearer(boot.ingest_key), "content-type": "application/json"}
    response = client.post("/v1/logs", content=json.dumps(otlp), headers=headers)
    assert response.json()["partialSuccess"]["rejectedLogRecords"] == "1", response.text


# ---- Retention -----------------------------------------------------------------------------


def test_an_event_older_than_the_sources_own_retention_is_refused(
    client: TestClient, boot: Bootstrap
) -> None:
    source = boot.source["id"]
    set_to = client.put(
        f"/v1/sources/{source}/retention", json={"days": 1}, headers=bearer(boot.admin_token)
    )
    assert set_to.status_code == 200, set_to.text
    two_days_ago = time.time_ns() - 2 * 86_400 * 10**9
    body = json.dumps({"m": "old", "timestamp": two_days_ago}) + "\n" + json.dumps({"m": "new"})
    response = client.post("/v1/ingest", content=body, headers=bearer(boot.ingest_key))
    assert response.status_code == 200, response.text
    result = response.json()
    assert result["accepted"] == 1 and result["errors"][0]["index"] == 0
    assert "older than the source's retention of 1 days" in result["errors"][0]["reason"]


# ---- Found by the fuzz suite (N1-N6 in the fuzz findings) ------------------------------------

# pyarrow 26's JSON reader segfaults when a block it reads opens with ``null``: a body that is
# only ``null``, and any block starting at a line whose first token is ``null``.
_NULL_AT_BLOCK_START = [
    b"null",
    b" null ",
    b"null\nnull",
    b"\r\n\tnull{}",
    b'{"m":"a"}\nnull\n',
    b'{"m":"a"}\r  null',
    b'{"m":"a"}\n' * 3 + b"null\n" * 3 + b'{"m":"b"}\n',
]


def test_no_buffer_opening_a_block_with_null_reaches_pyarrows_reader() -> None:
    """In a child process, so the segfault this guards against fails the test, not pytest."""
    script = f"""
import pyarrow as pa, pyarrow.json as pj
from astralog.ingest.formats.json import _read_json
for body in {_NULL_AT_BLOCK_START!r}:
    for block, options in ((len(body) + 1, None), (2, None),
                           (2, pj.ParseOptions(newlines_in_values=True))):
        try:
            _read_json(pa.py_buffer(body), block, options)
        except pa.ArrowInvalid:
            continue
        table = _read_json(pa.py_buffer(body), block, options)
        raise SystemExit(f"{{body!r}} read as {{table.num_rows}} rows: nulls would be events")
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=120)
    assert done.returncode == 0, (done.returncode, done.stderr.decode()[-2000:])


def test_pyarrows_json_reader_is_called_only_through_the_guard() -> None:
    package = Path(formats.__file__).parents[2]  # astralog/
    calls = [
        (str(path.relative_to(package)), line)
        for path in sorted(package.rglob("*.py"))
        for line in path.read_text().splitlines()
        if re.search(r"(?<![_\w])read_json\b|pyarrow\._?json", line)
    ]
    guard = "ingest/formats/json.py"
    assert [path for path, _ in calls] == [guard, guard], calls
    assert "import pyarrow.json as pj" in calls[0][1] and "pj.read_json(" in calls[1][1], calls


def _null_bodies() -> list[tuple[str, str, bytes]]:
    many_nulls = b'{"m":"a"}\n' * 100 + b"null\n" * 250_000  # 1.25 MB: read in several blocks
    search = b'{"m":"a"}\n' + b"null\n" * 400 + b"not json\n"  # refused, then read in parts
    return [
        ("/loki/api/v1/push", "application/json", b"null"),
        ("/loki/api/v1/push", "application/json", b" null\n"),
        ("/v1/es/_bulk", "application/x-ndjson", b'{"index":{}}\nnull\n'),
        ("/v1/es/_bulk", "application/x-ndjson", b'{"index":{}}\n{"m":"a"}\n{"index":{}}\nnull\n'),
        ("/v1/ingest", "application/x-ndjson", search),
        ("/v1/ingest", "application/x-ndjson", many_nulls),
    ]


@pytest.mark.parametrize(("path", "content_type", "body"), _null_bodies(), ids=range(6))
def test_a_null_where_pyarrow_would_crash_does_not_kill_the_gateway(
    gateway: Gateway, path: str, content_type: str, body: bytes
) -> None:
    """N1, N2: a Loki push ``null`` and a ``_bulk`` document ``null`` took the process down."""
    headers = {**bearer(gateway.ingest_key), "content-type": content_type}
    try:
        response = httpx.post(gateway.url + path, content=body, headers=headers, timeout=60)
    except httpx.HTTPError as exc:
        pytest.fail(f"{path} {body[:40]!r}: {exc!r}\n{gateway.log_tail()}")
    assert response.status_code < 500, response.text
    if path == "/v1/es/_bulk":
        items = response.json()["items"]
        assert items[-1]["index"]["status"] == 400, items
        assert "found null" in items[-1]["index"]["error"]["reason"]
    elif path == "/v1/ingest":
        result = response.json()
        assert result["accepted"] == body.count(b'{"m":"a"}'), result
        assert "found null" in result["errors"][0]["reason"], result
    else:
        assert response.status_code == 400, response.text
    assert httpx.get(gateway.url + "/healthz", timeout=5).status_code == 200


@pytest.mark.parametrize(
    "body", ['{"m":"a"}\nnull', '{"m":"a"}\n  null  \n', '{"m":"a"}\r\nnull\r\n']
)
def test_a_null_ndjson_line_is_rejected_like_any_non_object(
    client: TestClient, boot: Bootstrap, body: str
) -> None:
    """N4: it was stored as an empty event, while a string or array line is rejected."""
    response = client.post("/v1/ingest", content=body, headers=bearer(boot.ingest_key))
    assert response.status_code == 200, response.text
    result = response.json()
    assert result["accepted"] == 1 and result["rejected"] == 1, result
    assert result["errors"][0]["line"] == 2
    assert "expected a JSON object, found null" in result["errors"][0]["reason"]


def _otlp_severities(*numbers: int) -> bytes:
    now = time.time_ns()
    records = [LogRecord(time_unix_nano=now, severity_number=n) for n in numbers]
    return ExportLogsServiceRequest(
        resource_logs=[ResourceLogs(scope_logs=[ScopeLogs(log_records=records)])]
    ).SerializeToString()


def test_an_otlp_severity_number_outside_the_spec_is_unspecified(
    client: TestClient, boot: Bootstrap
) -> None:
    """N3: a negative severity_number answered 500 (OverflowError into uint8)."""
    headers = {**bearer(boot.ingest_key), "content-type": "application/x-protobuf"}
    body = _otlp_severities(-1, -(2**31), 25, 2**31 - 1, 17)
    response = client.post("/v1/logs", content=body, headers=headers)
    assert response.status_code == 200, response.text
    reply = ExportLogsServiceResponse.FromString(response.content)
    assert reply.partial_success.rejected_log_records == 0
    parsed = parse_otlp_logs(body, "application/x-protobuf", _ctx())
    assert parsed.table.column("SeverityNumber").to_pylist() == [0, 0, 0, 0, 17]
    assert parsed.table.column("SeverityText").to_pylist() == ["", "", "", "", "ERROR"]


def _ctx() -> NormaliseContext:
    now = time.time_ns()
    return NormaliseContext("org", "src", now, now - 86_400 * 10**9, 1, IngestSettings())


@pytest.mark.parametrize(
    "body",
    [b'{"mess\x80age":"x"}', b'{"m":"ok"}\n{"a":{"b\xff":1}}', b'{"m":"ok"}\n{"\xed\xa0\x80":1}'],
)
def test_invalid_utf8_in_a_key_rejects_its_line(
    client: TestClient, boot: Bootstrap, body: bytes
) -> None:
    """N5: pyarrow kept the bytes in the field name, and reading it raised a 500."""
    response = client.post("/v1/ingest", content=body, headers=bearer(boot.ingest_key))
    assert response.status_code in (200, 400), response.text
    result = response.json()
    line = body.count(b"\n") + 1
    assert result["accepted"] == line - 1 and result["errors"][0]["line"] == line, result
    assert "invalid UTF-8 at byte" in result["errors"][0]["reason"]


@pytest.mark.parametrize("stamp", [b"\xed\xae\xab", b"\\udbab", b"1\\ud800"])
def test_a_lone_surrogate_quoted_in_a_reason_is_escaped(
    client: TestClient, boot: Bootstrap, stamp: bytes
) -> None:
    """N6: the reason quoted the timestamp, and the response could not encode it (500)."""
    body = b'{"streams": [{"stream": {}, "values": [["' + stamp + b'", "x"]]}]}'
    headers = {**bearer(boot.ingest_key), "content-type": "application/json"}
    response = client.post("/loki/api/v1/push", content=body, headers=headers)
    assert response.status_code == 400, response.text
    reason = response.json()["errors"][0]["reason"]
    assert "timestamp" in reason and "\\ud" in reason, reason
    reject = Reject(0, "quoted \ud800 and \udcff", 1)
    assert reject.reason == "quoted \\ud800 and \\udcff"


@pytest.mark.parametrize(
    "record",
    [
        '{"severityNumber": "\\ud800"}',
        '{"severityNumber": "\ud800"}',  # sent as the CESU-8 bytes ED A0 80
        '{"\\udc00": 1}',
        '{"body": {"\\ud800x": "a"}}',
    ],
)
def test_a_lone_surrogate_in_an_otlp_json_name_is_a_client_error(
    client: TestClient, boot: Bootstrap, record: str
) -> None:
    """Found by the long fuzz run: upb looks field and enum names up in C, and a surrogate in
    one surfaced as SystemError, a 500."""
    body = '{"resourceLogs": [{"scopeLogs": [{"logRecords": [' + record + "]}]}]}"
    headers = {**bearer(boot.ingest_key), "content-type": "application/json"}
    response = client.post(
        "/v1/logs", content=body.encode("utf-8", "surrogatepass"), headers=headers
    )
    assert response.status_code == 400, response.text
    assert "unpaired surrogate" in response.text


# ---- Found by the long fuzz run on the parsers (FUZZ_SCALE=40 and direct parser runs) --------


@pytest.mark.parametrize(
    "level",
    ['"²"', '"+-1"', '"' + "1" * 5000 + '"', "NaN", "-Infinity", "1" * 5000],
)
def test_a_severity_no_number_can_hold_is_kept_as_text(
    client: TestClient, boot: Bootstrap, level: str
) -> None:
    """int() refused them inside the severity mapping: ValueError, OverflowError, a 500."""
    body = '{"m":"ok","level":"info"}\n{"m":"x","level":' + level + "}"
    response = client.post("/v1/ingest", content=body, headers=bearer(boot.ingest_key))
    assert response.status_code == 200, response.text
    assert response.json()["accepted"] >= 1


@pytest.mark.parametrize("stamp", ['"' + "2" * 5000 + '"', '"²"', '"١٢٣"'])
def test_a_loki_timestamp_of_odd_digits_rejects_its_entry(
    client: TestClient, boot: Bootstrap, stamp: str
) -> None:
    """A 5,000-digit timestamp exceeded Python's int conversion limit; "²" is a digit to
    str.isdigit but not to int()."""
    headers = {**bearer(boot.ingest_key), "content-type": "application/json"}
    # Pairs take the bulk path; structured metadata (a third element) the entry-by-entry one.
    for metadata in ("", ",{}"):
        entries = f'[{stamp},"x"{metadata}],["{NOW_NS}","y"{metadata}]'
        body = '{"streams":[{"stream":{},"values":[' + entries + "]}]}"
        response = client.post("/loki/api/v1/push", content=body.encode(), headers=headers)
        assert response.status_code == 400, response.text  # as Loki: any rejected entry
        assert response.json()["accepted"] == 1
        assert "nanoseconds since the epoch" in response.json()["errors"][0]["reason"]


def test_an_otlp_json_number_too_large_for_a_double_is_a_client_error(
    client: TestClient, boot: Bootstrap
) -> None:
    value = '{"doubleValue": -1' + "0" * 400 + "}"
    record = '{"timeUnixNano": "' + NOW_NS + '", "body": ' + value + "}"
    body = '{"resourceLogs": [{"scopeLogs": [{"logRecords": [' + record + "]}]}]}"
    headers = {**bearer(boot.ingest_key), "content-type": "application/json"}
    response = client.post("/v1/logs", content=body, headers=headers)
    assert response.status_code == 400, response.text


def test_a_problem_detail_quoting_a_lone_surrogate_is_still_answered() -> None:
    from fastapi import FastAPI

    from astralog.api import problems
    from astralog.errors import BadRequest

    app = FastAPI()
    problems.install(app)

    @app.get("/echo")
    def echo() -> None:
        raise BadRequest("unknown field '\ud800'")

    answer = TestClient(app).get("/echo")
    assert answer.status_code == 400
    assert answer.headers["content-type"] == "application/problem+json"
    assert answer.json()["detail"] == "unknown field '\ud800'"


# ---- An acknowledged batch must stay flushable (red team, after issue 11) --------------------


def _loki_headers(boot: Bootstrap) -> dict[str, str]:
    return {**bearer(boot.ingest_key), "content-type": "application/json"}


@pytest.mark.parametrize("path", ["/loki/api/v1/push", "/api/prom/push"])
@pytest.mark.parametrize("metadata", ["", ",{}"])
def test_a_loki_entry_whose_line_is_not_text_is_rejected(
    client: TestClient, boot: Bootstrap, path: str, metadata: str
) -> None:
    """A null line was acknowledged (204), and its batch could never be flushed: the org's
    later events waited in the WAL behind it until the shared disk budget refused everyone."""
    entries = f'["{NOW_NS}",null{metadata}],["{NOW_NS}","ok"{metadata}],["{NOW_NS}",7{metadata}]'
    body = '{"streams":[{"stream":{"job":"x"},"values":[' + entries + "]}]}"
    response = client.post(path, content=body, headers=_loki_headers(boot))
    assert response.status_code == 400, response.text  # as Loki: any rejected entry
    result = response.json()
    assert result["accepted"] == 1, result
    assert [e["index"] for e in result["errors"]] == [0, 2], result
    assert "the log line must be a string, found null" in result["errors"][0]["reason"]
    alone = '{"streams":[{"stream":{"job":"x"},"values":[["' + NOW_NS + '",null]]}]}'
    assert client.post(path, content=alone, headers=_loki_headers(boot)).status_code == 400


@pytest.mark.parametrize("path", ["/loki/api/v1/push", "/api/prom/push"])
@pytest.mark.parametrize("labels", ["[1]", '"str"', "1", "true", '[["a","b"]]'])
def test_loki_labels_that_are_not_an_object_are_a_client_error(
    client: TestClient, boot: Bootstrap, path: str, labels: str
) -> None:
    body = '{"streams":[{"stream":' + labels + ',"values":[["' + NOW_NS + '","x"]]}]}'
    response = client.post(path, content=body, headers=_loki_headers(boot))
    assert response.status_code == 400, response.text
    assert "streams[0].stream must be an object of labels" in response.text


def _with_body(table: pa.Table, body: pa.Array) -> pa.Table:
    """``table`` with ``body`` as its Body column, still declaring the canonical schema (as
    the Loki parser's table did): the schema says non-nullable, the data holds nulls."""
    columns = [body if name == "Body" else table[name] for name in table.column_names]
    return pa.Table.from_arrays(columns, schema=log_schema())


def test_rows_a_parser_leaves_invalid_are_rejected_before_the_wal(
    client: TestClient, boot: Bootstrap, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Whatever a parser gets wrong, no row the canonical schema refuses reaches the WAL:
    such a row is rejected with a reason, the others are stored."""
    real = formats.parse_loki_push

    def buggy(body: bytes, content_type: str, ctx: NormaliseContext) -> Parsed:
        parsed = real(body, content_type, ctx)
        body_column = pa.array([None, *parsed.table["Body"].to_pylist()[1:]], pa.string())
        parsed.table = _with_body(parsed.table, body_column)
        return parsed

    monkeypatch.setattr(formats, "parse_loki_push", buggy)
    entries = f'["{NOW_NS}","lost"],["{NOW_NS}","kept"]'
    body = '{"streams":[{"stream":{"job":"x"},"values":[' + entries + "]}]}"
    response = client.post("/loki/api/v1/push", content=body, headers=_loki_headers(boot))
    assert response.status_code == 400, response.text  # as Loki: any rejected entry
    result = response.json()
    assert result["accepted"] == 1 and result["errors"][0]["index"] == 0, result
    assert "Body" in result["errors"][0]["reason"], result
    search = client.post(
        "/v1/search", json={"query": "job:x", "start": "now-1h"}, headers=bearer(boot.admin_token)
    )
    assert [e["body"] for e in search.json()["events"]] == ["kept"], search.text


def test_the_wal_refuses_a_null_in_a_column_that_cannot_hold_one(tmp_path: Path) -> None:
    from astralog.ingest.wal import WriteAheadLog
    from astralog.settings import WalSettings
    from tests.connector_contract import make_events

    table = _with_body(make_events(2), pa.array([None, "x"], pa.string()))

    async def append() -> None:
        with WriteAheadLog(WalSettings(directory=tmp_path, fsync=False)) as wal:
            await wal.append(table)

    import asyncio

    with pytest.raises(ValueError, match="Body"):
        asyncio.run(append())


def test_a_null_among_json_events_is_rejected_with_its_index(
    client: TestClient, boot: Bootstrap
) -> None:
    response = client.post("/v1/ingest", content='[null, {"a":1}]', headers=bearer(boot.ingest_key))
    assert response.status_code == 200, response.text
    result = response.json()
    assert result["accepted"] == 1 and result["rejected"] == 1, result
    assert result["errors"][0]["index"] == 0
    assert "found null" in result["errors"][0]["reason"], result


@pytest.mark.parametrize("body", [" ", "\n", " \r\n\t "])
def test_a_body_of_whitespace_is_refused_like_an_empty_one(
    client: TestClient, boot: Bootstrap, body: str
) -> None:
    response = client.post("/v1/ingest", content=body, headers=bearer(boot.ingest_key))
    assert response.status_code == 400, response.text
    assert "only whitespace" in response.text
