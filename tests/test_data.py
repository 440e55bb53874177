"""Tests for steppedwedge.data: roles, validation, design checks and exact cell aggregation.

References are independent computations: a brute-force Python loop over cells, pandas
groupby, exact integer algebra, and hand-written small cases.
"""

from __future__ import annotations

import copy
import time
import warnings
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from numpy.testing import assert_allclose, assert_array_equal
from tests._tolerances import EXACT, EXACT_REL, SS_ROUNDING, ZERO_ATOL_1E12

from steppedwedge.data import CellSummary, TrialData
from steppedwedge.exceptions import DataError, MissingDataWarning, OptionError

ROLES = dict(outcome="y", cluster="site", period="time", treatment="arm")


def sw_frame(rng: np.random.Generator, n_per_cell: int = 4, n_clusters: int = 4) -> pd.DataFrame:
    """A small stepped-wedge frame: cluster k starts treatment in period k + 1."""
    rows = []
    for c in range(n_clusters):
        for t in range(1, n_clusters + 2):
            for _ in range(n_per_cell):
                rows.append((f"S{c}", t, int(t > c + 1)))
    df = pd.DataFrame(rows, columns=["site", "time", "arm"])
    df["y"] = rng.normal(10.0, 2.0, len(df))
    df["age"] = rng.integers(20, 80, len(df))
    return df


def fake_design(matrix, clusters, periods=None) -> SimpleNamespace:
    """A duck-typed stand-in with the attributes of the Design contract."""
    m = np.asarray(matrix, dtype=float)
    if periods is None:
        periods = pd.RangeIndex(1, m.shape[1] + 1)
    return SimpleNamespace(matrix=m, clusters=tuple(clusters), periods=periods)


def sw_matrix(n_clusters: int = 4) -> np.ndarray:
    return np.array(
        [[float(t > c + 1) for t in range(1, n_clusters + 2)] for c in range(n_clusters)]
    )


def brute_cells(df: pd.DataFrame, clusters, periods, y="y", c="site", t="time"):
    """Reference aggregation by a plain Python loop over cells (math.fsum)."""
    import math

    n_i, n_t = len(clusters), len(periods)
    n = np.zeros((n_i, n_t))
    tot = np.zeros((n_i, n_t))
    ss = np.zeros((n_i, n_t))
    for i, cl in enumerate(clusters):
        for j, pe in enumerate(periods):
            v = df.loc[(df[c] == cl) & (df[t] == pe), y].to_numpy(float)
            n[i, j] = len(v)
            if len(v):
                tot[i, j] = math.fsum(v)
                m = tot[i, j] / len(v)
                ss[i, j] = math.fsum((v - m) ** 2)
    return n, tot, ss


# --------------------------------------------------------------------------------------
# construction and roles
# --------------------------------------------------------------------------------------


def test_individual_gaussian_cells_match_brute_force(rng) -> None:
    df = sw_frame(rng, n_per_cell=5)
    df = df.sample(frac=1.0, random_state=1)  # order of rows must not matter
    td = TrialData.from_frame(df, **ROLES)
    assert td.kind == "individual" and td.family == "gaussian"
    assert td.clusters == ("S0", "S1", "S2", "S3")
    assert list(td.periods) == [1, 2, 3, 4, 5]
    cells = td.cells()
    n, tot, ss = brute_cells(df, td.clusters, list(td.periods))
    assert_array_equal(cells.n, n)
    assert_allclose(cells.total, tot, **EXACT)
    assert_allclose(cells.mean, tot / n, **EXACT)
    assert_allclose(cells.within_ss, ss, **EXACT)
    assert_array_equal(cells.treatment, sw_matrix())
    assert cells.observed.all()
    assert cells.exposure is None


