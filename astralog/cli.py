"""The ``astralog`` command: serve, bootstrap, manage sources and keys, verify the audit chain.

Management commands act directly on the local control plane (as the operator of this machine) and
are recorded in the event log with the actor ``cli:<user>``.

Bad input is one line on stderr and exit status 2, never a traceback. The heavy modules (the
runtime, pyarrow, boto, DuckDB) are imported by the commands that need them, so ``--help`` and
argument errors answer at once.
"""

from __future__ import annotations

import argparse
import errno
import getpass
import json
import os
import signal
import socket
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from astralog.auth.principal import SCOPES
from astralog.errors import AstralogError, BadRequest, ConfigError, NotFound

if TYPE_CHECKING:
    from astralog.controlplane.store import Actor
    from astralog.runtime import Bootstrap, Runtime
    from astralog.settings import Settings

Handler = Callable[[argparse.Namespace, "Settings"], int]


class UsageError(BadRequest):
    """A command was called without what it needs, or with something unreadable."""


def _actor() -> Actor:
    from astralog.controlplane.store import Actor

    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return Actor(f"cli:{user}", "local")


def _runtime(settings: Settings) -> Runtime:
    from astralog.runtime import Runtime

    return Runtime(settings)


def _print(data: Any) -> None:
    print(json.dumps(data, indent=2, default=str))


def _need(args: argparse.Namespace, *flags: str) -> None:
    """Refuse an action whose flags (e.g. ``--key-id``) were not given."""
    missing = [f for f in flags if not getattr(args, f.lstrip("-").replace("-", "_"))]
    if missing:
        raise UsageError(f"`astralog {args.command} {args.action}` needs {' and '.join(missing)}")


