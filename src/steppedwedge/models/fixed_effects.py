"""Cluster fixed-effects GLMs with small-sample cluster-robust inference (CR2 + Satterthwaite).

With very few clusters (the Family Safeguarding and No Wrong Door trials had 5 and 4
councils) a random-intercept GLMM rests on a variance component estimated from 4-5 values.
The evaluators' small-sample alternative was a GLM with council and period fixed effects and
Bell-McCaffrey (CR2) cluster-robust standard errors with Satterthwaite degrees of freedom, as
computed by R ``clubSandwich``.  :func:`fit_fixed_effects` reproduces that analysis for
binomial (logit), Gaussian (identity) and Poisson (log, with an offset) outcomes, optionally
with treatment x period interactions (naming the interaction terms that are not estimable),
and average marginal effects on the response (probability) scale.

The CR2 adjustment follows clubSandwich's ``vcovCR.glm``
(:func:`~steppedwedge.inference.sandwich.glm_cluster_robust`, with its Satterthwaite df
:func:`~steppedwedge.inference.sandwich.glm_satterthwaite_df`); the rows and aliasing are in
:mod:`steppedwedge.models._fe_design` and the IRLS engine in
:mod:`steppedwedge.models._fe_glm`.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from functools import partial
from typing import Any, ClassVar, Literal

import numpy as np
import pandas as pd

from .._validation import check_option
from .._warnings import warn
from ..exceptions import ConvergenceWarning, MissingDataWarning, OptionError, SmallSampleWarning
from ..inference.sandwich import GLMRobust, glm_cluster_robust, glm_satterthwaite_df
from ..results import TIDY_COLUMNS, EstimationResult, Summary, _fmt, t_interval, t_pvalue
from ._fe_design import FEDesign, FERows, fe_design, fe_rows, label
from ._fe_glm import deviance, inv_link, irls, mu_eta, variance
from .spec import AnalysisSpec

__all__ = ["FixedEffectsResult", "fit_fixed_effects", "fit_fixed_effects_spec"]

FEFamily = Literal["binomial", "gaussian", "poisson"]
FEEffect = Literal["immediate", "period-interaction"]
FEVcov = Literal["cr2", "cr1", "cr0", "model"]
FEDof = Literal["satterthwaite", "naive-t", "z", "residual"]

_FAMILIES = ("binomial", "gaussian", "poisson")
_VCOVS = ("cr2", "cr1", "cr0", "model")
_DOFS = ("satterthwaite", "naive-t", "z", "residual")
_LINK = {"binomial": "logit", "poisson": "log", "gaussian": "identity"}
#: Clusters above this size use the quadrature for G^{+1/2} instead of a dense eigh.
_DENSE_LIMIT = 150


# --------------------------------------------------------------------------------------
# inference from the stored pieces (shared by the fit and with_vcov)
# --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _FEPieces:
    """Everything the inference needs after the GLM fit (what ``with_vcov`` recomputes from)."""

    xt: np.ndarray
    omega: np.ndarray
    resid: np.ndarray
    groups: tuple[np.ndarray, ...]
    m: np.ndarray
    dispersion: float
    dense_limit: int
    n_obs: int
    kept_names: tuple[str, ...]
    beta: np.ndarray
    effect: str
    ame: tuple[tuple[str, float, np.ndarray], ...]  # label, AME, gradient in beta

    @property
    def n_clusters(self) -> int:
        """Number of clusters."""
        return len(self.groups)


@dataclass(frozen=True)
class _Inference:
    vcov_matrix: np.ndarray
    robust: GLMRobust | None
    terms: pd.DataFrame
    marginal: pd.DataFrame
    estimand: str
    estimate: float
    std_error: float
    df: float


def _resolve_dof(vcov: str, dof: str | float | None, family: str) -> str:
    """Resolve and check the df rule (default: Satterthwaite if robust, else residual or z)."""
    if dof is None:
        dof = "satterthwaite" if vcov != "model" else ("residual" if family == "gaussian" else "z")
    dof = check_option("dof", dof, _DOFS)
    if dof == "satterthwaite" and vcov == "model":
        raise OptionError(
            "`dof='satterthwaite'` needs a cluster-robust `vcov` ('cr2', 'cr1' or 'cr0'); "
            "use dof='z' or 'residual' with vcov='model'."
        )
    return dof


def _df_for(
    dof: str, rob: GLMRobust | None, n_clusters: int, n_obs: int, p: int, c: np.ndarray
) -> float:
    """Degrees of freedom of the contrast ``c' beta`` under the rule ``dof``."""
    if dof == "satterthwaite":
        assert rob is not None
        return glm_satterthwaite_df(rob, c)
    if dof == "naive-t":
        return float(n_clusters - 1)
    if dof == "residual":
        return float(n_obs - p)
    return float("inf")


