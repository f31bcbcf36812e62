"""Configuration: one root, one sub-model per component, env prefix ``ASTRALOG_``.

Nested fields use a double underscore: ``ASTRALOG_INGEST__MAX_BODY_BYTES=10485760``. A TOML config
file may be named by ``ASTRALOG_CONFIG_FILE``; environment variables win over the file. A key in the
file or an ``ASTRALOG_`` variable that is no setting is refused with the close match, since a typo
would otherwise be ignored without a word. Every field has a default that works on a laptop.
Outside development mode, default or missing secrets are refused at start.
``docs/configuration.md`` is generated from these models (``astralog config docs``).
"""

from __future__ import annotations

import difflib
import os
import tomllib
import typing
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from astralog.errors import ConfigError

DEV_SECRET = "dev-only-insecure-secret-change-me"  # noqa: S105 - the marker we refuse in production


class _Section(BaseModel):
    # inf or nan in a duration or a share is a typo, never intended: it would overflow (or never
    # fire) deep inside a loop, so startup refuses it.
    model_config = ConfigDict(allow_inf_nan=False)


class ServerSettings(_Section):
    host: str = Field("127.0.0.1", description="Address the HTTP server binds to.")
    port: int = Field(8080, ge=1, le=65535, description="TCP port of the HTTP server.")
    public_url: str = Field(
        "", description="URL shippers and browsers use to reach the service; derived when empty."
    )
    trusted_proxies: list[str] = Field(
        default_factory=list,
        description="Proxy addresses whose X-Forwarded-For is believed for the client address.",
    )
    body_timeout_seconds: float = Field(
        30.0,
        gt=0,
        description="Longest a request body may take to arrive, from its first byte read to its "
        "last; a slower client gets 408 and its connection is closed.",
    )
    keep_alive_seconds: int = Field(
        5, ge=1, description="An idle keep-alive connection is closed after this many seconds."
    )
    max_connections: int = Field(
        1000,
        ge=1,
        description="Open connections and requests in progress beyond which new ones get 503, "
        "so a flood of slow clients cannot exhaust the process's file descriptors.",
    )
    tls_cert_file: str = Field(
        "",
        description="PEM certificate chain to serve HTTPS with, directly (with tls_key_file). "
        "Empty: plain HTTP, for a TLS-terminating proxy in front (see trusted_proxies).",
    )
    tls_key_file: str = Field("", description="PEM private key of tls_cert_file.")
    hsts_seconds: int = Field(
        31_536_000,
        ge=0,
        le=63_072_000,  # two years: browsers cap max-age near there
        description="Strict-Transport-Security max-age sent when the service is reached over "
        "HTTPS (TLS served here, or a public_url starting https://); 0 sends none.",
    )

    @model_validator(mode="after")
    def _tls_pair(self) -> ServerSettings:
        if bool(self.tls_cert_file) != bool(self.tls_key_file):
            raise ValueError(
                "ASTRALOG_SERVER__TLS_CERT_FILE and ASTRALOG_SERVER__TLS_KEY_FILE go together: "
                "set both to serve HTTPS, or neither for plain HTTP behind a proxy"
            )
        return self

    def url(self) -> str:
        scheme = "https" if self.tls_cert_file else "http"
        return self.public_url.rstrip("/") or f"{scheme}://{self.host}:{self.port}"


