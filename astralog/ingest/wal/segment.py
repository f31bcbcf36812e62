"""The WAL segment file: how acknowledged rows lie on disk, and how a segment is sealed.

Stage: WAL (file format). What it promises:

* A segment is an Arrow IPC stream file in the WAL directory named
  ``<created_ns:020d>-<token>``: ``.arrows.open`` while it takes appends, ``.arrows`` once
  sealed. Ids are unique across restarts and replicas, so batch ids derived from them never
  collide.
* **One append group, one record batch** (:func:`one_batch`): after a crash a group is in the
  file whole or not at all, never as a prefix of its rows.
* :func:`seal_file` makes a finished file durable under its sealed name (fsync of the file,
  rename, fsync of the directory) before it is reported sealed.
* :func:`valid_prefix` finds the complete, valid batches at the start of a file that a crash
  interrupted; what follows them was never acknowledged.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.ipc as ipc

from astralog.durable import fsync_dir

__all__ = [
    "OPEN_SUFFIX",
    "SEALED_SUFFIX",
    "Segment",
    "created_ns",
    "one_batch",
    "read_table",
    "seal_file",
    "valid_prefix",
]

SEALED_SUFFIX = ".arrows"
OPEN_SUFFIX = ".arrows.open"


@dataclass(frozen=True)
class Segment:
    """A sealed segment: immutable, waiting to be flushed and released."""

    segment_id: str
    path: Path
    size_bytes: int
    created_ns: int  # wall clock of its first append


def seal_file(path: Path, segment_id: str, created: int, *, fsync: bool) -> Segment:
    """Rename a finished ``.arrows.open`` file to its sealed name, durably when ``fsync``."""
    if fsync:
        _fsync_path(path)
    sealed = path.parent / f"{segment_id}{SEALED_SUFFIX}"
    os.replace(path, sealed)
    if fsync:
        fsync_dir(path.parent)
    return Segment(segment_id, sealed, sealed.stat().st_size, created)


def read_table(segment: Segment, schema: pa.Schema) -> pa.Table:
    """The rows of a sealed segment (memory-mapped: the OS page cache holds them, not us)."""
    with pa.memory_map(str(segment.path)) as source:
        table = ipc.open_stream(source).read_all()
    if not table.schema.equals(schema, check_metadata=False):
        table = table.cast(schema)  # written by an older release: same columns
    return table.replace_schema_metadata(schema.metadata)


def valid_prefix(path: Path) -> tuple[int, int]:
    """Byte length and count of the complete, valid record batches at the start of ``path``."""
    with pa.OSFile(str(path), "rb") as source:
        try:
            reader = ipc.open_stream(source)
        except (pa.ArrowException, OSError, ValueError):
            return 0, 0
        good, batches = 0, 0
        while True:
            try:
                batch = reader.read_next_batch()
                batch.validate(full=True)
            except StopIteration:
                break
            except (pa.ArrowException, OSError, ValueError):
                break  # torn or garbage tail
            good, batches = source.tell(), batches + 1
    return good, batches


def one_batch(table: pa.Table) -> pa.RecordBatch:
    """The table as one record batch: a group torn across two batches would survive a crash
    as a prefix of its rows, which no appender was told about and a retry would store again."""
    if table.num_rows == 0:
        return pa.RecordBatch.from_pylist([], schema=table.schema)
    batches = table.combine_chunks().to_batches()
    if len(batches) != 1:
        raise ValueError(f"a WAL record must be one record batch, not {len(batches)}")
    return batches[0]


def created_ns(segment_id: str) -> int:
    """The wall clock a segment id was made at (0 for a name this release did not write)."""
    try:
        return int(segment_id.split("-", 1)[0])
    except ValueError:
        return 0


def _fsync_path(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
