"""The S3-compatible destination: Parquet batches in the customer's own bucket, via aiobotocore.

Stage: flush -> **connector**. One object per batch at ``<prefix>/<object_key(...)>`` in AWS S3,
Cloudflare R2, Google Cloud Storage's XML API, MinIO or anything else that speaks S3 (settings per
provider in :data:`PROVIDER_NOTES`). Beyond the contract of :mod:`astralog.connectors.base`:

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
  :class:`_GuardedHTTPSession` for the one gap in aiohttp this closes).

A client is opened per call and closed with it: nothing outlives the event loop it was made on,
at the cost of one client (about 4 ms) and one connection per call. The session, with its loaded
service models and resolved credentials, is shared.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import json
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
from secrets import token_bytes, token_hex, token_urlsafe
from typing import Any, Final, Literal, TypeVar
from urllib.parse import urlsplit

import pyarrow as pa
from aiobotocore.config import AioConfig
from aiobotocore.credentials import AioCredentialResolver, AioDeferredRefreshableCredentials
from aiobotocore.httpsession import AIOHTTPSession
from aiobotocore.session import AioSession
from aiohttp.abc import AbstractResolver
from botocore.exceptions import (
    BotoCoreError,
    ChecksumError,
    ClientError,
    ConnectTimeoutError,
    CredentialRetrievalError,
    EndpointConnectionError,
    FlexibleChecksumError,
    HTTPClientError,
    IncompleteReadError,
    MetadataRetrievalError,
    NoCredentialsError,
    PartialCredentialsError,
    ReadTimeoutError,
    SSLError,
)
from botocore.exceptions import ConnectionError as BotoConnectionError
from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from astralog.errors import BadRequest

from .base import BatchKey, Check, Connector, ConnectorError, Pushdown, WrittenBatch, canonical_rows
from .layout import (
    HOUR,
    checkpoint_key,
    keys_in_range,
    object_key,
    parse_object_key,
    partition_hour,
    partition_prefix,
    validate_id,
)
from .parquet import read_parquet, to_parquet_bytes
from .probe import ProbeMismatch, Step, expect, run_probe
from .registry import ConnectorKind, Egress

__all__ = [
    "KIND",
    "PROVIDER_NOTES",
    "S3Config",
    "S3Connector",
    "S3Secrets",
    "is_retryable_error",
    "least_privilege_policy",
    "new_external_id",
    "trust_policy",
]

_T = TypeVar("_T")
_MiB: Final = 2**20
_DAY: Final = timedelta(days=1)
_MIN_PART: Final = 5 * _MiB  # S3's floor for every part but the last
_MAX_PARTS: Final = 10_000
_DELETE_BATCH = 1000  # DeleteObjects takes at most 1000 keys
_LIST_PAGE = 1000  # ListObjectsV2 returns at most 1000 keys a page
_PARALLEL = 8  # concurrent listings or part uploads inside one call
_SESSION_NAME: Final = "astralog-connector"
_REDACT_MIN: Final = 8

_BUCKET = re.compile(r"[a-z0-9][a-z0-9._-]{1,220}[a-z0-9]")
_REGION = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,30}[a-z0-9])?")
_PREFIX_SEGMENT = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.=-]{0,127}")
_ROLE_ARN = re.compile(r"arn:aws[a-z-]*:iam::\d{12}:role/[\w+=,.@/-]{1,512}")
_EXTERNAL_ID = re.compile(r"astralog-[A-Za-z0-9_-]{32}")
_DAY_PREFIX = re.compile(r"dt=(\d{4}-\d{2}-\d{2})/$")

Addressing = Literal["auto", "path", "virtual"]
CredentialsMode = Literal["static", "default_chain", "assume_role"]
Encryption = Literal["none", "AES256", "aws:kms"]


def new_external_id() -> str:
    """A fresh ``sts:ExternalId``: 192 random bits. Astralog generates it; customers never do.

    The external id is what stops a confused deputy: another tenant who learns a customer's role
    ARN cannot make Astralog assume it, because the role's trust policy demands an id only the
    customer's connector carries. So the API must set it server-side and never accept one from a
    request body.
    """
    return "astralog-" + token_urlsafe(24)


class S3Config(BaseModel):
    """Where and how a connector writes. Stored with the connector, so it holds no secret."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    bucket: str = Field(description="Bucket name.")
    endpoint_url: str | None = Field(
        default=None,
        description="S3 endpoint, e.g. https://<account>.r2.cloudflarestorage.com; None = AWS.",
    )
    region: str = Field(default="us-east-1", description="Signing region; 'auto' for R2 and GCS.")
    prefix: str = Field(default="", description="Key prefix under which every object is written.")
    addressing_style: Addressing = Field(
        default="auto",
        description="'virtual' (bucket in the host name), 'path', or botocore's choice.",
    )
    credentials: CredentialsMode = Field(
        default="static",
        description="'static' keys (passed as S3Secrets); 'assume_role' (role_arn + Astralog's "
        "external_id, from the host's credentials); or the host's own 'default_chain', which "
        "acts as the operator and is for self-hosted installs only: never offer it to tenants.",
    )
    role_arn: str | None = Field(default=None, description="Role to assume (assume_role only).")
    external_id: str | None = Field(
        default=None,
        description="sts:ExternalId for assume_role, generated by new_external_id(); never "
        "taken from the customer.",
    )
    sse: Encryption = Field(
        default="none",
        description="Server-side encryption: none, AES256 (SSE-S3) or aws:kms (SSE-KMS).",
    )
    kms_key_id: str | None = Field(default=None, description="KMS key (ARN preferred) for aws:kms.")
    multipart_threshold: int = Field(
        default=16 * _MiB, ge=1, description="Objects of at least this many bytes go up in parts."
    )
    multipart_part_size: int = Field(
        default=16 * _MiB,
        ge=_MIN_PART,
        le=5 * 2**30,
        description="Bytes per part (S3: 5 MiB to 5 GiB).",
    )
    connect_timeout: float = Field(default=5.0, gt=0, le=120, description="Seconds to connect.")
    read_timeout: float = Field(default=60.0, gt=0, le=900, description="Seconds to wait for data.")
    max_attempts: int = Field(
        default=5, ge=1, le=10, description="Tries per request, botocore standard retry mode."
    )
    checksums: Literal["when_supported", "when_required"] = Field(
        default="when_supported",
        description="botocore request/response checksums; 'when_required' for stores that "
        "refuse the newer x-amz-checksum headers (GCS, older MinIO).",
    )

    @field_validator("bucket")
    @classmethod
    def _bucket_name(cls, value: str) -> str:
        if not _BUCKET.fullmatch(value) or ".." in value:
            raise ValueError("not a valid bucket name (lowercase letters, digits, '.', '-', '_')")
        return value

    @field_validator("endpoint_url")
    @classmethod
    def _endpoint(cls, value: str | None) -> str | None:
        if value is None:
            return None
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("endpoint_url must be an http(s) URL with a host")
        _ = parts.port  # raises ValueError on a malformed port
        if parts.username or parts.password:
            raise ValueError("endpoint_url must not carry credentials; pass them as secrets")
        if parts.path not in ("", "/") or parts.query or parts.fragment:
            raise ValueError("endpoint_url must have no path, query or fragment")
        return f"{parts.scheme}://{parts.netloc}"

    @field_validator("region")
    @classmethod
    def _region_name(cls, value: str) -> str:
        if not _REGION.fullmatch(value):
            raise ValueError("not a region name (e.g. us-east-1, auto)")
        return value

    @field_validator("prefix")
    @classmethod
    def _key_prefix(cls, value: str) -> str:
        value = value.strip("/")
        if value and not all(_PREFIX_SEGMENT.fullmatch(s) for s in value.split("/")):
            raise ValueError("prefix segments must be letters, digits, '_', '.', '=' or '-'")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> S3Config:
        assume = self.credentials == "assume_role"
        if assume and not (self.role_arn and _ROLE_ARN.fullmatch(self.role_arn)):
            raise ValueError("assume_role needs role_arn, an IAM role ARN")
        if assume and not (self.external_id and _EXTERNAL_ID.fullmatch(self.external_id)):
            raise ValueError("assume_role needs an external_id made by new_external_id()")
        if not assume and (self.role_arn or self.external_id):
            raise ValueError("role_arn and external_id belong to credentials='assume_role'")
        if (self.sse == "aws:kms") != (self.kms_key_id is not None):
            raise ValueError("kms_key_id is required with sse='aws:kms' and only then")
        return self


