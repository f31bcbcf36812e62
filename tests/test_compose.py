"""docker/compose.yaml is valid for Compose itself and starts Astralog with settings it accepts.

``docker compose config`` (or ``docker-compose config``) resolves the file with an env file like
the one docker/compose.env.example asks for; every ``ASTRALOG_*`` variable of every service must
then load into the settings model, production checks included. Only Astralog's own image can be
built on this machine (no registry is reachable), so the other services are checked on paper:
pinned, health-checked, limited, with no default secrets.
"""

from __future__ import annotations

import base64
import json
import os
import re
import secrets
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from astralog.settings import load_settings

ROOT = Path(__file__).resolve().parent.parent
COMPOSE_FILE = ROOT / "docker" / "compose.yaml"
ENV_EXAMPLE = ROOT / "docker" / "compose.env.example"


def _compose() -> list[str]:
    docker = shutil.which("docker")
    if docker:
        probe = subprocess.run([docker, "compose", "version"], capture_output=True, check=False)
        if probe.returncode == 0:
            return [docker, "compose"]
    legacy = shutil.which("docker-compose")
    if legacy:
        return [legacy]
    pytest.fail(
        "neither `docker compose` nor `docker-compose` is installed; run scripts/install.sh test "
        "as root (it installs Debian's docker-compose)",
        pytrace=False,
    )


def _env_values() -> dict[str, str]:
    """A value for every variable the example env file lists, made as it says."""
    names = re.findall(r"^([A-Z0-9_]+)=$", ENV_EXAMPLE.read_text(), flags=re.MULTILINE)
    values = {name: secrets.token_hex(24) for name in names}
    key = base64.b64encode(secrets.token_bytes(32)).decode()
    values |= {
        "ASTRALOG_STORAGE__MASTER_KEYS": json.dumps({"k1": key}),
        "ASTRALOG_STORAGE__ACTIVE_MASTER_KEY": "k1",
        "PUBLIC_URL": "https://logs.example.com",
        "S3_BUCKET": "astralog-logs",
        "MINIO_ROOT_USER": "astralog-admin",
        "CLICKHOUSE_USER": "astralog",
    }
    return values


def _config(env_file: Path | None) -> subprocess.CompletedProcess[str]:
    command = [*_compose(), "-f", str(COMPOSE_FILE)]
    if env_file is not None:
        command[-2:-2] = ["--env-file", str(env_file)]
    # An empty environment besides PATH: nothing from this shell may stand in for the env file.
    env = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}
    return subprocess.run(
        [*command, "config"], capture_output=True, text=True, timeout=60, env=env, check=False
    )


@pytest.fixture(scope="module")
def resolved(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    env_file = tmp_path_factory.mktemp("compose") / ".env"
    env_file.write_text("".join(f"{k}={v}\n" for k, v in _env_values().items()))
    done = _config(env_file)
    assert done.returncode == 0, f"compose config failed:\n{done.stderr}"
    config = yaml.safe_load(done.stdout)
    assert isinstance(config, dict)
    return config


def test_config_passes_and_astralog_settings_load(
    resolved: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    services = resolved["services"]
    assert set(services) == {"astralog", "minio", "minio-bucket", "clickhouse"}
    for name, service in services.items():
        settings = {
            k: str(v) for k, v in _environment(service).items() if k.startswith("ASTRALOG_")
        }
        if name != "astralog":
            assert not settings, f"{name} has Astralog settings: {settings}"
            continue
        for variable in [v for v in os.environ if v.startswith("ASTRALOG_")]:
            monkeypatch.delenv(variable)
        for variable, value in settings.items():
            monkeypatch.setenv(variable, value)
        loaded = load_settings()  # unknown names and bad values raise here
        assert loaded.mode == "production"
        assert loaded.storage.allow_http_endpoints
        subnet = resolved["networks"]["backend"]["ipam"]["config"][0]["subnet"]
        assert loaded.storage.allow_private_networks == [subnet]


def _environment(service: dict[str, Any]) -> dict[str, Any]:
    env = service.get("environment") or {}
    if isinstance(env, list):  # KEY=VALUE entries
        return dict(item.split("=", 1) for item in env)
    return dict(env)


def test_missing_secret_is_named() -> None:
    done = _config(None)
    assert done.returncode != 0
    assert re.search(r"set [A-Z_]+ in the env file", done.stderr), done.stderr


def test_hygiene(resolved: dict[str, Any]) -> None:
    text = COMPOSE_FILE.read_text()
    assert not re.search(r"\$\{[A-Z0-9_]+:?-", text), "a variable with a default value"
    assert "change-me" not in text
    for name, service in resolved["services"].items():
        if "image" in service and "build" not in service:
            image = service["image"]
            assert re.search(r":[\w.-]*\d[\w.-]*$", image) and not image.endswith(":latest"), (
                f"{name}: {image} is not pinned to a version"
            )
        assert service.get("cpus") and service.get("mem_limit"), f"{name} has no limits"
        if name != "minio-bucket":
            assert service.get("healthcheck", {}).get("test"), f"{name} has no healthcheck"
        for needed, condition in (service.get("depends_on") or {}).items():
            assert condition.get("condition") in (
                "service_healthy",
                "service_completed_successfully",
            ), f"{name} starts without waiting for {needed}"
    astralog = resolved["services"]["astralog"]
    assert astralog["read_only"] and astralog["cap_drop"] == ["ALL"]
    assert astralog["user"] == "10001:10001"
