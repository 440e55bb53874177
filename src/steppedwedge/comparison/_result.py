"""The result of :func:`comparison_councils`: balance, pre-trend fit, DiD and placebo."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from ..exceptions import DataError
from ..models.staggered import StaggeredResult
from ..results import ResultMixin, Summary, wald_table
from ._did import did_fit
from ._inputs import Prepared
from ._match import Selection, _slopes, log_rates

__all__ = ["ComparisonCouncils"]


def _smd(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Standardised mean differences ``(mean a - mean b) / sqrt((var a + var b) / 2)``."""
    pooled = np.sqrt((a.var(axis=0, ddof=1) + b.var(axis=0, ddof=1)) / 2.0)
    diff = a.mean(axis=0) - b.mean(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        out: np.ndarray = np.where(pooled > 0, diff / pooled, np.nan)
    return out


def balance_table(prep: Prepared, sel: Selection) -> pd.DataFrame:
    """Trial, comparison and all-candidate means of each feature, with the SMDs."""
    feat = sel.features.copy()
    rates = log_rates(prep, prep.pre_years)
    if "pre-trial slope" not in feat:
        feat["pre-trial slope"] = _slopes(rates)
    if "log population" not in feat:
        feat["log population"] = np.log(prep.exposure[prep.pre_years]).mean(axis=1)
    feat["mean pre-trial log rate"] = rates.mean(axis=1)
    pos = {c: k for k, c in enumerate(feat.index)}
    values = feat.to_numpy(dtype=float)
    t, c, p = (values[[pos[x] for x in group]] for group in (prep.starts, sel.councils, prep.pool))
    with np.errstate(invalid="ignore", divide="ignore"):
        smd_c = _smd(t, c) if len(c) > 1 else np.full(values.shape[1], np.nan)
        smd_p = _smd(t, p)
    table: pd.DataFrame = pd.DataFrame(
        {
            "feature": list(feat.columns),
            "trial": t.mean(axis=0),
            "comparison": c.mean(axis=0),
            "all_candidates": p.mean(axis=0),
            "smd_comparison": smd_c,
            "smd_candidates": smd_p,
        }
    )
    return table


def trend_frame(prep: Prepared, sel: Selection) -> pd.DataFrame:
    """Mean log rate by year of the trial, the comparison and all candidate councils."""
    rates = log_rates(prep)
    out: pd.DataFrame = pd.DataFrame(
        {
            "year": prep.years,
            "trial": rates.loc[list(prep.starts)].mean().to_numpy(),
            "comparison": rates.loc[sel.councils].mean().to_numpy(),
            "all_candidates": rates.loc[prep.pool].mean().to_numpy(),
        }
    )
    return out


def pre_trend_test(prep: Prepared, sel: Selection) -> pd.DataFrame:
    """Welch tests of the pre-trial level and slope differences (trial minus comparison)."""
    rates = log_rates(prep, prep.pre_years)
    level, slope = rates.mean(axis=1), _slopes(rates)
    trial, comp = list(prep.starts), sel.councils
    terms, est, se, dfs = [], [], [], []
    for name, v in (("pre-trial level difference", level), ("pre-trial slope difference", slope)):
        a, b = v.loc[trial], v.loc[comp]
        va, vb = float(a.var(ddof=1)) / len(a), float(b.var(ddof=1)) / len(b)
        s2 = va + vb
        df = s2**2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1)) if s2 > 0 else math.inf
        terms.append(name)
        est.append(float(a.mean() - b.mean()))
        se.append(math.sqrt(s2))
        dfs.append(df)
    return wald_table(terms, est, se, dfs, 0.95)


