"""One call that fits the primary analysis and its alternatives, and says why they differ."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from .._validation import check_option
from ..data import TrialData
from ..exceptions import OptionError
from ..results import TIDY_COLUMNS, ResultMixin, Summary, _fmt
from ._panel import ANALYSES, Context, run_analysis
from ._table import compare
from ._weights import ImpliedWeights, implied_weights

__all__ = ["PANEL_COLUMNS", "AnalysisComparison", "compare_analyses"]

#: Columns of :attr:`AnalysisComparison.table`, in order.
PANEL_COLUMNS = (
    "analysis",
    "model",
    "term",
    "estimate",
    "std_error",
    "conf_low",
    "conf_high",
    "p_value",
    "df",
    "method",
    "assumes",
)
_DEFAULT = tuple(ANALYSES)
_RATIO_FAMILIES = ("poisson", "negative_binomial", "binomial")


@dataclass(frozen=True, eq=False)
class AnalysisComparison(ResultMixin):
    """The primary analysis beside its alternatives, with diagnostics of their disagreement.

    Returned by :func:`steppedwedge.compare_analyses`.

    Attributes
    ----------
    table : pandas.DataFrame
        One row per fitted analysis (:data:`PANEL_COLUMNS`): the estimand of each on the
        link scale with its interval (at :attr:`confidence_level`), p-value, df, how it was
        fitted and what it assumes.
    results : dict
        ``analysis key -> result`` of every fitted analysis.
    failures : pandas.DataFrame
        ``analysis, error``: the alternatives that could not be fitted to these data and why.
    weights : dict
        ``"gls"`` and/or ``"twfe"`` -> :class:`~steppedwedge.compare.ImpliedWeights`: the
        immediate-effect estimator's implied weights on exposure times and periods.
    effect_curve : pandas.DataFrame or None
        The exposure-time effects of the ETI fit (``exposure_time, estimate, std_error,
        df``), if it was fitted.
    notes : tuple of str
        The explanations (:meth:`explain`) followed by the warnings the fits raised.
    ratio : bool
        True when the link is log or logit (``exp`` of the estimates are ratios).
    confidence_level : float
        Coverage of the intervals in :attr:`table`.

    Examples
    --------
    See :func:`steppedwedge.compare_analyses`.
    """

    table: pd.DataFrame
    results: dict[str, Any] = field(repr=False)
    failures: pd.DataFrame
    weights: dict[str, ImpliedWeights] = field(repr=False)
    effect_curve: pd.DataFrame | None
    notes: tuple[str, ...]
    ratio: bool
    confidence_level: float

    @property
    def primary(self) -> Any:
        """The primary analysis' result."""
        return self.results["primary"]

    @property
    def estimate(self) -> float:
        """The primary analysis' estimate."""
        return float(self.primary.estimate)

    def conf_int(self, confidence_level: float = 0.95) -> tuple[float, float]:
        """Return the primary analysis' confidence interval.

        Parameters
        ----------
        confidence_level : float
            In (0, 1).

        Returns
        -------
        tuple of float
        """
        lo, hi = self.primary.conf_int(confidence_level)
        return float(lo), float(hi)

    def tidy(self, confidence_level: float | None = None) -> pd.DataFrame:
        """Tabulate one row per analysis with the protocol columns.

        Parameters
        ----------
        confidence_level : float, optional
            Default :attr:`confidence_level`; another level recomputes the intervals from
            the results.

        Returns
        -------
        pandas.DataFrame
            ``term`` is the analysis' row label; columns :data:`TIDY_COLUMNS` plus
            ``analysis`` (its key), ``method`` and ``assumes``.
        """
        table = self.table
        if confidence_level is not None and confidence_level != self.confidence_level:
            table = _panel_table(self.results, confidence_level)
        stat = table["estimate"] / table["std_error"].where(table["std_error"] > 0)
        out = pd.DataFrame(
            {
                "term": table["model"],
                "estimate": table["estimate"],
                "std_error": table["std_error"],
                "statistic": stat,
                "df": table["df"],
                "p_value": table["p_value"],
                "conf_low": table["conf_low"],
                "conf_high": table["conf_high"],
            }
        )
        extra = table[["analysis", "method", "assumes"]]
        tidy: pd.DataFrame = pd.concat([out[list(TIDY_COLUMNS)], extra], axis=1)
        return tidy

    def explain(self) -> list[str]:
        """Say in words where the analyses disagree and what in the data explains it.

        Returns
        -------
        list of str
            Sentences on: the spread of the estimates and which intervals exclude the
            primary estimate; immediate against exposure-time effects with the implied
            weights (negative ones flagged); model-based against robust standard errors;
            the random-effect structures; the staggered-DiD estimators' comparisons.
        """
        return _explain(self)

    def summary(self) -> Summary:
        """Summarise: the panel table, the implied weights, the failures and the notes.

        Returns
        -------
        Summary
        """
        shown = self.table[["model", "estimate", "conf_low", "conf_high", "p_value", "df"]]
        if self.ratio:
            shown = shown.assign(
                ratio=np.exp(shown["estimate"]),
                ratio_low=np.exp(shown["conf_low"]),
                ratio_high=np.exp(shown["conf_high"]),
            )
        tables: list[tuple[str, pd.DataFrame]] = [("Analyses (link scale)", shown)]
        for kind, w in self.weights.items():
            tables.append(
                (f"Implied weights on exposure times ({kind}: {w.description})", w.exposure)
            )
        if self.effect_curve is not None:
            tables.append(("Effect by exposure time (ETI fit)", self.effect_curve))
        if len(self.failures):
            tables.append(("Not fitted", self.failures))
        lo, hi = self.conf_int(self.confidence_level)
        header = (
            ("Primary analysis", str(self.table["method"].iloc[0])),
            (
                "Primary estimate",
                f"{_fmt(self.estimate)} ({100 * self.confidence_level:g}% CI {_fmt(lo)} to "
                f"{_fmt(hi)})",
            ),
            ("Analyses", f"{len(self.table)} fitted, {len(self.failures)} not fitted"),
        )
        return Summary(
            title="Primary analysis and alternatives",
            header=header,
            tables=tuple(tables),
            notes=self.notes,
        )

    def plot(self, ax: Any = None, **kwargs: Any) -> Any:
        """Draw the forest plot of the panel (:func:`steppedwedge.plotting.plot_forest`).

        Parameters
        ----------
        ax : matplotlib.axes.Axes, optional
            Axes to draw on (a new figure when None).
        **kwargs
            Passed to :func:`~steppedwedge.plotting.plot_forest`.

        Returns
        -------
        matplotlib.axes.Axes
        """
        from ..plotting.forest import plot_forest

        kwargs.setdefault("ratio", self.ratio)
        return plot_forest(self.table, ax=ax, **kwargs)

    def plot_weights(self, ax: Any = None) -> Any:
        """Draw the implied weights on exposure times with the ETI effect curve.

        Parameters
        ----------
        ax : matplotlib.axes.Axes, optional
            Axes to draw on (a new figure when None).

        Returns
        -------
        matplotlib.axes.Axes
            See :func:`steppedwedge.plotting.plot_implied_weights`.
        """
        from ..plotting.forest import plot_implied_weights

        return plot_implied_weights(self.weights, self.effect_curve, ax=ax)

    def __repr__(self) -> str:
        return (
            f"AnalysisComparison({len(self.table)} analyses, primary estimate "
            f"{self.estimate:.4g}, {len(self.failures)} not fitted)"
        )


