r"""Marginal (GEE) analysis of stepped-wedge trials.

:func:`fit_gee` fits the population-averaged model

.. math::  g(\\mu_{ijk}) = \\beta_0 + \\beta_j + \\theta X_{ij} + z_{ijk}^\\top \\gamma

(categorical period effects by default) by generalised estimating equations with a
stepped-wedge working correlation, and reports model-based, Liang--Zeger or bias-corrected
(Kauermann--Carroll, Mancl--DeRouen, Fay--Graubard) standard errors with a ``t``
reference distribution on ``I - p`` degrees of freedom.  The numerical work happens in
:mod:`steppedwedge._core.gee` on cluster-period summaries, so the cost is linear in the
number of individuals and, without individual-level covariates, independent of it.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import cached_property
from typing import Any, Literal

import numpy as np
import pandas as pd
from scipy import stats

from .._core import gee as _gee
from .._validation import check_option
from .._warnings import caller_stacklevel
from ..data import TrialData
from ..exceptions import ConvergenceWarning, DataError, OptionError, SmallSampleWarning
from ..inference.sandwich import ClusterPieces, sandwich_vcov
from ..results import ResultMixin, Summary

__all__ = ["GEEResult", "RANDOM_TO_CORSTR", "fit_gee", "fit_gee_frame"]

CorStr = Literal[
    "independence", "exchangeable", "nested-exchangeable", "decay", "ar1", "block-exchangeable"
]
GEEVcov = Literal["model", "robust", "kc", "md", "fg"]
ScaleMethod = Literal["geepack", "residual", "bias-corrected"]

_LINKS: dict[str, tuple[str, ...]] = {
    "gaussian": ("identity", "log"),
    "binomial": ("logit", "identity", "log"),
    "poisson": ("log", "identity"),
    "negative_binomial": ("log",),
}
_VCOVS = ("model", "robust", "kc", "md", "fg")
_VCOV_NAMES = {
    "model": "model-based",
    "robust": "robust (Liang-Zeger, BC0)",
    "kc": "Kauermann-Carroll (BC1)",
    "md": "Mancl-DeRouen (BC2)",
    "fg": "Fay-Graubard (BC3)",
}
#: Below this many clusters the uncorrected sandwich is known to be anti-conservative.
_FEW_CLUSTERS = 40


# --------------------------------------------------------------------------------------
# result
# --------------------------------------------------------------------------------------


class _WaldTable(ResultMixin):
    """Coefficient-table behaviour shared by :class:`GEEResult` and the cluster-level result.

    Subclasses provide ``params``, ``vcov_matrix``, ``df``, ``estimand``, ``link`` and
    ``summary()``.
    """

    params: pd.Series
    vcov_matrix: pd.DataFrame
    df: float
    estimand: str
    link: str

    def summary(self) -> Summary:  # pragma: no cover - overridden
        raise NotImplementedError

    # ---------------------------------------------------------------- estimand
    @property
    def estimate(self) -> float:
        """Estimated treatment effect on the link scale."""
        return float(self.params[self.estimand])

    @property
    def std_error(self) -> float:
        """Standard error of :attr:`estimate`."""
        return float(self.std_errors[self.estimand])

    @property
    def statistic(self) -> float:
        """Wald statistic ``estimate / std_error``."""
        return self.estimate / self.std_error

    @property
    def pvalue(self) -> float:
        """Two-sided p-value of :attr:`estimate` (``t`` with :attr:`df`)."""
        return float(self.pvalues[self.estimand])

    def conf_int(self, confidence_level: float = 0.95) -> tuple[float, float]:
        """Two-sided confidence interval of :attr:`estimate` (link scale).

        Parameters
        ----------
        confidence_level : float
            In (0, 1).

        Returns
        -------
        tuple of float
            ``(low, high)``.
        """
        t = self._crit(confidence_level)
        return (self.estimate - t * self.std_error, self.estimate + t * self.std_error)

    # ---------------------------------------------------------------- all terms
    @cached_property
    def std_errors(self) -> pd.Series:
        """Standard errors of all coefficients."""
        return pd.Series(np.sqrt(np.diag(self.vcov_matrix.to_numpy())), index=self.params.index)

    @cached_property
    def pvalues(self) -> pd.Series:
        """Two-sided p-values of all coefficients."""
        z = np.abs(self.params / self.std_errors)
        if math.isinf(self.df):
            p = 2.0 * stats.norm.sf(z)
        else:
            p = 2.0 * stats.t.sf(z, self.df)
        out: pd.Series = pd.Series(p, index=self.params.index)
        return out

    @property
    def variance_components(self) -> None:
        """Marginal and fixed-effects analyses have no variance components (``None``)."""
        return None

    @property
    def loglik(self) -> None:
        """No likelihood is maximised (``None``)."""
        return None

    @property
    def singular(self) -> bool:
        """Always False (kept for the shared result protocol)."""
        return False

    def _crit(self, confidence_level: float) -> float:
        if not 0.0 < confidence_level < 1.0:
            raise OptionError(f"`confidence_level` must lie in (0, 1); got {confidence_level!r}.")
        q = 0.5 + confidence_level / 2.0
        return float(stats.norm.ppf(q) if math.isinf(self.df) else stats.t.ppf(q, self.df))

    def tidy(self, confidence_level: float = 0.95, *, exponentiate: bool = False) -> pd.DataFrame:
        """One row per coefficient.

        Parameters
        ----------
        confidence_level : float
            Level of ``conf_low``/``conf_high``.
        exponentiate : bool
            Report ``exp(estimate)`` and exponentiated interval limits (odds or rate
            ratios); only for log and logit links.  ``std_error`` and ``statistic`` stay on
            the link scale.

        Returns
        -------
        pandas.DataFrame
            Columns ``term, estimate, std_error, statistic, df, p_value, conf_low,
            conf_high``.
        """
        if exponentiate and self.link not in ("log", "logit"):
            raise OptionError(
                f"`exponentiate=True` needs a log or logit link; this fit uses {self.link!r}."
            )
        t = self._crit(confidence_level)
        est = self.params.to_numpy()
        se = self.std_errors.to_numpy()
        low, high = est - t * se, est + t * se
        out: pd.DataFrame = pd.DataFrame(
            {
                "term": list(self.params.index),
                "estimate": np.exp(est) if exponentiate else est,
                "std_error": se,
                "statistic": est / se,
                "df": self.df,
                "p_value": self.pvalues.to_numpy(),
                "conf_low": np.exp(low) if exponentiate else low,
                "conf_high": np.exp(high) if exponentiate else high,
            }
        )
        return out

    def plot(self, ax: Any = None) -> Any:
        """Coefficient plot (estimates with 95% intervals, period effects excluded).

        Parameters
        ----------
        ax : matplotlib.axes.Axes, optional

        Returns
        -------
        matplotlib.axes.Axes
        """
        import matplotlib.pyplot as plt

        if ax is None:
            _, ax = plt.subplots()
        t = self.tidy()
        t = t[~t["term"].str.startswith("period") & (t["term"] != "(Intercept)")]
        y = np.arange(len(t))
        ax.errorbar(
            t["estimate"],
            y,
            xerr=[t["estimate"] - t["conf_low"], t["conf_high"] - t["estimate"]],
            fmt="o",
        )
        ax.axvline(0.0, color="grey", lw=0.8)
        ax.set_yticks(y, list(t["term"]))
        ax.set_xlabel(f"estimate ({self.link} scale)")
        return ax


@dataclass(frozen=True)
class GEEResult(_WaldTable):
    """Fitted marginal (GEE) model of a stepped-wedge trial.

    Build with :func:`fit_gee` (or ``sw.fit(..., method="gee")``).  Immutable:
    :meth:`with_vcov` returns a new result with another variance estimator without
    refitting.

    Attributes
    ----------
    params : pandas.Series
        Estimates of all mean-model coefficients (link scale).
    vcov_matrix : pandas.DataFrame
        Their variance matrix under :attr:`vcov`.
    vcov : str
        ``"model"``, ``"robust"``, ``"kc"``, ``"md"`` or ``"fg"``.
    df : float
        Degrees of freedom of the ``t`` reference distribution (``inf`` = normal).
    family, link, corstr : str
        Model description.
    correlation : dict
        Working-correlation parameters (estimated or fixed).
    scale : float
        Dispersion ``phi``.
    estimand : str
        Name of the term reported by :attr:`estimate` (``"treatment"``).
    n_clusters, n_obs : int
        Number of clusters and of observations (individuals, or trials for binomial
        aggregates, or cells for count aggregates).
    iterations : int
    converged : bool
    correlation_std_errors : dict or None
        Robust (BC0, Prentice 1988) standard errors of the exchangeable or nested
        exchangeable correlation estimates (moment or symmetric-MAEE estimators, the scale
        held fixed), computed on first access; None for other structures and for fixed
        correlations.
    scale_method : str
        How :attr:`scale` was obtained: ``"geepack"``, ``"residual"``, ``"bias-corrected"``
        or ``"fixed"`` (given by the user).
    nb_theta : float or None
        Negative-binomial shape (variance ``mu + mu^2 / nb_theta``); None for other families.
    maee : bool or str
        Whether the correlations were bias-corrected by MAEE (``True``, or ``"geecrt"`` for
        geeCRT's form).
    method : str
        ``"gee"``.
    """

    params: pd.Series
    vcov_matrix: pd.DataFrame
    vcov: str
    df: float
    family: str
    link: str
    corstr: str
    correlation: Mapping[str, float]
    scale: float
    estimand: str
    n_clusters: int
    n_obs: int
    iterations: int
    converged: bool
    scale_method: str = "geepack"
    nb_theta: float | None = None
    maee: bool | str = False
    method: str = "gee"
    _M: np.ndarray = field(default_factory=lambda: np.zeros((0, 0, 0)), repr=False)
    _u: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)), repr=False)
    _corr_inputs: tuple[Any, ...] | None = field(default=None, repr=False)

    @cached_property
    def correlation_std_errors(self) -> dict[str, float] | None:
        """Robust standard errors of the correlation estimates (computed on first access).

        Available for exchangeable and nested-exchangeable structures with moment or
        symmetric-MAEE estimates (Prentice 1988 stacked sandwich, the scale held fixed);
        None otherwise.
        """
        if self._corr_inputs is None:
            return None
        units, fam, beta, corstr, params, phi, maee = self._corr_inputs
        cv = _gee.correlation_vcov(units, fam, beta, corstr, params, phi, maee=maee)
        return dict(zip(self.correlation, map(float, np.sqrt(np.diag(cv))), strict=True))

    def with_vcov(self, vcov: GEEVcov) -> GEEResult:
        """Return a new result with another variance estimator (no refit).

        Parameters
        ----------
        vcov : {"model", "robust", "kc", "md", "fg"}

        Returns
        -------
        GEEResult
        """
        vcov = check_option("vcov", vcov, _VCOVS)  # type: ignore[assignment]
        V = _vcov(self._M, self._u, self.scale, vcov, list(self.params.index))
        return replace(self, vcov=vcov, vcov_matrix=V)

    def summary(self) -> Summary:
        """Text/HTML/Markdown/LaTeX summary.

        Returns
        -------
        Summary
            Renders with ``as_text()``, ``as_html()``, ``as_markdown()``, ``as_latex()``.
        """
        df = "normal (z)" if math.isinf(self.df) else f"t, {self.df:g}"
        info = (
            ("Method", "GEE (marginal model)"),
            ("Family / link", f"{self.family} / {self.link}"),
            ("Working correlation", self.corstr + (" (MAEE)" if self.maee else "")),
            ("Variance estimator", _VCOV_NAMES[self.vcov]),
            ("Reference distribution", df),
            ("Clusters / observations", f"{self.n_clusters} / {self.n_obs}"),
            ("Scale", f"{self.scale:.4g} ({self.scale_method})"),
            ("Converged", f"{self.converged} ({self.iterations} iterations)"),
        )
        se = self.correlation_std_errors or {}
        corr = ", ".join(
            f"{k} = {v:.4g}" + (f" (SE {se[k]:.3g})" if k in se else "")
            for k, v in self.correlation.items()
        )
        notes = (f"Working correlation ({self.corstr}): {corr}.",) if corr else ()
        return Summary(
            title="Stepped-wedge marginal model (GEE)",
            header=info,
            tables=(("Coefficients", self.tidy()),),
            notes=notes,
        )

    def __repr__(self) -> str:
        lo, hi = self.conf_int()
        return (
            f"GEEResult({self.family}/{self.link}, corstr={self.corstr!r}, vcov={self.vcov!r}: "
            f"{self.estimand} = {self.estimate:.4g} (SE {self.std_error:.4g}, "
            f"95% CI {lo:.4g} to {hi:.4g}, p = {self.pvalue:.3g}))"
        )


#: GEE ``vcov=`` names -> :func:`~steppedwedge.inference.sandwich.sandwich_vcov` kinds.
_SANDWICH_KIND = {"robust": "cr0", "kc": "kc-geecrt", "md": "md", "fg": "fg"}


def gee_vcov_array(
    M: np.ndarray, u: np.ndarray, phi: float, kind: str, labels: Sequence[Any] | None = None
) -> np.ndarray:
    """Variance matrix of the GEE coefficients from the per-cluster pieces ``M_i``, ``u_i``.

    ``"model"`` is ``phi Omega^{-1}`` (``Omega = sum_i M_i``); the sandwiches are
    :func:`~steppedwedge.inference.sandwich.sandwich_vcov` of the scale-free pieces:
    Liang-Zeger (``"robust"`` = ``cr0``), Kauermann-Carroll in geeCRT's form
    (``"kc"`` = ``kc-geecrt``), Mancl-DeRouen (``"md"``) and Fay-Graubard (``"fg"``).

    Raises
    ------
    DataError
        For ``"kc"``/``"md"`` when a cluster has leverage 1 (names it).
    """
    if kind == "model":
        oinv = np.linalg.inv(M.sum(axis=0))
        return np.asarray(phi * 0.5 * (oinv + oinv.T))
    pieces = ClusterPieces(scores=u, hessians=M, n_obs=0, labels=labels)
    return sandwich_vcov(pieces, _SANDWICH_KIND[kind], fallback="vcov='fg' or 'robust'")


def _vcov(M: np.ndarray, u: np.ndarray, phi: float, kind: str, terms: list[str]) -> pd.DataFrame:
    out: pd.DataFrame = pd.DataFrame(gee_vcov_array(M, u, phi, kind), index=terms, columns=terms)
    return out


# --------------------------------------------------------------------------------------
# fitting
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Spec:
    family: str
    link: str
    corstr: str
    vcov: str
    dof: float | None
    time: str
    covariates: tuple[str, ...]
    corr_params: np.ndarray | None
    scale: float | None
    scale_method: str
    nb_theta: float | None
    maee: bool | str
    corr_method: str


def _fit_gee_iv(
    td: Any,
    family: str | None,
    link: str | None,
    corstr: str,
    vcov: str,
    dof: Any,
    time: str,
    covariates: Sequence[str] | None,
    corr_params: Any,
    scale: Any,
    nb_theta: Any,
    maee: Any = False,
    corr_method: Any = "moment",
) -> _Spec:
    if not isinstance(td, TrialData):
        raise TypeError(
            f"`trial_data` must be a steppedwedge TrialData (TrialData.from_frame); "
            f"got {type(td).__name__}."
        )
    fam = td.family if family is None else check_option("family", family, tuple(_LINKS))
    if fam != td.family:
        y = td.frame["outcome"].to_numpy(np.float64)
        if fam == "binomial" and td.kind == "individual" and not np.all((y == 0) | (y == 1)):
            bad = np.flatnonzero((y != 0) & (y != 1))[:5]
            raise DataError(
                f"`family='binomial'` needs a 0/1 outcome; column "
                f"{td.roles['outcome']!r} has {_vals(y[bad])}."
            )
        if fam in ("poisson", "negative_binomial") and not np.all((y >= 0) & (y == np.round(y))):
            bad = np.flatnonzero((y < 0) | (y != np.round(y)))[:5]
            raise DataError(
                f"`family={fam!r}` needs non-negative integer counts; column "
                f"{td.roles['outcome']!r} has {_vals(y[bad])}."
            )
    if link is None:
        lk = _LINKS[fam][0]
    else:
        if not isinstance(link, str) or link not in _LINKS[fam]:
            listed = ", ".join(repr(x) for x in _LINKS[fam])
            raise OptionError(f"`link` must be one of {listed} for family {fam!r}; got {link!r}.")
        lk = link
    cs = check_option("corstr", corstr, tuple(_gee.CORSTRS))
    if cs == "block-exchangeable" and "individual" not in td.roles:
        raise DataError(
            "corstr='block-exchangeable' (closed cohort) needs the `individual` column: "
            "build the TrialData with individual=..."
        )
    vc = check_option("vcov", vcov, _VCOVS)
    tm = check_option("time", time, ("categorical", "linear", "none"))

    d: float | None
    if dof is None or dof == "residual":
        d = None
    elif dof == "normal":
        d = math.inf
    elif isinstance(dof, (int, float, np.integer, np.floating)) and not isinstance(dof, bool):
        if not dof > 0:
            raise OptionError(f"`dof` must be positive; got {dof!r}.")
        d = float(dof)
    else:
        raise OptionError(
            f"`dof` must be 'residual' (I - p), 'normal' or a positive number; got {dof!r}."
        )

    covs = tuple(covariates or ())
    for c in covs:
        if c not in td.frame.columns:
            raise DataError(f"covariate column {c!r} is not in the data.")
        s = td.frame[c]
        if not (pd.api.types.is_numeric_dtype(s.dtype) or pd.api.types.is_bool_dtype(s.dtype)):
            raise DataError(
                f"covariate column {c!r} must be numeric (dtype {s.dtype}); encode "
                "categories as 0/1 indicator columns."
            )
        if not np.all(np.isfinite(s.to_numpy(np.float64))):
            raise DataError(f"covariate column {c!r} has missing or infinite values.")
    if "offset" in td.frame.columns and "offset" in td.roles:
        off = td.frame["offset"].to_numpy(np.float64)
        if not np.all(np.isfinite(off)):
            bad = np.flatnonzero(~np.isfinite(off))[:5]
            raise DataError(
                f"`offset` column {td.roles['offset']!r} has non-finite values in rows "
                f"{list(td.frame.index[bad])}."
            )

    cp: np.ndarray | None = None
    n_par = len(_gee.CORSTRS[cs])
    if corr_params is not None:
        cp = np.atleast_1d(np.asarray(corr_params, dtype=float))
        if cp.shape != (n_par,) or not np.all(np.isfinite(cp)):
            names = ", ".join(_gee.CORSTRS[cs]) or "none"
            raise OptionError(
                f"`corr_params` for corstr={cs!r} must be {n_par} finite number(s) "
                f"({names}); got {corr_params!r}."
            )
        if cs in ("decay", "ar1") and not 0.0 <= cp[-1] <= 1.0:
            raise OptionError(f"the decay parameter must lie in [0, 1]; got {cp[-1]!r}.")

    sc: float | None = None
    sm = "geepack"
    if isinstance(scale, str):
        sm = check_option("scale", scale, ("geepack", "residual", "bias-corrected"))
    elif scale is not None:
        sc = float(scale)
        if not (math.isfinite(sc) and sc > 0):
            raise OptionError(f"`scale` must be a positive number or a method name; got {scale!r}.")

    nbt: float | None = None
    if nb_theta is not None:
        nbt = float(nb_theta)
        if not (math.isfinite(nbt) and nbt > 0):
            raise OptionError(f"`nb_theta` must be a positive number; got {nb_theta!r}.")
    elif fam != "negative_binomial":
        nbt = None
    if maee not in (False, True, "geecrt"):
        raise OptionError(f"`maee` must be False, True or 'geecrt'; got {maee!r}.")
    if maee and cs in ("independence", "block-exchangeable"):
        raise OptionError(f"`maee` is not available with corstr={cs!r}.")
    if maee and cp is not None:
        raise OptionError("`maee` adjusts estimated correlations; drop `corr_params` or `maee`.")
    if maee == "geecrt" and td.kind != "individual":
        raise DataError("`maee='geecrt'` needs individual rows (its pairs follow row order).")
    cm = check_option("corr_method", corr_method, ("moment", "cluster-period"))
    if cm == "cluster-period":
        if cs not in ("exchangeable", "nested-exchangeable"):
            raise OptionError(
                "`corr_method='cluster-period'` is available for corstr='exchangeable' and "
                f"'nested-exchangeable'; got corstr={cs!r}."
            )
        if maee:
            raise OptionError("`corr_method='cluster-period'` cannot be combined with `maee`.")
        if covs or (td.kind == "aggregate" and not (fam == "binomial" and "trials" in td.roles)):
            raise DataError(
                "`corr_method='cluster-period'` works on whole cluster-period cells: it needs "
                "individual rows (or binomial events/trials) and no covariates."
            )
    return _Spec(fam, lk, cs, vc, d, tm, covs, cp, sc, sm, nbt, maee, cm)


def _vals(a: np.ndarray) -> str:
    return ", ".join(f"{v:g}" for v in a)


def _units(td: TrialData, spec: _Spec) -> tuple[_gee.GEEUnits, list[str]]:
    """Mean-model rows as GEE units, plus the term names."""
    I, T = td.n_clusters, td.n_periods  # noqa: E741
    f = td.frame
    block = spec.corstr == "block-exchangeable"
    use_cells = (
        td.kind == "individual"
        and not block
        and spec.maee != "geecrt"
        and not spec.covariates
        and "exposure" not in td.roles
        and "offset" not in td.roles
    )
    if use_cells:
        cells = td.cells()
        ci, pj = np.nonzero(cells.observed)
        cluster = ci.astype(np.int64)
        period = pj.astype(np.int64)
        treat = cells.treatment[ci, pj]
        w = cells.n[ci, pj].astype(float)
        ysum = cells.total[ci, pj].astype(float)
        yss = cells.within_ss[ci, pj].astype(float)
        offset = np.zeros(len(ci))
        cov = np.zeros((len(ci), 0))
        person = None
    else:
        # by cluster, then period, keeping the data order within a cell
        order = np.lexsort((td.period_codes, td.cluster_codes))
        cluster = td.cluster_codes[order].astype(np.int64)
        period = td.period_codes[order].astype(np.int64)
        treat = f["treatment"].to_numpy(np.float64)[order]
        y = f["outcome"].to_numpy(np.float64)[order]
        if td.kind == "aggregate" and td.family == "binomial" and "trials" in f.columns:
            w = f["trials"].to_numpy(np.float64)[order]
            ysum = y
            with np.errstate(invalid="ignore", divide="ignore"):
                yss = np.where(w > 0, y - y * y / np.where(w > 0, w, 1.0), 0.0)
            keep = w > 0
        else:
            w = np.ones(len(y))
            ysum = y
            yss = np.zeros(len(y))
            keep = np.ones(len(y), dtype=bool)
        offset = np.zeros(len(y))
        if "exposure" in td.roles:
            offset = offset + np.log(f["exposure"].to_numpy(np.float64)[order])
        if "offset" in td.roles:
            offset = offset + f["offset"].to_numpy(np.float64)[order]
        cov = (
            np.column_stack([f[c].to_numpy(np.float64)[order] for c in spec.covariates])
            if spec.covariates
            else np.zeros((len(y), 0))
        )
        person = None
        if block:
            codes = pd.factorize(f["individual"])[0].astype(np.int64)[order]
            key = codes * T + period
            if np.unique(key).shape[0] < key.shape[0]:
                raise DataError(
                    "corstr='block-exchangeable' needs at most one row per individual and "
                    f"period; column {td.roles['individual']!r} repeats a person within a "
                    "period."
                )
            person = codes
        cluster, period, treat = cluster[keep], period[keep], treat[keep]
        w, ysum, yss, offset, cov = w[keep], ysum[keep], yss[keep], offset[keep], cov[keep]
        if person is not None:
            person = person[keep]

    cols: list[np.ndarray] = []
    names: list[str] = []
    observed_periods = np.unique(period)
    if spec.time == "categorical":
        # one mean per period, no separate intercept (geeCRT's and Li et al.'s coding);
        # the Fay-Graubard correction depends on the coding, the other estimators do not
        for j in observed_periods:
            cols.append((period == j).astype(float))
            names.append(f"period[{_label(td.periods[j])}]")
    else:
        cols.append(np.ones(len(cluster)))
        names.append("(Intercept)")
        if spec.time == "linear":
            cols.append(period.astype(float))
            names.append("period")
    cols.append(treat)
    names.append("treatment")
    for q, c in enumerate(spec.covariates):
        cols.append(cov[:, q])
        names.append(c)
    X = np.column_stack(cols)
    rank = np.linalg.matrix_rank(X * np.sqrt(w)[:, None])
    if rank < X.shape[1]:
        raise DataError(
            "the mean model is not identifiable: treatment (or a covariate) is collinear "
            f"with the period effects and intercept ({X.shape[1]} columns, rank {rank}); "
            "check the treatment column and covariates."
        )
    units = _gee.GEEUnits(
        cluster=cluster,
        period=period,
        X=X,
        w=w,
        ysum=ysum,
        yss=yss,
        offset=offset,
        n_clusters=I,
        n_periods=T,
        times=np.arange(T, dtype=float),
        individual=None if use_cells else person,
    )
    return units, names


def _label(x: Any) -> str:
    return str(x.item() if isinstance(x, np.generic) else x)


def _start(units: _gee.GEEUnits, fam: _gee.LinkFunctions, spec: _Spec) -> np.ndarray:
    """Start from least squares of the link-transformed (shrunk) cell means."""
    with np.errstate(divide="ignore", invalid="ignore"):
        ybar = units.ysum / units.w
    if spec.family == "binomial":
        ybar = (units.ysum + 0.5) / (units.w + 1.0)
    elif spec.family in ("poisson", "negative_binomial"):
        ybar = (units.ysum + 0.5) / units.w
    if spec.link == "log" and spec.family == "gaussian":
        ybar = np.maximum(ybar, 1e-8)
    z = fam.linkfun(ybar) - units.offset
    if spec.link == "identity" and spec.family == "binomial":
        z = np.clip(z, 0.01, 0.99)
    sw = np.sqrt(units.w)
    beta, *_ = np.linalg.lstsq(units.X * sw[:, None], z * sw, rcond=None)
    return np.asarray(beta, dtype=float)


def _nb_theta(units: _gee.GEEUnits, spec: _Spec) -> float:
    """Moment estimate of the negative-binomial shape from a Poisson working fit."""
    fam = _gee.link_functions("poisson", spec.link)
    core = _gee.fit_gee_core(units, fam, "independence", beta0=_start(units, fam, spec), phi=1.0)
    mu = fam.linkinv(units.X @ core.beta + units.offset)
    resid2 = units.yss + (units.ysum - units.w * mu) ** 2 / units.w
    num = float(np.sum(units.w * mu * mu))
    k = float(np.sum(resid2 - units.w * mu)) / num
    if not k > 1e-8:
        raise DataError(
            "the counts show no overdispersion beyond Poisson (moment estimate of the "
            "negative-binomial 1/theta <= 0); use family='poisson' or pass `nb_theta`."
        )
    return 1.0 / k


def fit_gee(
    trial_data: TrialData,
    *,
    family: str | None = None,
    link: str | None = None,
    corstr: CorStr = "exchangeable",
    vcov: GEEVcov = "md",
    dof: Any = None,
    time: Literal["categorical", "linear", "none"] = "categorical",
    covariates: Sequence[str] | None = None,
    corr_params: Any = None,
    scale: ScaleMethod | float = "geepack",
    nb_theta: float | None = None,
    maee: bool | Literal["geecrt"] = False,
    corr_method: Literal["moment", "cluster-period"] = "moment",
    tol: float = 1e-10,
    maxiter: int = 100,
) -> GEEResult:
    """Fit a marginal model to stepped-wedge data by GEE.

    Parameters
    ----------
    trial_data : TrialData
        Validated trial rows (:meth:`TrialData.from_frame`).
    family : {"gaussian", "binomial", "poisson", "negative_binomial"}, optional
        Defaults to ``trial_data.family``.
    link : str, optional
        ``identity`` or ``log`` (Gaussian), ``logit``, ``identity`` or ``log`` (binomial),
        ``log`` or ``identity`` (Poisson), ``log`` (negative binomial).  The first listed
        is the default.
    corstr : {"exchangeable", "independence", "nested-exchangeable", "decay", "ar1", \
"block-exchangeable"}
        Working correlation of two different observations of a cluster:
        ``exchangeable`` (``alpha``), ``nested-exchangeable`` (``alpha0`` in the same
        period, ``alpha1`` in different periods), ``decay`` (``alpha0 * r^|j-k|``,
        exponential decay with the period distance), ``ar1`` (``r^|j-k|``; for data
        with one observation per cluster-period, e.g. counts) or ``block-exchangeable``
        for closed cohorts (``alpha0`` same period, ``alpha1`` different periods and
        people, ``alpha2`` same person in different periods; needs ``individual``).
    vcov : {"md", "kc", "fg", "robust", "model"}
        Variance estimator: Mancl-DeRouen (default), Kauermann-Carroll, Fay-Graubard
        (bound 0.75), uncorrected Liang-Zeger sandwich, or model-based.
    dof : {"residual", "normal"} or float, optional
        Reference distribution: ``t`` with ``I - p`` df (default, ``p`` = number of mean
        parameters), the normal, or ``t`` with the given df.
    time : {"categorical", "linear", "none"}
        Period effects in the mean model: one coefficient per period (``period[j]``, no
        separate intercept, as in geeCRT), an intercept plus a linear trend in the period
        index, or an intercept only.
    covariates : sequence of str, optional
        Numeric columns of ``trial_data.frame`` added to the mean model.
    corr_params : array_like, optional
        Fix the working-correlation parameters instead of estimating them.
    scale : {"geepack", "residual", "bias-corrected"} or float
        Moment estimator of the dispersion ``phi`` (sum of squared Pearson residuals over
        ``N``, over ``N - p``, or geeCRT's ``sum r'(I - H)^{-1} r / (N - p)``), or a fixed
        value (e.g. ``1.0`` for a binomial or Poisson model without overdispersion).
    nb_theta : float, optional
        Negative-binomial shape (variance ``mu + mu^2 / nb_theta``); estimated by moments
        from a Poisson working fit when omitted.
    maee : bool or "geecrt"
        Bias-corrected correlation estimates by matrix-adjusted estimating equations
        (Preisser, Lu & Qaqish 2008): the pairwise products use ``(I - H_i)^{-1} r_i`` in
        place of one ``r_i``, symmetrised over the pair (order-free).  ``"geecrt"`` uses
        geeCRT's ``geemaee(alpadj=TRUE)`` form, ``s_j r_k`` for pairs ``j < k`` in row order
        (reproduces its printed estimates; depends on the row order within a cell).
        Standard errors of the correlation parameters are not reported.
    corr_method : {"moment", "cluster-period"}
        How the correlation parameters are estimated: pairwise moment estimators over
        individuals (default), or the cluster-period-mean estimating equations of the
        cluster-period GEE (Li, Yu, Rathouz, Turner & Preisser 2022; geeCRT
        ``cpgeeSWD``, ``alpadj=FALSE``), which use only cell means and sizes.  The mean
        model and sandwiches are the same either way: given the correlation parameters,
        the cluster-period GEE and the individual-level GEE coincide.
    tol, maxiter : float, int
        Convergence tolerance on the coefficients and iteration limit.

    Returns
    -------
    GEEResult

    Raises
    ------
    DataError
        For an outcome that does not fit the family (a non-0/1 binary outcome, negative
        or fractional counts), non-finite offsets or covariates, a mean model that is
        not identifiable, or too few clusters: ``I <= p`` makes the sandwich singular
        and leaves no degrees of freedom.
    ValueError
        For a family/link pair that makes no sense or an unknown option.

    Warns
    -----
    SmallSampleWarning
        With ``vcov="robust"`` and fewer than 40 clusters (the uncorrected sandwich is
        biased downwards; use ``"md"``, ``"kc"`` or ``"fg"``), and whenever ``I - p``
        is below 5.
    ConvergenceWarning
        If the iterations stop before convergence.

    Notes
    -----
    Working covariance ``V_i = phi A_i^{1/2} R_i A_i^{1/2}``.  Correlation parameters
    are moment estimates from Pearson residuals (the averages of ``r_k r_l / phi`` over
    all, same-period and different-period pairs, and for the cohort structure over
    same-person pairs; least squares on the lag for decay and AR(1)), which are geepack's
    estimators (its user-defined ``zcor`` design for the cohort structure) and the
    solution of geeCRT's unadjusted
    correlation estimating equations.  The default scale is geepack's.

    Bias-corrected sandwiches (Liang & Zeger 1986; Kauermann & Carroll 2001; Mancl &
    DeRouen 2001; Fay & Graubard 2001) are computed in ``p`` dimensions per cluster.
    ``vcov="kc"`` is the form implemented in geeCRT (BC1),
    ``Omega^{-1} [1/2 sum_i (u_i^MD u_i' + u_i u_i^MD')] Omega^{-1}`` with
    ``u_i^MD = D_i' V_i^{-1} (I - H_i)^{-1} e_i``, not the symmetric ``(I - H_i)^{-1/2}``
    form; the two agree to about 1e-4 relative on geeCRT's example data.  The
    Fay-Graubard correction uses ``diag(M_i Omega^{-1})`` and so depends on how the period
    effects are coded; the default coding (one mean per period) is geeCRT's.

    Without individual-level covariates the fit uses only cluster-period sizes, sums and
    within-cell sums of squares (the cluster-period reduction); the estimates equal the
    individual-level GEE exactly.

    References
    ----------
    Liang KY, Zeger SL (1986). Biometrika 73:13-22.
    Kauermann G, Carroll RJ (2001). JASA 96:1387-1396.
    Mancl LA, DeRouen TA (2001). Biometrics 57:126-134.
    Fay MP, Graubard BI (2001). Biometrics 57:1198-1206.
    Li F, Turner EL, Preisser JS (2018). Biometrics 74:1450-1458.
    Preisser JS, Lu B, Qaqish BF (2008). Stat Med 27:5041-5059.
    Li F, Yu H, Rathouz PJ, Turner EL, Preisser JS (2022). Biostatistics 23:772-788.
    Ford WP, Westgate PM (2020). Stat Med 39:2779-2792.

    Examples
    --------
    >>> import numpy as np, pandas as pd
    >>> from steppedwedge.data import TrialData
    >>> from steppedwedge.models.gee import fit_gee
    >>> rng = np.random.default_rng(1)
    >>> rows = []
    >>> for i in range(12):
    ...     u = rng.normal(0, 0.3)
    ...     for t in range(5):
    ...         x = int(t > i % 4)
    ...         for k in range(20):
    ...             p = 1 / (1 + np.exp(0.5 - 0.6 * x - u))
    ...             rows.append((i, t, x, int(rng.random() < p)))
    >>> df = pd.DataFrame(rows, columns=["ward", "month", "trt", "event"])
    >>> td = TrialData.from_frame(df, outcome="event", cluster="ward", period="month",
    ...                           treatment="trt", family="binomial")
    >>> res = fit_gee(td, corstr="exchangeable", vcov="md")
    >>> round(res.estimate, 3), round(res.std_error, 3), res.df
    (0.713, 0.138, 6.0)
    """
    spec = _fit_gee_iv(
        trial_data,
        family,
        link,
        corstr,
        vcov,
        dof,
        time,
        covariates,
        corr_params,
        scale,
        nb_theta,
        maee,
        corr_method,
    )
    units, names = _units(trial_data, spec)
    I = trial_data.n_clusters  # noqa: E741
    p = units.X.shape[1]
    if I <= p:
        raise DataError(
            f"GEE with {p} mean parameters needs more than {p} clusters (the sandwich has "
            f"rank at most I and t inference uses I - p df); got {I} clusters. Use "
            "time='linear' or 'none', or a mixed model."
        )
    if spec.corstr == "ar1" and not units.single:
        raise DataError(
            "corstr='ar1' needs one observation per cluster-period (aggregate data); for "
            "individual rows use corstr='decay' (alpha0 * r^|j-k|)."
        )
    if spec.corstr == "nested-exchangeable" and units.single:
        raise DataError(
            "corstr='nested-exchangeable' needs several observations per cluster-period; "
            "with one observation per cell the within-period correlation is not defined "
            "(use 'exchangeable' or 'ar1')."
        )
    df = float(I - p) if spec.dof is None else spec.dof
    if spec.vcov == "robust" and I < _FEW_CLUSTERS:
        warnings.warn(
            f"vcov='robust' (uncorrected Liang-Zeger) with only {I} clusters underestimates "
            "the variance; prefer vcov='md', 'kc' or 'fg'.",
            SmallSampleWarning,
            stacklevel=caller_stacklevel(),
        )
    if I - p < 5 and spec.dof is None:
        warnings.warn(
            f"only {I - p} degrees of freedom (I = {I} clusters, p = {p} mean parameters): "
            "inference is fragile; consider time='linear' or a permutation test.",
            SmallSampleWarning,
            stacklevel=caller_stacklevel(),
        )

    nbt = spec.nb_theta
    if spec.family == "negative_binomial" and nbt is None:
        nbt = _nb_theta(units, spec)
    fam = _gee.link_functions(spec.family, spec.link, nb_theta=nbt)
    beta0 = _start(units, fam, spec)
    try:
        core = _gee.fit_gee_core(
            units,
            fam,
            spec.corstr,
            beta0=beta0,
            params=spec.corr_params,
            phi=spec.scale,
            scale_method=spec.scale_method,
            maee=spec.maee,
            corr_method=spec.corr_method,
            tol=tol,
            maxiter=maxiter,
        )
    except _gee.WorkingCorrelationError as err:
        raise DataError(
            f"the {spec.corstr} working correlation implied by the data is not positive "
            f"definite ({err}); strongly negative correlation estimates can do this with large "
            "clusters. Use corstr='independence', fix `corr_params`, or use a mixed model."
        ) from None
    except FloatingPointError:
        raise DataError(
            f"the fitted means left the range of the {spec.family} family with the "
            f"{spec.link} link (e.g. a probability outside (0, 1)); use the canonical link."
        ) from None
    if not core.converged:
        warnings.warn(
            f"GEE did not converge in {maxiter} iterations; results may be unreliable.",
            ConvergenceWarning,
            stacklevel=caller_stacklevel(),
        )
    corr = dict(zip(_gee.CORSTRS[spec.corstr], map(float, core.params), strict=False))
    corr_inputs: tuple[Any, ...] | None = None
    if (
        spec.corstr in ("exchangeable", "nested-exchangeable")
        and spec.corr_params is None
        and spec.corr_method == "moment"
        and spec.maee != "geecrt"
        and not units.single
    ):
        corr_inputs = (units, fam, core.beta, spec.corstr, core.params, core.phi, bool(spec.maee))
    V = _vcov(core.M, core.u, core.phi, spec.vcov, names)
    return GEEResult(
        params=pd.Series(core.beta, index=names),
        vcov_matrix=V,
        vcov=spec.vcov,
        df=df,
        family=spec.family,
        link=spec.link,
        corstr=spec.corstr,
        correlation=corr,
        scale=core.phi,
        estimand="treatment",
        n_clusters=I,
        n_obs=int(round(units.w.sum())),
        iterations=core.iterations,
        converged=core.converged,
        scale_method="fixed" if spec.scale is not None else spec.scale_method,
        nb_theta=nbt,
        maee=spec.maee,
        _corr_inputs=corr_inputs,
        _M=core.M,
        _u=core.u,
    )


# --------------------------------------------------------------------------------------
# DataFrame entry point used by steppedwedge.fit(method="gee")
# --------------------------------------------------------------------------------------

#: Mixed-model ``random=`` structure -> the GEE working correlation that mirrors it.
RANDOM_TO_CORSTR = {
    "cluster": "exchangeable",
    "nested": "nested-exchangeable",
    "decay": "decay",
    "nested+decay": "decay",
}


def fit_gee_frame(
    data: pd.DataFrame,
    *,
    outcome: str,
    cluster: str,
    period: str,
    treatment: str,
    individual: str | None = None,
    family: str = "gaussian",
    link: str | None = None,
    exposure: str | None = None,
    offset: str | None = None,
    trials: str | None = None,
    covariates: str | None = None,
    random: str = "nested",
    corstr: CorStr | None = None,
    time: str = "categorical",
    effect: str = "immediate",
    dof: Any = None,
    vcov: str | None = None,
    missing: Literal["raise", "drop"] = "raise",
    design: Any = None,
    **options: Any,
) -> GEEResult:
    """GEE analysis from a DataFrame: the ``method="gee"`` branch of ``steppedwedge.fit``.

    Parameters
    ----------
    data : pandas.DataFrame
        Trial rows (never modified): individual rows, or one row per cluster-period for
        binomial (``trials=``) or count (``exposure=``/``offset=``) aggregates.
    outcome, cluster, period, treatment, individual, family, exposure, offset, trials
        As :meth:`steppedwedge.data.TrialData.from_frame`.  With ``individual`` (closed
        cohort) and ``random`` "cluster" or "nested", the working correlation is block
        exchangeable.
    link : str, optional
        See :func:`fit_gee`.
    covariates : str, optional
        Right-hand-side covariate formula (e.g. ``"age + C(sex)"``), evaluated by patsy.
    random : str
        Mixed-model structure whose marginal analogue is used when ``corstr`` is not given:
        ``"cluster"`` -> exchangeable, ``"nested"`` -> nested exchangeable, ``"decay"`` and
        ``"nested+decay"`` -> exponential decay.  With one observation per cluster-period
        (count aggregates) nested exchangeable becomes exchangeable and decay becomes AR(1),
        the same working correlations at that level.
    corstr : str, optional
        Working correlation (overrides ``random``); see :func:`fit_gee`.
    time : {"categorical", "linear", "none"}
    effect : {"immediate"}
        Only the immediate-treatment estimand is available for GEE.
    dof, vcov
        See :func:`fit_gee`; ``vcov=None`` means the GEE default ``"md"``.
    missing : {"raise", "drop"}
    design : Design, optional
    **options
        Passed to :func:`fit_gee` (``corr_params``, ``scale``, ``nb_theta``, ``tol``,
        ``maxiter``).

    Returns
    -------
    GEEResult

    Examples
    --------
    >>> import numpy as np, pandas as pd
    >>> from steppedwedge.models.gee import fit_gee_frame
    >>> rng = np.random.default_rng(7)
    >>> rows = []
    >>> for i in range(12):
    ...     pop = int(rng.integers(2000, 6000))
    ...     for t in range(5):
    ...         x = int(t > i % 4)
    ...         rows.append((i, t, x, pop, rng.poisson(pop / 500 * np.exp(-0.3 * x))))
    >>> df = pd.DataFrame(rows, columns=["area", "quarter", "x", "pop", "cases"])
    >>> res = fit_gee_frame(df, outcome="cases", cluster="area", period="quarter",
    ...                     treatment="x", family="poisson", exposure="pop")
    >>> res.corstr, round(float(np.exp(res.estimate)), 3)
    ('exchangeable', 0.609)
    """
    if effect != "immediate":
        raise OptionError(
            f"`effect={effect!r}` is not available with method='gee'; only effect='immediate' is."
        )
    if corstr is None and random not in RANDOM_TO_CORSTR:
        listed = ", ".join(repr(k) for k in RANDOM_TO_CORSTR)
        raise OptionError(
            f"`random={random!r}` has no GEE working-correlation analogue; use one of "
            f"{listed} or pass `corstr`."
        )
    frame = data
    cov_names: list[str] = []
    if covariates is not None:
        from ._formula import covariate_matrix

        cm = covariate_matrix(covariates, data)
        frame = data.copy()
        for q, name in enumerate(cm.names):
            col = name if name not in frame.columns else f"{name}__cov"
            frame[col] = cm.values[:, q]
            cov_names.append(col)
    td = TrialData.from_frame(
        frame,
        outcome=outcome,
        cluster=cluster,
        period=period,
        treatment=treatment,
        individual=individual,
        family=family,
        trials=trials,
        exposure=exposure,
        offset=offset,
        covariates=cov_names or None,
        design=design,
        missing=missing,
    )
    cs: str | None = corstr
    if cs is None:
        cs = RANDOM_TO_CORSTR[random]
        if individual is not None and cs in ("exchangeable", "nested-exchangeable"):
            cs = "block-exchangeable"
        single = td.kind == "aggregate" and not (td.family == "binomial" and "trials" in td.roles)
        if single and cs == "nested-exchangeable":
            cs = "exchangeable"
        elif single and cs == "decay":
            cs = "ar1"
    if vcov == "cr2":
        raise OptionError(
            "`vcov='cr2'` is a mixed-model option; for GEE use 'md', 'kc', 'fg', 'robust' "
            "or 'model'."
        )
    return fit_gee(
        td,
        family=family,
        link=link,
        corstr=cs,  # type: ignore[arg-type]
        vcov="md" if vcov is None else vcov,  # type: ignore[arg-type]
        dof=dof,
        time=time,  # type: ignore[arg-type]
        covariates=cov_names or None,
        **options,
    )
