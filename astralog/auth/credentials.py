"""Secrets we hand out: ingest keys, management tokens and operator tokens.

Format (like GitHub's tokens, so secret scanners can find a leaked one offline)::

    alk_<key id: 16 base62>_<secret: 43 base62, 256 bits><checksum: 6 base62 of CRC32>

``alk`` is an ingest key, ``alt`` a management token, ``alo`` an operator token. The checksum
covers everything before it, so a typo is rejected without a database lookup. Only an
HMAC-SHA-256 of the whole string under the server pepper is stored; comparison is constant-time.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import zlib
from dataclasses import dataclass
from enum import StrEnum

from astralog.errors import Unauthenticated
from astralog.ids import BASE62, base62


class Kind(StrEnum):
    INGEST = "alk"
    MANAGEMENT = "alt"
    OPERATOR = "alo"


_SECRET_CHARS = 43  # 62**43 > 2**256
_PATTERN = re.compile(r"^(alk|alt|alo)_([0-9A-Za-z]{16})_([0-9A-Za-z]{43})([0-9A-Za-z]{6})$")
SCANNER_PATTERN = r"\bal[kto]_[0-9A-Za-z]{16}_[0-9A-Za-z]{49}\b"
"""A regular expression secret scanners (and our own log redaction) use to spot a credential."""


@dataclass(frozen=True)
class Credential:
    kind: Kind
    key_id: str
    secret: str

    def __str__(self) -> str:
        return self.secret

    def __repr__(self) -> str:  # never print the secret by accident
        return f"Credential({self.kind.value}, {self.key_id}, <redacted>)"


def _checksum(body: str) -> str:
    return base62(zlib.crc32(body.encode()), 6)


def generate(kind: Kind) -> Credential:
    key_id = "".join(secrets.choice(BASE62) for _ in range(16))
    random_part = "".join(secrets.choice(BASE62) for _ in range(_SECRET_CHARS))
    body = f"{kind.value}_{key_id}_{random_part}"
    return Credential(kind, key_id, body + _checksum(body))


def parse(text: str) -> Credential:
    """Check shape and checksum; raise Unauthenticated with a precise reason otherwise."""
    match = _PATTERN.match(text.strip())
    if not match:
        raise Unauthenticated(
            "malformed credential: expected an Astralog key such as 'alk_<id>_<secret>' "
            "(check that it was copied whole)"
        )
    prefix, key_id, random_part, checksum = match.groups()
    body = f"{prefix}_{key_id}_{random_part}"
    if not hmac.compare_digest(_checksum(body), checksum):
        raise Unauthenticated(
            "credential checksum does not match: the key was mistyped or truncated"
        )
    return Credential(Kind(prefix), key_id, text.strip())


def digest(secret: str, pepper: str) -> str:
    return hmac.new(pepper.encode(), secret.encode(), hashlib.sha256).hexdigest()


def matches(secret: str, stored_digest: str, pepper: str) -> bool:
    return hmac.compare_digest(digest(secret, pepper), stored_digest)
