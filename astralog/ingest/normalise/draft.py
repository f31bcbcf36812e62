"""Ingest stage 2, normalise: drafts, the canonical columns of candidate events, and the finish.

Promise: :func:`finish` applies the retention and future time window, drops refused rows, adds
event ids, receive time and tenant columns, and returns exactly the canonical schema with the
accepted events in input order and every problem by its event's position.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

import numpy as np
import pyarrow as pa

from astralog.ingest.normalise.arrays import map_array
from astralog.ingest.normalise.event_ids import new_event_ids
from astralog.ingest.normalise.records import NormaliseContext, Problem, setting_name
from astralog.ingest.normalise.timestamps import TS_UTC
from astralog.schema import log_schema

MISSING_TS = int(np.iinfo(np.int64).min)
_TEXT_COLUMNS = (
    "TraceId", "SpanId", "SeverityText", "ServiceName", "Body", "ResourceSchemaUrl",
    "ScopeSchemaUrl", "ScopeName", "ScopeVersion", "EventName",
)  # fmt: skip
_BYTE_COLUMNS = ("TraceFlags", "SeverityNumber")
_MAP_COLUMNS = ("ResourceAttributes", "ScopeAttributes", "LogAttributes")


@dataclass
class Draft:
    timestamp: np.ndarray  # int64 ns since the epoch; MISSING_TS where the event carried none
    ordinals: np.ndarray  # position of each row's event in the request
    columns: dict[str, pa.Array | pa.ChunkedArray]
    problems: dict[int, Problem] = field(default_factory=dict)  # row -> why it is refused

    def __len__(self) -> int:
        return len(self.timestamp)


def make_draft(
    timestamp: np.ndarray,
    ordinals: np.ndarray,
    problems: dict[int, Problem] | None = None,
    **columns: pa.Array | None,
) -> Draft:
    """A draft with every per-event column present; columns not given get their empty value."""
    n = len(timestamp)
    unknown = set(columns) - set(_TEXT_COLUMNS + _BYTE_COLUMNS + _MAP_COLUMNS)
    if unknown:
        raise TypeError(f"not per-event canonical columns: {sorted(unknown)}")
    full = {}
    for name in _TEXT_COLUMNS + _BYTE_COLUMNS + _MAP_COLUMNS:
        given = columns.get(name)
        full[name] = given if given is not None else _empty_column(name, n)
    return Draft(
        np.asarray(timestamp, np.int64), np.asarray(ordinals, np.int64), full, problems or {}
    )


def _empty_column(name: str, n: int) -> pa.Array:
    if name in _BYTE_COLUMNS:
        return pa.array(np.zeros(n, np.uint8))
    if name in _MAP_COLUMNS:
        return map_array(n, [])
    return pa.repeat("", n)


@dataclass
class Finished:
    table: pa.Table
    problems: list[tuple[int, Problem]]  # (event ordinal, problem), in ordinal order
    accepted: np.ndarray  # ordinals of the rows of ``table``


def finish(
    drafts: Sequence[Draft], ctx: NormaliseContext, early: Iterable[tuple[int, Problem]] = ()
) -> Finished:
    """Apply the time window, drop refused rows, add ids and tenant columns, build the table."""
    draft = _concat(drafts)
    problems = dict(draft.problems)
    ts = draft.timestamp.copy()
    ts[ts == MISSING_TS] = ctx.now_ns
    _check_window(ts, ctx, problems)
    keep = np.ones(len(ts), bool)
    if problems:
        keep[list(problems)] = False
    table = _assemble(draft, ts, keep, ctx)
    found = [(int(draft.ordinals[row]), p) for row, p in problems.items()]
    found.extend(early)
    found.sort(key=lambda item: item[0])
    return Finished(table, found, draft.ordinals[keep])


def _concat(drafts: Sequence[Draft]) -> Draft:
    if len(drafts) == 1:
        return drafts[0]
    if not drafts:
        return make_draft(np.zeros(0, np.int64), np.zeros(0, np.int64))
    problems: dict[int, Problem] = {}
    offset = 0
    for d in drafts:
        problems.update({row + offset: p for row, p in d.problems.items()})
        offset += len(d)
    # Chunked, not concatenated: the halves of a parallel draft join without a copy.
    columns = {
        name: pa.chunked_array([d.columns[name] for d in drafts]) for name in drafts[0].columns
    }
    merged = Draft(
        np.concatenate([d.timestamp for d in drafts]),
        np.concatenate([d.ordinals for d in drafts]),
        columns,
        problems,
    )
    return _in_input_order(merged)


def _in_input_order(draft: Draft) -> Draft:
    # Drafts of a searched body cover interleaved lines; the table keeps the request's order.
    if len(draft) < 2 or bool(np.all(np.diff(draft.ordinals) > 0)):
        return draft
    order = np.argsort(draft.ordinals, kind="stable")
    where = np.empty_like(order)
    where[order] = np.arange(len(order))
    take = pa.array(order)
    return Draft(
        draft.timestamp[order],
        draft.ordinals[order],
        {name: values.take(take) for name, values in draft.columns.items()},
        {int(where[row]): p for row, p in draft.problems.items()},
    )


def _check_window(ts: np.ndarray, ctx: NormaliseContext, problems: dict[int, Problem]) -> None:
    newest = ctx.now_ns + ctx.limits.max_future_seconds * 10**9
    for row in np.flatnonzero(ts < ctx.min_timestamp_ns):
        problems.setdefault(
            int(row),
            Problem(
                "timestamp_too_old",
                f"timestamp {_iso(int(ts[row]))} is older than {ctx.retention_owner} "
                f"retention of {ctx.retention_days} days",
            ),
        )
    for row in np.flatnonzero(ts > newest):
        problems.setdefault(
            int(row),
            Problem(
                "timestamp_in_future",
                f"timestamp {_iso(int(ts[row]))} is more than {ctx.limits.max_future_seconds} "
                f"seconds in the future ({setting_name('max_future_seconds')}); check the "
                "sender's clock and time zone",
            ),
        )


def _iso(ns: int) -> str:
    seconds, fraction = divmod(ns, 10**9)
    try:
        stamp = datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S")
    except (OverflowError, OSError, ValueError):
        return f"{ns} ns since the epoch"
    return f"{stamp}.{fraction:09d}Z" if fraction else f"{stamp}Z"


def _assemble(draft: Draft, ts: np.ndarray, keep: np.ndarray, ctx: NormaliseContext) -> pa.Table:
    schema = log_schema()
    take = None if keep.all() else pa.array(np.flatnonzero(keep))
    n = int(keep.sum())
    cols: dict[str, pa.Array | pa.ChunkedArray] = {
        name: (arr if take is None else arr.take(take)) for name, arr in draft.columns.items()
    }
    cols["Timestamp"] = pa.array(ts[keep], type=TS_UTC)
    cols["ObservedTimestamp"] = pa.array(np.full(n, ctx.now_ns, np.int64), type=TS_UTC)
    cols["EventId"] = new_event_ids(n, ctx.now_ns)
    cols["OrgId"] = pa.repeat(ctx.org_id, n)
    cols["SourceId"] = pa.repeat(ctx.source_id, n)
    return pa.Table.from_arrays([cols[f.name] for f in schema], schema=schema)
