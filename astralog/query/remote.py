"""Reading committed batches that live in a BYOB destination (S3 bucket, ClickHouse).

Stage: plan -> **fetch** -> engine. The plan lists the org's committed batches whose catalog fact
names a BYOB connector; this stage reads their rows through that connector and hands them to the
engine as one Arrow table in the canonical schema, which the engine filters (org, retention, time,
query) exactly like local Parquet. What it promises:

* only the org's own connectors are opened: they are looked up under the plan's org, which came
  from the principal, and a batch names its connector by id;
* the scan limit stays honest: rows are fetched in chunks, what they take in memory counts
  against the plan's ``max_scan_bytes`` (Parquet in a bucket is compressed, so the catalog's
  stored bytes understate it) and the search is refused as soon as the limit is passed, not
  after everything was downloaded;
* fetching is bounded by the plan's query timeout;
* one destination that fails does not fail the search: its batches are left out and the plan
  names it in ``plan.missing`` (with the time range its batches cover), and the answer is what
  the other destinations, the embedded bucket and the WAL hold. When nothing else could be read,
  or the caller wants all or nothing (an export), the failure is the answer: 503 with
  ``Retry-After`` when the destination may recover by itself (throttling, unreachable), 502 when
  a person must act (credentials, missing bucket or table).
* a batch object already downloaded is read from the local batch cache
  (astralog.batch_cache) under the version the catalog lists now, never downloaded again.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import weakref
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeAlias

import pyarrow as pa

from astralog.batch_cache import BatchCache
from astralog.catalog import BatchCommitted
from astralog.connectors.base import Connector, ConnectorError, Pushdown, canonical_rows
from astralog.connectors.parquet import read_parquet
from astralog.dataplane import DataAccess
from astralog.errors import AstralogError, BadRequest, NotFound, Unavailable
from astralog.query.compile import compile_where
from astralog.query.plan import Missing, Plan
from astralog.schema import schema_fingerprint

__all__ = ["fetch_remote"]

CHUNK_KEYS = 256  # batches per read: bounds a ClickHouse IN list and the rows held unchecked
CHUNK_STORED_BYTES = 256 * 2**20  # stored bytes (per the catalog) per read
CACHED_KINDS = frozenset({"s3"})  # destinations of immutable objects (ClickHouse stores rows)
CONCURRENT_GETS = 8  # objects downloaded at once per destination when going through the cache
FILES_SHARE = 4  # cached objects go to the engine as files when a search needs <= 1/4 of the cache
Read: TypeAlias = pa.Table | tuple[str, BatchCommitted]  # rows, or a cached file and its batch
RETRY_AFTER_SECONDS = 10
log = logging.getLogger("astralog.query")


@dataclass
class _Budget:
    """Bytes a search may still read; shared by the destinations fetched concurrently."""

    limit: int
    used: int

    def take(self, nbytes: int, label: str) -> None:
        self.used += nbytes
        if self.used > self.limit:
            raise BadRequest(
                f"this search would read more than the plan's {self.limit / 2**30:.1f} GiB per "
                f"query once the rows fetched from destination {label} are counted "
                f"({self.used / 2**30:.2f} GiB so far); narrow the time range or the sources"
            )


async def fetch_remote(data: DataAccess, plan: Plan, *, partial: bool = True) -> None:
    """Fill ``plan.fetched`` with the rows of ``plan.remote`` and count them in
    ``plan.scanned_bytes`` (in place of the catalog's estimate for them).

    With ``partial``, a destination that fails (or embedded-bucket objects the plan found
    missing) is recorded in ``plan.missing`` as long as something else was read; otherwise its
    error is raised."""
    read_remote = await _fetch_all(data, plan) if plan.remote else False
    read_some = bool(plan.files) or plan.pending is not None or read_remote
    if plan.missing and not (partial and read_some):
        raise plan.missing[0].error
    for gap in plan.missing:
        log.warning(
            "search left out a destination that failed",
            extra={"destination_id": gap.destination_id, "batches": gap.batches},
        )


async def _fetch_all(data: DataAccess, plan: Plan) -> bool:
    """Fetch every destination of ``plan.remote``; True when at least one answered."""
    by_destination: dict[str, list[BatchCommitted]] = {}
    for batch in plan.remote:
        by_destination.setdefault(batch.destination_id, []).append(batch)
    budget = _Budget(plan.max_scan_bytes, plan.scanned_bytes - sum(b.bytes for b in plan.remote))
    deadline = asyncio.get_running_loop().time() + plan.timeout_seconds
    try:
        async with asyncio.TaskGroup() as group:
            tasks = [
                group.create_task(_fetch(data, plan, destination_id, batches, budget, deadline))
                for destination_id, batches in by_destination.items()
            ]
    except BaseExceptionGroup as failed:
        # The first failure is the answer; the other fetches were cancelled with it.
        raise failed.exceptions[0] from None
    results = [task.result() for task in tasks]
    missing = [r for r in results if isinstance(r, Missing)]
    read = [item for result in results if not isinstance(result, Missing) for item in result]
    tables = [item for item in read if isinstance(item, pa.Table)]
    plan.fetched = canonical_rows(tables, "rows fetched from BYOB destinations")
    for path, batch in (item for item in read if not isinstance(item, pa.Table)):
        plan.files.append(path)  # a cached object: the engine reads it like a local batch
        plan.spans[path] = (batch.min_ts_ns, batch.max_ts_ns)
    plan.missing += missing
    plan.scanned_bytes = budget.used
    return len(missing) < len(results)


async def _fetch(
    data: DataAccess,
    plan: Plan,
    destination_id: str,
    batches: Sequence[BatchCommitted],
    budget: _Budget,
    deadline: float,
) -> list[Read] | Missing:
    """The destination's rows of the search, or what is missing when it cannot return them."""
    try:
        connector, label, kind = _open(data, plan.org_id, destination_id)
    except ConnectorError as exc:  # gone from the org, or cannot be opened: named already
        return Missing.of(plan, destination_id, destination_id, batches, exc)
    cache = data.batch_cache if kind in CACHED_KINDS else None
    try:
        if cache is not None and cache.enabled:
            leases = await asyncio.to_thread(cache.leases)
            # The engine opens the links after this returns: they go when the plan does.
            weakref.finalize(plan, shutil.rmtree, leases, True)
            return await _read_cached(connector, cache, leases, label, batches, budget, deadline)
        return await _read(connector, label, plan, batches, budget, deadline)
    except TimeoutError:
        error: AstralogError = Unavailable(
            f"destination {label} did not return the search's {len(batches)} batches within "
            f"the plan's {plan.timeout_seconds:.0f} s query time; try again or narrow the "
            "time range",
            RETRY_AFTER_SECONDS,
            destination_id=destination_id,
        )
    except ConnectorError as exc:
        error = _failed(label, destination_id, exc)
        error.__cause__ = exc
    return Missing.of(plan, destination_id, label, batches, error)


async def _read(
    connector: Connector,
    label: str,
    plan: Plan,
    batches: Sequence[BatchCommitted],
    budget: _Budget,
    deadline: float,
) -> list[pa.Table]:
    pushdown = _pushdown(plan)
    tables = []
    async with asyncio.timeout_at(deadline):
        for chunk in _chunks(batches):
            table = await connector.read_batches([b.object_key for b in chunk], pushdown)
            budget.take(table.nbytes, label)
            tables.append(table)
    return tables


async def _read_cached(
    connector: Connector,
    cache: BatchCache,
    leases: Path,
    label: str,
    batches: Sequence[BatchCommitted],
    budget: _Budget,
    deadline: float,
) -> list[Read]:
    """Each batch from the cache, or downloaded whole (then cached), a few at a time.

    A cached object of the current schema goes to the engine as a file (a hard link in
    ``leases``, so a drop or an eviction before the engine opens it cannot fail the search),
    so newest-first search stops early and row groups are pruned as for local batches; that
    needs the search's objects to fit the cache with room to spare (the links hold their bytes
    on disk past the bound until the search ends), otherwise and for older schemas its rows are
    decoded here."""
    gate = asyncio.Semaphore(CONCURRENT_GETS)
    as_files = sum(b.bytes for b in batches) <= cache.max_bytes // FILES_SHARE

    async def one(batch: BatchCommitted) -> Read:
        if as_files and batch.schema_fingerprint == schema_fingerprint():
            path = await asyncio.to_thread(cache.file, batch, leases)
            if path is not None:
                budget.take(batch.bytes, label)
                return str(path), batch
        data = await asyncio.to_thread(cache.get, batch)
        if data is None:
            async with gate:
                data = await connector.read_object(batch.object_key)
            await asyncio.to_thread(cache.put, batch, data)
        table = await asyncio.to_thread(read_parquet, pa.BufferReader(data), batch.object_key)
        budget.take(table.nbytes, label)
        return table

    try:
        async with asyncio.timeout_at(deadline), asyncio.TaskGroup() as group:
            tasks = [group.create_task(one(batch)) for batch in batches]
    except BaseExceptionGroup as failed:  # the first failure is the answer, as for _read
        raise failed.exceptions[0] from None
    return [task.result() for task in tasks]


def _open(data: DataAccess, org_id: str, destination_id: str) -> tuple[Connector, str, str]:
    """The live connector that holds the batches, how to name it in an error, and its kind."""
    try:
        destination = data.destination(org_id, destination_id)
    except NotFound:
        raise ConnectorError(
            f"batches of this search were written to destination {destination_id}, which no "
            "longer exists in this org",
            retryable=False,
            destination_id=destination_id,
        ) from None
    label = destination.label
    try:
        return data.connector(org_id, destination), label, destination.kind
    except AstralogError as exc:  # unsafe endpoint now, secrets that cannot be opened, ...
        raise ConnectorError(
            f"destination {label} cannot be opened to search its batches: {exc.detail}",
            retryable=False,
            destination_id=destination_id,
        ) from exc


def _failed(label: str, destination_id: str, exc: ConnectorError) -> AstralogError:
    detail = f"searching the batches in destination {label} failed: {exc.detail}"
    if exc.retryable:
        return Unavailable(detail, RETRY_AFTER_SECONDS, destination_id=destination_id)
    return ConnectorError(detail, retryable=False, destination_id=destination_id)


def _chunks(batches: Sequence[BatchCommitted]) -> Iterator[list[BatchCommitted]]:
    chunk: list[BatchCommitted] = []
    stored = 0
    for batch in batches:
        if chunk and (len(chunk) >= CHUNK_KEYS or stored + batch.bytes > CHUNK_STORED_BYTES):
            yield chunk
            chunk, stored = [], 0
        chunk.append(batch)
        stored += batch.bytes
    if chunk:
        yield chunk


def _pushdown(plan: Plan) -> Pushdown:
    """The search's query and time range for a destination that evaluates SQL (ClickHouse).

    The parameters are prefixed so they cannot collide with the connector's own; DuckDB applies
    the full filter again to whatever comes back."""
    where, params = compile_where(plan.node, "clickhouse", param_prefix="q")
    window = (
        "toUnixTimestamp64Nano(Timestamp) >= {qstart:Int64} "
        "AND toUnixTimestamp64Nano(Timestamp) < {qend:Int64}"
    )
    params = {**params, "qstart": plan.start_ns, "qend": plan.end_ns}
    return Pushdown("clickhouse", f"{window} AND ({where})", params)