def _inference(pc: _FEPieces, vcov: str, dof: str) -> _Inference:
    """Covariance, coefficient table, marginal effects and the estimand under ``vcov``/``dof``."""
    rob = None
    if vcov == "model":
        v = pc.m * pc.dispersion
    else:
        rob = glm_cluster_robust(
            vcov, pc.xt, pc.omega, pc.resid, list(pc.groups), pc.m, pc.dense_limit
        )
        v = (rob.vcov + rob.vcov.T) / 2.0
    se = np.sqrt(np.clip(np.diag(v), 0.0, None))
    p = len(pc.beta)
    df_for = partial(_df_for, dof, rob, pc.n_clusters, pc.n_obs, p)
    eye = np.eye(p)
    dfs = np.array([df_for(eye[k]) for k in range(p)])
    terms = pd.DataFrame(
        {"term": list(pc.kept_names), "estimate": pc.beta, "std_error": se, "df": dfs}
    )
    is_trt = terms["term"].str.startswith("treatment")  # treatment terms first
    terms = pd.concat([terms[is_trt], terms[~is_trt]]).reset_index(drop=True)
    marginal = _marginal_table(pc.ame, v, df_for)
    if pc.effect == "immediate":
        k = pc.kept_names.index("treatment")
        return _Inference(
            v, rob, terms, marginal, "treatment", float(pc.beta[k]), float(se[k]), float(dfs[k])
        )
    r0 = marginal.iloc[0]
    return _Inference(
        v, rob, terms, marginal, "AME(treatment)",
        float(r0["estimate"]), float(r0["std_error"]), float(r0["df"]),
    )  # fmt: skip


def _marginal_table(
    ame: tuple[tuple[str, float, np.ndarray], ...],
    v: np.ndarray,
    df_for: Callable[[np.ndarray], float],
) -> pd.DataFrame:
    """Delta-method SE, df and Wald columns of each average marginal effect."""
    rows = []
    for lab, est, g in ame:
        s = float(np.sqrt(g @ v @ g))
        d = df_for(g)
        stat = est / s if s > 0 else float("nan")
        lo, hi = t_interval(est, s, d, 0.95)
        rows.append((lab, est, s, stat, d, t_pvalue(stat, d), lo, hi))
    out: pd.DataFrame = pd.DataFrame(rows, columns=list(TIDY_COLUMNS))
    return out


