"""Query text -> a small frozen AST: the first stage of the query path.

The syntax is the Kibana/Datadog one engineers already type::

    level:error service:api "timeout" -health status>=500 host:web-* user.id:(42 OR 43)

Grammar (juxtaposition means AND; AND binds tighter than OR; keywords are upper case)::

    query   := [or]                                  empty query -> MatchAll
    or      := and ("OR" and)*
    and     := unary (["AND"] unary)*
    unary   := ("-" | "NOT")* primary                 -a, NOT a; an even count cancels out
    primary := "(" or ")" | PHRASE | WORD             free text: words of the Body
             | ("*" | "_all") ":" value               words of every field (no ranges)
             | "_exists_:" NAME
             | NAME ":" value | NAME CMP VALUE         CMP is one of >= > <= <
    value   := "(" or ")"                             field:(a OR b): the field applies inside
             | ("[" | "{") BOUND "TO" BOUND ("]" | "}")   inclusive / exclusive, "*" is open
             | CMP VALUE | PHRASE | WORD

Field names are made of letters, digits and ``_ . - @ /``. Any character of a word can be
escaped with a backslash; a phrase is ``"..."`` with ``\\"`` and ``\\\\`` inside.

Semantics (tests/reference_filter.py, DuckDB and ClickHouse implement exactly this)
----------------------------------------------------------------------------------

========= =========================== ===================== ================================
kind      fields                      missing when          ``field:value`` matches
========= =========================== ===================== ================================
body      free text, ``body``,        ``Body = ''``         *words* (below)
          ``message``
all       ``*``, ``_all``             never                 words of Body, ServiceName or
                                                            any value of the three maps
level     ``level``, ``severity``     ``SeverityText = ''`` case-insensitive whole value
column    ``service`` ``source``      the column is ``''``  exact whole value, case-sensitive
          ``event_id`` ``scope``                            (for ids the query value is
          ``trace_id`` ``span_id``                          lower-cased first: ids are stored
          ``event_name``                                    as lowercase hex)
resource  ``host`` (``host.name``),   key not in            exact, case-sensitive
          ``resource.<key>``          ResourceAttributes
attribute any other name, ``a.b``     key in neither map    exact, case-sensitive, on
                                                            LogAttributes['a.b'], else on
                                                            ResourceAttributes['a.b']
log attr  ``attributes.<key>``        key not in            exact, on LogAttributes only
                                      LogAttributes
scope     ``scope.<key>``             key not in            exact, on ScopeAttributes only
attr                                  ScopeAttributes
any attr  a name with ``*`` or ``?``  no key matches in     exact, on *some* entry of
          (``machine.os*``)           either map            LogAttributes or
                                                            ResourceAttributes whose key
                                                            matches the name
========= =========================== ===================== ================================

* *Words* (:mod:`astralog.query.tokens`): a token is a run of ASCII letters, digits and
  non-ASCII characters; everything else separates tokens. A term or phrase is split the same
  way and matches where its words equal *consecutive* tokens of the text, ASCII case folded:
  ``fox`` finds "The Fox!" but not "firefox"; ``"quick brown"`` and ``quick-brown`` both find
  "Quick_brown". A wildcard stays inside its word and matches word characters only (``fox*``
  is words starting with fox, ``*fox*`` words containing it), as Elasticsearch's wildcards on
  analysed text work per token. A term with no letter or digit is refused (use a regex).
* *Namespaces*: ``attributes.``, ``resource.`` and ``scope.`` read one map, so a reserved name
  never hides an attribute (``attributes.trace_id``, ``attributes.message``). To reach a log
  attribute whose key itself starts with such a prefix, write ``attributes.resource.x``.
* *Arrays* are stored as compact JSON text; an exact value on an attribute also matches an
  array holding it as an element, at any depth of arrays (strings compare unquoted, numbers,
  ``true``, ``false`` and ``null`` as written). Wildcards, ranges and regexes see the JSON text.
* *Field-name wildcards* (Lucene's ``machine.os*:win``, ``book.\\*:x``): ``*`` and ``?`` in a
  field name match any run of characters / one character of an attribute key; as in
  Elasticsearch a star is a wildcard there even when escaped. Every other construct works on
  such a field (ranges, regexes, ``field:*``, ``_exists_:machine.os*``); ``-field*:v`` means
  no matching key holds v.
* *Maps* are flattened into dotted keys at ingest; ``_exists_:m`` (and ``m:*``) holds when the
  key ``m`` or any key under ``m.`` is present.
* *Regexes on level* ignore case like every other level match: ``level:/info/`` finds "INFO".

* *Case-insensitive* folds the ASCII letters A-Z only; every other character must match exactly.
  It is the one folding DuckDB, ClickHouse and Python perform identically (their Unicode tables
  disagree on U+0130, final sigma and recently added letters), so results never depend on the
  engine.
* *Wildcards*: an unquoted, unescaped ``*`` is any run of characters (possibly none), ``?`` is
  exactly one character. Quoted or escaped, they are literal. ``field:*`` is ``_exists_:field``;
  a lone ``*`` matches every event.
* *Comparisons and ranges* are numeric when every bound is a number (:data:`NUMBER_PATTERN`):
  a value then matches only if it is itself such a number, compared as float64, so a
  non-numeric value simply does not match. Otherwise they compare strings by code point
  (UTF-8 byte order in both engines). On ``level`` they compare SeverityNumber with the OTel
  ranges (TRACE 1-4, DEBUG 5-8, INFO 9-12, WARN 13-16, ERROR 17-20, FATAL 21-24; aliases
  warning, err, critical; or a number 1-24): ``level>=warn`` is ``>= 13``, ``level>warn`` is
  ``>= 17``, ``level<=error`` is ``<= 20``, ``level<error`` is ``<= 16``; SeverityNumber 0
  (unknown) matches no comparison.
* *Missing fields* match no positive predicate, so every negated one: ``-service:api`` matches
  events without a service. Logic is two-valued; nothing is ever NULL. A map value stored as
  null counts as present and empty.

Limits (:class:`Limits`) on length, nesting and number of terms are syntax errors, never crashes;
every error is a :class:`~astralog.errors.SyntaxErrorAt` with the 0-based position and a hint.
"""

