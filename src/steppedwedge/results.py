"""The shared result protocol: ``summary()``, ``tidy()``, ``conf_int()``, ``_repr_html_``.

Every estimation result builds its presentation from one source of truth, :meth:`tidy`
(a DataFrame with the columns ``term, estimate, std_error, statistic, df, p_value,
conf_low, conf_high``).  :class:`Summary` is a small text/HTML/Markdown/LaTeX container
returned by ``summary()``.  :class:`FitResult` is the frozen result of
:func:`steppedwedge.fit`.
"""

from __future__ import annotations

import html
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Generic, TypeVar, overload

import numpy as np
import pandas as pd
from scipy import stats

from ._validation import check_option
from .exceptions import OptionError

__all__ = [
    "RATIO_LINKS",
    "TIDY_COLUMNS",
    "EstimationResult",
    "FitResult",
    "ResultMixin",
    "Summary",
    "t_interval",
    "t_pvalue",
    "wald_table",
]

#: Columns of every ``tidy()`` table, in order.
TIDY_COLUMNS = (
    "term",
    "estimate",
    "std_error",
    "statistic",
    "df",
    "p_value",
    "conf_low",
    "conf_high",
)


def t_pvalue(statistic: float, df: float) -> float:
    """Two-sided p-value of a t (``df`` finite) or z (``df`` infinite) statistic."""
    if not np.isfinite(statistic):
        return float("nan")
    if df is None or not np.isfinite(df):
        return float(2.0 * stats.norm.sf(abs(statistic)))
    return float(2.0 * stats.t.sf(abs(statistic), df))


def t_interval(
    estimate: float, std_error: float, df: float, confidence_level: float
) -> tuple[float, float]:
    """Symmetric t (or normal) interval."""
    if not 0.0 < confidence_level < 1.0:
        raise OptionError(f"`confidence_level` must lie in (0, 1); got {confidence_level!r}.")
    q = 0.5 + confidence_level / 2.0
    crit = stats.norm.ppf(q) if (df is None or not np.isfinite(df)) else stats.t.ppf(q, df)
    return float(estimate - crit * std_error), float(estimate + crit * std_error)


def wald_table(
    terms: Sequence[Any],
    estimates: Sequence[float] | np.ndarray,
    std_errors: Sequence[float] | np.ndarray,
    dfs: Sequence[float] | np.ndarray,
    confidence_level: float,
) -> pd.DataFrame:
    """Build the ``tidy()`` table of Wald statistics: one row per term, ``TIDY_COLUMNS``.

    The t (finite ``df``) or z (infinite ``df``) statistic, two-sided p-value and symmetric
    interval of every term; the statistic is NaN where the standard error is not positive.
    """
    rows = []
    for term, est, se, df in zip(terms, estimates, std_errors, dfs, strict=True):
        est, se, df = float(est), float(se), float(df)
        stat = est / se if se > 0 else float("nan")
        lo, hi = t_interval(est, se, df, confidence_level)
        rows.append((term, est, se, stat, df, t_pvalue(stat, df), lo, hi))
    out: pd.DataFrame = pd.DataFrame(rows, columns=list(TIDY_COLUMNS))
    return out


def _fmt(x: Any, digits: int = 4) -> str:
    if isinstance(x, (bool, np.bool_)):
        return "yes" if x else "no"
    if isinstance(x, (int, np.integer)):
        return str(int(x))
    if isinstance(x, (float, np.floating)):
        if math.isnan(x):
            return "NA"
        if math.isinf(x):
            return "inf"
        if x != 0 and (abs(x) < 1e-3 or abs(x) >= 1e5):
            return f"{x:.{digits - 1}e}"
        return f"{x:.{digits}f}"
    return str(x)


