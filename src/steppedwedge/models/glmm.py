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

import dataclasses
import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from .._core.blas import single_threaded_blas
from .._core.families import FAMILY_LINKS, make_family
from .._core.laplace import CoreFit, UnitData
from .._validation import check_option, check_positive_int
from .._warnings import warn
from ..data import TrialData, repeated_cells
from ..exceptions import ConvergenceWarning, OptionError, SteppedWedgeWarning
from ..inference.marginal import marginal_ratio
from ..inference.sandwich import (
    check_vcov,
    corrected_scores,
    laplace_cluster_pieces,
    robust_df,
    sandwich_vcov,
)
from ..results import FitResult, Summary, _fmt
from ._glmm_start import _glm_start as _glm_start  # re-exported: the GLMM score test uses them
from ._glmm_start import _ls_start as _ls_start
from ._glmm_start import _robust_core as _robust_core
from ._glmm_start import _sigma_start as _sigma_start
from ._glmm_stats import (
    _cluster_level_rank,
    _decay_boundary,
    _df_label,
    _df_rule,
    _DfRule,
    _free_inverse,
    _latent_correlations,
    _variance_intervals,
)
from ._glmm_units import (
    _DECAY,
    _cell_design,
    _check_identifiable,
    _check_separation,
    _random_design,
    _Units,
    _units,
)
from ._glmm_units import _check_decay_periods as _check_decay_periods
from .mixed import EFFECT_TYPES, TIME_EFFECTS, _covariate_columns, _decay_times, _estimand_contrast
from .spec import AnalysisSpec

__all__ = ["GLMM_DOF", "GLMM_RANDOM", "GLMMResult", "fit_glmm", "fit_glmm_spec"]

#: Random-effect structures available for GLMMs.
GLMM_RANDOM = (
    "nested",
    "cluster",
    "random-slope",
    "nested+random-slope",
    "decay",
    "nested+decay",
)
_GLMM_FAMILIES = tuple(FAMILY_LINKS)
_METHODS = ("laplace", "agq")
#: Denominator df rules for GLMM Wald tests (a positive number is also accepted).
GLMM_DOF = ("clusters", "between-within", "residual", "normal")


