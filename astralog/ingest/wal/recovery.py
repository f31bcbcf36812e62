"""Opening a WAL directory: take it for this process, and recover what a crash left behind.

Stage: WAL (recovery). What it promises:

* One process per directory: :func:`lock_directory` holds an exclusive lock until closed, since
  two processes appending to one WAL corrupt it.
* :func:`recover` leaves only sealed segments: a crashed process's ``.arrows.open`` segment
  keeps its longest valid prefix of record batches; a torn tail (never acknowledged) is
  truncated and the segment sealed; a segment without one complete batch is dropped.
"""

from __future__ import annotations

import fcntl
import logging
import os
from pathlib import Path
from typing import IO

from astralog.durable import fsync_dir
from astralog.errors import ConfigError
from astralog.ingest.wal.segment import (
    OPEN_SUFFIX,
    SEALED_SUFFIX,
    Segment,
    created_ns,
    seal_file,
    valid_prefix,
)

__all__ = ["lock_directory", "recover"]

log = logging.getLogger("astralog.wal")


def lock_directory(directory: Path) -> IO[bytes]:
    """Create the directory and lock it; the lock lasts until the returned file is closed."""
    directory.mkdir(parents=True, exist_ok=True)
    lock_file = open(directory / "LOCK", "ab")  # noqa: SIM115 - held until the WAL closes
    try:
        fcntl.flock(lock_file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        lock_file.close()
        raise ConfigError(
            f"the write-ahead log directory {directory} is in use by another process"
        ) from exc
    return lock_file


def recover(directory: Path, *, fsync: bool) -> dict[str, Segment]:
    """Seal what a crash left open; every sealed segment in ``directory`` by id."""
    for path in sorted(directory.glob(f"*{OPEN_SUFFIX}")):
        _recover_open_segment(path, fsync=fsync)
    sealed: dict[str, Segment] = {}
    for path in sorted(directory.glob(f"*{SEALED_SUFFIX}")):
        segment_id = path.name.removesuffix(SEALED_SUFFIX)
        created = created_ns(segment_id)
        sealed[segment_id] = Segment(segment_id, path, path.stat().st_size, created)
    return sealed


def _recover_open_segment(path: Path, *, fsync: bool) -> None:
    segment_id = path.name.removesuffix(OPEN_SUFFIX)
    good, batches = valid_prefix(path)
    size = path.stat().st_size
    if batches == 0:
        log.warning("dropping WAL segment %s: no complete record batch", segment_id)
        path.unlink()
        fsync_dir(path.parent)
        return
    if good < size:
        log.warning(
            "WAL segment %s ends with a torn write: keeping %d complete batches (%d bytes), "
            "dropping %d unacknowledged bytes",
            segment_id,
            batches,
            good,
            size - good,
        )
        os.truncate(path, good)
    seal_file(path, segment_id, created_ns(segment_id), fsync=fsync)
