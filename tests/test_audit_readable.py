"""The audit trail as people read it: actors by their current name (never another org's data),
an update's before → after taken from the entity's earlier records, each org's records numbered
1..n, and the chain's own data (and the export that verifies it) untouched."""

from __future__ import annotations

import json
from typing import Any

import pytest
from fastapi.testclient import TestClient

from astralog.controlplane import events as ev
from astralog.controlplane.store import Actor
from astralog.runtime import Bootstrap, Runtime
from tests.conftest import bearer

CONNECTOR_SECRET = "wJalrXUtnFEMI-K7MDENG-bPxRfiCYEXAMPLEKEY"


def _events(client: TestClient, token: str, query: str = "") -> list[dict[str, Any]]:
    response = client.get(f"/v1/audit?limit=1000{query}", headers=bearer(token))
    assert response.status_code == 200, response.text
    events: list[dict[str, Any]] = response.json()["events"]
    return events


def _last(events: list[dict[str, Any]], type_name: str) -> dict[str, Any]:
    return [e for e in events if e["type"] == type_name][-1]


def _other_org(client: TestClient, runtime: Runtime, boot: Bootstrap) -> dict[str, Any]:
    """A second tenant with a named token, a person and a source of its own."""
    op = bearer(boot.operator_token)
    org = client.post("/v1/orgs", json={"name": "rival", "plan": "pro"}, headers=op).json()
    issued = client.post(
        f"/v1/orgs/{org['id']}/tokens",
        json={"name": "rival-secret-ops", "scopes": ["audit:read", "sources:write"]},
        headers=op,
    ).json()
    actor = Actor("cli:root")
    person = runtime.control.people.add(
        org["id"], "eve@rival.example", "Eve Rival", "member", None, actor
    )
    source = runtime.control.create_source(org["id"], "rival-payments", "", actor)
    return {
        "org": org,
        "token": issued["token"],
        "token_id": issued["info"]["id"],
        "person": person,
        "source": source,
    }


# ---- names ------------------------------------------------------------------------------------


def test_actors_read_as_names_and_the_id_stays(
    client: TestClient, runtime: Runtime, boot: Bootstrap
) -> None:
    org, admin = str(boot.org["id"]), boot.admin_token
    source = str(boot.source["id"])
    assert client.put(f"/v1/sources/{source}/retention", json={"days": 9}, headers=bearer(admin))
    people = runtime.control.people
    ana = people.add(org, "ana@example.com", "Ana Lima", "admin", None, Actor("cli:root"))
    key_id = runtime.control.keys(org, source)[0]["id"]
    runtime.control.create_source(org, "by-ana", "", Actor(f"person:{ana['id']}"))
    runtime.control.create_source(org, "by-key", "", Actor(f"key:{key_id}"))
    people.deprovision(org, ana["id"], Actor("cli:root"))

    events = _events(client, admin)
    first = events[0]["display"]["actor"]
    assert first == {"id": "system:bootstrap", "name": "System", "kind": "system",
                     "detail": "first start"}  # fmt: skip
    by_token = _last(events, "SourceRetentionSet")["display"]["actor"]
    assert by_token["name"] == "bootstrap-admin" and by_token["kind"] == "token"
    assert by_token["detail"] == "management token" and by_token["id"].startswith("token:")
    assert _last(events, "PersonAdded")["display"]["actor"]["name"] == "root"
    created = {e["payload"]["name"]: e for e in events if e["type"] == "SourceCreated"}
    by_ana = created["by-ana"]["display"]["actor"]
    # The current state: Ana was deprovisioned after she acted, and that shows.
    assert by_ana == {"id": f"person:{ana['id']}", "name": "Ana Lima", "kind": "person",
                      "detail": "ana@example.com · deprovisioned"}  # fmt: skip
    by_key = created["by-key"]["display"]["actor"]
    assert (by_key["name"], by_key["kind"], by_key["detail"]) == (
        "Ingest key", "key", "source default"
    )  # fmt: skip
    assert created["by-key"]["actor"] == f"key:{key_id}", "the record's actor is unchanged"


def test_the_operator_is_named_to_the_operator_and_neutral_to_the_org(
    client: TestClient, boot: Bootstrap
) -> None:
    op = bearer(boot.operator_token)
    org = str(boot.org["id"])
    client.post(f"/v1/orgs/{org}/tokens", json={"name": "ci", "scopes": ["audit:read"]}, headers=op)
    mine = _last(_events(client, boot.admin_token), "TokenIssued")["display"]
    assert mine["actor"]["name"] == "Operator" and mine["actor"]["kind"] == "operator"
    assert (mine["target"]["name"], mine["target"]["kind"]) == ("ci", "token")
    theirs = _last(_events(client, boot.operator_token), "TokenIssued")["display"]
    assert theirs["actor"]["kind"] == "operator" and theirs["actor"]["name"] != "Operator"


