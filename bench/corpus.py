"""The benchmark corpus: seeded, realistic log events as NDJSON, generated once and reused.

Four kinds of events, in the proportions a mixed production fleet ships:

* nginx access logs as JSON (``@timestamp``, method, path, status, bytes, user agent, the raw
  combined-log line in ``message``), about 45 %;
* JSON application logs with nested fields (``user.id``, ``http.*``), W3C trace and span ids that
  repeat across the few lines of one trace, about 35 %;
* Kubernetes container logs as Fluent Bit ships them (``log``, ``stream``, ``kubernetes.*`` and
  OpenTelemetry resource attributes under ``resource``), about 17 %;
* error events whose message is a multi-line Python or Java stack trace, about 3 %.

Events are ~300 bytes on average and their timestamps are spread over the 24 hours before the
corpus *anchor*, in time order like a shipper sends them. The anchor is the generation time and is
stored in the manifest: every time range a scenario queries is relative to it, so a corpus stays
valid (and "the last 15 minutes" stays selective) however long it is reused. The same seed and
size give the same events; ``anchor`` can be pinned for byte-identical files.

Generation runs in chunks, each seeded by ``(seed, chunk)`` and covering its own slice of the 24
hours, so it parallelises across cores and the output does not depend on the number of workers.
:func:`batches` cuts a corpus into gzip request bodies once per batch size and caches them.
"""

from __future__ import annotations

import functools
import gzip
import itertools
import json
import multiprocessing
import os
import random
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

__all__ = ["BatchFile", "Corpus", "batches", "ensure_corpus", "iso"]

CHUNK_EVENTS = 50_000
SPAN_NS = 24 * 3600 * 10**9
# Needles are planted in these places so the query scenario knows values that exist.
NEEDLE_CHUNK_FRACTION = 0.37
PHRASE = "connection reset by peer"


def iso(ns: int) -> str:
    """RFC 3339 with nanoseconds, the form the search API accepts for ``start``/``end``."""
    seconds, rest = divmod(ns, 10**9)
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S") + f".{rest:09d}Z"


@dataclass(frozen=True)
class Corpus:
    path: Path  # NDJSON, or NDJSON.gz when generated with gzip=True
    events: int
    raw_bytes: int  # uncompressed NDJSON bytes
    anchor_ns: int  # events lie in [anchor - 24 h, anchor)
    seed: int
    needles: dict[str, Any]

    @property
    def start_ns(self) -> int:
        return self.anchor_ns - SPAN_NS

    def read_bytes(self) -> bytes:
        data = self.path.read_bytes()
        return gzip.decompress(data) if self.path.suffix == ".gz" else data

    def manifest(self) -> dict[str, Any]:
        return {
            "path": str(self.path),
            "events": self.events,
            "raw_bytes": self.raw_bytes,
            "anchor": iso(self.anchor_ns),
            "anchor_ns": self.anchor_ns,
            "seed": self.seed,
            "needles": self.needles,
        }


def ensure_corpus(
    directory: Path,
    events: int,
    *,
    seed: int = 7,
    gzip_file: bool = False,
    anchor_ns: int | None = None,
    fresh: bool = False,
    workers: int | None = None,
) -> Corpus:
    """The corpus of ``events`` events for ``seed`` in ``directory``, generated if missing."""
    directory.mkdir(parents=True, exist_ok=True)
    stem = f"corpus-s{seed}-n{events}"
    path = directory / (stem + (".ndjson.gz" if gzip_file else ".ndjson"))
    manifest_path = directory / (stem + (".gz" if gzip_file else "") + ".json")
    if path.exists() and manifest_path.exists() and not fresh:
        meta = json.loads(manifest_path.read_text())
        return Corpus(
            path, meta["events"], meta["raw_bytes"], meta["anchor_ns"], seed, meta["needles"]
        )
    anchor = anchor_ns if anchor_ns is not None else time.time_ns()
    corpus = _generate(path, events, seed, anchor, gzip_file, workers or os.cpu_count() or 1)
    manifest_path.write_text(json.dumps(corpus.manifest(), indent=2))
    return corpus


