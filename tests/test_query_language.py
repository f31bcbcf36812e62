"""The search language parser: every construct, precedence, errors with positions, limits."""

from __future__ import annotations

import random

import pytest

from astralog.errors import SyntaxErrorAt
from astralog.query.language import (
    And,
    Exists,
    Field,
    FieldKind,
    Limits,
    Match,
    MatchAll,
    Node,
    Not,
    Or,
    Pattern,
    Range,
    Severity,
    Wildcard,
    ascii_lower,
    is_number,
    parse,
    resolve_field,
)


def dump(node: Node) -> str:
    """A compact s-expression, so expected trees fit on one line of a table."""
    match node:
        case MatchAll():
            return "(all)"
        case Match(field, pattern):
            return f'({field.name} "{_pattern(pattern)}")'
        case Exists(field):
            return f"(exists {field.name})"
        case Range(field, low, high, include_low, include_high, numeric):
            kind = "num" if numeric else "str"
            opener, closer = "[" if include_low else "{", "]" if include_high else "}"
            return f"({field.name} {opener}{low or '*'} TO {high or '*'}{closer} {kind})"
        case Severity(low, high):
            return f"(severity {low or '*'} {high or '*'})"
        case Not(operand):
            return f"(not {dump(operand)})"
        case And(operands):
            return "(and " + " ".join(dump(o) for o in operands) + ")"
        case Or(operands):
            return "(or " + " ".join(dump(o) for o in operands) + ")"
    raise AssertionError(node)


def _pattern(pattern: Pattern) -> str:
    out = []
    for part in pattern.parts:
        if isinstance(part, Wildcard):
            out.append(part.value)
        else:
            out.append(part.replace("\\", "\\\\").replace("*", "\\*").replace("?", "\\?"))
    return "".join(out)