class S3Secrets(BaseModel):
    """Static credentials, kept apart from the config: encrypted at rest elsewhere, never shown."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    access_key_id: SecretStr
    secret_access_key: SecretStr
    session_token: SecretStr | None = None

    @classmethod
    def from_plain(
        cls, access_key_id: str, secret_access_key: str, session_token: str | None = None
    ) -> S3Secrets:
        """Wrap plain values (as decrypted from storage) without a type checker's complaint."""
        return cls.model_validate(
            {
                "access_key_id": access_key_id,
                "secret_access_key": secret_access_key,
                "session_token": session_token,
            }
        )

    def revealed(self) -> list[str]:
        """The secret values, for the client and for redacting error messages."""
        fields = (self.access_key_id, self.secret_access_key, self.session_token)
        return [f.get_secret_value() for f in fields if f is not None]


PROVIDER_NOTES: Final[dict[str, dict[str, str]]] = {
    "aws": {
        "endpoint_url": "leave empty",
        "region": "the bucket's region, e.g. eu-west-1",
        "addressing_style": "auto",
        "credentials": "assume_role (recommended): create the role with least_privilege_policy() "
        "as its permissions and trust_policy() as its trust policy; or static keys of an IAM "
        "user holding least_privilege_policy()",
        "sse": "none, AES256 (SSE-S3) or aws:kms with kms_key_id set to the key ARN",
        "checksums": "when_supported",
        "notes": "Add a lifecycle rule AbortIncompleteMultipartUpload (e.g. 1 day). With Object "
        "Lock, keep the lock period no longer than the plan's retention or purges are refused.",
    },
    "r2": {
        "endpoint_url": "https://<account_id>.r2.cloudflarestorage.com "
        "(EU jurisdiction: https://<account_id>.eu.r2.cloudflarestorage.com)",
        "region": "auto",
        "addressing_style": "path or auto",
        "credentials": "static: an R2 API token's Access Key ID and Secret Access Key with "
        "'Object Read & Write' on this bucket only (IAM policy JSON does not apply to R2)",
        "sse": "none: R2 encrypts every object at rest and has no SSE-KMS",
        "checksums": "when_supported; when_required if uploads fail on checksum headers",
        "notes": "No STS, so no assume_role.",
    },
    "gcs": {
        "endpoint_url": "https://storage.googleapis.com",
        "region": "auto",
        "addressing_style": "path",
        "credentials": "static: an HMAC key (access id + secret) of a service account that has "
        "Storage Object User (roles/storage.objectUser) on this bucket",
        "sse": "none: Google encrypts at rest; use a bucket default CMEK key, not S3 headers",
        "checksums": "when_required: the XML API refuses botocore's newer checksum headers",
        "notes": "IAM policy JSON does not apply; grant the role above on the bucket only.",
    },
    "minio": {
        "endpoint_url": "https://minio.example.internal:9000 (a private address must be "
        "allow-listed by the operator)",
        "region": "the server's MINIO_SITE_REGION (default us-east-1)",
        "addressing_style": "path",
        "credentials": "static: a MinIO user or service account; least_privilege_policy() is "
        "valid MinIO policy JSON",
        "sse": "none, or AES256 / aws:kms (KES key name) when MinIO has a KMS configured",
        "checksums": "when_supported; when_required for releases older than 2023",
        "notes": "Over plain http only on a trusted network.",
    },
}


