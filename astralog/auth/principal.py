"""Who is calling: the single place ingest keys, management tokens, operator tokens and (later)
SSO sessions turn into one ``Principal``. Every route scopes its work by ``principal.org_id``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from astralog.errors import Forbidden

SCOPES: dict[str, str] = {
    "sources:read": "List sources and their keys (never the secrets).",
    "sources:write": "Create sources.",
    "keys:write": "Issue, rotate and revoke ingest keys.",
    "tokens:write": "Issue and revoke management tokens.",
    "logs:read": "Search, tail and export log events.",
    "audit:read": "Read and export the org's audit log.",
    "connectors:write": "Configure bring-your-own storage.",
    "retention:write": "Set retention policies.",
}

PrincipalKind = Literal["ingest", "management", "operator"]


@dataclass(frozen=True)
class Principal:
    id: str
    kind: PrincipalKind
    org_id: str | None
    scopes: frozenset[str] = field(default_factory=frozenset)
    source_id: str | None = None

    def require(self, scope: str) -> None:
        if scope not in self.scopes:
            raise Forbidden(
                f"this token lacks the '{scope}' scope; issue a token with it "
                f"(POST /v1/tokens) or ask an org admin"
            )
