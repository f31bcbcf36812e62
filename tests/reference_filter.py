"""The search language's meaning in plain Python: the reference both SQL dialects must match.

Written from the semantics table in :mod:`astralog.query.language`, independently of the SQL
compiler (no regexes, no LIKE: words are compared token by token, arrays are parsed as JSON):
if the compiler and this file disagree on a row, one of them is wrong. Rows are dicts keyed by
the canonical column names, maps as dicts.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import replace
from functools import cache
from typing import Any

import re2

from astralog.query.language import (
    And,
    Exists,
    Field,
    FieldKind,
    Match,
    MatchAll,
    Node,
    Not,
    Or,
    Pattern,
    Range,
    Regex,
    Severity,
    TimeRange,
    Wildcard,
    ascii_lower,
    is_number,
    re2_options,
)
from astralog.query.tokens import tokens as text_tokens

Row = Mapping[str, Any]
_Token = str | Wildcard  # one character or one wildcard


def matches(node: Node, row: Row) -> bool:
    """True when the event ``row`` is selected by the query ``node``."""
    field = getattr(node, "field", None)
    if isinstance(field, Field) and field.keys is not None:
        return any(matches(one, row) for one in _each_key(node, field, row))
    match node:
        case MatchAll():
            return True
        case And(operands):
            return all(matches(o, row) for o in operands)
        case Or(operands):
            return any(matches(o, row) for o in operands)
        case Not(operand):
            return not matches(operand, row)
        case Exists(field):
            return _exists(field, row)
        case Match(field, pattern) if field.kind is FieldKind.ALL:
            return any(_words(pattern, value) for value in _every_value(row))
        case Match(field, pattern):
            value = field_value(field, row)
            return value is not None and _match_value(field, pattern, value)
        case Range():
            value = field_value(node.field, row)
            return value is not None and _in_range(node, value)
        case Severity(low, high):
            number: int = row["SeverityNumber"]
            in_range = (low is None or number >= low) and (high is None or number <= high)
            return number > 0 and in_range
        case Regex(field, pattern):
            value = field_value(field, row)
            return value is not None and _regex(field, pattern, value)
        case TimeRange():
            micros: int = row["Timestamp"] // 1000
            return _between(micros, node.low_us, node.high_us, node)
    raise TypeError(f"not a query node: {node!r}")


def field_value(field: Field, row: Row) -> str | None:
    """The field's value, or None when the event does not have the field."""
    if field.kind in (FieldKind.BODY, FieldKind.LEVEL, FieldKind.COLUMN):
        value: str = row[field.target]
        return value or None  # a column that was never set holds ''
    for column in field.maps:
        attributes: Mapping[str, str | None] = row[column]
        if field.target in attributes:
            return attributes[field.target] or ""  # a null map value is present and empty
    return None


def _each_key(node: Node, field: Field, row: Row) -> list[Node]:
    """A field-name wildcard: the node once per matching key, on that key's one map."""
    assert field.keys is not None
    glob = _tokens(field.keys, substring=False, fold=False)
    kinds = {"LogAttributes": FieldKind.LOG_ATTRIBUTE, "ResourceAttributes": FieldKind.RESOURCE}
    out: list[Node] = []
    for column, kind in kinds.items():
        for key in row[column]:
            if _glob(glob, key):
                one = Field(key, kind, key)
                out.append(Exists(one) if isinstance(node, Exists) else replace(node, field=one))
    return out


def _exists(field: Field, row: Row) -> bool:
    """A column that is set; a map key, or a flattened map under it (``key.*``)."""
    if field_value(field, row) is not None:
        return True
    nested = field.target + "."
    return any(k.startswith(nested) for column in field.maps for k in row[column])


def _every_value(row: Row) -> list[str]:
    maps = ("LogAttributes", "ResourceAttributes", "ScopeAttributes")
    values = [row[column].values() for column in maps]
    return [row["Body"], row["ServiceName"], *(v or "" for each in values for v in each)]


