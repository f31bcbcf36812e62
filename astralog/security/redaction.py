"""Blanking known secret values out of messages shown to people (connection checks, errors).

A long secret is masked wherever it appears. A short one only where it stands as a whole token
(not inside a word, a host name or a number like ``127.0.0.1``):
masking every occurrence of a one-letter password would turn "Max retries" into "Ma*** retries",
which hides nothing (the message itself shows which letter was blanked) and garbles the text.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Final

MASK: Final = "***"
# Below this length a value is too likely to occur inside ordinary words to mask it everywhere.
ANYWHERE_MIN: Final = 8


def redact(text: str, secrets: Iterable[str], mask: str = MASK) -> str:
    """``text`` with each of ``secrets`` masked (longest first, so no secret is half-masked)."""
    for secret in sorted({s for s in secrets if s}, key=len, reverse=True):
        if len(secret) >= ANYWHERE_MIN:
            text = text.replace(secret, mask)
        else:
            text = re.sub(rf"(?<![\w.-]){re.escape(secret)}(?![\w.-])", mask, text)
    return text