class ControlPlaneSettings(_Section):
    database: Path = Field(
        Path("control.sqlite3"),
        description="SQLite file of the control-plane event log (relative to data_dir).",
    )
    database_url: str = Field(
        "",
        description="postgresql://user:password@host:port/dbname to keep the control plane "
        "(event log, projections, credentials) and the batch catalog in PostgreSQL, shared by "
        "several nodes, instead of the SQLite files; empty: SQLite. Every node needs the same "
        "key pepper, master keys and checkpoint signing key (docs/architecture.md).",
    )
    checkpoint_interval_seconds: float = Field(
        60.0, gt=0, description="Sign a checkpoint of the chain head this often when it moved."
    )
    leader_poll_seconds: float = Field(
        5.0,
        gt=0,
        le=300,
        description="With PostgreSQL: how often a node checks that it still leads, or asks "
        "for the lead (the node that runs checkpoints, retention, compaction, erasures and "
        "alert evaluation); a dead leader's jobs resume on another node within about this.",
    )
    signing_key_file: Path = Field(
        Path("checkpoint-signing.key"),
        description="Ed25519 private key (PEM) for checkpoints, created on first start "
        "(relative to data_dir).",
    )

    @field_validator("database_url")
    @classmethod
    def _postgres_url(cls, url: str) -> str:
        if url and not url.startswith(("postgresql://", "postgres://")):
            raise ValueError(
                "ASTRALOG_CONTROL__DATABASE_URL must be a postgresql://user:password@host:port/"
                "dbname URL (or empty for the SQLite file)"
            )
        return url


class AuthSettings(_Section):
    key_pepper: str = Field(
        DEV_SECRET,
        description="Server secret mixed into the HMAC-SHA-256 of every stored key and token. "
        "Changing it invalidates every key.",
    )
    default_grace_minutes: int = Field(
        24 * 60, ge=0, le=7 * 24 * 60, description="Default overlap of an old key after rotation."
    )
    key_cache_seconds: float = Field(
        5.0,
        ge=0,
        description="How long a node trusts its cached view of a key. A revocation on another "
        "replica takes effect there within this bound.",
    )


class IngestSettings(_Section):
    max_body_bytes: int = Field(
        10 * 2**20, ge=1024, description="Largest request body on the wire."
    )
    max_decompressed_bytes: int = Field(
        100 * 2**20, ge=1024, description="Largest body after decompression (zip bombs stop here)."
    )
    max_event_bytes: int = Field(1 * 2**20, ge=256, description="Largest single event.")
    max_fields: int = Field(
        1000, ge=1, description="Most attributes in one event after flattening."
    )
    max_depth: int = Field(20, ge=1, description="Deepest nesting of objects in one event.")
    max_nesting: int = Field(
        100,
        ge=8,
        le=256,
        description="Deepest bracket nesting anywhere in a JSON body, the wire format's envelope "
        "included (OTLP/JSON spends 3 levels on each nested value); checked before parsing, and "
        "a deeper body is refused whole. Keep it at least 3 * max_depth + 8.",
    )
    max_key_bytes: int = Field(
        1024, ge=16, description="Longest attribute key (after flattening with dots), in bytes."
    )
    max_string_bytes: int = Field(256 * 1024, ge=64, description="Longest single attribute value.")
    max_future_seconds: int = Field(
        2 * 3600, ge=0, description="Timestamps further ahead than this are rejected."
    )
    idempotency_window_seconds: int = Field(
        24 * 3600, ge=0, description="How long an Idempotency-Key makes a retry a no-op."
    )

    @model_validator(mode="after")
    def _nesting_holds_the_deepest_event(self) -> IngestSettings:
        # An event within max_depth must never be refused whole for the envelope around it.
        if self.max_nesting < 3 * self.max_depth + 8:
            raise ValueError(
                f"max_nesting ({self.max_nesting}) must be at least 3 * max_depth + 8 "
                f"({3 * self.max_depth + 8}): raise ASTRALOG_INGEST__MAX_NESTING with MAX_DEPTH"
            )
        return self


