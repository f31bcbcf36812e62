"""``astralog export verify``: check an org export offline, with the instance's public key.

Stage: the CLI over :mod:`astralog.export_verify`. Exit 0 when the manifest is signed by the key
and every file matches it, 1 when anything does not, 2 on bad input.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from astralog.cli.common import UsageError, read_file, show

if TYPE_CHECKING:
    from astralog.settings import Settings


def cmd_export(args: argparse.Namespace, settings: Settings) -> int:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

    from astralog.controlplane.checkpoints import load_public_key
    from astralog.export_verify import verify_export_archive

    archive = Path(args.file)
    if not archive.is_file():
        raise UsageError(f"no export archive at {archive}")
    try:
        key = load_public_key(read_file(args.public_key, "--public-key"))
        private = None
        if args.private_key:
            pem = read_file(args.private_key, "--private-key")
            private = serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError) as exc:
        raise UsageError(f"cannot read the key: {exc}") from None
    if private is not None and not isinstance(private, X25519PrivateKey):
        raise UsageError("--private-key must be the X25519 private key the export was sealed to")
    report = verify_export_archive(archive, key, private)
    for problem in report.problems:
        print(f"TAMPERED: {problem}", file=sys.stderr)
    show(report.as_dict())
    return 0 if report.ok else 1
