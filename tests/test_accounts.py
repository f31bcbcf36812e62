"""Local accounts: invitations, password rules (ASVS 5.0 V6.2) and Argon2id storage."""

from __future__ import annotations

import threading

import pytest

from astralog.auth.passwords import WeakPassword
from astralog.errors import Conflict, Forbidden
from astralog.runtime import SYSTEM, Bootstrap, Runtime

GOOD = "correct horse battery"


def _person(runtime: Runtime, boot: Bootstrap, email: str = "ann@example.com") -> str:
    person = runtime.control.people.add(str(boot.org["id"]), email, "Ann", "admin", None, SYSTEM)
    return str(person["id"])


def test_invitation_sets_the_password_once(runtime: Runtime, boot: Bootstrap) -> None:
    """V6.4.1: the initial secret is random, single use and expires; V6.5.x hashed at rest."""
    org_id, person_id = str(boot.org["id"]), _person(runtime, boot)
    token = runtime.accounts.create_invitation(org_id, person_id)
    assert runtime.accounts.accept_invitation(token, GOOD) == (org_id, person_id)
    with pytest.raises(Forbidden):
        runtime.accounts.accept_invitation(token, GOOD)
    found = runtime.accounts.verify_password(org_id, "ann@example.com", GOOD)
    assert found is not None and found["id"] == person_id
    assert runtime.accounts.verify_password(org_id, "ann@example.com", GOOD + "x") is None
    assert runtime.accounts.verify_password(org_id, "nobody@example.com", GOOD) is None
    with runtime.control.store.reading() as conn:
        stored = conn.execute("SELECT phc FROM account_passwords").fetchone()[0]
        invitations = conn.execute("SELECT digest FROM account_invitations").fetchall()
        log = "".join(r[0] for r in conn.execute("SELECT payload FROM events"))
    assert stored.startswith("$argon2id$v=19$") and GOOD not in stored
    assert token not in str(invitations) and stored not in log and token not in log


def test_a_new_invitation_ends_the_earlier_one(runtime: Runtime, boot: Bootstrap) -> None:
    org_id, person_id = str(boot.org["id"]), _person(runtime, boot)
    first = runtime.accounts.create_invitation(org_id, person_id)
    runtime.accounts.create_invitation(org_id, person_id)
    with pytest.raises(Forbidden):
        runtime.accounts.accept_invitation(first, GOOD)


@pytest.mark.parametrize(
    "password, reason",
    [
        ("short1!", "at least 8"),  # V6.2.1
        ("password1", "common"),  # V6.2.4
        ("Qwertyuiop", "common"),  # compared case-insensitively
        ("ann@example.com", "email"),  # V6.2.11 context words
        ("x" * 129, "at most 128"),
    ],
)
def test_password_rules_refuse(
    runtime: Runtime, boot: Bootstrap, password: str, reason: str
) -> None:
    org_id, person_id = str(boot.org["id"]), _person(runtime, boot)
    with pytest.raises(WeakPassword, match=reason):
        runtime.accounts.set_password(org_id, person_id, password)


@pytest.mark.parametrize(
    "password",
    ["x" * 64 + "!", "é" * 8 + " ünïcödé 🙂", "all lowercase no digits", "        spaces in"],
)
def test_password_rules_accept_long_and_any_characters(
    runtime: Runtime, boot: Bootstrap, password: str
) -> None:
    """V6.2.2 (64+ allowed), V6.2.5 (no composition rules), V6.2.9 (any characters, kept)."""
    org_id, person_id = str(boot.org["id"]), _person(runtime, boot)
    runtime.accounts.set_password(org_id, person_id, password)
    assert runtime.accounts.verify_password(org_id, "ann@example.com", password) is not None
    assert runtime.accounts.verify_password(org_id, "ann@example.com", password[:-1]) is None


def test_of_two_racing_acceptances_only_the_winner_sets_a_password(
    runtime: Runtime, boot: Bootstrap
) -> None:
    """Both pass the check while the invitation is live; spending it and storing the password
    happen in one transaction, so the loser's password is never stored."""
    org_id, person_id = str(boot.org["id"]), _person(runtime, boot)
    token = runtime.accounts.create_invitation(org_id, person_id)
    barrier = threading.Barrier(2)
    peek = runtime.accounts.peek_invitation

    def both_peek(t: str) -> tuple[str, str]:
        found = peek(t)
        barrier.wait(timeout=10)  # both acceptances past the check before either spends it
        return found

    runtime.accounts.peek_invitation = both_peek  # type: ignore[method-assign]
    outcomes: dict[str, str] = {}

    def accept(password: str) -> None:
        try:
            runtime.accounts.accept_invitation(token, password)
            outcomes[password] = "won"
        except Conflict:
            outcomes[password] = "lost"

    threads = [threading.Thread(target=accept, args=(p,)) for p in (GOOD, GOOD + " too")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert sorted(outcomes.values()) == ["lost", "won"], outcomes
    for password, outcome in outcomes.items():
        found = runtime.accounts.verify_password(org_id, "ann@example.com", password)
        assert (found is not None) == (outcome == "won"), password
