"""Cluster-level (cluster-period summary) analysis against statsmodels WLS, clubSandwich and
brute force."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from _tolerances import CLOSED_FORM_REF, LINALG

from steppedwedge.data import TrialData
from steppedwedge.exceptions import DataError, OptionError
from steppedwedge.models.cluster_level import ClusterSummaryResult, fit_cluster_summary

REF = Path(__file__).parent / "reference" / "cluster_summary"

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
@pytest.mark.parametrize("vcov", ["model", "hc2"])
@pytest.mark.parametrize("kind", ["gaussian", "logit", "poisson"])
def test_against_statsmodels_wls(rng, weights, vcov, kind) -> None:
    if kind == "poisson":
        df = _counts(rng)
        td = TrialData.from_frame(
            df,
            outcome="y",
            exposure="pop",
            family="poisson",
            cluster="cl",
            period="per",
            treatment="trt",
        )
        res = fit_cluster_summary(td, weights=weights, vcov=vcov)
        brute = np.log((df["y"] + 0.5) / df["pop"]).to_numpy()
        np.testing.assert_allclose(np.sort(res.cells["summary"]), np.sort(brute), **LINALG)
    else:
        df = _individual(rng, binary=kind == "logit")
        fam = "binomial" if kind == "logit" else "gaussian"
        td = TrialData.from_frame(
            df, outcome="y", family=fam, cluster="cl", period="per", treatment="trt"
        )
        res = fit_cluster_summary(
            td, weights=weights, vcov=vcov, link="logit" if kind == "logit" else None
        )
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
    np.testing.assert_allclose(
        [lo, hi],
        [
            ref.params["treatment"] - q * ref.bse["treatment"],
            ref.params["treatment"] + q * ref.bse["treatment"],
        ],
        **LINALG,
    )
    assert ref_ci is not None


def test_unweighted_two_period_identity() -> None:
    """Two periods, fixed effects: theta-hat = difference in mean changes (exact algebra)."""
    df = pd.DataFrame(
        {
            "cl": [1, 1, 2, 2, 3, 3, 4, 4],
            "per": [1, 2] * 4,
            "trt": [0, 1, 0, 1, 0, 0, 0, 0],
            "y": [1.0, 4.0, 2.0, 4.5, 0.5, 1.0, 1.5, 2.5],
        }
    )
    td = TrialData.from_frame(df, outcome="y", cluster="cl", period="per", treatment="trt")
    res = fit_cluster_summary(td)
    change = df.groupby("cl")["y"].apply(lambda y: y.iloc[1] - y.iloc[0])
    want = change.loc[[1, 2]].mean() - change.loc[[3, 4]].mean()
    np.testing.assert_allclose(res.estimate, want, **LINALG)


def test_not_identifiable() -> None:
    df = pd.DataFrame(
        {"cl": [1, 1, 2, 2, 3, 3], "per": [1, 2] * 3, "trt": [0, 1] * 3, "y": [1.0, 2, 3, 4, 5, 7]}
    )
    td = TrialData.from_frame(df, outcome="y", cluster="cl", period="per", treatment="trt")
    with pytest.raises(DataError, match="not identifiable"):
        fit_cluster_summary(td)


def test_bad_options(rng) -> None:
    td = TrialData.from_frame(
        _individual(rng), outcome="y", cluster="cl", period="per", treatment="trt"
    )
    with pytest.raises(ValueError, match="`link` must be one of 'identity'"):
        fit_cluster_summary(td, link="logit")
    with pytest.raises(ValueError, match="weights"):
        fit_cluster_summary(td, weights="cells")
    with pytest.raises(OptionError, match="vcov"):
        fit_cluster_summary(td, vcov="kc")
    with pytest.raises(OptionError, match="vcov='robust'.*'hc2'"):
        fit_cluster_summary(td, vcov="robust")
    with pytest.raises(OptionError, match="dof='satterthwaite'.*vcov='cr2'"):
        fit_cluster_summary(td, vcov="model", dof="satterthwaite")
    with pytest.raises(OptionError, match="dof"):
        fit_cluster_summary(td, dof="kenward-roger")


def test_protocol(rng) -> None:
    df = _individual(rng, binary=True)
    td = TrialData.from_frame(
        df, outcome="y", family="binomial", cluster="cl", period="per", treatment="trt"
    )
    res = fit_cluster_summary(td, link="logit", weights="size")
    tidy = res.tidy(exponentiate=True)
    assert list(tidy.columns) == [
        "term",
        "estimate",
        "std_error",
        "statistic",
        "df",
        "p_value",
        "conf_low",
        "conf_high",
    ]
    s = res.summary()
    assert "cluster[" not in s.as_text() and "treatment" in s.as_markdown()
    assert "treatment" in repr(res) and "<table>" in res._repr_html_()


def test_frame_entry_equals_trialdata(rng) -> None:
    from steppedwedge.models.cluster_level import fit_cluster_summary_frame

    df = _individual(rng)
    a = fit_cluster_summary_frame(
        df, outcome="y", cluster="cl", period="per", treatment="trt", weights="size", vcov="hc2"
    )
    td = TrialData.from_frame(df, outcome="y", cluster="cl", period="per", treatment="trt")
    b = fit_cluster_summary(td, weights="size", vcov="hc2")
    np.testing.assert_allclose(a.params, b.params, rtol=0, atol=0)
    np.testing.assert_allclose(a.std_error, b.std_error, rtol=0, atol=0)


# --------------------------------------------------------------------------------------
# cluster-robust default against clubSandwich and an independent CR2
# --------------------------------------------------------------------------------------
def _council_td(file: str) -> TrialData:
    d = pd.read_csv(REF / file)
    return TrialData.from_frame(
        d,
        outcome="entries_into_care",
        exposure="population_0_17",
        family="poisson",
        cluster="council",
        period="quarter",
        treatment="treated",
    )


CASES = json.loads((REF / "cluster_summary.json").read_text())["cases"]


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c['file']}-{c['weights']}")
def test_cr2_matches_clubsandwich(case) -> None:
    """lm(log rate ~ treated + quarter + council, weights) with vcovCR(CR2) + coef_test.

    The R values are printed with 15 significant digits and both sides are closed-form
    linear algebra on 17 x 20 cells: CLOSED_FORM_REF (1e-8) with a wide margin (~1e-14 seen).
    """
    td = _council_td(case["file"])
    sat = fit_cluster_summary(td, weights=case["weights"], dof="satterthwaite")
    np.testing.assert_allclose(sat.estimate, case["estimate"], **CLOSED_FORM_REF)
    np.testing.assert_allclose(sat.std_error, case["se_cr2"], **CLOSED_FORM_REF)
    np.testing.assert_allclose(sat.df, case["df_satterthwaite"], **CLOSED_FORM_REF)
    np.testing.assert_allclose(sat.pvalue, case["p_satterthwaite"], **CLOSED_FORM_REF)
    default = fit_cluster_summary(td, weights=case["weights"])
    assert default.vcov == "cr2"
    if case["weights"] == "none":  # calibrated defaults: I - 2 unweighted, else Satterthwaite
        assert default.dof == "clusters" and default.df == case["n_clusters"] - 2
    else:
        assert default.dof == "satterthwaite" and default.df == sat.df
    np.testing.assert_allclose(default.std_error, case["se_cr2"], **CLOSED_FORM_REF)
    i2 = fit_cluster_summary(td, weights=case["weights"], dof="clusters")
    assert i2.df == case["n_clusters"] - 2
    old = fit_cluster_summary(td, weights=case["weights"], vcov="model")
    np.testing.assert_allclose(old.std_error, case["se_model"], **CLOSED_FORM_REF)
    assert old.df == case["df_residual"]


def test_unweighted_cr2_equals_fixed_effects_gaussian_cr2() -> None:
    """Without weights the summary regression is a Gaussian fixed-effects GLM of the summaries:
    its CR2 and Satterthwaite df (an independent implementation, fixed_effects.py) agree."""
    from steppedwedge.models.fixed_effects import fit_fixed_effects

    td = _council_td("councils8.csv")
    res = fit_cluster_summary(td, dof="satterthwaite")
    cells = res.cells.assign(treatment=res.cells["treatment"].astype(int))
    fe = fit_fixed_effects(
        cells,
        outcome="summary",
        cluster="cluster",
        period="period",
        treatment="treatment",
        family="gaussian",
    )
    np.testing.assert_allclose(res.estimate, fe.estimate, **LINALG)
    np.testing.assert_allclose(res.std_error, fe.std_error, **LINALG)
    np.testing.assert_allclose(res.df, fe.df, **LINALG)


def test_cr2_is_larger_than_cell_level_under_decay_and_keeps_data() -> None:
    """The council-clustered SE exceeds the cell-level one on decaying-correlation data (the
    reason for the default), the caller's frame is untouched, and the summary says CR2."""
    d = pd.read_csv(REF / "councils17.csv")
    before = d.copy()
    from steppedwedge import fit

    res = fit(
        d,
        outcome="entries_into_care",
        cluster="council",
        period="quarter",
        treatment="treated",
        exposure="population_0_17",
        family="poisson",
        method="cluster-summary",
    )
    pd.testing.assert_frame_equal(d, before)
    old = fit(
        d,
        outcome="entries_into_care",
        cluster="council",
        period="quarter",
        treatment="treated",
        exposure="population_0_17",
        family="poisson",
        method="cluster-summary",
        vcov="model",
        dof="residual",
    )
    assert res.std_error > 1.1 * old.std_error
    assert res.df == 15.0 and old.df == 303.0
    sat = fit(
        d,
        outcome="entries_into_care",
        cluster="council",
        period="quarter",
        treatment="treated",
        exposure="population_0_17",
        family="poisson",
        method="cluster-summary",
        dof="satterthwaite",
    )
    assert 1.0 < sat.df < 16.0
    text = res.summary().as_text()
    assert "CR2" in text and "clusters - 2" in text