def _partition_name(region: str) -> str:
    if region.startswith("cn-"):
        return "aws-cn"
    return "aws-us-gov" if region.startswith("us-gov-") else "aws"


def _bucket_arn(config: S3Config) -> str:
    return f"arn:{_partition_name(config.region)}:s3:::{config.bucket}"


def _objects_arn(config: S3Config) -> str:
    return _bucket_arn(config) + (f"/{config.prefix}/*" if config.prefix else "/*")


def least_privilege_policy(config: S3Config) -> dict[str, Any]:
    """The IAM policy (identity or role permissions) Astralog needs for ``config``, and no more.

    Writes, overwrites and retention purges need PutObject, AbortMultipartUpload and
    DeleteObject under the prefix; search and the connection check read with GetObject; listing
    is limited to the prefix by the ``s3:prefix`` condition. SSE-KMS adds GenerateDataKey
    (writes) and Decrypt (reads and multipart completion) on the key.
    """
    statements: list[dict[str, Any]] = [
        _allow(
            "AstralogWriteBatches",
            ["s3:PutObject", "s3:AbortMultipartUpload", "s3:DeleteObject"],
            _objects_arn(config),
        ),
        _allow("AstralogReadBatches", ["s3:GetObject"], _objects_arn(config)),
        _allow("AstralogListPrefix", ["s3:ListBucket"], _bucket_arn(config)),
    ]
    if config.prefix:
        prefixes = [config.prefix, f"{config.prefix}/*"]
        statements[-1]["Condition"] = {"StringLike": {"s3:prefix": prefixes}}
    if config.sse == "aws:kms" and config.kms_key_id:
        statements.append(_kms_statement(config, config.kms_key_id))
    return {"Version": "2012-10-17", "Statement": statements}