def test_frame_is_a_copy_with_canonical_names(rng) -> None:
    df = sw_frame(rng)
    df["period"] = 99  # a non-role column with a canonical name
    before = copy.deepcopy(df)
    td = TrialData.from_frame(df, **ROLES, covariates=["age"])
    pd.testing.assert_frame_equal(df, before)
    assert set(td.frame.columns) == {"cluster", "period", "treatment", "outcome", "age", "period_"}
    assert td.roles == {"cluster": "site", "period": "time", "treatment": "arm", "outcome": "y"}
    assert td.covariates == ("age",)
    assert_array_equal(td.frame["period_"], 99)
    assert td.frame["outcome"].dtype == np.float64
    assert td.frame["treatment"].dtype == np.float64
    # modifying the TrialData's frame does not touch the caller's
    td.frame.loc[td.frame.index[0], "outcome"] = -1e9
    pd.testing.assert_frame_equal(df, before)
    assert_array_equal(td.frame.index, df.index)


def test_codes_index_clusters_and_periods(rng) -> None:
    df = sw_frame(rng)
    td = TrialData.from_frame(df, **ROLES)
    assert_array_equal(np.array(td.clusters)[td.cluster_codes], df["site"].to_numpy())
    assert_array_equal(np.asarray(td.periods)[td.period_codes], df["time"].to_numpy())
    assert td.n_clusters == 4 and td.n_periods == 5 and td.n_rows == len(df)
    assert "TrialData(individual" in repr(td)


def test_cells_are_cached_and_read_only(rng) -> None:
    td = TrialData.from_frame(sw_frame(rng), **ROLES)
    cells = td.cells()
    assert td.cells() is cells
    with pytest.raises(ValueError):
        cells.n[0, 0] = 5.0
    assert isinstance(cells, CellSummary) and cells.shape == (4, 5)


def test_within_ss_is_stable_for_large_offsets() -> None:
    # y = 1e9 + k, k = 0..m-1: the exact within-cell SS is m (m^2 - 1) / 12; a one-pass
    # sum-of-squares formula loses every digit here.
    m = 1001
    df = pd.DataFrame(
        {"c": ["a"] * m, "t": [1] * m, "x": [0] * m, "y": 1e9 + np.arange(m, dtype=float)}
    )
    cells = TrialData.from_frame(df, outcome="y", cluster="c", period="t", treatment="x").cells()
    assert_allclose(cells.within_ss[0, 0], m * (m * m - 1) / 12, **EXACT)
    assert_allclose(cells.mean[0, 0], 1e9 + (m - 1) / 2, **EXACT)


def test_200k_rows_equal_pandas_groupby() -> None:
    rng = np.random.default_rng(7)
    n = 200_000
    df = pd.DataFrame(
        {
            "site": rng.integers(0, 40, n),
            "time": rng.integers(1, 9, n),
            "y": rng.normal(50.0, 10.0, n),
        }
    )
    df["arm"] = (df["time"] > df["site"] % 7 + 1).astype(int)
    td = TrialData.from_frame(df, **ROLES)
    cells = td.cells()
    g = df.groupby(["site", "time"])["y"]
    dev = df["y"] - g.transform("mean")
    ref = pd.DataFrame(
        {
            "n": g.size(),
            "total": g.sum(),
            "mean": g.mean(),
            "ss": (dev**2).groupby([df.site, df.time]).sum(),
        }
    )
    ref = ref.reindex(pd.MultiIndex.from_product([list(td.clusters), list(td.periods)]))
    assert_array_equal(cells.n.ravel(), ref["n"].to_numpy())
    assert_allclose(cells.total.ravel(), ref["total"].to_numpy(), **EXACT)
    assert_allclose(cells.mean.ravel(), ref["mean"].to_numpy(), **EXACT)
    assert_allclose(cells.within_ss.ravel(), ref["ss"].to_numpy(), **EXACT)


@pytest.mark.slow
def test_one_million_rows_aggregate_fast() -> None:
    rng = np.random.default_rng(3)
    n = 1_000_000
    df = pd.DataFrame(
        {
            "site": rng.integers(0, 150, n).astype(str),
            "time": rng.integers(1, 10, n),
            "y": (rng.random(n) < 0.3).astype(int),
        }
    )
    df["arm"] = (df["time"] > 5).astype(int)
    t0 = time.perf_counter()
    cells = TrialData.from_frame(df, **ROLES, family="binomial").cells()
    elapsed = time.perf_counter() - t0
    assert cells.n.sum() == n
    assert elapsed < 2.0, f"aggregating 1e6 rows took {elapsed:.2f} s"


