"""The token index a Parquet batch carries: which words its events hold, as a bloom filter.

Built when a batch is written (flush and compaction share :func:`astralog.connectors.parquet.
write_parquet`) over every token (:mod:`astralog.query.tokens`) of ``Body`` and of the values of
``LogAttributes``, ``ResourceAttributes`` and ``ScopeAttributes``, and stored in the file's
key-value metadata under :data:`KEY`, so it travels with the file to any bucket and is rebuilt
whenever a file is rewritten. A search reads it from the footer and skips a file that lacks a
word every match needs (:mod:`astralog.query.skipindex`). A bloom filter never says "absent"
for a token it holds, so a skip is always safe; about 1 % of absent tokens look present.

Everything is vectorised over the bytes of the whole column (no Python loop per row or per
token): a byte is a token byte when it is an ASCII letter or digit or any byte of a multi-byte
UTF-8 character (>= 0x80), exactly the characters of :data:`astralog.query.tokens.WORD_CLASS`;
ASCII letters are folded as :func:`astralog.query.tokens.fold` does. A token's hash is a
polynomial over its folded bytes computed from prefix sums (mod 2**64), then mixed.

Value layout (version 1): ``b"TB1"``, ``k`` (u8), the number of bits ``m`` (u32, little
endian), then ``m / 8`` bytes of bits (bit ``i`` is bit ``i % 8`` of byte ``i // 8``).
"""

from __future__ import annotations

import json
import math
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

__all__ = ["KEY", "TokenFilter", "build_filter", "hash_tokens", "query_hashes", "text_columns"]

KEY: Final = b"astralog.token_bloom"
MAGIC: Final = b"TB1"
_HEADER: Final = struct.Struct("<3sBI")
FALSE_POSITIVE_RATE: Final = 0.01
TEXT_COLUMNS: Final = ("Body", "TraceId")
MAP_COLUMNS: Final = ("LogAttributes", "ResourceAttributes", "ScopeAttributes")

U64 = npt.NDArray[np.uint64]
_MULTIPLIER: Final = 0x100000001B3  # odd, so invertible mod 2**64
_INVERSE: Final = pow(_MULTIPLIER, -1, 2**64)

_IS_TOKEN_BYTE: Final = np.zeros(256, dtype=bool)
for _ch in b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz":
    _IS_TOKEN_BYTE[_ch] = True
_IS_TOKEN_BYTE[0x80:] = True
# A byte's folded value in a token, or a space where it separates tokens.
_FOLD_OR_SPACE: Final = np.arange(256, dtype=np.uint8)
_FOLD_OR_SPACE[ord("A") : ord("Z") + 1] += 32
_FOLD_OR_SPACE[~_IS_TOKEN_BYTE] = ord(" ")


def text_columns(table: pa.Table) -> list[pa.Array]:
    """Every text the index covers: Body, TraceId and the maps' values (distinct values once).

    A map value that holds JSON escapes (an array or object stored as JSON text, whose
    elements a search matches one by one) is added once more as the strings it decodes to,
    so its words are indexed as they were sent (``["a\\nb"]`` holds ``b``, not only ``nb``)."""
    texts = [table[name].combine_chunks() for name in TEXT_COLUMNS if name in table.column_names]
    for name in MAP_COLUMNS:
        if name in table.column_names:
            # Attribute values repeat (methods, statuses, hosts): tokenising each once pays.
            values = pc.unique(table[name].combine_chunks().items.drop_null())
            texts.append(values)
            escaped = values.filter(pc.match_substring(values, "\\"))
            if len(escaped):
                texts.append(pa.array(_decoded_strings(escaped.to_pylist()), pa.string()))
    return texts


def _decoded_strings(values: list[str]) -> list[str]:
    """The strings inside the values that are JSON text (few: only values with a backslash)."""
    out: list[str] = []
    for value in values:
        try:
            _collect(json.loads(value), out)
        except ValueError:
            continue
    return out


def _collect(node: object, out: list[str]) -> None:
    if isinstance(node, str):
        out.append(node)
    elif isinstance(node, list):
        for item in node:
            _collect(item, out)
    elif isinstance(node, dict):
        for key, item in node.items():
            out.append(key)
            _collect(item, out)


def _bytes_of(texts: pa.Array) -> tuple[npt.NDArray[np.uint8], npt.NDArray[np.int64]]:
    """The UTF-8 bytes of a string array and where each string starts, plus the end, from 0."""
    _, offsets_buf, data_buf = texts.buffers()
    wide = np.int64 if texts.type == pa.large_string() else np.int32
    offsets = np.frombuffer(offsets_buf, wide)[texts.offset : texts.offset + len(texts) + 1]
    data = np.frombuffer(data_buf, np.uint8) if data_buf is not None else np.zeros(0, np.uint8)
    if not len(offsets):
        return data[:0], np.zeros(1, np.int64)
    return data[offsets[0] : offsets[-1]], offsets.astype(np.int64) - offsets[0]


