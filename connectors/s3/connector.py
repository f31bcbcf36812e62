"""The S3-compatible destination: Parquet batches in the customer's own bucket, via aiobotocore.

Stage: flush -> **connector**. One object per batch at ``<prefix>/<object_key(...)>`` in AWS S3,
Cloudflare R2, Google Cloud Storage's XML API, MinIO or anything else that speaks S3 (settings per
provider in :data:`.config.PROVIDER_NOTES`). Beyond the contract of :mod:`astralog.connectors.base`:

* **Idempotent, atomic writes.** A PUT, or a multipart upload at or above
  ``multipart_threshold``, replaces the object whole: readers see the old bytes or the new ones.
  A failed multipart upload is aborted; one cut short by a crash is invisible to readers and
  removed by the bucket's ``AbortIncompleteMultipartUpload`` lifecycle rule (recommended).
* **Pruning by path.** Listing and retention walk ``ListObjectsV2`` prefixes and delimiters
  (org, source, day) and never read an object; deletes go out in ``DeleteObjects`` batches of at
  most 1000 keys.
* **Retries.** Inside one call, botocore's ``standard`` retry mode makes up to ``max_attempts``
  tries with exponential backoff and jitter on throttling, 5xx, timeouts and dropped
  connections. What still fails is raised as ``ConnectorError(retryable=True)`` and the flusher
  backs off across calls; authorisation and configuration errors are permanent at once.
* **Secrets stay secret.** Keys arrive in :class:`S3Secrets`, apart from the stored
  :class:`S3Config`, never appear in a repr, and error messages are composed from error codes
  and our own words, with the known secret values redacted on top.
* **The endpoint is pinned.** The SSRF guard's ``pinned_connector_args`` (or a bare aiohttp
  resolver) go to the S3 client's connector (``AioConfig(connector_args=...)``; aiobotocore
  supports ``resolver`` and ``socket_factory`` there), so lookups and sockets reach only the
  checked address; HTTP redirects are never followed (a ``Location`` header is a request target
  the server chooses) and the host's ``AWS_ENDPOINT_URL*`` settings are ignored.
* **No call hangs.** Connect and read timeouts bound every request, including uploads (see
  :mod:`.transport` for the one gap in aiohttp this closes).

A client is opened per call and closed with it: nothing outlives the event loop it was made on,
at the cost of one client (about 4 ms) and one connection per call. The session, with its loaded
service models and resolved credentials, is shared.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import re
from collections.abc import (
    AsyncIterator,
    Callable,
    Coroutine,
    Iterable,
    Iterator,
    Mapping,
    Sequence,
)
from datetime import UTC, datetime, timedelta
from secrets import token_bytes, token_hex
from typing import Any, Final, TypeVar

import pyarrow as pa
from aiobotocore.config import AioConfig
from aiobotocore.credentials import AioCredentialResolver, AioDeferredRefreshableCredentials
from aiobotocore.session import AioSession
from aiohttp.abc import AbstractResolver
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    NoCredentialsError,
)

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
    CHECKPOINT_DIR,
    HOUR,
    checkpoint_key,
    kept,
    keys_in_range,
    object_key,
    parse_object_key,
    partition_hour,
    partition_prefix,
    receipt_key,
    validate_id,
)
from ..parquet import read_parquet, to_parquet_bytes
from ..probe import ProbeMismatch, run_probe
from .config import S3Config, S3Secrets
from .errors import (
    DENIED_CODES,
    RETRYABLE_CODES,
    explain_client_error,
    explain_transport,
    is_denied,
    is_retryable_error,
)
from .policy import bucket_arn
from .probe import canary_steps
from .transport import FixedCredentials, client_config, no_region_redirects

_T = TypeVar("_T")
_DAY: Final = timedelta(days=1)
_MAX_PARTS: Final = 10_000
_DELETE_BATCH = 1000  # DeleteObjects takes at most 1000 keys
_LIST_PAGE = 1000  # ListObjectsV2 returns at most 1000 keys a page
_PARALLEL = 8  # concurrent listings or part uploads inside one call
_SESSION_NAME: Final = "astralog-connector"
_REDACT_MIN: Final = 8

_DAY_PREFIX = re.compile(r"dt=(\d{4}-\d{2}-\d{2})/$")


class S3Connector(Connector):
    """Parquet batches in an S3-compatible bucket; keys are relative to ``bucket/prefix``."""

    def __init__(
        self,
        config: S3Config,
        secrets: S3Secrets | None = None,
        *,
        resolver: AbstractResolver | None = None,
        connector_args: Mapping[str, Any] | None = None,
        sts_endpoint_url: str | None = None,
        row_group_rows: int = 64 * 1024,
    ) -> None:
        """``secrets`` go with ``credentials='static'`` only.

        ``resolver`` and ``connector_args`` reach the S3 client's aiohttp connector (STS is
        AWS's own and is not pinned): pass the SSRF guard's
        ``connector_args=pinned_connector_args(checked)`` (pinned resolver, socket factory, no
        DNS cache) with ``config.endpoint_url=checked.url``, or a bare ``resolver``.
        ``sts_endpoint_url`` is an operator setting for assume_role (a VPC endpoint, a test).
        """
        if (config.credentials == "static") != (secrets is not None):
            raise ValueError("S3Secrets go with credentials='static' and only with it")
        self.config = config
        self.row_group_rows = row_group_rows
        self._secrets = secrets
        # Real keys are 16+ characters; redacting a short value would mangle every message.
        revealed = secrets.revealed() if secrets else []
        self._redact_values = [v for v in revealed if len(v) >= _REDACT_MIN]
        self._endpoint = config.endpoint_url or f"https://s3.{config.region}.amazonaws.com"
        pin = dict(connector_args or {}) | ({"resolver": resolver} if resolver else {})
        self._aio_config = client_config(config, pin, config.max_attempts)
        self._probe_config = client_config(config, pin, min(config.max_attempts, 2))
        self._sts_endpoint_url = sts_endpoint_url
        self._session = self._make_session()

    def __repr__(self) -> str:
        return f"S3Connector(s3://{self.config.bucket}/{self.config.prefix} at {self._endpoint})"

    # -- the contract ------------------------------------------------------------------------

    async def write_batch(self, key: BatchKey, table: pa.Table) -> WrittenBatch:
        relative = object_key(key)
        full = self._full_key(relative)
        # Encoding is CPU-bound: keep it off the event loop.
        data = await asyncio.to_thread(to_parquet_bytes, table, self.row_group_rows)
        async with self._client() as client, self._translated(f"writing {relative}", full):
            if len(data) >= self.config.multipart_threshold:
                await self._put_multipart(client, full, data)
            else:
                await client.put_object(
                    Bucket=self.config.bucket, Key=full, Body=data, **self._sse_args()
                )
        uri = f"s3://{self.config.bucket}/{full}"
        return WrittenBatch(key=relative, uri=uri, bytes=len(data), rows=table.num_rows)

    async def list_objects(
        self, org_id: str, source_id: str | None, start: datetime, end: datetime
    ) -> list[str]:
        def overlaps(day: datetime) -> bool:
            return day < end and day + _DAY > start

        keys = await self._batch_keys(org_id, source_id, overlaps, f"listing batches of {org_id}")
        return keys_in_range(keys, start, end)

    async def delete_expired(
        self, org_id: str, source_id: str | None, before: datetime, keep: Spans = ()
    ) -> list[str]:
        doing = f"deleting batches of org {org_id} before {before.isoformat()}"
        # A day that starts before `before` may hold expired hours; the hour decides.
        keys = await self._batch_keys(org_id, source_id, lambda day: day < before, doing)
        expired = [k for k in keys if _expired(partition_hour(k), before, keep)]
        await self._delete(expired, doing)
        return sorted(expired)

    async def probe(self) -> list[Check]:
        canary = self._full_key(f".astralog-probe-{token_hex(8)}")
        async with self._client(probe=True) as client:
            return await self._run_probe(client, canary, token_bytes(32))

    async def read_batches(
        self, object_keys: Sequence[str], pushdown: Pushdown | None = None
    ) -> pa.Table:
        for key in object_keys:
            parse_object_key(key)  # only keys of our layout, never a caller's arbitrary path
        if not object_keys:
            return canonical_rows([], "")
        async with self._client() as client:
            tables = await _gather([self._read_object(client, k) for k in object_keys])
        return canonical_rows(tables, f"batches in {self._where()}")

    async def read_object(self, object_key: str) -> bytes:
        parse_object_key(object_key)  # only keys of our layout, never a caller's arbitrary path
        async with self._client() as client:
            return await self._get_bytes(client, self._full_key(object_key))

    async def put_checkpoint(self, org_id: str, seq: int, document: bytes) -> None:
        await self._put_document(checkpoint_key(org_id, seq), f"writing checkpoint {seq}", document)

    async def list_checkpoints(self, org_id: str) -> list[tuple[str, bytes]]:
        doing = f"listing checkpoints of org {org_id}"
        return await self._documents_beside(checkpoint_key(org_id, 0), doing)

    async def put_receipt(self, org_id: str, name: str, document: bytes) -> None:
        await self._put_document(receipt_key(org_id, name), f"writing receipt {name}", document)

    async def list_receipts(self, org_id: str) -> list[tuple[str, bytes]]:
        doing = f"listing purge receipts of org {org_id}"
        return await self._documents_beside(receipt_key(org_id, "x"), doing)

    async def _put_document(self, key: str, doing: str, document: bytes) -> None:
        """One JSON document of the org's (a checkpoint, a purge receipt), written whole."""
        full = self._full_key(key)
        async with self._client() as client, self._translated(doing, full):
            await client.put_object(
                Bucket=self.config.bucket,
                Key=full,
                Body=document,
                ContentType="application/json",
                **self._sse_args(),
            )

    async def _documents_beside(self, key: str, doing: str) -> list[tuple[str, bytes]]:
        """Every JSON document in ``key``'s folder, in key order, each with its address."""
        directory = self._full_key(key).rsplit("/", 1)[0] + "/"
        async with self._client() as client:
            async with self._translated(doing, None):
                keys = sorted(
                    k for k in await self._keys_under(client, directory) if k.endswith(".json")
                )
            documents = await _gather([self._get_bytes(client, k) for k in keys])
        return [(f"s3://{self.config.bucket}/{k}", d) for k, d in zip(keys, documents, strict=True)]

    async def list_checkpoint_orgs(self) -> list[str]:
        base = self._full_key("")
        doing = "listing the orgs with checkpoints"
        async with self._client() as client, self._translated(doing, None):
            orgs = await self._subprefixes(client, base, "org=")
            held = [await self._keys_under(client, f"{org}{CHECKPOINT_DIR}/") for org in orgs]
        found = {
            o[len(base) :].strip("/").removeprefix("org=")
            for o, k in zip(orgs, held, strict=True)
            if k
        }
        return sorted(found)

    async def _get_bytes(self, client: Any, full: str) -> bytes:
        async with self._translated(f"reading {full}", full):
            response = await client.get_object(Bucket=self.config.bucket, Key=full)
            async with response["Body"] as body:
                data: bytes = await body.read()
        return data

    async def delete_objects(self, object_keys: Sequence[str]) -> None:
        for key in object_keys:
            parse_object_key(key)  # only keys of our layout, never a caller's arbitrary path
        await self._delete(list(object_keys), f"deleting {len(object_keys)} batches")

    def is_retryable(self, exc: BaseException) -> bool:
        return is_retryable_error(exc)

    # -- clients and credentials -------------------------------------------------------------

    def _make_session(self) -> AioSession:
        session = AioSession()
        if self.config.credentials == "assume_role":
            credentials = AioDeferredRefreshableCredentials(
                refresh_using=self._assume_role, method="assume-role"
            )
            # A credential provider is botocore's supported seam for custom credentials; this
            # one hands out our refreshable assumed-role credentials and nothing else.
            provider = AioCredentialResolver(providers=[FixedCredentials(credentials)])
            session.register_component("credential_provider", provider)
        return session

    @contextlib.asynccontextmanager
    async def _client(self, *, probe: bool = False) -> AsyncIterator[Any]:
        """A fresh S3 client for one call (see the module docstring)."""
        keys: dict[str, str | None] = {}
        if self._secrets is not None:
            token = self._secrets.session_token
            keys = {
                "aws_access_key_id": self._secrets.access_key_id.get_secret_value(),
                "aws_secret_access_key": self._secrets.secret_access_key.get_secret_value(),
                "aws_session_token": token.get_secret_value() if token else None,
            }
        async with self._session.create_client(
            "s3",
            region_name=self.config.region,
            endpoint_url=self.config.endpoint_url,
            config=self._probe_config if probe else self._aio_config,
            **keys,
        ) as client:
            client.meta.events.register_last("before-parameter-build.s3", no_region_redirects)
            yield client

    async def _assume_role(self) -> dict[str, Any]:
        """Fresh credentials for the customer's role; botocore calls this before they expire."""
        sts_config = AioConfig(
            retries={"mode": "standard", "total_max_attempts": self.config.max_attempts},
            connect_timeout=self.config.connect_timeout,
            read_timeout=self.config.read_timeout,
            ignore_configured_endpoint_urls=True,
        )
        # Source credentials are the host's own (default chain), in a session of their own.
        async with AioSession().create_client(
            "sts",
            region_name=self.config.region,
            endpoint_url=self._sts_endpoint_url,
            config=sts_config,
        ) as sts:
            response = await sts.assume_role(
                RoleArn=self.config.role_arn,
                RoleSessionName=_SESSION_NAME,
                ExternalId=self.config.external_id,
            )
        credentials = response["Credentials"]
        return {
            "access_key": credentials["AccessKeyId"],
            "secret_key": credentials["SecretAccessKey"],
            "token": credentials["SessionToken"],
            "expiry_time": credentials["Expiration"].isoformat(),
        }

    # -- writing -----------------------------------------------------------------------------

    def _sse_args(self) -> dict[str, str]:
        if self.config.sse == "none":
            return {}
        args: dict[str, str] = {"ServerSideEncryption": self.config.sse}
        if self.config.kms_key_id:
            args["SSEKMSKeyId"] = self.config.kms_key_id
        return args

    async def _put_multipart(self, client: Any, key: str, data: bytes) -> None:
        """Upload ``data`` in parts; the object appears, whole, only on completion."""
        bucket = self.config.bucket
        upload = await client.create_multipart_upload(Bucket=bucket, Key=key, **self._sse_args())
        upload_id = upload["UploadId"]
        try:
            parts = await self._upload_parts(client, key, upload_id, data)
            await client.complete_multipart_upload(
                Bucket=bucket, Key=key, UploadId=upload_id, MultipartUpload={"Parts": parts}
            )
        except BaseException:
            # Best effort: parts of an unfinished upload are billed until aborted (the
            # lifecycle rule in PROVIDER_NOTES catches what this misses).
            with contextlib.suppress(BotoCoreError, ClientError):
                await client.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id)
            raise

    async def _upload_parts(
        self, client: Any, key: str, upload_id: str, data: bytes
    ) -> list[dict[str, Any]]:
        size = max(self.config.multipart_part_size, math.ceil(len(data) / _MAX_PARTS))
        view = memoryview(data)

        async def upload(number: int, offset: int) -> dict[str, Any]:
            response = await client.upload_part(
                Bucket=self.config.bucket,
                Key=key,
                UploadId=upload_id,
                PartNumber=number,
                Body=bytes(view[offset : offset + size]),
            )
            # Completion must repeat each part's checksum when botocore sent one.
            checksums = {k: v for k, v in response.items() if k.startswith("Checksum")}
            return {"PartNumber": number, "ETag": response["ETag"], **checksums}

        offsets = range(0, len(data), size)
        return await _gather([upload(n, off) for n, off in enumerate(offsets, start=1)], _PARALLEL)

    # -- reading -----------------------------------------------------------------------------

    async def _read_object(self, client: Any, relative: str) -> pa.Table:
        full = self._full_key(relative)
        async with self._translated(f"reading {relative}", full):
            response = await client.get_object(Bucket=self.config.bucket, Key=full)
            async with response["Body"] as body:
                data = await body.read()
        # Decoding is CPU-bound: keep it off the event loop.
        what = f"s3://{self.config.bucket}/{full}"
        return await asyncio.to_thread(read_parquet, pa.BufferReader(data), what)

    # -- listing and retention ---------------------------------------------------------------

    async def _batch_keys(
        self,
        org_id: str,
        source_id: str | None,
        keep_day: Callable[[datetime], bool],
        doing: str,
    ) -> list[str]:
        """Relative keys of the batches in the days of an org (or one source) ``keep_day``
        accepts; days are pruned by their ``dt=`` prefix, so other days are never listed."""
        validate_id("org_id", org_id)
        if source_id is not None:
            validate_id("source_id", source_id)
        base = partition_prefix(org_id, source_id, self.config.prefix)
        async with self._client() as client, self._translated(doing, None):
            if source_id is not None:
                sources = [base]
            else:
                sources = await self._subprefixes(client, base, "source=")
            per_source = await _gather([self._subprefixes(client, s, "dt=") for s in sources])
            days = [d for ds in per_source for d in ds if _keep(d, keep_day)]
            listed = await _gather([self._keys_under(client, d) for d in days])
        return [self._relative(k) for keys in listed for k in keys if _is_batch(k)]

    def _pages(self, client: Any, prefix: str, delimiter: str = "") -> Any:
        paginator = client.get_paginator("list_objects_v2")
        extra = {"Delimiter": delimiter} if delimiter else {}
        return paginator.paginate(
            Bucket=self.config.bucket,
            Prefix=prefix,
            PaginationConfig={"PageSize": _LIST_PAGE},
            **extra,
        )

    async def _subprefixes(self, client: Any, prefix: str, marker: str) -> list[str]:
        found: list[str] = []
        async for page in self._pages(client, prefix, "/"):
            for common in page.get("CommonPrefixes", []):
                if common["Prefix"][len(prefix) :].startswith(marker):
                    found.append(common["Prefix"])
        return found

    async def _keys_under(self, client: Any, prefix: str) -> list[str]:
        return [obj["Key"] async for page in self._pages(client, prefix) for obj in _contents(page)]

    async def _delete(self, relative_keys: Sequence[str], doing: str) -> None:
        if not relative_keys:
            return
        full = [self._full_key(k) for k in relative_keys]
        async with self._client() as client, self._translated(doing, full[0]):
            for batch in _chunks(full, _DELETE_BATCH):
                response = await client.delete_objects(
                    Bucket=self.config.bucket,
                    Delete={"Objects": [{"Key": k} for k in batch], "Quiet": True},
                )
                if errors := response.get("Errors"):
                    raise self._delete_failed(errors, len(batch), doing)

    def _delete_failed(
        self, errors: list[dict[str, str]], asked: int, doing: str
    ) -> ConnectorError:
        """DeleteObjects answers 200 and reports refusals per key: turn them into one error."""
        first = errors[0]
        code, key = first.get("Code", ""), first.get("Key", "")
        if code in DENIED_CODES:
            reason = f"s3:DeleteObject denied on {bucket_arn(self.config)}/{key}"
        else:
            reason = f"{key}: {code} {first.get('Message', '')}".strip()
        return ConnectorError(
            self._redact(
                f"{doing} in {self._where()}: {len(errors)} of {asked} deletes "
                f"failed; first {reason}"
            ),
            retryable=code in RETRYABLE_CODES,
        )

    # -- connection check --------------------------------------------------------------------

    async def _run_probe(self, client: Any, canary: str, payload: bytes) -> list[Check]:
        """Run every step; after a permission refusal the independent steps still run, so one
        check names every missing permission. Anything else stops the check there."""
        steps, resources = canary_steps(
            client,
            self.config,
            canary,
            payload,
            sse_args=self._sse_args(),
            credentials=self._probe_credentials,
        )

        def explain(name: str, exc: Exception) -> tuple[str, bool] | None:
            # A refused permission or a wrong observation is not fatal: the other permissions
            # are still worth checking; unreachable, no bucket or bad credentials are.
            if isinstance(exc, BotoCoreError | ClientError):
                fatal = name == "credentials" or not is_denied(exc)
                return self._explain(exc, resources[name]), fatal
            return (str(exc), False) if isinstance(exc, ProbeMismatch) else None

        checks = {c.name: c for c in await run_probe(steps, explain)}
        if checks["write"].ok and not checks["delete"].ok:
            left = f"{checks['delete'].detail} (the canary object {canary!r} is left behind)"
            checks["delete"] = Check("delete", False, left)
        return list(checks.values())

    async def _probe_credentials(self) -> str:
        if self._secrets is not None:
            return "static access key"
        credentials = await self._session.get_credentials()
        if credentials is None:
            raise NoCredentialsError()
        await credentials.get_frozen_credentials()  # assume_role calls STS here
        if self.config.credentials == "assume_role":
            return f"assumed {self.config.role_arn} with Astralog's external id"
        return f"host credentials ({credentials.method})"

    # -- errors and helpers ------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def _translated(self, doing: str, key: str | None) -> AsyncIterator[None]:
        """Translate botocore errors into ConnectorError at the boundary, secret-free."""
        try:
            yield
        except (BotoCoreError, ClientError) as exc:
            detail = self._redact(f"{doing} in {self._where()}: {self._explain(exc, key)}")
            raise ConnectorError(detail, retryable=is_retryable_error(exc)) from exc

    def _explain(self, exc: BotoCoreError | ClientError, key: str | None) -> str:
        """What went wrong, for a person: ``key`` is the object concerned (None: the bucket)."""
        if isinstance(exc, ClientError):
            return self._redact(explain_client_error(exc, key, self.config, self._endpoint))
        return self._redact(explain_transport(exc, self._endpoint))

    def _redact(self, text: str) -> str:
        for value in self._redact_values:
            text = text.replace(value, "<redacted>")
        return text

    def _where(self) -> str:
        return f"s3://{self.config.bucket}/{self.config.prefix} at {self._endpoint}"

    def _full_key(self, relative: str) -> str:
        return f"{self.config.prefix}/{relative}" if self.config.prefix else relative

    def _relative(self, full: str) -> str:
        return full[len(self.config.prefix) + 1 :] if self.config.prefix else full


