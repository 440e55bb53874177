"""The result of :func:`~steppedwedge.planning.simulation.simulate_power`.

:class:`SimulatedPowerResult` holds the per-replicate table and derives the Monte-Carlo
power (with its exact Clopper-Pearson interval), failure counts, bias, RMSE and coverage
from it; it follows the planning protocol (``summary()``, ``tidy()``, ``plot()``,
``_repr_html_()``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from scipy import stats

from .._validation import check_probability
from ..exceptions import OptionError
from ..results import Summary
from ._sim_worker import FAILURES, STATUSES, USABLE

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.axes import Axes

__all__ = ["SimulatedPowerResult"]


def _clopper_pearson(k: int, n: int, confidence_level: float) -> tuple[float, float]:
    if n == 0:
        return (math.nan, math.nan)
    a = 1.0 - confidence_level
    low = 0.0 if k == 0 else float(stats.beta.ppf(a / 2, k, n - k + 1))
    high = 1.0 if k == n else float(stats.beta.ppf(1 - a / 2, k + 1, n - k))
    return low, high


@dataclass(frozen=True)
class SimulatedPowerResult:
    """Monte-Carlo power of an analysis, with per-replicate results.

    Returned by :func:`simulate_power`.  Every replicate has a status: ``"ok"``,
    ``"singular"`` (a variance component estimated on its boundary; the result is used),
    or a failure: ``"non-convergence"``, ``"non-finite"`` (estimate, SE or p-value not
    finite) or ``"error"`` (the data generation or analysis raised); ``"not-run"`` marks
    replicates lost to a failing executor.

    Attributes
    ----------
    power : float
        Share of usable replicates (``ok`` or ``singular``) with ``p < alpha``.
    power_all : float
        Share of all replicates that ran with ``p < alpha``: failures count as
        non-rejections (a conservative reading).
    alpha : float
        Size of the test.
    n_sims : int
        Replicates requested.
    true_value : float or None
        The estimand's true value (used for bias, RMSE and coverage).
    seed : tuple of int
        Entropy of the root ``SeedSequence``; ``rng=SeedSequence(seed)`` reproduces the run.
    analysis : str
        Description of the analysis.
    executor_errors : tuple of str
        Errors of the executor (empty when every batch finished).
    elapsed : float
        Wall-clock seconds of the run (not part of summaries).
    allocation_clusters : tuple or None
        With ``allocation=``: the cluster labels that the ``sequences`` column of
        :attr:`estimates` follows (``Allocation.clusters``); None otherwise.
    n_admissible : int or None
        With ``allocation=``: the size of the admissible set the allocations were re-drawn
        from.
    replicates : pandas.DataFrame
        The per-replicate table behind every other attribute (read it through
        :attr:`estimates`, which returns a copy).
    """

    replicates: pd.DataFrame = field(repr=False)
    alpha: float
    n_sims: int
    true_value: float | None
    seed: tuple[int, ...]
    analysis: str
    executor_errors: tuple[str, ...] = ()
    elapsed: float = field(default=math.nan, compare=False)
    allocation_clusters: tuple[Any, ...] | None = None
    n_admissible: int | None = None

    # ---------------------------------------------------------------- per replicate
    @property
    def estimates(self) -> pd.DataFrame:
        """Per-replicate results (a copy).

        Columns ``replicate, estimate, std_error, df, p_value, conf_low, conf_high,
        rejected, status, message``; with ``allocation=`` also ``allocation`` (the row of
        ``Allocation.admissible`` drawn, <NA> when the admissible set is too large to
        enumerate) and ``sequences`` (the drawn 0-based sequence of each cluster, in
        :attr:`allocation_clusters` order).
        """
        table: pd.DataFrame = self.replicates.copy()
        return table

    @cached_property
    def status_counts(self) -> pd.Series:
        """Number of replicates by status (every status listed, zeros included)."""
        counts = self.replicates["status"].value_counts()
        out: pd.Series = pd.Series({s: int(counts.get(s, 0)) for s in STATUSES}, name="replicates")
        return out

    @property
    def failures(self) -> pd.Series:
        """Failures by kind: error, non-convergence, non-finite."""
        return self.status_counts[list(FAILURES)]

    @property
    def n_failed(self) -> int:
        """Number of failed replicates (error, non-convergence or non-finite)."""
        return int(self.failures.sum())

    @property
    def n_completed(self) -> int:
        """Replicates that ran (usable or failed)."""
        return int(self.n_sims - self.status_counts["not-run"])

    @property
    def n_usable(self) -> int:
        """Replicates with a usable result (status ``ok`` or ``singular``)."""
        return int(self.status_counts[list(USABLE)].sum())

    @cached_property
    def _usable(self) -> pd.DataFrame:
        usable: pd.DataFrame = self.replicates[self.replicates["status"].isin(USABLE)]
        return usable

    @property
    def n_rejected(self) -> int:
        """Usable replicates with ``p < alpha``."""
        return int(self._usable["rejected"].sum())

    # ---------------------------------------------------------------- power
    @property
    def power(self) -> float:
        """Rejection rate among usable replicates."""
        return self.n_rejected / self.n_usable if self.n_usable else math.nan

    @property
    def power_all(self) -> float:
        """Rejection rate among all replicates that ran, failures counted as non-rejections."""
        return self.n_rejected / self.n_completed if self.n_completed else math.nan

    @property
    def pvalues(self) -> np.ndarray:
        """Per-replicate p-values (NaN where a replicate failed or did not run)."""
        return self.replicates["p_value"].to_numpy(copy=True)

    @property
    def estimate(self) -> float:
        """The Monte-Carlo power estimate (same as :attr:`power`)."""
        return self.power

    @property
    def mc_std_error(self) -> float:
        """Monte-Carlo standard error of :attr:`power`, ``sqrt(p (1 - p) / n_usable)``."""
        n = self.n_usable
        return math.sqrt(self.power * (1 - self.power) / n) if n else math.nan

    @property
    def std_error(self) -> float:
        """Same as :attr:`mc_std_error`."""
        return self.mc_std_error

    def conf_int(
        self, confidence_level: float = 0.95, *, failures: str = "exclude"
    ) -> tuple[float, float]:
        """Exact (Clopper-Pearson) confidence interval of the power.

        Parameters
        ----------
        confidence_level : float, default 0.95
        failures : {"exclude", "count"}
            ``"exclude"``: interval for :attr:`power` (usable replicates); ``"count"``: for
            :attr:`power_all` (failures as non-rejections).

        Returns
        -------
        tuple of float
            ``(low, high)``.
        """
        level = check_probability("confidence_level", confidence_level)
        if failures not in ("exclude", "count"):
            raise OptionError(f"`failures` must be one of 'exclude', 'count'; got {failures!r}.")
        n = self.n_usable if failures == "exclude" else self.n_completed
        return _clopper_pearson(self.n_rejected, n, level)

    @property
    def type_i_error(self) -> float:
        """The rejection rate when the true effect is 0 (raises otherwise)."""
        if self.true_value is None or self.true_value != 0:
            raise AttributeError(
                "type_i_error is defined only for a run with a true effect of 0 "
                f"(true_value is {self.true_value}); read `power` instead."
            )
        return self.power

    # ---------------------------------------------------------------- estimator
    @property
    def mean_estimate(self) -> float:
        """Mean of the usable estimates."""
        return float(self._usable["estimate"].mean()) if self.n_usable else math.nan

    @property
    def empirical_std_error(self) -> float:
        """Standard deviation of the usable estimates (the true sampling SD, estimated)."""
        return float(self._usable["estimate"].std(ddof=1)) if self.n_usable > 1 else math.nan

    @property
    def mean_std_error(self) -> float:
        """Mean of the model-based standard errors of the usable replicates."""
        return float(self._usable["std_error"].mean()) if self.n_usable else math.nan

    @property
    def bias(self) -> float:
        """Mean estimate minus the true value (NaN without a true value)."""
        if self.true_value is None:
            return math.nan
        return self.mean_estimate - self.true_value

    @property
    def bias_mc_std_error(self) -> float:
        """Monte-Carlo standard error of :attr:`bias`."""
        return self.empirical_std_error / math.sqrt(self.n_usable) if self.n_usable else math.nan

    @property
    def rmse(self) -> float:
        """Root mean squared error of the usable estimates about the true value."""
        if self.true_value is None or not self.n_usable:
            return math.nan
        return float(np.sqrt(np.mean((self._usable["estimate"] - self.true_value) ** 2)))

    @property
    def coverage(self) -> float:
        """Share of usable replicates whose ``1 - alpha`` interval contains the true value."""
        if self.true_value is None or not self.n_usable:
            return math.nan
        u = self._usable
        inside = (u["conf_low"] <= self.true_value) & (self.true_value <= u["conf_high"])
        return float(inside.mean())

    @property
    def coverage_mc_std_error(self) -> float:
        """Monte-Carlo standard error of :attr:`coverage`."""
        c = self.coverage
        return math.sqrt(c * (1 - c) / self.n_usable) if self.n_usable else math.nan

    # ---------------------------------------------------------------- presentation
    def summary(self) -> Summary:
        """Summary table (``as_text()``, ``as_html()``, ``as_markdown()``, ``as_latex()``).

        Returns
        -------
        Summary
            Power with its Monte-Carlo error, failures, bias, RMSE and coverage.
        """
        label = "type-I error" if self.true_value == 0 else "power"
        low, high = self.conf_int()
        low_all, high_all = self.conf_int(failures="count")
        counts = self.status_counts
        rows: list[tuple[str, str]] = [
            ("analysis", self.analysis),
            (
                "replicates",
                f"{self.n_sims} requested, {self.n_completed} ran, {self.n_usable} usable",
            ),
            ("alpha (two-sided)", f"{self.alpha:.4g}"),
            (
                label,
                f"{self.power:.4f} (MC s.e. {self.mc_std_error:.4f}; exact 95% CI "
                f"{low:.4f} to {high:.4f})",
            ),
            (
                f"{label}, failures as non-rejections",
                f"{self.power_all:.4f} (95% CI {low_all:.4f} to {high_all:.4f})",
            ),
            (
                "failures",
                ", ".join(f"{k} {int(counts[k])}" for k in FAILURES)
                + f"; singular {int(counts['singular'])}",
            ),
        ]
        if self.true_value is not None:
            rows += [
                ("true value", f"{self.true_value:.6g}"),
                ("mean estimate", f"{self.mean_estimate:.6g}"),
                ("bias", f"{self.bias:.4g} (MC s.e. {self.bias_mc_std_error:.2g})"),
                ("RMSE", f"{self.rmse:.4g}"),
                (
                    f"coverage of {100 * (1 - self.alpha):.4g}% CI",
                    f"{self.coverage:.4f} (MC s.e. {self.coverage_mc_std_error:.4f})",
                ),
            ]
        rows += [
            ("empirical SD of estimates", f"{self.empirical_std_error:.4g}"),
            ("mean model-based SE", f"{self.mean_std_error:.4g}"),
        ]
        notes = [f"reproduce with rng=numpy.random.SeedSequence({list(self.seed)})"]
        notes += [f"executor failure: {e}" for e in self.executor_errors]
        return Summary(title=f"Simulated {label}", header=tuple(rows), notes=tuple(notes))

    def tidy(self) -> pd.DataFrame:
        """One row per Monte-Carlo quantity (power, power_all, coverage, bias, rmse).

        Columns follow the shared result protocol, ``term, estimate, std_error, statistic,
        df, p_value, conf_low, conf_high``, plus ``n`` (replicates used).  ``statistic``,
        ``df`` and ``p_value`` are NaN (nothing is tested); ``std_error`` is the Monte-Carlo
        SE; the power intervals are Clopper-Pearson, the others normal (95%).

        Returns
        -------
        pandas.DataFrame
            One row per quantity, the columns above.
        """
        low, high = self.conf_int()
        low_all, high_all = self.conf_int(failures="count")
        se_all = (
            math.sqrt(self.power_all * (1 - self.power_all) / self.n_completed)
            if self.n_completed
            else math.nan
        )
        z = stats.norm.ppf(0.975)
        rows = [
            ("power", self.power, self.mc_std_error, low, high, self.n_usable),
            ("power_all", self.power_all, se_all, low_all, high_all, self.n_completed),
            (
                "coverage",
                self.coverage,
                self.coverage_mc_std_error,
                self.coverage - z * self.coverage_mc_std_error,
                self.coverage + z * self.coverage_mc_std_error,
                self.n_usable,
            ),
            (
                "bias",
                self.bias,
                self.bias_mc_std_error,
                self.bias - z * self.bias_mc_std_error,
                self.bias + z * self.bias_mc_std_error,
                self.n_usable,
            ),
            ("rmse", self.rmse, math.nan, math.nan, math.nan, self.n_usable),
        ]
        out = pd.DataFrame(
            rows, columns=["term", "estimate", "std_error", "conf_low", "conf_high", "n"]
        )
        for pos, col in ((3, "statistic"), (4, "df"), (5, "p_value")):
            out.insert(pos, col, math.nan)
        table: pd.DataFrame = out
        return table

    def plot(self, ax: Axes | None = None, *, kind: str = "estimates", **kwargs: Any) -> Axes:
        """Histogram of the usable estimates (``kind="estimates"``) or p-values.

        Parameters
        ----------
        ax : matplotlib Axes, optional
        kind : {"estimates", "p_values"}
        **kwargs
            Passed to ``Axes.hist``.

        Returns
        -------
        matplotlib.axes.Axes
        """
        import matplotlib.pyplot as plt

        if kind not in ("estimates", "p_values"):
            raise OptionError(f"`kind` must be one of 'estimates', 'p_values'; got {kind!r}.")
        if ax is None:
            _, ax = plt.subplots()
        u = self._usable
        if kind == "estimates":
            ax.hist(u["estimate"], bins=kwargs.pop("bins", 30), **kwargs)
            if self.true_value is not None:
                ax.axvline(self.true_value, color="k", linestyle="--", label="true value")
                ax.legend()
            ax.set_xlabel("estimate")
        else:
            ax.hist(u["p_value"], bins=kwargs.pop("bins", np.linspace(0, 1, 21)), **kwargs)
            ax.axvline(self.alpha, color="k", linestyle="--")
            ax.set_xlabel("p-value")
        ax.set_ylabel("replicates")
        ax.set_title(f"{self.n_usable} usable replicates; power {self.power:.3f}")
        return ax

    def __repr__(self) -> str:
        return (
            f"SimulatedPowerResult(power={self.power:.4f}, mc_std_error={self.mc_std_error:.4f}, "
            f"n_usable={self.n_usable}, n_failed={self.n_failed}, n_sims={self.n_sims})"
        )

    def __str__(self) -> str:
        return self.summary().as_text()

    def _repr_html_(self) -> str:
        return self.summary().as_html()
