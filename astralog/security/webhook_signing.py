"""Standard Webhooks v1 signatures: what a receiver checks to trust a delivery.

Used by the control plane (a new endpoint's secret) and alert delivery (each attempt's
signature). What it promises: :func:`sign` computes
``v1,<base64 HMAC-SHA256(key, "{id}.{timestamp}.{body}")>`` for every secret in force, space
separated, so a receiver holding either the old or the new secret verifies a delivery during a
rotation's overlap. Secrets are ``whsec_`` + base64 of 32 random bytes, as the Standard Webhooks
reference libraries expect (they base64-decode what follows the prefix to get the HMAC key).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets as _random
from collections.abc import Sequence

__all__ = ["PREFIX", "headers", "new_secret", "sign"]

PREFIX = "whsec_"
_KEY_BYTES = 32


def new_secret() -> str:
    return PREFIX + base64.b64encode(_random.token_bytes(_KEY_BYTES)).decode()


def _key(secret: str) -> bytes:
    if not secret.startswith(PREFIX):
        raise ValueError("a webhook secret starts with 'whsec_'")
    return base64.b64decode(secret[len(PREFIX) :], validate=True)


def sign(msg_id: str, timestamp: int, body: bytes, secrets: Sequence[str]) -> str:
    """The ``webhook-signature`` header value: one ``v1,`` signature per secret in force."""
    if not secrets:
        raise ValueError("at least one secret is needed to sign")
    signed = f"{msg_id}.{timestamp}.".encode() + body
    return " ".join(
        "v1," + base64.b64encode(hmac.digest(_key(s), signed, hashlib.sha256)).decode()
        for s in secrets
    )


def headers(msg_id: str, timestamp: int, body: bytes, secrets: Sequence[str]) -> dict[str, str]:
    """The three Standard Webhooks headers of one attempt (the timestamp is the attempt's)."""
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": sign(msg_id, timestamp, body, secrets),
    }
