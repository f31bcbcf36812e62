"""Rate limits on the sends an admin starts by hand: test events and replays.

Stage: alert delivery (admission). What it promises: at most ``per_endpoint`` such sends per
minute to one endpoint and ``per_org`` per minute from one org (each a token bucket, the ingest
limiter's :class:`~astralog.ingest.ratelimit.Bucket`, holding a minute's worth), so nobody can
queue a flood of deliveries in front of other tenants' alerts or aim a POST flood at someone
else's URL through us. A refusal is a 429 with ``Retry-After`` naming the limit; a refused send
takes no token. Alerts themselves are not limited here (their quotas are on the rules). State
is in process memory, like the sign-in throttle: a restart forgives, each process counts its own.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable

from astralog.errors import RateLimited
from astralog.ingest.ratelimit import Bucket

__all__ = ["ManualSends"]

_MAX_BUCKETS = 100_000  # beyond this, full (idle) buckets are dropped: they hold no history


class ManualSends:
    def __init__(
        self, per_endpoint: int = 10, per_org: int = 60,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:  # fmt: skip
        self.per_endpoint, self.per_org, self._clock = per_endpoint, per_org, clock
        self._buckets: dict[tuple[str, str], Bucket] = {}
        self._lock = threading.Lock()

    def take(self, org_id: str, endpoint_id: str) -> None:
        """One send to ``endpoint_id``, or :class:`RateLimited` if either bucket is empty."""
        now = self._clock()
        with self._lock:
            if len(self._buckets) >= _MAX_BUCKETS:
                self._prune(now)
            wanted = (
                (self._bucket("endpoint", endpoint_id, self.per_endpoint, now), "endpoint"),
                (self._bucket("org", org_id, self.per_org, now), "org"),
            )
            for bucket, scope in wanted:
                if bucket.tokens < 1:
                    raise _refusal(bucket, scope)
            for bucket, _ in wanted:
                bucket.tokens -= 1

    def _bucket(self, scope: str, owner: str, per_minute: int, now: float) -> Bucket:
        bucket = self._buckets.get((scope, owner))
        if bucket is None:
            bucket = Bucket(per_minute / 60, per_minute, per_minute, now)
            self._buckets[(scope, owner)] = bucket
        bucket.refill(now)
        return bucket

    def _prune(self, now: float) -> None:
        for key, bucket in list(self._buckets.items()):
            bucket.refill(now)
            if bucket.tokens >= bucket.capacity:
                del self._buckets[key]


def _refusal(bucket: Bucket, scope: str) -> RateLimited:
    wait = max(1, math.ceil(bucket.wait_for(1)))
    whose = "to one endpoint" if scope == "endpoint" else "from one org"
    return RateLimited(
        f"at most {int(bucket.capacity)} test sends and replays per minute {whose}; "
        f"retry after {wait} s",
        retry_after=wait,
    )
