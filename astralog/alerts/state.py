"""The state machine of one alert instance (an alert, or one group of a grouped alert).

Pure: :func:`step` takes the instance's state, whether the condition held at this evaluation,
the evaluation time and whether a silence mutes it, and returns the next state and, when a
message is due, the transition to send. Nothing here reads a clock, a database or the network.

The condition state moves normal -> pending (hits counted) -> firing after ``pending_for``
consecutive hits, and back to normal once it has missed for ``keep_firing_for``. What was last
*told* (``notified``) is tracked apart from it: a message goes out when the condition state and
the told state differ and nothing holds it back. Two things hold it back:

- a silence: the state moves on, nothing is sent; when the silence ends, the difference (if any
  is left) is sent then, so a resolve is never told without its firing, nor the other way;
- the flapping guard: more than ``flap_max_changes`` changes between normal and firing within
  ``flap_window_ns`` marks the instance flapping; it is quiet until it has been stable for a
  whole window, then tells the state it settled in.

Each message carries the instance's next sequence number, from which the evaluator derives a
stable message id: a re-evaluation after a crash reaches the same transition and the same id.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal

from astralog.controlplane.alert_schedule import Policy  # the rule's, checked when it is saved

Condition = Literal["normal", "pending", "firing"]
Told = Literal["normal", "firing"]


@dataclass(frozen=True)
class InstanceState:
    condition: Condition = "normal"
    hits: int = 0  # consecutive hits so far
    last_hit_ns: int | None = None
    notified: Told = "normal"
    changes: tuple[int, ...] = ()  # when the condition last moved between normal and firing
    seq: int = 0  # messages sent so far

    def flapping(self, policy: Policy) -> bool:
        return len(self.changes) > policy.flap_max_changes


@dataclass(frozen=True)
class Transition:
    event: Literal["firing", "resolved"]
    seq: int  # this message's sequence number for the instance (1, 2, ...)


@dataclass(frozen=True)
class Step:
    state: InstanceState
    transition: Transition | None
    held: Literal["silenced", "flapping"] | None = None  # why a due message was not sent


def step(
    prev: InstanceState, hit: bool, now_ns: int, policy: Policy, *, muted: bool = False
) -> Step:
    state = _advance(prev, hit, now_ns, policy)
    if state.condition != prev.condition and "firing" in (state.condition, prev.condition):
        state = replace(state, changes=(*state.changes, now_ns))
    state = replace(
        state, changes=tuple(t for t in state.changes if t > now_ns - policy.flap_window_ns)
    )
    target: Told = "firing" if state.condition == "firing" else "normal"
    if target == state.notified:
        return Step(state, None)
    if state.flapping(policy):
        return Step(state, None, "flapping")
    if muted:
        return Step(state, None, "silenced")
    seq = state.seq + 1
    event: Literal["firing", "resolved"] = "firing" if target == "firing" else "resolved"
    return Step(replace(state, notified=target, seq=seq), Transition(event, seq))


def _advance(prev: InstanceState, hit: bool, now_ns: int, policy: Policy) -> InstanceState:
    """The condition state after this evaluation, before anything is told."""
    if hit:
        hits = prev.hits + 1
        firing = prev.condition == "firing" or hits >= policy.pending_for
        return replace(
            prev, condition="firing" if firing else "pending", hits=hits, last_hit_ns=now_ns
        )
    if prev.condition == "firing":
        last = prev.last_hit_ns if prev.last_hit_ns is not None else now_ns
        if policy.keep_firing_for_ns and now_ns - last < policy.keep_firing_for_ns:
            return replace(prev, hits=0)
    return replace(prev, condition="normal", hits=0)


__all__ = ["Condition", "InstanceState", "Policy", "Step", "Transition", "step"]
