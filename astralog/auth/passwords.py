"""Local-account passwords: the rules a new password must meet, and Argon2id hashing.

Rules (OWASP ASVS 5.0 V6.2): at least 8 characters, anything up to 128 accepted (64+ must be;
the cap bounds hashing work per request), no composition rules, any Unicode, no truncation. A
password is refused when it is one of the most common passwords of public breaches (the list
``zxcvbn`` bundles, compared case-insensitively) or equal to the account's email, its local
part, or the org's name: the things an attacker tries first.

Hashes are Argon2id PHC strings (``$argon2id$v=19$m=...,t=...,p=...$salt$hash``) made with
``cryptography``; the parameters are in the string, so raising them later still verifies old
hashes and :func:`needs_rehash` tells when to upgrade one at the next sign-in.
"""

from __future__ import annotations

import functools
import os
import unicodedata

from cryptography.exceptions import InvalidKey
from cryptography.hazmat.primitives.kdf.argon2 import Argon2id

from astralog.errors import BadRequest

MIN_LENGTH = 8
MAX_LENGTH = 128

# OWASP Password Storage Cheat Sheet's Argon2id baseline: 19 MiB, 2 passes, 1 lane: 20-35 ms
# per verify on one core of the development machine, so the throttle (astralog.auth.throttle)
# bounds what a sign-in storm costs the CPU.
MEMORY_KIB = 19 * 1024
ITERATIONS = 2
LANES = 1
_PARAMS = f"$argon2id$v=19$m={MEMORY_KIB},t={ITERATIONS},p={LANES}$"


class WeakPassword(BadRequest):
    """A new password the rules refuse; the message says which rule and what to do."""

    title = "Password refused"
    slug = "weak-password"


@functools.cache
def _common() -> frozenset[str]:
    from zxcvbn.frequency_lists import FREQUENCY_LISTS  # 30k entries: loaded on first use

    return frozenset(p.casefold() for p in FREQUENCY_LISTS["passwords"])


def normalise(password: str) -> str:
    """NFC, so the same password typed on two keyboards hashes alike (ASVS 6.2.x Unicode)."""
    return unicodedata.normalize("NFC", password)


def check(password: str, *, email: str = "", org_name: str = "") -> None:
    """Raise :class:`WeakPassword` unless ``password`` meets the rules above."""
    password = normalise(password)
    if len(password) < MIN_LENGTH:
        raise WeakPassword(f"a password needs at least {MIN_LENGTH} characters")
    if len(password) > MAX_LENGTH:
        raise WeakPassword(f"a password can have at most {MAX_LENGTH} characters")
    folded = password.casefold().strip()
    local = email.rpartition("@")[0]
    personal = {v.casefold() for v in (email, local, org_name) if v}
    if folded in personal:
        raise WeakPassword("a password cannot be your email address or the org's name")
    if folded in _common():
        raise WeakPassword(
            "this password is one of the most common passwords in public breaches; choose "
            "another (a few unrelated words make a long, memorable one)"
        )


def hash_password(password: str) -> str:
    kdf = Argon2id(
        salt=os.urandom(16), length=32, iterations=ITERATIONS, lanes=LANES, memory_cost=MEMORY_KIB
    )
    return kdf.derive_phc_encoded(normalise(password).encode("utf-8"))


def verify(password: str, phc: str) -> bool:
    """Whether ``password`` matches the PHC string (always does the full Argon2 work)."""
    candidate = normalise(password)[: MAX_LENGTH * 4].encode("utf-8")
    try:
        Argon2id.verify_phc_encoded(candidate, phc)
    except InvalidKey:
        return False
    return True


def needs_rehash(phc: str) -> bool:
    return not phc.startswith(_PARAMS)


@functools.cache
def decoy() -> str:
    """A hash of a random password with the current parameters: verifying against it costs what
    a real account costs, so an unknown email is answered in the same time."""
    return hash_password(os.urandom(24).hex())
