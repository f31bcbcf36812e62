"""Ingest stage 2, normalise: timestamps, vectorised.

Promise: RFC 3339 / ISO 8601 text and epoch numbers of any unit (told apart by magnitude) become
nanoseconds since the epoch, with a mask of the rows that held a usable time; nothing walks
events one by one except the rare well-formed but impossible date.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from astralog.ingest.normalise.arrays import is_number, to_mask

TS_UTC = pa.timestamp("ns", tz="UTC")
_ISO = (
    r"^(?P<date>\d{4}-\d{2}-\d{2})"
    r"(?:[Tt ](?P<time>\d{2}:\d{2}(?::\d{2})?)(?:[.,](?P<frac>\d{1,9})\d*)?)?"
    r"\s*(?P<zone>[Zz]|[+-]\d{2}(?::?\d{2})?)?$"
)
_NUMERIC = r"^[+-]?\d+(?:\.\d*)?(?:[eE][+-]?\d+)?$"
_INTEGER = r"^[+-]?\d{1,18}$"


def epoch_ns(values: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """Nanoseconds since the epoch and a mask of the rows that held a usable time."""
    kind = values.type
    n = len(values)
    valid = values.is_valid().to_numpy(zero_copy_only=False)
    if pa.types.is_timestamp(kind):
        units = {"s": 1, "ms": 10**3, "us": 10**6, "ns": 10**9}[kind.unit]
        raw = pc.cast(values, pa.int64()).fill_null(0).to_numpy(zero_copy_only=False)
        ns, ok = _scale(raw, 10**9 // units)
        return ns, ok & valid
    if is_number(kind):
        ns, ok = epoch_numbers(values.fill_null(0).to_numpy(zero_copy_only=False))
        return ns, ok & valid
    if pa.types.is_string(kind):
        return _epoch_of_text(values)
    return np.zeros(n, np.int64), np.zeros(n, bool)


def epoch_numbers(numbers: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Epoch numbers whose magnitude tells the unit: below 1e11 seconds (until year 5138),
    below 1e14 milliseconds, below 1e17 microseconds, else nanoseconds."""
    magnitude = np.abs(numbers.astype(np.float64))
    per_unit = np.select(
        [magnitude < 1e11, magnitude < 1e14, magnitude < 1e17], [10**9, 10**6, 10**3], 1
    ).astype(np.int64)
    return _scale(numbers, per_unit)


def _scale(numbers: np.ndarray, per_unit: np.ndarray | int) -> tuple[np.ndarray, np.ndarray]:
    approx = numbers.astype(np.float64) * per_unit
    ok = np.isfinite(approx) & (np.abs(approx) < 9.2e18)
    if numbers.dtype.kind in "iu":
        with np.errstate(over="ignore"):
            ns = np.where(ok, numbers.astype(np.int64) * per_unit, 0)
        return ns.astype(np.int64), ok
    usable = np.where(ok, numbers, 0)
    whole = np.floor(usable)
    # Whole units and the fraction apart: float64 alone would round nanoseconds away.
    fraction = np.round((usable - whole) * per_unit).astype(np.int64)
    return whole.astype(np.int64) * per_unit + fraction, ok


def _epoch_of_text(values: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    n = len(values)
    try:  # the common case, RFC 3339 with a zone everywhere: one cast, no regex
        exact = pc.cast(values, TS_UTC)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        pass
    else:
        valid = exact.is_valid().to_numpy(zero_copy_only=False)
        return pc.cast(exact, pa.int64()).fill_null(0).to_numpy(zero_copy_only=False), valid
    text = pc.utf8_trim_whitespace(values)
    ns, ok = np.zeros(n, np.int64), np.zeros(n, bool)
    numeric = pc.match_substring_regex(text, _NUMERIC).fill_null(False)
    is_numeric = to_mask(numeric)
    if is_numeric.any():
        integer = pc.match_substring_regex(text, _INTEGER).fill_null(False)
        as_int = pc.cast(pc.if_else(integer, text, None), pa.int64())
        as_float = pc.cast(pc.if_else(pc.and_not(numeric, integer), text, None), pa.float64())
        for part in (as_int, as_float):
            rows = part.is_valid().to_numpy(zero_copy_only=False)
            if rows.any():
                part_ns, part_ok = epoch_numbers(part.fill_null(0).to_numpy(zero_copy_only=False))
                ns[rows], ok[rows] = part_ns[rows], part_ok[rows]
    if not is_numeric.all():
        iso = _cast_iso(pc.if_else(numeric, None, text) if is_numeric.any() else text)
        rows = iso.is_valid().to_numpy(zero_copy_only=False)
        ns[rows] = pc.cast(iso, pa.int64()).fill_null(0).to_numpy(zero_copy_only=False)[rows]
        ok |= rows
    return ns, ok


def _cast_iso(text: pa.Array) -> pa.Array:
    """ISO 8601 text -> timestamp[ns, UTC]; null where the text is not a time."""
    try:
        return pc.cast(text, TS_UTC)  # the common case: RFC 3339 with a zone, in one call
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        pass
    date, time, frac, zone = pc.extract_regex(text, _ISO).flatten()
    time = pc.if_else(pc.equal(time, ""), "00:00:00", time)
    frac = pc.if_else(pc.equal(frac, ""), "", pc.binary_join_element_wise(".", frac, ""))
    zone = pc.if_else(pc.equal(zone, ""), "Z", pc.utf8_upper(zone))  # no zone means UTC
    canonical = pc.binary_join_element_wise(date, "T", time, frac, zone, "")
    try:
        return pc.cast(canonical, TS_UTC)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return pa.array([_cast_one(v) for v in canonical.to_pylist()], pa.int64()).cast(TS_UTC)


def _cast_one(text: str | None) -> int | None:
    # Well-formed but impossible (2024-02-30): one value at a time, only on this rare path.
    if text is None:
        return None
    try:
        return int(pc.cast(pa.array([text]), TS_UTC).cast(pa.int64())[0].as_py())
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return None
