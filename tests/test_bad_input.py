"""The bad-input catalogue (issue 14): what steppedwedge refuses, with which error, and why.

Every case is a bad input a new user could plausibly give.  Each asserts the exception class
(``DataError`` for data, ``DesignError`` for designs, ``OptionError`` for invalid or
conflicting options, the CLI's exit code 2) and that the message names the column, cluster,
period, key or value at fault.  The docs page ``docs/explanation/refusals.rst`` summarises
the rules.  Cases marked ``# issue 14`` were accepted silently (a wrong answer) or crashed in
numpy before the issue was resolved.
"""

from __future__ import annotations

import contextlib
import io
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from _tolerances import REFIT_REL, REFIT_SE_REL

import steppedwedge as sw
from steppedwedge.cli import main as cli_main
from steppedwedge.data import TrialData
from steppedwedge.design import Design
from steppedwedge.exceptions import DataError, DesignError, OptionError, SteppedWedgeError
from steppedwedge.planning import power
from steppedwedge.randomise import randomise
from steppedwedge.report.config import TrialConfig
from steppedwedge.report.schema import ConfigError
from steppedwedge.variance import VarianceComponents as VC


class CliFailed(Exception):
    """The command line returned exit code 2; the message is its stderr."""


@dataclass(frozen=True)
class Case:
    """One bad input: the call, the expected error class and what the message must name."""

    id: str
    call: Callable[[], Any]
    error: type[BaseException]
    names: tuple[str, ...]


CASES: list[Case] = []


def case(id: str, error: type[BaseException], *names: str) -> Callable[[Callable[[], Any]], None]:
    def register(fn: Callable[[], Any]) -> None:
        CASES.append(Case(id, fn, error, names))

    return register


def add(id: str, fn: Callable[[], Any], error: type[BaseException], *names: str) -> None:
    CASES.append(Case(id, fn, error, names))


# ------------------------------------------------------------------------------ data


def sw_rows(
    n_clusters: int = 4, n_periods: int = 5, n: int = 3, seed: int = 1, labels: Any = None
) -> pd.DataFrame:
    """Individual Gaussian rows of a standard stepped wedge (cluster k starts in period k+2)."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n_clusters):
        for j in range(n_periods):
            x = float(j > i % (n_periods - 1))
            for _ in range(n):
                rows.append((f"C{i}", j + 1, x, 0.5 * x + rng.normal()))
    df = pd.DataFrame(rows, columns=["site", "period", "arm", "y"])
    if labels is not None:
        df["period"] = df["period"].map(dict(enumerate(labels, start=1)))
    return df


def count_cells(n_clusters: int = 4, n_periods: int = 5, seed: int = 2) -> pd.DataFrame:
    """One row per council-quarter of counts with a population (Poisson aggregates)."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n_clusters):
        for j in range(n_periods):
            x = float(j > i % (n_periods - 1))
            pop = 10_000 + 1000 * i
            rows.append((f"LA{i}", j + 1, x, int(rng.poisson(pop * 6e-3)), pop))
    return pd.DataFrame(rows, columns=["council", "quarter", "treated", "entries", "pop"])


def binom_cells(n_clusters: int = 4, n_periods: int = 5, seed: int = 3) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n_clusters):
        for j in range(n_periods):
            x = float(j > i % (n_periods - 1))
            rows.append((f"H{i}", j + 1, x, int(rng.binomial(40, 0.3)), 40))
    return pd.DataFrame(rows, columns=["hosp", "month", "arm", "deaths", "admissions"])


G = dict(outcome="y", cluster="site", period="period", treatment="arm")
P = dict(
    outcome="entries", cluster="council", period="quarter", treatment="treated", family="poisson"
)
B = dict(
    outcome="deaths",
    trials="admissions",
    cluster="hosp",
    period="month",
    treatment="arm",
    family="binomial",
)
P10 = [f"P{k}" for k in range(4, 9)]  # P4 ... P8
MONTHS = ["Jan-20", "Feb-20", "Mar-20", "Apr-20", "May-20"]


def td(df: pd.DataFrame, **kw: Any) -> TrialData:
    return TrialData.from_frame(df, **{**G, **kw})


def with_row(df: pd.DataFrame, k: int, **values: Any) -> pd.DataFrame:
    out = df.copy()
    for col, v in values.items():
        out[col] = out[col].astype(object) if isinstance(v, str) else out[col]
        out.loc[out.index[k], col] = v
    return out


# TrialData.from_frame: structure and roles
add("data-empty-frame", lambda: td(sw_rows().iloc[:0]), DataError, "no rows")  # issue 14
add("data-missing-column", lambda: td(sw_rows(), outcome="yy"), DataError, "'yy'", "outcome")
add("data-role-not-str", lambda: td(sw_rows(), outcome=3), DataError, "outcome", "3")
add("data-column-twice", lambda: td(sw_rows(), outcome="arm"), DataError, "'arm'", "treatment")
add(
    "data-duplicated-column-names",
    lambda: td(pd.concat([sw_rows(), sw_rows()[["y"]]], axis=1)),
    DataError,
    "'y'",
    "duplicated",
)
add("data-not-a-frame", lambda: td(sw_rows().to_dict()), TypeError, "DataFrame")
add("data-bad-family", lambda: td(sw_rows(), family="normal"), OptionError, "family", "'normal'")
add("data-bad-missing", lambda: td(sw_rows(), missing="ignore"), OptionError, "missing")
add("data-bad-kind", lambda: td(sw_rows(), kind="cells"), OptionError, "kind", "'cells'")
add("data-trials-gaussian", lambda: td(sw_rows(), trials="y2"), DataError, "y2")
add(
    "data-trials-with-gaussian-family",
    lambda: td(sw_rows().assign(n=5), trials="n"),
    DataError,
    "trials",
    "gaussian",
)
add(
    "data-exposure-gaussian",
    lambda: td(sw_rows().assign(pop=5), exposure="pop"),
    DataError,
    "exposure",
    "gaussian",
)
add(
    "data-size-binomial",
    lambda: TrialData.from_frame(binom_cells().assign(sz=3), **B, size="sz"),
    DataError,
    "size",
    "binomial",
)
add(
    "data-exposure-and-offset",  # issue 14: both were applied, doubling the offset
    lambda: TrialData.from_frame(
        count_cells().assign(off=np.log(count_cells()["pop"])), **P, exposure="pop", offset="off"
    ),
    OptionError,
    "'pop'",
    "'off'",
)
add(
    "data-binomial-aggregate-without-trials",
    lambda: TrialData.from_frame(binom_cells(), **{**B, "trials": None}, kind="aggregate"),
    DataError,
    "trials",
)
add(
    "data-individual-kind-with-trials",
    lambda: TrialData.from_frame(binom_cells(), **B, kind="individual"),
    DataError,
    "kind='aggregate'",
)
add("data-covariate-missing", lambda: td(sw_rows(), covariates=["age"]), DataError, "'age'")
add(
    "data-covariate-is-a-role",
    lambda: td(sw_rows(), covariates=["arm"]),
    DataError,
    "'arm'",
)

