"""The audit trail as people read it: who acted (by their current name), on what, what changed.

Display only. Nothing here is hashed, stored or exported: the records stay exactly as the chain
holds them, and each answer gets a ``display`` beside them. Names are the current ones (a token
renamed or a person's new name shows), looked up in the reader's org only: a token, key or person
of another org, or one that no longer exists, reads as a neutral label and never as another
org's data. "Before" values come from the earlier records of the same entity in the same log, so
an update reads "30 days → 7 days" without anything new written at change time. Secrets never
enter the log (sealed ciphertexts and digests do); those fields are never shown.
"""

from __future__ import annotations

import json
import re
import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from astralog.controlplane.events import Event
from astralog.controlplane.store import Recorded

# Fields that are sealed ciphertexts, digests of secrets, signatures or bulky signed documents.
HIDDEN = frozenset(
    {"digest", "secrets", "client_secret", "signature", "who", "certificate", "claims", "org_id"}
)
# Updates: the fields whose earlier value is the "before", and what an entity that never set it
# had (absent a default, an entity with no earlier value is shown as a creation).
UPDATES: dict[str, tuple[str, ...]] = {
    "SourceRetentionSet": ("days",),
    "PersonRoleChanged": ("role", "sources"),
    "OrgPlanChanged": ("plan", "overrides"),
    "ConnectorUpdated": ("config", "secrets"),
    "DestinationChanged": ("connector_id",),
    "PlanDefined": ("limits",),
    "OrgSecurityPolicySet": (
        "require_mfa",
        "enforce_sso",
        "session_idle_minutes",
        "session_absolute_hours",
    ),
    "IdpConfigured": (
        "name",
        "issuer",
        "client_id",
        "scopes",
        "role_rules",
        "strict",
        "default_role",
        "jit",
    ),
    "AlertUpdated": ("spec",),
    "EndpointUpdated": ("name", "target", "header_names", "enabled", "errors"),
    "SavedSearchSaved": ("name", "visibility", "query", "sources", "start", "end"),
}
_DEFAULTS: dict[str, dict[str, Any]] = {
    "SourceRetentionSet": {"days": None},
    "OrgPlanChanged": {"overrides": {}},
    "DestinationChanged": {"connector_id": None},
}
LABELS = {
    "days": "Retention",
    "connector_id": "Destination",
    "destination_id": "Destination",
    "source_id": "Source",
    "sources": "Sources",
    "person_id": "Person",
    "token_id": "Token",
    "key_id": "Key",
    "replaced_by": "Replaced by",
    "principal": "Reader",
    "requester": "Requested by",
    "owner": "Owner",
    "owner_person": "Owner",
    "session_idle_minutes": "Idle session ends after",
    "session_absolute_hours": "Session ends after",
    "require_mfa": "Require MFA",
    "enforce_sso": "Enforce SSO",
    "jit": "Create accounts at first sign-in",
    "secrets": "Secret fields set",
}
_TABLES = {  # the id field a record names -> (kind, projection table with a ``name``)
    "source_id": ("source", "sources"),
    "connector_id": ("connector", "connectors"),
    "connection_id": ("identity provider", "idp_connections"),
    "alert_id": ("alert", "alert_rules"),
    "endpoint_id": ("alert endpoint", "alert_endpoints"),
    "search_id": ("saved search", "saved_searches"),
    "destination_id": ("connector", "connectors"),
    "org_id": ("org", "orgs"),
}
_SYSTEM = {"bootstrap": "first start"}
_MAX_TEXT = 200
_MAX_ITEMS = 20


@dataclass(frozen=True)
class Named:
    """How a person reads an id: a name, what kind of thing it is, and a detail line."""

    name: str
    kind: str
    detail: str = ""

    def as_dict(self, id_: str) -> dict[str, str]:
        return {"id": id_, "name": self.name, "kind": self.kind, "detail": self.detail}


def humanize(name: str) -> str:
    """``IngestKeyRotated`` or ``session_idle_minutes`` -> "Ingest key rotated", "Session idle…"."""
    words = re.sub(r"([a-z0-9])([A-Z])", r"\1 \2", name).replace("_", " ").lower()
    return words[:1].upper() + words[1:]