def test_binomial_individual_equals_aggregate(rng) -> None:
    df = sw_frame(rng, n_per_cell=7)
    df["y"] = (rng.random(len(df)) < 0.4).astype(int)
    ind = TrialData.from_frame(df, **ROLES, family="binomial").cells()
    agg = df.groupby(["site", "time"], as_index=False).agg(
        arm=("arm", "first"), events=("y", "sum"), n=("y", "size")
    )
    td = TrialData.from_frame(
        agg,
        outcome="events",
        trials="n",
        cluster="site",
        period="time",
        treatment="arm",
        family="binomial",
    )
    assert td.kind == "aggregate"
    cells = td.cells()
    for name in ("n", "total", "mean", "treatment"):
        assert_allclose(getattr(cells, name), getattr(ind, name), **EXACT)
    # implied 0/1 rows give the same within-cell SS as the individual rows
    assert_allclose(cells.within_ss, ind.within_ss, rtol=EXACT_REL, atol=ZERO_ATOL_1E12)


def test_bool_outcome_and_treatment() -> None:
    df = pd.DataFrame(
        {
            "c": [1, 1, 2, 2],
            "t": [1, 2, 1, 2],
            "x": [False, True, False, False],
            "y": [True, False, True, True],
        }
    )
    cells = TrialData.from_frame(
        df, outcome="y", cluster="c", period="t", treatment="x", family="binomial"
    ).cells()
    assert_array_equal(cells.total, [[1, 0], [1, 1]])
    assert_array_equal(cells.treatment, [[0, 1], [0, 0]])


def test_poisson_aggregate_with_exposure_and_offset() -> None:
    df = pd.DataFrame(
        {
            "c": ["a", "a", "b", "b"],
            "t": [1, 2, 1, 2],
            "x": [0, 1, 0, 0],
            "k": [3, 0, 7, 9],
            "pop": [100.0, 110.0, 250.0, 260.0],
        }
    )
    td = TrialData.from_frame(
        df, outcome="k", exposure="pop", family="poisson", cluster="c", period="t", treatment="x"
    )
    assert td.kind == "aggregate"
    cells = td.cells()
    assert_array_equal(cells.exposure, [[100, 110], [250, 260]])
    assert_array_equal(cells.total, [[3, 0], [7, 9]])
    assert_array_equal(cells.n, np.ones((2, 2)))
    assert_array_equal(cells.within_ss, np.zeros((2, 2)))
    df["logpop"] = np.log(df["pop"])
    via_offset = TrialData.from_frame(
        df, outcome="k", offset="logpop", family="poisson", cluster="c", period="t", treatment="x"
    ).cells()
    assert_allclose(via_offset.exposure, cells.exposure, **EXACT)


def test_individual_counts_sum_exposure() -> None:
    df = pd.DataFrame(
        {
            "c": [1, 1, 1, 2],
            "t": [1, 1, 2, 1],
            "x": [0, 0, 1, 0],
            "k": [1, 2, 0, 5],
            "py": [0.5, 1.5, 2.0, 3.0],
        }
    )
    cells = TrialData.from_frame(
        df,
        outcome="k",
        exposure="py",
        family="negative_binomial",
        kind="individual",
        cluster="c",
        period="t",
        treatment="x",
    ).cells()
    assert_array_equal(cells.n, [[2, 1], [1, 0]])
    assert_array_equal(cells.exposure, [[2.0, 2.0], [3.0, 0.0]])
    assert_array_equal(cells.within_ss, [[0.5, 0.0], [0.0, 0.0]])
    assert not cells.observed[1, 1] and np.isnan(cells.mean[1, 1])
    assert np.isnan(cells.treatment[1, 1])