# missing values
add(
    "data-missing-cluster",
    lambda: td(with_row(sw_rows(), 4, site=np.nan)),
    DataError,
    "'site'",
    "missing",
)
add(
    "data-missing-period",
    lambda: td(with_row(sw_rows(), 7, period=np.nan)),
    DataError,
    "'period'",
    "missing",
)
add(
    "data-missing-treatment",
    lambda: td(with_row(sw_rows(), 2, arm=np.nan)),
    DataError,
    "'arm'",
    "missing",
)
add(
    "data-missing-outcome",
    lambda: td(with_row(sw_rows(), 5, y=np.nan)),
    DataError,
    "'y'",
    "missing='drop'",
)
add(
    "data-all-rows-dropped",  # issue 14: an empty frame reached numpy
    lambda: td(sw_rows().assign(y=np.nan), missing="drop"),
    DataError,
    "'y'",
    "no rows are left",
)
add(
    "data-missing-individual",
    lambda: td(with_row(sw_rows().assign(pid=range(60)), 0, pid=np.nan), individual="pid"),
    DataError,
    "'pid'",
    "missing",
)

# values
add(
    "data-outcome-text",
    lambda: td(with_row(sw_rows(), 3, y="high")),
    DataError,
    "'y'",
    "'high'",
)
add(
    "data-outcome-infinite",
    lambda: td(with_row(sw_rows(), 3, y=np.inf)),
    DataError,
    "'y'",
    "non-finite",
)
add(
    "data-treatment-out-of-range",
    lambda: td(with_row(sw_rows(), 3, arm=2.0)),
    DataError,
    "'arm'",
    "[0, 1]",
)
add(
    "data-treatment-negative",
    lambda: td(with_row(sw_rows(), 3, arm=-1.0)),
    DataError,
    "'arm'",
    "-1",
)
add(
    "data-treatment-text",
    lambda: td(sw_rows().assign(arm=lambda d: d["arm"].map({0.0: "control", 1.0: "new"}))),
    DataError,
    "'arm'",
    "numeric",
)
add(
    "data-negative-count",
    lambda: TrialData.from_frame(with_row(count_cells(), 3, entries=-2), **P),
    DataError,
    "'entries'",
    "-2",
)
add(
    "data-fractional-count",
    lambda: TrialData.from_frame(
        count_cells().assign(entries=lambda d: d["entries"].astype(float) + 0.5), **P
    ),
    DataError,
    "'entries'",
    "integer",
)
add(
    "data-binomial-individual-not-01",
    lambda: td(sw_rows().assign(y=lambda d: (d["y"] > 0).astype(int) * 2), family="binomial"),
    DataError,
    "'y'",
    "0/1",
)
add(
    "data-trials-negative",
    lambda: TrialData.from_frame(with_row(binom_cells(), 2, admissions=-1), **B),
    DataError,
    "'admissions'",
    "non-negative",
)
add(
    "data-events-exceed-trials",
    lambda: TrialData.from_frame(with_row(binom_cells(), 2, deaths=41), **B),
    DataError,
    "'deaths'",
    "'admissions'",
)
add(
    "data-exposure-zero",
    lambda: TrialData.from_frame(with_row(count_cells(), 1, pop=0), **P, exposure="pop"),
    DataError,
    "'pop'",
    "positive",
)
add(
    "data-exposure-negative",
    lambda: TrialData.from_frame(with_row(count_cells(), 1, pop=-10), **P, exposure="pop"),
    DataError,
    "'pop'",
    "-10",
)
add(
    "data-offset-infinite",
    lambda: TrialData.from_frame(
        with_row(count_cells().assign(off=0.0), 1, off=np.inf), **P, offset="off"
    ),
    DataError,
    "'off'",
    "finite",
)
add(
    "data-size-negative",
    lambda: td(
        sw_rows()
        .groupby(["site", "period"], as_index=False)
        .agg(arm=("arm", "first"), y=("y", "mean"))
        .assign(sz=-1),
        size="sz",
    ),
    DataError,
    "'sz'",
    "non-negative",
)

# labels (issue 14: a trailing space made an extra cluster)
add(
    "data-label-trailing-space",
    lambda: td(sw_rows().assign(site=lambda d: d["site"].where(d.index % 2 == 0, d["site"] + " "))),
    DataError,
    "'C0'",
    "'C0 '",
)
add(
    "data-label-leading-space",
    lambda: td(with_row(sw_rows(), 0, site=" C0")),
    DataError,
    "' C0'",
    "whitespace",
)
add(
    "data-label-case",
    lambda: td(with_row(sw_rows(), 0, site="c0")),
    DataError,
    "'C0'",
    "'c0'",
)
add(
    "data-label-double-space",
    lambda: td(
        sw_rows()
        .assign(site="North  " + sw_rows()["site"])
        .pipe(lambda d: with_row(d, 0, site="North C0"))
    ),
    DataError,
    "'North C0'",
    "'North  C0'",
)
add(
    "data-period-label-space",
    lambda: td(with_row(sw_rows(labels=P10), 0, period="P4 ")),
    DataError,
    "'P4 '",
    "period",
)
add(
    "data-label-space-counts",
    lambda: TrialData.from_frame(with_row(count_cells(), 0, council="LA0 "), **P),
    DataError,
    "'LA0 '",
    "council",
)

# duplicated rows (issue 14: a repeated council-quarter was counted twice)
add(
    "data-duplicated-aggregate-binomial",
    lambda: TrialData.from_frame(pd.concat([binom_cells(), binom_cells().iloc[[6]]]), **B),
    DataError,
    "'H1'",
    "duplicated",
)
add(
    "data-duplicated-counts-aggregate",
    lambda: TrialData.from_frame(pd.concat([count_cells(), count_cells().iloc[[3]]]), **P),
    DataError,
    "'LA0'",
    "duplicated",
)
add(
    "data-repeated-count-row",  # issue 14 (the GLMM path sums several rows per cell)
    lambda: TrialData.from_frame(
        pd.concat([count_cells(), count_cells().iloc[[7]]], ignore_index=True),
        **P,
        exposure="pop",
        kind="individual",
    ),
    DataError,
    "'LA1'",
    "counted twice",
)

# treatment reversal (issue 14: Design rejects it, fit accepted it)
add(
    "data-treatment-reversal",
    lambda: td(
        sw_rows().assign(arm=lambda d: np.where((d.site == "C1") & (d.period == 5), 0.0, d.arm))
    ),
    DataError,
    "cluster 'C1'",
    "period 5",
)
add(
    "data-treatment-reversal-counts",
    lambda: TrialData.from_frame(with_row(count_cells(), 4, treated=0.0), **P),
    DataError,
    "cluster 'LA0'",
    "period 5",
)
add(
    "data-treatment-partial-decrease",
    lambda: td(
        sw_rows().assign(arm=lambda d: np.where((d.site == "C0") & (d.period == 3), 0.5, d.arm))
    ),
    DataError,
    "cluster 'C0'",
    "0.5",
)
add(
    "data-treatment-varies-in-cell",
    lambda: td(with_row(sw_rows(), 0, arm=1.0)).cells(),
    DataError,
    "'arm'",
    "('C0', 1)",
)