def _panel_table(results: Mapping[str, Any], confidence_level: float) -> pd.DataFrame:
    labels = {k: ANALYSES[k].label if k in ANALYSES else k for k in results}
    if "decay" in results:
        labels["decay"] = f"random={results['decay'].random!r}"
    table = compare({labels[k]: r for k, r in results.items()}, confidence_level=confidence_level)
    table.insert(0, "analysis", list(results))
    table["assumes"] = [ANALYSES[k].assumes if k in ANALYSES else "" for k in results]
    out: pd.DataFrame = table[list(PANEL_COLUMNS)]
    return out


def _cell_variances(td: TrialData) -> np.ndarray:
    """Residual variance multiplier of each cell's mean on the link scale (linearised)."""
    cells = td.cells()
    n = np.where(cells.observed, cells.n, 1.0)
    if td.family == "gaussian":
        out: np.ndarray = 1.0 / n
    elif td.family == "binomial":
        p = (cells.total + 0.5) / (n + 1.0)
        out = 1.0 / (n * p * (1.0 - p))
    else:  # log link: Var(log count) ~ 1 / mu, mu at the observed count
        out = 1.0 / (cells.total + 0.5)
    return out


def _weights(ctx: Context, primary: Any) -> tuple[dict[str, ImpliedWeights], list[str]]:
    """GLS (at the primary fit's components) and TWFE implied weights of the IT estimator."""
    roles = {k: v for k, v in ctx.roles.items() if k not in ("missing",)}
    td = TrialData.from_frame(ctx.data, **roles, **_fam(ctx.primary))
    out: dict[str, ImpliedWeights] = {}
    notes: list[str] = []
    if not td.periods_ordered:  # exposure times need the calendar order of the periods
        notes.append(
            "no implied weights: the period labels have no known order (pass period_order=)."
        )
        return out, notes
    cells = td.cells()
    x = np.where(cells.observed, cells.treatment, np.nan)
    clusters, periods = list(td.clusters), list(td.periods)
    vc = dict(getattr(primary, "variance_components", {}) or {})
    supported = {"sigma2", "tau2", "gamma2", "decay"}
    if primary is not None and set(vc) <= supported and primary.decay_scale == "period":
        if td.family != "gaussian":
            vc["sigma2"] = 1.0
        out["gls"] = implied_weights(
            x,
            clusters=clusters,
            periods=periods,
            kind="gls",
            inv_size=_cell_variances(td),
            components=vc,
        )
        if td.family != "gaussian":
            notes.append(
                "GLS implied weights of the GLMM use its linearised (working) model: cell "
                "log-rate variance 1 / count at the observed counts."
            )
    elif primary is not None:
        notes.append(
            f"no GLS implied weights for random={primary.random!r} "
            f"(decay_scale={primary.decay_scale!r}); two-way fixed-effects weights only."
        )
    out["twfe"] = implied_weights(x, clusters=clusters, periods=periods, kind="twfe")
    return out, notes


