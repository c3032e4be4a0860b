"""The package's import graph: the layers of docs/architecture.md only look down (imports inside functions
included), there is no cycle, nothing imports the CLI, and the model code loads without MLflow or Hydra."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import paraling

PACKAGE = Path(paraling.__file__).resolve().parent


def _graph() -> dict[str, set[str]]:
    mods = {}
    for p in PACKAGE.rglob("*.py"):
        rel = p.relative_to(PACKAGE.parent).with_suffix("")
        mods[".".join(rel.parts[:-1] if rel.name == "__init__" else rel.parts)] = p

    def resolve(name: str) -> str | None:
        while name and name not in mods:
            name = name.rpartition(".")[0]
        return name or None

    graph: dict[str, set[str]] = {m: set() for m in mods}
    for m, p in mods.items():
        pkg = m if p.name == "__init__.py" else m.rpartition(".")[0]
        for node in ast.walk(ast.parse(p.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parts = pkg.split(".")[: len(pkg.split(".")) - node.level + 1]
                    base = ".".join(parts + ([node.module] if node.module else []))
                targets = [base] + [f"{base}.{a.name}" for a in node.names]
            else:
                continue
            for t in targets:
                r = resolve(t)
                if r and r != m and not m.startswith(r + "."):
                    graph[m].add(r)
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []
    counter = [0]
    sys.setrecursionlimit(10000)

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in graph:
        if v not in index:
            visit(v)
    return out


#: The layers, lowest first: a module may import its own layer and the layers below it, never one above.
LAYERS: list[set[str]] = [
    {"errors", "atomic", "filelock", "secrets", "progress", "cache_marker"},  # plain utilities
    {"ops"},  # native CPU kernels and their torch references
    {"device"},  # device and precision choice, host/device crossings
    {"config", "config_groups", "config_compat", "plugins"},  # typed schemas, Hydra composition, plug-in registries
    {"data"},  # audio, manifests, corpus recipes, folds, windows
    {"features"},  # extractors, cache, packs, augmentation
    {"scoring"},  # votes, metrics, out-of-fold scores (arrays only)
    {"models"},  # the CNN, utterance-level estimators, layer transfer
    {"training"},  # the fit loop and its step runners
    {"config_checks"},  # value checks over every group
    {"tracking"},  # MLflow runs, model folders, bundles, the registry
    {"pipeline"},  # the tracked cross-validation runner
    {"ensemble"},  # selection and combiners; assembly from tracked runs
    {"report"},  # tables, tests and curves over tracked runs
    {"search"},  # Optuna studies, workers, executors
    {"serving"},  # prediction, explanations, the pyfunc
    {"bench"},  # the benchmarks
    {"cli", "api", "registry", "paraling", "__main__"},  # entry points, the public surface, compatibility aliases
]


def _layer(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "paraling"


def _upward(graph: dict[str, set[str]], layers: list[set[str]]) -> list[str]:
    """Imports from a module to a module of a higher layer (and modules in no layer)."""
    rank = {name: i for i, layer in enumerate(layers) for name in layer}
    out = []
    for m, deps in graph.items():
        if _layer(m) not in rank:
            out.append(f"{m} is in no layer (add it to LAYERS)")
            continue
        for d in deps:
            if rank.get(_layer(d), len(layers)) > rank[_layer(m)]:
                out.append(f"{m} -> {d}")
    return sorted(out)


def test_layers_only_look_down() -> None:
    assert not _upward(_graph(), LAYERS), "\n".join(_upward(_graph(), LAYERS))


def test_the_layer_check_finds_an_upward_import() -> None:
    graph = {"paraling.data.windows": {"paraling.training.loop"}, "paraling.training.loop": {"paraling.data.windows"}}
    assert _upward(graph, [{"data"}, {"training"}]) == ["paraling.data.windows -> paraling.training.loop"]
    assert _upward({"paraling.newpkg.x": set()}, [{"data"}]) == ["paraling.newpkg.x is in no layer (add it to LAYERS)"]


def test_no_import_cycles() -> None:
    graph = _graph()
    assert len(graph) > 50
    assert not _cycles(graph), _cycles(graph)


def test_the_graph_check_finds_a_cycle() -> None:
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_nothing_imports_the_cli() -> None:
    graph = _graph()
    users = sorted(
        m
        for m, deps in graph.items()
        if not m.startswith("paraling.cli") and any(d.startswith("paraling.cli") for d in deps)
    )
    assert not users, users


def test_model_code_loads_without_mlflow_or_hydra() -> None:
    code = (
        "import sys, paraling.models.transfer, paraling.models.cnn; "
        "print(sorted(m for m in ('mlflow', 'hydra', 'optuna') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "[]", out


def test_no_module_over_400_lines() -> None:
    long = {
        str(p.relative_to(PACKAGE.parent)): n
        for p in PACKAGE.rglob("*.py")
        if (n := len(p.read_text().splitlines())) > 400
    }
    assert not long, long


#: The longest a function's body may be, docstring excluded: one screen with its signature and docstring. The
#: longest functions left are declarative (argument parsers, the fit loop's epoch body); anything longer does
#: several things and is split by what each part does.
MAX_FUNCTION_LINES = 80


def function_lengths(source: str) -> dict[str, int]:
    """Body lines (from the first statement after the docstring to the last line) of every function in ``source``,
    by qualified name."""
    out: dict[str, int] = {}

    def visit(node: ast.AST, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef):
                body = child.body
                if ast.get_docstring(child) is not None:
                    body = body[1:]
                if body:
                    out[f"{prefix}{child.name}"] = (child.end_lineno or body[-1].lineno) - body[0].lineno + 1
                visit(child, f"{prefix}{child.name}.")
            elif isinstance(child, ast.ClassDef):
                visit(child, f"{prefix}{child.name}.")

    visit(ast.parse(source), "")
    return out


def test_function_lengths_counts_the_body_without_docstring() -> None:
    source = (
        'def f():\n    """Doc.\n\n    More.\n    """\n    a = 1\n    return a\n\n\n'
        "class C:\n    def g(self):\n        pass\n"
    )
    assert function_lengths(source) == {"f": 2, "C.g": 1}


def test_no_function_over_the_cap() -> None:
    long = {
        f"{p.relative_to(PACKAGE.parent)}::{name}": n
        for p in PACKAGE.rglob("*.py")
        for name, n in function_lengths(p.read_text(encoding="utf-8")).items()
        if n > MAX_FUNCTION_LINES
    }
    assert not long, f"split these by what each part does (cap {MAX_FUNCTION_LINES} lines): {long}"
