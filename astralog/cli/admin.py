"""The operator's management commands: orgs, plans, sources, ingest keys, tokens, connectors, master
key rotation, verified email domains, projection rebuilds and the configuration reference.

Stage: the control plane, acted on directly as the operator of this machine; every change is
recorded in the event log with the actor ``cli:<user>``. Secrets are printed once.
"""

from __future__ import annotations

import argparse
import getpass
import sys
from typing import TYPE_CHECKING

from astralog.cli.common import (
    UsageError,
    actor,
    find_org,
    find_source,
    json_object,
    need,
    open_runtime,
    read_text,
    show,
)

if TYPE_CHECKING:
    from astralog.settings import Settings


def cmd_orgs(args: argparse.Namespace, settings: Settings) -> int:
    runtime = open_runtime(settings)
    if args.action == "create":
        need(args, "--name")
        show(runtime.control.create_org(args.name, args.plan, actor()))
    elif args.action == "set-plan":
        overrides = json_object(args.overrides, "--overrides")
        show(runtime.control.set_plan(find_org(runtime, args.org), args.plan, overrides, actor()))
    else:
        show(runtime.control.orgs())
    return 0


def cmd_plans(args: argparse.Namespace, settings: Settings) -> int:
    plans = open_runtime(settings).control.plans
    if args.action == "list":
        show(plans.list())
        return 0
    need(args, "--name", *(("--limits",) if args.action == "edit" else ()))
    limits = json_object(args.limits, "--limits")
    if args.action == "define":
        show(plans.define(args.name, limits, args.based_on, actor()))
    else:
        show(plans.edit(args.name, limits, args.clamp, actor()))
    return 0


def cmd_sources(args: argparse.Namespace, settings: Settings) -> int:
    runtime = open_runtime(settings)
    org_id = find_org(runtime, args.org)
    if args.action == "create":
        need(args, "--name")
        show(runtime.control.create_source(org_id, args.name, args.description, actor()))
    else:
        show(runtime.control.sources(org_id))
    return 0


KEY_FLAGS = {"issue": ("--source",), "rotate": ("--key-id",), "revoke": ("--key-id",)}


def cmd_keys(args: argparse.Namespace, settings: Settings) -> int:
    runtime = open_runtime(settings)
    control, org_id = runtime.control, find_org(runtime, args.org)
    need(args, *KEY_FLAGS.get(args.action, ()))
    source_id = find_source(runtime, org_id, args.source) if args.source else None
    if args.action == "list":
        sources = [source_id] if source_id else [s["id"] for s in control.sources(org_id)]
        show([key for sid in sources for key in control.keys(org_id, sid)])
    elif args.action == "revoke":
        show(control.revoke_key(org_id, args.key_id, actor()))
    else:
        issued = (
            control.issue_key(org_id, str(source_id), actor())
            if args.action == "issue"
            else control.rotate_key(org_id, args.key_id, args.grace_minutes, actor())
        )
        print(f"{issued.credential.secret}\n(shown once; store it now)", file=sys.stdout)
        show(issued.info)
    return 0


def cmd_tokens(args: argparse.Namespace, settings: Settings) -> int:
    runtime = open_runtime(settings)
    org_id = None if args.operator else find_org(runtime, args.org)
    if args.action == "revoke":
        need(args, "--token-id")
        show(runtime.control.revoke_token(org_id, args.token_id, actor()))
        return 0
    issued = runtime.control.issue_token(org_id, args.name, args.scope or [], actor())
    print(f"{issued.credential.secret}\n(shown once; store it now)")
    show(issued.info)
    return 0


def cmd_connectors(args: argparse.Namespace, settings: Settings) -> int:
    import asyncio

    from astralog import byob

    runtime = open_runtime(settings)
    destinations, org_id = runtime.destinations, find_org(runtime, args.org)
    if args.action not in ("list", "create", "deactivate"):
        need(args, "--connector-id")
    if args.action == "list":
        show(destinations.list(org_id))
    elif args.action == "create":
        need(args, "--name", "--kind")
        config = json_object(args.config, "--config")
        secrets = json_object(read_text(args.secrets_file, "--secrets-file"), "--secrets-file")
        show(destinations.create(org_id, args.name, args.kind, config, secrets, actor()))
    elif args.action == "test":
        view = destinations.get(org_id, args.connector_id)
        connector = byob.build(
            view["kind"], view["config"], destinations.secrets(org_id, args.connector_id),
            settings.storage,
        )  # fmt: skip
        checks = asyncio.run(connector.probe())
        ok = all(c.ok for c in checks)
        failed = [c.name for c in checks if not c.ok]
        destinations.record_test(org_id, args.connector_id, ok, failed, actor())
        show([vars(c) for c in checks])
        return 0 if ok else 1
    elif args.action == "policy":
        view = destinations.get(org_id, args.connector_id)
        print(byob.policy(view["kind"], view["config"], settings.storage)["text"])
    elif args.action == "activate":
        show(destinations.activate(org_id, args.connector_id, actor()))
    else:
        destinations.deactivate(org_id, actor())
        print("new batches go to the embedded bucket")
    return 0


def cmd_rotate_master(args: argparse.Namespace, settings: Settings) -> int:
    count = open_runtime(settings).destinations.rewrap_all(actor())
    print(
        f"re-wrapped the data keys of {count} connectors under {settings.storage.active_master_key}"
    )
    return 0


def cmd_break_glass(args: argparse.Namespace, settings: Settings) -> int:
    """The documented way into an org whose IdP is down: an owner that may sign in with a
    password while SSO is enforced. Created here (not over the API) so that only the operator
    of this machine can make one; each of its sign-ins is audited with break_glass=True."""
    runtime = open_runtime(settings)
    org_id = find_org(runtime, args.org)
    from astralog.controlplane.people import normalise_email

    person = runtime.control.people.by_email(org_id, normalise_email(args.email))
    if person is not None and not person["break_glass"]:
        raise UsageError(
            f"{args.email!r} is a member but not the break-glass account; choose another email"
        )
    password = _new_password(args.password_stdin)
    if person is None:
        person = runtime.control.people.add(
            org_id, args.email, args.name, "owner", None, actor(), break_glass=True
        )
    runtime.accounts.set_password(org_id, person["id"], password, actor())
    show({k: person[k] for k in ("id", "org_id", "email", "role", "break_glass")})
    return 0


def cmd_domains(args: argparse.Namespace, settings: Settings) -> int:
    """The operator attests that an org owns an email domain (checked out of band, e.g. a DNS
    TXT record): SSO may then create accounts for that domain's verified emails."""
    runtime = open_runtime(settings)
    org_id = find_org(runtime, args.org)
    if args.action == "verify":
        need(args, "--domain")
        show(runtime.control.people.verify_domain(org_id, args.domain, actor()))
    else:
        show([{"domain": d} for d in runtime.control.people.domains(org_id)])
    return 0


def _new_password(from_stdin: bool) -> str:
    if from_stdin:
        return sys.stdin.readline().rstrip("\n")
    if not sys.stdin.isatty():
        raise UsageError("no terminal to prompt on: pass --password-stdin and pipe the password")
    first = getpass.getpass("New password: ")
    if getpass.getpass("Again: ") != first:
        raise UsageError("the two passwords differ; nothing was changed")
    return first


def cmd_events(args: argparse.Namespace, settings: Settings) -> int:
    count = open_runtime(settings).control.rebuild()
    print(f"rebuilt projections from {count} events")
    return 0


def cmd_config(args: argparse.Namespace, settings: Settings) -> int:
    from astralog.configdoc import render

    sys.stdout.write(render())  # exactly docs/configuration.md
    return 0
