"""Hostile inputs found by a second review: each is refused with a 4xx or answered correctly,
and none costs the service more than a linear amount of work or an open connection forever."""

from __future__ import annotations

import gzip
import json
import socket
import time
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import (
    ExportLogsPartialSuccess,
    ExportLogsServiceRequest,
    ExportLogsServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord, ResourceLogs, ScopeLogs

from astralog.errors import BadRequest
from astralog.ingest.decode import MAX_GZIP_MEMBERS, decompress
from astralog.runtime import Bootstrap
from tests.conftest import bearer
from tests.gateway import running_gateway

_EVENT = b'{"message":"m"}\n'


# ---- decompression stays linear -------------------------------------------------------------


def test_many_gzip_members_are_refused_without_quadratic_work() -> None:
    body = gzip.compress(_EVENT) + gzip.compress(b"") * 60_000  # 1.2 MB
    started = time.process_time()
    with pytest.raises(BadRequest, match="more than 10000 members"):
        decompress(body, "gzip", 100 << 20)
    # A complexity guard, not a benchmark: the quadratic decoder took 7 s of CPU here, a linear
    # one takes a few milliseconds, so a bound this generous never flakes on a busy machine.
    assert time.process_time() - started < 1.0


def test_gzip_members_up_to_the_cap_decode_in_linear_time() -> None:
    body = gzip.compress(_EVENT) * 2 + gzip.compress(b"") * (MAX_GZIP_MEMBERS - 2) + b"\0" * 9
    started = time.process_time()
    assert decompress(body, "gzip", 100 << 20) == _EVENT * 2
    assert time.process_time() - started < 1.0  # same guard as above: 0.13 s when quadratic


def test_a_many_member_gzip_body_is_a_400_over_http(client: TestClient, boot: Bootstrap) -> None:
    body = gzip.compress(_EVENT) + gzip.compress(b"") * 60_000
    headers = {**bearer(boot.ingest_key), "content-encoding": "gzip"}
    response = client.post("/v1/ingest", content=body, headers=headers)
    assert response.status_code == 400, response.text
    assert "members" in response.json()["detail"]


# ---- the root Elasticsearch routes claim only Elasticsearch's paths --------------------------


@pytest.mark.parametrize(
    "path", ["/Logs/_Bulk", "/logs/_DOC/1", "/logs/_Create/1", "/v1/es/Logs/_BULK", "/_Bulk"]
)
def test_a_document_write_in_another_case_is_refused_not_acknowledged(
    client: TestClient, boot: Bootstrap, path: str
) -> None:
    body = b'{"index":{}}\n{"message":"m"}\n'
    response = client.put(path, content=body, headers=bearer(boot.ingest_key))
    # Acknowledging it would drop the event the shipper thinks it stored.
    assert response.status_code == 400, response.text
    assert "not supported" in response.json()["error"]["reason"]


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("PUT", "/v1/sources/_x/retention", 403),
        ("PUT", "/v1/orgs/_x/plan", 404),  # operator-only: hidden from others
        ("DELETE", "/v1/connectors/_x", 403),
        ("PUT", "/v1/sources/_x/unknown", 404),
        ("PUT", "/loki/api/v1/_push", 404),
        ("PUT", "/api/prom/_x", 404),
        ("PUT", "/docs/assets/_x/y.js", 405),
        ("PUT", "/ui/_x", 405),
    ],
)
def test_astralog_paths_with_an_underscore_reach_their_own_routes(
    client: TestClient, boot: Bootstrap, method: str, path: str, status: int
) -> None:
    response = client.request(method, path, json={"days": 1}, headers=bearer(boot.ingest_key))
    assert response.status_code == status, response.text
    assert "X-Elastic-Product" not in response.headers
    assert response.headers["content-type"].startswith("application/problem+json")


# ---- Elasticsearch _id: a string Elasticsearch would take, or a per-item 400 ------------------


@pytest.mark.parametrize(
    ("doc_id", "kind", "reason"),
    [
        ({"a": 1}, "mapper_parsing_exception", "found an object"),
        ([1], "mapper_parsing_exception", "found an array"),
        (True, "mapper_parsing_exception", "found a boolean"),
        (None, "mapper_parsing_exception", "found null"),
        ("", "action_request_validation_exception", "must not be empty"),
        ("x" * 513, "action_request_validation_exception", "no longer than 512 bytes"),
        ("é" * 257, "action_request_validation_exception", "but was: 514"),
    ],
)
def test_an_invalid_id_is_refused_per_item(
    client: TestClient, boot: Bootstrap, doc_id: object, kind: str, reason: str
) -> None:
    body = "\n".join(
        json.dumps(line)
        for line in [{"index": {"_id": doc_id}}, {"message": "bad"}, {"index": {}}, {"m": "ok"}]
    )
    response = client.post("/v1/es/_bulk", content=body + "\n", headers=bearer(boot.ingest_key))
    assert response.status_code == 200, response.text
    bad, good = (item["index"] for item in response.json()["items"])
    assert bad["status"] == 400 and bad["error"]["type"] == kind
    assert reason in bad["error"]["reason"]
    assert good["status"] == 201


