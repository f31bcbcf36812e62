"""A PostgreSQL URL the driver cannot use is reported without its password.

psycopg quotes the URL (or the token it choked on) in its messages; ``astralog`` prints them to
a terminal or a log, so the password must be gone, raw and percent-decoded, while the message
still says what is wrong.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest


def _rebuild(tmp_path: Path, url: str) -> str:
    env = {
        **os.environ,
        "ASTRALOG_DATA_DIR": str(tmp_path / "data"),
        "ASTRALOG_CONTROL__DATABASE_URL": url,
    }
    done = subprocess.run(
        [sys.executable, "-m", "astralog.cli", "events", "rebuild"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2, done.stdout + done.stderr
    return done.stdout + done.stderr


@pytest.mark.parametrize(
    ("url", "secrets", "says"),
    [
        ("postgresql://bob:S3cretPW@[::1/x", ["S3cretPW"], "unreadable"),
        ("postgresql://bob:S3cret%zzPW@h/x", ["S3cret%zzPW", "S3cret"], "unreadable"),
        ("postgresql://bob:S3cret%41PW@127.0.0.1:1/x", ["S3cret%41PW", "S3cretAPW"], "127.0.0.1:1"),
    ],
)
def test_the_password_never_reaches_the_output(
    tmp_path: Path, url: str, secrets: list[str], says: str
) -> None:
    output = _rebuild(tmp_path, url)
    for secret in secrets:
        assert secret not in output
    assert says in output
    assert "ASTRALOG_CONTROL__DATABASE_URL" in output
