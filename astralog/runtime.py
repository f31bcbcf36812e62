"""The collaborators one process needs, built from settings: used by the server and the CLI."""

from __future__ import annotations

from dataclasses import dataclass

from astralog.controlplane.audit import Signer
from astralog.controlplane.service import ControlPlane
from astralog.controlplane.store import Actor
from astralog.principal import SCOPES
from astralog.settings import Settings

SYSTEM = Actor("system:bootstrap", "local")


@dataclass(frozen=True)
class Bootstrap:
    """What the first start created; the secrets are printed once and never stored in clear."""

    org: dict[str, object]
    source: dict[str, object]
    ingest_key: str
    admin_token: str
    operator_token: str


class Runtime:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        self.control = ControlPlane(
            settings.path(settings.control.database),
            settings.auth.key_pepper,
            settings.auth.key_cache_seconds,
        )
        self.signer = Signer(settings.path(settings.control.signing_key_file))

    def bootstrap(self) -> Bootstrap | None:
        """On an empty control plane: plans, a demo org, a source, its key and admin tokens."""
        if not self.control.is_empty():
            return None
        self.control.define_default_plans(SYSTEM)
        org = self.control.create_org("demo", "pro", SYSTEM)
        source = self.control.create_source(org["id"], "default", "Created at first start", SYSTEM)
        key = self.control.issue_key(org["id"], source["id"], SYSTEM)
        admin = self.control.issue_token(org["id"], "bootstrap-admin", sorted(SCOPES), SYSTEM)
        operator = self.control.issue_token(None, "bootstrap-operator", [], SYSTEM)
        self.signer.checkpoint(self.control.store)
        return Bootstrap(
            org, source, key.credential.secret, admin.credential.secret, operator.credential.secret
        )

    def ready(self) -> tuple[bool, str]:
        return True, ""

    def close(self) -> None:
        self.control.close()
