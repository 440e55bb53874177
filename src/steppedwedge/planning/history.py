r"""Variance components for planning, estimated from a historical panel of the clusters.

:func:`estimate_variance` fits the time-only GLMM of a panel (one row per cluster and period,
no intervention) with each random-effect structure, keeps the chosen one as a
:class:`~steppedwedge.VarianceComponents` on the link scale, and measures its sampling
uncertainty by a parametric bootstrap.  :class:`EstimatedVariance` carries the estimate, the
draws, the comparison of structures and the provenance sentence a protocol needs, and converts
the components to the trial's period length (:meth:`EstimatedVariance.for_period`).
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from .._parallel import root_seed_sequence
from .._validation import check_option
from .._warnings import warn
from ..exceptions import ConvergenceWarning, DataError, OptionError
from ..results import Summary
from ..variance import VarianceComponents
from . import _period
from ._history_boot import bootstrap, correlation_by_lag
from ._history_fit import STRUCTURES, HistoryFit, fit_structure
from ._history_profile import profile_intervals
from ._panel import PanelRows, prepare_panel
from .result import PlanningResultMixin

if TYPE_CHECKING:
    from matplotlib.axes import Axes

__all__ = ["EstimatedVariance", "estimate_variance"]

FAMILIES = ("poisson", "negative_binomial", "binomial", "gaussian")
_TIME = ("categorical", "linear")
_TERMS = ("tau2", "gamma2", "decay", "nb_size")


@dataclass(frozen=True, eq=False)
class EstimatedVariance(PlanningResultMixin):
    """Variance components estimated from a historical panel (:func:`estimate_variance`).

    Attributes
    ----------
    variance : VarianceComponents
        Point estimate on the link scale (log rate for counts, log odds for binomial):
        ``tau2`` the persistent cluster variance, ``gamma2`` the cluster-period variance
        (decaying by ``decay`` per period for the decay structures), ``sigma2 = 0`` (counts and
        binomial outcomes have no residual variance on the link scale; for
        ``family="gaussian"`` the residual variance).
    draws : tuple of VarianceComponents
        Parametric-bootstrap draws (empty when ``n_boot=0``), the sampling uncertainty of
        ``variance``; :func:`steppedwedge.assurance` averages power over them.
    nb_size, nb_size_draws : float or None, tuple of float
        Negative binomial size ``k`` (variance ``mu + mu^2 / k``) and its draws.
    loglik : float
        Maximised Laplace log-likelihood of the chosen structure, constants included (as
        glmmTMB's ``logLik``).
    structures : pandas.DataFrame
        One row per structure fitted: ``structure, loglik, n_par, aic, delta_aic, tau2, gamma2,
        decay, nb_size, converged``.
    structure, family, outcome, cluster, period, exposure, time : str or None
        What was fitted.
    period_months : float
        Length of one period of the components, in months.
    conversion : str
        How the components were converted from the panel's periods ("" when not converted).
    n_obs, n_clusters, n_periods : int
        Rows, clusters and periods used.
    periods : tuple
        Period labels of the panel used.
    excluded, exclude_reason : tuple, str
        Clusters left out by ``exclude``, and why.
    n_missing, missing_note : int, str
        Rows dropped for a missing value, and which.
    source : str
        Where the panel comes from (as given to :func:`estimate_variance`).
    subset : tuple
        The ``councils=`` asked for (empty for the whole panel).
    correlation_by_lag : pandas.DataFrame
        ``lag, n_pairs, observed, fitted``: correlation of a cluster's log rates (log odds)
        ``lag`` periods apart, observed in the panel (after removing period means) and implied
        by the fit (delta method: the sampling variance of a log count ``1/y`` added at lag 0).
    n_boot, n_boot_failed : int
        Bootstrap replicates requested, and those whose fit failed (left out of ``draws``).
    national : EstimatedVariance or None
        With ``councils=``: the same fit to the whole (selected) panel, for comparison.
    messages : tuple of str
        Notes on the fit (boundary estimates, non-convergence, exclusions).
    interval_method : str
        What :meth:`tidy` and :meth:`conf_int` report: ``"profile"`` (profile-likelihood
        intervals, computed by :func:`estimate_variance` at its ``confidence_level``),
        ``"bootstrap"`` (percentile intervals of ``draws``) or ``"none"``; ``""`` (a result
        saved before this field existed) reads as ``"bootstrap"``.
    profile_intervals : tuple of (float, str, float, float)
        ``(confidence_level, term, low, high)`` of every profile-likelihood interval computed.
    """

    variance: VarianceComponents
    draws: tuple[VarianceComponents, ...]
    nb_size: float | None
    nb_size_draws: tuple[float, ...]
    loglik: float
    structures: pd.DataFrame
    structure: str
    family: str
    outcome: str
    cluster: str
    period: str
    exposure: str | None
    time: str
    period_months: float
    n_obs: int
    n_clusters: int
    n_periods: int
    periods: tuple[Any, ...]
    excluded: tuple[Any, ...]
    exclude_reason: str
    n_missing: int
    missing_note: str
    correlation_by_lag: pd.DataFrame
    n_boot: int
    n_boot_failed: int
    source: str = ""
    conversion: str = ""
    subset: tuple[Any, ...] = ()
    national: EstimatedVariance | None = None
    messages: tuple[str, ...] = field(default=())
    interval_method: str = ""
    profile_intervals: tuple[tuple[float, str, float, float], ...] = ()

    # ------------------------------------------------------------------ conversion
    def for_period(
        self, months: float = 3, *, gamma2: str | float | None = None
    ) -> EstimatedVariance:
        r"""Convert the components (and their draws) to periods of ``months`` months.

        Parameters
        ----------
        months : float, default 3
            Length of the trial's periods (3 = quarters, 1 = months).
        gamma2 : {"same", "averaged"} or float
            The council-period variance of the new period, which annual data cannot
            identify: you must choose.

            * ``"same"``: the council-period deviation of a quarter has the variance of a
              year's (a deviation that moves slowly within the year).
            * ``"averaged"``: the panel's deviation is the average over its period of a
              stationary AR(1) (Ornstein-Uhlenbeck) process in calendar time, so a shorter
              period averages less and varies more:
              ``gamma2_new = gamma2 f(theta m / M) / f(theta)`` with ``theta = -log(decay)``,
              ``f(x) = 2 (x - 1 + e^{-x}) / x^2``.  Needs a decay structure.
            * a number: the variance you have from elsewhere (e.g. quarterly data of a few
              councils).

        Returns
        -------
        EstimatedVariance
            A new result with ``decay**(months / period_months)`` per new period, ``tau2``
            unchanged, ``gamma2`` by the chosen rule, the same conversion applied to every
            bootstrap draw, and ``conversion`` describing it.

        Notes
        -----
        Assumptions: the persistent council level is the same on the log-rate scale whatever
        the period length; the decaying council-period effect is a stationary AR(1) process in
        calendar time, so its correlation ``t`` years apart is ``r^t`` whatever the period
        length (exact for point values of the process; for period averages, lags of one period
        or more follow it up to a constant factor).  Rates per period scale with the period
        length: the baseline rate of a quarter is a quarter of the annual rate (that is for
        the caller's ``baseline`` or exposure).  A negative-binomial size (``nb_size``, the
        extra-Poisson noise of one period's count) is carried over unchanged: how it scales
        with the period length is not identifiable from the panel either.

        References
        ----------
        .. [1] Grantham KL, Kasza J, Heritier S, Hemming K, Forbes AB (2019). Accounting for a
           decaying correlation structure in cluster randomized trials with continuous
           recruitment. Stat Med 38:1918-1934.

        Examples
        --------
        >>> import steppedwedge as sw
        >>> est = sw.EstimatedVariance.from_dict(sw.EstimatedVariance.example_dict())
        >>> q = est.for_period(3, gamma2="same")
        >>> round(q.variance.decay, 4), round(est.variance.decay ** 0.25, 4)
        (0.8663, 0.8663)
        """
        if gamma2 is None:
            raise OptionError(
                "`for_period` needs `gamma2=`: annual data do not identify the council-period "
                "variance of a shorter period. Choose 'same' (as the panel's period), "
                "'averaged' (the panel's value is an average of a stationary AR(1) process, "
                "so shorter periods vary more) or a number."
            )
        if isinstance(months, bool) or not (isinstance(months, (int, float)) and months > 0):
            raise OptionError(f"`months` must be a positive number; got {months!r}.")
        ratio = float(months) / self.period_months
        vc = _period.convert(self.variance, ratio, gamma2)
        draws = tuple(_period.convert(d, ratio, gamma2) for d in self.draws)
        prof = _period.convert_intervals(self.profile_intervals, ratio, gamma2)
        rule = gamma2 if isinstance(gamma2, str) else f"set to {float(gamma2):.4g}"
        text = (
            f"converted from {self.period_months:g}-month to {float(months):g}-month periods "
            f"(decay {_f(self.variance.decay)} per {self.period_months:g} months -> "
            f"{_f(vc.decay)} per {float(months):g} months, a stationary AR(1) in calendar "
            f"time; tau2 unchanged; gamma2 {rule}: {_f(self.variance.gamma2)} -> {_f(vc.gamma2)})"
        )
        return replace(
            self,
            variance=vc,
            draws=draws,
            profile_intervals=prof,
            period_months=float(months),
            conversion=text,
            national=None
            if self.national is None
            else self.national.for_period(months, gamma2=gamma2),
        )

    # ------------------------------------------------------------------ presentation
    def describe(self) -> str:
        """Say in one paragraph for a protocol: inputs, source, structure, assumptions.

        Returns
        -------
        str
        """
        v = self.variance
        parts = [
            f"Variance components were estimated from {self.source or 'a historical panel'}: "
            f"{self.outcome!r} with {self.exposure!r} as exposure, "
            if self.exposure
            else f"Variance components were estimated from {self.source or 'a historical panel'}: "
            f"{self.outcome!r}, ",
            f"{self.n_obs} {self.cluster}-{self.period} rows of {self.n_clusters} clusters over "
            f"{self.n_periods} periods ({_span(self.periods)})",
        ]
        if self.excluded:
            parts.append(f", excluding {len(self.excluded)} clusters {self.exclude_reason}")
        if self.n_missing:
            parts.append(f", {self.n_missing} rows with missing values dropped")
        fam = self.family.replace("_", " ")
        model = "Gaussian linear mixed model" if self.family == "gaussian" else f"{fam} GLMM"
        how = "maximum likelihood" if self.family == "gaussian" else "Laplace maximum likelihood"
        parts.append(
            f". A {model} with {self.time} period effects and the '{self.structure}' "
            f"random-effect structure ({how}"
        )
        if len(self.structures) > 1:
            best = self.structures.sort_values("aic").iloc[0]["structure"]
            fitted = ", ".join(f"'{s}'" for s in self.structures["structure"])
            parts.append(f"; of the structures {fitted}, '{best}' has the lowest AIC")
        scale = {"binomial": "log-odds", "gaussian": "outcome"}.get(self.family, "log-rate")
        parts.append(
            f") gave, on the {scale} scale, a persistent between-cluster variance "
            f"{_f(v.tau2)}, a cluster-period variance {_f(v.gamma2)}"
        )
        if v.decay is not None:
            parts.append(f" with correlation {_f(v.decay)} per {self.period_months:g} months")
        if self.nb_size is not None:
            parts.append(f" and negative binomial size {_f(self.nb_size)}")
        if self.family == "gaussian":
            parts.append(f", and a residual variance {_f(v.sigma2)}")
        parts.append(".")
        if self.conversion:
            parts.append(f" Components {self.conversion}.")
        parts.append(self._describe_uncertainty())
        return "".join(parts)

    def _describe_uncertainty(self) -> str:
        """Say how uncertain the components are, for :meth:`describe` ("" without intervals)."""
        method = self._method()
        if method == "profile" and self.profile_intervals:
            levels = [lv for lv, _, _, _ in self.profile_intervals]
            level = 0.95 if 0.95 in levels else levels[0]
            what = "profile-likelihood intervals"
        elif method == "bootstrap" and self.draws:
            level = 0.95
            what = f"parametric-bootstrap percentile intervals ({len(self.draws)} replicates)"
        else:
            return ""
        ends = ", ".join(
            f"{term} {_f(lo)} to {_f(hi)}"
            for term in _TERMS
            for lo, hi in [self._interval(term, level)]
            if np.isfinite(lo) or np.isfinite(hi)
        )
        return f" Their sampling uncertainty: {level:.0%} {what}: {ends}."

    def _method(self) -> str:
        """``interval_method`` with the pre-field default resolved."""
        return self.interval_method or ("bootstrap" if self.draws else "none")

    def _values(self, term: str) -> tuple[float, np.ndarray]:
        if term == "nb_size":
            return (
                np.nan if self.nb_size is None else self.nb_size,
                np.asarray(self.nb_size_draws, dtype=float),
            )
        point = getattr(self.variance, term)
        draws = [getattr(d, term) for d in self.draws]
        return (
            np.nan if point is None else float(point),
            np.array([np.nan if x is None else x for x in draws], dtype=float),
        )

    def _interval(self, term: str, confidence_level: float) -> tuple[float, float]:
        if self._method() == "profile":
            return self._profile_interval(term, confidence_level)
        _, d = self._values(term)
        d = d[np.isfinite(d)]
        if not d.size:
            return (np.nan, np.nan)
        a = (1.0 - confidence_level) / 2.0
        return (float(np.quantile(d, a)), float(np.quantile(d, 1.0 - a)))

    def _profile_interval(self, term: str, confidence_level: float) -> tuple[float, float]:
        levels = sorted({lv for lv, _, _, _ in self.profile_intervals})
        if not any(math.isclose(lv, confidence_level, abs_tol=1e-9) for lv in levels):
            raise OptionError(
                f"The profile-likelihood intervals were computed at confidence_level {levels}; "
                f"got {confidence_level!r}. Pass confidence_level=(..., {confidence_level!r}) "
                "to estimate_variance for more levels."
            )
        for lv, t, lo, hi in self.profile_intervals:
            if t == term and math.isclose(lv, confidence_level, abs_tol=1e-9):
                return (lo, hi)
        return (np.nan, np.nan)

    def tidy(self, confidence_level: float = 0.95) -> pd.DataFrame:
        """One row per component: ``term, estimate, std_error, conf_low, conf_high``.

        ``std_error`` is the standard deviation of the bootstrap draws (NaN without draws).
        The interval is the one of ``interval_method``: the profile-likelihood interval
        (``intervals="profile"``; ``confidence_level`` must be one of the levels computed),
        or the percentile interval of the draws (``"bootstrap"``); NaN with ``"none"``.

        Parameters
        ----------
        confidence_level : float, default 0.95

        Returns
        -------
        pandas.DataFrame

        Raises
        ------
        OptionError
            Profile intervals at a level :func:`estimate_variance` did not compute.

        Notes
        -----
        Measured coverage, simulated Poisson panels from known components
        (``benchmarks/bench_estimate_variance_coverage.py``: ``tau2`` 0.1, ``gamma2`` 0.04
        decaying 0.6 per year, nested+decay), 90% intervals of ``tau2`` / ``gamma2`` /
        ``decay``:

        * profile likelihood: 91.5 / 90.7 / 90.7% of 400 panels of 40 councils x 6 years
          and 90.0 / 90.5 / 87.3% of 400 panels of 144 councils x 5 years (the DfE panel's
          size); Monte-Carlo SE 1.5%: nominal within it, except perhaps the decay at 144
          councils (1.8 SE short).  95% intervals at 40 x 6: 95.5 / 95.0 / 95.5% of 200.
        * bootstrap percentile (50 refits per panel): 78.5 / 87.0 / 87.5% of 200 panels of
          40 councils x 6 years (SE 2.1%) and 83.3 / 86.0 / 82.7% of 150 panels of 144
          councils x 5 years (SE 2.4%): short of nominal.

        Part of the bootstrap's shortfall is the finite number of draws (the 5% and 95%
        sample quantiles of 50 draws leave out about 13.5% of a new draw), part the
        estimator: the maximum-likelihood ``tau2`` is biased downwards with few
        clusters, its draws further still, and a few draws put the persistent variance into a
        slowly decaying deviation (``tau2 = 0``, decay ~0.9: 6% of the draws at 40 councils,
        0.7% at 144).  The reflected interval on the log / Fisher-z scale, Efron's
        bias-corrected percentile and a bias-corrected normal interval on the log scale did
        not reach the nominal level for all three components at both sizes either (the
        benchmark lists them): prefer ``intervals="profile"``.
        """
        rows = []
        for term in _TERMS:
            point, d = self._values(term)
            if term == "nb_size" and self.nb_size is None:
                continue
            if term == "decay" and self.variance.decay is None:
                continue
            d = d[np.isfinite(d)]
            sd = float(np.std(d, ddof=1)) if d.size > 1 else np.nan
            lo, hi = self._interval(term, confidence_level)
            rows.append((term, point, sd, lo, hi))
        out: pd.DataFrame = pd.DataFrame(
            rows, columns=["term", "estimate", "std_error", "conf_low", "conf_high"]
        )
        return out

    def conf_int(self, confidence_level: float = 0.95) -> pd.DataFrame:
        """Intervals of the components (``conf_low``, ``conf_high``), as in :meth:`tidy`.

        Parameters
        ----------
        confidence_level : float, default 0.95

        Returns
        -------
        pandas.DataFrame
            Indexed by term.

        See Also
        --------
        EstimatedVariance.tidy : the coverage of these intervals (Notes).
        """
        out: pd.DataFrame = self.tidy(confidence_level).set_index("term")
        ci: pd.DataFrame = out[["conf_low", "conf_high"]]
        return ci

    def summary(self) -> Summary:
        """Printable summary: inputs, components, structures, the comparison, the sentence.

        Returns
        -------
        steppedwedge.results.Summary
        """
        header = [
            ("Outcome", f"{self.outcome} ({self.family}, exposure {self.exposure})"),
            ("Source", self.source or "(not given)"),
            ("Rows used", f"{self.n_obs} ({self.n_clusters} clusters x {self.n_periods} periods)"),
            ("Structure", self.structure),
            ("Period", f"{self.period_months:g} months"),
            ("Log-likelihood", f"{self.loglik:.4f}"),
            ("Intervals", self._interval_label()),
            (
                "Draws",
                f"parametric bootstrap, {len(self.draws)} draws ({self.n_boot_failed} failed)"
                if self.n_boot
                else "none (n_boot=0)",
            ),
        ]
        if self.excluded:
            header.append(("Excluded", f"{len(self.excluded)} clusters {self.exclude_reason}"))
        if self.n_missing:
            header.append(("Missing", self.missing_note))
        tables = [
            ("Variance components (link scale)", self.tidy()),
            ("Structures", self.structures),
            ("Correlation of log rates by lag", self.correlation_by_lag),
        ]
        if self.national is not None:
            tables.append(("Trial councils vs national panel", self.comparison()))
        notes = (*self.messages, self.describe())
        return Summary(
            title="Variance components estimated from history",
            header=tuple(header),
            tables=tuple(tables),
            notes=notes,
        )

    def _interval_label(self) -> str:
        method = self._method()
        if method == "profile":
            levels = sorted({lv for lv, _, _, _ in self.profile_intervals})
            return "profile likelihood at " + ", ".join(f"{lv:g}" for lv in levels)
        return "bootstrap percentile" if method == "bootstrap" else "none"

    def comparison(self) -> pd.DataFrame:
        """With ``councils=``: ``term, subset, national, difference`` (else empty).

        Returns
        -------
        pandas.DataFrame
        """
        if self.national is None:
            empty: pd.DataFrame = pd.DataFrame(columns=["term", "subset", "national", "difference"])
            return empty
        a = self.tidy().set_index("term")["estimate"]
        b = self.national.tidy().set_index("term")["estimate"]
        out = pd.DataFrame({"subset": a, "national": b.reindex(a.index)})
        out["difference"] = out["subset"] - out["national"]
        table: pd.DataFrame = out.reset_index()
        return table

    def plot(self, ax: Axes | None = None) -> Axes:
        """Observed vs fitted correlation of log rates by lag.

        Parameters
        ----------
        ax : matplotlib.axes.Axes, optional

        Returns
        -------
        matplotlib.axes.Axes
        """
        from ..plotting.history import plot_correlation_by_lag

        return plot_correlation_by_lag(self, ax=ax)

    # ------------------------------------------------------------------ serialisation
    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-serialisable dictionary (:meth:`from_dict` restores the result).

        Returns
        -------
        dict
        """
        out: dict[str, Any] = {}
        for f in self.__dataclass_fields__:
            value = getattr(self, f)
            if isinstance(value, VarianceComponents):
                value = _vc_dict(value)
            elif f == "draws":
                value = [_vc_dict(d) for d in value]
            elif isinstance(value, pd.DataFrame):
                value = _records(value)
            elif isinstance(value, EstimatedVariance):
                value = value.to_dict()
            elif f == "profile_intervals":
                value = [[lv, t, _json_num(lo), _json_num(hi)] for lv, t, lo, hi in value]
            elif isinstance(value, tuple):
                value = [_scalar(v) for v in value]
            out[f] = value
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EstimatedVariance:
        """Rebuild a result saved with :meth:`to_dict` (e.g. read back from JSON).

        Parameters
        ----------
        data : dict

        Returns
        -------
        EstimatedVariance
        """
        kw = dict(data)
        kw["variance"] = VarianceComponents(**kw["variance"])
        kw["draws"] = tuple(VarianceComponents(**d) for d in kw.get("draws", []))
        for name in ("structures", "correlation_by_lag"):
            kw[name] = _frame(kw.get(name, []))
        for name in ("nb_size_draws", "periods", "excluded", "subset", "messages"):
            kw[name] = tuple(kw.get(name, ()))
        kw["profile_intervals"] = tuple(
            (float(lv), str(t), _num(lo), _num(hi))
            for lv, t, lo, hi in kw.get("profile_intervals", ())
        )
        if kw.get("national") is not None:
            kw["national"] = cls.from_dict(kw["national"])
        return cls(**kw)

    @staticmethod
    def example_dict() -> dict[str, Any]:
        """Return a small saved estimate (for examples and tests of the conversions).

        Returns
        -------
        dict
        """
        vc = {"sigma2": 0.0, "tau2": 0.11, "gamma2": 0.031, "decay": 0.5633}
        return {
            "variance": vc,
            "draws": [],
            "nb_size": None,
            "nb_size_draws": [],
            "loglik": -3594.4,
            "structures": [],
            "structure": "nested+decay",
            "family": "poisson",
            "outcome": "cla_started_in_year",
            "cluster": "la_code",
            "period": "year",
            "exposure": "population_0_17",
            "time": "categorical",
            "period_months": 12.0,
            "n_obs": 715,
            "n_clusters": 143,
            "n_periods": 5,
            "periods": [2021, 2022, 2023, 2024, 2025],
            "excluded": [],
            "exclude_reason": "",
            "n_missing": 0,
            "missing_note": "",
            "correlation_by_lag": [],
            "n_boot": 0,
            "n_boot_failed": 0,
            "source": "an example",
        }


def _json_num(x: float) -> float | None:
    """NaN -> None (JSON null); infinite ends stay (an interval with no upper limit)."""
    return None if math.isnan(x) else float(x)


def _num(x: float | None) -> float:
    """Read a saved number back (JSON null -> NaN)."""
    return math.nan if x is None else float(x)


def _f(x: float | None) -> str:
    return "NA" if x is None or not np.isfinite(x) else f"{x:.4g}"


def _span(periods: tuple[Any, ...]) -> str:
    return f"{periods[0]}-{periods[-1]}" if periods else ""


def _scalar(v: Any) -> Any:
    return v.item() if isinstance(v, np.generic) else v


def _vc_dict(vc: VarianceComponents) -> dict[str, Any]:
    return {"sigma2": vc.sigma2, "tau2": vc.tau2, "gamma2": vc.gamma2, "decay": vc.decay}


def _frame(records: list[dict[str, Any]]) -> pd.DataFrame:
    """Rebuild a saved table: ``None`` (JSON null) back to NaN in numeric columns."""
    out: pd.DataFrame = pd.DataFrame(records)
    for col in out.columns:
        if out[col].map(lambda v: v is None or isinstance(v, (int, float))).all():
            out[col] = out[col].astype(float) if out[col].dtype == object else out[col]
    return out


def _records(df: pd.DataFrame) -> list[dict[str, Any]]:
    return [
        {
            str(k): (None if isinstance(v, float) and math.isnan(v) else _scalar(v))
            for k, v in r.items()
        }
        for r in df.to_dict(orient="records")
    ]


def estimate_variance(
    panel: pd.DataFrame,
    *,
    outcome: str,
    cluster: str,
    period: str,
    exposure: str | None = None,
    trials: str | None = None,
    family: str = "poisson",
    structure: str = "nested+decay",
    time: str = "categorical",
    exclude: str | Sequence[Hashable] | None = None,
    councils: Sequence[Hashable] | None = None,
    missing: str = "drop",
    n_boot: int = 0,
    rng: Any = None,
    period_months: float = 12.0,
    compare: bool = True,
    source: str = "",
    intervals: str | None = None,
    confidence_level: float | Sequence[float] = 0.95,
) -> EstimatedVariance:
    r"""Estimate the variance components of a planned trial from a historical panel.

    Fits the GLMM of the panel without an intervention,
    ``g(E y_ij) = beta_0 + beta_j + log(exposure_ij) + a_i + c_ij``, with ``a_i ~ N(0, tau2)``
    (persistent cluster effect) and the cluster-period effects ``c_ij`` of ``structure``, by
    Laplace maximum likelihood (the engine of :func:`steppedwedge.fit`; glmmTMB's
    approximation, constants included).

    Parameters
    ----------
    panel : pandas.DataFrame
        One row per cluster and period (e.g. :func:`steppedwedge.datasets.load_dfe_panel`).
        Never modified.
    outcome, cluster, period : str
        Columns: the count (events), the cluster label and the period (numeric, dates,
        pandas periods or an ordered categorical; the lag between periods is the distance in
        their sorted positions).
    exposure : str, optional
        Counts: positive exposure (e.g. ``population_0_17``), logged internally.
    trials : str, optional
        Binomial: the column of denominators.
    family : {"poisson", "negative_binomial", "binomial", "gaussian"}, default "poisson"
        NB2 for the negative binomial; logit link for the binomial.  ``"gaussian"``: a
        continuous outcome (e.g. a log rate), exact maximum likelihood of the linear mixed
        model with a residual variance (``variance.sigma2``); ``"nested"`` is then not
        identifiable with one row per cell and is refused (and left out of the comparison).
    structure : {"nested+decay", "nested", "decay", "cluster"}, default "nested+decay"
        Random effects (glmmTMB terms): ``"cluster"`` ``(1 | cluster)``; ``"nested"`` plus
        ``(1 | cluster:period)``; ``"decay"`` ``ar1(period_f + 0 | cluster)`` only;
        ``"nested+decay"`` ``(1 | cluster) + ar1(period_f + 0 | cluster)``: a persistent
        level (``tau2``) plus deviations (``gamma2``) whose correlation decays by ``decay``
        per period.
    time : {"categorical", "linear"}, default "categorical"
        Period effects: one per period, or a linear trend.
    exclude : str or sequence, optional
        Clusters to leave out: ``None`` (default) leaves out every cluster flagged in a
        ``boundary_change`` column when the panel has one (a council whose boundaries changed
        is a different area before and after); a column name (boolean flag; a cluster with any
        flagged row is left out); a list of cluster labels; ``()`` keeps every cluster.
    councils : sequence, optional
        Fit only these clusters (e.g. the trial's councils); the same model is also fitted
        to the whole selected panel (``national``) and the difference shown.
    missing : {"drop", "raise"}, default "drop"
        Rows with a missing outcome or exposure (``<NA>``: suppressed or not published): drop
        them with a :class:`~steppedwedge.MissingDataWarning` saying how many, or raise.
    n_boot : int, default 0
        Parametric-bootstrap replicates (simulate the fit, refit): ``draws``.  Needs ``rng``.
    rng : int, numpy.random.Generator or None
        Seed of the bootstrap; each replicate has its own spawned stream.
    period_months : float, default 12
        Length of one panel period in months (12 for annual data), used by ``for_period``.
    compare : bool, default True
        Also fit the other structures (log-likelihood and AIC in ``structures``).
    source : str, optional
        Where the panel comes from, for :meth:`EstimatedVariance.describe`.
    intervals : {"profile", "bootstrap", "none"}, optional
        What :meth:`EstimatedVariance.tidy` reports: profile-likelihood intervals
        (recommended: nominal coverage, see Notes), the draws' percentile intervals, or
        none.  Default: ``"bootstrap"`` with ``n_boot > 0``, else ``"none"``.
    confidence_level : float or sequence of float, default 0.95
        Level(s) of the profile-likelihood intervals (those ``tidy`` accepts).

    Returns
    -------
    EstimatedVariance

    Raises
    ------
    DataError
        A missing column, fewer than 2 periods (3 for ``"nested+decay"``), duplicated rows,
        non-integer or negative counts, a zero or negative exposure, missing values with
        ``missing="raise"``, or a requested council that the exclusion rule leaves out.
    OptionError
        An unknown family, structure, time model or interval method, ``n_boot > 0`` without
        ``rng``, ``intervals="bootstrap"`` without ``n_boot``, a level outside (0, 1).

    Warns
    -----
    MissingDataWarning
        When rows with missing values are dropped.
    ConvergenceWarning
        When the chosen structure does not converge (the message says what to try), or its
        decay is estimated as negative.

    Notes
    -----
    ``intervals="profile"`` inverts the likelihood-ratio test of each component [3]_: the
    values ``v`` with ``2 (loglik - loglik(v)) <= chi2_1(level)``, ``loglik(v)`` maximised
    over every other parameter (fixed effects included) with the component held at ``v``;
    they match glmmTMB profiles to 1e-4 (``tests/reference/estimate_variance_profile``).  A
    variance's lower end is 0 when the profile at 0 is within that cutoff (conservative at
    the boundary, whose test has a chi-bar-square null [4]_).  They cover at about the
    nominal rate in simulated panels (:meth:`EstimatedVariance.tidy`, Notes) and cost a few dozen
    refits: 2.4 s of CPU for the full DfE panel, 11 times its point fit.  The bootstrap
    draws (biased downwards with few clusters, as the estimate is) have percentile intervals
    that cover several points less; :func:`steppedwedge.assurance` averages power over the
    draws as they are, so its spread of power is, if anything, too narrow.

    References
    ----------
    .. [1] Kasza J, Hemming K, Hooper R, Matthews JNS, Forbes AB (2019). Impact of
       non-uniform correlation structure on sample size and power in multiple-period cluster
       randomised trials. Stat Methods Med Res 28:703-716.
    .. [2] Brooks ME, Kristensen K, van Benthem KJ, et al. (2017). glmmTMB balances speed and
       flexibility among packages for zero-inflated generalized linear mixed modeling.
       R Journal 9:378-400.
    .. [3] Venzon DJ, Moolgavkar SH (1988). A method for computing profile-likelihood-based
       confidence intervals. Appl Stat 37:87-94.
    .. [4] Self SG, Liang KY (1987). Asymptotic properties of maximum likelihood estimators
       and likelihood ratio tests under nonstandard conditions. J Am Stat Assoc 82:605-610.

    Examples
    --------
    >>> import warnings
    >>> import steppedwedge as sw
    >>> panel = sw.datasets.load_dfe_panel()
    >>> panel = panel[panel["year"] >= 2021]
    >>> with warnings.catch_warnings():
    ...     warnings.simplefilter("ignore", sw.MissingDataWarning)
    ...     est = sw.estimate_variance(panel, outcome="cla_started_in_year", cluster="la_code",
    ...                                period="year", exposure="population_0_17")
    >>> est.n_clusters, len(est.excluded)
    (143, 13)
    >>> round(est.variance.tau2, 3), round(est.variance.gamma2, 3), round(est.variance.decay, 2)
    (0.11, 0.031, 0.56)
    """
    # the work, in a function of its own (this one is its documentation)
    return _run(**locals())


def _run(
    panel: pd.DataFrame,
    *,
    outcome: str,
    cluster: str,
    period: str,
    exposure: str | None = None,
    trials: str | None = None,
    family: str = "poisson",
    structure: str = "nested+decay",
    time: str = "categorical",
    exclude: str | Sequence[Hashable] | None = None,
    councils: Sequence[Hashable] | None = None,
    missing: str = "drop",
    n_boot: int = 0,
    rng: Any = None,
    period_months: float = 12.0,
    compare: bool = True,
    source: str = "",
    intervals: str | None = None,
    confidence_level: float | Sequence[float] = 0.95,
) -> EstimatedVariance:
    """Validate the options, select the rows, fit (see :func:`estimate_variance`)."""
    check_option("family", family, FAMILIES)
    check_option("structure", structure, STRUCTURES)
    check_option("time", time, _TIME)
    if isinstance(n_boot, bool) or not isinstance(n_boot, (int, np.integer)) or n_boot < 0:
        raise OptionError(f"`n_boot` must be a non-negative integer; got {n_boot!r}.")
    if n_boot and rng is None:
        raise OptionError("`n_boot > 0` needs `rng=` (a seed) so that the draws are reproducible.")
    if not (isinstance(period_months, (int, float)) and period_months > 0):
        raise OptionError(f"`period_months` must be positive; got {period_months!r}.")
    how = _interval_options(intervals, confidence_level, int(n_boot))
    common = dict(
        outcome=outcome,
        cluster=cluster,
        period=period,
        exposure=exposure,
        trials=trials,
        family=family,
        exclude=exclude,
        missing=missing,
    )
    rows = prepare_panel(panel, councils=councils, **common)  # type: ignore[arg-type]
    national = None
    if councils is not None:
        national = estimate_variance(
            panel,
            **common,  # type: ignore[arg-type]
            structure=structure,
            time=time,
            n_boot=0,
            rng=None,
            period_months=period_months,
            compare=False,
            source=source,
        )
    return _estimate(
        rows,
        structure,
        time,
        family,
        int(n_boot),
        rng,
        compare,
        how,
        dict(
            outcome=outcome,
            cluster=cluster,
            period=period,
            exposure=exposure,
            period_months=float(period_months),
            source=source,
            subset=tuple(councils) if councils is not None else (),
            national=national,
        ),
    )


def _interval_options(
    intervals: str | None, confidence_level: float | Sequence[float], n_boot: int
) -> tuple[str, tuple[float, ...]]:
    """Validate ``intervals`` / ``confidence_level``: (method, levels)."""
    method = intervals if intervals is not None else ("bootstrap" if n_boot else "none")
    check_option("intervals", method, ("profile", "bootstrap", "none"))
    if method == "bootstrap" and not n_boot:
        raise OptionError("`intervals='bootstrap'` needs `n_boot > 0` replicates (and `rng=`).")
    raw = (
        (confidence_level,)
        if isinstance(confidence_level, (int, float, np.floating))
        else tuple(confidence_level)
    )
    levels = []
    for lv in raw:
        if isinstance(lv, bool) or not isinstance(lv, (int, float, np.floating)) or not 0 < lv < 1:
            raise OptionError(f"`confidence_level` must lie in (0, 1); got {lv!r}.")
        levels.append(float(lv))
    return method, tuple(levels)


def _profile_records(
    rows: PanelRows, fit: HistoryFit, time: str, family: str, levels: tuple[float, ...]
) -> tuple[tuple[tuple[float, str, float, float], ...], list[str]]:
    """Profile-likelihood intervals at every level, and a note on fits that did not converge."""
    if not fit.converged:
        return (), [
            "No profile-likelihood intervals: the fit did not converge (a profile needs the "
            "maximum)."
        ]
    records: list[tuple[float, str, float, float]] = []
    n_fits = n_bad = 0
    for level in levels:
        res = profile_intervals(rows, fit, time, family, level)
        n_fits, n_bad = n_fits + res.n_fits, n_bad + res.n_unconverged
        records.extend((level, t, lo, hi) for t, (lo, hi) in res.intervals.items())
    notes = []
    if n_bad:
        notes.append(
            f"{n_bad} of {n_fits} profile-likelihood refits did not converge: the interval "
            "ends resting on them may be too narrow."
        )
    if any(math.isnan(lo) or math.isnan(hi) for _, _, lo, hi in records):
        notes.append("Some profile-likelihood interval ends could not be found (NaN).")
    return tuple(records), notes


def _estimate(
    rows: PanelRows,
    structure: str,
    time: str,
    family: str,
    n_boot: int,
    rng: Any,
    compare: bool,
    how: tuple[str, tuple[float, ...]],
    meta: dict[str, Any],
) -> EstimatedVariance:
    if structure == "nested+decay" and len(rows.periods) < 3:
        raise DataError(
            f"structure='nested+decay' needs at least 3 periods; the panel has {len(rows.periods)}."
        )
    fits = {structure: fit_structure(rows, structure, time, family)}
    if compare:
        for s in STRUCTURES:
            skip = (s == "nested+decay" and len(rows.periods) < 3) or (
                s == "nested" and family == "gaussian"
            )
            if s != structure and not skip:
                fits[s] = fit_structure(rows, s, time, family)
    main = fits[structure]
    messages = _check_fit(main, family)
    stuck = [s for s, f in fits.items() if s != structure and not f.converged]
    if stuck:
        messages.append(
            f"Compared structure(s) {stuck} did not converge: their log-likelihood and AIC in "
            "`structures` are those of the last iterate (a lower bound of the maximum)."
        )
    draws, sizes, failed = (
        bootstrap(rows, main, time, family, n_boot, root_seed_sequence(rng))
        if n_boot
        else ((), (), 0)
    )
    profile: tuple[tuple[float, str, float, float], ...] = ()
    if how[0] == "profile":
        profile, notes = _profile_records(rows, main, time, family, how[1])
        messages.extend(notes)
    return EstimatedVariance(
        variance=_components(main),
        draws=draws,
        nb_size=main.nb_size,
        nb_size_draws=sizes,
        loglik=main.loglik,
        structures=_structures_table(fits),
        structure=structure,
        family=family,
        time=time,
        n_obs=len(rows.y),
        n_clusters=len(rows.clusters),
        n_periods=len(rows.periods),
        periods=tuple(_scalar(p) for p in rows.periods),
        excluded=tuple(_scalar(c) for c in rows.excluded),
        exclude_reason=rows.exclude_reason,
        n_missing=rows.n_missing,
        missing_note=rows.missing_note,
        correlation_by_lag=correlation_by_lag(rows, main, family),
        n_boot=n_boot,
        n_boot_failed=failed,
        messages=tuple(messages),
        interval_method=how[0],
        profile_intervals=profile,
        **meta,
    )


def _components(fit: HistoryFit) -> VarianceComponents:
    decay = fit.decay
    if decay is not None and decay < 0.0:
        decay = 0.0
    return VarianceComponents(sigma2=fit.sigma2, tau2=fit.tau2, gamma2=fit.gamma2, decay=decay)


def _check_fit(fit: HistoryFit, family: str) -> list[str]:
    out = []
    if not fit.converged:
        text = (
            f"structure={fit.structure!r} did not converge ({fit.message}); try "
            "structure='nested' or 'decay', time='linear', "
            + (
                "family='poisson' (the NB size may be unidentified), "
                if family == "negative_binomial"
                else ""
            )
            + "or leave out clusters with very few periods."
        )
        warn(text, ConvergenceWarning)
        out.append(text)
    if fit.decay is not None and fit.decay < 0.0:
        text = (
            f"The decay is estimated as negative ({fit.decay:.4g}): the components use decay 0 "
            "(no correlation of the cluster-period effects beyond the persistent level)."
        )
        warn(text, ConvergenceWarning)
        out.append(text)
    if fit.structure != "cluster" and fit.gamma2 == 0.0:
        out.append(
            "gamma2 is estimated as 0 (boundary): no cluster-period variation beyond the family's."
        )
    if fit.nb_size is not None and fit.nb_size >= 9.99e5:
        out.append(
            "The negative binomial size is at its upper bound (1e6): no overdispersion beyond "
            "the random effects; the Poisson fit is the same model."
        )
    return out


def _structures_table(fits: dict[str, HistoryFit]) -> pd.DataFrame:
    rows = [
        (
            s,
            f.loglik,
            f.n_par,
            f.aic,
            f.tau2,
            f.gamma2,
            np.nan if f.decay is None else f.decay,
            np.nan if f.nb_size is None else f.nb_size,
            f.converged,
        )
        for s, f in fits.items()
    ]
    out = pd.DataFrame(
        rows,
        columns=[
            "structure",
            "loglik",
            "n_par",
            "aic",
            "tau2",
            "gamma2",
            "decay",
            "nb_size",
            "converged",
        ],
    )
    out.insert(4, "delta_aic", out["aic"] - out["aic"].min())
    order = [s for s in STRUCTURES if s in fits]
    table: pd.DataFrame = out.set_index("structure").loc[order].reset_index()
    return table