# degenerate outcomes (issue 14: raw numpy errors)
add(
    "data-all-zero-counts",
    lambda: TrialData.from_frame(count_cells().assign(entries=0), **P),
    DataError,
    "'entries'",
    "0 in every row",
)
add(
    "data-binomial-no-events",
    lambda: TrialData.from_frame(binom_cells().assign(deaths=0), **B),
    DataError,
    "'deaths'",
    "no events",
)
add(
    "data-binomial-all-events",
    lambda: TrialData.from_frame(binom_cells().assign(deaths=40), **B),
    DataError,
    "'deaths'",
    "equals the trials",
)
add(
    "data-binary-all-one",
    lambda: td(sw_rows().assign(y=1), family="binomial"),
    DataError,
    "'y'",
    "1 in every row",
)
add(
    "data-binary-all-zero",
    lambda: td(sw_rows().assign(y=0), family="binomial"),
    DataError,
    "'y'",
    "no events",
)
add(
    "data-gaussian-constant",
    lambda: td(sw_rows().assign(y=3.5)),
    DataError,
    "'y'",
    "3.5",
)

# individuals and design
add(
    "data-individual-two-clusters",
    lambda: td(sw_rows().assign(pid=np.arange(60) % 20), individual="pid"),
    DataError,
    "'pid'",
    "clusters",
)
D45 = Design.stepped_wedge(4, 1, n_periods=5).relabel(["C0", "C1", "C2", "C3"])
add(
    "data-design-cluster-not-in-design",
    lambda: td(
        sw_rows(n_clusters=5), design=Design.stepped_wedge(4, 1).relabel(["C0", "C1", "C2", "C3"])
    ),
    DataError,
    "C4",
    "not in the design",
)
add(
    "data-design-treatment-disagrees",
    lambda: td(
        sw_rows().assign(arm=0.0).pipe(lambda d: with_row(d, 0, arm=0.0)),
        design=Design.stepped_wedge(4, 1).relabel(["C0", "C1", "C2", "C3"]),
    ),
    DataError,
    "'arm'",
    "disagrees",
)
add(
    "data-design-unobserved-cell",
    lambda: td(
        sw_rows(),
        design=Design.from_matrix(
            [[0, 1, 1, 1, np.nan], [0, 0, 1, 1, 1], [0, 0, 0, 1, 1], [0, 0, 0, 0, 1]],
            clusters=["C0", "C1", "C2", "C3"],
            periods=[1, 2, 3, 4, 5],
        ),
    ),
    DataError,
    "unobserved",
    "cluster 'C0'",
)

QD = Design.from_start_dates({"LA0": "2023-04-01", "LA1": "2023-07-01"}, "2023Q1/2023Q4")


def monthly_counts() -> pd.DataFrame:
    rows = []
    for i, c in enumerate(QD.clusters):
        for m in pd.period_range("2023-01", "2023-12", freq="M"):
            x = float(QD.matrix[i, list(QD.periods).index(m.asfreq("Q"))])
            rows.append((c, str(m), x, 5, 1000))
    return pd.DataFrame(rows, columns=["council", "quarter", "treated", "entries", "pop"])


add(
    "data-monthly-rows-quarterly-design",  # issue 14: was blamed on a council as duplicates
    lambda: TrialData.from_frame(monthly_counts(), **P, exposure="pop", design=QD),
    DataError,
    "'2023-01', '2023-02', '2023-03'",
    "2023Q1",
)

# period order
add(
    "data-period-order-missing-label",
    lambda: td(sw_rows(labels=P10), period_order=P10[:-1]),
    OptionError,
    "'P8'",
    "period_order",
)
add(
    "data-period-order-extra-label",
    lambda: td(sw_rows(labels=P10), period_order=[*P10, "P9"]),
    OptionError,
    "P9",
    "no rows",
)
add(
    "data-period-order-repeats",
    lambda: td(sw_rows(labels=P10), period_order=[*P10, "P4"]),
    OptionError,
    "P4",
    "more than once",
)
add(
    "data-period-order-with-design",
    lambda: td(sw_rows(), design=D45, period_order=[1, 2, 3, 4, 5]),
    OptionError,
    "period_order",
    "design",
)
add(
    "data-period-order-a-string",
    lambda: td(sw_rows(labels=P10), period_order="P4,P5,P6,P7,P8"),
    OptionError,
    "period_order",
    "list",
)
add(
    "data-require-period-order-text",
    lambda: td(sw_rows(labels=P10)).require_period_order("time='linear'"),
    DataError,
    "time='linear'",
    "period_order",
)
add(
    "data-require-period-order-months",
    lambda: td(sw_rows(labels=MONTHS)).require_period_order("random='decay'"),
    DataError,
    "Apr-20",
    "ordered categorical",
)


# ------------------------------------------------------------------------------ sw.fit


def fit_g(df: pd.DataFrame, **kw: Any) -> Any:
    return sw.fit(df, **{**G, **kw})


for label_set, name in ((P10, "P4-P8"), (MONTHS, "Jan-May")):
    add(
        f"fit-linear-time-text-periods-{name}",  # issue 14: 0.52 instead of 0.375
        (lambda ls: lambda: fit_g(sw_rows(labels=ls), time="linear"))(label_set),
        DataError,
        "time='linear'",
        "period_order",
    )