class WalSettings(_Section):
    directory: Path = Field(Path("wal"), description="WAL directory (relative to data_dir).")
    fsync: bool = Field(True, description="fsync before acknowledging. Only tests turn this off.")
    segment_max_bytes: int = Field(
        64 * 2**20, ge=1024, description="A segment is sealed when it grows past this size."
    )
    segment_max_age_seconds: float = Field(
        10.0, gt=0, description="A segment is sealed this long after its first event."
    )
    segment_idle_seconds: float = Field(
        1.0,
        gt=0,
        description="A segment is sealed once no event arrived for this long, so a quiet source "
        "reaches storage in seconds while a busy one still makes segment_max_age_seconds batches.",
    )
    disk_budget_bytes: int = Field(
        2 * 2**30,
        ge=1024,
        description="When unflushed WAL data reaches this, ingest answers 503 with Retry-After.",
    )
    degraded_budget_share: float = Field(
        0.8,
        gt=0,
        le=1,
        description="/readyz reports degraded once unflushed WAL data passes this share of "
        "disk_budget_bytes, before ingest starts refusing.",
    )


class FlushSettings(_Section):
    interval_seconds: float = Field(1.0, gt=0, description="How often the flusher looks for work.")
    row_group_rows: int = Field(
        64 * 1024, ge=1024, description="Parquet row group size: smaller prunes finer."
    )
    retry_max_seconds: float = Field(
        30.0, gt=0, description="Longest back-off between retries of a failing destination."
    )
    degraded_after_seconds: float = Field(
        60.0,
        ge=0,
        description="/readyz reports degraded once a destination has been failing this long.",
    )


class CompactionSettings(_Section):
    enabled: bool = Field(True, description="Merge small batches of an hour into larger files.")
    interval_seconds: float = Field(
        60.0, gt=0, le=86_400, description="How often compaction looks for work."
    )
    target_bytes: int = Field(
        64 * 2**20,
        ge=1024,
        description="Size a compacted file aims at; a batch of half this size or more stays.",
    )
    settle_seconds: float = Field(
        300.0,
        ge=0,
        le=7 * 86_400,
        description="An hour partition is compacted this long after the hour ends (late events).",
    )


class StorageSettings(_Section):
    local_root: Path = Field(
        Path("bucket"), description="Embedded default bucket directory (relative to data_dir)."
    )
    master_keys: dict[str, str] = Field(
        default_factory=dict,
        description="Master keys for connector secrets: key id -> base64 of 32 bytes.",
    )
    active_master_key: str = Field("", description="Key id used to wrap new data keys.")
    purge_interval_seconds: float = Field(
        3600.0, gt=0, description="How often expired partitions are deleted from storage."
    )
    org_deletion_grace_days: float = Field(
        30.0,
        ge=0,
        le=3650,
        description="How long a deleted org stays pending (stopped, restorable by an operator) "
        "before its data is purged from every destination it used.",
    )
    source_deletion_grace_days: float = Field(
        30.0,
        ge=0,
        le=3650,
        description="How long a deleted source stays pending (its keys answer 410, searches "
        "leave it out, an admin can restore it) before its data is purged everywhere.",
    )
    connector_deletion_grace_days: float = Field(
        30.0,
        ge=0,
        le=3650,
        description="How long a deleted connector stays pending (no new batches, an admin can "
        "restore it) before the org's data in it is purged and its secrets dropped.",
    )
    erasure_cancel_window_seconds: int = Field(
        86_400,
        ge=0,
        le=30 * 86_400,
        description="How long an approved erasure can still be cancelled before it takes effect.",
    )
    erasure_interval_seconds: float = Field(
        60.0, gt=0, description="How often due erasures are masked, rewritten and verified."
    )
    export_retention_hours: float = Field(
        72.0,
        gt=0,
        le=24 * 365,
        description="How long a finished org export stays downloadable; then its archive is "
        "deleted (at the next purge pass) and the owner asks for a new one.",
    )
    allow_http_endpoints: bool = Field(
        False, description="Allow plain-http customer endpoints (on-prem MinIO, tests)."
    )
    aws_principal_arn: str = Field(
        "arn:aws:iam::000000000000:role/astralog",
        description="Astralog's AWS principal, named in the trust policy customers paste.",
    )
    allow_private_networks: list[str] = Field(
        default_factory=list,
        description="CIDR networks a customer endpoint may resolve to although private "
        "(on-prem MinIO, tests).",
    )


