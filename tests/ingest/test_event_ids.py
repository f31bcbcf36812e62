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


def test_event_ids_of_one_process_share_a_node_id_that_a_forked_child_redraws() -> None:
    import os

    ids = new_event_ids(1000, NOW_NS).to_pylist()
    assert len({i[-12:] for i in ids}) == 1  # what makes a batch's ids cost < 1 byte stored
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: its ids must not repeat the parent's node id
        os.write(write, new_event_ids(1, NOW_NS).to_pylist()[0].encode())
        os._exit(0)
    os.waitpid(pid, 0)
    child = os.read(read, 64).decode()
    assert child[-12:] != ids[0][-12:]
