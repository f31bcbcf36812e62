"""Every ingest format, end to end: a real shipper or client library -> a real gateway process ->
the Parquet files in the bucket, read back with DuckDB and checked field by field.

One gateway serves the whole module (:mod:`tests.gateway`). Each test tags its events with its
own marker, so the tests share the bucket without seeing each other's rows.
"""

from __future__ import annotations

import gzip
import json
import logging
import os
import re
import shutil
import subprocess
import time
import uuid
import warnings
import zlib
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import zstandard
from elasticsearch import AuthenticationException, Elasticsearch, helpers
from opentelemetry.exporter.otlp.proto.http import Compression
from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
from opentelemetry.sdk._logs import LoggerProvider, LoggingHandler, ReadableLogRecord
from opentelemetry.sdk._logs.export import BatchLogRecordProcessor, LogRecordExportResult
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider

from tests.gateway import Gateway, gateway_fixture  # noqa: F401 - provides `gateway`
from tests.ingest_helpers import free_port, listening_daemon

pytestmark = pytest.mark.slow
BY_MARKER = "LogAttributes['marker'] = $marker"


def _marker() -> str:
    return f"e2e-{uuid.uuid4().hex[:12]}"


def _iso_and_ns(seconds_ago: float) -> tuple[str, int]:
    """An RFC 3339 time with microseconds a little in the past, and its exact nanoseconds."""
    moment = datetime.now(UTC).replace(microsecond=123456) - timedelta(seconds=seconds_ago)
    whole = int(moment.replace(microsecond=0).timestamp())
    return moment.isoformat().replace("+00:00", "Z"), whole * 10**9 + 123_456_000


def _by(rows: Sequence[dict[str, Any]], key: str) -> dict[str, dict[str, Any]]:
    return {row["LogAttributes"][key]: row for row in rows}


def _assert_tenant(rows: Sequence[dict[str, Any]], gw: Gateway) -> None:
    assert {(r["OrgId"], r["SourceId"]) for r in rows} == {(gw.org_id, gw.source_id)}
    assert len({r["EventId"] for r in rows}) == len(rows)


# ---- OpenTelemetry Python SDK: LoggingHandler -> BatchLogRecordProcessor -> OTLP/HTTP ----------


class RecordingExporter(OTLPLogExporter):
    """The real OTLP/HTTP exporter, remembering each export's outcome (the processor drops it)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.results: list[LogRecordExportResult] = []

    def export(self, batch: Sequence[ReadableLogRecord]) -> LogRecordExportResult:
        result = super().export(batch)
        self.results.append(result)
        return result


class CreatedTimes(logging.Filter):
    """Keeps each record's creation time: the SDK sends it as the OTLP timestamp."""

    def __init__(self) -> None:
        super().__init__()
        self.created: dict[str, int] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        self.created[str(getattr(record, "marker", ""))] = int(record.created * 1e9)
        return True


def _otel_logger(
    gw: Gateway, name: str
) -> tuple[logging.Logger, LoggerProvider, RecordingExporter, CreatedTimes]:
    exporter = RecordingExporter(
        endpoint=f"{gw.url}/v1/logs",
        headers={"Authorization": f"Bearer {gw.ingest_key}"},
        compression=Compression.Gzip,
    )
    resource = Resource.create({"service.name": "checkout", "deployment.environment": "e2e"})
    provider = LoggerProvider(resource=resource)
    provider.add_log_record_processor(BatchLogRecordProcessor(exporter))
    with warnings.catch_warnings():
        # The SDK's handler is deprecated in favour of opentelemetry-instrumentation-logging,
        # which is not installed; it is still the handler the SDK ships and documents.
        warnings.simplefilter("ignore", DeprecationWarning)
        handler = LoggingHandler(level=logging.DEBUG, logger_provider=provider)
    created = CreatedTimes()
    logger = logging.getLogger(name)
    logger.propagate = False
    logger.setLevel(logging.DEBUG)
    logger.addFilter(created)
    logger.addHandler(handler)
    return logger, provider, exporter, created


