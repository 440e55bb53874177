"""The API reference (docs/reference/*.rst) documents every public name.

The reference sources are parsed for their autodoc / py-domain directives; every name in
``steppedwedge.__all__`` must be the target of exactly one of them, the target must import
to the very object the package exports, and classes must be documented with their members.
That the directives render (no import failure, no broken docstring) is checked by the Sphinx
build with ``-W`` in ``tests/test_docs.py``.
"""

from __future__ import annotations

import importlib
import inspect
import re
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

import steppedwedge as sw

REFERENCE = Path(__file__).resolve().parents[1] / "docs" / "reference"

DIRECTIVE = re.compile(
    r"^\.\. (?P<kind>auto(?:class|function|exception|module|data|method|attribute)"
    r"|py:(?:class|function|exception|data|module)):: (?P<target>\S+)\s*$"
)
OPTION = re.compile(r"^\s+:(?P<name>[\w-]+):")

# Result classes the reference must show whatever __all__ says (the issue lists them).
FIT_RESULTS = (
    "FitResult",
    "GLMMResult",
    "GEEResult",
    "FixedEffectsResult",
    "ClusterSummaryResult",
    "PermutationResult",
    "PooledResult",
)
PLANNING_RESULTS = (
    "PowerResult",
    "SimulatedPowerResult",
    "ExpectedPowerResult",
    "AssuranceResult",
    "DesignSearchResult",
    "PowerCurve",
    "DesignEffect",
    "CellMap",
)


def parse_entries(text: str) -> list[tuple[str, str, set[str]]]:
    """``(kind, target, options)`` of every documenting directive in one .rst source."""
    out: list[tuple[str, str, set[str]]] = []
    lines = text.splitlines()
    for i, line in enumerate(lines):
        m = DIRECTIVE.match(line)
        if not m:
            continue
        options = set()
        for follow in lines[i + 1 :]:
            o = OPTION.match(follow)
            if not o:
                break
            options.add(o["name"])
        out.append((m["kind"], m["target"], options))
    return out


def reference_entries() -> list[tuple[str, str, set[str]]]:
    files = sorted(REFERENCE.glob("*.rst"))
    if not files:  # pragma: no cover - e.g. an installed wheel without docs/
        pytest.skip("docs/reference not present")
    return [e for f in files for e in parse_entries(f.read_text(encoding="utf-8"))]


def resolve(kind: str, target: str) -> Any:
    """Import a dotted name the way autodoc does.

    A module directive imports the module; any other takes the longest importable module
    *before* the last component and walks attributes from there, so ``steppedwedge.report``
    is the function the package exports, not the subpackage of the same name.
    """
    if kind in ("automodule", "py:module"):
        return importlib.import_module(target)
    parts = target.split(".")
    for k in range(len(parts) - 1, 0, -1):
        try:
            obj: Any = importlib.import_module(".".join(parts[:k]))
        except ImportError:
            continue
        for attr in parts[k:]:
            obj = getattr(obj, attr)
        return obj
    raise ImportError(target)  # pragma: no cover


def test_parser_sees_directives_and_options() -> None:
    text = (
        "Title\n=====\n\n.. autoclass:: steppedwedge.Design\n   :members:\n\n"
        ".. autofunction:: steppedwedge.power\n\n.. py:data:: steppedwedge.__version__\n"
        "   :type: str\n\n.. note:: not an entry\n"
    )
    assert parse_entries(text) == [
        ("autoclass", "steppedwedge.Design", {"members"}),
        ("autofunction", "steppedwedge.power", set()),
        ("py:data", "steppedwedge.__version__", {"type"}),
    ]


def test_every_public_name_is_in_the_reference() -> None:
    documented = {target for _, target, _ in reference_entries()}
    missing = sorted(n for n in sw.__all__ if f"steppedwedge.{n}" not in documented)
    assert not missing, f"public names missing from docs/reference/*.rst: {missing}"


def test_result_classes_are_documented_with_members() -> None:
    entries = {target: (kind, opts) for kind, target, opts in reference_entries()}
    for name in (*FIT_RESULTS, *PLANNING_RESULTS):
        kind, opts = entries[f"steppedwedge.{name}"]
        assert kind == "autoclass" and "members" in opts, name


def test_reference_targets_are_the_exported_objects() -> None:
    for kind, target, opts in reference_entries():
        obj = resolve(kind, target)
        name = target.removeprefix("steppedwedge.")
        if name in sw.__all__:
            assert obj is getattr(sw, name), target
        if kind in ("autoclass", "autoexception"):
            assert inspect.isclass(obj), target
        if kind == "autoclass" and not name.startswith("_"):
            assert "members" in opts, f"{target}: document the class with :members:"
        if kind == "autofunction":
            assert inspect.isfunction(obj), target
        if kind == "automodule":
            assert inspect.ismodule(obj), target


def test_no_name_is_documented_twice() -> None:
    counts = Counter(target for _, target, _ in reference_entries())
    assert not [t for t, c in counts.items() if c > 1]
