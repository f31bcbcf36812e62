"""Fuzzing every ingest wire format: no input answers 5xx, crashes or harms stored events.

Each test sends shaped-then-broken bodies (tests/fuzz_strategies.py) to one endpoint of the real
app in process, sometimes gzip/zstd/deflate-compressed, sometimes under a lying
``Content-Encoding``; afterwards ``/healthz`` must answer and the canaries must be intact. One
bounded run goes against a real gateway process, so a crash in native code shows as a dead
process instead of a dead test runner.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from tests.fuzz_strategies import (
    GATEWAY_MAX_DEPTH,
    FuzzApp,
    budget,
    bulk_bodies,
    canary_lines,
    encoded,
    fuzz_app,
    ingest_bodies,
    is_server_error,
    loki_json,
    loki_protobuf,
    mutated,
    nesting,
    otlp_json,
    otlp_protobuf,
)
from tests.gateway import running_gateway

pytestmark = pytest.mark.fuzz
__all__ = ["fuzz_app"]  # the fixture is used by name

INGEST_TYPES = st.sampled_from(
    [None, "application/json", "application/x-ndjson", "text/plain", "application/x-protobuf"]
)
PLAIN: dict[str, str] = {}  # no Content-Encoding: the explicit examples are sent as written

# Inputs the fuzzers once found (N1-N6 in the fuzz findings), replayed first on every run. The
# two that crashed pyarrow (a Loki push ``null``, a ``_bulk`` document ``null``) are replayed
# only against the gateway process, where a crash fails the test instead of killing pytest.
NEGATIVE_SEVERITY = bytes.fromhex("0a0f120d120b10ffffffffffffffffff01")  # severity_number -1
CESU8_SURROGATE_TIMESTAMP = b'{"streams": [{"stream": {}, "values": [["\xed\xae\xab", "x"]]}]}'
ESCAPED_SURROGATE_TIMESTAMP = b'{"streams": [{"stream": {}, "values": [["\\udbab", "x"]]}]}'
SURROGATE_ENUM_NAME = (
    b'{"resourceLogs": [{"scopeLogs": [{"logRecords": [{"severityNumber": "\\ud800"}]}]}]}'
)


def _post(app: FuzzApp, path: str, encoding: tuple[bytes, dict[str, str]], **h: str) -> Any:
    body, headers = encoding
    return app.send("POST", path, content=body, headers={**app.ingest, **headers, **h})


def test_ingest_json_array_and_ndjson(fuzz_app: FuzzApp) -> None:
    @budget(60)
    @example((b"{}\nnull", PLAIN), None)  # N4: stored as an empty event
    @example((b'{"mess\x80age": "x"}', PLAIN), None)  # N5: invalid UTF-8 in a key, 500
    @given(ingest_bodies().flatmap(encoded), INGEST_TYPES)
    def run(sent: tuple[bytes, dict[str, str]], content_type: str | None) -> None:
        extra = {"content-type": content_type} if content_type else {}
        _post(fuzz_app, "/v1/ingest", sent, **extra)

    run()
    fuzz_app.assert_intact()


def test_otlp_protobuf(fuzz_app: FuzzApp) -> None:
    @budget(40)
    @example((NEGATIVE_SEVERITY, PLAIN))  # N3: OverflowError, 500
    @given(otlp_protobuf().flatmap(encoded))
    def run(sent: tuple[bytes, dict[str, str]]) -> None:
        _post(fuzz_app, "/v1/logs", sent, **{"content-type": "application/x-protobuf"})

    run()
    fuzz_app.assert_intact()


def test_otlp_json(fuzz_app: FuzzApp) -> None:
    @budget(40)
    @example((SURROGATE_ENUM_NAME, PLAIN))  # SystemError from upb's name lookup, 500
    @given(otlp_json().flatmap(encoded))
    def run(sent: tuple[bytes, dict[str, str]]) -> None:
        _post(fuzz_app, "/v1/logs", sent, **{"content-type": "application/json"})

    run()
    fuzz_app.assert_intact()


INDEX_NAMES = st.one_of(
    st.sampled_from(["logs", "logs-2026.01.01", "%2e%2e", "_bulk", "a%00b", "%ED%A0%80"]),
    st.text(
        st.characters(codec="ascii", categories=["L", "N", "P", "S"], exclude_characters="/?#%"),
        min_size=1,
        max_size=30,
    ),
)


def test_elasticsearch_bulk(fuzz_app: FuzzApp) -> None:
    @budget(40)
    @given(st.data(), bulk_bodies(), st.one_of(st.none(), INDEX_NAMES), st.booleans())
    def run(data: st.DataObject, raw: bytes, index: str | None, put: bool) -> None:
        path = f"/v1/es/{index}/_bulk" if index else "/v1/es/_bulk"
        body, headers = data.draw(encoded(raw))
        headers = {**fuzz_app.ingest, **headers, "content-type": "application/x-ndjson"}
        response = fuzz_app.send("PUT" if put else "POST", path, content=body, headers=headers)
        if response.status_code == 200:  # an ES client reads per-item results from every 200
            answer = response.json()
            assert isinstance(answer["items"], list) and isinstance(answer["errors"], bool)

    run()
    fuzz_app.assert_intact()


def test_loki_push_json(fuzz_app: FuzzApp) -> None:
    @budget(40)
    @example((CESU8_SURROGATE_TIMESTAMP, PLAIN))  # N6: the reason quoting it could not encode
    @example((ESCAPED_SURROGATE_TIMESTAMP, PLAIN))
    @given(loki_json().flatmap(encoded))
    def run(sent: tuple[bytes, dict[str, str]]) -> None:
        _post(fuzz_app, "/loki/api/v1/push", sent)

    run()
    fuzz_app.assert_intact()


def test_loki_push_protobuf(fuzz_app: FuzzApp) -> None:
    @budget(40)
    @given(loki_protobuf())
    def run(body: bytes) -> None:
        headers = {**fuzz_app.ingest, "content-type": "application/x-protobuf"}
        fuzz_app.send("POST", "/loki/api/v1/push", content=body, headers=headers)

    run()
    fuzz_app.assert_intact()


# ---- a real gateway process: native crashes show as a dead process ----------------------------

GATEWAY_PATHS = st.sampled_from(
    [
        ("/v1/ingest", "application/x-ndjson"),
        ("/v1/es/_bulk", "application/x-ndjson"),
        ("/loki/api/v1/push", "application/json"),
        ("/v1/logs", "application/json"),
        ("/v1/logs", "application/x-protobuf"),
    ]
)


@st.composite
def gateway_bodies(draw: st.DrawFn) -> bytes:
    """Every format's generator, plus nesting far deeper than the in-process runs dare."""
    deep = draw(nesting(GATEWAY_MAX_DEPTH))
    return draw(
        st.one_of(
            ingest_bodies(),
            bulk_bodies(),
            loki_json(),
            otlp_json(),
            otlp_protobuf(),
            mutated(b'{"message": "x", "a": ' + deep + b"}\n", GATEWAY_MAX_DEPTH),
            st.just(b'{"index":{}}\n' + deep + b"\n"),
            st.just(b'{"streams":[{"stream":{"a":"b"},"values":[["1",' + deep + b"]]}]}"),
        )
    )