def test_gaussian_aggregate_with_and_without_size() -> None:
    df = pd.DataFrame(
        {
            "c": [1, 1, 2, 2],
            "t": [1, 2, 1, 2],
            "x": [0, 1, 0, 0],
            "m": [2.5, 3.0, 4.0, 4.5],
            "size": [10, 12, 8, 9],
        }
    )
    cells = TrialData.from_frame(
        df, outcome="m", size="size", cluster="c", period="t", treatment="x"
    ).cells()
    assert_array_equal(cells.n, [[10, 12], [8, 9]])
    assert_array_equal(cells.total, [[2.5, 3.0], [4.0, 4.5]])  # sum of the outcome column
    td = TrialData.from_frame(
        df, outcome="m", kind="aggregate", cluster="c", period="t", treatment="x"
    )
    assert_array_equal(td.cells().n, np.ones((2, 2)))
    assert_array_equal(td.cells().mean, [[2.5, 3.0], [4.0, 4.5]])


def test_period_dtype_keeps_period_index() -> None:
    q = pd.PeriodIndex(["2022Q2", "2022Q1", "2022Q2", "2022Q1"], freq="Q")
    df = pd.DataFrame({"c": ["a", "a", "b", "b"], "q": q, "x": [1, 0, 0, 0], "y": [1.0, 2, 3, 4]})
    td = TrialData.from_frame(df, outcome="y", cluster="c", period="q", treatment="x")
    assert isinstance(td.periods, pd.PeriodIndex)
    assert [str(p) for p in td.periods] == ["2022Q1", "2022Q2"]
    assert_array_equal(td.cells().mean, [[2.0, 1.0], [4.0, 3.0]])


def test_cells_to_frame_round_trip(rng) -> None:
    td = TrialData.from_frame(sw_frame(rng), **ROLES)
    cells = td.cells()
    long = cells.to_frame()
    assert list(long.columns) == [
        "cluster",
        "period",
        "n",
        "total",
        "mean",
        "within_ss",
        "treatment",
        "observed",
    ]
    assert len(long) == 20
    wide = long.pivot(index="cluster", columns="period", values="within_ss")
    assert_array_equal(wide.to_numpy(), cells.within_ss)


# --------------------------------------------------------------------------------------
# missing values
# --------------------------------------------------------------------------------------


def test_missing_outcome_raises_by_default(rng) -> None:
    df = sw_frame(rng)
    df.loc[5, "y"] = np.nan
    with pytest.raises(
        DataError, match=r"'y': 1.*row 5 \(cluster 'S0', period 2\).*missing='drop'"
    ):
        TrialData.from_frame(df, **ROLES)


def test_missing_drop_warns_and_counts(rng) -> None:
    df = sw_frame(rng)
    df.loc[[5, 6], "y"] = np.nan
    df.loc[30, "age"] = np.nan
    before = copy.deepcopy(df)
    with pytest.warns(
        MissingDataWarning, match=r"dropped 3 of 80 rows.*'y': 2, 'age': 1.*'S0' \(2\)"
    ):
        td = TrialData.from_frame(df, **ROLES, covariates=["age"], missing="drop")
    assert td.n_rows == 77
    assert 5 not in td.frame.index and 30 not in td.frame.index
    pd.testing.assert_frame_equal(df, before)
    assert td.cells().n.sum() == 77


@pytest.mark.parametrize(
    "role,col", [("cluster", "site"), ("period", "time"), ("treatment", "arm")]
)
def test_missing_structural_labels_raise(rng, role, col) -> None:
    df = sw_frame(rng)
    df[col] = df[col].astype(object)
    df.loc[7, col] = None
    with pytest.raises(DataError, match=rf"`{role}` column '{col}' has 1 missing value.*rows 7"):
        TrialData.from_frame(df, **ROLES, missing="drop")


# --------------------------------------------------------------------------------------
# bad inputs: each error names its culprit
# --------------------------------------------------------------------------------------


def counts_frame() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "c": ["a", "a", "b", "b"],
            "t": [1, 2, 1, 2],
            "x": [0, 1, 0, 0],
            "k": [3, 1, 7, 9],
            "pop": [100.0, 110.0, 250.0, 260.0],
            "n": [10, 10, 12, 12],
        }
    )


COUNT_ROLES = dict(cluster="c", period="t", treatment="x")


def test_duplicate_aggregate_cell() -> None:
    df = counts_frame()
    df.loc[3, "t"] = 1
    with pytest.raises(DataError, match=r"duplicated cells.*\('b', 1\).*kind='individual'"):
        TrialData.from_frame(df, outcome="k", family="poisson", **COUNT_ROLES)


