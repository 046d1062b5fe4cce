"""Every benchmark script uses the public API: no imported module path or name starting with `_`, and no
`obj._private` attribute (nor `getattr(obj, "_private")`) of anything but the script's own `self`/`cls`."""
import ast

import pytest

from conftest import ROOT

SCRIPTS = sorted((ROOT / "benchmarks").glob("*.py"))


def _private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def private_uses(source: str) -> list[str]:
    """`line: code` of every private import or attribute use in `source`."""
    found = []
    for node in ast.walk(ast.parse(source)):
        bad = False
        if isinstance(node, ast.ImportFrom):
            bad = (any(_private(p) for p in (node.module or "").split("."))
                   or any(_private(a.name) for a in node.names))
        elif isinstance(node, ast.Import):
            bad = any(_private(p) for a in node.names for p in a.name.split("."))
        elif isinstance(node, ast.Attribute):
            owner = node.value.id if isinstance(node.value, ast.Name) else None
            bad = _private(node.attr) and owner not in ("self", "cls")
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in ("getattr", "setattr"):
            bad = (len(node.args) > 1 and isinstance(node.args[1], ast.Constant)
                   and isinstance(node.args[1].value, str) and _private(node.args[1].value))
        if bad:
            found.append(f"{node.lineno}: {ast.unparse(node)}")
    return found


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_benchmark_uses_only_the_public_api(script):
    assert private_uses(script.read_text()) == []


def test_the_check_finds_private_imports_and_attributes():
    source = ("from __future__ import annotations\nfrom sparsenas.hardware.lut import LatencyTable, _traces\n"
              "from sparsenas._impl import x\nimport sparsenas._impl\nsearch._record = timed\n"
              "search._step(search.w_opt)\ngetattr(search, '_loss')\nself._cache = {}\nx.__class__\n")
    assert sorted(int(use.split(":")[0]) for use in private_uses(source)) == [2, 3, 4, 5, 6, 7]