def _generate(
    path: Path, events: int, seed: int, anchor_ns: int, gzip_file: bool, workers: int
) -> Corpus:
    chunks = max(1, -(-events // CHUNK_EVENTS))
    needle_chunk = min(chunks - 1, int(chunks * NEEDLE_CHUNK_FRACTION))
    tasks = [
        (seed, i, chunks, min(CHUNK_EVENTS, events - i * CHUNK_EVENTS), anchor_ns)
        for i in range(chunks)
    ]
    tmp = path.with_name("." + path.name + ".tmp")
    raw_bytes = 0
    needles: dict[str, Any] = {}
    opener = gzip.open if gzip_file else open
    with opener(tmp, "wb") as out:
        for i, (data, planted) in enumerate(_map_chunks(tasks, workers)):
            out.write(data)
            raw_bytes += len(data)
            if i == needle_chunk:
                needles = planted
    tmp.rename(path)
    return Corpus(path, events, raw_bytes, anchor_ns, seed, needles)


def _map_chunks(
    tasks: list[tuple[int, int, int, int, int]], workers: int
) -> Iterator[tuple[bytes, dict[str, Any]]]:
    if workers <= 1 or len(tasks) == 1:
        yield from (_chunk(*t) for t in tasks)
        return
    with multiprocessing.get_context("spawn").Pool(workers) as pool:
        yield from pool.imap(_chunk_star, tasks)


def _chunk_star(task: tuple[int, int, int, int, int]) -> tuple[bytes, dict[str, Any]]:
    return _chunk(*task)


# ---------------------------------------------------------------------------------------------
# The event generators


SERVICES = (
    "checkout", "payments", "cart", "search", "auth", "inventory", "shipping", "recommendations",
    "notifications", "api",
)  # fmt: skip
NAMESPACES = ("prod", "prod", "prod", "staging", "kube-system", "monitoring")
CONTAINERS = ("api", "worker", "sidecar-envoy", "cron", "coredns", "prometheus")
PATHS = (
    "/", "/api/v1/orders", "/api/v1/orders/{id}", "/api/v1/users/{id}", "/api/v1/cart",
    "/api/v1/search?q={q}", "/static/js/app.{id}.js", "/static/css/main.css", "/healthz",
    "/api/v1/products/{id}", "/api/v1/checkout", "/login", "/metrics",
)  # fmt: skip
USER_AGENTS = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) Chrome/126.0",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) Safari/605.1.15",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) Mobile/15E148",
    "curl/8.5.0",
    "kube-probe/1.30",
    "Go-http-client/1.1",
    "python-httpx/0.27.0",
)
WORDS = (
    "order", "cart", "user", "session", "payment", "invoice", "item", "stock", "token", "cache",
    "queue", "request", "batch", "job", "shard", "replica", "lease", "quota", "profile", "index",
)  # fmt: skip
INFO_MESSAGES = (
    "order {n} placed by user {u}",
    "payment authorised for order {n} in {ms} ms",
    "cache hit for {w} {n}",
    "cache miss for {w} {n}, loading from database",
    "request completed in {ms} ms",
    "processed batch of {k} {w}s",
    "user {u} logged in",
    "scheduled job {w}-sync finished, {k} records",
    "published event {w}.updated id={n}",
    "lease renewed for {w} shard {k}",
)
DEBUG_MESSAGES = (
    "SQL query took {ms} ms: SELECT * FROM {w}s WHERE id = $1",
    "retrying {w} lookup, attempt {k}",
    "feature flag {w}_v2 evaluated to false for user {u}",
)
WARN_MESSAGES = (
    "slow request: {ms} ms for {w} {n}",
    "upstream " + PHRASE + ", retrying ({k}/3)",
    "quota at {k}0% for tenant {u}",
    "deprecated API version used by client {w}",
)
ERROR_MESSAGES = (
    "failed to charge card for order {n}: card_declined",
    "timeout after 30000 ms calling {w}-service",
    "database " + PHRASE + " while writing {w} {n}",
    "could not acquire lock on {w} {n}",
)
K8S_LINES = (
    'I1126 {hms}.{us}       1 controller.go:{k}] "Reconciling" {w}="{w}-{n}"',
    'level=info ts={ts} caller=main.go:{k} msg="{w} synced" count={k}',
    '[INFO] 10.244.{k}.{m}:53 - {n} "A IN {w}.svc.cluster.local. udp 44 false 512" NOERROR',
    "W1126 {hms}.{us}       1 reflector.go:{k}] watch of *v1.{W} ended with: too old version",
    '{{"level":"info","msg":"{w} worker heartbeat","worker":{k}}}',
)