def _allow(sid: str, actions: list[str], resource: str) -> dict[str, Any]:
    return {"Sid": sid, "Effect": "Allow", "Action": actions, "Resource": resource}


def _kms_statement(config: S3Config, key_id: str) -> dict[str, Any]:
    statement = _allow("AstralogSseKms", ["kms:GenerateDataKey", "kms:Decrypt"], key_id)
    if not re.fullmatch(r"arn:aws[a-z-]*:kms:[^:]+:\d{12}:key/.+", key_id):
        # An alias or bare key id is not a resource IAM matches on: allow any key, only via S3.
        statement["Resource"] = "*"
        via = f"s3.{config.region}.amazonaws.com"
        statement["Condition"] = {"StringEquals": {"kms:ViaService": via}}
    return statement


def trust_policy(config: S3Config, astralog_principal_arn: str) -> dict[str, Any]:
    """The trust policy of the customer's role: Astralog's principal, only with our external id."""
    if config.credentials != "assume_role" or config.external_id is None:
        raise ValueError("a trust policy belongs to credentials='assume_role'")
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "AstralogAssumeRole",
                "Effect": "Allow",
                "Principal": {"AWS": astralog_principal_arn},
                "Action": "sts:AssumeRole",
                "Condition": {"StringEquals": {"sts:ExternalId": config.external_id}},
            }
        ],
    }


# -- error classification ---------------------------------------------------------------------

_RETRYABLE_CODES: Final = frozenset(
    {
        "SlowDown",
        "Throttling",
        "ThrottlingException",
        "ThrottledException",
        "RequestThrottled",
        "RequestLimitExceeded",
        "TooManyRequests",
        "TooManyRequestsException",
        "BandwidthLimitExceeded",
        "RequestTimeout",
        "RequestTimeoutException",
        "InternalError",
        "ServiceUnavailable",
        "OperationAborted",
        "NoSuchUpload",  # our multipart upload was aborted under us: the next attempt starts over
        "IDPCommunicationError",
    }
)
_DENIED_CODES: Final = frozenset({"AccessDenied", "AllAccessDisabled", "403"})
_REGION_CODES: Final = frozenset(
    {"PermanentRedirect", "AuthorizationHeaderMalformed", "IllegalLocationConstraintException"}
)
# Transport trouble that heals by itself; SSLError (a ConnectionError) is a configuration
# problem and is excluded explicitly.
_RETRYABLE_TRANSPORT: Final = (
    BotoConnectionError,
    HTTPClientError,
    IncompleteReadError,
    ChecksumError,
    FlexibleChecksumError,
    CredentialRetrievalError,
    MetadataRetrievalError,
)
_ACTIONS: Final = {
    "PutObject": "s3:PutObject",
    "CreateMultipartUpload": "s3:PutObject",
    "UploadPart": "s3:PutObject",
    "CompleteMultipartUpload": "s3:PutObject",
    "AbortMultipartUpload": "s3:AbortMultipartUpload",
    "GetObject": "s3:GetObject",
    "HeadObject": "s3:GetObject",
    "ListObjectsV2": "s3:ListBucket",
    "DeleteObject": "s3:DeleteObject",
    "DeleteObjects": "s3:DeleteObject",
    "AssumeRole": "sts:AssumeRole",
}