add(
    "fit-spline-time-text-periods",
    lambda: fit_g(sw_rows(n_periods=5, labels=P10), time="spline"),
    DataError,
    "time='spline'",
    "'period'",
)
add(
    "fit-decay-text-periods",
    lambda: fit_g(sw_rows(labels=P10), random="decay"),
    DataError,
    "random='decay'",
    "period_order",
)
add(
    "fit-eti-text-periods",
    lambda: fit_g(sw_rows(labels=P10), effect="eti"),
    DataError,
    "effect='eti'",
    "period_order",
)
add(
    "fit-gee-ar1-text-periods",
    lambda: fit_g(sw_rows(labels=P10), method="gee", corstr="ar1"),
    DataError,
    "corstr='ar1'",
    "period_order",
)
add(
    "fit-glmm-linear-text-periods",
    lambda: sw.fit(
        count_cells().assign(quarter=lambda d: "Q" + d["quarter"].astype(str)),
        **P,
        exposure="pop",
        time="linear",
    ),
    DataError,
    "time='linear'",
    "'quarter'",
)
add(
    "fit-period-order-with-design",
    lambda: fit_g(sw_rows(), design=D45, period_order=[1, 2, 3, 4, 5]),
    OptionError,
    "period_order",
    "design",
)
add(
    "fit-period-order-missing-label",
    lambda: fit_g(sw_rows(labels=P10), time="linear", period_order=P10[1:]),
    OptionError,
    "'P4'",
    "period_order",
)
add(
    "fit-repeated-count-row",  # issue 14: counted twice
    lambda: sw.fit(
        pd.concat([count_cells(), count_cells().iloc[[7]]], ignore_index=True), **P, exposure="pop"
    ),
    DataError,
    "'LA1'",
    "counted twice",
)
add(
    "fit-treatment-reversal",  # issue 14
    lambda: sw.fit(with_row(count_cells(), 4, treated=0.0), **P, exposure="pop"),
    DataError,
    "cluster 'LA0'",
    "allow_reversal",
)
add(
    "fit-gaussian-treatment-reversal",
    lambda: fit_g(
        sw_rows().assign(arm=lambda d: np.where((d.site == "C1") & (d.period == 5), 0.0, d.arm))
    ),
    DataError,
    "cluster 'C1'",
    "period 5",
)
add(
    "fit-exposure-and-offset",  # issue 14: a doubled offset
    lambda: sw.fit(
        count_cells().assign(off=np.log(count_cells()["pop"])), **P, exposure="pop", offset="off"
    ),
    OptionError,
    "'pop'",
    "'off'",
)
add(
    "fit-trailing-space-label",  # issue 14: an extra cluster
    lambda: sw.fit(with_row(count_cells(), 2, council="LA0 "), **P, exposure="pop"),
    DataError,
    "'LA0'",
    "'LA0 '",
)
add("fit-empty-frame", lambda: fit_g(sw_rows().iloc[:0]), DataError, "no rows")  # issue 14
add(
    "fit-all-zero-counts",  # issue 14
    lambda: sw.fit(count_cells().assign(entries=0), **P, exposure="pop"),
    DataError,
    "'entries'",
    "0 in every row",
)
add(
    "fit-binomial-no-events",
    lambda: sw.fit(binom_cells().assign(deaths=0), **B),
    DataError,
    "'deaths'",
    "no events",
)
add(
    "fit-gaussian-constant",
    lambda: fit_g(sw_rows().assign(y=2.0)),
    DataError,
    "'y'",
    "single value",
)
add(
    "fit-gee-repeated-cell",
    lambda: sw.fit(
        pd.concat([count_cells(), count_cells().iloc[[0]]]), **P, exposure="pop", method="gee"
    ),
    DataError,
    "'LA0'",
    "duplicated",
)
add(
    "fit-cluster-summary-label-case",
    lambda: sw.fit(
        with_row(count_cells(), 1, council="la0"), **P, exposure="pop", method="cluster-summary"
    ),
    DataError,
    "'LA0'",
    "'la0'",
)
add(
    "fit-fixed-effects-trailing-space-label",
    lambda: sw.fit(
        with_row(count_cells(), 2, council="LA0 "), **P, exposure="pop", method="fixed-effects"
    ),
    DataError,
    "'LA0'",
    "'LA0 '",
)
add(
    "fit-fixed-effects-repeated-row",
    lambda: sw.fit(
        pd.concat([count_cells(), count_cells().iloc[[7]]], ignore_index=True),
        **P,
        exposure="pop",
        method="fixed-effects",
    ),
    DataError,
    "'LA1'",
    "counted twice",
)
add(
    "fit-fixed-effects-reversal",
    lambda: fit_g(
        sw_rows().assign(arm=lambda d: np.where((d.site == "C1") & (d.period == 5), 0.0, d.arm)),
        method="fixed-effects",
    ),
    DataError,
    "cluster 'C1'",
    "period 5",
)
add("fit-bad-family", lambda: fit_g(sw_rows(), family="gamma"), OptionError, "family", "'gamma'")
add("fit-bad-method", lambda: fit_g(sw_rows(), method="bayes"), OptionError, "method", "'bayes'")
add(
    "fit-reml-for-counts",
    lambda: sw.fit(count_cells(), **P, method="reml"),
    ValueError,
    "method='reml'",
    "poisson",
)
add(
    "fit-laplace-for-gaussian",
    lambda: fit_g(sw_rows(), method="laplace"),
    ValueError,
    "method='laplace'",
)
add("fit-gaussian-link", lambda: fit_g(sw_rows(), link="log"), ValueError, "link='log'")
add(
    "fit-gaussian-exposure",
    lambda: fit_g(sw_rows().assign(pop=1.0), exposure="pop"),
    ValueError,
    "exposure",
    "gaussian",
)
add(
    "fit-gaussian-unknown-option",
    lambda: fit_g(sw_rows(), corstr="ar1"),
    TypeError,
    "corstr",
)
add("fit-bad-random", lambda: fit_g(sw_rows(), random="decay2"), ValueError, "random", "decay2")
add("fit-bad-time", lambda: fit_g(sw_rows(), time="quadratic"), ValueError, "time", "quadratic")
add("fit-bad-effect", lambda: fit_g(sw_rows(), effect="delayed"), ValueError, "effect", "delayed")
add("fit-bad-dof", lambda: fit_g(sw_rows(), dof="welch"), ValueError, "dof", "welch")
add(
    "fit-pte-without-time",
    lambda: fit_g(sw_rows(), effect="pte"),
    ValueError,
    "exposure_time",
)
add(
    "fit-kr-with-ml",
    lambda: fit_g(sw_rows(), method="ml", dof="kenward-roger"),
    ValueError,
    "kenward-roger",
)
add(
    "fit-fixed-effects-with-trials",
    lambda: sw.fit(binom_cells(), **B, method="fixed-effects"),
    ValueError,
    "trials",
)
add(
    "fit-missing-outcome-column",
    lambda: fit_g(sw_rows(), outcome="score"),
    DataError,
    "'score'",
)
add("fit-not-a-frame", lambda: fit_g([1, 2, 3]), TypeError, "DataFrame")


# ------------------------------------------------------------------------------ designs

add(
    "design-reversal",
    lambda: Design.from_matrix([[0, 1, 0], [0, 0, 1]]),
    DesignError,
    "allow_reversal",
)
add(
    "design-treatment-above-one",
    lambda: Design.from_matrix([[0, 2, 1], [0, 0, 1]]),
    DesignError,
    "2",
)
add(
    "design-duplicate-clusters",
    lambda: Design.from_matrix([[0, 1, 1], [0, 0, 1]], clusters=["A", "A"]),
    DesignError,
    "'A'",
)
add(
    "design-collinear",
    lambda: Design.from_matrix([[0, 1, 1], [0, 1, 1]]),
    DesignError,
    "collinear",
)
add(
    "design-never-treated-only",
    lambda: Design.from_matrix([[0, 0, 0], [0, 0, 0]]),
    DesignError,
    "treat",
)
add("design-zero-sequences", lambda: Design.stepped_wedge(0), DesignError, "n_sequences")
add(
    "design-bad-transition",
    lambda: Design.stepped_wedge(3, transition="drop"),
    DesignError,
    "transition",
    "'drop'",
)
add(
    "design-from-frame-duplicate-cell",
    lambda: Design.from_frame(
        pd.DataFrame({"cluster": ["a", "a", "b"], "period": [1, 1, 1], "treatment": [0, 1, 0]})
    ),
    DesignError,
    "'a'",
)

