"""Where batches live: the Hive-style object-key layout every destination follows.

``<prefix>/org=<org>/source=<source>/dt=YYYY-MM-DD/hour=HH/<batch-id>.parquet``, so any engine
(DuckDB, ClickHouse ``s3()``, Athena, Trino, Spark) reads a customer's data without Astralog, and
listing and retention prune by the partition path, never by reading data. The org's signed audit
checkpoints sit beside them at ``<prefix>/org=<org>/_astralog/checkpoints/<seq>.json`` (the
leading underscore keeps Hive-style readers from taking it for data), and the signed receipts of
retention purges at ``<prefix>/org=<org>/_astralog/receipts/<name>.json``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

__all__ = [
    "CHECKPOINT_DIR",
    "HOUR",
    "RECEIPT_DIR",
    "BatchKey",
    "checkpoint_key",
    "floor_hour",
    "hours_overlap",
    "kept",
    "keys_in_range",
    "object_key",
    "parse_object_key",
    "partition_hour",
    "partition_prefix",
    "receipt_key",
    "validate_id",
]

HOUR = timedelta(hours=1)
CHECKPOINT_DIR = "_astralog/checkpoints"
RECEIPT_DIR = "_astralog/receipts"

# Ids become path segments in the customer's bucket: keep them to characters that need no
# escaping in S3 keys, Hive partition values or file names, and refuse "." / ".." tricks.
_SAFE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")
_PARTITION = re.compile(
    r"(?:^|/)org=(?P<org>[^/]+)/source=(?P<source>[^/]+)/dt=(?P<dt>\d{4}-\d{2}-\d{2})/"
    r"hour=(?P<hour>\d{2})(?:/|$)"
)
# A key exactly as object_key() makes it (without prefix); ids cannot be "." or "..".
_ID = _SAFE_ID.pattern
_OBJECT_KEY = re.compile(
    rf"org=(?P<org>{_ID})/source=(?P<source>{_ID})/dt=\d{{4}}-\d{{2}}-\d{{2}}/hour=\d{{2}}/"
    rf"(?P<batch>{_ID})\.parquet"
)


@dataclass(frozen=True)
class BatchKey:
    """Where one batch goes: the partition (org, source, hour) and a deterministic batch id."""

    org_id: str
    source_id: str
    hour: datetime
    batch_id: str

    def __post_init__(self) -> None:
        for name in ("org_id", "source_id", "batch_id"):
            validate_id(name, getattr(self, name))
        if self.hour.tzinfo is None or self.hour.utcoffset() != timedelta(0):
            raise ValueError("BatchKey.hour must be a UTC datetime")
        if self.hour != floor_hour(self.hour):
            raise ValueError("BatchKey.hour must be truncated to the hour")


def validate_id(name: str, value: str) -> str:
    """Return ``value`` if it is safe as a path segment of an object key, else raise ValueError."""
    if not _SAFE_ID.fullmatch(value):
        raise ValueError(f"{name} {value!r} is not usable in an object key")
    return value


def parse_object_key(key: str) -> BatchKey:
    """The :class:`BatchKey` of a key made by :func:`object_key` (no prefix), else ValueError."""
    match = _OBJECT_KEY.fullmatch(key)
    hour = partition_hour(key) if match else None
    if match is None or hour is None:
        raise ValueError(f"{key[:200]!r} is not the key of a batch")
    return BatchKey(match["org"], match["source"], hour, match["batch"])


def floor_hour(moment: datetime) -> datetime:
    """``moment`` in UTC, truncated to the hour (naive datetimes are refused, not guessed)."""
    if moment.tzinfo is None:
        raise ValueError("naive datetime: pass an aware UTC datetime")
    return moment.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


def partition_prefix(org_id: str, source_id: str | None = None, prefix: str = "") -> str:
    """The key prefix of an org's (or one source's) partitions, ending in ``/``."""
    parts = [prefix.strip("/")] if prefix.strip("/") else []
    parts.append(f"org={org_id}")
    if source_id is not None:
        parts.append(f"source={source_id}")
    return "/".join(parts) + "/"


def checkpoint_key(org_id: str, seq: int, prefix: str = "") -> str:
    """``<prefix>/org=<org>/_astralog/checkpoints/<seq, 20 digits>.json``: sorted by name is
    sorted by seq."""
    if seq < 0:
        raise ValueError("a checkpoint seq is not negative")
    return partition_prefix(validate_id("org_id", org_id), None, prefix) + (
        f"{CHECKPOINT_DIR}/{seq:020d}.json"
    )


def receipt_key(org_id: str, name: str, prefix: str = "") -> str:
    """``<prefix>/org=<org>/_astralog/receipts/<name>.json`` (names start with their time)."""
    org = validate_id("org_id", org_id)
    return partition_prefix(org, None, prefix) + f"{RECEIPT_DIR}/{validate_id('name', name)}.json"


def object_key(key: BatchKey, prefix: str = "") -> str:
    """``<prefix>/org=<org>/source=<source>/dt=YYYY-MM-DD/hour=HH/<batch_id>.parquet``."""
    hour = floor_hour(key.hour)
    return (
        partition_prefix(key.org_id, key.source_id, prefix)
        + f"dt={hour:%Y-%m-%d}/hour={hour:%H}/{key.batch_id}.parquet"
    )


def partition_hour(path: str) -> datetime | None:
    """The UTC hour a key or partition path belongs to, or None when it is not one of ours."""
    match = _PARTITION.search(path)
    if match is None:
        return None
    try:
        day = datetime.strptime(match["dt"], "%Y-%m-%d").replace(tzinfo=UTC)
    except ValueError:
        return None
    hour = int(match["hour"])
    return day + timedelta(hours=hour) if hour < 24 else None


def hours_overlap(hour: datetime, start: datetime, end: datetime) -> bool:
    """Whether the hour partition starting at ``hour`` overlaps ``[start, end)``."""
    return hour < end and hour + HOUR > start


def kept(hour: datetime, keep: Iterable[tuple[datetime, datetime]]) -> bool:
    """Whether the hour partition starting at ``hour`` overlaps one of the spans ``keep`` (what
    legal holds keep from a purge): a span keeps every hour it touches."""
    return any(hours_overlap(hour, start, end) for start, end in keep)


def keys_in_range(keys: Iterable[str], start: datetime, end: datetime) -> list[str]:
    """Filter ``keys`` to those whose hour partition overlaps ``[start, end)``, sorted."""
    selected = []
    for key in keys:
        hour = partition_hour(key)
        if hour is not None and hours_overlap(hour, start, end):
            selected.append(key)
    return sorted(selected)
