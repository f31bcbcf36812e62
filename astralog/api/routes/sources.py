"""Sources and their ingest keys, scoped to the caller's org and to the sources a member, viewer
or ingest service account is granted: any other source is absent to them (404, like an unknown
one).

``DELETE`` puts a source in pending deletion (its keys answer 410, searches leave it out, its keys
cannot be issued, rotated or its retention set) until the grace ends and its data is purged from
every destination (:mod:`astralog.controlplane.scope_deletion`); ``POST .../restore`` takes it
back within the grace. A purged source answers 410 and its certificate stays at ``.../deletion``.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body

from astralog import retention
from astralog.api.deps import (
    ActorDep,
    ControlDep,
    KeysWrite,
    ManagementDep,
    RetentionWrite,
    RuntimeDep,
    SettingsDep,
    SourcesRead,
    SourcesWrite,
)
from astralog.api.models import (
    IssuedKey,
    Key,
    KeyCreate,
    KeyRotate,
    RetentionSet,
    Source,
    SourceCreate,
)
from astralog.api.routes.org_deletion import DeletionRequest
from astralog.auth.principal import Principal
from astralog.controlplane.service import ControlPlane
from astralog.errors import BadRequest, NotFound

router = APIRouter(prefix="/v1/sources", tags=["sources"])


@router.get("", response_model=list[Source])
def list_sources(
    org_id: SourcesRead, principal: ManagementDep, control: ControlDep
) -> list[dict[str, Any]]:
    stopped = control.scope_deletions.of_org(org_id, "source")
    return [
        s | {"deletion": stopped.get(s["id"])}
        for s in control.sources(org_id)
        if _granted(principal, s["id"])
    ]


@router.post("", response_model=Source, status_code=201)
def create_source(
    body: SourceCreate, org_id: SourcesWrite, control: ControlDep, actor: ActorDep
) -> dict[str, Any]:
    return control.create_source(org_id, body.name, body.description, actor)


@router.get("/{source_id}", response_model=Source)
def get_source(
    source_id: str, org_id: SourcesRead, principal: ManagementDep, control: ControlDep
) -> dict[str, Any]:
    return _source(control, principal, org_id, source_id)


@router.put("/{source_id}/retention", response_model=Source)
def set_retention(
    source_id: str, body: RetentionSet, org_id: RetentionWrite, principal: ManagementDep,
    control: ControlDep, actor: ActorDep,
) -> dict[str, Any]:  # fmt: skip
    """Takes effect at once at query time; storage is purged on the retention schedule."""
    _source(control, principal, org_id, source_id, live=True)
    return control.set_retention(org_id, source_id, body.days, actor)


@router.get("/{source_id}/retention/preview")
def preview_retention(
    source_id: str, org_id: RetentionWrite, principal: ManagementDep, control: ControlDep,
    runtime: RuntimeDep, days: int | None = None,
) -> dict[str, Any]:  # fmt: skip
    """What a retention of ``days`` (absent: the plan's) hides at once and what the next purge
    deletes: objects, rows, bytes, the oldest and newest hour, and when. Nothing changes."""
    _source(control, principal, org_id, source_id)
    plan_days = control.retention_policy(org_id).plan_retention_days
    if days is not None and not 1 <= days <= plan_days:
        raise BadRequest(
            f"days must be between 1 and the plan's {plan_days} days, got {days}; "
            "leave it out to preview the plan's retention"
        )
    effective = plan_days if days is None else days
    next_at = runtime.purge_schedule.next_at
    return retention.preview(runtime, org_id, source_id, effective, next_at)


@router.get("/{source_id}/keys", response_model=list[Key])
def list_keys(
    source_id: str, org_id: SourcesRead, principal: ManagementDep, control: ControlDep
) -> list[dict[str, Any]]:
    _source(control, principal, org_id, source_id)
    return control.keys(org_id, source_id)


@router.post("/{source_id}/keys", response_model=IssuedKey, status_code=201)
def issue_key(
    source_id: str,
    org_id: KeysWrite,
    principal: ManagementDep,
    control: ControlDep,
    actor: ActorDep,
    body: KeyCreate | None = None,
) -> dict[str, Any]:
    _source(control, principal, org_id, source_id, live=True)
    issued = control.issue_key(org_id, source_id, actor, body.expires_in_days if body else None)
    return {"key": issued.credential.secret, "info": issued.info}


@router.post("/{source_id}/keys/{key_id}/rotate", response_model=IssuedKey, status_code=201)
def rotate_key(
    source_id: str,
    key_id: str,
    org_id: KeysWrite,
    principal: ManagementDep,
    control: ControlDep,
    settings: SettingsDep,
    actor: ActorDep,
    body: KeyRotate | None = None,
) -> dict[str, Any]:
    _source(control, principal, org_id, source_id, live=True)
    _key_of_source(control, org_id, source_id, key_id)
    grace = body.grace_minutes if body and body.grace_minutes is not None else None
    grace = settings.auth.default_grace_minutes if grace is None else grace
    issued = control.rotate_key(org_id, key_id, grace, actor)
    return {"key": issued.credential.secret, "info": issued.info}


@router.post("/{source_id}/keys/{key_id}/revoke", response_model=Key)
def revoke_key(
    source_id: str, key_id: str, org_id: KeysWrite, principal: ManagementDep,
    control: ControlDep, actor: ActorDep,
) -> dict[str, Any]:  # fmt: skip
    _source(control, principal, org_id, source_id)
    _key_of_source(control, org_id, source_id, key_id)
    return control.revoke_key(org_id, key_id, actor)


@router.delete("/{source_id}", status_code=202, summary="Delete a source (restorable in the grace)")
def delete_source(
    source_id: str, org_id: SourcesWrite, principal: ManagementDep, runtime: RuntimeDep,
    actor: ActorDep, body: Annotated[DeletionRequest | None, Body()] = None,
) -> dict[str, Any]:  # fmt: skip
    """Stops the source at once (its keys answer 410, searches leave it out); its data is purged
    from every destination after the grace unless restored first or a legal hold covers it."""
    control = runtime.control
    _visible(principal, source_id)  # deleting twice, or a purged source, is a 409 that says so
    grace = runtime.settings.storage.source_deletion_grace_days
    reason = body.reason if body else "no reason given"
    return control.scope_deletions.request(org_id, "source", source_id, reason, grace, actor)


@router.post("/{source_id}/restore", summary="Take a source back out of pending deletion")
def restore_source(
    source_id: str, body: DeletionRequest, org_id: SourcesWrite, principal: ManagementDep,
    control: ControlDep, actor: ActorDep,
) -> dict[str, Any]:  # fmt: skip
    _visible(principal, source_id)
    return control.scope_deletions.restore(org_id, "source", source_id, body.reason, actor)


@router.get("/{source_id}/deletion", summary="The source's deletion: pending, held or deleted")
def source_deletion(
    source_id: str, org_id: SourcesRead, principal: ManagementDep, control: ControlDep
) -> dict[str, Any]:
    """``state`` active, pending (``held_by``: the holds keeping it) or deleted, with the
    signed deletion certificate."""
    _visible(principal, source_id)
    return control.scope_deletions.state(org_id, "source", source_id)


def _key_of_source(control: ControlPlane, org_id: str, source_id: str, key_id: str) -> None:
    if control.key(org_id, key_id)["source_id"] != source_id:
        raise NotFound(f"key {key_id[:40]!r} does not belong to source {source_id[:40]!r}")


def _granted(principal: Principal, source_id: str) -> bool:
    return principal.readable is None or source_id in principal.readable


def _visible(principal: Principal, source_id: str) -> None:
    if not _granted(principal, source_id):
        raise NotFound(f"source {source_id[:40]!r} does not exist in this org")


def _source(
    control: ControlPlane, principal: Principal, org_id: str, source_id: str, live: bool = False
) -> dict[str, Any]:
    """The source, if the caller may see it; one it is not granted is reported exactly like a
    missing one (tests compare the two answers). A purged source is gone (410); with ``live``,
    one pending deletion is refused too (409)."""
    _visible(principal, source_id)
    deletion = control.scope_deletions.check(org_id, "source", source_id, live=live)
    return control.source(org_id, source_id) | {"deletion": deletion}
