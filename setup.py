"""The package list for the folder mapping in pyproject.toml (``[tool.setuptools] package-dir``).

``packages.find`` names a package after its folder, so it would install ``connectors/`` as a
top-level ``connectors``; this names every package below a mapped folder after the mapping
instead (``connectors/s3`` -> ``astralog.connectors.s3``). Everything else is in pyproject.toml.
"""

from __future__ import annotations

import tomllib
from pathlib import Path

from setuptools import find_namespace_packages, setup

ROOT = Path(__file__).resolve().parent


def mapped_packages() -> list[str]:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    mapping: dict[str, str] = config["tool"]["setuptools"]["package-dir"]
    packages = []
    for name, folder in mapping.items():
        below = find_namespace_packages(str(ROOT / folder), exclude=["*__pycache__*"])
        packages += [name, *(f"{name}.{sub}" for sub in below if f"{name}.{sub}" not in mapping)]
    return sorted(set(packages))


setup(packages=mapped_packages())