def _json(text: str | None, flag: str) -> dict[str, Any]:
    """A JSON object given on the command line; {} when the flag was left out."""
    try:
        value = json.loads(text) if text else {}
    except ValueError as exc:
        raise UsageError(f"{flag} is not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise UsageError(f'{flag} must be a JSON object, like {{"key": "value"}}')
    return value


def _read(path: str, flag: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise UsageError(f"cannot read {flag} {path}: {exc.strerror or exc}") from None


def _text(path: str | None, flag: str) -> str | None:
    return _read(path, flag).decode(errors="replace") if path else None


def _org_id(runtime: Runtime, org: str | None) -> str:
    if not org:
        raise UsageError("this command needs --org (an org id or name; `astralog orgs list`)")
    for row in runtime.control.orgs():
        if org in (row["id"], row["name"]):
            return str(row["id"])
    raise NotFound(f"no org with id or name {org!r}; `astralog orgs list` shows them")


def _source_id(runtime: Runtime, org_id: str, source: str) -> str:
    """A source of this org by id or name (another org's source is not found)."""
    for row in runtime.control.sources(org_id):
        if source in (row["id"], row["name"]):
            return str(row["id"])
    raise NotFound(
        f"no source with id or name {source!r} in this org; "
        "`astralog sources list --org ORG` shows them"
    )


def banner(settings: Settings, boot: Bootstrap) -> str:
    url = settings.server.url()
    curl = (
        f"curl -sS -X POST {url}/v1/ingest \\\n"
        f"  -H 'Authorization: Bearer {boot.ingest_key}' \\\n"
        "  -H 'Content-Type: application/json' \\\n"
        '  -d \'{"message":"hello from the quickstart","level":"info","service":"demo"}\''
    )
    return "\n".join(
        [
            "",
            "Astralog is set up (first start). These secrets are shown once; store them now.",
            f"  URL:             {url}",
            f"  Org:             {boot.org['name']} ({boot.org['id']}), source "
            f"{boot.source['name']} ({boot.source['id']})",
            f"  Admin token:     {boot.admin_token}",
            f"  Operator token:  {boot.operator_token}",
            f"  Ingest key:      {boot.ingest_key}",
            "",
            "Send an event:",
            curl,
            "",
        ]
    )


def _preflight(settings: Settings) -> None:
    """Refuse to start, in one line, when the data dir is served already or the port is taken.

    The data dir first: a second ``make run`` also asks for the same port, and the data dir is
    the real reason."""
    from astralog.ingest.wal.recovery import lock_directory

    wal = settings.path(settings.wal.directory)
    try:
        lock_directory(wal).close()  # released at once; the server takes it again in its lifespan
    except ConfigError:
        raise ConfigError(
            f"Astralog is already running on this data dir ({wal} is locked); "
            "stop it or set ASTRALOG_DATA_DIR"
        ) from None
    _check_port(settings.server.host, settings.server.port)


def _check_port(host: str, port: int) -> None:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise ConfigError(
                f"port {port} is in use; set ASTRALOG_SERVER__PORT (or --port)"
                if exc.errno == errno.EADDRINUSE
                else f"cannot listen on {host}:{port}: {exc.strerror}; "
                "set ASTRALOG_SERVER__HOST / ASTRALOG_SERVER__PORT (or --host / --port)"
            ) from None


def _proxy_options(settings: Settings) -> dict[str, Any]:
    """uvicorn believes X-Forwarded-For from 127.0.0.1 by default; only configured proxies may
    set the client address (the audit trail and the metrics loopback check rely on it)."""
    trusted = settings.server.trusted_proxies
    if not trusted:
        return {"proxy_headers": False}
    return {"proxy_headers": True, "forwarded_allow_ips": list(trusted)}


def cmd_serve(args: argparse.Namespace, settings: Settings) -> int:
    import uvicorn

    from astralog import logs
    from astralog.api.app import create_app

    updates = {k: v for k, v in (("host", args.host), ("port", args.port)) if v is not None}
    if updates:
        settings = settings.model_copy(
            update={"server": settings.server.model_copy(update=updates)}
        )
    _preflight(settings)  # before any secret is printed or state is written
    runtime = _runtime(settings)
    boot = runtime.bootstrap()
    if boot is not None:
        print(banner(settings, boot), flush=True)
    else:
        print(f"Astralog on {settings.server.url()} (data in {settings.data_dir})", flush=True)
    logs.configure(settings.log_level, settings.log_format)
    app = create_app(settings, runtime)
    uvicorn.run(
        app,
        host=settings.server.host,
        port=settings.server.port,
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=10,
        # Idle connections close; past max_connections uvicorn answers 503 rather than
        # accepting sockets until the process runs out of descriptors (bodies: BodyLimit).
        timeout_keep_alive=settings.server.keep_alive_seconds,
        limit_concurrency=settings.server.max_connections,
        **_proxy_options(settings),
    )
    return 0


def cmd_init(args: argparse.Namespace, settings: Settings) -> int:
    runtime = _runtime(settings)
    boot = runtime.bootstrap()
    if boot is None:
        print(f"already initialised: {settings.path(settings.control.database)}", file=sys.stderr)
        return 1
    print(banner(settings, boot))
    return 0


def cmd_orgs(args: argparse.Namespace, settings: Settings) -> int:
    runtime = _runtime(settings)
    if args.action == "create":
        _need(args, "--name")
        _print(runtime.control.create_org(args.name, args.plan, _actor()))
    elif args.action == "set-plan":
        overrides = _json(args.overrides, "--overrides")
        _print(runtime.control.set_plan(_org_id(runtime, args.org), args.plan, overrides, _actor()))
    else:
        _print(runtime.control.orgs())
    return 0


def cmd_sources(args: argparse.Namespace, settings: Settings) -> int:
    runtime = _runtime(settings)
    org_id = _org_id(runtime, args.org)
    if args.action == "create":
        _need(args, "--name")
        _print(runtime.control.create_source(org_id, args.name, args.description, _actor()))
    else:
        _print(runtime.control.sources(org_id))
    return 0


KEY_FLAGS = {"issue": ("--source",), "rotate": ("--key-id",), "revoke": ("--key-id",)}


def cmd_keys(args: argparse.Namespace, settings: Settings) -> int:
    runtime = _runtime(settings)
    control, org_id = runtime.control, _org_id(runtime, args.org)
    _need(args, *KEY_FLAGS.get(args.action, ()))
    source_id = _source_id(runtime, org_id, args.source) if args.source else None
    if args.action == "list":
        sources = [source_id] if source_id else [s["id"] for s in control.sources(org_id)]
        _print([key for sid in sources for key in control.keys(org_id, sid)])
    elif args.action == "revoke":
        _print(control.revoke_key(org_id, args.key_id, _actor()))
    else:
        issued = (
            control.issue_key(org_id, str(source_id), _actor())
            if args.action == "issue"
            else control.rotate_key(org_id, args.key_id, args.grace_minutes, _actor())
        )
        print(f"{issued.credential.secret}\n(shown once; store it now)", file=sys.stdout)
        _print(issued.info)
    return 0


def cmd_tokens(args: argparse.Namespace, settings: Settings) -> int:
    runtime = _runtime(settings)
    org_id = None if args.operator else _org_id(runtime, args.org)
    if args.action == "revoke":
        _need(args, "--token-id")
        _print(runtime.control.revoke_token(org_id, args.token_id, _actor()))
        return 0
    issued = runtime.control.issue_token(org_id, args.name, args.scope or [], _actor())
    print(f"{issued.credential.secret}\n(shown once; store it now)")
    _print(issued.info)
    return 0


def cmd_audit(args: argparse.Namespace, settings: Settings) -> int:
    if args.action == "verify":
        return _verify(args, settings)
    runtime = _runtime(settings)
    if args.action == "public-key":
        sys.stdout.write(runtime.signer.public_pem().decode())
    else:
        signed = runtime.signer.checkpoint(runtime.control.store)
        print(f"signed checkpoint at record {signed[0]}" if signed else "head already signed")
    return 0


# `audit verify` exit statuses: 0 intact, 1 tampered, 3 unproven (no checkpoint at all, or with
# --strict any warning: a stale last signature, no copies outside the database checked).
UNPROVEN = 3


def _verify(args: argparse.Namespace, settings: Settings) -> int:
    from astralog.controlplane.checkpoints import load_public_key

    # Opening this data dir's runtime re-creates dropped triggers: look at them before.
    triggers = None if args.export else _triggers_now(args, settings)
    if args.public_key:
        pem = _read(args.public_key, "--public-key")
    else:
        pem = _runtime(settings).signer.public_pem()
    try:
        public_key = load_public_key(pem)
    except (ValueError, TypeError) as exc:
        raise UsageError(
            f"--public-key {args.public_key} is not an Ed25519 public key: {exc}"
        ) from None
    report = (
        _verify_export(args, public_key)
        if args.export
        else _verify_database(args, settings, public_key, triggers)
    )
    _print(report.as_dict())
    for warning in report.warnings:
        print(f"WARNING: {warning}", file=sys.stderr)
    if report.verdict == "tampered":
        for problem in report.problems[:20]:  # every finding is in the JSON report
            print(f"TAMPERED: {problem}", file=sys.stderr)
        return 1
    signed = report.proven_at or "at an unsigned time"
    proven = f"proven up to record {report.proven_seq} (signed {signed})"
    if report.verdict == "unproven" or (args.strict and report.warnings):
        print(f"UNPROVEN: chain intact but not proven; {proven}", file=sys.stderr)
        return UNPROVEN
    print(f"chain OK: {report.records} records, {proven}", file=sys.stderr)
    return 0


def _verify_export(args: argparse.Namespace, public_key: Any) -> Any:
    from astralog.controlplane.audit_export import verify_export

    text = _read(args.export, "--export").decode("utf-8", errors="replace")
    return verify_export(text.splitlines(), public_key)


def _database(args: argparse.Namespace, settings: Settings) -> Path:
    database = Path(args.database or settings.path(settings.control.database))
    if not database.is_file():
        raise UsageError(f"no audit database at {database}; name one with --database")
    return database


def _triggers_now(args: argparse.Namespace, settings: Settings) -> frozenset[str]:
    import sqlite3

    from astralog.controlplane.audit_verify import present_triggers

    database = _database(args, settings)
    try:
        return present_triggers(database)
    except sqlite3.DatabaseError as exc:
        raise UsageError(f"{database} is not a readable Astralog database: {exc}") from None


def _verify_database(
    args: argparse.Namespace, settings: Settings, public_key: Any, triggers: frozenset[str] | None
) -> Any:
    import sqlite3

    from astralog.controlplane.audit_verify import max_checkpoint_age, verify

    database = _database(args, settings)
    outside, sources = _outside_copies(args, settings, database)
    try:
        report = verify(
            database,
            public_key,
            outside=outside,
            max_age=max_checkpoint_age(settings.control.checkpoint_interval_seconds),
            triggers=triggers,
        )
    except sqlite3.DatabaseError as exc:
        raise UsageError(f"{database} is not a readable Astralog database: {exc}") from None
    if not sources:
        report.warnings.append(
            "no checkpoint copies outside this database were checked (outside copies were not "
            "consulted), so records cut off together with their checkpoints cannot be detected: "
            "pass --checkpoints DIR (copies fetched from the org's bucket), or run where "
            "ASTRALOG_DATA_DIR names the data dir whose destinations hold them"
        )
    elif sources == {"embedded"}:
        report.warnings.append(
            "the only checkpoint copies are in the embedded bucket on this machine: they do not "
            "survive losing it (a BYOB destination keeps them in the customer's storage)"
        )
    return report


def _outside_copies(
    args: argparse.Namespace, settings: Settings, database: Path
) -> tuple[list[Any], set[str]]:
    """Checkpoint copies from --checkpoints files and from the orgs' destinations (by default
    whenever this data dir is set up, so its destinations are known)."""
    from astralog.controlplane.checkpoints import parse_outside

    documents: list[tuple[str, bytes]] = []
    sources: set[str] = set()
    if args.checkpoints:
        root = Path(args.checkpoints)
        files = sorted(root.rglob("*.json")) if root.is_dir() else [root]
        documents += [(str(f), _read(str(f), "--checkpoints")) for f in files]
        sources.add("files")
    known = settings.path(settings.control.database).is_file()
    if args.destination_checkpoints or (args.destination_checkpoints is None and known):
        copies, kinds = _destination_copies(settings, database)
        documents += copies
        sources |= kinds
    try:
        return list(parse_outside(documents)), sources
    except ValueError as exc:
        raise UsageError(f"unreadable checkpoint copy {exc}") from None


def _destination_copies(
    settings: Settings, database: Path
) -> tuple[list[tuple[str, bytes]], set[str]]:
    """Every org's checkpoint copies, from its active destination and the embedded bucket.

    The orgs come from the destinations too (each lists the orgs it holds checkpoints of), not
    only from the database under test: a wiped database names no org."""
    import asyncio

    from astralog import byob
    from astralog.connectors.local import LocalConnector

    runtime = _runtime(settings)
    known = _database_orgs(database) | {str(o["id"]) for o in runtime.control.orgs()}
    byob_connectors = []
    for org_id in sorted(known):
        record = runtime.destinations.active(org_id)
        if record is not None:
            secrets = runtime.destinations.secrets(org_id, record["id"])
            config = json.loads(record["config"])
            connector = byob.build(record["kind"], config, secrets, settings.storage)
            byob_connectors.append((org_id, connector))
    embedded = LocalConnector(settings.path(settings.storage.local_root))
    return asyncio.run(_all_copies(embedded, byob_connectors, known))


def _database_orgs(database: Path) -> set[str]:
    import sqlite3

    conn = sqlite3.connect(f"file:{database}?mode=ro", uri=True)
    conn.text_factory = bytes  # a malformed org id is the verifier's finding, not a crash here
    try:
        rows = conn.execute("SELECT DISTINCT org_id FROM org_chain").fetchall()
    finally:
        conn.close()
    return {row[0].decode() for row in rows if isinstance(row[0], bytes) and row[0].isascii()}


async def _all_copies(
    embedded: Any, byob_connectors: list[tuple[str, Any]], known: set[str]
) -> tuple[list[tuple[str, bytes]], set[str]]:
    documents: list[tuple[str, bytes]] = []
    kinds: set[str] = set()
    for org_id, connector in byob_connectors:
        try:
            for org in sorted({org_id, *await connector.list_checkpoint_orgs()}):
                documents += await connector.list_checkpoints(org)
        finally:
            await connector.close()
        kinds.add("byob")
    on_embedded = (known - {org for org, _ in byob_connectors}) | set(
        await embedded.list_checkpoint_orgs()
    )
    for org in sorted(on_embedded):
        documents += await embedded.list_checkpoints(org)
    if on_embedded:
        kinds.add("embedded")
    await embedded.close()
    return documents, kinds


def cmd_connectors(args: argparse.Namespace, settings: Settings) -> int:
    import asyncio

    from astralog import byob

    runtime = _runtime(settings)
    destinations, org_id = runtime.destinations, _org_id(runtime, args.org)
    if args.action not in ("list", "create", "deactivate"):
        _need(args, "--connector-id")
    if args.action == "list":
        _print(destinations.list(org_id))
    elif args.action == "create":
        _need(args, "--name", "--kind")
        config = _json(args.config, "--config")
        secrets = _json(_text(args.secrets_file, "--secrets-file"), "--secrets-file")
        _print(destinations.create(org_id, args.name, args.kind, config, secrets, _actor()))
    elif args.action == "test":
        view = destinations.get(org_id, args.connector_id)
        connector = byob.build(
            view["kind"], view["config"], destinations.secrets(org_id, args.connector_id),
            settings.storage,
        )  # fmt: skip
        checks = asyncio.run(connector.probe())
        ok = all(c.ok for c in checks)
        failed = [c.name for c in checks if not c.ok]
        destinations.record_test(org_id, args.connector_id, ok, failed, _actor())
        _print([vars(c) for c in checks])
        return 0 if ok else 1
    elif args.action == "policy":
        view = destinations.get(org_id, args.connector_id)
        print(byob.policy(view["kind"], view["config"], settings.storage)["text"])
    elif args.action == "activate":
        _print(destinations.activate(org_id, args.connector_id, _actor()))
    else:
        destinations.deactivate(org_id, _actor())
        print("new batches go to the embedded bucket")
    return 0


def cmd_rotate_master(args: argparse.Namespace, settings: Settings) -> int:
    count = _runtime(settings).destinations.rewrap_all(_actor())
    print(
        f"re-wrapped the data keys of {count} connectors under {settings.storage.active_master_key}"
    )
    return 0


def cmd_events(args: argparse.Namespace, settings: Settings) -> int:
    count = _runtime(settings).control.rebuild()
    print(f"rebuilt projections from {count} events")
    return 0


def cmd_config(args: argparse.Namespace, settings: Settings) -> int:
    from astralog.configdoc import render

    sys.stdout.write(render())  # exactly docs/configuration.md
    return 0


def _port(text: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= 65535:
        raise argparse.ArgumentTypeError(f"{text!r} is not a TCP port (1-65535)")
    return int(text)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="astralog",
        description="Event-sourced log analytics with bring-your-own storage. Configuration comes "
        "from ASTRALOG_* environment variables (see `astralog config docs`).",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("serve", help="run the service (bootstraps a demo org on first start)")
    p.add_argument("--host", help="bind address (default from ASTRALOG_SERVER__HOST)")
    p.add_argument("--port", type=_port, help="port (default from ASTRALOG_SERVER__PORT)")
    p.set_defaults(handler=cmd_serve)

    p = sub.add_parser("init", help="bootstrap an empty data dir and print the one-time secrets")
    p.set_defaults(handler=cmd_init)

    p = sub.add_parser("orgs", help="list, create orgs or change their plan")
    p.add_argument("action", choices=["list", "create", "set-plan"])
    p.add_argument("--name", help="org name (create)")
    p.add_argument("--org", help="org id or name (set-plan)")
    p.add_argument("--plan", default="free", help="free, pro or enterprise")
    p.add_argument(
        "--overrides", help='JSON of plan limits, enterprise only: {"retention_days":90}'
    )
    p.set_defaults(handler=cmd_orgs)

    p = sub.add_parser("sources", help="list or create an org's sources")
    p.add_argument("action", choices=["list", "create"])
    p.add_argument("--org", required=True, help="org id or name")
    p.add_argument("--name", help="source name (create)")
    p.add_argument("--description", default="")
    p.set_defaults(handler=cmd_sources)

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
    p.set_defaults(handler=cmd_keys)

    p = sub.add_parser("tokens", help="issue or revoke management tokens")
    p.add_argument("action", choices=["issue", "revoke"])
    p.add_argument("--org", help="org id or name")
    p.add_argument("--operator", action="store_true", help="an operator token (no org)")
    p.add_argument("--name", default="cli", help="token name (issue)")
    p.add_argument("--scope", action="append", choices=sorted(SCOPES), help="repeatable")
    p.add_argument("--token-id", help="token id (revoke)")
    p.set_defaults(handler=cmd_tokens)

    p = sub.add_parser("connectors", help="bring your own storage: add, test, activate")
    p.add_argument("action", choices=["list", "create", "test", "policy", "activate", "deactivate"])
    p.add_argument("--org", required=True, help="org id or name")
    p.add_argument("--connector-id", help="connector id (test, policy, activate)")
    p.add_argument("--name", help="connector name (create)")
    p.add_argument("--kind", choices=["s3", "clickhouse"], help="create")
    p.add_argument("--config", help='JSON, e.g. {"bucket":"logs","region":"eu-west-1"}')
    p.add_argument("--secrets-file", help="JSON file of secrets (kept out of shell history)")
    p.set_defaults(handler=cmd_connectors)

    p = sub.add_parser(
        "rotate-master",
        help="re-wrap every connector data key under ASTRALOG_STORAGE__ACTIVE_MASTER_KEY "
        "(configure old and new keys in ASTRALOG_STORAGE__MASTER_KEYS while it runs)",
    )
    p.set_defaults(handler=cmd_rotate_master)

    p = sub.add_parser("audit", help="verify the hash chain, sign a checkpoint, print the key")
    p.add_argument("action", choices=["verify", "checkpoint", "public-key"])
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
    p.set_defaults(handler=cmd_audit)

    p = sub.add_parser("events", help="rebuild projections from the event log")
    p.add_argument("action", choices=["rebuild"])
    p.set_defaults(handler=cmd_events)

    p = sub.add_parser("config", help="print the configuration reference")
    p.add_argument("action", choices=["docs"])
    p.set_defaults(handler=cmd_config)
    return parser


def _stdout_gone() -> int:
    """The reader of our output left (``| head``): stop quietly, with the status a process killed
    by SIGPIPE has, as cat and grep do."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())  # the interpreter's last flush must not fail again
    return 128 + signal.SIGPIPE


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        from astralog.settings import load_settings

        handler: Handler = args.handler
        code = handler(args, load_settings())
        sys.stdout.flush()  # a reader that left shows here, not in the interpreter's exit
        return code
    except BrokenPipeError:
        return _stdout_gone()
    except AstralogError as exc:
        print(f"error: {exc.detail}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
