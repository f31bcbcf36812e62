"""The service image, built from docker/Dockerfile and run the way production should run it.

Read-only root filesystem, every capability dropped, no-new-privileges, a non-root user, all
state on one volume: the first start prints the one-time credentials, an event is ingested and
found by search through the container, and a new container on the same volume still has the
event, the keys and the tokens. No image registry is reachable here, so the base image is Debian
made on this machine (docker/debian-base.sh) and kept between runs; the build reuses its layer
cache. When docker cannot run, the test fails and says why.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import re
import secrets
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.ingest_helpers import free_port

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
BASE_SCRIPT = ROOT / "docker" / "debian-base.sh"
# Kept between runs and rebuilt only when the script that makes it changes.
BASE_IMAGE = f"astralog-base:bookworm-{hashlib.sha256(BASE_SCRIPT.read_bytes()).hexdigest()[:12]}"
IMAGE = "astralog:test"
USER = "10001:10001"
ARTIFACT = ROOT / "test-artifacts" / "docker-image.json"
HARDENING = [
    "--read-only",
    "--cap-drop=ALL",
    "--security-opt=no-new-privileges",
    f"--user={USER}",
    "--network=host",
    "--tmpfs=/tmp:size=64m",
    "--health-interval=2s",  # the image's own check, run more often than its 10 s default
]


def _docker_binary() -> str:
    # Debian's client matches Debian's daemon; any other docker on PATH comes second.
    for candidate in ("/usr/bin/docker", shutil.which("docker")):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    pytest.fail(
        "docker is not installed: run scripts/install.sh test as root (it installs docker.io "
        "and debootstrap)",
        pytrace=False,
    )


def _daemon_up(docker: str) -> bool:
    return subprocess.run([docker, "info"], capture_output=True, timeout=30).returncode == 0


def _start_daemon(docker: str, log: Path) -> subprocess.Popen[bytes]:
    dockerd = shutil.which("dockerd") or "/usr/sbin/dockerd"
    if os.geteuid() != 0 or not os.access(dockerd, os.X_OK):
        pytest.fail(
            "dockerd is not running and cannot be started here (needs root and Debian's "
            "docker.io); start it, or run the tests as root",
            pytrace=False,
        )
    # No bridge and no iptables: containers run with --network host, nothing private is made.
    command = [dockerd, "--bridge=none", "--iptables=false", "--ip-masq=false"]
    with log.open("ab") as handle:
        daemon = subprocess.Popen(command, stdout=handle, stderr=handle, start_new_session=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and daemon.poll() is None:
        if _daemon_up(docker):
            return daemon
        time.sleep(0.5)
    daemon.terminate()
    pytest.fail(f"dockerd did not start:\n{log.read_text(errors='replace')[-3000:]}", pytrace=False)


def _run(command: list[str], what: str, timeout: float, env: dict[str, str] | None = None) -> str:
    done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=env)
    if done.returncode != 0:
        pytest.fail(f"{what} failed:\n{(done.stdout + done.stderr)[-4000:]}", pytrace=False)
    return done.stdout


@pytest.fixture(scope="session")
def docker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    binary = _docker_binary()
    daemon = None
    if not _daemon_up(binary):
        daemon = _start_daemon(binary, tmp_path_factory.mktemp("dockerd") / "dockerd.log")
    yield binary
    if daemon is not None:
        daemon.terminate()
        daemon.wait(timeout=60)


@pytest.fixture(scope="session")
def image(docker: str) -> str:
    """Built once per session; the base image and the layer cache stay for the next run."""
    started = time.monotonic()
    env = {**os.environ, "DOCKER": docker}
    done = subprocess.run(
        [str(BASE_SCRIPT), BASE_IMAGE],
        capture_output=True, text=True, timeout=900, env=env,
    )  # fmt: skip
    if done.returncode != 0:
        pytest.fail(f"the Debian base image could not be made:\n{done.stderr[-4000:]}")
    base_seconds = time.monotonic() - started
    build = [
        docker, "build", "--network=host", f"--build-arg=BASE_IMAGE={BASE_IMAGE}",
        "--file=docker/Dockerfile", f"--tag={IMAGE}", str(ROOT),
    ]  # fmt: skip
    # The classic builder: Debian's docker.io has no buildx, and it honours --network host.
    _run(build, "docker build", timeout=1800, env={**env, "DOCKER_BUILDKIT": "0"})
    size = int(_run([docker, "image", "inspect", IMAGE, "--format={{.Size}}"], "inspect", 30))
    ARTIFACT.parent.mkdir(exist_ok=True)
    ARTIFACT.write_text(
        json.dumps(
            {
                "image_bytes": size,
                "base_seconds": round(base_seconds, 1),
                "build_seconds": round(time.monotonic() - started - base_seconds, 1),
            }
        )
    )
    return IMAGE


class Container:
    """One ``docker run`` of the image on a volume, the hardening flags on, with its port."""

    def __init__(self, docker: str, volume: str, env: dict[str, str]) -> None:
        self.docker, self.volume, self.env = docker, volume, env
        self.port = int(env["ASTRALOG_SERVER__PORT"])
        self.url = f"http://127.0.0.1:{self.port}"
        self.name = f"astralog-test-{uuid.uuid4().hex[:8]}"

    def start(self) -> None:
        settings = [f"--env={key}={value}" for key, value in self.env.items()]
        run = [self.docker, "run", "--detach", f"--name={self.name}", *HARDENING]
        _run([*run, f"--volume={self.volume}:/data", *settings, IMAGE], "docker run", 60)

    def logs(self) -> str:
        done = subprocess.run([self.docker, "logs", self.name], capture_output=True, text=True)
        return done.stdout + done.stderr

    def exec(self, *command: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [self.docker, "exec", self.name, *command], capture_output=True, text=True, timeout=30
        )

    def health(self) -> str:
        status = ["inspect", "--format={{.State.Health.Status}}", self.name]
        return _run([self.docker, *status], "docker inspect", 30).strip()

    def wait_healthy(self, seconds: float = 90) -> None:
        """Ready by /readyz from outside, and healthy by the image's own HEALTHCHECK."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            with contextlib.suppress(httpx.HTTPError):
                ready = httpx.get(f"{self.url}/readyz", timeout=2).status_code == 200
                if ready and self.health() == "healthy":
                    return
            time.sleep(0.5)
        pytest.fail(f"{self.name} was not healthy in {seconds} s:\n{self.logs()[-4000:]}")

    def remove(self) -> None:
        """Stopped with SIGTERM (a graceful drain), then removed; the volume stays."""
        subprocess.run([self.docker, "stop", "--time=20", self.name], capture_output=True)
        subprocess.run([self.docker, "rm", "--force", self.name], capture_output=True)


