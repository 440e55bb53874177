"""Cluster-level (cluster-period summary) analysis against statsmodels WLS / brute force."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from _tolerances import LINALG

from steppedwedge.data import TrialData
from steppedwedge.exceptions import DataError
from steppedwedge.models.cluster_level import ClusterSummaryResult, fit_cluster_summary

sm = pytest.importorskip("statsmodels.api")

I, T = 10, 5  # noqa: E741


def _individual(rng: np.random.Generator, binary: bool = False) -> pd.DataFrame:
    rows = []
    for i in range(I):
        a = rng.normal(0, 0.5)
        for t in range(T):
            if i == 3 and t == 2:
                continue  # one unobserved cell
            m = int(rng.integers(3, 12))
            x = int(t > i % (T - 1))
            mu = 0.2 * t + 0.6 * x + a
            if binary:
                y = (rng.random(m) < 1 / (1 + np.exp(0.5 - mu))).astype(float)
            else:
                y = mu + rng.normal(0, 1, m)
            rows += [(f"c{i}", t, x, v) for v in y]
    return pd.DataFrame(rows, columns=["cl", "per", "trt", "y"])


def _counts(rng: np.random.Generator) -> pd.DataFrame:
    rows = []
    for i in range(I):
        pop = rng.integers(1000, 5000)
        a = rng.normal(0, 0.3)
        for t in range(T):
            x = int(t > i % (T - 1))
            lam = pop / 100 * np.exp(0.05 * t - 0.2 * x + a)
            rows.append((f"c{i}", t, x, pop, rng.poisson(lam)))
    return pd.DataFrame(rows, columns=["cl", "per", "trt", "pop", "y"])


def _reference(cells: pd.DataFrame, vcov: str):
    X = pd.get_dummies(cells[["cluster", "period"]].astype(str), drop_first=True, dtype=float)
    X.insert(0, "treatment", cells["treatment"].to_numpy(float))
    X = sm.add_constant(X)
    fit = sm.WLS(cells["summary"].to_numpy(float), X, weights=cells["weight"].to_numpy(float))
    return fit.fit(cov_type="nonrobust" if vcov == "model" else "HC2")


def _brute_summary(df: pd.DataFrame, kind: str) -> pd.Series:
    g = df.groupby(["cl", "per"])
    if kind == "mean":
        return g["y"].mean()
    if kind == "logit":
        return g["y"].apply(lambda y: np.log((y.sum() + 0.5) / (len(y) - y.sum() + 0.5)))
    raise AssertionError


@pytest.mark.parametrize("weights", ["none", "size", "inverse-variance"])
@pytest.mark.parametrize("vcov", ["model", "robust"])
@pytest.mark.parametrize("kind", ["gaussian", "logit", "poisson"])
def test_against_statsmodels_wls(rng, weights, vcov, kind) -> None:
    if kind == "poisson":
        df = _counts(rng)
        td = TrialData.from_frame(df, outcome="y", exposure="pop", family="poisson",
                                  cluster="cl", period="per", treatment="trt")
        res = fit_cluster_summary(td, weights=weights, vcov=vcov)
        brute = np.log((df["y"] + 0.5) / df["pop"]).to_numpy()
        np.testing.assert_allclose(np.sort(res.cells["summary"]), np.sort(brute), **LINALG)
    else:
        df = _individual(rng, binary=kind == "logit")
        fam = "binomial" if kind == "logit" else "gaussian"
        td = TrialData.from_frame(df, outcome="y", family=fam, cluster="cl", period="per",
                                  treatment="trt")
        res = fit_cluster_summary(td, weights=weights, vcov=vcov,
                                  link="logit" if kind == "logit" else None)
        brute = _brute_summary(df, "logit" if kind == "logit" else "mean")
        got = res.cells.set_index(["cluster", "period"])["summary"]
        np.testing.assert_allclose(got.loc[brute.index].to_numpy(), brute.to_numpy(), **LINALG)
    assert isinstance(res, ClusterSummaryResult)
    ref = _reference(res.cells, vcov)
    np.testing.assert_allclose(res.estimate, ref.params["treatment"], **LINALG)
    np.testing.assert_allclose(res.std_error, ref.bse["treatment"], **LINALG)
    assert res.df == ref.df_resid
    lo, hi = res.conf_int()
    ref_ci = ref.conf_int()  # normal-based in statsmodels for HC; recompute with t
    from scipy import stats
    q = stats.t.ppf(0.975, ref.df_resid)
    np.testing.assert_allclose([lo, hi], [ref.params["treatment"] - q * ref.bse["treatment"],
                                          ref.params["treatment"] + q * ref.bse["treatment"]],
                               **LINALG)
    assert ref_ci is not None


def test_unweighted_two_period_identity() -> None:
    """Two periods, fixed effects: theta-hat = difference in mean changes (exact algebra)."""
    df = pd.DataFrame({"cl": [1, 1, 2, 2, 3, 3, 4, 4], "per": [1, 2] * 4,
                       "trt": [0, 1, 0, 1, 0, 0, 0, 0],
                       "y": [1.0, 4.0, 2.0, 4.5, 0.5, 1.0, 1.5, 2.5]})
    td = TrialData.from_frame(df, outcome="y", cluster="cl", period="per", treatment="trt")
    res = fit_cluster_summary(td)
    change = df.groupby("cl")["y"].apply(lambda y: y.iloc[1] - y.iloc[0])
    want = change.loc[[1, 2]].mean() - change.loc[[3, 4]].mean()
    np.testing.assert_allclose(res.estimate, want, **LINALG)


def test_not_identifiable() -> None:
    df = pd.DataFrame({"cl": [1, 1, 2, 2, 3, 3], "per": [1, 2] * 3,
                       "trt": [0, 1] * 3, "y": [1.0, 2, 3, 4, 5, 7]})
    td = TrialData.from_frame(df, outcome="y", cluster="cl", period="per", treatment="trt")
    with pytest.raises(DataError, match="not identifiable"):
        fit_cluster_summary(td)


def test_bad_options(rng) -> None:
    td = TrialData.from_frame(_individual(rng), outcome="y", cluster="cl", period="per",
                              treatment="trt")
    with pytest.raises(ValueError, match="`link` must be one of 'identity'"):
        fit_cluster_summary(td, link="logit")
    with pytest.raises(ValueError, match="weights"):
        fit_cluster_summary(td, weights="cells")
    with pytest.raises(ValueError, match="vcov"):
        fit_cluster_summary(td, vcov="kc")


def test_protocol(rng) -> None:
    df = _individual(rng, binary=True)
    td = TrialData.from_frame(df, outcome="y", family="binomial", cluster="cl", period="per",
                              treatment="trt")
    res = fit_cluster_summary(td, link="logit", weights="size")
    tidy = res.tidy(exponentiate=True)
    assert list(tidy.columns) == ["term", "estimate", "std_error", "statistic", "df",
                                  "p_value", "conf_low", "conf_high"]
    s = res.summary()
    assert "cluster[" not in s.as_text() and "treatment" in s.as_markdown()
    assert "treatment" in repr(res) and "<table>" in res._repr_html_()


def test_frame_entry_equals_trialdata(rng) -> None:
    from steppedwedge.models.cluster_level import fit_cluster_summary_frame

    df = _individual(rng)
    a = fit_cluster_summary_frame(df, outcome="y", cluster="cl", period="per", treatment="trt",
                                  weights="size", vcov="robust")
    td = TrialData.from_frame(df, outcome="y", cluster="cl", period="per", treatment="trt")
    b = fit_cluster_summary(td, weights="size", vcov="robust")
    np.testing.assert_allclose(a.params, b.params, rtol=0, atol=0)
    np.testing.assert_allclose(a.std_error, b.std_error, rtol=0, atol=0)
