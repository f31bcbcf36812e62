"""``astralog backup`` and ``astralog restore``: the operator's copies of a data dir's state.

Stage: the CLI over :mod:`astralog.backup`. Backup runs beside a serving process (it signs a
checkpoint of the head first, so the copy is proven up to about its own moment); restore runs
with the server stopped.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from astralog.cli.common import open_runtime, show

if TYPE_CHECKING:
    from astralog.settings import Settings


def cmd_backup(args: argparse.Namespace, settings: Settings) -> int:
    from astralog import backup

    if settings.path(settings.control.database).is_file():
        runtime = open_runtime(settings)
        runtime.signer.checkpoint(runtime.control.store)
        runtime.close()
    manifest = backup.backup(settings, Path(args.to))
    show({"archive": str(Path(args.to).resolve()), **manifest})
    print("(the archive holds the checkpoint signing key and secrets: keep it like one)")
    return 0


def cmd_restore(args: argparse.Namespace, settings: Settings) -> int:
    from astralog import backup

    show(backup.restore(settings, Path(getattr(args, "from")), force=args.force))
    return 0