@dataclass(frozen=True, eq=False)
class FixedEffectsResult(EstimationResult):
    """Result of :func:`fit_fixed_effects`.

    Attributes
    ----------
    estimand : str
        ``"treatment"`` (link-scale effect, e.g. the log odds ratio) for
        ``effect="immediate"``; ``"AME(treatment)"`` (average marginal effect on the response
        scale over the periods with an estimable effect) for ``effect="period-interaction"``.
    estimate, std_error, df : float
        The estimand with its standard error and df.
    params : pandas.Series
        Estimable coefficients (aliased terms removed).
    vcov_matrix : pandas.DataFrame
        Covariance used for inference (cluster-robust unless ``vcov="model"``).
    vcov_model : pandas.DataFrame
        Model-based covariance (Gaussian scaled by the residual variance).
    terms : pandas.DataFrame
        ``term, estimate, std_error, df`` for every estimable coefficient.
    aliased : pandas.DataFrame
        ``term, reason`` for every term that is not estimable (dropped before fitting).
    marginal : pandas.DataFrame
        Average marginal effects of treatment on the response scale (probability for
        binomial): ``term, estimate, std_error, statistic, df, p_value, conf_low, conf_high``
        (one row overall, plus one per period for the interaction model).  Delta-method
        SEs from :attr:`vcov_matrix`; df by the same rule as the coefficients, for the
        gradient contrast.
    family, effect : str
        Outcome family (``"gaussian"``, ``"binomial"``, ``"poisson"``) and treatment-effect
        model (``"immediate"``, ``"period-interaction"``).
    vcov, dof : str
        Covariance estimator and degrees-of-freedom rule used for inference.
    n_obs, n_clusters, n_periods : int
        Observations, clusters and periods in the fit.
    converged : bool
        IRLS convergence.
    iterations : int
        IRLS iterations used.
    deviance : float
        Deviance of the fitted GLM.
    dispersion : float
        Residual variance for the Gaussian family (``RSS / (n - p)``); 1 otherwise.
    outcome : str
        Name of the outcome column.
    covariates : str or None
        The adjustment covariates as given (None without adjustment).
    messages : tuple of str
        Notes on the fit shown in the summary.
    """

    estimand: str
    estimate: float
    std_error: float
    df: float
    params: pd.Series
    vcov_matrix: pd.DataFrame
    vcov_model: pd.DataFrame
    terms: pd.DataFrame
    aliased: pd.DataFrame
    marginal: pd.DataFrame
    family: str
    effect: str
    vcov: str
    dof: str
    n_obs: int
    n_clusters: int
    n_periods: int
    converged: bool
    iterations: int
    deviance: float
    dispersion: float
    outcome: str = "outcome"
    covariates: str | None = None
    messages: tuple[str, ...] = ()
    _robust: Any = field(default=None, repr=False)
    _pieces: Any = field(default=None, repr=False)

    _vcov_options: ClassVar[tuple[str, ...]] = _VCOVS

    @property
    def link(self) -> str:
        """Canonical link of :attr:`family` (``logit``, ``log`` or ``identity``)."""
        return _LINK[self.family]

    @property
    def method_label(self) -> str:
        """Label of :func:`steppedwedge.compare` and the report (estimator and df rule)."""
        vc = "model" if self.vcov == "model" else self.vcov.upper()
        return f"cluster fixed-effects GLM ({vc}, df: {self.dof})"

    @property
    def ratio(self) -> tuple[float, float, float] | None:
        """``exp`` of the link-scale treatment effect and its 95% CI (odds or rate ratio).

        None for the Gaussian family or the interaction model (whose estimand is an
        average marginal effect on the response scale).
        """
        if self.estimand != "treatment":
            return None
        return super().ratio

    def _term_table(self) -> pd.DataFrame:
        """Every estimable coefficient, the treatment terms first."""
        return self.terms

    def contrast(self, weights: Any) -> tuple[float, float, float]:
        """Estimate, SE and df of ``weights @ params`` (a Series aligned by term, or an array).

        Parameters
        ----------
        weights : pandas.Series, dict or array_like
            Contrast weights: by term name (missing terms get 0), or one per estimable term
            in :attr:`params` order.

        Returns
        -------
        tuple of float
            ``(estimate, std_error, df)``; the df follows :attr:`dof` (Satterthwaite for the
            contrast with ``"satterthwaite"``).

        Raises
        ------
        ValueError
            If an array of weights does not have one value per estimable term.
        """
        c = (
            pd.Series(weights, dtype=float).reindex(self.params.index, fill_value=0.0).to_numpy()
            if isinstance(weights, (pd.Series, dict))
            else np.asarray(weights, dtype=float)
        )
        if c.shape != (len(self.params),):
            raise OptionError(
                f"`weights` must have one value per estimable term ({len(self.params)})."
            )
        est = float(c @ self.params.to_numpy())
        se = float(np.sqrt(c @ self.vcov_matrix.to_numpy() @ c))
        return est, se, self._df_for(c)

    def _df_for(self, c: np.ndarray) -> float:
        return _df_for(self.dof, self._robust, self.n_clusters, self.n_obs, len(self.params), c)

    def _with_vcov(self, vcov: str, dof: str | float | None) -> FixedEffectsResult:
        """Recompute the inference from the stored GLM pieces (no refit).

        The same computation as the fit: equal to a refit with ``vcov=``/``dof=``.
        """
        from .._core.blas import single_threaded_blas

        rule = _resolve_dof(vcov, dof, self.family)
        with single_threaded_blas():
            inf = _inference(self._pieces, vcov, rule)
        idx = self.params.index
        return replace(
            self, vcov=vcov, dof=rule, estimate=inf.estimate, std_error=inf.std_error,
            df=inf.df, vcov_matrix=pd.DataFrame(inf.vcov_matrix, index=idx, columns=idx),
            terms=inf.terms, marginal=inf.marginal, _robust=inf.robust,
        )  # fmt: skip

    def summary(self) -> Summary:
        """Text/HTML summary: model, estimand, coefficients, marginal effects, aliased terms.

        Returns
        -------
        Summary
            Renders with ``as_text()``, ``as_html()``, ``as_markdown()``, ``as_latex()``.
        """
        lo, hi = self.conf_int()
        link = {"binomial": "logit", "poisson": "log", "gaussian": "identity"}[self.family]
        header = [
            ("Outcome", self.outcome),
            (
                "Model",
                f"{self.family} GLM ({link} link), cluster and period fixed effects, "
                f"effect={self.effect!r}",
            ),
            ("Covariates", self.covariates or "none"),
            (
                "Observations",
                f"{self.n_obs} in {self.n_clusters} clusters x {self.n_periods} periods",
            ),
            (
                "Inference",
                f"vcov: {self.vcov.upper() if self.vcov != 'model' else 'model'}; df: {self.dof}",
            ),
            (
                "Estimand",
                f"{self.estimand} = {_fmt(self.estimate)} (SE {_fmt(self.std_error)}, "
                f"df {_fmt(self.df, 2)}, "
                f"p {_fmt(self.pvalue)}; 95% CI {_fmt(lo)} to {_fmt(hi)})",
            ),
        ]
        if self.ratio is not None:
            name = "Odds ratio" if self.family == "binomial" else "Rate ratio"
            header.append(
                (
                    name,
                    f"{_fmt(self.ratio[0])} "
                    f"(95% CI {_fmt(self.ratio[1])} to {_fmt(self.ratio[2])})",
                )
            )
        header.append(("Converged", f"{_fmt(self.converged)} ({self.iterations} iterations)"))
        tables = [("Coefficients", self.tidy())]
        if len(self.marginal):
            tables.append(("Average marginal effects (response scale)", self.marginal))
        if len(self.aliased):
            tables.append(("Not estimable (dropped)", self.aliased))
        return Summary(
            title="Stepped-wedge fixed-effects GLM",
            header=tuple(header),
            tables=tuple(tables),
            notes=self.messages,
        )

    def _plot_terms(self, table: pd.DataFrame) -> pd.DataFrame:
        """Keep the treatment terms (all when there are none) for the base ``plot``."""
        keep = table["term"].str.startswith("treatment")
        return table[keep] if keep.any() else table

    def _plot_label(self) -> str:
        """Return the x-axis label of the base ``plot``."""
        return "estimate (link scale)"

    def __repr__(self) -> str:
        return (
            f"FixedEffectsResult(estimand={self.estimand!r}, estimate={self.estimate:.4g}, "
            f"std_error={self.std_error:.4g}, df={self.df:.4g}, p={self.pvalue:.3g})"
        )