PARSES = [
    # empty and match-all
    ("", "(all)"),
    ("   \t\n", "(all)"),
    ("*", "(all)"),
    # free text and phrases
    ("timeout", '(body "timeout")'),
    ('"connection refused"', '(body "connection refused")'),
    ('"say \\"hi\\" \\\\ now"', '(body "say "hi" \\\\ now")'),
    ("[error]", '(body "[error]")'),
    ("a\\ b", '(body "a b")'),
    ("a\\:b", '(body "a:b")'),
    ("ANDROID", '(body "ANDROID")'),
    ('"and" "or" "not"', '(and (body "and") (body "or") (body "not"))'),  # operators, quoted
    ("café", '(body "café")'),
    # wildcards, literal when quoted or escaped
    ("time*", '(body "time*")'),
    ("t?me", '(body "t?me")'),
    ("a**b", '(body "a*b")'),
    ('"a*b?"', '(body "a\\*b\\?")'),
    ("a\\*b", '(body "a\\*b")'),
    # implicit AND, explicit AND/OR and precedence
    ("a b", '(and (body "a") (body "b"))'),
    ("a AND b", '(and (body "a") (body "b"))'),
    ("a OR b c", '(or (body "a") (and (body "b") (body "c")))'),
    ("a b OR c", '(or (and (body "a") (body "b")) (body "c"))'),
    ("a AND b OR c AND d", '(or (and (body "a") (body "b")) (and (body "c") (body "d")))'),
    ("a OR b OR c", '(or (body "a") (body "b") (body "c"))'),
    ("(a OR b) c", '(and (or (body "a") (body "b")) (body "c"))'),
    ("a (b OR (c d))", '(and (body "a") (or (body "b") (and (body "c") (body "d"))))'),
    ("NOT(a)", '(not (body "a"))'),
    ("a AND(b)", '(and (body "a") (body "b"))'),
    # negation
    ("-a", '(not (body "a"))'),
    ("NOT a", '(not (body "a"))'),
    ("NOT NOT a", '(body "a")'),
    ("--a", '(body "a")'),
    ("-a b", '(and (not (body "a")) (body "b"))'),
    ("-(a OR b)", '(not (or (body "a") (body "b")))'),
    ("NOT a OR b", '(or (not (body "a")) (body "b"))'),
    # field:value
    ("service:api", '(service "api")'),
    ('service:"my api"', '(service "my api")'),
    ("service:-api", '(service "-api")'),
    ("host:web-*", '(host "web-*")'),
    ("host:*web*", '(host "*web*")'),
    ("x:a?c", '(x "a?c")'),
    ("x:a\\*b*", '(x "a\\*b*")'),
    ("url:http://x/y?z", '(url "http://x/y?z")'),
    ("x-request-id:abc", '(x-request-id "abc")'),
    ("k8s.pod/name@v1:p", '(k8s.pod/name@v1 "p")'),
    ('x:""', '(x "")'),
    ("body:timeout", '(body "timeout")'),
    ("message:timeout", '(message "timeout")'),
    ("trace_id:ABCdef*", '(trace_id "abcdef*")'),
    ("span_id:[A TO B]", "(span_id [a TO b] str)"),
    ("service:*", "(exists service)"),
    ("_exists_:host", "(exists host)"),
    ("-_exists_:trace_id", "(not (exists trace_id))"),
    # comparisons: numeric when the value is a number
    ("status>=500", "(status [500 TO *} num)"),
    ("status:>=500", "(status [500 TO *} num)"),
    ("status>500", "(status {500 TO *} num)"),
    ("status<500", "(status {* TO 500} num)"),
    ("status<=500", "(status {* TO 500] num)"),
    ("latency_ms<0.5", "(latency_ms {* TO 0.5} num)"),
    ("x>-1e3", "(x {-1e3 TO *} num)"),
    ("version>=1.2.3", "(version [1.2.3 TO *} str)"),
    ('name>="a b"', "(name [a b TO *} str)"),
    # ranges
    ("status:[400 TO 499]", "(status [400 TO 499] num)"),
    ("status:{400 TO 499}", "(status {400 TO 499} num)"),
    ("status:[400 TO 499}", "(status [400 TO 499} num)"),
    ("status:[ 400   TO 499 ]", "(status [400 TO 499] num)"),
    ("status:[* TO 5]", "(status [* TO 5] num)"),
    ("status:[* TO *]", "(exists status)"),
    ("host:[a TO m]", "(host [a TO m] str)"),
    ('x:["a b" TO "c d"]', "(x [a b TO c d] str)"),
    # field groups
    ("service:(a OR b)", '(or (service "a") (service "b"))'),
    ("service:(a b)", '(and (service "a") (service "b"))'),
    ("service:(a -b)", '(and (service "a") (not (service "b")))'),
    ('service:("a b" OR c*)', '(or (service "a b") (service "c*"))'),
    ("url:(http://a OR b:c)", '(or (url "http://a") (url "b:c"))'),
    ("status:(>=500 OR [100 TO 199])", "(or (status [500 TO *} num) (status [100 TO 199] num))"),
    ("service:(a OR (b c))", '(or (service "a") (and (service "b") (service "c")))'),
    # level: text match is case-insensitive equality, comparisons use SeverityNumber ranges
    ("level:error", '(level "error")'),
    ("severity:WARN*", '(severity "WARN*")'),
    ("level>=warn", "(severity 13 *)"),
    ("level>warn", "(severity 17 *)"),
    ("level<error", "(severity * 16)"),
    ("level<=error", "(severity * 20)"),
    ("level:>=ERROR", "(severity 17 *)"),
    ("level>=warning", "(severity 13 *)"),
    ("level>=err", "(severity 17 *)"),
    ("level>=critical", "(severity 21 *)"),
    ("level>=17", "(severity 17 *)"),
    ("level:[warn TO error]", "(severity 13 20)"),
    ("level:{info TO error}", "(severity 13 16)"),
    ("level:[debug TO *]", "(severity 5 *)"),
    ("level:(error OR >=fatal)", '(or (level "error") (severity 21 *))'),
    # the example from the brief
    (
        'level:error service:api "timeout" -health status>=500',
        '(and (level "error") (service "api") (body "timeout") (not (body "health"))'
        " (status [500 TO *} num))",
    ),
]


