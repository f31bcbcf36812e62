"""The one probe runner: a connection check as named steps, run in order, one ``Check`` each.

A destination lists its steps (write a canary, read it back, list, delete, or ask the server
for each privilege) and says, for a step that raised, what went wrong for a person and whether
the steps after it can still tell anything. A step that cannot tell anything is reported as
"not run", with the reason, so the admin reads one list that names every problem found.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from .base import Check

__all__ = ["Explain", "ProbeMismatch", "Step", "expect", "run_probe"]


class ProbeMismatch(Exception):
    """A step ran without an error from the storage but observed the wrong thing."""


def expect(condition: bool, message: str) -> None:
    """Fail the running step with ``message`` unless ``condition`` holds."""
    if not condition:
        raise ProbeMismatch(message)


@dataclass(frozen=True)
class Step:
    """One step: ``run`` returns what a passed step says, and raises when it fails.

    ``needs`` names an earlier step that must have passed for this one to mean anything;
    ``needs_why`` is the "not run" reason when it did not."""

    name: str
    run: Callable[[], Awaitable[str]]
    needs: str = ""
    needs_why: str = ""


# What a failed step says and whether it stops the steps after it; None: not a storage
# problem (a bug), raised as it is.
Explain = Callable[[str, Exception], tuple[str, bool] | None]


async def run_probe(steps: Sequence[Step], explain: Explain) -> list[Check]:
    """Every step's :class:`Check`, in order; after a stopping failure the rest are not run."""
    checks: dict[str, Check] = {}
    blocked = ""
    for step in steps:
        if blocked:
            checks[step.name] = Check(step.name, False, f"not run: {blocked}")
        elif step.needs and not checks[step.needs].ok:
            checks[step.name] = Check(step.name, False, f"not run: {step.needs_why}")
        else:
            checks[step.name], stops = await _run(step, explain)
            blocked = f"step {step.name!r} failed" if stops else ""
    return list(checks.values())


async def _run(step: Step, explain: Explain) -> tuple[Check, bool]:
    try:
        detail = await step.run()
    except Exception as exc:
        failure = explain(step.name, exc)
        if failure is None:
            raise
        return Check(step.name, False, failure[0]), failure[1]
    return Check(step.name, True, detail), False