@dataclass(frozen=True)
class Summary:
    """A printable summary: a title, key/value header lines and tables.

    Render with :meth:`as_text`, :meth:`as_html`, :meth:`as_markdown` or
    :meth:`as_latex`; ``str(summary)`` is the text form.
    """

    title: str
    header: tuple[tuple[str, str], ...] = ()
    tables: tuple[tuple[str, pd.DataFrame], ...] = ()
    notes: tuple[str, ...] = ()

    def _table_strings(self, table: pd.DataFrame) -> pd.DataFrame:
        return table.apply(lambda col: col.map(_fmt)) if len(table) else table

    def as_text(self) -> str:
        """Plain-text rendering."""
        width = 78
        lines = [self.title, "=" * width]
        if self.header:
            key_w = max(len(k) for k, _ in self.header)
            lines += [f"{k:<{key_w}}  {v}" for k, v in self.header]
        for name, table in self.tables:
            lines += ["-" * width, name]
            lines.append(self._table_strings(table).to_string(index=False))
        if self.notes:
            lines.append("-" * width)
            lines += [f"Note: {n}" for n in self.notes]
        return "\n".join(lines)

    def as_markdown(self) -> str:
        """Markdown rendering (pipe tables)."""
        out = [f"**{self.title}**", ""]
        out += [f"- {k}: {v}" for k, v in self.header]
        for name, table in self.tables:
            t = self._table_strings(table)
            out += [
                "",
                f"*{name}*",
                "",
                "| " + " | ".join(map(str, t.columns)) + " |",
                "|" + "---|" * len(t.columns),
            ]
            out += ["| " + " | ".join(map(str, row)) + " |" for row in t.itertuples(index=False)]
        out += ["", *[f"> {n}" for n in self.notes]] if self.notes else []
        return "\n".join(out)

    def as_html(self) -> str:
        """HTML rendering (self-contained, no styles)."""
        parts = [f"<div class='steppedwedge-summary'><strong>{html.escape(self.title)}</strong>"]
        if self.header:
            parts.append("<table>")
            parts += [
                f"<tr><th style='text-align:left'>{html.escape(k)}</th>"
                f"<td>{html.escape(v)}</td></tr>"
                for k, v in self.header
            ]
            parts.append("</table>")
        for name, table in self.tables:
            parts.append(f"<p><em>{html.escape(name)}</em></p>")
            parts.append(self._table_strings(table).to_html(index=False, escape=True, border=0))
        parts += [f"<p><small>{html.escape(n)}</small></p>" for n in self.notes]
        parts.append("</div>")
        return "\n".join(parts)

    def as_latex(self) -> str:
        """LaTeX rendering of the tables (booktabs-free ``tabular``)."""
        out = [f"% {self.title}"]
        for name, table in self.tables:
            t = self._table_strings(table)
            out.append(f"% {name}")
            out.append("\\begin{tabular}{" + "l" * len(t.columns) + "}")
            out.append(" & ".join(str(c).replace("_", "\\_") for c in t.columns) + " \\\\")
            for row in t.itertuples(index=False):
                out.append(" & ".join(str(v).replace("_", "\\_") for v in row) + " \\\\")
            out.append("\\end{tabular}")
        return "\n".join(out)

    def __str__(self) -> str:
        return self.as_text()

    def _repr_html_(self) -> str:
        return self.as_html()


class ResultMixin:
    """Presentation methods shared by every result (needs ``tidy`` and ``summary``).

    ``__str__`` is the text summary and ``_repr_html_`` the HTML one.  Estimation results
    derive from :class:`EstimationResult`, which adds the inference protocol.
    """

    def tidy(self, confidence_level: float = 0.95) -> pd.DataFrame:  # pragma: no cover - abstract
        """One row per term (the single source of truth for presentation)."""
        raise NotImplementedError

    def summary(self) -> Summary:  # pragma: no cover - abstract
        """Printable :class:`Summary` of the result."""
        raise NotImplementedError

    def __str__(self) -> str:
        return self.summary().as_text()

    def _repr_html_(self) -> str:
        return self.summary().as_html()


_T = TypeVar("_T")
_R = TypeVar("_R", bound="EstimationResult")
#: Links whose coefficients exponentiate to a ratio (odds, risk or rate, hazard ratio).
RATIO_LINKS = ("log", "logit", "cloglog")
#: Variance estimators of the mixed models (``vcov=`` of :func:`steppedwedge.fit`).
MIXED_VCOV = ("model", "cr0", "cr2", "robust", "cr3", "kc", "md", "fg", "mbn")


class _Derived(Generic[_T]):
    """A read-only attribute computed by the base that a subclass may redeclare as a field.

    A non-data descriptor hidden from class-level lookup: :mod:`dataclasses` then does not
    take it for a field default, and an instance value (a dataclass field) shadows it.
    """

    def __init__(self, fget: Callable[[Any], _T]) -> None:
        self.fget = fget
        self.name = fget.__name__
        self.__doc__ = fget.__doc__

    @overload
    def __get__(self, obj: None, owner: type | None = None) -> _Derived[_T]: ...
    @overload
    def __get__(self, obj: object, owner: type | None = None) -> _T: ...
    def __get__(self, obj: object | None, owner: type | None = None) -> _T | _Derived[_T]:
        if obj is None:
            raise AttributeError(self.name)
        return self.fget(obj)


