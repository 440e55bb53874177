"""Cluster fixed-effects GLMs with small-sample cluster-robust inference (CR2 + Satterthwaite).

With very few clusters (the Family Safeguarding and No Wrong Door trials had 5 and 4
councils) a random-intercept GLMM rests on a variance component estimated from 4-5 values.
The evaluators' small-sample alternative was a GLM with council and period fixed effects and
Bell-McCaffrey (CR2) cluster-robust standard errors with Satterthwaite degrees of freedom, as
computed by R ``clubSandwich``.  :func:`fit_fixed_effects` reproduces that analysis for
binomial (logit), Gaussian (identity) and Poisson (log, with an offset) outcomes, optionally
with treatment x period interactions (naming the interaction terms that are not estimable),
and average marginal effects on the response (probability) scale.

The CR2 adjustment matrices follow clubSandwich's ``vcovCR.glm``: with working weights
``w = mu_eta^2 / V(mu)`` written through the derivative-scaled model matrix
``X~ = diag(mu_eta) X`` and ``W = diag(1 / V(mu))``, ``Theta = W^-1``, cluster ``j`` gets
``A_j = Theta_j^{1/2} G_j^{+1/2} Theta_j^{1/2}`` with
``G_j = Theta_j^{1/2} (I - X~_j M X~_j' W_j) Theta_j Theta_j^{1/2}`` and ``M = (X~'WX~)^-1``
(``+1/2``: the symmetric inverse square root on the range; cluster fixed effects make every
``G_j`` singular).  Large clusters use an exact-to-rounding quadrature for ``G_j^{+1/2}``
(Woodbury solves of a diagonal-plus-low-rank matrix), so thousands of individuals per
cluster cost milliseconds rather than an ``n_j^3`` eigendecomposition.
"""

from __future__ import annotations

import warnings
from collections.abc import Hashable
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd
from scipy import linalg, special

from .._validation import check_option
from .._warnings import caller_stacklevel
from ..exceptions import ConvergenceWarning, DataError, OptionError, SmallSampleWarning
from ..inference.sandwich import glm_cluster_robust, glm_satterthwaite_df
from ..results import TIDY_COLUMNS, ResultMixin, Summary, _fmt, t_interval, t_pvalue, wald_table

__all__ = ["FixedEffectsResult", "fit_fixed_effects"]

FEFamily = Literal["binomial", "gaussian", "poisson"]
FEEffect = Literal["immediate", "period-interaction"]
FEVcov = Literal["cr2", "cr1", "cr0", "model"]
FEDof = Literal["satterthwaite", "naive-t", "z", "residual"]

#: Clusters above this size use the quadrature for G^{+1/2} instead of a dense eigh.
_DENSE_LIMIT = 150


# --------------------------------------------------------------------------------------
# families
# --------------------------------------------------------------------------------------
def _inv_link(family: str, eta: np.ndarray) -> np.ndarray:
    if family == "binomial":
        return np.asarray(special.expit(eta), dtype=np.float64)
    if family == "poisson":
        return np.asarray(np.exp(eta), dtype=np.float64)
    return np.asarray(eta, dtype=np.float64)


def _mu_eta(family: str, eta: np.ndarray) -> np.ndarray:
    if family == "binomial":
        p = special.expit(eta)
        return np.asarray(p * (1.0 - p), dtype=np.float64)
    if family == "poisson":
        return np.asarray(np.exp(eta), dtype=np.float64)
    return np.ones_like(eta, dtype=np.float64)


def _variance(family: str, mu: np.ndarray) -> np.ndarray:
    if family == "binomial":
        return mu * (1.0 - mu)
    if family == "poisson":
        return mu
    return np.ones_like(mu)


def _deviance(family: str, y: np.ndarray, mu: np.ndarray) -> float:
    if family == "binomial":
        with np.errstate(divide="ignore", invalid="ignore"):
            t1 = np.where(y > 0, y * np.log(y / mu), 0.0)
            t0 = np.where(y < 1, (1 - y) * np.log((1 - y) / (1 - mu)), 0.0)
        return float(2.0 * np.sum(t1 + t0))
    if family == "poisson":
        with np.errstate(divide="ignore", invalid="ignore"):
            t = np.where(y > 0, y * np.log(y / mu), 0.0)
        return float(2.0 * np.sum(t - (y - mu)))
    return float(np.sum((y - mu) ** 2))


