"""Coverage-guided fuzzing of the ingest parsers with atheris (libFuzzer for Python).

Every entry point a request body reaches is called directly: decompression, the structural
pre-scan, and the JSON, NDJSON, OTLP (protobuf and JSON), Elasticsearch ``_bulk`` and Loki
(JSON and snappy protobuf) parsers. A refusal (:class:`~astralog.errors.AstralogError`, a 4xx)
is an answer; any other exception, a hang or a native crash is a finding, saved by libFuzzer
as ``crash-*`` in the working directory.

Run it with ``make fuzz`` or, for a time budget of your own::

    .venv/bin/python fuzz/parsers.py -max_total_time=600 -rss_limit_mb=4096 [corpus_dir]
"""

from __future__ import annotations

import contextlib
import json
import sys
import time

import atheris

with atheris.instrument_imports():
    from astralog.errors import AstralogError
    from astralog.ingest import formats, prescan
    from astralog.ingest.decode import decompress
    from astralog.ingest.normalise import NormaliseContext
    from astralog.settings import IngestSettings

LIMITS = IngestSettings()
NESTING = 100
ENTRY_POINTS = (
    "json", "otlp-protobuf", "otlp-json", "bulk", "loki-json", "loki-protobuf", "decompress",
    "prescan",
)  # fmt: skip


def _context() -> NormaliseContext:
    now = time.time_ns()
    return NormaliseContext("org_fuzz", "src_fuzz", now, now - 30 * 86_400 * 10**9, 30, LIMITS)


def _depth(value: object) -> int:
    """Nesting of a parsed document, without recursion (``[]`` and ``{}`` are depth 1)."""
    deepest, stack = 0, [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, list | dict):
            deepest = max(deepest, depth + 1)
            stack.extend((child, depth + 1) for child in
                         (item.values() if isinstance(item, dict) else item))  # fmt: skip
    return deepest


def _check_prescan(body: bytes) -> None:
    """The pre-scan agrees with Python's parser, one level of slack either way."""
    flagged = prescan.first_too_deep(body, NESTING) is not None
    try:
        depth = _depth(json.loads(body))
    except (ValueError, RecursionError):
        return
    if depth > NESTING + 1 and not flagged:
        raise AssertionError(f"depth {depth} passed the pre-scan: {body[:200]!r}")
    if depth < NESTING and flagged:
        raise AssertionError(f"depth {depth} was refused by the pre-scan: {body[:200]!r}")


def _parse(entry: str, body: bytes) -> None:
    ctx = _context()
    if entry == "json":
        formats.parse_json_events(body, ctx)
    elif entry == "otlp-protobuf":
        formats.parse_otlp_logs(body, "application/x-protobuf", ctx)
    elif entry == "otlp-json":
        formats.parse_otlp_logs(body, "application/json", ctx)
    elif entry == "bulk":
        formats.parse_es_bulk(body, None, ctx)
    elif entry == "loki-json":
        formats.parse_loki_push(body, "application/json", ctx)
    elif entry == "loki-protobuf":
        formats.parse_loki_push(body, "application/x-protobuf", ctx)
    elif entry == "decompress":
        decompress(body, "gzip, zstd", LIMITS.max_decompressed_bytes)
    else:
        _check_prescan(body)


def test_one_input(data: bytes) -> None:
    provider = atheris.FuzzedDataProvider(data)
    entry = ENTRY_POINTS[provider.ConsumeIntInRange(0, len(ENTRY_POINTS) - 1)]
    body = provider.ConsumeBytes(provider.remaining_bytes())
    with contextlib.suppress(AstralogError):  # a 4xx with a reason: what bad input should get
        _parse(entry, body)


def main() -> None:
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
