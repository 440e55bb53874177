"""Rubin's rules: pool analyses of multiply imputed datasets.

Imputation itself is left to the user's tool (``mice`` in R, ``statsmodels.imputation``,
``sklearn.impute.IterativeImputer`` with ``sample_posterior=True``, ...).  Fit the same
model to each completed dataset and pass the fits to :func:`pool`.  The pooled quantities
and the Barnard-Rubin degrees of freedom follow R ``mice::pool()`` (``rule="rubin1987"``)
exactly, including its floor of 1e-4 on ``lambda`` in the df formula.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd

from ..exceptions import OptionError
from ..results import EstimationResult, Summary, _fmt, t_interval, t_pvalue

__all__ = ["PooledResult", "pool", "barnard_rubin_df"]


def barnard_rubin_df(m: int, b: Any, t: Any, dfcom: float = np.inf) -> np.ndarray:
    """Barnard-Rubin (1999) degrees of freedom of a pooled estimate, as ``mice``.

    Parameters
    ----------
    m : int
        Number of imputations.
    b, t : array_like
        Between-imputation and total variance.
    dfcom : float, default inf
        Complete-data degrees of freedom (``inf``: the large-sample Rubin df).

    Returns
    -------
    numpy.ndarray
        ``nu_old * nu_obs / (nu_old + nu_obs)`` with ``nu_old = (m - 1) / lambda^2``,
        ``nu_obs = (dfcom + 1) / (dfcom + 3) * dfcom * (1 - lambda)`` and
        ``lambda = (1 + 1/m) b / t`` floored at 1e-4; ``nu_old`` when ``dfcom`` is infinite.

    Examples
    --------
    >>> round(float(barnard_rubin_df(5, 0.01, 0.05, dfcom=100)), 4)
    35.9474
    """
    b = np.asarray(b, dtype=np.float64)
    t = np.asarray(t, dtype=np.float64)
    lam = (1.0 + 1.0 / m) * b / t
    lam = np.where(lam < 1e-4, 1e-4, lam)
    dfold = (m - 1) / lam**2
    if np.isinf(dfcom):
        return np.asarray(dfold, dtype=np.float64)
    dfobs = (dfcom + 1.0) / (dfcom + 3.0) * dfcom * (1.0 - lam)
    return np.asarray(dfold * dfobs / (dfold + dfobs), dtype=np.float64)


@dataclass(frozen=True, eq=False)
class PooledResult(EstimationResult):
    """Estimates pooled over ``m`` imputed datasets by Rubin's rules.

    Attributes
    ----------
    params : pandas.Series
        Pooled estimates ``qbar`` (the mean over imputations), one per term.
    ubar, b, t : pandas.Series
        Within-imputation variance (mean of the squared standard errors), between-imputation
        variance (sample variance of the estimates) and total variance
        ``ubar + (1 + 1/m) b``.
    df : pandas.Series
        Barnard-Rubin degrees of freedom (:func:`barnard_rubin_df`).
    riv, lambda_, fmi : pandas.Series
        Relative increase in variance ``(1 + 1/m) b / ubar``, proportion of the variance due
        to missingness ``(1 + 1/m) b / t`` and fraction of missing information
        ``(riv + 2 / (df + 3)) / (riv + 1)``.
    vcov_matrix : pandas.DataFrame or None
        Pooled total covariance ``Ubar + (1 + 1/m) B`` when full covariance matrices were
        given, else None.
    m : int
        Number of imputations.
    dfcom : float
        Complete-data degrees of freedom used.
    estimand : str
        The term reported by :attr:`estimate`, :attr:`std_error` and :attr:`pvalue`.
    rule : str
        The pooling rule, ``"rubin1987"`` (Rubin's rules with Barnard-Rubin df).
    link : str
        The pooled fits' common link (``"identity"`` for ``estimates=`` input): the scale
        of the estimates, and whether ``tidy(exponentiate=True)`` applies.
    """

    params: pd.Series
    ubar: pd.Series
    b: pd.Series
    t: pd.Series
    df: pd.Series  # type: ignore[assignment]  # per term (the estimand's: df_estimand)
    riv: pd.Series
    lambda_: pd.Series
    fmi: pd.Series
    m: int
    dfcom: float
    estimand: str
    rule: str = "rubin1987"
    vcov_matrix: pd.DataFrame | None = field(default=None, repr=False)
    link: str = "identity"

    @property
    def method_label(self) -> str:
        """``"pooled over <m> imputations (Rubin)"``, as :func:`compare` shows it."""
        return f"pooled over {self.m} imputations (Rubin)"

    def _term_table(self) -> pd.DataFrame:
        """Return one row per term, the estimand first (Barnard-Rubin df)."""
        order = self._order()
        out: pd.DataFrame = pd.DataFrame(
            {
                "term": [str(t) for t in order],
                "estimate": [float(self.params[term]) for term in order],
                "std_error": [float(np.sqrt(self.t[term])) for term in order],
                "df": [float(self.df[term]) for term in order],
            }
        )
        return out

    # ---------------------------------------------------------------- protocol
    @property
    def std_errors(self) -> pd.Series:
        """Pooled standard errors ``sqrt(t)`` of every term."""
        se: pd.Series = np.sqrt(self.t)
        return se

    @property
    def df_estimand(self) -> float:
        """Barnard-Rubin df of :attr:`estimand`."""
        return float(self.df[self.estimand])

    @property
    def statistic(self) -> float:
        """T statistic of :attr:`estimand`."""
        return self.estimate / self.std_error

    @property
    def pvalue(self) -> float:
        """Two-sided p-value of :attr:`estimand` (t with the Barnard-Rubin df)."""
        return t_pvalue(self.statistic, self.df_estimand)

    @property
    def pvalues(self) -> pd.Series:
        """Two-sided p-values of every term."""
        return pd.Series(
            [
                t_pvalue(q / s, d)
                for q, s, d in zip(self.params, self.std_errors, self.df, strict=True)
            ],
            index=self.params.index,
        )

    def conf_int(self, confidence_level: float = 0.95) -> tuple[float, float]:
        """T interval of :attr:`estimand` with the Barnard-Rubin df.

        Parameters
        ----------
        confidence_level : float, default 0.95
            Coverage, in (0, 1).

        Returns
        -------
        tuple of float
            ``(low, high)``.
        """
        return t_interval(self.estimate, self.std_error, self.df_estimand, confidence_level)

    def diagnostics(self) -> pd.DataFrame:
        """Per term, the estimand first: ``m, ubar, b, t, dfcom, df, riv, lambda, fmi``.

        Returns
        -------
        pandas.DataFrame
            Columns ``term, m, ubar, b, t, dfcom, df, riv, lambda, fmi`` (see Attributes).
        """
        o = self._order()
        out: pd.DataFrame = pd.DataFrame(
            {
                "term": [str(x) for x in o],
                "m": self.m,
                "ubar": self.ubar[o].to_numpy(),
                "b": self.b[o].to_numpy(),
                "t": self.t[o].to_numpy(),
                "dfcom": self.dfcom,
                "df": self.df[o].to_numpy(),
                "riv": self.riv[o].to_numpy(),
                "lambda": self.lambda_[o].to_numpy(),
                "fmi": self.fmi[o].to_numpy(),
            }
        )
        return out

    def _order(self) -> list[str]:
        return [self.estimand, *[t for t in self.params.index if t != self.estimand]]

    def summary(self) -> Summary:
        """Text/HTML summary: the pooled table and the missing-information diagnostics.

        Returns
        -------
        Summary
            Renders with ``as_text()``, ``as_html()``, ``as_markdown()``, ``as_latex()``.
        """
        lo, hi = self.conf_int()
        header = (
            ("Imputations", str(self.m)),
            ("Rule", f"Rubin (1987), Barnard-Rubin df with dfcom = {_fmt(self.dfcom, 2)}"),
            (
                "Estimand",
                f"{self.estimand} = {_fmt(self.estimate)} (SE {_fmt(self.std_error)}, "
                f"df {_fmt(self.df_estimand, 2)}, p {_fmt(self.pvalue)}; 95% CI {_fmt(lo)} to "
                f"{_fmt(hi)})",
            ),
        )
        return Summary(
            title="Pooled over multiply imputed datasets",
            header=header,
            tables=(("Pooled estimates", self.tidy()), ("Missing information", self.diagnostics())),
        )

    def _plot_terms(self, table: pd.DataFrame) -> pd.DataFrame:
        """Keep every pooled term for the base ``plot``."""
        return table

    def _plot_label(self) -> str:
        """Return the x-axis label of the base ``plot``."""
        return f"pooled estimate (m = {self.m})"

    def __repr__(self) -> str:
        return (
            f"PooledResult(m={self.m}, estimand={self.estimand!r}, estimate={self.estimate:.4g}, "
            f"std_error={self.std_error:.4g}, df={self.df_estimand:.4g}, p={self.pvalue:.3g})"
        )


# --------------------------------------------------------------------------------------
def _from_result(res: Any, i: int) -> tuple[pd.Series, np.ndarray, str | None]:
    """(estimates, variances or covariance, estimand) of one fit."""
    params = getattr(res, "params", None)
    vcov = getattr(res, "vcov_matrix", None)
    estimand = getattr(res, "estimand", None)
    if params is not None and vcov is not None:
        p = pd.Series(params, dtype=np.float64)
        if isinstance(vcov, pd.DataFrame):
            v = np.asarray(vcov.loc[p.index, p.index], dtype=np.float64)
        else:
            v = np.asarray(vcov, dtype=np.float64)
            if v.shape != (len(p), len(p)):
                raise OptionError(
                    f"`results[{i}].vcov_matrix` must be {len(p)} x {len(p)}; got {v.shape}."
                )
        est = getattr(res, "estimate", None)
        se = getattr(res, "std_error", None)
        if (
            isinstance(estimand, str)
            and estimand not in p.index
            and est is not None
            and se is not None
        ):
            # an estimand that is a contrast of the params (e.g. a TATE): pool it as its own term
            p = pd.concat([pd.Series({estimand: float(est)}), p])
            vv = np.zeros((len(p), len(p)))
            vv[1:, 1:] = v
            vv[0, 0] = float(se) ** 2
            return p, vv, estimand
        return p, v, estimand if isinstance(estimand, str) and estimand in p.index else None
    est = getattr(res, "estimate", None)
    se = getattr(res, "std_error", None)
    if est is not None and se is not None and np.ndim(est) == 0:
        name = estimand if isinstance(estimand, str) else "estimate"
        return pd.Series({name: float(est)}), np.array([[float(se) ** 2]]), name
    raise TypeError(
        f"`results[{i}]` must have `params` and `vcov_matrix` (a fit result) or scalar "
        "`estimate` and "
        f"`std_error`; got {type(res).__name__}."
    )


def _pool_iv(
    results: Any, estimates: Any, variances: Any, std_errors: Any, terms: Any
) -> tuple[list[str], np.ndarray, np.ndarray, bool, str | None]:
    """Return (terms, Q (m, p), U (m, p, p) or (m, p), full_cov, estimand)."""
    if results is not None:
        if estimates is not None or variances is not None or std_errors is not None:
            raise OptionError(
                "pass either `results` or `estimates` with `variances`/`std_errors`, not both."
            )
        if isinstance(results, (str, bytes)) or not isinstance(results, Sequence):
            raise TypeError(
                f"`results` must be a list of fit results; got {type(results).__name__}."
            )
        parts = [_from_result(r, i) for i, r in enumerate(results)]
        names = list(parts[0][0].index) if parts else []
        for i, (params_i, _, _) in enumerate(parts):
            if list(params_i.index) != names:
                raise OptionError(
                    f"`results[{i}]` has terms {list(params_i.index)}, but `results[0]` has "
                    f"{names}: every fit must estimate the same terms (same model on each "
                    "imputed dataset)."
                )
        q = np.array([pr.to_numpy() for pr, _, _ in parts], dtype=np.float64).reshape(
            len(parts), len(names)
        )
        u_all: np.ndarray = np.array([v for _, v, _ in parts], dtype=np.float64)
        u_all = u_all.reshape(len(parts), len(names), len(names))
        est_names = {e for _, _, e in parts}
        estimand = parts[0][2] if len(est_names) == 1 and parts else None
        return [str(n) for n in names], q, u_all, True, estimand
    if estimates is None:
        raise TypeError("`pool` needs `results`, or `estimates` with `variances` or `std_errors`.")
    q = np.asarray(estimates, dtype=np.float64)
    if q.ndim == 1:
        q = q[:, None]
    if q.ndim != 2:
        raise OptionError(f"`estimates` must have shape (m,) or (m, p); got {np.shape(estimates)}.")
    m, p = q.shape
    if (variances is None) == (std_errors is None):
        raise OptionError("give exactly one of `variances` and `std_errors` with `estimates`.")
    if std_errors is not None:
        se = np.asarray(std_errors, dtype=np.float64).reshape(m, -1)
        if se.shape != (m, p):
            raise OptionError(
                f"`std_errors` must have the shape of `estimates` {(m, p)}; got {se.shape}."
            )
        u: np.ndarray = np.asarray(se**2, dtype=np.float64)
        full = False
    else:
        u = np.asarray(variances, dtype=np.float64).copy()
        shape: tuple[int, ...] = u.shape
        if shape in ((m,), (m, p)):
            u = u.reshape(m, p)
            full = False
        elif shape == (m, p, p):
            full = True
        else:
            raise OptionError(
                f"`variances` must have shape (m,), (m, p) or (m, p, p) with (m, p) = {(m, p)}; "
                f"got {u.shape}."
            )
    if terms is None:
        names = ["estimate"] if p == 1 else [f"x{j}" for j in range(p)]
    else:
        names = [str(t) for t in terms]
        if len(names) != p:
            raise OptionError(f"`terms` must name the {p} estimated terms; got {len(names)} names.")
    return names, q, u, full, None


def pool(
    results: Sequence[Any] | None = None,
    *,
    estimates: Any = None,
    variances: Any = None,
    std_errors: Any = None,
    terms: Sequence[str] | None = None,
    dfcom: float = np.inf,
    rule: Literal["rubin1987"] = "rubin1987",
    estimand: str | None = None,
) -> PooledResult:
    r"""Pool fits of multiply imputed datasets by Rubin's rules.

    Parameters
    ----------
    results : sequence of fit results, optional
        One fit per imputed dataset, each with ``params`` and ``vcov_matrix`` (e.g.
        :class:`~steppedwedge.results.FitResult`, a fixed-effects GLM result), or with
        scalar ``estimate`` and ``std_error``.  All must estimate the same terms.
    estimates : array_like, shape (m,) or (m, p), optional
        Instead of ``results``: the estimates from each of ``m`` imputations.
    variances : array_like, shape (m,), (m, p) or (m, p, p), optional
        Their variances (or covariance matrices).
    std_errors : array_like, shape (m,) or (m, p), optional
        Or their standard errors.
    terms : sequence of str, optional
        Names of the ``p`` terms with ``estimates``.
    dfcom : float, default inf
        Complete-data degrees of freedom for the Barnard-Rubin small-sample df: e.g. the
        residual df of the complete-data model (``mice`` uses ``df.residual``), or the
        denominator df of a small-sample test.  ``inf`` gives Rubin's large-sample df.
    rule : {"rubin1987"}
        Pooling rule (mice's default).
    estimand : str, optional
        The term reported by ``estimate``/``pvalue``; default the fits' own estimand, else the
        first term.

    Returns
    -------
    PooledResult

    Raises
    ------
    ValueError
        Fewer than 2 imputations, fits with different terms, inconsistent shapes, negative
        variances.
    TypeError
        Objects that are not fits.

    Notes
    -----
    With estimates :math:`Q_l` and variances :math:`U_l`, :math:`l = 1..m`:
    :math:`\bar Q = \frac1m\sum Q_l`, :math:`\bar U = \frac1m\sum U_l`,
    :math:`B = \frac1{m-1}\sum (Q_l - \bar Q)^2` and :math:`T = \bar U + (1 + 1/m) B`.
    The df is Barnard & Rubin's (1999) with ``dfcom`` (see :func:`barnard_rubin_df`).
    Matches R ``mice::pool()`` / ``pool.scalar()`` (tests/reference/mice).

    References
    ----------
    Rubin DB (1987). Multiple Imputation for Nonresponse in Surveys. Wiley.
    Barnard J, Rubin DB (1999). Biometrika 86:948-955.
    van Buuren S (2018). Flexible Imputation of Missing Data, 2nd ed., section 5.2.

    Examples
    --------
    >>> from steppedwedge.inference.pooling import pool
    >>> res = pool(estimates=[0.10, 0.14, 0.12, 0.09, 0.15],
    ...            std_errors=[0.05, 0.052, 0.049, 0.051, 0.05], dfcom=120)
    >>> round(res.estimate, 4), round(res.std_error, 4), round(res.df_estimand, 2)
    (0.12, 0.0576, 40.22)
    >>> round(float(res.fmi.iloc[0]), 3)
    0.27
    """
    if rule != "rubin1987":
        raise OptionError(f"`rule` must be 'rubin1987'; got {rule!r}.")
    try:
        dfcom = float(dfcom)
    except (TypeError, ValueError):
        raise OptionError(f"`dfcom` must be a positive number or inf; got {dfcom!r}.") from None
    if not dfcom > 0:
        raise OptionError(f"`dfcom` must be a positive number or inf; got {dfcom!r}.")
    names, q, u, full, own = _pool_iv(results, estimates, variances, std_errors, terms)
    m = q.shape[0]
    if m < 2:
        raise OptionError(f"Rubin's rules need at least 2 imputed datasets; got {m}.")
    if not np.all(np.isfinite(q)) or not np.all(np.isfinite(u)):
        raise OptionError("the estimates and variances must be finite numbers.")
    diag_u = np.diagonal(u, axis1=1, axis2=2) if full else u
    if np.any(diag_u < 0):
        raise OptionError("the variances must be non-negative.")
    qbar = q.mean(axis=0)
    ubar = diag_u.mean(axis=0)
    b = q.var(axis=0, ddof=1)
    t = ubar + (1.0 + 1.0 / m) * b
    df = barnard_rubin_df(m, b, t, dfcom)
    with np.errstate(divide="ignore", invalid="ignore"):
        riv = (1.0 + 1.0 / m) * b / ubar
        lam = (1.0 + 1.0 / m) * b / t
    fmi = (riv + 2.0 / (df + 3.0)) / (riv + 1.0)
    vcov = None
    if full:
        dev = q - qbar
        bmat = dev.T @ dev / (m - 1)
        vcov = pd.DataFrame(u.mean(axis=0) + (1.0 + 1.0 / m) * bmat, index=names, columns=names)
    target = estimand if estimand is not None else (own if own is not None else names[0])
    if target not in names:
        raise OptionError(f"`estimand` must be one of the terms {names}; got {target!r}.")
    idx = pd.Index(names, name="term")

    def s(x: np.ndarray) -> pd.Series:
        return pd.Series(np.asarray(x, dtype=np.float64), index=idx)

    return PooledResult(
        params=s(qbar),
        ubar=s(ubar),
        b=s(b),
        t=s(t),
        df=s(df),
        riv=s(riv),
        lambda_=s(lam),
        fmi=s(fmi),
        m=m,
        dfcom=dfcom,
        estimand=target,
        rule=rule,
        vcov_matrix=vcov,
        link=_common_link(results),
    )


def _common_link(results: Sequence[Any] | None) -> str:
    """Return the link the pooled fits share (identity for estimate arrays)."""
    links = {str(getattr(r, "link", "identity")) for r in results or ()}
    if len(links) > 1:
        raise OptionError(
            f"the fits use different links {sorted(links)}; pool fits of one model only."
        )
    return links.pop() if links else "identity"