class Names:
    """Current names of the ids records mention, in the reader's org only (None: the operator,
    who reads every org), memoised for one answer."""

    def __init__(self, conn: sqlite3.Connection, org_id: str | None) -> None:
        self._conn = conn
        self._org_id = org_id
        self._rows: dict[tuple[str, str], dict[str, Any] | None] = {}

    def row(self, table: str, row_id: str) -> dict[str, Any] | None:
        """The row if it belongs to the reader's org; another org's row is like a missing one."""
        key = (table, row_id)
        if key not in self._rows:
            found = self._conn.execute(f"SELECT * FROM {table} WHERE id = ?", (row_id,)).fetchone()
            self._rows[key] = None if found is None else dict(found)
        row = self._rows[key]
        if row is None or self._org_id is None:
            return row
        org = row["id"] if table == "orgs" else row.get("org_id")
        return row if org == self._org_id else None

    def actor(self, principal: str) -> Named:
        kind, _, rest = principal.partition(":")
        resolve = {
            "person": self.person,
            "token": self.token,
            "key": self.key,
            "sso": self._sso,
            "system": _system,
            "cli": _cli,
        }.get(kind)
        if resolve is not None and rest:
            return resolve(rest)
        if principal == "anonymous":
            return Named("Anonymous", "anonymous", "not signed in")
        return Named("Unknown", "unknown")

    def person(self, person_id: str) -> Named:
        row = self.row("people", person_id)
        if row is None:
            return Named("Former member", "person")
        service = row["kind"] == "service"
        detail = "service account" if service else row["email"]
        if row["state"] != "active":
            detail += " · deprovisioned"
        return Named(row["name"] or row["email"], "service" if service else "person", detail)

    def token(self, token_id: str) -> Named:
        row = self._token_row(token_id)
        if row is None:
            return Named("Unknown token", "token")
        if row["kind"] == "operator":
            name = "Operator" if self._org_id else row["name"]
            return Named(name, "operator", "operator token")
        if row["person_id"]:
            owner = self.person(row["person_id"])
            return Named(row["name"], "token", f"{row['kind']} token of {owner.name}")
        return Named(row["name"], "token", f"{row['kind']} token")

    def _token_row(self, token_id: str) -> dict[str, Any] | None:
        """Operator tokens belong to no org; an org reader learns only that the operator acted."""
        mine = self.row("tokens", token_id)
        if mine is not None:
            return mine
        other = self._rows.get(("tokens", token_id))
        return other if other is not None and other["kind"] == "operator" else None

    def key(self, key_id: str) -> Named:
        row = self.row("ingest_keys", key_id)
        if row is None:
            return Named("Unknown ingest key", "key")
        return Named("Ingest key", "key", f"source {self.source(row['source_id'])}")

    def source(self, source_id: str) -> str:
        return self.named("source_id", source_id).name

    def named(self, field_name: str, value: str) -> Named:
        """The thing a ``*_id`` field of a record names."""
        if field_name in ("person_id", "owner_person"):
            return self.person(value)
        if field_name in ("token_id",):
            return self.token(value)
        if field_name in ("key_id", "replaced_by"):
            return self.key(value)
        if field_name in ("principal", "owner", "requester"):
            return self.actor(value)
        kind, table = _TABLES.get(field_name, (humanize(field_name.removesuffix("_id")), ""))
        row = self.row(table, value) if table else None
        if row is not None:
            return Named(row["name"], kind)
        if table in ("sources", "connectors"):
            return Named(self._deleted_name(value) or f"Unknown {kind}", kind)
        return Named(value, kind.lower())

    def _deleted_name(self, target_id: str) -> str | None:
        """A deleted source or connector is known by the name its tombstone kept."""
        row = self._conn.execute(
            "SELECT name, org_id FROM scope_deletions WHERE target_id = ?", (target_id,)
        ).fetchone()
        if row is None or (self._org_id is not None and row["org_id"] != self._org_id):
            return None
        return f"{row['name']} (deleted)"

    def _sso(self, connection_id: str) -> Named:
        row = self.row("idp_connections", connection_id)
        return Named(row["name"] if row else "Single sign-on", "sso", "single sign-on")