@pytest.mark.parametrize(("doc_id", "stored"), [(42, "42"), (1.5, "1.5"), ("a" * 512, "a" * 512)])
def test_a_number_or_a_512_byte_id_is_kept_as_elasticsearch_keeps_it(
    client: TestClient, boot: Bootstrap, doc_id: object, stored: str
) -> None:
    body = json.dumps({"create": {"_id": doc_id}}) + '\n{"message":"m"}\n'
    response = client.post("/v1/es/_bulk", content=body, headers=bearer(boot.ingest_key))
    item = response.json()["items"][0]["create"]
    assert (item["status"], item["_id"]) == (201, stored)


def test_a_too_long_id_in_the_path_is_a_400(client: TestClient, boot: Bootstrap) -> None:
    response = client.put(
        "/logs/_doc/" + "x" * 600, json={"message": "m"}, headers=bearer(boot.ingest_key)
    )
    assert response.status_code == 400
    assert "too long" in response.json()["error"]["reason"]


# ---- OTLP: out-of-range times and malformed ids refuse their record ---------------------------


def _otlp(*records: LogRecord) -> bytes:
    scope = ScopeLogs(log_records=list(records))
    return ExportLogsServiceRequest(
        resource_logs=[ResourceLogs(scope_logs=[scope])]
    ).SerializeToString()


def _post_otlp(client: TestClient, boot: Bootstrap, body: bytes) -> ExportLogsPartialSuccess:
    headers = {**bearer(boot.ingest_key), "content-type": "application/x-protobuf"}
    response = client.post("/v1/logs", content=body, headers=headers)
    assert response.status_code == 200, response.text
    return ExportLogsServiceResponse.FromString(response.content).partial_success


def _good() -> LogRecord:
    return LogRecord(time_unix_nano=time.time_ns(), body=AnyValue(string_value="ok"))


@pytest.mark.parametrize("field", ["time_unix_nano", "observed_time_unix_nano"])
def test_an_otlp_time_past_2262_refuses_its_record(
    client: TestClient, boot: Bootstrap, field: str
) -> None:
    bad = [LogRecord(**{field: ns}) for ns in (2**63, 2**64 - 1)]  # type: ignore[arg-type]
    partial = _post_otlp(client, boot, _otlp(*bad, _good()))
    assert partial.rejected_log_records == 2
    assert "after the year 2262" in partial.error_message


@pytest.mark.parametrize(
    ("trace_id", "span_id"), [(b"\1" * 15, b""), (b"\1" * 17, b"\2" * 8), (b"\1" * 16, b"\2" * 9)]
)
def test_an_otlp_id_of_the_wrong_length_refuses_its_record(
    client: TestClient, boot: Bootstrap, trace_id: bytes, span_id: bytes
) -> None:
    bad = LogRecord(time_unix_nano=time.time_ns(), trace_id=trace_id, span_id=span_id)
    partial = _post_otlp(client, boot, _otlp(bad, _good()))
    assert partial.rejected_log_records == 1
    assert "must be" in partial.error_message and "bytes" in partial.error_message


def test_otlp_json_in_any_case_is_answered_in_json(client: TestClient, boot: Bootstrap) -> None:
    record = {"timeUnixNano": str(time.time_ns()), "traceId": "abcd", "body": {"stringValue": "x"}}
    body = {"resourceLogs": [{"scopeLogs": [{"logRecords": [record]}]}]}
    headers = {**bearer(boot.ingest_key), "content-type": "Application/JSON; charset=UTF-8"}
    response = client.post("/v1/logs", json=body, headers=headers)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/json")
    partial = response.json()["partialSuccess"]
    assert partial["rejectedLogRecords"] == "1" and "traceId is 2 bytes" in partial["errorMessage"]


# ---- a body that trickles in is cut off ------------------------------------------------------


def _slow_post(url: str, key: str, seconds: float) -> tuple[bytes, float]:
    """Declare a 1 MB body, send one byte every 0.2 s; (everything the server sent, elapsed)."""
    host, port = url.removeprefix("http://").split(":")
    head = (
        f"POST /v1/ingest HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {key}\r\n"
        "Content-Type: application/x-ndjson\r\nContent-Length: 1000000\r\n\r\n"
    )
    started = time.monotonic()
    with socket.create_connection((host, int(port))) as conn:
        conn.sendall(head.encode())
        conn.settimeout(0.2)
        answer = b""
        while time.monotonic() - started < seconds:
            try:
                conn.sendall(b" ")
                chunk = conn.recv(65536)
            except TimeoutError:
                continue
            except OSError:  # reset: the server closed while bytes were in flight
                break
            if not chunk:  # closed by the server
                break
            answer += chunk
        return answer, time.monotonic() - started


@pytest.mark.slow
def test_a_trickling_body_gets_408_and_its_connection_closed(tmp_path: Path) -> None:
    with running_gateway(tmp_path, ASTRALOG_SERVER__BODY_TIMEOUT_SECONDS="1") as gateway:
        answer, elapsed = _slow_post(gateway.url, gateway.ingest_key, seconds=10)
        assert answer.startswith(b"HTTP/1.1 408"), answer[:300]
        assert b"did not arrive within 1 s" in answer
        assert elapsed < 5  # cut off near the deadline, the connection closed by the server
        health = httpx.get(gateway.url + "/healthz", timeout=5)
        assert health.status_code == 200
