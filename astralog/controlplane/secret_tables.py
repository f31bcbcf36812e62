"""Tables of secrets kept beside the control-plane log: in its database and under its lock,
so a credential change and its event commit together, but never in the log, so a password hash,
a TOTP seed or a passkey's key never reaches an audit export."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager

from astralog.controlplane.service import ControlPlane


class SecretTables:
    def __init__(self, control: ControlPlane, schema: str) -> None:
        self.control = control
        with control.store.transaction() as conn:
            for statement in filter(str.strip, schema.split(";")):
                conn.execute(statement)

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        with self.control.store.transaction() as conn:
            yield conn