def _tokens_of(texts: pa.Array) -> pa.Array:
    """Every folded token of a string array, duplicates kept.

    One table lookup folds A-Z and turns every separator byte into a space; Arrow's whitespace
    split then cuts the tokens out, never across two values."""
    texts = texts.cast(pa.string()) if texts.type != pa.string() else texts
    validity, offsets, data = texts.buffers()
    if data is None or not len(texts):
        return pa.array([], pa.string())
    spaced = pa.py_buffer(_FOLD_OR_SPACE[np.frombuffer(data, np.uint8)])
    view = pa.StringArray.from_buffers(
        len(texts), offsets, spaced, validity, texts.null_count, texts.offset
    )
    return pc.list_flatten(pc.ascii_split_whitespace(view))


def _mix(h: U64) -> U64:
    """splitmix64's finaliser: every input bit reaches every output bit."""
    h = h ^ (h >> np.uint64(30))
    h = h * np.uint64(0xBF58476D1CE4E5B9)
    h = h ^ (h >> np.uint64(27))
    h = h * np.uint64(0x94D049BB133111EB)
    return h ^ (h >> np.uint64(31))


def _span_hashes(
    data: npt.NDArray[np.uint8], starts: npt.NDArray[np.int64], ends: npt.NDArray[np.int64]
) -> U64:
    """The hash of each byte span, from prefix sums of ``byte * M**i`` (mod 2**64)."""
    with np.errstate(over="ignore"):
        n = len(data)
        powers = np.full(n + 1, _MULTIPLIER, dtype=np.uint64)
        powers[0] = 1
        powers = np.cumprod(powers, dtype=np.uint64)
        inverses = np.full(n + 1, _INVERSE, dtype=np.uint64)
        inverses[0] = 1
        inverses = np.cumprod(inverses, dtype=np.uint64)
        prefix = np.zeros(n + 1, dtype=np.uint64)
        np.cumsum(data.astype(np.uint64) * powers[:n], dtype=np.uint64, out=prefix[1:])
        poly = (prefix[ends] - prefix[starts]) * inverses[starts]
        lengths = (ends - starts).astype(np.uint64)
        return _mix(poly ^ (lengths * np.uint64(0x9E3779B97F4A7C15)))


def hash_tokens(texts: Sequence[pa.Array]) -> U64:
    """The hashes of the distinct folded tokens of ``texts``."""
    distinct = pc.unique(pa.chunked_array([_tokens_of(t) for t in texts], pa.string()))
    distinct = distinct.filter(pc.not_equal(distinct, ""))  # the split leaves "" at the ends
    data, offsets = _bytes_of(distinct)
    return _span_hashes(data, offsets[:-1], offsets[1:])


@dataclass(frozen=True)
class TokenFilter:
    """A bloom filter over token hashes: ``k`` probes into ``m`` bits."""

    k: int
    m: int
    packed: npt.NDArray[np.uint8]  # bit ``i`` is bit ``i % 8`` of byte ``i // 8``

    @classmethod
    def of(cls, hashes: U64) -> TokenFilter:
        """A filter holding ``hashes``, sized for them at :data:`FALSE_POSITIVE_RATE`."""
        count = max(len(hashes), 1)
        bits = -count * math.log(FALSE_POSITIVE_RATE) / math.log(2) ** 2
        m = max(64, math.ceil(bits / 64) * 64)
        k = min(16, max(1, round(m / count * math.log(2))))
        present = np.zeros(m, dtype=bool)
        present[_positions(hashes, k, m).ravel()] = True
        return cls(k, m, np.packbits(present, bitorder="little"))

    def might_contain_all(self, hashes: U64) -> bool:
        """False only when some hash was surely never added."""
        at = _positions(hashes, self.k, self.m)
        return bool(
            ((self.packed[at >> np.uint64(3)] >> (at & np.uint64(7)).astype(np.uint8)) & 1).all()
        )

    def encode(self) -> bytes:
        return _HEADER.pack(MAGIC, self.k, self.m) + self.packed.tobytes()

    @classmethod
    def decode(cls, value: bytes) -> TokenFilter | None:
        """The filter stored in ``value``, or None when it is not one this version reads."""
        if len(value) < _HEADER.size:
            return None
        magic, k, m = _HEADER.unpack_from(value)
        packed = np.frombuffer(value, np.uint8, offset=_HEADER.size)
        if magic != MAGIC or k < 1 or m < 8 or m % 8 or len(packed) != m // 8:
            return None
        return cls(k, m, packed)


def _positions(hashes: U64, k: int, m: int) -> npt.NDArray[np.uint64]:
    """Double hashing: probe ``i`` of hash ``h`` is ``h + i * (h >> 32 | 1)`` mod ``m``."""
    with np.errstate(over="ignore"):
        step = (hashes >> np.uint64(32)) | np.uint64(1)
        probes = np.arange(k, dtype=np.uint64)
        return (hashes[:, None] + probes[None, :] * step[:, None]) % np.uint64(m)


def build_filter(table: pa.Table) -> TokenFilter:
    """The token filter of a batch about to be written."""
    return TokenFilter.of(hash_tokens(text_columns(table)))


def query_hashes(words: Sequence[str]) -> U64:
    """The hashes of ``words``, each already one folded token (:func:`astralog.query.tokens.
    tokens`), as :meth:`TokenFilter.might_contain_all` takes them."""
    return hash_tokens([pa.array(list(words), pa.string())])