def test_opentelemetry_sdk_logging_handler_with_trace_context(gateway: Gateway) -> None:
    name = f"e2e.otel.{uuid.uuid4().hex[:8]}"
    logger, provider, exporter, created = _otel_logger(gateway, name)
    tracer = TracerProvider().get_tracer("e2e")
    inside, outside, failing = _marker(), _marker(), _marker()
    try:
        with tracer.start_as_current_span("checkout") as span:
            context = span.get_span_context()
            logger.warning("payment %s declined", "p-17", extra={"marker": inside, "order.id": 42})
            try:
                raise ValueError("card expired")
            except ValueError:
                logger.exception("charge failed", extra={"marker": failing})
        logger.info("cart emptied", extra={"marker": outside, "items": 3})
        assert provider.force_flush(10_000)
    finally:
        provider.shutdown()
    assert exporter.results == [LogRecordExportResult.SUCCESS] * len(exporter.results)
    assert exporter.results, "the SDK exported nothing"

    markers = [inside, outside, failing]
    rows = _by(gateway.wait_for_rows(3, "LogAttributes['marker'] IN $m", {"m": markers}), "marker")
    _assert_tenant(list(rows.values()), gateway)
    warn, info, error = rows[inside], rows[outside], rows[failing]
    assert (warn["SeverityText"], warn["SeverityNumber"]) == ("WARN", 13)
    assert (info["SeverityText"], info["SeverityNumber"]) == ("INFO", 9)
    assert (error["SeverityText"], error["SeverityNumber"]) == ("ERROR", 17)
    assert warn["Body"] == "payment p-17 declined"
    assert info["Body"] == "cart emptied"
    for marker, row in rows.items():
        assert abs(row["Timestamp"] - created.created[marker]) < 1000  # float seconds: 1 us
        assert row["ObservedTimestamp"] >= row["Timestamp"]
        assert row["ServiceName"] == "checkout"
        assert row["ScopeName"] == name
        assert row["ResourceAttributes"]["deployment.environment"] == "e2e"
        assert row["ResourceAttributes"]["telemetry.sdk.language"] == "python"
    assert warn["LogAttributes"]["order.id"] == "42"
    assert info["LogAttributes"]["items"] == "3"
    assert error["LogAttributes"]["exception.type"] == "ValueError"
    assert "card expired" in error["LogAttributes"]["exception.stacktrace"]
    trace_id, span_id = format(context.trace_id, "032x"), format(context.span_id, "016x")
    for row in (warn, error):
        assert (row["TraceId"], row["SpanId"]) == (trace_id, span_id)
        assert row["TraceFlags"] == int(context.trace_flags)
    assert (info["TraceId"], info["SpanId"], info["TraceFlags"]) == ("", "", 0)


# ---- OTLP/JSON over plain HTTP ---------------------------------------------------------------


def _otlp_json(marker: str, ns: int) -> dict[str, Any]:
    def attr(key: str, value: dict[str, Any]) -> dict[str, Any]:
        return {"key": key, "value": value}

    record = {
        "timeUnixNano": str(ns),
        "severityNumber": 17,
        "severityText": "Error",
        "traceId": "5B8EFFF798038103D269B633813FC60C",
        "spanId": "EEE19B7EC3C1B174",
        "flags": 1,
        "body": {"stringValue": "upstream timed out"},
        "attributes": [
            attr("marker", {"stringValue": marker}),
            attr("http.status_code", {"intValue": "504"}),
            attr("retry", {"boolValue": True}),
            attr("latency", {"doubleValue": 1.5}),
            attr("tags", {"arrayValue": {"values": [{"stringValue": "a"}, {"intValue": "2"}]}}),
            attr("peer", {"kvlistValue": {"values": [attr("host", {"stringValue": "db-1"})]}}),
        ],
    }
    future = {
        "timeUnixNano": str(time.time_ns() + 30 * 86_400 * 10**9),
        "body": {"stringValue": "from a clock in the future"},
        "attributes": [attr("marker", {"stringValue": marker})],
    }
    return {
        "resourceLogs": [
            {
                "resource": {"attributes": [attr("service.name", {"stringValue": "gateway"})]},
                "scopeLogs": [
                    {"scope": {"name": "nginx", "version": "1.2"}, "logRecords": [record, future]}
                ],
            }
        ]
    }