# --------------------------------------------------------------------------------------
# fitting
# --------------------------------------------------------------------------------------
def fit_fixed_effects(
    data: Any,
    *,
    outcome: str | None = None,
    cluster: str | None = None,
    period: str | None = None,
    treatment: str | None = None,
    family: FEFamily = "binomial",
    covariates: str | None = None,
    offset: str | None = None,
    exposure: str | None = None,
    effect: FEEffect = "immediate",
    vcov: FEVcov = "cr2",
    dof: FEDof | None = None,
    missing: Literal["raise", "drop"] = "raise",
    _dense_limit: int = _DENSE_LIMIT,
) -> FixedEffectsResult:
    r"""Fit a GLM with cluster and period fixed effects and cluster-robust small-sample inference.

    Parameters
    ----------
    data : pandas.DataFrame or TrialData
        Individual rows (binary 0/1 or Gaussian outcomes) or counts (Poisson).  With a
        :class:`~steppedwedge.data.TrialData` the role arguments default to its canonical
        column names.  Never modified.
    outcome, cluster, period, treatment : str
        Column names.  ``treatment`` is 0/1 per row (it may vary within a cluster-period,
        e.g. under an exposure rule based on referral dates).
    family : {"binomial", "gaussian", "poisson"}
        Logit, identity and log links.
    covariates : str, optional
        Right-hand-side formula of further covariates, e.g. ``"age + C(sex)"``.
    offset, exposure : str, optional
        Poisson: a log-scale offset column, or an exposure column (logged internally).
    effect : {"immediate", "period-interaction"}
        One treatment effect; or one per period (treatment x period interaction, parameterised
        as ``treatment:period[j]``, the effect in period ``j``).  Terms that are not estimable
        (a period with no treated or no control rows: the baseline and, in a complete
        stepped wedge, the last period) are dropped and named in :attr:`aliased` and a
        warning.
    vcov : {"cr2", "cr1", "cr0", "model"}
        Cluster-robust covariance (clubSandwich's CR2 Bell-McCaffrey, CR1 = CR0 x J/(J-1),
        CR0) or the model-based one.
    dof : {"satterthwaite", "naive-t", "z", "residual"}, optional
        clubSandwich's Satterthwaite df (default with robust ``vcov``), ``J - 1``, normal, or
        ``n - p`` (default for ``vcov="model"`` with the Gaussian family; ``"z"`` for
        other families).  ``"satterthwaite"`` needs a robust ``vcov``.
    missing : {"raise", "drop"}
        Missing values in the used columns: raise :class:`DataError`, or drop the rows with a
        :class:`~steppedwedge.exceptions.MissingDataWarning` giving the count.

    Returns
    -------
    FixedEffectsResult

    Raises
    ------
    DataError
        Missing columns, non-binary binomial outcomes, negative counts, missing values (with
        ``missing="raise"``), fewer than 2 clusters, or a treatment that is not estimable at
        all (every treatment term aliased: the message names them and says why).
    ValueError
        Invalid options.

    Warns
    -----
    SmallSampleWarning
        When treatment x period terms are not estimable (names them), or fitted
        probabilities are 0 or 1 (separation; names the clusters and periods).
    ConvergenceWarning
        If IRLS did not converge.

    Notes
    -----
    The model is :math:`g(\mu_{ik}) = \beta_0 + \alpha_{j(k)} + \gamma_i + x_{ik}'\delta
    + \theta\,T_{ik}` (period effects :math:`\alpha`, cluster effects :math:`\gamma`, the first
    level of each the reference).  Inference for a coefficient or contrast follows R
    ``clubSandwich::coef_test(fit, vcov = "CR2", test = "Satterthwaite")`` for ``glm`` fits;
    the reference tests match clubSandwich 0.5.8 to about 1e-8 in SEs and df.  Average
    marginal effects use :math:`\frac1n\sum_k [h(\eta_{k}^{(1)}) - h(\eta_{k}^{(0)})]` with the
    treatment term switched on and off, a delta-method SE, and the Satterthwaite df of the
    gradient contrast.

    References
    ----------
    Bell RM, McCaffrey DF (2002). Survey Methodology 28:169-181.
    Pustejovsky JE, Tipton E (2018). J Bus Econ Stat 36:672-683.
    Pustejovsky JE (2024). clubSandwich: Cluster-Robust (Sandwich) Variance Estimators with
    Small-Sample Corrections. R package 0.5.8.

    Examples
    --------
    >>> import numpy as np, pandas as pd
    >>> from steppedwedge.models.fixed_effects import fit_fixed_effects
    >>> rng = np.random.default_rng(1)
    >>> rows = []
    >>> for i in range(5):
    ...     for j in range(6):
    ...         trt = int(j > i)
    ...         p = 1 / (1 + np.exp(-(-2.5 + 0.2 * i - 0.3 * trt)))
    ...         rows += [(f"LA{i}", j, trt, int(rng.random() < p)) for _ in range(80)]
    >>> df = pd.DataFrame(rows, columns=["la", "wedge", "trt", "cla"])
    >>> res = fit_fixed_effects(df, outcome="cla", cluster="la", period="wedge", treatment="trt")
    >>> round(res.estimate, 3), round(res.std_error, 3), round(res.df, 2)
    (-0.255, 0.147, 3.86)
    """
    from ..data import TrialData

    if isinstance(data, TrialData):
        outcome, cluster = outcome or "outcome", cluster or "cluster"
        period, treatment = period or "period", treatment or "treatment"
        if offset is None and "offset" in data.roles:
            offset = "offset"
        if exposure is None and "exposure" in data.roles:
            exposure = "exposure"
        data = data.frame
    elif not isinstance(data, pd.DataFrame):
        raise TypeError(
            f"`data` must be a pandas DataFrame or TrialData; got {type(data).__name__}."
        )
    spec = AnalysisSpec.from_options(
        outcome=outcome, cluster=cluster, period=period, treatment=treatment,  # type: ignore[arg-type]
        family=family, covariates=covariates, offset=offset, exposure=exposure, effect=effect,
        method="fixed-effects", dof=dof, vcov=vcov, missing=missing,
    )  # fmt: skip
    return _fit_spec(data, spec, _dense_limit)