def _fam(primary: Mapping[str, Any]) -> dict[str, Any]:
    return {k: primary[k] for k in ("family",) if k in primary}


def compare_analyses(
    data: pd.DataFrame,
    *,
    outcome: str,
    cluster: str,
    period: str,
    treatment: str,
    family: str = "gaussian",
    exposure: str | None = None,
    trials: str | None = None,
    primary: Mapping[str, Any] | None = None,
    analyses: Sequence[str] | None = None,
    allocation: Any = None,
    n_permutations: int = 999,
    rng: Any = None,
    confidence_level: float = 0.95,
    period_order: Sequence[Any] | None = None,
) -> AnalysisComparison:
    """Fit the planned primary analysis and a panel of alternatives, and explain differences.

    Parameters
    ----------
    data : pandas.DataFrame
        Trial rows (never modified).
    outcome, cluster, period, treatment, family, exposure, trials : str
        As :func:`steppedwedge.fit`.
    primary : mapping, optional
        Further :func:`steppedwedge.fit` options of the pre-specified primary analysis
        (e.g. ``{"random": "nested+decay"}``); default the mixed model with nested random
        effects and categorical periods.  Every model-based alternative changes one thing
        of it.
    analyses : sequence of str, optional
        Alternatives to fit, from ``"robust"`` (primary with the CR2 variance), ``"eti"``
        (exposure-time indicators, TATE over all exposure times), ``"decay"`` (the other of
        nested / nested+decay), ``"gee"``, ``"fixed-effects"``, ``"cluster-summary"``,
        ``"randomisation"`` (twfe statistic over ``allocation``), ``"callaway-santanna"``,
        ``"imputation"``, ``"vertical"``; default all.  The primary is always fitted first.
    allocation : Allocation, optional
        The trial's allocation space for the randomisation test (default: permutations of
        the observed sequences).
    n_permutations : int, default 999
        Re-randomisations of the randomisation test.
    rng : int or numpy.random.Generator, optional
        Seed of the randomisation test.
    confidence_level : float, default 0.95
        Level of the intervals in the table.
    period_order : sequence, optional
        Calendar order of text period labels (as :func:`steppedwedge.fit`).

    Returns
    -------
    AnalysisComparison
        The table (``.tidy()``), forest plot (``.plot()``), implied weights of the
        immediate-effect estimator, the ETI effect curve, the analyses that could not be
        fitted (with the reason) and the explanations (``.explain()``).

    Raises
    ------
    OptionError
        For an unknown analysis name.
    DataError, OptionError
        From the primary analysis (alternatives that fail are reported in ``failures``).

    Notes
    -----
    Why the analyses can differ, and what the diagnostics show:

    * The immediate-effect (IT) estimate is ``sum_e omega_e delta_e`` when the effect
      ``delta_e`` changes with exposure time ``e``.  ``weights["gls"]`` (the mixed model's
      GLS at the fitted variance components; for GLMMs its linearised working model) and
      ``weights["twfe"]`` (two-way fixed effects) give ``omega_e`` exactly; they sum to 1
      and late exposure times can get negative weights (Kenny et al. 2022), the
      "forbidden comparisons" in which already-treated cells act as controls.  The ETI
      fit's ``effect_curve`` shows how ``delta_e`` actually moves.
    * Callaway-Sant'Anna and imputation use only not-yet-treated comparisons and so carry
      no negative weights, but on counts they average log cell rates (ratios of
      geometric means) and drop the periods after the last cohort starts.
    * Model-based and robust standard errors differ when the random effects do not
      describe the correlation over time (e.g. decay).

    References
    ----------
    Kenny A, Voldal EC, Xia F, Heagerty PJ, Hughes JP (2022). Stat Med 41:4311-4339.
    Callaway B, Sant'Anna PHC (2021). J Econometrics 225:200-230.
    Borusyak K, Jaravel X, Spiess J (2024). Rev Econ Stud 91:3253-3285.
    Thompson JA, Davey C, Fielding K, Hargreaves JR, Hayes RJ (2018). Stat Med
    37:3479-3493 (vertical analyses).

    Examples
    --------
    >>> import numpy as np, pandas as pd
    >>> import steppedwedge as sw
    >>> rng = np.random.default_rng(4)
    >>> rows = [(i, j, float(j > i % 4), 0.4 * (j > i % 4) + rng.normal())
    ...         for i in range(12) for j in range(5) for _ in range(8)]
    >>> df = pd.DataFrame(rows, columns=["c", "t", "x", "y"])
    >>> panel = sw.compare_analyses(df, outcome="y", cluster="c", period="t", treatment="x",
    ...                             analyses=["robust", "eti", "cluster-summary"], rng=1)
    >>> panel.table["analysis"].tolist()
    ['primary', 'robust', 'eti', 'cluster-summary']
    >>> panel.weights["twfe"].exposure["weight"].round(3).tolist()
    [1.0, 0.3, -0.1, -0.2]
    """
    names = list(_DEFAULT[1:] if analyses is None else analyses)
    for name in names:
        check_option("analyses", name, _DEFAULT[1:])
    if len(set(names)) != len(names):
        raise OptionError(f"`analyses` lists an analysis twice: {names}.")
    roles: dict[str, Any] = dict(
        outcome=outcome, cluster=cluster, period=period, treatment=treatment
    )
    for key, value in (("exposure", exposure), ("trials", trials), ("period_order", period_order)):
        if value is not None:
            roles[key] = value
    spec = {"family": family, **dict(primary or {})}
    ctx = Context(data, roles, spec, allocation, int(n_permutations), rng)
    from ..models.fit import fit

    first = fit(data, **roles, **spec)  # the primary's errors are the caller's to see
    results: dict[str, Any] = {"primary": first}
    failures: list[tuple[str, str]] = []
    seen: list[str] = []
    for name in names:
        res, messages, error = run_analysis(name, ctx)
        seen += [f"{ANALYSES[name].label}: {m}" for m in messages]
        if res is None:
            failures.append((name, str(error)))
        else:
            results[name] = res
    return _assemble(ctx, results, failures, seen, confidence_level)


