"""Helpers shared by the ingest tests: NDJSON bodies with markers, reading what was stored."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import duckdb


def ndjson(markers: list[str], **fields: object) -> bytes:
    lines = [
        json.dumps({"message": f"event {m}", "level": "info", "marker": m, **fields})
        for m in markers
    ]
    return ("\n".join(lines) + "\n").encode()


def stored_markers(bucket: Path) -> dict[str, int]:
    """marker -> how many times it is in the Parquet files under ``bucket``."""
    files = sorted(str(p) for p in bucket.rglob("*.parquet"))
    if not files:
        return {}
    rows = duckdb.sql(
        "SELECT LogAttributes['marker'] AS m, count(*) FROM read_parquet($files) GROUP BY m",
        params={"files": files},
    ).fetchall()
    return {str(m): int(n) for m, n in rows}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
