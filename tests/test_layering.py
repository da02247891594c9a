"""The import layering of ``src/qpuflow`` (DESIGN.md, "Layout"): a module imports only from its
own layer or the layers below it, at module level or inside functions, and the import graph has
no cycle beyond the ones listed here.

The package is still flat (issue 14 moves it into packages by layer); ``LAYERS`` assigns each
module the layer it belongs to. ``KNOWN_UPWARD`` and ``KNOWN_CYCLES`` are today's exceptions,
each with its reason: the test fails on any new one, and on a listed one that is gone (so the
lists only shrink). Imports under ``if TYPE_CHECKING:`` are annotations, not dependencies.
"""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "qpuflow"

# ground < study < store < science < providers < budget < planning < stages = analysis < rules = cli
ORDER = ["ground", "study", "store", "science", "providers", "budget", "planning", "stages", "rules"]
LAYERS = {
    "ground": ["errors", "provenance", "interrupts", "faults", "stats", "qpyio", "backend_names", "fileio"],
    "study": ["config", "plan", "paths", "packs"],
    "store": ["records", "ledger", "rebuild", "exports"],
    "science": ["measurement_map", "stim_qiskit", "circuits", "native", "backends", "chains", "transpile", "circuit_identity", "stim_noise",
                "device_state", "simulate", "preflight", "uniform_noise", "dem", "decode", "distance", "placement",
                "probe", "drift"],
    "providers": ["providers", "emulator"],
    "budget": ["budget"],
    "planning": ["schedule", "sessions", "batches", "campaign", "study_state", "planner", "power", "power_plan"],
    "stages": ["stages", "submit", "collect", "reconcile", "pipeline", "analysis_views",
               "analysis", "paired", "per_round", "summary", "dataset", "status_page", "overview"],
    "rules": ["smk", "wf", "cli"],
}
KNOWN_UPWARD = {
    # The local provider and the emulator bill a simulated job with the cost model the budget
    # uses; the model (not the accounting) belongs below the providers.
    ("providers.local", "budget"),
    ("emulator", "budget"),
    # A campaign's cost estimate builds one representative circuit per kind of run the way
    # the stages do; the shared builders belong in a lower layer.
    ("campaign", "stages"),
}
KNOWN_CYCLES: set[frozenset[str]] = set()  # none left


def _layer_of(module: str) -> str:
    top = module.split(".")[0]
    for layer, members in LAYERS.items():
        if top in members:
            return layer
    raise AssertionError(f"qpuflow.{module} has no layer in tests/test_layering.py: add it to LAYERS")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _type_checking_nodes(tree: ast.AST) -> set[int]:
    skip: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skip.update(id(child) for child in ast.walk(node))
    return skip


def _imports(path: Path) -> set[str]:
    """qpuflow modules ``path`` imports (without the ``qpuflow.`` prefix)."""
    tree = ast.parse(path.read_text())
    skip = _type_checking_nodes(tree)
    found: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").startswith("qpuflow."):
            base = node.module.removeprefix("qpuflow.")
            found.add(base)
            found.update(f"{base}.{a.name}" for a in node.names
                         if (SRC / base.replace(".", "/") / f"{a.name}.py").exists())
        elif isinstance(node, ast.Import):
            found.update(a.name.removeprefix("qpuflow.") for a in node.names if a.name.startswith("qpuflow."))
    return found


def _graph() -> dict[str, set[str]]:
    graph = {}
    for path in SRC.rglob("*.py"):
        name = _module_name(path)
        if name:
            graph[name] = {m for m in _imports(path) if m != name}
    return graph


def _collapse(module: str) -> str:
    """Packages count as one node (providers.local stays itself: it is named in KNOWN_UPWARD)."""
    top = module.split(".")[0]
    return module if top == "providers" else top


def test_no_module_imports_from_a_higher_layer():
    upward = set()
    for module, imported in _graph().items():
        for other in imported:
            src, dst = _collapse(module), _collapse(other)
            if src.split(".")[0] == dst.split(".")[0]:
                continue
            if ORDER.index(_layer_of(dst)) > ORDER.index(_layer_of(src)):
                upward.add((src, dst.split(".")[0]))
    assert upward - KNOWN_UPWARD == set(), f"imports from a higher layer: {sorted(upward - KNOWN_UPWARD)}"
    assert KNOWN_UPWARD - upward == set(), f"gone (remove from KNOWN_UPWARD): {sorted(KNOWN_UPWARD - upward)}"


def test_no_import_cycles_beyond_the_known_ones():
    graph: dict[str, set[str]] = {}
    for module, imported in _graph().items():
        node = module.split(".")[0]
        graph.setdefault(node, set()).update(m.split(".")[0] for m in imported if m.split(".")[0] != node)
    cycles = set()
    for a, targets in graph.items():
        for b in targets:
            if a in _reachable(graph, b):
                cycles.add(frozenset(_cycle_members(graph, a)))
    assert cycles == KNOWN_CYCLES, f"import cycles (strongly connected modules): {[sorted(c) for c in cycles]}"


def _reachable(graph: dict[str, set[str]], start: str) -> set[str]:
    seen, stack = set(), [start]
    while stack:
        node = stack.pop()
        if node not in seen:
            seen.add(node)
            stack.extend(graph.get(node, ()))
    return seen


def _cycle_members(graph: dict[str, set[str]], node: str) -> set[str]:
    return {other for other in _reachable(graph, node) if node in _reachable(graph, other)}


def test_the_check_sees_function_local_imports(tmp_path: Path):
    """The checker itself: an import inside a function counts, one under TYPE_CHECKING does not."""
    module = tmp_path / "m.py"
    module.write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from qpuflow.wf import Study\n"
                      "def f():\n    from qpuflow.smk import run_step\n")
    assert _imports(module) == {"smk"}


def _length_without_docstring(node: ast.FunctionDef | ast.AsyncFunctionDef) -> int:
    body = node.body
    if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) \
            and isinstance(body[0].value.value, str):
        body = body[1:]
    if not body:
        return 0
    signature = node.body[0].lineno - node.lineno  # def line(s), decorators excluded
    return signature + body[-1].end_lineno - body[0].lineno + 1 + 1


def test_no_function_is_over_60_lines_without_a_reason():
    """Issue 14: a function longer than 60 lines (its docstring not counted) says why in its
    docstring ("Long because ...")."""
    long = []
    for path in sorted(SRC.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and _length_without_docstring(node) > 60:
                if "long because" not in (ast.get_docstring(node) or "").lower():
                    long.append(f"{path.relative_to(SRC)}:{node.lineno} {node.name} "
                                f"({_length_without_docstring(node)} lines)")
    assert not long, "functions over 60 lines without a reason:\n" + "\n".join(long)
