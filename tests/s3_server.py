"""A real S3 HTTP endpoint for tests: ``moto_server`` on loopback, one per session.

Load it from a test module with ``pytest_plugins = ["tests.s3_server"]``. Fixtures:

* ``moto_server`` (session): a running server (SigV4, multipart, IAM, STS) with a ready
  ``admin(service)`` boto3 client;
* ``s3_bucket``: a fresh, empty bucket on that server for one test;
* ``moto_iam_server`` (session): a second server whose IAM checks a test may switch on with
  :meth:`MotoServer.require_auth` (users, policies and roles are created with auth off first).
  It is separate so switching auth on cannot disturb tests that use ``moto_server``.

A server that cannot start FAILS the test with moto's own output; nothing is skipped.

The docstring says PYTEST_DONT_REWRITE: test modules import helpers from here before pytest
registers it as a plugin, and it holds no assertions worth rewriting.

Note: moto's development server sends two ``Server`` headers; aiohttp refuses that in Python's
dev mode (``-X dev`` / ``PYTHONASYNCIODEBUG``), so run these tests without it.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import boto3
import pytest

from tests.ingest_helpers import free_port

__all__ = ["TEST_KEY_ID", "TEST_SECRET", "MotoServer", "S3Bucket", "start_moto_server"]

REGION = "us-east-1"
TEST_KEY_ID = "AKIAASTRALOGTESTKEY0"
TEST_SECRET = "astralog-test-secret-not-for-production"
_START_TIMEOUT = 20.0
# Loopback needs no proxy; an inherited HTTP_PROXY must not swallow the readiness probe.
_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


@dataclass
class MotoServer:
    """A running ``moto_server`` subprocess and a way to administer it."""

    endpoint_url: str
    process: subprocess.Popen[bytes]
    _clients: dict[str, Any] = field(default_factory=dict)

    @property
    def port(self) -> int:
        return int(self.endpoint_url.rsplit(":", 1)[1])

    def admin(self, service: str) -> Any:
        """A boto3 client for ``service``, cached (creating one costs ~50 ms)."""
        if service not in self._clients:
            self._clients[service] = boto3.client(
                service,
                endpoint_url=self.endpoint_url,
                region_name=REGION,
                aws_access_key_id=TEST_KEY_ID,
                aws_secret_access_key=TEST_SECRET,
            )
        return self._clients[service]

    def require_auth(self, enabled: bool) -> None:
        """Switch moto's IAM authentication and authorisation on (every request) or off."""
        body = b"0" if enabled else b"inf"
        request = urllib.request.Request(
            f"{self.endpoint_url}/moto-api/reset-auth",
            data=body,
            method="POST",
            headers={"Content-Type": "text/plain"},  # form-encoded bodies reach moto empty
        )
        with _NO_PROXY.open(request, timeout=10) as response:
            response.read()

    def new_bucket(self) -> S3Bucket:
        name = f"t-{uuid.uuid4().hex[:20]}"
        self.admin("s3").create_bucket(Bucket=name)
        return S3Bucket(name=name, server=self)


@dataclass(frozen=True)
class S3Bucket:
    name: str
    server: MotoServer

    @property
    def endpoint_url(self) -> str:
        return self.server.endpoint_url

    def keys(self) -> list[str]:
        """Every key in the bucket, read with the admin client (not the code under test)."""
        pages = self.server.admin("s3").get_paginator("list_objects_v2").paginate(Bucket=self.name)
        return sorted(obj["Key"] for page in pages for obj in page.get("Contents", []))


def _moto_binary() -> str:
    beside = Path(sys.executable).with_name("moto_server")
    found = str(beside) if beside.exists() else shutil.which("moto_server")
    if found is None:
        pytest.fail("moto_server not found: install the test extras (pip install -e '.[test]')")
    return found


def _answers(url: str) -> bool:
    try:
        with _NO_PROXY.open(url, timeout=0.5) as response:
            response.read()
    except urllib.error.HTTPError:
        return True  # any HTTP answer means the server is up
    except OSError:
        return False
    return True


def _wait_until_up(process: subprocess.Popen[bytes], url: str) -> str | None:
    """None once ``url`` answers; otherwise why it never will."""
    deadline = time.monotonic() + _START_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            return f"moto_server exited with status {process.returncode}"
        if _answers(url):
            return None
        time.sleep(0.05)
    return f"moto_server did not answer within {_START_TIMEOUT:.0f} s"


def _output(log: IO[bytes]) -> str:
    log.seek(0)
    return log.read().decode(errors="replace")[-2000:]


def _stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(timeout=5)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=5)


@contextlib.contextmanager
def start_moto_server(attempts: int = 3) -> Iterator[MotoServer]:
    """Start ``moto_server -H 127.0.0.1 -p <free port>``; fail the test if it cannot start.

    A port picked free can be taken before the server binds it, hence a few attempts.
    """
    binary, failures = _moto_binary(), []
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    for _ in range(attempts):
        port = free_port()
        with tempfile.TemporaryFile() as log:
            process = subprocess.Popen(
                [binary, "-H", "127.0.0.1", "-p", str(port)], stdout=log, stderr=log, env=env
            )
            url = f"http://127.0.0.1:{port}"
            problem = _wait_until_up(process, url)
            if problem is None:
                try:
                    yield MotoServer(endpoint_url=url, process=process)
                finally:
                    _stop(process)
                return
            _stop(process)
            failures.append(f"{problem}; output:\n{_output(log)}")
    pytest.fail("could not start moto_server:\n" + "\n---\n".join(failures))


@pytest.fixture(scope="session")
def moto_server() -> Iterator[MotoServer]:
    with start_moto_server() as server:
        yield server


@pytest.fixture(scope="session")
def moto_iam_server() -> Iterator[MotoServer]:
    with start_moto_server() as server:
        yield server


@pytest.fixture
def s3_bucket(moto_server: MotoServer) -> S3Bucket:
    return moto_server.new_bucket()
