"""The gateway under test: one ``astralog serve`` subprocess on loopback, measured from outside.

Started with production settings (WAL fsync on, default segment age and flush interval) on a data
dir of its own; ``ASTRALOG_*`` variables of the calling shell are not inherited, so a stray
setting cannot change what is measured, and the settings used are part of the report. CPU time
and memory come from ``/proc`` (psutil is not a dependency): CPU is the process and every
descendant, peak RSS is the kernel's high-water mark ``VmHWM``.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

__all__ = ["Gateway", "GatewayError", "free_port"]

CLK_TCK = os.sysconf("SC_CLK_TCK")
ENTERPRISE_UNLIMITED = {
    "plan": "enterprise",
    "overrides": {
        "ingest_events_per_second": 10_000_000,
        "ingest_bytes_per_second": 10_000_000_000,
        "source_events_per_second": 10_000_000,
        "source_bytes_per_second": 10_000_000_000,
    },
}


class GatewayError(RuntimeError):
    """The gateway could not be started, configured or asked something."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Gateway:
    data_dir: Path
    process: subprocess.Popen[bytes]
    url: str
    env: dict[str, str]
    ingest_key: str
    admin_token: str
    operator_token: str
    org_id: str
    source_id: str
    log_path: Path
    _client: httpx.Client = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._client = httpx.Client(base_url=self.url, timeout=60.0)

    # -- life cycle --------------------------------------------------------------------------

    @classmethod
    def start(
        cls,
        data_dir: Path,
        extra_env: dict[str, str] | None = None,
        joining: dict[str, str] | None = None,
    ) -> Gateway:
        """Bootstrap ``data_dir``, start serving on a free loopback port, lift the plan limits.
        ``joining`` (the secrets another node's first start printed): a node of a control
        plane that exists already, started without ``init``."""
        data_dir.mkdir(parents=True, exist_ok=True)
        port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("ASTRALOG_")}
        settings = {
            "ASTRALOG_DATA_DIR": str(data_dir),
            "ASTRALOG_SERVER__HOST": "127.0.0.1",
            "ASTRALOG_SERVER__PORT": str(port),
            "ASTRALOG_WAL__FSYNC": "true",
            **(extra_env or {}),
        }
        env.update(settings)
        secrets = joining or _init(env)
        log_path = data_dir / "gateway.log"
        with log_path.open("ab") as log:
            process = subprocess.Popen(
                [sys.executable, "-m", "astralog.cli", "serve"],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        gateway = cls(
            data_dir,
            process,
            f"http://127.0.0.1:{port}",
            settings,
            secrets["ingest_key"],
            secrets["admin_token"],
            secrets["operator_token"],
            secrets["org_id"],
            secrets["source_id"],
            log_path,
        )
        try:
            gateway._wait_ready()
            gateway.lift_limits()
        except BaseException:
            gateway.stop()
            raise
        return gateway

    def _wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.check_alive()
            try:
                if self._client.get("/readyz").status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        raise GatewayError(f"the gateway was not ready after {timeout:.0f} s; see {self.log_path}")

    def lift_limits(self) -> None:
        """Put the org on enterprise with ingest limits far above what loopback can carry."""
        response = self._client.put(
            f"/v1/orgs/{self.org_id}/plan",
            json=ENTERPRISE_UNLIMITED,
            headers={"Authorization": f"Bearer {self.operator_token}"},
        )
        if response.status_code != 200:
            raise GatewayError(
                f"raising the plan limits failed: {response.status_code} {response.text[:300]}"
            )

    def stop(self, timeout: float = 30.0) -> None:
        self._client.close()
        if self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)

    def __enter__(self) -> Gateway:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def check_alive(self) -> None:
        """Raise with the end of the gateway's log if it has exited."""
        code = self.process.poll()
        if code is not None:
            raise GatewayError(f"the gateway exited with {code}; its log ends:\n{self.log_tail()}")

    def log_tail(self, lines: int = 15) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    # -- what the harness reads --------------------------------------------------------------

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def bucket(self) -> Path:
        return self.data_dir / "bucket"

    def cpu_seconds(self) -> float:
        """User + system CPU of the gateway and all its descendants, living or reaped."""
        total = 0.0
        for pid in [self.pid, *_descendants(self.pid)]:
            total += _cpu_of(pid, include_children=pid == self.pid)
        return total

    def rss_bytes(self) -> int:
        return _status_kb(self.pid, "VmRSS") * 1024

    def peak_rss_bytes(self) -> int:
        return _status_kb(self.pid, "VmHWM") * 1024

    def metrics(self) -> dict[str, float]:
        """The Prometheus text of ``/metrics`` as {"name{labels}": value}."""
        text = self._client.get("/metrics").text
        values: dict[str, float] = {}
        for line in text.splitlines():
            if line and not line.startswith("#"):
                name, _, value = line.rpartition(" ")
                try:
                    values[name] = float(value)
                except ValueError:
                    continue
        return values

    def wal_bytes(self) -> float:
        return self.metrics().get("astralog_wal_bytes", 0.0)

    def wait_drained(self, timeout: float = 300.0, poll: float = 0.1) -> float:
        """Seconds until the WAL is empty (everything acked is in the bucket)."""
        started = time.monotonic()
        while time.monotonic() - started < timeout:
            if self.wal_bytes() == 0:
                return time.monotonic() - started
            time.sleep(poll)
        raise GatewayError(f"the WAL did not drain within {timeout:.0f} s")

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """A management or search request as the org admin."""
        headers = {"Authorization": f"Bearer {self.admin_token}", **kwargs.pop("headers", {})}
        return self._client.request(method, path, headers=headers, **kwargs)

    def bucket_files(self) -> list[Path]:
        return sorted(self.bucket.rglob("*.parquet")) if self.bucket.exists() else []