def test_cr2_needs_three_clusters() -> None:
    df = pd.DataFrame(
        {
            "c": [1, 1, 1, 2, 2, 2],
            "t": [1, 2, 3] * 2,
            "x": [0, 1, 1, 0, 0, 1],
            "y": [1.0, 2.0, 2.5, 0.5, 1.0, 2.0],
        }
    )
    td = TrialData.from_frame(df, outcome="y", cluster="c", period="t", treatment="x")
    with pytest.raises(DataError, match="at least 3 clusters"):
        fit_cluster_summary(td)
    assert np.isfinite(fit_cluster_summary(td, vcov="model").std_error)


@pytest.mark.parametrize("weights", ["none", "size"])
@pytest.mark.parametrize(
    "vcov,dof",
    [("cr2", None), ("cr2", "satterthwaite"), ("cr2", "residual"), ("model", None), ("hc2", None)],
)
def test_with_vcov_equals_refit(rng, weights, vcov, dof) -> None:
    """with_vcov recomputes from the stored least-squares fit: the numbers of a refit."""
    df = _counts(rng)
    td = TrialData.from_frame(
        df, outcome="y", exposure="pop", family="poisson", cluster="cl", period="per",
        treatment="trt",
    )  # fmt: skip
    base = fit_cluster_summary(td, weights=weights, vcov="model", dof="residual")
    refit = fit_cluster_summary(td, weights=weights, vcov=vcov, dof=dof)
    got = base.with_vcov(vcov, dof=dof)
    assert (got.vcov, got.dof) == (refit.vcov, refit.dof)
    np.testing.assert_allclose(got.vcov_matrix, refit.vcov_matrix, **LINALG)
    np.testing.assert_allclose(got.df, refit.df, **LINALG)
    np.testing.assert_allclose(got.pvalue, refit.pvalue, **LINALG)
    assert got.method_label == f"cluster-period summaries (log, weights={weights})"
    assert base.vcov == "model"  # not mutated
    with pytest.raises(OptionError, match="needs vcov='cr2'"):
        base.with_vcov("hc2", dof="satterthwaite")
    with pytest.raises(OptionError, match="`vcov`"):
        base.with_vcov("cr3")