SD = dict(periods="2024Q1/2025Q4")
for text in ("01/07/2024", "1/7/2024", "01.07.2024", "01-07-2024", "07/01/24"):
    add(
        f"dates-ambiguous-{text}",  # issue 14: read as 7 January, without a word
        (lambda t: lambda: Design.from_start_dates({"Leeds": t, "York": "2024-10-01"}, **SD))(text),
        DesignError,
        "cluster 'Leeds'",
        repr(text),
        "dayfirst",
    )
add(
    "dates-day-first-only-reading",  # issue 14: read day-first silently
    lambda: Design.from_start_dates({"Leeds": "13/01/2025", "York": "2024-10-01"}, **SD),
    DesignError,
    "'13/01/2025'",
    "dayfirst",
)
add(
    "dates-monthfirst-impossible",
    lambda: Design.from_start_dates(
        {"Leeds": "13/01/2025", "York": "10/01/2024"}, **SD, dayfirst=False
    ),
    DesignError,
    "'13/01/2025'",
    "month/day/year",
)
add(
    "dates-format-mismatch",
    lambda: Design.from_start_dates(
        {"Leeds": "2024-07-01", "York": "01/10/2024"}, **SD, date_format="%d/%m/%Y"
    ),
    DesignError,
    "'2024-07-01'",
    "%d/%m/%Y",
)
add(
    "dates-dayfirst-and-format",
    lambda: Design.from_start_dates(
        {"Leeds": "01/07/2024"}, **SD, dayfirst=True, date_format="%d/%m/%Y"
    ),
    OptionError,
    "dayfirst",
    "date_format",
)
add(
    "dates-dayfirst-not-bool",
    lambda: Design.from_start_dates({"Leeds": "01/07/2024"}, **SD, dayfirst="uk"),
    OptionError,
    "dayfirst",
    "'uk'",
)
add(
    "dates-not-a-date",
    lambda: Design.from_start_dates({"Leeds": "soon", "York": "2024-10-01"}, **SD),
    DesignError,
    "cluster 'Leeds'",
    "'soon'",
)
add(
    "dates-empty-string",
    lambda: Design.from_start_dates({"Leeds": "", "York": "2024-10-01"}, **SD),
    DesignError,
    "cluster 'Leeds'",
    "empty",
)
add(
    "dates-invalid-iso-month",
    lambda: Design.from_start_dates({"Leeds": "2024-13-01", "York": "2024-10-01"}, **SD),
    DesignError,
    "'2024-13-01'",
)
add(
    "dates-invalid-iso-day",
    lambda: Design.from_start_dates({"Leeds": "2024-02-30", "York": "2024-10-01"}, **SD),
    DesignError,
    "'2024-02-30'",
)
add(
    "dates-time-of-day",
    lambda: Design.from_start_dates({"Leeds": "2024-07-01 09:30", "York": "2024-10-01"}, **SD),
    DesignError,
    "cluster 'Leeds'",
    "time of day",
)
add(
    "dates-window-ambiguous",
    lambda: Design.from_start_dates(
        {"Leeds": "2020-09-01", "York": "2021-02-01"}, "starts", window=("01/03/2020", "2021-12-31")
    ),
    DesignError,
    "window[0]",
    "'01/03/2020'",
)
add(
    "dates-window-missing",
    lambda: Design.from_start_dates({"Leeds": "2020-09-01"}, "starts"),
    DesignError,
    "window",
)
add(
    "dates-window-reversed",
    lambda: Design.from_start_dates(
        {"Leeds": "2020-09-01"}, "starts", window=("2021-12-31", "2020-01-01")
    ),
    DesignError,
    "window",
    "2020-01-01",
)
add(
    "dates-before-grid",
    lambda: Design.from_start_dates({"Leeds": "2023-06-01", "York": "2024-10-01"}, **SD),
    DesignError,
    "Leeds",
    "allow_outside",
)
add(
    "dates-periods-bad-string",
    lambda: Design.from_start_dates({"Leeds": "2024-07-01"}, "2024Q1-2025Q4"),
    DesignError,
    "'2024Q1-2025Q4'",
)
add(
    "dates-periods-reversed",
    lambda: Design.from_start_dates({"Leeds": "2024-07-01"}, "2025Q4/2024Q1"),
    DesignError,
    "2024Q1",
    "before",
)
add(
    "dates-periods-mixed-frequency",
    lambda: Design.from_start_dates({"Leeds": "2024-07-01"}, "2024Q1/2025-12"),
    DesignError,
    "frequency",
)
add(
    "dates-not-a-mapping",
    lambda: Design.from_start_dates(["2024-07-01"], **SD),
    DesignError,
    "start_dates",
    "list",
)
add(
    "dates-frame-three-columns",
    lambda: Design.from_start_dates(
        pd.DataFrame({"a": ["Leeds"], "b": ["2024-07-01"], "c": [1]}), **SD
    ),
    DesignError,
    "two columns",
    "3",
)
add(
    "dates-no-clusters",
    lambda: Design.from_start_dates({}, **SD),
    DesignError,
    "start_dates",
    "none",
)


# ------------------------------------------------------------------------------ CLI


def cli(*args: str) -> None:
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        code = cli_main(list(args))
    if code != 0:
        raise CliFailed(err.getvalue())


@pytest.fixture(scope="module")
def csvs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("cli")
    pd.DataFrame({"cluster": ["Leeds", "York"], "start": ["01/07/2024", "13/01/2025"]}).to_csv(
        root / "uk.csv", index=False
    )
    pd.DataFrame({"cluster": ["Leeds"], "start": ["2024-07-01"], "x": [1]}).to_csv(
        root / "three.csv", index=False
    )
    (root / "empty.csv").write_text("")
    (root / "header.csv").write_text("cluster,start\n")
    (root / "folder").mkdir()
    pd.DataFrame({"council": ["A", "B", "C"], "pop": [1, 2, 3]}).to_csv(
        root / "clusters.csv", index=False
    )
    return root


