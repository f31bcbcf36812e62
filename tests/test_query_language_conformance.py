"""The examples of the Elasticsearch ``query_string`` and Kibana KQL documentation, each either
answered with its documented meaning or refused with a 400 that names the construct.

Written here from the public syntax documentation (no third-party test file copied in). Every
accepted example runs on DuckDB, on the real ClickHouse engine (chDB) and in the reference
evaluator over one small corpus, and the three answers must equal the documented one. Astralog's
default operator is AND (the log-search convention), so ``a b`` needs both; the meaning asserted
is Elasticsearch's with that default, which is documented in the README.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import clickhouse_connect
import duckdb
import pyarrow as pa
import pytest

from astralog.errors import SyntaxErrorAt
from astralog.query.compile import compile_where
from astralog.query.language import parse, parse_query
from astralog.schema import log_schema
from tests.reference_filter import matches
from tests.test_query_compile import CLICKHOUSE_DDL, MAP_COLUMNS

NOW = 1_700_000_000 * 10**9
HOUR = 3600 * 10**9


def _row(event: str, body: str, ago_ns: int, **attributes: str) -> dict[str, Any]:
    return {
        "Timestamp": NOW - ago_ns, "ObservedTimestamp": NOW - ago_ns, "EventId": event,
        "OrgId": "org", "SourceId": "src", "TraceId": "", "SpanId": "", "TraceFlags": 0,
        "SeverityText": "INFO", "SeverityNumber": 9, "ServiceName": "api", "Body": body,
        "ResourceSchemaUrl": "", "ResourceAttributes": {}, "ScopeSchemaUrl": "", "ScopeName": "",
        "ScopeVersion": "", "ScopeAttributes": {}, "LogAttributes": attributes, "EventName": "",
    }  # fmt: skip


CORPUS = [
    _row("e1", "quick brown fox jumps", 2 * HOUR, status="active", response="200",
         extension="php", code="400", name="john", age="12", title="quick",
         tags='["many","more"]', **{"map.attribute.a": "x"}),
    _row("e2", "the lazy dog", 48 * HOUR, status="closed", response="404", extension="css",
         code="401", name="jonathan", age="25", author="John Smith", title="brown",
         ports="[80,8443,true]", paths='["/a\\"b","\\u0001x",{"k":"kv"}]'),
    _row("e3", "brown fox news", HOUR // 2, status="active", response="200", code="404",
         name="johnathan", age="8", user_agent="Mozilla/5.0 Safari/605.1",
         trace_id="0242ac120002", message="from attribute", **{"first name": "Alice"}),
    _row("e4", "Quick-brown firefox and more", 240 * HOUR, extension="css",
         **{"http.request.method": "GET", "account_number": "150", "items_sold": "100"}),
    _row("e5", "error: connection timeout", HOUR // 12, response="503", code="500",
         **{"machine.os": "win 10", "account_number": "50", "items_sold": "300"}),
]  # fmt: skip
ALL = {"e1", "e2", "e3", "e4", "e5"}

# (query, the events Elasticsearch's meaning selects here)
ANSWERED: list[tuple[str, set[str]]] = [
    # query_string: field names, values, phrases, grouping
    ("status:active", {"e1", "e3"}),
    ("title:(quick OR brown)", {"e1", "e2"}),
    ("title:(quick brown)", set()),  # default operator AND: both values
    ('author:"John Smith"', {"e2"}),
    ("first\\ name:Alice", {"e3"}),
    ("_exists_:title", {"e1", "e2"}),
    ("NOT _exists_:title", {"e3", "e4", "e5"}),
    ("qu?ck bro*", {"e1", "e4"}),
    ("name:/joh?n(ath[oa]n)/", {"e2", "e3"}),
    ("name:/jo.*/", {"e1", "e2", "e3"}),
    ("name:/jo/", set()),  # a regex matches the whole value
    ("/fox j.mps/", {"e1"}),  # on the body it is found anywhere
    ("code:[400 TO 404]", {"e1", "e2", "e3"}),
    ("code:[400 TO 404}", {"e1", "e2"}),
    ("code:{400 TO 404]", {"e2", "e3"}),
    ("code:[401 TO *]", {"e2", "e3", "e5"}),
    ("code:{* TO 401}", {"e1"}),
    ("age:>10", {"e1", "e2"}),
    ("age:>=12", {"e1", "e2"}),
    ("age:<12", {"e3"}),
    ("age:<=12", {"e1", "e3"}),
    ("age:(>=10 AND <20)", {"e1"}),
    ("age:(+>=10 +<20)", {"e1"}),
    ("quick^2 fox", {"e1"}),
    ('"brown fox"^2 (quick fox)^4', {"e1"}),
    ("quick brown +fox -news", {"e1"}),
    ("((quick AND fox) OR (brown AND fox) OR fox) AND NOT news", {"e1"}),
    ("quick && fox", {"e1"}),
    ("news || lazy", {"e2", "e3"}),
    ("fox !news", {"e1"}),
    ("fox -news", {"e1"}),
    ('"error: connection"', {"e5"}),
    ("\\(1\\+1\\)\\=2", set()),
    ("@timestamp:[now-3h TO now]", {"e1", "e3", "e5"}),
    ("@timestamp > now-1h", {"e3", "e5"}),
    ("@timestamp < now-1d", {"e2", "e4"}),
    ("@timestamp >= now-3d AND @timestamp <= now-1d", {"e2"}),
    ("@timestamp:[* TO now-2d]", {"e2", "e4"}),
    ("@timestamp:*", ALL),
    # KQL: exists, values, operators in any case, value lists, ranges, wildcards
    ("http.request.method: *", {"e4"}),
    ("http.request.method:GET", {"e4"}),
    ('title:"quick"', {"e1"}),
    ("response:200 or extension:php", {"e1", "e3"}),
    ("response:200 and extension:php", {"e1"}),
    ("response:200 and (extension:php or extension:css)", {"e1"}),
    ("response:(200 or 404)", {"e1", "e2", "e3"}),
    ("code:(400 or 401 or 404)", {"e1", "e2", "e3"}),
    ("code:(400 401 404)", set()),  # default operator AND: one value cannot be all three
    ("not response:200", {"e2", "e4", "e5"}),
    ("response:200 and not (extension:php or extension:css)", {"e3"}),
    ("NOT response:200 Or extension:css", {"e2", "e4", "e5"}),
    ("account_number >= 100 and items_sold <= 200", {"e4"}),
    ("account_number < 100", {"e5"}),
    ("machine.os:win*", {"e5"}),
    ('"and"', {"e4"}),  # a word that is an operator, quoted
    # analysed text: whole words, ASCII case folded, wildcards inside one word
    ("fox", {"e1", "e3"}),  # not "firefox"
    ("*fox*", {"e1", "e3", "e4"}),
    ('"quick brown"', {"e1", "e4"}),  # "Quick-brown" is the same two words
    ("quick-brown", {"e1", "e4"}),
    ("brown fox", {"e1", "e3"}),
    ('"brown fox"', {"e1", "e3"}),
    ('"fox brown"', set()),
    ("safari", set()),  # only in an attribute: free text is the body
    ("*:safari", {"e3"}),  # every field
    ("_all:safari", {"e3"}),
    # explicit namespaces: a well-known name never hides an attribute
    ('attributes.trace_id:"0242ac120002"', {"e3"}),
    ('trace_id:"0242ac120002"', set()),  # the TraceId column
    ('attributes.message:"from attribute"', {"e3"}),
    ("message:attribute", set()),  # the body
    # arrays match any element; maps by flattened key
    ("tags:many", {"e1"}),
    ("tags:more", {"e1"}),
    ("tags:ma*", {"e1"}),  # wildcards match elements too
    ("tags:m?ny", {"e1"}),
    ("tags:*or*", {"e1"}),
    ("tags:man", set()),
    ("ports:84*", {"e2"}),  # numbers as written
    ("ports:8?", {"e2"}),
    ("ports:t*e", {"e2"}),
    ('paths:/a\\"*', {"e2"}),  # an escaped quote is one character of the element
    ("paths:?x", {"e2"}),  # so is an escaped control character
    ("paths:?0001x", set()),
    ("paths:kv*", set()),  # an object's value is not an element
    ("_exists_:map.attribute", {"e1"}),
    ("_exists_:map", {"e1"}),
    ("map.attribute.a:x", {"e1"}),
    ("level:/info/", ALL),  # level ignores case, regexes too
    # field-name wildcards: any attribute whose key matches
    ("machine.os*:win", set()),  # attribute values are exact (not analysed text)
    ("machine.os*:win*", {"e5"}),
    ("machine.*:(win* OR linux)", {"e5"}),
    ("book.\\*:(quick OR brown)", set()),  # escaped or not, a star in a name is a wildcard
    ("ti*:(quick OR brown)", {"e1", "e2"}),
    ("map.*:*", {"e1"}),
    ("_exists_:map.*", {"e1"}),
    ("_exists_:machine.o?", {"e5"}),
    ("-map.*:*", {"e2", "e3", "e4", "e5"}),
    ("*_number:>=100", {"e4"}),
    ("co?e:/40[01]/", {"e1", "e2"}),
]

# (query, words the 400 must contain)
REFUSED: list[tuple[str, str]] = [
    ("quikc~ brwn~ foks~", "fuzzy"),
    ("quikc~1", "fuzzy"),
    ('"fox quick"~5', "proximity"),
    ("items:{ name:banana and stock > 10 }", "nested"),
    ("name:/jo(?=h)n/", "(?:"),
    ("name:/^john$/", "anchors"),
    ("name:/(a)\\1/", "escape"),
    ("name:/x{100}{100}/", "repetitions"),
    ("name:/[[:alpha:]]/", "POSIX"),
    ("@timestamp:now", "@timestamp takes a range"),
    ("@timestamp > now-1M", "not a time"),
    ("status!=active", "'!='"),
    ("quick^fast", "boost"),
    ("fox AND", "after 'AND'"),
    ("fox or", "after 'OR'"),
    ("not", "after 'NOT'"),
    ('"::"', "no letter or digit"),
    ("*:[1 TO 2]", "every field"),
    ("*:>5", "every field"),
]


def _table() -> pa.Table:
    schema = log_schema()
    columns = {}
    for field in schema:
        values = [row[field.name] for row in CORPUS]
        if field.name in MAP_COLUMNS:
            values = [list(v.items()) for v in values]
        columns[field.name] = pa.array(values, type=field.type)
    return pa.table(columns, schema=schema)


@pytest.fixture(scope="module")
def duck() -> Iterator[duckdb.DuckDBPyConnection]:
    con = duckdb.connect()
    con.register("logs", _table())
    yield con
    con.close()


@pytest.fixture(scope="module")
def clickhouse(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    client = clickhouse_connect.get_client(dsn=f"chdb://{tmp_path_factory.mktemp('chdb')}")
    client.command(CLICKHOUSE_DDL)
    client.insert_arrow("logs", _table())
    yield client
    client.close()


@pytest.mark.parametrize(("query", "expected"), ANSWERED, ids=[q for q, _ in ANSWERED])
def test_documented_meaning_on_every_engine(
    duck: duckdb.DuckDBPyConnection, clickhouse: Any, query: str, expected: set[str]
) -> None:
    node = parse(query, now_ns=NOW)
    reference = {row["EventId"] for row in CORPUS if matches(node, row)}
    where, params = compile_where(node, "duckdb")
    in_duckdb = {r[0] for r in duck.execute(f"SELECT EventId FROM logs WHERE {where}", params)
                 .fetchall()}  # fmt: skip
    where, params = compile_where(node, "clickhouse")
    answer = clickhouse.query(f"SELECT EventId FROM logs WHERE {where}", parameters=params)
    in_clickhouse = {r[0] for r in answer.result_rows}
    assert (reference, in_duckdb, in_clickhouse) == (expected, expected, expected)


@pytest.mark.parametrize(("query", "named"), REFUSED, ids=[q for q, _ in REFUSED])
def test_refused_with_the_construct_named(query: str, named: str) -> None:
    with pytest.raises(SyntaxErrorAt) as refused:
        parse(query, now_ns=NOW)
    assert refused.value.status == 400
    assert named in refused.value.detail + refused.value.extra["hint"]
    assert refused.value.extra["hint"]  # says what to write instead


def test_a_boost_is_ignored_with_a_notice() -> None:
    query = parse_query('"brown fox"^2 fox^0.5', now_ns=NOW)
    assert query.notices == (
        "boost '^2' ignored: results are ordered by time, not by relevance",
        "boost '^0.5' ignored: results are ordered by time, not by relevance",
    )
    assert parse_query("fox", now_ns=NOW).notices == ()
