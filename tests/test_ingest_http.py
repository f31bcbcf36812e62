"""Bad input over HTTP: every refusal is a clear 4xx and leaves nothing half-written.

The app runs in process with small ingest limits (see ``settings``). After each request the test
seals the WAL and runs a flush pass, then reads the Parquet files back: a refused request must
have stored nothing, a partial success exactly its valid events.
"""

from __future__ import annotations

import base64
import gzip
import json
import struct
import time
import zlib
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from google.protobuf.json_format import MessageToDict
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import (
    ExportLogsServiceRequest,
    ExportLogsServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord

from astralog.auth import credentials
from astralog.ids import base62
from astralog.runtime import Bootstrap, Runtime
from astralog.settings import Settings, load_settings
from tests.conftest import bearer
from tests.gateway import read_rows
from tests.ingest_helpers import ndjson

LIMITS = {
    "max_body_bytes": 2 << 20,
    "max_decompressed_bytes": 4 << 20,
    "max_event_bytes": 8 << 10,
    "max_fields": 50,
    "max_depth": 5,
    "max_string_bytes": 4 << 10,
    "max_future_seconds": 3600,
}


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return load_settings(data_dir=tmp_path / "data", wal={"fsync": False}, ingest=LIMITS)


def stored(client: TestClient, runtime: Runtime) -> list[dict[str, Any]]:
    """Everything acknowledged so far, after sealing the WAL and flushing it to Parquet."""
    data = runtime.data
    data.wal.force_seal()
    assert client.portal is not None
    client.portal.call(data.flusher.flush_once)
    assert not data.wal.pending_tables(), "the flush left rows in the WAL"
    return read_rows(runtime.settings.path(runtime.settings.storage.local_root))


def markers(rows: list[dict[str, Any]]) -> list[str]:
    return sorted(str(r["LogAttributes"].get("marker")) for r in rows)


def problem(response: Any, status: int, *words: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = response.json()
    assert body["status"] == status
    for word in words:
        assert word in body["detail"], body["detail"]
    return body


def post(client: TestClient, key: str, body: bytes, **headers: str) -> Any:
    return client.post("/v1/ingest", content=body, headers={**bearer(key), **headers})


# ---- malformed input inside a valid body: partial success ------------------------------------


def test_malformed_lines_are_listed_and_the_valid_ones_stored(
    client: TestClient, runtime: Runtime, boot: Bootstrap
) -> None:
    body = b"\n".join(
        [
            b'{"message": "first", "marker": "a"}',
            b'{"message": "cut off", "marker": ',
            b"",
            b'{"message": "third", "marker": "b"}',
            b"[1, 2]",
            b'"just a string"',
            b'{"message": "last", "marker": "c"}',
        ]
    )
    response = post(client, boot.ingest_key, body)
    assert response.status_code == 200, response.text
    answer = response.json()
    assert (answer["accepted"], answer["rejected"]) == (3, 3)
    assert [(e["line"], e["index"]) for e in answer["errors"]] == [(2, 1), (5, 3), (6, 4)]
    reasons = [e["reason"] for e in answer["errors"]]
    assert reasons[0].startswith("line 2: invalid JSON at column")
    assert reasons[1] == "line 5: expected a JSON object, found an array"
    assert reasons[2] == "line 6: expected a JSON object, found a string"
    assert markers(stored(client, runtime)) == ["a", "b", "c"]


@pytest.mark.parametrize(
    ("body", "words"),
    [
        (b"hello world\n", ["not JSON events", "starts with 'h'", "column 1"]),
        (b"<event>x</event>", ["starts with '<'"]),
        (b'{\n  "message": "a",\n  "level" "x"\n}\n', ["line 3, column 11"]),
        (b'[{"message": "a"}, {"message": ]', ["not a valid JSON array", "column 32"]),
    ],
)
def test_a_body_that_is_not_json_is_a_400_saying_where(
    client: TestClient, runtime: Runtime, boot: Bootstrap, body: bytes, words: list[str]
) -> None:
    problem(post(client, boot.ingest_key, body), 400, *words)
    assert stored(client, runtime) == []


def test_every_event_rejected_is_a_400_listing_them(
    client: TestClient, runtime: Runtime, boot: Bootstrap
) -> None:
    body = b'{"message": "a", "time": "yesterday-ish"}\n{"message": "b", "time": true}\n'
    answer = problem(post(client, boot.ingest_key, body), 400, "all 2 events were rejected")
    assert (answer["accepted"], answer["rejected"]) == (0, 2)
    assert [e["line"] for e in answer["errors"]] == [1, 2]
    assert all("not a usable timestamp" in e["reason"] for e in answer["errors"])
    assert stored(client, runtime) == []


def _deep(levels: int) -> dict[str, Any]:
    event: dict[str, Any] = {"leaf": 1}
    for i in range(levels - 1):
        event = {f"l{i}": event}
    return event


@pytest.mark.parametrize(
    ("bad", "kind_words"),
    [
        ({"message": "x" * (9 << 10)}, ["bytes, more than the limit of 8192", "MAX_EVENT_BYTES"]),
        ({f"f{i}": i for i in range(51)}, ["52 fields", "limit of 50", "MAX_FIELDS"]),
        ({"nest": _deep(5)}, ["nested 6 levels deep", "limit of 5", "MAX_DEPTH"]),
        ({"list": [[[[[1]]]]]}, ["nested", "MAX_DEPTH"]),
        ({"message": "y" * (5 << 10)}, ["limit of 4096", "MAX_STRING_BYTES"]),
    ],
    ids=["oversize-event", "too-many-fields", "deep-object", "deep-array", "long-string"],
)
def test_an_event_over_a_limit_is_rejected_alone(
    client: TestClient,
    runtime: Runtime,
    boot: Bootstrap,
    bad: dict[str, Any],
    kind_words: list[str],
) -> None:
    lines = [{"message": "ok", "marker": "before"}, {**bad, "marker": "bad"}]
    lines.append({"message": "ok", "marker": "after", "nest": _deep(4)})
    body = "\n".join(json.dumps(line) for line in lines).encode()
    response = post(client, boot.ingest_key, body)
    assert response.status_code == 200, response.text
    (error,) = response.json()["errors"]
    assert error["line"] == 2
    for word in kind_words:
        assert word in error["reason"], error["reason"]
    assert markers(stored(client, runtime)) == ["after", "before"]


def test_invalid_utf8_rejects_only_that_line(
    client: TestClient, runtime: Runtime, boot: Bootstrap
) -> None:
    body = ndjson(["a"]) + b'{"message": "caf\xe9 \xff", "marker": "bad"}\n' + ndjson(["b"])
    response = post(client, boot.ingest_key, body)
    assert response.status_code == 200, response.text
    (error,) = response.json()["errors"]
    assert error["line"] == 2 and "invalid UTF-8" in error["reason"]
    assert markers(stored(client, runtime)) == ["a", "b"]


def test_timestamps_outside_retention_or_too_far_ahead_are_rejected_per_event(
    client: TestClient, runtime: Runtime, boot: Bootstrap
) -> None:
    now = datetime.now(UTC)
    events = [
        {"marker": "old", "timestamp": (now - timedelta(days=31)).isoformat()},
        {"marker": "recent", "timestamp": (now - timedelta(days=29)).isoformat()},
        {"marker": "ahead", "timestamp": (now + timedelta(hours=2)).isoformat()},
        {"marker": "soon", "timestamp": (now + timedelta(minutes=30)).isoformat()},
    ]
    response = post(client, boot.ingest_key, "\n".join(json.dumps(e) for e in events).encode())
    assert response.status_code == 200, response.text
    old, ahead = response.json()["errors"]
    assert old["line"] == 1 and "older than the plan's retention of 30 days" in old["reason"]
    assert ahead["line"] == 3 and "more than 3600 seconds in the future" in ahead["reason"]
    rows = stored(client, runtime)
    assert markers(rows) == ["recent", "soon"]


# ---- refusals of the whole request -----------------------------------------------------------


def _gzip_bomb(gigabytes: int = 1) -> bytes:
    """A valid one-member gzip of ``gigabytes`` GiB of zeros (~1 MB), built in a fraction of a
    second: after a full flush every MiB of zeros compresses to the same bytes."""
    chunk = bytes(1 << 20)
    compressor = zlib.compressobj(9, zlib.DEFLATED, 31)
    first = compressor.compress(chunk) + compressor.flush(zlib.Z_FULL_FLUSH)
    steady = compressor.compress(chunk) + compressor.flush(zlib.Z_FULL_FLUSH)
    mebibytes = gigabytes << 10
    crc = 0
    for _ in range(mebibytes):
        crc = zlib.crc32(chunk, crc)
    final_empty_block = b"\x01\x00\x00\xff\xff"
    trailer = struct.pack("<II", crc, (mebibytes << 20) & 0xFFFFFFFF)
    return first + steady * (mebibytes - 1) + final_empty_block + trailer


def test_zip_bomb_is_refused_with_413_cheaply(
    client: TestClient, runtime: Runtime, boot: Bootstrap
) -> None:
    bomb = _gzip_bomb()
    assert len(bomb) < LIMITS["max_body_bytes"]  # it passes the wire limit: only inflating tells
    # CPU time, not wall time: the work done does not depend on how busy the machine is.
    started = time.process_time()
    response = post(client, boot.ingest_key, bomb, **{"Content-Encoding": "gzip"})
    spent = time.process_time() - started
    problem(response, 413, str(LIMITS["max_decompressed_bytes"]), "MAX_DECOMPRESSED_BYTES")
    assert spent < 2.0  # inflating the whole gigabyte costs several CPU seconds
    assert stored(client, runtime) == []


def test_body_over_max_body_bytes_is_413_declared_or_streamed(
    client: TestClient, runtime: Runtime, boot: Bootstrap
) -> None:
    limit = LIMITS["max_body_bytes"]
    body = ndjson([f"m{i}" for i in range(limit // 60)])
    assert len(body) > limit
    problem(post(client, boot.ingest_key, body), 413, f"larger than {limit} bytes")

    def chunks() -> Iterator[bytes]:  # no Content-Length: the limit counts as the body arrives
        for start in range(0, len(body), 64 << 10):
            yield body[start : start + (64 << 10)]

    response = client.post("/v1/ingest", content=chunks(), headers=bearer(boot.ingest_key))
    problem(response, 413, f"larger than {limit} bytes")
    assert stored(client, runtime) == []


@pytest.mark.parametrize("encoding", ["br", "compress", "gzip, br"])
def test_unknown_content_encoding_is_415(
    client: TestClient, runtime: Runtime, boot: Bootstrap, encoding: str
) -> None:
    body = gzip.compress(ndjson(["x"]))
    response = post(client, boot.ingest_key, body, **{"Content-Encoding": encoding})
    problem(response, 415, "is not supported", "gzip, zstd, deflate")
    assert stored(client, runtime) == []


@pytest.mark.parametrize(
    ("body", "encoding", "words"),
    [
        (b"", None, ["body is empty"]),
        (gzip.compress(b""), "gzip", ["body is empty"]),
        (gzip.compress(ndjson(["x"]))[:-12], "gzip", ["gzip body is truncated"]),
        (b"not gzip at all", "gzip", ["gzip body could not be decompressed"]),
    ],
    ids=["empty", "gzip-of-nothing", "truncated-gzip", "not-gzip"],
)
def test_empty_or_undecodable_bodies_are_400(
    client: TestClient,
    runtime: Runtime,
    boot: Bootstrap,
    body: bytes,
    encoding: str | None,
    words: list[str],
) -> None:
    headers = {"Content-Encoding": encoding} if encoding else {}
    problem(post(client, boot.ingest_key, body, **headers), 400, *words)
    assert stored(client, runtime) == []


# ---- who may send: keys, tokens, tenants -----------------------------------------------------


def _admin(boot: Bootstrap) -> dict[str, str]:
    return bearer(boot.admin_token)


def _key_id(key: str) -> str:
    return key.split("_")[1]


def _same_id_other_secret(key: str) -> str:
    body = f"alk_{_key_id(key)}_{'A' * 43}"
    return body + base62(zlib.crc32(body.encode()), 6)


def test_credentials_that_cannot_ingest(
    client: TestClient, runtime: Runtime, boot: Bootstrap
) -> None:
    key = boot.ingest_key
    body = ndjson(["never"])
    cases: list[tuple[dict[str, str], int, str]] = [
        ({}, 401, "no credential"),
        (bearer("hello"), 401, "malformed credential"),
        (bearer(key[:-1] + ("A" if key[-1] != "A" else "B")), 401, "checksum does not match"),
        (bearer(key[:-10]), 401, "malformed credential"),
        (bearer(credentials.generate(credentials.Kind.INGEST).secret), 401, "unknown or wrong"),
        (bearer(_same_id_other_secret(key)), 401, "unknown or wrong"),
        ({"Authorization": f"Token {key}"}, 401, "unsupported Authorization scheme"),
        (bearer(boot.admin_token), 403, "only a source's ingest key can send events"),
        (bearer(boot.operator_token), 403, "only a source's ingest key can send events"),
    ]
    for headers, status, words in cases:
        response = client.post("/v1/ingest", content=body, headers=headers)
        problem(response, status, words)
        problem(client.post("/v1/logs", content=b"", headers=headers), status, words)
    assert stored(client, runtime) == []


def test_basic_and_apikey_carry_the_key_too(
    client: TestClient, runtime: Runtime, boot: Bootstrap
) -> None:
    basic = base64.b64encode(f"astralog:{boot.ingest_key}".encode()).decode()
    for auth, marker in ((f"Basic {basic}", "basic"), (f"ApiKey {boot.ingest_key}", "apikey")):
        response = client.post(
            "/v1/ingest", content=ndjson([marker]), headers={"Authorization": auth}
        )
        assert response.status_code == 200, response.text
    assert markers(stored(client, runtime)) == ["apikey", "basic"]


def test_revoked_and_rotated_keys(client: TestClient, runtime: Runtime, boot: Bootstrap) -> None:
    source = boot.source["id"]
    keys = f"/v1/sources/{source}/keys"
    assert post(client, boot.ingest_key, ndjson(["k1"])).status_code == 200

    in_grace = client.post(
        f"{keys}/{_key_id(boot.ingest_key)}/rotate",
        json={"grace_minutes": 60},
        headers=_admin(boot),
    ).json()["key"]
    assert post(client, boot.ingest_key, ndjson(["old-in-grace"])).status_code == 200
    assert post(client, in_grace, ndjson(["k2"])).status_code == 200

    past_grace = client.post(
        f"{keys}/{_key_id(in_grace)}/rotate", json={"grace_minutes": 0}, headers=_admin(boot)
    ).json()["key"]
    problem(post(client, in_grace, ndjson(["never-1"])), 401, "expired or was rotated")
    assert post(client, past_grace, ndjson(["k3"])).status_code == 200

    revoked = client.post(f"{keys}/{_key_id(past_grace)}/revoke", headers=_admin(boot))
    assert revoked.json()["state"] == "revoked"
    problem(post(client, past_grace, ndjson(["never-2"])), 401, "revoked")
    assert markers(stored(client, runtime)) == ["k1", "k2", "k3", "old-in-grace"]


def _org_with_key(client: TestClient, boot: Bootstrap, name: str, **plan: Any) -> dict[str, Any]:
    """A new org (on ``plan`` when given) with an admin token, a source and its ingest key."""
    operator = bearer(boot.operator_token)
    org = client.post("/v1/orgs", json={"name": name, "plan": "pro"}, headers=operator).json()
    if plan:
        changed = client.put(f"/v1/orgs/{org['id']}/plan", json=plan, headers=operator)
        assert changed.status_code == 200, changed.text
    token = client.post(
        f"/v1/orgs/{org['id']}/tokens",
        json={"name": "admin", "scopes": ["sources:write", "keys:write"]},
        headers=operator,
    ).json()["token"]
    source = client.post("/v1/sources", json={"name": "app"}, headers=bearer(token)).json()
    key = client.post(f"/v1/sources/{source['id']}/keys", headers=bearer(token)).json()["key"]
    return {"org": org["id"], "source": source["id"], "key": key}


def test_org_and_source_come_from_the_key_never_from_the_request(
    client: TestClient, runtime: Runtime, boot: Bootstrap
) -> None:
    victim_org, victim_source = boot.org["id"], boot.source["id"]
    sibling = client.post("/v1/sources", json={"name": "sibling"}, headers=_admin(boot)).json()
    sibling_key = client.post(f"/v1/sources/{sibling['id']}/keys", headers=_admin(boot)).json()
    other = _org_with_key(client, boot, "globex")
    spoof = {
        "OrgId": victim_org, "SourceId": victim_source, "org_id": victim_org,
        "source_id": victim_source, "org": victim_org, "source": victim_source,
        "resource": {"org_id": victim_org},
    }  # fmt: skip
    headers = {"X-Org-Id": victim_org, "X-Source-Id": victim_source}
    for key, marker in ((sibling_key["key"], "sibling"), (other["key"], "other")):
        response = post(client, key, ndjson([marker], **spoof), **headers)
        assert response.status_code == 200, response.text

    rows = stored(client, runtime)
    owner = {r["LogAttributes"]["marker"]: (r["OrgId"], r["SourceId"]) for r in rows}
    assert owner == {
        "sibling": (victim_org, sibling["id"]),
        "other": (other["org"], other["source"]),
    }
    bucket = runtime.settings.path(runtime.settings.storage.local_root)
    partitions = {p.relative_to(bucket).parts[:2] for p in bucket.rglob("*.parquet")}
    assert partitions == {
        (f"org={victim_org}", f"source={sibling['id']}"),
        (f"org={other['org']}", f"source={other['source']}"),
    }
    assert not list(bucket.glob(f"org={victim_org}/source={victim_source}"))


# ---- rate limits and idempotency -------------------------------------------------------------

TINY = {
    "plan": "enterprise",
    "overrides": {
        "ingest_events_per_second": 10,
        "source_events_per_second": 10,
        "ingest_burst_seconds": 1,
    },
}


def test_rate_limit_is_429_with_retry_after_and_quota_headers(
    client: TestClient, runtime: Runtime, boot: Bootstrap
) -> None:
    tiny = _org_with_key(client, boot, "tiny", **TINY)
    first = post(client, tiny["key"], ndjson([f"ok{i}" for i in range(8)]))
    assert first.status_code == 200, first.text
    assert first.headers["X-RateLimit-Limit"] == "10"
    # Floor of the tokens left: 2. (A fresh bucket starts a hair under its capacity while
    # RateLimiter.take refills it with a clock read before the bucket existed, hence 1 too.)
    assert first.headers["X-RateLimit-Remaining"] in ("1", "2")
    assert int(first.headers["X-RateLimit-Reset"]) >= 1

    refused = post(client, tiny["key"], ndjson([f"over{i}" for i in range(5)]))
    problem(refused, 429, "ingest rate of 10 events/s exceeded")
    assert int(refused.headers["Retry-After"]) >= 1
    assert refused.headers["X-RateLimit-Limit"] == "10"
    assert int(refused.headers["X-RateLimit-Remaining"]) < 5
    assert int(refused.headers["X-RateLimit-Reset"]) >= 1

    too_big = post(client, tiny["key"], ndjson([f"big{i}" for i in range(11)]))
    problem(too_big, 413, "more than the", "burst of 10 events")
    # Another org is not slowed down by this one.
    assert post(client, boot.ingest_key, ndjson(["neighbour"])).status_code == 200
    assert markers(stored(client, runtime)) == sorted([f"ok{i}" for i in range(8)] + ["neighbour"])


def test_idempotency_key_replays_the_answer_and_stores_once(
    client: TestClient, runtime: Runtime, boot: Bootstrap
) -> None:
    body = ndjson(["once-a", "once-b"]) + b"not json\n"
    headers = {"Idempotency-Key": "batch-0001"}
    first = post(client, boot.ingest_key, body, **headers)
    assert first.status_code == 200 and "Idempotent-Replayed" not in first.headers
    for _ in range(2):
        again = post(client, boot.ingest_key, body, **headers)
        assert again.status_code == 200
        assert again.headers["Idempotent-Replayed"] == "true"
        assert (
            again.json()
            == first.json()
            == {
                "accepted": 2,
                "rejected": 1,
                "errors": [again.json()["errors"][0]],
            }
        )
    # Concurrent retries of a new key: one runs, the others wait and replay its answer.
    with ThreadPoolExecutor(4) as pool:
        answers = list(
            pool.map(
                lambda _: post(
                    client, boot.ingest_key, ndjson(["race"]), **{"Idempotency-Key": "r"}
                ),
                range(4),
            )
        )
    assert sorted(a.headers.get("Idempotent-Replayed", "no") for a in answers) == [
        "no", "true", "true", "true",
    ]  # fmt: skip
    problem(
        post(client, boot.ingest_key, ndjson(["x"]), **{"Idempotency-Key": "a b"}), 400, "printable"
    )
    assert markers(stored(client, runtime)) == ["once-a", "once-b", "race"]


def test_a_refused_request_is_not_remembered_by_its_idempotency_key(
    client: TestClient, runtime: Runtime, boot: Bootstrap
) -> None:
    headers = {"Idempotency-Key": "retry-me"}
    problem(post(client, boot.ingest_key, b"oops", **headers), 400)
    fixed = post(client, boot.ingest_key, ndjson(["fixed"]), **headers)
    assert fixed.status_code == 200 and "Idempotent-Replayed" not in fixed.headers
    assert markers(stored(client, runtime)) == ["fixed"]


# ---- OTLP, Loki and Elasticsearch refusals ---------------------------------------------------


def _kv(key: str, value: str) -> KeyValue:
    return KeyValue(key=key, value=AnyValue(string_value=value))


def _otlp_request(now_ns: int) -> ExportLogsServiceRequest:
    good = LogRecord(time_unix_nano=now_ns, body=AnyValue(string_value="ok"))
    good.attributes.append(_kv("marker", "otlp-good"))
    old = LogRecord(time_unix_nano=now_ns - 40 * 86_400 * 10**9)
    old.attributes.append(_kv("marker", "otlp-old"))
    crowded = LogRecord(time_unix_nano=now_ns)
    crowded.attributes.extend(
        [_kv("marker", "otlp-crowded")] + [_kv(f"a{i}", "v") for i in range(60)]
    )
    request = ExportLogsServiceRequest()
    scope = request.resource_logs.add().scope_logs.add()
    scope.log_records.extend([good, old, crowded])
    return request


def test_otlp_partial_success_lists_the_rejected_records(
    client: TestClient, runtime: Runtime, boot: Bootstrap
) -> None:
    request = _otlp_request(time.time_ns())
    response = client.post(
        "/v1/logs",
        content=request.SerializeToString(),
        headers={**bearer(boot.ingest_key), "Content-Type": "application/x-protobuf"},
    )
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/x-protobuf"
    reply = ExportLogsServiceResponse.FromString(response.content)
    assert reply.partial_success.rejected_log_records == 2
    message = reply.partial_success.error_message
    assert "log record 1: timestamp" in message and "retention of 30 days" in message
    assert "log record 2: 61 attributes" in message and "MAX_FIELDS" in message

    as_json = client.post(
        "/v1/logs",
        json=MessageToDict(_otlp_request(time.time_ns())),
        headers=bearer(boot.ingest_key),
    )
    assert as_json.status_code == 200, as_json.text
    assert as_json.json()["partialSuccess"]["rejectedLogRecords"] == "2"
    assert markers(stored(client, runtime)) == ["otlp-good", "otlp-good"]


def test_otlp_and_loki_bodies_that_cannot_be_read(
    client: TestClient, runtime: Runtime, boot: Bootstrap
) -> None:
    key = bearer(boot.ingest_key)
    protobuf = {**key, "Content-Type": "application/x-protobuf"}
    problem(client.post("/v1/logs", content=b"\xff\xff\xff", headers=protobuf), 400, "OTLP")
    problem(
        client.post("/v1/logs", content=b"{}", headers={**key, "Content-Type": "text/plain"}),
        415,
        "application/x-protobuf or application/json",
    )
    problem(client.post("/loki/api/v1/push", content=b"[1]", headers=key), 400, "streams")
    partial = client.post(
        "/loki/api/v1/push",
        json={
            "streams": [
                {
                    "stream": {"marker": "loki"},
                    "values": [["x", "bad"], [str(time.time_ns()), "good"]],
                }
            ]
        },
        headers=key,
    )
    # As Loki answers: 400 when any entry fails, the valid ones stored all the same.
    assert partial.status_code == 400, partial.text
    assert partial.json()["accepted"] == 1
    (error,) = partial.json()["errors"]
    assert error["reason"].startswith("streams[0].values[0]: the timestamp must be")
    rows = stored(client, runtime)
    assert [(r["Body"], r["ResourceAttributes"]["marker"]) for r in rows] == [("good", "loki")]


def test_elasticsearch_errors_are_json_clients_can_read(
    client: TestClient, runtime: Runtime, boot: Bootstrap
) -> None:
    refused = client.put("/v1/es/_bulk", content=b'{"index":{}}\n{"m":1}\n', headers=bearer("x"))
    assert refused.status_code == 401
    assert refused.headers["content-type"] == "application/json"
    assert refused.headers["X-Elastic-Product"] == "Elasticsearch"
    error = refused.json()["error"]
    assert error["type"] == "security_exception" and "malformed credential" in error["reason"]

    key = bearer(boot.ingest_key)
    update = client.post("/v1/es/logs/_update/1", json={"doc": {"marker": "lost"}}, headers=key)
    assert update.status_code in (400, 404) and update.json()["error"]["reason"]
    assert client.put("/v1/es/logs/_update/1", json={}, headers=key).status_code == 400
    assert client.put("/v1/es/_index_template/logs", json={}, headers=key).json() == {
        "acknowledged": True
    }
    for method, path in (("POST", "/v1/es/_bulk"), ("PUT", "/v1/es/logs/_bulk")):
        body = json.dumps({"index": {}}) + "\n" + json.dumps({"marker": method}) + "\n"
        response = client.request(method, path, content=body, headers=key)
        assert response.status_code == 200 and response.json()["errors"] is False
    assert markers(stored(client, runtime)) == ["POST", "PUT"]