def _error_fields(exc: ClientError) -> tuple[str, str, int]:
    error = exc.response.get("Error", {})
    status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
    return str(error.get("Code", "")), str(error.get("Message", "")), int(status or 0)


def is_retryable_error(exc: BaseException) -> bool:
    """Throttling, 5xx, timeouts and connection errors: yes. Auth, missing bucket, bugs: no."""
    if isinstance(exc, ConnectorError):
        return exc.retryable
    if isinstance(exc, ClientError):
        code, _, status = _error_fields(exc)
        return code in _RETRYABLE_CODES or status == 429 or status >= 500
    if isinstance(exc, SSLError) or _refused_locally(exc):
        return False
    return isinstance(exc, _RETRYABLE_TRANSPORT)


def _refused_locally(exc: BaseException) -> bool:
    """A connection our own side refused to open: the SSRF pin (an EACCES ``PinViolation``
    under aiohttp's connector error) or a local firewall. Waiting will not change that."""
    cause = exc.kwargs.get("error") if isinstance(exc, BotoCoreError) else None
    os_error = getattr(cause, "os_error", None)
    return isinstance(os_error, OSError) and os_error.errno in (errno.EACCES, errno.EPERM)


def _is_denied(exc: BaseException) -> bool:
    return isinstance(exc, ClientError) and _error_fields(exc)[0] in _DENIED_CODES


def _explain_transport(exc: BotoCoreError, endpoint: str) -> str:
    reason = exc.kwargs.get("error", "")
    if isinstance(exc, SSLError):
        return f"TLS with {endpoint} failed ({reason}): check the endpoint's certificate"
    if isinstance(exc, ConnectTimeoutError):
        return f"connecting to {endpoint} timed out"
    if isinstance(exc, ReadTimeoutError):
        return f"{endpoint} did not answer in time"
    if isinstance(exc, EndpointConnectionError):
        return f"cannot reach {endpoint} ({reason}): check the endpoint URL and the network"
    if isinstance(exc, BotoConnectionError | HTTPClientError):
        return f"the connection to {endpoint} failed ({reason})"
    if isinstance(exc, NoCredentialsError):
        return (
            "no AWS credentials in the host's default chain (environment, shared files, "
            "container or instance role)"
        )
    if isinstance(exc, PartialCredentialsError):
        return "the host's default credential chain holds incomplete credentials"
    return f"{type(exc).__name__}: {exc}"