class _Clock:
    """Formats sorted nanosecond timestamps; the date-time prefix is cached per second."""

    def __init__(self) -> None:
        self._second = -1
        self._prefix = ""

    def prefix(self, ns: int) -> str:
        second = ns // 10**9
        if second != self._second:
            self._second = second
            self._prefix = datetime.fromtimestamp(second, UTC).strftime("%Y-%m-%dT%H:%M:%S")
        return self._prefix

    def micros(self, ns: int) -> str:
        return f"{self.prefix(ns)}.{ns // 1000 % 10**6:06d}Z"

    def millis(self, ns: int) -> str:
        return f"{self.prefix(ns)}.{ns // 10**6 % 1000:03d}+00:00"

    def nanos(self, ns: int) -> str:
        return f"{self.prefix(ns)}.{ns % 10**9:09d}Z"


class _Generator:
    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.clock = _Clock()
        self.trace: tuple[str, int] = ("", 0)  # current trace id, lines left in it
        self.pods = {
            c: f"{c}-{rng.getrandbits(40):010x}-{rng.getrandbits(20):05x}" for c in CONTAINERS
        }

    def _fill(self, template: str, **extra: str) -> str:
        r = self.rng
        return template.format(
            **extra,
            n=r.randrange(100_000, 9_999_999),
            u=r.randrange(1, 200_000),
            ms=r.randrange(1, 3000),
            k=r.randrange(1, 64),
            m=r.randrange(2, 250),
            w=r.choice(WORDS),
            W=r.choice(WORDS).capitalize(),
            q=r.choice(WORDS),
            id=r.randrange(1, 100_000),
        )

    def trace_ids(self) -> tuple[str, str]:
        trace, left = self.trace
        if left <= 0:
            trace, left = f"{self.rng.getrandbits(128):032x}", self.rng.randrange(1, 7)
        self.trace = (trace, left - 1)
        return trace, f"{self.rng.getrandbits(64):016x}"

    def nginx(self, ns: int) -> dict[str, Any]:
        r = self.rng
        path = self._fill(r.choice(PATHS))
        method = "GET" if r.random() < 0.8 else r.choice(("POST", "PUT", "DELETE"))
        roll = r.random()
        status = 200 if roll < 0.86 else 304 if roll < 0.9 else r.choice((201, 301, 404, 500, 502))
        size = r.randrange(0, 40_000)
        addr = f"10.{r.randrange(256)}.{r.randrange(256)}.{r.randrange(1, 255)}"
        return {
            "@timestamp": self.clock.millis(ns),
            "service": "nginx",
            "host": f"web-{r.randrange(1, 9):02d}",
            "remote_addr": addr,
            "method": method,
            "path": path,
            "status": status,
            "bytes": size,
            "request_time": round(r.expovariate(30), 3),
            "user_agent": r.choice(USER_AGENTS),
            "message": f'{addr} - - "{method} {path} HTTP/1.1" {status} {size}',
        }

    def app(self, ns: int) -> dict[str, Any]:
        r = self.rng
        roll = r.random()
        level, templates = (
            ("info", INFO_MESSAGES)
            if roll < 0.8
            else ("debug", DEBUG_MESSAGES)
            if roll < 0.88
            else ("warn", WARN_MESSAGES)
            if roll < 0.96
            else ("error", ERROR_MESSAGES)
        )
        trace, span = self.trace_ids()
        return {
            "timestamp": self.clock.micros(ns),
            "level": level,
            "service": r.choice(SERVICES),
            "message": self._fill(r.choice(templates)),
            "trace_id": trace,
            "span_id": span,
            "user": {"id": r.randrange(1, 200_000), "plan": r.choice(("free", "pro", "team"))},
            "http": {"method": r.choice(("GET", "POST")), "status_code": r.choice((200, 201, 400))},
            "duration_ms": round(r.expovariate(0.02), 2),
        }

    def kubernetes(self, ns: int) -> dict[str, Any]:
        r = self.rng
        container = r.choice(CONTAINERS)
        namespace = r.choice(NAMESPACES)
        stamp = self.clock.micros(ns)
        line = self._fill(r.choice(K8S_LINES), hms=stamp[11:19], us=stamp[20:26], ts=stamp)
        return {
            "time": self.clock.nanos(ns),
            "stream": "stdout" if r.random() < 0.9 else "stderr",
            "log": line,
            "kubernetes": {
                "namespace_name": namespace,
                "pod_name": self.pods[container],
                "container_name": container,
            },
            "resource": {
                "service.name": container,
                "k8s.cluster.name": "prod-eu-1",
                "k8s.node.name": f"node-{r.randrange(1, 13)}",
            },
        }

    def stack_trace(self, ns: int) -> dict[str, Any]:
        event = self.app(ns)
        event["level"] = "error"
        event["message"] = self._python_trace() if self.rng.random() < 0.5 else self._java_trace()
        return event

    def _python_trace(self) -> str:
        r = self.rng
        frames = [
            f'  File "/app/{r.choice(WORDS)}/{r.choice(WORDS)}.py", line {r.randrange(10, 900)},'
            f" in {r.choice(WORDS)}_{r.choice(('get', 'load', 'save', 'handle'))}\n"
            f"    result = self.{r.choice(WORDS)}.{r.choice(('fetch', 'commit', 'send'))}(key)"
            for _ in range(r.randrange(3, 8))
        ]
        exc = r.choice(
            (
                "ConnectionResetError: [Errno 104] Connection reset by peer",
                "KeyError: 'user_id'",
                "TimeoutError: timed out",
            )
        )
        return "Unhandled exception in request handler\nTraceback (most recent call last):\n" + (
            "\n".join(frames) + "\n" + exc
        )

    def _java_trace(self) -> str:
        r = self.rng
        frames = [
            f"\tat com.example.{r.choice(WORDS)}.{r.choice(WORDS).capitalize()}Service."
            f"{r.choice(WORDS)}({r.choice(WORDS).capitalize()}Service.java:{r.randrange(10, 900)})"
            for _ in range(r.randrange(4, 10))
        ]
        return (
            "java.lang.IllegalStateException: "
            + f"{r.choice(WORDS)} not initialised\n"
            + "\n".join(frames)
        )