from __future__ import annotations

import re
import string
import time
from dataclasses import dataclass
from enum import Enum, StrEnum
from typing import Final, TypeAlias

import re2

from astralog.errors import BadRequest, SyntaxErrorAt
from astralog.query.timerange import ROUNDING_UNITS_NS, parse_instant
from astralog.query.tokens import is_word_character

__all__ = [
    "ALL_FIELDS",
    "BODY",
    "DEFAULT_LIMITS",
    "MAP_COLUMNS",
    "NUMBER_PATTERN",
    "SEVERITY_RANGES",
    "WELL_KNOWN_COLUMNS",
    "And",
    "Exists",
    "Field",
    "FieldKind",
    "Limits",
    "Match",
    "MatchAll",
    "Node",
    "Not",
    "Or",
    "Pattern",
    "Query",
    "Range",
    "Regex",
    "Severity",
    "TimeRange",
    "Wildcard",
    "ascii_lower",
    "is_number",
    "parse",
    "parse_query",
    "resolve_field",
]

# Written into SQL as a literal by the compiler, so it holds no quote and no backslash.
NUMBER_PATTERN: Final = r"[-+]?(?:[0-9]+(?:[.][0-9]*)?|[.][0-9]+)(?:[eE][-+]?[0-9]+)?"
_NUMBER: Final = re.compile(NUMBER_PATTERN)

_ASCII_LOWER: Final = str.maketrans(string.ascii_uppercase, string.ascii_lowercase)

SEVERITY_RANGES: Final[dict[str, tuple[int, int]]] = {
    "trace": (1, 4),
    "debug": (5, 8),
    "info": (9, 12),
    "warn": (13, 16),
    "warning": (13, 16),
    "error": (17, 20),
    "err": (17, 20),
    "fatal": (21, 24),
    "critical": (21, 24),
}


def is_number(text: str) -> bool:
    """True when ``text`` is a number both engines and Python parse to the same float64."""
    return _NUMBER.fullmatch(text) is not None


def ascii_lower(text: str) -> str:
    """Lower-case A-Z only: the case folding of the language (see the module docstring)."""
    return text.translate(_ASCII_LOWER)


@dataclass(frozen=True)
class Limits:
    """What one query may cost the parser; beyond it the query is refused with a 400."""

    max_length: int = 4096
    max_depth: int = 32
    max_terms: int = 256
    max_wildcards: int = 64  # per value or field-name pattern: each one grows the RE2 program

    def __post_init__(self) -> None:
        # Each level of parentheses costs a few Python frames; stay far from the stack limit.
        if not 1 <= self.max_depth <= 100:
            raise ValueError("max_depth must be between 1 and 100")


class FieldKind(StrEnum):
    BODY = "body"
    LEVEL = "level"
    COLUMN = "column"
    RESOURCE = "resource"  # ResourceAttributes only (``host``, ``resource.<key>``)
    ATTRIBUTE = "attribute"  # LogAttributes, else ResourceAttributes (an unprefixed name)
    LOG_ATTRIBUTE = "log_attribute"  # LogAttributes only (``attributes.<key>``)
    SCOPE_ATTRIBUTE = "scope_attribute"  # ScopeAttributes only (``scope.<key>``)
    ANY_ATTRIBUTE = "any_attribute"  # ``machine.os*``: every log or resource key matching
    ALL = "all"  # ``*:`` / ``_all:``: the body and every attribute value


# The maps each attribute kind reads, in order: the first that holds the key gives the value.
MAP_COLUMNS: Final[dict[FieldKind, tuple[str, ...]]] = {
    FieldKind.RESOURCE: ("ResourceAttributes",),
    FieldKind.ATTRIBUTE: ("LogAttributes", "ResourceAttributes"),
    FieldKind.LOG_ATTRIBUTE: ("LogAttributes",),
    FieldKind.SCOPE_ATTRIBUTE: ("ScopeAttributes",),
    FieldKind.ANY_ATTRIBUTE: ("LogAttributes", "ResourceAttributes"),
}


@dataclass(frozen=True)
class Field:
    """A resolved field: ``target`` is a column (body, level, column) or a map key; ``keys``
    is the key pattern of a field-name wildcard (kind ANY_ATTRIBUTE)."""

    name: str
    kind: FieldKind
    target: str
    keys: Pattern | None = None

    @property
    def maps(self) -> tuple[str, ...]:
        """The map columns an attribute field reads (empty for a column)."""
        return MAP_COLUMNS.get(self.kind, ())


BODY: Final = Field("body", FieldKind.BODY, "Body")
ALL_FIELDS: Final = Field("*", FieldKind.ALL, "")

_WELL_KNOWN: Final[dict[str, tuple[FieldKind, str]]] = {
    "body": (FieldKind.BODY, "Body"),
    "message": (FieldKind.BODY, "Body"),
    "level": (FieldKind.LEVEL, "SeverityText"),
    "severity": (FieldKind.LEVEL, "SeverityText"),
    "service": (FieldKind.COLUMN, "ServiceName"),
    "trace_id": (FieldKind.COLUMN, "TraceId"),
    "span_id": (FieldKind.COLUMN, "SpanId"),
    "source": (FieldKind.COLUMN, "SourceId"),
    "event_id": (FieldKind.COLUMN, "EventId"),
    "scope": (FieldKind.COLUMN, "ScopeName"),
    "event_name": (FieldKind.COLUMN, "EventName"),
    "host": (FieldKind.RESOURCE, "host.name"),
}

# The only column names that may ever be written into SQL text.
WELL_KNOWN_COLUMNS: Final = frozenset(
    target for kind, target in _WELL_KNOWN.values() if kind is not FieldKind.RESOURCE
)