def _production_env() -> dict[str, str]:
    master = base64.b64encode(secrets.token_bytes(32)).decode()
    return {
        "ASTRALOG_MODE": "production",
        "ASTRALOG_AUTH__KEY_PEPPER": secrets.token_hex(32),
        "ASTRALOG_STORAGE__MASTER_KEYS": json.dumps({"k1": master}),
        "ASTRALOG_STORAGE__ACTIVE_MASTER_KEY": "k1",
        "ASTRALOG_SERVER__HOST": "127.0.0.1",
        "ASTRALOG_SERVER__PORT": str(free_port()),
        "ASTRALOG_WAL__SEGMENT_MAX_AGE_SECONDS": "0.2",
        "ASTRALOG_FLUSH__INTERVAL_SECONDS": "0.1",
    }


@pytest.fixture
def volume(docker: str) -> Iterator[str]:
    name = f"astralog-test-{uuid.uuid4().hex[:8]}"
    _run([docker, "volume", "create", name], "docker volume create", 30)
    yield name
    subprocess.run([docker, "volume", "rm", "--force", name], capture_output=True)


@contextlib.contextmanager
def _running(docker: str, volume: str, env: dict[str, str]) -> Iterator[Container]:
    container = Container(docker, volume, env)
    container.start()
    try:
        container.wait_healthy()
        yield container
    finally:
        container.remove()


def _secret(logs: str, label: str) -> str:
    found = re.search(rf"{label}:\s+(\S+)", logs)
    assert found, f"the first start printed no {label}:\n{logs[-3000:]}"
    return found.group(1)


def _ingest(url: str, key: str, message: str) -> None:
    event = {"message": message, "level": "info", "service": "docker-test"}
    answer = httpx.post(
        f"{url}/v1/ingest", json=event, headers={"Authorization": f"Bearer {key}"}, timeout=10
    )
    assert answer.status_code in (200, 202), answer.text


def _search(url: str, token: str, text: str, seconds: float = 30) -> list[dict[str, object]]:
    """Poll until the event is found: an ack is durable at once, searchable after the flush."""
    deadline = time.monotonic() + seconds
    events: list[dict[str, object]] = []
    while time.monotonic() < deadline:
        answer = httpx.post(
            f"{url}/v1/search",
            json={"query": f'"{text}"', "start": "now-1h"},
            headers={"Authorization": f"Bearer {token}"},
            timeout=10,
        )
        assert answer.status_code == 200, answer.text
        events = answer.json()["events"]
        if events:
            return events
        time.sleep(0.3)
    raise AssertionError(f"{text!r} was not found by search within {seconds} s")


def _check_confinement(container: Container) -> None:
    assert container.exec("id", "-u").stdout.strip() == USER.split(":")[0]
    refused = container.exec("touch", "/opt/astralog/written")
    assert refused.returncode != 0 and "Read-only file system" in refused.stderr
    loose = container.exec("find", "/data", "-perm", "/077", "-printf", "%m %p\\n")
    assert loose.returncode == 0 and loose.stdout == "", (
        f"state readable by others:\n{loose.stdout}"
    )
    for tool in ("pip", "pip3", "gcc", "cc"):  # runtime only: no installer, no compiler
        found = container.exec("sh", "-c", f"command -v {tool} || true").stdout.strip()
        assert not found, f"{tool} is in the image: {found}"


def test_image_serves_ingest_and_search_and_keeps_state(
    docker: str, image: str, volume: str
) -> None:
    env = _production_env()
    first, second = f"first-{uuid.uuid4().hex}", f"second-{uuid.uuid4().hex}"
    with _running(docker, volume, env) as container:
        logs = container.logs()
        assert "shown once" in logs, logs[-3000:]
        key, token = _secret(logs, "Ingest key"), _secret(logs, "Admin token")
        _ingest(container.url, key, first)
        assert _search(container.url, token, first)[0]["body"] == first
        _check_confinement(container)
    with _running(docker, volume, env) as container:  # a new container, the same volume
        assert "shown once" not in container.logs()  # not a first start: nothing re-created
        assert _search(container.url, token, first)[0]["body"] == first
        _ingest(container.url, key, second)  # the key from the first start still works
        assert _search(container.url, token, second)[0]["body"] == second
