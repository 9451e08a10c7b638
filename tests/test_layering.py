"""perfsuite's import graph, read from the source with `ast`: no import cycles, nothing imports the CLI.

Every ``import`` / ``from ... import`` counts, at module level and inside functions (a function-level
import is still an arrow between modules, only a later one). Imports by string (``importlib``) are not
arrows: they are how providers and plugins are found at run time.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

#: Import cycles still in the code on this branch, each named by the arrow that closes it (importer,
#: imported). Other branches remove them (#15); the lead empties this list after merging them. An entry
#: whose arrow is gone fails the test, so the list cannot outlive the cycle it excuses.
KNOWN_CYCLES: dict[str, tuple[str, str]] = {}
#: the only modules that may import perfsuite.cli: the `python -m perfsuite` entry point
CLI = "perfsuite.cli"
CLI_IMPORTERS = {"perfsuite.__main__"}


# ------------------------------------------------------------------------------------------ graph
def module_names(package_dir: Path) -> dict[str, Path]:
    """Dotted module name -> file for every .py file of the package at ``package_dir``."""
    base = package_dir.parent
    out = {}
    for path in sorted(package_dir.rglob("*.py")):
        parts = list(path.relative_to(base).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def _resolve(module: str, is_package: bool, node: ast.ImportFrom) -> str:
    """The absolute module named by a (possibly relative) ``from X import ...``."""
    if node.level == 0:
        return node.module or ""
    anchor = module.split(".") if is_package else module.split(".")[:-1]
    anchor = anchor[: len(anchor) - (node.level - 1)]
    return ".".join(anchor + ([node.module] if node.module else []))


def import_graph(package_dir: Path) -> dict[str, set[str]]:
    """Module -> the modules of the same package it imports (``from pkg import mod`` counts as importing
    ``pkg.mod`` when that is a module, else ``pkg``)."""
    modules = module_names(package_dir)
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for mod, path in modules.items():
        is_package = path.name == "__init__.py"
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                src = _resolve(mod, is_package, node)
                targets = [f"{src}.{a.name}" if f"{src}.{a.name}" in modules else src for a in node.names]
            for t in targets:
                # `import pkg.a.b` imports pkg.a.b; keep the longest prefix that is a module of the package
                while t and t not in modules:
                    t = t.rpartition(".")[0]
                if t and t != mod:
                    graph[mod].add(t)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan), each sorted; sorted list."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return sorted(found)


def without(graph: dict[str, set[str]], arrows) -> dict[str, set[str]]:
    return {m: {t for t in ts if (m, t) not in set(arrows)} for m, ts in graph.items()}


# ------------------------------------------------------------------------------------------ perfsuite
@pytest.fixture(scope="module")
def graph():
    return import_graph(ROOT / "perfsuite")


def test_no_import_cycle_outside_the_named_allow_list(graph):
    left = cycles(without(graph, KNOWN_CYCLES.values()))
    assert left == [], f"import cycles among perfsuite modules: {left}"


def test_every_allowed_cycle_still_exists(graph):
    """An allow-list entry whose arrow is gone (the cycle was broken) must be removed from the list."""
    stale = [name for name, (a, b) in KNOWN_CYCLES.items() if b not in graph[a]]
    assert stale == [], f"cycles no longer in the code; remove them from KNOWN_CYCLES: {stale}"
    for name, (a, b) in KNOWN_CYCLES.items():
        assert any(a in c and b in c for c in cycles(graph)), f"{name}: {a} -> {b} no longer closes a cycle"


def test_neurons_base_does_not_import_the_registry(graph):
    assert "perfsuite.neurons.registry" not in graph["perfsuite.neurons.base"]
    assert "perfsuite.neurons.base" not in graph["perfsuite.neurons.backends"]
    assert "perfsuite.neurons.registry" not in graph["perfsuite.neurons.backends"]


def test_nothing_imports_the_cli(graph):
    def in_cli(m: str) -> bool:
        return m == CLI or m.startswith(CLI + ".")

    importers = sorted(m for m, ts in graph.items()
                       if any(in_cli(t) for t in ts) and m not in CLI_IMPORTERS and not in_cli(m))
    assert importers == [], f"{importers} import {CLI}; the CLI sits on top and nothing may import it"


def test_the_graph_sees_the_package(graph):
    """The reader must find real arrows (guards against a graph that is empty and so has no cycle)."""
    assert {"perfsuite.neurons.base", "perfsuite.cli", "perfsuite.profile"} <= set(graph)
    assert "perfsuite.neurons.backends" in graph["perfsuite.neurons.base"]  # module level, relative
    assert "perfsuite.runner" in graph["perfsuite.cli.run"]  # function level
    assert "perfsuite.neurons" in graph["perfsuite.workloads"]  # `from . import neurons`


# ------------------------------------------------------------------------------- synthetic package
def _package(tmp_path: Path, files: dict[str, str]) -> Path:
    pkg = tmp_path / "pkg"
    for name, text in {"__init__.py": "", **files}.items():
        (pkg / name).parent.mkdir(parents=True, exist_ok=True)
        (pkg / name).write_text(text)
    return pkg


def test_a_cycle_not_in_the_list_is_found(tmp_path):
    pkg = _package(tmp_path, {
        "a.py": "from . import b\n",
        "b.py": "def f():\n    from .sub.c import g\n",  # a function-level arrow closes the cycle
        "sub/__init__.py": "",
        "sub/c.py": "import pkg.a\n",
        "d.py": "from .a import x\nimport os\n",  # no cycle through d; stdlib is not an arrow
    })
    g = import_graph(pkg)
    assert g["pkg.a"] == {"pkg.b"} and g["pkg.b"] == {"pkg.sub.c"} and g["pkg.sub.c"] == {"pkg.a"}
    assert g["pkg.d"] == {"pkg.a"}
    assert cycles(g) == [["pkg.a", "pkg.b", "pkg.sub.c"]]
    # an allow-listed arrow removes only its own cycle
    assert cycles(without(g, [("pkg.sub.c", "pkg.a")])) == []
    assert cycles(without(g, [("pkg.d", "pkg.a")])) == [["pkg.a", "pkg.b", "pkg.sub.c"]]


def test_two_cycles_and_relative_parent_imports(tmp_path):
    pkg = _package(tmp_path, {
        "x.py": "from .y import f\n",
        "y.py": "from . import x\n",
        "sub/__init__.py": "from .. import z\n",
        "z.py": "from .sub import thing\n",  # thing is a name in pkg.sub, not a module
    })
    g = import_graph(pkg)
    assert g["pkg.sub"] == {"pkg.z"} and g["pkg.z"] == {"pkg.sub"}
    assert cycles(g) == [["pkg.sub", "pkg.z"], ["pkg.x", "pkg.y"]]
    assert cycles(without(g, [("pkg.y", "pkg.x")])) == [["pkg.sub", "pkg.z"]]
