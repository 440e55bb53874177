r"""Generalised linear mixed models (binomial, Poisson, negative binomial) for stepped-wedge trials.

The model for cluster ``i``, period ``j`` is

.. math::  g(\mu_{ij}) = \beta_0 + \text{time}_j + \theta X_{ij} + z'\gamma + \log E_{ij}
           + \alpha_i + \gamma_{ij} + \eta_i X_{ij}

with a cluster intercept ``alpha_i ~ N(0, tau2)``, optional cluster-period effects
``gamma_ij ~ N(0, gamma2)`` (for counts with one row per cell these are observation-level
effects: Poisson-lognormal overdispersion) and an optional random treatment effect
``eta_i ~ N(0, eta2)``.  Whenever the covariates are constant within a cluster-period
cell the rows are reduced to cell totals (events / trials, counts / summed exposure),
whose likelihood equals the rows' up to a constant that is added back, so a million
binary rows cost no more than a few hundred cells.  Estimation maximises the Laplace
approximation (exact gradient; :mod:`steppedwedge._core.laplace`) or, for a cluster
intercept only, adaptive Gauss-Hermite quadrature (:mod:`steppedwedge._core.agq`).

Log-likelihood conventions (as lme4/glmmTMB for the data form given): individual 0/1 rows
have no binomial coefficient; events/trials rows include ``log choose(n, y)``; counts
include ``-log y!``.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from scipy import special, stats

from .._core.families import FAMILY_LINKS, log_constant, make_family
from .._core.laplace import PHI_MAX, CoreFit, UnitData, _NonFinite, fit_glmm_core
from .._validation import check_option, check_positive_int
from .._warnings import caller_stacklevel, warn
from ..data import TrialData
from ..exceptions import (
    ConvergenceWarning,
    DataError,
    DesignError,
    OptionError,
    SteppedWedgeWarning,
)
from ..inference.marginal import marginal_ratio
from ..inference.sandwich import (
    check_vcov,
    corrected_scores,
    laplace_cluster_pieces,
    robust_df,
    sandwich_vcov,
)
from ..results import FitResult, Summary, _fmt
from ._formula import covariate_matrix
from .mixed import (
    EFFECT_TYPES,
    TIME_EFFECTS,
    _covariate_columns,
    _decay_times,
    _estimand_contrast,
    _first_dependent_column,
    _time_columns,
    _treatment_columns,
    check_decay_scale,
)

__all__ = ["GLMM_DOF", "GLMM_RANDOM", "GLMMResult", "fit_glmm"]

#: Random-effect structures available for GLMMs.
GLMM_RANDOM = (
    "nested",
    "cluster",
    "random-slope",
    "nested+random-slope",
    "decay",
    "nested+decay",
)
_DECAY = ("decay", "nested+decay")
_GLMM_FAMILIES = tuple(FAMILY_LINKS)
_METHODS = ("laplace", "agq")
#: Denominator df rules for GLMM Wald tests (a positive number is also accepted).
GLMM_DOF = ("clusters", "between-within", "residual", "normal")
_LATENT_RESIDUAL = {"logit": math.pi**2 / 3.0, "probit": 1.0}


# --------------------------------------------------------------------------------------
# result
# --------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class GLMMResult(FitResult):
    """Result of a GLMM fit (:func:`fit_glmm`, ``sw.fit(family=...)``).

    Everything of :class:`~steppedwedge.results.FitResult`, on the link scale, plus the
    family and link; :meth:`tidy` and :meth:`summary` report ratios (``exp``: odds ratios
    for logit, risk or rate ratios for log links) with ``exponentiate=True``.

    Attributes
    ----------
    family, link : str
        Outcome family and link function.
    dispersion : float or None
        Negative-binomial size ``k`` (variance ``mu + mu^2 / k``; glmmTMB's ``sigma``).
    n_quadrature : int
        Quadrature points (1 = Laplace).
    n_units : int
        Number of likelihood units after aggregation (cells, or cell x covariate groups).
    variance_intervals : dict
        ``name -> (estimate, low, high)``: 95% Wald intervals of the variance components
        from the Hessian of the Laplace log-likelihood, computed on a transformed scale and
        mapped back: log scale for the variances ``tau2``, ``gamma2``, ``eta2`` and the NB
        size ``nb_size``, Fisher z (``atanh``) for the AR(1) correlation ``decay``.
        Components on a boundary (estimated as 0, ``|decay|`` at 1, size at its cap) have
        ``nan`` limits.

    Examples
    --------
    >>> import numpy as np, pandas as pd
    >>> from steppedwedge.models.glmm import fit_glmm
    >>> rng = np.random.default_rng(4)
    >>> rows = [(i, j, int(j > i % 3), 40, rng.binomial(40, 0.3 if j <= i % 3 else 0.2))
    ...         for i in range(9) for j in range(4)]
    >>> df = pd.DataFrame(rows, columns=["ward", "month", "arm", "n", "falls"])
    >>> res = fit_glmm(df, outcome="falls", trials="n", cluster="ward", period="month",
    ...                treatment="arm", family="binomial", random="cluster")
    >>> t = res.tidy(exponentiate=True)
    >>> round(float(t["estimate"].iloc[0]), 3), round(float(t["std_error"].iloc[0]), 3)
    (0.621, 0.178)
    """

    family: str = "binomial"
    link: str = "logit"
    dispersion: float | None = None
    n_quadrature: int = 1
    n_units: int = 0
    variance_intervals: dict[str, tuple[float, float, float]] = field(default_factory=dict)

    def tidy(self, confidence_level: float = 0.95, *, exponentiate: bool = False) -> pd.DataFrame:
        """One row per term: the estimand first, then the other fixed effects.

        Parameters
        ----------
        confidence_level : float
            Level of ``conf_low``/``conf_high``.
        exponentiate : bool
            Report ``exp(estimate)`` and exponentiated limits (odds, risk or rate ratios);
            log, logit and cloglog links only.  ``std_error``, ``statistic`` and ``p_value``
            stay on the link scale.

        Returns
        -------
        pandas.DataFrame
            Columns ``term, estimate, std_error, statistic, df, p_value, conf_low, conf_high``.
        """
        if exponentiate and self.link not in ("log", "logit", "cloglog"):
            raise OptionError(
                f"`exponentiate=True` needs a log or logit link; this fit uses link={self.link!r}."
            )
        out = FitResult.tidy(self, confidence_level)
        if exponentiate:
            for c in ("estimate", "conf_low", "conf_high"):
                out[c] = np.exp(out[c])
        return out

    @property
    def ratio(self) -> float:
        """``exp(estimate)``: odds ratio (logit), risk/rate ratio (log)."""
        return float(np.exp(self.estimate))

    def rates(self, per: float = 10_000.0, confidence_level: float = 0.95) -> pd.DataFrame:
        """Model rates per ``per`` units of exposure, by period, without and with treatment.

        Conditional on zero random effects (a typical cluster) and zero covariates; Poisson
        and negative-binomial fits only.  Intervals by the delta method on the log scale,
        with the fit's t (``df``) or normal quantile.

        For exposure-time fits the treated rate applies the estimand's contrast (the TATE
        or PTE) to every period.

        Parameters
        ----------
        per : float
            Rates per this much exposure (default 10,000 population).
        confidence_level : float
            Level of the intervals.

        Returns
        -------
        pandas.DataFrame
            Columns ``period, rate_control, rate_treated, low_control, high_control,
            low_treated, high_treated``.

        Examples
        --------
        >>> import numpy as np, pandas as pd
        >>> from steppedwedge.models.glmm import fit_glmm
        >>> rng = np.random.default_rng(2)
        >>> rows = [(i, j, int(j > i % 3), 50_000, rng.poisson(50 * (0.8 if j > i % 3 else 1.0)))
        ...         for i in range(9) for j in range(4)]
        >>> df = pd.DataFrame(rows, columns=["la", "q", "arm", "pop", "referrals"])
        >>> res = fit_glmm(df, outcome="referrals", cluster="la", period="q", treatment="arm",
        ...                family="poisson", exposure="pop", random="cluster")
        >>> res.rates(per=10_000)[["period", "rate_control", "rate_treated"]].round(2)
           period  rate_control  rate_treated
        0       0          9.71          7.58
        1       1         10.07          7.86
        2       2         10.90          8.51
        3       3         10.27          8.02
        """
        if self.family not in ("poisson", "negative_binomial"):
            raise OptionError("`rates()` needs a count family (poisson or negative_binomial).")
        if not (isinstance(per, (int, float)) and per > 0):
            raise OptionError(f"`per` must be a positive number; got {per!r}.")
        info = self._rate_design
        if info is None:  # pragma: no cover - always set by fit_glmm
            raise OptionError("rates are not available for this fit.")
        x0, x1, periods = info
        b = self.params.to_numpy()
        v = self.vcov_matrix.to_numpy()
        q = 0.5 + confidence_level / 2
        z = stats.norm.ppf(q) if not np.isfinite(self.df) else stats.t.ppf(q, self.df)
        out: dict[str, Any] = {"period": list(periods)}
        for lab, xm in (("control", x0), ("treated", x1)):
            eta = xm @ b
            se = np.sqrt(np.einsum("ij,jk,ik->i", xm, v, xm))
            out[f"rate_{lab}"] = per * np.exp(eta)
            out[f"low_{lab}"] = per * np.exp(eta - z * se)
            out[f"high_{lab}"] = per * np.exp(eta + z * se)
        cols = [
            "period",
            "rate_control",
            "rate_treated",
            "low_control",
            "high_control",
            "low_treated",
            "high_treated",
        ]
        table: pd.DataFrame = pd.DataFrame(out)[cols]
        return table

    _rate_design: Any = field(default=None, repr=False)

    def summary(self, *, exponentiate: bool | None = None) -> Summary:
        """Summary with the estimand on the link scale and as a ratio (log/logit links).

        Parameters
        ----------
        exponentiate : bool, optional
            Also report the ratio scale (``exp``); default True for log and logit links.

        Returns
        -------
        Summary
            Renders with ``as_text()``, ``as_html()``, ``as_markdown()``, ``as_latex()``.
        """
        lo, hi = self.conf_int()
        if exponentiate is None:
            exponentiate = self.link in ("log", "logit")
        ratio_name = {
            "logit": "odds ratio",
            "log": "risk ratio" if self.family == "binomial" else "rate ratio",
            "cloglog": "hazard ratio",
        }.get(self.link, "ratio")
        est_line = (
            f"{self.estimand} = {_fmt(self.estimate)} (SE {_fmt(self.std_error)}, "
            + ("z test" if not np.isfinite(self.df) else f"t test, df {_fmt(self.df)},")
            + f" p {_fmt(self.pvalue)}; 95% CI {_fmt(lo)} to {_fmt(hi)})"
        )
        header = [
            ("Outcome", self.outcome),
            (
                "Model",
                f"{self.family} GLMM, link={self.link!r}, random={self.random!r}, "
                f"time={self.time!r}, "
                f"effect={self.effect!r}"
                + (f", decay_scale={self.decay_scale!r}" if "decay" in self.random else ""),
            ),
            ("Covariates", self.covariates or "none"),
            (
                "Estimation",
                (
                    "Laplace approximation"
                    if self.n_quadrature == 1
                    else f"adaptive Gauss-Hermite quadrature ({self.n_quadrature} points)"
                )
                + f"; log-likelihood {_fmt(self.loglik)}",
            ),
            (
                "Observations",
                f"{self.n_obs} in {self.n_clusters} clusters x {self.n_periods} periods",
            ),
            ("Estimand", est_line),
        ]
        if exponentiate:
            header.append(
                (
                    ratio_name.capitalize(),
                    f"{_fmt(np.exp(self.estimate))} (95% CI "
                    f"{_fmt(np.exp(lo))} to {_fmt(np.exp(hi))})",
                )
            )
        header += [("Converged", _fmt(self.converged)), ("Singular", _fmt(self.singular))]
        vc = pd.DataFrame(
            {
                "component": list(self.variance_components),
                "estimate": list(self.variance_components.values()),
            }
        )
        if self.variance_intervals:
            ci = self.variance_intervals
            nan = (math.nan, math.nan, math.nan)
            vc["low"] = [ci.get(c, nan)[1] for c in vc["component"]]
            vc["high"] = [ci.get(c, nan)[2] for c in vc["component"]]
        tables = [
            (
                "Fixed effects" + (" (exponentiated estimates and limits)" if exponentiate else ""),
                self.tidy(exponentiate=exponentiate),
            ),
            (
                "Variance components (link scale)"
                + (
                    "; 95% Wald CI on the log scale (variances, NB size) and the atanh scale "
                    "(decay)"
                    if self.variance_intervals
                    else ""
                ),
                vc,
            ),
        ]
        if self.correlations:
            tables.append(
                (
                    "Correlations, latent scale (95% CI)"
                    if self.family == "binomial"
                    else "Correlations (95% CI)",
                    pd.DataFrame(
                        [(k, *v) for k, v in self.correlations.items()],
                        columns=["name", "estimate", "low", "high"],
                    ),
                )
            )
        if self.effect_curve is not None:
            tables.append(("Exposure-time effects (link scale)", self.effect_curve))
        return Summary(
            title="Stepped-wedge generalised linear mixed model",
            header=tuple(header),
            tables=tuple(tables),
            notes=self.messages,
        )

    def __repr__(self) -> str:
        return (
            f"GLMMResult(family={self.family!r}, link={self.link!r}, estimand={self.estimand!r}, "
            f"estimate={self.estimate:.4g}, std_error={self.std_error:.4g}, p={self.pvalue:.3g})"
        )


# --------------------------------------------------------------------------------------
# units
# --------------------------------------------------------------------------------------


def _pad(values: list[np.ndarray], width: int, fill: float = 0.0) -> np.ndarray:
    """Stack per-cluster arrays of shape (U_i, ...) into (I, U, ...)."""
    tail = values[0].shape[1:]
    out = np.full((len(values), width, *tail), fill, dtype=float)
    for i, v in enumerate(values):
        out[i, : v.shape[0]] = v
    return out


def _glmm_iv(
    family: str,
    link: str | None,
    random: str,
    time: str,
    effect: str,
    method: str,
    n_quadrature: int | None,
    dof: str | float | None,
    exposure_time: int | None,
) -> tuple[str, int]:
    check_option("family", family, _GLMM_FAMILIES)
    allowed = FAMILY_LINKS[family]
    if link is None:
        link = allowed[0]
    if link not in allowed:
        hint = {
            "poisson": "counts use the log link",
            "negative_binomial": "counts use the log link",
            "binomial": "binary outcomes use logit, probit, cloglog, log or identity",
        }[family]
        raise OptionError(
            f"`link={link!r}` makes no sense with family={family!r} ({hint}); "
            f"use one of {list(allowed)}."
        )
    check_option("random", random, GLMM_RANDOM)
    check_option("time", time, TIME_EFFECTS)
    check_option("effect", effect, EFFECT_TYPES)
    check_option("method", method, _METHODS)
    if isinstance(dof, bool) or not (
        dof is None
        or dof in GLMM_DOF
        or (isinstance(dof, (int, float, np.integer, np.floating)) and dof > 0)
    ):
        raise OptionError(
            f"`dof` must be one of {list(GLMM_DOF)} or a positive number of degrees of freedom "
            f"for GLMMs; got {dof!r}."
        )
    if effect == "pte" and exposure_time is None:
        raise OptionError(
            "`effect='pte'` needs `exposure_time=` (the exposure time e of the point effect)."
        )
    if method == "agq":
        if random != "cluster":
            raise OptionError(
                "`method='agq'` (adaptive Gauss-Hermite quadrature) needs a single scalar random "
                f"effect per cluster: use random='cluster'; got random={random!r}."
            )
        nq = 7 if n_quadrature is None else check_positive_int("n_quadrature", n_quadrature)
        if nq > 50:
            raise OptionError(f"`n_quadrature` must be at most 50; got {nq}.")
    else:
        if n_quadrature not in (None, 1):
            raise OptionError("`n_quadrature` is used only with method='agq'.")
        nq = 1
    return link, nq


def fit_glmm(
    data: pd.DataFrame,
    *,
    outcome: str,
    cluster: str,
    period: str,
    treatment: str,
    family: str,
    link: str | None = None,
    trials: str | None = None,
    exposure: str | None = None,
    offset: str | None = None,
    individual: str | None = None,
    covariates: str | None = None,
    random: str = "nested",
    time: str = "categorical",
    knots: Sequence[float] | None = None,
    effect: str = "immediate",
    exposure_window: tuple[int, int] | None = None,
    exposure_time: int | None = None,
    method: str = "laplace",
    n_quadrature: int | None = None,
    dof: str | float | None = None,
    vcov: str = "model",
    missing: str = "raise",
    design: Any = None,
    decay_scale: str = "period",
) -> GLMMResult:
    """Fit a binomial, Poisson or negative-binomial GLMM to stepped-wedge data.

    Parameters
    ----------
    data : pandas.DataFrame
        Individual rows (binary 0/1, or counts with ``individual``-level rows) or one row
        per cluster-period (events out of ``trials``; counts).  Never modified.
    outcome, cluster, period, treatment : str
        Column names.
    family : {"binomial", "poisson", "negative_binomial"}
        Outcome family (negative binomial: NB2, variance ``mu + mu^2 / k``).
    link : str, optional
        Binomial: ``"logit"`` (default), ``"probit"``, ``"cloglog"``, ``"log"``,
        ``"identity"``; counts: ``"log"``.
    trials : str, optional
        Binomial aggregates: the column of trials (``outcome`` holds the events).
    exposure : str, optional
        Counts: a positive exposure (e.g. population), logged internally.
    offset : str, optional
        Counts: an offset already on the log scale.
    individual : str, optional
        Not available for GLMMs (raises ``ValueError``).
    covariates : str, optional
        Right-hand-side formula of covariates (patsy), e.g. ``"deprivation + C(region)"``.
    random : {"nested", "cluster", "random-slope", "nested+random-slope", "decay", \
"nested+decay"}
        What each structure is for:

        * ``"nested"`` (default): cluster intercept ``tau2`` plus independent cluster-period
          effects ``gamma2`` (exchangeable within a cluster; for counts with one row per cell
          this is the Poisson-lognormal overdispersion).  glmmTMB/lme4
          ``(1 | cluster) + (1 | cluster:period)``.
        * ``"cluster"``: cluster intercept only (Hussey & Hughes): every pair of a cluster's
          periods equally correlated, no extra cell-level variation.
        * ``"random-slope"``, ``"nested+random-slope"``: plus an independent random treatment
          effect ``eta2`` (effect heterogeneity between clusters).
        * ``"decay"``: cluster-period effects whose correlation decays with the distance in
          periods, ``cov(b_ij, b_ik) = gamma2 * r^|j-k|`` (Kasza et al. 2019's discrete-time
          decay; glmmTMB ``ar1(period_f + 0 | cluster)``), no persistent term.
        * ``"nested+decay"``: a persistent cluster intercept ``tau2`` plus the decaying
          effect (glmmTMB ``(1 | cluster) + ar1(period_f + 0 | cluster)``), the structure of
          real council rates (a persistent council level and council-period deviations
          that fade); an exchangeable model fitted to such data gives too small standard
          errors.

        Decay uses the period index distance (positions in the sorted periods), so periods
        must be numeric, dates or an ordered categorical (or come from ``design=``);
        ``r = tanh(phi)`` is estimated on the unbounded ``phi`` scale, so ``-1 < r < 1`` as
        in glmmTMB.  ``variance_components`` then holds ``tau2`` (nested+decay),
        ``gamma2`` and ``decay`` (= r; nan when ``gamma2`` is 0).  Estimates on a boundary
        (``gamma2 = 0``, ``r`` at 1 or -1, ``r <= 0``) warn (``ConvergenceWarning``) and set
        ``singular``.  A negative binomial with ``"nested"`` effects and one row per cell is
        weakly identified (both terms are overdispersion of the same count): noted in
        ``messages``, and warned (``SteppedWedgeWarning``) when the fit is singular.
    time : {"categorical", "linear", "spline", "none"}
        Secular trend as in :func:`steppedwedge.fit`; ``knots`` for splines.
    effect : {"immediate", "eti", "tate", "pte"}
        Immediate effect or exposure-time indicators with TATE over ``exposure_window`` or
        the PTE at ``exposure_time``.
    method : {"laplace", "agq"}
        Laplace approximation (default) or adaptive Gauss-Hermite quadrature with
        ``n_quadrature`` points (default 7; ``random="cluster"`` only, like lme4's
        ``nAGQ``).
    dof : {"clusters", "between-within", "residual", "normal"} or float, optional
        Reference distribution of the Wald statistics (t with the df below, or normal).
        ``I`` = clusters with data, ``N`` = observations as given (rows: individuals for
        0/1 or count rows, cluster-periods for events/trials or one-row-per-cell counts),
        ``p`` = fixed-effect columns, ``r_b`` = rank of the cluster-level columns (those
        constant within every cluster: the intercept and any cluster-level covariates;
        ``r_b = 1`` without covariates).

        * ``"clusters"`` (default): t with ``I - r_b - 1`` df for the treatment effect and
          every other term constant within cluster-periods (intercept, period effects,
          cluster- or cell-level covariates), i.e. ``I - 2`` without cluster-level
          covariates: the clusters-minus-cluster-level-parameters rule of cluster
          randomised trials, with the treatment counted as one.  Terms of individual-level
          covariates (varying within cluster-periods) get the within df of
          ``"between-within"``.  In the Monte-Carlo check of the test suite
          (Poisson-lognormal, 400 null replicates) the 5% test rejected 5.3% with 12
          clusters (z: 7.8%) and 3.3% with 17 clusters (z: 5.0%): slightly conservative
          once the variance components are well estimated, and more so with
          ``random="cluster"`` and large cells, where the treatment contrast is almost
          entirely within clusters (use ``"normal"`` there if that is preferred).
        * ``"between-within"``: SAS ``DDFM=BW``, the same rule as the Gaussian LMM
          (:mod:`steppedwedge.inference.dof`): a contrast of cluster-level columns only gets
          ``I - r_b``; any other contrast gets the within-cluster df ``N - I - (p - r_b)``.
          In a stepped wedge the treatment changes within clusters, so it gets the within
          df (e.g. 84 cells - 12 - 7 = 65 for 12 councils x 7 quarters of counts, tens of
          thousands for individual rows): close to the normal rule.
        * ``"residual"``: ``N - p`` for every term (SAS ``DDFM=RESIDUAL``).
        * ``"normal"``: Wald z (as lme4's ``summary`` and glmmTMB).
        * a positive number: that df for every term (e.g. ``I - (T + 1)``).

        The default changed from ``"normal"`` to ``"clusters"``: with 10-20 clusters the
        z test is anti-conservative because the maximum-likelihood (Laplace) variance
        components are biased downwards.
    vcov : {"model", "cr0", "cr2", "cr3", "kc", "md", "fg", "mbn"}
        ``"model"`` (default): the inverse Hessian of the Laplace log-likelihood.  Otherwise
        a cluster-robust sandwich ``H^{-1} [sum_i A_i g_i g_i' A_i'] H^{-1}`` over all free
        outer parameters (``beta``, variance parameters, NB log-size), with ``g_i`` the
        exact per-cluster Laplace scores and the leverage corrections ``A_i`` built from
        each cluster's own Hessian contribution (:mod:`steppedwedge.inference.sandwich`;
        ``cr2`` and ``kc`` coincide here, as do ``cr3`` and ``md``).  With a robust ``vcov``
        and ``dof=None`` every term gets t with ``I - r_b - 1`` df (``I - 2`` without
        cluster-level covariates); the model-based SEs are reported beside the robust ones.
        Laplace only (not ``method="agq"``).
    missing : {"raise", "drop"}
        Missing values: raise (default) or drop with a warning.
    design : Design, optional
        Check the rows against a design.
    decay_scale : {"period", "time"}, default "period"
        For the decay structures: the AR(1) correlation counts periods (``r^|j-k|``) or years
        between period mid-points of ``design`` (``r^|t_j - t_k|``, continuous-time decay,
        Grantham et al. 2019; glmmTMB ``ou(times + 0 | cluster)`` with ``r = exp(-theta)``),
        with ``0 < r < 1``.  ``"time"`` needs ``design=``.

    Returns
    -------
    GLMMResult
        Estimates on the link scale; ``tidy(exponentiate=True)`` for ratios.

    Raises
    ------
    DataError
        Invalid data (non-integer or negative counts, non-positive exposure, events >
        trials, non-0/1 binary outcomes, a missing offset), complete separation of the
        outcome by treatment, a non-identifiable effect (named), unordered (string) periods
        with a decay structure, or a fit that fails numerically.
    DesignError
        A decay structure with too few periods (2 for ``"decay"``, 3 for
        ``"nested+decay"``).
    OptionError
        Invalid options (a ``ValueError``), or a family/link combination that makes no sense,
        e.g. ``method="agq"`` with a decay structure (quadrature needs one random effect per
        cluster).

    References
    ----------
    Kasza J, Hemming K, Hooper R, Matthews JNS, Forbes AB (2019). Impact of non-uniform
    correlation structure on sample size and power in multiple-period cluster randomised
    trials. *Stat Methods Med Res* 28:703-716.

    Examples
    --------
    >>> import numpy as np, pandas as pd
    >>> from steppedwedge.models.glmm import fit_glmm
    >>> rng = np.random.default_rng(1)
    >>> rows = []
    >>> for i in range(10):
    ...     a = rng.normal(0, 0.2)
    ...     for j in range(5):
    ...         x = int(j > i % 4)
    ...         pop = 20_000
    ...         rows.append((i, j, x, pop, rng.poisson(pop * 1e-3 * np.exp(a - 0.3 * x))))
    >>> df = pd.DataFrame(rows, columns=["la", "quarter", "arm", "pop", "referrals"])
    >>> res = fit_glmm(df, outcome="referrals", cluster="la", period="quarter", treatment="arm",
    ...                family="poisson", exposure="pop", random="cluster")
    >>> round(res.estimate, 3), round(res.ratio, 3)
    (-0.318, 0.728)

    A persistent council effect plus council-quarter effects that decay over time
    (glmmTMB's ``(1 | la) + ar1(quarter_f + 0 | la)``):

    >>> dec = fit_glmm(df, outcome="referrals", cluster="la", period="quarter",
    ...                treatment="arm", family="poisson", exposure="pop",
    ...                random="nested+decay")
    >>> sorted(dec.variance_components)
    ['decay', 'gamma2', 'tau2']
    """
    vcov = check_vcov(vcov)
    link, nq = _glmm_iv(
        family, link, random, time, effect, method, n_quadrature, dof, exposure_time
    )
    if vcov != "model" and nq > 1:
        raise OptionError(
            f"vcov={vcov!r} needs the Laplace fit (method='laplace'); per-cluster scores of the "
            "adaptive quadrature likelihood are not available."
        )
    fam = make_family(family, link)
    if not isinstance(data, pd.DataFrame):
        raise TypeError(f"`data` must be a pandas DataFrame; got {type(data).__name__}.")
    if individual is not None:
        raise OptionError(
            "`individual=` (closed-cohort random effects) is not available for GLMMs yet; omit it "
            "to analyse the rows as cross-sectional."
        )
    if time == "none":
        warnings.warn(
            "`time='none'` fits no period effects: this assumes there is no secular trend; the "
            "treatment effect is confounded with time if there is one.",
            SteppedWedgeWarning,
            stacklevel=caller_stacklevel(),
        )
    roles = [
        c for c in (outcome, cluster, period, treatment, trials, exposure, offset) if c is not None
    ]
    cov_cols = _covariate_columns(covariates, data, roles) if covariates else []
    kind = None
    if (
        family != "binomial"
        and cluster in data.columns
        and period in data.columns
        and data.duplicated([cluster, period]).any()
    ):
        # several count rows per cell (e.g. per person or per area): summed exactly
        kind = "individual"
    td = TrialData.from_frame(
        data,
        outcome=outcome,
        cluster=cluster,
        period=period,
        treatment=treatment,
        family=family,
        trials=trials,
        exposure=exposure,
        offset=offset,
        covariates=cov_cols or None,
        kind=kind,  # type: ignore[arg-type]
        design=design,
        missing=missing,  # type: ignore[arg-type]
    )
    check_decay_scale(decay_scale, random, design)
    cells = td.cells()
    n_i, n_t = cells.shape
    if random in _DECAY:
        _check_decay_periods(td, random, n_t)
    ar1_times = _decay_times(decay_scale, design, n_t) if decay_scale == "time" else None
    observed = np.asarray(cells.observed)
    trt = np.where(observed, np.asarray(cells.treatment, dtype=float), 0.0)

    # -------------------------------------------------------------- fixed effects on cells
    tcols, tnames, knots_used = _time_columns(time, list(td.periods), knots)
    xcell = [np.ones((n_i, n_t, 1)), np.broadcast_to(tcols, (n_i, n_t, tcols.shape[1]))]
    names = ["(Intercept)"] + tnames
    eff_cols, eff_names, exp_levels = _treatment_columns(effect, trt, observed)
    xcell.append(eff_cols)
    names += eff_names
    xbar = np.concatenate(xcell, axis=2)
    p0 = xbar.shape[2]
    eff_idx = list(range(p0 - len(eff_names), p0))

    # -------------------------------------------------------------- rows -> units
    frame = td.frame
    ci = np.asarray(td.cluster_codes)
    pi = np.asarray(td.period_codes)
    y_rows = frame["outcome"].to_numpy(dtype=float)
    if family == "binomial":
        n_rows = (
            frame["trials"].to_numpy(dtype=float) if td.kind == "aggregate" else np.ones(len(frame))
        )
    else:
        n_rows = np.ones(len(frame))
    off_rows = np.zeros(len(frame))
    if "exposure" in td.roles:
        off_rows = off_rows + np.log(frame["exposure"].to_numpy(dtype=float))
    if "offset" in td.roles:
        off_rows = off_rows + frame["offset"].to_numpy(dtype=float)
    const_rows = log_constant(family, y_rows, n_rows, binomial_coefficient=(td.kind == "aggregate"))
    if family != "binomial":
        const_rows = const_rows + y_rows * off_rows  # the offset's part of y * eta, restored below
    xr = xbar[ci, pi]
    if covariates:
        cm = covariate_matrix(covariates, frame)
        xr = np.concatenate([xr, cm.values], axis=1)
        names += list(cm.names)
    p = xr.shape[1]
    # group rows with identical (cell, covariates); NB rows only when one row per cell
    key_cols = (
        np.column_stack([td.cell_index.astype(float), xr[:, p0:]])
        if p > p0
        else td.cell_index.astype(float)[:, None]
    )
    if family == "negative_binomial" and np.any(np.bincount(td.cell_index) > 1):
        group = np.arange(len(frame))
    elif p == p0:
        _, group = np.unique(td.cell_index, return_inverse=True)
    else:  # hash-grouped, numbered in sorted (lexicographic) order as np.unique(axis=0)
        keys = pd.DataFrame(key_cols)
        group = keys.groupby(list(keys.columns), sort=True).ngroup().to_numpy()
    group = np.asarray(group).ravel()
    n_g = int(group.max()) + 1 if len(group) else 0
    first = np.full(n_g, -1)
    first[group[::-1]] = np.arange(len(group))[::-1]
    g_y = np.bincount(group, weights=y_rows, minlength=n_g)
    g_n = np.bincount(group, weights=n_rows, minlength=n_g)
    g_e = np.bincount(group, weights=np.exp(off_rows), minlength=n_g)
    g_off = np.log(g_e) if family != "binomial" else np.zeros(n_g)
    g_const: np.ndarray = np.bincount(group, weights=const_rows, minlength=n_g)
    if family != "binomial":
        g_const = g_const - g_y * g_off
    g_x = xr[first]
    g_c = ci[first]
    g_p = pi[first]
    g_t = trt[g_c, g_p]
    dep = _first_dependent_column(g_x) if _nearly_collinear(g_x) else None
    if dep is not None:
        bad = names[dep]
        if dep in eff_idx:
            raise DataError(
                f"The treatment effect term {bad!r} is not identifiable: it is collinear with the "
                "period "
                "effects (or earlier terms). Check that some periods contain both control and "
                "treated "
                "clusters and that every exposure time is observed."
            )
        if dep >= p0:
            raise DataError(
                f"Covariate column {bad!r} is collinear with the treatment, period or other "
                "covariate "
                "columns; remove it from `covariates`."
            )
        raise DataError(
            f"Fixed-effect column {bad!r} is collinear with earlier columns; the time model "
            f"`time={time!r}` cannot be estimated with these periods."
        )
    if family == "binomial":
        _check_separation(g_y, g_n, g_t, treatment, effect)

    # NB size and an observation-level cluster-period effect: weakly identified (said after
    # the fit: warned when it actually put all overdispersion in one of them, noted otherwise)
    nb_weak = (
        family == "negative_binomial"
        and random in ("nested", "nested+random-slope")
        and not np.any(np.bincount(td.cell_index) > 1)
    )

    # -------------------------------------------------------------- random-effect design
    zcols: list[np.ndarray] = []
    comp: list[int] = []
    comp_names: list[str] = []
    if random != "decay":
        zcols.append(np.ones((n_g, 1)))
        comp.append(0)
        comp_names.append("tau2")
    if random in ("random-slope", "nested+random-slope"):
        zcols.append(g_t[:, None])
        comp.append(len(comp_names))
        comp_names.append("eta2")
    tail_start = None
    if random in ("nested", "nested+random-slope"):
        tail_start = len(comp)  # one-hot cluster-period columns last: arrowhead Laplace Hessian
        zcols.append(np.eye(n_t)[g_p])
        comp += [len(comp_names)] * n_t
        comp_names.append("gamma2")
    ar1 = None
    if random in _DECAY:
        # AR(1) cluster-period effects, one column per period (position in td.periods)
        ar1 = (len(comp), n_t)
        zcols.append(np.eye(n_t)[g_p])
        comp += [len(comp_names)] * n_t
        comp_names.append("gamma2")
    g_z = np.concatenate(zcols, axis=1)
    order = np.argsort(g_c, kind="stable")
    counts = np.bincount(g_c, minlength=n_i)
    width = int(counts.max())
    splits = np.split(order, np.cumsum(counts)[:-1])
    ud = UnitData(
        y=_pad([g_y[s][:, None] for s in splits], width)[:, :, 0],
        n=_pad([g_n[s][:, None] for s in splits], width)[:, :, 0],
        offset=_pad([g_off[s][:, None] for s in splits], width)[:, :, 0],
        weight=_pad([np.ones((len(s), 1)) for s in splits], width)[:, :, 0],
        x=_pad([g_x[s] for s in splits], width),
        z=_pad([g_z[s] for s in splits], width),
        comp=np.asarray(comp),
        n_comp=len(comp_names),
        const=float(g_const.sum()),
        tail_start=tail_start,
        ar1=ar1,
        ar1_times=ar1_times,
    )

    # -------------------------------------------------------------- start and fit
    beta0, alpha0 = _glm_start(fam, g_y, g_n, g_off, g_x)
    sigma0 = _sigma_start(
        fam, beta0, alpha0, g_y, g_n, g_off, g_x, g_c, g_p, comp_names, n_i, n_t, ar1 is not None
    )
    if ar1 is not None and fam.has_dispersion:
        sigma0, alpha0 = sigma0[:-1], float(sigma0[-1])
    core = _robust_core(ud, fam, [beta0, _ls_start(fam, g_y, g_n, g_off, g_x)], sigma0, alpha0, nq)
    messages: list[str] = []
    if ar1_times is not None:
        messages.append(
            "Continuous-time decay (decay_scale='time'): cluster-period effects whose period "
            "mid-points are t years apart correlate decay**t; the decay is per year."
        )
    if not core.converged:
        warn(
            f"The {method} optimiser did not converge ({core.message}); estimates may be "
            "unreliable.",
            ConvergenceWarning,
        )
        messages.append(f"The optimiser did not converge ({core.message}).")
    at_bound = [comp_names[k] for k in range(len(comp_names)) if core.sigma[k] == 0.0]
    singular = bool(at_bound)
    if singular:
        messages.append(
            f"Singular fit: {', '.join(at_bound)} estimated as 0 (boundary of the parameter space)."
        )
    if ar1 is not None:
        singular = _decay_boundary(core, comp_names, random, messages) or singular
    if fam.has_dispersion and not core.free[-1]:
        singular = True
        messages.append(
            "The negative-binomial size k is at its upper bound (1e6): no overdispersion beyond "
            "Poisson (and the random effects); a Poisson model gives the same estimates."
        )
    if nb_weak:
        text = (
            "Negative binomial with random='nested' and one row per cluster-period: the "
            "cluster-period effect and the NB size both describe extra-Poisson variation of "
            "the same single count, so they are only weakly identified"
        )
        advice = (
            "Use random='cluster' with the negative binomial, family='poisson' with "
            "random='nested' (Poisson-lognormal), or random='nested+decay', whose "
            "cluster-period effects are told apart from the NB noise by their correlation "
            "over time."
        )
        if singular:
            warn(text + "; this fit put all overdispersion in one of them (singular). " + advice)
        messages.append(text + ". " + advice)

    # -------------------------------------------------------------- inference
    free = core.free
    hf = core.hessian[np.ix_(free, free)]
    cov_full = np.full_like(core.hessian, np.nan)
    try:
        cov_f = np.linalg.inv(hf)
        if np.all(np.diag(cov_f) > 0):
            cov_full[np.ix_(free, free)] = cov_f
        else:  # a saddle point or worse (non-converged fit): no meaningful SEs
            messages.append(
                "The Hessian is not positive definite: standard errors are not available."
            )
    except np.linalg.LinAlgError:
        messages.append("The Hessian is singular: standard errors are not available.")
    vb = cov_full[:p, :p]
    vb_model = vb
    contrast, estimand = _estimand_contrast(
        effect, p, eff_idx, exp_levels, exposure_time, exposure_window
    )
    dof_rule = "clusters" if dof is None else dof
    df_of = _df_rule(dof_rule, g_x, g_c, g_p, n_i, n_t, len(frame))
    robust_label = ""
    if vcov != "model":
        vb, df_of, robust_label, marginal = _laplace_robust(
            vcov,
            dof,
            ud,
            fam,
            core,
            hf,
            g_x,
            g_c,
            n_i,
            df_of,
            list(cells.clusters),
            len(frame),
            names,
        )
        messages.append(
            f"Standard errors: {vcov.upper()} cluster-robust sandwich of the Laplace "
            f"likelihood, {robust_label}; model-based SEs in column std_error_model."
        )
        if marginal is not None and effect == "immediate" and link in ("log", "logit"):
            messages.append(
                f"marginal[treatment]: population-averaged (marginal) {marginal.kind} by "
                "g-computation over the observed cluster-periods, random effects integrated "
                f"out, with a sandwich SE ({vcov.upper()} scores; Wang, Wang & Li 2024): a "
                "different "
                "estimand from the conditional 'treatment' coefficient."
            )
        else:
            marginal = None
    est = float(contrast @ core.beta)
    se = float(np.sqrt(contrast @ vb @ contrast))
    ses = np.sqrt(np.diag(vb))
    df_est = df_of(contrast)
    rows = []
    if effect != "immediate":
        rows.append((estimand, est, se, df_est))
    rows += [
        (nm, float(core.beta[k]), float(ses[k]), df_of(np.eye(p)[k])) for k, nm in enumerate(names)
    ]
    terms = pd.DataFrame(rows, columns=["term", "estimate", "std_error", "df"])
    se_model_est = None
    if vcov != "model":
        se_model_est = float(np.sqrt(contrast @ vb_model @ contrast))
        model_se = dict(zip(names, np.sqrt(np.diag(vb_model)), strict=True))
        model_se[estimand] = se_model_est
        terms["std_error_model"] = terms["term"].map(model_se).astype(float)
    if effect == "immediate":
        k_t = names.index("treatment")
        terms = terms.iloc[[k_t] + [k for k in range(p) if k != k_t]].reset_index(drop=True)
    if vcov != "model" and marginal is not None:
        extra = {"term": "marginal[treatment]", "estimate": marginal.log_ratio}
        extra.update(std_error=marginal.std_error, df=df_of(contrast), std_error_model=np.nan)
        terms = pd.concat([terms, pd.DataFrame([extra])], ignore_index=True)
    curve = None
    if effect != "immediate":
        curve = terms[terms["term"].str.startswith("exposure[")].copy()
        curve.insert(0, "exposure_time", exp_levels)
        curve = curve.drop(columns="term").reset_index(drop=True)
    vc = {nm: float(core.sigma[k] ** 2) for k, nm in enumerate(comp_names)}
    intervals = _variance_intervals(core, comp_names, p, ar1 is not None)
    if ar1 is not None:  # r = tanh(phi); nan when gamma2 = 0 (r not identified)
        vc["decay"] = intervals["decay"][0]
    dispersion = float(np.exp(core.alpha)) if fam.has_dispersion else None
    if dispersion is not None:
        vc["nb_size"] = dispersion
    correlations = _latent_correlations(link if family == "binomial" else None, core, comp_names, p)
    if ar1 is not None:
        correlations["decay"] = intervals["decay"]

    rate_design = None
    if family != "binomial":
        base = np.concatenate([np.ones((n_t, 1)), tcols], axis=1)
        x0 = np.zeros((n_t, p))
        x0[:, : base.shape[1]] = base
        x1 = x0.copy()
        x1[:, eff_idx] = contrast[eff_idx] if effect != "pte" else contrast[eff_idx]
        if effect == "immediate":
            x1[:, eff_idx[0]] = 1.0
        rate_design = (x0, x1, list(td.periods))

    n_obs = int(round(float(np.sum(n_rows)))) if family == "binomial" else len(frame)
    return GLMMResult(
        estimand=estimand,
        estimate=est,
        std_error=se,
        df=df_est,
        params=pd.Series(core.beta, index=names, name="estimate"),
        vcov_matrix=pd.DataFrame(vb, index=names, columns=names),
        vcov_model=pd.DataFrame(vb_model, index=names, columns=names),
        variance_components=vc,
        loglik=core.loglik,
        converged=core.converged,
        singular=singular,
        method=method if nq == 1 else f"agq({nq})",
        dof=_df_label(dof_rule, df_est) if vcov == "model" else robust_label,
        vcov=vcov,
        random=random,
        time=time if knots_used is None else f"spline (knots {knots_used})",
        effect=effect,
        n_obs=n_obs,
        n_clusters=n_i,
        n_periods=n_t,
        terms=terms,
        correlations=correlations,
        effect_curve=curve,
        contrast=contrast,
        outcome=outcome,
        covariates=covariates,
        messages=tuple(messages),
        family=family,
        link=link,
        dispersion=dispersion,
        n_quadrature=nq,
        n_units=n_g,
        variance_intervals=intervals,
        _rate_design=rate_design,
        std_error_model=se_model_est,
        decay_scale=decay_scale,
    )


def _laplace_robust(
    vcov: str,
    dof: str | float | None,
    ud: UnitData,
    fam: Any,
    core: CoreFit,
    hf: np.ndarray,
    g_x: np.ndarray,
    g_c: np.ndarray,
    n_i: int,
    df_of: Any,
    labels: list[Any],
    n_obs: int,
    names: Sequence[str] = (),
) -> tuple[np.ndarray, Any, str, Any]:
    """Cluster-robust beta covariance of a Laplace fit, df rule, label and marginal ratio.

    The marginal (population-averaged) ratio by g-computation
    (:mod:`steppedwedge.inference.marginal`) is computed for log and logit links when the
    model has an immediate ``treatment`` column, else ``None``.
    """
    _, r_b = _cluster_level_rank(g_x, g_c)
    p_c = r_b + 1
    df_robust = float("nan")
    if vcov in ("cr2", "cr3", "kc", "md") or dof is None:
        df_robust = robust_df(n_i, p_c, vcov)
    leverage = "none" if vcov in ("cr0", "mbn") else "fixed"
    pieces = laplace_cluster_pieces(ud, fam, core, labels=labels, n_obs=n_obs, leverage=leverage)
    scores = None
    if vcov == "mbn":
        cov = sandwich_vcov(pieces, vcov, hessian=hf)
    else:  # B [sum_i c_i c_i'] B from the corrected scores, shared with the marginal ratio
        scores = corrected_scores(pieces, vcov, hf)
        bread = np.linalg.inv(0.5 * (hf + hf.T))
        bread = 0.5 * (bread + bread.T)
        cov = bread @ (scores.T @ scores) @ bread
        cov = 0.5 * (cov + cov.T)
    p = g_x.shape[1]
    marginal = None
    if fam.link in ("log", "logit") and "treatment" in names:
        t_col = names.index("treatment")
        marginal = marginal_ratio(ud, fam, core, pieces, hf, t_col, fam.link, vcov, scores=scores)
    name = f"{vcov.upper()} cluster-robust variance"
    if dof is None:
        label = f"t(I - p_c = {n_i} - {p_c} = {n_i - p_c}) with {name}"
        return cov[:p, :p], lambda c: df_robust, label, marginal
    return cov[:p, :p], df_of, f"{_df_label(dof, df_of(np.eye(p)[0]))} with {name}", marginal


# --------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------


def _robust_core(
    ud: UnitData,
    fam: Any,
    betas: list[np.ndarray],
    sigma0: np.ndarray,
    alpha0: float,
    nq: int,
) -> CoreFit:
    """Run the optimiser; numerical failures become a retry or a :class:`DataError`.

    A log-likelihood that cannot be evaluated at the start (extreme counts or exposures
    overflow, e.g. a GLM start driven far out by all-zero periods) is retried from
    random-effect SDs a tenth as large, then from the other fixed-effect starts in ``betas``
    (the log-linear least-squares start); arithmetic or linear-algebra failures inside the
    optimiser (overflow, a singular system) are reported as a
    :class:`~steppedwedge.exceptions.DataError` that says what to try, never as a bare numpy
    or math exception.
    """
    small = sigma0.copy()
    small[: ud.n_comp] *= 0.1
    starts = [(b, s) for b in betas for s in (sigma0, small)]
    for attempt, (beta0, start) in enumerate(starts):
        try:
            core = fit_glmm_core(ud, fam, beta0, start, alpha0, n_quadrature=nq)
            at_bound = bool(np.any(core.sigma[: ud.n_comp] == 0.0)) or not np.all(core.free)
            if ud.ar1 is not None and (not core.converged or at_bound):
                # moment starts can be far off on extreme data, and boundary optima of the
                # decay structures (tau2 = 0 with r near 1, gamma2 = 0) are often local: one
                # conservative restart (SDs 0.3, r = 0.5, NB size 10), kept if its
                # log-likelihood is higher
                safe = np.append(np.full(ud.n_comp, 0.3), math.atanh(0.5))
                try:
                    alt = fit_glmm_core(ud, fam, beta0, safe, math.log(10.0), n_quadrature=nq)
                except _NonFinite:
                    alt = None
                if alt is not None and alt.loglik > core.loglik:
                    core = alt
            return core
        except _NonFinite:
            if attempt < len(starts) - 1:
                continue
            raise DataError(
                "The GLMM log-likelihood is not finite at the starting values (the counts, "
                "trials or exposures are too extreme for the model: e.g. rates that overflow "
                "on the log scale). Check the outcome and exposure columns."
            ) from None
        except (np.linalg.LinAlgError, FloatingPointError, OverflowError, ZeroDivisionError) as e:
            raise DataError(
                f"The GLMM fit failed numerically ({type(e).__name__}: {e}). The model is "
                "probably too rich for these data (e.g. variance components that are not "
                "identified); try a simpler `random=` structure or family='poisson'."
            ) from e
    raise AssertionError("unreachable")  # pragma: no cover


def _check_decay_periods(td: TrialData, random: str, n_t: int) -> None:
    """Decay needs enough periods and a known period order (distance = index distance).

    The order is known for numbers, dates, pandas Periods, ordered categoricals, ISO-like
    text labels and a design's periods (:attr:`TrialData.periods_ordered`); other text labels
    would be sorted alphabetically and raise :class:`DataError`.
    """
    need = 3 if random == "nested+decay" else 2
    if n_t < need:
        raise DesignError(
            f"random={random!r} needs at least {need} periods (it estimates "
            + ("tau2, gamma2 and r" if need == 3 else "gamma2 and r")
            + f" from the covariances between a cluster's periods); the data have {n_t}. "
            "Use random='cluster'."
        )
    td.require_period_order(f"random={random!r} (decay with the distance between periods)")


def _nearly_collinear(x: np.ndarray) -> bool:
    """Whether the column-scaled ``x`` has singular-value ratio below 1e-9.

    A well-conditioned Gram matrix (eigenvalue ratio above 1e-12, so singular values above
    ~1e-6 relative) settles it without a LAPACK call on the tall matrix; otherwise the
    singular values of ``x`` decide.
    """
    xs = x / np.maximum(np.sqrt((x * x).sum(axis=0)), 1e-300)
    ev = np.linalg.eigvalsh(xs.T @ xs)
    if ev[0] > 1e-12 * max(ev[-1], 1.0):
        return False
    sv = np.linalg.svd(xs, compute_uv=False)
    return bool(sv[-1] < 1e-9 * max(1.0, sv[0]))


def _constant_within(g_x: np.ndarray, groups: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Columns of ``X`` constant within every group, and each group's first unit."""
    _, first, inverse = np.unique(groups, return_index=True, return_inverse=True)
    scale = 1.0 + np.abs(g_x).max(axis=0)
    level = np.all(np.abs(g_x - g_x[first][np.ravel(inverse)]) <= 1e-12 * scale, axis=0)
    return level, first


def _cluster_level_rank(g_x: np.ndarray, g_c: np.ndarray) -> tuple[np.ndarray, int]:
    """Columns of ``X`` constant within every cluster, and the rank of those columns."""
    level, first = _constant_within(g_x, g_c)
    xb = g_x[first][:, level]
    r_b = int(np.linalg.matrix_rank(xb)) if xb.size else 0
    return level, r_b


def _df_rule(
    dof: str | float,
    g_x: np.ndarray,
    g_c: np.ndarray,
    g_p: np.ndarray,
    n_i: int,
    n_t: int,
    n_obs: int,
) -> Any:
    """Return ``contrast -> df`` for a GLMM df rule (see :func:`fit_glmm`, ``dof``)."""
    p = g_x.shape[1]
    if not isinstance(dof, str):
        value = float(dof)
        return lambda c: value
    if dof == "normal":
        return lambda c: math.inf
    if dof == "residual":
        value = float(max(n_obs - p, 1))
        return lambda c: value
    level, r_b = _cluster_level_rank(g_x, g_c)
    within = float(max(n_obs - n_i - (p - r_b), 1))
    if dof == "clusters":
        cell_level, _ = _constant_within(g_x, g_c * n_t + g_p)
        between = float(max(n_i - r_b - 1, 1))

        def clusters(c: np.ndarray) -> float:
            return between if np.all(cell_level[np.abs(c) > 0]) else within

        return clusters

    def between_within(c: np.ndarray) -> float:
        if np.all(level[np.abs(c) > 0]):
            return float(max(n_i - r_b, 1))
        return within

    return between_within


def _df_label(dof: str | float, df: float) -> str:
    if not isinstance(dof, str):
        return f"t({_fmt(float(dof))}) (user-supplied df)"
    if dof == "normal":
        return "normal (Wald z)"
    rule = {
        "clusters": "I - r_b - 1 (within df for individual-level covariates)",
        "between-within": "between-within",
        "residual": "N - p",
    }[dof]
    return f"{dof}: t({_fmt(df)}), {rule}"


def _check_separation(
    y: np.ndarray, n: np.ndarray, trt: np.ndarray, treatment: str, effect: str
) -> None:
    """Raise when the treatment completely separates the binary outcome (or it never varies)."""
    tot_y, tot_n = y.sum(), n.sum()
    if tot_y == 0 or tot_y == tot_n:
        raise DataError(
            f"The binary outcome is {'always 0' if tot_y == 0 else 'always 1'}: a binomial model "
            "cannot be fitted (complete separation)."
        )
    treated = trt > 0
    for arm, mask in (("treated", treated), ("control", ~treated)):
        ya, na = y[mask].sum(), n[mask].sum()
        if na > 0 and (ya == 0 or ya == na):
            raise DataError(
                f"Complete separation: every {arm} observation (treatment column {treatment!r}) "
                "has outcome "
                f"{'0' if ya == 0 else '1'}, so the treatment effect is infinite on the link scale "
                "and the "
                "model cannot be estimated; consider an exact or penalised (Firth) analysis."
            )


def _ls_start(
    fam: Any, y: np.ndarray, n: np.ndarray, off: np.ndarray, x: np.ndarray, with_eta: bool = False
) -> Any:
    """Least-squares fixed-effect start on the link scale of the smoothed outcome."""
    if fam.name == "binomial":
        pbar = (y + 0.5) / (n + 1.0)
        if fam.link == "logit":
            eta = np.log(pbar / (1 - pbar))
        elif fam.link == "probit":
            eta = stats.norm.ppf(pbar)
        elif fam.link == "cloglog":
            eta = np.log(-np.log1p(-pbar))
        elif fam.link == "log":
            eta = np.log(pbar)
        else:
            eta = pbar
    else:
        eta = np.log(y + 0.5) - 0.0
    try:  # normal equations: x has full column rank here (checked by the caller)
        beta = np.linalg.solve(x.T @ x, x.T @ (eta - off))
    except np.linalg.LinAlgError:  # pragma: no cover - defensive
        beta = np.linalg.lstsq(x, eta - off, rcond=None)[0]
    return (beta, eta) if with_eta else beta


def _irls(
    fam: Any,
    y: np.ndarray,
    n: np.ndarray,
    off: np.ndarray,
    x: np.ndarray,
    beta: np.ndarray,
    w0: np.ndarray,
) -> np.ndarray:
    """GLM IRLS from ``beta``; a step whose log-likelihood overflows is halved (up to 30x).

    Stops where a coefficient has moved more than 30 (link scale) from the start: the GLM
    MLE is then off at infinity (a period or arm with no events), useless as a start.
    """
    alpha = 0.0 if fam.name != "negative_binomial" else 5.0
    beta_ls = beta
    for _ in range(25):
        e = x @ beta + off
        if not fam.valid(e):
            break
        _ll, s, w, _w1 = fam.derivs(y, n, e, alpha)
        w = np.maximum(w, 1e-10 * (1 + w0.max()))
        try:
            step = np.linalg.solve((x * w[:, None]).T @ x, x.T @ s)
        except np.linalg.LinAlgError:
            break
        if not np.all(np.isfinite(step)):
            break
        for _half in range(30):
            new = beta + step
            if fam.valid(x @ new + off) and np.isfinite(
                fam.derivs(y, n, x @ new + off, alpha)[0].sum()
            ):
                break
            step = step / 2.0
        else:
            break
        if np.abs(new - beta_ls).max() > 30.0:
            break
        beta = new
        if np.abs(step).max() < 1e-10:
            break
    return beta


def _glm_start(
    fam: Any, y: np.ndarray, n: np.ndarray, off: np.ndarray, x: np.ndarray
) -> tuple[np.ndarray, float]:
    """Fixed-effect start from a GLM fit by IRLS (no random effects); NB log-size by moments."""
    beta, eta = _ls_start(fam, y, n, off, x, with_eta=True)
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        beta = _irls(fam, y, n, off, x, beta, n if fam.name == "binomial" else np.exp(eta))
    alpha = 0.0
    if fam.has_dispersion:
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            mu = np.exp(np.minimum(x @ beta + off, 700.0))
            excess = np.sum((y - mu) ** 2 - mu) / max(np.sum(mu * mu), 1e-300)
        alpha = float(np.log(1.0 / excess)) if 1e-3 < excess < np.inf else float(np.log(1e3))
    if fam.name == "binomial" and fam.link in ("log", "identity") and not fam.valid(x @ beta + off):
        raise DataError(
            f"No valid starting values for link={fam.link!r}: fitted probabilities fall outside "
            "(0, 1). "
            "Use link='logit'."
        )
    return beta, alpha


def _sigma_start(
    fam: Any,
    beta: np.ndarray,
    alpha: float,
    y: np.ndarray,
    n: np.ndarray,
    off: np.ndarray,
    x: np.ndarray,
    c: np.ndarray,
    per: np.ndarray,
    comp_names: list[str],
    n_i: int,
    n_t: int,
    decay: bool = False,
) -> np.ndarray:
    """Moment starting values for the random-effect SDs from GLM working residuals.

    With ``decay`` the SDs and ``phi = atanh(r)`` of the AR(1) structures from the lag
    covariances of the cell residuals (:func:`_decay_moments`), then for the negative
    binomial a new log-size start (residuals on the Poisson scale; ``1/k`` = the lag-0
    excess over the random effects' variance).
    """
    eta = x @ beta + off
    nb_decay = decay and fam.has_dispersion
    with np.errstate(over="ignore", invalid="ignore"):
        _ll, s, w, _w1 = fam.derivs(y, n, eta, math.log(1e6) if nb_decay else alpha)
    w = np.nan_to_num(np.maximum(w, 1e-8), nan=1e-8)
    r = s / w  # working residual, sampling variance 1 / w
    r = np.where(np.isfinite(r), r, 0.0)  # overflowed start (extreme data): no information
    cell = c * n_t + per
    wc = np.bincount(cell, weights=w, minlength=n_i * n_t)
    rc = np.bincount(cell, weights=w * r, minlength=n_i * n_t)
    obs = wc > 0
    rbar_c = np.where(obs, rc / np.where(obs, wc, 1.0), 0.0)
    samp_c = np.where(obs, 1.0 / np.where(obs, wc, 1.0), 0.0)
    cl = np.repeat(np.arange(n_i), n_t)
    k_i = np.bincount(cl, weights=obs.astype(float), minlength=n_i)
    m_i = np.bincount(cl, weights=rbar_c, minlength=n_i) / np.maximum(k_i, 1)
    tot = float(np.mean(rbar_c[obs] ** 2 - samp_c[obs]))
    tau2 = float(np.mean(m_i[k_i > 0] ** 2) - np.mean(samp_c[obs]) / max(np.mean(k_i), 1.0))
    tau2 = min(max(tau2, 0.01), 4.0)
    gam2 = min(max(tot - tau2, 0.01), 4.0)
    if decay:
        return _decay_moments(
            rbar_c.reshape(n_i, n_t),
            samp_c.reshape(n_i, n_t),
            obs.reshape(n_i, n_t),
            comp_names,
            nb_decay,
        )
    start = {"tau2": tau2, "gamma2": gam2, "eta2": 0.01}
    return np.asarray(np.sqrt(np.array([start[nm] for nm in comp_names])))


def _decay_moments(
    res: np.ndarray, samp: np.ndarray, obs: np.ndarray, comp_names: list[str], nb: bool = False
) -> np.ndarray:
    """Start ``(tau, gamma, phi)`` (or ``(gamma, phi)``) from lag covariances of cell residuals.

    ``C_k`` = mean product of a cluster's residuals ``k`` periods apart (``C_0`` less the
    sampling variance) is matched to ``tau2 + gamma2 r^k`` (``gamma2 r^k`` without ``tau2``)
    by least squares over a grid of ``r`` (weights: number of pairs).  With ``nb`` the lag 0
    (which also holds the NB overdispersion ``1/k``) is left out of the match and
    ``alpha = log k`` from ``C_0 - tau2 - gamma2`` is appended.
    """
    n_t = res.shape[1]
    cov = np.zeros(n_t)
    cnt = np.zeros(n_t)
    for k in range(n_t):
        both = obs[:, : n_t - k] & obs[:, k:]
        cnt[k] = both.sum()
        if cnt[k]:
            cov[k] = (res[:, : n_t - k] * res[:, k:])[both].sum() / cnt[k]
    cov[0] -= samp[obs].mean() if obs.any() else 0.0
    lags = np.flatnonzero((cnt > 0) & ((np.arange(n_t) > 0) | (not nb)))
    sw = np.sqrt(cnt[lags])
    persistent = "tau2" in comp_names
    grid = np.linspace(0.05, 0.97, 47)
    yw = cov[lags] * sw
    cols = [grid[:, None] ** lags.astype(float)[None, :] * sw]  # (G, L) per r
    if persistent:
        cols.append(np.broadcast_to(sw, cols[0].shape))
    design = np.stack(cols, axis=2)  # (G, L, m): all grid points in one batched solve
    gram = design.transpose(0, 2, 1) @ design
    rhs = design.transpose(0, 2, 1) @ yw
    gram = gram + 1e-12 * np.trace(gram, axis1=1, axis2=2)[:, None, None] * np.eye(len(cols))
    coef = np.clip(np.linalg.solve(gram, rhs[:, :, None])[:, :, 0], 0.005, 4.0)
    sse = (((design @ coef[:, :, None])[:, :, 0] - yw) ** 2).sum(axis=1)
    g = int(np.argmin(sse))
    gam2, tau2, r = float(coef[g, 0]), float(coef[g, 1]) if persistent else 0.0, float(grid[g])
    sds = [math.sqrt(tau2)] if persistent else []
    out = sds + [math.sqrt(gam2), math.atanh(r)]
    if nb:
        inv_k = min(max(cov[0] - tau2 - gam2, 1e-3), 10.0)
        out.append(-math.log(inv_k))
    return np.array(out)


def _latent_correlations(
    link: str | None, core: CoreFit, comp_names: list[str], p: int
) -> dict[str, tuple[float, float, float]]:
    """Latent-scale ICC (logit: residual pi^2/3; probit: 1) and CAC, delta-method logit CIs."""
    names = comp_names
    if "eta2" in names:
        return {}
    sig = dict(zip(names, core.sigma[: len(names)], strict=True))
    tau, gam = float(sig.get("tau2", 0.0)), float(sig.get("gamma2", 0.0))
    idx = {nm: p + k for k, nm in enumerate(names)}
    free = core.free
    cov = np.full_like(core.hessian, np.nan)
    try:
        cov[np.ix_(free, free)] = np.linalg.inv(core.hessian[np.ix_(free, free)])
    except np.linalg.LinAlgError:
        pass
    z = stats.norm.ppf(0.975)

    def wald(value: float, grad: dict[str, float]) -> tuple[float, float, float]:
        if not (0 < value < 1):
            return (value, float("nan"), float("nan"))
        g = np.zeros(core.hessian.shape[0])
        for nm, d in grad.items():
            if nm in idx:
                g[idx[nm]] = d
        if np.any(~free & (g != 0)):
            return (value, float("nan"), float("nan"))
        var = float(g @ np.nan_to_num(cov) @ g)
        if not var > 0:
            return (value, float("nan"), float("nan"))
        se = np.sqrt(var) / (value * (1 - value))
        eta = math.log(value / (1 - value))
        # expit, not 1 / (1 + math.exp(.)): a huge SE (weakly identified fit) must give limits
        # 0 and 1, not an OverflowError
        return (value, float(special.expit(eta - z * se)), float(special.expit(eta + z * se)))

    out: dict[str, tuple[float, float, float]] = {}
    if link in _LATENT_RESIDUAL:
        r = _LATENT_RESIDUAL[link]
        b = tau**2 + gam**2
        tot = b + r
        icc = b / tot
        grad = {"tau2": 2 * tau * r / tot**2}
        if "gamma2" in names:
            grad["gamma2"] = 2 * gam * r / tot**2
        out["icc"] = wald(icc, grad)
    if "gamma2" in names and "tau2" in names:
        b = tau**2 + gam**2
        if b > 0:
            cac = tau**2 / b
            out["cac"] = wald(
                cac, {"tau2": 2 * tau * gam**2 / b**2, "gamma2": -2 * gam * tau**2 / b**2}
            )
    return out


def _decay_boundary(core: CoreFit, comp_names: list[str], random: str, messages: list[str]) -> bool:
    """Warn about a decay estimate on (or beyond) a boundary; return whether the fit is singular.

    The decay model's natural range is ``0 <= r <= 1`` (methods.md 3.2); like glmmTMB's
    ``ar1`` the fit allows ``-1 < r < 1``, so ``r <= 0`` lies at or outside the ``r = 0``
    boundary.
    """
    k_g = comp_names.index("gamma2")
    r = float(np.tanh(core.sigma[len(comp_names)]))
    if core.sigma[k_g] == 0.0:
        text = (
            "The decaying cluster-period variance gamma2 is estimated as 0, so its correlation "
            "r is not identified (reported as nan)"
            + (
                "; the fit is the random='cluster' model."
                if random == "nested+decay"
                else "; the fit has no random effects (a GLM)."
            )
        )
    elif r <= -(math.tanh(PHI_MAX) - 1e-12):
        text = (
            f"The decay r is at its bound ({r:.7f}): the cluster-period effects alternate in sign "
            "from one period to the next, which is not a decaying correlation; the decaying "
            "variance gamma2 is not interpretable. Use random='nested' or random='cluster'."
        )
    elif r >= math.tanh(PHI_MAX) - 1e-12:
        text = (
            f"The decay r is at its bound ({r:.7f}): the cluster-period effect does not decay, "
            + (
                "so it is a second persistent cluster effect, not separable from tau2; use "
                "random='nested' or random='cluster'."
                if random == "nested+decay"
                else "i.e. it is a persistent cluster effect; random='cluster' is the same model."
            )
        )
    elif r <= 1e-4:
        text = (
            f"The decay r is estimated as {r:.3g} <= 0 (at or beyond the boundary r = 0 of the "
            "decay model; negative r is allowed as in glmmTMB): the cluster-period effects of "
            "neighbouring periods are not positively correlated, so random='nested' (r = 0) "
            "describes them as well."
        )
    else:
        return False
    warn(text, ConvergenceWarning)
    messages.append(text)
    return True


def _variance_intervals(
    core: CoreFit, comp_names: list[str], p: int, decay: bool
) -> dict[str, tuple[float, float, float]]:
    """95% Wald intervals of the variance components (see ``GLMMResult.variance_intervals``).

    The covariance of the outer parameters is the inverse Hessian over the free ones; the
    SD ``s`` maps to ``log s^2`` (SE ``2 se(s) / s``), ``phi = atanh(r)`` and ``alpha = log k``
    are already on the working scale.
    """
    z = float(stats.norm.ppf(0.975))
    free = core.free
    cov = np.full_like(core.hessian, np.nan)
    try:
        cov[np.ix_(free, free)] = np.linalg.inv(core.hessian[np.ix_(free, free)])
    except np.linalg.LinAlgError:
        pass
    var = np.diag(cov)
    out: dict[str, tuple[float, float, float]] = {}
    nan = math.nan
    for k, nm in enumerate(comp_names):
        sd = float(core.sigma[k])
        v = float(var[p + k])
        if sd > 0 and v > 0:
            se = 2.0 * math.sqrt(v) / sd
            out[nm] = (sd * sd, sd * sd * _exp(-z * se), sd * sd * _exp(z * se))
        else:
            out[nm] = (sd * sd, nan, nan)
    n_var = len(comp_names) + (1 if decay else 0)
    if decay:
        phi = float(core.sigma[len(comp_names)])
        v = float(var[p + len(comp_names)])
        se = math.sqrt(v) if v > 0 else nan
        out["decay"] = (math.tanh(phi), math.tanh(phi - z * se), math.tanh(phi + z * se))
        if core.sigma[comp_names.index("gamma2")] == 0.0:  # no decaying variance: r unidentified
            out["decay"] = (nan, nan, nan)
    if core.hessian.shape[0] > p + n_var:  # NB log-size
        v = float(var[p + n_var])
        se = math.sqrt(v) if v > 0 else nan
        size = _exp(core.alpha)
        out["nb_size"] = (size, size * _exp(-z * se), size * _exp(z * se))
    return out


def _exp(x: float) -> float:
    """``exp`` that saturates at ``inf`` (0) instead of raising ``OverflowError``."""
    with np.errstate(over="ignore"):
        return float(np.exp(x))
