"""perfsuite's import graph, read from the source with `ast`: no import cycles, nothing imports the CLI,
and every module sits in one declared layer and imports only from its own layer or below (#15).

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

#: The one layer table (docs/architecture.md draws it), lowest first. Data flows one way, up the table:
#: scenario -> worker -> executors -> runner (rows in results.jsonl) -> analysis -> report / compare / ab.
#: A module may import modules of its own layer or of a lower one, never of a higher one; a package's
#: entry places all its modules (arrows inside one package are left to the cycle test). A new top-level
#: module or package must be placed here, or `test_every_module_has_a_layer` fails.
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    ("shared base", ("perfsuite", "text", "errors", "results", "measure", "environment")),
    ("neurons", ("neurons",)),
    ("built on neurons", ("kernels", "tasks", "peers", "workloads")),
    ("scenario", ("scenario",)),
    ("measurements beside the timed run", ("profile", "extrapolation", "kernels_static", "kernels_compile")),
    ("worker", ("worker",)),
    ("executors", ("executors",)),
    ("run records", ("summary", "merge")),
    ("runner", ("runner",)),
    ("analysis", ("analysis",)),
    ("outputs", ("report", "stats", "verdicts", "compare", "compare_output", "ab_output")),
    ("gates that run again", ("ab", "ab_server", "rerun")),
    ("command line", ("cli", "__main__")),
]
#: The reading side takes stored rows only: it never imports the measuring side, even where the layer
#: table alone would allow it (analysis, compare and report sit above the runner).
READERS = ("analysis", "report", "stats", "verdicts", "compare", "compare_output", "ab_output")
MEASURING = ("scenario", "workloads", "worker", "executors", "runner", "extrapolation")
LAYER_OF: dict[str, int] = {("perfsuite" if u == "perfsuite" else f"perfsuite.{u}"): i
                            for i, (_, units) in enumerate(LAYERS) for u in units}
#: the most lines one module may have
MAX_LINES = 500


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


def layer_of(module: str, table: dict[str, int]) -> int | None:
    """The layer of ``module``: its own entry, else that of the nearest package above it (the root
    package's entry places only the root's ``__init__``); None when nothing places it."""
    parts = module.split(".")
    for n in range(len(parts), 1, -1):
        if ".".join(parts[:n]) in table:
            return table[".".join(parts[:n])]
    return table.get(module)


def upward_imports(graph: dict[str, set[str]], table: dict[str, int]) -> list[str]:
    """Every arrow from a module to a module of a higher layer, as 'a (layer i) imports b (layer j)'."""
    return [f"{m} (layer {layer_of(m, table)}) imports {t} (layer {layer_of(t, table)})"
            for m, ts in sorted(graph.items()) for t in sorted(ts)
            if layer_of(m, table) is not None and layer_of(t, table) is not None
            and layer_of(t, table) > layer_of(m, table)]


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


def test_no_module_imports_a_higher_layer(graph):
    bad = upward_imports(graph, LAYER_OF)
    assert bad == [], "imports against the layer table (move the code down, or place the module higher):\n" + \
        "\n".join(bad)


def test_readers_of_stored_rows_never_import_the_measuring_side(graph):
    def unit(m: str) -> str:
        return m.split(".")[1] if "." in m else ""

    bad = sorted(f"{m} imports {t}" for m, ts in graph.items() if unit(m) in READERS
                 for t in ts if unit(t) in MEASURING)
    assert bad == [], bad
    assert all(f"perfsuite.{u}" in LAYER_OF for u in READERS + MEASURING)


def test_every_module_has_a_layer(graph):
    unplaced = sorted(m for m in graph if layer_of(m, LAYER_OF) is None)
    assert unplaced == [], f"modules missing from LAYERS in tests/test_layering.py (place each one): {unplaced}"
    stale = sorted(u for u in LAYER_OF if u not in graph)
    assert stale == [], f"LAYERS names modules that do not exist: {stale}"


def test_every_module_is_small_and_says_what_it_owns():
    for name, path in module_names(ROOT / "perfsuite").items():
        text = path.read_text(encoding="utf-8")
        assert len(text.splitlines()) <= MAX_LINES, f"{path.relative_to(ROOT)}: over {MAX_LINES} lines; split it"
        assert ast.get_docstring(ast.parse(text)), f"{name} has no module docstring (what it owns, what it imports)"


def test_the_layer_table_follows_the_flow():
    """The flow of a run, read off the table: each stage sits above the one whose output it takes."""
    order = ["scenario", "worker", "executors", "runner", "analysis", "report", "ab", "cli"]
    layers = [LAYER_OF[f"perfsuite.{m}"] for m in order]
    assert layers == sorted(layers) and len(set(layers)) == len(layers), dict(zip(order, layers))
    assert LAYER_OF["perfsuite.compare"] == LAYER_OF["perfsuite.report"] > LAYER_OF["perfsuite.analysis"]


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


def test_layers_find_an_upward_arrow_and_place_submodules(tmp_path):
    pkg = _package(tmp_path, {
        "low.py": "def f():\n    from .high import g\n",  # a lazy upward arrow still counts
        "high.py": "from . import low\n",
        "sub/__init__.py": "", "sub/inner.py": "from ..low import f\n",
        "stray.py": "",
    })
    g = import_graph(pkg)
    table = {"pkg": 0, "pkg.low": 0, "pkg.sub": 1, "pkg.high": 2}
    assert layer_of("pkg.sub.inner", table) == 1 and layer_of("pkg.stray", table) is None
    assert upward_imports(g, table) == ["pkg.low (layer 0) imports pkg.high (layer 2)"]
    assert upward_imports(g, {**table, "pkg.high": 0}) == []  # same layer: allowed
