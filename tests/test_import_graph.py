"""The house's floors: a package imports only from its own floor or below, and package imports form no cycle.

Read from the source with ``ast`` (imports inside functions count too), so a new arrow fails here first.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).parents[1] / "src" / "llm_embedder"

# Ground floor first.  ``llm_embedder`` is the package's own ``__init__`` (the public API): the top.
FLOORS = [
    {"errors", "fileio", "fingerprint", "versioned", "version", "distributed", "tasks", "outputs", "selection"}
    | {"freshness", "progress"},
    {"models"},
    {"data", "retrieval"},
    {"training", "rewards", "evaluation", "userdata", "demo", "serving", "adapters"},
    {"pipeline"},
    {"adapt"},
    {"commands", "cli", "llm_embedder"},
]
FLOOR = {unit: level for level, units in enumerate(FLOORS) for unit in units}


def _unit(module: str) -> str:
    """``llm_embedder.a.b`` -> ``a`` (a top-level module or subpackage); the package itself -> ``llm_embedder``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "llm_embedder"


def _imports() -> dict[str, set[str]]:
    edges: dict[str, set[str]] = {}
    for path in ROOT.rglob("*.py"):
        parts = path.relative_to(ROOT.parent).with_suffix("").parts
        source = _unit(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            targets = []
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("llm_embedder"):
                if node.module == "llm_embedder":  # from llm_embedder import versioned: the module, if it is one
                    targets = [f"llm_embedder.{a.name}" if _is_module(a.name) else "llm_embedder" for a in node.names]
                else:
                    targets = [node.module]
            elif isinstance(node, ast.Import):
                targets = [a.name for a in node.names if a.name.startswith("llm_embedder")]
            for target in targets:
                if _unit(target) != source:
                    edges.setdefault(source, set()).add(_unit(target))
    return edges


def _is_module(name: str) -> bool:
    return (ROOT / f"{name}.py").is_file() or (ROOT / name / "__init__.py").is_file()


def test_every_unit_has_a_floor():
    units = {p.stem for p in ROOT.glob("*.py") if p.stem != "__init__"} | {
        p.name for p in ROOT.iterdir() if (p / "__init__.py").is_file()
    }
    assert units - set(FLOOR) == set(), "give the new module a floor in FLOORS"


def test_no_upward_arrow():
    upward = sorted(
        f"{a} (floor {FLOOR[a]}) imports {b} (floor {FLOOR[b]})"
        for a, targets in _imports().items()
        for b in targets
        if FLOOR[b] > FLOOR[a]
    )
    assert upward == []


def test_no_cycle_between_units():
    edges = _imports()

    def reachable(start: str) -> set[str]:
        seen, stack = set(), [start]
        while stack:
            for nxt in edges.get(stack.pop(), ()):
                if nxt not in seen:
                    seen.add(nxt)
                    stack.append(nxt)
        return seen

    assert sorted(u for u in edges if u in reachable(u)) == []


def _module_imports() -> dict[str, set[str]]:
    """Module -> the modules of its own package it imports (``evaluation.grid`` -> ``evaluation.cells``)."""
    edges: dict[str, set[str]] = {}
    for path in ROOT.rglob("*.py"):
        parts = path.relative_to(ROOT.parent).with_suffix("").parts
        module = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        package = module.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module:
                targets = [node.module, *(f"{node.module}.{a.name}" for a in node.names)]
            elif isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            else:
                continue
            for target in targets:
                if target != module and target.rpartition(".")[0] == package and _is_module_path(target):
                    edges.setdefault(module, set()).add(target)
    return edges


def _is_module_path(dotted: str) -> bool:
    path = ROOT.parent.joinpath(*dotted.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def test_no_cycle_between_modules_of_a_package():
    """Inside a package too (evaluation: registry, cells -> compare -> leaderboard -> grid), every
    module can be read after the ones it imports."""
    edges = _module_imports()
    assert edges["llm_embedder.evaluation.grid"] >= {"llm_embedder.evaluation.cells"}  # the walk sees imports

    def reachable(start: str) -> set[str]:
        seen, stack = set(), [start]
        while stack:
            for nxt in edges.get(stack.pop(), ()):
                if nxt not in seen:
                    seen.add(nxt)
                    stack.append(nxt)
        return seen

    assert sorted(m for m in edges if m in reachable(m)) == []