@pytest.mark.parametrize(("query", "expected"), PARSES, ids=[q for q, _ in PARSES])
def test_parses(query: str, expected: str) -> None:
    assert dump(parse(query)) == expected


ERRORS = [
    # (query, position, words expected in detail + hint)
    ("(a", 0, "unbalanced parenthesis opened at 0"),
    ("x (a OR b", 2, "unbalanced parenthesis opened at 2"),
    ("a)", 1, "unexpected ')'"),
    ("a OR b) c", 6, "unexpected ')'"),
    ('"abc', 0, "unterminated quoted phrase"),
    ('a "b', 2, "unterminated quoted phrase"),
    ('x:"b\\"', 2, "unterminated quoted phrase"),
    ("status:", 7, "expected a value after 'status:'"),
    ("status:  500", 7, "expected a value after 'status:'"),  # KQL allows one space
    ("(status:)", 8, "expected a value after 'status:'"),
    ("status>=", 8, "expected a value after 'status>='"),
    ("status:>", 8, "expected a value after 'status:>'"),
    ("a OR", 4, "expected a term after 'OR'"),
    ("a AND", 5, "expected a term after 'AND'"),
    ("a AND AND b", 6, "expected a term after 'AND'"),
    ("a OR OR b", 5, "expected a term after 'OR'"),
    ("(a OR)", 5, "expected a term after 'OR'"),
    ("OR a", 0, "unexpected 'OR'"),
    ("AND", 0, "unexpected 'AND'"),
    ("NOT", 3, "expected a term after 'NOT'"),
    ("a NOT", 5, "expected a term after 'NOT'"),
    ("- a", 1, "expected a term after '-'"),
    ("a -", 3, "expected a term after '-'"),
    ("()", 0, "empty parentheses"),
    ("x:( )", 2, "empty parentheses"),
    ('""', 0, "empty quoted phrase"),
    ("x:[1 5]", 5, "expected 'TO'"),
    ("x:[1TO 5]", 7, "expected 'TO'"),
    ("x:[1 TO5]", 5, "expected 'TO'"),
    ("x:[1 TO 5", 2, "unterminated range"),
    ("x:[1 TO 5)", 9, "expected ']' or '}'"),
    ("x:[]", 3, "expected a lower bound"),
    ("x:[1 TO ]", 8, "expected an upper bound"),
    ("x:[1* TO 5]", 3, "wildcards are not allowed in a range"),
    ("status>=5*", 8, "wildcards are not allowed in a comparison"),
    ("level>=loud", 7, "unknown severity 'loud'"),
    ("level:[warn TO 99]", 15, "unknown severity '99'"),
    ("level<0", 6, "unknown severity '0'"),
    ("a\\", 1, "dangling backslash"),
    ("_exists_:", 9, "expected a field name after '_exists_:'"),
    ("_exists_:a:b", 10, "expected a field name after '_exists_:'"),
    ("_exists_>a", 8, "_exists_ takes a field name"),
]


@pytest.mark.parametrize(("query", "position", "words"), ERRORS, ids=[q for q, _, _ in ERRORS])
def test_syntax_errors_point_at_the_problem(query: str, position: int, words: str) -> None:
    with pytest.raises(SyntaxErrorAt) as caught:
        parse(query)
    error = caught.value
    assert error.position == position
    assert error.status == 400
    assert words in f"{error.detail} | {error.extra['hint']}"
    assert error.extra["hint"], "every syntax error carries a hint"


def test_query_length_is_limited() -> None:
    assert parse("a" * 4096) == Match(resolve_field("body"), Pattern(("a" * 4096,)))
    with pytest.raises(SyntaxErrorAt) as caught:
        parse("a" * 4097)
    assert caught.value.position == 4096


def test_nesting_depth_is_limited() -> None:
    assert parse("(" * 32 + "a" + ")" * 32) == parse("a")
    with pytest.raises(SyntaxErrorAt) as caught:
        parse("(" * 33 + "a" + ")" * 33)
    assert caught.value.position == 32
    assert "nested too deeply" in caught.value.detail


