"""The service's own logs: one line per record, never a secret and never event contents.

Log collectors get one JSON object per line; a person at a terminal gets readable text
(``ASTRALOG_LOG_FORMAT`` forces either). A redaction filter replaces anything shaped like an
Astralog credential as a last line of defence; the first line is that code never passes secrets,
query text or event bodies to a logger.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from datetime import UTC, datetime
from typing import Any, Literal, TextIO

from astralog.auth.credentials import SCANNER_PATTERN

LogFormat = Literal["auto", "json", "text"]

_SECRET = re.compile(SCANNER_PATTERN)
# uvicorn's ``color_message`` is the message again with ANSI colours: noise in both formats.
_RESERVED = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message",
    "asctime",
    "color_message",
}


def redact(text: str) -> str:
    return _SECRET.sub("[REDACTED]", text)


def _time(record: logging.LogRecord) -> str:
    return datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds")


def _extra(record: logging.LogRecord) -> dict[str, Any]:
    """The fields a caller passed with ``extra=``."""
    return {k: v for k, v in vars(record).items() if k not in _RESERVED}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": _time(record),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        entry.update(_extra(record))
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return redact(json.dumps(entry, default=str))


class TextFormatter(logging.Formatter):
    """``time LEVEL logger message key=value ...``, for a person reading a terminal."""

    def format(self, record: logging.LogRecord) -> str:
        fields = " ".join(f"{k}={json.dumps(v, default=str)}" for k, v in _extra(record).items())
        line = f"{_time(record)} {record.levelname:<7} {record.name}: {record.getMessage()}"
        line = f"{line}  {fields}" if fields else line
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return redact(line)


def formatter(fmt: LogFormat, stream: TextIO) -> logging.Formatter:
    """JSON unless asked for text, or left to choose and writing to a terminal."""
    as_text = fmt == "text" or (fmt == "auto" and stream.isatty())
    return TextFormatter() if as_text else JsonFormatter()


def configure(level: str = "INFO", fmt: LogFormat = "auto", stream: TextIO | None = None) -> None:
    stream = stream or sys.stderr
    handler = logging.StreamHandler(stream)
    handler.setFormatter(formatter(fmt, stream))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for name in ("uvicorn", "uvicorn.error"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True
    logging.getLogger("uvicorn.access").disabled = True  # our middleware logs requests
    for noisy in ("botocore", "aiobotocore", "urllib3", "clickhouse_connect"):
        # At DEBUG these print request headers, session tokens among them.
        logging.getLogger(noisy).setLevel(logging.WARNING)
