"""Request and response bodies of the admin API (they are what the OpenAPI document shows)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from astralog.auth.principal import SCOPES

NAME = Field(min_length=1, max_length=63, examples=["web-frontend"])


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SourceCreate(Strict):
    name: str = NAME
    description: str = Field("", max_length=1000)


class Source(BaseModel):
    id: str
    org_id: str
    name: str
    description: str
    created_at: str
    retention_days: int | None = None
    deletion: dict[str, Any] | None = Field(
        None, description="Pending deletion (or held): when, why, when it is purged; null: active."
    )


class RetentionSet(Strict):
    days: int | None = Field(
        description="Days to keep this source's events (within the plan); null = the plan's."
    )


class KeyCreate(Strict):
    expires_in_days: int | None = Field(None, ge=1, le=3650)


class KeyRotate(Strict):
    grace_minutes: int | None = Field(
        None, ge=0, le=7 * 24 * 60, description="How long the old key keeps working (0 to 7 days)."
    )


class Key(BaseModel):
    id: str
    org_id: str
    source_id: str
    prefix: str
    state: str = Field(description="active, rotating (old key in its grace), rotated, revoked")
    created_at: str
    expires_at: str | None
    valid_until: str | None
    replaced_by: str | None
    revoked_at: str | None
    last_used_at: str | None = None


class IssuedKey(BaseModel):
    key: str = Field(description="The secret. Shown exactly once: store it now.")
    info: Key


class TokenCreate(Strict):
    name: str = NAME
    scopes: list[str] = Field(min_length=1, max_length=20, examples=[["logs:read"]])

    @field_validator("scopes")
    @classmethod
    def _known(cls, scopes: list[str]) -> list[str]:
        unknown = sorted(set(scopes) - set(SCOPES))
        if unknown:
            raise ValueError(f"unknown scopes {unknown}; known scopes: {sorted(SCOPES)}")
        return scopes


class Token(BaseModel):
    id: str
    org_id: str | None
    name: str
    kind: str
    scopes: list[str]
    prefix: str
    state: str
    created_at: str
    revoked_at: str | None


class IssuedToken(BaseModel):
    token: str = Field(description="The secret. Shown exactly once: store it now.")
    info: Token


class OrgCreate(Strict):
    name: str = NAME
    plan: str = Field("free", examples=["pro"])


class PlanChange(Strict):
    plan: str
    overrides: dict[str, Any] = Field(default_factory=dict)


class PlanDefine(Strict):
    name: str = Field(min_length=1, max_length=63, examples=["team"])
    limits: dict[str, Any] = Field(
        default_factory=dict, description="Limits of the plan (see `GET /v1/plans`)."
    )
    based_on: str | None = Field(
        None, max_length=63, description="A plan whose limits fill in those left out."
    )


class PlanEdit(Strict):
    limits: dict[str, Any] = Field(description="The limits to change; the rest keep their values.")
    clamp: bool = Field(
        False, description="Accept clamping sources whose own retention exceeds the new one."
    )


class Plan(BaseModel):
    name: str
    limits: dict[str, Any]
    orgs: int = Field(description="How many orgs are on this plan.")
    clamped_sources: list[dict[str, Any]] | None = None


class Org(BaseModel):
    id: str
    name: str
    plan: str
    overrides: dict[str, Any]
    created_at: str
    limits: dict[str, Any] | None = None


class AuditEvent(BaseModel):
    seq: int
    type: str
    aggregate_id: str
    actor: str
    client: str
    at: str
    payload: dict[str, Any]
    hash: str
    prev_hash: str


class AuditPage(BaseModel):
    events: list[AuditEvent]
    next_after: int | None = Field(description="Pass as ?after= to read the next page.")


class Verification(BaseModel):
    ok: bool
    verdict: str = Field("intact", description="intact, unproven (nothing signed) or tampered")
    records: int
    checkpoints: int
    head_seq: int
    proven_seq: int = Field(0, description="The newest record a valid signature covers.")
    proven_at: str | None = Field(None, description="When that signature was made.")
    unproven_records: int = 0
    first_bad_seq: int | None
    problems: list[str]
    warnings: list[str] = []
