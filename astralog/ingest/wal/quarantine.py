"""Quarantine: acknowledged rows that no destination can take, set aside for an operator.

Stage: WAL (a side directory). The flusher moves a group here when its data itself cannot be
encoded (only a bug can make such rows), so it stops holding back its org's later batches and,
through the WAL's shared disk budget, every other tenant. What it promises:

* **Nothing acknowledged is deleted.** The group's rows are durable in
  ``<wal>/quarantine/<batch_id>.arrows`` (an Arrow IPC stream, like a segment) before the
  segment holding them may be released; ``<batch_id>.reason.json`` says which org, source,
  segment and error, for the operator who repairs and replays it.
* **Once per group.** :meth:`Quarantine.holds` answers for a batch id set aside before a crash,
  so a restarted flusher does not try it again.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.ipc as ipc

from astralog.durable import fsync_dir

__all__ = ["Quarantine"]

_DATA = ".arrows"
_REASON = ".reason.json"


class Quarantine:
    """The ``quarantine/`` directory under the WAL directory."""

    def __init__(self, directory: Path, *, fsync: bool) -> None:
        self.directory = directory
        self.fsync = fsync

    def holds(self, batch_id: str) -> bool:
        return (self.directory / f"{batch_id}{_DATA}").exists()

    def put(self, batch_id: str, table: pa.Table, reason: dict[str, Any]) -> Path:
        """Keep ``table`` and why, durably; the data file appears last, whole."""
        self.directory.mkdir(parents=True, exist_ok=True)
        self._replace(f"{batch_id}{_REASON}", lambda path: _write_json(path, reason))
        return self._replace(f"{batch_id}{_DATA}", lambda path: _write_table(path, table))

    def entries(self) -> list[dict[str, Any]]:
        """Every quarantined group's reason, oldest first."""
        if not self.directory.is_dir():
            return []
        found = []
        for path in sorted(self.directory.glob(f"*{_REASON}"), key=lambda p: p.stat().st_mtime):
            try:
                found.append(json.loads(path.read_text(encoding="utf-8")))
            except (OSError, ValueError):
                found.append({"batch_id": path.name.removesuffix(_REASON), "reason": "unreadable"})
        return found

    def _replace(self, name: str, write: Callable[[Path], None]) -> Path:
        final = self.directory / name
        temporary = final.with_name(f".{name}.tmp")
        write(temporary)
        if self.fsync:
            fd = os.open(temporary, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        os.replace(temporary, final)
        if self.fsync:
            fsync_dir(self.directory)
        return final


def _write_json(path: Path, reason: dict[str, Any]) -> None:
    path.write_text(json.dumps(reason, indent=1, sort_keys=True), encoding="utf-8")


def _write_table(path: Path, table: pa.Table) -> None:
    with pa.OSFile(str(path), "wb") as sink, ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