def _system(what: str) -> Named:
    return Named("System", "system", _SYSTEM.get(what, what.replace("-", " ")))


def _cli(user: str) -> Named:
    return Named(user, "operator", "command line on the server")


# ---- before and after ------------------------------------------------------------------------


def befores(
    conn: sqlite3.Connection, records: list[Recorded], org_id: str | None
) -> dict[int, dict[str, Any]]:
    """For each update on the page, the state of its entity just before it (by global seq)."""
    wanted = {r.seq: r for r in records if r.type in UPDATES}
    if not wanted:
        return {}
    aggregates = sorted({r.aggregate_id for r in wanted.values()})
    state: dict[str, dict[str, Any]] = {}
    found: dict[int, dict[str, Any]] = {}
    for row in _history(conn, aggregates, max(wanted), org_id):
        current = state.setdefault(row["aggregate_id"], {})
        if row["seq"] in wanted:
            found[row["seq"]] = dict(current)
        current.update(_payload(row["payload"]))
    return found


def _history(
    conn: sqlite3.Connection, aggregates: list[str], up_to: int, org_id: str | None
) -> Iterable[sqlite3.Row]:
    for start in range(0, len(aggregates), 500):  # SQLite's bound on parameters
        chunk = aggregates[start : start + 500]
        sql = (
            "SELECT seq, aggregate_id, payload FROM events WHERE seq <= ? AND aggregate_id IN "
            f"({', '.join('?' * len(chunk))})"
        )
        args: list[Any] = [up_to, *chunk]
        if org_id is not None:
            sql += " AND org_id = ?"
            args.append(org_id)
        yield from conn.execute(sql + " ORDER BY seq", args)


# ---- the display -----------------------------------------------------------------------------


def display(record: Recorded, names: Names, before: dict[str, Any] | None) -> dict[str, Any]:
    """What the audit page shows of one record: names, a summary, changes or fields."""
    payload = _payload(record.payload)
    target_field = _target_field(record.type)
    target = _target(record, payload, target_field, names)
    changes = _changes(record.type, payload, before, names)
    shown = set(UPDATES.get(record.type, ())) if changes is not None else set()
    fields = [
        {"field": k, "label": LABELS.get(k, humanize(k)), "value": fmt(k, v, names)}
        for k, v in sorted(payload.items())
        if k not in HIDDEN and k != target_field and k not in shown and _worth_showing(k, v)
    ]
    return {
        "action": humanize(record.type),
        "actor": names.actor(record.actor).as_dict(record.actor),
        "target": target,
        "summary": _summary(changes, target["name"]),
        "changes": changes or [],
        "fields": fields,
    }


def _payload(text: str) -> dict[str, Any]:
    """A record's payload; a malformed one (the verifier reports it as tampering) shows empty."""
    try:
        value = json.loads(text)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _worth_showing(key: str, value: Any) -> bool:
    """An empty optional field says nothing, unless empty has a meaning (every source)."""
    return key in _NONE_MEANS or value not in (None, "", [], {})


_NONE_MEANS = frozenset({"days", "sources", "connector_id", "expires_at"})


def _target_field(type_name: str) -> str | None:
    cls: type[Event] | None = Event.registry.get(type_name)
    match = re.search(r"\{(\w+)\}", cls.aggregate) if cls is not None else None
    return match.group(1) if match else None


def _target(
    record: Recorded, payload: dict[str, Any], field_name: str | None, names: Names
) -> dict[str, str]:
    """The entity the record is about; an activity is about the person, token or sources."""
    if field_name == "activity_id":
        field_name = next((k for k in _ACTIVITY_ABOUT if payload.get(k)), "org_id")
        if field_name == "sources":
            return Named(fmt("sources", payload["sources"], names), "sources").as_dict(
                record.aggregate_id
            )
    value = payload.get(field_name or "")
    if field_name is None or not isinstance(value, str):
        return Named(record.aggregate_id, "other").as_dict(record.aggregate_id)
    if field_name == "target_id":
        field_name = f"{payload.get('scope', 'source')}_id"
    return names.named(field_name, value).as_dict(record.aggregate_id)


