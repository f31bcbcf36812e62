"""Time ranges as people write them: ``now``, ``now-15m``, ``now+1h``, ``now-7d/d``, RFC 3339,
epoch ms. ``now+…`` reaches events stamped ahead of the clock, which the gateway accepts."""

from __future__ import annotations

import re
from datetime import UTC, datetime

from astralog.errors import BadRequest

_UNITS_NS = {
    "s": 10**9,
    "m": 60 * 10**9,
    "h": 3600 * 10**9,
    "d": 86_400 * 10**9,
    "w": 7 * 86_400 * 10**9,
}
ROUNDING_UNITS_NS = _UNITS_NS  # what '/d' and friends round to, for rounding up
_RELATIVE = re.compile(r"^now(?:\s*([-+])\s*(\d{1,7})\s*([smhdw]))?(?:/([smhd]))?$")


MAX_NS = 2**63 - 1  # what a 64-bit nanosecond timestamp holds (until 2262)


def parse_instant(text: str | int | float, now_ns: int, field: str) -> int:
    """An instant in ns since the epoch from relative, ISO 8601 or epoch-millisecond input."""
    ns = _parse_instant(text, now_ns, field)
    if not 0 <= ns <= MAX_NS:
        raise BadRequest(f"{field} is outside the years 1970 to 2262 that events can have")
    return ns


def _parse_instant(text: str | int | float, now_ns: int, field: str) -> int:
    if isinstance(text, int | float) and not isinstance(text, bool):
        return int(text * 1_000_000)  # epoch milliseconds, as JavaScript's Date.now()
    value = str(text).strip()
    match = _RELATIVE.match(value)
    if match:
        sign, amount, unit, round_to = match.groups()
        offset = int(amount) * _UNITS_NS[unit] if amount else 0
        ns = now_ns + offset if sign == "+" else now_ns - offset
        return ns - ns % _UNITS_NS[round_to] if round_to else ns
    if value.isascii() and value.isdigit():
        return int(value) * 1_000_000
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise BadRequest(
            f"{field} {value[:60]!r} is not a time: use 'now', 'now-15m' or 'now+1h' "
            "(s, m, h, d, w), an RFC 3339 time such as 2026-01-31T12:00:00Z, or epoch milliseconds"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp()) * 10**9 + moment.microsecond * 1000


def iso(ns: int) -> str:
    seconds, rest = divmod(ns, 10**9)
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S") + f".{rest:09d}Z"
