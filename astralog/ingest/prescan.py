"""Ingest stage 1a, pre-scan: the nesting of a JSON body, measured before any parser reads it.

JSON parsers recurse once per level of nesting. Twenty thousand ``[`` in a row crash pyarrow's
reader (a segfault that takes every tenant's gateway down) and ten thousand cost it seconds of
CPU; Python's reader and protobuf's JSON mapping fail in their own ways. This pass refuses such a
body in time linear in its bytes, before any of them sees it, and names the line and the limit.

It looks at five bytes only, with numpy: ``"`` and ``\\`` to know what is inside a string, ``\\n``
because a JSON string never spans a line (so every line of NDJSON is judged on its own, as its
parser reads it), and the brackets. Two depths are measured at every bracket outside a string:
from the start of the body (a pretty-printed document spans lines) and from the start of its
line (each NDJSON line is a document of its own, whatever came before it). A closing bracket
without its opener makes the body invalid JSON: parsers stop there, so what follows cannot reach
them deeper than measured.

Protobuf bodies need no scan: upb refuses messages nested more than 100 deep
(:data:`PROTOBUF_MAX_DEPTH`) cheaply, with a ``DecodeError`` the parsers turn into a 400.

:func:`null_opening_a_line` guards pyarrow's JSON reader against its other crash: a block that
opens with ``null`` (pyarrow 26 segfaults on ``null``, `` null ``, ``null\n{}``, and on any
block it cuts at a line whose first token is ``null``; ``{}\nnull`` survives only because the
block opens with ``{``). Blocks are cut at ``\n`` or ``\r``, so every line start is suspect.
"""

from __future__ import annotations

import re

import numpy as np

from astralog.errors import BadRequest

__all__ = ["PROTOBUF_MAX_DEPTH", "check_nesting", "first_too_deep", "null_opening_a_line"]

PROTOBUF_MAX_DEPTH = 100  # upb's default decode depth limit, relied upon and held by a test
_SETTING = "ASTRALOG_INGEST__MAX_NESTING"

_QUOTE, _BACKSLASH, _NEWLINE = ord('"'), ord("\\"), ord("\n")
# ``[`` and ``{`` differ from each other only in bit 5, and so do ``]`` and ``}``.
_OPEN, _CLOSE = ord("{"), ord("}")


def check_nesting(body: bytes, limit: int, what: str = "the body") -> None:
    """Raise :class:`BadRequest` when brackets in ``body`` nest more than ``limit`` deep."""
    offset = first_too_deep(body, limit)
    if offset is None:
        return
    line = body.count(b"\n", 0, offset) + 1
    column = offset - (body.rfind(b"\n", 0, offset) + 1) + 1
    raise BadRequest(
        f"line {line}, column {column}: {what} is nested more than {limit} levels deep, the "
        f"limit set by {_SETTING}; flatten the event or send it as a string",
        line=line,
    )


# After the last line break before a token only spaces and tabs can come (JSON's other
# whitespace is the line breaks), so each pattern scans a run of blanks once: linear, never
# quadratic on a body of blank lines. A literal first byte keeps each search at memchr speed
# (about 0.5 ms per MB); one pattern starting with ``[\r\n]`` costs six times more.
_NULL_AT_START = re.compile(rb"[ \t\r\n]*null")
_NULL_AFTER_LF = re.compile(rb"\n[ \t]*null")
_NULL_AFTER_CR = re.compile(rb"\r[ \t]*null")


def null_opening_a_line(body: bytes | memoryview) -> int | None:
    """Byte offset of the first ``null`` that is the first JSON token of ``body`` or of a line.

    Conservative: a ``null`` inside a pretty-printed document counts too, and the caller then
    reads the body another way; pyarrow must never see it."""
    if start := _NULL_AT_START.match(body):
        return start.end() - 4
    found = [m.end() - 4 for p in (_NULL_AFTER_LF, _NULL_AFTER_CR) if (m := p.search(body))]
    return min(found, default=None)


def first_too_deep(body: bytes, limit: int) -> int | None:
    """Byte offset of the first bracket outside a string that opens level ``limit + 1``."""
    buf = np.frombuffer(body, np.uint8)
    folded = buf | 0x20
    opens = folded == _OPEN
    if int(np.count_nonzero(opens)) <= limit:
        return None  # too few openers to go that deep: most small bodies stop here
    brackets = np.flatnonzero(opens | (folded == _CLOSE))
    newlines = np.flatnonzero(buf == _NEWLINE)
    quotes = _real_quotes(buf)
    brackets = _outside_strings(brackets, quotes, newlines)
    depth = np.cumsum(np.where(folded[brackets] == _OPEN, 1, -1), dtype=np.int64)
    # The depth where each bracket's line began, to judge every NDJSON line on its own.
    line = np.searchsorted(newlines, brackets)
    before_line = np.searchsorted(brackets, np.concatenate(([0], newlines + 1)))[line]
    line_base = np.where(before_line > 0, depth[np.maximum(before_line - 1, 0)], 0)
    hits = np.flatnonzero((depth > limit) | (depth - line_base > limit))
    return int(brackets[hits[0]]) if len(hits) else None


def _real_quotes(buf: np.ndarray) -> np.ndarray:
    """Offsets of the quotes that open or close a string: not those escaped by an odd run of
    backslashes (``\\"`` is escaped, ``\\\\"`` is not)."""
    quotes = np.flatnonzero(buf == _QUOTE)
    candidates = np.flatnonzero(buf[np.maximum(quotes - 1, 0)] == _BACKSLASH)
    if not len(candidates):
        return quotes
    slashes = np.flatnonzero(buf == _BACKSLASH)
    run_start = np.ones(len(slashes), bool)
    run_start[1:] = slashes[1:] != slashes[:-1] + 1
    start_of = np.maximum.accumulate(np.where(run_start, slashes, 0))
    last_slash = quotes[candidates] - 1
    run_length = last_slash - start_of[np.searchsorted(slashes, last_slash)] + 1
    keep = np.ones(len(quotes), bool)
    keep[candidates[run_length % 2 == 1]] = False
    real: np.ndarray = quotes[keep]
    return real


def _outside_strings(brackets: np.ndarray, quotes: np.ndarray, newlines: np.ndarray) -> np.ndarray:
    """The brackets after an even number of quotes since their line began."""
    quotes_before = np.searchsorted(quotes, brackets)
    at_line_start = np.concatenate(([0], np.searchsorted(quotes, newlines)))
    line = np.searchsorted(newlines, brackets)
    outside = (quotes_before - at_line_start[line]) % 2 == 0
    kept: np.ndarray = brackets[outside]
    return kept