class QuerySettings(_Section):
    engine_threads: int = Field(2, ge=1, description="DuckDB threads per query.")
    default_limit: int = Field(100, ge=1, le=10_000, description="Events per page by default.")
    batch_cache_bytes: int = Field(
        1 << 30,
        ge=0,
        description="Disk kept for local copies of batch objects read from BYOB buckets, so a "
        "search does not download one again; least recently used go first. 0 turns it off.",
    )
    batch_cache_directory: Path = Field(
        Path("cache/batches"),
        description="Batch object cache directory, a relative path inside data_dir (absolute "
        "paths and '..' are refused: the cache deletes files there).",
    )

    @field_validator("batch_cache_directory")
    @classmethod
    def _inside_data_dir(cls, value: Path) -> Path:
        # The cache deletes files in it (eviction, drops): it must be a folder of its own.
        if value.is_absolute() or ".." in value.parts or value == Path("."):
            raise ValueError(
                f"{value} must be a relative path inside the data dir without '..' (for "
                "example cache/batches): the cache deletes files there, so it needs a folder "
                "of its own"
            )
        return value


class MetricsSettings(_Section):
    token: str = Field(
        "",
        description="Bearer token a Prometheus scraper sends for /metrics (Authorization: Bearer "
        "<token>, at least 32 characters); an operator token is accepted too. When empty, "
        "anonymous scrapes are answered only in development mode and only from loopback.",
    )
    bind: str = Field(
        "",
        description="host:port of a separate listener that serves only the metrics (for example "
        "127.0.0.1:9464); /metrics on the main port then answers 404. It asks for the token too "
        "when one is set.",
    )
    tenant_labels: bool = Field(
        False,
        description="Label per-tenant metrics with the source id (astralog_ingest_rate_limited_"
        "total{source=...}). Off by default: whoever scrapes would learn every tenant's ids.",
    )

    @model_validator(mode="after")
    def _check(self) -> MetricsSettings:
        if self.token and len(self.token) < 32:
            raise ValueError("ASTRALOG_METRICS__TOKEN must be at least 32 characters when set")
        if self.bind:
            host, _, port = self.bind.rpartition(":")
            if not host or not port.isdigit() or not 1 <= int(port) <= 65535:
                raise ValueError("ASTRALOG_METRICS__BIND must be host:port, e.g. 127.0.0.1:9464")
        return self


class SsoSettings(_Section):
    allow_private_networks: list[str] = Field(
        default_factory=list,
        description="CIDR networks an org's OpenID Provider may resolve to although private or "
        "loopback (an on-prem IdP, tests); everything else must be public.",
    )
    allow_http: bool = Field(
        False, description="Allow plain-http OpenID Providers (loopback test IdPs only)."
    )
    algorithms: list[str] = Field(
        default_factory=lambda: ["RS256", "PS256", "ES256", "EdDSA"],
        description="Signature algorithms accepted on ID and logout tokens (asymmetric only).",
    )
    clock_skew_seconds: int = Field(
        60, ge=0, le=600, description="Leeway on a token's exp, iat and nbf."
    )
    metadata_cache_seconds: float = Field(
        3600.0, ge=0, description="How long a provider's discovery document is reused."
    )
    jwks_refresh_seconds: float = Field(
        10.0,
        ge=0,
        description="A token with an unknown key id refetches the provider's JWKS (key "
        "rotation) at most this often per provider.",
    )
    http_timeout_seconds: float = Field(
        10.0, gt=0, le=60, description="Timeout of each request to a provider."
    )

    @field_validator("algorithms")
    @classmethod
    def _asymmetric_only(cls, value: list[str]) -> list[str]:
        refused = [a for a in value if a.lower() == "none" or a.upper().startswith("HS")]
        if refused or not value:
            raise ValueError(
                f"ASTRALOG_SSO__ALGORITHMS must list asymmetric algorithms only (refused: "
                f"{refused or 'an empty list'}); 'none' and HS* would let a token be forged"
            )
        return value


