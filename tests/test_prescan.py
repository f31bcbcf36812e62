"""The structural pre-scan agrees with a byte-by-byte reading of JSON, and names the line."""

from __future__ import annotations

import json
from collections.abc import Callable

import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from astralog.errors import BadRequest
from astralog.ingest import prescan
from astralog.ingest.prescan import check_nesting, first_too_deep, null_opening_a_line


def reference(body: bytes, limit: int) -> int | None:
    """The same judgement, one byte at a time: depth from the body's start and from the line's.

    A quote after an odd run of backslashes is text, inside a string or not: outside one, the
    backslash is invalid JSON where every parser stops, so reading it either way is safe.
    """
    depth = line_base = slashes = 0
    in_string = False
    for offset, byte in enumerate(body):
        char = chr(byte)
        if char == "\n":
            in_string, line_base = False, depth
        elif char == '"' and slashes % 2 == 0:
            in_string = not in_string
        elif char in "[{" and not in_string:
            depth += 1
            if depth > limit or depth - line_base > limit:
                return offset
        elif char in "]}" and not in_string:
            depth -= 1
        slashes = slashes + 1 if char == "\\" else 0
    return None


@settings(max_examples=400, deadline=None)
@given(
    st.lists(st.sampled_from(["[", "{", "]", "}", '"', "\\", "\n", "a", ":", ","]), max_size=80),
    st.integers(1, 6),
)
def test_agrees_with_a_byte_by_byte_reading(chars: list[str], limit: int) -> None:
    body = "".join(chars).encode()
    assert first_too_deep(body, limit) == reference(body, limit)


# Pieces that stress what the scan reduces away: escaped quotes and backslash runs of every
# parity, empty strings and runs of quotes, brackets inside strings, both line breaks.
_PIECES = [
    "[",
    "{",
    "]",
    "}",
    '"',
    '""',
    '"""',
    "\\",
    '\\"',
    '\\\\"',
    "\\\\\\",
    "\n",
    "\r",
    "a",
    ":,",
]


@settings(max_examples=600, deadline=None)
@given(st.lists(st.sampled_from(_PIECES), max_size=120), st.integers(1, 8))
def test_agrees_on_escapes_and_runs_of_quotes(pieces: list[str], limit: int) -> None:
    body = "".join(pieces).encode()
    assert first_too_deep(body, limit) == reference(body, limit)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(_PIECES), max_size=120), st.integers(1, 8), st.integers(1, 9))
def test_agrees_when_read_in_small_pieces(pieces: list[str], limit: int, piece: int) -> None:
    """Pieces of a few bytes put an escape, a string or a deep line across every cut."""
    body = "".join(pieces).encode()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(prescan, "_PIECE", piece)
        assert first_too_deep(body, limit) == reference(body, limit)


_JSON = st.recursive(
    st.none() | st.integers() | st.text(st.sampled_from('ab"\\[]{}\n'), max_size=6),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner, max_size=3)
    ),
    max_leaves=12,
)


def nested(value: object, depth: int) -> object:
    for i in range(depth):
        value = [value] if i % 2 else {"k[": value}
    return value


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(_JSON, st.integers(0, 10)), min_size=1, max_size=6), st.booleans())
def test_agrees_on_json_nested_about_the_limit(
    events: list[tuple[object, int]], pretty: bool
) -> None:
    """Real JSON, some of it nested just under, at and over the limit, as NDJSON or indented."""
    texts = [json.dumps(nested(v, d), indent=1 if pretty else None) for v, d in events]
    body = "\n".join(texts).encode()
    for limit in (8, 9, 10):
        assert first_too_deep(body, limit) == reference(body, limit)


def test_names_the_bracket_after_strings_full_of_brackets() -> None:
    """The offset is found again in the body: brackets inside strings and escaped quotes on
    the lines before, and on the deep line itself, must not shift it. The body is over 256 KiB,
    so the scan reads it in pieces."""
    noise = b'{"a":"[[{\\"]]","b":"\\\\","c":[1,{"d":"}"}]}\n' * 7_000
    deep = b'{"x":"]]]\\"[","y":' + b"[" * 9 + b"]" * 9 + b"}\n"
    body = noise + deep + noise
    # "{" and seven "[" make level 8, so the eighth "[" is the first one too deep.
    assert first_too_deep(body, 8) == reference(body, 8) == len(noise) + deep.index(b"[" * 9) + 7


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ('{"a":"[[[[[[[["}', None),  # brackets inside a string are text
        ('{"a":"\\"[[[[[[[["}', None),  # an escaped quote does not end the string
        ('{"a":"\\\\"' + "[" * 8 + "]" * 8 + "}", 11),  # an escaped backslash does
        ("]]]]]]]]\n" + "[" * 8, 12),  # every NDJSON line is read on its own
        ('{"a":"x\n' + "[" * 8, 10),  # a string never spans a line
        ("[\n" * 8, 6),  # a pretty-printed document does
        ("[" * 3 + "]" * 3 + "[" * 3, None),
    ],
)
def test_strings_lines_and_escapes(body: str, expected: int | None) -> None:
    assert first_too_deep(body.encode(), 3) == expected == reference(body.encode(), 3)


def test_a_deep_line_is_named_with_the_limit() -> None:
    body = b'{"ok":1}\n{"deep":' + b"[" * 200 + b"]" * 200 + b"}\n"
    with pytest.raises(BadRequest, match=r"line 2, column 108: .* more than 100 levels deep") as e:
        check_nesting(body, 100)
    assert "ASTRALOG_INGEST__MAX_NESTING" in e.value.detail


def test_a_hostile_body_is_judged_in_milliseconds() -> None:
    # 20,000 brackets crashed pyarrow's reader and 10,000 cost it seconds of CPU.
    for body in (b"[" * 20_000 + b"1" + b"]" * 20_000, b'{"a":' * 20_000 + b"1" + b"}" * 20_000):
        assert first_too_deep(body, 100) is not None


@pytest.mark.parametrize("wrap", [bytes, memoryview, pa.py_buffer], ids=["bytes", "view", "arrow"])
@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b'{"a":1}\r  null', 10),
        (b'{"a":1}\rnull\n{}', 8),
        (b'{"a":1}\n' * 40_000 + b"\r null", 320_002),
        (b'{"a":null}\r\n{}', None),
    ],
    ids=["blanks", "bare", "in-a-later-piece", "a-value"],
)
def test_a_null_after_a_carriage_return_is_found_in_any_buffer(
    wrap: Callable[[bytes], bytes], body: bytes, expected: int | None
) -> None:
    assert null_opening_a_line(wrap(body)) == expected