def _chunk(
    seed: int, index: int, chunks: int, events: int, anchor_ns: int
) -> tuple[bytes, dict[str, Any]]:
    """One chunk of events covering slice ``index`` of ``chunks`` of the 24 hours."""
    rng = random.Random(seed * 1_000_003 + index)  # noqa: S311 - reproducible data, no secrets
    gen = _Generator(rng)
    lo = anchor_ns - SPAN_NS + index * SPAN_NS // chunks
    hi = anchor_ns - SPAN_NS + (index + 1) * SPAN_NS // chunks
    stamps = sorted(rng.randrange(lo, hi) for _ in range(events))
    dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode
    lines: list[str] = []
    planted: dict[str, Any] = {}
    for i, ns in enumerate(stamps):
        roll = rng.random()
        if roll < 0.45:
            event = gen.nginx(ns)
        elif roll < 0.8:
            event = gen.app(ns)
        elif roll < 0.975:
            event = gen.kubernetes(ns)
        else:
            event = gen.stack_trace(ns)
        if not planted and i >= events // 2 and "trace_id" in event:
            planted = {"trace_id": event["trace_id"], "user_id": event["user"]["id"]}
        lines.append(dumps(event))
    lines.append("")
    return "\n".join(lines).encode(), planted


# ---------------------------------------------------------------------------------------------
# Request bodies


