"""Small validators shared by every public entry point.

Each public function validates its inputs once, in a private ``_..._iv`` helper built from
these pieces; code further down trusts what it is given.  Messages follow one template:
"`name` must be ...; got ...".
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import numpy as np

from ._typing import RNGLike

__all__ = [
    "check_option",
    "check_positive_int",
    "check_probability",
    "check_nonnegative",
    "check_unit_interval",
    "normalise_rng",
]


def normalise_rng(rng: RNGLike) -> np.random.Generator:
    """Return a :class:`numpy.random.Generator` for ``rng`` (SPEC 7 semantics).

    An ``int`` or :class:`~numpy.random.SeedSequence` seeds a new PCG64 generator; a
    Generator is used as is (not copied); ``None`` draws fresh OS entropy.
    """
    if isinstance(rng, np.random.Generator):
        return rng
    if rng is None or isinstance(rng, (int, np.integer, np.random.SeedSequence)):
        if isinstance(rng, (int, np.integer)) and not isinstance(rng, bool) and rng < 0:
            raise ValueError(f"`rng` must be a non-negative integer seed; got {rng}.")
        return np.random.default_rng(rng)
    raise TypeError(
        "`rng` must be an int seed, a numpy.random.Generator, a SeedSequence or None; "
        f"got {type(rng).__name__}."
    )


def check_option(name: str, value: Any, allowed: Iterable[str]) -> str:
    """Check that ``value`` is one of the ``allowed`` strings, listing them if not."""
    allowed = tuple(allowed)
    if not isinstance(value, str) or value not in allowed:
        listed = ", ".join(repr(a) for a in allowed)
        raise ValueError(f"`{name}` must be one of {listed}; got {value!r}.")
    return value


def check_positive_int(name: str, value: Any, *, minimum: int = 1) -> int:
    """Check that ``value`` is an integer ``>= minimum`` and return it as ``int``."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        else:
            raise ValueError(f"`{name}` must be an integer >= {minimum}; got {value!r}.")
    if value < minimum:
        raise ValueError(f"`{name}` must be an integer >= {minimum}; got {value!r}.")
    return int(value)


def _as_float(name: str, value: Any) -> float:
    try:
        out = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"`{name}` must be a number; got {value!r}.") from None
    if math.isnan(out):
        raise ValueError(f"`{name}` must be a number; got NaN.")
    return out


def check_nonnegative(name: str, value: Any) -> float:
    """Check that ``value`` is a finite number ``>= 0``."""
    out = _as_float(name, value)
    if not math.isfinite(out) or out < 0:
        raise ValueError(f"`{name}` must be a finite number >= 0; got {value!r}.")
    return out


def check_unit_interval(name: str, value: Any, *, closed: bool = True) -> float:
    """Check that ``value`` lies in [0, 1] (or (0, 1) when ``closed=False``)."""
    out = _as_float(name, value)
    ok = 0.0 <= out <= 1.0 if closed else 0.0 < out < 1.0
    if not ok:
        interval = "[0, 1]" if closed else "(0, 1)"
        raise ValueError(f"`{name}` must lie in {interval}; got {value!r}.")
    return out


def check_probability(name: str, value: Any) -> float:
    """Check that ``value`` is a probability strictly inside (0, 1) (e.g. ``alpha``)."""
    return check_unit_interval(name, value, closed=False)