# --------------------------------------------------------------------------------------
# result
# --------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class GLMMResult(FitResult):
    """Result of a GLMM fit (:func:`fit_glmm`, ``sw.fit(family=...)``).

    Everything of :class:`~steppedwedge.results.FitResult`, on the link scale, plus the
    family and link; :meth:`tidy` and :meth:`summary` report ratios (``exp``: odds ratios
    for logit, risk or rate ratios for log links, hazard ratios for cloglog) with
    ``exponentiate=True``, and :attr:`ratio` is ``(ratio, low, high)`` with its 95%
    interval.  :meth:`with_vcov` recomputes the variance from the units and the optimum
    kept on the result (the per-cluster Laplace scores and Hessians), without refitting.

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

    @property
    def method_label(self) -> str:
        """How the estimate was obtained, e.g. ``"GLMM (laplace)"`` (row label of ``compare``)."""
        return f"GLMM ({self.method})"

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
    _state: Any = field(default=None, repr=False)

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
        if exponentiate is None:
            exponentiate = self.link in ("log", "logit")
        return Summary(
            title="Stepped-wedge generalised linear mixed model",
            header=tuple(self._summary_header(exponentiate)),
            tables=tuple(self._glmm_tables(exponentiate)),
            notes=self.messages,
        )

    def _summary_header(self, exponentiate: bool) -> list[tuple[str, str]]:
        lo, hi = self.conf_int()
        est_line = (
            f"{self.estimand} = {_fmt(self.estimate)} (SE {_fmt(self.std_error)}, "
            + ("z test" if not np.isfinite(self.df) else f"t test, df {_fmt(self.df)},")
            + f" p {_fmt(self.pvalue)}; 95% CI {_fmt(lo)} to {_fmt(hi)})"
        )
        estimation = (
            "Laplace approximation"
            if self.n_quadrature == 1
            else f"adaptive Gauss-Hermite quadrature ({self.n_quadrature} points)"
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
            ("Estimation", estimation + f"; log-likelihood {_fmt(self.loglik)}"),
            (
                "Observations",
                f"{self.n_obs} in {self.n_clusters} clusters x {self.n_periods} periods",
            ),
            ("Estimand", est_line),
        ]
        if exponentiate:
            ratio_name = {
                "logit": "odds ratio",
                "log": "risk ratio" if self.family == "binomial" else "rate ratio",
                "cloglog": "hazard ratio",
            }.get(self.link, "ratio")
            header.append(
                (
                    ratio_name.capitalize(),
                    f"{_fmt(np.exp(self.estimate))} (95% CI "
                    f"{_fmt(np.exp(lo))} to {_fmt(np.exp(hi))})",
                )
            )
        header += [("Converged", _fmt(self.converged)), ("Singular", _fmt(self.singular))]
        return header

    def _glmm_tables(self, exponentiate: bool) -> list[tuple[str, pd.DataFrame]]:
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
        return tables

    def _with_vcov(self, vcov: str, dof: str | float | None) -> GLMMResult:
        """Recompute the inference with another ``vcov`` from the stored fit (no refit).

        The per-cluster Laplace scores and fixed-effect Hessians are computed from the units
        and the optimum kept on the result, as a fit with this ``vcov`` computes them, so
        ``res.with_vcov("cr2")`` equals ``fit_glmm(..., vcov="cr2")`` (to rounding).

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
        >>> robust = res.with_vcov("cr2")
        >>> robust.vcov, robust.df, robust.estimate == res.estimate
        ('cr2', 7.0, True)
        """
        state = self._state
        if state is None:  # pragma: no cover - always set by fit_glmm_spec
            raise OptionError("This GLMM result keeps no fitted pieces; refit with `vcov=`.")
        vcov = check_vcov(vcov)
        _check_dof(dof)
        if vcov != "model" and state.nq > 1:
            raise OptionError(_AGQ_ROBUST.format(vcov=vcov))
        with single_threaded_blas():  # tiny blocks: see _core.blas
            return dataclasses.replace(self, **_inference_fields(state, vcov, dof))

    def __repr__(self) -> str:
        return (
            f"GLMMResult(family={self.family!r}, link={self.link!r}, estimand={self.estimand!r}, "
            f"estimate={self.estimate:.4g}, std_error={self.std_error:.4g}, p={self.pvalue:.3g})"
        )


def _glmm_iv(spec: AnalysisSpec, n_quadrature: int | None) -> int:
    """Check the GLMM's own options (the spec's shared ones are checked); return the points."""
    family, link, random, method = spec.family, spec.link, spec.random, spec.method
    allowed = FAMILY_LINKS[family]
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
    check_option("time", spec.time, TIME_EFFECTS)
    check_option("effect", spec.effect, EFFECT_TYPES)
    check_option("method", method, _METHODS)
    _check_dof(spec.dof)
    if spec.effect == "pte" and spec.exposure_time is None:
        raise OptionError(
            "`effect='pte'` needs `exposure_time=` (the exposure time e of the point effect)."
        )
    if method != "agq":
        if n_quadrature not in (None, 1):
            raise OptionError("`n_quadrature` is used only with method='agq'.")
        return 1
    if random != "cluster":
        raise OptionError(
            "`method='agq'` (adaptive Gauss-Hermite quadrature) needs a single scalar random "
            f"effect per cluster: use random='cluster'; got random={random!r}."
        )
    nq = 7 if n_quadrature is None else check_positive_int("n_quadrature", n_quadrature)
    if nq > 50:
        raise OptionError(f"`n_quadrature` must be at most 50; got {nq}.")
    return nq


def _check_dof(dof: Any) -> None:
    if isinstance(dof, bool) or not (
        dof is None
        or dof in GLMM_DOF
        or (isinstance(dof, (int, float, np.integer, np.floating)) and dof > 0)
    ):
        raise OptionError(
            f"`dof` must be one of {list(GLMM_DOF)} or a positive number of degrees of freedom "
            f"for GLMMs; got {dof!r}."
        )


_AGQ_ROBUST = (
    "vcov={vcov!r} needs the Laplace fit (method='laplace'); per-cluster scores of the "
    "adaptive quadrature likelihood are not available."
)


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
    trials, exposure, offset : str, optional
        Binomial aggregates: the column of trials (``outcome`` holds the events); counts: a
        positive exposure (e.g. population; logged internally) or an offset on the log scale.
    individual : str, optional
        Not available for GLMMs (raises ``OptionError``).
    covariates : str, optional
        Right-hand-side formula of covariates (patsy), e.g. ``"deprivation + C(region)"``.
    random : {"nested", "cluster", "random-slope", "nested+random-slope", "decay", \
"nested+decay"}
        ``"nested"`` (default): cluster intercept ``tau2`` plus independent cluster-period
        effects ``gamma2`` (for one count per cell: Poisson-lognormal overdispersion);
        ``"cluster"``: the intercept only (Hussey & Hughes); ``"random-slope"``,
        ``"nested+random-slope"``: plus a random treatment effect ``eta2``; ``"decay"``:
        cluster-period effects correlated ``r^|j-k|`` (glmmTMB ``ar1``), and
        ``"nested+decay"``: those plus a persistent ``tau2``.  Decay needs ordered periods;
        ``variance_components`` then holds ``decay`` (= r); a boundary estimate warns
        (``ConvergenceWarning``) and sets ``singular``.  What each is for, the boundaries
        and the weakly identified negative binomial: ``docs/explanation/glmm_options.rst``.
    time : {"categorical", "linear", "spline", "none"}
        Secular trend as in :func:`steppedwedge.fit`; ``knots`` for splines.
    effect : {"immediate", "eti", "tate", "pte"}
        Immediate effect or exposure-time indicators with TATE over ``exposure_window`` or
        the PTE at ``exposure_time``.
    method : {"laplace", "agq"}
        Laplace approximation (default) or adaptive Gauss-Hermite quadrature with
        ``n_quadrature`` points (default 7, as lme4's ``nAGQ``; ``random="cluster"`` only).
    dof : {"clusters", "between-within", "residual", "normal"} or float, optional
        Reference distribution of the Wald statistics.  ``"clusters"`` (default): t with
        ``I - r_b - 1`` df (``I - 2`` without cluster-level covariates) for the treatment
        and the other cell-level terms, the within df for individual-level covariates;
        ``"between-within"`` (SAS ``DDFM=BW``), ``"residual"`` (``N - p``), ``"normal"``
        (Wald z, as lme4 and glmmTMB), or a positive number for every term.  The rules and
        their Monte-Carlo size: ``docs/explanation/glmm_options.rst``.
    vcov : {"model", "cr0", "cr2", "cr3", "kc", "md", "fg", "mbn"}
        ``"model"`` (default): the inverse Hessian of the Laplace log-likelihood; otherwise
        a cluster-robust sandwich over all outer parameters from the exact per-cluster
        Laplace scores (:mod:`steppedwedge.inference.sandwich`; ``cr2`` = ``kc``, ``cr3`` =
        ``md`` here), with t(``I - r_b - 1``) df when ``dof=None``, the model-based SEs
        beside the robust ones and, for log and logit links, the marginal ratio.  Laplace
        only.  ``GLMMResult.with_vcov`` recomputes it without refitting.
    missing : {"raise", "drop"}
        Missing values: raise (default) or drop with a warning.
    design : Design, optional
        Check the rows against a design.
    decay_scale : {"period", "time"}, default "period"
        For the decay structures: the AR(1) correlation counts periods or years between
        period mid-points of ``design`` (``r^|t_j - t_k|``, Grantham et al. 2019;
        ``0 < r < 1``).  ``"time"`` needs ``design=``.

    Returns
    -------
    GLMMResult
        Estimates on the link scale; ``tidy(exponentiate=True)`` for ratios.

    Raises
    ------
    DataError
        Invalid data (bad counts, exposures, trials, 0/1 outcomes or offsets), complete
        separation, a non-identifiable effect (named), unordered periods with decay, too
        few clusters for a robust ``vcov``, or a fit that fails numerically.
    DesignError
        A decay structure with too few periods (2 for ``"decay"``, 3 for ``"nested+decay"``).
    OptionError
        Invalid options, e.g. a family/link that makes no sense or ``method="agq"`` with
        decay (quadrature needs one random effect per cluster).

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
    ...         x, pop = int(j > i % 4), 20_000
    ...         rows.append((i, j, x, pop, rng.poisson(pop * 1e-3 * np.exp(a - 0.3 * x))))
    >>> df = pd.DataFrame(rows, columns=["la", "quarter", "arm", "pop", "referrals"])
    >>> res = fit_glmm(df, outcome="referrals", cluster="la", period="quarter", treatment="arm",
    ...                family="poisson", exposure="pop", random="cluster")
    >>> round(res.estimate, 3), round(res.ratio[0], 3)
    (-0.318, 0.728)

    A persistent council effect plus council-quarter effects that decay over time
    (glmmTMB's ``(1 | la) + ar1(quarter_f + 0 | la)``):

    >>> dec = fit_glmm(df, outcome="referrals", cluster="la", period="quarter",
    ...                treatment="arm", family="poisson", exposure="pop",
    ...                random="nested+decay")
    >>> sorted(dec.variance_components)
    ['decay', 'gamma2', 'tau2']
    """
    check_option("family", family, _GLMM_FAMILIES)  # the spec also knows "gaussian"
    spec = AnalysisSpec.from_options(
        outcome=outcome, cluster=cluster, period=period, treatment=treatment,
        individual=individual, family=family, link=link, exposure=exposure, offset=offset,
        trials=trials, covariates=covariates, random=random, time=time, knots=knots,
        effect=effect, exposure_window=exposure_window, exposure_time=exposure_time,
        method=method, dof=dof, vcov=vcov, missing=missing, decay_scale=decay_scale,
        design=design,
    )  # fmt: skip
    return fit_glmm_spec(data, spec, n_quadrature=n_quadrature)