@dataclass(frozen=True)
class BatchFile:
    """A corpus cut into gzip request bodies of ``batch_size`` events, stored back to back."""

    path: Path
    batch_size: int
    offsets: list[int]  # start of each body; the last entry is the end of the file
    events: list[int]  # events in each body
    raw_bytes: list[int]  # uncompressed bytes of each body

    def __len__(self) -> int:
        return len(self.events)

    def read(self, first: int, count: int) -> list[tuple[bytes, int, int]]:
        """Bodies ``first .. first+count-1`` as (gzip body, events, raw bytes)."""
        with self.path.open("rb") as f:
            f.seek(self.offsets[first])
            blob = f.read(self.offsets[first + count] - self.offsets[first])
        base = self.offsets[first]
        return [
            (
                blob[self.offsets[i] - base : self.offsets[i + 1] - base],
                self.events[i],
                self.raw_bytes[i],
            )
            for i in range(first, first + count)
        ]


def batches(corpus: Corpus, batch_size: int, *, level: int = 6, workers: int = 1) -> BatchFile:
    """Gzip bodies of ``batch_size`` events (level 6, what shippers default to), cached."""
    stem = corpus.path.name.split(".ndjson")[0]
    path = corpus.path.with_name(f"{stem}.b{batch_size}.l{level}.gzbodies")
    index_path = path.with_suffix(".index.json")
    if path.exists() and index_path.exists():
        index = json.loads(index_path.read_text())
        return BatchFile(path, batch_size, index["offsets"], index["events"], index["raw_bytes"])
    index = {"offsets": [], "events": [], "raw_bytes": []}
    position = 0
    tmp = path.with_name("." + path.name + ".tmp")
    with tmp.open("wb") as out:
        for body, events, raw in _compressed(_groups(corpus, batch_size), level, workers):
            index["offsets"].append(position)
            index["events"].append(events)
            index["raw_bytes"].append(raw)
            out.write(body)
            position += len(body)
    index["offsets"].append(position)
    tmp.rename(path)
    index_path.write_text(json.dumps(index))
    return BatchFile(path, batch_size, index["offsets"], index["events"], index["raw_bytes"])


def _groups(corpus: Corpus, batch_size: int) -> Iterator[tuple[bytes, int]]:
    opener = gzip.open if corpus.path.suffix == ".gz" else open
    with opener(corpus.path, "rb") as f:
        while lines := list(itertools.islice(f, batch_size)):
            yield b"".join(lines), len(lines)


def _compress(group: tuple[bytes, int], level: int) -> tuple[bytes, int, int]:
    data, events = group
    return gzip.compress(data, level), events, len(data)


def _compressed(
    groups: Iterator[tuple[bytes, int]], level: int, workers: int
) -> Iterator[tuple[bytes, int, int]]:
    work = functools.partial(_compress, level=level)
    if workers <= 1:
        yield from map(work, groups)
        return
    with multiprocessing.get_context("spawn").Pool(workers) as pool:
        yield from pool.imap(work, groups, chunksize=8)
