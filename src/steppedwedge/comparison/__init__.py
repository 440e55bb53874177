"""Comparison councils from outside the trial (the Family Valued design).

:func:`comparison_councils` chooses non-trial councils from a panel of council statistics
(by default the bundled DfE panel, :func:`steppedwedge.datasets.load_dfe_panel`) by their
pre-trial trajectories, shows the balance and the pre-trend fit, and feeds a
difference-in-differences that uses them beside the trial's not-yet-treated councils, with a
placebo-in-time check.  It sits in the top layer because its default panel is bundled data.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pandas as pd

from ._inputs import Columns, check_method, prepare
from ._match import select, simplex_weights
from ._result import ComparisonCouncils, balance_table, trend_frame

__all__ = ["ComparisonCouncils", "comparison_councils", "simplex_weights"]


def comparison_councils(
    trial: Any,
    panel: pd.DataFrame | None = None,
    *,
    outcome: str,
    match_on: Sequence[str] = ("rates", "population"),
    n: int = 10,
    method: str = "nearest",
    region: str | None = None,
    pre_periods: int | None = None,
    end: int | None = None,
    candidates: Sequence[Any] | None = None,
    council: str = "la_code",
    year: str = "year",
    exposure: str = "population_0_17",
    region_column: str = "region_name",
    exclude_boundary_changes: bool = True,
) -> ComparisonCouncils:
    r"""Choose comparison councils outside the trial by their pre-trial trajectories.

    Parameters
    ----------
    trial : mapping or Design
        Trial council code (as in the panel's ``council`` column) -> first treated year
        (the panel's ``year``: for the DfE panel the year ending 31 March), or a
        :class:`~steppedwedge.Design` whose clusters are council codes and whose periods
        are those years (ints or annual periods).
    panel : pandas.DataFrame, optional
        One row per council and year (default the bundled DfE panel).  Never modified.
    outcome : str
        Count column of the panel (e.g. ``"cpp_31_march"``); rates are per ``exposure``.
    match_on : sequence of {"rates", "trend", "population"}
        Matching features: the log rate in each pre-trial year (the trajectory, given the
        weight of one feature), its OLS slope, the mean log population; each standardised
        by its SD over the trial and candidate councils.
    n : int, default 10
        Comparison councils to choose.
    method : {"nearest", "synthetic"}
        ``"nearest"``: greedy nearest-neighbour matching without replacement (Euclidean
        distance on the standardised features), trial councils taking turns, until ``n``
        are chosen.  ``"synthetic"``: synthetic-control weights (non-negative, summing to
        1) reproducing the trial's mean features; the ``n`` councils of largest weight.
    region : {None, "exact"}
        ``"exact"``: only councils of the trial councils' regions (each trial council's own
        region for nearest neighbours).
    pre_periods : int, optional
        Use only the last ``pre_periods`` years before the first trial start (default all).
    end : int, optional
        Last year of the DiD panel (default the panel's last year).
    candidates : sequence, optional
        The donor pool (default every panel council outside the trial).
    council, year, exposure, region_column : str
        Column names of the panel (the DfE panel's by default).
    exclude_boundary_changes : bool, default True
        Leave out councils whose boundaries changed (the panel's ``boundary_change``).

    Returns
    -------
    ComparisonCouncils
        The chosen councils, weights and matches, the balance table, the yearly trends
        (``plot()``), the pre-trend tests (``tidy()``), and :meth:`~ComparisonCouncils.did`
        and :meth:`~ComparisonCouncils.placebo`.

    Raises
    ------
    DataError
        A panel without the outcome (or exposure) column; trial councils missing from the
        panel or with missing values; candidate councils that are also in the trial
        (named); fewer than 2 pre-trial years; no candidate available.
    OptionError
        Unknown options.

    Notes
    -----
    **This leaves the randomised comparison.**  In the trial, the start times were
    randomised, so the not-yet-treated trial councils are a fair comparison by design.  The
    comparison councils were not randomised: a DiD that uses them assumes *parallel trends*
    (without the programme, the trial councils' log rates would have moved like the
    comparison councils') and *no spillover* (the programme did not change the comparison
    councils, e.g. through shared staff or placements), and that nothing else that affects
    the outcome started in the trial councils at the same time.  Matching on pre-trial
    trajectories makes parallel trends more plausible but cannot prove it; the pre-trend
    tests and the placebo in time (:meth:`~ComparisonCouncils.placebo`) can only detect
    failures that were already visible before the trial.

    References
    ----------
    Abadie A, Diamond A, Hainmueller J (2010). Synthetic control methods for comparative
    case studies. J Am Stat Assoc 105:493-505.
    Callaway B, Sant'Anna PHC (2021). J Econometrics 225:200-230.

    Examples
    --------
    >>> import steppedwedge as sw
    >>> trial = {"E08000026": 2022, "E08000029": 2022, "E10000031": 2021,
    ...          "E08000021": 2021, "E08000014": 2023}
    >>> cc = sw.comparison_councils(trial, outcome="cpp_31_march", n=10)
    >>> len(cc.councils), cc.pre_years[0], cc.pre_years[-1]
    (10, 2013, 2020)
    >>> did = cc.did()
    >>> did.method, did.n_clusters
    ('callaway-santanna', 15)
    """
    check_method(method, region, n, list(match_on))
    if panel is None:
        from ..datasets import load_dfe_panel

        panel = load_dfe_panel()
    cols = Columns(council=council, year=year, exposure=exposure, region=region_column)
    prep = prepare(
        trial,
        panel,
        outcome,
        cols,
        candidates=candidates,
        pre_periods=pre_periods,
        end=end,
        exclude_boundary_changes=exclude_boundary_changes,
    )
    sel = select(prep, method, int(n), region, list(match_on))
    return ComparisonCouncils(
        councils=sel.councils,
        weights=sel.weights,
        matches=sel.matches,
        balance=balance_table(prep, sel),
        trend=trend_frame(prep, sel),
        starts=prep.starts,
        pre_years=prep.pre_years,
        years=prep.years,
        excluded=prep.excluded,
        outcome=outcome,
        method=method,
        notes=sel.notes,
        prepared=prep,
    )
