"""The README's quickstart, as a newcomer runs it: start, paste the printed curl, find the event."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.ingest_helpers import free_port


@pytest.mark.slow
def test_first_start_prints_a_curl_that_ingests_a_searchable_event(tmp_path: Path) -> None:
    port = free_port()
    env = {
        **os.environ,
        "ASTRALOG_DATA_DIR": str(tmp_path / "data"),
        "ASTRALOG_SERVER__PORT": str(port),
    }
    log = tmp_path / "serve.log"
    with log.open("wb") as out:
        server = subprocess.Popen(
            [sys.executable, "-m", "astralog.cli", "serve"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        banner = _wait_for_banner(log, server)
        admin = re.search(r"Admin token:\s+(alt_\S+)", banner)
        curl = banner[banner.index("curl -sS") :].split("\n\n")[0]
        assert admin, banner
        _wait_ready(port)
        pasted = subprocess.run(["sh", "-c", curl], capture_output=True, text=True, timeout=30)
        assert pasted.returncode == 0, pasted.stderr
        assert '"accepted":1' in pasted.stdout.replace(" ", ""), pasted.stdout
        acked = time.monotonic()
        found = httpx.post(
            f"http://127.0.0.1:{port}/v1/search",
            json={"query": '"hello from the quickstart"', "start": "now-5m"},
            headers={"Authorization": f"Bearer {admin.group(1)}"},
            timeout=10,
        ).json()
        assert time.monotonic() - acked < 2
        assert [e["body"] for e in found["events"]] == ["hello from the quickstart"]
        assert found["events"][0]["service"] == "demo" and found["events"][0]["level"] == "INFO"
    finally:
        server.terminate()
        server.wait(timeout=30)


def _wait_for_banner(log: Path, server: subprocess.Popen[bytes]) -> str:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        text = log.read_text(errors="replace")
        if "-d '{" in text:
            return text
        assert server.poll() is None, f"the server exited:\n{text[-3000:]}"
        time.sleep(0.1)
    raise AssertionError(f"no first-start banner:\n{log.read_text()[-3000:]}")


def _wait_ready(port: int) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise AssertionError("the server never became ready")
