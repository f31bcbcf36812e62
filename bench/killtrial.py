"""Crash trials: SIGKILL the gateway at random moments under retrying shippers; count what survived.

Shipper threads post NDJSON batches with an ``Idempotency-Key`` and, like Vector or Fluent Bit,
retry the same body with the same key until it is answered 200: a refused connection, a 5xx or a
cut connection while the gateway is dead are retried against the next gateway. Each round starts
``astralog serve`` on the same data dir and port, lets the shippers run for a random moment
(a kill lands in a WAL write, an fsync, an answer, a flush or a segment release) and SIGKILLs it.
A last gateway replays what the crashes left in the WAL; the shippers finish their retries
against it, the WAL drains and the gateway stops gracefully.

Then every Parquet object in the destination (the embedded bucket, or an S3 bucket on a loopback
``moto_server``) is read back and every marker counted: **lost** are acknowledged markers stored
nowhere, **duplicated** are markers stored more than once. Both must be 0. The trial stops
starting rounds when its time budget is spent and says so (``complete: false``).
"""

from __future__ import annotations

import json
import os
import random
import secrets
import shutil
import signal
import string
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from bench.gateway import Gateway, GatewayError, free_port

__all__ = ["DESTINATIONS", "moto", "run_killtrial"]

DESTINATIONS = ("local", "s3")
# Seal and flush often, so kills also land inside flushes and segment releases.
TRIAL_ENV = {
    "ASTRALOG_WAL__SEGMENT_MAX_AGE_SECONDS": "0.3",
    "ASTRALOG_FLUSH__INTERVAL_SECONDS": "0.1",
    "ASTRALOG_FLUSH__RETRY_MAX_SECONDS": "1",
}
S3_ENV = {
    "ASTRALOG_STORAGE__ALLOW_PRIVATE_NETWORKS": '["127.0.0.0/8"]',
    "ASTRALOG_STORAGE__ALLOW_HTTP_ENDPOINTS": "true",
}
S3_PREFIX = "killtrial"
RETRY_PAUSE_SECONDS = 0.05
FINISH_SECONDS = 60.0  # for the shippers to get their last batches acknowledged
DRAIN_TIMEOUT_SECONDS = 120.0


# ---- the shippers ---------------------------------------------------------------------------


@dataclass
class Ledger:
    """What the shippers were told: markers acknowledged, and how the answers came."""

    acked: list[str] = field(default_factory=list)
    batches: int = 0
    attempts: int = 0
    replayed: int = 0
    server_errors: int = 0  # 5xx other than 503: retried, but each one is a bug to look at
    abandoned: int = 0  # batches never acknowledged (the trial ended first)
    refused: list[str] = field(default_factory=list)  # 4xx other than 429: a harness bug
    lock: threading.Lock = field(default_factory=threading.Lock)

    def ack(self, markers: list[str], replayed: bool) -> None:
        with self.lock:
            self.acked.extend(markers)
            self.batches += 1
            self.replayed += int(replayed)


class Shipper(threading.Thread):
    """Sends batches one at a time; retries each with the same key until it is acknowledged."""

    def __init__(self, url: str, key: str, name: str, ledger: Ledger, seed: int) -> None:
        super().__init__(name=f"shipper-{name}", daemon=True)
        self.url, self.key, self.label, self.ledger = url, key, name, ledger
        self.rng = random.Random(seed)  # noqa: S311 - batch sizes, no secrets
        self.stop_new = threading.Event()  # finish the batch in hand, start no other
        self.give_up = threading.Event()  # stop retrying at once (end of the budget)

    def run(self) -> None:
        with httpx.Client(timeout=10, trust_env=False) as http:
            batch = 0
            while not self.stop_new.is_set():
                markers = [f"{self.label}-{batch}-{i}" for i in range(self.rng.randint(1, 100))]
                self._until_acked(http, markers, f"{self.label}-{batch}-{uuid.uuid4().hex}")
                batch += 1

    def _until_acked(self, http: httpx.Client, markers: list[str], idem: str) -> None:
        body = "".join(
            json.dumps({"message": f"event {m}", "level": "info", "marker": m}) + "\n"
            for m in markers
        ).encode()
        headers = {"Authorization": f"Bearer {self.key}", "Idempotency-Key": idem}
        while not self.give_up.is_set():
            with self.ledger.lock:
                self.ledger.attempts += 1
            try:
                response = http.post(self.url, content=body, headers=headers)
            except httpx.HTTPError:
                time.sleep(RETRY_PAUSE_SECONDS)  # gateway down or killed mid-request: retry
                continue
            if response.status_code == 200:
                self.ledger.ack(markers, response.headers.get("Idempotent-Replayed") == "true")
                return
            if response.status_code < 500 and response.status_code != 429:
                with self.ledger.lock:
                    self.ledger.refused.append(f"{response.status_code} {response.text[:200]}")
                return
            if response.status_code not in (429, 503):
                with self.ledger.lock:
                    self.ledger.server_errors += 1
            time.sleep(RETRY_PAUSE_SECONDS)
        with self.ledger.lock:
            self.ledger.abandoned += 1