@pytest.mark.parametrize("value,what", [(-1, "-1"), (2.5, "2.5")])
def test_bad_counts(value, what) -> None:
    df = counts_frame()
    df["k"] = df["k"].astype(float)
    df.loc[2, "k"] = value
    with pytest.raises(
        DataError,
        match=rf"'k' must hold non-negative integer counts; bad values {what}"
        r".*row 2 \(cluster 'b', period 1\)",
    ):
        TrialData.from_frame(df, outcome="k", family="poisson", **COUNT_ROLES)


@pytest.mark.parametrize("value", [0.0, -5.0, np.inf])
def test_non_positive_exposure(value) -> None:
    df = counts_frame()
    df.loc[1, "pop"] = value
    with pytest.raises(
        DataError,
        match=r"`exposure` column 'pop' must be positive.*row 1 \(cluster 'a', period 2\)",
    ):
        TrialData.from_frame(df, outcome="k", exposure="pop", family="poisson", **COUNT_ROLES)


def test_events_exceed_trials() -> None:
    df = counts_frame()
    df.loc[3, "k"] = 13
    with pytest.raises(
        DataError,
        match=r"events \(column 'k'\) exceed trials \(column 'n'\).*cluster 'b', period 2",
    ):
        TrialData.from_frame(df, outcome="k", trials="n", family="binomial", **COUNT_ROLES)


def test_negative_events_and_bad_trials() -> None:
    df = counts_frame()
    df.loc[0, "k"] = -2
    with pytest.raises(DataError, match=r"non-negative integer events.*cluster 'a', period 1"):
        TrialData.from_frame(df, outcome="k", trials="n", family="binomial", **COUNT_ROLES)
    df = counts_frame()
    df["n"] = df["n"].astype(float)
    df.loc[2, "n"] = 11.5
    with pytest.raises(DataError, match=r"`trials` column 'n'.*cluster 'b', period 1"):
        TrialData.from_frame(df, outcome="k", trials="n", family="binomial", **COUNT_ROLES)


def test_non_numeric_outcome(rng) -> None:
    df = sw_frame(rng)
    df["y"] = df["y"].astype(object)
    df.loc[3, "y"] = "high"
    with pytest.raises(DataError, match=r"`outcome` column 'y' must be numeric.*'high' in row 3"):
        TrialData.from_frame(df, **ROLES)
    df2 = sw_frame(rng)
    df2["y"] = "x"
    with pytest.raises(DataError, match=r"`outcome` column 'y' must be numeric"):
        TrialData.from_frame(df2, **ROLES)


def test_infinite_outcome(rng) -> None:
    df = sw_frame(rng)
    df.loc[9, "y"] = -np.inf
    with pytest.raises(
        DataError, match=r"'y' has non-finite values: row 9 \(cluster 'S0', period 3\)"
    ):
        TrialData.from_frame(df, **ROLES)


def test_binomial_individual_outcome_not_binary(rng) -> None:
    df = sw_frame(rng)
    df["y"] = 0
    df.loc[11, "y"] = 2
    with pytest.raises(DataError, match=r"must be 0/1.*bad values 2.*row 11"):
        TrialData.from_frame(df, **ROLES, family="binomial")


def test_treatment_outside_unit_interval(rng) -> None:
    df = sw_frame(rng)
    df.loc[4, "arm"] = 2
    with pytest.raises(DataError, match=r"`treatment` column 'arm' must lie in \[0, 1\].*row 4"):
        TrialData.from_frame(df, **ROLES)


def test_treatment_varying_within_cell(rng) -> None:
    df = sw_frame(rng)
    df.loc[0, "arm"] = 1  # S0, period 1 has 3 control rows and 1 treated row
    td = TrialData.from_frame(df, **ROLES)
    with pytest.raises(DataError, match=r"'arm' varies within cluster-period cells \('S0', 1\)"):
        td.cells()


