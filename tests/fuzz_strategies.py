"""Shared Hypothesis generators and invariants of the fuzz suite (tests/test_fuzz_*.py).

Generators produce inputs of the right *shape* (an event, an OTLP request, a Loki stream, a
query, an admin body) and then, often, break them the way an attacker or a broken shipper would:
deep nesting, huge keys, lone surrogates, NaN/Infinity, invalid UTF-8, truncation, wrong types,
numbers out of range, control characters, lying compression headers.

The invariants every fuzz test checks are in :class:`FuzzApp`: no 5xx, no exception escaping
the app, ``/healthz`` still answers, and canary events ingested before the run are found intact
afterwards (flushed to Parquet and searched back through the API).

Budgets come from the Hypothesis profile in ``HYPOTHESIS_PROFILE``: ``ci`` (the default) is
deterministic (``derandomize=True``) and small enough for the whole suite to stay under a
minute; ``long`` (``make fuzz``) multiplies every test's examples by ``FUZZ_SCALE``.
"""

from __future__ import annotations

import base64
import gzip
import json
import os
import time
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import cramjam
import pytest
import zstandard
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from hypothesis.database import DirectoryBasedExampleDatabase

from astralog.api.app import create_app
from astralog.runtime import SYSTEM, Bootstrap, Runtime
from astralog.settings import load_settings

# ---- profiles ----------------------------------------------------------------------------------

_QUIET = list(HealthCheck)  # slow requests and big inputs are the point here, not a smell
settings.register_profile(
    "ci",
    derandomize=True,
    database=None,
    deadline=None,
    print_blob=True,
    suppress_health_check=_QUIET,
    # Shrinking a failure can take minutes; CI reports the first failing input as found.
    phases=[Phase.explicit, Phase.generate, Phase.target],
)
settings.register_profile(
    "long",
    derandomize=False,
    database=DirectoryBasedExampleDatabase("test-artifacts/hypothesis"),
    deadline=None,
    print_blob=True,
    suppress_health_check=_QUIET,
)
PROFILE = os.environ.get("HYPOTHESIS_PROFILE", "ci")
settings.load_profile(PROFILE)
SCALE = int(os.environ.get("FUZZ_SCALE", "1" if PROFILE == "ci" else "60"))


def budget(ci_examples: int) -> settings:
    """Settings for one fuzz test: ``ci_examples`` in CI, ``FUZZ_SCALE`` times more in long runs."""
    return settings(max_examples=ci_examples * SCALE)


# Beyond ~20,000 levels pyarrow's JSON reader overflows the C stack and takes the whole process
# (pytest included) with it, so in-process runs stay below that; the gateway run goes further.
IN_PROCESS_MAX_DEPTH = 3_000
GATEWAY_MAX_DEPTH = 60_000

# ---- text and numbers ----------------------------------------------------------------------------

LONE_SURROGATES = st.integers(0xD800, 0xDFFF).map(chr)
HOSTILE_TEXT = st.sampled_from(
    [
        "",
        "\ud800",
        "\udfff",
        "a\ud83d",
        "\x00",
        "\x00\x01\x1f\x7f",
        "\x1b[31mred\x1b[0m",
        "\u2028\u2029",
        "\ufeff",
        "\ufffe\uffff",
        "%s%n%x",
        "'; DROP TABLE events; --",
        "${jndi:ldap://127.0.0.1/a}",
        "\\",
        '"',
        "\\u0000",
        "\u0130\u0131\u017fK",  # the letters whose case folding engines disagree on
        "\u210c\U0001d522\U0001d529\U0001d529\U0001d52c",
        "🎉" * 40,
        "../../etc/passwd",
        "a" * 300,
        "nan",
        "Infinity",
        "-0",
        "1e999",
        "*",
        "?",
    ]
)


@st.composite
def big_text(draw: st.DrawFn, max_size: int = 300_000) -> str:
    """One character repeated: cheap to generate, large enough to hit every size limit."""
    return draw(st.characters()) * draw(st.integers(1_000, max_size))


def texts(max_size: int = 40) -> st.SearchStrategy[str]:
    return st.one_of(
        st.text(max_size=max_size),
        st.text(st.characters(codec="ascii"), max_size=max_size),
        HOSTILE_TEXT,
        st.lists(st.one_of(st.characters(), LONE_SURROGATES), max_size=8).map("".join),
        big_text(),
    )


