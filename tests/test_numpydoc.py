"""numpydoc validation of every public name and its public methods.

``numpydoc.validate`` runs over every name in ``steppedwedge.__all__`` (the members of a
public module such as ``steppedwedge.datasets`` included), every public method and property
of the public classes (inherited ones counted once, where they are defined), and fails on
these checks:

* GL08 -- the object has a docstring;
* SS01, SS02, SS03, SS04 -- a summary line exists, starts with a capital letter, ends with
  a period and has no leading whitespace;
* PR01, PR02 -- every parameter is documented and no unknown one is (for a class, the
  fields of the dataclass may be documented under *Attributes*, where its users read them;
  private ``_fields`` are internal);
* RT01 -- functions and methods document what they return (not properties, whose summary
  says what they are, nor ``None``-returning procedures);
* EX01 -- public functions have an Examples section (run as doctests).

The public subpackage ``steppedwedge.plotting`` (its ``__all__``) is validated too.

The planning modules (``steppedwedge.planning.*`` except the analytic and simulation engines,
and ``steppedwedge.plotting.power``) are held to two more: PR07 (every parameter has a
description) and RT03 (the return value has one).

The other numpydoc checks (See Also, Extended Summary, parameter types, ...) are not
enforced: they are desirable and the docs already use them where they help, but a failing
test for each missing See Also would drown the checks above.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Iterator
from functools import cached_property
from typing import Any

import pytest

numpydoc_validate = pytest.importorskip("numpydoc.validate", reason="numpydoc is in the test extra")
from numpydoc.docscrape import ClassDoc, NumpyDocString  # noqa: E402

import steppedwedge as sw  # noqa: E402

ALWAYS = frozenset({"GL08", "SS01", "SS02", "SS03", "SS04", "PR01", "PR02"})
CALLABLE_ONLY = frozenset({"RT01"})
FUNCTION_ONLY = frozenset({"EX01"})
STRICT = frozenset({"PR07", "RT03"})
PUBLIC_MODULES = ("steppedwedge.plotting",)
STRICT_MODULES = tuple(
    f"steppedwedge.{m}."
    for m in (
        "planning.result",
        "planning.expected",
        "planning.search",
        "planning.curves",
        "planning.grid",
        "planning.diagnostics",
        "planning._solve",
        "plotting.power",
    )
)

# Explicit, commented exceptions (keep short): name -> (checks, reason).
ALLOW: dict[str, tuple[frozenset[str], str]] = {
    "steppedwedge.variance.VarianceEstimate": (
        frozenset({"PR01"}),
        "a typing.Protocol (never instantiated): its (*args, **kwargs) come from typing",
    ),
}


def _is_package_class(cls: type) -> bool:
    return cls.__module__.startswith("steppedwedge")


def _members(cls: type) -> Iterator[tuple[str, str, Any]]:
    """``(import path, kind, object)`` of the public members a class defines or inherits."""
    seen: set[str] = set()
    for owner in cls.__mro__:
        if not _is_package_class(owner):
            continue
        for name, value in vars(owner).items():
            if name.startswith("_") or name in seen:
                continue
            seen.add(name)
            path = f"{owner.__module__}.{owner.__qualname__}.{name}"
            if isinstance(value, (property, cached_property)):
                yield path, "property", value
            elif isinstance(value, (staticmethod, classmethod)) or inspect.isfunction(value):
                yield path, "method", value


def _returns_none(obj: Any) -> bool:
    func = obj.__func__ if isinstance(obj, (staticmethod, classmethod)) else obj
    ann = getattr(func, "__annotations__", {}).get("return")
    return ann in (None, "None", type(None)) and "return" in getattr(func, "__annotations__", {})


def targets() -> dict[str, tuple[str, Any]]:
    """Import path -> (kind, object) of everything validated, deduplicated."""
    out: dict[str, tuple[str, Any]] = {}
    names = [n for n in sw.__all__ if n != "__version__"]
    # public subpackages documented in the API reference besides the top-level names
    modules: list[Any] = [importlib.import_module(m) for m in PUBLIC_MODULES]
    objects: list[Any] = []
    for obj in [getattr(sw, name) for name in names] + modules:
        if inspect.ismodule(obj):
            objects += [getattr(obj, n) for n in getattr(obj, "__all__", [])]
        else:
            objects.append(obj)
    for obj in objects:
        path = f"{obj.__module__}.{obj.__qualname__}"
        if inspect.isclass(obj):
            out[path] = ("class", obj)
            for mpath, kind, member in _members(obj):
                out.setdefault(mpath, (kind, member))
        else:
            out[path] = ("function", obj)
    return out


TARGETS = targets()


def _class_attributes(obj: type) -> set[str]:
    names: set[str] = set()
    for item in ClassDoc(obj, config={"show_class_members": False})["Attributes"]:
        names.update(n.strip() for n in item.name.split(","))
    return names


def _findings(path: str, kind: str, obj: Any) -> list[tuple[str, str]]:
    checks = set(ALWAYS)
    if kind in ("function", "method") and not _returns_none(obj):
        checks |= CALLABLE_ONLY
    if kind == "function":
        checks |= FUNCTION_ONLY
    if path.startswith(STRICT_MODULES):
        checks |= STRICT if kind != "property" else STRICT - {"RT03"}
    if kind == "property":  # a property takes no parameters; its summary says what it is
        checks -= {"PR01", "PR02", "PR07"}
    allowed, _ = ALLOW.get(path, (frozenset(), ""))
    result = numpydoc_validate.validate(path)
    found = []
    for code, message in result["errors"]:
        if code not in checks or code in allowed:
            continue
        if code == "PR01" and kind == "class":
            missing = _undocumented_fields(obj)
            if not missing:
                continue
            message = f"Parameters {sorted(missing)} not documented"
        found.append((code, message))
    return found


def _undocumented_fields(cls: type) -> set[str]:
    """Public constructor parameters of ``cls`` documented neither as Parameters nor Attributes.

    Fields inherited from a package base class may be documented there (``GLMMResult``
    inherits the fields of ``FitResult`` and their documentation).
    """
    documented: set[str] = set()
    for owner in [cls, *filter(_is_package_class, cls.__mro__[1:])]:
        documented |= _class_attributes(owner)
        for item in NumpyDocString(inspect.getdoc(owner) or "")["Parameters"]:
            documented.update(n.strip().lstrip("*") for n in item.name.split(","))
    params = inspect.signature(cls).parameters
    return {p for p in params if not p.startswith("_") and p not in documented}


def test_targets_cover_the_public_api() -> None:
    # every public callable and class is validated, plus a sample of methods and properties
    assert "steppedwedge.planning.analytic.power" in TARGETS
    assert "steppedwedge.results.EstimationResult.tidy" in TARGETS  # FitResult inherits it
    assert "steppedwedge.planning.result.PowerResult.cell_weights" in TARGETS
    assert TARGETS["steppedwedge.planning.result.PowerResult.cell_weights"][0] == "property"
    assert any(p.endswith("datasets._councils.load_councils") for p in TARGETS) or any(
        p.startswith("steppedwedge.datasets.") and p.endswith(".load_councils") for p in TARGETS
    )  # members of a public module
    assert "steppedwedge.plotting.power.plot_cell_map" in TARGETS  # public subpackage
    assert len(TARGETS) > 150


def test_the_check_can_fail() -> None:
    def undocumented(x: int) -> int:
        """no capital, no period"""
        return x

    undocumented.__module__ = __name__
    globals()["undocumented"] = undocumented
    codes = {c for c, _ in _findings(f"{__name__}.undocumented", "function", undocumented)}
    assert {"SS02", "SS03", "PR01", "RT01", "EX01"} <= codes


def test_undocumented_dataclass_field_is_caught() -> None:
    import dataclasses

    @dataclasses.dataclass(frozen=True)
    class Result:
        """A result.

        Attributes
        ----------
        power : float
            Documented.
        """

        power: float
        variance: float
        _private: float = 0.0

    assert _undocumented_fields(Result) == {"variance"}


@pytest.mark.parametrize("path", sorted(TARGETS))
def test_numpydoc(path: str) -> None:
    kind, obj = TARGETS[path]
    findings = _findings(path, kind, obj)
    assert not findings, "\n".join(f"{path}: {c} {m}" for c, m in findings)
