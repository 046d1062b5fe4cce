"""Layers that only point down: every module of the package imports, and the package's own imports (read with
`ast`, inside functions too, outside `if TYPE_CHECKING:`) form no cycle. Only optional or slow third-party
libraries may be imported inside a function; a module of the package never is."""
import ast
import importlib

import pytest

from conftest import ROOT

PACKAGE = "sparsenas"
# modules of the package that may be imported inside a function, and why
LAZY = {"sparsenas.plots": "matplotlib: ~0.3 s to import, needed only when a figure is drawn"}


def _modules() -> dict[str, ast.Module]:
    """{dotted module name: its syntax tree} for every .py file of the package."""
    out = {}
    for path in sorted((ROOT / PACKAGE).rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = ast.parse(path.read_text(encoding="utf-8"), str(path))
    return out


MODULES = _modules()


def _is_package(name: str) -> bool:
    return (ROOT / name.replace(".", "/") / "__init__.py").is_file()


def _type_checking_only(tree: ast.Module) -> set[int]:
    """ids of the import nodes under `if TYPE_CHECKING:` (never run)."""
    skip = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skip |= {id(n) for stmt in node.body for n in ast.walk(stmt)}
    return skip


def _targets(module: str, node: ast.Import | ast.ImportFrom) -> set[str]:
    """The package's modules that one import statement loads (none for a third-party import)."""
    if isinstance(node, ast.Import):
        names = [alias.name for alias in node.names]
    else:
        base = module if _is_package(module) else module.rpartition(".")[0]
        for _ in range(node.level - 1):
            base = base.rpartition(".")[0]
        base = (f"{base}.{node.module}" if node.module else base) if node.level else node.module
        names = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in MODULES else base for alias in node.names]
    found = set()
    for name in names:
        while name and name not in MODULES:
            name = name.rpartition(".")[0]
        if name and name != module:
            found.add(name)
    return found


def _imports(inside_functions: bool = False) -> dict[str, dict[str, int]]:
    """{module: {imported module: line}} of every import; with `inside_functions` only those made inside a
    function."""
    graph = {}
    for module, tree in MODULES.items():
        skip = _type_checking_only(tree)
        nodes = [n for n in ast.walk(tree) if isinstance(n, (ast.Import, ast.ImportFrom)) and id(n) not in skip]
        if inside_functions:
            in_function = {id(n) for f in ast.walk(tree) if isinstance(f, (ast.FunctionDef, ast.AsyncFunctionDef))
                           for n in ast.walk(f)}
            nodes = [n for n in nodes if id(n) in in_function]
        graph[module] = {target: node.lineno for node in nodes for target in _targets(module, node)}
    return graph


def _cycle(graph: dict[str, dict[str, int]]) -> list[str] | None:
    """One cycle of the graph (its modules in import order, the first repeated at the end), or None."""
    state: dict[str, int] = {}  # 1 on the current path, 2 done
    path: list[str] = []

    def visit(node):
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, {})):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        state[node] = 2
        path.pop()
        return None

    for start in sorted(graph):
        if start not in state and (found := visit(start)):
            return found
    return None


def test_the_graph_is_read():
    graph = _imports()
    assert len(MODULES) > 40
    assert "sparsenas.ops.deploy" in graph["sparsenas.hardware.base"]  # a relative `from ..x.y import`
    assert "sparsenas.spaces" in graph["sparsenas.assemble"]  # `from . import spaces`
    assert _cycle({"a": {"b": 1}, "b": {"c": 1}, "c": {"a": 1}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b": 1}, "b": {}}) is None


@pytest.mark.parametrize("module", sorted(set(MODULES) - {f"{PACKAGE}.__main__"}))  # __main__ runs the CLI
def test_every_module_imports(module):
    importlib.import_module(module)


def test_no_import_cycle():
    cycle = _cycle(_imports())
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_no_module_of_the_package_is_imported_inside_a_function():
    hidden = [f"{module} imports {target} (line {line})"
              for module, targets in _imports(inside_functions=True).items() for target, line in targets.items()
              if target not in LAZY]
    assert not hidden, "imports inside functions hide the layers: " + "; ".join(hidden)


def test_modules_and_functions_stay_small():
    """Small modules with one job: none over 400 lines, no function over 60 (issue 17's bar)."""
    files = sorted((ROOT / PACKAGE).rglob("*.py"))
    long_modules = [f"{f.relative_to(ROOT)} ({n} lines)" for f in files
                    if (n := len(f.read_text().splitlines())) > 400]
    long_functions = [f"{m}.{f.name} ({f.end_lineno - f.lineno + 1} lines)" for m, t in MODULES.items()
                      for f in ast.walk(t) if isinstance(f, (ast.FunctionDef, ast.AsyncFunctionDef))
                      and f.end_lineno - f.lineno + 1 > 60]
    assert not long_modules and not long_functions, long_modules + long_functions
