"""Import-layer contract: lower layers of the package never import upper ones.

The layers, lowest first (``docs/explanation/architecture.rst`` describes them):

0. ``_core`` kernels (numpy/scipy only, plus threadpoolctl for their BLAS threads) and the
   leaf modules every layer may use (``exceptions``, ``_typing``, ``_version``);
1. private helpers shared by several packages (validation, seeded executors, warnings);
2. the domain objects: designs, variance components, randomisation, trial data, cohorts,
   simulation and the result base;
3. estimation: ``models`` and ``inference``;
4. planning (``planning``: power, sample size, simulated power, assurance);
5. presentation and entry points: ``plotting``, ``report``, ``cli``, ``datasets`` and the
   package ``__init__``.

The test reads every module's ``import`` statements (module-level and inside functions) with
:mod:`ast` and fails when a module imports one of a higher layer.  ``.plot()`` methods import
the plotting package inside the method (so that ``import steppedwedge`` does not import
matplotlib): such deferred imports of ``plotting`` are the one documented exception.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "src" / "steppedwedge"

#: Layer of each top-level module or subpackage (by its first dotted component).
LAYERS: dict[str, int] = {
    "_core": 0,
    "exceptions": 0,
    "_typing": 0,
    "_version": 0,
    "_warnings": 1,
    "_validation": 1,
    "_parallel": 1,
    "_summary": 1,
    "variance": 2,
    "design": 2,
    "data": 2,
    "randomise": 2,
    "cohort": 2,
    "simulate": 2,
    "results": 2,
    "models": 3,
    "inference": 3,
    "compare": 3,
    "planning": 4,
    "plotting": 5,
    "report": 5,
    "cli": 5,
    "datasets": 5,
    "comparison": 5,  # comparison councils: its default panel is the bundled DfE data
    "__main__": 5,
    "__init__": 5,
}

#: Known upward imports still to be removed, with the reason each is there.  Keep it short:
#: an entry here is a debt, and the test fails if an entry is no longer needed.
KNOWN_DEBTS: dict[tuple[str, str], str] = {
    ("design", "planning"): "Design.information_content delegates to planning.diagnostics",
}


def _component(dotted: str) -> str:
    parts = dotted.split(".")
    assert parts[0] == "steppedwedge", dotted
    return parts[1] if len(parts) > 1 else "__init__"


def _module_name(path: Path) -> str:
    rel = path.relative_to(ROOT.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__" and len(parts) > 1:
        parts = parts[:-1]
    return ".".join(parts)


def _imports(path: Path) -> list[tuple[str, bool]]:
    """``(imported module, deferred)`` for every steppedwedge import in ``path``."""
    source = path.read_text(encoding="utf-8")
    return _imports_in(source, _module_name(path), path.name == "__init__.py")


def _imports_in(source: str, name: str, is_package: bool) -> list[tuple[str, bool]]:
    package = name if is_package else name.rsplit(".", 1)[0]
    tree = ast.parse(source)
    top_level = {id(node) for node in tree.body}
    out: list[tuple[str, bool]] = []
    for node in ast.walk(tree):
        deferred = id(node) not in top_level
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if not target.startswith("steppedwedge"):
                continue
            if node.module is None or target == "steppedwedge":
                out += [(f"{target}.{alias.name}", deferred) for alias in node.names]
            else:
                out.append((target, deferred))
        elif isinstance(node, ast.Import):
            out += [(a.name, deferred) for a in node.names if a.name.startswith("steppedwedge")]
    return out


def _upward_imports() -> dict[tuple[str, str], list[str]]:
    found: dict[tuple[str, str], list[str]] = {}
    for path in sorted(ROOT.rglob("*.py")):
        importer = _component(_module_name(path)) if path != ROOT / "__init__.py" else "__init__"
        for target, deferred in _imports(path):
            imported = _component(target)
            if imported == importer or imported not in LAYERS:
                continue
            if imported == "plotting" and deferred:
                continue  # .plot() methods: the documented exception
            if LAYERS[imported] > LAYERS[importer]:
                found.setdefault((importer, imported), []).append(
                    f"{path.relative_to(ROOT)} imports {target}"
                )
    return found


def test_every_module_has_a_layer() -> None:
    names = {_component(_module_name(p)) for p in ROOT.rglob("*.py") if p != ROOT / "__init__.py"}
    missing = sorted(names - set(LAYERS))
    assert not missing, f"give these modules a layer in LAYERS: {missing}"


def test_lower_layers_never_import_upper_ones() -> None:
    found = _upward_imports()
    new = {k: v for k, v in found.items() if k not in KNOWN_DEBTS}
    assert not new, "upward imports:\n" + "\n".join(line for v in new.values() for line in v)


@pytest.mark.parametrize("debt", sorted(KNOWN_DEBTS))
def test_known_debts_are_still_needed(debt: tuple[str, str]) -> None:
    assert debt in _upward_imports(), (
        f"{debt} no longer imports upwards: remove it from KNOWN_DEBTS"
    )


def test_core_imports_only_numpy_and_scipy() -> None:
    """The kernels need numpy and scipy; threadpoolctl (a core dependency, pure Python) sets
    their BLAS threads (``_core/blas.py``)."""
    allowed = {"numpy", "scipy", "threadpoolctl"} | set(sys.stdlib_module_names)
    bad = []
    for path in sorted((ROOT / "_core").rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                roots = [a.name.split(".")[0] for a in node.names]
            elif isinstance(node, ast.ImportFrom) and not node.level:
                roots = [(node.module or "").split(".")[0]]
            else:
                continue
            bad += [f"{path.name}: {r}" for r in roots if r not in allowed]
    assert not bad, f"_core must depend on numpy/scipy only: {bad}"


def test_the_checker_resolves_relative_and_deferred_imports() -> None:
    """A planted upward import (relative, inside a function) is resolved and flagged deferred."""
    source = "from .laplace import modes\n\ndef f():\n    from ..models import fit\n"
    found = _imports_in(source, "steppedwedge._core.agq", is_package=False)
    assert found == [("steppedwedge._core.laplace", False), ("steppedwedge.models", True)]
    assert LAYERS[_component(found[1][0])] > LAYERS["_core"]


@pytest.mark.parametrize("name", ["randomise", "simulate", "report"])
def test_functions_keep_their_names_over_their_packages(name: str) -> None:
    """``sw.<name>`` is the function; the package of that name keeps its private modules."""
    import importlib

    import steppedwedge as sw

    assert callable(getattr(sw, name))
    package = importlib.import_module(f"steppedwedge.{name}")
    assert Path(str(package.__file__)).name == "__init__.py"
    assert getattr(package, name) is getattr(sw, name)


def test_planning_package_does_not_shadow_the_power_function() -> None:
    """``sw.power`` is the function; the planning modules are reachable after the import."""
    import importlib
    import types

    import steppedwedge as sw

    assert callable(sw.power) and not isinstance(sw.power, types.ModuleType)
    assert sw.planning.analytic.power is sw.power
    assert sw.planning.simulation.simulate_power is sw.simulate_power
    assert sw.planning.history.estimate_variance is sw.estimate_variance
    assert sw.planning.diagnostics.information_content is sw.information_content
    with pytest.raises(ModuleNotFoundError):
        importlib.import_module("steppedwedge.power")