def test_spec_entry_equals_frame_entry(rng) -> None:
    from steppedwedge.models.cluster_level import (
        fit_cluster_summary_frame,
        fit_cluster_summary_spec,
    )
    from steppedwedge.models.spec import AnalysisSpec

    df = _individual(rng, binary=True)
    roles = dict(outcome="y", cluster="cl", period="per", treatment="trt", family="binomial")
    spec = AnalysisSpec.from_options(**roles, method="cluster-summary", link="logit")
    a = fit_cluster_summary_spec(df, spec, weights="size")
    b = fit_cluster_summary_frame(df, **roles, link="logit", weights="size")
    assert a.link == b.link == "logit" and a.dof == b.dof == "satterthwaite"
    np.testing.assert_allclose(a.vcov_matrix, b.vcov_matrix, rtol=0, atol=0)
    c = fit_cluster_summary_spec(df, spec.replace(link=None))
    assert c.link == "identity"  # the summary's own default, not the spec's resolved logit


def test_dof_refusal_prints_the_value_as_given() -> None:
    """A numeric dof (not offered here) is echoed as given (`got 5.0`, not `got '5.0'`)."""
    import steppedwedge as sw

    df = _individual(np.random.default_rng(3))
    roles = dict(outcome="y", cluster="cl", period="per", treatment="trt")
    msg = r"`dof` must be one of .*; got 5\.0\.$"
    with pytest.raises(OptionError, match=msg):
        sw.fit(df, method="cluster-summary", dof=5.0, **roles)
    with pytest.raises(OptionError, match=msg):
        sw.fit(df, method="cluster-summary", **roles).with_vcov("cr2", dof=5.0)