def test_another_orgs_actors_and_sources_never_show_their_names(
    client: TestClient, runtime: Runtime, boot: Bootstrap
) -> None:
    org = str(boot.org["id"])
    rival = _other_org(client, runtime, boot)
    runtime.control.create_source(org, "odd-1", "", Actor(f"token:{rival['token_id']}"))
    runtime.control.create_source(org, "odd-2", "", Actor(f"person:{rival['person']['id']}"))
    runtime.control.create_source(org, "odd-3", "", Actor("person:usr_neverexisted"))
    read = ev.LogsRead("act_x", org, f"token:{rival['token_id']}", "search",
                       [rival["source"]["id"]], "2026-01-01T00:00:00+00:00",
                       "2026-01-01T01:00:00+00:00", 3)  # fmt: skip
    with runtime.control.store.transaction():
        runtime.control.store.append(read, Actor(f"token:{rival['token_id']}"), 0)

    response = client.get("/v1/audit?limit=1000", headers=bearer(boot.admin_token))
    events = response.json()["events"]
    created = {e["payload"]["name"]: e["display"]["actor"] for e in events
               if e["type"] == "SourceCreated"}  # fmt: skip
    assert created["odd-1"]["name"] == "Unknown token"
    assert created["odd-2"]["name"] == created["odd-3"]["name"] == "Former member"
    logs_read = _last(events, "LogsRead")["display"]
    assert logs_read["target"]["name"] == "Unknown source"
    shown = json.dumps([e["display"] for e in events])
    for leaked in ("rival", "Eve Rival", "eve@", "secret-ops", "payments"):
        assert leaked not in shown, f"{leaked!r} of another org shows in the audit view"


# ---- before and after ---------------------------------------------------------------------------


def test_updates_read_before_and_after(
    client: TestClient, runtime: Runtime, boot: Bootstrap
) -> None:
    admin, op = bearer(boot.admin_token), bearer(boot.operator_token)
    org, source = str(boot.org["id"]), str(boot.source["id"])
    for days in (30, 7):
        put = client.put(f"/v1/sources/{source}/retention", json={"days": days}, headers=admin)
        assert put.status_code == 200, put.text
    invited = client.post(
        "/v1/members", json={"email": "bo@example.com", "name": "Bo", "role": "member"},
        headers=admin,
    ).json()  # fmt: skip
    member = invited["member"]
    patch = client.patch(f"/v1/members/{member['id']}", json={"role": "admin"}, headers=admin)
    assert patch.status_code == 200, patch.text
    assert client.put(f"/v1/orgs/{org}/plan", json={"plan": "enterprise"}, headers=op).is_success

    events = _events(client, boot.admin_token)
    first, second = [e["display"] for e in events if e["type"] == "SourceRetentionSet"]
    assert _pairs(first) == [("Retention", "the plan's retention", "30 days")]
    assert _pairs(second) == [("Retention", "30 days", "7 days")]
    assert second["summary"] == "default: Retention 30 days → 7 days"
    assert second["target"]["name"] == "default" and second["fields"] == []
    role = _last(events, "PersonRoleChanged")["display"]
    assert _pairs(role) == [("Role", "member", "admin")] and role["target"]["name"] == "Bo"
    plan = _last(events, "OrgPlanChanged")["display"]
    assert ("Plan", "pro", "enterprise") in _pairs(plan)
    assert invited["invitation_token"] not in json.dumps(events), "an invitation is a secret"
    added = _last(events, "PersonAdded")["display"]
    assert (
        added["changes"] == []
        and {"Email": "bo@example.com", "Role": "member"}.items()
        <= {f["label"]: f["value"] for f in added["fields"]}.items()
    )


def _pairs(display: dict[str, Any]) -> list[tuple[str, str, str]]:
    return [(c["label"], c["before"], c["after"]) for c in display["changes"]]


