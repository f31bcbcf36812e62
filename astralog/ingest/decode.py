"""Ingest stage 1, decode: undo the request's ``Content-Encoding`` without trusting it.

A compressed body is a promise about its size that the sender may break: a few kilobytes of gzip
can expand to gigabytes. Every decoder here streams and stops once it has produced ``limit + 1``
bytes, so a zip bomb costs at most the limit in memory and time before it is refused.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable

import zstandard

from astralog.errors import BadRequest, PayloadTooLarge, UnsupportedMediaType

__all__ = ["SUPPORTED_ENCODINGS", "decompress"]

SUPPORTED_ENCODINGS = ("gzip", "zstd", "deflate")
_ALIASES = {"x-gzip": "gzip", "zstandard": "zstd"}
_LIMIT_SETTING = "ASTRALOG_INGEST__MAX_DECOMPRESSED_BYTES"
_ZSTD_CHUNK = 1 << 20
_FIRST_FEED = 1 << 10
_MAX_FEED = 1 << 20
#: gzip members in one body; shippers write one per batch, and each member costs a decoder.
MAX_GZIP_MEMBERS = 10_000


def decompress(body: bytes, content_encoding: str | None, limit: int) -> bytes:
    """Decode ``body`` per ``Content-Encoding``; refuse output larger than ``limit`` bytes.

    Several encodings (``gzip, zstd``) were applied in the order listed, so they are undone in
    reverse. ``identity`` and an empty header leave the body as it is.
    """
    data = body
    for encoding in reversed(_parse_encodings(content_encoding)):
        data = _DECODERS[encoding](data, limit)
    if len(data) > limit:
        raise _too_large(limit)
    return data


def _parse_encodings(header: str | None) -> list[str]:
    encodings = []
    for token in (header or "").split(","):
        name = token.strip().lower()
        name = _ALIASES.get(name, name)
        if name in ("", "identity"):
            continue
        if name not in SUPPORTED_ENCODINGS:
            raise UnsupportedMediaType(
                f"Content-Encoding {token.strip()!r} is not supported; "
                f"supported: {', '.join(SUPPORTED_ENCODINGS)}"
            )
        encodings.append(name)
    return encodings


def _too_large(limit: int) -> PayloadTooLarge:
    return PayloadTooLarge(
        f"the decompressed body is larger than {limit} bytes, the limit set by {_LIMIT_SETTING}; "
        "send smaller batches",
        limit=limit,
    )


def _gunzip(data: bytes, limit: int) -> bytes:
    sink = _Sink(limit)
    view = memoryview(data)
    # Zero padding after the last member is tolerated, as gzip(1) does; found once, up front,
    # because checking the rest after every member would make many small members quadratic.
    end = len(data.rstrip(b"\0"))
    pos, members = 0, 0
    while pos < end:
        members += 1
        if members > MAX_GZIP_MEMBERS:
            raise BadRequest(
                f"the gzip body holds more than {MAX_GZIP_MEMBERS} members; "
                "compress the batch as one member (or a few)"
            )
        pos = _inflate_stream(view, pos, zlib.MAX_WBITS | 16, sink, "gzip")
    return sink.joined()


def _inflate_deflate(data: bytes, limit: int) -> bytes:
    # HTTP's "deflate" is the zlib format (RFC 1950), but many clients send raw deflate
    # (RFC 1951); the zlib header is self-checking, so it tells the two apart.
    is_zlib = len(data) >= 2 and data[0] & 0x0F == 8 and ((data[0] << 8) | data[1]) % 31 == 0
    sink = _Sink(limit)
    _inflate_stream(
        memoryview(data), 0, zlib.MAX_WBITS if is_zlib else -zlib.MAX_WBITS, sink, "deflate"
    )
    return sink.joined()


class _Sink:
    """The decoded output so far, refused as soon as it passes the limit."""

    def __init__(self, limit: int) -> None:
        self.limit, self.produced, self.chunks = limit, 0, list[bytes]()

    @property
    def room(self) -> int:
        return self.limit + 1 - self.produced

    def add(self, chunk: bytes) -> None:
        self.produced += len(chunk)
        if self.produced > self.limit:
            raise _too_large(self.limit)
        self.chunks.append(chunk)

    def joined(self) -> bytes:
        return b"".join(self.chunks)


def _inflate_stream(view: memoryview, pos: int, wbits: int, sink: _Sink, name: str) -> int:
    """Inflate one zlib/gzip/raw-deflate stream starting at ``pos``; return where it ended.

    Input is fed in pieces that start small and double: zlib copies whatever follows the end of
    a stream into ``unused_data``, so feeding all the rest would copy the body once per gzip
    member (quadratic), while a small first piece keeps a tiny member cheap and the doubling
    keeps a large one linear.
    """
    decoder = zlib.decompressobj(wbits)
    feed = _FIRST_FEED
    try:
        while not decoder.eof:
            piece = view[pos : pos + feed]
            # max_length caps what one call may produce, so the bomb never fully expands.
            chunk = decoder.decompress(piece, sink.room)
            sink.add(chunk)
            pos += len(piece) - len(decoder.unconsumed_tail) - len(decoder.unused_data)
            if not decoder.eof and not chunk and pos >= len(view):
                raise BadRequest(f"the {name} body is truncated: it ends before the stream does")
            feed = min(feed * 2, _MAX_FEED)
    except zlib.error as exc:
        raise BadRequest(f"the {name} body could not be decompressed: {exc}") from exc
    return pos


def _unzstd(data: bytes, limit: int) -> bytes:
    chunks: list[bytes] = []
    produced = 0
    reader = zstandard.ZstdDecompressor().stream_reader(data, read_across_frames=True)
    try:
        with reader:
            while chunk := reader.read(min(_ZSTD_CHUNK, limit + 1 - produced)):
                produced += len(chunk)
                if produced > limit:
                    raise _too_large(limit)
                chunks.append(chunk)
        complete = _zstd_frames_complete(data)
    except zstandard.ZstdError as exc:
        raise BadRequest(f"the zstd body could not be decompressed: {exc}") from exc
    if not complete:
        raise BadRequest("the zstd body is truncated: it ends before its last frame does")
    return b"".join(chunks)


def _zstd_frames_complete(data: bytes) -> bool:
    """Walk the frame and block headers (RFC 8878 3.1): the stream reader stops quietly at a
    truncated frame, and only the block sizes tell that the data ended early."""
    view = memoryview(data)
    pos, end = 0, len(data)
    while pos < end:
        if end - pos < 8:
            return False
        magic = int.from_bytes(view[pos : pos + 4], "little")
        if magic & 0xFFFFFFF0 == 0x184D2A50:  # a skippable frame: magic, size, payload
            pos += 8 + int.from_bytes(view[pos + 4 : pos + 8], "little")
            continue
        has_checksum = zstandard.get_frame_parameters(view[pos:]).has_checksum
        pos += zstandard.frame_header_size(view[pos:])
        last = False
        while not last:
            if pos + 3 > end:
                return False
            header = int.from_bytes(view[pos : pos + 3], "little")
            last, block_type, size = bool(header & 1), (header >> 1) & 3, header >> 3
            pos += 3 + (1 if block_type == 1 else size)  # an RLE block stores one byte
        pos += 4 if has_checksum else 0
    return pos == end


_DECODERS: dict[str, Callable[[bytes, int], bytes]] = {
    "gzip": _gunzip,
    "zstd": _unzstd,
    "deflate": _inflate_deflate,
}
