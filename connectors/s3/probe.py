"""The S3 connection check's steps: a canary object written, read back, listed and deleted.

Stage: connector setup, before any batch is written. Each step is one permission the connector
needs (``s3:PutObject``, ``s3:GetObject``, ``s3:ListBucket``, ``s3:DeleteObject``) and its
message names it on the exact ARN; :func:`astralog.connectors.probe.run_probe` runs them and the
connector explains what a step raised.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from ..probe import Step, expect
from .config import S3Config
from .policy import bucket_arn


def canary_steps(
    client: Any,
    config: S3Config,
    canary: str,
    payload: bytes,
    *,
    sse_args: dict[str, str],
    credentials: Callable[[], Awaitable[str]],
) -> tuple[list[Step], dict[str, str | None]]:
    """The steps, and the object each concerns (None: the bucket) for its messages."""
    bucket = config.bucket
    arn = f"{bucket_arn(config)}/{canary}"
    written = False

    async def write() -> str:
        nonlocal written
        await client.put_object(Bucket=bucket, Key=canary, Body=payload, **sse_args)
        written = True
        return f"s3:PutObject allowed on {arn}"

    async def read() -> str:
        response = await client.get_object(Bucket=bucket, Key=canary)
        async with response["Body"] as body:
            expect(await body.read() == payload, "read back different bytes than written")
        # Only a requested encryption is checked: AWS encrypts everything with SSE-S3 anyway.
        stored = response.get("ServerSideEncryption", "none")
        wanted = config.sse
        expect(wanted in ("none", stored), f"stored with encryption {stored!r}, not {wanted!r}")
        return f"s3:GetObject allowed on {arn}"

    async def listing() -> str:
        response = await client.list_objects_v2(Bucket=bucket, Prefix=canary, MaxKeys=1)
        listed = [obj["Key"] for obj in response.get("Contents", [])]
        expect(not written or canary in listed, "the canary object is missing from the list")
        return f"s3:ListBucket allowed on {bucket_arn(config)} (prefix {canary!r})"

    async def delete() -> str:
        await client.delete_object(Bucket=bucket, Key=canary)
        return f"s3:DeleteObject allowed on {arn}"

    steps = [
        Step("credentials", credentials),
        Step("write", write),
        Step("read", read, needs="write", needs_why="the canary object was not written"),
        Step("list", listing),
        Step("delete", delete),
    ]
    objects = {"write": canary, "read": canary, "delete": canary}
    return steps, {step.name: objects.get(step.name) for step in steps}
