"""The embedded default destination: a local directory laid out like a bucket.

Objects are files under ``root`` at their Hive-style key. A write is atomic and durable: the
Parquet bytes go to a hidden temporary file in the partition directory, are fsync'd, renamed over
the final name and the directory is fsync'd, so a crash leaves either the old object, the new one
or a hidden temporary file (ignored by listing, removed with its partition) -- never half a file
under the final name. Blocking file I/O runs in a worker thread, off the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import secrets
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import BinaryIO, TypeVar

import pyarrow as pa

from astralog.durable import fsync_dir

from .base import (
    BatchKey,
    Check,
    Connector,
    ConnectorError,
    Pushdown,
    Spans,
    WrittenBatch,
    canonical_rows,
)
from .layout import (
    CHECKPOINT_DIR,
    HOUR,
    checkpoint_key,
    hours_overlap,
    kept,
    object_key,
    parse_object_key,
    partition_hour,
    receipt_key,
    validate_id,
)
from .parquet import read_parquet, write_parquet
from .probe import ProbeMismatch, Step, expect, run_probe

__all__ = ["LocalConnector"]

_T = TypeVar("_T")

# Conditions an operator can clear without a code change (disk freed, permissions or mount
# fixed); anything else from the OS is treated as a bug or a misconfiguration.
_RETRYABLE_ERRNOS = frozenset(
    {
        errno.ENOSPC,
        errno.EDQUOT,
        errno.EACCES,
        errno.EPERM,
        errno.EROFS,
        errno.EIO,
        errno.EAGAIN,
        errno.EBUSY,
        errno.ENOENT,
        errno.ENOTDIR,
        errno.EMFILE,
        errno.ENFILE,
        errno.ESTALE,
        errno.ETIMEDOUT,
    }
)


class LocalConnector(Connector):
    """A directory as a bucket. ``root`` is created on first write if it does not exist."""

    def __init__(self, root: Path, *, row_group_rows: int = 64 * 1024) -> None:
        # Absolute once, here: the file URI recorded in the catalog needs it, and a later chdir
        # must not move the bucket.
        self.root = Path(os.path.abspath(root))
        self.row_group_rows = row_group_rows

    def __repr__(self) -> str:
        return f"LocalConnector({str(self.root)!r})"

    # -- the contract ------------------------------------------------------------------------

    async def write_batch(self, key: BatchKey, table: pa.Table) -> WrittenBatch:
        relative = object_key(key)
        return await self._guarded(f"writing {relative}", self._write_sync, relative, table)

    async def delete_expired(
        self, org_id: str, source_id: str | None, before: datetime, keep: Spans = ()
    ) -> list[str]:
        return await self._guarded(
            f"deleting partitions of org {org_id} before {before.isoformat()}",
            self._delete_expired_sync,
            org_id,
            source_id,
            before,
            keep,
        )

    async def list_objects(
        self, org_id: str, source_id: str | None, start: datetime, end: datetime
    ) -> list[str]:
        def listing() -> list[str]:
            hour_dirs = self._hour_dirs(org_id, source_id, lambda h: hours_overlap(h, start, end))
            return sorted(
                self._relative(path) for hour_dir, _ in hour_dirs for path in _objects_in(hour_dir)
            )

        return await self._guarded(f"listing objects of org {org_id}", listing)

    async def probe(self) -> list[Check]:
        canary = self.root / f".astralog-probe-{secrets.token_hex(8)}"
        try:
            return await run_probe(self._probe_steps(canary), self._probe_failed)
        finally:
            with contextlib.suppress(OSError):
                await asyncio.to_thread(canary.unlink)

    async def read_batches(
        self, object_keys: Sequence[str], pushdown: Pushdown | None = None
    ) -> pa.Table:
        for key in object_keys:
            parse_object_key(key)  # only keys of our layout: nothing outside the root is read

        def reading() -> pa.Table:
            paths = [str(self.root / k) for k in object_keys]
            return canonical_rows([read_parquet(p, p) for p in paths], f"batches in {self.root}")

        return await self._guarded(f"reading {len(object_keys)} batches", reading)

    async def read_object(self, object_key: str) -> bytes:
        parse_object_key(object_key)  # only keys of our layout: nothing outside the root is read
        return await self._guarded(f"reading {object_key}", (self.root / object_key).read_bytes)

    async def put_checkpoint(self, org_id: str, seq: int, document: bytes) -> None:
        relative = checkpoint_key(org_id, seq)
        await self._put_document(relative, f"writing checkpoint {relative}", document)

    async def list_checkpoints(self, org_id: str) -> list[tuple[str, bytes]]:
        doing = f"listing checkpoints of org {org_id}"
        return await self._documents_beside(checkpoint_key(org_id, 0), doing)

    async def put_receipt(self, org_id: str, name: str, document: bytes) -> None:
        await self._put_document(
            receipt_key(org_id, name), f"writing purge receipt {name}", document
        )

    async def list_receipts(self, org_id: str) -> list[tuple[str, bytes]]:
        doing = f"listing purge receipts of org {org_id}"
        return await self._documents_beside(receipt_key(org_id, "x"), doing)

    async def _put_document(self, relative: str, doing: str, document: bytes) -> None:
        """One JSON document of the org's (a checkpoint, a purge receipt), replaced durably."""
        path = self.root / relative

        def writing() -> None:
            _make_dirs_durable(path.parent)
            _replace_durably(path, lambda sink: sink.write(document))

        await self._guarded(doing, writing)

    async def _documents_beside(self, relative: str, doing: str) -> list[tuple[str, bytes]]:
        """Every JSON document in ``relative``'s folder, by name, each with its path; a file
        being written (a dot-file) is not one yet."""
        directory = (self.root / relative).parent

        def reading() -> list[tuple[str, bytes]]:
            paths = sorted(directory.glob("*.json")) if directory.is_dir() else []
            return [(str(p), p.read_bytes()) for p in paths if not p.name.startswith(".")]

        return await self._guarded(doing, reading)

    async def list_checkpoint_orgs(self) -> list[str]:
        def listing() -> list[str]:
            found = self.root.glob(f"org=*/{CHECKPOINT_DIR}/*.json") if self.root.is_dir() else []
            return sorted({p.parents[2].name.removeprefix("org=") for p in found})

        return await self._guarded("listing the orgs with checkpoints", listing)

    async def delete_objects(self, object_keys: Sequence[str]) -> None:
        for key in object_keys:
            parse_object_key(key)  # only keys of our layout: nothing outside the root is deleted

        def deleting() -> None:
            for key in object_keys:
                path = self.root / key
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()
                    fsync_dir(path.parent)

        await self._guarded(f"deleting {len(object_keys)} batches", deleting)

    def is_retryable(self, exc: BaseException) -> bool:
        if isinstance(exc, ConnectorError):
            return exc.retryable
        return isinstance(exc, OSError) and exc.errno in _RETRYABLE_ERRNOS

    # -- writing -----------------------------------------------------------------------------

    def _write_sync(self, relative: str, table: pa.Table) -> WrittenBatch:
        final = self.root / relative
        _make_dirs_durable(final.parent)
        _replace_durably(final, lambda sink: write_parquet(table, sink, self.row_group_rows))
        return WrittenBatch(
            key=relative, uri=final.as_uri(), bytes=final.stat().st_size, rows=table.num_rows
        )

    # -- listing and retention ---------------------------------------------------------------

    def _hour_dirs(
        self, org_id: str, source_id: str | None, keep: Callable[[datetime], bool]
    ) -> Iterator[tuple[Path, datetime]]:
        """Hour partition directories of an org (or one source) whose hour passes ``keep``."""
        org_dir = self.root / f"org={validate_id('org_id', org_id)}"
        if source_id is not None:
            source_dirs = [org_dir / f"source={validate_id('source_id', source_id)}"]
        else:
            source_dirs = sorted(_subdirs(org_dir, "source="))
        for source_dir in source_dirs:
            for day_dir in sorted(_subdirs(source_dir, "dt=")):
                for hour_dir in sorted(_subdirs(day_dir, "hour=")):
                    hour = partition_hour(self._relative(hour_dir))
                    if hour is not None and keep(hour):
                        yield hour_dir, hour

    def _delete_expired_sync(
        self, org_id: str, source_id: str | None, before: datetime, keep: Spans
    ) -> list[str]:
        def expired_hour(hour: datetime) -> bool:
            return hour + HOUR <= before and not kept(hour, keep)

        expired = list(self._hour_dirs(org_id, source_id, expired_hour))
        deleted: list[str] = []
        for hour_dir, _ in expired:
            deleted.extend(self._relative(path) for path in _objects_in(hour_dir))
            _remove_partition(hour_dir)
        return sorted(deleted)

    # -- connection check --------------------------------------------------------------------

    def _probe_steps(self, canary: Path) -> list[Step]:
        payload = secrets.token_bytes(32)
        steps: dict[str, Callable[[], None]] = {
            "directory": self._probe_directory,
            "write": lambda: _write_durably(canary, payload),
            "read": lambda: expect(canary.read_bytes() == payload, "read back different bytes"),
            "list": lambda: expect(canary.name in os.listdir(self.root), "canary not listed"),
            "delete": lambda: _delete_and_check(canary),
        }
        return [Step(name, partial(self._in_thread, step)) for name, step in steps.items()]

    async def _in_thread(self, step: Callable[[], None]) -> str:
        await asyncio.to_thread(step)
        return str(self.root)

    def _probe_failed(self, name: str, exc: Exception) -> tuple[str, bool] | None:
        """Every failure stops the check: each step needs the one before it."""
        if isinstance(exc, OSError):
            return f"{name} failed in {self.root}: {exc.strerror or exc}", True
        if isinstance(exc, ProbeMismatch):
            return f"{name} failed in {self.root}: {exc}", True
        return None

    def _probe_directory(self) -> None:
        if self.root.exists() and not self.root.is_dir():
            raise NotADirectoryError(errno.ENOTDIR, "exists and is not a directory", str(self.root))
        self.root.mkdir(parents=True, exist_ok=True)

    # -- helpers -----------------------------------------------------------------------------

    def _relative(self, path: Path) -> str:
        return path.relative_to(self.root).as_posix()

    async def _guarded(self, doing: str, fn: Callable[..., _T], *args: object) -> _T:
        """Run blocking ``fn`` in a thread; translate OS errors into ConnectorError."""
        try:
            return await asyncio.to_thread(fn, *args)
        except OSError as exc:
            raise ConnectorError(
                f"{doing} in local directory {self.root} failed: {exc.strerror or exc}",
                retryable=self.is_retryable(exc),
            ) from exc