def test_otlp_json_with_httpx_and_partial_success(gateway: Gateway) -> None:
    marker = _marker()
    ns = time.time_ns() - 5 * 10**9
    response = httpx.post(
        f"{gateway.url}/v1/logs",
        json=_otlp_json(marker, ns),
        headers={"Authorization": f"Bearer {gateway.ingest_key}"},
    )
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/json"
    partial = response.json()["partialSuccess"]
    assert partial["rejectedLogRecords"] == "1"
    assert "in the future" in partial["errorMessage"]

    (row,) = gateway.wait_for_rows(1, BY_MARKER, {"marker": marker})
    _assert_tenant([row], gateway)
    assert row["Timestamp"] == ns
    assert (row["SeverityText"], row["SeverityNumber"]) == ("Error", 17)  # as sent
    assert (row["ServiceName"], row["Body"]) == ("gateway", "upstream timed out")
    assert (row["ScopeName"], row["ScopeVersion"]) == ("nginx", "1.2")
    assert (row["TraceId"], row["SpanId"], row["TraceFlags"]) == (
        "5b8efff798038103d269b633813fc60c",
        "eee19b7ec3c1b174",
        1,
    )
    attributes = row["LogAttributes"]
    assert attributes["http.status_code"] == "504"
    assert attributes["retry"] == "true"
    assert attributes["latency"] == "1.5"
    assert json.loads(attributes["tags"]) == ["a", 2]
    assert attributes["peer.host"] == "db-1"


# ---- the elasticsearch client's bulk helpers -------------------------------------------------


def _es_actions(marker: str, iso: str) -> list[dict[str, Any]]:
    return [
        {
            "_index": "web-logs",
            "_source": {
                "@timestamp": iso,
                "log": {"level": "warn"},
                "message": "slow response",
                "service": {"name": "storefront"},
                "marker": marker,
                "n": 1,
            },
        },
        {
            "_op_type": "create",
            "_index": "web-logs",
            "_id": f"doc-2-{marker}",  # a seen _id would be a 409 conflict, as in Elasticsearch
            "_source": {"message": "created", "marker": marker, "n": 2},
        },
        {"_op_type": "delete", "_index": "web-logs", "_id": f"doc-2-{marker}"},
        {"_index": "audit", "message": "no _source wrapper", "marker": marker, "n": 3},
    ]


def test_elasticsearch_bulk_helpers_per_item_results(gateway: Gateway) -> None:
    es = Elasticsearch(
        f"{gateway.url}/v1/es", basic_auth=("astralog", gateway.ingest_key), http_compress=True
    )
    assert es.info()["version"]["number"].startswith("8.")  # the product check passed
    streamed, summarised = _marker(), _marker()
    iso, ns = _iso_and_ns(30)

    results = list(
        helpers.streaming_bulk(es, _es_actions(streamed, iso), raise_on_error=False, chunk_size=10)
    )
    assert [ok for ok, _ in results] == [True, True, False, True]
    (op, created), (_, explicit), (_, deleted), (_, plain) = (
        next(iter(item.items())) for _, item in results
    )
    assert op == "index" and created["status"] == 201 and created["result"] == "created"
    assert explicit["_id"] == f"doc-2-{streamed}"
    assert deleted["status"] == 400
    assert deleted["error"]["type"] == "illegal_argument_exception"
    assert "immutable" in deleted["error"]["reason"]
    assert plain["_index"] == "audit"

    with pytest.raises(helpers.BulkIndexError) as raised:
        helpers.bulk(es, _es_actions(summarised, iso))
    assert [next(iter(e)) for e in raised.value.errors] == ["delete"]

    for marker in (streamed, summarised):
        rows = gateway.wait_for_rows(3, BY_MARKER, {"marker": marker})
        _assert_tenant(rows, gateway)
        by_n = {row["LogAttributes"]["n"]: row for row in rows}
        assert sorted(by_n) == ["1", "2", "3"]  # the delete stored nothing
        first = by_n["1"]
        assert first["Timestamp"] == ns
        assert (first["SeverityText"], first["SeverityNumber"]) == ("WARN", 13)
        assert (first["ServiceName"], first["Body"]) == ("storefront", "slow response")
        indexes = {n: row["ResourceAttributes"]["elasticsearch.index"] for n, row in by_n.items()}
        assert indexes == {"1": "web-logs", "2": "web-logs", "3": "audit"}
    # The ids the client was told are the stored EventIds (or its own _id).
    assert created["_id"] in {
        row["EventId"] for row in gateway.rows(BY_MARKER, {"marker": streamed})
    }


