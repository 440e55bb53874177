r"""Callaway-Sant'Anna DiD with comparison councils, and its pooled-variance t inference.

The estimate is the staggered estimators' Callaway-Sant'Anna (not-yet-treated trial councils
and the never-treated comparison councils as comparisons), a linear contrast of the cohort
means of the councils' log rates: ``theta = sum_g c_g' Ybar_g``.  Its variance is
``sum_g c_g' S_g c_g / N_g``.  The design-based refinement of Roth & Sant'Anna assumes
randomised timing, which comparison councils do not have, and a cohort of one council has
no covariance ``S_g``: so ``variance="pooled"`` (default) uses one covariance ``S`` pooled
within cohorts (``sum_g (N_g - 1) S_g / (N - G)``, dominated by the comparison councils) and
a t reference with ``N - G`` df, exact when the councils' log-rate trajectories are
independent normal vectors with a common covariance; ``variance="neyman"`` keeps each
cohort's own covariance with a normal reference (the staggered estimators'
``std_error_neyman``).
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from .._validation import check_option
from ..exceptions import OptionError, SmallSampleWarning
from ..models.staggered import StaggeredResult

__all__ = ["did_fit"]


def _pooled_covariance(cs: Any) -> tuple[np.ndarray, int]:
    keep = cs.n >= 2
    df = int(np.sum(cs.n[keep] - 1))
    s = np.einsum("g,gij->ij", cs.n[keep] - 1, cs.s[keep]) / df
    return s, df


def _rows(cs: Any, n_t: int, estimand: str, event_times: Sequence[int] | None) -> list[Any]:
    """``(term, weights on ATT(g, t))`` of the headline and each further row."""
    from ..models.staggered import _engine as eng

    if estimand == "simple":
        return [("simple", eng.att_weights(cs.g, cs.n, n_t, "simple"))]
    rows = []
    times = range(n_t) if event_times is None else event_times
    for e in times:
        w = eng.att_weights(cs.g, cs.n, n_t, "event", int(e), first_period=1)
        if w.any():
            rows.append((f"event_time[{int(e)}]", w))
    post = [w for term, w in rows if not term.startswith("event_time[-")]
    return [("event-time", np.mean(post, axis=0)), *rows]


def _group_time_weights(
    table: pd.DataFrame, years: list[Any], cohort: np.ndarray
) -> list[tuple[str, int, int]]:
    """``(term, cohort value, period index)`` of the table's ``ATT(g, t)`` rows."""
    if "cohort" not in table or "period" not in table:
        return []
    rows = table[table["term"].str.startswith("ATT(")]
    return [
        (str(r.term), years.index(r.cohort), years.index(r.period))
        for r in rows.itertuples(index=False)
    ]


def pooled_std_errors(
    y: np.ndarray,
    cohort: np.ndarray,
    estimand: str,
    event_times: Sequence[int] | None,
    group_time: Sequence[tuple[str, int, int]] = (),
) -> tuple[list[str], np.ndarray, np.ndarray, int]:
    """Terms, estimates and pooled-covariance standard errors of the CS rows; the df."""
    from ..models.staggered import _engine as eng

    cs = eng.cohort_summaries(y, cohort)
    s, df = _pooled_covariance(cs)
    rows = _rows(cs, y.shape[1], estimand, event_times)
    for term, g, t in group_time:
        w = np.zeros((len(cs.g), y.shape[1]))
        w[int(np.nonzero(cs.g == g)[0][0]), t] = 1.0
        rows.append((term, w))
    terms, est, se = [], [], []
    for term, w in rows:
        con = eng.contrast_for(cs.g, cs.n, w, "not-yet-treated", "varying")
        c = con.a_theta - con.a_0[0]  # beta = 1
        terms.append(term)
        est.append(float(np.einsum("gt,gt->", c, cs.ybar)))
        se.append(float(np.sqrt(np.einsum("gt,tu,gu,g->", c, s, c, 1.0 / cs.n))))
    return terms, np.array(est), np.array(se), df


