"""Who is calling: the single place ingest keys, management and operator tokens, people (browser
sessions and personal access tokens) and service accounts turn into one ``Principal``. Every
route scopes its work by ``principal.org_id``.
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
    "members:write": "Invite people, create service accounts, set roles and source grants.",
    "owners:write": "Grant or remove the owner role.",
    "sso:write": "Configure single sign-on, verified domains and the org's sign-in policies.",
    "searches:write": "Save searches.",
    "holds:write": "Propose, approve and withdraw legal holds (with an operator).",
    "org:delete": "Delete the whole org (an owner in person, freshly signed in).",
    "exports:write": "Export the whole org (an owner at a browser, freshly signed in).",
    "erasure:write": "Ask for, approve and cancel erasures of matching events (two admins).",
    "alerts:read": "See saved searches, alerts, their instances and history, and silences.",
    "alerts:write": "Save searches; create, change and silence alerts on the sources one reads.",
    "alerts:admin": "Alert endpoints: webhooks and e-mail, their secrets and delivery log.",
}

PrincipalKind = Literal["ingest", "management", "operator", "person", "service"]
"""``person`` (a browser session or a personal access token) and ``service`` (a service
account's token) act for a member of the org; ``management`` is an org token of no one."""


@dataclass(frozen=True)
class Principal:
    id: str
    kind: PrincipalKind
    org_id: str | None
    scopes: frozenset[str] = field(default_factory=frozenset)
    source_id: str | None = None
    person_id: str | None = None
    role: str | None = None
    readable: frozenset[str] | None = None
    """Sources a member, viewer or ingest service account is granted; None: every source."""
    session: str | None = None  # the session's digest, when it came from a browser session

    def acts_for_org(self) -> bool:
        return self.org_id is not None and self.kind in ("management", "person", "service")

    def require(self, scope: str) -> None:
        if scope in self.scopes:
            return
        if self.role is not None and self.session is not None:  # a person at a browser
            raise Forbidden(
                f"your '{self.role}' role does not allow '{scope}'; ask an org admin for a "
                "role that does"
            )
        if self.role is not None:
            raise Forbidden(
                f"the '{self.role}' role (with this token's scopes) does not allow "
                f"'{scope}'; ask an org admin for a role that does"
            )
        if self.session is not None:
            raise Forbidden(
                f"the token this session signed in with lacks the '{scope}' scope; sign in "
                "with a token that has it, or ask an org admin"
            )
        raise Forbidden(
            f"this token lacks the '{scope}' scope; issue a token with it "
            f"(POST /v1/tokens) or ask an org admin"
        )