class AlertsSettings(_Section):
    """Alerts and their delivery (signed webhooks, e-mail)."""

    webhook_allow_private_networks: list[str] = Field(
        default_factory=list,
        description="CIDR networks an alert webhook may resolve to although private or loopback "
        "(an on-prem receiver, tests); everything else must be public.",
    )
    webhook_allow_http: bool = Field(
        False, description="Allow plain-http alert webhooks (loopback test receivers only)."
    )
    webhook_timeout_seconds: float = Field(
        10.0, gt=0, le=60, description="Total time one webhook attempt may take."
    )
    webhook_max_response_bytes: int = Field(
        64 * 1024, ge=0, description="Most of a receiver's answer read; the rest is dropped."
    )
    retry_schedule_seconds: list[float] = Field(
        default_factory=lambda: [5.0, 300.0, 1800.0, 7200.0, 18000.0, 36000.0, 36000.0],
        description="Waits between delivery attempts (Standard Webhooks' schedule); a delivery "
        "is failed after the last one.",
    )
    retry_jitter: float = Field(0.2, ge=0, lt=1, description="Each wait varies by +- this share.")
    retry_after_max_seconds: float = Field(
        3600.0, ge=0, description="Longest Retry-After a receiver's answer is honoured for."
    )
    delivery_poll_seconds: float = Field(
        1.0, gt=0, description="How often the delivery worker looks for due messages."
    )
    delivery_concurrency: int = Field(8, ge=1, le=256, description="Attempts run at once.")
    delivery_concurrency_per_endpoint: int = Field(
        2, ge=1, le=256, description="Attempts run at once to one endpoint."
    )
    delivery_concurrency_per_org: int = Field(
        4,
        ge=1,
        le=256,
        description="Attempts run at once for one org; never more than half of "
        "delivery_concurrency, so no org takes every slot.",
    )
    manual_sends_per_endpoint_per_minute: int = Field(
        10, ge=1, description="Test sends and replays per minute to one endpoint (then 429)."
    )
    manual_sends_per_org_per_minute: int = Field(
        60, ge=1, description="Test sends and replays per minute from one org (then 429)."
    )
    delivery_log_days: float = Field(
        30.0,
        gt=0,
        description="How long delivered and failed messages stay in the delivery log (and can be "
        "replayed); older ones are pruned by the delivery worker.",
    )
    endpoints_per_org: int = Field(50, ge=1, description="Most notification endpoints per org.")
    secret_overlap_hours: float = Field(
        24.0,
        ge=0,
        le=168,
        description="How long a rotated webhook secret still signs, beside the new one.",
    )
    smtp_host: str = Field("", description="SMTP server for alert e-mail; empty: e-mail is off.")
    smtp_port: int = Field(587, ge=1, le=65535, description="SMTP server port.")
    smtp_security: Literal["starttls", "tls", "none"] = Field(
        "starttls", description="STARTTLS, implicit TLS, or none (a loopback relay only)."
    )
    smtp_username: str = Field("", description="SMTP login; empty: no AUTH.")
    smtp_password: str = Field("", description="SMTP password.")
    smtp_from: str = Field("", description="The From address of alert e-mail.")
    smtp_timeout_seconds: float = Field(10.0, gt=0, le=120, description="SMTP timeout.")
    evaluate_every_seconds: float = Field(
        5.0, gt=0, le=60, description="How often the evaluator looks for due alerts."
    )
    ingest_settle_seconds: float = Field(
        5.0,
        ge=0,
        le=120,
        description="'Any new match' alerts count events received up to this long before the "
        "evaluation: an acked event is readable by then, so moving the watermark past it never "
        "skips one.",
    )
    max_alerts_per_org: int = Field(1000, ge=1, description="Most alert rules per org.")
    min_interval_seconds: int = Field(
        60, ge=1, description="The shortest schedule an alert may have (interval or cron)."
    )
    max_window_seconds: int = Field(
        7 * 86_400, ge=60, description="The longest look-back window of an alert."
    )
    max_groups: int = Field(
        100, ge=1, le=10_000, description="Most group_by instances one alert tracks."
    )
    backtest_max_evaluations: int = Field(
        1440,
        ge=1,
        description="Most evaluations a backtest replays (24 h of a 1-minute alert); a longer "
        "backtest steps coarser.",
    )


