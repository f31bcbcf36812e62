"""Ingest stage 2, normalise: Arrow array helpers every other step shares.

Promise: attribute columns become ``map<string, string>`` without a Python loop per event, and
boolean Arrow arrays become numpy masks with null counting as false.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc


def map_array(n: int, entries: Sequence[tuple[str, pa.Array, np.ndarray]]) -> pa.Array:
    """Build ``n`` maps from (key, string values, include mask) entries, row by row in entry order.

    The masks of all entries are laid out as an (n, k) matrix; its true cells in row-major order
    are the map entries, so one ``take`` over the concatenated values interleaves them.
    """
    entries = [e for e in entries if e[2].any()]
    if not entries:
        offsets = pa.array(np.zeros(n + 1, np.int32))
        return pa.MapArray.from_arrays(
            offsets, pa.array([], pa.string()), pa.array([], pa.string())
        )
    k = len(entries)
    if all(mask.all() for _, _, mask in entries):  # every event has every field: no gaps
        offsets = np.arange(0, k * (n + 1), k, dtype=np.int32)
        rows, cols = np.repeat(np.arange(n), k), np.tile(np.arange(k), n)
    else:
        masks = np.stack([mask for _, _, mask in entries], axis=1)
        offsets = np.zeros(n + 1, np.int32)
        np.cumsum(masks.sum(axis=1, dtype=np.int32), out=offsets[1:])
        rows, cols = np.nonzero(masks)
    keys = pa.array([key for key, _, _ in entries], pa.string()).take(
        pa.array(cols.astype(np.int32))
    )
    values = pa.concat_arrays([values for _, values, _ in entries])
    items = values.take(pa.array(cols.astype(np.int64) * n + rows))
    return pa.MapArray.from_arrays(pa.array(offsets), keys, items)


def to_mask(flags: pa.Array) -> np.ndarray:
    """An Arrow boolean array as a numpy mask, null counting as false."""
    out: np.ndarray = flags.fill_null(False).to_numpy(zero_copy_only=False)
    return out


def nonempty(values: pa.Array) -> np.ndarray:
    return to_mask(pc.greater(pc.binary_length(values), 0))


def is_number(kind: pa.DataType) -> bool:
    return bool(pa.types.is_integer(kind) or pa.types.is_floating(kind))
