"""Connector kinds: each destination a customer can bring declares itself in one place.

A connector module that can be configured through the API holds a module-level ``KIND``, a
:class:`ConnectorKind`: its config model, its secret fields, the fields that say where its data
lives, the least-privilege policy an admin pastes into their cloud or database, and how to build
a live connector. :func:`kinds` finds them by looking at the modules of this package, so adding
a destination is adding its module; nothing else names it.

Building goes through an :class:`Egress`, the operator's guard (``astralog.byob``): a customer's
endpoint is a server-side request target, so a kind never opens it itself, it asks for a
connection pinned to the address the guard checked.
"""

from __future__ import annotations

import importlib
import pkgutil
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import cache
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar

from pydantic import BaseModel, ValidationError

from astralog.errors import BadRequest

from .base import Connector

if TYPE_CHECKING:
    from aiohttp.abc import AbstractResolver
    from urllib3 import PoolManager

__all__ = ["ConnectorKind", "Egress", "kind", "kinds"]

_MAX_SECRET = 4096
ConfigT = TypeVar("ConfigT", bound=BaseModel)


class Egress(Protocol):
    """The operator's SSRF guard: checks a customer's endpoint, pins connections to it."""

    def pinned_resolver(self, url: str) -> AbstractResolver:
        """An aiohttp resolver that answers only the checked address of ``url``."""

    def pinned_pool(
        self, url: str, *, schemes: tuple[str, ...], verify: bool, ca_pem: str | None
    ) -> PoolManager:
        """A urllib3 pool manager that connects only to the checked address of ``url``."""


def _as_given(config: dict[str, Any], previous: dict[str, Any] | None) -> dict[str, Any]:
    return config


@dataclass(frozen=True)
class ConnectorKind(Generic[ConfigT]):
    """Everything Astralog needs to know about one kind of destination.

    ``prepare`` adjusts a customer's config before validation (fields Astralog generates,
    choices a tenant may not make); ``policy`` takes the validated config and the principal
    Astralog acts as in the customer's cloud, and returns ``{"policy": ..., "text": ...}``.
    """

    name: str
    config: type[ConfigT]
    secret_fields: tuple[str, ...]
    location_fields: tuple[str, ...]
    build: Callable[[ConfigT, Mapping[str, str], Egress], Connector]
    policy: Callable[[ConfigT, str], dict[str, Any]]
    prepare: Callable[[dict[str, Any], dict[str, Any] | None], dict[str, Any]] = field(
        default=_as_given
    )

    def validate_config(
        self, config: Mapping[str, Any], previous: dict[str, Any] | None
    ) -> dict[str, Any]:
        """The config as stored and returned by the API (JSON-ready, no secret)."""
        prepared = self.prepare(dict(config), previous)
        try:
            model = self.config.model_validate(prepared)
        except ValidationError as exc:
            problems = "; ".join(
                f"config.{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()[:5]
            )
            raise BadRequest(f"invalid {self.name} connector config: {problems}") from None
        return model.model_dump(mode="json")

    def validate_secrets(self, secrets: Mapping[str, Any]) -> dict[str, str]:
        """The secret fields given, refusing unknown ones; empty values are dropped."""
        unknown = sorted(set(secrets) - set(self.secret_fields))
        if unknown:
            raise BadRequest(
                f"unknown secret fields {unknown}; a {self.name} connector takes "
                f"{list(self.secret_fields)}"
            )
        bad = [k for k, v in secrets.items() if not isinstance(v, str) or len(v) > _MAX_SECRET]
        if bad:
            raise BadRequest(
                f"secret fields {bad} must be strings of at most {_MAX_SECRET} characters"
            )
        return {k: v for k, v in secrets.items() if v}

    def connector(
        self, config: Mapping[str, Any], secrets: Mapping[str, str], egress: Egress
    ) -> Connector:
        """A live connector for a stored config, its endpoint checked and pinned by ``egress``."""
        return self.build(self.config.model_validate(config), secrets, egress)

    def policy_text(self, config: Mapping[str, Any], principal: str) -> dict[str, Any]:
        return self.policy(self.config.model_validate(config), principal)


@cache
def kinds() -> dict[str, ConnectorKind[Any]]:
    """Every kind declared by a module of this package, by name."""
    package = sys.modules[__name__.rpartition(".")[0]]
    found: dict[str, ConnectorKind[Any]] = {}
    for module in pkgutil.iter_modules(package.__path__, package.__name__ + "."):
        declared = getattr(importlib.import_module(module.name), "KIND", None)
        if isinstance(declared, ConnectorKind):
            found[declared.name] = declared
    return dict(sorted(found.items()))


def kind(name: str) -> ConnectorKind[Any]:
    """The kind called ``name``; an unknown one is the caller's mistake (400)."""
    known = kinds()
    if name not in known:
        raise BadRequest(f"unknown connector kind {name[:40]!r}; choose one of {sorted(known)}")
    return known[name]
