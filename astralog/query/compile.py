"""AST -> a SQL WHERE fragment plus bound parameters, for DuckDB and for ClickHouse.

The promise: no user text ever becomes SQL text. Values *and* attribute keys travel as bound
parameters (``$p0`` for DuckDB, server-side ``{p0:String}`` for ClickHouse through
clickhouse-connect); the only identifiers written are the fixed columns of the well-known field
map, and the only literals written are this module's own constants.

Both dialects implement the semantics in :mod:`astralog.query.language` exactly; where the
engines differ underneath, the SQL spells out the behaviour instead of relying on a default:

* A missing map key reads as NULL in DuckDB but as ``''`` in ClickHouse, so presence is always
  tested explicitly (``map_contains`` / ``mapContains``) and a predicate is only applied to a
  value that is there; a null value in a map reads as ``''`` like in ClickHouse.
* ``lower``, ``ILIKE`` and ``(?i)`` fold Unicode differently in each engine; the language folds
  ASCII only, which ClickHouse spells ``lower``/``positionCaseInsensitive`` and DuckDB spells as
  an RE2 pattern with ``[aA]`` classes (``translate`` would be ~20x slower).
* ``TRY_CAST`` accepts ``' 5'`` and ``'1_000'`` where ``toFloat64OrNull`` does not, so a value
  must match :data:`~astralog.query.language.NUMBER_PATTERN` before it is cast. (ClickHouse's
  default fast float parser may round numbers with more than ~15 significant digits one ulp
  differently from DuckDB and Python; values that close to a bound are out of the contract.)
"""

from __future__ import annotations

import json
import re
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final, Literal

from astralog.query.language import (
    NUMBER_PATTERN,
    WELL_KNOWN_COLUMNS,
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
)
from astralog.query.tokens import SEPARATOR_CLASS, WORD_CLASS

__all__ = ["Dialect", "compile_where"]

Dialect = Literal["duckdb", "clickhouse"]
# Values are str, float or int; Any lets callers add their own (datetimes, ...) to the dict.
Params = dict[str, Any]

# Inlined into SQL as a literal; make sure that can never need quoting or escaping.
assert "'" not in NUMBER_PATTERN and "\\" not in NUMBER_PATTERN

_SEVERITY_NUMBER: Final = "SeverityNumber"
# What free text over every field reads (besides the body): a fixed list of column names.
_EVERY_COLUMN: Final = ("Body", "ServiceName")
_EVERY_MAP: Final = ("LogAttributes", "ResourceAttributes", "ScopeAttributes")
_JSON_NUMBER: Final = re.compile(r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][-+]?[0-9]+)?")
# Letters only, so "<prefix><n>" names from two different prefixes can never collide.
_PREFIX: Final = re.compile(r"[A-Za-z_]+")


def compile_where(node: Node, dialect: Dialect, *, param_prefix: str = "p") -> tuple[str, Params]:
    """Return ``(where_fragment, parameters)``; parameters are named ``p0``, ``p1``, ...

    DuckDB: ``con.execute(f"SELECT ... WHERE {where}", params)``. DuckDB cannot mix ``?``
    and ``$name`` in one statement, so the rest of the statement binds by name too; choose
    another ``param_prefix`` to combine two compiled fragments in one statement.
    ClickHouse: ``client.query(f"SELECT ... WHERE {where}", parameters=params)``.
    """
    if dialect not in ("duckdb", "clickhouse"):
        raise ValueError(f"unknown SQL dialect {dialect!r}")
    if not _PREFIX.fullmatch(param_prefix):
        raise ValueError(f"parameter prefix {param_prefix!r} must be letters or '_' only")
    compiler: _Compiler = (_DuckDB if dialect == "duckdb" else _ClickHouse)(param_prefix)
    return compiler.node(node), compiler.params


@dataclass(frozen=True)
class _Access:
    """How to read a field: ``value`` is a non-NULL string wherever ``presence`` holds."""

    presence: str
    value: str


