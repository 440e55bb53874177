"""Conversion of variance components estimated on one period length to another.

One job: the documented rules of :meth:`steppedwedge.EstimatedVariance.for_period`.
"""

from __future__ import annotations

import math

from ..exceptions import OptionError
from ..variance import VarianceComponents

__all__ = ["GAMMA2_CHOICES", "convert", "convert_intervals", "mean_variance_factor"]

GAMMA2_CHOICES = ("same", "averaged")


def mean_variance_factor(x: float) -> float:
    """Variance of the mean of a unit-variance OU process over a window of ``x`` time constants.

    ``f(x) = 2 (x - 1 + exp(-x)) / x^2`` (1 at ``x = 0``, ``2 / x`` for large ``x``).
    """
    if x < 1e-6:
        return 1.0 - x / 3.0
    return 2.0 * (x - 1.0 + math.exp(-x)) / (x * x)


def _gamma2(vc: VarianceComponents, ratio: float, gamma2: str | float) -> float:
    if not isinstance(gamma2, str):
        value = float(gamma2)
        if not value >= 0.0 or math.isinf(value):
            raise OptionError(f"`gamma2` must be a non-negative number; got {gamma2!r}.")
        return value
    if gamma2 == "same":
        return vc.gamma2
    if vc.decay is None or vc.decay <= 0.0 or vc.gamma2 == 0.0:
        raise OptionError(
            "`gamma2='averaged'` needs a decaying council-period effect (structure 'decay' or "
            "'nested+decay' with decay > 0); use gamma2='same' or give a number."
        )
    theta = -math.log(vc.decay)  # per old period
    point = vc.gamma2 / mean_variance_factor(theta)
    return point * mean_variance_factor(theta * ratio)


def convert(vc: VarianceComponents, ratio: float, gamma2: str | float) -> VarianceComponents:
    """Components for periods ``ratio`` times as long as those of ``vc`` (see ``for_period``)."""
    if isinstance(gamma2, str) and gamma2 not in GAMMA2_CHOICES:
        raise OptionError(
            f"`gamma2` must be one of {list(GAMMA2_CHOICES)} or a number; got {gamma2!r}."
        )
    decay = None if vc.decay is None else float(vc.decay**ratio)
    return VarianceComponents(
        sigma2=vc.sigma2, tau2=vc.tau2, gamma2=_gamma2(vc, ratio, gamma2), decay=decay
    )


def convert_intervals(
    records: tuple[tuple[float, str, float, float], ...], ratio: float, gamma2: str | float
) -> tuple[tuple[float, str, float, float], ...]:
    """Convert stored ``(level, term, low, high)`` intervals to periods ``ratio`` times as long.

    ``tau2`` and the NB size are unchanged and the decay ends map by ``r -> r**ratio``
    (monotone, so the ends of a likelihood-ratio interval map to the ends), as the estimate
    does; ``gamma2`` is unchanged with ``"same"``.  With ``"averaged"`` the new ``gamma2`` is a
    function of both ``gamma2`` and the decay, whose joint interval the per-component
    intervals do not give, and with a number it is not estimated at all: its ends are then NaN.
    """
    out = []
    for level, term, low, high in records:
        if term == "decay":
            low, high = low**ratio, high**ratio
        elif term == "gamma2" and gamma2 != "same":
            low, high = math.nan, math.nan
        out.append((level, term, low, high))
    return tuple(out)
