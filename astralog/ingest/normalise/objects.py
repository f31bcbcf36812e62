"""Ingest stage 2, normalise: Python objects -> table, for the events pyarrow's reader refuses.

Promise: the per-event checks here (depth, keys, text that is not valid Unicode) refuse an event
with :class:`~astralog.ingest.normalise.records.EventRefused` and the same kinds and reasons as
the bulk path; :func:`table_from_objects` types each column, text where types are mixed.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import pyarrow as pa

from astralog.ingest.normalise.records import EventRefused, setting_name
from astralog.ingest.normalise.text import json_text
from astralog.settings import IngestSettings


def flatten_event(event: dict[str, Any], limits: IngestSettings) -> dict[str, Any]:
    """Flatten nested objects with dots; raise :class:`EventRefused` past ``max_depth``.

    Field count and string length are checked later on the table, as for every other event.
    """
    out: dict[str, Any] = {}
    _flatten_into(event, "", 1, out, limits.max_depth)
    return out


def _flatten_into(
    obj: dict[str, Any], prefix: str, depth: int, out: dict[str, Any], limit: int
) -> None:
    for key, value in obj.items():
        name = prefix + key
        if not key.isascii():
            check_encodable(name, key)
        if isinstance(value, dict) and all(v is None for v in value.values()):
            out.setdefault(name, "{}")  # an empty object is a value, as in the bulk path
        elif isinstance(value, dict):
            if depth + 1 > limit:
                raise _too_deep(name, limit)
            _flatten_into(value, name + ".", depth + 1, out, limit)
        elif value is None:
            continue
        else:
            if isinstance(value, list):
                if depth + _list_depth(value) > limit:
                    raise _too_deep(name, limit)
                check_encodable(name, json.dumps(value, ensure_ascii=False))
            elif isinstance(value, str) and not value.isascii():
                check_encodable(name, value)
            out.setdefault(name, value)


def _list_depth(value: Any) -> int:
    if isinstance(value, list):
        return 1 + max((_list_depth(v) for v in value), default=0)
    if isinstance(value, dict):
        return 1 + max((_list_depth(v) for v in value.values()), default=0)
    return 0


def _too_deep(name: str, limit: int) -> EventRefused:
    return EventRefused(
        "too_deep",
        f"field {name!r} is nested more than {limit} levels deep ({setting_name('max_depth')})",
    )


def check_text(name: str, value: str) -> None:
    """Refuse text that cannot be stored as UTF-8: a lone surrogate such as ``"\\ud800"``."""
    if not value.isascii():
        check_encodable(name, value)


def check_encodable(name: str, value: str) -> None:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        code = ord(value[exc.start])
        what = (
            f"an invalid UTF-8 byte (0x{code - 0xDC00:02x})"  # kept by "surrogateescape"
            if 0xDC80 <= code <= 0xDCFF
            else f"an unpaired surrogate escape (\\u{code:04x}), which is not valid Unicode"
        )
        raise EventRefused("invalid_utf8", f"field {name!r} holds {what}") from exc


def table_from_objects(rows: Sequence[dict[str, Any]]) -> pa.Table:
    """A table of flattened events, typed per column; a column of mixed types becomes text."""
    names: dict[str, None] = {}
    for row in rows:
        names.update(dict.fromkeys(row))
    columns = {name: _column([row.get(name) for row in rows]) for name in names}
    if not columns:
        return pa.table({"_": pa.nulls(len(rows))})
    return pa.table(columns)


def _column(values: list[Any]) -> pa.Array:
    kinds = {type(v) for v in values if v is not None}
    typed = {
        frozenset({str}): pa.string(),
        frozenset({bool}): pa.bool_(),
        frozenset({int}): pa.int64(),
        frozenset({float}): pa.float64(),
        frozenset({int, float}): pa.float64(),
    }.get(frozenset(kinds))
    try:
        if typed is not None:
            return pa.array(values, typed)
        if kinds == {list}:
            return pa.array(values)
    except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError):
        pass
    return pa.array([None if v is None else _scalar_text(v) for v in values], pa.string())


def _scalar_text(value: Any) -> str:
    return value if isinstance(value, str) else json_text(value)


def check_key(name: str, limits: IngestSettings) -> None:
    """Refuse an attribute key over ``max_key_bytes`` or one that is not valid Unicode."""
    check_encodable(name, name)
    if len(name) * 4 > limits.max_key_bytes and len(name.encode()) > limits.max_key_bytes:
        raise EventRefused("key_too_long", key_reason(name, limits))


def key_reason(name: str, limits: IngestSettings) -> str:
    return (
        f"attribute key {name[:40]!r}... is {len(name.encode('utf-8', 'surrogatepass'))} bytes "
        f"long, more than the limit of {limits.max_key_bytes} ({setting_name('max_key_bytes')})"
    )
