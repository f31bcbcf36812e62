"""What botocore's errors mean for a connector: retryable or permanent, and in words a
person can act on (which permission, which bucket, which endpoint).
"""

from __future__ import annotations

import errno
from typing import Final

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

from ..base import ConnectorError
from .config import S3Config
from .policy import bucket_arn

RETRYABLE_CODES: Final = frozenset(
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
DENIED_CODES: Final = frozenset({"AccessDenied", "AllAccessDisabled", "403"})
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
        return code in RETRYABLE_CODES or status == 429 or status >= 500
    if isinstance(exc, SSLError) or _refused_locally(exc):
        return False
    return isinstance(exc, _RETRYABLE_TRANSPORT)


def _refused_locally(exc: BaseException) -> bool:
    """A connection our own side refused to open: the SSRF pin (an EACCES ``PinViolation``
    under aiohttp's connector error) or a local firewall. Waiting will not change that."""
    cause = exc.kwargs.get("error") if isinstance(exc, BotoCoreError) else None
    os_error = getattr(cause, "os_error", None)
    return isinstance(os_error, OSError) and os_error.errno in (errno.EACCES, errno.EPERM)


def is_denied(exc: BaseException) -> bool:
    return isinstance(exc, ClientError) and _error_fields(exc)[0] in DENIED_CODES


def explain_transport(exc: BotoCoreError, endpoint: str) -> str:
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


def explain_client_error(exc: ClientError, key: str | None, config: S3Config, endpoint: str) -> str:
    """What an S3 error answer means, for a person: ``key`` is the object (None: the bucket)."""
    code, message, status = _error_fields(exc)
    if code in DENIED_CODES:
        return _explain_denied(config, exc.operation_name, key, message)
    if code == "NoSuchBucket":
        return f"bucket {config.bucket!r} does not exist at {endpoint}"
    if code in ("InvalidAccessKeyId", "InvalidClientTokenId"):
        return f"the access key id is not known to {endpoint}: check the credentials"
    if code == "SignatureDoesNotMatch":
        return (
            "the secret access key does not match the access key id (or the region "
            f"{config.region!r} or the host clock is wrong)"
        )
    if code in ("ExpiredToken", "InvalidToken", "ExpiredTokenException"):
        return "the session token is invalid or has expired"
    if code in _REGION_CODES or 300 <= status < 400:
        return _explain_redirect(config, exc, status)
    return f"{code or status}: {message}"


def _explain_denied(config: S3Config, operation: str, key: str | None, message: str) -> str:
    action = _ACTIONS.get(operation, f"s3:{operation}")
    if action == "sts:AssumeRole":
        return (
            f"sts:AssumeRole denied on {config.role_arn}: its trust policy must allow "
            f"Astralog's principal with sts:ExternalId {config.external_id}"
        )
    if key is None:
        scope = f"prefix {config.prefix + '/'!r}" if config.prefix else "any prefix"
        resource = f"{bucket_arn(config)} ({scope})"
    else:
        resource = f"{bucket_arn(config)}/{key}"
    detail = f"{action} denied on {resource}"
    if config.sse == "aws:kms" and action in ("s3:PutObject", "s3:GetObject"):
        detail += " (SSE-KMS also needs kms:GenerateDataKey and kms:Decrypt on the key)"
    if message and message != "Access Denied":
        detail += f": {message}"
    return detail


def _explain_redirect(config: S3Config, exc: ClientError, status: int) -> str:
    headers = exc.response.get("ResponseMetadata", {}).get("HTTPHeaders", {})
    region = headers.get("x-amz-bucket-region") or exc.response["Error"].get("Region")
    if region and region != config.region:
        return f"bucket is in region {region!r}, not {config.region!r}: set region"
    return (
        f"the endpoint answered with a redirect ({status or 'permanent'}); Astralog does not "
        "follow redirects: check the endpoint URL, region and addressing style"
    )