def _irls(
    family: str,
    x: np.ndarray,
    y: np.ndarray,
    offset: np.ndarray,
    *,
    tol: float = 1e-13,
    maxit: int = 100,
) -> tuple[np.ndarray, bool, int]:
    """Fisher scoring (IRLS) as R's glm.fit, started like R (mustart)."""
    if family == "gaussian":
        beta = np.linalg.lstsq(x, y - offset, rcond=None)[0]
        return beta, True, 1
    if family == "binomial":
        mu = (y + 0.5) / 2.0
        eta = np.log(mu / (1.0 - mu))
    else:
        mu = y + 0.1
        eta = np.log(mu)
    dev_old = np.inf
    beta = np.zeros(x.shape[1])
    for it in range(1, maxit + 1):
        d = _mu_eta(family, eta)
        v = _variance(family, _inv_link(family, eta))
        z = (eta - offset) + (y - _inv_link(family, eta)) / d
        w = np.sqrt(d * d / v)
        q, r = np.linalg.qr(x * w[:, None])
        beta = linalg.solve_triangular(r, q.T @ (z * w))
        eta = x @ beta + offset
        mu = _inv_link(family, eta)
        dev = _deviance(family, y, mu)
        if abs(dev - dev_old) / (abs(dev) + 0.1) < tol:
            return beta, True, it
        dev_old = dev
    return beta, False, maxit


# --------------------------------------------------------------------------------------
# result
# --------------------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class FixedEffectsResult(ResultMixin):
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

    @property
    def statistic(self) -> float:
        """Wald t (or z) statistic of the estimand."""
        return self.estimate / self.std_error if self.std_error > 0 else float("nan")

    @property
    def pvalue(self) -> float:
        """Two-sided p-value of the estimand."""
        return t_pvalue(self.statistic, self.df)

    def conf_int(self, confidence_level: float = 0.95) -> tuple[float, float]:
        """Confidence interval of the estimand (t with :attr:`df`, or normal).

        Parameters
        ----------
        confidence_level : float, default 0.95
            Coverage, in (0, 1).

        Returns
        -------
        tuple of float
            ``(low, high)``.
        """
        return t_interval(self.estimate, self.std_error, self.df, confidence_level)

    @property
    def ratio(self) -> tuple[float, float, float] | None:
        """``exp`` of the link-scale treatment effect and its 95% CI (odds or rate ratio).

        None for the Gaussian family or the interaction model.
        """
        if self.family == "gaussian" or self.estimand != "treatment":
            return None
        lo, hi = self.conf_int()
        return float(np.exp(self.estimate)), float(np.exp(lo)), float(np.exp(hi))

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
        if self.dof == "satterthwaite":
            return glm_satterthwaite_df(self._robust, c)
        if self.dof == "naive-t":
            return float(self.n_clusters - 1)
        if self.dof == "residual":
            return float(self.n_obs - len(self.params))
        return float("inf")

    def tidy(self, confidence_level: float = 0.95) -> pd.DataFrame:
        """Every estimable coefficient, the treatment terms first.

        Parameters
        ----------
        confidence_level : float, default 0.95
            Coverage of the ``conf_low``, ``conf_high`` interval, in (0, 1).

        Returns
        -------
        pandas.DataFrame
            Columns ``term, estimate, std_error, statistic, df, p_value, conf_low,
            conf_high``.
        """
        t = self.terms
        est, se, df = (t[c].to_numpy(dtype=float) for c in ("estimate", "std_error", "df"))
        out = wald_table(t["term"].tolist(), est, se, df, confidence_level)
        return out

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

    def plot(self, ax: Any = None) -> Any:
        """Forest plot of the treatment terms (or all coefficients); returns the Axes.

        Parameters
        ----------
        ax : matplotlib.axes.Axes, optional
            Axes to draw on (a new figure when None).

        Returns
        -------
        matplotlib.axes.Axes
            The Axes drawn on.
        """
        import matplotlib.pyplot as plt

        if ax is None:
            _, ax = plt.subplots()
        tab = self.tidy()
        keep = tab["term"].str.startswith("treatment")
        tab = tab[keep] if keep.any() else tab
        yy = np.arange(len(tab))[::-1]
        ax.errorbar(
            tab["estimate"],
            yy,
            xerr=[tab["estimate"] - tab["conf_low"], tab["conf_high"] - tab["estimate"]],
            fmt="o",
            capsize=3,
        )
        ax.set_yticks(yy, tab["term"])
        ax.axvline(0.0, color="grey", lw=0.8)
        ax.set_xlabel("estimate (link scale)")
        return ax

    def __repr__(self) -> str:
        return (
            f"FixedEffectsResult(estimand={self.estimand!r}, estimate={self.estimate:.4g}, "
            f"std_error={self.std_error:.4g}, df={self.df:.4g}, p={self.pvalue:.3g})"
        )