# ---- gateways that die ----------------------------------------------------------------------


def _serve(gw: Gateway) -> subprocess.Popen[bytes]:
    """Start ``astralog serve`` again on the gateway's data dir, port and settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ASTRALOG_")}
    env.update(gw.env)
    with gw.log_path.open("ab") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "astralog.cli", "serve"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def _wait_ready(gw: Gateway, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    with httpx.Client(timeout=1, trust_env=False) as http:
        while time.monotonic() < deadline:
            gw.check_alive()
            try:
                if http.get(f"{gw.url}/readyz").status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
    raise GatewayError(f"the gateway was not ready after {timeout:.0f} s; see {gw.log_path}")


def _kill(gw: Gateway) -> None:
    gw.process.send_signal(signal.SIGKILL)
    gw.process.wait(10)


def _wal_empty(gw: Gateway) -> bool:
    wal = gw.data_dir / "wal"
    return not any(p.name.endswith((".arrows", ".arrows.open")) for p in wal.iterdir())


def _drain_and_stop(gw: Gateway) -> None:
    deadline = time.monotonic() + DRAIN_TIMEOUT_SECONDS
    while not _wal_empty(gw):
        gw.check_alive()
        if time.monotonic() > deadline:
            raise GatewayError(f"the WAL did not drain in {DRAIN_TIMEOUT_SECONDS:.0f} s")
        time.sleep(0.2)
    gw.stop()
    if not _wal_empty(gw):
        raise GatewayError("the gateway stopped with events still in its WAL")


# ---- the S3 destination ---------------------------------------------------------------------


@contextmanager
def moto() -> Iterator[str]:
    """A ``moto_server`` on a loopback port (from the test extras); yields its endpoint."""
    binary = shutil.which("moto_server", path=str(Path(sys.executable).parent)) or shutil.which(
        "moto_server"
    )
    if binary is None:
        raise GatewayError("moto_server not found: pip install -e '.[test]'")
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    process = subprocess.Popen(
        [binary, "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
    )
    endpoint = f"http://127.0.0.1:{port}"
    try:
        _wait_http(endpoint, process)
        yield endpoint
    finally:
        process.terminate()
        process.wait(10)


def _wait_http(url: str, process: subprocess.Popen[bytes], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise GatewayError(f"moto_server exited with {process.returncode}")
        try:
            httpx.get(url, timeout=0.5, trust_env=False)
            return
        except httpx.HTTPError:
            time.sleep(0.05)
    raise GatewayError(f"moto_server did not answer within {timeout:.0f} s")


@dataclass(frozen=True)
class S3Target:
    endpoint: str
    bucket: str
    key_id: str
    secret: str

    @classmethod
    def create(cls, endpoint: str) -> S3Target:
        alphabet = string.ascii_uppercase + string.digits
        target = cls(
            endpoint,
            f"killtrial-{uuid.uuid4().hex[:12]}",
            "AKIA" + "".join(secrets.choice(alphabet) for _ in range(16)),
            secrets.token_urlsafe(30),
        )
        target.client().create_bucket(Bucket=target.bucket)
        return target

    def client(self) -> Any:
        import boto3  # a test extra, like moto_server itself

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            region_name="us-east-1",
            aws_access_key_id=self.key_id,
            aws_secret_access_key=self.secret,
        )

    def connect(self, gw: Gateway) -> None:
        """Create, check and activate the org's S3 connector through the admin API."""
        body = {
            "name": "killtrial",
            "kind": "s3",
            "config": {
                "bucket": self.bucket,
                "endpoint_url": self.endpoint,
                "addressing_style": "path",
                "prefix": S3_PREFIX,
                "max_attempts": 2,
            },
            "secrets": {"access_key_id": self.key_id, "secret_access_key": self.secret},
        }
        created = gw.request("POST", "/v1/connectors", json=body)
        if created.status_code != 201:
            raise GatewayError(f"creating the S3 connector: {created.text[:300]}")
        cid = created.json()["id"]
        for step in ("test", "activate"):
            answer = gw.request("POST", f"/v1/connectors/{cid}/{step}")
            if answer.status_code != 200 or answer.json().get("ok") is False:
                raise GatewayError(f"connector {step}: {answer.text[:300]}")

    def objects(self) -> Iterator[bytes]:
        client = self.client()
        pages = client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket)
        for page in pages:
            for obj in page.get("Contents", []):
                if obj["Key"].endswith(".parquet"):
                    yield client.get_object(Bucket=self.bucket, Key=obj["Key"])["Body"].read()