# Ids are stored as lowercase hex; people paste them in any case.
_LOWERCASE_VALUES: Final = frozenset({"trace_id", "span_id"})


# Explicit namespaces: the key after the prefix is read in that one map, so a well-known name
# never hides an attribute (``attributes.trace_id``, ``resource.k8s.pod.name``).
_NAMESPACES: Final = {
    "attributes.": FieldKind.LOG_ATTRIBUTE,
    "resource.": FieldKind.RESOURCE,
    "scope.": FieldKind.SCOPE_ATTRIBUTE,
}


def resolve_field(name: str) -> Field:
    """Map a field name as typed to what it reads; unknown names are attributes."""
    if name in ("*", "_all"):
        return Field(name, FieldKind.ALL, "")
    for prefix, kind in _NAMESPACES.items():
        if name.startswith(prefix) and len(name) > len(prefix):
            return Field(name, kind, name[len(prefix) :])
    kind, target = _WELL_KNOWN.get(name, (FieldKind.ATTRIBUTE, name))
    return Field(name, kind, target)


class Wildcard(Enum):
    ANY = "*"
    ONE = "?"


@dataclass(frozen=True)
class Pattern:
    """A value: literal text runs and wildcards, in order."""

    parts: tuple[str | Wildcard, ...]

    @classmethod
    def literal(cls, text: str) -> Pattern:
        return cls((text,) if text else ())

    @property
    def is_literal(self) -> bool:
        return all(isinstance(part, str) for part in self.parts)

    @property
    def text(self) -> str:
        """The literal text (wildcards shown as ``*`` / ``?``)."""
        return "".join(p if isinstance(p, str) else p.value for p in self.parts)

    def words(self) -> tuple[Pattern, ...]:
        """The pattern as consecutive words (:mod:`astralog.query.tokens`): separators split it
        and are dropped; a wildcard stays inside its word and matches word characters only."""
        words: list[list[str | Wildcard]] = [[]]
        for part in self.parts:
            if isinstance(part, Wildcard):
                words[-1].append(part)
                continue
            for ch in part:
                if is_word_character(ch):
                    words[-1].append(ch)
                elif words[-1]:
                    words.append([])
        return tuple(_joined(word) for word in words if word)

    def needs_a_character(self) -> bool:
        """True when no empty value can match (so presence of a column is implied)."""
        return any(part == Wildcard.ONE or (isinstance(part, str) and part) for part in self.parts)


def _joined(chars: list[str | Wildcard]) -> Pattern:
    """Characters and wildcards -> a pattern with literal runs merged."""
    parts: list[str | Wildcard] = []
    for item in chars:
        if isinstance(item, str) and parts and isinstance(parts[-1], str):
            parts[-1] += item
        else:
            parts.append(item)
    return Pattern(tuple(parts))


@dataclass(frozen=True)
class MatchAll:
    pass


@dataclass(frozen=True)
class Match:
    field: Field
    pattern: Pattern


@dataclass(frozen=True)
class Exists:
    field: Field


@dataclass(frozen=True)
class Range:
    """``low``/``high`` of None are open; ``numeric`` when every given bound is a number."""

    field: Field
    low: str | None
    high: str | None
    include_low: bool
    include_high: bool
    numeric: bool


@dataclass(frozen=True)
class Severity:
    """SeverityNumber in ``[low, high]`` (inclusive, None is open), never 0 (unknown)."""

    low: int | None
    high: int | None


@dataclass(frozen=True)
class Regex:
    """An RE2 pattern (without delimiters): found anywhere in the body, else the whole value."""

    field: Field
    pattern: str


@dataclass(frozen=True)
class TimeRange:
    """The event time in microseconds since the epoch within bounds (None is open)."""

    low_us: int | None
    high_us: int | None
    include_low: bool
    include_high: bool


@dataclass(frozen=True)
class Not:
    operand: Node


@dataclass(frozen=True)
class And:
    operands: tuple[Node, ...]


@dataclass(frozen=True)
class Or:
    operands: tuple[Node, ...]


Node: TypeAlias = MatchAll | Match | Exists | Range | Regex | Severity | TimeRange | Not | And | Or


@dataclass(frozen=True)
class Query:
    """A parsed query and the notices its answer carries (constructs accepted but ignored)."""

    node: Node
    notices: tuple[str, ...] = ()


DEFAULT_LIMITS: Final = Limits()


def parse(text: str, limits: Limits = DEFAULT_LIMITS, *, now_ns: int | None = None) -> Node:
    """Parse a search query; raises :class:`SyntaxErrorAt` pointing at the first problem."""
    return parse_query(text, limits, now_ns=now_ns).node


def parse_query(text: str, limits: Limits = DEFAULT_LIMITS, *, now_ns: int | None = None) -> Query:
    """Parse a search query with its notices; ``now_ns`` anchors date math (``now-1d``)."""
    if len(text) > limits.max_length:
        raise SyntaxErrorAt(
            f"query is longer than {limits.max_length} characters",
            limits.max_length,
            "shorten the query or split it into several searches",
        )
    parser = _Parser(text, limits, time.time_ns() if now_ns is None else now_ns)
    node = parser.parse()
    return Query(node, tuple(dict.fromkeys(parser.notices)))