class Settings(BaseSettings):
    """The root of all configuration."""

    model_config = SettingsConfigDict(
        env_prefix="ASTRALOG_", env_nested_delimiter="__", extra="forbid", frozen=True
    )

    mode: Literal["development", "production"] = Field(
        "development", description="Production refuses default secrets."
    )
    data_dir: Path = Field(
        Path(".astralog"),
        description="Where all local state lives; a relative path is taken from the directory "
        "the service starts in.",
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        "INFO", description="Level of the service's own logs."
    )
    log_format: Literal["auto", "json", "text"] = Field(
        "auto",
        description="Console log lines: JSON, readable text, or auto (text on a terminal, "
        "JSON otherwise).",
    )
    server: ServerSettings = Field(default_factory=ServerSettings)  # type: ignore[arg-type]
    control: ControlPlaneSettings = Field(default_factory=ControlPlaneSettings)  # type: ignore[arg-type]
    auth: AuthSettings = Field(default_factory=AuthSettings)  # type: ignore[arg-type]
    ingest: IngestSettings = Field(default_factory=IngestSettings)  # type: ignore[arg-type]
    wal: WalSettings = Field(default_factory=WalSettings)  # type: ignore[arg-type]
    flush: FlushSettings = Field(default_factory=FlushSettings)  # type: ignore[arg-type]
    compaction: CompactionSettings = Field(default_factory=CompactionSettings)  # type: ignore[arg-type]
    storage: StorageSettings = Field(default_factory=StorageSettings)  # type: ignore[arg-type]
    query: QuerySettings = Field(default_factory=QuerySettings)  # type: ignore[arg-type]
    metrics: MetricsSettings = Field(default_factory=MetricsSettings)  # type: ignore[arg-type]
    sso: SsoSettings = Field(default_factory=SsoSettings)  # type: ignore[arg-type]
    alerts: AlertsSettings = Field(default_factory=AlertsSettings)  # type: ignore[arg-type]

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        config_file = os.environ.get("ASTRALOG_CONFIG_FILE")
        if config_file:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=config_file))
        return tuple(sources)

    @field_validator("data_dir", mode="after")
    @classmethod
    def _absolute_data_dir(cls, value: Path) -> Path:
        return _absolute(value)

    @model_validator(mode="after")
    def _absolute_paths(self) -> Settings:
        """Every path-typed setting absolute from load on, ``data_dir``-relative ones under it.

        Taken once against the working directory at load, so a later ``chdir``, a ``file://`` URI
        built from it or a log line all name the same place.
        """
        for name in type(self).model_fields:
            section = getattr(self, name)
            if not isinstance(section, BaseModel):
                continue
            resolved = {key: self.path(value) for key, value in section if isinstance(value, Path)}
            if resolved:
                # The root is frozen once built; this validator is the one place it is built.
                object.__setattr__(self, name, section.model_copy(update=resolved))
        return self

    @model_validator(mode="after")
    def _refuse_default_secrets(self) -> Settings:
        weak_pepper = self.auth.key_pepper == DEV_SECRET or len(self.auth.key_pepper) < 32
        if self.mode == "production" and weak_pepper:
            raise ValueError(
                "ASTRALOG_AUTH__KEY_PEPPER must be set to a random secret of at least 32 "
                "characters in production mode"
            )
        if self.mode == "production" and not self.storage.master_keys:
            raise ValueError(
                "ASTRALOG_STORAGE__MASTER_KEYS and ASTRALOG_STORAGE__ACTIVE_MASTER_KEY must be set "
                "in production mode (they encrypt connector secrets); generate a key with: "
                "python -c 'import base64,os;print(base64.b64encode(os.urandom(32)).decode())'"
            )
        if (
            self.storage.master_keys
            and self.storage.active_master_key not in self.storage.master_keys
        ):
            raise ValueError(
                "ASTRALOG_STORAGE__ACTIVE_MASTER_KEY must name one of ASTRALOG_STORAGE__MASTER_KEYS"
            )
        return self

    def path(self, relative: Path) -> Path:
        """Resolve a configured path against ``data_dir``."""
        return _absolute(relative if relative.is_absolute() else self.data_dir / relative)