def fit_fixed_effects_spec(
    data: pd.DataFrame, spec: AnalysisSpec, *, _dense_limit: int = _DENSE_LIMIT
) -> FixedEffectsResult:
    """Fixed-effects GLM of ``data`` as ``spec`` describes: ``sw.fit(method="fixed-effects")``.

    Roles, family, covariates, offset/exposure, ``effect``, ``vcov`` (None: ``"cr2"``),
    ``dof`` and ``missing`` come from the spec; see :func:`fit_fixed_effects`.  The rows
    first pass the data-integrity checks of :meth:`~steppedwedge.TrialData.from_frame`
    (repeated rows, treatment reversal, near-duplicate labels, no variation), which
    :func:`steppedwedge.fit` applies to every method; the keyword function
    :func:`fit_fixed_effects` does not run them (unchanged).

    Parameters
    ----------
    data : pandas.DataFrame
        The rows (never modified).
    spec : AnalysisSpec
        The validated analysis (:meth:`AnalysisSpec.from_options`).

    Returns
    -------
    FixedEffectsResult

    Raises
    ------
    OptionError
        A family, effect, vcov or dof the fixed-effects GLM does not offer.

    Examples
    --------
    >>> import numpy as np, pandas as pd
    >>> from steppedwedge.models.fixed_effects import fit_fixed_effects_spec
    >>> from steppedwedge.models.spec import AnalysisSpec
    >>> rng = np.random.default_rng(3)
    >>> df = pd.DataFrame([(i, j, int(j > i), rng.normal(int(j > i), 1.0))
    ...                    for i in range(4) for j in range(5) for _ in range(10)],
    ...                   columns=["c", "t", "x", "y"])
    >>> spec = AnalysisSpec.from_options(outcome="y", cluster="c", period="t", treatment="x",
    ...                                  method="fixed-effects")
    >>> res = fit_fixed_effects_spec(df, spec)
    >>> res.vcov, res.dof
    ('cr2', 'satterthwaite')
    """
    _check_rows(spec, data)
    return _fit_spec(data, spec, _dense_limit)


