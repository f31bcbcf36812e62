"""Skipping batches by their token index: which files of a plan cannot hold a match.

Stage: plan. From the query's AST this derives the words every matching event must contain
(:class:`Need`), then reads each candidate file's token filter from its Parquet footer
(:mod:`astralog.connectors.tokenindex`) and drops the files that lack them. The promise: a file
is skipped only when no event in it can match, under the token semantics of
:mod:`astralog.query.tokens`:

* ``And`` needs what each operand needs; ``Or`` needs what one of its branches needs;
  ``Not``, comparisons, ranges, regexes and ``_exists_`` need nothing (they can match an
  event without any given word).
* A free-text term or phrase (and ``body:``) needs its tokens. With wildcards, only the tokens a
  wildcard cannot extend count: bounded on both sides by a separator inside the literal or by
  the start or end of the value (``quick-bro*`` needs ``quick``; ``fox*`` needs nothing).
* ``field:value`` on an attribute (any map) or on ``trace_id`` is an exact match of the whole
  value or of one element of a JSON array value, so the value's tokens are tokens of the stored
  value, which the filter holds (every map value, the strings inside JSON values, and TraceId
  are indexed). Any other field, ``*:``/``_all:`` included, needs nothing.

A file without a filter (written before the index existed), or whose filter cannot be read, is
always read. Parsed filters are cached by file, keyed by its path, size and modification time
(a rewritten file is never answered from an old filter), within a byte budget.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Final, TypeVar

import pyarrow as pa
import pyarrow.parquet as pq

from astralog.connectors.tokenindex import KEY, U64, TokenFilter, query_hashes
from astralog.query.language import And, FieldKind, Match, Node, Or, Pattern
from astralog.query.tokens import tokens

__all__ = ["Need", "filters", "need_of", "skippable"]

T = TypeVar("T")

# Field kinds whose ``field:value`` is a whole-value (or JSON array element) match on a map
# value, which the index holds; by name, so a kind added to the language is never assumed.
_MAP_KINDS: Final = frozenset({"attribute", "resource", "log_attribute", "scope_attribute"})
_INDEXED_COLUMNS: Final = frozenset({"TraceId"})
CACHE_BYTES: Final = 64 * 2**20


@dataclass(frozen=True)
class Need:
    """Words a matching event must hold: ``all_of`` every one of them, and, for each group
    of ``any_of``, what one of its alternatives needs. An empty Need needs nothing."""

    all_of: frozenset[str] = frozenset()
    any_of: tuple[tuple[Need, ...], ...] = ()

    @property
    def empty(self) -> bool:
        return not self.all_of and not self.any_of

    def met_by(self, has_all: Callable[[frozenset[str]], bool]) -> bool:
        """Whether a file whose filter answers ``has_all`` may hold a match."""
        if self.all_of and not has_all(self.all_of):
            return False
        return all(any(n.met_by(has_all) for n in group) for group in self.any_of)


NOTHING: Final = Need()


def need_of(node: Node) -> Need:
    """What every event matching ``node`` must contain."""
    if isinstance(node, And):
        return _all(need_of(n) for n in node.operands)
    if isinstance(node, Or):
        branches = tuple(need_of(n) for n in node.operands)
        # One branch that needs nothing lets any file match.
        return NOTHING if any(b.empty for b in branches) else Need(any_of=(branches,))
    if isinstance(node, Match):
        return Need(frozenset(_match_tokens(node)))
    return NOTHING  # Not, Exists, Range, Regex, Severity, TimeRange, MatchAll


def _all(needs: Iterable[Need]) -> Need:
    all_of: set[str] = set()
    any_of: list[tuple[Need, ...]] = []
    for need in needs:
        all_of |= need.all_of
        any_of.extend(need.any_of)
    return Need(frozenset(all_of), tuple(any_of))


def _match_tokens(node: Match) -> list[str]:
    field = node.field
    indexed = (
        (field.kind is FieldKind.BODY and field.target == "Body")
        or field.kind.value in _MAP_KINDS
        or (field.kind is FieldKind.COLUMN and field.target in _INDEXED_COLUMNS)
    )
    return whole_tokens(node.pattern) if indexed else []


def whole_tokens(pattern: Pattern) -> list[str]:
    """The tokens of ``pattern`` no wildcard can extend, folded."""
    parts = pattern.parts
    found: list[str] = []
    for i, part in enumerate(parts):
        if not isinstance(part, str):
            continue
        words = tokens(part)
        if not words:
            continue
        # A wildcard touching a word character could make that token longer.
        if i > 0 and tokens(part[:1]):
            words = words[1:]
        if i < len(parts) - 1 and tokens(part[-1:]) and words:
            words = words[:-1]
        found.extend(words)
    return found


class FilterCache:
    """Parsed token filters by file, least recently used first out, within ``budget`` bytes."""

    def __init__(self, budget: int = CACHE_BYTES) -> None:
        self.budget = budget
        self._entries: OrderedDict[tuple[str, int, int], TokenFilter | None] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def get(self, path: str) -> TokenFilter | None:
        try:
            stat = os.stat(path)
        except OSError:
            return None  # the plan reports missing files; never skip what cannot be checked
        key = (path, stat.st_size, stat.st_mtime_ns)
        with self._lock:
            if key in self._entries:
                self._entries.move_to_end(key)
                return self._entries[key]
        found = _read_filter(path)
        with self._lock:
            if key not in self._entries:
                self._entries[key] = found
                self._bytes += _size(found)
            while self._bytes > self.budget and len(self._entries) > 1:
                _, dropped = self._entries.popitem(last=False)
                self._bytes -= _size(dropped)
        return found


def _size(found: TokenFilter | None) -> int:
    return 64 + (len(found.packed) if found is not None else 0)


def _read_filter(path: str) -> TokenFilter | None:
    try:
        metadata = pq.read_metadata(path).metadata or {}
    except (OSError, pa.ArrowException):
        return None
    value = metadata.get(KEY)
    return TokenFilter.decode(value) if value is not None else None


filters: Final = FilterCache()


def skippable(
    node: Node, items: Sequence[T], path_of: Callable[[T], str], cache: FilterCache = filters
) -> tuple[list[T], int]:
    """The ``items`` (batches, or file paths) a search for ``node`` must read, and how many
    it may skip because their token filter lacks a word every match needs."""
    need = need_of(node)
    if need.empty or not items:
        return list(items), 0
    hashes: dict[frozenset[str], U64] = {}

    def answers(path: str) -> Callable[[frozenset[str]], bool]:
        bloom = cache.get(path)

        def has_all(words: frozenset[str]) -> bool:
            if bloom is None:
                return True
            if words not in hashes:
                hashes[words] = query_hashes(sorted(words))
            return bloom.might_contain_all(hashes[words])

        return has_all

    kept = [item for item in items if need.met_by(answers(path_of(item)))]
    return kept, len(items) - len(kept)
