"""``compare``: side-by-side table of results that follow the result protocol.

Each row must reproduce the result's own estimand, standard error, interval, p-value and
df (the attributes each result computes itself), whatever the result type.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from _tolerances import EXACT

from steppedwedge.compare import COMPARE_COLUMNS, compare
from steppedwedge.inference.permutation import permutation_test
from steppedwedge.inference.pooling import pool
from steppedwedge.models.fit import fit

ROLES = dict(outcome="y", cluster="c", period="t", treatment="x")


@pytest.fixture(scope="module")
def gaussian() -> pd.DataFrame:
    rng = np.random.default_rng(12)
    rows = []
    for i in range(8):
        a = rng.normal(0, 0.5)
        for j in range(5):
            x = float(j > i % 4)
            rows += [(i, j, x, a + 0.1 * j + 0.6 * x + rng.normal()) for _ in range(6)]
    return pd.DataFrame(rows, columns=["c", "t", "x", "y"])


@pytest.fixture(scope="module")
def binomial() -> pd.DataFrame:
    rng = np.random.default_rng(5)
    rows = []
    for i in range(8):
        a = rng.normal(0, 0.3)
        for j in range(5):
            x = float(j > i % 4)
            n = int(rng.integers(30, 60))
            p = 1 / (1 + np.exp(-(-0.5 + a + 0.5 * x)))
            rows.append((i, j, x, int(rng.binomial(n, p)), n))
    return pd.DataFrame(rows, columns=["c", "t", "x", "y", "n"])


def _check_row(row: pd.Series, res, level: float = 0.95) -> None:
    np.testing.assert_allclose(row["estimate"], res.estimate, **EXACT)
    np.testing.assert_allclose(row["p_value"], res.pvalue, **EXACT)
    lo, hi = res.conf_int(level)
    np.testing.assert_allclose([row["conf_low"], row["conf_high"]], [lo, hi], **EXACT)
    se = res.std_error
    if math.isnan(se):
        assert math.isnan(row["std_error"])
    else:
        np.testing.assert_allclose(row["std_error"], se, **EXACT)


def test_compare_mixed_gee_cluster_permutation_pooled(gaussian: pd.DataFrame) -> None:
    lmm = fit(gaussian, **ROLES)
    gee = fit(gaussian, **ROLES, method="gee", time="linear")
    cs = fit(gaussian, **ROLES, method="cluster-summary")
    perm = permutation_test(
        gaussian, **ROLES, statistic="twfe", n_permutations=999, rng=1, confidence_level=0.95
    )
    pooled = pool(estimates=[0.5, 0.6, 0.55], std_errors=[0.2, 0.21, 0.19], dfcom=30)
    results = {"LMM": lmm, "GEE": gee, "cluster": cs, "randomisation": perm, "MI": pooled}
    table = compare(results)
    assert tuple(table.columns) == COMPARE_COLUMNS
    assert table["model"].tolist() == list(results)
    assert (table["term"] == "treatment").sum() >= 4
    for (_, row), res in zip(table.iterrows(), results.values(), strict=True):
        _check_row(row, res)
    np.testing.assert_allclose(table["df"].iloc[0], lmm.df, **EXACT)
    np.testing.assert_allclose(table["df"].iloc[4], pooled.df_estimand, **EXACT)
    assert math.isnan(table["df"].iloc[3])
    methods = table["method"].tolist()
    assert methods[0].startswith("LMM (REML")
    assert methods[1].startswith("GEE")
    assert methods[2].startswith("cluster-period summaries")
    assert methods[3] == "randomisation test (twfe, B=999)"
    assert methods[4].startswith("pooled over 3")
    # a plain DataFrame: renders as HTML in notebooks
    assert "<table" in table._repr_html_()


def test_compare_glmm_and_levels(binomial: pd.DataFrame, gaussian: pd.DataFrame) -> None:
    glmm = fit(binomial, **ROLES, family="binomial", trials="n")
    lmm = fit(gaussian, **ROLES)
    perm = permutation_test(
        gaussian, **ROLES, statistic="cluster-period", rng=2, n_permutations=499
    )
    t90 = compare([glmm, lmm, perm], names=["GLMM", "LMM", "perm"], confidence_level=0.9)
    t95 = compare([glmm, lmm, perm], confidence_level=0.95)
    assert t95["model"].tolist() == ["1", "2", "3"]
    for k, res in enumerate([glmm, lmm, perm]):
        _check_row(t90.iloc[k], res, 0.9)
        _check_row(t95.iloc[k], res, 0.95)
        assert t90["conf_high"].iloc[k] - t90["conf_low"].iloc[k] < (
            t95["conf_high"].iloc[k] - t95["conf_low"].iloc[k]
        )
    assert t90["method"].iloc[0].startswith("GLMM")


def test_compare_lmm_permutation_has_no_interval(gaussian: pd.DataFrame) -> None:
    perm = permutation_test(
        gaussian,
        **ROLES,
        statistic=lambda f: float(f["y"].mean()),
        n_permutations=19,
        rng=1,
        alpha=None,
    )
    row = compare([perm]).iloc[0]
    assert math.isnan(row["conf_low"]) and math.isnan(row["std_error"])
    np.testing.assert_allclose(row["p_value"], perm.pvalue, **EXACT)


def test_compare_rejects_bad_input(gaussian: pd.DataFrame) -> None:
    lmm = fit(gaussian, **ROLES)
    with pytest.raises(ValueError, match="empty"):
        compare([])
    with pytest.raises(ValueError, match="entries"):
        compare([lmm], names=["a", "b"])
    with pytest.raises(ValueError, match="unique"):
        compare([lmm, lmm], names=["a", "a"])
    with pytest.raises(ValueError, match="not both"):
        compare({"a": lmm}, names=["b"])
    with pytest.raises(TypeError, match="tidy"):
        compare([object()])
    with pytest.raises(ValueError, match="confidence_level"):
        compare([lmm], confidence_level=1.5)


def test_fixed_effects_row_is_described(gaussian: pd.DataFrame) -> None:
    res = fit(gaussian, method="fixed-effects", **ROLES)
    table = compare({"fe": res})
    _check_row(table.iloc[0], res)
    assert table["method"].iloc[0] == "cluster fixed-effects GLM (CR2, df: satterthwaite)"