def _check_rows(spec: AnalysisSpec, data: Any) -> None:
    """Run the data-integrity checks of ``TrialData.from_frame`` on the rows (checks only).

    The fixed-effects GLM reads the rows itself; the refusals of ``TrialData`` (repeated
    rows, reversal, near-duplicate labels, ``exposure`` with ``offset``, no variation) apply
    to it too.  The numbers are computed from the rows as before.
    """
    if not isinstance(data, pd.DataFrame):
        return
    several = (
        spec.family != "binomial"
        and {spec.cluster, spec.period} <= set(data.columns)
        and bool(data.duplicated([spec.cluster, spec.period]).any())
    )
    with warnings.catch_warnings():  # the fitter issues its own missing-data warnings
        warnings.simplefilter("ignore", MissingDataWarning)
        spec.trial_data(
            data, kind="individual" if several or spec.family in ("gaussian", "binomial") else None
        )


def _fit_spec(data: pd.DataFrame, spec: AnalysisSpec, dense_limit: int) -> FixedEffectsResult:
    """Check the fixed-effects options of ``spec`` and fit (no TrialData row checks)."""
    from .._core.blas import single_threaded_blas

    family = check_option("family", spec.family, _FAMILIES)
    effect = check_option("effect", spec.effect, ("immediate", "period-interaction"))
    vcov = check_option("vcov", "cr2" if spec.vcov is None else spec.vcov, _VCOVS)
    dof = _resolve_dof(vcov, spec.dof, family)
    check_option("missing", spec.missing, ("raise", "drop"))
    if spec.offset is not None and spec.exposure is not None:
        raise OptionError("give at most one of `offset` and `exposure`.")
    if (spec.offset is not None or spec.exposure is not None) and family != "poisson":
        raise OptionError("`offset`/`exposure` are for family='poisson'.")
    with single_threaded_blas():
        return _fit(data, spec, family, effect, vcov, dof, dense_limit)


