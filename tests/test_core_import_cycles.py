"""Import contract of the numerical kernels: the ``_core`` modules import each other without cycles.

``_core`` is the bottom layer (``tests/test_layers.py``); inside it every kernel builds on
lower ones only (the outer GLMM optimiser in ``laplace`` calls the quadrature in ``agq``,
which takes the Laplace state as an argument instead of importing ``laplace`` back).  The
test reads each module's imports with :mod:`ast` (module-level and inside functions alike)
and fails on any cycle in the resulting graph, naming it.
"""

from __future__ import annotations

import ast
from pathlib import Path

CORE = Path(__file__).resolve().parents[1] / "src" / "steppedwedge" / "_core"


def _core_imports(source: str) -> set[str]:
    """Names of the ``_core`` modules imported (relatively or absolutely) by ``source``."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom):
            if node.level == 1:
                base = node.module or ""
            elif node.level == 0 and (node.module or "").startswith("steppedwedge._core"):
                base = (node.module or "").removeprefix("steppedwedge._core").lstrip(".")
            else:
                continue
            names = [base.split(".")[0]] if base else [a.name for a in node.names]
            found.update(names)
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("steppedwedge._core."):
                    found.add(alias.name.split(".")[2])
    return found


def _graph() -> dict[str, set[str]]:
    modules = {p.stem for p in CORE.glob("*.py") if p.stem != "__init__"}
    return {
        m: (_core_imports((CORE / f"{m}.py").read_text(encoding="utf-8")) & modules) - {m}
        for m in sorted(modules)
    }


def _find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of ``graph`` as a list of modules (first repeated at the end), or None."""
    state: dict[str, int] = {}  # 1 on the current path, 2 done
    path: list[str] = []

    def visit(m: str) -> list[str] | None:
        state[m] = 1
        path.append(m)
        for n in sorted(graph[m]):
            if state.get(n) == 1:
                return path[path.index(n) :] + [n]
            if n not in state and (cycle := visit(n)) is not None:
                return cycle
        path.pop()
        state[m] = 2
        return None

    for m in graph:
        if m not in state and (cycle := visit(m)) is not None:
            return cycle
    return None


def test_core_modules_import_without_cycles() -> None:
    cycle = _find_cycle(_graph())
    assert cycle is None, "import cycle in _core: " + " -> ".join(cycle or [])


def test_laplace_calls_agq_and_not_back() -> None:
    graph = _graph()
    assert "agq" in graph["laplace"]
    assert "laplace" not in graph["agq"]


def test_the_cycle_finder_finds_a_planted_cycle() -> None:
    planted = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}
    assert _find_cycle(planted) == ["a", "b", "c", "a"]
    source = "from .laplace import modes\n\ndef f():\n    from . import agq\n"
    assert _core_imports(source) == {"laplace", "agq"}
