"""Normalise: attributes of JSON events: flattening, typed values and their text."""

from __future__ import annotations

import json
import random

import pyarrow as pa
import pyarrow.compute as pc
import pytest

from astralog.ingest.formats import parse_json_events
from astralog.ingest.normalise.text import float_text
from tests.ingest.parsing import T0, T0_S, TRACE, attrs, ctx, ndjson, ns, parse_one, rows, ts_ns


def test_flattening_and_typed_values() -> None:
    row = parse_one(
        {
            "message": "m",
            "http": {"status": 500, "request": {"method": "GET", "secure": True}},
            "duration": 1.5,
            "ratio": 1.0,
            "big": 1e20,
            "tags": ["a", 'b"c', "d\\e", "f\ng"],
            "codes": [1, 2, 3],
            "mixed": [1, "a", None, True],
            "objects": [{"a": 1}, {"b": "x"}],
            "nested_lists": [[1, 2], [3]],
            "empty": [],
            "nothing": None,
            "flag": False,
            "when": "2024-06-01",
            "unicode": "héllo ✓",
        }
    )
    assert attrs(row) == {
        "http.status": "500",
        "http.request.method": "GET",
        "http.request.secure": "true",
        "duration": "1.5",
        "ratio": "1",
        "big": "1e+20",
        "tags": '["a","b\\"c","d\\\\e","f\\ng"]',
        "codes": "[1,2,3]",
        "mixed": '[1,"a",null,true]',
        "objects": '[{"a":1},{"b":"x"}]',
        "nested_lists": "[[1,2],[3]]",
        "empty": "[]",
        "flag": "false",
        "when": "2024-06-01",
        "unicode": "héllo ✓",
    }


def test_attribute_arrays_are_valid_compact_json() -> None:
    tags = ["plain", 'quote"', "back\\slash", "new\nline", "tab\t", "bell\x07", "ü"]
    row = parse_one({"tags": tags, "floats": [0.5, 1e-7, 2.0]})
    assert json.loads(attrs(row)["tags"]) == tags
    assert attrs(row)["floats"] == "[0.5,1e-7,2]"


@pytest.mark.parametrize("as_array", [False, True])
def test_time_like_attributes_keep_their_text(as_array: bool) -> None:
    """pyarrow's reader turns ISO-looking text into timestamps; attributes get the text back."""
    events = [
        {
            "timestamp": "2024-06-01T10:30:15Z",
            "user": {"created": "2020-01-01T00:00:00+02:00", "born": "1990-05-17"},
            "seen": ["2024-01-01 10:00", "2024-01-02 11:00"],
        },
        {"time": "2024-06-01T10:30:15Z", "user": {"created": "2021-03-04 05:06:07"}},
    ]
    body = json.dumps(events).encode() if as_array else ndjson(*events)
    first, second = rows(parse_json_events(body, ctx()))
    assert ts_ns(first) == ts_ns(second) == ns(T0)
    assert attrs(first) == {
        "user.created": "2020-01-01T00:00:00+02:00",
        "user.born": "1990-05-17",
        "seen": '["2024-01-01 10:00","2024-01-02 11:00"]',
    }
    assert attrs(second) == {"user.created": "2021-03-04 05:06:07"}


def test_values_of_one_key_with_different_types_across_events() -> None:
    events = [{"user": 7}, {"user": "alice"}, {"user": {"id": 3}}, {"user": [1]}, {"user": 2.5}]
    parsed = parse_json_events(ndjson(*events), ctx())
    assert not parsed.rejects
    assert [attrs(r) for r in rows(parsed)] == [
        {"user": "7"},
        {"user": "alice"},
        {"user.id": "3"},
        {"user": "[1]"},
        {"user": "2.5"},
    ]


def test_fast_and_python_paths_give_the_same_events() -> None:
    """The same events, once read by pyarrow and once (because of a bad line) by Python."""
    events = [
        {
            "timestamp": "2024-06-01T10:30:15.25Z",
            "level": "warning",
            "message": "m",
            "service": {"name": "api"},
            "http": {"status": 200, "latency": 1.25, "ok": True},
            "count": 3.0,
            "tags": ["a", "b"],
            "ids": [1, 2],
            "trace_id": TRACE.upper(),
            "host": "h1",
            "day": "2024-06-01",
        },
        {"ts": T0_S, "lvl": 50, "msg": "second", "big": 12345678901.5},
    ]
    fast = parse_json_events(ndjson(*events), ctx())
    slow = parse_json_events(ndjson(*events, b"{broken"), ctx())
    assert [r.line for r in slow.rejects] == [3]
    drop = {"EventId", "ObservedTimestamp"}
    strip = lambda p: [{k: v for k, v in r.items() if k not in drop} for r in rows(p)]  # noqa: E731
    assert strip(fast) == strip(slow)


@pytest.mark.parametrize(
    "value", [1.0, 1.5, 0.1, 1e-5, 1e-6, 1e-7, 1e9, 1e10, 123456.789, 2.5e-10, 1e21, -0.0, -3.75]
)
def test_float_text_matches_arrow(value: float) -> None:
    assert float_text(value) == pc.cast(pa.array([value]), pa.string())[0].as_py()


def test_float_text_matches_arrow_across_magnitudes() -> None:
    rnd = random.Random(7)
    values = (
        [rnd.choice([-1, 1]) * rnd.random() * 10.0 ** rnd.randint(-12, 22) for _ in range(3000)]
        + [float(i) for i in range(-50, 50)]
        + [10.0**e for e in range(-12, 22)]
    )
    arrow = pc.cast(pa.array(values), pa.string()).to_pylist()
    assert [float_text(v) for v in values] == arrow