def _absolute(path: Path) -> Path:
    """``path`` made absolute against the working directory, ``~`` expanded, ``..`` folded."""
    return Path(os.path.abspath(path.expanduser()))


# ASTRALOG_ variables that are not settings: the config file's name, the variable the README and
# the UI's shipper snippets put the ingest key in, and the test harness's browser.
NOT_SETTINGS = frozenset({"ASTRALOG_CONFIG_FILE", "ASTRALOG_INGEST_KEY", "ASTRALOG_CHROMIUM"})


def _sections(model: type[BaseModel]) -> dict[str, type[BaseModel] | None]:
    """Each field of ``model``: its sub-model, or None for a value."""
    found: dict[str, type[BaseModel] | None] = {}
    for name, info in model.model_fields.items():
        kind = info.annotation
        found[name] = kind if isinstance(kind, type) and issubclass(kind, BaseModel) else None
    return found


def _unknown(name: str, where: str, known: list[str]) -> ConfigError:
    close = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
    hint = f"; did you mean {close[0]}?" if close else ""
    return ConfigError(f"unknown setting {name}{where}{hint}")


def _check_environment() -> None:
    """A mistyped variable would otherwise be ignored: refuse it, naming the close match."""
    known: set[str] = set(NOT_SETTINGS)
    open_ended: list[str] = []  # dict-valued settings take keys of their own below them
    for name, section in _sections(Settings).items():
        known.add(f"ASTRALOG_{name.upper()}")
        for field, info in (section.model_fields if section else {}).items():
            variable = f"ASTRALOG_{name.upper()}__{field.upper()}"
            known.add(variable)
            if typing.get_origin(info.annotation) is dict:
                open_ended.append(variable + "__")
    for variable in os.environ:
        upper = variable.upper()
        outside = upper not in known and not upper.startswith(tuple(open_ended))
        if upper.startswith("ASTRALOG_") and outside:
            raise _unknown(upper, "", sorted(known))


def _read_config_file(path: str) -> dict[str, Any]:
    try:
        with open(path, "rb") as handle:
            return tomllib.load(handle)
    except OSError as exc:
        raise ConfigError(
            f"ASTRALOG_CONFIG_FILE names the configuration file {path}, which cannot be read: "
            f"{exc.strerror}"
        ) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"invalid configuration file {path}: {exc}") from None


def _check_config_file(path: str) -> None:
    """The file parses and every key in it is a setting (a typo would otherwise be ignored)."""
    sections = _sections(Settings)
    for key, value in _read_config_file(path).items():
        if key not in sections:
            raise _unknown(key, f" in {path}", list(sections))
        section = sections[key]
        if section is None or not isinstance(value, dict):
            continue
        fields = [f"{key}.{field}" for field in section.model_fields]
        for field in value:
            if f"{key}.{field}" not in fields:
                raise _unknown(f"{key}.{field}", f" in {path}", fields)


def load_settings(**overrides: Any) -> Settings:
    """Read settings; a misconfiguration raises ConfigError naming the variable and the problem."""
    config_file = os.environ.get("ASTRALOG_CONFIG_FILE")
    if config_file:
        _check_config_file(config_file)
    _check_environment()
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            name = "ASTRALOG_" + "__".join(str(p).upper() for p in err["loc"] if p != "__root__")
            problems.append(f"{name.rstrip('_')}: {err['msg']}")
        raise ConfigError("invalid configuration: " + "; ".join(problems)) from exc
