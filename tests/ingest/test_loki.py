"""The Loki push format: JSON in bulk and entry by entry, snappy protobuf, labels."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import cramjam
import pytest

from astralog.errors import BadRequest, PayloadTooLarge, UnsupportedMediaType
from astralog.ingest.formats import loki, parse_loki_push
from tests.ingest.parsing import T0, T0_S, TRACE, attrs, ctx, ns, rows, ts_ns


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
    assert (third["ServiceName"], third["SeverityNumber"]) == ("batch", 0)  # Loki: job names it
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