_ACTIVITY_ABOUT = ("person_id", "token_id", "sources")


def _changes(
    type_name: str, payload: dict[str, Any], before: dict[str, Any] | None, names: Names
) -> list[dict[str, str]] | None:
    """Before → after of an update's fields; None when the entity had no earlier value (then
    the record reads as a creation)."""
    keys = UPDATES.get(type_name)
    if keys is None:
        return None
    earlier = _DEFAULTS.get(type_name, {}) | (before or {})
    if not any(k in earlier for k in keys):
        return None
    return [c for key in keys for c in _key_changes(key, earlier.get(key), payload.get(key), names)]


def _key_changes(key: str, old: Any, new: Any, names: Names) -> list[dict[str, str]]:
    if key == "secrets":  # sealed: only which fields are set can be told, never a value
        old, new = _sealed_names(old), _sealed_names(new)
        return [] if old == new else [_change(key, old or None, new or None, names)]
    if isinstance(old, dict) and isinstance(new, dict):
        return _dict_changes(key, old, new, names)
    return [] if old == new else [_change(key, old, new, names)]


def _sealed_names(sealed: Any) -> list[str]:
    fields = sealed.get("fields") if isinstance(sealed, dict) else None
    return sorted(fields) if isinstance(fields, dict) else []


def _dict_changes(
    key: str, old: dict[str, Any], new: dict[str, Any], names: Names
) -> list[dict[str, str]]:
    """A change inside a settings object (a connector's config, a plan's limits), per field."""
    return [
        _change(f"{key}.{sub}", old.get(sub), new.get(sub), names)
        for sub in sorted(set(old) | set(new))
        if old.get(sub) != new.get(sub)
    ]


def _change(key: str, old: Any, new: Any, names: Names) -> dict[str, str]:
    leaf = key.rpartition(".")[2]
    return {
        "field": key,
        "label": LABELS.get(leaf, humanize(leaf)),
        "before": fmt(leaf, old, names),
        "after": fmt(leaf, new, names),
    }


def _summary(changes: list[dict[str, str]] | None, target: str) -> str:
    if changes is None:
        return ""
    if not changes:
        return f"{target}: saved without a change"
    parts = [f"{c['label']} {c['before']} → {c['after']}" for c in changes[:3]]
    more = f" and {len(changes) - 3} more" if len(changes) > 3 else ""
    return f"{target}: " + "; ".join(parts) + more


def fmt(key: str, value: Any, names: Names) -> str:
    """A value as a person reads it, ids named, long text and lists cut short."""
    if key in ("days", "retention_days"):
        return "the plan's retention" if value is None else _plural(value, "day")
    if key == "sources" and value is None:
        return "every source"
    if key == "expires_at" and value is None:
        return "never"
    if key in ("connector_id", "destination_id") and value in (None, "", "local"):
        return "the embedded bucket"
    if key == "session_idle_minutes" and isinstance(value, int):
        return _plural(value, "minute")
    if key == "session_absolute_hours" and isinstance(value, int):
        return _plural(value, "hour")
    if isinstance(value, list):
        return _list(key, value, names)
    if isinstance(value, str) and key in _ID_FIELDS:
        return names.named(key, value).name
    return _scalar(value)


_ID_FIELDS = frozenset(
    {
        *_TABLES,
        "person_id",
        "owner_person",
        "token_id",
        "key_id",
        "replaced_by",
        "principal",
        "owner",
        "requester",
        "destination_id",
    }
)


def _list(key: str, values: list[Any], names: Names) -> str:
    item_key = "source_id" if key == "sources" else key
    shown = [fmt(item_key, v, names) for v in values[:_MAX_ITEMS]]
    more = f" and {len(values) - _MAX_ITEMS} more" if len(values) > _MAX_ITEMS else ""
    return (", ".join(shown) + more) if shown else "none"


def _scalar(value: Any) -> str:
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "yes" if value else "no"
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True)
    return text if len(text) <= _MAX_TEXT else text[: _MAX_TEXT - 1] + "…"


def _plural(value: Any, unit: str) -> str:
    return f"{value} {unit}" + ("" if value == 1 else "s")
