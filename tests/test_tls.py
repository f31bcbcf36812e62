"""HTTPS served by Astralog itself (ASTRALOG_SERVER__TLS_CERT_FILE / __KEY_FILE), with HSTS.

A real ``astralog serve`` with a certificate made by ``cryptography``: a client that trusts it
gets the API over TLS and a Strict-Transport-Security header; plain HTTP on that port gets no
answer; a certificate that cannot be served stops the start with a message naming the settings.
"""

from __future__ import annotations

import contextlib
import datetime
import os
import re
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from astralog.cli.serve import _tls_options
from astralog.errors import ConfigError
from astralog.settings import load_settings
from tests.certs import self_signed
from tests.ingest_helpers import free_port

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    directory = tmp_path_factory.mktemp("tls")
    cert_pem, key_pem = self_signed("localhost", dns_name=True)
    cert, key = directory / "server.pem", directory / "server.key"
    cert.write_bytes(cert_pem)
    key.write_bytes(key_pem)
    key.chmod(0o600)
    return cert, key


def _serve(tmp_path: Path, port: int, **settings: str) -> subprocess.Popen[str]:
    env = {
        **os.environ,
        "ASTRALOG_DATA_DIR": str(tmp_path / "data"),
        "ASTRALOG_SERVER__PORT": str(port),
        "ASTRALOG_WAL__FSYNC": "false",
        **settings,
    }
    return subprocess.Popen(
        [sys.executable, "-m", "astralog.cli", "serve"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


@contextlib.contextmanager
def _https_server(
    tmp_path: Path, cert: Path, key: Path
) -> Iterator[tuple[str, subprocess.Popen[str]]]:
    port = free_port()
    process = _serve(
        tmp_path,
        port,
        ASTRALOG_SERVER__TLS_CERT_FILE=str(cert),
        ASTRALOG_SERVER__TLS_KEY_FILE=str(key),
    )
    try:
        yield f"https://localhost:{port}", process
    finally:
        process.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=20)
        if process.poll() is None:
            process.kill()
            process.wait()
        if process.stdout is not None:
            process.stdout.close()


def _trusting(cert: Path) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(cert))


def _wait_ready(url: str, process: subprocess.Popen[str], context: ssl.SSLContext) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            output = process.stdout.read() if process.stdout else ""
            raise AssertionError(f"serve exited with {process.returncode}:\n{output[-3000:]}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{url}/readyz", verify=context, timeout=1).status_code == 200:
                return
        time.sleep(0.2)
    raise AssertionError(f"{url} was not ready over HTTPS within 30 s")


def test_https_with_hsts(tmp_path: Path, certificate: tuple[Path, Path]) -> None:
    cert, key = certificate
    with _https_server(tmp_path, cert, key) as (url, process):
        context = _trusting(cert)
        _wait_ready(url, process, context)
        answer = httpx.get(f"{url}/healthz", verify=context, timeout=5)
        assert answer.status_code == 200
        assert answer.headers["strict-transport-security"] == "max-age=31536000"
        assert process.stdout is not None
        # The first-start banner names the https URL shippers should use.
        banner = "".join(process.stdout.readline() for _ in range(4))
        assert f"URL:             {url.replace('localhost', '127.0.0.1')}" in banner
        with pytest.raises(httpx.HTTPError):  # plain HTTP on the TLS port gets no HTTP answer
            httpx.get(url.replace("https://", "http://") + "/healthz", timeout=5)
        with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
            httpx.get(f"{url}/healthz", timeout=5)  # an untrusting client refuses it: real TLS
        # The image's HEALTHCHECK, given the same settings, asks over https.
        probe = subprocess.run(
            [sys.executable, str(ROOT / "docker" / "healthcheck.py")],
            env={
                **os.environ,
                "ASTRALOG_SERVER__PORT": url.rsplit(":", 1)[1],
                "ASTRALOG_SERVER__TLS_CERT_FILE": str(cert),
            },
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert probe.returncode == 0, probe.stderr


def test_unusable_certificate_refused_at_start(
    tmp_path: Path, certificate: tuple[Path, Path]
) -> None:
    cert, _ = certificate
    _, wrong_key = self_signed("elsewhere")
    (tmp_path / "other.key").write_bytes(wrong_key)
    process = _serve(
        tmp_path,
        free_port(),
        ASTRALOG_SERVER__TLS_CERT_FILE=str(cert),
        ASTRALOG_SERVER__TLS_KEY_FILE=str(tmp_path / "other.key"),  # not the certificate's key
    )
    output, _ = process.communicate(timeout=60)
    assert process.returncode != 0
    assert re.search(r"cannot serve HTTPS with ASTRALOG_SERVER__TLS_CERT_FILE=", output), output
    assert not (tmp_path / "data").exists()  # refused before anything is written


def _refused(tmp_path: Path, cert_pem: bytes, key_pem: bytes) -> str:
    """The output of a start refused for this certificate, checked to have written nothing."""
    (tmp_path / "c.pem").write_bytes(cert_pem)
    (tmp_path / "k.pem").write_bytes(key_pem)
    process = _serve(
        tmp_path,
        free_port(),
        ASTRALOG_SERVER__TLS_CERT_FILE=str(tmp_path / "c.pem"),
        ASTRALOG_SERVER__TLS_KEY_FILE=str(tmp_path / "k.pem"),
    )
    try:
        output, _ = process.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()  # it started serving: the certificate was not refused
        output, _ = process.communicate()
    assert process.returncode == 2, output
    assert not (tmp_path / "data").exists(), list((tmp_path / "data").rglob("*"))
    return output


def test_an_encrypted_key_is_refused_without_a_prompt(tmp_path: Path) -> None:
    output = _refused(tmp_path, *self_signed("localhost", passphrase=b"hunter22"))
    assert "encrypted private keys are not supported" in output
    assert "openssl pkey" in output
    assert "PEM pass phrase" not in output


@pytest.mark.parametrize(
    ("valid_from", "valid_until", "says"),
    [
        (datetime.timedelta(days=-30), datetime.timedelta(days=-1), "expired"),
        (datetime.timedelta(days=1), datetime.timedelta(days=30), "not valid yet"),
    ],
)
def test_a_certificate_outside_its_validity_is_refused(
    tmp_path: Path, valid_from: datetime.timedelta, valid_until: datetime.timedelta, says: str
) -> None:
    output = _refused(
        tmp_path, *self_signed("localhost", valid_from=valid_from, valid_until=valid_until)
    )
    now = datetime.datetime.now(datetime.UTC)
    assert says in output
    assert (now + valid_from).strftime("%Y-%m-%d") in output
    assert (now + valid_until).strftime("%Y-%m-%d") in output


def test_certificate_and_key_go_together(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ASTRALOG_SERVER__TLS_CERT_FILE", "/etc/astralog/tls.pem")
    with pytest.raises(ConfigError, match="TLS_KEY_FILE go together"):
        load_settings()


def test_hsts_behind_a_tls_proxy_and_not_on_plain_http(tmp_path: Path) -> None:
    behind_proxy = load_settings(
        data_dir=tmp_path, server={"public_url": "https://logs.example.com"}
    )
    assert _tls_options(behind_proxy) == {
        "headers": [("Strict-Transport-Security", "max-age=31536000")]
    }
    assert _tls_options(load_settings(data_dir=tmp_path)) == {}
    switched_off = load_settings(
        data_dir=tmp_path, server={"public_url": "https://logs.example.com", "hsts_seconds": 0}
    )
    assert _tls_options(switched_off) == {}