CLI_CASES = [
    (
        "cli-ambiguous-dates",
        ["design", "--start-dates", "uk.csv", "--periods", "2024Q1/2025Q4"],
        ("'01/07/2024'", "--dayfirst"),
    ),
    (
        "cli-monthfirst-impossible",
        ["design", "--start-dates", "uk.csv", "--periods", "2024Q1/2025Q4", "--monthfirst"],
        ("'13/01/2025'", "month/day/year"),
    ),
    (
        "cli-date-format-mismatch",
        [
            "design",
            "--start-dates",
            "uk.csv",
            "--periods",
            "2024Q1/2025Q4",
            "--date-format",
            "%Y-%m-%d",
        ],
        ("'01/07/2024'", "%Y-%m-%d"),
    ),
    (
        "cli-start-dates-folder",
        ["design", "--start-dates", "folder", "--periods", "2024Q1/2025Q4"],
        ("'folder'", "is a folder"),
    ),
    (
        "cli-start-dates-missing",
        ["design", "--start-dates", "nope.csv", "--periods", "2024Q1/2025Q4"],
        ("'nope.csv'", "does not exist"),
    ),
    (
        "cli-start-dates-empty",
        ["design", "--start-dates", "empty.csv", "--periods", "2024Q1/2025Q4"],
        ("'empty.csv'", "empty"),
    ),
    (
        "cli-start-dates-no-rows",
        ["design", "--start-dates", "header.csv", "--periods", "2024Q1/2025Q4"],
        ("'header.csv'", "no rows"),
    ),
    (
        "cli-start-dates-three-columns",
        ["design", "--start-dates", "three.csv", "--periods", "2024Q1/2025Q4"],
        ("three.csv", "two columns"),
    ),
    ("cli-start-dates-no-periods", ["design", "--start-dates", "uk.csv"], ("--periods",)),
    (
        "cli-clusters-folder",
        ["randomise", "--clusters", "folder", "--waves", "2", "--seed", "1"],
        ("'folder'", "is a folder"),
    ),
    (
        "cli-clusters-no-id-column",
        ["randomise", "--clusters", "clusters.csv", "--waves", "2", "--seed", "1"],
        ("'cluster'", "--cluster-column"),
    ),
    (
        "cli-clusters-per-wave-sum",
        [
            "randomise",
            "--clusters",
            "clusters.csv",
            "--cluster-column",
            "council",
            "--clusters-per-wave",
            "1,1",
            "--seed",
            "1",
        ],
        ("adds up to 2", "3 clusters"),
    ),
    (
        "cli-randomise-no-waves",
        ["randomise", "--clusters", "clusters.csv", "--cluster-column", "council", "--seed", "1"],
        ("--waves",),
    ),
    ("cli-report-folder", ["report", "folder"], ("folder", "is a folder")),
    ("cli-report-missing", ["report", "nope.toml"], ("nope.toml", "no such file")),
]


# ------------------------------------------------------------------------------ config


_CFG_DIR = Path(tempfile.mkdtemp(prefix="sw-bad-input-"))
pd.DataFrame({"cluster": ["a", "b"]}).to_csv(_CFG_DIR / "clusters.csv", index=False)


def cfg(design: dict[str, Any]) -> TrialConfig:
    raw = {
        "schema_version": 1,
        "design": {"periods": "2022Q1/2026Q4", "clusters_per_wave": [1, 1], **design},
        "randomisation": {"clusters": "clusters.csv", "seed": 1},
    }
    return TrialConfig.from_mapping(raw, base=_CFG_DIR)


add(
    "config-ambiguous-wave-start",  # issue 14
    lambda: cfg({"wave_starts": ["01/07/2023", "2024-01-01"]}),
    ConfigError,
    "wave_starts[0]",
    "'01/07/2023'",
    "dayfirst",
)
add(
    "config-day-first-only-wave-start",
    lambda: cfg({"wave_starts": ["2023-01-01", "13/01/2024"]}),
    ConfigError,
    "wave_starts[1]",
    "'13/01/2024'",
)
add(
    "config-dayfirst-and-format",
    lambda: cfg(
        {"wave_starts": ["01/07/2023", "01/01/2024"], "dayfirst": True, "date_format": "%d/%m/%Y"}
    ),
    ConfigError,
    "dayfirst",
    "date_format",
)
add(
    "config-wave-start-time-of-day",
    lambda: cfg({"wave_starts": ["2023-07-01T10:00:00", "2024-01-01"]}),
    ConfigError,
    "wave_starts[0]",
    "time of day",
)
add(
    "config-wave-starts-not-a-list",
    lambda: cfg({"wave_starts": "2023-07-01"}),
    ConfigError,
    "wave_starts",
    "list",
)
add(
    "config-missing-periods",
    lambda: TrialConfig.from_mapping(
        {
            "schema_version": 1,
            "design": {
                "periods": "2022Q1/2026Q4",
                "wave_starts": ["2023-01-01"],
                "clusters_per_wave": [2],
            },
            "randomisation": {"clusters": "x.csv", "seed": 1},
        }
    ),
    ConfigError,
    "[randomisation] clusters",
    "no such file",
)
add(
    "config-clusters-folder",
    lambda: TrialConfig.from_mapping(
        {
            "schema_version": 1,
            "design": {
                "periods": "2022Q1/2026Q4",
                "wave_starts": ["2023-01-01"],
                "clusters_per_wave": [2],
            },
            "randomisation": {"clusters": "peer_parity", "seed": 1},
        },
        base=Path(__file__).parent / "reference",
    ),
    ConfigError,
    "peer_parity",
    "is a folder",
)
add(
    "config-file-is-folder",
    lambda: TrialConfig.from_toml(Path(__file__).parent),
    ConfigError,
    "is a folder",
    "trial.toml",
)


# ------------------------------------------------------------------------------ randomise

CL = pd.DataFrame(
    {
        "council": ["Leeds", "York", "Hull", "Bradford"],
        "region": ["N", "N", "E", "E"],
        "pop": [1.0, 2.0, 3.0, 4.0],
    }
)
CLC = CL.rename(columns={"council": "cluster"})  # the default id column
SW4 = Design.stepped_wedge(2, 2)
add(
    "rand-no-id-column",  # issue 14: councils were silently named 0..3
    lambda: randomise(SW4, CL, rng=1),
    OptionError,
    "cluster=",
    "council",
)
add(
    "rand-cluster-column-missing",
    lambda: randomise(SW4, CL, cluster="la", rng=1),
    OptionError,
    "'la'",
    "council",
)
add(
    "rand-cluster-with-list",
    lambda: randomise(SW4, ["a", "b", "c", "d"], cluster="council", rng=1),
    OptionError,
    "cluster",
    "list",
)
add(
    "rand-duplicate-labels",
    lambda: randomise(SW4, ["a", "a", "c", "d"], rng=1),
    DesignError,
    "'a'",
    "unique",
)
add(
    "rand-wrong-count",
    lambda: randomise(SW4, ["a", "b", "c"], rng=1),
    DesignError,
    "3 labels",
    "4 cluster rows",
)
add(
    "rand-missing-label",
    lambda: randomise(SW4, ["a", None, "c", "d"], rng=1),
    DesignError,
    "None",
    "position 1",
)
add(
    "rand-same-text-labels",
    lambda: randomise(SW4, [1, "1", 2, 3], rng=1),
    DesignError,
    "'1'",
    "text form",
)
add(
    "rand-strata-missing-column",
    lambda: randomise(SW4, CLC, strata="area", rng=1),
    DesignError,
    "'area'",
    "region",
)
add(
    "rand-strata-missing-values",
    lambda: randomise(SW4, CLC.assign(region=["N", None, "E", "E"]), strata="region", rng=1),
    DesignError,
    "'region'",
    "'York'",
)
add(
    "rand-allowed-without-strata",
    lambda: randomise(SW4, CLC, allowed_sequences={"N": [0]}, rng=1),
    DesignError,
    "allowed_sequences",
    "strata=",
)
add(
    "rand-design-not-design",
    lambda: randomise("sw", CLC, rng=1),
    DesignError,
    "design",
    "str",
)
add(
    "rand-balance-empty",
    lambda: randomise(SW4, CLC, balance=[], cutoff=0.5, rng=1),
    DesignError,
    "balance",
    "empty",
)
add(
    "rand-balance-missing-column",
    lambda: randomise(SW4, CLC, balance="age", cutoff=0.5, rng=1),
    DesignError,
    "'age'",
)
add(
    "rand-max-score-unreachable",
    lambda: randomise(SW4, CLC, balance="pop", max_score=-1.0, rng=1),
    DesignError,
    "max_score",
)
add(
    "rand-clusters-a-string",
    lambda: randomise(SW4, "Leeds,York", rng=1),
    DesignError,
    "clusters",
    "str",
)
add("rand-negative-seed", lambda: randomise(SW4, ["a", "b", "c", "d"], rng=-5), ValueError, "-5")