# -- the connector ----------------------------------------------------------------------------


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
        self._aio_config = _client_config(config, pin, config.max_attempts)
        self._probe_config = _client_config(config, pin, min(config.max_attempts, 2))
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
        self, org_id: str, source_id: str | None, before: datetime
    ) -> list[str]:
        doing = f"deleting batches of org {org_id} before {before.isoformat()}"
        # A day that starts before `before` may hold expired hours; the hour decides.
        keys = await self._batch_keys(org_id, source_id, lambda day: day < before, doing)
        expired = [k for k in keys if (h := partition_hour(k)) is not None and h + HOUR <= before]
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

    async def put_checkpoint(self, org_id: str, seq: int, document: bytes) -> None:
        full = self._full_key(checkpoint_key(org_id, seq))
        async with self._client() as client, self._translated(f"writing checkpoint {seq}", full):
            await client.put_object(
                Bucket=self.config.bucket,
                Key=full,
                Body=document,
                ContentType="application/json",
                **self._sse_args(),
            )

    async def list_checkpoints(self, org_id: str) -> list[tuple[str, bytes]]:
        directory = self._full_key(checkpoint_key(org_id, 0)).rsplit("/", 1)[0] + "/"
        async with self._client() as client:
            async with self._translated(f"listing checkpoints of org {org_id}", None):
                keys = sorted(
                    k for k in await self._keys_under(client, directory) if k.endswith(".json")
                )
            documents = await _gather([self._get_bytes(client, k) for k in keys])
        return [(f"s3://{self.config.bucket}/{k}", d) for k, d in zip(keys, documents, strict=True)]

    async def _get_bytes(self, client: Any, full: str) -> bytes:
        async with self._translated(f"reading {full}", full):
            response = await client.get_object(Bucket=self.config.bucket, Key=full)
            async with response["Body"] as body:
                data: bytes = await body.read()
        return data

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
            provider = AioCredentialResolver(providers=[_FixedCredentials(credentials)])
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
            client.meta.events.register_last("before-parameter-build.s3", _no_region_redirects)
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
        if code in _DENIED_CODES:
            reason = f"s3:DeleteObject denied on {_bucket_arn(self.config)}/{key}"
        else:
            reason = f"{key}: {code} {first.get('Message', '')}".strip()
        return ConnectorError(
            self._redact(
                f"{doing} in {self._where()}: {len(errors)} of {asked} deletes "
                f"failed; first {reason}"
            ),
            retryable=code in _RETRYABLE_CODES,
        )

    # -- connection check --------------------------------------------------------------------

    async def _run_probe(self, client: Any, canary: str, payload: bytes) -> list[Check]:
        """Run every step; after a permission refusal the independent steps still run, so one
        check names every missing permission. Anything else stops the check there."""
        steps, resources = self._probe_steps(client, canary, payload)

        def explain(name: str, exc: Exception) -> tuple[str, bool] | None:
            # A refused permission or a wrong observation is not fatal: the other permissions
            # are still worth checking; unreachable, no bucket or bad credentials are.
            if isinstance(exc, BotoCoreError | ClientError):
                fatal = name == "credentials" or not _is_denied(exc)
                return self._explain(exc, resources[name]), fatal
            return (str(exc), False) if isinstance(exc, ProbeMismatch) else None

        checks = {c.name: c for c in await run_probe(steps, explain)}
        if checks["write"].ok and not checks["delete"].ok:
            left = f"{checks['delete'].detail} (the canary object {canary!r} is left behind)"
            checks["delete"] = Check("delete", False, left)
        return list(checks.values())

    def _probe_steps(
        self, client: Any, canary: str, payload: bytes
    ) -> tuple[list[Step], dict[str, str | None]]:
        """The steps, and the object each concerns (None: the bucket) for its messages."""
        bucket = self.config.bucket
        arn = f"{_bucket_arn(self.config)}/{canary}"
        written = False

        async def write() -> str:
            nonlocal written
            await client.put_object(Bucket=bucket, Key=canary, Body=payload, **self._sse_args())
            written = True
            return f"s3:PutObject allowed on {arn}"

        async def read() -> str:
            response = await client.get_object(Bucket=bucket, Key=canary)
            async with response["Body"] as body:
                expect(await body.read() == payload, "read back different bytes than written")
            # Only a requested encryption is checked: AWS encrypts everything with SSE-S3 anyway.
            stored = response.get("ServerSideEncryption", "none")
            wanted = self.config.sse
            expect(wanted in ("none", stored), f"stored with encryption {stored!r}, not {wanted!r}")
            return f"s3:GetObject allowed on {arn}"

        async def listing() -> str:
            response = await client.list_objects_v2(Bucket=bucket, Prefix=canary, MaxKeys=1)
            listed = [obj["Key"] for obj in _contents(response)]
            expect(not written or canary in listed, "the canary object is missing from the list")
            return f"s3:ListBucket allowed on {_bucket_arn(self.config)} (prefix {canary!r})"

        async def delete() -> str:
            await client.delete_object(Bucket=bucket, Key=canary)
            return f"s3:DeleteObject allowed on {arn}"

        steps = [
            Step("credentials", self._probe_credentials),
            Step("write", write),
            Step("read", read, needs="write", needs_why="the canary object was not written"),
            Step("list", listing),
            Step("delete", delete),
        ]
        objects = {"write": canary, "read": canary, "delete": canary}
        return steps, {step.name: objects.get(step.name) for step in steps}

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
            return self._redact(self._explain_client_error(exc, key))
        return self._redact(_explain_transport(exc, self._endpoint))

    def _explain_client_error(self, exc: ClientError, key: str | None) -> str:
        code, message, status = _error_fields(exc)
        config = self.config
        if code in _DENIED_CODES:
            return self._explain_denied(exc.operation_name, key, message)
        if code == "NoSuchBucket":
            return f"bucket {config.bucket!r} does not exist at {self._endpoint}"
        if code in ("InvalidAccessKeyId", "InvalidClientTokenId"):
            return f"the access key id is not known to {self._endpoint}: check the credentials"
        if code == "SignatureDoesNotMatch":
            return (
                "the secret access key does not match the access key id (or the region "
                f"{config.region!r} or the host clock is wrong)"
            )
        if code in ("ExpiredToken", "InvalidToken", "ExpiredTokenException"):
            return "the session token is invalid or has expired"
        if code in _REGION_CODES or 300 <= status < 400:
            return self._explain_redirect(exc, status)
        return f"{code or status}: {message}"

    def _explain_denied(self, operation: str, key: str | None, message: str) -> str:
        action = _ACTIONS.get(operation, f"s3:{operation}")
        if action == "sts:AssumeRole":
            return (
                f"sts:AssumeRole denied on {self.config.role_arn}: its trust policy must allow "
                f"Astralog's principal with sts:ExternalId {self.config.external_id}"
            )
        if key is None:
            scope = f"prefix {self.config.prefix + '/'!r}" if self.config.prefix else "any prefix"
            resource = f"{_bucket_arn(self.config)} ({scope})"
        else:
            resource = f"{_bucket_arn(self.config)}/{key}"
        detail = f"{action} denied on {resource}"
        if self.config.sse == "aws:kms" and action in ("s3:PutObject", "s3:GetObject"):
            detail += " (SSE-KMS also needs kms:GenerateDataKey and kms:Decrypt on the key)"
        if message and message != "Access Denied":
            detail += f": {message}"
        return detail

    def _explain_redirect(self, exc: ClientError, status: int) -> str:
        headers = exc.response.get("ResponseMetadata", {}).get("HTTPHeaders", {})
        region = headers.get("x-amz-bucket-region") or exc.response["Error"].get("Region")
        if region and region != self.config.region:
            return f"bucket is in region {region!r}, not {self.config.region!r}: set region"
        return (
            f"the endpoint answered with a redirect ({status or 'permanent'}); Astralog does not "
            "follow redirects: check the endpoint URL, region and addressing style"
        )

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