class EstimationResult(ResultMixin):
    """Base of every estimation result: one implementation of the inference protocol.

    A subclass provides :meth:`_term_table` (columns ``term, estimate, std_error, df``, plus
    an optional ``std_error_model``; one row per reported term, the estimand's row
    included), ``estimand`` (the estimand's row label), ``link`` (default ``"identity"``),
    ``method_label`` (the human name used by :func:`steppedwedge.compare` and the report)
    and ``summary()``; and, when it can recompute its variance, ``_vcov_options`` and
    ``_with_vcov`` (or a ``_refit`` callable taking ``vcov=`` and ``dof=``).

    The base supplies :attr:`estimate`, :attr:`std_error`, :attr:`df`, :attr:`statistic`
    and :attr:`pvalue` (from the estimand's row; a dataclass subclass may hold any of
    them as fields instead), :meth:`conf_int`, :meth:`tidy`, :attr:`ratio`,
    :meth:`with_vcov`, ``__str__``, ``_repr_html_`` and a default forest :meth:`plot`.

    Examples
    --------
    >>> import pandas as pd
    >>> from steppedwedge.results import EstimationResult, Summary
    >>> class Toy(EstimationResult):
    ...     estimand, link, method_label = "treatment", "log", "toy"
    ...     def _term_table(self):
    ...         return pd.DataFrame({"term": ["treatment"], "estimate": [-0.2],
    ...                              "std_error": [0.1], "df": [float("inf")]})
    ...     def summary(self):
    ...         return Summary(title="toy", tables=(("Effects", self.tidy()),))
    >>> res = Toy()
    >>> round(res.pvalue, 4), [round(v, 3) for v in res.ratio]
    (0.0455, [0.819, 0.673, 0.996])

    References
    ----------
    Sheppard K et al. linearmodels: ``linearmodels.shared.base`` (the shared results
    protocol this follows).
    """

    estimand: str
    #: Variance estimators :meth:`with_vcov` accepts (empty: not supported).
    _vcov_options: ClassVar[tuple[str, ...]] = ()

    def _term_table(self) -> pd.DataFrame:  # pragma: no cover - abstract
        """Columns ``term, estimate, std_error, df`` (+ ``std_error_model``), one row per term."""
        raise NotImplementedError

    def _estimand_value(self, column: str) -> float:
        table = self._term_table()
        hit = table.loc[table["term"] == self.estimand, column]
        if len(hit) == 0:
            raise KeyError(f"the term table has no row for the estimand {self.estimand!r}.")
        return float(hit.iloc[0])

    # ------------------------------------------------------------------ the estimand
    @_Derived
    def method_label(self) -> str:
        """How the estimate was obtained (row label of :func:`steppedwedge.compare`)."""
        return str(getattr(self, "method", "") or type(self).__name__)

    @_Derived
    def link(self) -> str:
        """Link function of the estimates (``"identity"`` unless the model has another)."""
        return "identity"

    @_Derived
    def estimate(self) -> float:
        """Estimated estimand, on the link scale."""
        return self._estimand_value("estimate")

    @_Derived
    def std_error(self) -> float:
        """Estimated standard error of :attr:`estimate`."""
        return self._estimand_value("std_error")

    @_Derived
    def df(self) -> float:
        """Denominator degrees of freedom of :attr:`estimate` (``inf``: normal reference)."""
        return self._estimand_value("df")

    @_Derived
    def statistic(self) -> float:
        """Wald t (or z) statistic ``estimate / std_error`` (NaN unless the SE is positive)."""
        se = self.std_error
        return float(self.estimate / se) if se > 0 else float("nan")

    @_Derived
    def pvalue(self) -> float:
        """Two-sided p-value of the estimand against zero (t with :attr:`df`, or normal)."""
        return t_pvalue(self.statistic, self.df)

    def conf_int(self, confidence_level: float = 0.95) -> tuple[float, float]:
        """Confidence interval of the estimand (link scale; t with :attr:`df`, or normal).

        Parameters
        ----------
        confidence_level : float
            Coverage, in (0, 1).

        Returns
        -------
        tuple of float
            ``(low, high)``.
        """
        return t_interval(self.estimate, self.std_error, self.df, confidence_level)

    @property
    def ratio(self) -> tuple[float, float, float] | None:
        """``exp`` of the estimand and of its 95% interval for log, logit and cloglog links.

        The odds ratio (logit), risk or rate ratio (log) or hazard ratio (cloglog) with its
        interval; None on other links.  Other levels: ``tidy(confidence_level,
        exponentiate=True)``.
        """
        if self.link not in RATIO_LINKS:
            return None
        lo, hi = self.conf_int()
        return float(np.exp(self.estimate)), float(np.exp(lo)), float(np.exp(hi))

    # ------------------------------------------------------------------ tables
    def tidy(self, confidence_level: float = 0.95, *, exponentiate: bool = False) -> pd.DataFrame:
        """One row per reported term, Wald inference (the source of every presentation).

        Parameters
        ----------
        confidence_level : float, default 0.95
            Coverage of the ``conf_low``, ``conf_high`` interval, in (0, 1).
        exponentiate : bool, default False
            Report ``exp(estimate)`` and exponentiated limits (odds, risk, rate or hazard
            ratios); log, logit and cloglog links only.  ``std_error``, ``statistic`` and
            ``p_value`` stay on the link scale.

        Returns
        -------
        pandas.DataFrame
            Columns ``term, estimate, std_error, statistic, df, p_value, conf_low,
            conf_high``; with a cluster-robust variance the inference columns are robust
            and a last column ``std_error_model`` holds the model-based standard errors.

        Raises
        ------
        OptionError
            ``exponentiate=True`` on another link.
        """
        if exponentiate and self.link not in RATIO_LINKS:
            raise OptionError(
                "`exponentiate=True` needs a log, logit or cloglog link; this fit uses "
                f"link={self.link!r}."
            )
        t = self._term_table()
        est, se, df = (t[c].to_numpy(dtype=float) for c in ("estimate", "std_error", "df"))
        out = wald_table(t["term"].tolist(), est, se, df, confidence_level)
        if "std_error_model" in t.columns:
            out["std_error_model"] = t["std_error_model"].to_numpy(dtype=float)
        if exponentiate:
            for c in ("estimate", "conf_low", "conf_high"):
                out[c] = np.exp(out[c])
        return out

    # ------------------------------------------------------------------ variance
    def with_vcov(self: _R, vcov: str, *, dof: str | float | None = None) -> _R:
        """Return a new result with another variance estimator (the fit is not mutated).

        Parameters
        ----------
        vcov : str
            The variance estimator; the result's ``_vcov_options`` lists those it accepts.
        dof : str or float, optional
            Denominator df rule of the new result; None applies the default rule of the new
            ``vcov`` (as a refit with that ``vcov`` and no ``dof`` would), for every result.

        Returns
        -------
        EstimationResult
            Of the same class; whether the variance is recomputed from stored pieces or by
            refitting is stated by the subclass.

        Raises
        ------
        OptionError
            An estimator this result does not support, or a result that cannot recompute
            its variance.
        """
        if self._vcov_options:
            check_option("vcov", vcov, self._vcov_options)
        return self._with_vcov(vcov, dof)

    def _with_vcov(self: _R, vcov: str, dof: str | float | None) -> _R:
        """Refit through ``self._refit(vcov=, dof=)`` when the result stores one."""
        refit = getattr(self, "_refit", None)
        if callable(refit):
            out: _R = refit(vcov=vcov, dof=dof)
            return out
        if self._vcov_options:
            raise OptionError(
                f"this {self.method_label} result stores no fit to recompute its variance "
                "from; refit with the `vcov=` option instead."
            )
        raise OptionError(
            f"with_vcov() is not available for {self.method_label} results (supported "
            "estimators: none); refit with the `vcov=` option instead."
        )

    # ------------------------------------------------------------------ plot
    def plot(self, ax: Any = None, *, confidence_level: float = 0.95) -> Any:
        """Forest plot of the reported terms (period effects and intercept left out).

        Parameters
        ----------
        ax : matplotlib.axes.Axes, optional
            Axes to draw on (a new figure when None).
        confidence_level : float, default 0.95
            Coverage of the error bars.

        Returns
        -------
        matplotlib.axes.Axes
            The Axes drawn on.
        """
        from .plotting.forest import plot_forest

        table = self._plot_terms(self.tidy(confidence_level))
        return plot_forest(
            table.rename(columns={"term": "model"}), ax, label=self._plot_label(), primary=None
        )

    def _plot_terms(self, table: pd.DataFrame) -> pd.DataFrame:
        """Rows of ``tidy()`` that :meth:`plot` draws: not period effects or the intercept."""
        keep = ~table["term"].astype(str).str.startswith("period") & (
            table["term"] != "(Intercept)"
        )
        return table[keep] if keep.any() else table

    def _plot_label(self) -> str:
        """Return the x-axis label of :meth:`plot`."""
        return f"estimate ({self.link} scale)"


