"""``astralog audit``: verify the hash chain (a database or an org's export), sign a checkpoint,
print the public key.

Stage: the offline end of :mod:`astralog.controlplane.audit_verify`. It gathers the checkpoint
copies held outside the database (``--checkpoints`` files, each org's destination and the
embedded bucket) and turns the report into an exit status: 0 intact, 1 tampered, 3 unproven.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from astralog.cli.common import UsageError, open_runtime, read_file, show

if TYPE_CHECKING:
    from astralog.settings import Settings


def cmd_audit(args: argparse.Namespace, settings: Settings) -> int:
    if args.action == "verify":
        return _verify(args, settings)
    if args.action == "verify-receipt":
        return _verify_receipt(args, settings)
    runtime = open_runtime(settings)
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

    postgres = "" if args.database or args.export else settings.control.database_url
    # Opening this data dir's runtime re-creates dropped triggers: look at them before.
    triggers = None if args.export or postgres else _triggers_now(args, settings)
    if args.public_key:
        pem = read_file(args.public_key, "--public-key")
    elif postgres:
        raise UsageError("verifying the PostgreSQL control plane needs --public-key PEM")
    else:
        pem = open_runtime(settings).signer.public_pem()
    try:
        public_key = load_public_key(pem)
    except (ValueError, TypeError) as exc:
        raise UsageError(
            f"--public-key {args.public_key} is not an Ed25519 public key: {exc}"
        ) from None
    if postgres:
        report = _verify_postgres(args, settings, postgres, public_key)
    elif args.export:
        report = _verify_export(args, public_key)
    else:
        report = _verify_database(args, settings, public_key, triggers)
    show(report.as_dict())
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


def _verify_receipt(args: argparse.Namespace, settings: Settings) -> int:
    """A purge receipt from a destination: exit 0 intact and signed, 1 not."""
    from astralog.controlplane.checkpoints import load_public_key
    from astralog.controlplane.purge_receipts import verify_receipt

    if not args.file:
        raise UsageError(
            "verify-receipt needs the receipt file: astralog audit verify-receipt FILE"
        )
    raw = read_file(args.file, "receipt")
    pem = read_file(args.public_key, "--public-key") if args.public_key else None
    try:
        key = load_public_key(pem or open_runtime(settings).signer.public_pem())
        doc = json.loads(raw)
    except (ValueError, TypeError) as exc:
        raise UsageError(f"cannot check {args.file}: {exc}") from None
    problems = verify_receipt(doc, key)
    for problem in problems:
        print(f"TAMPERED: {problem}", file=sys.stderr)
    if problems:
        return 1
    print(
        f"receipt OK: {doc['object_count']} objects, {doc['rows']} rows, {doc['bytes']} bytes "
        f"of source {doc['source_id']} before {doc['before']}",
        file=sys.stderr,
    )
    return 0


def _verify_postgres(
    args: argparse.Namespace, settings: Settings, url: str, public_key: Any
) -> Any:
    """The PostgreSQL log: its chains, checkpoints and triggers, with --checkpoints copies."""
    from astralog.controlplane import pgstore
    from astralog.controlplane.audit_verify import max_checkpoint_age
    from astralog.controlplane.checkpoints import parse_outside

    files = Path(args.checkpoints) if args.checkpoints else None
    found = (sorted(files.rglob("*.json")) if files.is_dir() else [files]) if files else []
    try:
        outside = list(parse_outside((str(f), read_file(str(f), "--checkpoints")) for f in found))
    except ValueError as exc:
        raise UsageError(f"unreadable checkpoint copy {exc}") from None
    max_age = max_checkpoint_age(settings.control.checkpoint_interval_seconds)
    return pgstore.verify(url, public_key, outside=outside, max_age=max_age)


def _verify_export(args: argparse.Namespace, public_key: Any) -> Any:
    from astralog.controlplane.audit_export import verify_export

    text = read_file(args.export, "--export").decode("utf-8", errors="replace")
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
        documents += [(str(f), read_file(str(f), "--checkpoints")) for f in files]
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

    runtime = open_runtime(settings)
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