def _client_config(config: S3Config, connector_args: dict[str, Any], attempts: int) -> AioConfig:
    return AioConfig(
        connector_args=connector_args,
        http_session_cls=_GuardedHTTPSession,
        connect_timeout=config.connect_timeout,
        read_timeout=config.read_timeout,
        # total_max_attempts counts the first try; botocore's "max_attempts" would count retries.
        retries={"mode": "standard", "total_max_attempts": attempts},
        s3={"addressing_style": config.addressing_style},
        request_checksum_calculation=config.checksums,
        response_checksum_validation=config.checksums,
        # The customer's endpoint is config.endpoint_url, never the host's AWS_ENDPOINT_URL*.
        ignore_configured_endpoint_urls=True,
        user_agent_extra="astralog",
    )


class _GuardedHTTPSession(AIOHTTPSession):
    """aiobotocore's aiohttp session, with two defaults of aiohttp taken away.

    * Redirects are refused. aiohttp follows 3xx and aiobotocore offers no switch; a
      ``Location`` chosen by the server is a request target no SSRF check has seen (an IP
      literal even skips the pinned resolver). S3's region redirects are handled by botocore
      from the response, against the configured endpoint.
    * ``Expect: 100-continue`` is dropped. botocore adds it to uploads, and aiohttp waits for
      the "100 Continue" with no timeout at all (read_timeout does not cover it), so an endpoint
      that accepts the connection and stays silent would hang a write forever. The header is
      not signed (SigV4 leaves it out), so removing it changes nothing else.

    ``_get_session`` is where aiobotocore hands out the aiohttp session; tests cover both
    behaviours, so a change in aiobotocore cannot silently undo them. botocore's own region
    redirects are switched off separately (:func:`_no_region_redirects`).
    """

    async def _get_session(self, proxy_url: str | None) -> Any:
        return _GuardedRequests(await super()._get_session(proxy_url))