@dataclass(frozen=True, eq=False)
class FitResult(EstimationResult):
    """Result of :func:`steppedwedge.fit`: the estimand, its inference and the fitted model.

    Attributes
    ----------
    estimand : str
        What :attr:`estimate` estimates: ``"treatment"`` (immediate effect), ``"TATE[e1,e2]"``
        (time-averaged effect over exposure times ``e1..e2``) or ``"PTE[e]"``.
    estimate, std_error, df : float
        The estimand, its standard error (Kenward-Roger adjusted with ``dof="kenward-roger"``,
        cluster-robust with a robust ``vcov``, else model-based) and the denominator degrees
        of freedom (``inf`` for ``dof="normal"``).
    params : pandas.Series
        Fixed-effect estimates.
    vcov_matrix : pandas.DataFrame
        Covariance of :attr:`params` used for inference.
    vcov_model : pandas.DataFrame
        Model-based covariance ``(X'V^{-1}X)^{-1}``.
    variance_components : dict
        Named variances (``tau2``, ``gamma2``, ``sigma2``, ...; ``decay``, ``rho``).
    loglik : float
        Log-likelihood (REML criterion for REML fits) with lme4's constants.
    converged, singular : bool
        Optimiser convergence; a variance component on the boundary (zero variance,
        correlation +-1, decay +-1).
    correlations : dict
        ``name -> (estimate, low, high)`` for ``icc``, ``cac`` and ``decay`` where defined
        (Wald intervals on the logit / atanh scale; NaN bounds on the boundary).
    vcov : str
        ``"model"`` or the cluster-robust estimator (``"cr0"``, ``"cr2"``, ``"cr3"``, ``"kc"``,
        ``"md"``, ``"fg"``, ``"mbn"``; :mod:`steppedwedge.inference.sandwich`).
    std_error_model : float or None
        With a robust ``vcov``: the model-based standard error of the estimand, reported
        beside the robust :attr:`std_error` (``tidy()`` then has a ``std_error_model``
        column); ``None`` otherwise.
    method : str
        Estimation method (``"reml"``, ``"ml"``; ``"laplace"``, ``"agq"`` for GLMMs).
    dof : str
        The degrees-of-freedom rule that gave :attr:`df`.
    random, time, effect : str
        The random-effects structure, the model of the periods and the treatment-effect
        model of the fit (as given to :func:`steppedwedge.fit`).
    n_obs, n_clusters, n_periods : int
        Observations, clusters and periods in the fit.
    terms : pandas.DataFrame
        Every reported fixed effect, ``term, estimate, std_error, df`` (plus
        ``std_error_model`` with a robust ``vcov``): the source of :meth:`tidy`.
    effect_curve : pandas.DataFrame or None
        With an exposure-time effect model, one row per exposure time
        (``exposure_time, estimate, std_error, df``); None for the immediate effect.
    contrast : ndarray or None
        Weights of the estimand over :attr:`params` (``estimate = contrast @ params``).
    outcome : str
        Name of the outcome column.
    covariates : str or None
        The adjustment covariates as given (None without adjustment).
    messages : tuple of str
        Notes on the fit (convergence, boundary estimates) shown in the summary.
    decay_scale : {"period", "time"}
        What the decay of ``random="decay"`` / ``"nested+decay"`` counts: periods, or years
        between period mid-points (continuous-time decay).

    Notes
    -----
    :meth:`with_vcov` recomputes the variance (and df) from the fit stored on the result
    (Gaussian LMMs: the REML/ML estimates and cell statistics, no re-optimisation); the
    numbers equal a refit with that ``vcov``.
    """

    estimand: str
    estimate: float
    std_error: float
    df: float
    params: pd.Series
    vcov_matrix: pd.DataFrame
    vcov_model: pd.DataFrame
    variance_components: dict[str, float]
    loglik: float
    converged: bool
    singular: bool
    method: str
    dof: str
    vcov: str
    random: str
    time: str
    effect: str
    n_obs: int
    n_clusters: int
    n_periods: int
    terms: pd.DataFrame = field(repr=False)
    correlations: Mapping[str, tuple[float, float, float]] = field(default_factory=dict, repr=False)
    effect_curve: pd.DataFrame | None = field(default=None, repr=False)
    contrast: np.ndarray | None = field(default=None, repr=False)
    outcome: str = "outcome"
    covariates: str | None = None
    messages: tuple[str, ...] = ()
    std_error_model: float | None = None
    decay_scale: str = "period"

    _refit: Callable[..., Any] | None = field(default=None, repr=False, compare=False)

    #: Variance estimators of :meth:`with_vcov` (recomputed by the stored ``_refit``).
    _vcov_options: ClassVar[tuple[str, ...]] = MIXED_VCOV

    @property
    def method_label(self) -> str:
        """How the estimate was obtained, e.g. ``"LMM (REML, df: kenward-roger)"``."""
        return f"LMM ({self.method.upper()}, df: {self.dof})"

    def _term_table(self) -> pd.DataFrame:
        return self.terms

    def summary(self) -> Summary:
        """Text/HTML summary: model, estimand with df rule, fixed effects, variance components.

        Returns
        -------
        Summary
            Renders with ``as_text()``, ``as_html()``, ``as_markdown()``, ``as_latex()``.
        """
        lo, hi = self.conf_int()
        header = (
            ("Outcome", self.outcome),
            (
                "Model",
                f"Gaussian LMM, random={self.random!r}, time={self.time!r}, effect={self.effect!r}"
                + (f", decay_scale={self.decay_scale!r}" if "decay" in self.random else ""),
            ),
            ("Covariates", self.covariates or "none"),
            ("Estimation", f"{self.method.upper()}; log-likelihood {_fmt(self.loglik)}"),
            (
                "Observations",
                f"{self.n_obs} in {self.n_clusters} clusters x {self.n_periods} periods",
            ),
            ("Inference", f"df: {self.dof}; vcov: {self.vcov}"),
            (
                "Estimand",
                f"{self.estimand} = {_fmt(self.estimate)} ("
                + ("robust " if self.std_error_model is not None else "")
                + f"SE {_fmt(self.std_error)}, "
                f"df {_fmt(self.df, 2)}, p {_fmt(self.pvalue)}; 95% CI {_fmt(lo)} to {_fmt(hi)})",
            ),
            *(
                (("Model-based SE", _fmt(self.std_error_model)),)
                if self.std_error_model is not None
                else ()
            ),
            ("Converged", _fmt(self.converged)),
            ("Singular", _fmt(self.singular)),
        )
        vc = pd.DataFrame(
            {
                "component": list(self.variance_components),
                "estimate": list(self.variance_components.values()),
            }
        )
        tables = [("Fixed effects", self.tidy()), ("Variance components", vc)]
        if self.correlations:
            tables.append(
                (
                    "Correlations (95% CI)",
                    pd.DataFrame(
                        [(k, *v) for k, v in self.correlations.items()],
                        columns=["name", "estimate", "low", "high"],
                    ),
                )
            )
        if self.effect_curve is not None:
            tables.append(("Exposure-time effects", self.effect_curve))
        return Summary(
            title="Stepped-wedge mixed-model analysis",
            header=header,
            tables=tuple(tables),
            notes=self.messages,
        )

    def plot(self, ax: Any = None, *, confidence_level: float = 0.95) -> Any:
        """Plot the estimates: the exposure-time effect curve for ETI fits, else a forest plot.

        Parameters
        ----------
        ax : matplotlib.axes.Axes, optional
            Axes to draw on (a new figure when None).
        confidence_level : float, default 0.95
            Coverage of the error bars.

        Returns
        -------
        matplotlib.axes.Axes
            The Axes drawn on.
        """
        from .plotting.effects import plot_effects

        return plot_effects(self, ax=ax, confidence_level=confidence_level)

    def __repr__(self) -> str:
        return (
            f"FitResult(estimand={self.estimand!r}, estimate={self.estimate:.4g}, "
            f"std_error={self.std_error:.4g}, df={self.df:.4g}, p={self.pvalue:.3g})"
        )


def _as_sequence(x: Any) -> Sequence[Any]:  # pragma: no cover - helper kept for callers
    return list(x)
