"""Ingest stage 1, decode: Content-Encoding, chains of encodings and the decompression ceiling."""

from __future__ import annotations

import gzip
import time
import tracemalloc
import zlib
from typing import Any

import pytest
import zstandard

from astralog.errors import BadRequest, PayloadTooLarge, UnsupportedMediaType
from astralog.ingest.decode import decompress

PAYLOAD = b'{"message":"hello"}\n' * 500


def _raw_deflate(data: bytes) -> bytes:
    compressor = zlib.compressobj(wbits=-zlib.MAX_WBITS)
    return compressor.compress(data) + compressor.flush()


@pytest.mark.parametrize(
    ("encoding", "encode"),
    [
        (None, lambda d: d),
        ("identity", lambda d: d),
        ("gzip", gzip.compress),
        ("x-gzip", gzip.compress),
        ("GZIP", gzip.compress),
        ("zstd", lambda d: zstandard.ZstdCompressor().compress(d)),
        ("deflate", zlib.compress),
        ("deflate", _raw_deflate),
        ("gzip, zstd", lambda d: zstandard.ZstdCompressor().compress(gzip.compress(d))),
        ("gzip", lambda d: gzip.compress(d[:100]) + gzip.compress(d[100:])),
    ],
)
def test_decompress_round_trips(encoding: str | None, encode: Any) -> None:
    assert decompress(encode(PAYLOAD), encoding, 1 << 20) == PAYLOAD


def test_zstd_stream_of_several_frames_without_content_size() -> None:
    compressor = zstandard.ZstdCompressor(write_content_size=False)
    body = compressor.compress(PAYLOAD[:3000]) + compressor.compress(PAYLOAD[3000:])
    assert decompress(body, "zstd", 1 << 20) == PAYLOAD


def test_unknown_encoding_is_unsupported_media_type() -> None:
    with pytest.raises(UnsupportedMediaType, match="supported: gzip, zstd, deflate") as info:
        decompress(PAYLOAD, "br", 1 << 20)
    assert info.value.status == 415


@pytest.mark.parametrize(
    ("encoding", "body", "message"),
    [
        ("gzip", b"this is not gzip", "gzip"),
        ("gzip", gzip.compress(PAYLOAD, mtime=0)[:-12], "gzip body is truncated"),
        ("zstd", b"this is not zstd", "zstd"),
        ("zstd", zstandard.ZstdCompressor().compress(PAYLOAD)[:-3], "zstd body is truncated"),
        ("deflate", b"\x00\x01garbage", "deflate"),
    ],
)
def test_corrupt_bodies_name_the_encoding(encoding: str, body: bytes, message: str) -> None:
    with pytest.raises(BadRequest, match=message) as info:
        decompress(body, encoding, 1 << 20)
    assert info.value.status == 400


@pytest.fixture(scope="module")
def bombs() -> dict[str, bytes]:
    """1 GiB of zeros, compressed as a stream so building it costs about a second."""
    zeros = bytes(1 << 20)
    gz = zlib.compressobj(1, zlib.DEFLATED, zlib.MAX_WBITS | 16)
    zs = zstandard.ZstdCompressor(level=1).compressobj()
    gz_parts, zs_parts = [], []
    for _ in range(1024):
        gz_parts.append(gz.compress(zeros))
        zs_parts.append(zs.compress(zeros))
    gz_parts.append(gz.flush())
    zs_parts.append(zs.flush())
    gzip_bomb = b"".join(gz_parts)
    raw = zlib.compressobj(1, zlib.DEFLATED, -zlib.MAX_WBITS)
    return {
        "gzip": gzip_bomb,
        "zstd": b"".join(zs_parts),
        "deflate": raw.compress(bytes(64 << 20)) + raw.flush(),
        "gzip, gzip": gzip.compress(gzip_bomb, compresslevel=1),
    }


@pytest.mark.parametrize("encoding", ["gzip", "zstd", "deflate", "gzip, gzip"])
def test_zip_bomb_is_refused_after_at_most_the_limit(
    bombs: dict[str, bytes], encoding: str
) -> None:
    limit = 1 << 20
    tracemalloc.start()
    started = time.perf_counter()
    try:
        with pytest.raises(PayloadTooLarge) as info:
            decompress(bombs[encoding], encoding, limit)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    elapsed = time.perf_counter() - started
    message = str(info.value)
    assert str(limit) in message and "ASTRALOG_INGEST__MAX_DECOMPRESSED_BYTES" in message
    assert info.value.status == 413
    # Expanding the bomb would take a gigabyte and seconds; stopping at the limit takes neither.
    assert peak < 3 * limit + 2 * len(bombs[encoding])
    assert elapsed < 1.0


def test_limit_applies_to_plain_bodies_too() -> None:
    with pytest.raises(PayloadTooLarge):
        decompress(bytes(2048), None, 1024)
    assert decompress(bytes(1024), None, 1024) == bytes(1024)
