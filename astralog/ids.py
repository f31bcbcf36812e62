"""Identifiers: short prefixed ids for control-plane objects and UUIDv7 for single events."""

from __future__ import annotations

import os
import secrets
import time
import uuid

BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"


def base62(number: int, width: int = 0) -> str:
    digits = []
    while number:
        number, rem = divmod(number, 62)
        digits.append(BASE62[rem])
    return "".join(reversed(digits)).rjust(width, "0")


def random_base62(chars: int) -> str:
    return "".join(secrets.choice(BASE62) for _ in range(chars))


def new_id(prefix: str) -> str:
    """A readable id such as ``src_7Hq2...``: 16 base62 characters (~95 bits) after the prefix."""
    return f"{prefix}_{random_base62(16)}"


def uuid7(now_ns: int | None = None) -> str:
    """A time-ordered UUIDv7 (RFC 9562) as text."""
    ms = (now_ns if now_ns is not None else time.time_ns()) // 1_000_000
    rand = int.from_bytes(os.urandom(10), "big")
    value = (ms & ((1 << 48) - 1)) << 80 | 0x7 << 76 | (rand >> 68 & 0xFFF) << 64
    value |= 0b10 << 62 | rand & ((1 << 62) - 1)
    return str(uuid.UUID(int=value))
