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

import re
from abc import ABC, abstractmethod
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

__all__ = ["Dialect", "compile_where"]

Dialect = Literal["duckdb", "clickhouse"]
# Values are str, float or int; Any lets callers add their own (datetimes, ...) to the dict.
Params = dict[str, Any]

# Inlined into SQL as a literal; make sure that can never need quoting or escaping.
assert "'" not in NUMBER_PATTERN and "\\" not in NUMBER_PATTERN

_SEVERITY_NUMBER: Final = "SeverityNumber"
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


def _ascii_insensitive_regex(pattern: Pattern) -> str:
    """An RE2 pattern matching like the language's ASCII-only case folding.

    Every character other than a letter or digit is written as ``\\x{hex}`` so nothing in the
    user's text can be read as regex syntax.
    """
    out = ["(?s)"]  # '?' and '*' match newlines too, like LIKE does
    for part in pattern.parts:
        if part is Wildcard.ANY:
            out.append(".*")
        elif part is Wildcard.ONE:
            out.append(".")
        else:
            out.extend(_regex_char(ch) for ch in part)
    return "".join(out)


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
                return self.access(field).presence
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
        if field.kind in (FieldKind.RESOURCE, FieldKind.ATTRIBUTE):
            key = self.bind(field.target, "String")
            if field.kind is FieldKind.RESOURCE:
                return self.map_access(key, fallback=False)
            return self.map_access(key, fallback=True)
        if field.target not in WELL_KNOWN_COLUMNS:
            raise ValueError(f"{field.target!r} is not a well-known column")
        return _Access(f"{field.target} <> ''", field.target)

    def match(self, field: Field, pattern: Pattern) -> str:
        access = self.access(field)
        if field.kind is FieldKind.BODY:
            condition = self.contains_ci(access.value, pattern)
        elif field.kind is FieldKind.LEVEL:
            condition = self.equals_ci(access.value, pattern)
        elif pattern.is_literal:
            condition = f"{access.value} = {self.bind(pattern.text, 'String')}"
        else:
            condition = self.like(access.value, _like(pattern))
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
    def map_access(self, key: str, *, fallback: bool) -> _Access: ...

    @abstractmethod
    def contains_ci(self, value: str, pattern: Pattern) -> str: ...

    @abstractmethod
    def equals_ci(self, value: str, pattern: Pattern) -> str: ...

    @abstractmethod
    def like(self, value: str, like_pattern: str) -> str: ...

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

    def map_access(self, key: str, *, fallback: bool) -> _Access:
        if not fallback:
            return _Access(
                f"map_contains(ResourceAttributes, {key})",
                f"COALESCE(ResourceAttributes[{key}], '')",
            )
        presence = (
            f"(map_contains(LogAttributes, {key}) OR map_contains(ResourceAttributes, {key}))"
        )
        value = (
            f"COALESCE(CASE WHEN map_contains(LogAttributes, {key}) THEN LogAttributes[{key}] "
            f"ELSE ResourceAttributes[{key}] END, '')"
        )
        return _Access(presence, value)

    def contains_ci(self, value: str, pattern: Pattern) -> str:
        regex = self.bind(_ascii_insensitive_regex(pattern), "String")
        return f"regexp_matches({value}, {regex})"

    def equals_ci(self, value: str, pattern: Pattern) -> str:
        regex = self.bind(_ascii_insensitive_regex(pattern), "String")
        return f"regexp_full_match({value}, {regex})"

    def like(self, value: str, like_pattern: str) -> str:
        return f"{value} LIKE {self.bind(like_pattern, 'String')} ESCAPE '\\'"

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

    def map_access(self, key: str, *, fallback: bool) -> _Access:
        if not fallback:
            return _Access(f"mapContains(ResourceAttributes, {key})", f"ResourceAttributes[{key}]")
        presence = f"(mapContains(LogAttributes, {key}) OR mapContains(ResourceAttributes, {key}))"
        value = (
            f"if(mapContains(LogAttributes, {key}), LogAttributes[{key}], "
            f"ResourceAttributes[{key}])"
        )
        return _Access(presence, value)

    def contains_ci(self, value: str, pattern: Pattern) -> str:
        if pattern.is_literal:
            # ASCII-only case folding, a plain substring search: the fast path.
            return f"positionCaseInsensitive({value}, {self.bind(pattern.text, 'String')}) > 0"
        like_pattern = "%" + _like(pattern, lower=True) + "%"
        return f"lower({value}) LIKE {self.bind(like_pattern, 'String')}"

    def equals_ci(self, value: str, pattern: Pattern) -> str:
        # ClickHouse's lower() folds ASCII only, which is exactly the language's folding.
        if pattern.is_literal:
            return f"lower({value}) = {self.bind(ascii_lower(pattern.text), 'String')}"
        return f"lower({value}) LIKE {self.bind(_like(pattern, lower=True), 'String')}"

    def like(self, value: str, like_pattern: str) -> str:
        return f"{value} LIKE {self.bind(like_pattern, 'String')}"

    def is_number(self, value: str) -> str:
        return f"match({value}, '^(?:{NUMBER_PATTERN})$')"

    def to_number(self, value: str) -> str:
        return f"toFloat64OrNull({value})"
