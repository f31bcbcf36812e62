"""Org exports: an owner, freshly signed in, asks for an archive of everything the org has here,
follows its progress and downloads it as a stream (:mod:`astralog.org_export`).

Asking and downloading need an owner at a browser with a recent sign-in: the archive is the
whole org, so a leaked token (personal or the org's) must not be enough to carry it away.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi import Path as PathParam
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, Field

from astralog.api.deps import SCOPE_MARK, ActorDep, ManagementDep, RuntimeDep
from astralog.api.models import Strict
from astralog.api.signin import require_recent
from astralog.auth.principal import Principal
from astralog.errors import Forbidden
from astralog.org_export import Exports, Sources, exports_root
from astralog.runtime import Runtime

log = logging.getLogger("astralog.export")
router = APIRouter(prefix="/v1/exports", tags=["exports"])
ExportId = Annotated[str, PathParam(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_]+$")]
_EXPORTS: weakref.WeakKeyDictionary[Runtime, Exports] = weakref.WeakKeyDictionary()
_END = 2**63 - 1


def exports_of(runtime: Runtime) -> Exports:
    """The runtime's export jobs, opened on first use."""
    if runtime not in _EXPORTS:
        sources = Sources(
            runtime.control.store,
            runtime.signer,
            runtime,
            lambda org_id: runtime.data.catalog.batches(org_id, None, 0, _END),
        )
        root = exports_root(runtime.settings.data_dir)
        hours = runtime.settings.storage.export_retention_hours
        _EXPORTS[runtime] = Exports(root, sources, retention_hours=hours)
    return _EXPORTS[runtime]


async def serve(runtime: Runtime) -> None:
    """Beside the server: resume interrupted exports, delete expired archives at the purge's
    pace (``storage.purge_interval_seconds``), and stop the running jobs at shutdown."""
    exports = exports_of(runtime)
    try:
        await exports.resume_all()
        while True:
            try:
                await asyncio.to_thread(exports.expire)
            except Exception:  # a full disk or a locked file: the next pass tries again
                log.exception("expiring org exports failed")
            await asyncio.sleep(runtime.settings.storage.purge_interval_seconds)
    finally:
        await exports.stop()
        exports.close()  # its SQLite file: a server that stops leaves no descriptor open
        _EXPORTS.pop(runtime, None)


def export_owner(principal: ManagementDep) -> Principal:
    """An owner in person: the ``exports:write`` scope is the owner role's alone."""
    if principal.kind != "person" or principal.role != "owner" or principal.org_id is None:
        raise Forbidden(
            "an org export needs an owner of the org, signed in: sign in as an owner in a "
            "browser (an org token, a member or an admin cannot export the whole org)"
        )
    principal.require("exports:write")
    return principal


setattr(export_owner, SCOPE_MARK, "exports:write")  # the RBAC matrix derives who may call it


Owner = Annotated[Principal, Depends(export_owner)]


def _in_person(request: Request, owner: Principal) -> str:
    if getattr(request.state, "session", None) is None:
        raise Forbidden(
            "an org export is asked for and downloaded from a signed-in browser session, "
            "not with a token: sign in as an owner (POST /v1/session) and retry",
            code="session_required",
        )
    require_recent(request, owner)
    return str(owner.org_id)


class ExportCreate(Strict):
    recipient: str | None = Field(
        None,
        min_length=1,
        max_length=4096,
        description="PEM of an X25519 public key: the archive is encrypted to it.",
    )


class ExportState(BaseModel):
    id: str
    state: str  # running | done | failed | expired
    created_at: str
    completed_at: str | None
    objects_total: int
    objects_done: int
    bytes_done: int
    archive_bytes: int | None
    manifest_sha256: str | None
    encrypted: bool
    error: str | None
    expires_at: str | None = Field(
        None, description="When the archive is (or was) deleted; ask for a new export after."
    )


@router.post("", response_model=ExportState, status_code=202)
async def request_export(
    request: Request, body: ExportCreate, owner: Owner, runtime: RuntimeDep, actor: ActorDep
) -> dict[str, Any]:
    """Starts an export of the org; follow it at ``GET /v1/exports/{id}``."""
    org_id = _in_person(request, owner)
    exports = exports_of(runtime)
    export_id = await asyncio.to_thread(
        exports.request, org_id, str(owner.person_id), body.recipient, actor
    )
    exports.start(export_id)
    return exports.get(org_id, export_id)


@router.get("", response_model=list[ExportState])
def list_exports(owner: Owner, runtime: RuntimeDep) -> list[dict[str, Any]]:
    return exports_of(runtime).list(str(owner.org_id))


@router.get("/{export_id}", response_model=ExportState)
def get_export(export_id: ExportId, owner: Owner, runtime: RuntimeDep) -> dict[str, Any]:
    return exports_of(runtime).get(str(owner.org_id), export_id)


@router.get("/{export_id}/download", responses={200: {"content": {"application/x-tar": {}}}})
def download_export(
    request: Request, export_id: ExportId, owner: Owner, runtime: RuntimeDep, actor: ActorDep
) -> StreamingResponse:
    """The archive, streamed: verify it offline with ``astralog export verify``. Once its
    retention is over (``storage.export_retention_hours``) it is deleted: 410 Gone."""
    org_id = _in_person(request, owner)
    exports = exports_of(runtime)
    path = exports.archive(org_id, export_id)
    exports.downloaded(org_id, export_id, str(owner.person_id), actor)
    return StreamingResponse(
        _stream(path),
        media_type="application/octet-stream",
        headers={
            "Content-Disposition": f'attachment; filename="{path.name}"',
            "Content-Length": str(path.stat().st_size),
        },
    )


def _stream(path: Path) -> Iterator[bytes]:
    with open(path, "rb") as handle:
        while block := handle.read(1 << 20):
            yield block
