"""Ingest stage 2, normalise: values -> text, the way Arrow writes them.

Promise: a value gets the same text whether it went through pyarrow or through Python: numbers
as their JSON text, booleans ``true``/``false``, arrays and objects as compact JSON, times that
pyarrow inferred read again as the text the client sent.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Iterator
from datetime import datetime
from decimal import Decimal
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from astralog.ingest.normalise.arrays import is_number
from astralog.ingest.normalise.records import well_known_fields


def as_text(values: pa.Array) -> pa.Array:
    kind = values.type
    if pa.types.is_string(kind):
        return values
    if pa.types.is_large_string(kind) or is_number(kind) or pa.types.is_boolean(kind):
        return pc.cast(values, pa.string())
    if pa.types.is_timestamp(kind):
        return _timestamp_text(values)
    if pa.types.is_list(kind):
        return _list_json(values)
    return _python_json(values)


def _timestamp_text(values: pa.Array) -> pa.Array:
    # Only reached when a reader's inferred timestamp was kept (see schema_keeping_time_text).
    return pc.strftime(pc.cast(values, pa.timestamp("s")), format="%Y-%m-%dT%H:%M:%SZ")


def schema_keeping_time_text(schema: pa.Schema) -> pa.Schema | None:
    """The schema to read a body again with when pyarrow turned ISO-looking text into timestamps
    that would become attributes: their text (zone, spelling) is lost in that conversion.

    None when the only such column is the event's own timestamp field, which is consumed anyway:
    the common body costs one read, not two.
    """
    leaves = list(_leaf_types(schema, ""))
    names = {name for name, _ in leaves}
    own = next((c for c in well_known_fields().get("timestamp", ()) if c in names), None)
    if not any(_has_timestamp(kind) and name != own for name, kind in leaves):
        return None
    return pa.schema([f.with_type(_timestamps_as_text(f.type)) for f in schema])


def _leaf_types(schema: Iterable[pa.Field], prefix: str) -> Iterator[tuple[str, pa.DataType]]:
    # A stack, not recursion: a schema nested thousands deep once raised RecursionError here.
    stack = [(prefix, f) for f in reversed(list(schema))]
    while stack:
        prefix, f = stack.pop()
        if pa.types.is_struct(f.type):
            stack.extend((f"{prefix}{f.name}.", child) for child in reversed(list(f.type)))
        else:
            yield f"{prefix}{f.name}", f.type


def _has_timestamp(kind: pa.DataType, depth: int = 0) -> bool:
    if depth > _TYPE_DEPTH_CAP:  # far past any depth limit: those events are refused anyway
        return False
    if pa.types.is_timestamp(kind):
        return True
    if pa.types.is_struct(kind):
        return any(_has_timestamp(f.type, depth + 1) for f in kind)
    if pa.types.is_list(kind):
        return _has_timestamp(kind.value_type, depth + 1)
    return False


_TYPE_DEPTH_CAP = 200


def _timestamps_as_text(kind: pa.DataType, depth: int = 0) -> pa.DataType:
    if depth > _TYPE_DEPTH_CAP:  # far past any depth limit: those events are refused anyway
        return kind
    if pa.types.is_timestamp(kind):
        return pa.string()
    if pa.types.is_struct(kind):
        return pa.struct([f.with_type(_timestamps_as_text(f.type, depth + 1)) for f in kind])
    if pa.types.is_list(kind):
        value = _timestamps_as_text(kind.value_type, depth + 1)
        return pa.list_(kind.value_field.with_type(value))
    return kind


_ESCAPES = (("\\", "\\\\"), ('"', '\\"'), ("\n", "\\n"), ("\r", "\\r"), ("\t", "\\t"))
_OTHER_CONTROL = r"[\x00-\x08\x0b\x0c\x0e-\x1f]"


def _list_json(values: pa.Array) -> pa.Array:
    items = values.values
    kind = items.type
    if pa.types.is_string(kind):
        if pc.any(pc.match_substring_regex(items, _OTHER_CONTROL)).as_py():
            return _python_json(values)
        for old, new in _ESCAPES:
            items = pc.replace_substring(items, old, new)
        items = pc.binary_join_element_wise('"', items, '"', "")
    elif is_number(kind) or pa.types.is_boolean(kind) or pa.types.is_null(kind):
        items = pc.cast(items, pa.string())
    else:
        return _python_json(values)
    items = items.fill_null("null")
    mask = values.is_null() if values.null_count else None
    lists = pa.ListArray.from_arrays(values.offsets, items, mask=mask)
    return pc.binary_join_element_wise("[", pc.binary_join(lists, ","), "]", "")


def _python_json(values: pa.Array) -> pa.Array:
    """The slow way, for shapes the vectorised paths do not cover (objects inside arrays)."""
    return pa.array(
        [None if v is None else json_text(v, drop_nulls=True) for v in values.to_pylist()],
        pa.string(),
    )


def json_text(value: Any, *, drop_nulls: bool = False) -> str:
    """Compact JSON text, with floats written the way Arrow writes them, so a value gets the same
    text whether it went through pyarrow or through Python."""
    if value is None:
        return "null"
    if value is True or value is False:
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return float_text(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, dict):
        parts = (
            f"{json.dumps(str(k), ensure_ascii=False)}:{json_text(v, drop_nulls=drop_nulls)}"
            for k, v in value.items()
            if not (drop_nulls and v is None)
        )
        return "{" + ",".join(parts) + "}"
    if isinstance(value, list | tuple):
        return "[" + ",".join(json_text(v, drop_nulls=drop_nulls) for v in value) + "]"
    if isinstance(value, datetime):
        return json.dumps(value.isoformat())
    return json.dumps(str(value), ensure_ascii=False)


def float_text(value: float) -> str:
    """A float as Arrow's cast to string writes it: shortest round-trip digits, fixed notation
    for exponents -7 < e < 10 (1e9 -> 1000000000, 1e10 -> 1e+10, 1e-7 -> 1e-7), no ``.0``."""
    if 1e-4 <= abs(value) < 1e10:  # both write fixed notation here; Python adds ".0"
        text = repr(value)
        return text[:-2] if text.endswith(".0") else text
    if not math.isfinite(value):
        return "null"  # JSON has no NaN or infinity; Python's reader is told to refuse them
    if value == 0:
        return "-0" if math.copysign(1, value) < 0 else "0"
    exact = Decimal(repr(value))
    sign, digit_tuple, exponent = exact.as_tuple()
    digits = "".join(map(str, digit_tuple)).rstrip("0") or "0"
    assert isinstance(exponent, int)
    scientific = len("".join(map(str, digit_tuple))) - 1 + exponent
    minus = "-" if sign else ""
    if -7 < scientific < 10:
        fixed = format(exact, "f")
        return fixed.rstrip("0").rstrip(".") if "." in fixed else fixed
    mantissa = digits[0] + ("." + digits[1:] if len(digits) > 1 else "")
    return f"{minus}{mantissa}e{'+' if scientific >= 0 else '-'}{abs(scientific)}"
