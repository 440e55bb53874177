"""Monte-Carlo power of a stepped-wedge analysis: simulate, analyse, count rejections.

:func:`simulate_power` draws ``n_sims`` datasets with :func:`steppedwedge.simulate` (or a
user's data-generating function), analyses each with the planned analysis and returns a
:class:`SimulatedPowerResult`.  Replicate ``b`` always uses the random stream
``SeedSequence(seed).spawn(n_sims)[b]``, so results do not depend on the executor, the
number of workers or the batch size.
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable, Mapping
from concurrent.futures import Executor
from dataclasses import dataclass, field, replace
from functools import cached_property
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from scipy import stats

from .._core.gls import cell_weights, gls_information
from .._parallel import make_executor, root_seed_sequence, run_batches, spawn_seeds
from .._typing import ArrayLike, RNGLike
from .._validation import check_positive_int, check_probability
from .._warnings import caller_stacklevel
from ..exceptions import (
    ConvergenceWarning,
    DataError,
    DesignError,
    OptionError,
    SteppedWedgeWarning,
)
from ..results import Summary
from ..simulate import Level, _curve, _period_vector, _simulate_iv, _sizes, arrays_to_frame
from ..simulate._draw import SimulationSpec, draw_arrays, draw_cells
from ..variance import VarianceComponents
from ._fast_lmm import fast_lmm_analyse, fast_lmm_plan

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.axes import Axes

    from ..randomise import Allocation

__all__ = ["NullSimulationPlan", "SimulatedPowerResult", "null_simulation_plan", "simulate_power"]

#: Replicate statuses. "ok" and "singular" replicates are usable; the rest are failures,
#: except "not-run" (the executor failed before the replicate finished).
STATUSES = ("ok", "singular", "non-convergence", "non-finite", "error", "not-run")
FAILURES = ("non-convergence", "non-finite", "error")
USABLE = ("ok", "singular")

_COLUMNS = (
    "estimate",
    "std_error",
    "df",
    "p_value",
    "conf_low",
    "conf_high",
)


# ======================================================================================
# analyses run inside the workers
# ======================================================================================


@dataclass(frozen=True, eq=False)
class _KnownVarianceGLS:
    """GLS of the cell means with the true variance components; Wald z-test.

    The estimator is a fixed linear combination of the cell means (weights computed once),
    so a replicate costs one dot product.
    """

    weights: np.ndarray  # (I, T), 0 where unobserved
    std_error: float
    critical_value: float  # z quantile 1 - alpha/2


@dataclass(frozen=True, eq=False)
class _Job:
    """Everything a worker needs (sent once per batch)."""

    spec: SimulationSpec | None
    dgp: Callable[[np.random.Generator], pd.DataFrame] | None
    kind: str  # "known-variance" | "callable" | "fit" | "fast-lmm"
    analysis: Any
    alpha: float
    fit_roles: Mapping[str, Any] = field(default_factory=dict)
    redraw: _Redraw | None = None  # re-randomise every replicate (``allocation=``)
    cache: dict[bytes, _Job] = field(default_factory=dict, repr=False)


@dataclass(frozen=True, eq=False)
class _Redraw:
    """How a replicate re-randomises: draw an allocation, rebuild the spec and analysis."""

    allocation: Any  # steppedwedge.randomise.Allocation (draw(1, rng))
    column_of_row: np.ndarray  # (I,) column of allocation.draw() for each design row
    sequence_matrix: np.ndarray  # (S, T) rows of the treatment matrix by sequence index
    clusters: tuple[Any, ...]  # design row labels
    periods: Any
    spec_inputs: Mapping[str, Any]  # _simulate_iv keywords except the design
    fit_options: Mapping[str, Any] | None  # sw.fit options (to rebuild a fast-path plan)


#: Re-randomised replicates cache the spec and analysis of at most this many allocations
#: per task (a restricted space has few; a large one is rarely drawn twice anyway).
_CACHE_SIZE = 512


def _job_for_allocation(job: _Job, sequences: np.ndarray) -> _Job:
    """Return the job of one drawn allocation (the design's rows in their drawn sequences)."""
    redraw = job.redraw
    assert redraw is not None
    key = sequences.tobytes()
    hit = job.cache.get(key)
    if hit is not None:
        return hit
    x = redraw.sequence_matrix[sequences[redraw.column_of_row]]
    rows = SimpleNamespace(matrix=x, clusters=redraw.clusters, periods=redraw.periods)
    times = None if job.spec is None else job.spec.times
    if times is not None:  # continuous-time decay: the drawn allocation keeps the calendar
        rows.period_midpoints = lambda: times
    spec = _simulate_iv(rows, **redraw.spec_inputs)
    kind, payload = job.kind, job.analysis
    if kind == "known-variance":
        payload = _known_variance_analysis(spec, job.alpha)
    elif kind == "fast-lmm":
        payload = fast_lmm_plan(spec, redraw.fit_options or {}, job.alpha)
        if payload is None:  # pragma: no cover - the same options qualified for the design
            kind, payload = "fit", dict(redraw.fit_options or {})
    out = replace(job, spec=spec, kind=kind, analysis=payload, redraw=None, cache={})
    if len(job.cache) < _CACHE_SIZE:
        job.cache[key] = out
    return out


def _prepare(job: _Job, rng: np.random.Generator) -> tuple[_Job, np.ndarray | None]:
    """Draw the replicate's allocation first (when re-randomising), from its own stream."""
    if job.redraw is None:
        return job, None
    sequences = np.asarray(job.redraw.allocation.draw(1, rng)[0], dtype=np.int64)
    return _job_for_allocation(job, sequences), sequences


def _known_variance_analysis(spec: SimulationSpec, alpha: float) -> _KnownVarianceGLS:
    n_clusters, n_periods = spec.shape
    x = np.where(spec.observed, np.nan_to_num(spec.treatment), 0.0)
    z = np.zeros((n_clusters, n_periods, n_periods + 1))
    idx = np.arange(n_periods)
    z[:, idx, idx] = 1.0
    z[:, :, -1] = x
    z = np.where(spec.observed[:, :, None], z, 0.0)
    vc = VarianceComponents(
        sigma2=spec.sigma2,
        tau2=spec.tau2,
        gamma2=spec.gamma2,
        eta2=spec.eta2,
        rho=spec.rho,
        psi2=spec.psi2,
        decay=spec.decay,
    )
    cov = vc.covariance(spec.size, treatment=spec.xc, churn=spec.churn, times=spec.times)
    info = gls_information(z, cov)
    contrast = np.zeros(n_periods + 1)
    contrast[-1] = 1.0
    w = cell_weights(z, cov, contrast)
    se = math.sqrt(float(np.linalg.solve(info, contrast)[-1]))
    return _KnownVarianceGLS(
        weights=np.where(spec.observed, w, 0.0),
        std_error=se,
        critical_value=float(stats.norm.ppf(1 - alpha / 2)),
    )


def _generate(job: _Job, rng: np.random.Generator) -> Any:
    if job.dgp is not None:
        return job.dgp(rng)
    assert job.spec is not None
    if job.kind == "fast-lmm":
        return draw_cells(job.spec, rng)
    arrays = draw_arrays(job.spec, rng)
    if job.kind == "known-variance":
        return arrays
    return arrays_to_frame(job.spec, arrays)


def _analyse(job: _Job, data: Any) -> Any:
    if job.kind == "known-variance":
        gls: _KnownVarianceGLS = job.analysis
        means = np.nan_to_num(data["outcome"])
        est = float(np.sum(gls.weights * means))
        z = est / gls.std_error
        half = gls.critical_value * gls.std_error
        return {
            "estimate": est,
            "std_error": gls.std_error,
            "df": math.inf,
            "p_value": math.erfc(abs(z) / math.sqrt(2.0)),
            "conf_low": est - half,
            "conf_high": est + half,
        }
    if job.kind == "fast-lmm":
        return fast_lmm_analyse(job.analysis, *data)
    if job.kind == "fit":
        from ..models.fit import fit  # noqa: PLC0415 - needed only when rows are refitted

        return fit(data, **job.fit_roles, **job.analysis)
    return job.analysis(data)


def _number(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def _extract(result: Any, alpha: float) -> tuple[dict[str, float], bool | None, bool | None]:
    """Estimate, SE, df, p-value and CI of an analysis result; plus converged/singular flags."""
    out = dict.fromkeys(_COLUMNS, math.nan)
    converged: bool | None = None
    singular: bool | None = None
    if isinstance(result, Mapping):
        for key in _COLUMNS:
            if key in result:
                out[key] = _number(result[key])
        if "pvalue" in result:
            out["p_value"] = _number(result["pvalue"])
        if "conf_int" in result:
            ci = np.asarray(result["conf_int"], dtype=float).ravel()
            if ci.size == 2:
                out["conf_low"], out["conf_high"] = float(ci[0]), float(ci[1])
        converged = result.get("converged")
        singular = result.get("singular")
    elif isinstance(result, (tuple, list)):
        vals = [_number(v) for v in result]
        if len(vals) not in (3, 5):
            raise TypeError(
                "an analysis returning a tuple must give (estimate, std_error, p_value) or "
                f"(estimate, std_error, p_value, conf_low, conf_high); got {len(vals)} values."
            )
        out["estimate"], out["std_error"], out["p_value"] = vals[:3]
        if len(vals) == 5:
            out["conf_low"], out["conf_high"] = vals[3:]
    else:
        for key, attr in (("estimate", "estimate"), ("std_error", "std_error"), ("df", "df")):
            out[key] = _number(getattr(result, attr, math.nan))
        p = getattr(result, "pvalue", getattr(result, "p_value", math.nan))
        out["p_value"] = _number(p() if callable(p) else p)
        conf = getattr(result, "conf_int", None)
        if callable(conf):
            ci = np.asarray(conf(confidence_level=1.0 - alpha), dtype=float).ravel()
            if ci.size == 2:
                out["conf_low"], out["conf_high"] = float(ci[0]), float(ci[1])
        converged = getattr(result, "converged", None)
        singular = getattr(result, "singular", None)
    if (
        math.isnan(out["conf_low"])
        and math.isfinite(out["estimate"])
        and math.isfinite(out["std_error"])
    ):
        df = out["df"]
        crit = (
            stats.t.ppf(1 - alpha / 2, df)
            if math.isfinite(df) and df > 0
            else stats.norm.ppf(1 - alpha / 2)
        )
        out["conf_low"] = out["estimate"] - crit * out["std_error"]
        out["conf_high"] = out["estimate"] + crit * out["std_error"]
    return (
        out,
        (None if converged is None else bool(converged)),
        (None if singular is None else bool(singular)),
    )


def _replicate(job: _Job, seed: np.random.SeedSequence) -> tuple[Any, ...]:
    """Run one replicate.

    Returns ``(estimate, std_error, df, p_value, conf_low, conf_high, status, message,
    sequences)``; ``sequences`` is the drawn allocation (None without re-randomisation).
    """
    rng = np.random.default_rng(seed)
    nan6 = (math.nan,) * 6
    sequences: np.ndarray | None = None
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            work, sequences = _prepare(job, rng)
            data = _generate(work, rng)
            values, converged, singular = _extract(_analyse(work, data), job.alpha)
        except Exception as exc:  # classified, never raised: one bad replicate is data
            drawn = None if sequences is None else tuple(int(v) for v in sequences)
            return (*nan6, "error", f"{type(exc).__name__}: {exc}", drawn)
    messages = "; ".join(sorted({str(w.message) for w in caught}))[:300]
    conv_warned = any(issubclass(w.category, ConvergenceWarning) for w in caught)
    row = tuple(values[c] for c in _COLUMNS)
    if converged is False or (converged is None and conv_warned):
        status = "non-convergence"
    elif not all(math.isfinite(values[c]) for c in ("estimate", "std_error", "p_value")):
        status = "non-finite"
    elif singular:
        status = "singular"
    else:
        status = "ok"
    drawn = None if sequences is None else tuple(int(v) for v in sequences)
    return (*row, status, messages, drawn)


# ======================================================================================
# result
# ======================================================================================


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


# ======================================================================================
# public entry point
# ======================================================================================


def simulate_power(
    design: Any,
    *,
    effect: float | None = None,
    variance: VarianceComponents | None = None,
    cluster_size: ArrayLike | None = None,
    family: str = "gaussian",
    link: str | None = None,
    baseline: float | ArrayLike | None = None,
    time_effects: Any = None,
    effect_curve: Any = None,
    sampling: str = "cross-sectional",
    churn: float | None = None,
    dispersion: float | None = None,
    level: Level | None = None,
    dgp: Callable[[np.random.Generator], pd.DataFrame] | None = None,
    analysis: Mapping[str, Any] | Callable[[Any], Any] | str | None = None,
    allocation: Allocation | None = None,
    true_value: float | None = None,
    n_sims: int = 1000,
    alpha: float = 0.05,
    rng: RNGLike = None,
    executor: Executor | None = None,
    n_jobs: int | None = None,
    progress: bool = True,
    batch_size: int | None = None,
    fast: bool = True,
    timeout: float | None = None,
) -> SimulatedPowerResult:
    """Monte-Carlo power, type-I error, bias, RMSE and coverage of a planned analysis.

    Parameters
    ----------
    design : Design
        The design (an ``(I, T)`` treatment matrix is also accepted).
    effect, variance, cluster_size, family, link, baseline, time_effects, effect_curve, \
sampling, churn, dispersion, level
        The data-generating model, as in :func:`steppedwedge.simulate` (``effect`` on the
        link scale).  Not needed when ``dgp`` is given.  ``cluster_size`` may be an
        ``(I, T)`` matrix of real per-cluster, per-period sizes (0 = no data) and
        ``baseline`` one control level per cluster (e.g. each council's published risk);
        the random effects of ``variance`` are added on top of a per-cluster baseline, so
        use ``tau2=0`` (and ``gamma2=0``) when the baselines should be the only
        between-cluster differences.
    dgp : callable, optional
        A user's data-generating function ``dgp(rng) -> DataFrame`` replacing
        :func:`~steppedwedge.simulate`; for :func:`steppedwedge.fit` analyses it must return
        the columns :func:`~steppedwedge.simulate` would (``cluster``, ``period``,
        ``treatment``, ``outcome`` and ``trials``/``population``/``individual`` as needed).
        It must be picklable for process pools (a module-level function or
        :func:`functools.partial`).
    analysis : dict, callable or "known-variance", optional
        What to fit to each dataset.  A dict: options of :func:`steppedwedge.fit` (e.g.
        ``{"random": "nested", "dof": "kenward-roger"}``); default ``{}`` (its defaults).  A
        callable ``analysis(data)`` gets the simulated DataFrame and returns a result with
        ``estimate``, ``std_error``, ``pvalue`` (and optionally ``df``,
        ``conf_int(confidence_level=)``, ``converged``, ``singular``), a mapping with those
        keys, or a tuple ``(estimate, std_error, p_value[, conf_low, conf_high])``.
        ``"known-variance"``: GLS of the cell means with the true variance components and a
        z-test (Gaussian only; the exact analysis analytic power describes).
    allocation : Allocation, optional
        Re-randomise every replicate under the trial's real scheme: replicate ``b`` first
        draws its own allocation, ``allocation.draw(1, rng_b)``, uniformly from the admissible
        set of :func:`steppedwedge.randomise` (stratified, restricted to permitted sequences
        or covariate-constrained), from its own stream ``rng_b`` (so the draw does not depend
        on workers or batch size), and then simulates the data with each cluster in its
        drawn sequence.  ``design`` must then be ``allocation.design`` (or a Design with the
        same cluster labels and sequences).  A cluster's characteristics travel with it:
        row ``i`` of ``cluster_size`` and entry ``i`` of ``baseline`` belong to the cluster
        labelled ``design.clusters[i]`` whatever sequence it draws; only its treatment
        pattern changes.  :attr:`SimulatedPowerResult.estimates` records each replicate's
        allocation (columns ``allocation`` and ``sequences``).  This is the null simulation
        of a trial "as randomised": with ``effect=0`` the rejection rate is the type-I error
        of the analysis under the real randomisation.
    true_value : float, optional
        True value of the estimand, for bias, RMSE and coverage.  Default ``effect`` (times
        the mean of ``effect_curve`` over the exposure times, i.e. the time-averaged
        effect, when a curve is given).
    n_sims : int, default 1000
        Number of replicates.
    alpha : float, default 0.05
        Two-sided size of the test; intervals for coverage are at level ``1 - alpha``.
    rng : int, numpy.random.Generator, SeedSequence or None
        Root seed; replicate ``b`` uses ``SeedSequence(rng).spawn(n_sims)[b]``.
    executor : concurrent.futures.Executor, optional
        Where to run replicates: any executor, e.g. a ``ProcessPoolExecutor``, a dask
        ``Client(...).get_executor()`` or ``ray.util.multiprocessing``/Ray's
        ``concurrent.futures`` executor.  Default: serial in this process.
    n_jobs : int, optional
        Without ``executor``: ``n_jobs > 1`` runs on a process pool of that size.
    progress : bool, default True
        Show a progress bar (only when tqdm is installed and stderr is a terminal).
    batch_size : int, optional
        Replicates per task sent to the executor (default: about four batches per worker).
        Results do not depend on it.
    fast : bool, default True
        For Gaussian cross-sectional data and :func:`steppedwedge.fit` options limited to
        ``random``, ``dof``, ``method`` (and ``time="categorical"``,
        ``effect="immediate"``, ``vcov="model"``), draw the cluster-period sufficient
        statistics and fit them with the same engine as :func:`steppedwedge.fit` (no rows, no
        DataFrame): the same estimate, SE, df and p-value as refitting the rows, at a
        fraction of the cost.  The draw is exact in distribution; ``fast=False`` simulates
        rows and refits them with :func:`steppedwedge.fit` instead.
    timeout : float, optional
        Seconds to wait for an executor's results; replicates unfinished by then are
        reported as ``"not-run"`` (with a warning) instead of waiting forever.

    Returns
    -------
    SimulatedPowerResult

    Raises
    ------
    ValueError
        For invalid inputs, or when the analysis rejects the first simulated dataset (a bad
        fit option, or a ``dgp`` returning the wrong columns): checked before the run.

    Warns
    -----
    SteppedWedgeWarning
        When the executor fails mid-run; the result then holds the replicates that finished
        (the others have status ``"not-run"``).

    Notes
    -----
    Power is reported two ways: among usable replicates (:attr:`~SimulatedPowerResult.power`)
    and with failures counted as non-rejections (:attr:`~SimulatedPowerResult.power_all`).
    The Monte-Carlo SE is ``sqrt(p (1 - p) / B)`` and the interval is Clopper-Pearson.

    Parallel and distributed runs: any :class:`concurrent.futures.Executor` works, and the
    per-replicate results are identical to a serial run.  With dask.distributed (the
    ``[distributed]`` extra) pass ``Client(...).get_executor()``.  With Ray, whose
    ``ObjectRef.future()`` returns a :class:`concurrent.futures.Future`, a small adapter
    is enough::

        class RayExecutor(concurrent.futures.Executor):
            def submit(self, fn, /, *args, **kwargs):
                return ray.remote(fn).remote(*args, **kwargs).future()

    Work is sent in batches of replicates (``batch_size``), each run with single-threaded
    BLAS (via threadpoolctl when installed), since replicates use tiny matrices.

    References
    ----------
    .. [1] Baio G, Copas A, Ambler G, et al. (2015). Sample size calculation for a stepped
       wedge trial. Trials 16:354.

    Examples
    --------
    >>> import numpy as np
    >>> import steppedwedge as sw
    >>> from steppedwedge.planning.simulation import simulate_power
    >>> x = np.triu(np.ones((4, 5)), k=1)  # 4 clusters, one per sequence
    >>> vc = sw.VarianceComponents(sigma2=1.0, tau2=0.05)
    >>> res = simulate_power(x, effect=0.5, variance=vc, cluster_size=20,
    ...                      analysis="known-variance", n_sims=200, rng=1, progress=False)
    >>> res.n_usable
    200
    >>> 0.5 < res.power < 1.0
    True
    """
    t0 = time.perf_counter()
    job, n_sims, alpha, truth, label = _simulate_power_iv(
        design,
        effect=effect,
        variance=variance,
        cluster_size=cluster_size,
        family=family,
        link=link,
        baseline=baseline,
        time_effects=time_effects,
        effect_curve=effect_curve,
        sampling=sampling,
        churn=churn,
        dispersion=dispersion,
        level=level,
        dgp=dgp,
        analysis=analysis,
        true_value=true_value,
        n_sims=n_sims,
        alpha=alpha,
        fast=bool(fast),
        allocation=allocation,
    )
    if executor is not None and not isinstance(executor, Executor):
        raise OptionError(
            "`executor` must be a concurrent.futures.Executor or None; got "
            f"{type(executor).__name__}."
        )
    if n_jobs is not None:
        n_jobs = check_positive_int("n_jobs", n_jobs)
        if executor is not None and n_jobs > 1:
            raise OptionError("give either `executor` or `n_jobs`, not both.")
    if batch_size is not None:
        batch_size = check_positive_int("batch_size", batch_size)
    if timeout is not None:
        timeout = float(timeout)
        if not timeout > 0:
            raise OptionError(f"`timeout` must be a positive number of seconds; got {timeout!r}.")
    root = root_seed_sequence(rng)
    seeds = spawn_seeds(root, n_sims)
    _check_first(job, seeds[0])
    with make_executor(executor, n_jobs) as ex:
        outcome = run_batches(
            _replicate,
            job,
            seeds,
            executor=ex,
            batch_size=batch_size,
            progress=progress,
            desc="simulate_power",
            timeout=timeout,
        )
    rows = [
        r if r is not None else (*(math.nan,) * 6, "not-run", "", None) for r in outcome.results
    ]
    frame = pd.DataFrame(rows, columns=[*_COLUMNS, "status", "message", "sequences"])
    frame.insert(0, "replicate", np.arange(n_sims))
    if job.redraw is None:
        frame = frame.drop(columns="sequences")
    else:
        frame.insert(
            frame.columns.get_loc("sequences"), "allocation", _allocation_index(job, frame)
        )
    usable = frame["status"].isin(USABLE)
    frame.insert(frame.columns.get_loc("status"), "rejected", usable & (frame["p_value"] < alpha))
    errors = tuple(
        f"replicates {start}..{start + count - 1}: {msg}" for start, count, msg in outcome.errors
    )
    if errors:
        n_lost = sum(count for _, count, _ in outcome.errors)
        warnings.warn(
            f"the executor failed: {n_lost} of {n_sims} replicates did not run "
            f"({errors[0]}); the result uses the {n_sims - n_lost} that finished.",
            SteppedWedgeWarning,
            stacklevel=caller_stacklevel(),
        )
    entropy = root.entropy
    seed = tuple(int(e) for e in np.atleast_1d(entropy)) if entropy is not None else ()
    return SimulatedPowerResult(
        replicates=frame,
        alpha=alpha,
        n_sims=n_sims,
        true_value=truth,
        seed=seed,
        analysis=label,
        executor_errors=errors,
        elapsed=time.perf_counter() - t0,
        allocation_clusters=None if job.redraw is None else tuple(job.redraw.allocation.clusters),
        n_admissible=None if job.redraw is None else int(job.redraw.allocation.n_admissible),
    )


def _allocation_index(job: _Job, frame: pd.DataFrame) -> pd.Series:
    """Row of ``allocation.admissible`` drawn by each replicate (<NA> if not enumerable)."""
    assert job.redraw is not None
    allocation = job.redraw.allocation
    index_of: dict[bytes, int] | None = None
    if allocation.n_admissible <= int(allocation.options["max_enumerate"]):
        adm = np.asarray(allocation.admissible, dtype=np.int8)
        index_of = {row.tobytes(): k for k, row in enumerate(adm)}
    out = [
        pd.NA
        if seq is None or index_of is None
        else index_of.get(np.asarray(seq, dtype=np.int8).tobytes(), pd.NA)
        for seq in frame["sequences"]
    ]
    return pd.Series(out, index=frame.index, dtype="Int64")


def _check_first(job: _Job, seed: np.random.SeedSequence) -> None:
    """Run replicate 0 in this process and raise on input errors before the whole run."""
    rng = np.random.default_rng(seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        job, _ = _prepare(job, rng)
        try:
            data = _generate(job, rng)
        except Exception as exc:
            raise DataError(
                f"the data-generating function failed on the first replicate: "
                f"{type(exc).__name__}: {exc}"
            ) from exc
        if job.dgp is not None:
            _check_dgp_frame(job, data)
        try:
            result = _analyse(job, data)
            _extract(result, job.alpha)
        except (ValueError, TypeError, KeyError, AttributeError, ImportError) as exc:
            raise OptionError(
                f"the analysis rejected the first simulated dataset, so the run was not "
                f"started: {type(exc).__name__}: {exc}"
            ) from exc
        except Exception:  # numerical trouble on one dataset is a replicate failure
            return


def _check_dgp_frame(job: _Job, data: Any) -> None:
    if not isinstance(data, pd.DataFrame):
        raise DataError(f"`dgp` must return a pandas DataFrame; got {type(data).__name__}.")
    if job.kind == "fit":
        needed = [v for k, v in job.fit_roles.items() if k in _FRAME_ROLES and isinstance(v, str)]
        missing = [c for c in needed if c not in data.columns]
        if missing:
            raise DataError(
                f"`dgp` returned a DataFrame without the column(s) {missing} that the "
                f"analysis needs; it has {list(data.columns)}."
            )


_FRAME_ROLES = ("outcome", "cluster", "period", "treatment", "individual", "trials", "exposure")


def _fit_roles(spec: SimulationSpec | None, family: str, sampling: str) -> dict[str, Any]:
    roles: dict[str, Any] = {
        "outcome": "outcome",
        "cluster": "cluster",
        "period": "period",
        "treatment": "treatment",
        "family": family,
    }
    if family == "binomial" and spec is not None and spec.level == "cluster-period":
        roles["trials"] = "trials"
    if family in ("poisson", "negative_binomial"):
        roles["exposure"] = "population"
    if spec is not None and family == "binomial" and spec.link != "logit":
        roles["link"] = spec.link  # analyse on the scale the effect was simulated on
    if sampling == "cohort":
        roles["individual"] = "individual"
    return roles


def _simulate_power_iv(
    design: Any,
    *,
    effect: Any,
    variance: Any,
    cluster_size: Any,
    family: Any,
    link: Any,
    baseline: Any,
    time_effects: Any,
    effect_curve: Any,
    sampling: Any,
    churn: Any,
    dispersion: Any,
    level: Any,
    dgp: Any,
    analysis: Any,
    true_value: Any,
    n_sims: Any,
    alpha: Any,
    fast: bool = True,
    allocation: Any = None,
) -> tuple[_Job, int, float, float | None, str]:
    """Validate :func:`simulate_power` inputs; return the worker job and run settings."""
    n_sims = check_positive_int("n_sims", n_sims)
    alpha = check_probability("alpha", alpha)
    spec: SimulationSpec | None = None
    if dgp is not None:
        if not callable(dgp):
            raise OptionError(
                f"`dgp` must be a callable dgp(rng) -> DataFrame; got {type(dgp).__name__}."
            )
    else:
        missing = [
            n
            for n, v in (("effect", effect), ("variance", variance), ("cluster_size", cluster_size))
            if v is None
        ]
        if missing:
            raise OptionError(
                f"{', '.join('`' + m + '`' for m in missing)} must be given (or a `dgp`)."
            )
        spec = _simulate_iv(
            design,
            effect=effect,
            variance=variance,
            cluster_size=cluster_size,
            family=family,
            link=link,
            baseline=baseline,
            time_effects=time_effects,
            effect_curve=effect_curve,
            sampling=sampling,
            churn=churn,
            dispersion=dispersion,
            level=level if level is not None or analysis != "known-variance" else "cluster-period",
        )
    # the true value of the estimand
    truth: float | None
    if true_value is not None:
        truth = float(true_value)
        if not math.isfinite(truth):
            raise OptionError(f"`true_value` must be finite; got {true_value!r}.")
    elif effect is None:
        truth = None
    elif spec is not None and effect_curve is not None:
        exposed = spec.exposure_time[spec.observed & (spec.exposure_time > 0)]
        max_e = int(exposed.max()) if exposed.size else 0
        curve_vals = [
            float(np.mean(spec.xc[(spec.exposure_time == e) & spec.observed]))
            for e in range(1, max_e + 1)
        ]
        truth = float(effect) * float(np.mean(curve_vals)) if curve_vals else float(effect)
    else:
        truth = float(effect)

    fit_roles: dict[str, Any] = {}
    payload: Any
    if analysis == "known-variance":
        if spec is None:
            raise OptionError(
                "analysis='known-variance' needs the built-in data-generating model, not a `dgp`."
            )
        if spec.family != "gaussian":
            raise OptionError("analysis='known-variance' is for family='gaussian' only.")
        if spec.level != "cluster-period":
            raise OptionError(
                "analysis='known-variance' works on cluster-period means; leave `level` unset."
            )
        kind, payload = "known-variance", _known_variance_analysis(spec, alpha)
        label = "GLS with known variance components, z-test"
    elif analysis is None or isinstance(analysis, Mapping):
        options = dict(analysis or {})
        reserved = [k for k in options if k in _FRAME_ROLES]
        if reserved:
            raise OptionError(
                f"`analysis` must not set the column roles {reserved}: simulated data use "
                "fixed column names."
            )
        fit_roles = _fit_roles(spec, family, sampling)
        for key in ("family", "link"):
            if key in options:
                fit_roles.pop(key, None)
        label = "sw.fit(" + ", ".join(f"{k}={v!r}" for k, v in options.items()) + ")"
        plan = fast_lmm_plan(spec, options, alpha) if fast and dgp is None else None
        if plan is not None:
            kind, payload = "fast-lmm", plan
            label += (
                f" [random={plan.random!r}, method={'reml' if plan.reml else 'ml'!r}, "
                f"dof={plan.dof!r}] on simulated cell statistics"
            )
        else:
            kind, payload = "fit", options
    elif callable(analysis):
        kind, payload = "callable", analysis
        label = getattr(analysis, "__name__", type(analysis).__name__)
    else:
        raise OptionError(
            "`analysis` must be a dict of sw.fit options, a callable analysis(data) or "
            f"'known-variance'; got {analysis!r}."
        )
    redraw = None
    if allocation is not None:
        if spec is None:
            raise OptionError(
                "`allocation` re-randomises the built-in data-generating model; it cannot be "
                "combined with a `dgp` (draw the allocation inside your `dgp` instead)."
            )
        redraw = _redraw_iv(
            allocation,
            design,
            spec,
            kind=kind,
            fit_options=dict(analysis or {}) if kind in ("fast-lmm", "fit") else None,
            spec_inputs=dict(
                effect=effect,
                variance=variance,
                cluster_size=_sizes(cluster_size, spec.shape, spec.family not in _GAUSS_BIN),
                family=family,
                link=link,
                baseline=baseline,
                time_effects=None
                if time_effects is None
                else _period_vector("time_effects", time_effects, spec.shape[1]),
                effect_curve=_curve_values(effect_curve, spec),
                sampling=sampling,
                churn=churn,
                dispersion=dispersion,
                level=spec.level,
            ),
        )
        label += f"; allocations re-drawn from {allocation.n_admissible} admissible"
    job = _Job(
        spec=spec,
        dgp=dgp,
        kind=kind,
        analysis=payload,
        alpha=alpha,
        fit_roles=fit_roles,
        redraw=redraw,
    )
    return job, n_sims, alpha, truth, label


_GAUSS_BIN = ("gaussian", "binomial")


def _curve_values(effect_curve: Any, spec: SimulationSpec) -> np.ndarray | None:
    """``effect_curve`` evaluated once at the design's exposure times 1..max (picklable)."""
    if effect_curve is None:
        return None
    max_e = int(spec.exposure_time.max())
    if max_e == 0:
        return None
    values: np.ndarray = _curve(effect_curve, np.arange(max_e + 1))[1:]
    return values


def _redraw_iv(
    allocation: Any,
    design: Any,
    spec: SimulationSpec,
    *,
    kind: str,
    fit_options: Any,
    spec_inputs: dict[str, Any],
) -> _Redraw:
    """Check that ``allocation`` randomised ``design``'s clusters; map rows to its columns."""
    from ..design import Design  # noqa: PLC0415 - avoid an import cycle at module load
    from ..randomise import Allocation  # noqa: PLC0415

    if not isinstance(allocation, Allocation):
        raise OptionError(
            "`allocation` must be an Allocation from sw.randomise(...); got "
            f"{type(allocation).__name__}."
        )
    if not isinstance(design, Design):
        raise DesignError(
            "with `allocation`, `design` must be a Design whose rows are the randomised "
            "clusters: pass `design=allocation.design`."
        )
    labels = list(spec.clusters)
    position = {c: k for k, c in enumerate(allocation.clusters)}
    unknown = [c for c in labels if c not in position]
    if unknown or len(labels) != len(position):
        raise DesignError(
            f"the rows of `design` must be the clusters `allocation` randomised "
            f"({', '.join(map(repr, allocation.clusters))}); got "
            f"{', '.join(map(repr, labels))}. Pass `design=allocation.design`."
        )
    ref = allocation.design
    same = (
        design.n_periods == ref.n_periods
        and design.n_sequences == ref.n_sequences
        and np.array_equal(design.sequence_matrix, ref.sequence_matrix, equal_nan=True)
        and np.array_equal(design.sequence_sizes, ref.sequence_sizes)
    )
    if not same:
        raise DesignError(
            "`design` does not have the sequences `allocation` was drawn for: pass "
            "`design=allocation.design`."
        )
    return _Redraw(
        allocation=allocation,
        column_of_row=np.array([position[c] for c in labels], dtype=np.intp),
        sequence_matrix=np.array(ref.sequence_matrix, dtype=float),
        clusters=tuple(labels),
        periods=spec.periods,
        spec_inputs=spec_inputs,
        fit_options=None if fit_options is None else dict(fit_options),
    )


# ======================================================================================
# the real trials' null simulation
# ======================================================================================


@dataclass(frozen=True, eq=False)
class NullSimulationPlan:
    """Inputs of a simulation of a real trial under its real randomisation scheme.

    Built by :func:`null_simulation_plan`.  Everything is aligned with the rows of
    :attr:`design` (``allocation.design``): row ``i`` of :attr:`cluster_size` and entry ``i``
    of :attr:`baseline` belong to cluster ``design.clusters[i]``.

    Attributes
    ----------
    design : Design
        The design with the real cluster labels (``allocation.design``).
    allocation : Allocation
        The restricted (stratified) randomisation; replicates re-draw from its admissible set.
    cluster_size : numpy.ndarray
        ``(I, T)`` individuals per cluster and period (0 = none).
    baseline : numpy.ndarray
        ``(I,)`` control probability of each cluster.
    """

    design: Any
    allocation: Any
    cluster_size: np.ndarray = field(repr=False)
    baseline: np.ndarray = field(repr=False)

    def simulate_power(
        self,
        analysis: Mapping[str, Any] | Callable[[Any], Any] | None = None,
        *,
        odds_ratio: float = 1.0,
        tau2: float = 0.0,
        n_sims: int = 1000,
        rng: RNGLike = None,
        **options: Any,
    ) -> SimulatedPowerResult:
        """Run :func:`simulate_power` with the plan's allocation, sizes and baselines.

        Parameters
        ----------
        analysis : dict or callable, optional
            Default ``{"random": "cluster", "dof": "normal"}``: the random-intercept logistic
            GLMM with period effects and a Wald z test, as the evaluators' ``glmer(y ~ treatment
            + period + (1 | cluster))`` (``sw.fit``'s own GLMM default is a t test with
            I - 2 df, which is conservative with 5 clusters).
        odds_ratio : float, default 1.0
            True treatment odds ratio (1: the null, so the rejection rate is the type-I error).
        tau2 : float, default 0.0
            Cluster random-intercept variance added on top of the per-cluster baselines
            (logit scale).  0: the baselines are the only between-cluster differences.
        n_sims : int, default 1000
        rng : int, Generator, SeedSequence or None
        **options
            Other :func:`simulate_power` options (``n_jobs``, ``executor``, ``progress``,
            ``batch_size``, ``alpha``, ``time_effects``...).

        Returns
        -------
        SimulatedPowerResult
        """
        if not (isinstance(odds_ratio, (int, float)) and odds_ratio > 0):
            raise OptionError(f"`odds_ratio` must be a positive number; got {odds_ratio!r}.")
        return simulate_power(
            self.design,
            effect=math.log(odds_ratio),
            variance=VarianceComponents(sigma2=1.0, tau2=tau2),
            cluster_size=self.cluster_size,
            family="binomial",
            baseline=self.baseline,
            level="cluster-period",
            allocation=self.allocation,
            analysis={"random": "cluster", "dof": "normal"} if analysis is None else analysis,
            n_sims=n_sims,
            rng=rng,
            **options,
        )


def null_simulation_plan(
    trial: Any,
    *,
    counts: pd.DataFrame | None = None,
    follow_up: str = "18M",
    rng: RNGLike = 0,
) -> NullSimulationPlan:
    """Allocation, per-cluster per-period sizes and baselines of a council trial's null simulation.

    The evaluators of the Family Safeguarding trial checked their random-intercept GLMM by
    simulating 10,000 trials under the null: councils re-drawn to waves within the readiness
    strata, outcomes Bernoulli with each council's baseline probability, the real numbers of
    children per council and period.  This gathers those inputs from a
    :class:`~steppedwedge.datasets.SyntheticTrial` (or any object with the same
    ``start_dates``, ``window``, ``readiness``, ``allowed_waves``, ``baseline_risk``,
    ``age_range`` and ``events``).

    Parameters
    ----------
    trial : SyntheticTrial
        E.g. :func:`steppedwedge.datasets.make_fs_like`.
    counts : pandas.DataFrame, optional
        Children per council and period, columns ``cluster, period, children`` (as
        :meth:`~steppedwedge.cohort.ReferralCohort.counts` returns, periods labelled as in
        the design from the start dates).  Default: the referral cohort of ``trial.events``
        (first referral per child in the window, aged up to the trial's upper age; unborn
        children included when the age range starts at 0).
    follow_up : str, default "18M"
        Follow-up of the default referral cohort.
    rng : int, Generator or None, default 0
        Seed of the one allocation the plan holds (it fixes only the order of the design's
        rows: every replicate re-draws its own allocation).

    Returns
    -------
    NullSimulationPlan

    Examples
    --------
    >>> import steppedwedge as sw
    >>> from steppedwedge.planning.simulation import null_simulation_plan
    >>> fs = sw.datasets.make_fs_like(n_children=3000, rng=1)
    >>> plan = null_simulation_plan(fs)
    >>> plan.allocation.n_admissible, plan.cluster_size.shape
    (12, (5, 6))
    >>> bool(2900 < plan.cluster_size.sum() <= 3000)  # children in the referral cohort
    True
    >>> res = plan.simulate_power(n_sims=4, rng=2, progress=False)
    >>> res.n_sims, sorted(res.estimates.columns)[:2]
    (4, ['allocation', 'conf_high'])
    """
    from ..cohort import cohort_from_events  # noqa: PLC0415 - keeps module import light
    from ..design import Design  # noqa: PLC0415
    from ..randomise import randomise  # noqa: PLC0415

    needed = ("start_dates", "window", "readiness", "allowed_waves", "baseline_risk")
    missing = [a for a in needed if not hasattr(trial, a)]
    if missing:
        raise OptionError(
            f"`trial` must describe a council trial (a SyntheticTrial); it lacks {missing}."
        )
    design = Design.from_start_dates(dict(trial.start_dates), "starts", window=trial.window)
    names = list(design.clusters)
    councils = pd.DataFrame({"cluster": names, "readiness": [trial.readiness[c] for c in names]})
    allocation = randomise(
        design,
        councils,
        strata="readiness",
        allowed_sequences={k: list(v) for k, v in trial.allowed_waves.items()},
        rng=rng,
        alpha=None,
    )
    if counts is None:
        low, high = getattr(trial, "age_range", (None, None))
        cohort = cohort_from_events(
            trial.events,
            design=design,
            child="child_id",
            council="council",
            referral="referral_date",
            outcome_date="looked_after_date",
            birth_date="birth_date",
            follow_up=follow_up,
            age_range=(None if not low else low, high),
        )
        counts = cohort.counts()
    if not isinstance(counts, pd.DataFrame) or not {"cluster", "period", "children"} <= set(
        counts.columns
    ):
        raise DataError("`counts` must be a DataFrame with columns cluster, period, children.")
    table = counts.pivot_table(index="cluster", columns="period", values="children", aggfunc="sum")
    final = allocation.design
    unknown = [c for c in table.index if c not in set(final.clusters)]
    if unknown:
        raise DataError(f"`counts` has clusters not in the trial: {unknown}.")
    bad_periods = [p for p in table.columns if p not in set(final.periods)]
    if bad_periods:
        raise DataError(f"`counts` has periods not in the design: {bad_periods}.")
    size = table.reindex(index=list(final.clusters), columns=list(final.periods)).fillna(0.0)
    return NullSimulationPlan(
        design=final,
        allocation=allocation,
        cluster_size=size.to_numpy(dtype=float),
        baseline=np.array([float(trial.baseline_risk[c]) for c in final.clusters]),
    )
