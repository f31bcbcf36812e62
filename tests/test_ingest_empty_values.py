"""Empty values are values: ``""`` and ``{}`` keep their key through JSON ingest, as through OTLP.

Both normalisation paths are exercised: pyarrow's bulk reader (objects of one shape per key) and
the per-object path it falls back to (a key that is an object in one event and a number in
another). An object whose keys all hold null has no key left and reads as ``{}`` in both.
"""

from __future__ import annotations

import json
import time

import pytest

from astralog.ingest.formats.json import parse_json_events
from astralog.ingest.normalise.records import NormaliseContext
from astralog.settings import IngestSettings


def _attributes(body: bytes) -> list[dict[str, str]]:
    now = time.time_ns()
    ctx = NormaliseContext("org", "src", now, now - 86_400 * 10**9, 1, IngestSettings())
    return [dict(row) for row in parse_json_events(body, ctx).table["LogAttributes"].to_pylist()]


def _ndjson(*events: dict[str, object]) -> bytes:
    return b"".join(json.dumps(e).encode() + b"\n" for e in events)


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(
            _ndjson(
                {"message": "a", "s": "", "m": {}, "n": {"k": {}}, "o": {"k": None}},
                {"message": "b", "m": {"k": 1}},
                {"message": "c"},
            ),
            id="bulk",
        ),
        pytest.param(
            _ndjson(
                {"message": "a", "s": "", "m": {}, "n": {"k": {}}, "o": {"k": None}},
                {"message": "b", "m": {"k": 1}, "o": 3},
                {"message": "c", "n": 1},
            ),
            id="per-object",
        ),
    ],
)
def test_empty_string_and_empty_object_keep_their_keys(body: bytes) -> None:
    first, second, third = _attributes(body)
    assert first == {"s": "", "m": "{}", "n.k": "{}", "o": "{}"}
    assert second["m.k"] == "1" and "m" not in second
    assert "m" not in third and "s" not in third
