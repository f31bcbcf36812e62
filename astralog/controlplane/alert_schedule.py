"""When an alert runs and how patiently its instances move: values of an alert rule.

Stage: control plane (alert rules). What it promises: a :class:`Schedule` (every N seconds, or a
cron expression read in a time zone) and a :class:`Policy` (hits before firing, how long to keep
firing, the flapping guard) are checked when the rule is saved; the evaluator above reads them.

Cron is read by ``cronsim`` (small, typed, maintained; it walks wall-clock time in the zone, so
"09:00 Europe/Paris" stays 09:00 across daylight-saving changes and a skipped hour is skipped, not
run twice). A schedule is validated when the alert is saved: a bad expression or zone is a 400
that says what is wrong, never an error at evaluation time.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from datetime import UTC, datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cronsim import CronSim, CronSimError

from astralog.errors import BadRequest

S = 10**9
MAX_CRON_LENGTH = 120


@dataclass(frozen=True)
class Policy:
    """How an instance's state machine (:mod:`astralog.alerts.state`) moves for this rule."""

    pending_for: int = 1  # consecutive hits before firing (1: fire on the first)
    keep_firing_for_ns: int = 0  # keep firing this long after the last hit
    flap_window_ns: int = 3600 * 10**9
    flap_max_changes: int = 4  # more changes than this inside the window: flapping

    def __post_init__(self) -> None:
        if self.pending_for < 1 or self.keep_firing_for_ns < 0:
            raise ValueError("pending_for must be >= 1 and keep_firing_for >= 0")
        if self.flap_window_ns <= 0 or self.flap_max_changes < 1:
            raise ValueError("the flapping window must be positive and allow a change")


@dataclass(frozen=True)
class Schedule:
    interval_seconds: int | None = None
    cron: str | None = None
    timezone: str = "UTC"

    def check(self, min_interval_seconds: int) -> Schedule:
        """This schedule, or a 400: exactly one of interval and cron, no more often than the
        org's minimum interval."""
        if (self.interval_seconds is None) == (self.cron is None):
            raise BadRequest("give the schedule either 'interval_seconds' or 'cron', not both")
        zone = _zone(self.timezone)
        if self.interval_seconds is not None:
            gap = self.interval_seconds
        else:
            gap = _shortest_gap(_cron_text(self.cron or ""), zone)
        if gap < min_interval_seconds:
            raise BadRequest(
                f"this schedule runs every {gap} s; this org's alerts may run at most every "
                f"{min_interval_seconds} s: choose a longer interval"
            )
        return self

    def latest(self, now_ns: int) -> int:
        """The last run at or before ``now_ns``: an evaluator that fell behind evaluates the
        newest window, not each one it missed."""
        if self.interval_seconds is not None:
            step = self.interval_seconds * S
            return now_ns // step * step
        start = datetime.fromtimestamp(now_ns / S + 1, _zone(self.timezone))
        prev = next(CronSim(self.cron or "", start, reverse=True))
        return min(now_ns, int(prev.astimezone(UTC).timestamp()) * S)

    def next_after(self, after_ns: int) -> int:
        """The first run strictly after ``after_ns``."""
        if self.interval_seconds is not None:
            step = self.interval_seconds * S
            return (after_ns // step + 1) * step  # on the grid: alerts alike run together
        start = datetime.fromtimestamp(after_ns / S, _zone(self.timezone))
        nxt = next(CronSim(self.cron or "", start))
        return int(nxt.astimezone(UTC).timestamp()) * S


def _zone(name: str) -> ZoneInfo:
    if not name or len(name) > 64 or name.startswith(("/", ".")) or ".." in name:
        raise BadRequest(f"unknown time zone {name[:64]!r}: use an IANA name like 'Europe/Paris'")
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise BadRequest(
            f"unknown time zone {name[:64]!r}: use an IANA name like 'Europe/Paris'"
        ) from None


def _cron_text(cron: str) -> str:
    if len(cron) > MAX_CRON_LENGTH or not cron.isascii() or not cron.isprintable():
        raise BadRequest(f"the cron expression must be 1 to {MAX_CRON_LENGTH} printable characters")
    if len(cron.split()) != 5:
        raise BadRequest(
            f"invalid cron expression {cron[:60]!r}: use five fields, minute hour day month "
            "weekday (e.g. '*/5 * * * *')"
        )
    return cron


def _shortest_gap(cron: str, zone: ZoneInfo) -> int:
    """The shortest gap between runs over a day's worth of runs (at least two runs)."""
    try:
        runs = CronSim(cron, datetime(2026, 1, 5, tzinfo=zone))
        times = [next(runs), next(runs)]
        while len(times) < 1441 and (times[-1] - times[0]).total_seconds() < 86_400:
            times.append(next(runs))
    except (CronSimError, StopIteration, ValueError) as exc:
        raise BadRequest(f"invalid cron expression {cron[:60]!r}: {exc}"[:200]) from None
    return int(min((b - a).total_seconds() for a, b in itertools.pairwise(times)))


__all__ = ["Policy", "Schedule"]