def test_negation_chains_do_not_recurse() -> None:
    # 4000 dashes would exhaust Python's stack in a naively recursive parser.
    assert parse("-" * 4000 + "a") == parse("a")
    assert parse("NOT " * 1000 + "a") == parse("a")


def test_number_of_terms_is_limited() -> None:
    parse(" ".join(["a"] * 256))
    with pytest.raises(SyntaxErrorAt) as caught:
        parse(" ".join(["a"] * 257))
    assert caught.value.position == 512
    with pytest.raises(SyntaxErrorAt):
        parse("x:(" + " OR ".join(["a"] * 300) + ")")


def test_limits_are_configurable() -> None:
    limits = Limits(max_length=10, max_depth=1, max_terms=2)
    with pytest.raises(SyntaxErrorAt):
        parse("a" * 11, limits)
    with pytest.raises(SyntaxErrorAt):
        parse("((a))", limits)
    with pytest.raises(SyntaxErrorAt):
        parse("a b c", limits)
    assert dump(parse("(a) b", limits)) == '(and (body "a") (body "b"))'
    with pytest.raises(ValueError, match="max_depth"):
        Limits(max_depth=10_000)


WELL_KNOWN = [
    ("body", FieldKind.BODY, "Body"),
    ("message", FieldKind.BODY, "Body"),
    ("level", FieldKind.LEVEL, "SeverityText"),
    ("severity", FieldKind.LEVEL, "SeverityText"),
    ("service", FieldKind.COLUMN, "ServiceName"),
    ("trace_id", FieldKind.COLUMN, "TraceId"),
    ("span_id", FieldKind.COLUMN, "SpanId"),
    ("source", FieldKind.COLUMN, "SourceId"),
    ("event_id", FieldKind.COLUMN, "EventId"),
    ("scope", FieldKind.COLUMN, "ScopeName"),
    ("host", FieldKind.RESOURCE, "host.name"),
    ("http.status_code", FieldKind.ATTRIBUTE, "http.status_code"),
    ("Service", FieldKind.ATTRIBUTE, "Service"),
    ("ServiceName", FieldKind.ATTRIBUTE, "ServiceName"),
]


@pytest.mark.parametrize(("name", "kind", "target"), WELL_KNOWN)
def test_field_names_resolve(name: str, kind: FieldKind, target: str) -> None:
    assert resolve_field(name) == Field(name, kind, target)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("500", True),
        ("-1", True),
        ("+5", True),
        ("0.5", True),
        (".5", True),
        ("5.", True),
        ("1e3", True),
        ("1.E-3", True),
        ("1e999", True),
        ("", False),
        (" 5", False),
        ("5 ", False),
        ("1_000", False),
        ("0x10", False),
        ("nan", False),
        ("inf", False),
        ("1.2.3", False),
        ("٣", False),  # a non-ASCII digit: neither engine casts it
    ],
)
def test_numbers_are_what_every_engine_parses_alike(text: str, expected: bool) -> None:
    assert is_number(text) is expected


def test_case_folding_is_ascii_only() -> None:
    assert ascii_lower("ERROR Café ÉCOLE İ Σ") == "error café École İ Σ"


def test_random_input_parses_or_fails_cleanly() -> None:
    """Whatever people type, the parser answers with a tree or a positioned 400."""
    rng = random.Random(1234)
    pieces = [
        "a", "B", "status", "level", "_exists_", ":", ">=", "<", ">", "[", "]", "{", "}",
        " TO ", "(", ")", '"', "\\", "*", "?", "-", " NOT ", " AND ", " OR ", " ", "500",
        "x.y", "é", "\x00", "'", ";",
    ]  # fmt: skip
    parsed = 0
    for _ in range(3000):
        text = "".join(rng.choice(pieces) for _ in range(rng.randint(1, 12)))
        try:
            parse(text)
            parsed += 1
        except SyntaxErrorAt as error:
            assert 0 <= error.position <= len(text), text
    assert 300 < parsed < 2700  # the mix exercises both outcomes
