"""What every control-plane command shares: the naming rule and the shape of an issued secret."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from astralog.auth.credentials import Credential
from astralog.errors import BadRequest

NAME_RULE = re.compile(r"^[a-z0-9][a-z0-9._-]{0,62}$")


def check_name(name: str, what: str) -> str:
    if not NAME_RULE.match(name):
        raise BadRequest(
            f"invalid {what} name {name[:80]!r}: use 1-63 lowercase letters, digits, '.', '_' or "
            "'-', starting with a letter or digit"
        )
    return name


@dataclass(frozen=True)
class Issued:
    """A freshly issued credential: the only moment its secret exists outside the caller."""

    credential: Credential
    info: dict[str, Any]
