"""The shared inference of randomisation-based results (permutation tests, design-based fits).

:class:`RandomisationInference` puts a one-term result whose p-value comes from
re-randomisations and whose interval comes from inverting the test on the
:class:`~steppedwedge.results.EstimationResult` base: the term table, the interval at any
level (the stored one, or computed once per level by the stored inverter; a Wald interval
when the result has a closed-form standard error) and ``tidy()`` with the randomisation
p-value.  Used by :class:`~steppedwedge.PermutationResult` and
:class:`~steppedwedge.DesignBasedResult`.

References
----------
Rabideau DJ, Wang R (2021). Randomization-based confidence intervals for cluster
randomized trials. Stat Med 40:4442-4456.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import pandas as pd

from ..exceptions import OptionError
from ..results import RATIO_LINKS, EstimationResult, t_interval

__all__ = ["RandomisationInference"]


class RandomisationInference(EstimationResult):
    """Mixin of the randomisation results' ``_term_table``, ``conf_int`` and ``tidy``.

    The subclass (a frozen dataclass) holds ``estimand``, ``estimate``, ``std_error``
    (NaN without a closed form), ``df``, ``pvalue`` (the randomisation p-value),
    ``confidence_level``, ``interval``, ``_invert`` and an ``_intervals`` cache.
    """

    estimate: float
    std_error: float
    df: float
    confidence_level: float | None
    interval: tuple[float, float] | None
    _invert: Callable[[float], tuple[float, float]] | None
    _intervals: dict[float, tuple[float, float]]

    def _term_table(self) -> pd.DataFrame:
        out: pd.DataFrame = pd.DataFrame(
            {
                "term": [self.estimand],
                "estimate": [float(self.estimate)],
                "std_error": [float(self.std_error)],
                "df": [float(self.df)],
            }
        )
        return out

    def _level(self, confidence_level: float | None) -> float:
        if confidence_level is not None:
            return float(confidence_level)
        return 0.95 if self.confidence_level is None else float(self.confidence_level)

    def _no_interval(self) -> tuple[float, float]:
        """Return the interval of a result with neither a stored one nor an inverter."""
        return (math.nan, math.nan)

    def conf_int(self, confidence_level: float | None = None) -> tuple[float, float]:
        """Return the confidence interval of the estimate (analysis scale).

        Parameters
        ----------
        confidence_level : float, optional
            Default: the level the result was computed at (else 0.95).  A randomisation
            interval at another level is computed once, on demand, from the same
            re-randomisations; with a closed-form standard error the interval is Wald.

        Returns
        -------
        tuple of float
            ``(low, high)`` on the scale of :attr:`link` (exponentiate both for a ratio);
            ``(-inf, inf)`` when the allocation space is too small for the level; NaN
            for a design-based estimator without an interval (synthetic control).

        Raises
        ------
        OptionError
            A level outside (0, 1), or a permutation test of a callable statistic (which
            cannot be inverted).
        """
        level = self._level(confidence_level)
        if not 0.0 < level < 1.0:
            raise OptionError(f"`confidence_level` must lie in (0, 1); got {level!r}.")
        if self.std_error > 0:
            return t_interval(self.estimate, self.std_error, self.df, level)
        if self.interval is not None and level == self.confidence_level:
            return self.interval
        if self._invert is None:
            return self._no_interval()
        if level not in self._intervals:  # computed once per level (refits are costly)
            self._intervals[level] = self._invert(level)
        return self._intervals[level]

    def _interval_or_nan(self, level: float) -> tuple[float, float]:
        """Return :meth:`conf_int` at ``level``, NaN limits when the result has no interval."""
        try:
            return self.conf_int(level)
        except OptionError:
            if not 0.0 < level < 1.0:
                raise
            return (math.nan, math.nan)

    @property
    def ratio(self) -> tuple[float, float, float] | None:
        """``exp`` of the estimate and of its 95% interval on the log and logit scales.

        The rate or odds ratio with its 95% randomisation (or closed-form) interval, NaN
        limits when the result has none; None on the identity scale.
        """
        if self.link not in RATIO_LINKS:
            return None
        lo, hi = self._interval_or_nan(0.95)
        return float(np.exp(self.estimate)), float(np.exp(lo)), float(np.exp(hi))

    def tidy(
        self, confidence_level: float | None = None, *, exponentiate: bool = False
    ) -> pd.DataFrame:
        """One row (the estimand): estimate, statistic, randomisation p-value and interval.

        Parameters
        ----------
        confidence_level : float, optional
            Level of ``conf_low``/``conf_high`` (default as :meth:`conf_int`).
        exponentiate : bool, default False
            Report ``exp`` of the estimate and limits (log and logit scales only).

        Returns
        -------
        pandas.DataFrame
            Columns ``term, estimate, std_error, statistic, df, p_value, conf_low,
            conf_high``; ``p_value`` is :attr:`pvalue`; without a standard error,
            ``statistic`` is the observed test statistic and ``conf_low``/``conf_high``
            are NaN unless an interval is available.
        """
        level = self._level(confidence_level)
        out = super().tidy(level, exponentiate=exponentiate)
        lo, hi = self._interval_or_nan(level)
        if exponentiate:
            lo, hi = float(np.exp(lo)), float(np.exp(hi))
        stat = self.statistic if math.isfinite(self.statistic) else self.estimate
        out.loc[0, ["statistic", "p_value", "conf_low", "conf_high"]] = [stat, self.pvalue, lo, hi]
        return out
