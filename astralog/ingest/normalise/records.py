"""Ingest stage 2, normalise: the shapes every parser returns, and what a field's name means.

Promise: :class:`Parsed` carries the canonical table, the refused events as :class:`Reject`
entries (position, stable kind, a reason that encodes as UTF-8) and how many events arrived;
:class:`NormaliseContext` is everything a parser needs to know about the tenant and the limits.
The well-known field names (timestamp, severity, body, service, trace context, host) are read
from ``schemas/ingest_event.schema.json``; this module holds only what they mean.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from typing import NamedTuple

import pyarrow as pa

from astralog.schema import schema_text
from astralog.settings import IngestSettings


@dataclass(frozen=True)
class Reject:
    """One refused event. ``kind`` is a stable slug (``invalid_json``, ``too_many_fields``, ...)
    for metrics and per-item error types; ``reason`` is the sentence shown to people."""

    index: int
    reason: str
    line: int | None = None
    kind: str = "invalid"

    def __post_init__(self) -> None:
        object.__setattr__(self, "reason", encodable(self.reason))


def encodable(text: str) -> str:
    """``text`` with lone surrogates written as ``\\udxxx``: a reason may quote what the client
    sent (a timestamp, a key), and the answer carrying it must encode as UTF-8, in JSON and in
    protobuf alike. Every reject reason passes here where it is built."""
    if text.isascii():
        return text
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


@dataclass(frozen=True)
class NormaliseContext:
    org_id: str
    source_id: str
    now_ns: int
    min_timestamp_ns: int
    retention_days: int
    limits: IngestSettings
    retention_owner: str = "the plan's"  # or "the source's", when its own override is shorter


@dataclass
class Parsed:
    table: pa.Table
    rejects: list[Reject]
    received: int
    accepted_indexes: list[int] | None = None


class Problem(NamedTuple):
    kind: str
    reason: str


class EventRefused(Exception):
    """Raised by per-event helpers; the parser turns it into a :class:`Reject` and goes on."""

    def __init__(self, kind: str, reason: str) -> None:
        super().__init__(reason)
        self.problem = Problem(kind, reason)


@cache
def well_known_fields() -> dict[str, tuple[str, ...]]:
    """Role (``timestamp``, ``severity``, ``body`` ...) -> field names in order of precedence."""
    spec = json.loads(schema_text("ingest_event.schema.json"))
    roles: dict[str, list[str]] = {}
    for name, prop in spec["properties"].items():
        if role := prop.get("x-astralog-role"):
            roles.setdefault(role, []).append(name)
    return {role: tuple(names) for role, names in roles.items()}


def setting_name(name: str) -> str:
    return f"ASTRALOG_INGEST__{name.upper()}"