def test_individual_reused_across_clusters(rng) -> None:
    df = sw_frame(rng)
    df["pid"] = np.arange(len(df))
    TrialData.from_frame(df, **ROLES, individual="pid")  # unique ids are fine
    df.loc[df.index[-1], "pid"] = 0  # id 0 is in S0; the last row is in S3
    with pytest.raises(DataError, match=r"reused: 0 in clusters S0, S3"):
        TrialData.from_frame(df, **ROLES, individual="pid")
    # repeated measures of one individual within a cluster are allowed (cohorts)
    df2 = sw_frame(rng)
    df2["pid"] = df2["site"] + "-" + (df2.groupby(["site", "time"]).cumcount()).astype(str)
    TrialData.from_frame(df2, **ROLES, individual="pid")


def test_missing_column_and_role_conflicts(rng) -> None:
    df = sw_frame(rng)
    with pytest.raises(DataError, match=r"column 'yy' given as `outcome` is not in `data`"):
        TrialData.from_frame(df, outcome="yy", cluster="site", period="time", treatment="arm")
    with pytest.raises(
        DataError, match=r"column 'time' is given both as `period` and as `treatment`"
    ):
        TrialData.from_frame(df, outcome="y", cluster="site", period="time", treatment="time")
    with pytest.raises(DataError, match=r"covariate column 'sex' is not in `data`"):
        TrialData.from_frame(df, **ROLES, covariates=["sex"])
    with pytest.raises(ValueError, match=r"`family` must be one of .*'poisson'"):
        TrialData.from_frame(df, **ROLES, family="gamma")
    with pytest.raises(ValueError, match=r"`missing` must be one of 'raise', 'drop'"):
        TrialData.from_frame(df, **ROLES, missing="ignore")
    with pytest.raises(TypeError, match=r"`data` must be a pandas DataFrame"):
        TrialData.from_frame(df.to_dict(), **ROLES)


def test_options_that_need_another_family() -> None:
    df = counts_frame()
    with pytest.raises(DataError, match=r"`trials` is only used with family='binomial'"):
        TrialData.from_frame(df, outcome="k", trials="n", family="poisson", **COUNT_ROLES)
    with pytest.raises(DataError, match=r"`exposure` is only used with count families"):
        TrialData.from_frame(df, outcome="k", exposure="pop", **COUNT_ROLES)
    with pytest.raises(DataError, match=r"binomial aggregate rows need `trials`"):
        TrialData.from_frame(df, outcome="k", family="binomial", kind="aggregate", **COUNT_ROLES)


# --------------------------------------------------------------------------------------
# consistency with a design
# --------------------------------------------------------------------------------------


def test_design_labels_order_and_success(rng) -> None:
    df = sw_frame(rng)
    design = fake_design(sw_matrix()[::-1], ["S3", "S2", "S1", "S0"])
    td = TrialData.from_frame(df, **ROLES, design=design)
    assert td.clusters == ("S3", "S2", "S1", "S0")  # the design's order, not sorted
    assert td.design is design
    assert_array_equal(td.cells().treatment, design.matrix)


def test_design_extra_cluster_in_data(rng) -> None:
    df = sw_frame(rng)
    design = fake_design(sw_matrix()[:3], ["S0", "S1", "S2"])
    with pytest.raises(
        DataError, match=r"cluster labels in column 'site' are not in the design: S3"
    ):
        TrialData.from_frame(df, **ROLES, design=design)


def test_design_extra_period_in_data(rng) -> None:
    df = sw_frame(rng)
    design = fake_design(sw_matrix()[:, :4], ["S0", "S1", "S2", "S3"])
    with pytest.raises(DataError, match=r"period labels in column 'time' are not in the design: 5"):
        TrialData.from_frame(df, **ROLES, design=design)


def test_design_cluster_missing_from_data_warns(rng) -> None:
    df = sw_frame(rng)
    df = df[df["site"] != "S2"]
    design = fake_design(sw_matrix(), ["S0", "S1", "S2", "S3"])
    with pytest.warns(
        MissingDataWarning, match=r"5 cell\(s\) the design marks observed have no rows.*\('S2', 1\)"
    ):
        td = TrialData.from_frame(df, **ROLES, design=design)
    assert not td.cells().observed[2].any()


