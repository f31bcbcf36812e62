"""Every ``astralog …`` command the docs, README, SECURITY.md and the product's own messages
tell someone to run exists: a renamed or misspelled command fails here, not in front of an
operator in the middle of a key rotation."""

from __future__ import annotations

import argparse
import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

from astralog.cli import build_parser

ROOT = Path(__file__).resolve().parents[1]
ASTRALOG = str(Path(sys.executable).with_name("astralog"))
# Where a command starts: a line (shell blocks), a backtick, a parenthesis, a prompt, an
# installed path or a colon; never mid-sentence ("the astralog service") or a cron user field.
NAMED = re.compile(r"(?:^\s*|`|\(|\$ |/bin/|: )astralog((?: [a-z][a-z0-9-]*)+)", re.MULTILINE)


def _texts() -> list[tuple[str, str]]:
    """(where, text): the Markdown files whole, and every string constant of the package (an
    implicitly concatenated message is one constant, so a command split across lines is whole)."""
    docs = [*sorted((ROOT / "docs").glob("*.md")), ROOT / "README.md", ROOT / "SECURITY.md"]
    found = [(str(p.relative_to(ROOT)), p.read_text()) for p in docs]
    for path in sorted((ROOT / "astralog").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                found.append((str(path.relative_to(ROOT)), node.value))
    return found


def _command(words: list[str], parser: argparse.ArgumentParser) -> tuple[str, ...] | None:
    """The command ``words`` name, as the words of its parser and its verb (``keys rotate``), or
    None when a word that must be a command or a verb is not one."""
    path: list[str] = []
    for word in words:
        choices = _subcommands(parser)
        if choices is None:
            verbs = _verbs(parser)  # a command whose first positional is a fixed verb
            if verbs is None:
                break  # the rest are the command's arguments
            return (*path, word) if word in verbs else None
        if word not in choices:
            return None
        path.append(word)
        parser = choices[word]
    return tuple(path)


def _subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser] | None:
    for action in parser._actions:  # argparse keeps no public list of subparsers
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return None


def _verbs(parser: argparse.ArgumentParser) -> set[str] | None:
    positionals = [a for a in parser._actions if not a.option_strings]
    if positionals and positionals[0].choices is not None:
        return {str(c) for c in positionals[0].choices}
    return None


def _named() -> dict[tuple[str, ...], list[str]]:
    parser, named = build_parser(), dict[tuple[str, ...], list[str]]()
    for where, text in _texts():
        for match in NAMED.finditer(text):
            command = _command(match.group(1).split(), parser)
            key = command if command is not None else ("?", *match.group(1).split())
            named.setdefault(key, []).append(where)
    return named


def test_every_named_command_exists() -> None:
    named = _named()
    missing = {" ".join(k[1:]): v for k, v in named.items() if k[0] == "?"}
    assert missing == {}, f"no such astralog command (named in these files): {missing}"
    assert len(named) >= 15, sorted(named)  # the scan finds them at all


@pytest.mark.parametrize("command", sorted({" ".join(k) for k in _named() if k[0] != "?"}))
def test_every_named_command_answers_help(command: str) -> None:
    done = subprocess.run(
        [ASTRALOG, *command.split(), "--help"], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    usage = " ".join(done.stdout.split())  # argparse wraps a long verb list
    assert usage.startswith("usage: astralog " + command.split()[0]), done.stdout
    assert all(word in usage for word in command.split()), done.stdout
