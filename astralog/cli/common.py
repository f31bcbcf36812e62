"""What every ``astralog`` command shares: the operator as actor, the runtime, reading flags.

Stage: below the command modules, above the runtime (imported only when a command runs, so
``--help`` stays fast). Bad input raises :class:`UsageError`: one line on stderr, exit status 2.
"""

from __future__ import annotations

import argparse
import getpass
import json
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from astralog.errors import BadRequest, NotFound

if TYPE_CHECKING:
    from astralog.controlplane.store import Actor
    from astralog.runtime import Runtime
    from astralog.settings import Settings

Handler = Callable[[argparse.Namespace, "Settings"], int]


class UsageError(BadRequest):
    """A command was called without what it needs, or with something unreadable."""


def actor() -> Actor:
    from astralog.controlplane.store import Actor

    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return Actor(f"cli:{user}", "local")


_opened: list[Runtime] = []


def open_runtime(settings: Settings) -> Runtime:
    """The command's runtime; :func:`close_runtimes` closes it when the command ends (its
    database connections: a PostgreSQL server counts them)."""
    from astralog.runtime import Runtime

    runtime = Runtime(settings)
    _opened.append(runtime)
    return runtime


def close_runtimes() -> None:
    while _opened:
        _opened.pop().close()


def show(data: Any) -> None:
    print(json.dumps(data, indent=2, default=str))


def need(args: argparse.Namespace, *flags: str) -> None:
    """Refuse an action whose flags (e.g. ``--key-id``) were not given."""
    missing = [f for f in flags if not getattr(args, f.lstrip("-").replace("-", "_"))]
    if missing:
        raise UsageError(f"`astralog {args.command} {args.action}` needs {' and '.join(missing)}")


def json_object(text: str | None, flag: str) -> dict[str, Any]:
    """A JSON object given on the command line; {} when the flag was left out."""
    try:
        value = json.loads(text) if text else {}
    except ValueError as exc:
        raise UsageError(f"{flag} is not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise UsageError(f'{flag} must be a JSON object, like {{"key": "value"}}')
    return value


def read_file(path: str, flag: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise UsageError(f"cannot read {flag} {path}: {exc.strerror or exc}") from None


def read_text(path: str | None, flag: str) -> str | None:
    return read_file(path, flag).decode(errors="replace") if path else None


def find_org(runtime: Runtime, org: str | None) -> str:
    if not org:
        raise UsageError("this command needs --org (an org id or name; `astralog orgs list`)")
    for row in runtime.control.orgs():
        if org in (row["id"], row["name"]):
            return str(row["id"])
    raise NotFound(f"no org with id or name {org!r}; `astralog orgs list` shows them")


def find_source(runtime: Runtime, org_id: str, source: str) -> str:
    """A source of this org by id or name (another org's source is not found)."""
    for row in runtime.control.sources(org_id):
        if source in (row["id"], row["name"]):
            return str(row["id"])
    raise NotFound(
        f"no source with id or name {source!r} in this org; "
        "`astralog sources list --org ORG` shows them"
    )
