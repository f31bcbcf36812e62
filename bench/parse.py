"""Parse: events/s of the JSON events parser against pyarrow's bare JSON reader, in process.

    python -m bench.parse                        # 100,000 events, best of 7 rounds
    python -m bench.parse --events 20000 --rounds 3

The cost of parse and normalise alone (no gateway, no WAL, no HTTP): both readers see the same
NDJSON body of realistic ~300-byte events, in interleaved rounds so both see the same machine
load, and the best round of each counts. ``tests/ingest/test_json.py`` checks that the body
takes the fast path without rejects, so the number measures the path production takes.
"""

from __future__ import annotations

import argparse
import json
import random
import time
from datetime import UTC, datetime

import pyarrow as pa
import pyarrow.json as pj

from astralog.ingest.formats import parse_json_events
from astralog.ingest.normalise import NormaliseContext
from astralog.settings import IngestSettings

__all__ = ["benchmark", "realistic_ndjson"]

DESCRIPTION = "Events/s of parse_json_events against pyarrow's bare JSON reader on the same bytes."


def realistic_ndjson(n: int, now: float, seed: int = 1) -> bytes:
    """``n`` NDJSON lines of about 300 bytes, shaped like an HTTP service's structured logs."""
    rnd = random.Random(seed)  # noqa: S311 - sample log fields, no secrets
    services = ["checkout-api", "payments", "search", "auth", "frontend"]
    levels = ["info"] * 6 + ["debug", "warn", "error"]
    paths = ["/api/v1/orders", "/api/v1/cart", "/healthz", "/api/v2/search", "/login"]
    lines = []
    for _ in range(n):
        at = now - rnd.random() * 3600
        path, status = rnd.choice(paths), rnd.choice([200, 200, 200, 201, 404, 500])
        method = rnd.choice(["GET", "POST"])
        event = {
            "timestamp": datetime.fromtimestamp(at, UTC).isoformat().replace("+00:00", "Z"),
            "level": rnd.choice(levels),
            "service": rnd.choice(services),
            "message": f"{method} {path}/{rnd.randint(1, 99999)} completed with {status}",
            "http": {
                "method": method,
                "path": path,
                "status": status,
                "duration_ms": round(rnd.random() * 200, 3),
            },
            "trace_id": f"{rnd.getrandbits(128):032x}",
            "span_id": f"{rnd.getrandbits(64):016x}",
            "host": f"web-{rnd.randint(1, 12)}",
            "user_id": f"u-{rnd.randint(1, 50000)}",
            "region": rnd.choice(["eu-west-1", "us-east-1"]),
        }
        lines.append(json.dumps(event, separators=(",", ":")).encode())
    return b"\n".join(lines) + b"\n"


def benchmark(n: int = 100_000, rounds: int = 7) -> dict[str, float]:
    """Events/s of parse_json_events vs pyarrow's bare JSON reader on the same bytes."""
    body = realistic_ndjson(n, time.time())
    read_options = pj.ReadOptions(block_size=16 << 20)

    def bench_ctx() -> NormaliseContext:
        now = time.time_ns()
        return NormaliseContext("org", "src", now, now - 30 * 86_400 * 10**9, 30, IngestSettings())

    raw_best = ours_best = float("inf")
    for _ in range(rounds):  # interleaved, so both see the same machine load
        started = time.perf_counter()
        pj.read_json(pa.BufferReader(body), read_options=read_options)
        raw_best = min(raw_best, time.perf_counter() - started)
        started = time.perf_counter()
        parsed = parse_json_events(body, bench_ctx())
        ours_best = min(ours_best, time.perf_counter() - started)
        assert parsed.table.num_rows == n and not parsed.rejects
    return {
        "events": n,
        "bytes_per_event": len(body) / n,
        "raw_events_per_s": n / raw_best,
        "parse_events_per_s": n / ours_best,
        "ratio": raw_best / ours_best,
    }


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m bench.parse", description=DESCRIPTION)
    p.add_argument("--events", type=int, default=100_000, help="events in the body (100000)")
    p.add_argument("--rounds", type=int, default=7, help="rounds; the best one counts (7)")
    args = p.parse_args(argv)
    result = benchmark(args.events, args.rounds)
    print(
        f"{result['events']:,} events of {result['bytes_per_event']:.0f} bytes: "
        f"pyarrow.json.read_json {result['raw_events_per_s']:,.0f} events/s, "
        f"parse_json_events {result['parse_events_per_s']:,.0f} events/s "
        f"({result['ratio']:.0%} of the raw reader)"
    )


if __name__ == "__main__":
    main()