# ---- counting -------------------------------------------------------------------------------


def count_markers(objects: Iterator[bytes] | list[bytes]) -> tuple[Counter[str], int]:
    """marker -> times stored, over every Parquet object; and how many objects there were."""
    counts: Counter[str] = Counter()
    files = 0
    for blob in objects:
        files += 1
        attributes = pq.read_table(pa.BufferReader(blob), columns=["LogAttributes"])
        markers = pc.map_lookup(attributes["LogAttributes"], "marker", "first")
        counts.update(m for m in markers.to_pylist() if m is not None)
    return counts, files


def _local_objects(bucket: Path) -> Iterator[bytes]:
    for path in sorted(bucket.rglob("*.parquet")):
        yield path.read_bytes()


# ---- the trial ------------------------------------------------------------------------------


@dataclass
class Trial:
    gw: Gateway
    ledger: Ledger
    shippers: list[Shipper]
    rng: random.Random

    def round(self, first: bool) -> None:
        if not first:
            self.gw.process = _serve(self.gw)
            _wait_ready(self.gw)
        time.sleep(self.rng.uniform(0.2, 2.0))
        _kill(self.gw)

    def finish(self) -> None:
        """A last gateway: the shippers finish their retries against it, then it drains."""
        self.gw.process = _serve(self.gw)
        _wait_ready(self.gw)
        for shipper in self.shippers:
            shipper.stop_new.set()
        deadline = time.monotonic() + FINISH_SECONDS
        for shipper in self.shippers:
            shipper.join(max(0.0, deadline - time.monotonic()))
        for shipper in self.shippers:
            shipper.give_up.set()
            shipper.join()
        _drain_and_stop(self.gw)


def run_killtrial(
    work: Path,
    destination: str,
    rounds: int,
    budget_seconds: float,
    *,
    shippers: int = 4,
    seed: int = 7,
    s3_endpoint: str | None = None,
) -> dict[str, Any]:
    """``rounds`` SIGKILLs (fewer if ``budget_seconds`` runs out) into ``destination``."""
    if destination not in DESTINATIONS:
        raise ValueError(f"destination must be one of {DESTINATIONS}, not {destination!r}")
    if destination == "s3" and s3_endpoint is None:
        with moto() as endpoint:
            return run_killtrial(
                work, destination, rounds, budget_seconds, shippers=shippers, seed=seed,
                s3_endpoint=endpoint,
            )  # fmt: skip
    data_dir = work / f"killtrial-{destination}"
    shutil.rmtree(data_dir, ignore_errors=True)
    env = {**TRIAL_ENV, **(S3_ENV if destination == "s3" else {})}
    started = time.monotonic()
    gw = Gateway.start(data_dir, env)
    target = S3Target.create(s3_endpoint) if s3_endpoint else None
    if target is not None:
        target.connect(gw)
    ledger, rng = Ledger(), random.Random(seed)  # noqa: S311 - kill moments, no secrets
    url = f"{gw.url}/v1/ingest"
    fleet = [Shipper(url, gw.ingest_key, f"s{i}", ledger, seed * 100 + i) for i in range(shippers)]
    for shipper in fleet:
        shipper.start()
    trial, done = Trial(gw, ledger, fleet, rng), 0
    try:
        while done < rounds and time.monotonic() - started < budget_seconds:
            trial.round(first=done == 0)
            done += 1
        trial.finish()
    finally:
        for shipper in fleet:
            shipper.stop_new.set()
            shipper.give_up.set()
        gw.stop()
    objects = target.objects() if target is not None else _local_objects(gw.bucket)
    stored, files = count_markers(objects)
    return _summary(destination, rounds, done, ledger, stored, files, time.monotonic() - started)


def _summary(
    destination: str,
    wanted: int,
    rounds: int,
    ledger: Ledger,
    stored: Counter[str],
    files: int,
    seconds: float,
) -> dict[str, Any]:
    acked = set(ledger.acked)
    lost = [m for m in acked if stored[m] == 0]
    duplicated = {m: n for m, n in stored.items() if n > 1}
    return {
        "destination": destination,
        "rounds": rounds,
        "complete": rounds >= wanted,
        "acked_batches": ledger.batches,
        "acked_events": len(acked),
        "stored_events": sum(stored.values()),
        "lost": len(lost),
        "duplicated": sum(n - 1 for n in duplicated.values()),
        "replayed_answers": ledger.replayed,
        "attempts": ledger.attempts,
        "refused": len(ledger.refused),
        "server_errors": ledger.server_errors,
        "abandoned_batches": ledger.abandoned,
        "objects": files,
        "seconds": round(seconds, 1),
        "lost_examples": sorted(lost)[:5],
        "duplicated_examples": sorted(duplicated)[:5],
        "refused_examples": ledger.refused[:3],
    }