def test_a_connector_change_shows_its_config_and_never_a_secret(
    client: TestClient, boot: Bootstrap
) -> None:
    admin = bearer(boot.admin_token)
    body = {
        "name": "lake",
        "kind": "s3",
        "config": {"bucket": "logs", "region": "eu-west-1"},
        "secrets": {"access_key_id": "AKIAEXAMPLE", "secret_access_key": CONNECTOR_SECRET},
    }
    created = client.post("/v1/connectors", json=body, headers=admin)
    assert created.status_code == 201, created.text
    update = {"config": {"bucket": "logs", "region": "us-east-1"}}
    put = client.put(f"/v1/connectors/{created.json()['id']}", json=update, headers=admin)
    assert put.status_code == 200, put.text

    listing = client.get("/v1/audit?limit=1000", headers=admin)
    changed = _last(listing.json()["events"], "ConnectorUpdated")["display"]
    assert _pairs(changed) == [("Region", "eu-west-1", "us-east-1")]
    assert changed["target"]["name"] == "lake"
    creation = _last(listing.json()["events"], "ConnectorCreated")["display"]
    assert {f["field"] for f in creation["fields"]} == {"config", "kind", "name"}
    export = client.get("/v1/audit?format=ndjson", headers=admin).text
    for text in (listing.text, export):
        for secret in (CONNECTOR_SECRET, "AKIAEXAMPLE", boot.admin_token, boot.ingest_key):
            assert secret not in text, "a secret reached the audit log"
    token_digest = _last(listing.json()["events"], "TokenIssued")["payload"]["digest"]
    assert token_digest not in json.dumps([e["display"] for e in listing.json()["events"]])


# ---- numbering, filters and pages ------------------------------------------------------------


def test_each_org_numbers_its_records_without_gaps_across_interleaved_activity(
    client: TestClient, runtime: Runtime, boot: Bootstrap
) -> None:
    org = str(boot.org["id"])
    rival = _other_org(client, runtime, boot)
    for i in range(6):  # interleaved: every other global record is the other org's
        runtime.control.create_source(org, f"mine-{i}", "", Actor("cli:root"))
        runtime.control.create_source(rival["org"]["id"], f"theirs-{i}", "", Actor("cli:root"))

    for token in (boot.admin_token, rival["token"]):
        events = _events(client, token)
        assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
        assert {e["chain"] for e in events} == {"org"}
        paged, after = [], 0
        while True:
            page = client.get(f"/v1/audit?limit=4&after={after}", headers=bearer(token)).json()
            paged += page["events"]
            if page["next_after"] is None:
                break
            after = page["next_after"]
        assert paged == events, "pages join into the same list, in the same order"
    everything = _events(client, boot.operator_token)
    assert [e["seq"] for e in everything] == list(range(1, len(everything) + 1))
    assert {e["chain"] for e in everything} == {"global"}


def test_a_type_filter_keeps_the_numbering_and_pages(
    client: TestClient, runtime: Runtime, boot: Bootstrap
) -> None:
    org = str(boot.org["id"])
    for i in range(5):
        runtime.control.create_source(org, f"s{i}", "", Actor("cli:root"))
        runtime.control.set_retention(org, str(boot.source["id"]), i + 1, Actor("cli:root"))
    whole = _events(client, boot.admin_token)
    created = [e for e in whole if e["type"] == "SourceCreated"]
    assert _events(client, boot.admin_token, "&type=SourceCreated") == created
    paged, after = [], 0
    while after is not None:
        query = f"/v1/audit?type=SourceCreated&limit=2&after={after}"
        page = client.get(query, headers=bearer(boot.admin_token)).json()
        paged += page["events"]
        after = page["next_after"]
    assert paged == created
    both = "&type=SourceCreated&type=SourceRetentionSet"
    assert len(_events(client, boot.admin_token, both)) == len(created) + 5


@pytest.mark.parametrize(
    "query",
    [
        "after=-1",
        f"after={2**64}",
        "after=1e3",
        "limit=0",
        "limit=1001",
        "limit=abc",
        "format=xml",
        "type=DROP%20TABLE%20events",
        "type=SourceCreated%27--",
        "type=" + "A" * 5000,
        "type=__class__",
        "&".join(["type=SourceCreated"] * 101),
        "format=ndjson&type=SourceCreated",
    ],
)
def test_hostile_query_parameters_answer_4xx(
    client: TestClient, boot: Bootstrap, query: str
) -> None:
    response = client.get(f"/v1/audit?{query}", headers=bearer(boot.admin_token))
    assert 400 <= response.status_code < 500, (query, response.status_code, response.text[:300])
    assert response.headers["content-type"].startswith("application/problem+json")
    assert len(response.text) < 4000, "the answer echoes no unbounded input"


def test_the_export_and_its_verification_are_untouched(client: TestClient, boot: Bootstrap) -> None:
    lines = client.get("/v1/audit?format=ndjson", headers=bearer(boot.admin_token)).text
    records = [json.loads(line) for line in lines.splitlines()]
    assert records and all("display" not in r for r in records)
    assert [r["seq"] for r in records] == list(range(1, len(records) + 1))