def _like(pattern: Pattern, *, lower: bool = False) -> str:
    """A LIKE pattern with backslash escapes, valid in both engines."""
    out: list[str] = []
    for part in pattern.parts:
        if part is Wildcard.ANY:
            out.append("%")
        elif part is Wildcard.ONE:
            out.append("_")
        else:
            text = ascii_lower(part) if lower else part
            out.append(text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_"))
    return "".join(out)


def _glob_regex(pattern: Pattern) -> str:
    """An RE2 pattern (for a full match) meaning what the wildcard pattern means, exactly.

    DuckDB's LIKE backtracks: a few ``%`` over a long value cost seconds, a few dozen never
    finish. RE2 runs in time linear in the value whatever the pattern."""
    return "(?s)" + _translate(pattern, ".", _exact_text)


def _translate(pattern: Pattern, one: str, literal: Callable[[str], str]) -> str:
    """RE2 for a wildcard pattern: ``one`` (one character) for ``?``, any run of it for ``*``,
    ``literal`` for the text between them."""
    return "".join(
        f"{one}*" if part is Wildcard.ANY else one if part is Wildcard.ONE else literal(part)
        for part in pattern.parts
    )


def _exact_text(text: str) -> str:
    return "".join(_exact_char(ch) for ch in text)


def _folded_text(text: str) -> str:
    return "".join(_regex_char(ch) for ch in text)


def _ascii_insensitive_regex(pattern: Pattern) -> str:
    """An RE2 pattern matching like the language's ASCII-only case folding.

    Every character other than a letter or digit is written as ``\\x{hex}`` so nothing in the
    user's text can be read as regex syntax.
    """
    return "(?s)" + _translate(pattern, ".", _folded_text)  # ? and * match newlines too


def _words_regex(pattern: Pattern) -> str:
    """RE2 for the pattern's words as consecutive whole tokens (:mod:`astralog.query.tokens`)."""
    words = [_word_regex(word) for word in pattern.words()]
    return (
        f"(?:^|{SEPARATOR_CLASS})" + f"{SEPARATOR_CLASS}+".join(words) + f"(?:{SEPARATOR_CLASS}|$)"
    )


def _word_regex(word: Pattern) -> str:
    if all(part is Wildcard.ANY for part in word.parts):
        return WORD_CLASS + "+"  # a word is never empty
    return _translate(word, WORD_CLASS, _folded_text)


def _array_element_regex(value: str) -> str:
    """RE2 finding ``value`` as an element of a JSON array (as ingest writes it: compact JSON).

    Inside a JSON string every ``"`` is escaped, so a quote right after ``[`` or ``,`` opens an
    element; object keys are followed by ``:`` and object values follow one, so neither matches.
    """
    forms = [json.dumps(value, ensure_ascii=False)]
    if _JSON_NUMBER.fullmatch(value) or value in ("true", "false", "null"):
        forms.append(value)
    alternatives = "|".join(_exact_text(form) for form in forms)
    return f"[\\[,](?:{alternatives})[,\\]]"


_JSON_CHAR = r'(?:[^"\\]|\\u[0-9a-fA-F]{4}|\\[^u])'  # one character inside a JSON string
_BARE_CHAR = r'[^"\[\]{},:]'  # one character of a number, true, false or null


def _array_element_glob_regex(pattern: Pattern) -> str:
    """RE2 finding an element of a compact JSON array that the wildcard pattern matches whole:
    a string element by its text (its JSON escapes count as one character each), a number or
    ``true``/``false``/``null`` as written, like :func:`_array_element_regex` for a literal."""
    quoted = _translate(
        pattern, _JSON_CHAR, lambda text: _exact_text(json.dumps(text, ensure_ascii=False)[1:-1])
    )
    bare = _translate(pattern, _BARE_CHAR, _exact_text)
    return f'[\\[,](?:"{quoted}"|{bare})[,\\]]'


def _exact_char(ch: str) -> str:
    return ch if ch.isascii() and ch.isalnum() else f"\\x{{{ord(ch):x}}}"


def _regex_char(ch: str) -> str:
    if ch.isascii() and ch.isalpha():
        return f"[{ch.lower()}{ch.upper()}]"
    if ch.isascii() and ch.isdigit():
        return ch
    return f"\\x{{{ord(ch):x}}}"


class _Compiler(ABC):
    """Walks the AST; subclasses supply each engine's spelling of the primitives."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.params: Params = {}

    def bind(self, value: str | float | int, ch_type: str) -> str:
        name = f"{self.prefix}{len(self.params)}"
        self.params[name] = value
        return self.placeholder(name, ch_type)

    def node(self, node: Node) -> str:
        field = getattr(node, "field", None)
        if isinstance(field, Field) and field.keys is not None:
            return self.any_entry(field, "TRUE" if isinstance(node, Exists) else self.leaf(node))
        return self.leaf(node)

    def any_entry(self, field: Field, condition: str) -> str:
        """A field-name wildcard: some log or resource attribute whose key matches holds."""
        assert field.keys is not None
        return "(" + " OR ".join(self.entry(m, field.keys, condition) for m in field.maps) + ")"

    def leaf(self, node: Node) -> str:
        match node:
            case MatchAll():
                return "TRUE"
            case And(operands):
                return "(" + " AND ".join(self.node(o) for o in operands) + ")"
            case Or(operands):
                return "(" + " OR ".join(self.node(o) for o in operands) + ")"
            case Not(operand):
                return f"(NOT {self.node(operand)})"
            case Exists(field):
                return self.exists(field)
            case Match(field, pattern) if field.kind is FieldKind.ALL:
                return self.every_field(pattern)
            case Match(field, pattern):
                return self.match(field, pattern)
            case Range():
                return self.range(node)
            case Severity(low, high):
                return self.severity(low, high)
            case Regex(field, pattern):
                return self.regex(field, pattern)
            case TimeRange():
                return self.time_range(node)
        raise TypeError(f"not a query node: {node!r}")

    def access(self, field: Field) -> _Access:
        if field.keys is not None:  # inside any_entry: the entry's value
            return _Access("TRUE", self.entry_value())
        if field.maps:
            return self.map_access(self.bind(field.target, "String"), field.maps)
        if field.target not in WELL_KNOWN_COLUMNS:
            raise ValueError(f"{field.target!r} is not a well-known column")
        return _Access(f"{field.target} <> ''", field.target)

    def exists(self, field: Field) -> str:
        """A column that is set; a map key, or a flattened map under it (``key.*``)."""
        if not field.maps:
            return self.access(field).presence
        nested = self.bind(field.target + ".", "String")
        under = " OR ".join(self.has_key_prefix(column, nested) for column in field.maps)
        return f"({self.access(field).presence} OR {under})"

    def every_field(self, pattern: Pattern) -> str:
        """Free text over the body, the service and every attribute value (``*:word``)."""
        columns = [self.words(column, pattern) for column in _EVERY_COLUMN]
        regex = self.bind(_words_regex(pattern), "String")
        values = [self.any_value_matches(column, regex) for column in _EVERY_MAP]
        return "(" + " OR ".join(columns + values) + ")"

    def match(self, field: Field, pattern: Pattern) -> str:
        access = self.access(field)
        if field.kind is FieldKind.BODY:
            condition = self.words(access.value, pattern)
        elif field.kind is FieldKind.LEVEL:
            condition = self.equals_ci(access.value, pattern)
        elif pattern.is_literal:
            condition = f"{access.value} = {self.bind(pattern.text, 'String')}"
            if field.maps:  # an array holding the value matches too
                element = self.bind(_array_element_regex(pattern.text), "String")
                condition = f"({condition} OR {self.array_holds(access.value, element)})"
        else:
            condition = self.glob(access.value, pattern)
            if field.maps:  # an array with an element the pattern matches too
                element = self.bind(_array_element_glob_regex(pattern), "String")
                condition = f"({condition} OR {self.array_holds(access.value, element)})"
        is_column = field.kind in (FieldKind.BODY, FieldKind.LEVEL, FieldKind.COLUMN)
        if is_column and pattern.needs_a_character():
            # A missing column is '', which this pattern cannot match: presence is implied,
            # and a bare column predicate keeps min/max and primary-key pruning available.
            return condition
        return f"({access.presence} AND {condition})"

    def range(self, node: Range) -> str:
        access = self.access(node.field)
        conditions = [access.presence]
        value = access.value
        ch_type = "String"
        if node.numeric:
            conditions.append(self.is_number(value))
            value, ch_type = self.to_number(value), "Float64"
        for bound, op in ((node.low, ">"), (node.high, "<")):
            if bound is None:
                continue
            inclusive = node.include_low if op == ">" else node.include_high
            bound_value: str | float = float(bound) if node.numeric else bound
            comparator = op + ("=" if inclusive else "")
            conditions.append(f"{value} {comparator} {self.bind(bound_value, ch_type)}")
        return "(" + " AND ".join(conditions) + ")"

    def severity(self, low: int | None, high: int | None) -> str:
        conditions = [f"{_SEVERITY_NUMBER} > 0"]  # 0 is "unknown", never in a range
        if low is not None:
            conditions.append(f"{_SEVERITY_NUMBER} >= {self.bind(low, 'UInt8')}")
        if high is not None:
            conditions.append(f"{_SEVERITY_NUMBER} <= {self.bind(high, 'UInt8')}")
        return "(" + " AND ".join(conditions) + ")"

    def regex(self, field: Field, pattern: str) -> str:
        """RE2 in both engines; '.' crosses newlines in both (ClickHouse's default)."""
        access = self.access(field)
        if field.kind is FieldKind.LEVEL:  # level matches ignore case, regexes too
            pattern = f"(?i){pattern}"
        if field.kind is FieldKind.BODY:
            condition = self.regex_search(access.value, f"(?s){pattern}")
        else:
            condition = self.regex_search(access.value, f"(?s)^(?:{pattern})$")
        return f"({access.presence} AND {condition})"

    def time_range(self, node: TimeRange) -> str:
        conditions = ["TRUE"]
        for bound, op, inclusive in (
            (node.low_us, ">", node.include_low),
            (node.high_us, "<", node.include_high),
        ):
            if bound is not None:
                comparator = op + ("=" if inclusive else "")
                conditions.append(f"{self.micros()} {comparator} {self.bind(bound, 'Int64')}")
        return "(" + " AND ".join(conditions) + ")"

    @abstractmethod
    def placeholder(self, name: str, ch_type: str) -> str: ...

    @abstractmethod
    def regex_search(self, value: str, pattern: str) -> str: ...

    @abstractmethod
    def micros(self) -> str: ...

    @abstractmethod
    def map_access(self, key: str, maps: tuple[str, ...]) -> _Access: ...

    @abstractmethod
    def has_key_prefix(self, column: str, prefix: str) -> str: ...

    @abstractmethod
    def entry(self, column: str, keys: Pattern, condition: str) -> str: ...

    @abstractmethod
    def entry_value(self) -> str: ...

    @abstractmethod
    def any_value_matches(self, column: str, regex: str) -> str: ...

    @abstractmethod
    def array_holds(self, value: str, element_regex: str) -> str: ...

    @abstractmethod
    def words(self, value: str, pattern: Pattern) -> str: ...

    @abstractmethod
    def equals_ci(self, value: str, pattern: Pattern) -> str: ...

    @abstractmethod
    def glob(self, value: str, pattern: Pattern) -> str: ...

    @abstractmethod
    def is_number(self, value: str) -> str: ...

    @abstractmethod
    def to_number(self, value: str) -> str: ...


class _DuckDB(_Compiler):
    def placeholder(self, name: str, ch_type: str) -> str:
        return f"${name}"

    def regex_search(self, value: str, pattern: str) -> str:
        return f"regexp_matches({value}, {self.bind(pattern, 'String')})"

    def micros(self) -> str:
        return "epoch_us(Timestamp)"

    def map_access(self, key: str, maps: tuple[str, ...]) -> _Access:
        presence = " OR ".join(f"map_contains({m}, {key})" for m in maps)
        value = f"{maps[-1]}[{key}]"
        for m in reversed(maps[:-1]):
            value = f"CASE WHEN map_contains({m}, {key}) THEN {m}[{key}] ELSE {value} END"
        return _Access(f"({presence})", f"COALESCE({value}, '')")

    def has_key_prefix(self, column: str, prefix: str) -> str:
        return f"len(list_filter(map_keys({column}), lambda k: starts_with(k, {prefix}))) > 0"

    def entry(self, column: str, keys: Pattern, condition: str) -> str:
        regex = self.bind(_glob_regex(keys), "String")
        matching = f"lambda e: regexp_full_match(e.key, {regex}) AND {condition}"
        return f"len(list_filter(map_entries({column}), {matching})) > 0"

    def entry_value(self) -> str:
        return "COALESCE(e.value, '')"

    def any_value_matches(self, column: str, regex: str) -> str:
        matching = f"lambda v: regexp_matches(COALESCE(v, ''), {regex})"
        return f"len(list_filter(map_values({column}), {matching})) > 0"

    def array_holds(self, value: str, element_regex: str) -> str:
        return (
            f"(starts_with({value}, '[') AND json_valid({value}) "
            f"AND regexp_matches({value}, {element_regex}))"
        )

    def words(self, value: str, pattern: Pattern) -> str:
        return f"regexp_matches({value}, {self.bind(_words_regex(pattern), 'String')})"

    def equals_ci(self, value: str, pattern: Pattern) -> str:
        regex = self.bind(_ascii_insensitive_regex(pattern), "String")
        return f"regexp_full_match({value}, {regex})"

    def glob(self, value: str, pattern: Pattern) -> str:
        return f"regexp_full_match({value}, {self.bind(_glob_regex(pattern), 'String')})"

    def is_number(self, value: str) -> str:
        return f"regexp_full_match({value}, '{NUMBER_PATTERN}')"

    def to_number(self, value: str) -> str:
        return f"TRY_CAST({value} AS DOUBLE)"


class _ClickHouse(_Compiler):
    def placeholder(self, name: str, ch_type: str) -> str:
        return f"{{{name}:{ch_type}}}"

    def regex_search(self, value: str, pattern: str) -> str:
        return f"match({value}, {self.bind(pattern, 'String')})"

    def micros(self) -> str:
        return "toUnixTimestamp64Micro(Timestamp)"

    def map_access(self, key: str, maps: tuple[str, ...]) -> _Access:
        presence = " OR ".join(f"mapContains({m}, {key})" for m in maps)
        value = f"{maps[-1]}[{key}]"
        for m in reversed(maps[:-1]):
            value = f"if(mapContains({m}, {key}), {m}[{key}], {value})"
        return _Access(f"({presence})", value)

    def has_key_prefix(self, column: str, prefix: str) -> str:
        return f"arrayExists(k -> startsWith(k, {prefix}), mapKeys({column}))"

    def entry(self, column: str, keys: Pattern, condition: str) -> str:
        # ClickHouse compiles LIKE to RE2 (linear), unlike DuckDB.
        pattern = self.bind(_like(keys), "String")
        return (
            f"arrayExists((k, v) -> k LIKE {pattern} AND {condition}, "
            f"mapKeys({column}), mapValues({column}))"
        )

    def entry_value(self) -> str:
        return "v"

    def any_value_matches(self, column: str, regex: str) -> str:
        return f"arrayExists(v -> match(v, {regex}), mapValues({column}))"

    def array_holds(self, value: str, element_regex: str) -> str:
        return (
            f"(startsWith({value}, '[') AND isValidJSON({value}) "
            f"AND match({value}, {element_regex}))"
        )

    def words(self, value: str, pattern: Pattern) -> str:
        """Whole words: ``hasToken`` on each complete word lets a ``tokenbf_v1`` index on
        ``lower(Body)`` skip granules; the regex then checks order, adjacency and partial words.
        ClickHouse's ``lower`` folds ASCII only and ``hasToken`` splits like
        :mod:`astralog.query.tokens`, so a single whole word needs nothing more."""
        words = pattern.words()
        checks = [
            f"hasToken(lower({value}), {self.bind(ascii_lower(word.text), 'String')})"
            for word in words
            if word.is_literal
        ]
        if len(words) > 1 or not words[0].is_literal:
            checks.append(f"match({value}, {self.bind(_words_regex(pattern), 'String')})")
        return "(" + " AND ".join(checks) + ")"

    def equals_ci(self, value: str, pattern: Pattern) -> str:
        # ClickHouse's lower() folds ASCII only, which is exactly the language's folding.
        if pattern.is_literal:
            return f"lower({value}) = {self.bind(ascii_lower(pattern.text), 'String')}"
        return f"lower({value}) LIKE {self.bind(_like(pattern, lower=True), 'String')}"

    def glob(self, value: str, pattern: Pattern) -> str:
        return f"{value} LIKE {self.bind(_like(pattern), 'String')}"

    def is_number(self, value: str) -> str:
        return f"match({value}, '^(?:{NUMBER_PATTERN})$')"

    def to_number(self, value: str) -> str:
        return f"toFloat64OrNull({value})"
