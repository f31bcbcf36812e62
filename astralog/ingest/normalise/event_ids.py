"""Ingest stage 2, normalise: event ids, UUIDv7 in bulk.

Promise: ids are unique, increase within this process (across calls and within a millisecond)
and cost no call per event. The last 48 bits are a random node id drawn once per process (again
in a forked child), not per event: the millisecond clock and the counter already make ids unique
within a process, the node id keeps replicas apart, and a batch's ids then differ only in their
clock and counter, which Parquet's delta encoding stores in well under a byte an event instead
of the 7.5 bytes per-event randomness costs (a third of a stored event).
"""

from __future__ import annotations

import os
import threading

import numpy as np
import pyarrow as pa

_HEX_DIGITS = np.frombuffer(b"0123456789abcdef", np.uint8)
# Byte -> its two hex digits as one uint16 in memory order, so one lookup writes both digits.
_HEX_PAIRS = (
    np.stack([_HEX_DIGITS[np.arange(256) >> 4], _HEX_DIGITS[np.arange(256) & 15]], 1)
    .copy()
    .view(np.uint16)
    .ravel()
)
_UUID_GROUPS = ((0, 8), (8, 12), (12, 16), (16, 20), (20, 32))  # hex digit ranges between dashes
_COUNTER_BITS = 26  # rand_a (12 bits) and the top 14 bits of rand_b: RFC 9562 6.2 method 1
_id_lock = threading.Lock()
_id_clock = {"ms": 0, "next": 0}
_node = {"id": np.frombuffer(os.urandom(6), np.uint8)}


def _new_node() -> None:
    # A forked child shares the parent's clock and counter: only another node id keeps its
    # ids apart from the parent's.
    _node["id"] = np.frombuffer(os.urandom(6), np.uint8)


os.register_at_fork(after_in_child=_new_node)


def new_event_ids(n: int, now_ns: int) -> pa.Array:
    """``n`` UUIDv7 strings, increasing within this process.

    The 48-bit millisecond clock is followed by a 26-bit counter, so ids sort in ingest order even
    within one millisecond and across calls; the process's random 48-bit node id keeps replicas
    apart.
    """
    first_ms, seq = _reserve(n, now_ns // 1_000_000)
    raw = np.empty((n, 16), np.uint8)
    raw[:, :6] = np.frombuffer(first_ms.to_bytes(6, "big"), np.uint8)
    raw[:, 10:] = _node["id"]
    raw[:, 6] = 0x70 | ((seq >> 22) & 0x0F)
    raw[:, 7] = (seq >> 14) & 0xFF
    raw[:, 8] = 0x80 | ((seq >> 8) & 0x3F)
    raw[:, 9] = seq & 0xFF
    digits = np.take(_HEX_PAIRS, raw).view(np.uint8)  # (n, 32)
    text = np.full((n, 36), ord("-"), np.uint8)
    for group, (lo, hi) in enumerate(_UUID_GROUPS):
        text[:, lo + group : hi + group] = digits[:, lo:hi]
    offsets = np.arange(0, 36 * (n + 1), 36, dtype=np.int32)
    return pa.StringArray.from_buffers(n, pa.py_buffer(offsets), pa.py_buffer(text))


def _reserve(n: int, now_ms: int) -> tuple[int, np.ndarray]:
    with _id_lock:
        ms, start = now_ms, 0
        if now_ms <= _id_clock["ms"]:
            ms, start = _id_clock["ms"], _id_clock["next"]
        if start + n > 1 << _COUNTER_BITS:
            ms, start = ms + 1, 0  # the counter would wrap: borrow the next millisecond
        _id_clock["ms"], _id_clock["next"] = ms, start + n
    return ms, np.arange(start, start + n, dtype=np.int64)
