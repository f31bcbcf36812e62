"""The audit records of org exports: asked for, finished, downloaded, expired.

They live beside the job (:mod:`astralog.org_export`) rather than in ``events.py``; the package
imports this module, so every reader of the log (replay, verification) knows them. They change
no projection: an export is an act on the org's data, recorded, not a piece of its state.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass

from astralog.controlplane.events import Event
from astralog.controlplane.projections import handles
from astralog.controlplane.store import Recorded


@dataclass(frozen=True)
class ExportRequested(Event, aggregate="export:{export_id}"):
    """An owner asked for an archive of everything the org has here. ``recipient`` is the
    SHA-256 of the customer's X25519 public key it is encrypted to ("" when not encrypted)."""

    export_id: str
    org_id: str
    person_id: str
    recipient: str


@dataclass(frozen=True)
class ExportCompleted(Event, aggregate="export:{export_id}"):
    """The archive is ready: its signed manifest lists ``files`` files (``objects`` of them
    stored batches) and hashes to ``manifest_sha256``; the archive is ``bytes`` long."""

    export_id: str
    org_id: str
    files: int
    objects: int
    bytes: int
    manifest_sha256: str


@dataclass(frozen=True)
class ExportDownloaded(Event, aggregate="export:{export_id}"):
    export_id: str
    org_id: str
    person_id: str


@dataclass(frozen=True)
class ExportExpired(Event, aggregate="export:{export_id}"):
    """The archive (or a failed job's staged files) was deleted: its retention was over."""

    export_id: str
    org_id: str


@handles(ExportRequested)
@handles(ExportCompleted)
@handles(ExportDownloaded)
@handles(ExportExpired)
def _recorded(conn: sqlite3.Connection, e: Event, r: Recorded) -> None:
    """An export is its own record in the audit log; no projection changes."""
