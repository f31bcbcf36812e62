"""Every reason single sign-on can fail with reaches the person as a sentence they can act on:
the reasons are collected from the source (each ``SsoFailure("<reason>", ...)`` in astralog/) and
the UI's table (astralog/ui/sso_errors.js) must have each. The claims preview says truly what it
shows.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "astralog"
MESSAGES = PACKAGE / "ui" / "sso_errors.js"


def _strings(node: ast.AST) -> set[str]:
    """The strings an expression can evaluate to: a constant, or either branch of ``a if c
    else b`` (not the condition's own strings)."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return {node.value}
    if isinstance(node, ast.IfExp):
        return _strings(node.body) | _strings(node.orelse)
    return set()


def _reasons_in(tree: ast.AST) -> set[str]:
    """The first argument of every SsoFailure(...) call; a variable is followed to the strings
    assigned to it in the same function (``reason = "a" if ... else "b"``)."""
    found: set[str] = set()
    for function in ast.walk(tree):
        if not isinstance(function, ast.FunctionDef | ast.AsyncFunctionDef | ast.Module):
            continue
        assigned: dict[str, set[str]] = {}
        for node in ast.walk(function):
            if isinstance(node, ast.Assign):
                for target in node.targets:
                    if isinstance(target, ast.Name):
                        assigned.setdefault(target.id, set()).update(_strings(node.value))
        for node in ast.walk(function):
            if not (isinstance(node, ast.Call) and getattr(node.func, "id", "") == "SsoFailure"):
                continue
            first = node.args[0]
            strings = (
                assigned.get(first.id, set()) if isinstance(first, ast.Name) else _strings(first)
            )
            assert strings, f"cannot tell the reason of {ast.unparse(node)[:120]}"
            found |= strings
    return found


def sso_reasons() -> set[str]:
    reasons: set[str] = set()
    for path in PACKAGE.rglob("*.py"):
        reasons |= _reasons_in(ast.parse(path.read_text(), str(path)))
    return reasons


def ui_messages() -> set[str]:
    text = MESSAGES.read_text()
    table = text[text.index("const MESSAGES = {") : text.index("\n};")]
    return set(re.findall(r"^\s+([a-z_]+): ", table, re.MULTILINE))


def test_the_reasons_are_found() -> None:
    reasons = sso_reasons()
    assert {"no_role", "state_mismatch", "email_in_use", "token_expired", "bad_claims"} <= reasons
    assert len(reasons) > 25


def test_every_sso_failure_reason_has_a_message_in_the_ui() -> None:
    missing = sso_reasons() - ui_messages()
    assert not missing, f"astralog/ui/sso_errors.js has no message for {sorted(missing)}"


def test_every_page_that_shows_an_sso_failure_uses_the_messages() -> None:
    for name in ("signin.js", "mfa.js"):
        source = (PACKAGE / "ui" / name).read_text()
        assert "signin_error" in source and "ssoErrorText(" in source, name


def test_the_claims_preview_says_what_it_shows() -> None:
    """idp.redact_claims keeps what the rules read and the protocol's own claims, not "the
    standard claims" (name, given_name... are redacted)."""
    source = (PACKAGE / "ui" / "sso.js").read_text()
    assert "outside the standard claims" not in source
    assert "the claims your rules read" in source
