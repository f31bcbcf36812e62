"""Reading committed batches that live in a BYOB destination (S3 bucket, ClickHouse)."""

from __future__ import annotations

from astralog.errors import BadRequest
from astralog.query.plan import Plan
from astralog.runtime import Runtime


async def fetch_remote(runtime: Runtime, plan: Plan) -> None:
    """Fill ``plan.fetched`` with the rows of ``plan.remote``."""
    if plan.remote:
        raise BadRequest("searching batches stored in a BYOB destination is not available yet")
