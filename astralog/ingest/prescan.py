"""Ingest stage 1a, pre-scan: the nesting of a JSON body, measured before any parser reads it.

JSON parsers recurse once per level of nesting. Twenty thousand ``[`` in a row crash pyarrow's
reader (a segfault that takes every tenant's gateway down) and ten thousand cost it seconds of
CPU; Python's reader and protobuf's JSON mapping fail in their own ways. This pass refuses such a
body in time linear in its bytes, before any of them sees it, and names the line and the limit.

Seven bytes matter: ``"`` and ``\\`` to know what is inside a string, ``\\n`` because a JSON
string never spans a line (so every line of NDJSON is judged on its own, as its parser reads it),
and the brackets. The body is first cut down to its skeleton with C-speed ``bytes`` methods:
quotes escaped by a backslash are blanked, every byte but a quote, a bracket or a line break is
deleted, and so is every pair of adjacent quotes (a string holding no bracket). An NDJSON line
becomes ``{{}}``; numpy then measures the skeleton, a few percent of the body's size.
Two depths are measured at every bracket outside a string: from the start of the body (a
pretty-printed document spans lines) and from the start of its line (each NDJSON line is a
document of its own, whatever came before it). A closing bracket without its opener makes the
body invalid JSON: parsers stop there, so what follows cannot reach them deeper than measured.

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

_QUOTE, _BACKSLASH, _NEWLINE, _CR = ord('"'), ord("\\"), ord("\n"), ord("\r")
# ``[`` and ``{`` differ from each other only in bit 5, and so do ``]`` and ``}``.
_OPEN, _CLOSE = ord("{"), ord("}")
# Bytes looked at in one go: small enough that scratch memory stays warm from piece to piece.
_PIECE = 1 << 18


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
    patterns = (_NULL_AFTER_LF, _NULL_AFTER_CR) if _holds_cr(body) else (_NULL_AFTER_LF,)
    found = [m.end() - 4 for p in patterns if (m := p.search(body))]
    return min(found, default=None)


def _holds_cr(body: bytes | memoryview) -> bool:
    """Whether a ``\\r`` occurs at all: most bodies have none. ``re`` looks for one byte a byte
    at a time; ``bytes`` uses memchr, ten times faster; numpy over a buffer four times, in
    pieces (one mask of the whole body costs more in fresh pages than in comparing)."""
    if isinstance(body, bytes):
        return b"\r" in body
    data = np.frombuffer(body, np.uint8)
    mask = np.empty(min(len(data), _PIECE), bool)
    for start in range(0, len(data), _PIECE):
        piece = data[start : start + _PIECE]
        if np.equal(piece, _CR, out=mask[: len(piece)]).any():
            return True
    return False


def first_too_deep(body: bytes, limit: int) -> int | None:
    """Byte offset of the first bracket outside a string that opens level ``limit + 1``."""
    skeleton = _skeleton(body)
    if skeleton.count(b"[") + skeleton.count(b"{") <= limit:
        return None  # too few openers to go that deep: most small bodies stop here
    hit = _first_too_deep_in(skeleton, limit)
    return None if hit is None else _offset_in_body(body, skeleton, hit)


# Everything but the quote, the brackets and the line break, deleted by bytes.translate.
_NOT_SKELETON = bytes(sorted(set(range(256)) - set(b'"[]{}\n')))


def _skeleton(body: bytes) -> bytes:
    """The brackets and line breaks of ``body`` in order, with the quotes that still matter.

    Once escaped quotes are blanked every quote opens or closes a string. Two adjacent quotes in
    the skeleton leave the parity of the quotes before every other byte unchanged, so they go:
    one ``replace`` suffices, as what stays of each run of quotes is at most one. No escape
    spans a line break, so the body is cut into pieces of whole lines: a blanked copy of a
    piece reuses warm memory where one of the whole body would cost a fresh page per 4 KiB."""
    skeleton, start = [], 0
    while start < len(body):
        end = body.find(b"\n", start + _PIECE) + 1 or len(body)
        piece = body[start:end]
        text = _blank_escaped_quotes(piece) if b"\\" in piece else piece
        skeleton.append(text.translate(None, _NOT_SKELETON).replace(b'""', b""))
        start = end
    return b"".join(skeleton)


def _blank_escaped_quotes(body: bytes) -> bytearray:
    """A copy of ``body`` with every quote that follows an odd run of backslashes overwritten
    (``\\"`` is escaped, ``\\\\"`` is not). Backslashes are few, so numpy works on their offsets."""
    buf = np.frombuffer(body, np.uint8)
    slashes = np.flatnonzero(buf == _BACKSLASH)
    starts = np.ones(len(slashes), bool)
    starts[1:] = slashes[1:] != slashes[:-1] + 1
    first = slashes[starts]
    last = np.append(slashes[np.flatnonzero(starts)[1:] - 1], slashes[-1])
    after = last[((last - first) % 2 == 0) & (last + 1 < len(buf))] + 1
    copy = bytearray(body)
    escaped = after[buf[after] == _QUOTE]
    np.frombuffer(copy, np.uint8)[escaped] = ord("_")
    return copy


# One more byte per level, one less per closing; a line break, a quote and the rest count 0.
_DELTA = np.zeros(256, np.int32)
_DELTA[list(b"[{")], _DELTA[list(b"]}")] = 1, -1


def _first_too_deep_in(skeleton: bytes, limit: int) -> int | None:
    """Index in ``skeleton`` of the first opener outside a string that is ``limit`` too deep."""
    buf = np.frombuffer(skeleton, np.uint8)
    newlines = np.flatnonzero(buf == _NEWLINE)
    # Sums never exceed the skeleton's length: 32 bits halve the memory numpy walks.
    delta: np.ndarray = _DELTA[buf] if len(buf) < 2**31 else _DELTA[buf].astype(np.int64)
    if b'"' in skeleton:
        quotes = (buf == _QUOTE).astype(delta.dtype)
        delta *= 1 - (_per_line_sum(quotes, newlines) & 1)  # 0 inside a string
    depth: np.ndarray = np.cumsum(delta, dtype=delta.dtype)
    # From the body's start, and from the line's: each NDJSON line is judged on its own.
    too_deep = (depth > limit) | (_per_line_sum(delta, newlines) > limit)
    first = int(np.argmax(too_deep))
    return first if too_deep[first] else None


def _per_line_sum(values: np.ndarray, newlines: np.ndarray) -> np.ndarray:
    """The running sum of ``values`` (0 at each line break), restarted at every line break:
    each break takes back what its line added, and one cumsum does the rest."""
    total = np.cumsum(values, dtype=values.dtype)
    restarted = values.copy()
    restarted[newlines] = -np.diff(total[newlines], prepend=0)
    summed: np.ndarray = np.cumsum(restarted, dtype=values.dtype)
    return summed


def _offset_in_body(body: bytes, skeleton: bytes, hit: int) -> int:
    """Where the skeleton's byte ``hit`` came from: the skeleton keeps every line break and
    every bracket, so it is the n-th bracket of the same line of ``body``."""
    line_start = skeleton.rfind(b"\n", 0, hit) + 1
    nth = hit - line_start - skeleton.count(b'"', line_start, hit)
    line = skeleton.count(b"\n", 0, line_start)
    buf = np.frombuffer(body, np.uint8)
    start = int(np.flatnonzero(buf == _NEWLINE)[line - 1]) + 1 if line else 0
    folded = buf[start:] | 0x20
    return start + int(np.flatnonzero((folded == _OPEN) | (folded == _CLOSE))[nth])