def test_rows_in_unobserved_design_cells(rng) -> None:
    df = sw_frame(rng)
    m = sw_matrix()
    m[1, 2] = np.nan  # S1, period 3: a transition period the design excludes
    design = fake_design(m, ["S0", "S1", "S2", "S3"])
    with pytest.raises(
        DataError, match=r"cells the design marks unobserved: row \d+ \(cluster 'S1', period 3\)"
    ):
        TrialData.from_frame(df, **ROLES, design=design)
    ok = df[~((df["site"] == "S1") & (df["time"] == 3))]
    td = TrialData.from_frame(ok, **ROLES, design=design)
    assert not td.cells().observed[1, 2]


def test_treatment_disagrees_with_design(rng) -> None:
    df = sw_frame(rng)
    df.loc[(df["site"] == "S2") & (df["time"] == 3), "arm"] = 1  # S2 starts in period 4
    design = fake_design(sw_matrix(), ["S0", "S1", "S2", "S3"])
    with pytest.raises(
        DataError,
        match=r"disagrees with the design in 4 row\(s\): cluster 'S2', period 3: data 1, design 0",
    ):
        TrialData.from_frame(df, **ROLES, design=design)


def test_string_periods_match_a_period_index_design() -> None:
    periods = pd.period_range("2023Q1", "2023Q3", freq="Q")
    design = fake_design([[0, 1, 1], [0, 0, 1]], ["a", "b"], periods)
    df = pd.DataFrame(
        {
            "c": ["a", "a", "a", "b", "b", "b"],
            "q": ["2023Q1", "2023Q2", "2023Q3"] * 2,
            "x": [0, 1, 1, 0, 0, 1],
            "y": np.arange(6.0),
        }
    )
    td = TrialData.from_frame(
        df, outcome="y", cluster="c", period="q", treatment="x", design=design
    )
    assert td.periods.equals(periods)
    assert isinstance(td.frame["period"].dtype, pd.PeriodDtype)
    assert_array_equal(td.cells().mean, [[0, 1, 2], [3, 4, 5]])
    df.loc[2, "q"] = "2024Q1"
    with pytest.raises(
        DataError, match=r"period labels in column 'q' are not in the design: 2024Q1"
    ):
        TrialData.from_frame(df, outcome="y", cluster="c", period="q", treatment="x", design=design)


def test_real_design_object(rng) -> None:
    from steppedwedge.design import Design

    design = Design.from_matrix(sw_matrix(), clusters=["S0", "S1", "S2", "S3"])
    df = sw_frame(rng)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        td = TrialData.from_frame(df, **ROLES, design=design)
    assert_array_equal(td.cells().treatment, design.matrix)
    df.loc[0, "arm"] = 1
    with pytest.raises(DataError, match=r"cluster 'S0', period 1: data 1, design 0"):
        TrialData.from_frame(df, **ROLES, design=design)


def test_date_periods_match_a_period_index_design() -> None:
    periods = pd.period_range("2023-01", "2023-03", freq="M")
    design = fake_design([[0, 1, 1], [0, 0, 1]], ["a", "b"], periods)
    df = pd.DataFrame(
        {
            "c": ["a", "a", "a", "b", "b", "b"],
            "d": pd.to_datetime(["2023-01-05", "2023-02-28", "2023-03-01"] * 2),
            "x": [0, 1, 1, 0, 0, 1],
            "y": np.arange(6.0),
        }
    )
    td = TrialData.from_frame(
        df, outcome="y", cluster="c", period="d", treatment="x", design=design
    )
    assert td.periods.equals(periods)
    np.testing.assert_array_equal(td.cells().n, np.ones((2, 3)))


def test_count_rows_with_individual_ids_are_individual() -> None:
    df = pd.DataFrame(
        {
            "c": [1, 1, 2, 2],
            "t": [1, 1, 1, 2],
            "x": [0, 0, 0, 1],
            "k": [0, 2, 1, 3],
            "id": [1, 2, 3, 3],
        }
    )
    td = TrialData.from_frame(
        df, outcome="k", family="poisson", individual="id", cluster="c", period="t", treatment="x"
    )
    assert td.kind == "individual"
    cells = td.cells()
    np.testing.assert_array_equal(cells.n, [[2, 0], [1, 1]])
    np.testing.assert_array_equal(cells.within_ss, [[2.0, 0.0], [0.0, 0.0]])
    with pytest.raises(DataError, match=r"duplicated cells.*\(1, 1\)"):
        TrialData.from_frame(
            df, outcome="k", family="poisson", cluster="c", period="t", treatment="x"
        )


