"""The alert instance state machine, table-driven and over every hit/miss sequence."""

from __future__ import annotations

import itertools

import pytest

from astralog.alerts.state import InstanceState, Policy, Step, step

S = 10**9
QUIET = dict(flap_max_changes=10**6)  # no flapping guard in play


def run(hits: str, policy: Policy, *, muted: str = "", every_ns: int = 60 * S) -> list[Step]:
    """``hits``: 'x' a hit, '.' a miss; ``muted``: 'm' where a silence mutes that evaluation."""
    state, steps = InstanceState(), []
    for i, c in enumerate(hits):
        out = step(state, c == "x", (i + 1) * every_ns, policy, muted=muted[i : i + 1] == "m")
        steps.append(out)
        state = out.state
    return steps


def told(steps: list[Step]) -> str:
    return "".join(
        {"firing": "F", "resolved": "R"}[s.transition.event] if s.transition else "-" for s in steps
    )


@pytest.mark.parametrize(
    ("hits", "policy", "expected"),
    [
        ("x..", Policy(**QUIET), "FR-"),
        ("xx.", Policy(pending_for=2, **QUIET), "-FR"),
        ("x.x.", Policy(pending_for=2, **QUIET), "----"),  # a broken run resets pending
        ("xxx...", Policy(pending_for=3, **QUIET), "--FR--"),
        ("x...", Policy(keep_firing_for_ns=120 * S, **QUIET), "F-R-"),  # fires 2 min past the hit
        ("x.x....", Policy(keep_firing_for_ns=120 * S, **QUIET), "F---R--"),  # a hit re-arms it
        ("xxxx", Policy(**QUIET), "F---"),  # a firing instance is told once
    ],
)
def test_table(hits: str, policy: Policy, expected: str) -> None:
    assert told(run(hits, policy)) == expected


def test_silence_holds_messages_and_tells_the_difference_when_it_ends() -> None:
    steps = run("xx.x", Policy(**QUIET), muted="mm  ")
    assert told(steps) == "---F"
    assert [s.held for s in steps[:2]] == ["silenced", "silenced"]
    # Fired and resolved under the silence: nothing is ever told.
    assert told(run("x...", Policy(**QUIET), muted="mm  ")) == "----"
    # Firing told, resolved under the silence: the resolve is told when it ends.
    assert told(run("x.....", Policy(**QUIET), muted=" mm   ")) == "F--R--"


def test_flapping_guard_quiets_then_tells_the_settled_state() -> None:
    policy = Policy(flap_window_ns=300 * S, flap_max_changes=3)
    steps = run("x.x.x.x......", policy)
    # The fourth change in 5 minutes marks it flapping: quiet from then on ...
    assert told(steps) == "FRF------R---"
    assert steps[3].held == "flapping" and steps[3].state.condition == "normal"
    # ... until a whole window passed without a change: then the settled state is told.
    assert steps[9].transition is not None and steps[9].transition.seq == 4


@pytest.mark.parametrize("pending_for", [1, 2, 3])
@pytest.mark.parametrize("keep", [0, 1, 2])
def test_every_sequence_keeps_the_invariants(pending_for: int, keep: int) -> None:
    """Over every hit/miss sequence of length 10, with and without silences and flapping."""
    policies = [
        Policy(pending_for=pending_for, keep_firing_for_ns=keep * 60 * S, **QUIET),
        Policy(pending_for=pending_for, keep_firing_for_ns=keep * 60 * S,
               flap_window_ns=240 * S, flap_max_changes=2),
    ]  # fmt: skip
    for policy, bits in itertools.product(policies, itertools.product("x.", repeat=10)):
        hits = "".join(bits)
        for muted in ("", "mmm" + " " * 7):
            steps = run(hits, policy, muted=muted)
            _check(hits, steps, policy, muted)


def _check(hits: str, steps: list[Step], policy: Policy, muted: str) -> None:
    sent = [s.transition for s in steps if s.transition]
    assert [t.seq for t in sent] == list(range(1, len(sent) + 1))
    assert [t.event for t in sent] == ["firing", "resolved"] * (len(sent) // 2) + (
        ["firing"] if len(sent) % 2 else []
    )
    for i, s in enumerate(steps):
        if s.transition:
            assert muted[i : i + 1] != "m"  # nothing goes out under a silence
            assert not s.state.flapping(policy)
        run_start = hits.rfind(".", 0, i + 1) + 1  # consecutive hits ending here
        if s.state.condition == "firing" and hits[i] == "x":
            assert (
                i + 1 - run_start >= policy.pending_for or steps[i - 1].state.condition == "firing"
            )
        if s.state.condition == "pending":
            assert hits[i] == "x" and i + 1 - run_start < policy.pending_for
    if policy.flap_max_changes > 100 and not muted:  # unguarded: told == condition, always
        for s in steps:
            assert s.state.notified == ("firing" if s.state.condition == "firing" else "normal")


def test_policy_refuses_nonsense() -> None:
    with pytest.raises(ValueError):
        Policy(pending_for=0)
    with pytest.raises(ValueError):
        Policy(flap_window_ns=0)