# Operators in any case, as KQL writes them; Lucene's symbols mean the same.
_KEYWORDS: Final = {"and": "AND", "or": "OR", "not": "NOT", "&&": "AND", "||": "OR"}
TIME_FIELD: Final = "@timestamp"
MAX_REGEX_LENGTH: Final = 256
# What a regex may cost: RE2's DFA gives up on text that keeps many repeat positions alive and
# steps an NFA, in time bytes x live threads. These bounds keep that near 1.4 s of CPU per MB at
# worst (`a[ab]{150}x` on random a/b text; `a.{1000}x` took 3 to 6 s), and DuckDB only sees a
# query interrupt between vectors.
MAX_REGEX_REPEAT: Final = 150  # product of every {n,m} in the pattern
MAX_REGEX_PROGRAM: Final = 500  # RE2 instructions: `.{70}x` is 495, a UTF-8 `.` is seven
_FIELD_PUNCTUATION: Final = frozenset("_.-@/")
# Characters that end an unquoted word (besides whitespace) where they are not escaped.
# ``^`` (boost) and ``~`` (fuzzy, proximity) end a word too, so what follows them is seen.
_WORD_STOP: Final = frozenset('()"^~')
_BOUND_STOP: Final = frozenset('()"[]{}^~')
_COMPARATORS: Final = (">=", "<=", ">", "<")
_VALUE_HINT: Final = 'for example status:500, service:"my api" or host:web-*'


def _is_field_char(ch: str) -> bool:
    return ch.isalnum() or ch in _FIELD_PUNCTUATION


def _combine(kind: type[And] | type[Or], operands: list[Node]) -> Node:
    if len(operands) == 1:
        return operands[0]
    flat: list[Node] = []
    for operand in operands:
        flat.extend(operand.operands if isinstance(operand, kind) else (operand,))
    return kind(tuple(flat))


def _pattern(chars: list[tuple[str, bool]]) -> Pattern:
    """Turn scanned characters (char, was escaped) into literal runs and wildcards."""
    parts: list[str | Wildcard] = []
    run: list[str] = []
    for ch, escaped in chars:
        wildcard = None if escaped else {"*": Wildcard.ANY, "?": Wildcard.ONE}.get(ch)
        if wildcard is None:
            run.append(ch)
            continue
        if run:
            parts.append("".join(run))
            run = []
        # Consecutive stars mean the same as one; collapsing keeps patterns canonical.
        if not (wildcard is Wildcard.ANY and parts and parts[-1] is Wildcard.ANY):
            parts.append(wildcard)
    if run:
        parts.append("".join(run))
    return Pattern(tuple(parts))