@pytest.mark.property
@settings(max_examples=40, deadline=None)
@given(
    n_rows=st.integers(1, 60),
    n_clusters=st.integers(1, 4),
    n_periods=st.integers(1, 4),
    seed=st.integers(0, 2**32 - 1),
    scale=st.sampled_from([1e-3, 1.0, 1e6]),
)
def test_aggregation_matches_brute_force_property(n_rows, n_clusters, n_periods, seed, scale):
    r = np.random.default_rng(seed)
    df = pd.DataFrame(
        {
            "site": r.integers(0, n_clusters, n_rows),
            "time": r.integers(0, n_periods, n_rows),
            "y": scale * (100.0 + r.normal(size=n_rows)),
        }
    )
    df["arm"] = (df["time"] > df["site"]).astype(int)  # constant within each cell
    td = TrialData.from_frame(df, **ROLES)
    cells = td.cells()
    n, tot, ss = brute_cells(df, td.clusters, list(td.periods))
    assert_array_equal(cells.n, n)
    assert_allclose(cells.total, tot, **EXACT)
    # within-cell SS is a difference of nearby numbers; compare on the scale of the data
    assert_allclose(cells.within_ss, ss, rtol=EXACT_REL, atol=SS_ROUNDING * scale**2 * n_rows)
    assert cells.n.sum() == n_rows
    # the row order does not matter
    shuffled = TrialData.from_frame(df.iloc[r.permutation(n_rows)], **ROLES).cells()
    assert_allclose(shuffled.total, cells.total, **EXACT)
    assert_allclose(
        shuffled.within_ss, cells.within_ss, rtol=EXACT_REL, atol=SS_ROUNDING * scale**2 * n_rows
    )


def test_exposure_and_offset_together_is_refused() -> None:
    # issue 14: both were applied (log exposure + offset), doubling an offset that repeats
    # the exposure; now an OptionError naming both columns
    df = counts_frame()
    df["off"] = np.log([2.0, 1.0, 0.5, 1.0])
    with pytest.raises(OptionError, match=r"`exposure` \('pop'\) and `offset` \('off'\)"):
        TrialData.from_frame(
            df, outcome="k", exposure="pop", offset="off", family="poisson", **COUNT_ROLES
        )


def test_offset_alone_gives_exp_offset_exposure() -> None:
    df = counts_frame()
    df["off"] = np.log(df["pop"].to_numpy(dtype=float) * [2.0, 1.0, 0.5, 1.0])
    cells = TrialData.from_frame(
        df, outcome="k", offset="off", family="poisson", **COUNT_ROLES
    ).cells()
    assert_allclose(cells.exposure, [[200.0, 110.0], [125.0, 260.0]], rtol=EXACT_REL)
    assert "exposure" in cells.to_frame().columns


def test_cell_sum_matches_groupby(rng) -> None:
    df = sw_frame(rng, n_per_cell=6)
    df = df[~((df["site"] == "S1") & (df["time"] == 2))]  # one empty cell
    td = TrialData.from_frame(df, **ROLES, covariates=["age"])
    x = np.column_stack([td.frame["age"], td.frame["age"] * td.frame["outcome"]])
    sums = td.cell_sum(x)
    assert sums.shape == (4, 5, 2)
    ref = (
        df.assign(xy=df["age"] * df["y"])
        .groupby(["site", "time"])[["age", "xy"]]
        .sum()
        .reindex(pd.MultiIndex.from_product([list(td.clusters), list(td.periods)]), fill_value=0)
    )
    assert_allclose(sums.reshape(-1, 2), ref.to_numpy(dtype=float), **EXACT)
    assert_allclose(td.cell_sum(td.frame["outcome"]), td.cells().total, **EXACT)
    assert_array_equal(td.cell_index, td.cluster_codes * 5 + td.period_codes)
    with pytest.raises(ValueError, match=r"`values` must have shape"):
        td.cell_sum(np.ones(3))