def _fit(
    frame: pd.DataFrame,
    spec: AnalysisSpec,
    family: str,
    effect: str,
    vcov: str,
    dof: str,
    dense_limit: int,
) -> FixedEffectsResult:
    roles = {r: getattr(spec, r) for r in ("outcome", "cluster", "period", "treatment")}
    roles.update(offset=spec.offset, exposure=spec.exposure)
    rows = fe_rows(frame, roles, family, spec.covariates, spec.missing)
    design = fe_design(rows, effect, spec.covariates)
    beta, converged, iters, mu, glm_notes = _fit_glm(rows, design, family)
    pieces = _pieces(rows, design, family, effect, beta, mu, dense_limit)
    inf = _inference(pieces, vcov, dof)
    idx = pd.Index(design.kept_names)
    return FixedEffectsResult(
        estimand=inf.estimand,
        estimate=inf.estimate,
        std_error=inf.std_error,
        df=inf.df,
        params=pd.Series(beta, index=idx),
        vcov_matrix=pd.DataFrame(inf.vcov_matrix, index=idx, columns=idx),
        vcov_model=pd.DataFrame(pieces.m * pieces.dispersion, index=idx, columns=idx),
        terms=inf.terms,
        aliased=design.aliased,
        marginal=inf.marginal,
        family=family,
        effect=effect,
        vcov=vcov,
        dof=dof,
        n_obs=rows.n,
        n_clusters=len(rows.cl_lab),
        n_periods=len(rows.pe_lab),
        converged=converged,
        iterations=iters,
        deviance=deviance(family, rows.y, mu),
        dispersion=pieces.dispersion,
        outcome=str(spec.outcome),
        covariates=design.cov_formula,
        messages=rows.messages + design.messages + glm_notes,
        _robust=inf.robust,
        _pieces=pieces,
    )


