"""Words of free text: what a search term matches and what a token index holds.

One definition serves the language, both engines, the reference evaluator and the token
indexes, so a file an index skips can never hold a match:

* A **token** is a maximal run of ASCII letters, ASCII digits and non-ASCII characters. Every
  other character (space, punctuation, ``_``, ``.``, ``-``, ``/``, ``:``, control characters)
  separates tokens. This is exactly how ClickHouse's ``tokenbf_v1`` index and ``hasToken``
  split text (on ASCII non-alphanumeric bytes; every byte of a multi-byte UTF-8 character is
  a token byte), so a ClickHouse index can serve the same semantics.
* Tokens compare **case-insensitively by ASCII folding** (A-Z only), as the rest of the
  language does (see :mod:`astralog.query.language`).
* A term matches an event when its tokens appear **consecutively** in the text: ``fox``
  matches "The fox" but not "firefox"; ``quick-brown`` and ``"quick brown"`` both match
  "quick brown", "quick-brown" and "Quick_Brown".
"""

from __future__ import annotations

import re
import string
from typing import Final

__all__ = ["SEPARATOR_CLASS", "WORD_CLASS", "fold", "is_word_character", "tokens"]

# In RE2 syntax (DuckDB, ClickHouse and google-re2 read code points here, not bytes).
WORD_CLASS: Final = "[0-9A-Za-z\\x{80}-\\x{10FFFF}]"
SEPARATOR_CLASS: Final = "[^0-9A-Za-z\\x{80}-\\x{10FFFF}]"

_TOKEN: Final = re.compile("[0-9A-Za-z\u0080-\U0010ffff]+")
_FOLD: Final = str.maketrans(string.ascii_uppercase, string.ascii_lowercase)


def fold(text: str) -> str:
    """ASCII-only lower case: the one folding every engine performs identically."""
    return text.translate(_FOLD)


def tokens(text: str) -> list[str]:
    """The folded tokens of ``text``, in order (duplicates kept)."""
    return _TOKEN.findall(fold(text))


def is_word_character(ch: str) -> bool:
    """True when the character ``ch`` belongs to a token (False for a separator)."""
    return _TOKEN.fullmatch(ch) is not None
