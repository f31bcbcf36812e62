"""What the ingest parser tests share: a tenant context, fixed times and readers of the result."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

from astralog.ingest.formats import parse_json_events
from astralog.ingest.normalise import NormaliseContext, Parsed
from astralog.settings import IngestSettings

NOW = datetime(2024, 6, 1, 12, 0, tzinfo=UTC)
NOW_NS = int(NOW.timestamp()) * 10**9
RETENTION_DAYS = 30
T0 = datetime(2024, 6, 1, 10, 30, 15, tzinfo=UTC)
T0_S = int(T0.timestamp())
TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
SPAN = "00f067aa0ba902b7"


def ctx(**limits: Any) -> NormaliseContext:
    return NormaliseContext(
        org_id="org-1",
        source_id="src-1",
        now_ns=NOW_NS,
        min_timestamp_ns=NOW_NS - RETENTION_DAYS * 86_400 * 10**9,
        retention_days=RETENTION_DAYS,
        limits=IngestSettings(**limits),
    )


def ndjson(*events: Any) -> bytes:
    return b"\n".join(e if isinstance(e, bytes) else json.dumps(e).encode() for e in events)


def rows(parsed: Parsed) -> list[dict[str, Any]]:
    return parsed.table.to_pylist()


def attrs(row: dict[str, Any], column: str = "LogAttributes") -> dict[str, str]:
    return dict(row[column])


def ns(when: datetime) -> int:
    return int((when - datetime(1970, 1, 1, tzinfo=UTC)) / timedelta(microseconds=1)) * 1000


def ts_ns(row: dict[str, Any]) -> int:
    value = row["Timestamp"]
    return int(value.value) if hasattr(value, "value") else ns(value)


def parse_one(event: dict[str, Any], **limits: Any) -> dict[str, Any]:
    parsed = parse_json_events(ndjson(event), ctx(**limits))
    assert not parsed.rejects, parsed.rejects
    [row] = rows(parsed)
    return row


def reject_of(event: Any, **limits: Any) -> str:
    parsed = parse_json_events(ndjson({"message": "ok"}, event), ctx(**limits))
    assert parsed.table.num_rows == 1 and len(parsed.rejects) == 1, parsed.rejects
    reject = parsed.rejects[0]
    assert (reject.index, reject.line) == (1, 2)
    return reject.reason