# -- module helpers ---------------------------------------------------------------------------


def _contents(page: dict[str, Any]) -> list[dict[str, Any]]:
    contents: list[dict[str, Any]] = page.get("Contents", [])
    return contents


def _is_batch(key: str) -> bool:
    name = key.rsplit("/", 1)[-1]
    return (
        name.endswith(".parquet") and not name.startswith(".") and partition_hour(key) is not None
    )


def _keep(day_prefix: str, keep_day: Callable[[datetime], bool]) -> bool:
    match = _DAY_PREFIX.search(day_prefix)
    if match is None:
        return False
    try:
        day = datetime.strptime(match[1], "%Y-%m-%d").replace(tzinfo=UTC)
    except ValueError:
        return False
    return keep_day(day)


def _expired(hour: datetime | None, before: datetime, keep: Spans) -> bool:
    return hour is not None and hour + HOUR <= before and not kept(hour, keep)


def _chunks(items: Sequence[_T], size: int) -> Iterator[Sequence[_T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


async def _gather(coros: Iterable[Coroutine[Any, Any, _T]], limit: int = _PARALLEL) -> list[_T]:
    """Run ``coros`` at most ``limit`` at a time, results in order.

    A TaskGroup, unlike ``asyncio.gather``, cancels the rest when one fails, so nothing is
    left running against a client that is about to close; the first error is re-raised bare so
    the boundary translation sees the botocore exception, not a group.
    """
    gate = asyncio.Semaphore(limit)

    async def bounded(coro: Coroutine[Any, Any, _T]) -> _T:
        async with gate:
            return await coro

    try:
        async with asyncio.TaskGroup() as group:
            tasks = [group.create_task(bounded(c)) for c in coros]
    except BaseExceptionGroup as failed:
        raise failed.exceptions[0]  # noqa: B904 - the group is kept as __context__
    return [task.result() for task in tasks]