_SECRET_PATTERNS = {
    "admin_token": re.compile(r"Admin token:\s+(\S+)"),
    "operator_token": re.compile(r"Operator token:\s+(\S+)"),
    "ingest_key": re.compile(r"Ingest key:\s+(\S+)"),
    "org_id": re.compile(r"Org:\s+\S+ \(([^)]+)\)"),
    "source_id": re.compile(r"source \S+ \(([^)]+)\)"),
}


def _init(env: dict[str, str]) -> dict[str, str]:
    """``astralog init``: bootstrap the data dir and read the one-time secrets it prints."""
    done = subprocess.run(
        [sys.executable, "-m", "astralog.cli", "init"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if done.returncode != 0:
        raise GatewayError(f"astralog init failed ({done.returncode}): {done.stderr[-2000:]}")
    found = {}
    for name, pattern in _SECRET_PATTERNS.items():
        match = pattern.search(done.stdout)
        if match is None:
            raise GatewayError(f"astralog init printed no {name.replace('_', ' ')}")
        found[name] = match.group(1)
    return found


def _stat_fields(pid: int) -> list[str]:
    text = Path(f"/proc/{pid}/stat").read_text()
    # The command name is in parentheses and may hold spaces; fields start after it.
    return text[text.rindex(")") + 2 :].split()


def _cpu_of(pid: int, *, include_children: bool) -> float:
    try:
        fields = _stat_fields(pid)
    except (FileNotFoundError, ProcessLookupError):
        return 0.0
    # After the name: state(0) ppid(1) ... utime(11) stime(12) cutime(13) cstime(14)
    ticks = int(fields[11]) + int(fields[12])
    if include_children:
        ticks += int(fields[13]) + int(fields[14])
    return ticks / CLK_TCK


def _descendants(root: int) -> list[int]:
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parents[int(entry.name)] = int(_stat_fields(int(entry.name))[1])
            except (OSError, IndexError, ValueError):
                continue
    found, frontier = [], [root]
    while frontier:
        parent = frontier.pop()
        children = [pid for pid, ppid in parents.items() if ppid == parent]
        found.extend(children)
        frontier.extend(children)
    return found


def _status_kb(pid: int, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise GatewayError(f"/proc/{pid}/status has no {key}")