def _panel_matrix(frame: pd.DataFrame, outcome: str) -> tuple[np.ndarray, np.ndarray]:
    """Log-rate matrix ``log((y + 0.5) / exposure)`` and cohort index (``T`` = never).

    ``frame`` is council-major with every council observed in the same years (as
    :meth:`ComparisonCouncils.frame` builds it).
    """
    n_c = frame["council"].nunique()
    shape = (n_c, len(frame) // n_c)
    counts = frame[outcome].to_numpy(dtype=float).reshape(shape)
    y = np.log((counts + 0.5) / frame["exposure"].to_numpy(dtype=float).reshape(shape))
    on = frame["treated"].to_numpy().reshape(shape).astype(bool)
    cohort = np.where(on.any(axis=1), on.argmax(axis=1), shape[1])
    return y, cohort


def did_fit(
    frame: pd.DataFrame,
    outcome: str,
    *,
    estimand: str = "simple",
    event_times: Sequence[int] | None = None,
    variance: str = "pooled",
    **options: Any,
) -> StaggeredResult:
    """Fit Callaway-Sant'Anna on ``frame`` and attach the chosen variance (module docstring)."""
    from ..models.staggered import fit_staggered

    check_option("variance", variance, ("pooled", "neyman"))
    check_option("estimand", estimand, ("simple", "event-time"))
    if options.get("n_permutations"):
        raise OptionError(
            "`n_permutations` is not available here: the staggered estimators' Fisher test "
            "permutes start times among all councils, but the comparison councils were "
            "never candidates for the programme; use the placebo in time and the "
            "pre-trend tests instead."
        )
    if "control_group" in options or "method" in options:
        raise OptionError(
            "the comparison-council DiD is Callaway-Sant'Anna with not-yet-treated and "
            "comparison councils as comparisons; `method` and `control_group` are fixed."
        )
    with warnings.catch_warnings():
        # the design-based refinement is not used here (timing is not randomised against
        # the comparison councils), so its negative-variance warning does not apply
        warnings.filterwarnings(
            "ignore", message="The refined .design-based.", category=SmallSampleWarning
        )
        if variance == "pooled":  # its NaN-SE warning does not apply: S is pooled
            warnings.filterwarnings(
                "ignore", message=".*has a single cluster", category=SmallSampleWarning
            )
        res = fit_staggered(
            frame,
            outcome=outcome,
            cluster="council",
            period="year",
            treatment="treated",
            family="poisson",
            exposure="exposure",
            method="callaway-santanna",
            estimand=estimand,
            event_times=event_times,
            **options,
        )
    if variance == "neyman":
        table = res.table.assign(std_error=res.table["std_error_neyman"])
        note = "standard errors: Neyman (each cohort's own covariance), normal reference."
        return dataclasses.replace(
            res, std_error=res.std_error_neyman, table=table, messages=(*res.messages, note)
        )
    return _with_pooled(res, frame, outcome, estimand, event_times)


def _with_pooled(
    res: StaggeredResult, frame: pd.DataFrame, outcome: str, estimand: str, event_times: Any
) -> StaggeredResult:
    y, cohort = _panel_matrix(frame, outcome)
    years = sorted(frame["year"].unique())
    extra = _group_time_weights(res.table, years, cohort)
    terms, _, se, df = pooled_std_errors(y, cohort, estimand, event_times, extra)
    by_term = dict(zip(terms, se, strict=True))
    table = res.table.assign(std_error=[by_term[t] for t in res.table["term"]])
    note = (
        f"standard errors: covariance pooled within cohorts, t with {df} df (councils minus "
        "cohorts); assumes a common covariance of the councils' log-rate trajectories."
    )
    return dataclasses.replace(
        res,
        std_error=float(se[0]),
        df=float(df),
        table=table.reset_index(drop=True),
        messages=(*res.messages, note),
    )