@pytest.mark.slow
def test_a_real_gateway_survives_the_fuzzers(tmp_path: Path) -> None:
    with running_gateway(tmp_path) as gateway:
        ingest = {"Authorization": f"Bearer {gateway.ingest_key}"}

        def alive(context: str) -> None:
            try:
                health = httpx.get(f"{gateway.url}/healthz", timeout=10)
            except httpx.HTTPError as exc:
                raise AssertionError(
                    f"the gateway died after {context}: {exc}\n{gateway.log_tail()}"
                ) from exc
            assert health.status_code == 200, health.text

        sent = httpx.post(f"{gateway.url}/v1/ingest", content=canary_lines("gw"), headers=ingest)
        assert sent.status_code == 200, sent.text
        where = "LogAttributes['marker'] LIKE 'canary-gw-%'"
        before = gateway.wait_for_rows(12, where)

        @budget(25)
        @example((b"null", PLAIN), ("/loki/api/v1/push", "application/json"))  # N1: segfault
        @example((b'{"index":{}}\nnull\n', PLAIN), ("/v1/es/_bulk", "application/x-ndjson"))  # N2
        @given(gateway_bodies().flatmap(encoded), GATEWAY_PATHS)
        def run(sent: tuple[bytes, dict[str, str]], target: tuple[str, str]) -> None:
            path, content_type = target
            body, headers = sent
            headers = {**ingest, **headers, "content-type": content_type}
            try:
                response = httpx.post(
                    f"{gateway.url}{path}", content=body, headers=headers, timeout=60
                )
            except httpx.HTTPError as exc:
                alive(f"POST {path} of {len(body)} bytes ({body[:120]!r}) failed with {exc}")
                raise
            assert not is_server_error(response.status_code, response.headers), (
                f"POST {path} answered {response.status_code}: {response.text[:300]}\n"
                f"body ({len(body)} bytes): {body[:300]!r}"
            )
            alive(f"POST {path} ({body[:120]!r})")

        run()
        time.sleep(1)  # one more flush interval for whatever the fuzzers had acked
        after = gateway.rows(where)
        key = lambda row: str(row["EventId"])  # noqa: E731
        assert sorted(map(json.dumps, _comparable(after, key))) == sorted(
            map(json.dumps, _comparable(before, key))
        )


def _comparable(rows: list[dict[str, Any]], key: Any) -> list[Any]:
    return [[key(r), r["Body"], sorted(r["LogAttributes"].items())] for r in rows]