class _Parser:
    """Recursive descent straight over the text: positions in errors are exact for free."""

    def __init__(self, text: str, limits: Limits, now_ns: int) -> None:
        self.text = text
        self.limits = limits
        self.now_ns = now_ns
        self.pos = 0
        self.depth = 0
        self.terms = 0
        self.notices: list[str] = []

    # -- scanning helpers ------------------------------------------------------------------

    def peek(self, offset: int = 0) -> str | None:
        at = self.pos + offset
        return self.text[at] if at < len(self.text) else None

    def skip_ws(self) -> None:
        while self.pos < len(self.text) and self.text[self.pos].isspace():
            self.pos += 1

    def at_delimiter(self, at: int) -> bool:
        return at >= len(self.text) or self.text[at].isspace() or self.text[at] in _WORD_STOP

    def keyword_word(self) -> str:
        end = self.pos
        while not self.at_delimiter(end):
            end += 1
        return self.text[self.pos : end]

    def keyword(self) -> str | None:
        """AND, OR or NOT when the next word is one, in any case or as ``&&`` / ``||``."""
        return _KEYWORDS.get(ascii_lower(self.keyword_word()))

    def take_keyword(self) -> None:
        self.pos += len(self.keyword_word())

    def word(self, stop: frozenset[str]) -> list[tuple[str, bool]]:
        chars: list[tuple[str, bool]] = []
        while self.pos < len(self.text):
            ch = self.text[self.pos]
            if ch == "\\":
                if self.pos + 1 >= len(self.text):
                    raise SyntaxErrorAt(
                        "dangling backslash at the end of the query",
                        self.pos,
                        "write \\\\ for a literal backslash",
                    )
                chars.append((self.text[self.pos + 1], True))
                self.pos += 2
                continue
            if ch.isspace() or ch in stop:
                break
            chars.append((ch, False))
            self.pos += 1
        return chars

    def phrase(self) -> str:
        start = self.pos
        self.pos += 1
        out: list[str] = []
        while self.pos < len(self.text):
            ch = self.text[self.pos]
            if ch == '"':
                self.pos += 1
                return "".join(out)
            if ch == "\\" and self.pos + 1 < len(self.text):
                self.pos += 1
                ch = self.text[self.pos]
            out.append(ch)
            self.pos += 1
        raise SyntaxErrorAt(
            "unterminated quoted phrase",
            start,
            f"the phrase opened at {start} needs a closing '\"' (write \\\" for a literal quote)",
        )

    def scan_field_name(self, start: int) -> int:
        end = start
        while end < len(self.text) and _is_field_char(self.text[end]):
            end += 1
        return end

    def leaf(self, start: int, node: Node) -> Node:
        self.terms += 1
        if self.terms > self.limits.max_terms:
            raise SyntaxErrorAt(
                "too many terms in the query",
                start,
                f"a query may hold at most {self.limits.max_terms} terms",
            )
        return node

    def require_term(self, after: str) -> None:
        self.skip_ws()
        if self.peek() in (None, ")") or self.keyword() in ("AND", "OR"):
            raise SyntaxErrorAt(
                f"expected a term after '{after}'",
                self.pos,
                f"'{after}' must be followed by a search term",
            )

    # -- grammar -----------------------------------------------------------------------------

    def parse(self) -> Node:
        self.skip_ws()
        if self.pos == len(self.text):
            return MatchAll()
        node = self.or_(None)
        self.skip_ws()
        if self.pos < len(self.text):  # only a stray ")" stops the top level early
            raise SyntaxErrorAt(
                "unexpected ')'", self.pos, "unbalanced parenthesis: no '(' is open here"
            )
        return node

    def or_(self, ctx: Field | None) -> Node:
        operands = [self.and_(ctx)]
        while self.keyword() == "OR":
            self.take_keyword()
            self.require_term("OR")
            operands.append(self.and_(ctx))
        return _combine(Or, operands)

    def and_(self, ctx: Field | None) -> Node:
        operands = [self.unary(ctx)]
        while True:
            self.skip_ws()
            if self.peek() in (None, ")") or self.keyword() == "OR":
                return _combine(And, operands)
            if self.keyword() == "AND":
                self.take_keyword()
                self.require_term("AND")
            operands.append(self.unary(ctx))

    def unary(self, ctx: Field | None) -> Node:
        negations = 0
        while True:
            self.skip_ws()
            ch = self.peek()
            if ch in ("-", "+"):
                following = self.peek(1)
                if following is None or following.isspace() or following == ")":
                    raise SyntaxErrorAt(
                        f"expected a term after '{ch}'",
                        self.pos + 1,
                        f'write {ch}term without a space, or "{ch}" for a literal {ch}',
                    )
                self.pos += 1
                # Lucene's "+term" (must match) is what every term is under AND.
                negations += ch == "-"
            elif ch == "!":
                self.pos += 1
                self.require_term("!")
                negations += 1
            elif self.keyword() == "NOT":
                self.take_keyword()
                self.require_term("NOT")
                negations += 1
            else:
                break
        start = self.pos
        node = self.primary(ctx)
        self.suffix(start)
        # Logic is two-valued, so a double negation is the operand itself.
        return Not(node) if negations % 2 else node

    def suffix(self, start: int) -> None:
        """A boost is accepted and ignored (with a notice); fuzzy and proximity are refused."""
        at = self.pos
        if self.peek() == "~":
            phrase = self.text[at - 1 : at] == '"'
            what = "proximity search" if phrase else "fuzzy search"
            hint = (
                "write the words as separate terms (both must appear) or as an exact phrase"
                if phrase
                else "use a wildcard (quick* or qu?ck) or an OR of the spellings"
            )
            raise SyntaxErrorAt(f"{what} ('~') is not supported", at, hint)
        if self.peek() != "^":
            return
        self.pos += 1
        digits = self.word(_WORD_STOP)
        number = "".join(ch for ch, _ in digits)
        if not is_number(number) or not self.at_delimiter(self.pos):
            raise SyntaxErrorAt(
                "a boost '^' takes a number, as in error^2",
                at,
                "write \\^ for a literal caret",
            )
        self.notices.append(
            f"boost '^{number}' ignored: results are ordered by time, not by relevance"
        )

    def primary(self, ctx: Field | None) -> Node:
        start = self.pos
        ch = self.peek()
        keyword = self.keyword()
        if ch is None:
            raise SyntaxErrorAt("expected a term", start, "the query ends where a term should be")
        if ch == ")":
            raise SyntaxErrorAt("unexpected ')'", start, "unbalanced parenthesis: no '(' is open")
        if keyword in ("AND", "OR"):
            raise SyntaxErrorAt(
                f"unexpected '{keyword}'", start, f"{keyword} must stand between two terms"
            )
        if ch == "(":
            return self.group(ctx)
        if ctx is not None:
            return self.value(ctx, start, label="")
        if ch == '"':
            text = self.phrase()
            if not text:
                raise SyntaxErrorAt("empty quoted phrase", start, "put the text to find inside")
            return self.leaf(start, self.match(BODY, Pattern.literal(text), start))
        if ch == "/" and self.regex_end() is not None:
            return self.leaf(start, Regex(BODY, self.regex()))
        return self.term(start)

    def term(self, start: int) -> Node:
        if self.text.startswith("*:", start):  # Lucene's every-field name
            self.pos = start + 1
            return self.field_clause("*", start)
        escaped = self.wildcard_field(start)
        if isinstance(escaped, Field):  # machine.os*:win, any attribute whose key matches
            self.pos = start + len(escaped.name) + 1
            return self.value(escaped, start, label=f"{escaped.name}:")
        if escaped is not None:  # first\ name:Alice, a field name with escapes
            self.pos = start + len(escaped)
            return self.field_clause(re.sub(r"\\(.)", r"\1", escaped), start)
        name_end = self.scan_field_name(start)
        after = name_end
        while after < len(self.text) and self.text[after] == " ":
            after += 1  # KQL spaces its comparisons: bytes > 1000
        if name_end > start and self.text[name_end : name_end + 1] == ":":
            self.pos = name_end
            return self.field_clause(self.text[start:name_end], start)
        if name_end > start and self.text[after : after + 1] in ("<", ">"):
            self.pos = after
            return self.field_clause(self.text[start:name_end], start)
        if name_end > start and self.text.startswith("!=", name_end):
            name = self.text[start:name_end]
            raise SyntaxErrorAt(
                "'!=' is not an operator", name_end, f"write -{name}:value (or NOT {name}:value)"
            )
        pattern = _pattern(self.word(_WORD_STOP))
        if pattern.parts == (Wildcard.ANY,):
            return self.leaf(start, MatchAll())
        return self.leaf(start, self.match(BODY, pattern, start))

    def wildcard_field(self, start: int) -> Field | str | None:
        """``machine.os*:`` (Lucene's field-name wildcard) is a field over every attribute key
        matching; a name with only escapes (``first\\ name:``) is returned as typed."""
        found = _WILDCARD_FIELD.match(self.text, start)
        if found is None:
            return None
        name = found.group(1)
        if name.startswith("_exists_"):
            return name if "\\" in name else None
        # As in Elasticsearch, a star in a field name is a wildcard escaped or not (book.\\*).
        chars = [(m.group(1), m.group(1) != "*") if m.group(1) else (m.group(0), False)
                 for m in re.finditer(r"\\(.)|.", name, re.S)]  # fmt: skip
        keys = _pattern(chars)
        if keys.is_literal:
            return name if "\\" in name else None
        return self.key_wildcard(name, keys, start)

    def key_wildcard(self, name: str, keys: Pattern, start: int) -> Field:
        """A field over every log or resource attribute whose key matches ``keys``."""
        for prefix in _NAMESPACES:
            if name.startswith(prefix):
                raise SyntaxErrorAt(
                    f"a field-name wildcard searches log and resource attributes alike; "
                    f"'{prefix}' cannot narrow it",
                    start,
                    f"write {name[len(prefix) :] or '*'} without '{prefix}'",
                )
        return Field(name, FieldKind.ANY_ATTRIBUTE, "", self.few_wildcards(keys, start))

    def few_wildcards(self, pattern: Pattern, start: int) -> Pattern:
        wildcards = sum(isinstance(part, Wildcard) for part in pattern.parts)
        if wildcards > self.limits.max_wildcards:
            raise SyntaxErrorAt(
                f"too many wildcards ({wildcards}) in one value or field name",
                start,
                f"use at most {self.limits.max_wildcards}, or a regular expression",
            )
        return pattern

    def field_clause(self, name: str, start: int) -> Node:
        if name == TIME_FIELD:
            return self.time_clause(start)
        if name == "_exists_":
            if self.peek() != ":":
                raise SyntaxErrorAt("_exists_ takes a field name", self.pos, "write _exists_:field")
            self.pos += 1
            return self.exists(start)
        field = resolve_field(name)
        if self.peek() == ":":
            self.pos += 1
            while self.peek() == " " and self.peek(1) not in (None, " ", ")"):
                self.pos += 1  # KQL: http.request.method: GET
            return self.value(field, start, label=f"{name}:")
        if field.kind is FieldKind.ALL:
            raise SyntaxErrorAt(
                f"'{name}' searches words in every field; comparisons need one field",
                self.pos,
                "name the field, e.g. status>=500",
            )
        return self.comparison(field, start, label=name)

    def exists(self, start: int) -> Node:
        name_start = self.pos
        name_end = name_start
        while name_end < len(self.text) and (
            _is_field_char(self.text[name_end]) or self.text[name_end] in "*?"
        ):
            name_end += 1
        if name_end == name_start or not self.at_delimiter(name_end):
            raise SyntaxErrorAt(
                "expected a field name after '_exists_:'",
                name_end,
                "field names are letters, digits and _ . - @ / (and * ? as wildcards)",
            )
        self.pos = name_end
        name = self.text[name_start:name_end]
        keys = _pattern([(ch, False) for ch in name])
        if name != "*" and not keys.is_literal:  # _exists_:machine.os*
            return self.leaf(start, Exists(self.key_wildcard(name, keys, start)))
        field = resolve_field(name)
        return self.leaf(start, MatchAll() if field.kind is FieldKind.ALL else Exists(field))

    def value(self, field: Field, start: int, label: str) -> Node:
        ch = self.peek()
        if ch is None or ch.isspace() or ch == ")":
            raise SyntaxErrorAt(f"expected a value after '{label}'", self.pos, _VALUE_HINT)
        if ch == "(":
            return self.group(field)
        regex = ch == "/" and self.regex_end() is not None
        if field.kind is FieldKind.ALL and (ch in "[{<>" or regex):
            raise SyntaxErrorAt(
                f"'{label}' searches words in every field; ranges and regexes need one field",
                self.pos,
                "name the field, e.g. status:[400 TO 499] or message:/time.?out/",
            )
        if ch == "{" and ctx_is_nested(self.text, self.pos):
            raise SyntaxErrorAt(
                f"KQL nested queries ('{label}{{…}}') are not supported",
                self.pos,
                "write each condition with the full dotted name, e.g. items.name:banana",
            )
        if ch in "[{":
            return self.range(field, start)
        if ch in "<>":
            return self.comparison(field, start, label=label)
        if ch == '"':
            return self.leaf(start, self.match(field, Pattern.literal(self.phrase()), start))
        if ch == "/" and self.regex_end() is not None:
            return self.leaf(start, Regex(field, self.regex()))
        return self.leaf(start, self.match(field, _pattern(self.word(_WORD_STOP)), start))

    def regex_end(self) -> int | None:
        """Where ``/…/`` closes when it stands alone (``/api/v1`` is a path, not a regex)."""
        at = self.pos + 1
        while at < len(self.text):
            ch = self.text[at]
            if ch == "\\":
                at += 2
                continue
            if ch == "/":
                after = at + 1
                ok = (
                    after >= len(self.text)
                    or self.text[after].isspace()
                    or self.text[after] in ")^"
                )
                return at if ok and at > self.pos + 1 else None
            at += 1
        return None

    def regex(self) -> str:
        start, end = self.pos, self.regex_end()
        assert end is not None
        body = self.text[start + 1 : end].replace("\\/", "/")
        self.pos = end + 1
        _check_regex(body, start)
        return body

    def time_clause(self, start: int) -> Node:
        """``@timestamp`` is the event time: ranges and comparisons with date math."""
        if self.peek() == ":":
            self.pos += 1
        else:
            return self.comparison(_TIME, start, label=TIME_FIELD)
        ch = self.peek()
        if ch == "*" and self.at_delimiter(self.pos + 1):
            self.pos += 1
            return self.leaf(start, MatchAll())  # every event has a time
        if ch is not None and ch in "[{<>":
            return self.range(_TIME, start) if ch in "[{" else self.comparison(_TIME, start, "")
        raise SyntaxErrorAt(
            "@timestamp takes a range or a comparison",
            self.pos,
            "write @timestamp:[now-1d TO now], @timestamp>=now-15m or "
            "@timestamp<2026-01-31T12:00:00Z",
        )

    def match(self, field: Field, pattern: Pattern, start: int) -> Node:
        pattern = self.few_wildcards(pattern, start)
        if pattern.parts == (Wildcard.ANY,):
            return MatchAll() if field.kind is FieldKind.ALL else Exists(field)
        if field.kind in (FieldKind.BODY, FieldKind.ALL) and not pattern.words():
            raise SyntaxErrorAt(
                f"'{pattern.text}' has no letter or digit: free text matches whole words",
                start,
                "search punctuation with a regular expression, e.g. message:/=>/",
            )
        if field.name in _LOWERCASE_VALUES:
            lowered = (ascii_lower(p) if isinstance(p, str) else p for p in pattern.parts)
            pattern = Pattern(tuple(lowered))
        return Match(field, pattern)

    def group(self, ctx: Field | None) -> Node:
        open_at = self.pos
        self.pos += 1
        self.depth += 1
        if self.depth > self.limits.max_depth:
            raise SyntaxErrorAt(
                "parentheses nested too deeply",
                open_at,
                f"at most {self.limits.max_depth} levels of parentheses",
            )
        self.skip_ws()
        if self.peek() == ")":
            raise SyntaxErrorAt("empty parentheses", open_at, "put a term inside or remove them")
        node = self.or_(ctx)
        self.skip_ws()
        if self.peek() != ")":
            raise SyntaxErrorAt(
                "missing ')'", open_at, f"unbalanced parenthesis opened at {open_at}"
            )
        self.pos += 1
        self.depth -= 1
        return node

    def literal_value(self, stop: frozenset[str], what: str) -> str:
        """A comparison value or range bound: a phrase, or a word without wildcards."""
        if self.peek() == '"':
            return self.phrase()
        start = self.pos
        chars = self.word(stop)
        if any(ch in "*?" and not escaped for ch, escaped in chars):
            raise SyntaxErrorAt(
                f"wildcards are not allowed in {what}", start, "escape them as \\* or \\?"
            )
        return "".join(ch for ch, _ in chars)

    def comparison(self, field: Field, start: int, label: str) -> Node:
        op = next(op for op in _COMPARATORS if self.text.startswith(op, self.pos))
        self.pos += len(op)
        while self.peek() == " " and self.peek(1) not in (None, " ", ")"):
            self.pos += 1  # KQL: bytes > 1000
        value_at = self.pos
        ch = self.peek()
        if ch is None or ch.isspace() or ch == ")":
            raise SyntaxErrorAt(f"expected a value after '{label}{op}'", self.pos, _VALUE_HINT)
        value = self.literal_value(_WORD_STOP, "a comparison")
        inclusive = op.endswith("=")
        if op[0] == ">":
            bounds = _Bounds(value, None, inclusive, False, value_at, value_at)
        else:
            bounds = _Bounds(None, value, False, inclusive, value_at, value_at)
        return self.leaf(start, self.bounded(field, bounds))

    def range(self, field: Field, start: int) -> Node:
        open_at = self.pos
        include_low = self.text[open_at] == "["
        self.pos += 1
        self.skip_ws()
        low_at = self.pos
        low = self.bound("a lower bound")
        self.expect_to()
        self.skip_ws()
        high_at = self.pos
        high = self.bound("an upper bound")
        self.skip_ws()
        closer = self.peek()
        if closer is None:
            raise SyntaxErrorAt(
                "unterminated range", open_at, f"the range opened at {open_at} needs ']' or '}}'"
            )
        if closer not in "]}":
            raise SyntaxErrorAt("expected ']' or '}'", self.pos, "ranges look like [400 TO 499]")
        self.pos += 1
        bounds = _Bounds(low, high, include_low, closer == "]", low_at, high_at)
        return self.leaf(start, self.bounded(field, bounds))

    def bound(self, what: str) -> str | None:
        at = self.pos
        if self.peek() == "*" and self.at_range_delimiter(at + 1):
            self.pos += 1
            return None
        ch = self.peek()
        if ch is None or self.at_range_delimiter(at) or (ch in _BOUND_STOP and ch != '"'):
            raise SyntaxErrorAt(f"expected {what}", at, "ranges look like [400 TO 499]")
        return self.literal_value(_BOUND_STOP, "a range")

    def at_range_delimiter(self, at: int) -> bool:
        return at >= len(self.text) or self.text[at].isspace() or self.text[at] in "]}"

    def expect_to(self) -> None:
        gap_at = self.pos
        self.skip_ws()
        after = self.pos + 2
        spaced = self.pos > gap_at and after < len(self.text) and self.text[after].isspace()
        if not (spaced and self.text.startswith("TO", self.pos)):
            raise SyntaxErrorAt("expected 'TO'", self.pos, "ranges look like [400 TO 499]")
        self.pos = after

    def bounded(self, field: Field, bounds: _Bounds) -> Node:
        if field.kind is FieldKind.LEVEL:
            return _severity(bounds)
        if field is _TIME:
            return self.time_range(bounds)
        low, high = bounds.low, bounds.high
        if low is None and high is None:
            return Exists(field)
        if field.name in _LOWERCASE_VALUES:
            low, high = (None if b is None else ascii_lower(b) for b in (low, high))
        numeric = all(b is None or is_number(b) for b in (low, high))
        return Range(field, low, high, bounds.include_low, bounds.include_high, numeric)

    def time_range(self, bounds: _Bounds) -> TimeRange:
        low = self.instant(bounds.low, bounds.low_at, round_up=not bounds.include_low)
        high = self.instant(bounds.high, bounds.high_at, round_up=bounds.include_high)
        return TimeRange(low, high, bounds.include_low, bounds.include_high)

    def instant(self, text: str | None, at: int, *, round_up: bool) -> int | None:
        """Microseconds of a bound; like Elasticsearch, 'now/d' as an upper bound ends the day."""
        if text is None:
            return None
        try:
            ns = parse_instant(text, self.now_ns, TIME_FIELD)
        except BadRequest as exc:
            raise SyntaxErrorAt(exc.detail, at, "date math is now-1d, now-15m/m, ...") from None
        rounding = re.search(r"/([smhd])$", text)
        if round_up and rounding:
            ns += ROUNDING_UNITS_NS[rounding.group(1)] - 1
        return ns // 1000


