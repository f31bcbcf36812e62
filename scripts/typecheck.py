"""mypy over the package as it installs: ``connectors/`` checked as ``astralog.connectors``.

mypy names a module after its folder and cannot follow setuptools' ``package-dir`` mapping (nor
the import hook of an editable install), so plain ``mypy`` checks ``connectors/`` as a package
of its own and sees ``astralog.connectors`` from the rest of the code as an unknown module. This
runs mypy with the configuration of pyproject.toml and the module names of the mapping, so the
code on both sides of it is checked together. Extra arguments go to mypy (e.g. ``--strict``).

Usage: ``.venv/bin/python scripts/typecheck.py`` (``make lint`` runs it).
"""

from __future__ import annotations

import sys
import tomllib
from pathlib import Path

from mypy import build
from mypy.errors import CompileError
from mypy.fscache import FileSystemCache
from mypy.main import process_options
from mypy.modulefinder import BuildSource

ROOT = Path(__file__).resolve().parents[1]


def package_dirs() -> dict[Path, str]:
    """Mapped folders (other than the identity) and the package name each installs as."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    mapping: dict[str, str] = config["tool"]["setuptools"]["package-dir"]
    return {(ROOT / folder).resolve(): name for name, folder in mapping.items() if name != folder}


def installed_name(source: BuildSource, mapping: dict[Path, str]) -> BuildSource:
    path = Path(source.path or "").resolve()
    for folder, package in mapping.items():
        if path.is_relative_to(folder):
            parts = list(path.relative_to(folder).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            module = ".".join([package, *parts])
            return BuildSource(source.path, module, None, str(ROOT))
    return source


def main(argv: list[str]) -> int:
    fscache = FileSystemCache()
    sources, options = process_options(argv, fscache=fscache)
    mapping = package_dirs()
    sources = [installed_name(s, mapping) for s in sources]
    try:
        result = build.build(sources, options, fscache=fscache)
        messages = result.errors
    except CompileError as failed:
        messages = failed.messages
    for line in messages:
        print(line)
    errors = sum(": error:" in m for m in messages)
    if errors:
        print(f"Found {errors} errors (checked {len(sources)} source files)")
        return 1
    print(f"Success: no issues found in {len(sources)} source files")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
