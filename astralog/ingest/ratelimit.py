"""Token buckets per org and per source (events/s and bytes/s) from the org's plan.

A bucket holds ``rate * burst_seconds`` tokens and refills continuously. A request takes its whole
cost at once or nothing; a refusal says when enough tokens will be there (``Retry-After``).
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass, field
from typing import Protocol

from astralog.errors import PayloadTooLarge, RateLimited


class Rates(Protocol):
    """The plan's ingest rates, as the control plane's plan limits carry them."""

    @property
    def ingest_burst_seconds(self) -> float: ...
    @property
    def ingest_events_per_second(self) -> int: ...
    @property
    def ingest_bytes_per_second(self) -> int: ...
    @property
    def source_events_per_second(self) -> int: ...
    @property
    def source_bytes_per_second(self) -> int: ...


@dataclass
class Bucket:
    rate: float
    capacity: float
    tokens: float
    stamp: float = field(default_factory=time.monotonic)

    def refill(self, now: float) -> None:
        self.tokens = min(self.capacity, self.tokens + max(0.0, now - self.stamp) * self.rate)
        self.stamp = now

    def wait_for(self, cost: float) -> float:
        return max(0.0, (cost - self.tokens) / self.rate)

    def reset_in(self) -> float:
        return (self.capacity - self.tokens) / self.rate


@dataclass(frozen=True)
class Quota:
    """What the response headers report about the tightest bucket after a request."""

    limit: int
    remaining: int
    reset: int

    def headers(self) -> dict[str, str]:
        return {
            "X-RateLimit-Limit": str(self.limit),
            "X-RateLimit-Remaining": str(self.remaining),
            "X-RateLimit-Reset": str(self.reset),
        }


class RateLimiter:
    def __init__(self) -> None:
        self._buckets: dict[tuple[str, str, str], Bucket] = {}
        self._lock = threading.Lock()
        self.hits: dict[str, int] = {}

    def _bucket(self, scope: str, owner: str, unit: str, rate: float, burst: float) -> Bucket:
        key = (scope, owner, unit)
        bucket = self._buckets.get(key)
        capacity = rate * burst
        if bucket is None or bucket.rate != rate or bucket.capacity != capacity:
            bucket = Bucket(rate, capacity, capacity)
            self._buckets[key] = bucket
        return bucket

    def take(self, org_id: str, source_id: str, events: int, nbytes: int, limits: Rates) -> Quota:
        """Take ``events`` and ``nbytes`` from all four buckets, or raise RateLimited/413."""
        burst = float(limits.ingest_burst_seconds)
        wanted = [
            ("org", org_id, "events", float(limits.ingest_events_per_second), events),
            ("org", org_id, "bytes", float(limits.ingest_bytes_per_second), nbytes),
            ("source", source_id, "events", float(limits.source_events_per_second), events),
            ("source", source_id, "bytes", float(limits.source_bytes_per_second), nbytes),
        ]
        now = time.monotonic()
        with self._lock:
            buckets = [(self._bucket(s, o, u, r, burst), u, s, c) for s, o, u, r, c in wanted]
            for bucket, unit, scope, cost in buckets:
                if cost > bucket.capacity:
                    raise PayloadTooLarge(
                        f"this request carries {cost} {unit}, more than the {scope} burst of "
                        f"{int(bucket.capacity)} {unit}; split it into smaller batches"
                    )
                bucket.refill(now)
            waits = [(b.wait_for(c), u, s, b) for b, u, s, c in buckets]
            wait, unit, scope, bucket = max(waits, key=lambda w: w[0])
            if wait > 0:
                self.hits[source_id] = self.hits.get(source_id, 0) + 1
                exc = RateLimited(
                    f"{scope} ingest rate of {int(bucket.rate)} {unit}/s exceeded; retry after "
                    f"{math.ceil(wait)} s or ask for a larger plan",
                    retry_after=max(1, math.ceil(wait)),
                )
                exc.headers.update(
                    Quota(
                        int(bucket.rate), int(bucket.tokens), math.ceil(bucket.reset_in())
                    ).headers()
                )
                raise exc
            for bucket, _, _, cost in buckets:
                bucket.tokens -= cost
            tightest = min((b for b, u, _, _ in buckets if u == "events"), key=lambda b: b.tokens)
            return Quota(int(tightest.rate), int(tightest.tokens), math.ceil(tightest.reset_in()))
