import math
import re

import pytest

from astralog.auth import credentials
from astralog.auth.credentials import Kind
from astralog.errors import Unauthenticated


@pytest.mark.parametrize("kind", list(Kind))
def test_generated_credentials_parse_and_are_recognisable(kind: Kind) -> None:
    cred = credentials.generate(kind)
    assert cred.secret.startswith(f"{kind.value}_{cred.key_id}_")
    assert re.fullmatch(credentials.SCANNER_PATTERN, cred.secret)
    assert credentials.parse(cred.secret) == cred
    assert cred.secret not in repr(cred)


def test_secret_part_carries_at_least_256_bits() -> None:
    secret_part = credentials.generate(Kind.INGEST).secret.split("_")[2][:-6]
    assert len(secret_part) * math.log2(62) >= 256


def test_every_single_character_typo_is_caught_by_the_checksum() -> None:
    secret = credentials.generate(Kind.INGEST).secret
    caught = 0
    for position in range(21, len(secret)):  # the random part and the checksum
        replacement = "a" if secret[position] != "a" else "b"
        typo = secret[:position] + replacement + secret[position + 1 :]
        with pytest.raises(Unauthenticated, match="checksum"):
            credentials.parse(typo)
        caught += 1
    assert caught == len(secret) - 21


@pytest.mark.parametrize(
    "text",
    ["", "alk_", "Bearer x", "alx_AAAAAAAAAAAAAAAA_" + "A" * 49, "alk_short_" + "A" * 49, "é" * 70],
)
def test_malformed_credentials_are_refused_with_a_reason(text: str) -> None:
    with pytest.raises(Unauthenticated, match="malformed"):
        credentials.parse(text)


def test_digest_is_peppered_and_compared_in_constant_time() -> None:
    secret = credentials.generate(Kind.MANAGEMENT).secret
    stored = credentials.digest(secret, "pepper-one")
    assert credentials.matches(secret, stored, "pepper-one")
    assert not credentials.matches(secret, stored, "pepper-two")
    assert secret not in stored
