"""Ingest stage 2, normalise: severity, the one mapping of every ingest format.

Promise: any level a shipper sends (a word of syslog, log4j, java.util.logging, pino, Windows,
OpenTelemetry's short names, or a number of those vocabularies) becomes OpenTelemetry's
(SeverityText, SeverityNumber); an unknown level keeps its text with number 0.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from typing import Any, Final

import pyarrow as pa

from astralog.ingest.normalise.text import json_text

# The one severity mapping of every ingest format: OpenTelemetry's SeverityNumber, with the word
# of each source vocabulary placed as the log data model's Appendix B places it (syslog, log4j,
# java.util.logging, Windows event log). The six OTel range names (and synonyms of them) keep
# that name; a level between two of them keeps its own (NOTICE, CRIT, ALERT, FINE). "critical"
# is Python's, .NET's and ETW's top level (FATAL, as `level:critical` searches), not syslog's
# "crit" (ERROR2).
_BASE_NUMBER = {"TRACE": 1, "DEBUG": 5, "INFO": 9, "WARN": 13, "ERROR": 17, "FATAL": 21}
SEVERITY_WORDS: Final[dict[str, tuple[str, int]]] = {
    "trace": ("TRACE", 1), "finest": ("TRACE", 1),
    "debug": ("DEBUG", 5), "dbg": ("DEBUG", 5), "finer": ("DEBUG", 5), "verbose": ("DEBUG", 5),
    "fine": ("FINE", 6), "config": ("CONFIG", 7),
    "info": ("INFO", 9), "information": ("INFO", 9), "informational": ("INFO", 9),
    "notice": ("NOTICE", 10),
    "warn": ("WARN", 13), "warning": ("WARN", 13),
    "err": ("ERROR", 17), "error": ("ERROR", 17), "severe": ("ERROR", 17),
    "crit": ("CRIT", 18), "alert": ("ALERT", 19),
    "fatal": ("FATAL", 21), "critical": ("FATAL", 21), "emerg": ("FATAL", 21),
    "emergency": ("FATAL", 21), "panic": ("FATAL", 21),
}  # fmt: skip
# Syslog severity codes 0-7, by their keywords in the table above.
_SYSLOG = ("emerg", "alert", "crit", "err", "warning", "notice", "info", "debug")
_PINO = {10: "trace", 20: "debug", 30: "info", 40: "warn", 50: "error", 60: "fatal"}


_SMALL_INTEGER = re.compile(r"[+-]?[0-9]{1,18}")


def severity_of_text(text: str) -> tuple[str, int]:
    """Severity text as written -> (normalised text, OTel severity number; 0 when unknown)."""
    word = text.strip()
    # ASCII digits only, and few: str.isdigit() also accepts "²", which int() refuses, and
    # int() refuses more than 4,300 digits. A longer number is no level anyway.
    if _SMALL_INTEGER.fullmatch(word):
        return severity_of_number(int(word))
    lower = word.lower()
    if lower in SEVERITY_WORDS:
        return SEVERITY_WORDS[lower]
    base, step = lower[:-1].upper(), lower[-1:]
    if base in _BASE_NUMBER and step in ("1", "2", "3", "4"):  # OTel's short names: INFO2, ERROR3
        return base + step, _BASE_NUMBER[base] + int(step) - 1
    return word.upper(), 0


def severity_of_number(number: float) -> tuple[str, int]:
    """0-7 syslog, 10..60 pino/bunyan, other 1-24 OpenTelemetry severity numbers."""
    if not math.isfinite(number):
        return "", 0  # NaN and infinities name no level (and int() refuses them)
    if number != int(number):
        return json_text(number), 0
    value = int(number)
    if 0 <= value <= 7:
        return SEVERITY_WORDS[_SYSLOG[value]]
    if value in _PINO:
        return SEVERITY_WORDS[_PINO[value]]
    if 1 <= value <= 24:
        return otel_severity_text(value), value
    return str(value), 0


def otel_severity_text(number: int) -> str:
    """An OpenTelemetry severity number 1-24 -> its short name (9 INFO, 10 INFO2, ...)."""
    if not 1 <= number <= 24:
        return ""
    base = ("TRACE", "DEBUG", "INFO", "WARN", "ERROR", "FATAL")[(number - 1) // 4]
    step = (number - 1) % 4
    return base + (str(step + 1) if step else "")


def severity_columns(values: pa.Array) -> tuple[pa.Array, pa.Array]:
    # Few distinct levels per batch: map the distinct values in Python, then take.
    encoded = values.dictionary_encode()
    mapper: Callable[[Any], tuple[str, int]] = (
        severity_of_text if pa.types.is_string(values.type) else severity_of_number
    )
    mapped = [mapper(v) for v in encoded.dictionary.to_pylist()]
    texts = pa.array([m[0] for m in mapped], pa.string())
    numbers = pa.array([m[1] for m in mapped], pa.uint8())
    return texts.take(encoded.indices), numbers.take(encoded.indices)
