"""Field names for the search box's suggestions: which fields the events of a range hold.

Stage: plan -> **engine**, beside search. The answer comes from a bounded sample: at most
``sample_rows`` events of the plan, whichever the engine reaches first (a LIMIT without an order
stops the scan early), so its cost does not grow with the range. For each field it says in how
many sampled events the field is present. Only names the query language can spell are listed
(letters, digits and ``_ . - @ /``), and an attribute that a well-known field shadows (``level``
typed in a query reads the severity column, never an attribute of that name) is left out, as is
a resource key a well-known field reads already (``host.name`` is ``host``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

from astralog.catalog import BatchCommitted
from astralog.errors import BadRequest
from astralog.query.engine import Session
from astralog.query.language import FieldKind, resolve_field

__all__ = ["SAMPLE_ROWS", "TIMEOUT_SECONDS", "FieldSample", "check_prefix", "newest", "sample"]

SAMPLE_ROWS: Final = 10_000
TIMEOUT_SECONDS: Final = 5.0  # a suggestion later than this is no help to the person typing

# Presence of each well-known field, as the language defines "missing" (see language.py).
WELL_KNOWN_PRESENT: Final[dict[str, str]] = {
    "level": "SeverityText <> ''",
    "service": "ServiceName <> ''",
    "host": "map_contains(ResourceAttributes, 'host.name')",
    "source": "SourceId <> ''",
    "body": "Body <> ''",
    "trace_id": "TraceId <> ''",
    "span_id": "SpanId <> ''",
    "scope": "ScopeName <> ''",
    "event_id": "EventId <> ''",
}
_FIELD_PUNCTUATION: Final = frozenset("_.-@/")
# RE2's letters and numbers: close to str.isalnum, which decides in Python afterwards.
_SPELLABLE_SQL: Final = r"[\pL\pN_.@/-]+"
# Resource keys a well-known field already reads (host) or mirrors (service): listed once.
_ALIASED: Final = frozenset({"host.name", "service.name", "_exists_"})
_SHADOWED: Final = 20  # at least the well-known names, their aliases and _ALIASED


def spellable(name: str) -> bool:
    """True when the query language reads ``name`` as one field name."""
    return bool(name) and all(ch.isalnum() or ch in _FIELD_PUNCTUATION for ch in name)


def check_prefix(prefix: str) -> str:
    """A prefix that could begin a field name, else a 400 that says what a name is made of."""
    if prefix and not spellable(prefix):
        raise BadRequest(
            f"prefix {prefix[:40]!r} cannot begin a field name: field names are letters, "
            "digits and _ . - @ /"
        )
    return prefix


def newest(batches: Sequence[BatchCommitted], rows: int) -> list[BatchCommitted]:
    """The newest batches that hold ``rows`` events together: all a sample needs to fetch."""
    chosen: list[BatchCommitted] = []
    held = 0
    for batch in sorted(batches, key=lambda b: b.max_ts_ns, reverse=True):
        if held >= rows:
            break
        chosen.append(batch)
        held += batch.rows
    return chosen


@dataclass(frozen=True)
class FieldSample:
    events: int  # how many events were sampled
    fields: list[dict[str, Any]]  # {name, count, well_known}, well-known first
    truncated: bool  # more attributes matched than ``limit``


def sample(session: Session, sample_rows: int, prefix: str, limit: int) -> FieldSample:
    """Well-known fields and attributes starting with ``prefix`` (any case), by presence."""
    where, params = session.plan.where()
    # Only what is counted is kept: a flag per well-known field and the two maps.
    flags = ", ".join(f"({sql}) AS {name}" for name, sql in WELL_KNOWN_PRESENT.items())
    session.conn.execute(
        f"CREATE OR REPLACE TEMP TABLE field_sample AS SELECT {flags}, LogAttributes, "
        f"ResourceAttributes FROM logs WHERE {where} LIMIT {int(sample_rows)}",
        params,
    )
    presence = ", ".join(f"count(*) FILTER (WHERE {name})" for name in WELL_KNOWN_PRESENT)
    row = session.conn.execute(f"SELECT count(*), {presence} FROM field_sample").fetchone()
    assert row is not None
    events, counts = int(row[0]), row[1:]
    lowered = prefix.lower()
    known = [
        {"name": name, "count": int(n), "well_known": True}
        for name, n in zip(WELL_KNOWN_PRESENT, counts, strict=True)
        if name.startswith(lowered)
    ]
    attributes = _attributes(session, prefix, limit)
    return FieldSample(events, known + attributes[:limit], len(attributes) > limit)


def _attributes(session: Session, prefix: str, limit: int) -> list[dict[str, Any]]:
    # Names the language reads otherwise are dropped after the LIMIT: fetch that many more.
    sql = (
        "SELECT k, count(*) AS n FROM (SELECT unnest(list_distinct(list_concat("
        "map_keys(LogAttributes), map_keys(ResourceAttributes)))) AS k FROM field_sample) "
        "WHERE starts_with(lower(k), lower($prefix)) AND regexp_full_match(k, $spellable) "
        f"GROUP BY k ORDER BY n DESC, k LIMIT {int(limit) + 1 + _SHADOWED}"
    )
    rows = session.conn.execute(sql, {"prefix": prefix, "spellable": _SPELLABLE_SQL}).fetchall()
    return [
        {"name": k, "count": int(n), "well_known": False}
        for k, n in rows
        if spellable(k) and resolve_field(k).kind is FieldKind.ATTRIBUTE and k not in _ALIASED
    ][: limit + 1]
