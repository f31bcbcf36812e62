"""The canonical log record, read from ``schemas/log_record.json`` (never restated in code)."""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

_ARROW_TYPES: dict[str, pa.DataType] = {
    "timestamp_ns_utc": pa.timestamp("ns", tz="UTC"),
    "string": pa.string(),
    "uint8": pa.uint8(),
    "map_string_string": pa.map_(pa.string(), pa.string()),
}


def schema_text(name: str) -> str:
    """Return the text of a file in ``schemas/`` (for example ``otel_logs.sql``)."""
    return resources.files("astralog.schemas").joinpath(name).read_text(encoding="utf-8")


@cache
def record_spec() -> dict[str, Any]:
    spec: dict[str, Any] = json.loads(schema_text("log_record.json"))
    return spec


@cache
def log_schema() -> pa.Schema:
    """The Arrow schema every batch in the WAL, in Parquet and in ClickHouse follows."""
    spec = record_spec()
    fields = [
        pa.field(c["name"], _ARROW_TYPES[c["type"]], nullable=c["nullable"])
        for c in spec["columns"]
    ]
    return pa.schema(fields, metadata={"astralog.schema.version": str(spec["version"])})


def schema_fingerprint() -> str:
    """A short stable digest of the schema, recorded with every committed batch."""
    import hashlib

    return hashlib.sha256(log_schema().to_string().encode()).hexdigest()[:16]


def null_violations(table: pa.Table) -> dict[int, str]:
    """Rows holding a null in a column the schema declares non-nullable, with why.

    Arrow lets a table declare the schema and still hold such nulls; no destination can encode
    them (Parquet refuses the whole batch), so they must never be acknowledged.
    """
    found: dict[int, str] = {}
    for field in log_schema():
        if field.nullable or field.name not in table.column_names:
            continue
        column = table[field.name]
        if column.null_count:
            rows = pc.indices_nonzero(pc.is_null(column)).to_pylist()
            for row in rows:
                found.setdefault(row, f"column {field.name} is null, which it cannot hold")
    return found
