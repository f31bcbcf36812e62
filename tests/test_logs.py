"""The service's console output: text for a person at a terminal, JSON for everything else.

A real pseudo-terminal stands in for the terminal; a pipe for a log collector.
"""

from __future__ import annotations

import json
import logging
import os
import pty
from collections.abc import Iterator
from typing import IO

import pytest

from astralog import logs
from astralog.settings import load_settings
from tests.ingest_helpers import readable

ANSI = "\x1b["


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    uvicorn = logging.getLogger("uvicorn.error")
    uvicorn_state = (uvicorn.handlers[:], uvicorn.propagate)
    yield
    root.handlers[:], root.level = handlers, level
    uvicorn.handlers[:], uvicorn.propagate = uvicorn_state
    logging.getLogger("uvicorn.access").disabled = False


def _uvicorn_style_line() -> None:
    """What uvicorn logs at start: a plain message plus an ANSI-coloured copy in the record."""
    logging.getLogger("uvicorn.error").info(
        "Started server process [%d]", 4242, extra={"color_message": "Started [\x1b[36m%d\x1b[0m]"}
    )
    logging.getLogger("astralog.query").info("search", extra={"query_length": 7})


def _emit(stream: IO[str], fmt: str) -> None:
    logs.configure("INFO", fmt, stream=stream)  # type: ignore[arg-type]
    _uvicorn_style_line()
    stream.flush()


def _through_pipe(fmt: str) -> list[str]:
    reader, writer = os.pipe()
    with os.fdopen(writer, "w") as stream:
        _emit(stream, fmt)
    with os.fdopen(reader) as out:
        return out.read().splitlines()


def _through_terminal(fmt: str) -> list[str]:
    leader, follower = pty.openpty()
    with os.fdopen(follower, "w") as stream:
        assert stream.isatty()
        _emit(stream, fmt)
        chunks = []  # a pty hands over what was written in pieces: read until it is drained
        while readable(leader, 0.5):
            chunks.append(os.read(leader, 65536))
        text = b"".join(chunks).decode()
    os.close(leader)
    return text.replace("\r\n", "\n").splitlines()


def test_a_pipe_gets_json_without_uvicorns_ansi_copy() -> None:
    lines = _through_pipe("auto")
    records = [json.loads(line) for line in lines]
    started, search = records
    assert started["message"] == "Started server process [4242]"
    assert started["logger"] == "uvicorn.error" and started["level"] == "info"
    assert "color_message" not in started
    assert ANSI not in lines[0]
    assert search["query_length"] == 7


def test_a_terminal_gets_readable_lines() -> None:
    started, search = _through_terminal("auto")
    assert "INFO" in started and "uvicorn.error" in started
    assert started.rstrip().endswith("Started server process [4242]")
    assert "query_length=7" in search
    for line in (started, search):
        with pytest.raises(ValueError):
            json.loads(line)


def test_the_format_can_be_forced_either_way() -> None:
    assert all(json.loads(line) for line in _through_terminal("json"))
    started, _ = _through_pipe("text")
    assert "Started server process [4242]" in started and not started.startswith("{")


def test_text_lines_are_redacted_too() -> None:
    record = logging.LogRecord("astralog", logging.INFO, __file__, 1, "key %s", ("x",), None)
    record.secret = "alk_0m14phQTal0PR208_PAvczFf2HoQRXXNzoduPHbO2apkiWI10olyncYQ3SQ544svhJ"
    assert "alk_0m14" not in logs.TextFormatter().format(record)


def test_the_setting_is_read_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    assert load_settings().log_format == "auto"
    monkeypatch.setenv("ASTRALOG_LOG_FORMAT", "json")
    assert load_settings().log_format == "json"


def test_json_records_drop_uvicorns_coloured_copy() -> None:
    record = logging.LogRecord("uvicorn.error", logging.INFO, __file__, 1, "up", None, None)
    record.color_message = "\x1b[32mup\x1b[0m"
    entry = json.loads(logs.JsonFormatter().format(record))
    assert entry["message"] == "up" and "color_message" not in entry