# --------------------------------------------------------------------------------------
# the fitter: spec -> options -> units -> core fit -> inference -> result
# --------------------------------------------------------------------------------------


def fit_glmm_spec(
    data: pd.DataFrame, spec: AnalysisSpec, *, n_quadrature: int | None = None
) -> GLMMResult:
    """Fit the GLMM an :class:`~steppedwedge.models.spec.AnalysisSpec` describes.

    The entry :func:`steppedwedge.fit` dispatches to for ``method="laplace"`` / ``"agq"``;
    :func:`fit_glmm` documents the model and the options.  The spec's shared options are
    trusted (validated by :meth:`AnalysisSpec.from_options`); the GLMM's own ones (``random``,
    ``time``, ``effect``, ``dof``, ``vcov``, the link of the family) are checked here.

    Parameters
    ----------
    data : pandas.DataFrame
        The rows (never modified).
    spec : AnalysisSpec
        Roles and options of the analysis (``family`` binomial, poisson or
        negative_binomial).
    n_quadrature : int, optional
        Adaptive Gauss-Hermite points with ``method="agq"`` (default 7, at most 50).

    Returns
    -------
    GLMMResult

    References
    ----------
    Breslow NE, Clayton DG (1993). Approximate inference in generalized linear mixed
    models. *J Am Stat Assoc* 88:9-25.

    Examples
    --------
    >>> import numpy as np, pandas as pd
    >>> from steppedwedge.models.glmm import fit_glmm_spec
    >>> from steppedwedge.models.spec import AnalysisSpec
    >>> rng = np.random.default_rng(4)
    >>> rows = [(i, j, int(j > i % 3), 40, rng.binomial(40, 0.3 if j <= i % 3 else 0.2))
    ...         for i in range(9) for j in range(4)]
    >>> df = pd.DataFrame(rows, columns=["ward", "month", "arm", "n", "falls"])
    >>> spec = AnalysisSpec.from_options(outcome="falls", trials="n", cluster="ward",
    ...                                  period="month", treatment="arm", family="binomial",
    ...                                  random="cluster")
    >>> round(fit_glmm_spec(df, spec).estimate, 3)
    -0.477
    """
    vcov, nq = _check_options(spec, n_quadrature)
    if not isinstance(data, pd.DataFrame):
        raise TypeError(f"`data` must be a pandas DataFrame; got {type(data).__name__}.")
    td = _trial_data(data, spec)
    cells = td.cells()
    n_i, n_t = cells.shape
    if spec.random in _DECAY:
        _check_decay_periods(td, spec.random, n_t)
    ar1_times = (
        _decay_times(spec.decay_scale, spec.design, n_t) if spec.decay_scale == "time" else None
    )
    design = _cell_design(cells, cells.periods, spec.time, spec.knots, spec.effect)
    units = _units(td, design, spec.family, spec.covariates)
    _check_identifiable(units, design, spec.time)
    if spec.family == "binomial":
        _check_separation(units.y, units.n, units.t, spec.treatment, spec.effect)
    ud, comp_names = _random_design(units, spec.random, n_i, n_t, ar1_times)
    fam = make_family(spec.family, spec.link)
    with single_threaded_blas():  # tiny blocks from here on: see _core.blas
        return _fit_units(td, cells, design, units, ud, fam, comp_names, spec, vcov, nq)