def test_elasticsearch_client_reads_the_reason_of_a_refusal(gateway: Gateway) -> None:
    wrong = gateway.ingest_key[:-6] + "AAAAAA"
    es = Elasticsearch(f"{gateway.url}/v1/es", basic_auth=("astralog", wrong))
    with pytest.raises(AuthenticationException) as raised:
        helpers.bulk(es, [{"message": "never stored", "marker": _marker()}])
    assert raised.value.meta.status == 401
    assert "checksum" in str(raised.value.body["error"]["reason"])


# ---- NDJSON with every Content-Encoding, and Loki push ---------------------------------------


def _deflate(data: bytes) -> bytes:
    return zlib.compress(data)


ENCODERS: dict[str, Callable[[bytes], bytes]] = {
    "gzip": gzip.compress,
    "zstd": lambda data: zstandard.ZstdCompressor().compress(data),
    "deflate": _deflate,
}


@pytest.mark.parametrize("encoding", sorted(ENCODERS))
def test_compressed_ndjson(gateway: Gateway, encoding: str) -> None:
    marker = _marker()
    iso, ns = _iso_and_ns(60)
    events = [
        {
            "timestamp": iso,
            "level": "error",
            "service": "api",
            "message": f"request {i} failed",
            "marker": marker,
            "i": i,
            "http": {"status": 503, "path": "/checkout"},
            "trace_id": "0AF7651916CD43DD8448EB211C80319C",
            "span_id": "b7ad6b7169203331",
            "host": "web-3",
        }
        for i in range(50)
    ]
    body = "\n".join(json.dumps(e) for e in events).encode() + b"\n"
    response = httpx.post(
        f"{gateway.url}/v1/ingest",
        content=ENCODERS[encoding](body),
        headers={
            "Authorization": f"Bearer {gateway.ingest_key}",
            "Content-Type": "application/x-ndjson",
            "Content-Encoding": encoding,
        },
    )
    assert response.status_code == 200, response.text
    assert response.json() == {"accepted": 50, "rejected": 0, "errors": []}

    rows = gateway.wait_for_rows(50, BY_MARKER, {"marker": marker})
    _assert_tenant(rows, gateway)
    assert sorted(int(r["LogAttributes"]["i"]) for r in rows) == list(range(50))
    for row in rows:
        assert row["Timestamp"] == ns
        assert (row["SeverityText"], row["SeverityNumber"], row["ServiceName"]) == (
            "ERROR",
            17,
            "api",
        )
        assert row["Body"] == f"request {row['LogAttributes']['i']} failed"
        assert row["LogAttributes"]["http.status"] == "503"
        assert row["LogAttributes"]["http.path"] == "/checkout"
        assert row["TraceId"] == "0af7651916cd43dd8448eb211c80319c"
        assert row["SpanId"] == "b7ad6b7169203331"
        assert row["ResourceAttributes"]["host.name"] == "web-3"


def test_loki_push_json(gateway: Gateway) -> None:
    marker = _marker()
    ns = time.time_ns() - 10 * 10**9
    push = {
        "streams": [
            {
                "stream": {"service_name": "billing", "env": "prod", "run": marker},
                "values": [
                    [str(ns), "invoice 7 sent"],
                    [str(ns + 1), "invoice 8 failed", {"level": "error", "marker": marker}],
                ],
            }
        ]
    }
    response = httpx.post(
        f"{gateway.url}/loki/api/v1/push",
        json=push,
        headers={"Authorization": f"Bearer {gateway.ingest_key}"},
    )
    assert response.status_code == 204, response.text

    rows = gateway.wait_for_rows(2, "ResourceAttributes['run'] = $marker", {"marker": marker})
    _assert_tenant(rows, gateway)
    sent, failed = sorted(rows, key=lambda r: r["Timestamp"])
    assert (sent["Timestamp"], failed["Timestamp"]) == (ns, ns + 1)
    assert (sent["Body"], failed["Body"]) == ("invoice 7 sent", "invoice 8 failed")
    assert (sent["ServiceName"], failed["ServiceName"]) == ("billing", "billing")
    assert (sent["SeverityText"], sent["SeverityNumber"]) == ("", 0)
    assert (failed["SeverityText"], failed["SeverityNumber"]) == ("ERROR", 17)
    assert sent["ResourceAttributes"]["env"] == "prod"
    assert failed["LogAttributes"] == {"level": "error", "marker": marker}