class _GuardedRequests:
    def __init__(self, session: Any) -> None:
        self._session = session

    def request(self, *args: Any, **kwargs: Any) -> Any:
        headers = kwargs.get("headers")
        if headers is not None:
            headers.pop("Expect", None)  # a case-insensitive multidict
        return self._session.request(*args, allow_redirects=False, **kwargs)


def _no_region_redirects(context: dict[str, Any], **_: Any) -> None:
    """Keep botocore from re-sending a request to the region a server names.

    botocore marks each S3 request as not yet redirected (``before-parameter-build``) and, on a
    wrong-region answer, re-resolves the endpoint for the new region and sends again; for an
    answer without a region it HEADs the bucket to ask, and a server answering 3xx to that as
    well sends aiobotocore into endless recursion. Marking the request as already redirected
    turns all of it off: the configured region is the one used, and a mismatch is reported
    with the region to set (:meth:`S3Connector._explain_redirect`).
    """
    redirect = context.get("s3_redirect")
    if redirect is not None:
        redirect["redirected"] = True


class _FixedCredentials:
    """A credential provider that always answers with the credentials it was given."""

    METHOD = "astralog"

    def __init__(self, credentials: AioDeferredRefreshableCredentials) -> None:
        self._credentials = credentials

    async def load(self) -> AioDeferredRefreshableCredentials:
        return self._credentials


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


# -- the kind ---------------------------------------------------------------------------------


def _prepare(config: dict[str, Any], previous: dict[str, Any] | None) -> dict[str, Any]:
    """The external id is Astralog's, never the customer's; the host's identity is no tenant's."""
    # A config read back from the API carries the generated id; anything else is refused.
    if config.pop("external_id", None) not in (None, (previous or {}).get("external_id")):
        raise BadRequest("external_id is generated by Astralog and cannot be chosen")
    if config.get("credentials") == "default_chain":
        raise BadRequest(
            "credentials 'default_chain' would use Astralog's own AWS identity; use 'static' keys "
            "or 'assume_role' with the external id Astralog generates"
        )
    if config.get("credentials") == "assume_role":
        config["external_id"] = (previous or {}).get("external_id") or new_external_id()
    return config


def _build(config: S3Config, secrets: Mapping[str, str], egress: Egress) -> S3Connector:
    # No endpoint_url is AWS's own regional endpoint: nothing of the customer's to check.
    resolver = egress.pinned_resolver(config.endpoint_url) if config.endpoint_url else None
    s3_secrets = None
    if config.credentials == "static":
        missing = [f for f in ("access_key_id", "secret_access_key") if f not in secrets]
        if missing:
            raise BadRequest(f"static credentials need the secret fields {missing}")
        s3_secrets = S3Secrets.from_plain(
            secrets["access_key_id"], secrets["secret_access_key"], secrets.get("session_token")
        )
    return S3Connector(config, s3_secrets, resolver=resolver)


def _policy(config: S3Config, principal: str) -> dict[str, Any]:
    result: dict[str, Any] = {"policy": least_privilege_policy(config)}
    if config.credentials == "assume_role":
        result["trust_policy"] = trust_policy(config, principal)
    result["text"] = json.dumps(result["policy"], indent=2)
    return result


KIND = ConnectorKind(
    name="s3",
    config=S3Config,
    secret_fields=("access_key_id", "secret_access_key", "session_token"),
    location_fields=("bucket", "prefix"),
    build=_build,
    policy=_policy,
    prepare=_prepare,
)
