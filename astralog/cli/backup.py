"""``astralog backup`` and ``astralog restore``: the operator's copies of a data dir's state.

Stage: the CLI over :mod:`astralog.backup`. Backup runs beside a serving process (it signs a
checkpoint of the head first, so the copy is proven up to about its own moment); restore runs
with the server stopped.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from astralog.cli.common import UsageError, close_runtimes, open_runtime, show

if TYPE_CHECKING:
    from astralog.settings import Settings


def cmd_backup(args: argparse.Namespace, settings: Settings) -> int:
    from astralog import backup

    if settings.control.database_url:
        raise UsageError(
            "ASTRALOG_CONTROL__DATABASE_URL is set: the control plane and the catalog live in "
            "PostgreSQL, which `astralog backup` does not copy; back it up with pg_dump (or "
            "your provider's snapshots), and each node's WAL volume with the node stopped"
        )
    if settings.path(settings.control.database).is_file():
        runtime = open_runtime(settings)
        runtime.signer.checkpoint(runtime.control.store)
        close_runtimes()  # the copy reads the files the runtime had open
    manifest = backup.backup(settings, Path(args.to))
    show({"archive": str(Path(args.to).resolve()), **manifest})
    print("(the archive holds the checkpoint signing key and secrets: keep it like one)")
    return 0


def cmd_restore(args: argparse.Namespace, settings: Settings) -> int:
    from astralog import backup

    show(backup.restore(settings, Path(getattr(args, "from")), force=args.force))
    return 0
