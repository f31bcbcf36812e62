"""Normalise: event ids, UUIDv7 in bulk."""

from __future__ import annotations

import uuid

from astralog.ingest.normalise.event_ids import new_event_ids
from tests.ingest.parsing import NOW_NS


def test_event_ids_are_uuid7_unique_and_increasing() -> None:
    first = new_event_ids(5000, NOW_NS).to_pylist()
    second = new_event_ids(3, NOW_NS - 10**9).to_pylist()  # a clock that stepped back
    ids = first + second
    parsed = [uuid.UUID(i) for i in ids]
    assert all(u.version == 7 and u.variant == uuid.RFC_4122 for u in parsed)
    assert len(set(ids)) == len(ids)
    assert ids == sorted(ids)
    assert all(str(u) == i for u, i in zip(parsed, ids, strict=True))
    millis = int.from_bytes(parsed[0].bytes[:6], "big")
    assert millis >= NOW_NS // 1_000_000


def test_event_ids_of_an_empty_batch() -> None:
    assert len(new_event_ids(0, NOW_NS)) == 0