def _fit_glm(
    rows: FERows, design: FEDesign, family: str
) -> tuple[np.ndarray, bool, int, np.ndarray, tuple[str, ...]]:
    """IRLS fit; warns on non-convergence and on fitted probabilities 0 or 1 (names cells)."""
    notes: list[str] = []
    beta, converged, iters = irls(family, design.x, rows.y, rows.off)
    if not converged:
        warn(f"IRLS did not converge in {iters} iterations.", ConvergenceWarning)
        notes.append("IRLS did not converge.")
    mu = inv_link(family, design.x @ beta + rows.off)
    if family == "binomial":
        sep = (mu < 1e-10) | (mu > 1 - 1e-10)
        if sep.any():
            pairs = zip(rows.cl_code[sep], rows.pe_code[sep], strict=True)
            cells = sorted({(label(rows.cl_lab[a]), label(rows.pe_lab[b])) for a, b in pairs})
            msg = (
                f"fitted probabilities of 0 or 1 (separation) in {int(sep.sum())} row(s), "
                f"cluster-periods {cells[:6]}{' ...' if len(cells) > 6 else ''}; "
                "the estimates of the affected terms are not finite in the limit."
            )
            warn(msg, SmallSampleWarning)
            notes.append(msg)
    return beta, converged, iters, mu, tuple(notes)


def _pieces(
    rows: FERows,
    design: FEDesign,
    family: str,
    effect: str,
    beta: np.ndarray,
    mu: np.ndarray,
    dense_limit: int,
) -> _FEPieces:
    """Working weights, bread, residuals, clusters and marginal-effect gradients of the fit."""
    x = design.x
    eta = x @ beta + rows.off
    omega = 1.0 / variance(family, mu)
    xt = mu_eta(family, eta)[:, None] * x
    m = np.linalg.inv(xt.T @ (omega[:, None] * xt))
    m = (m + m.T) / 2.0
    resid = rows.y - mu
    n, p = x.shape
    if family == "gaussian":
        dispersion = float(np.sum(resid**2) / (n - p)) if n > p else float("nan")
    else:
        dispersion = 1.0
    groups = tuple(np.flatnonzero(rows.cl_code == i) for i in range(len(rows.cl_lab)))
    return _FEPieces(
        xt=xt, omega=omega, resid=resid, groups=groups, m=m, dispersion=dispersion,
        dense_limit=dense_limit, n_obs=n, kept_names=tuple(design.kept_names), beta=beta,
        effect=effect, ame=_ame(rows, design, family, effect, beta),
    )  # fmt: skip


def _ame(
    rows: FERows, design: FEDesign, family: str, effect: str, beta: np.ndarray
) -> tuple[tuple[str, float, np.ndarray], ...]:
    """Average marginal effects of treatment (switched on and off) and their gradients."""
    x, off = design.x, rows.off
    out: list[tuple[str, float, np.ndarray]] = []
    sizes = []
    for t_name in design.trt_kept:
        k = design.kept_names.index(t_name)
        if effect == "immediate":
            sel = np.arange(rows.n)
            lab = "AME(treatment)"
        else:
            per = rows.pe_lab[design.names.index(t_name) - design.n_nontrt]
            sel = np.flatnonzero(rows.pe_code == rows.pe_lab.get_loc(per))
            lab = f"AME(treatment, period {label(per)})"
        x1 = x[sel].copy()
        x0 = x[sel].copy()
        x1[:, k] = 1.0
        x0[:, k] = 0.0
        e1 = x1 @ beta + off[sel]
        e0 = x0 @ beta + off[sel]
        est = float(np.mean(inv_link(family, e1) - inv_link(family, e0)))
        g = (mu_eta(family, e1)[:, None] * x1 - mu_eta(family, e0)[:, None] * x0).mean(axis=0)
        out.append((lab, est, g))
        sizes.append(len(sel))
    if effect == "period-interaction":
        w = np.asarray(sizes, dtype=float) / float(np.sum(sizes))
        ame_all = float(np.sum([w_ * r[1] for w_, r in zip(w, out, strict=True)]))
        g_all = np.sum([w_ * r[2] for w_, r in zip(w, out, strict=True)], axis=0)
        out = [("AME(treatment)", ame_all, g_all), *out]
    return tuple(out)