# ------------------------------------------------------------------------------ variance / power

for kwargs, key in (
    ({"sigma2": -1.0}, "sigma2"),
    ({"tau2": -0.1}, "tau2"),
    ({"gamma2": float("nan")}, "gamma2"),
    ({"eta2": "big"}, "eta2"),
    ({"psi2": float("inf")}, "psi2"),
    ({"rho": 1.5}, "rho"),
    ({"decay": 1.2}, "decay"),
    ({"decay": -0.1}, "decay"),
):
    add(
        f"vc-{key}-{list(kwargs.values())[0]}",
        (lambda k: lambda: VC(**k))(kwargs),
        OptionError,
        f"`{key}`",
    )
for kwargs, key in (
    ({"icc": 1.0}, "icc"),
    ({"icc": -0.1}, "icc"),
    ({"icc": 0.1, "cac": 1.5}, "cac"),
    ({"icc": 0.1, "iac": 1.0}, "iac"),
    ({"icc": 0.1, "total_variance": 0.0}, "total_variance"),
):
    add(
        f"vc-from-correlations-{key}-{kwargs[key]}",
        (lambda k: lambda: VC.from_correlations(**k))(kwargs),
        OptionError,
        f"`{key}`",
    )

SWD = Design.stepped_wedge(3, 2)


def pw(**kw: Any) -> Any:
    base: dict[str, Any] = dict(effect=0.3, variance=VC(tau2=0.05), cluster_size=10)
    return power(SWD, **{**base, **kw})


BIN_ID = dict(family="binomial", link="identity", baseline=0.3, effect=-0.1)
add(
    "power-gaussian-sigma2-zero",
    lambda: pw(variance=VC(sigma2=0.0, tau2=0.05)),
    OptionError,
    "sigma2",
    "Gaussian",
)
add(
    "power-binary-rescale-all-zero",
    lambda: pw(**BIN_ID, variance=VC(sigma2=0.0)),
    OptionError,
    "binary_variance='mean'",
    "swcrtdesign",
)
add(
    "power-bad-binary-variance",
    lambda: pw(**BIN_ID, binary_variance="swpwr"),
    OptionError,
    "binary_variance",
    "'swpwr'",
)
add("power-bad-dof", lambda: pw(dof="kenward-roger"), OptionError, "dof", "'kenward-roger'")
add(
    "power-dof-too-few",
    lambda: power(
        Design.stepped_wedge(3),
        effect=0.3,
        variance=VC(tau2=0.05),
        cluster_size=10,
        dof="between-within",
    ),
    OptionError,
    "dof='between-within'",
    "-2",
)
add("power-dof-negative", lambda: pw(dof=-3), ValueError, "dof", "-3")
add("power-bad-family", lambda: pw(family="beta"), OptionError, "family", "'beta'")
add(
    "power-bad-link",
    lambda: pw(family="poisson", link="logit", baseline=0.1),
    OptionError,
    "link",
    "'logit'",
)
add("power-alpha-one", lambda: pw(alpha=1.0), OptionError, "alpha", "1.0")
add("power-effect-nan", lambda: pw(effect=float("nan")), ValueError, "effect")
add("power-effect-text", lambda: pw(effect="big"), ValueError, "effect", "'big'")
add("power-binomial-no-baseline", lambda: pw(family="binomial"), ValueError, "baseline")
add(
    "power-binomial-baseline-out-of-range",
    lambda: pw(family="binomial", baseline=1.2),
    ValueError,
    "baseline",
    "1.2",
)
add(
    "power-rate-baseline-negative",
    lambda: pw(family="poisson", baseline=-1.0),
    ValueError,
    "baseline",
    "-1.0",
)
add("power-bad-time", lambda: pw(time="spline"), OptionError, "time", "'spline'")
add("power-bad-analysis", lambda: pw(analysis="bayes"), OptionError, "analysis", "'bayes'")
add("power-bad-sampling", lambda: pw(sampling="panel"), OptionError, "sampling", "'panel'")
add("power-churn-cross-sectional", lambda: pw(churn=0.2), ValueError, "churn", "cohort")
add(
    "power-individual-decay-open-cohort",
    lambda: pw(sampling="cohort", churn=0.3, individual_decay=0.5),
    ValueError,
    "individual_decay",
)
add(
    "power-bad-glmm-variance",
    lambda: pw(family="poisson", baseline=0.1, glmm_variance="wald"),
    OptionError,
    "glmm_variance",
    "'wald'",
)
add(
    "power-baseline-wrong-length",
    lambda: pw(family="binomial", baseline=[0.1, 0.2]),
    ValueError,
    "baseline",
)


# ------------------------------------------------------------------------------ the tests


@pytest.mark.parametrize("c", CASES, ids=[c.id for c in CASES])
def test_bad_input_is_refused_clearly(c: Case) -> None:
    with pytest.raises(c.error) as info:
        c.call()
    message = str(info.value)
    missing = [name for name in c.names if name not in message]
    assert not missing, f"message lacks {missing}: {message}"