NUMBERS: st.SearchStrategy[int | float] = st.one_of(
    st.integers(-(2**70), 2**70),
    st.sampled_from([2**63 - 1, 2**63, 2**64, -(2**63) - 1, 10**30, 10**400, -(10**400)]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([float("nan"), float("inf"), float("-inf"), -0.0, 1e308, 5e-324]),
)

WELL_KNOWN_KEYS = [
    "message", "msg", "body", "log", "level", "severity", "severity_text", "timestamp",
    "@timestamp", "time", "ts", "service", "service.name", "host", "trace_id", "span_id",
    "traceId", "attributes", "resource", "event_id", "source", "org_id", "_exists_",
]  # fmt: skip
KEYS = st.one_of(
    st.sampled_from(WELL_KNOWN_KEYS),
    st.text(max_size=12),
    HOSTILE_TEXT,
    st.sampled_from(["a.b.c", ".", "..", "a..b", ".a", "a.", "__proto__", "constructor"]),
    big_text(max_size=2_000_000),  # 1 MB attribute keys were accepted once
)
LEAVES: st.SearchStrategy[Any] = st.one_of(st.none(), st.booleans(), NUMBERS, texts())


def json_values(max_leaves: int = 25) -> st.SearchStrategy[Any]:
    return st.recursive(
        LEAVES,
        lambda kids: st.one_of(st.lists(kids, max_size=5), st.dictionaries(KEYS, kids, max_size=6)),
        max_leaves=max_leaves,
    )


# "Now" is read once: a strategy that read the clock would draw a different value on replay, and
# Hypothesis would report a flaky strategy instead of the failure it found.
NOW_NS = time.time_ns()


def recent_ns(back_seconds: int = 86_400) -> st.SearchStrategy[int]:
    """A time in the last ``back_seconds``. The offset is drawn, not the time, so that the
    strategy is the same on every run (Hypothesis replays draws)."""
    return st.integers(0, back_seconds * 10**9).map(lambda back: NOW_NS - back)


def timestamps() -> st.SearchStrategy[Any]:
    """Times in every spelling the gateway reads, near now and far away."""
    near = st.floats(-3 * 86_400, 600).map(lambda offset: NOW_NS / 1e9 + offset)
    return st.one_of(
        near.map(lambda t: time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + "Z"),
        near.map(lambda t: time.strftime("%Y-%m-%dT%H:%M:%S+14:00", time.gmtime(t))),
        near.map(int),
        near.map(lambda t: int(t * 1000)),
        near.map(lambda t: int(t * 10**9)),
        near,
        near.map(lambda t: str(int(t * 10**9))),
        st.sampled_from(["9999-12-31T23:59:59-14:00", "0001-01-01T00:00:00+14:00", "now", ""]),
        NUMBERS,
        texts(),
    )


@st.composite
def events(draw: st.DrawFn) -> Any:
    """An event as shippers send it, or (sometimes) something that is not an object at all."""
    if draw(st.integers(0, 9)) == 0:
        return draw(json_values())
    event: dict[str, Any] = {"message": draw(texts())}
    for key, values in (
        ("timestamp", timestamps()),
        ("level", st.one_of(st.sampled_from(["info", "ERROR", "warn", "fatal", "7"]), LEAVES)),
        ("service", texts()),
        ("trace_id", st.one_of(st.binary(max_size=20).map(bytes.hex), texts())),
    ):
        if draw(st.booleans()):
            event[draw(st.sampled_from(WELL_KNOWN_KEYS)) if key != "timestamp" else key] = draw(
                values
            )
    extra = draw(st.dictionaries(KEYS, json_values(8), max_size=4))
    return {**event, **extra}


def dumps(value: Any, *, ascii_only: bool = True) -> bytes:
    """JSON bytes; a lone surrogate becomes an escape or (``ascii_only=False``) invalid UTF-8."""
    text = json.dumps(value, allow_nan=True, ensure_ascii=ascii_only)
    return text.encode("utf-8", "surrogatepass")


# ---- byte mutations ------------------------------------------------------------------------------

INVALID_UTF8 = [b"\xff", b"\xc3", b"\xed\xa0\x80", b"\xf4\x90\x80\x80", b"\xc0\xaf", b"\x80\x80"]
HOSTILE_TOKENS = [
    b"NaN", b"Infinity", b"-Infinity", b"1e999", b"-1e999", b"1" * 5000, b"-0", b"0x10",
    b"\x00", b"\r\n", b"\n\n\n", b'"\\ud800"', b'"\\udc00\\ud800"', b"\\", b"\xef\xbb\xbf",
    b"//", b"/*", b"'", b",,", b"::", b"}{", b"][", b"true", b"null",
]  # fmt: skip


@st.composite
def nesting(draw: st.DrawFn, max_depth: int = IN_PROCESS_MAX_DEPTH) -> bytes:
    depth = draw(st.one_of(st.integers(1, 64), st.integers(1, max_depth)))
    opener, closer = draw(
        st.sampled_from([(b"[", b"]"), (b'{"a":', b"}"), (b'{"":[', b"]}"), (b"[{}, ", b"]")])
    )
    closed = draw(st.booleans())
    return opener * depth + b"1" + (closer * depth if closed else b"")


@st.composite
def mutated(draw: st.DrawFn, data: bytes, max_depth: int = IN_PROCESS_MAX_DEPTH) -> bytes:
    """``data`` unchanged about half of the time, else with one to three hostile edits."""
    if draw(st.booleans()):
        return data
    for _ in range(draw(st.integers(1, 3))):
        at = draw(st.integers(0, len(data)))
        edit = draw(st.integers(0, 6))
        if edit == 0:
            data = data[:at]  # truncation
        elif edit == 1:
            data = data[:at] + draw(st.sampled_from(INVALID_UTF8)) + data[at:]
        elif edit == 2:
            data = data[:at] + draw(st.sampled_from(HOSTILE_TOKENS)) + data[at:]
        elif edit == 3:
            data = data[:at] + draw(nesting(max_depth)) + data[at:]
        elif edit == 4 and data:
            at = min(at, len(data) - 1)
            data = data[:at] + bytes([draw(st.integers(0, 255))]) + data[at + 1 :]
        elif edit == 5:
            data = data[:at] + draw(st.binary(max_size=16)) + data[at:]
        else:
            data = data + data[:at]  # a body that repeats itself
    return data


# ---- compression ---------------------------------------------------------------------------------

ENCODERS: dict[str, Callable[[bytes], bytes]] = {
    "gzip": lambda b: gzip.compress(b, 1),
    "zstd": lambda b: zstandard.ZstdCompressor(level=1).compress(b),
    "deflate": lambda b: zlib.compress(b, 1),
}


@st.composite
def encoded(draw: st.DrawFn, raw: bytes) -> tuple[bytes, dict[str, str]]:
    """``raw`` as sent: plain most often, else compressed, sometimes with a lying header."""
    choice = draw(st.integers(0, 9))
    if choice < 5:
        return raw, {}
    name = draw(st.sampled_from(sorted(ENCODERS)))
    body = ENCODERS[name](raw)
    if choice == 5:  # compressed, then cut off or damaged
        body = draw(mutated(body))
    elif choice == 6:  # the header lies about the encoding
        name = draw(st.sampled_from([*sorted(ENCODERS), "br", "x-gzip", "identity", "gzip, zstd"]))
    elif choice == 7:  # two layers, as "gzip, zstd" declares
        second = draw(st.sampled_from(sorted(ENCODERS)))
        body, name = ENCODERS[second](body), f"{name}, {second}"
    return body, {"content-encoding": name}


# ---- wire formats --------------------------------------------------------------------------------


@st.composite
def deep_event(draw: st.DrawFn, max_depth: int = IN_PROCESS_MAX_DEPTH) -> bytes:
    """A well-formed event with one deeply nested value (json.dumps would recurse to build it)."""
    depth = draw(st.one_of(st.integers(1, 64), st.integers(1, max_depth)))
    opener, closer = draw(st.sampled_from([(b"[", b"]"), (b'{"a":', b"}"), (b'{"a":[', b"]}")]))
    return b'{"message": "deep", "value": ' + opener * depth + b"1" + closer * depth + b"}"


@st.composite
def ingest_bodies(draw: st.DrawFn) -> bytes:
    """A POST /v1/ingest body: one object, an array or NDJSON, of shaped or broken events."""
    if draw(st.integers(0, 7)) == 0:
        return draw(mutated(draw(deep_event())))
    batch = draw(st.lists(events(), min_size=1, max_size=6))
    ascii_only = draw(st.booleans())
    shape = draw(st.sampled_from(["object", "array", "ndjson", "ndjson-crlf"]))
    if shape == "object":
        raw = dumps(batch[0], ascii_only=ascii_only)
    elif shape == "array":
        raw = dumps(batch, ascii_only=ascii_only)
    else:
        sep = b"\r\n" if shape == "ndjson-crlf" else b"\n"
        raw = sep.join(dumps(e, ascii_only=ascii_only) for e in batch) + sep
    return draw(mutated(raw))


def varint(n: int) -> bytes:
    n &= (1 << 64) - 1  # negative int64 values are sent as ten-byte two's complement
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def pb_field(number: int, value: bytes | int) -> bytes:
    """One protobuf field: varint for ints, length-delimited for bytes (strings, messages)."""
    if isinstance(value, int):
        return varint(number << 3) + varint(value)
    return varint(number << 3 | 2) + varint(len(value)) + value


def pb_text(text: str) -> bytes:
    """A string field's bytes; lone surrogates become the invalid UTF-8 protobuf must refuse."""
    return text.encode("utf-8", "surrogatepass")


@st.composite
def any_values(draw: st.DrawFn, depth: int = 0) -> bytes:
    """An OTLP ``AnyValue``, hand-encoded so that it can nest deeper than the library allows."""
    kind = draw(st.integers(0, 7 if depth < 4 else 4))
    if kind == 0:
        return pb_field(1, pb_text(draw(texts())))
    if kind == 1:
        return pb_field(2, int(draw(st.booleans())))
    if kind == 2:
        return pb_field(3, draw(st.integers(-(2**63), 2**63 - 1)))
    if kind == 3:
        return varint(4 << 3 | 1) + draw(st.binary(min_size=8, max_size=8))  # double, any bits
    if kind == 4:
        return pb_field(7, draw(st.binary(max_size=64)))
    if kind == 5:  # very deep: nested kvlists, built by iteration
        inner = pb_field(1, b"x")
        for _ in range(draw(st.integers(1, 400))):
            inner = pb_field(6, pb_field(1, pb_field(1, b"k") + pb_field(2, inner)))
        return inner
    if kind == 6:
        values = draw(st.lists(any_values(depth + 1), max_size=3))
        return pb_field(5, b"".join(pb_field(1, v) for v in values))
    pairs = draw(st.lists(st.tuples(KEYS, any_values(depth + 1)), max_size=3))
    return pb_field(6, b"".join(pb_field(1, key_value(k, v)) for k, v in pairs))


def key_value(key: str, value: bytes) -> bytes:
    return pb_field(1, pb_text(key)) + pb_field(2, value)


@st.composite
def otlp_records(draw: st.DrawFn) -> bytes:
    record = b""
    stamp = draw(st.one_of(recent_ns(), st.integers(0, 2**64 - 1), st.just(0)))
    record += varint(1 << 3 | 1) + stamp.to_bytes(8, "little")  # time_unix_nano, fixed64
    record += pb_field(2, draw(st.integers(-(2**31), 2**31 - 1)))  # severity_number
    record += pb_field(3, pb_text(draw(texts())))  # severity_text
    record += pb_field(5, draw(any_values()))  # body
    for key, value in draw(st.lists(st.tuples(KEYS, any_values()), max_size=4)):
        record += pb_field(6, key_value(key, value))
    record += pb_field(9, draw(st.one_of(st.binary(min_size=16, max_size=16), st.binary())))
    record += pb_field(10, draw(st.one_of(st.binary(min_size=8, max_size=8), st.binary())))
    return record


@st.composite
def otlp_protobuf(draw: st.DrawFn) -> bytes:
    """An ExportLogsServiceRequest, hand-encoded: resource, scope, records; then mutated."""
    resource = b"".join(
        pb_field(1, key_value(k, v))
        for k, v in draw(st.lists(st.tuples(KEYS, any_values()), max_size=3))
    )
    scope = pb_field(1, pb_text(draw(texts()))) + pb_field(2, pb_text(draw(texts())))
    records = b"".join(pb_field(2, r) for r in draw(st.lists(otlp_records(), max_size=4)))
    scope_logs = pb_field(1, scope) + records
    resource_logs = pb_field(1, resource) + pb_field(2, scope_logs)
    return draw(mutated(pb_field(1, resource_logs)))


@st.composite
def otlp_json(draw: st.DrawFn) -> bytes:
    """OTLP/JSON as the collector sends it (hex ids, string int64s), shaped or broken."""

    def value() -> Any:
        return draw(
            st.one_of(
                texts().map(lambda s: {"stringValue": s}),
                NUMBERS.map(lambda n: {"intValue": n}),
                NUMBERS.map(lambda n: {"doubleValue": n}),
                st.booleans().map(lambda b: {"boolValue": b}),
                json_values(6).map(lambda v: {"kvlistValue": {"values": v}}),
                json_values(6),
            )
        )

    record = {
        "timeUnixNano": draw(st.one_of(recent_ns().map(str), NUMBERS, texts())),
        "severityNumber": draw(st.one_of(st.integers(0, 24), NUMBERS, texts())),
        "severityText": draw(texts()),
        "body": value(),
        "attributes": [
            {"key": draw(KEYS), "value": value()} for _ in range(draw(st.integers(0, 3)))
        ],
        "traceId": draw(st.one_of(st.binary(min_size=16, max_size=16).map(bytes.hex), texts())),
        "spanId": draw(st.one_of(st.binary(min_size=8, max_size=8).map(bytes.hex), texts())),
    }
    document: Any = {
        "resourceLogs": [
            {
                "resource": {"attributes": [{"key": "service.name", "value": value()}]},
                "scopeLogs": [{"scope": {"name": draw(texts())}, "logRecords": [record]}],
            }
        ]
    }
    if draw(st.integers(0, 5)) == 0:
        document = draw(json_values())
    return draw(mutated(dumps(document, ascii_only=draw(st.booleans()))))


BULK_ACTIONS = st.sampled_from(["index", "create", "update", "delete", "", "INDEX", "unknown"])


@st.composite
def bulk_bodies(draw: st.DrawFn) -> bytes:
    """An Elasticsearch _bulk body: action line, document line, ... (some actions bodiless)."""
    lines: list[bytes] = []
    for _ in range(draw(st.integers(1, 4))):
        meta: dict[str, Any] = {}
        if draw(st.booleans()):
            meta["_index"] = draw(texts())
        if draw(st.booleans()):
            meta["_id"] = draw(st.one_of(texts(), NUMBERS))
        action: Any = {draw(BULK_ACTIONS): meta}
        if draw(st.integers(0, 6)) == 0:
            action = draw(json_values(6))
        lines.append(dumps(action, ascii_only=draw(st.booleans())))
        if draw(st.integers(0, 5)):
            document = draw(st.one_of(events().map(dumps), deep_event()))
            lines.append(document)
    return draw(mutated(b"\n".join(lines) + b"\n"))


LABEL_NAMES = st.one_of(st.sampled_from(["job", "app", "level", "service_name", "host"]), KEYS)


@st.composite
def loki_json(draw: st.DrawFn) -> bytes:
    streams = []
    for _ in range(draw(st.integers(1, 3))):
        entries = []
        for _ in range(draw(st.integers(0, 4))):
            stamp = draw(st.one_of(recent_ns().map(str), NUMBERS, texts()))
            entry: list[Any] = [stamp, draw(texts())]
            if draw(st.booleans()):
                entry.append(draw(st.dictionaries(LABEL_NAMES, texts(), max_size=3)))
            if draw(st.integers(0, 6)) == 0:
                entry = draw(json_values(6))
            entries.append(entry)
        labels = draw(st.dictionaries(LABEL_NAMES, st.one_of(texts(), LEAVES), max_size=4))
        streams.append({"stream": labels, "values": entries})
    document: Any = {"streams": streams}
    if draw(st.integers(0, 6)) == 0:
        document = draw(json_values())
    return draw(mutated(dumps(document, ascii_only=draw(st.booleans()))))


@st.composite
def loki_labels(draw: st.DrawFn) -> str:
    """A Prometheus label set ``{a="b", c="d"}``, well formed or not."""
    pairs = draw(st.dictionaries(LABEL_NAMES, texts(), max_size=4))
    text = "{" + ", ".join(f'{k}="{json.dumps(v)[1:-1]}"' for k, v in pairs.items()) + "}"
    if draw(st.integers(0, 4)) == 0:
        text = draw(st.one_of(texts(), st.sampled_from(["{", '{a="', "{a=b}", '{="x"}', "}{"])))
    return text


@st.composite
def loki_protobuf(draw: st.DrawFn) -> bytes:
    """A snappy-compressed Loki PushRequest, hand-encoded; the compression may be wrong too."""
    streams = b""
    for _ in range(draw(st.integers(1, 3))):
        stream = pb_field(1, pb_text(draw(loki_labels())))
        for _ in range(draw(st.integers(0, 4))):
            seconds = draw(
                st.one_of(recent_ns().map(lambda ns: ns // 10**9), st.integers(-(2**63), 2**63 - 1))
            )
            nanos = draw(st.one_of(st.integers(0, 999_999_999), st.integers(-(2**31), 2**31 - 1)))
            entry = pb_field(1, pb_field(1, seconds) + pb_field(2, nanos))
            entry += pb_field(2, pb_text(draw(texts())))
            for name, value in draw(st.dictionaries(LABEL_NAMES, texts(), max_size=2)).items():
                entry += pb_field(3, pb_field(1, pb_text(name)) + pb_field(2, pb_text(value)))
            stream += pb_field(2, entry)
        streams += pb_field(1, stream)
    raw = draw(mutated(streams))
    packing = draw(st.integers(0, 5))
    if packing == 0:
        return raw  # not compressed at all
    if packing == 1:
        return bytes(cramjam.snappy.compress(raw))  # the framed format, not Loki's block format
    body = bytes(cramjam.snappy.compress_raw(raw))
    return draw(mutated(body)) if packing == 2 else body


def in_url(text: str) -> str:
    """``text`` as httpx can put it into a URL: no lone surrogates, well under its 64 KiB cap
    (still longer than the 4096 characters any parameter may have)."""
    text = text.encode("utf-8", "replace").decode()[:5000]
    while len(quote(text)) > 12_000:  # five such parameters still fit
        text = text[: len(text) // 2]
    return text


# ---- the app under test and its invariants -------------------------------------------------------

CANARY_COUNT = 12


def canary_lines(run: str) -> bytes:
    """Events with every kind of value the fuzzers also send, each with a unique marker."""
    events = [
        {
            "message": f'canary {i} of {run}: héllo ✓ "quoted" \\ back',
            "level": ["info", "error", "warn"][i % 3],
            "service": f"canary-{i % 4}",
            "marker": f"canary-{run}-{i}",
            "nested": {"n": i, "list": [1, "two", None], "deep": {"x": True}},
            "unicode": "\u210c\U0001d522\U0001d529\U0001d529\U0001d52c \U0001f389",
        }
        for i in range(CANARY_COUNT)
    ]
    return b"\n".join(json.dumps(e).encode() for e in events) + b"\n"


def is_server_error(status: int, headers: Any) -> bool:
    """5xx is a failure, except 503 with Retry-After: WAL backpressure, a promised answer."""
    return status >= 500 and not (status == 503 and "retry-after" in headers)


@dataclass
class FuzzApp:
    """The real app in process, with canaries stored before any fuzz input arrives."""

    client: TestClient
    runtime: Runtime
    boot: Bootstrap
    run: str
    canaries: list[dict[str, Any]] = field(default_factory=list)

    @property
    def ingest(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.boot.ingest_key}"}

    @property
    def admin(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.boot.admin_token}"}

    @property
    def operator(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.boot.operator_token}"}

    def send(self, method: str, path: str, **kwargs: Any) -> Any:
        """One request; any 5xx fails with the input that caused it."""
        response = self.client.request(method, path, **kwargs)
        if is_server_error(response.status_code, response.headers):
            shown = {k: (v[:300] if isinstance(v, bytes | str) else v) for k, v in kwargs.items()}
            raise AssertionError(
                f"{method} {path} answered {response.status_code}: {response.text[:500]}\n"
                f"request: {shown!r}"
            )
        if response.status_code >= 400:
            body = response.json()  # every refusal is a JSON document that says why
            assert body.get("detail") or body.get("error") or body.get("errors"), body
        return response

    def flush(self) -> None:
        data = self.runtime.data
        data.wal.force_seal()
        assert self.client.portal is not None
        self.client.portal.call(data.flusher.flush_once)
        assert not data.wal.pending_tables(), "the flush left rows in the WAL"

    def search_canaries(self) -> list[dict[str, Any]]:
        body = {"query": f"marker:canary-{self.run}-*", "start": "now-1h", "limit": 1000}
        response = self.send("POST", "/v1/search", json=body, headers=self.admin)
        assert response.status_code == 200, response.text
        found: list[dict[str, Any]] = response.json()["events"]
        return sorted(found, key=lambda e: str(e["attributes"]["marker"]))

    def plant_canaries(self) -> None:
        response = self.send(
            "POST", "/v1/ingest", content=canary_lines(self.run), headers=self.ingest
        )
        assert response.json()["accepted"] == CANARY_COUNT, response.text
        self.flush()
        self.canaries = self.search_canaries()
        assert len(self.canaries) == CANARY_COUNT, self.canaries

    def assert_intact(self) -> None:
        """The service is up, everything acked flushes, and the canaries are unchanged."""
        health = self.client.get("/healthz")
        assert health.status_code == 200, health.text
        self.flush()
        assert self.search_canaries() == self.canaries


@pytest.fixture(scope="module")
def fuzz_app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FuzzApp]:
    """One app per fuzz module (Hypothesis runs many inputs through it); import this fixture."""
    tmp: Path = tmp_path_factory.mktemp("fuzz")
    app_settings = load_settings(data_dir=tmp / "data", wal={"fsync": False})
    runtime = Runtime(app_settings)
    boot = runtime.bootstrap()
    assert boot is not None
    # Enterprise limits: the fuzzers should reach the parsers, not the rate limiter.
    runtime.control.set_plan(str(boot.org["id"]), "enterprise", {}, SYSTEM)
    with TestClient(create_app(app_settings, runtime)) as client:
        app = FuzzApp(client, runtime, boot, base64.b32encode(os.urandom(5)).decode().lower())
        app.plant_canaries()
        yield app
        app.assert_intact()
    runtime.close()


# ---- the search language -----------------------------------------------------------------------

FIELD_NAMES = st.one_of(
    st.sampled_from(
        ["level", "severity", "service", "source", "host", "host.name", "body", "message",
         "event_id", "trace_id", "span_id", "scope", "marker", "nested.n", "a.b", "@timestamp",
         "status", "user/id", "x-y", "_exists_"]
    ),
    st.text(st.sampled_from("abcxyz019_.-@/"), min_size=1, max_size=12),
)  # fmt: skip
WORDS = st.one_of(
    st.sampled_from(["error", "timeout", "api", "web-*", "*", "?", "a*b?c", "42", "-1.5e3",
                     "1e999", "NaN", "inf", "info", "warn", "critical", "24", "0", "25", "canary",
                     "\\*", "\\\\", "\\", "AND", "OR", "NOT", "TO"]),
    st.text(st.characters(exclude_characters=' ()":[]{}\\'), min_size=1, max_size=10),
)  # fmt: skip
COMPARATORS = st.sampled_from([">=", ">", "<=", "<"])


def _phrase(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


@st.composite
def _range(draw: st.DrawFn) -> str:
    low, high = draw(st.one_of(WORDS, st.just("*"))), draw(st.one_of(WORDS, st.just("*")))
    return draw(st.sampled_from("[{")) + f"{low} TO {high}" + draw(st.sampled_from("]}"))


def _terms(inner: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    return st.one_of(
        st.tuples(FIELD_NAMES, st.one_of(WORDS, texts(20).map(_phrase), _range())).map(":".join),
        st.tuples(FIELD_NAMES, COMPARATORS, WORDS).map("".join),
        st.tuples(FIELD_NAMES, inner).map(lambda t: f"{t[0]}:({t[1]})"),
        FIELD_NAMES.map(lambda f: f"_exists_:{f}"),
        inner.map(lambda q: f"({q})"),
        st.tuples(st.sampled_from(["-", "NOT ", "--", "- "]), inner).map("".join),
        st.lists(inner, min_size=2, max_size=4).map(" ".join),
        st.tuples(inner, st.sampled_from([" AND ", " OR ", " and ", " OR OR "]), inner).map(
            "".join
        ),
    )


QUERY_ATOMS = st.one_of(WORDS, texts(20).map(_phrase))


@st.composite
def queries(draw: st.DrawFn) -> str:
    """Search text: grammatical most of the time, then sometimes cut, nested or garbled."""
    text = draw(st.recursive(QUERY_ATOMS, _terms, max_leaves=12))
    edit = draw(st.integers(0, 9))
    if edit == 0:
        text = text[: draw(st.integers(0, len(text)))]
    elif edit == 1:
        depth = draw(st.integers(1, 5000))
        text = "(" * depth + text + ")" * draw(st.sampled_from([depth, 0, depth - 1]))
    elif edit == 2:
        text = " ".join([text] * draw(st.integers(2, 600)))  # term count and length limits
    elif edit == 3:
        at = draw(st.integers(0, len(text)))
        inserted = draw(st.one_of(HOSTILE_TEXT, LONE_SURROGATES, st.text(max_size=4)))
        text = text[:at] + inserted + text[at:]
    elif edit == 4:
        text = draw(texts())
    return text


TIMES = st.one_of(
    st.sampled_from(["now", "now-15m", "now-1h", "now-3d", "now+5m", "now-0s", "now-999999999d",
                     "2026-01-31T12:00:00Z", "1970-01-01T00:00:00Z", "9999-12-31T23:59:59Z", ""]),
    st.integers(-(2**63), 2**63),
    recent_ns().map(lambda ns: ns // 10**6),
    NUMBERS,
    texts(),
    LEAVES,
)  # fmt: skip


@st.composite
def search_bodies(draw: st.DrawFn, endpoint: str, cursors: list[str]) -> Any:
    """A body for /v1/search[/histogram|/facets]: plausible filters with hostile values."""
    body: dict[str, Any] = {}
    wrong = st.one_of(NUMBERS, texts(), st.lists(LEAVES, max_size=3), st.none())
    options: dict[str, st.SearchStrategy[Any]] = {
        "query": st.one_of(queries(), queries(), wrong),
        "start": TIMES,
        "end": TIMES,
        "sources": st.one_of(st.none(), st.lists(st.one_of(texts(), LEAVES), max_size=4), wrong),
    }
    if endpoint == "search":
        options["limit"] = st.one_of(st.integers(-2, 1500), wrong)
        mangled = st.sampled_from(cursors or [""]).flatmap(lambda c: mutated(c.encode()))
        options["cursor"] = st.one_of(st.sampled_from(cursors or [""]), mangled.map(_latin), wrong)
    elif endpoint == "histogram":
        options["buckets"] = st.one_of(st.integers(-2, 1000), wrong)
    else:
        fields = st.lists(st.one_of(FIELD_NAMES, texts(), LONE_SURROGATES, LEAVES), max_size=12)
        names = st.lists(st.one_of(FIELD_NAMES, LONE_SURROGATES, texts()), min_size=1, max_size=3)
        options["fields"] = st.one_of(names, fields, wrong)
        options["size"] = st.one_of(st.integers(-2, 200), wrong)
    for name, values in options.items():
        if draw(st.integers(0, 3)):
            body[name] = draw(values)
    if draw(st.integers(0, 9)) == 0:
        body[draw(KEYS)] = draw(LEAVES)  # an unknown field: refused by the strict model
    if draw(st.integers(0, 14)) == 0:
        return draw(json_values(6))
    return body


def _latin(raw: bytes) -> str:
    return raw.decode("latin-1")


# ---- admin request bodies, from the OpenAPI schemas of the app's own routes ----------------


# Names as the control plane wants them (lowercase, digits, '.', '_', '-'): fresh ones get created.
NAMES = st.from_regex(r"[a-z0-9][a-z0-9._-]{0,20}", fullmatch=True)


def from_schema(schema: dict[str, Any], components: dict[str, Any]) -> st.SearchStrategy[Any]:
    """Values that satisfy a JSON schema (the subset FastAPI emits), near and at its bounds."""
    if "$ref" in schema:
        return st.deferred(
            lambda: from_schema(components[schema["$ref"].rsplit("/", 1)[1]], components)
        )
    for combinator in ("anyOf", "oneOf", "allOf"):
        if combinator in schema:
            return st.one_of([from_schema(s, components) for s in schema[combinator]])
    if "enum" in schema:
        return st.sampled_from(schema["enum"])
    if "const" in schema:
        return st.just(schema["const"])
    kind = schema.get("type")
    if kind == "object":
        return _object(schema, components)
    if kind == "array":
        items = from_schema(schema.get("items", {}), components)
        low, high = schema.get("minItems", 0), schema.get("maxItems", 30)
        return st.lists(items, min_size=max(0, low - 1), max_size=high + 1)
    if kind == "string":
        low, high = schema.get("minLength", 0), schema.get("maxLength", 80)
        sized = st.text(min_size=max(0, low - 1), max_size=min(high + 1, 200))
        examples = st.sampled_from(schema.get("examples") or [""])
        return st.one_of(sized, examples, NAMES, texts())
    if kind == "integer":
        low, high = schema.get("minimum", -(2**40)), schema.get("maximum", 2**40)
        return st.one_of(st.integers(low - 1, high + 1), st.sampled_from([low, high]), NUMBERS)
    if kind == "number":
        return NUMBERS
    if kind == "boolean":
        return st.booleans()
    if kind == "null":
        return st.none()
    return json_values(8)


def _object(schema: dict[str, Any], components: dict[str, Any]) -> st.SearchStrategy[Any]:
    properties = {
        name: from_schema(sub, components) for name, sub in schema.get("properties", {}).items()
    }
    required = set(schema.get("required", []))
    shaped = st.fixed_dictionaries(
        {k: v for k, v in properties.items() if k in required},
        optional={k: v for k, v in properties.items() if k not in required},
    )
    if schema.get("additionalProperties") or not properties:
        return st.dictionaries(KEYS, json_values(8), max_size=6)
    return shaped


@st.composite
def admin_bodies(draw: st.DrawFn, schema: dict[str, Any], components: dict[str, Any]) -> bytes:
    """A request body of the route's model: valid-shaped, then often with one field broken."""
    value = draw(from_schema(schema, components))
    edit = draw(st.integers(0, 7))
    if edit == 0:
        value = draw(json_values())  # the wrong type altogether
    elif edit in (1, 2) and isinstance(value, dict):
        key = draw(st.one_of(st.sampled_from(sorted(value) or ["x"]), KEYS))
        value[key] = draw(json_values(8))  # one field of the wrong type, or an unknown one
    raw = dumps(value, ascii_only=draw(st.booleans()))
    return draw(mutated(raw)) if edit == 3 else raw