# ---- syslog-ng's http() destination, fed by loggen -------------------------------------------

SYSLOG_MESSAGES = 500
# syslog-ng's own names (ISODATE, MESSAGE, PROGRAM, ...) are not fields Astralog knows, so the
# template names the well-known fields and drops the duplicates; the rest of the RFC 5424 scope
# (FACILITY, PID) stays as attributes.
SYSLOG_BODY = (
    "$(format-json --scope rfc5424 --exclude DATE --exclude MESSAGE --exclude PROGRAM "
    "--exclude HOST --exclude PRIORITY timestamp=${ISODATE} message=${MESSAGE} "
    "level=${LEVEL} service=${PROGRAM} host=${HOST} marker=%s)"
)


def _syslog_ng_config(gw: Gateway, port: int, marker: str) -> str:
    return f"""@version: 3.38
options {{ stats-freq(0); keep-hostname(yes); }};
source s_loggen {{ network(ip("127.0.0.1") port({port}) transport("tcp")); }};
destination d_astralog {{
  http(
    url("{gw.url}/v1/ingest")
    method("POST")
    headers("Authorization: Bearer {gw.ingest_key}", "Content-Type: application/x-ndjson")
    body("{SYSLOG_BODY % marker}")
    batch-lines(100)
    batch-timeout(200)
  );
}};
log {{ source(s_loggen); destination(d_astralog); }};
"""


@pytest.fixture
def syslog_ng(tmp_path: Path, gateway: Gateway) -> Iterator[tuple[int, str, Path]]:
    """A syslog-ng listening on a loopback port, posting to the gateway; it FAILS if it cannot
    start, with its output."""
    binary = shutil.which("syslog-ng") or "/usr/sbin/syslog-ng"
    assert os.access(binary, os.X_OK), "syslog-ng is not installed: run scripts/install.sh test"
    port, marker = free_port(), _marker()
    conf, log = tmp_path / "syslog-ng.conf", tmp_path / "syslog-ng.log"
    conf.write_text(_syslog_ng_config(gateway, port, marker))
    command = [
        binary, "-F", "-f", str(conf), "--no-caps", "-R", str(tmp_path / "persist"),
        "-p", str(tmp_path / "pid"), "--control", str(tmp_path / "ctl"),
    ]  # fmt: skip
    with listening_daemon("syslog-ng", command, port, log):
        yield port, marker, log


def test_syslog_ng_http_destination_fed_by_loggen(
    gateway: Gateway, syslog_ng: tuple[int, str, Path]
) -> None:
    port, marker, log = syslog_ng
    loggen = shutil.which("loggen") or "/usr/bin/loggen"
    before = time.time_ns()
    sent = subprocess.run(
        [loggen, "--inet", "--stream", "--number", str(SYSLOG_MESSAGES), "--rate", "5000",
         "--quiet", "127.0.0.1", str(port)],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert sent.returncode == 0, f"loggen failed:\n{sent.stdout}\n{sent.stderr}"

    rows = gateway.wait_for_rows(
        SYSLOG_MESSAGES, BY_MARKER, {"marker": marker}, describe=lambda: log.read_text()[-3000:]
    )
    _assert_tenant(rows, gateway)
    sequence = [re.match(r"seq: (\d+),", row["Body"]) for row in rows]
    assert all(sequence), [row["Body"] for row in rows if not re.match(r"seq: ", row["Body"])][:3]
    assert sorted(int(m.group(1)) for m in sequence if m) == list(range(SYSLOG_MESSAGES))
    for row in rows:
        # loggen stamps messages with whole seconds; ISODATE carries them with the zone.
        assert before - 2 * 10**9 <= row["Timestamp"] <= time.time_ns()
        assert row["Timestamp"] % 10**9 == 0
        assert (row["SeverityText"], row["SeverityNumber"]) == ("INFO", 9)
        assert row["ServiceName"] == "prg00000"
        assert row["ResourceAttributes"]["host.name"] == "localhost"
        assert row["LogAttributes"]["FACILITY"] == "auth"
        assert row["LogAttributes"]["PID"] == "1234"
