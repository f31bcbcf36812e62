"""The README's people example works as written: the invite call it shows, then the invited
person setting a password from the link and landing with the role given."""

from __future__ import annotations

import json
import re
from pathlib import Path

from fastapi.testclient import TestClient

from astralog.runtime import Bootstrap
from tests.conftest import bearer

README = (Path(__file__).resolve().parents[1] / "README.md").read_text()


def _section(title: str) -> str:
    found = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## )", README, re.S | re.M)
    assert found, f"README has no '## {title}' section"
    return found.group(1)


def test_the_readme_invite_example_invites_and_the_link_signs_in(
    client: TestClient, boot: Bootstrap
) -> None:
    section = _section("People, roles and single sign-on")
    call = re.search(r"curl -sS -X POST \S+(/v1/members) .*?-d '(\{.*?\})'", section, re.S)
    assert call, "the README's invite example (curl … /v1/members … -d '{…}') is gone"
    body = json.loads(call.group(2))
    answer = client.post(call.group(1), json=body, headers=bearer(boot.admin_token))
    assert answer.status_code == 201, answer.text
    link = answer.json()["invitation_url"]
    assert re.match(r"https?://[^/]+/invitation#token=", link), link
    assert "invitation_url" in section
    token = link.partition("#token=")[2]
    client.cookies.clear()
    accepted = client.post(
        "/v1/auth/invitations/accept",
        json={"token": token, "password": "a long passphrase of my own"},
    )
    assert accepted.status_code == 200, accepted.text
    me = client.get("/v1/me").json()
    assert (me["email"], me["role"]) == (body["email"], body["role"])
    roles = {r["name"] for r in client.get("/v1/roles").json()}
    table = set(re.findall(r"^\| `([a-z_]+)` \|", section, re.M))
    assert table == roles, "the README's role table differs from the roles the service has"
