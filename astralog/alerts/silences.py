"""Silences: label matchers over a time range. A silence in force mutes the messages of every
alert instance whose labels it matches (the state still moves; see :mod:`astralog.alerts.state`).

An instance's labels are its group's values plus ``alertname`` and ``alert_id``. A matcher is
``{"name", "op", "value"}`` with ``op`` one of ``=``, ``!=``, ``=~`` and ``!~``; the last two
take a shell-style glob (``*``, ``?``, ``[...]``), not a regular expression, so no pattern can
make matching slow. :func:`preview` lists the instances a silence would mute now.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from astralog.errors import BadRequest

OPS = ("=", "!=", "=~", "!~")
MAX_MATCHERS = 20
_BRACKETS = re.compile(r"\[!?\]?[^\]]*\]")  # a glob's character class, as fnmatch reads it


@dataclass(frozen=True)
class Matcher:
    name: str
    op: str
    value: str

    def matches(self, labels: dict[str, str]) -> bool:
        actual = labels.get(self.name, "")
        if self.op in ("=", "!="):
            return (actual == self.value) == (self.op == "=")
        return fnmatch.fnmatchcase(actual, self.value) == (self.op == "=~")


@dataclass(frozen=True)
class Silence:
    id: str
    matchers: tuple[Matcher, ...]
    starts_ns: int
    ends_ns: int

    def matches(self, labels: dict[str, str]) -> bool:
        return all(m.matches(labels) for m in self.matchers)


def check_matchers(raw: Sequence[dict[str, str]]) -> list[dict[str, str]]:
    if not 0 < len(raw) <= MAX_MATCHERS:
        raise BadRequest(f"a silence takes 1 to {MAX_MATCHERS} matchers")
    out = []
    for m in raw:
        name, op, value = m.get("name", ""), m.get("op", "="), m.get("value", "")
        if op not in OPS:
            raise BadRequest(f"matcher op {op[:10]!r} is not one of {list(OPS)}")
        if not 0 < len(name) <= 256 or len(value) > 256:
            raise BadRequest("a matcher's name is 1 to 256 characters and its value at most 256")
        out.append({"name": name, "op": op, "value": value})
    if not any(_narrows(m) for m in out):
        raise BadRequest(
            "a silence needs at least one matcher that narrows it: = with a value, or =~ with "
            "a pattern that holds a literal character (not only * ? and [...])"
        )
    return out


def _narrows(matcher: dict[str, str]) -> bool:
    """Whether a matcher can leave some instance out: ``=~ "?*"`` matches every label value
    there is, and ``= ""`` every instance without the label, as ``=~ "*"`` does."""
    if matcher["op"] == "=":
        return matcher["value"] != ""
    if matcher["op"] == "=~":
        return _BRACKETS.sub("", matcher["value"]).strip("*?") != ""
    return False


def silence_of(view: dict[str, Any]) -> Silence:
    matchers = tuple(Matcher(m["name"], m["op"], m["value"]) for m in view["matchers"])
    return Silence(view["id"], matchers, _ns(view["starts_at"]), _ns(view["ends_at"]))


def active_silences(views: Sequence[dict[str, Any]], now: int) -> list[Silence]:
    """The silences in force at ``now``: started, not past their end, not ended early."""
    found = []
    for view in views:
        if view["ended_at"] is not None:
            continue
        silence = silence_of(view)
        if silence.starts_ns <= now < silence.ends_ns:
            found.append(silence)
    return found


def preview(silence: Silence, instances: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Of ``instances`` (each with ``labels``, the full set), those the silence would mute."""
    return [i for i in instances if silence.matches(i["labels"])]


def _ns(text: str) -> int:
    return int(datetime.fromisoformat(text).timestamp() * 1e6) * 1000
