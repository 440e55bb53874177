r"""Marginal (GEE) analysis of stepped-wedge trials.

:func:`fit_gee` fits the population-averaged model

.. math::  g(\\mu_{ijk}) = \\beta_0 + \\beta_j + \\theta X_{ij} + z_{ijk}^\\top \\gamma

(categorical period effects by default) by generalised estimating equations with a
stepped-wedge working correlation, and reports model-based, Liang--Zeger or bias-corrected
(Kauermann--Carroll, Mancl--DeRouen, Fay--Graubard) standard errors with a ``t``
reference distribution on ``I - p`` degrees of freedom.  The numerical work happens in
:mod:`steppedwedge._core.gee` on cluster-period summaries, so the cost is linear in the
number of individuals and, without individual-level covariates, independent of it.

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
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import cached_property
from typing import Any, ClassVar, Literal

import numpy as np
import pandas as pd
from scipy import stats

from .._core import gee as _gee
from .._warnings import warn
from ..data import TrialData
from ..exceptions import ConvergenceWarning, DataError, OptionError, SmallSampleWarning
from ..inference.sandwich import ClusterPieces, sandwich_vcov
from ..results import EstimationResult, Summary
from ._gee_options import GEE_VCOVS, GEEOptions, gee_dof, gee_options
from ._gee_units import gee_start, gee_units, moment_nb_theta
from .spec import AnalysisSpec

__all__ = ["GEEResult", "RANDOM_TO_CORSTR", "fit_gee", "fit_gee_frame", "fit_gee_spec"]

CorStr = Literal[
    "independence", "exchangeable", "nested-exchangeable", "decay", "ar1", "block-exchangeable"
]
GEEVcov = Literal["model", "robust", "kc", "md", "fg"]
ScaleMethod = Literal["geepack", "residual", "bias-corrected"]

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


class _WaldTable(EstimationResult):
    """Coefficient table of :class:`GEEResult` and the cluster-level result: one df for all.

    Subclasses provide ``params``, ``vcov_matrix``, ``df``, ``estimand``, ``link`` and
    ``summary()``; the base :class:`~steppedwedge.results.EstimationResult` reads the
    estimand's row of :meth:`_term_table` (``t`` on :attr:`df` for every coefficient).
    """

    params: pd.Series
    vcov_matrix: pd.DataFrame
    df: float
    estimand: str
    link: str

    def _term_table(self) -> pd.DataFrame:
        """Every coefficient: estimate, standard error and the shared df."""
        out: pd.DataFrame = pd.DataFrame(
            {
                "term": list(self.params.index),
                "estimate": self.params.to_numpy(dtype=float),
                "std_error": self.std_errors.to_numpy(),
                "df": float(self.df),
            }
        )
        return out

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
    _clusters: tuple[Any, ...] | None = field(default=None, repr=False)

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

    _vcov_options: ClassVar[tuple[str, ...]] = GEE_VCOVS

    @property
    def method_label(self) -> str:
        """``"GEE (<vcov>)"``: the label of :func:`steppedwedge.compare` and the report."""
        return f"GEE ({self.vcov})"

    def _with_vcov(self, vcov: str, dof: str | float | None) -> GEEResult:
        """Recompute the variance from the stored per-cluster pieces (no refit).

        ``dof=None`` applies the default rule of a refit with that ``vcov`` (``I - p``, as
        ``"residual"``); ``"normal"`` or a positive number sets it.
        """
        d = gee_dof(dof)
        df = float(self.n_clusters - len(self.params)) if d is None else d
        V = _vcov(self._M, self._u, self.scale, vcov, list(self.params.index), self._clusters)
        return replace(self, vcov=vcov, vcov_matrix=V, df=df)

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


def _vcov(
    M: np.ndarray,
    u: np.ndarray,
    phi: float,
    kind: str,
    terms: list[str],
    labels: Sequence[Any] | None = None,
) -> pd.DataFrame:
    v = gee_vcov_array(M, u, phi, kind, labels)
    out: pd.DataFrame = pd.DataFrame(v, index=terms, columns=terms)
    return out


# --------------------------------------------------------------------------------------
# fitting
# --------------------------------------------------------------------------------------


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
    OptionError
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
    The correlation estimators, the bias-corrected sandwiches and the cluster-period
    reduction are described in the notes of :mod:`steppedwedge.models.gee`.

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
    opts = gee_options(
        trial_data, family, link, corstr, vcov, dof, time, covariates, corr_params, scale,
        nb_theta, maee, corr_method,
    )  # fmt: skip
    units, names = gee_units(trial_data, opts)
    df = _check_size(trial_data, units, opts)
    nbt = opts.nb_theta
    if opts.family == "negative_binomial" and nbt is None:
        nbt = moment_nb_theta(units, opts)
    fam = _gee.link_functions(opts.family, opts.link, nb_theta=nbt)
    core = _solve(units, fam, opts, tol, maxiter)
    return _gee_result(trial_data, units, names, opts, fam, core, df, nbt)


def _check_size(td: TrialData, units: _gee.GEEUnits, opts: GEEOptions) -> float:
    """Refuse too few clusters or a structure the units cannot carry; warn; return the df."""
    I = td.n_clusters  # noqa: E741
    p = units.X.shape[1]
    if I <= p:
        raise DataError(
            f"GEE with {p} mean parameters needs more than {p} clusters (the sandwich has "
            f"rank at most I and t inference uses I - p df); got {I} clusters. Use "
            "time='linear' or 'none', or a mixed model."
        )
    if opts.corstr == "ar1" and not units.single:
        raise DataError(
            "corstr='ar1' needs one observation per cluster-period (aggregate data); for "
            "individual rows use corstr='decay' (alpha0 * r^|j-k|)."
        )
    if opts.corstr == "nested-exchangeable" and units.single:
        raise DataError(
            "corstr='nested-exchangeable' needs several observations per cluster-period; "
            "with one observation per cell the within-period correlation is not defined "
            "(use 'exchangeable' or 'ar1')."
        )
    if opts.vcov == "robust" and I < _FEW_CLUSTERS:
        warn(
            f"vcov='robust' (uncorrected Liang-Zeger) with only {I} clusters underestimates "
            "the variance; prefer vcov='md', 'kc' or 'fg'.",
            SmallSampleWarning,
        )
    if I - p < 5 and opts.dof is None:
        warn(
            f"only {I - p} degrees of freedom (I = {I} clusters, p = {p} mean parameters): "
            "inference is fragile; consider time='linear' or a permutation test.",
            SmallSampleWarning,
        )
    return float(I - p) if opts.dof is None else opts.dof


def _solve(
    units: _gee.GEEUnits, fam: _gee.LinkFunctions, opts: GEEOptions, tol: float, maxiter: int
) -> _gee.GEECore:
    """Run the GEE kernel; its numerical failures become DataErrors that say what to do."""
    try:
        core = _gee.fit_gee_core(
            units,
            fam,
            opts.corstr,
            beta0=gee_start(units, fam, opts),
            params=opts.corr_params,
            phi=opts.scale,
            scale_method=opts.scale_method,
            maee=opts.maee,
            corr_method=opts.corr_method,
            tol=tol,
            maxiter=maxiter,
        )
    except _gee.WorkingCorrelationError as err:
        raise DataError(
            f"the {opts.corstr} working correlation implied by the data is not positive "
            f"definite ({err}); strongly negative correlation estimates can do this with large "
            "clusters. Use corstr='independence', fix `corr_params`, or use a mixed model."
        ) from None
    except FloatingPointError:
        raise DataError(
            f"the fitted means left the range of the {opts.family} family with the "
            f"{opts.link} link (e.g. a probability outside (0, 1)); use the canonical link."
        ) from None
    if not core.converged:
        warn(
            f"GEE did not converge in {maxiter} iterations; results may be unreliable.",
            ConvergenceWarning,
        )
    return core


def _gee_result(
    td: TrialData,
    units: _gee.GEEUnits,
    names: list[str],
    opts: GEEOptions,
    fam: _gee.LinkFunctions,
    core: _gee.GEECore,
    df: float,
    nbt: float | None,
) -> GEEResult:
    corr = dict(zip(_gee.CORSTRS[opts.corstr], map(float, core.params), strict=False))
    corr_inputs: tuple[Any, ...] | None = None
    if (
        opts.corstr in ("exchangeable", "nested-exchangeable")
        and opts.corr_params is None
        and opts.corr_method == "moment"
        and opts.maee != "geecrt"
        and not units.single
    ):
        corr_inputs = (units, fam, core.beta, opts.corstr, core.params, core.phi, bool(opts.maee))
    return GEEResult(
        params=pd.Series(core.beta, index=names),
        vcov_matrix=_vcov(core.M, core.u, core.phi, opts.vcov, names, td.clusters),
        vcov=opts.vcov,
        df=df,
        family=opts.family,
        link=opts.link,
        corstr=opts.corstr,
        correlation=corr,
        scale=core.phi,
        estimand="treatment",
        n_clusters=td.n_clusters,
        n_obs=int(round(units.w.sum())),
        iterations=core.iterations,
        converged=core.converged,
        scale_method="fixed" if opts.scale is not None else opts.scale_method,
        nb_theta=nbt,
        maee=opts.maee,
        _corr_inputs=corr_inputs,
        _M=core.M,
        _u=core.u,
        _clusters=tuple(td.clusters),
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
    spec = AnalysisSpec.from_options(
        outcome=outcome, cluster=cluster, period=period, treatment=treatment,
        individual=individual, family=family, link=link, exposure=exposure, offset=offset,
        trials=trials, covariates=covariates, random=random, time=time, effect=effect,
        method="gee", dof=dof, vcov=vcov, missing=missing, design=design,
    )  # fmt: skip
    return fit_gee_spec(data, spec, corstr=corstr, **options)


def fit_gee_spec(
    data: pd.DataFrame, spec: AnalysisSpec, *, corstr: CorStr | None = None, **options: Any
) -> GEEResult:
    """GEE analysis of ``data`` as ``spec`` describes: the ``method="gee"`` entry of ``sw.fit``.

    Roles, family, link, covariates, ``random`` (the working correlation when ``corstr`` is
    not given, see :func:`fit_gee_frame`), ``time``, ``effect``, ``dof`` and ``vcov`` come
    from the spec; the GEE's own numerical options are keywords.

    Parameters
    ----------
    data : pandas.DataFrame
        Trial rows (never modified).
    spec : AnalysisSpec
        The validated analysis (:meth:`AnalysisSpec.from_options`).
    corstr : str, optional
        Working correlation (overrides ``spec.random``); see :func:`fit_gee`.
    **options
        ``corr_params``, ``scale``, ``nb_theta``, ``maee``, ``corr_method``, ``tol``,
        ``maxiter`` of :func:`fit_gee`.

    Returns
    -------
    GEEResult

    Raises
    ------
    OptionError
        ``effect`` other than ``"immediate"``, a ``random`` without a working-correlation
        analogue, or ``vcov="cr2"``; and the option errors of :func:`fit_gee`.

    Examples
    --------
    >>> import numpy as np, pandas as pd
    >>> from steppedwedge.models.gee import fit_gee_spec
    >>> from steppedwedge.models.spec import AnalysisSpec
    >>> rng = np.random.default_rng(7)
    >>> rows = [(i, t, int(t > i % 4), rng.poisson(8 * np.exp(-0.3 * int(t > i % 4))))
    ...         for i in range(12) for t in range(5)]
    >>> df = pd.DataFrame(rows, columns=["area", "quarter", "x", "cases"])
    >>> spec = AnalysisSpec.from_options(outcome="cases", cluster="area", period="quarter",
    ...                                  treatment="x", family="poisson", method="gee")
    >>> fit_gee_spec(df, spec).corstr
    'exchangeable'
    """
    _check_spec(spec, corstr)
    frame, cov_names = _covariate_columns(data, spec.covariates)
    td = spec.trial_data(frame, covariates=cov_names or None)
    cs = _default_corstr(spec, td) if corstr is None else corstr
    if spec.vcov == "cr2":
        raise OptionError(
            "`vcov='cr2'` is a mixed-model option; for GEE use 'md', 'kc', 'fg', 'robust' "
            "or 'model'."
        )
    return fit_gee(
        td,
        link=spec.link_given,
        corstr=cs,  # type: ignore[arg-type]
        vcov="md" if spec.vcov is None else spec.vcov,  # type: ignore[arg-type]
        dof=spec.dof,
        time=spec.time,  # type: ignore[arg-type]
        covariates=cov_names or None,
        **options,
    )


def _check_spec(spec: AnalysisSpec, corstr: str | None) -> None:
    """Refuse the spec options a GEE cannot honour: other estimands, an unmapped ``random``."""
    if spec.effect != "immediate":
        raise OptionError(
            f"`effect={spec.effect!r}` is not available with method='gee'; only "
            "effect='immediate' is."
        )
    if corstr is None and spec.random not in RANDOM_TO_CORSTR:
        listed = ", ".join(repr(k) for k in RANDOM_TO_CORSTR)
        raise OptionError(
            f"`random={spec.random!r}` has no GEE working-correlation analogue; use one of "
            f"{listed} or pass `corstr`."
        )


def _covariate_columns(
    data: pd.DataFrame, covariates: str | None
) -> tuple[pd.DataFrame, list[str]]:
    """Add the covariate formula's model-matrix columns to a copy of ``data``."""
    if covariates is None:
        return data, []
    from ._formula import covariate_matrix

    cm = covariate_matrix(covariates, data)
    frame = data.copy()
    names: list[str] = []
    for q, name in enumerate(cm.names):
        col = name if name not in frame.columns else f"{name}__cov"
        frame[col] = cm.values[:, q]
        names.append(col)
    return frame, names


def _default_corstr(spec: AnalysisSpec, td: TrialData) -> str:
    """Return the working correlation mirroring ``spec.random`` at the level of the data."""
    cs = RANDOM_TO_CORSTR[spec.random]
    if spec.individual is not None and cs in ("exchangeable", "nested-exchangeable"):
        cs = "block-exchangeable"
    single = td.kind == "aggregate" and not (td.family == "binomial" and "trials" in td.roles)
    if single and cs == "nested-exchangeable":
        return "exchangeable"
    if single and cs == "decay":
        return "ar1"
    return cs