def _words(pattern: Pattern, value: str) -> bool:
    """The pattern's words equal consecutive tokens of the text (wildcards inside a token)."""
    words = [_tokens(word, substring=False, fold=True) for word in pattern.words()]
    found = text_tokens(value)
    for start in range(len(found) - len(words) + 1):
        if all(_glob(word, found[start + i]) for i, word in enumerate(words)):
            return True
    return False


def _array_elements(value: str) -> list[str]:
    """The scalars of every array in a JSON array value, as their JSON text (strings unquoted)."""
    if not value.startswith("["):
        return []
    try:
        parsed = json.loads(value, parse_float=str, parse_int=str, parse_constant=str)
    except ValueError:
        return []
    out: list[str] = []
    _collect(parsed, out, in_array=False)
    return out


def _collect(node: Any, out: list[str], *, in_array: bool) -> None:
    if isinstance(node, list):
        for item in node:
            _collect(item, out, in_array=True)
    elif isinstance(node, dict):
        for item in node.values():
            _collect(item, out, in_array=False)
    elif in_array:
        out.append(json.dumps(node) if node is None or isinstance(node, bool) else node)


def _regex(field: Field, pattern: str, value: str) -> bool:
    """RE2 itself, as the engines run it: its Unicode case folding and its ``\\s`` (no ``\\v``)."""
    if field.kind is FieldKind.LEVEL:
        pattern = "(?i)" + pattern
    compiled = _re2(pattern)
    if field.kind is FieldKind.BODY:
        return compiled.search(value) is not None
    return compiled.fullmatch(value) is not None


@cache  # the same pattern is tried on every row
def _re2(pattern: str) -> Any:
    return re2.compile(f"(?s){pattern}", re2_options())


def _match_value(field: Field, pattern: Pattern, value: str) -> bool:
    if field.kind is FieldKind.BODY:
        return _words(pattern, value)
    folds = field.kind is FieldKind.LEVEL
    if pattern.is_literal:  # the common case, without the character loop
        needle = ascii_lower(pattern.text) if folds else pattern.text
        if needle == (ascii_lower(value) if folds else value):
            return True
        return field.kind not in (FieldKind.LEVEL, FieldKind.COLUMN) and needle in _array_elements(
            value
        )
    tokens = _tokens(pattern, substring=False, fold=folds)
    if _glob(tokens, ascii_lower(value) if folds else value):
        return True
    return field.kind not in (FieldKind.LEVEL, FieldKind.COLUMN) and any(
        _glob(tokens, element) for element in _array_elements(value)
    )


@cache  # the same pattern is tried on every row
def _tokens(pattern: Pattern, *, substring: bool, fold: bool) -> tuple[_Token, ...]:
    tokens: list[_Token] = []
    for part in pattern.parts:
        tokens.extend((ascii_lower(part) if fold else part) if isinstance(part, str) else [part])
    if substring:
        # A substring search is a whole-value match of *pattern*.
        tokens = [Wildcard.ANY, *tokens, Wildcard.ANY]
    return tuple(tokens)


def _glob(tokens: Sequence[_Token], text: str) -> bool:
    """Classic wildcard matching with single-star backtracking, over code points."""
    t = s = 0
    star, resume = -1, 0
    while s < len(text):
        if t < len(tokens) and tokens[t] is Wildcard.ANY:
            star, resume = t, s
            t += 1
        elif t < len(tokens) and (tokens[t] is Wildcard.ONE or tokens[t] == text[s]):
            t += 1
            s += 1
        elif star >= 0:
            resume += 1
            t, s = star + 1, resume
        else:
            return False
    while t < len(tokens) and tokens[t] is Wildcard.ANY:
        t += 1
    return t == len(tokens)


def _in_range(node: Range, value: str) -> bool:
    if node.numeric:
        if not is_number(value):
            return False
        number = float(value)
        low = None if node.low is None else float(node.low)
        high = None if node.high is None else float(node.high)
        return _between(number, low, high, node)
    return _between(value, node.low, node.high, node)


def _between(value: Any, low: Any, high: Any, node: Range | TimeRange) -> bool:
    if low is not None and (value < low or (value == low and not node.include_low)):
        return False
    return high is None or not (value > high or (value == high and not node.include_high))