@pytest.mark.parametrize(("id", "args", "names"), CLI_CASES, ids=[c[0] for c in CLI_CASES])
def test_cli_bad_input_is_refused_clearly(
    id: str, args: list[str], names: tuple[str, ...], csvs: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(csvs)
    with pytest.raises(CliFailed) as info:
        cli(*args)
    message = str(info.value)
    assert message.startswith(f"steppedwedge {args[0]}: error:")
    missing = [name for name in names if name not in message]
    assert not missing, f"message lacks {missing}: {message}"


def test_catalogue_size() -> None:
    assert len(CASES) + len(CLI_CASES) >= 150
    assert len({c.id for c in CASES}) == len(CASES)


def test_no_error_is_a_bare_exception() -> None:
    # every class the catalogue expects is ours (or a ValueError/TypeError of a misuse)
    for c in CASES:
        assert issubclass(c.error, (SteppedWedgeError, ValueError, TypeError))


# ------------------------------------------------------------------------------ what is accepted
# The other half of each rule: the ways to say what was meant, each checked against an
# independent statement of the same input (ISO dates, numeric periods, a renamed column).


@pytest.mark.parametrize(
    ("text", "kw"),
    [
        ("01/07/2024", {"dayfirst": True}),
        ("07/01/2024", {"dayfirst": False}),
        ("1.7.2024", {"dayfirst": True}),
        ("01/07/24", {"dayfirst": True}),
        ("01/07/2024", {"date_format": "%d/%m/%Y"}),
        ("1 July 2024", {}),
        ("July 1, 2024", {}),
        ("20240701", {}),
    ],
)
def test_dates_read_as_stated(text: str, kw: dict[str, Any]) -> None:
    iso = Design.from_start_dates({"Leeds": "2024-07-01", "York": "2024-10-01"}, **SD)
    other = {"Leeds": text, "York": "2024-10-01"}
    if kw:  # the second date must be readable under the same rule
        other["York"] = {True: "01/10/2024", False: "10/01/2024", "%d/%m/%Y": "01/10/2024"}[
            kw.get("dayfirst", kw.get("date_format"))
        ]
    assert Design.from_start_dates(other, **SD, **kw) == iso


def test_cli_dayfirst_gives_the_iso_design(tmp_path: Path) -> None:
    pd.DataFrame({"cluster": ["Leeds", "York"], "start": ["01/07/2024", "13/01/2025"]}).to_csv(
        tmp_path / "uk.csv", index=False
    )
    pd.DataFrame({"cluster": ["Leeds", "York"], "start": ["2024-07-01", "2025-01-13"]}).to_csv(
        tmp_path / "iso.csv", index=False
    )
    for name, extra in (("uk", ["--dayfirst"]), ("iso", [])):
        cli(
            "design",
            "--start-dates",
            str(tmp_path / f"{name}.csv"),
            "--periods",
            "2024Q1/2025Q4",
            "--csv",
            str(tmp_path / f"{name}-out.csv"),
            *extra,
        )
    pd.testing.assert_frame_equal(
        pd.read_csv(tmp_path / "uk-out.csv"), pd.read_csv(tmp_path / "iso-out.csv")
    )
    # the two councils start in 2024Q3 and 2025Q1, not in 2024Q1 (the misreading)
    wide = pd.read_csv(tmp_path / "uk-out.csv").pivot(
        index="cluster", columns="period", values="treatment"
    )
    assert wide.loc["Leeds"].tolist() == [0, 0, 1, 1, 1, 1, 1, 1]
    assert wide.loc["York"].tolist() == [0, 0, 0, 0, 1, 1, 1, 1]


def test_config_dayfirst_reads_wave_starts() -> None:
    assert cfg({"wave_starts": ["01/07/2023", "13/01/2024"], "dayfirst": True}).wave_starts == (
        "2023-07-01",
        "2024-01-13",
    )
    assert cfg({"wave_starts": ["2023-07-01", "2024-01-13"]}).wave_starts == (
        "2023-07-01",
        "2024-01-13",
    )


@pytest.mark.parametrize("how", ["period_order", "ordered_categorical"])
def test_text_periods_with_an_order_match_numbers(how: str) -> None:
    # issue 14: P4 ... P8 with time="linear" sorted as P4, P5, ..., but P10 would come first;
    # with the order given the fit equals the fit on the numbers 4..8
    numeric = sw_rows(n_clusters=6, n_periods=5, n=4, seed=7)
    numeric["period"] = numeric["period"] + 3
    text = numeric.assign(period="P" + numeric["period"].astype(str))
    text.loc[text["period"] == "P8", "period"] = "P10"  # sorts before P4 alphabetically
    order = ["P4", "P5", "P6", "P7", "P10"]
    kw: dict[str, Any] = {"time": "linear"}
    if how == "period_order":
        kw["period_order"] = order
    else:
        text["period"] = pd.Categorical(text["period"], categories=order, ordered=True)
    before = text.copy()
    a = fit_g(
        numeric.replace({"period": {8: 9}}).assign(
            period=lambda d: d["period"].map({4: 1, 5: 2, 6: 3, 7: 4, 9: 5})
        ),
        time="linear",
    )
    b = fit_g(text, **kw)
    assert b.estimate == pytest.approx(a.estimate, rel=REFIT_REL)
    assert b.std_error == pytest.approx(a.std_error, rel=REFIT_SE_REL)
    pd.testing.assert_frame_equal(text, before)  # the caller's frame is untouched


def test_text_periods_are_fine_for_categorical_time() -> None:
    numeric = sw_rows(n_clusters=6, n_periods=5, n=4, seed=8)
    text = numeric.assign(period=numeric["period"].map(dict(enumerate(P10, start=1))))
    assert fit_g(text).estimate == pytest.approx(fit_g(numeric).estimate, rel=REFIT_REL)


def test_randomise_cluster_column_carries_the_real_ids() -> None:
    # issue 14: without a 'cluster' column the councils were named 0..3 in the record
    a = randomise(SW4, CL, cluster="council", rng=5, alpha=None)
    b = randomise(SW4, CLC, rng=5, alpha=None)
    assert set(a.clusters) == set(CL["council"])
    assert dict(a.assignment) == dict(b.assignment)
    record = a.to_dict()
    assert "Leeds" in str(record) and a.input_hash == b.input_hash
    assert list(a.to_frame()["cluster"]) == list(b.to_frame()["cluster"])
    indexed = randomise(SW4, CL.set_index("council"), rng=5, alpha=None)  # a named index
    assert dict(indexed.assignment) == dict(b.assignment)


def test_reversal_allowed_when_asked() -> None:
    df = sw_rows().assign(arm=lambda d: np.where((d.site == "C1") & (d.period == 5), 0.0, d.arm))
    t = td(df, allow_reversal=True)
    assert t.cells().treatment[1].tolist() == [0.0, 0.0, 1.0, 1.0, 0.0]


def test_several_count_rows_per_cell_are_summed() -> None:
    # distinct areas of one council-quarter (not verbatim repeats) are still added up
    cells = count_cells()
    half = cells.assign(pop=cells["pop"] // 2, entries=cells["entries"] // 2)
    rest = cells.assign(pop=cells["pop"] - half["pop"], entries=cells["entries"] - half["entries"])
    rest.loc[0, "pop"] += 1  # at least one pair differs, so these are areas, not duplicates
    half.loc[0, "pop"] -= 1
    t = TrialData.from_frame(pd.concat([half, rest]), **P, exposure="pop", kind="individual")
    assert t.cells().total.sum() == cells["entries"].sum()


def test_sigma2_zero_for_counts_changes_nothing() -> None:
    kw = dict(effect=-0.2, cluster_size=1, family="poisson", baseline=6e-3, exposure=10_000)
    a = power(SWD, variance=VC(sigma2=0.0, tau2=0.05, gamma2=0.01), **kw)
    b = power(SWD, variance=VC(sigma2=1.0, tau2=0.05, gamma2=0.01), **kw)
    assert a.power == b.power


def test_iso_like_text_periods_carry_their_order() -> None:
    # "2023Q1" ... sort alphabetically in calendar order, so linear time accepts them
    numeric = sw_rows(n_clusters=6, n_periods=5, n=4, seed=9)
    labels = {1: "2023Q3", 2: "2023Q4", 3: "2024Q1", 4: "2024Q2", 5: "2024Q3"}
    text = numeric.assign(period=numeric["period"].map(labels))
    a = fit_g(numeric, time="linear")
    b = fit_g(text, time="linear")
    assert b.estimate == pytest.approx(a.estimate, rel=REFIT_REL)