def _fit_units(
    td: TrialData,
    cells: Any,
    design: Any,
    units: _Units,
    ud: UnitData,
    fam: Any,
    comp_names: list[str],
    spec: AnalysisSpec,
    vcov: str,
    nq: int,
) -> GLMMResult:
    """Fit the checked units and build the result (the engine, notes, inference)."""
    n_i, n_t = cells.shape
    core = _start_and_fit(ud, fam, units, comp_names, n_i, n_t, nq)
    fit_messages, singular = _fit_messages(core, spec, comp_names, units, nq)
    contrast, estimand = _estimand_contrast(
        spec.effect,
        units.x.shape[1],
        design.eff_idx,
        design.exp_levels,
        spec.exposure_time,
        spec.exposure_window,
    )
    state = _GLMMState(
        ud=ud,
        core=core,
        family=spec.family,
        link=spec.link,
        effect=spec.effect,
        names=units.names,
        g_x=units.x,
        g_c=units.c,
        g_p=units.p,
        n_periods=n_t,
        n_rows=units.n_frame,
        labels=list(cells.clusters),
        contrast=contrast,
        estimand=estimand,
        exp_levels=design.exp_levels,
        nq=nq,
        fit_messages=tuple(fit_messages),
    )
    return GLMMResult(
        **_model_fields(state, comp_names, design, td, units, spec, singular),
        **_inference_fields(state, vcov, spec.dof),
        _state=state,
    )


