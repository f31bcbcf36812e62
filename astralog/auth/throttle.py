"""Sign-in throttling: failed attempts slow down per account and per client address.

Keys are what the caller typed (org + email) and where it came from, never whether that account
exists: an unknown email is throttled exactly like a known one, so a 429 tells nothing either.
The first ``free`` failures in ``window`` seconds cost nothing; each one after that doubles the
wait (from ``base`` seconds, at most ``window``), answered as 429 with Retry-After. A success
clears the account's count (not the client's: one good password does not license a spray).

State is in process memory: a restart forgives, and several server processes each count their
own (the limits are per process; a shared store is left for when the gateway scales out).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from astralog.errors import RateLimited

_MAX_KEYS = 100_000  # beyond this, entries outside their window are pruned


@dataclass
class _Record:
    failures: list[float] = field(default_factory=list)


class Throttle:
    def __init__(
        self,
        free: int,
        window: float,
        base: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.free, self.window, self.base = free, window, base
        self._clock = clock
        self._records: dict[str, _Record] = {}
        self._lock = threading.Lock()

    def wait(self, key: str) -> float:
        """Seconds until ``key`` may try again (0: now)."""
        now = self._clock()
        with self._lock:
            record = self._records.get(key)
            if record is None:
                return 0.0
            record.failures = [t for t in record.failures if now - t < self.window]
            if not record.failures:
                del self._records[key]
                return 0.0
            over = len(record.failures) - self.free
            if over < 0:
                return 0.0
            delay = min(self.base * (1 << min(over, 30)), self.window)
            return max(0.0, record.failures[-1] + delay - now)

    def failed(self, key: str) -> None:
        now = self._clock()
        with self._lock:
            if len(self._records) >= _MAX_KEYS:
                self._prune(now)
            self._records.setdefault(key, _Record()).failures.append(now)

    def succeeded(self, key: str) -> None:
        with self._lock:
            self._records.pop(key, None)

    def _prune(self, now: float) -> None:
        stale = [
            k
            for k, r in self._records.items()
            if not r.failures or now - r.failures[-1] >= self.window
        ]
        for key in stale:
            del self._records[key]


class SignInThrottle:
    """The three throttles a sign-in passes. One account from one address slows after 5
    failures; one account from everywhere after 50, so an attacker at one address cannot lock
    the owner out of their own sign-in, while a spread-out guess at one account still slows;
    one address after 30 failures over any accounts (a spray)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.pair = Throttle(free=5, window=15 * 60, clock=clock)
        self.account = Throttle(free=50, window=15 * 60, clock=clock)
        self.client = Throttle(free=30, window=15 * 60, clock=clock)

    def check(self, account: str, client: str) -> None:
        """Raise 429 if any key must wait; the same text whichever it is."""
        wait = max(
            self.pair.wait(f"{account}|{client}"),
            self.account.wait(account),
            self.client.wait(client),
        )
        if wait > 0:
            seconds = max(1, int(wait + 0.999))
            raise RateLimited(
                f"too many failed sign-in attempts; try again in {seconds} s", seconds
            )

    def failed(self, account: str, client: str) -> None:
        self.pair.failed(f"{account}|{client}")
        self.account.failed(account)
        self.client.failed(client)

    def succeeded(self, account: str, client: str) -> None:
        self.pair.succeeded(f"{account}|{client}")
        self.account.succeeded(account)
