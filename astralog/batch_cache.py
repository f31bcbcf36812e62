"""A bounded local copy of batch objects read from BYOB buckets, so a search, a tail or the next
page does not download the same object again.

Stage: plan -> **fetch** (astralog.query.remote) -> engine; the data plane keeps it. A committed
batch object is never edited in place: a rewrite (erasure) or a compaction writes a new object
and swaps the catalog fact. Promises:

* an entry is keyed by object key (the catalog's own key: one fact per key) and the catalog's
  version of the batch (its destination, id, rows, bytes and commit time), so an object purged,
  erased or compacted away is never served: the plan no longer lists that version; a newer
  version of a key replaces the older one;
* erased and purged rows do not stay on disk: whoever makes the catalog forget or replace a
  batch calls :meth:`BatchCache.drop`, which deletes every cached version of its key, and for a
  while refuses to keep that key again (a search planned before the drop may still be
  downloading the old version);
* bounded: least recently used entries are deleted once the total passes ``max_bytes``;
* files are 0600 in a 0700 directory under the data dir, written whole to a temporary name and
  renamed, so a concurrent search sees a whole object or none; one that vanishes under a reader
  (evicted) is a miss, never an error;
* a search that reads cached objects as files gets hard links of them in a directory of its own
  (:meth:`BatchCache.leases`), so a drop or an eviction between planning and the engine opening
  them deletes the cache's name only: the search reads the version it planned, and the bytes
  leave the disk when its links go (the search ends, or a later start finds them stale);
* only the cache's own layout is ever deleted (hex directory and file names), so a cache
  directory that holds other files loses none of them; a temporary file left by a crash
  mid-write is deleted once stale.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import tempfile
import threading
import time
from collections.abc import Iterable
from pathlib import Path

from astralog.catalog import BatchCommitted

__all__ = ["BatchCache"]

# How long a dropped key is refused: longer than a search runs (its plan's query timeout), so
# one planned before the drop cannot put the old version back; the objects' deletion after
# their grace drops them again, for a longer timeout.
DROPPED_SECONDS = 3600.0
# Search links and temporary writes older than this are left by a process that died (no search
# or write runs that long), so a start or an eviction deletes them.
STALE_SECONDS = DROPPED_SECONDS
LEASES = "leases"  # not a cache entry's name: eviction never looks inside it
_LAYOUT = (
    re.compile(r"[0-9a-f]{2}"),
    re.compile(r"[0-9a-f]{38}"),
    re.compile(r"[0-9a-f]{32}\.parquet"),
)


class BatchCache:
    def __init__(self, directory: Path, max_bytes: int) -> None:
        self.directory = Path(directory)
        self.max_bytes = max_bytes
        self._lock = threading.Lock()  # one eviction at a time in this process
        self._dropped: dict[str, float] = {}  # object key -> monotonic time of its drop
        if self.enabled:
            self._clean_stale()

    @property
    def enabled(self) -> bool:
        return self.max_bytes > 0

    def path(self, batch: BatchCommitted) -> Path:
        """Where ``batch``'s object lives in the cache: a directory per object key (so its
        other versions are found and dropped), a file per version."""
        version = hashlib.sha256(
            "\0".join(
                str(v)
                for v in (batch.destination_id, batch.batch_id, batch.rows, batch.bytes,
                          batch.schema_fingerprint,
                          batch.committed_at.isoformat() if batch.committed_at else "")
            ).encode()
        ).hexdigest()  # fmt: skip
        return self._key_directory(batch.object_key) / f"{version[:32]}.parquet"

    def _key_directory(self, object_key: str) -> Path:
        where = hashlib.sha256(object_key.encode()).hexdigest()
        return self.directory / where[:2] / where[2:40]

    def drop(self, object_keys: Iterable[str]) -> None:
        """The catalog forgot or replaced these batches (purge, erasure, compaction, org
        deletion): delete every cached version of them now."""
        now = time.monotonic()
        with self._lock:
            self._dropped = {k: t for k, t in self._dropped.items() if now - t < DROPPED_SECONDS}
            for key in object_keys:
                self._dropped[key] = now
                shutil.rmtree(self._key_directory(key), ignore_errors=True)

    def get(self, batch: BatchCommitted) -> bytes | None:
        """The object's bytes when this version is cached; marks it recently used."""
        path = self.path(batch)
        try:
            data = path.read_bytes()
            _touch(path)
        except FileNotFoundError:  # never cached, or evicted meanwhile
            return None
        return data

    def leases(self) -> Path:
        """A new directory for one search's links to cached files (see :meth:`file`); the
        search deletes it when done."""
        root = self.directory / LEASES
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        root.mkdir(mode=0o700, exist_ok=True)
        return Path(tempfile.mkdtemp(dir=root))

    def file(self, batch: BatchCommitted, leases: Path) -> Path | None:
        """A hard link, in the search's ``leases`` directory, to the cached file of this
        version (marked recently used), for a reader that opens it later itself (the engine):
        a drop or an eviction meanwhile cannot take it away. None when it is not cached."""
        path = self.path(batch)
        link = leases / f"{path.parent.name}-{path.name}"
        try:
            _touch(path)
            os.link(path, link)
        except FileNotFoundError:  # never cached, or evicted meanwhile
            return None
        except OSError:  # a file system without hard links: the bytes are read instead
            return None
        return link

    def put(self, batch: BatchCommitted, data: bytes) -> None:
        """Keep ``data`` as this version of the batch; older versions of its key go."""
        if not self.enabled or len(data) > self.max_bytes or self._was_dropped(batch):
            return
        path = self.path(batch)
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        descriptor, temporary = tempfile.mkstemp(dir=path.parent, suffix=".part")  # 0600
        try:
            with os.fdopen(descriptor, "wb") as out:
                out.write(data)
            os.replace(temporary, path)
            _touch(path)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
        if self._was_dropped(batch):  # dropped while this was being written
            path.unlink(missing_ok=True)
            return
        for other in path.parent.glob("*.parquet"):
            if other != path:
                other.unlink(missing_ok=True)
        self._evict()

    def _was_dropped(self, batch: BatchCommitted) -> bool:
        with self._lock:
            at = self._dropped.get(batch.object_key)
        return at is not None and time.monotonic() - at < DROPPED_SECONDS

    def _evict(self) -> None:
        with self._lock:
            entries = []
            for path in self._entries("*.parquet"):
                try:
                    stat = path.stat()
                except FileNotFoundError:
                    continue
                entries.append((stat.st_mtime_ns, stat.st_size, path))
            total = sum(size for _, size, _ in entries)
            for _, size, path in sorted(entries):
                if total <= self.max_bytes:
                    break
                path.unlink(missing_ok=True)
                total -= size
        self._clean_stale()

    def _entries(self, pattern: str) -> Iterable[Path]:
        """Files matching ``pattern`` in the cache's own key directories, nothing else."""
        for path in self.directory.glob(f"*/*/{pattern}"):
            parts = path.relative_to(self.directory).parts
            named = pattern != "*.parquet" or _LAYOUT[2].fullmatch(parts[2])
            if _LAYOUT[0].fullmatch(parts[0]) and _LAYOUT[1].fullmatch(parts[1]) and named:
                yield path

    def _clean_stale(self) -> None:
        """Delete what a process that died left: temporary writes and search links."""
        cutoff = time.time() - STALE_SECONDS
        for path in self._entries("*.part"):
            _unlink_if_older(path, cutoff)
        root = self.directory / LEASES
        for leases in root.iterdir() if root.is_dir() else ():
            try:
                stale = leases.stat().st_mtime < cutoff
            except FileNotFoundError:
                continue
            if stale:
                shutil.rmtree(leases, ignore_errors=True)


def _unlink_if_older(path: Path, cutoff: float) -> None:
    try:
        if path.stat().st_mtime < cutoff:
            path.unlink(missing_ok=True)
    except FileNotFoundError:
        pass


def _touch(path: Path) -> None:
    """Mark ``path`` used now, to the nanosecond: the kernel's own file times are coarse (a clock
    tick), which would leave the least recently used of a burst to chance."""
    now = time.time_ns()
    os.utime(path, ns=(now, now))
