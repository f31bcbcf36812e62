"""The Parquet token index: what the writer stores and when a search may skip a file.

The index must hold every token of every indexed value (else a skip loses a match), read back
from the footer of the file the one writer produces; the skip logic must never drop a file
holding an event the reference evaluator selects, for any query.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from astralog.connectors.parquet import to_parquet_bytes, write_parquet
from astralog.connectors.tokenindex import KEY, TokenFilter, hash_tokens, query_hashes, text_columns
from astralog.query.language import parse
from astralog.query.skipindex import FilterCache, Need, need_of, skippable
from astralog.query.tokens import tokens
from astralog.schema import log_schema
from tests.reference_filter import matches

MAPS = ("LogAttributes", "ResourceAttributes", "ScopeAttributes")


def table_of(rows: list[dict[str, Any]]) -> pa.Table:
    """Canonical-schema rows from partial dicts (maps as dicts); the rest empty."""
    schema = log_schema()
    columns: dict[str, pa.Array] = {}
    for f in schema:
        if pa.types.is_timestamp(f.type):
            values: list[Any] = [
                r.get(f.name, 1_700_000_000 * 10**9 + i) for i, r in enumerate(rows)
            ]
            columns[f.name] = pa.array(values, pa.int64()).cast(f.type)
        elif pa.types.is_map(f.type):
            columns[f.name] = pa.array([list(r.get(f.name, {}).items()) for r in rows], f.type)
        elif pa.types.is_integer(f.type):
            columns[f.name] = pa.array([r.get(f.name, 0) for r in rows], f.type)
        else:
            columns[f.name] = pa.array([r.get(f.name, "") for r in rows], f.type)
    columns["EventId"] = pa.array([f"e-{i}" for i in range(len(rows))])
    return pa.table(columns, schema=schema)


def reference_rows(table: pa.Table) -> list[dict[str, Any]]:
    rows = table.to_pylist()
    for row in rows:
        row["Timestamp"] = int(row["Timestamp"].value)
        for name in MAPS:
            row[name] = dict(row[name])
    return rows


def stored_filter(table: pa.Table) -> TokenFilter:
    data = to_parquet_bytes(table, row_group_rows=1024)
    metadata = pq.read_metadata(pa.BufferReader(data)).metadata
    found = TokenFilter.decode(metadata[KEY])
    assert found is not None
    return found


# Texts with every kind of character the token rules care about: ASCII letters in both cases,
# digits, separators, multi-byte letters (including ones Unicode would case-fold), controls.
ALPHABET = st.sampled_from([*list('aZq09 .-_/:"\\\n\t,éÉßİΣ日€'), "😀"])
TEXT = st.text(ALPHABET, max_size=24)


@settings(max_examples=60, deadline=None)
@given(
    bodies=st.lists(TEXT, min_size=1, max_size=8),
    values=st.lists(st.one_of(TEXT, st.lists(TEXT, max_size=3).map(json.dumps)), max_size=6),
)
def test_the_index_holds_exactly_the_tokens_of_the_indexed_values(
    bodies: list[str], values: list[str]
) -> None:
    rows = [
        {"Body": b, "LogAttributes": {f"k{i}": v for i, v in enumerate(values)}} for b in bodies
    ]
    table = table_of(rows)
    expected = {t for text in bodies + values for t in tokens(text)}
    for value in values:  # JSON arrays: a search matches each element as it was sent
        if value.startswith("["):
            expected |= {t for element in json.loads(value) for t in tokens(element)}
    hashed = set(hash_tokens(text_columns(table)).tolist())
    assert set(query_hashes(sorted(expected)).tolist()) <= hashed
    if not any("\\" in v for v in values):  # without JSON escapes nothing else is indexed
        assert hashed == set(query_hashes(sorted(expected)).tolist())
    assert stored_filter(table).might_contain_all(query_hashes(sorted(expected)))


def test_about_one_in_a_hundred_absent_words_looks_present() -> None:
    words = [f"w{i}x" for i in range(20_000)]
    bloom = stored_filter(
        table_of([{"Body": " ".join(words[i : i + 50])} for i in range(0, 20_000, 50)])
    )
    absent = query_hashes([f"absent{i}" for i in range(20_000)])
    rate = np.mean([bloom.might_contain_all(absent[i : i + 1]) for i in range(len(absent))])
    assert 0.003 < rate < 0.02
    assert bloom.might_contain_all(query_hashes(words))


def test_the_filter_is_in_the_footer_once_and_the_rows_read_back_unchanged(tmp_path: Path) -> None:
    table = table_of([{"Body": "needle in a haystack"}] * 10)
    path = tmp_path / "b.parquet"
    write_parquet(table, str(path), row_group_rows=4)
    metadata = pq.read_metadata(path).metadata
    assert metadata is not None and KEY in metadata
    # Not also inside the serialised Arrow schema (which would store it twice).
    assert len(metadata[b"ARROW:schema"]) < 4000
    back = pq.read_table(path)
    assert back.equals(table) and back.schema.metadata == table.schema.metadata


@pytest.mark.parametrize(
    ("query", "words"),
    [
        ("timeout", {"timeout"}),
        ("TimeOut db-1", {"timeout", "db", "1"}),
        ('"connection refused"', {"connection", "refused"}),
        ("quick-bro*", {"quick"}),
        ("fox*", set()),
        ("*fox", set()),
        ("qu?ck", set()),
        ("a*b-cd", {"cd"}),
        ("host:web-?", {"web"}),
        ("user.id:42", {"42"}),
        ("attributes.user.id:42", {"42"}),
        ("resource.host.name:db-1", {"db", "1"}),
        ("trace_id:ABC123", {"abc123"}),
        ("service:api", set()),  # a column the index does not hold
        ("level:error", set()),
        ("-timeout", set()),
        ("NOT timeout AND refused", {"refused"}),
        ("status>=500", set()),
        ("/time.ut/", set()),
        ("_exists_:user", set()),
        ("*:timeout", set()),  # every field, columns the index does not hold among them
        ("", set()),
    ],
)
def test_the_words_a_match_must_hold(query: str, words: set[str]) -> None:
    assert need_of(parse(query)).all_of == words


def test_or_needs_one_branch_and_a_free_branch_frees_it() -> None:
    need = need_of(parse("(alpha beta) OR gamma"))
    assert need.any_of == ((Need(frozenset({"alpha", "beta"})), Need(frozenset({"gamma"}))),)
    assert need_of(parse("alpha OR -beta")).empty
    assert need_of(parse("alpha OR level:error")).empty


def test_files_without_an_index_or_missing_are_read(tmp_path: Path) -> None:
    table = table_of([{"Body": "nothing here"}])
    old = tmp_path / "old.parquet"
    pq.write_table(table, old)  # an older batch: no token index
    new = tmp_path / "new.parquet"
    write_parquet(table, str(new), row_group_rows=8)
    files = [str(old), str(new), str(tmp_path / "gone.parquet")]
    kept, skipped = skippable(parse("needle"), files, str, FilterCache())
    assert kept == [str(old), str(tmp_path / "gone.parquet")] and skipped == 1
    assert skippable(parse("nothing"), files, str, FilterCache()) == (files, 0)


def test_a_rewritten_file_is_not_answered_from_the_cache(tmp_path: Path) -> None:
    path = tmp_path / "b.parquet"
    cache = FilterCache()
    write_parquet(table_of([{"Body": "first"}]), str(path), row_group_rows=8)
    assert skippable(parse("second"), [str(path)], str, cache)[1] == 1
    write_parquet(table_of([{"Body": "second version"}]), str(path), row_group_rows=8)
    assert skippable(parse("second"), [str(path)], str, cache)[1] == 0


def test_the_cache_stays_within_its_budget(tmp_path: Path) -> None:
    cache = FilterCache(budget=3000)
    paths = []
    for i in range(20):
        path = tmp_path / f"{i}.parquet"
        write_parquet(table_of([{"Body": f"w{j} {i}"} for j in range(200)]), str(path), 64)
        paths.append(str(path))
    skippable(parse("nothing"), paths, str, cache)
    assert 0 < len(cache._entries) < 20 and cache._bytes <= 3000


# ---- the property: a skip never loses a match -------------------------------------------------

WORDS = ("alpha", "Beta", "db-1", "zürich", "ERR", "42", "x_y", "a.b", "日本")
VALUE = st.lists(st.sampled_from(WORDS), min_size=1, max_size=3).map(" ".join)
ROW = st.fixed_dictionaries(
    {
        "Body": VALUE,
        "LogAttributes": st.dictionaries(
            st.sampled_from(("k", "user.id", "tags")), VALUE, max_size=2
        ),
        "ResourceAttributes": st.dictionaries(st.just("host.name"), VALUE, max_size=1),
        "TraceId": st.sampled_from(("", "abc123", "def456")),
        "ServiceName": st.sampled_from(("", "api", "alpha")),
    }
)


WILD = ("alp*", "*ta", "*et*", "db-?", "d?-1", "*-1", "x_*", "*_y", "z*ch", "a.*")


def _term() -> st.SearchStrategy[str]:
    word = st.sampled_from(WORDS + WILD + WILD + ("gamma", "ZÜRICH"))
    field = st.sampled_from(
        ("", "", "", "k:", "user.id:", "host:", "attributes.k:", "trace_id:", "*:")
    )
    phrase = st.lists(st.sampled_from(WORDS), min_size=1, max_size=2).map(
        lambda w: '"' + " ".join(w) + '"'
    )
    return st.one_of(
        st.tuples(field, st.one_of(word, word, phrase)).map("".join),
        st.sampled_from(("level:error", "service:api", "_exists_:k", "/alp.a/")),
    )


QUERY = st.recursive(
    _term(),
    lambda inner: st.one_of(
        st.tuples(inner, st.sampled_from((" ", " AND ", " OR ")), inner).map(
            lambda t: f"({t[0]}{t[1]}{t[2]})"
        ),
        inner.map(lambda q: f"-{q}"),
    ),
    max_leaves=4,
)


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(files=st.lists(st.lists(ROW, min_size=1, max_size=4), min_size=1, max_size=4), query=QUERY)
def test_a_skipped_file_never_holds_a_match(
    files: list[list[dict[str, Any]]], query: str, tmp_path: Path
) -> None:
    node = parse(query)
    paths, tables = [], []
    for i, rows in enumerate(files):
        table = table_of(rows)
        path = tmp_path / f"{i}.parquet"
        write_parquet(table, str(path), row_group_rows=2)
        paths.append(str(path))
        tables.append(table)
    kept, _ = skippable(node, paths, str, FilterCache())
    for path, table in zip(paths, tables, strict=True):
        if path not in kept:
            assert not any(matches(node, row) for row in reference_rows(table)), (query, path)


FIELDS = ("", "k:", "user.id:", "host:", "attributes.k:", "resource.host.name:", "trace_id:", "*:")


@pytest.fixture(scope="module")
def one_word_files(tmp_path_factory: pytest.TempPathFactory) -> list[tuple[str, pa.Table]]:
    """A file per word, holding it in the body, in attributes and as a trace id."""
    directory = tmp_path_factory.mktemp("words")
    files = []
    for i, word in enumerate((*WORDS, "Beta-Zürich_db-1")):
        maps = {"k": word, "user.id": word}
        row = {"Body": word, "LogAttributes": maps, "ResourceAttributes": {"host.name": word}}
        table = table_of([row | {"TraceId": word}])
        path = directory / f"{i}.parquet"
        write_parquet(table, str(path), row_group_rows=2)
        files.append((str(path), table))
    return files


@pytest.mark.parametrize("field", FIELDS)
def test_every_single_term_keeps_every_file_that_matches(
    field: str, one_word_files: list[tuple[str, pa.Table]]
) -> None:
    cache = FilterCache()
    terms = WORDS + WILD + ("gamma", "ZÜRICH", '"beta zürich"', '"zürich beta"', "beta-z*")
    for term in terms:
        node = parse(field + term)
        kept, _ = skippable(node, [path for path, _ in one_word_files], str, cache)
        for path, table in one_word_files:
            if path not in kept:
                assert not any(matches(node, r) for r in reference_rows(table)), (
                    field + term,
                    path,
                )
