"""Every deliberate error the library raises belongs to its documented hierarchy.

``except sw.SteppedWedgeError`` must catch every error the library raises on purpose, so the
public layers raise :class:`~steppedwedge.exceptions.OptionError`,
:class:`~steppedwedge.exceptions.DataError` or :class:`~steppedwedge.exceptions.DesignError`
(each also a :class:`ValueError`), never a bare ``ValueError``.  Two places are exempt, each
for a reason:

* ``_core/``: the numerical kernels depend on numpy and scipy only (``tests/test_layers.py``);
  their ``ValueError`` guards are internal invariants that the validating layers above check
  first, with the library's errors;
* pydantic validators in ``report/schema.py``: pydantic's protocol is a ``ValueError`` raised
  inside a validator, which it turns into the config error naming the key and line.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import steppedwedge as sw

ROOT = Path(sw.__file__).resolve().parent

#: Files allowed to raise a bare ValueError, with the reason (see the module docstring).
EXEMPT = {"report/schema.py": "pydantic validators signal a bad value with ValueError"}


def _bare_value_errors(path: Path) -> list[int]:
    """Line numbers of ``raise ValueError(...)`` / ``raise ValueError`` in ``path``."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    lines = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Raise) and node.exc is not None:
            exc = node.exc.func if isinstance(node.exc, ast.Call) else node.exc
            if isinstance(exc, ast.Name) and exc.id == "ValueError":
                lines.append(node.lineno)
    return lines


def _library_files() -> list[Path]:
    return [
        p
        for p in sorted(ROOT.rglob("*.py"))
        if p.relative_to(ROOT).parts[0] != "_core" and p.relative_to(ROOT).as_posix() not in EXEMPT
    ]


def test_no_bare_value_error_outside_the_kernels() -> None:
    found = [
        f"{p.relative_to(ROOT).as_posix()}:{line}"
        for p in _library_files()
        for line in _bare_value_errors(p)
    ]
    assert not found, (
        "raise OptionError / DataError / DesignError (steppedwedge.exceptions) instead of a "
        f"bare ValueError at: {found}"
    )


def test_the_checker_finds_a_bare_value_error(tmp_path: Path) -> None:
    planted = tmp_path / "planted.py"
    planted.write_text(
        "def f(x):\n    if x:\n        raise ValueError('bad')\n    raise KeyError(x)\n"
    )
    assert _bare_value_errors(planted) == [3]


@pytest.mark.parametrize("name", ["OptionError", "DataError", "DesignError"])
def test_library_errors_are_value_errors_and_steppedwedge_errors(name: str) -> None:
    cls = getattr(sw.exceptions, name)
    assert issubclass(cls, ValueError) and issubclass(cls, sw.SteppedWedgeError)


def test_exemptions_are_still_needed() -> None:
    for rel in EXEMPT:
        assert _bare_value_errors(ROOT / rel), f"{rel} no longer raises ValueError: drop it"
