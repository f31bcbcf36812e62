"""Ingest stage 1b, parse: what every wire format's parser shares.

Promise: JSON is read strictly (NaN and Infinity refused, depth past any limit refused as
invalid, never a RecursionError); a parse error names its line and column; one event over a
size limit is refused with the ``ASTRALOG_INGEST__*`` setting to change, as every format says it.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from astralog.ingest.normalise.draft import Finished
from astralog.ingest.normalise.records import EventRefused, NormaliseContext, Parsed, Reject


def to_parsed(
    done: Finished,
    received: int,
    where: Callable[[int], tuple[str, int | None]],
    *,
    want_indexes: bool = False,
) -> Parsed:
    rejects = []
    for ordinal, problem in done.problems:
        label, line = where(ordinal)
        rejects.append(Reject(ordinal, f"{label}: {problem.reason}", line, problem.kind))
    accepted = done.accepted.tolist() if want_indexes else None
    return Parsed(done.table, rejects, received, accepted)


def loads(text: str | bytes) -> Any:
    try:
        return json.loads(text, parse_constant=_refuse_constant)
    except RecursionError:
        # Far deeper than ASTRALOG_INGEST__MAX_DEPTH allows: refuse it like any invalid JSON.
        raise ValueError("nested too deeply to parse") from None


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is a non-finite number, which JSON does not allow")


def json_error(exc: json.JSONDecodeError | ValueError) -> str:
    if isinstance(exc, json.JSONDecodeError):
        return f"invalid JSON at column {exc.colno}: {exc.msg}"
    return f"invalid JSON: {exc}"


def kind_of(value: Any) -> str:
    names = {
        list: "an array",
        str: "a string",
        bool: "a boolean",
        int: "a number",
        float: "a number",
    }
    return "null" if value is None else names.get(type(value), type(value).__name__)


def media_type(content_type: str | None) -> str:
    return (content_type or "").split(";")[0].strip().lower()


def document_error(exc: ValueError) -> str:
    if isinstance(exc, json.JSONDecodeError):
        return f"line {exc.lineno}, column {exc.colno}: {exc.msg}"
    return str(exc)


def too_large_reason(size: int, limit: int) -> str:
    return (
        f"the event is {size} bytes, more than the limit of {limit} "
        "(ASTRALOG_INGEST__MAX_EVENT_BYTES)"
    )


def check_record_size(size: int, ctx: NormaliseContext) -> None:
    limit = ctx.limits.max_event_bytes
    if size > limit:
        raise EventRefused("event_too_large", too_large_reason(size, limit))


def check_string(name: str, text: str, ctx: NormaliseContext) -> None:
    limit = ctx.limits.max_string_bytes
    if len(text) * 4 > limit and len(text.encode("utf-8", "surrogatepass")) > limit:
        raise EventRefused(
            "string_too_long",
            f"field {name!r} is longer than the limit of {limit} bytes "
            "(ASTRALOG_INGEST__MAX_STRING_BYTES)",
        )