@dataclass(frozen=True, eq=False)
class ComparisonCouncils(ResultMixin):
    """Comparison councils chosen from outside the trial, their balance and the DiD.

    Returned by :func:`steppedwedge.comparison_councils`.

    Attributes
    ----------
    councils : list of str
        The chosen comparison councils (panel codes), in the order chosen.
    weights : pandas.Series
        Their weights: ``1/n`` for nearest neighbours, the synthetic-control weights
        (renormalised over the chosen councils) for ``method="synthetic"``.  The DiD uses
        the councils unweighted.
    matches : pandas.DataFrame
        Nearest neighbours: ``trial_council, comparison_council, distance``; synthetic:
        ``comparison_council, synthetic_weight``.
    balance : pandas.DataFrame
        For each matching feature and the mean pre-trial log rate: trial mean, comparison
        mean, mean over all candidates and the standardised mean differences.
    trend : pandas.DataFrame
        Mean log rate per year (``year, trial, comparison, all_candidates``).
    starts : dict
        Trial council -> first treated year.
    pre_years, years : list of int
        Pre-trial years used for matching; years of the DiD panel.
    excluded : pandas.DataFrame
        Panel councils that were not candidates and why (boundary change, missing values).
    outcome, method : str
    notes : tuple of str
    prepared : object
        The validated panel (internal; used by :meth:`did` and :meth:`placebo`).
    """

    councils: list[str]
    weights: pd.Series
    matches: pd.DataFrame
    balance: pd.DataFrame
    trend: pd.DataFrame
    starts: dict[str, int]
    pre_years: list[int]
    years: list[int]
    excluded: pd.DataFrame
    outcome: str
    method: str
    notes: tuple[str, ...] = ()
    prepared: Prepared | None = field(default=None, repr=False)

    def tidy(self, confidence_level: float = 0.95) -> pd.DataFrame:
        """Tabulate the pre-trial level and slope differences (trial minus comparison).

        Parameters
        ----------
        confidence_level : float
            Coverage of the (Welch t) intervals.

        Returns
        -------
        pandas.DataFrame
            ``TIDY_COLUMNS``; log-rate scale, slopes per year.
        """
        t = pre_trend_test(self._data, self._selection)
        return wald_table(
            t["term"].tolist(),
            t["estimate"].to_numpy(dtype=float),
            t["std_error"].to_numpy(dtype=float),
            t["df"].to_numpy(dtype=float),
            confidence_level,
        )

    @property
    def _data(self) -> Prepared:
        if self.prepared is None:  # pragma: no cover - always set by comparison_councils
            raise DataError("this result has no panel attached.")
        return self.prepared

    @property
    def _selection(self) -> Selection:
        return Selection(self.councils, self.weights, self.matches, pd.DataFrame())

    def frame(self, *, use_comparison: bool = True) -> pd.DataFrame:
        """Build the long DiD panel: trial (and comparison) councils over :attr:`years`.

        Parameters
        ----------
        use_comparison : bool, default True
            Include the comparison councils (never treated); False keeps the trial only.

        Returns
        -------
        pandas.DataFrame
            ``council, year, <outcome>, exposure, treated, role``.
        """
        prep = self._data
        keep = list(self.starts) + (self.councils if use_comparison else [])
        n_t = len(self.years)
        council = np.repeat(keep, n_t)
        year = np.tile(np.asarray(self.years), len(keep))
        start = np.array([self.starts.get(c, np.inf) for c in council], dtype=float)
        frame: pd.DataFrame = pd.DataFrame(
            {
                "council": council,
                "year": year,
                self.outcome: prep.counts.loc[keep, self.years].to_numpy().ravel(),
                "exposure": prep.exposure.loc[keep, self.years].to_numpy().ravel(),
                "treated": (year >= start).astype(int),
                "role": np.where(np.isfinite(start), "trial", "comparison"),
            }
        )
        return frame

    def did(
        self,
        *,
        use_comparison: bool = True,
        estimand: str = "simple",
        variance: str = "pooled",
        **options: Any,
    ) -> StaggeredResult:
        """Callaway-Sant'Anna DiD with the comparison councils as never-treated councils.

        Each trial cohort is compared with the trial's not-yet-treated councils and the
        comparison councils, on the councils' log rates ``log((y + 0.5) / exposure)``.

        Parameters
        ----------
        use_comparison : bool, default True
            False: the trial's not-yet-treated councils only (the randomised comparison).
        estimand : {"simple", "event-time"}
            The overall average of the group-time effects, or effects by years since the
            start (``event_times=``; negative ones are pre-trial placebos).
        variance : {"pooled", "neyman"}
            ``"pooled"``: one covariance of the log-rate trajectories pooled within cohorts
            (works with one-council cohorts), t with councils minus cohorts df, exact for
            independent normal trajectories with a common covariance; ``"neyman"``: each
            cohort's own covariance, normal reference.
        **options
            Passed to :func:`steppedwedge.models.staggered.fit_staggered` (``event_times``,
            ``base_period``).  Its Fisher test (``n_permutations``) is refused: it would
            permute start times among the comparison councils, who were never candidates.

        Returns
        -------
        StaggeredResult
            On the log-rate scale (``exp(estimate)``: a ratio of geometric-mean rates);
            ``df`` is the t reference.

        Raises
        ------
        DataError
            A trial cohort with no not-yet-treated (or never-treated) comparison in any of
            its treated years, named with its councils.
        """
        frame = self.frame(use_comparison=use_comparison)
        _check_cohorts(frame)
        return did_fit(frame, self.outcome, estimand=estimand, variance=variance, **options)

    def placebo(self, years_before: int = 2, **options: Any) -> StaggeredResult:
        """Placebo in time: pretend each trial council started ``years_before`` years early.

        Only years before the first real start are used, so the placebo "effect" should be
        zero if the trial and comparison councils trended in parallel before the trial.

        Parameters
        ----------
        years_before : int, default 2
            Shift of every start year.
        **options
            As :meth:`did`.

        Returns
        -------
        StaggeredResult

        Raises
        ------
        DataError
            If no fake start falls inside the pre-trial years with a year before it.
        """
        first = min(self.starts.values())
        fake = {c: y - int(years_before) for c, y in self.starts.items()}
        frame = self.frame()
        frame = frame[frame["year"] < first].copy()
        if int(years_before) < 1 or min(fake.values()) <= int(frame["year"].min()):
            raise DataError(
                f"years_before={years_before!r} puts a fake start at {min(fake.values())}, "
                f"which needs pre-trial years before it (data from {int(frame['year'].min())})"
                f" and must be >= 1."
            )
        start = frame["council"].map(fake)
        frame["treated"] = ((start.notna()) & (frame["year"] >= start)).astype(int)
        _check_cohorts(frame)
        return did_fit(frame, self.outcome, **options)

    def summary(self) -> Summary:
        """Summarise: choice, balance, pre-trend tests, matches and exclusions.

        Returns
        -------
        Summary
        """
        header = (
            ("Outcome", f"{self.outcome} (log rate per 10,000)"),
            ("Method", self.method),
            ("Trial councils", ", ".join(f"{c} ({y})" for c, y in self.starts.items())),
            ("Comparison councils", f"{len(self.councils)}: {', '.join(self.councils)}"),
            ("Pre-trial years", f"{self.pre_years[0]}-{self.pre_years[-1]}"),
            ("DiD years", f"{self.years[0]}-{self.years[-1]}"),
        )
        tables = [
            ("Balance (pre-trial)", self.balance),
            ("Pre-trend differences (trial minus comparison, Welch t)", self.tidy()),
            ("Matches", self.matches),
        ]
        if len(self.excluded):
            tables.append(("Not candidates", self.excluded))
        notes = (
            *self.notes,
            "The comparison councils were not randomised: the DiD assumes parallel trends "
            "(untreated trial councils would have moved like them) and no spillover.",
        )
        return Summary("Comparison councils from outside the trial", header, tuple(tables), notes)

    def plot(self, ax: Any = None) -> Any:
        """Plot the mean log rate by year: trial, comparison and all candidates.

        Parameters
        ----------
        ax : matplotlib.axes.Axes, optional

        Returns
        -------
        matplotlib.axes.Axes
        """
        from ..plotting.comparison import plot_comparison_trends

        return plot_comparison_trends(self.trend, min(self.starts.values()), ax=ax)

    def __repr__(self) -> str:
        return (
            f"ComparisonCouncils({len(self.councils)} councils by {self.method!r} for "
            f"{len(self.starts)} trial councils, outcome {self.outcome!r})"
        )


def _check_cohorts(frame: pd.DataFrame) -> None:
    """Refuse a DiD in which no trial cohort has an untreated comparison while treated.

    A cohort without one (the last cohort of a trial-only DiD) only serves as a comparison,
    as the staggered estimators note; when that leaves no cohort at all, the cohorts are
    named here.
    """
    first = frame[frame["treated"] == 1].groupby("council")["year"].min()
    never = bool(set(frame["council"]) - set(first.index))
    years = sorted(frame["year"].unique())
    lacking = [
        g
        for g in sorted(set(first))
        if not any(never or (first > y).any() for y in years if y >= g)
    ]
    if lacking and len(lacking) == len(set(first)):
        named = "; ".join(
            f"cohort starting {g} (councils {', '.join(sorted(first.index[first == g]))})"
            for g in lacking
        )
        raise DataError(
            f"no trial cohort has a not-yet-treated or never-treated comparison in its treated "
            f"years: {named}. Add comparison councils (use_comparison=True)."
        )
