"""Every numerical tolerance in the tests is a name from ``tests/_tolerances.py``.

A bare number passed as ``rtol=``, ``atol=``, ``rel=`` or ``abs=`` (to
``np.testing.assert_allclose``, ``pytest.approx``, ``np.isclose``, a ``dict(...)`` of
tolerances, ...) hides why the tolerance has its size; the named tolerances carry that
reason in a comment.  The check reads each test module's syntax tree, so a literal anywhere
inside the keyword's value counts (``atol=1e-12 * scale`` is caught, ``atol=EXACT_REL *
scale`` is not).  ``0`` and ``0.0`` are allowed: they mean "exactly" and need no reason; so are the
arguments of ``printed(decimals)``, exponents (``scale**2``) and integer counts multiplying a
name (``2 * LOGLIK_ATOL``).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

TESTS = Path(__file__).parent
KEYWORDS = frozenset({"rtol", "atol", "rel", "abs"})
#: Files other sessions were editing while the rest were converted: converted next.
#: Remove a file from this list when it is converted; the test then guards it too.
NOT_YET_CONVERTED: frozenset[str] = frozenset()


#: Helpers of ``_tolerances`` whose arguments are not tolerances (``printed(4)`` is "half a
#: unit in the 4th decimal").
HELPERS = frozenset({"printed"})


def _literals(node: ast.AST) -> list[ast.Constant]:
    """Non-zero numeric literals in ``node``, except helper arguments and exponents."""
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in HELPERS:
        return []
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Pow):
        return _literals(node.left)  # scale**2: the exponent is a unit, not a tolerance
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Mult):
        # 2 * LOGLIK_ATOL (an AIC is -2 loglik + 2k): an integer count times a named tolerance
        sides = [node.left, node.right]
        named = [not isinstance(side, ast.Constant) for side in sides]
        return [
            c
            for side, other in ((sides[0], named[1]), (sides[1], named[0]))
            if not (other and isinstance(side, ast.Constant) and type(side.value) is int)
            for c in _literals(side)
        ]
    if isinstance(node, ast.Constant):
        value = node.value
        numeric = isinstance(value, int | float) and not isinstance(value, bool)
        return [node] if numeric and value != 0 else []
    return [c for child in ast.iter_child_nodes(node) for c in _literals(child)]


def bare_tolerances(source: str) -> list[tuple[int, str]]:
    """(line, keyword) of every tolerance keyword whose value contains a non-zero literal.

    Examples
    --------
    >>> bare_tolerances("f(x, rtol=1e-8, atol=0)")
    [(1, 'rtol')]
    >>> bare_tolerances("f(x, rtol=EXACT_REL, atol=0.0, abs=printed(4) + SS * s**2)")
    []
    """
    found = {
        (node.value.lineno, node.arg)
        for node in ast.walk(ast.parse(source))
        if isinstance(node, ast.keyword) and node.arg in KEYWORDS and _literals(node.value)
    }
    return sorted(found)


def _modules() -> list[Path]:
    return sorted(p for p in TESTS.glob("*.py") if p.name != "_tolerances.py")


def test_the_check_can_fail() -> None:
    src = "np.testing.assert_allclose(a, b, rtol=LINALG_REL, atol=1e-12 * s)\n"
    src += "assert x == pytest.approx(y, rel=2e-3)\nd = dict(abs=-5)\n"
    assert bare_tolerances(src) == [(1, "atol"), (2, "rel"), (3, "abs")]
    assert bare_tolerances("f(rtol=0, atol=0.0, rel=TOL, check=1e-3, abs=2 * TOL)") == []
    assert bare_tolerances("f(abs=2.5 * TOL)\nf(abs=2 * 1e-3)") == [(1, "abs"), (2, "abs")]


@pytest.mark.parametrize("path", _modules(), ids=lambda p: p.name)
def test_no_bare_tolerance_literals(path: Path) -> None:
    bare = bare_tolerances(path.read_text(encoding="utf-8"))
    if path.name in NOT_YET_CONVERTED:
        pytest.skip(f"{path.name} is on the not-yet-converted list")
    where = ", ".join(f"line {line} ({kw}=)" for line, kw in bare)
    assert not bare, (
        f"{path.name}: bare numeric tolerance at {where}; use (or add, with its reason) a "
        "name in tests/_tolerances.py"
    )


def test_allow_list_is_current() -> None:
    """A converted file leaves the allow-list, so the list cannot silently go stale."""
    stale = sorted(
        name
        for name in NOT_YET_CONVERTED
        if (TESTS / name).exists()
        and not bare_tolerances((TESTS / name).read_text(encoding="utf-8"))
    )
    assert not stale, f"no bare tolerances left in {stale}: remove them from NOT_YET_CONVERTED"
