"""The ``astralog`` command: serve, bootstrap, manage sources and keys, verify the audit chain.

Management commands act directly on the local control plane (as the operator of this machine) and
are recorded in the event log with the actor ``cli:<user>``.

Bad input is one line on stderr and exit status 2, never a traceback. The heavy modules (the
runtime, pyarrow, boto, DuckDB) are imported by the commands that need them, so ``--help`` and
argument errors answer at once.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from collections.abc import Sequence

from astralog.auth.principal import SCOPES
from astralog.cli import admin, audit, backup, export, serve
from astralog.cli.common import Handler, close_runtimes
from astralog.errors import AstralogError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="astralog",
        description="Event-sourced log analytics with bring-your-own storage. Configuration comes "
        "from ASTRALOG_* environment variables (see `astralog config docs`).",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("serve", help="run the service (bootstraps a demo org on first start)")
    p.add_argument("--host", help="bind address (default from ASTRALOG_SERVER__HOST)")
    p.add_argument("--port", type=serve.tcp_port, help="port (default from ASTRALOG_SERVER__PORT)")
    p.set_defaults(handler=serve.cmd_serve)

    p = sub.add_parser("init", help="bootstrap an empty data dir and print the one-time secrets")
    p.set_defaults(handler=serve.cmd_init)

    p = sub.add_parser("orgs", help="list, create orgs or change their plan")
    p.add_argument("action", choices=["list", "create", "set-plan"])
    p.add_argument("--name", help="org name (create)")
    p.add_argument("--org", help="org id or name (set-plan)")
    p.add_argument("--plan", default="free", help="free, pro or enterprise")
    p.add_argument(
        "--overrides", help='JSON of plan limits, enterprise only: {"retention_days":90}'
    )
    p.set_defaults(handler=admin.cmd_orgs)

    p = sub.add_parser("plans", help="list, define or edit plans (an edit takes effect at once)")
    p.add_argument("action", choices=["list", "define", "edit"])
    p.add_argument("--name", help="plan name (define, edit)")
    p.add_argument("--limits", help='JSON of limits, e.g. {"retention_days": 14}')
    p.add_argument("--based-on", help="define: copy the limits left out from this plan")
    p.add_argument(
        "--clamp",
        action="store_true",
        help="edit: accept that sources keeping longer than the new retention are clamped",
    )
    p.set_defaults(handler=admin.cmd_plans)

    p = sub.add_parser("sources", help="list or create an org's sources")
    p.add_argument("action", choices=["list", "create"])
    p.add_argument("--org", required=True, help="org id or name")
    p.add_argument("--name", help="source name (create)")
    p.add_argument("--description", default="")
    p.set_defaults(handler=admin.cmd_sources)

    p = sub.add_parser("keys", help="issue, list, rotate or revoke a source's ingest keys")
    p.add_argument("action", choices=["list", "issue", "rotate", "revoke"])
    p.add_argument("--org", required=True, help="org id or name")
    p.add_argument("--source", help="source id or name (issue; list: all sources if left out)")
    p.add_argument("--key-id", help="key id (rotate, revoke)")
    p.add_argument(
        "--grace-minutes",
        type=int,
        default=24 * 60,
        help="how long the old key keeps working after rotate (0-10080, default 1440)",
    )
    p.set_defaults(handler=admin.cmd_keys)

    p = sub.add_parser("tokens", help="issue or revoke management tokens")
    p.add_argument("action", choices=["issue", "revoke"])
    p.add_argument("--org", help="org id or name")
    p.add_argument("--operator", action="store_true", help="an operator token (no org)")
    p.add_argument("--name", default="cli", help="token name (issue)")
    p.add_argument("--scope", action="append", choices=sorted(SCOPES), help="repeatable")
    p.add_argument("--token-id", help="token id (revoke)")
    p.set_defaults(handler=admin.cmd_tokens)

    p = sub.add_parser("connectors", help="bring your own storage: add, test, activate")
    p.add_argument("action", choices=["list", "create", "test", "policy", "activate", "deactivate"])
    p.add_argument("--org", required=True, help="org id or name")
    p.add_argument("--connector-id", help="connector id (test, policy, activate)")
    p.add_argument("--name", help="connector name (create)")
    p.add_argument("--kind", choices=["s3", "clickhouse"], help="create")
    p.add_argument("--config", help='JSON, e.g. {"bucket":"logs","region":"eu-west-1"}')
    p.add_argument("--secrets-file", help="JSON file of secrets (kept out of shell history)")
    p.set_defaults(handler=admin.cmd_connectors)

    p = sub.add_parser(
        "rotate-master",
        help="re-wrap every connector data key under ASTRALOG_STORAGE__ACTIVE_MASTER_KEY "
        "(configure old and new keys in ASTRALOG_STORAGE__MASTER_KEYS while it runs)",
    )
    p.set_defaults(handler=admin.cmd_rotate_master)

    p = sub.add_parser("audit", help="verify the hash chain, sign a checkpoint, print the key")
    p.add_argument("action", choices=["verify", "checkpoint", "public-key", "verify-receipt"])
    p.add_argument("file", nargs="?", help="verify-receipt: a purge receipt (JSON) to check")
    p.add_argument("--database", help="SQLite file to verify (default: this data dir's)")
    p.add_argument("--public-key", help="PEM public key to verify with (offline verification)")
    p.add_argument("--export", help="verify an org's audit export (GET /v1/audit?format=ndjson)")
    p.add_argument(
        "--checkpoints", help="directory (or file) of checkpoint copies, e.g. synced from a bucket"
    )
    p.add_argument(
        "--destination-checkpoints",
        action=argparse.BooleanOptionalAction,
        help="read each org's checkpoint copies from its destination and the embedded bucket "
        "(default: on whenever this data dir is set up, --database or not)",
    )
    p.add_argument(
        "--strict", action="store_true", help="exit 3 on any warning, not only when unproven"
    )
    p.set_defaults(handler=audit.cmd_audit)

    p = sub.add_parser(
        "break-glass",
        help="create an org's break-glass owner (signs in with a password even when SSO is "
        "enforced) or set its password",
    )
    p.add_argument("--org", required=True, help="org id or name")
    p.add_argument("--email", required=True, help="the account's email (its sign-in name)")
    p.add_argument("--name", default="Break-glass owner", help="display name (when created)")
    p.add_argument(
        "--password-stdin", action="store_true", help="read the password from stdin, not a prompt"
    )
    p.set_defaults(handler=admin.cmd_break_glass)

    p = sub.add_parser(
        "domains", help="verify an email domain for an org (SSO may then create its accounts)"
    )
    p.add_argument("action", choices=["verify", "list"])
    p.add_argument("--org", required=True, help="org id or name")
    p.add_argument("--domain", help="the domain the org owns, e.g. example.com (verify)")
    p.set_defaults(handler=admin.cmd_domains)

    p = sub.add_parser(
        "backup", help="archive the control plane, catalog and signing key (safe while serving)"
    )
    p.add_argument("--to", required=True, help="archive file to write (e.g. astralog.tar.gz)")
    p.set_defaults(handler=backup.cmd_backup)

    p = sub.add_parser("restore", help="restore a backup into an empty data dir, verified")
    p.add_argument("--from", required=True, help="archive written by astralog backup")
    p.add_argument(
        "--force", action="store_true", help="replace the state of a stopped, non-empty data dir"
    )
    p.set_defaults(handler=backup.cmd_restore)

    p = sub.add_parser("export", help="verify an org export offline against its signed manifest")
    p.add_argument("action", choices=["verify"])
    p.add_argument("file", help="the archive downloaded from GET /v1/exports/{id}/download")
    p.add_argument("--public-key", required=True, help="PEM of the instance's Ed25519 key")
    p.add_argument("--private-key", help="PEM of your X25519 key, for an encrypted export")
    p.set_defaults(handler=export.cmd_export)

    p = sub.add_parser("events", help="rebuild projections from the event log")
    p.add_argument("action", choices=["rebuild"])
    p.set_defaults(handler=admin.cmd_events)

    p = sub.add_parser("config", help="print the configuration reference")
    p.add_argument("action", choices=["docs"])
    p.set_defaults(handler=admin.cmd_config)
    return parser


def _stdout_gone() -> int:
    """The reader of our output left (``| head``): stop quietly, with the status a process killed
    by SIGPIPE has, as cat and grep do."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())  # the interpreter's last flush must not fail again
    return 128 + signal.SIGPIPE


def _private_files() -> None:
    """Everything any command writes (control plane, sessions, WAL, the local bucket, DuckDB's
    spill files, a restored backup) is for this user alone: 0600 files, 0700 directories. Every
    command may be the first to create the data dir, so this is set for all of them."""
    os.umask(0o077)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    _private_files()
    try:
        from astralog.settings import load_settings

        handler: Handler = args.handler
        try:
            code = handler(args, load_settings())
        finally:
            close_runtimes()
        sys.stdout.flush()  # a reader that left shows here, not in the interpreter's exit
        return code
    except BrokenPipeError:
        return _stdout_gone()
    except AstralogError as exc:
        print(f"error: {exc.detail}", file=sys.stderr)
        return 2