_TIME: Final = Field(TIME_FIELD, FieldKind.COLUMN, "Timestamp")
# A field name with wildcards or escapes, up to its colon.
_WILDCARD_FIELD: Final = re.compile(r"((?:[\w.\-@/*?]|\\.)+):")
_REGEX_ESCAPES: Final = frozenset("dDwWsSbBntr")
_REPEAT: Final = re.compile(r"\{(\d+)(?:,(\d*))?\}")


def ctx_is_nested(text: str, at: int) -> bool:
    """``field:{`` opens a KQL nested query unless it is a Lucene range ``{a TO b}``."""
    close = text.find("}", at)
    inner = text[at + 1 : close if close >= 0 else len(text)]
    return re.search(r"\sTO\s", inner) is None


def re2_options() -> re2.Options:
    """RE2 as DuckDB and ClickHouse run it: leftmost-first, case-sensitive, UTF-8 (dot-all comes
    from the ``(?s)`` every compiled search puts in front)."""
    options = re2.Options()
    options.log_errors = False  # a refused pattern is a 400, not a line on stderr
    options.longest_match = False
    options.case_sensitive = True
    return options


def _check_regex(body: str, at: int) -> None:
    """Refuse what RE2 refuses, and what the engines would read differently from each other."""
    hint = "regular expressions are RE2: . * + ? | ( ) [ ] {n,m}, \\d \\w \\s, (?i) first"
    if len(body) > MAX_REGEX_LENGTH:
        raise SyntaxErrorAt(f"regular expression longer than {MAX_REGEX_LENGTH}", at, hint)
    problem = _regex_problem(body) or _re2_problem(body)
    if problem is not None:
        raise SyntaxErrorAt(problem, at, hint)


