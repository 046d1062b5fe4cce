"""Preset YAML files for `--space NAME` (search_spaces) and `--strategy NAME` (strategies).

In the source tree they are the plain top-level folders search_spaces/ and strategies/ (not Python
packages); pyproject.toml ships them as this package's data, so an installed wheel holds them in
sparsenas/presets/<kind>/.
"""
from __future__ import annotations

from importlib import resources
from importlib.abc import Traversable
from pathlib import Path

KINDS = ("search_spaces", "strategies")
SOURCE_TREE = Path(__file__).resolve().parents[2]


def folder(kind: str) -> Traversable:
    """The folder of the presets of `kind`: the installed package data, else the source tree's folder."""
    if kind not in KINDS:
        raise ValueError(f"unknown preset kind {kind!r} (known: {', '.join(KINDS)})")
    installed = resources.files(__name__) / kind
    return installed if installed.is_dir() else SOURCE_TREE / kind
