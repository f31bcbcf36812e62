"""The ClickHouse destination: each batch becomes rows of an ``otel_logs``-compatible table.

The table is created from ``schemas/otel_logs.sql`` when it is missing; its columns are the
OpenTelemetry Collector ClickHouse exporter's plus the canonical record's, so the customer's
existing ClickHouse tooling reads Astralog data. What this connector promises, on a ClickHouse
server over HTTP(S) and on the in-process chDB engine alike (both through
``clickhouse_connect.get_client``):

* ``write_batch`` is one synchronous insert (``async_insert=0``: the server has stored the rows
  before it answers) carrying ``insert_deduplication_token`` derived from the :class:`BatchKey`,
  so a retried batch is stored once (the table keeps the last 10,000 tokens, see the DDL);
  rows whose OrgId, SourceId or hour differ from the key are refused, never written.
* A batch "key" is the same Hive-style key the bucket connectors use; the rows carry their
  batch id in ``BatchId``, so ``list_objects`` returns the batches whose rows fall in the
  requested hours (``SELECT DISTINCT`` over those hours, pruned by partition and primary key).
* ``delete_expired`` drops whole ``(org, day)`` partitions (metadata only, instant) when a whole
  org's days expire, and removes the remaining expired hours -- or one source's rows, which share
  partitions with other sources -- with a lightweight ``DELETE``: rows disappear from queries at
  once and leave the disk when their part is merged or its day is dropped. The hours a legal
  hold keeps are left out of both: no day holding one is dropped, the ``DELETE`` spares them.
* ``put_checkpoint`` keeps the org's signed audit checkpoints in ``astralog_checkpoints`` beside
  the log table (``schemas/audit_checkpoints.sql``), created on first use; ``put_receipt`` keeps
  the signed receipts of retention purges in ``astralog_receipts`` (``schemas/purge_receipts.sql``).
* ``probe`` asks the server (``CHECK GRANT``, which chDB also answers) for each privilege the
  connector needs and names the missing one with the ``GRANT`` statement that fixes it.
* Errors of clickhouse-connect become :class:`ConnectorError`; the retryable ones (network,
  timeouts, 5xx, TOO_MANY_PARTS, MEMORY_LIMIT_EXCEEDED, ...) make the flusher back off, the rest
  (authentication, missing grants, unknown database, syntax) need a person. No message carries
  the password.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import string
import threading
from collections.abc import Callable, Collection, Sequence
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

import clickhouse_connect
import pyarrow as pa
import pyarrow.compute as pc
from clickhouse_connect.driver.exceptions import ClickHouseError
from urllib3 import PoolManager

from astralog.schema import log_schema, schema_text
from astralog.security.redaction import redact

from ..base import (
    BatchKey,
    Check,
    Connector,
    ConnectorError,
    Pushdown,
    Spans,
    WrittenBatch,
    canonical_rows,
)
from ..layout import (
    HOUR,
    floor_hour,
    kept,
    object_key,
    parse_object_key,
    receipt_key,
    validate_id,
)
from ..probe import ProbeMismatch, Step, expect, run_probe

if TYPE_CHECKING:
    from clickhouse_connect.driver.client import Client

from .config import ClickHouseConfig, quote, quote_user, render_ddl, word_index_ddl
from .errors import SCHEMA_GONE_CODES, retryable, translatable

_T = TypeVar("_T")

_PARTITION_ID = re.compile(r"[0-9A-Za-z_-]{1,128}")
_DEDUP_WINDOW = re.compile(r"\bnon_replicated_deduplication_window\s*=\s*(\d+)")
# The partition key of schemas/otel_logs.sql as system.tables spells it: only with this key
# does DROP PARTITION remove exactly one org's day.
_ORG_DAY_KEY = "(OrgId, toDate(Timestamp))"
# The org's signed audit checkpoints, beside the log table (schemas/audit_checkpoints.sql).
_CHECKPOINTS = "astralog_checkpoints"
_RECEIPTS = "astralog_receipts"
# Columns a table must have for our inserts and queries; TimestampTime is the exporter's.
_REQUIRED_COLUMNS = ("TimestampTime", "BatchId")

# chDB defaults async_insert to 1; an async insert acks before the rows are stored, which would
# break "committed means durable", so every insert says 0 explicitly.
_INSERT_SETTINGS: dict[str, Any] = {"async_insert": 0, "insert_deduplicate": 1}
# LowCardinality columns as plain strings, so the result casts to the canonical schema.
_READ_SETTINGS: dict[str, Any] = {"output_format_arrow_low_cardinality_as_dictionary": 0}
# 2: wait until the rows are hidden on every replica, so "deleted" is true when we return.
_DELETE_SETTINGS: dict[str, Any] = {"lightweight_deletes_sync": 2}


class ClickHouseConnector(Connector):
    """Batches into a ClickHouse table over HTTP(S), or into chDB for ``chdb:`` DSNs.

    ``pool_mgr`` is the urllib3 pool manager pinned to the address the egress check approved
    (``astralog.security.egress.pinned_pool_manager``); clickhouse-connect then sends every
    request through it. A supplied pool carries its own TLS settings: clickhouse-connect applies
    ``verify``/``ca_cert`` only to pools it builds itself, so build the pinned pool with them.
    """

    #: (probe step, privilege on the log table, what it is needed for); with CREATE DATABASE
    #: and CREATE TABLE while those do not exist, this is all the connector needs.
    required_grants: ClassVar[tuple[tuple[str, str, str], ...]] = (
        ("insert", "INSERT", "writing batches"),
        ("select", "SELECT", "listing batches and searching"),
        ("delete", "ALTER DELETE", "retention (DROP PARTITION, lightweight DELETE)"),
    )

    def __init__(
        self,
        config: ClickHouseConfig,
        password: str = "",
        *,
        pool_mgr: PoolManager | None = None,
        dsn: str | None = None,
    ) -> None:
        self.config = config
        self._secret = password
        if dsn is not None:
            if not dsn.startswith("chdb:") or password or pool_mgr is not None:
                raise ValueError("dsn= is for chdb: DSNs only, without password or pool_mgr")
            self._location = dsn
            self._connect: Callable[[], Client] = partial(clickhouse_connect.get_client, dsn=dsn)
        else:
            self._location = config.location
            self._connect = partial(_http_client, config, password, pool_mgr)
        self._table = f"{quote(config.database)}.{quote(config.table)}"
        self._lock = threading.Lock()
        self._client_instance: Client | None = None
        self._schema_ready = False
        self._org_day_partitions = False

    @classmethod
    def for_dsn(cls, dsn: str, config: ClickHouseConfig | None = None) -> ClickHouseConnector:
        """The embedded engine: ``chdb:///path`` (or ``chdb://memory``), same client API as HTTP.

        chDB hosts one engine path per process; every connector on that path shares its data.
        """
        return cls(config or ClickHouseConfig(), dsn=dsn)

    def __repr__(self) -> str:
        return f"ClickHouseConnector({self._location!r}, table={self._table!r})"

    def grant_statements(self, user: str) -> list[str]:
        """The least-privilege grants, as statements an admin pastes into their ClickHouse."""
        db, who = quote(self.config.database), quote_user(user)
        privileges = ", ".join(["CREATE TABLE", *(p for _, p, _ in self.required_grants)])
        return [
            f"GRANT CREATE DATABASE ON {db}.* TO {who}",
            f"GRANT {privileges} ON {self._table} TO {who}",
            f"GRANT CREATE TABLE, INSERT, SELECT ON {db}.{quote(_CHECKPOINTS)} TO {who}",
            f"GRANT CREATE TABLE, INSERT, SELECT ON {db}.{quote(_RECEIPTS)} TO {who}",
        ]

    # -- the contract ------------------------------------------------------------------------

    async def write_batch(self, key: BatchKey, table: pa.Table) -> WrittenBatch:
        rows = _rows_of_batch(key, table)
        relative = object_key(key)
        if rows.num_rows:
            await self._guarded(f"inserting batch {relative}", self._insert, relative, rows)
        return WrittenBatch(
            key=relative,
            uri=f"{self._location}/{self.config.database}.{self.config.table}/{relative}",
            # the Arrow bytes handed over; what the rows take on disk is the server's affair
            bytes=table.nbytes,
            rows=table.num_rows,
        )

    async def delete_expired(
        self, org_id: str, source_id: str | None, before: datetime, keep: Spans = ()
    ) -> list[str]:
        _validate_scope(org_id, source_id)
        cutoff = floor_hour(before)
        return await self._guarded(
            f"deleting rows of org {org_id} before {before.isoformat()}",
            self._delete_expired_sync,
            org_id,
            source_id,
            cutoff,
            _hour_spans(keep, cutoff),
        )

    async def list_objects(
        self, org_id: str, source_id: str | None, start: datetime, end: datetime
    ) -> list[str]:
        _validate_scope(org_id, source_id)
        first, last = floor_hour(start), _ceil_hour(end)
        if last <= first:
            return []
        return await self._guarded(
            f"listing batches of org {org_id}", self._batch_keys, org_id, source_id, first, last
        )

    async def probe(self) -> list[Check]:
        return await run_probe(self._probe_steps(), self._probe_failed)

    async def read_batches(
        self, object_keys: Sequence[str], pushdown: Pushdown | None = None
    ) -> pa.Table:
        keys = [parse_object_key(k) for k in object_keys]
        if not keys:
            return canonical_rows([], "")
        if pushdown is not None and pushdown.dialect != "clickhouse":
            pushdown = None
        return await self._guarded(f"reading {len(keys)} batches", self._read_rows, keys, pushdown)

    async def put_checkpoint(self, org_id: str, seq: int, document: bytes) -> None:
        validate_id("org_id", org_id)
        await self._guarded(
            f"writing checkpoint {seq} of org {org_id}",
            self._insert_checkpoint,
            org_id,
            seq,
            document,
        )

    async def list_checkpoints(self, org_id: str) -> list[tuple[str, bytes]]:
        validate_id("org_id", org_id)
        return await self._guarded(
            f"listing checkpoints of org {org_id}", self._checkpoint_rows, org_id
        )

    async def put_receipt(self, org_id: str, name: str, document: bytes) -> None:
        receipt_key(org_id, name)  # the same names as in a bucket
        await self._guarded(
            f"writing purge receipt {name}", self._insert_receipt, org_id, name, document
        )

    async def list_receipts(self, org_id: str) -> list[tuple[str, bytes]]:
        validate_id("org_id", org_id)
        return await self._guarded(
            f"listing purge receipts of org {org_id}", self._receipt_rows, org_id
        )

    async def list_checkpoint_orgs(self) -> list[str]:
        return await self._guarded("listing the orgs with checkpoints", self._checkpoint_orgs)

    async def erase_rows(
        self, object_key: str, event_ids: Collection[str], replacement: BatchKey
    ) -> WrittenBatch | None:
        """A lightweight DELETE: the rows are hidden at once and gone at the next merge; the
        batch keeps its key (rows are stored, not objects), so ``replacement`` is unused."""
        key = parse_object_key(object_key)
        left = await self._guarded(
            f"erasing rows of {object_key}", self._erase_sync, key, sorted(event_ids)
        )
        if left is None:
            return None
        uri = f"{self._location}/{self.config.database}.{self.config.table}/{object_key}"
        return WrittenBatch(key=object_key, uri=uri, bytes=0, rows=left)

    async def delete_objects(self, object_keys: Sequence[str]) -> None:
        """Nothing to do: :meth:`erase_rows` already deleted the rows in place."""

    def is_retryable(self, exc: BaseException) -> bool:
        if isinstance(exc, ConnectorError):
            return exc.retryable
        return retryable(exc)

    async def close(self) -> None:
        await asyncio.to_thread(self._close_sync)

    async def ensure_table(self) -> None:
        """Create the database and the table if missing (the first write does it anyway)."""
        await self._guarded(f"creating {self._table}", self._ensure_schema)

    # -- client and schema -------------------------------------------------------------------

    def _client(self) -> Client:
        with self._lock:
            if self._client_instance is None:
                self._client_instance = self._connect()
            return self._client_instance

    def _close_sync(self) -> None:
        with self._lock:
            client, self._client_instance = self._client_instance, None
        if client is not None:
            client.close()

    def _ensure_schema(self) -> None:
        if self._schema_ready:
            return
        client = self._client()
        db = quote(self.config.database)
        # EXISTS first: CREATE ... IF NOT EXISTS still needs the CREATE grant, which a
        # least-privilege user of a pre-created table does not hold.
        if not client.command(f"EXISTS DATABASE {db}"):
            client.command(f"CREATE DATABASE IF NOT EXISTS {db}")
        if not client.command(f"EXISTS TABLE {self._table}"):
            client.command(render_ddl(self.config))
        else:
            self._add_word_index(client)
        meta = self._table_meta(client)
        self._org_day_partitions = meta is not None and meta[0] == _ORG_DAY_KEY
        self._schema_ready = True

    def _add_word_index(self, client: Client) -> None:
        """A table from before the body's word index gets it (a metadata change). Search is
        exact without it, only slower, so a user without the ALTER grant keeps writing."""
        with contextlib.suppress(ClickHouseError):
            client.command(word_index_ddl(self.config))

    def _table_meta(self, client: Client) -> tuple[str, str] | None:
        """``(partition_key, engine_full)`` of the table, or None when it does not exist."""
        rows = client.query(
            "SELECT partition_key, engine_full FROM system.tables"
            " WHERE database = {db:String} AND name = {table:String}",
            parameters={"db": self.config.database, "table": self.config.table},
        ).result_rows
        return (str(rows[0][0]), str(rows[0][1])) if rows else None

    # -- writing -----------------------------------------------------------------------------

    def _insert(self, relative: str, rows: pa.Table) -> None:
        self._ensure_schema()
        settings = {**_INSERT_SETTINGS, "insert_deduplication_token": f"astralog:{relative}"}
        self._client().insert_arrow(
            self.config.table, rows, database=self.config.database, settings=settings
        )

    def _checkpoint_table(self) -> str:
        """The checkpoints table, created on first use (CREATE TABLE is in the grants)."""
        return self._side_table(_CHECKPOINTS, "audit_checkpoints.sql")

    def _side_table(self, name: str, ddl_file: str) -> str:
        self._ensure_schema()
        table = f"{quote(self.config.database)}.{quote(name)}"
        client = self._client()
        if not client.command(f"EXISTS TABLE {table}"):
            ddl = schema_text(ddl_file)
            client.command(string.Template(ddl).substitute(database=quote(self.config.database)))
        return table

    def _insert_receipt(self, org_id: str, name: str, document: bytes) -> None:
        self._side_table(_RECEIPTS, "purge_receipts.sql")
        self._client().insert(
            _RECEIPTS,
            [[org_id, name, document.decode()]],
            column_names=["OrgId", "Name", "Document"],
            database=self.config.database,
            settings=_INSERT_SETTINGS,
        )

    def _receipt_rows(self, org_id: str) -> list[tuple[str, bytes]]:
        table = self._side_table(_RECEIPTS, "purge_receipts.sql")
        rows = (
            self._client()
            .query(
                f"SELECT Name, any(Document) FROM {table} WHERE OrgId = {{org:String}}"
                " GROUP BY Name ORDER BY Name",
                parameters={"org": org_id},
            )
            .result_rows
        )
        where = f"{self._location}/{self.config.database}.{_RECEIPTS}"
        return [(f"{where} {name}", str(doc).encode()) for name, doc in rows]

    def _insert_checkpoint(self, org_id: str, seq: int, document: bytes) -> None:
        self._checkpoint_table()
        self._client().insert(
            _CHECKPOINTS,
            [[org_id, seq, document.decode()]],
            column_names=["OrgId", "Seq", "Document"],
            database=self.config.database,
            settings=_INSERT_SETTINGS,
        )

    def _checkpoint_orgs(self) -> list[str]:
        table = self._checkpoint_table()
        query = f"SELECT DISTINCT OrgId FROM {table} ORDER BY OrgId"
        return [str(row[0]) for row in self._client().query(query).result_rows]

    def _checkpoint_rows(self, org_id: str) -> list[tuple[str, bytes]]:
        table = self._checkpoint_table()
        rows = (
            self._client()
            .query(
                f"SELECT Seq, any(Document) FROM {table} WHERE OrgId = {{org:String}}"
                " GROUP BY Seq ORDER BY Seq",
                parameters={"org": org_id},
            )
            .result_rows
        )
        where = f"{self._location}/{self.config.database}.{_CHECKPOINTS}"
        return [(f"{where} seq {seq}", str(doc).encode()) for seq, doc in rows]

    # -- listing and retention ---------------------------------------------------------------

    def _batch_keys(
        self, org_id: str, source_id: str | None, first: datetime | None, end: datetime
    ) -> list[str]:
        """Keys of the batches with rows in the hours ``[first, end)`` (from the beginning)."""
        self._ensure_schema()
        where, params = _scope_filter(org_id, source_id, first, end)
        rows = (
            self._client()
            .query(
                "SELECT DISTINCT SourceId, toUnixTimestamp(toStartOfHour(Timestamp)), BatchId"
                f" FROM {self._table} WHERE {where}",
                parameters=params,
            )
            .result_rows
        )
        keys = (_batch_key(org_id, str(s), int(h), str(b)) for s, h, b in rows)
        return sorted(object_key(k) for k in keys if k is not None)

    def _read_rows(self, keys: list[BatchKey], pushdown: Pushdown | None) -> pa.Table:
        """The rows ``write_batch`` stored for ``keys``: their BatchId names them (OrgId only
        lets the server skip other tenants' partitions); a pushed-down search filter is
        evaluated by ClickHouse, so only matching rows travel."""
        columns = ", ".join(quote(name) for name in log_schema().names)
        where = "OrgId IN {orgs:Array(String)} AND BatchId IN {ids:Array(String)}"
        params: dict[str, Any] = {
            "orgs": sorted({k.org_id for k in keys}),
            "ids": sorted({k.batch_id for k in keys}),
        }
        if pushdown is not None:
            where += f" AND ({pushdown.where})"
            params |= pushdown.params
        rows = self._client().query_arrow(
            f"SELECT {columns} FROM {self._table} WHERE {where}",
            parameters=params,
            settings=_READ_SETTINGS,
            use_strings=True,
        )
        return canonical_rows([rows], f"batches in {self._table}")

    def _erase_sync(self, key: BatchKey, event_ids: list[str]) -> int | None:
        """Rows of the batch left after deleting ``event_ids``; None when it had none of them."""
        self._ensure_schema()
        where = (
            "OrgId = {org:String} AND BatchId = {batch:String} AND EventId IN {ids:Array(String)}"
        )
        params: dict[str, Any] = {"org": key.org_id, "batch": key.batch_id, "ids": event_ids}
        client = self._client()
        if not client.query(
            f"SELECT count() FROM {self._table} WHERE {where}", parameters=params
        ).result_rows[0][0]:
            return None
        client.command(
            f"DELETE FROM {self._table} WHERE {where}", parameters=params, settings=_DELETE_SETTINGS
        )
        rest = "OrgId = {org:String} AND BatchId = {batch:String}"
        return int(
            client.query(
                f"SELECT count() FROM {self._table} WHERE {rest}", parameters=params
            ).result_rows[0][0]
        )

    def _delete_expired_sync(
        self, org_id: str, source_id: str | None, cutoff: datetime, keep: list[_Span]
    ) -> list[str]:
        found = self._batch_keys(org_id, source_id, None, cutoff)
        deleted = [k for k in found if not kept(parse_object_key(k).hour, keep)]
        if not deleted:
            return []
        rows_left = True
        if source_id is None and self._org_day_partitions:
            whole_days_before = min([cutoff, *(start for start, _ in keep)])  # no held day
            self._drop_whole_days(org_id, whole_days_before)
            day = whole_days_before.replace(hour=0)
            rows_left = any(parse_object_key(k).hour >= day for k in deleted)
        if rows_left:
            where, params = _sparing(*_scope_filter(org_id, source_id, None, cutoff), keep)
            self._client().command(
                f"DELETE FROM {self._table} WHERE {where}",
                parameters=params,
                settings=_DELETE_SETTINGS,
            )
        return deleted

    def _drop_whole_days(self, org_id: str, cutoff: datetime) -> None:
        """Drop the org's day partitions that end at or before ``cutoff`` (metadata only)."""
        client = self._client()
        ids = client.query(
            f"SELECT DISTINCT _partition_id FROM {self._table}"
            " WHERE _partition_value.1 = {org:String} AND _partition_value.2 < {day:Date}",
            parameters={"org": org_id, "day": cutoff.date()},
        ).result_rows
        for (partition_id,) in ids:
            if _PARTITION_ID.fullmatch(str(partition_id)):  # server data, still never raw SQL
                client.command(f"ALTER TABLE {self._table} DROP PARTITION ID '{partition_id}'")

    # -- connection check --------------------------------------------------------------------

    def _probe_steps(self) -> list[Step]:
        """Connect first; then each privilege is asked for on its own, so one check names
        every missing grant."""
        session: dict[str, Any] = {}

        def connect() -> str:
            client = self._client()
            version, user = client.query("SELECT version(), currentUser()").result_rows[0]
            session.update(client=client, user=str(user))
            return f"ClickHouse {version} at {self._location} as {user}"

        def asking(check: Callable[..., tuple[bool, str]], *args: str) -> Callable[[], str]:
            def step() -> str:
                ok, detail = check(session["client"], session["user"], *args)
                expect(ok, detail)
                return detail

            return step

        steps = [
            ("connect", connect),
            ("database", asking(self._probe_database)),
            ("table", asking(self._probe_table)),
            *((n, asking(self._grant_check, p, why)) for n, p, why in self.required_grants),
        ]
        return [Step(name, partial(asyncio.to_thread, step)) for name, step in steps]

    def _probe_failed(self, name: str, exc: Exception) -> tuple[str, bool] | None:
        if isinstance(exc, ProbeMismatch):
            return str(exc), False
        if not translatable(exc):
            return None
        if name == "connect":
            return f"cannot reach ClickHouse at {self._location}: {self._describe(exc)}", True
        return f"{name} check failed: {self._describe(exc)}", False

    def _probe_database(self, client: Client, user: str) -> tuple[bool, str]:
        db = quote(self.config.database)
        if client.command(f"EXISTS DATABASE {db}"):
            return True, f"database {db} exists"
        return self._grant_check(client, user, "CREATE DATABASE", "creating it", on=f"{db}.*")

    def _probe_table(self, client: Client, user: str) -> tuple[bool, str]:
        meta = self._table_meta(client)
        if meta is None:
            return self._grant_check(client, user, "CREATE TABLE", "creating it from otel_logs.sql")
        present = {str(r[0]) for r in client.query(f"DESCRIBE TABLE {self._table}").result_rows}
        missing = [c for c in (*log_schema().names, *_REQUIRED_COLUMNS) if c not in present]
        if missing:
            return False, f"{self._table} lacks columns {', '.join(missing)}: see otel_logs.sql"
        if "Replicated" not in meta[1] and "Shared" not in meta[1]:
            window = _DEDUP_WINDOW.search(meta[1])
            if window is None or int(window[1]) == 0:
                return False, (
                    f"{self._table} does not deduplicate retried inserts: run ALTER TABLE "
                    f"{self._table} MODIFY SETTING non_replicated_deduplication_window = 10000"
                )
        return True, f"{self._table} exists with every column and insert deduplication"

    def _grant_check(
        self, client: Client, user: str, privilege: str, needed_for: str, on: str | None = None
    ) -> tuple[bool, str]:
        target = on or self._table
        try:
            granted = client.command(f"CHECK GRANT {privilege} ON {target}")
        except ClickHouseError as exc:
            if getattr(exc, "code", None) != 62:  # SYNTAX_ERROR: a server without CHECK GRANT
                raise
            return False, (
                f"cannot verify {privilege} on {target}: this server has no CHECK GRANT; "
                f"make sure it holds GRANT {privilege} ON {target} TO {quote_user(user)}"
            )
        if str(granted).strip() == "1":
            return True, f"{privilege} on {target} granted (for {needed_for})"
        return False, (
            f"missing privilege {privilege} on {target}, needed for {needed_for}: "
            f"GRANT {privilege} ON {target} TO {quote_user(user)}"
        )

    # -- errors ------------------------------------------------------------------------------

    async def _guarded(self, doing: str, fn: Callable[..., _T], *args: object) -> _T:
        """Run blocking ``fn`` in a thread; translate client errors into ConnectorError."""
        try:
            return await asyncio.to_thread(fn, *args)
        except Exception as exc:
            if not translatable(exc):
                raise
            if getattr(exc, "code", None) in SCHEMA_GONE_CODES:
                self._schema_ready = False
            raise ConnectorError(
                f"{doing} in ClickHouse {self._location} table {self._table} failed: "
                f"{self._describe(exc)}",
                retryable=retryable(exc),
            ) from exc

    def _describe(self, exc: BaseException) -> str:
        """The driver's message, shortened, with the password blanked should it ever appear."""
        text = " ".join(str(exc).split())[:600] or type(exc).__name__
        return redact(text, [self._secret])


def _http_client(config: ClickHouseConfig, password: str, pool_mgr: PoolManager | None) -> Client:
    if pool_mgr is None and config.ca_cert:
        # clickhouse-connect takes a CA *path*; the PEM text goes to a pool built here instead.
        pool_mgr = PoolManager(
            ca_cert_data=config.ca_cert, cert_reqs="CERT_REQUIRED" if config.verify else "CERT_NONE"
        )
    extra: dict[str, Any] = {"pool_mgr": pool_mgr} if pool_mgr is not None else {}
    return clickhouse_connect.get_client(
        host=config.host,
        port=config.resolved_port,
        username=config.user,
        password=password,
        secure=config.secure,
        verify=config.verify,
        connect_timeout=config.connect_timeout_seconds,
        send_receive_timeout=config.send_receive_timeout_seconds,
        # Batches are written from several threads at once; an HTTP session id would make the
        # server refuse concurrent queries, and no query here needs session state.
        autogenerate_session_id=False,
        client_name="astralog",
        **extra,
    )


def _validate_scope(org_id: str, source_id: str | None) -> None:
    validate_id("org_id", org_id)
    if source_id is not None:
        validate_id("source_id", source_id)


def _rows_of_batch(key: BatchKey, table: pa.Table) -> pa.Table:
    """``table`` plus its BatchId column, after checking every row belongs to ``key``.

    The bucket connectors put rows under the key's path whatever they say; here OrgId and
    SourceId are what queries filter on, so a row of another tenant or hour is refused.
    """
    if table.num_rows:
        for column, expected in (("OrgId", key.org_id), ("SourceId", key.source_id)):
            if not pc.all(pc.equal(table[column], expected)).as_py():
                raise ValueError(f"batch {key.batch_id}: a row's {column} is not {expected!r}")
        bounds = pc.min_max(table["Timestamp"].cast(pa.int64()))
        start = _ns(key.hour)
        if bounds["min"].as_py() < start or bounds["max"].as_py() >= start + _ns_delta(HOUR):
            raise ValueError(f"batch {key.batch_id}: a row's Timestamp is outside {key.hour}")
    batch_ids = pa.repeat(pa.scalar(key.batch_id, pa.string()), table.num_rows)
    return table.append_column("BatchId", batch_ids)


def _scope_filter(
    org_id: str, source_id: str | None, first: datetime | None, end: datetime
) -> tuple[str, dict[str, Any]]:
    """A WHERE clause with server-side parameters: no value is ever spliced into the SQL."""
    where = ["OrgId = {org:String}", "Timestamp < fromUnixTimestamp64Nano({end:Int64}, 'UTC')"]
    params: dict[str, Any] = {"org": org_id, "end": _ns(end)}
    if source_id is not None:
        where.append("SourceId = {source:String}")
        params["source"] = source_id
    if first is not None:
        where.append("Timestamp >= fromUnixTimestamp64Nano({first:Int64}, 'UTC')")
        params["first"] = _ns(first)
    return " AND ".join(where), params


_Span = tuple[datetime, datetime]


def _hour_spans(keep: Spans, cutoff: datetime) -> list[_Span]:
    """``keep`` widened to whole hours, cut at ``cutoff``, sorted and merged: a short list of
    parameters for the ``DELETE`` however many holds overlap."""
    spans: list[_Span] = []
    for start, end in sorted((floor_hour(s), min(_ceil_hour(e), cutoff)) for s, e in keep):
        if start >= end:
            continue
        if spans and start <= spans[-1][1]:
            spans[-1] = (spans[-1][0], max(spans[-1][1], end))
        else:
            spans.append((start, end))
    return spans


def _sparing(where: str, params: dict[str, Any], keep: list[_Span]) -> tuple[str, dict[str, Any]]:
    """The WHERE clause without the rows of the hours ``keep`` holds (parameters, never SQL)."""
    clauses = [where]
    for i, (start, end) in enumerate(keep):
        clauses.append(
            f"NOT (Timestamp >= fromUnixTimestamp64Nano({{keep_from_{i}:Int64}}, 'UTC') AND "
            f"Timestamp < fromUnixTimestamp64Nano({{keep_to_{i}:Int64}}, 'UTC'))"
        )
        params = params | {f"keep_from_{i}": _ns(start), f"keep_to_{i}": _ns(end)}
    return " AND ".join(clauses), params


def _batch_key(org_id: str, source_id: str, hour_epoch: int, batch_id: str) -> BatchKey | None:
    """The key of stored rows, or None for rows not written by Astralog (ids it cannot use)."""
    try:
        return BatchKey(org_id, source_id, datetime.fromtimestamp(hour_epoch, UTC), batch_id)
    except ValueError:
        return None


def _ceil_hour(moment: datetime) -> datetime:
    floor = floor_hour(moment)
    return floor if floor == moment.astimezone(UTC) else floor + HOUR


def _ns(moment: datetime) -> int:
    return _ns_delta(moment.astimezone(UTC) - datetime(1970, 1, 1, tzinfo=UTC))


def _ns_delta(delta: timedelta) -> int:
    return (delta.days * 86_400 + delta.seconds) * 10**9 + delta.microseconds * 1_000