def _re2_problem(body: str) -> str | None:
    """The engines' own parser decides what is valid; its program size bounds the DFA memory,
    past which RE2 falls back to a search slow enough to outlive a query timeout."""
    try:
        compiled = re2.compile(f"(?s){body}", re2_options())
    except re2.error as exc:
        reason = exc.args[0] if exc.args else exc
        text = reason.decode(errors="replace") if isinstance(reason, bytes) else str(reason)
        return f"invalid regular expression: {text}"
    if compiled.programsize > MAX_REGEX_PROGRAM:
        return "regular expression too large: use fewer or smaller counted repetitions {n,m}"
    return None


def _regex_tokens(body: str) -> list[str]:
    """Split a regex into an escape (``\\x``), a whole class (``[...]``) or one character, in
    one left-to-right pass, so ``\\[`` never opens a class and ``[$]`` never hides an anchor."""
    tokens, at = [], 0
    while at < len(body):
        if body[at] == "\\":
            end = at + 2
        elif body[at] == "[":
            end = _class_end(body, at)
        else:
            end = at + 1
        tokens.append(body[at:end])
        at = end
    return tokens


def _class_end(body: str, at: int) -> int:
    """Where the class opened at *at* ends (a ``]`` first in it is literal, as in RE2)."""
    at += 2 if body[at + 1 : at + 2] == "^" else 1
    at += 1 if body[at : at + 1] == "]" else 0
    while at < len(body) and body[at] != "]":
        at += 2 if body[at] == "\\" else 1
    return min(at + 1, len(body))


