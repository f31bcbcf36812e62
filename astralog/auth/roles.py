"""Roles: the named bundles of scopes a person or service account holds in one org.

A person's rights are their role's scopes; a personal access token's are its own scopes
intersected with its owner's role *now* (recomputed on every request, so a demotion narrows every
token at once). Members, viewers and ingest service accounts may be limited to some sources.
"""

from __future__ import annotations

from dataclasses import dataclass

from astralog.auth.principal import SCOPES, Principal
from astralog.errors import BadRequest, Forbidden


@dataclass(frozen=True)
class Role:
    name: str
    rank: int  # when several claim rules match, the highest rank wins
    scopes: frozenset[str]
    summary: str
    people: bool = True  # may a person hold it (else only a service account)
    services: bool = True  # may a service account hold it
    source_grants: bool = False  # may it be limited to some sources


def _role(name: str, rank: int, scopes: set[str], summary: str, **kw: bool) -> Role:
    unknown = scopes - set(SCOPES)
    assert not unknown, unknown
    return Role(name, rank, frozenset(scopes), summary, **kw)


ROLES: dict[str, Role] = {
    r.name: r
    for r in (
        _role("owner", 60, set(SCOPES), "Everything, including other owners.", services=False),
        _role(
            "admin",
            50,
            set(SCOPES) - {"owners:write", "holds:write", "exports:write", "org:delete"},
            "Everything but granting or removing the owner role, legal holds and org exports.",
        ),
        _role(
            "storage_admin",
            40,
            {"sources:read", "connectors:write"},
            "Bring-your-own storage: connectors and the org's destination.",
        ),
        _role(
            "retention_admin",
            40,
            {"sources:read", "retention:write"},
            "Retention policies of the org and its sources.",
        ),
        _role(
            "member",
            30,
            {"sources:read", "logs:read", "searches:write", "alerts:read", "alerts:write"},
            "Search the sources granted, and save searches.",
            source_grants=True,
        ),
        _role(
            "viewer",
            20,
            {"sources:read", "logs:read", "alerts:read"},
            "Read-only search of the sources granted.",
            source_grants=True,
        ),
        _role(
            "ingest",
            10,
            {"sources:read", "keys:write"},
            "Service accounts that provision ingest keys of the sources granted; no reads.",
            people=False,
            source_grants=True,
        ),
    )
}


def role(name: str) -> Role:
    try:
        return ROLES[name]
    except KeyError:
        raise BadRequest(f"unknown role {name[:40]!r}; roles: {sorted(ROLES)}") from None


def check_may_hold(principal: Principal, role_name: str, verb: str) -> None:
    """Grant, change or remove a role (directly, or through SSO rules that do it at sign-in)
    only when holding every scope it carries: an admin can never mint or unmake an owner."""
    missing = sorted(role(role_name).scopes - principal.scopes)
    if missing:
        raise Forbidden(
            f"you cannot {verb} the '{role_name}' role: it carries {missing}, which you do not "
            "hold; ask an owner"
        )