def _assemble(
    ctx: Context,
    results: dict[str, Any],
    failures: list[tuple[str, str]],
    seen: list[str],
    confidence_level: float,
) -> AnalysisComparison:
    weights, wnotes = _weights(ctx, results["primary"])
    eti = results.get("eti")
    link = getattr(results["primary"], "link", None)
    ratio = ctx.primary["family"] in _RATIO_FAMILIES and link not in ("identity",)
    comparison = AnalysisComparison(
        table=_panel_table(results, confidence_level),
        results=results,
        failures=pd.DataFrame(failures, columns=["analysis", "error"]),
        weights=weights,
        effect_curve=None if eti is None else eti.effect_curve,
        notes=(),
        ratio=bool(ratio),
        confidence_level=confidence_level,
    )
    notes = (*_explain(comparison), *wnotes, *ctx.notes, *seen)
    return AnalysisComparison(**{**comparison.__dict__, "notes": notes})


def _explain(c: AnalysisComparison) -> list[str]:
    """Sentences on the disagreement (see :meth:`AnalysisComparison.explain`)."""
    t = c.table
    est = float(t["estimate"].iloc[0])
    values = t["estimate"].to_numpy(dtype=float)
    models = t["model"].tolist()
    lo, hi = int(np.argmin(values)), int(np.argmax(values))
    out = [
        f"Estimates range from {_fmt(values[lo])} ({models[lo]}) to {_fmt(values[hi])} "
        f"({models[hi]}); primary {_fmt(est)}."
    ]
    excl = t[(t["conf_low"] > est) | (t["conf_high"] < est)]["model"].tolist()
    if excl:
        out.append(f"Intervals that exclude the primary estimate: {', '.join(excl)}.")
    out += _explain_exposure(c, est)
    if "robust" in c.results:
        se_m, se_r = float(c.primary.std_error), float(c.results["robust"].std_error)
        if se_m > 0 and math.isfinite(se_r):
            out.append(
                f"Robust (CR2) / model-based standard error: {_fmt(se_r / se_m)}"
                + (
                    " - the random effects understate the correlation over time."
                    if se_r > 1.25 * se_m
                    else "."
                )
            )
    if "decay" in c.results:
        d = c.results["decay"]
        out.append(
            f"random={d.random!r}: estimate {_fmt(float(d.estimate))} (SE "
            f"{_fmt(float(d.std_error))}) against {_fmt(est)} (SE "
            f"{_fmt(float(c.primary.std_error))}) with random={c.primary.random!r}."
        )
    return out


def _explain_exposure(c: AnalysisComparison, est: float) -> list[str]:
    out = []
    for kind, w in c.weights.items():
        neg = w.negative_exposure_times
        weights = ", ".join(
            f"{int(e)}: {_fmt(float(v), 2)}"
            for e, v in zip(w.exposure["exposure_time"], w.exposure["weight"], strict=True)
        )
        out.append(
            f"Immediate-effect estimator ({kind}) weights on exposure times {weights}"
            + (
                f"; negative at {neg}: if the effect changes with exposure time, the "
                "estimate mixes effects with negative weights."
                if neg
                else "."
            )
        )
    if "eti" in c.results and c.effect_curve is not None and len(c.effect_curve):
        cur = c.effect_curve
        out.append(
            f"ETI fit: effect at exposure time 1 {_fmt(float(cur['estimate'].iloc[0]))}, at "
            f"{int(cur['exposure_time'].iloc[-1])} {_fmt(float(cur['estimate'].iloc[-1]))}; "
            f"its average (TATE) {_fmt(float(c.results['eti'].estimate))} against the "
            f"immediate-effect {_fmt(est)}."
        )
    return out