def _regex_problem(body: str) -> str | None:
    flagless = body.removeprefix("(?i)")
    tokens = _regex_tokens(flagless)
    text = " ".join(t if len(t) == 1 else "_" for t in tokens)  # one char per plain token
    escapes = [e for t in tokens if t[0] in "\\[" for e in re.findall(r"\\(.)", t)]
    if re.search(r"\( \?(?! :)", text):
        return "only (?: groups and a leading (?i) are supported in a regular expression"
    if any(e.isalnum() and e not in _REGEX_ESCAPES for e in escapes):
        return "unsupported escape in a regular expression (no back-references or \\p classes)"
    if "^" in tokens or "$" in tokens:
        return "anchors ^ and $ are implied: a regex matches a whole field value or part of a body"
    if re.search(r"\((?: \? :)? \)", text):  # DuckDB reads an empty (?:) as an end anchor
        return "empty group () in a regular expression: remove it"
    if re.search(r"\{ ,", text):
        return "write a counted repetition as {0,n}: RE2 reads {,n} as literal text"
    return _repeat_problem(flagless)


def _repeat_problem(flagless: str) -> str | None:
    product = 1
    for low, high in _REPEAT.findall(flagless):
        product *= max(int(low), int(high or 0))
    if product > MAX_REGEX_REPEAT:
        return f"counted repetitions in a regular expression multiply past {MAX_REGEX_REPEAT}"
    if "[:" in flagless:
        return "POSIX classes like [[:alpha:]] are not supported: write [a-zA-Z]"
    return None


@dataclass(frozen=True)
class _Bounds:
    """Bounds as typed, with where each one starts (for errors about severity names)."""

    low: str | None
    high: str | None
    include_low: bool
    include_high: bool
    low_at: int
    high_at: int


def _severity_range(value: str, at: int) -> tuple[int, int]:
    named = SEVERITY_RANGES.get(ascii_lower(value))
    if named is not None:
        return named
    if value.isascii() and value.isdigit() and 1 <= int(value) <= 24:
        return int(value), int(value)
    raise SyntaxErrorAt(
        f"unknown severity '{value}'",
        at,
        "use trace, debug, info, warn, error, fatal (or warning, err, critical) or a number 1-24",
    )


def _severity(bounds: _Bounds) -> Severity:
    """Named levels are ranges: '>= warn' starts at WARN's low end, '> warn' after its top."""
    low_number = high_number = None
    if bounds.low is not None:
        bottom, top = _severity_range(bounds.low, bounds.low_at)
        low_number = bottom if bounds.include_low else top + 1
    if bounds.high is not None:
        bottom, top = _severity_range(bounds.high, bounds.high_at)
        high_number = top if bounds.include_high else bottom - 1
    return Severity(low_number, high_number)