# --------------------------------------------------------------------------------------
# fitting
# --------------------------------------------------------------------------------------
def _lab(x: Any) -> str:
    return str(x)


def _independent_columns(x: np.ndarray, tol: float = 1e-7) -> np.ndarray:
    """Keep columns in order when they add rank (as R's pivoting QR with tol 1e-7)."""
    n, p = x.shape
    q = np.zeros((n, 0))
    keep = np.zeros(p, dtype=bool)
    for j in range(p):
        col = x[:, j]
        norm = float(np.linalg.norm(col))
        if norm == 0.0:
            continue
        r = col - q @ (q.T @ col)
        r = r - q @ (q.T @ r)
        rn = float(np.linalg.norm(r))
        if rn > tol * norm:
            keep[j] = True
            q = np.hstack([q, (r / rn)[:, None]])
    return keep


def fit_fixed_effects(  # noqa: C901 - one linear sequence of steps
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
    from .._parallel import _single_threaded_blas

    with _single_threaded_blas():
        return _fit_fixed_effects(
            data,
            outcome=outcome,
            cluster=cluster,
            period=period,
            treatment=treatment,
            family=family,
            covariates=covariates,
            offset=offset,
            exposure=exposure,
            effect=effect,
            vcov=vcov,
            dof=dof,
            missing=missing,
            dense_limit=_dense_limit,
        )


def _fit_fixed_effects(  # noqa: C901 - one linear sequence of steps
    data: Any,
    *,
    outcome: str | None,
    cluster: str | None,
    period: str | None,
    treatment: str | None,
    family: str,
    covariates: str | None,
    offset: str | None,
    exposure: str | None,
    effect: str,
    vcov: str,
    dof: str | None,
    missing: str,
    dense_limit: int,
) -> FixedEffectsResult:
    # ---------------------------------------------------------------- options and data
    td_frame = None
    try:
        from ..data import TrialData
    except ImportError:  # pragma: no cover
        TrialData = None  # type: ignore[assignment,misc]  # noqa: N806
    if TrialData is not None and isinstance(data, TrialData):
        td_frame = data.frame
        outcome = outcome or "outcome"
        cluster = cluster or "cluster"
        period = period or "period"
        treatment = treatment or "treatment"
        if offset is None and "offset" in data.roles:
            offset = "offset"
        if exposure is None and "exposure" in data.roles:
            exposure = "exposure"
        frame = td_frame
    elif isinstance(data, pd.DataFrame):
        frame = data
    else:
        raise TypeError(
            f"`data` must be a pandas DataFrame or TrialData; got {type(data).__name__}."
        )
    family = check_option("family", family, ("binomial", "gaussian", "poisson"))
    effect = check_option("effect", effect, ("immediate", "period-interaction"))
    vcov = check_option("vcov", vcov, ("cr2", "cr1", "cr0", "model"))
    if dof is None:
        dof = "satterthwaite" if vcov != "model" else ("residual" if family == "gaussian" else "z")
    dof = check_option("dof", dof, ("satterthwaite", "naive-t", "z", "residual"))
    if dof == "satterthwaite" and vcov == "model":
        raise OptionError(
            "`dof='satterthwaite'` needs a cluster-robust `vcov` ('cr2', 'cr1' or 'cr0'); "
            "use dof='z' or 'residual' with vcov='model'."
        )
    check_option("missing", missing, ("raise", "drop"))
    if offset is not None and exposure is not None:
        raise OptionError("give at most one of `offset` and `exposure`.")
    if (offset is not None or exposure is not None) and family != "poisson":
        raise OptionError("`offset`/`exposure` are for family='poisson'.")
    roles = {"outcome": outcome, "cluster": cluster, "period": period, "treatment": treatment}
    for arg, col in roles.items():
        if col is None:
            raise TypeError(f"`{arg}` is required (a column name).")
        if col not in frame.columns:
            raise DataError(
                f"`{arg}` must name a column of `data`; got {col!r} "
                f"(columns: {list(frame.columns)})."
            )
    for arg, col in (("offset", offset), ("exposure", exposure)):
        if col is not None and col not in frame.columns:
            raise DataError(f"`{arg}` must name a column of `data`; got {col!r}.")
    used = [c for c in (outcome, cluster, period, treatment, offset, exposure) if c is not None]
    messages: list[str] = []
    cov_vars: list[str] = []
    if covariates is not None:
        import patsy

        try:
            desc = patsy.ModelDesc.from_formula(covariates.strip().lstrip("~"))
            cov_vars = sorted({str(f.name()) for t in desc.rhs_termlist for f in t.factors})
        except Exception:  # noqa: BLE001 - reported by covariate_matrix below
            cov_vars = []
        cov_vars = [v for v in cov_vars if v in frame.columns]
    sub = frame[list(dict.fromkeys(used + cov_vars))]
    na = sub.isna().any(axis=1).to_numpy()
    if na.any():
        bad = [c for c in sub.columns if sub[c].isna().any()]
        if missing == "raise":
            raise DataError(
                f"{int(na.sum())} row(s) have missing values in column(s) {bad}; pass "
                "`missing='drop'` to drop them (counted in a warning), or impute and use `pool`."
            )
        from ..exceptions import MissingDataWarning

        warnings.warn(
            f"dropped {int(na.sum())} row(s) with missing values in column(s) {bad}.",
            MissingDataWarning,
            stacklevel=caller_stacklevel(),
        )
        messages.append(f"{int(na.sum())} row(s) with missing values dropped.")
        frame = frame.loc[~na]
    n = len(frame)
    y = pd.to_numeric(frame[outcome], errors="coerce").to_numpy(dtype=np.float64)
    if not np.all(np.isfinite(y)):
        raise DataError(f"`outcome` column {outcome!r} must be numeric and finite.")
    if family == "binomial" and not np.all((y == 0) | (y == 1)):
        raise DataError(f"`outcome` column {outcome!r} must be 0/1 for family='binomial'.")
    if family == "poisson" and (np.any(y < 0) or np.any(y != np.round(y))):
        raise DataError(
            f"`outcome` column {outcome!r} must hold non-negative counts for family='poisson'."
        )
    trt = pd.to_numeric(frame[treatment], errors="coerce").to_numpy(dtype=np.float64)
    if not np.all((trt == 0) | (trt == 1)):
        raise DataError(f"`treatment` column {treatment!r} must be 0/1 per row.")
    off = np.zeros(n)
    if offset is not None:
        off = pd.to_numeric(frame[offset], errors="coerce").to_numpy(dtype=np.float64)
        if not np.all(np.isfinite(off)):
            raise DataError(f"`offset` column {offset!r} must be finite numbers.")
    if exposure is not None:
        ex = pd.to_numeric(frame[exposure], errors="coerce").to_numpy(dtype=np.float64)
        if not np.all(np.isfinite(ex) & (ex > 0)):
            raise DataError(f"`exposure` column {exposure!r} must be positive numbers.")
        off = np.log(ex)
    cl_lab = pd.Index(sorted(pd.unique(frame[cluster]), key=_sort_key))
    pe_lab = pd.Index(sorted(pd.unique(frame[period]), key=_sort_key))
    if len(cl_lab) < 2:
        raise DataError(
            f"cluster-robust inference needs at least 2 clusters; `cluster` column {cluster!r} has "
            f"{len(cl_lab)}."
        )
    cl_code = cl_lab.get_indexer(frame[cluster])
    pe_code = pe_lab.get_indexer(frame[period])
    # ---------------------------------------------------------------- design matrix
    names: list[str] = ["(Intercept)"]
    blocks: list[np.ndarray] = [np.ones((n, 1))]
    pdum = (pe_code[:, None] == np.arange(1, len(pe_lab))[None, :]).astype(float)
    names += [f"period[{_lab(p)}]" for p in pe_lab[1:]]
    blocks.append(pdum)
    cdum = (cl_code[:, None] == np.arange(1, len(cl_lab))[None, :]).astype(float)
    names += [f"cluster[{_lab(c)}]" for c in cl_lab[1:]]
    blocks.append(cdum)
    cov_formula = None
    if covariates is not None:
        from ._formula import covariate_matrix

        cm = covariate_matrix(covariates, frame)
        names += list(cm.names)
        blocks.append(cm.values)
        cov_formula = cm.formula
    if effect == "immediate":
        trt_names = ["treatment"]
        trt_block = trt[:, None]
    else:
        trt_names = [f"treatment:period[{_lab(p)}]" for p in pe_lab]
        trt_block = trt[:, None] * (pe_code[:, None] == np.arange(len(pe_lab))[None, :])
    names += trt_names
    blocks.append(trt_block)
    x_full = np.hstack(blocks)
    keep = _independent_columns(x_full)
    n_nontrt = x_full.shape[1] - len(trt_names)
    aliased_rows = []
    for j in np.flatnonzero(~keep):
        term = names[j]
        if j < n_nontrt:
            reason = "collinear with earlier terms (covariate, period or cluster effects)"
        elif effect == "immediate":
            reason = (
                "no treated observations"
                if not trt.any()
                else "collinear with the period/cluster effects (treatment is confounded with time)"
            )
        else:
            k = j - n_nontrt
            in_p = pe_code == k
            if not (trt[in_p] == 1).any():
                reason = f"no treated observations in period {_lab(pe_lab[k])}"
            elif (trt[in_p] == 1).all():
                reason = (
                    f"every observation in period {_lab(pe_lab[k])} is treated "
                    "(aliased with the period effect)"
                )
            else:
                reason = "collinear with the other terms"
        aliased_rows.append((term, reason))
    aliased = pd.DataFrame(aliased_rows, columns=["term", "reason"])
    trt_kept = [names[j] for j in range(n_nontrt, len(names)) if keep[j]]
    if not trt_kept:
        listing = "; ".join(f"{t}: {r}" for t, r in aliased_rows if t.startswith("treatment"))
        raise DataError(
            f"the treatment effect is not estimable: every treatment term is aliased ({listing})."
        )
    dropped_trt = [t for t, _ in aliased_rows if t.startswith("treatment")]
    if dropped_trt:
        msg = "not estimable, dropped: " + "; ".join(
            f"{t} ({r})" for t, r in aliased_rows if t.startswith("treatment")
        )
        warnings.warn(msg, SmallSampleWarning, stacklevel=caller_stacklevel())
        messages.append(msg)
    other_dropped = [t for t, _ in aliased_rows if not t.startswith("treatment")]
    if other_dropped:
        messages.append("aliased terms dropped: " + ", ".join(other_dropped))
    x = x_full[:, keep]
    kept_names = [nm for nm, k in zip(names, keep, strict=True) if k]
    # ---------------------------------------------------------------- fit
    beta, converged, iters = _irls(family, x, y, off)
    if not converged:
        warnings.warn(
            f"IRLS did not converge in {iters} iterations.",
            ConvergenceWarning,
            stacklevel=caller_stacklevel(),
        )
        messages.append("IRLS did not converge.")
    eta = x @ beta + off
    mu = _inv_link(family, eta)
    if family == "binomial":
        sep = (mu < 1e-10) | (mu > 1 - 1e-10)
        if sep.any():
            pairs = zip(cl_code[sep], pe_code[sep], strict=True)
            cells = sorted({(_lab(cl_lab[a]), _lab(pe_lab[b])) for a, b in pairs})
            msg = (
                f"fitted probabilities of 0 or 1 (separation) in {int(sep.sum())} row(s), "
                f"cluster-periods {cells[:6]}{' ...' if len(cells) > 6 else ''}; "
                "the estimates of the "
                "affected terms are not "
                "finite in the limit."
            )
            warnings.warn(msg, SmallSampleWarning, stacklevel=caller_stacklevel())
            messages.append(msg)
    dmu = _mu_eta(family, eta)
    var = _variance(family, mu)
    omega = 1.0 / var
    xt = dmu[:, None] * x
    info = xt.T @ (omega[:, None] * xt)
    m = np.linalg.inv(info)
    m = (m + m.T) / 2.0
    resid = y - mu
    p = x.shape[1]
    if family == "gaussian":
        dispersion = float(np.sum(resid**2) / (n - p)) if n > p else float("nan")
    else:
        dispersion = 1.0
    vmodel = m * dispersion
    groups = [np.flatnonzero(cl_code == i) for i in range(len(cl_lab))]
    rob = None
    if vcov == "model":
        v = vmodel
    else:
        rob = glm_cluster_robust(vcov, xt, omega, resid, groups, m, dense_limit)
        v = (rob.vcov + rob.vcov.T) / 2.0
    se = np.sqrt(np.clip(np.diag(v), 0.0, None))

    def df_for(c: np.ndarray) -> float:
        if dof == "satterthwaite":
            return glm_satterthwaite_df(rob, c)  # type: ignore[arg-type]
        if dof == "naive-t":
            return float(len(cl_lab) - 1)
        if dof == "residual":
            return float(n - p)
        return float("inf")

    eye = np.eye(p)
    dfs = np.array([df_for(eye[k]) for k in range(p)])
    terms = pd.DataFrame({"term": kept_names, "estimate": beta, "std_error": se, "df": dfs})
    # order: treatment terms first
    is_trt = terms["term"].str.startswith("treatment")
    terms = pd.concat([terms[is_trt], terms[~is_trt]]).reset_index(drop=True)
    # ---------------------------------------------------------------- marginal effects
    trt_idx = [kept_names.index(t) for t in trt_kept]
    me_rows = []
    grads = []
    weights_n = []
    for t_name, k in zip(trt_kept, trt_idx, strict=True):
        if effect == "immediate":
            rows = np.arange(n)
            label = "AME(treatment)"
        else:
            per = pe_lab[names.index(t_name) - n_nontrt]
            rows = np.flatnonzero(pe_code == pe_lab.get_loc(per))
            label = f"AME(treatment, period {_lab(per)})"
        x1 = x[rows].copy()
        x0 = x[rows].copy()
        x1[:, k] = 1.0
        x0[:, k] = 0.0
        e1 = x1 @ beta + off[rows]
        e0 = x0 @ beta + off[rows]
        ame = float(np.mean(_inv_link(family, e1) - _inv_link(family, e0)))
        g = (_mu_eta(family, e1)[:, None] * x1 - _mu_eta(family, e0)[:, None] * x0).mean(axis=0)
        me_rows.append((label, ame, g))
        grads.append(g)
        weights_n.append(len(rows))
    if effect == "period-interaction":
        w = np.asarray(weights_n, dtype=float) / float(np.sum(weights_n))
        ame_all = float(np.sum([w_ * r[1] for w_, r in zip(w, me_rows, strict=True)]))
        g_all = np.sum([w_ * g for w_, g in zip(w, grads, strict=True)], axis=0)
        me_rows = [("AME(treatment)", ame_all, g_all), *me_rows]
    me_tab = []
    for label, est, g in me_rows:
        s = float(np.sqrt(g @ v @ g))
        d = df_for(g)
        stat = est / s if s > 0 else float("nan")
        lo, hi = t_interval(est, s, d, 0.95)
        me_tab.append((label, est, s, stat, d, t_pvalue(stat, d), lo, hi))
    marginal = pd.DataFrame(me_tab, columns=list(TIDY_COLUMNS))
    # ---------------------------------------------------------------- estimand
    if effect == "immediate":
        k = kept_names.index("treatment")
        est, s_e, d_f, estimand = float(beta[k]), float(se[k]), float(dfs[k]), "treatment"
    else:
        r0 = marginal.iloc[0]
        est, s_e, d_f, estimand = (
            float(r0["estimate"]),
            float(r0["std_error"]),
            float(r0["df"]),
            "AME(treatment)",
        )
    idx = pd.Index(kept_names)
    return FixedEffectsResult(
        estimand=estimand,
        estimate=est,
        std_error=s_e,
        df=d_f,
        params=pd.Series(beta, index=idx),
        vcov_matrix=pd.DataFrame(v, index=idx, columns=idx),
        vcov_model=pd.DataFrame(vmodel, index=idx, columns=idx),
        terms=terms,
        aliased=aliased,
        marginal=marginal,
        family=family,
        effect=effect,
        vcov=vcov,
        dof=dof,
        n_obs=n,
        n_clusters=len(cl_lab),
        n_periods=len(pe_lab),
        converged=converged,
        iterations=iters,
        deviance=_deviance(family, y, mu),
        dispersion=dispersion,
        outcome=str(outcome),
        covariates=cov_formula,
        messages=tuple(messages),
        _robust=rob,
    )


def _sort_key(v: Hashable) -> tuple[int, Any]:
    if isinstance(v, (int, float, np.integer, np.floating)):
        return (0, float(v))
    return (1, str(v))