def _check_options(spec: AnalysisSpec, n_quadrature: int | None) -> tuple[str, int]:
    """Validate the GLMM's own options; return the canonical ``vcov`` and quadrature points."""
    vcov = check_vcov("model" if spec.vcov is None else spec.vcov)
    nq = _glmm_iv(spec, n_quadrature)
    if vcov != "model" and nq > 1:
        raise OptionError(_AGQ_ROBUST.format(vcov=vcov))
    if spec.individual is not None:
        raise OptionError(
            "`individual=` (closed-cohort random effects) is not available for GLMMs yet; omit it "
            "to analyse the rows as cross-sectional."
        )
    return vcov, nq


def _trial_data(data: pd.DataFrame, spec: AnalysisSpec) -> TrialData:
    """Validate the rows: covariate columns found, several count rows per cell allowed."""
    if spec.time == "none":
        warn(
            "`time='none'` fits no period effects: this assumes there is no secular trend; the "
            "treatment effect is confounded with time if there is one.",
            SteppedWedgeWarning,
        )
    roles = [c for c in spec.roles().values() if c is not None]
    cov_cols = _covariate_columns(spec.covariates, data, roles) if spec.covariates else []
    kind = None
    if spec.family != "binomial" and (
        spec.design is None
        or (
            spec.cluster in data.columns
            and spec.period in data.columns
            and repeated_cells(data, spec.cluster, spec.period)
        )
    ):
        # count rows are summed per cell (several per cell: e.g. per person or per area),
        # one row per cell being the special case; with a design, rows that repeat no cell
        # are checked as aggregates (one data period label per design period)
        kind = "individual"
    return spec.trial_data(data, covariates=cov_cols or None, kind=kind)


