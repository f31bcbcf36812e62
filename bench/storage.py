"""Storage: bytes in the bucket per event, against the NDJSON that was sent.

Measured on the bucket after the corpus was ingested exactly once and the WAL drained. The event
count comes from reading the Parquet files back, so a lost or duplicated batch shows up here as
well (the corpus is sent once: the count must equal the corpus size). For scale, the same NDJSON
read by pyarrow and written as one plain zstd Parquet file (its inferred columns, no canonical
schema, no partitions) is reported next to it.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.json as pj
import pyarrow.parquet as pq

from bench.corpus import BatchFile, Corpus
from bench.gateway import Gateway

__all__ = ["measure_storage"]


def measure_storage(gateway: Gateway, corpus: Corpus, batches: BatchFile) -> dict[str, Any]:
    files = gateway.bucket_files()
    stored = sum(f.stat().st_size for f in files)
    events = 0
    if files:
        row = duckdb.sql(
            "SELECT count(*) FROM read_parquet($files)", params={"files": [str(f) for f in files]}
        ).fetchone()
        events = int(row[0]) if row else 0
    gzip_bytes = batches.offsets[-1]
    reference = _plain_parquet_bytes(corpus)
    return {
        "files": len(files),
        "bucket_bytes": stored,
        "events_in_bucket": events,
        "events_sent": corpus.events,
        "exactly_once": events == corpus.events,
        "bytes_per_event": stored / events if events else float("nan"),
        "ndjson_bytes_per_event": corpus.raw_bytes / corpus.events,
        "compression_vs_ndjson": corpus.raw_bytes / stored if stored else float("nan"),
        "compression_vs_gzip_ndjson": gzip_bytes / stored if stored else float("nan"),
        "mean_file_mb": stored / len(files) / 2**20 if files else 0.0,
        "plain_parquet_bytes_per_event": reference / corpus.events,
        "bucket_vs_plain_parquet": stored / reference if reference else float("nan"),
    }


def _plain_parquet_bytes(corpus: Corpus) -> int:
    """The corpus as pyarrow reads it, one zstd Parquet file: the size with no product at all."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "plain.parquet"
        pq.write_table(pj.read_json(pa.BufferReader(corpus.read_bytes())), out, compression="zstd")
        return out.stat().st_size
