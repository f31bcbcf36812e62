"""Saved searches: a query, its sources and its time range, under a name, kept for the org.

A saved search is private (its owner alone sees it) or shared (everyone in the org who may search
sees it; each still reads only the sources they are granted, since opening it runs an ordinary
search). Saving and deleting are events in the hash-chained log (``SavedSearchSaved``,
``SavedSearchDeleted``); the ``saved_searches`` projection is what the API reads. A saved search
opens by URL: ``search_url`` is the search page with the query, range and sources in its query
string, the same link the page itself shares.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from typing import Any, Literal, Protocol
from urllib.parse import urlencode

from astralog.auth.principal import Principal
from astralog.controlplane.events import Event
from astralog.controlplane.projections import handles
from astralog.controlplane.store import Actor, EventStore, Recorded
from astralog.errors import BadRequest, Forbidden, NotFound
from astralog.ids import new_id

Visibility = Literal["private", "shared"]
MAX_PER_ORG = 5000
MAX_QUERY = 4096


@dataclass(frozen=True)
class SavedSearchSaved(Event, aggregate="search:{search_id}"):
    """Created or replaced: the whole definition, so a replay needs no earlier version."""

    search_id: str
    org_id: str
    owner: str  # the principal id that saved it first
    name: str
    visibility: str
    query: str
    sources: list[str] | None
    start: str
    end: str


@dataclass(frozen=True)
class SavedSearchDeleted(Event, aggregate="search:{search_id}"):
    search_id: str
    org_id: str


class QueryGrammar(Protocol):
    """What the control plane asks of the search language before it stores a query. The
    language sits above the control plane, so the process wiring hands its checks in
    (:class:`astralog.query_checks.QueryChecks`); each refusal is a 400 saying what is wrong."""

    def check_query(self, text: str) -> None: ...
    def is_field(self, name: str) -> bool: ...
    def check_instant(self, text: str, what: str) -> None: ...


@dataclass(frozen=True)
class SearchDefinition:
    name: str
    query: str = ""
    sources: list[str] | None = None
    start: str = "now-15m"
    end: str = "now"
    visibility: Visibility = "private"

    def check(
        self, readable: frozenset[str] | None, org_sources: OrgSources, grammar: QueryGrammar
    ) -> None:
        _check_name(self.name)
        if len(self.query) > MAX_QUERY:
            raise BadRequest(f"the query is longer than {MAX_QUERY} characters")
        grammar.check_query(self.query)  # a query that cannot run is refused when saved
        for bound, what in ((self.start, "start"), (self.end, "end")):
            if len(bound) > 64:
                raise BadRequest(f"'{what}' is longer than 64 characters")
            grammar.check_instant(bound, what)
        if self.sources is not None:
            check_sources(self.sources, readable, org_sources)


@dataclass(frozen=True)
class OrgSources:
    """The org's source ids, and those of them pending deletion (or deleted) by id, with the
    words that say so: searches leave such a source out, so nothing saved may watch it."""

    ids: frozenset[str]
    stopped: dict[str, str]


def org_sources(store: EventStore, org_id: str) -> OrgSources:
    with store.reading() as conn:
        rows = conn.execute(
            "SELECT s.id, d.state, d.purge_after FROM sources s LEFT JOIN scope_deletions d "
            "ON d.target_id = s.id AND d.scope = 'source' WHERE s.org_id = ?",
            (org_id,),
        ).fetchall()
    stopped = {
        r[0]: "was deleted" if r[1] == "deleted" else f"is pending deletion (purged after {r[2]})"
        for r in rows
        if r[1] is not None
    }
    return OrgSources(frozenset(r[0] for r in rows), stopped)


def check_sources(sources: list[str], readable: frozenset[str] | None, org: OrgSources) -> None:
    """Only sources the caller may read: a source they are not granted is named like an unknown
    one, so the answer says nothing of sources they cannot see. A readable source pending
    deletion is named, with how to take it back."""
    if not 0 < len(sources) <= 100:
        raise BadRequest("name 1 to 100 sources, or leave 'sources' out for every source")
    visible = org.ids if readable is None else org.ids & readable
    unknown = [s[:40] for s in sources if s not in visible]
    if unknown:
        raise BadRequest(
            f"unknown sources {unknown[:5]}: you can only use sources you may search "
            "(GET /v1/sources lists them)"
        )
    for source in sources:
        if source in org.stopped:
            raise BadRequest(
                f"source {source} {org.stopped[source]}: searches leave it out, so nothing "
                f"saved can watch it; restore it first (POST /v1/sources/{source}/restore) or "
                "leave it out"
            )


def _check_name(name: str) -> None:
    if not 0 < len(name.strip()) <= 200 or not name.isprintable():
        raise BadRequest("the name must be 1 to 200 printable characters")


def search_url(base: str, query: str, sources: list[str] | None, start: str, end: str) -> str:
    params = {"q": query, "start": start, "end": end}
    if sources:
        params["sources"] = ",".join(sources)
    return f"{base.rstrip('/')}/?{urlencode(params)}"


class SavedSearches:
    def __init__(self, store: EventStore, base_url: str, grammar: QueryGrammar) -> None:
        self.store = store
        self.base_url = base_url
        self.grammar = grammar

    def save(
        self,
        org_id: str,
        who: Principal,
        definition: SearchDefinition,
        actor: Actor,
        search_id: str | None = None,
    ) -> dict[str, Any]:
        definition.check(who.readable, org_sources(self.store, org_id), self.grammar)
        with self.store.transaction() as conn:
            if search_id is None:
                search_id, owner = new_id("ss"), who.id
                _check_quota(conn, org_id)
            else:
                owner = self._writable(org_id, search_id, who)["owner"]
            d = definition
            event = SavedSearchSaved(search_id, org_id, owner, d.name.strip(), d.visibility,
                                     d.query, d.sources, d.start, d.end)  # fmt: skip
            self.store.append(event, actor, self.store.version(f"search:{search_id}"))
        return self.get(org_id, search_id, who)

    def delete(self, org_id: str, search_id: str, who: Principal, actor: Actor) -> None:
        with self.store.transaction():
            self._writable(org_id, search_id, who)
            event = SavedSearchDeleted(search_id, org_id)
            self.store.append(event, actor, self.store.version(f"search:{search_id}"))

    def list(self, org_id: str, who: Principal) -> list[dict[str, Any]]:
        with self.store.reading() as conn:
            rows = conn.execute(
                "SELECT * FROM saved_searches WHERE org_id = ? AND (visibility = 'shared' "
                "OR owner = ?) ORDER BY name, id",
                (org_id, who.id),
            ).fetchall()
        return [self._view(dict(r)) for r in rows]

    def get(self, org_id: str, search_id: str, who: Principal) -> dict[str, Any]:
        with self.store.reading() as conn:
            row = conn.execute(
                "SELECT * FROM saved_searches WHERE id = ? AND org_id = ?", (search_id, org_id)
            ).fetchone()
        # Another org's search, or someone else's private one, answers like a missing one.
        if row is None or (row["visibility"] == "private" and row["owner"] != who.id):
            raise NotFound(f"saved search {search_id[:40]!r} does not exist in this org")
        return self._view(dict(row))

    def _writable(self, org_id: str, search_id: str, who: Principal) -> dict[str, Any]:
        view = self.get(org_id, search_id, who)
        if view["owner"] != who.id and "members:write" not in who.scopes:
            raise Forbidden("only its owner or an org admin can change a shared saved search")
        return view

    def _view(self, row: dict[str, Any]) -> dict[str, Any]:
        sources = None if row["sources"] is None else json.loads(row["sources"])
        return {
            "id": row["id"],
            "name": row["name"],
            "owner": row["owner"],
            "visibility": row["visibility"],
            "query": row["query"],
            "sources": sources,
            "start": row["start_at"],
            "end": row["end_at"],
            "search_url": search_url(
                self.base_url, row["query"], sources, row["start_at"], row["end_at"]
            ),
            "created_at": row["created_at"],
            "updated_at": row["updated_at"],
        }


def _check_quota(conn: sqlite3.Connection, org_id: str) -> None:
    (count,) = conn.execute(
        "SELECT COUNT(*) FROM saved_searches WHERE org_id = ?", (org_id,)
    ).fetchone()
    if count >= MAX_PER_ORG:
        raise Forbidden(f"this org has {count} saved searches, the most it may keep; delete some")


@handles(SavedSearchSaved)
def _saved(conn: sqlite3.Connection, e: SavedSearchSaved, r: Recorded) -> None:
    sources = None if e.sources is None else json.dumps(e.sources)
    conn.execute(
        "INSERT INTO saved_searches (id, org_id, owner, name, visibility, query, sources, "
        "start_at, end_at, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
        "ON CONFLICT (id) DO UPDATE SET name = excluded.name, visibility = excluded.visibility, "
        "query = excluded.query, sources = excluded.sources, start_at = excluded.start_at, "
        "end_at = excluded.end_at, updated_at = excluded.updated_at",
        (e.search_id, e.org_id, e.owner, e.name, e.visibility, e.query, sources, e.start, e.end,
         r.at, r.at),
    )  # fmt: skip


@handles(SavedSearchDeleted)
def _deleted(conn: sqlite3.Connection, e: SavedSearchDeleted, r: Recorded) -> None:
    conn.execute("DELETE FROM saved_searches WHERE id = ?", (e.search_id,))
