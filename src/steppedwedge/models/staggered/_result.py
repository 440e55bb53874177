"""The result of the staggered-rollout estimators."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from ...results import EstimationResult, Summary, _fmt
from .._cell_summary import cell_summary_header

__all__ = ["StaggeredResult"]

_METHOD_LABEL = {
    "efficient-staggered": "Roth & Sant'Anna (2023) efficient estimator",
    "callaway-santanna": "Callaway & Sant'Anna (2021), group-time DiD",
    "sun-abraham": "Sun & Abraham (2021), last-treated comparison",
    "imputation": "Borusyak, Jaravel & Spiess (2024) imputation",
}


@dataclass(frozen=True, eq=False)
class StaggeredResult(EstimationResult):
    """Result of ``sw.fit(..., method="efficient-staggered" | "callaway-santanna" | ...)``.

    Attributes
    ----------
    method : str
        The estimator.
    estimand : str
        ``"simple"``, ``"cohort"``, ``"calendar"`` or ``"event-time"`` (the headline of an
        event-time fit is the mean of the requested non-negative event-time effects).
    estimate : float
        The headline estimate on the analysis scale (see :attr:`scale`).
    std_error : float
        Design-based standard error (Roth & Sant'Anna's refined variance) for the efficient,
        Callaway-Sant'Anna and Sun-Abraham estimators; BJS's conservative cluster-level
        standard error for the imputation estimator.
    std_error_neyman : float
        The Neyman (conservative, no refinement) standard error; equal to :attr:`std_error`
        for the imputation estimator.
    df : float
        ``inf``: normal reference, as the papers.
    beta : numpy.ndarray or None
        The ``beta`` of the headline estimator (``1`` for DiD, the plug-in ``beta*`` for the
        efficient one); None for the imputation estimator.
    table : pandas.DataFrame
        Further rows: event-time effects, or for Callaway-Sant'Anna / Sun-Abraham the
        group-time effects ``ATT(g, t)`` (columns ``term, estimate, std_error,
        std_error_neyman`` and, where they apply, ``cohort, period, event_time``).
    fisher_pvalue, fisher_pvalue_neyman : float or None
        Fisher randomisation p-values of the studentised headline statistic (design-based or
        Neyman SE), ``(1 + #{|t*| >= |t|}) / (1 + B)``; None without ``n_permutations``.
    n_permutations : int
    scale : str
        What each cluster-period cell was reduced to (the estimators' outcome).
    link : str
        ``"identity"``, ``"log"`` or ``"logit"``: the scale of :attr:`estimate`.
    cohorts : pandas.DataFrame
        One row per cohort: first treated period (label; None if never treated in the panel),
        number of clusters, role.
    n_clusters, n_periods : int
        Clusters and periods analysed.
    outcome : str
        The outcome column.
    messages : tuple of str
        Notes on the data (e.g. the last cohort serves only as a comparison).
    effect_curve : pandas.DataFrame or None
        Event-time fits: the event-time effects (``exposure_time, estimate, std_error,
        df``) drawn by :meth:`plot`.
    converged : bool
        Always True (closed-form estimators).
    vcov_event_time, vcov_event_time_neyman : pandas.DataFrame or None
        Event-time fits (not imputation): the joint design-based and Neyman covariance of
        the event-time estimates, as ``staggered(..., return_full_vcv = TRUE)`` (for a joint
        test of the pre-treatment placebos; the design-based one uses one ``g_min`` for all
        rows, so its diagonal can differ slightly from ``std_error**2``).

    References
    ----------
    Roth J, Sant'Anna PHC (2023). J Polit Econ Microecon 1:669-709.

    Examples
    --------
    >>> import numpy as np, pandas as pd
    >>> import steppedwedge as sw
    >>> rng = np.random.default_rng(2)
    >>> rows = [(i, t, float(t >= 1 + i % 3), rng.normal(0.4 * (t >= 1 + i % 3)))
    ...         for i in range(30) for t in range(4)]
    >>> df = pd.DataFrame(rows, columns=["ward", "month", "arm", "y"])
    >>> res = sw.fit(df, outcome="y", cluster="ward", period="month", treatment="arm",
    ...              method="callaway-santanna", estimand="event-time")
    >>> res.tidy()["term"].tolist()
    ['event-time', 'event_time[0]', 'event_time[1]']
    """

    method: str
    estimand: str
    estimate: float
    std_error: float
    std_error_neyman: float
    beta: np.ndarray | None
    table: pd.DataFrame
    scale: str
    link: str
    cohorts: pd.DataFrame
    n_clusters: int
    n_periods: int
    outcome: str = "outcome"
    df: float = math.inf
    fisher_pvalue: float | None = None
    fisher_pvalue_neyman: float | None = None
    n_permutations: int = 0
    messages: tuple[str, ...] = ()
    effect_curve: pd.DataFrame | None = field(default=None, repr=False)
    converged: bool = True
    vcov_event_time: pd.DataFrame | None = field(default=None, repr=False)
    vcov_event_time_neyman: pd.DataFrame | None = field(default=None, repr=False)

    @property
    def method_label(self) -> str:
        """The estimator's name (``"callaway-santanna"``, ...), as :func:`compare` shows it."""
        return self.method

    def _term_table(self) -> pd.DataFrame:
        """Return the headline estimand, then the rows of :attr:`table` (normal reference)."""
        cols = ["term", "estimate", "std_error", "std_error_neyman"]
        head = pd.DataFrame(
            [(self.estimand, self.estimate, self.std_error, self.std_error_neyman)], columns=cols
        )
        out: pd.DataFrame = (
            pd.concat([head, self.table[cols]], ignore_index=True) if len(self.table) else head
        )
        out["df"] = self.df
        return out

    def tidy(self, confidence_level: float = 0.95, *, exponentiate: bool = False) -> pd.DataFrame:
        """Tabulate the headline estimand first, then the rows of :attr:`table`.

        Parameters
        ----------
        confidence_level : float
            Coverage of ``conf_low``/``conf_high``.
        exponentiate : bool, default False
            ``exp`` of the estimates and limits (ratios; a log, logit or cloglog link only,
            ``steppedwedge.results.RATIO_LINKS``, else an ``OptionError``).

        Returns
        -------
        pandas.DataFrame
            Columns ``term, estimate, std_error, statistic, df, p_value, conf_low,
            conf_high, std_error_neyman`` (normal reference; design-based ``std_error``).
        """
        out = super().tidy(confidence_level, exponentiate=exponentiate)
        out["std_error_neyman"] = self._term_table()["std_error_neyman"].to_numpy(dtype=float)
        return out

    def summary(self) -> Summary:
        """Summarise the fit: method, scale, estimand, randomisation test, cohorts, effects.

        Returns
        -------
        Summary
            Text/HTML/Markdown/LaTeX renderings.
        """
        lo, hi = self.conf_int()
        header = cell_summary_header(_METHOD_LABEL[self.method], self)
        header += [
            (
                "Estimand",
                f"{self.estimand} = {_fmt(self.estimate)} (SE {_fmt(self.std_error)}, "
                f"Neyman SE {_fmt(self.std_error_neyman)}, p {_fmt(self.pvalue)}; "
                f"95% CI {_fmt(lo)} to {_fmt(hi)})",
            ),
        ]
        if self.link == "log":
            header.append(
                (
                    "Ratio",
                    f"{_fmt(math.exp(self.estimate))} ({_fmt(math.exp(lo))} to "
                    f"{_fmt(math.exp(hi))})",
                )
            )
        if self.beta is not None and len(self.beta) <= 4:
            header.append(("beta", ", ".join(_fmt(float(b)) for b in self.beta)))
        if self.fisher_pvalue is not None:
            header.append(
                (
                    "Randomisation test",
                    f"p {_fmt(self.fisher_pvalue)} (Neyman-studentised "
                    f"{_fmt(self.fisher_pvalue_neyman)}), {self.n_permutations} permutations",
                )
            )
        tables = [("Cohorts", self.cohorts)]
        if len(self.table):
            tables.append(("Effects", self.tidy().iloc[1:].reset_index(drop=True)))
        return Summary(
            title="Staggered-rollout analysis",
            header=tuple(header),
            tables=tuple(tables),
            notes=self.messages,
        )

    def plot(self, ax: Any = None, *, confidence_level: float = 0.95) -> Any:
        """Plot event-time effects against event time (event-time fits), else a forest plot.

        Parameters
        ----------
        ax : matplotlib.axes.Axes, optional
            Axes to draw on (a new figure when None).
        confidence_level : float
            Coverage of the intervals.

        Returns
        -------
        matplotlib.axes.Axes
        """
        from ...plotting.effects import plot_effects

        return plot_effects(self, ax=ax, confidence_level=confidence_level)

    def __repr__(self) -> str:
        return (
            f"StaggeredResult({self.method}, {self.estimand}: estimate={self.estimate:.4g}, "
            f"std_error={self.std_error:.4g}, std_error_neyman={self.std_error_neyman:.4g})"
        )


def _curve(table: pd.DataFrame) -> pd.DataFrame | None:
    """Return the event-time rows as an ``effect_curve`` for :func:`plot_effects`."""
    if "event_time" not in table or table["event_time"].isna().any():
        return None
    curve: pd.DataFrame = pd.DataFrame(
        {
            "exposure_time": table["event_time"].to_numpy(dtype=float),
            "estimate": table["estimate"].to_numpy(dtype=float),
            "std_error": table["std_error"].to_numpy(dtype=float),
            "df": np.inf,
        }
    )
    return curve