def _delete_and_check(path: Path) -> None:
    path.unlink()
    expect(not path.exists(), "canary still present after delete")


def _subdirs(parent: Path, prefix: str) -> Iterator[Path]:
    try:
        entries = list(os.scandir(parent))
    except FileNotFoundError:
        return
    for entry in entries:
        if entry.name.startswith(prefix) and entry.is_dir(follow_symlinks=False):
            yield Path(entry.path)


def _objects_in(hour_dir: Path) -> list[Path]:
    """Committed objects of a partition: hidden temporary files are not objects."""
    return [p for p in hour_dir.iterdir() if p.suffix == ".parquet" and not p.name.startswith(".")]


def _remove_partition(hour_dir: Path) -> None:
    for path in hour_dir.iterdir():
        path.unlink()
    hour_dir.rmdir()
    day_dir = hour_dir.parent
    with contextlib.suppress(OSError):  # other hours of the day still present: keep it
        day_dir.rmdir()
    fsync_dir(day_dir if day_dir.exists() else day_dir.parent)


def _replace_durably(final: Path, write: Callable[[BinaryIO], object]) -> None:
    """Let ``write`` fill a hidden temporary file, fsync, rename over ``final``: a reader sees
    the whole object or none of it."""
    tmp = final.with_name(f".{final.name}.{secrets.token_hex(4)}.tmp")
    try:
        with open(tmp, "wb") as sink:
            write(sink)
            sink.flush()
            os.fsync(sink.fileno())
        os.replace(tmp, final)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    fsync_dir(final.parent)


def _write_durably(path: Path, payload: bytes) -> None:
    with open(path, "wb") as sink:
        sink.write(payload)
        sink.flush()
        os.fsync(sink.fileno())
    fsync_dir(path.parent)


def _make_dirs_durable(directory: Path) -> None:
    """mkdir -p, then fsync the parent of every directory created so the new entries survive."""
    missing: list[Path] = []
    probe = directory
    while not probe.exists():
        missing.append(probe)
        probe = probe.parent
    directory.mkdir(parents=True, exist_ok=True)
    for created in reversed(missing):
        fsync_dir(created.parent)