def _start_and_fit(
    ud: UnitData, fam: Any, units: _Units, comp_names: list[str], n_i: int, n_t: int, nq: int
) -> CoreFit:
    """Start (GLM, moments of its residuals) and run the guarded optimiser."""
    ls, eta = _ls_start(fam, units.y, units.n, units.off, units.x, with_eta=True)
    beta0, alpha0 = _glm_start(fam, units.y, units.n, units.off, units.x, ls_start=(ls, eta))
    decay = ud.ar1 is not None
    sigma0 = _sigma_start(
        fam, beta0, alpha0, units.y, units.n, units.off, units.x, units.c, units.p,
        comp_names, n_i, n_t, decay,
    )  # fmt: skip
    if decay and fam.has_dispersion:
        sigma0, alpha0 = sigma0[:-1], float(sigma0[-1])
    return _robust_core(ud, fam, [beta0, ls], sigma0, alpha0, nq)


def _fit_messages(
    core: CoreFit, spec: AnalysisSpec, comp_names: list[str], units: _Units, nq: int
) -> tuple[list[str], bool]:
    """Note and warn about the fit (convergence, boundaries); return whether it is singular."""
    messages: list[str] = []
    if spec.decay_scale == "time":
        messages.append(
            "Continuous-time decay (decay_scale='time'): cluster-period effects whose period "
            "mid-points are t years apart correlate decay**t; the decay is per year."
        )
    if not core.converged:
        warn(
            f"The {spec.method} optimiser did not converge ({core.message}); estimates may be "
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
    if spec.random in _DECAY:
        singular = _decay_boundary(core, comp_names, spec.random, messages) or singular
    if spec.family == "negative_binomial" and not core.free[-1]:
        singular = True
        messages.append(
            "The negative-binomial size k is at its upper bound (1e6): no overdispersion beyond "
            "Poisson (and the random effects); a Poisson model gives the same estimates."
        )
    if (
        spec.family == "negative_binomial"
        and spec.random in ("nested", "nested+random-slope")
        and units.one_row_per_cell
    ):
        _nb_weak_message(singular, messages)
    return messages, singular


def _nb_weak_message(singular: bool, messages: list[str]) -> None:
    """NB size and an observation-level cluster-period effect: weakly identified."""
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
    if singular:  # warned when the fit actually put all overdispersion in one of them
        warn(text + "; this fit put all overdispersion in one of them (singular). " + advice)
    messages.append(text + ". " + advice)


def _model_fields(
    state: _GLMMState,
    comp_names: list[str],
    design: Any,
    td: TrialData,
    units: _Units,
    spec: AnalysisSpec,
    singular: bool,
) -> dict[str, Any]:
    """Return the result fields that do not depend on ``vcov`` (model, variance components)."""
    core, p, n_t = state.core, len(state.names), state.n_periods
    decay = spec.random in _DECAY
    vc = {nm: float(core.sigma[k] ** 2) for k, nm in enumerate(comp_names)}
    intervals = _variance_intervals(core, comp_names, p, decay, state.free_inverse)
    if decay:  # r = tanh(phi); nan when gamma2 = 0 (r not identified)
        vc["decay"] = intervals["decay"][0]
    dispersion = float(np.exp(core.alpha)) if spec.family == "negative_binomial" else None
    if dispersion is not None:
        vc["nb_size"] = dispersion
    latent_link = spec.link if spec.family == "binomial" else None
    correlations = _latent_correlations(latent_link, core, comp_names, p, state.free_inverse)
    if decay:
        correlations["decay"] = intervals["decay"]
    if spec.family == "binomial":
        n_obs = int(round(float(np.sum(units.n_rows))))
    else:
        n_obs = units.n_frame
    time = spec.time if design.knots_used is None else f"spline (knots {design.knots_used})"
    return dict(
        estimand=state.estimand,
        estimate=float(state.contrast @ core.beta),
        params=pd.Series(core.beta, index=state.names_index, name="estimate"),
        variance_components=vc,
        loglik=core.loglik,
        converged=core.converged,
        singular=singular,
        method=spec.method if state.nq == 1 else f"agq({state.nq})",
        random=spec.random,
        time=time,
        effect=spec.effect,
        n_obs=n_obs,
        n_clusters=len(state.labels),
        n_periods=n_t,
        correlations=correlations,
        contrast=state.contrast,
        outcome=spec.outcome,
        covariates=spec.covariates,
        family=spec.family,
        link=spec.link,
        dispersion=dispersion,
        n_quadrature=state.nq,
        n_units=len(units.y),
        variance_intervals=intervals,
        _rate_design=_rate_design(state, design, list(td.cells().periods)),  # labels boxed once
        decay_scale=spec.decay_scale,
    )


def _rate_design(state: _GLMMState, design: Any, periods: list[Any]) -> Any:
    """Rows of ``X`` for the model rates by period, control and treated (count families)."""
    if state.family == "binomial":
        return None
    n_t, p, contrast, eff_idx = state.n_periods, len(state.names), state.contrast, design.eff_idx
    base = np.concatenate([np.ones((n_t, 1)), design.tcols], axis=1)
    x0 = np.zeros((n_t, p))
    x0[:, : base.shape[1]] = base
    x1 = x0.copy()
    x1[:, eff_idx] = contrast[eff_idx]
    if state.effect == "immediate":
        x1[:, eff_idx[0]] = 1.0
    return (x0, x1, periods)


# --------------------------------------------------------------------------------------
# inference (also what GLMMResult.with_vcov recomputes)
# --------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class _GLMMState:
    """The fitted pieces the inference is computed from (picklable; kept on the result).

    :meth:`GLMMResult.with_vcov` recomputes the variance from these without refitting: the
    per-cluster Laplace scores and fixed-effect Hessians come from ``ud`` and ``core``
    (:func:`~steppedwedge.inference.sandwich.laplace_cluster_pieces`), exactly as in a fit
    with that ``vcov``.
    """

    ud: UnitData
    core: CoreFit
    family: str
    link: str
    effect: str
    names: list[str]
    g_x: np.ndarray
    g_c: np.ndarray
    g_p: np.ndarray
    n_periods: int
    n_rows: int
    labels: list[Any]
    contrast: np.ndarray
    estimand: str
    exp_levels: Any
    nq: int
    fit_messages: tuple[str, ...]

    @functools.cached_property
    def names_index(self) -> pd.Index:
        """The fixed-effect names as the index of ``params`` and the covariance frames."""
        index: pd.Index = pd.Index(self.names)
        return index

    @functools.cached_property
    def free_inverse(self) -> np.ndarray | None:
        """Inverse Hessian over the free outer parameters (None: singular), computed once."""
        return _free_inverse(self.core)


def _model_cov(
    core: CoreFit, messages: list[str], inverse: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray]:
    """Hessian over the free parameters and the inverse-Hessian covariance (nan if not PD).

    ``inverse`` is :func:`._glmm_stats._free_inverse` of ``core`` (None: singular).
    """
    free = core.free
    hf = core.hessian[np.ix_(free, free)]
    cov_full = np.full_like(core.hessian, np.nan)
    if inverse is None:
        messages.append("The Hessian is singular: standard errors are not available.")
    elif np.all(np.diag(inverse) > 0):
        cov_full[np.ix_(free, free)] = inverse
    else:  # a saddle point or worse (non-converged fit): no meaningful SEs
        messages.append("The Hessian is not positive definite: standard errors are not available.")
    return hf, cov_full


def _inference_fields(state: _GLMMState, vcov: str, dof: str | float | None) -> dict[str, Any]:
    """Return the result fields that depend on ``vcov`` and ``dof`` (SEs, df, terms, notes)."""
    messages = list(state.fit_messages)
    hf, cov_full = _model_cov(state.core, messages, state.free_inverse)
    p = len(state.names)
    vb = vb_model = cov_full[:p, :p]
    dof_rule = "clusters" if dof is None else dof
    n_i = len(state.labels)
    df_of = _df_rule(dof_rule, state.g_x, state.g_c, state.g_p, n_i, state.n_periods, state.n_rows)
    marginal, robust_label = None, ""
    if vcov != "model":
        fam = make_family(state.family, state.link)
        vb, df_of, robust_label, marginal = _laplace_robust(
            vcov, dof, state.ud, fam, state.core, hf, state.g_x, state.g_c, n_i, df_of,
            state.labels, state.n_rows, state.names,
        )  # fmt: skip
        marginal = _robust_messages(state, vcov, robust_label, marginal, messages)
    terms, se, df_est, se_model = _terms(state, vb, vb_model, df_of, vcov, marginal)
    curve = None
    if state.effect != "immediate":
        curve = terms[terms["term"].str.startswith("exposure[")].copy()
        curve.insert(0, "exposure_time", state.exp_levels)
        curve = curve.drop(columns="term").reset_index(drop=True)
    index = state.names_index
    return dict(
        std_error=se,
        df=df_est,
        vcov_matrix=pd.DataFrame(vb, index=index, columns=index),
        vcov_model=pd.DataFrame(vb_model, index=index, columns=index),
        dof=_df_label(dof_rule, df_est) if vcov == "model" else robust_label,
        vcov=vcov,
        terms=terms,
        effect_curve=curve,
        messages=tuple(messages),
        std_error_model=se_model,
    )


def _robust_messages(
    state: _GLMMState, vcov: str, label: str, marginal: Any, messages: list[str]
) -> Any:
    """Say what the robust SEs are; return the marginal ratio when it is reported."""
    messages.append(
        f"Standard errors: {vcov.upper()} cluster-robust sandwich of the Laplace "
        f"likelihood, {label}; model-based SEs in column std_error_model."
    )
    if marginal is not None and state.effect == "immediate" and state.link in ("log", "logit"):
        messages.append(
            f"marginal[treatment]: population-averaged (marginal) {marginal.kind} by "
            "g-computation over the observed cluster-periods, random effects integrated "
            f"out, with a sandwich SE ({vcov.upper()} scores; Wang, Wang & Li 2024): a "
            "different "
            "estimand from the conditional 'treatment' coefficient."
        )
        return marginal
    return None


def _terms(
    state: _GLMMState,
    vb: np.ndarray,
    vb_model: np.ndarray,
    df_of: _DfRule,
    vcov: str,
    marginal: Any,
) -> tuple[pd.DataFrame, float, float, float | None]:
    """Term table (estimand first), the estimand's SE and df, and its model-based SE."""
    names, contrast, beta = state.names, state.contrast, state.core.beta
    p = len(names)
    est = float(contrast @ beta)
    se = float(np.sqrt(contrast @ vb @ contrast))
    ses = np.sqrt(np.diag(vb))
    df_est = df_of(contrast)
    dfs = df_of.units(p)
    if state.effect == "immediate":  # the treatment row first
        k_t = names.index("treatment")
        order = np.array([k_t] + [k for k in range(p) if k != k_t])
        term = state.names_index.take(order)
        cols = {"estimate": beta[order], "std_error": ses[order], "df": dfs[order]}
    else:  # the estimand's row first
        term = state.names_index.insert(0, state.estimand)
        cols = {
            "estimate": np.concatenate([[est], beta]),
            "std_error": np.concatenate([[se], ses]),
            "df": np.concatenate([[df_est], dfs]),
        }
    se_model_est = None
    if vcov != "model":
        se_model_est = float(np.sqrt(contrast @ vb_model @ contrast))
        model_se = dict(zip(names, np.sqrt(np.diag(vb_model)), strict=True))
        model_se[state.estimand] = se_model_est
        cols["std_error_model"] = np.array([model_se.get(t, np.nan) for t in term], dtype=float)
    terms = pd.DataFrame({"term": term.array, **cols})  # the index's own values
    if vcov != "model" and marginal is not None:
        extra = {"term": "marginal[treatment]", "estimate": marginal.log_ratio}
        extra.update(std_error=marginal.std_error, df=df_of(contrast), std_error_model=np.nan)
        terms = pd.concat([terms, pd.DataFrame([extra])], ignore_index=True)
    return terms, se, df_est, se_model_est


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
    df_of: _DfRule,
    labels: list[Any],
    n_obs: int,
    names: Sequence[str] = (),
) -> tuple[np.ndarray, _DfRule, str, Any]:
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
        return cov[:p, :p], _DfRule(df_robust), label, marginal
    return cov[:p, :p], df_of, f"{_df_label(dof, df_of(np.eye(p)[0]))} with {name}", marginal
