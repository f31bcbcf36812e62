"""Time-based one-time passwords (RFC 6238) with ``cryptography``: 30 s steps, 6 digits, SHA-1
(what every authenticator app reads from an ``otpauth://`` URI), ±1 step for clock drift.

The seed is 160 random bits (RFC 4226's recommendation). :func:`match` says *which* time step a
code belongs to, so the caller can refuse a step that was already used (a replayed code).
The QR code of the URI is drawn as SVG by ``segno``, so no image library is needed.
"""

from __future__ import annotations

import base64
import hmac
import os
import time
from urllib.parse import quote, urlencode

import segno
from cryptography.hazmat.primitives.hashes import SHA1
from cryptography.hazmat.primitives.twofactor.totp import TOTP

STEP_SECONDS = 30
DIGITS = 6
DRIFT_STEPS = 1
SEED_BYTES = 20


def new_secret() -> str:
    """A fresh seed as the base32 text an authenticator app is given (no padding)."""
    return base64.b32encode(os.urandom(SEED_BYTES)).decode().rstrip("=")


def _seed(secret: str) -> bytes:
    return base64.b32decode(secret + "=" * (-len(secret) % 8))


def _totp(secret: str) -> TOTP:
    # HMAC-SHA-1 is RFC 6238's default and what authenticator apps read; HMAC, not a bare hash.
    return TOTP(_seed(secret), DIGITS, SHA1(), STEP_SECONDS)  # noqa: S303


def code_at(secret: str, at: float) -> str:
    return _totp(secret).generate(int(at)).decode()


def match(secret: str, code: str, now: float | None = None) -> int | None:
    """The time step (now ± drift) whose code is ``code``, else None; compared in constant time."""
    code = code.strip().replace(" ", "")
    if len(code) != DIGITS or not code.isdigit():
        return None
    totp = _totp(secret)
    current = int((time.time() if now is None else now) // STEP_SECONDS)
    found = None
    for step in range(current - DRIFT_STEPS, current + DRIFT_STEPS + 1):
        if hmac.compare_digest(totp.generate(step * STEP_SECONDS), code.encode()):
            found = step  # no early return: each candidate costs the same
    return found


def otpauth_uri(secret: str, account: str, issuer: str) -> str:
    label = quote(issuer) + ":" + quote(account, safe="@")
    query = urlencode(
        {"secret": secret, "issuer": issuer, "algorithm": "SHA1", "digits": DIGITS,
         "period": STEP_SECONDS}
    )  # fmt: skip
    return f"otpauth://totp/{label}?{query}"


def qr_svg(uri: str) -> str:
    """The URI as an inline SVG QR code (error correction M: readable from a dim screen)."""
    return str(segno.make(uri, error="m").svg_inline(scale=4, border=4))
