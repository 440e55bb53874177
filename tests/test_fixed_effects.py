"""Fixed-effects GLM with CR0/CR1/CR2 + Satterthwaite df against R clubSandwich 0.5.8.

Reference: tests/reference/clubsandwich (generate.R simulates the data, fits glm and runs
``coef_test(fit, vcov = vcovCR(fit, cluster, type), test = c("z", "naive-t", "Satterthwaite"))``).
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from _tolerances import (
    CENTRAL_DIFF_REL,
    CLOSED_FORM_REF,
    CLOSED_FORM_REL,
    CLUBSANDWICH_ALIASED,
    CLUBSANDWICH_VCOV_REL,
    DENSE_REL,
    EXACT_REL,
    ILL_SCALED_REL,
    LINALG,
    LINALG_REL,
    REPARAMETERISED_REL,
    ULP_REL,
    ZERO_ATOL_1E12,
    ZERO_ATOL_1E14,
    ZERO_ATOL_1E16,
)

from steppedwedge.exceptions import DataError, SmallSampleWarning
from steppedwedge.inference.pooling import pool
from steppedwedge.models import fixed_effects as fe
from steppedwedge.models.fixed_effects import fit_fixed_effects

BASE = Path(__file__).parent / "reference" / "clubsandwich"
REF = {f["name"]: f for f in json.loads((BASE / "clubsandwich.json").read_text())["fits"]}
BINARY = pd.read_csv(BASE / "sw_binary.csv")
COUNTS = pd.read_csv(BASE / "sw_count.csv")
ROLES = dict(cluster="council", period="period", treatment="trt")
CASES = {
    "binomial": (BINARY, dict(outcome="y", family="binomial", covariates="age + sex")),
    "gaussian": (BINARY, dict(outcome="yc", family="gaussian", covariates="age + sex")),
    "poisson_offset": (COUNTS, dict(outcome="events", family="poisson", exposure="pop")),
}


def r_name(term: str) -> str:
    """Our term label -> R's coefficient name."""
    if term.startswith("treatment:period["):
        return "period" + term[len("treatment:period[") : -1] + ":trt"
    if term == "treatment":
        return "trt"
    return term.replace("period[", "period").replace("cluster[", "council").replace("]", "")


def aligned(res: fe.FixedEffectsResult, terms: list[str]) -> pd.DataFrame:
    tab = res.terms.set_index(res.terms["term"].map(r_name))
    return tab.loc[terms]


@pytest.mark.reference
@pytest.mark.parametrize("vcov", ["cr2", "cr1", "cr0"])
@pytest.mark.parametrize("name", list(CASES))
def test_matches_clubsandwich(name: str, vcov: str) -> None:
    data, kw = CASES[name]
    res = fit_fixed_effects(data, vcov=vcov, **ROLES, **kw)
    ref = REF[name][vcov.upper()]
    tab = aligned(res, ref["terms"])
    np.testing.assert_allclose(
        tab["estimate"], ref["beta"], rtol=CLOSED_FORM_REL, atol=ZERO_ATOL_1E12
    )
    np.testing.assert_allclose(tab["std_error"], ref["se"], **CLOSED_FORM_REF)
    np.testing.assert_allclose(tab["df"], ref["df_satt"], **CLOSED_FORM_REF)
    # the full covariance, in R's column order
    order = [list(res.params.index.map(r_name)).index(t) for t in ref["terms"]]
    np.testing.assert_allclose(
        res.vcov_matrix.to_numpy()[np.ix_(order, order)],
        np.array(ref["vcov"]),
        rtol=CLUBSANDWICH_VCOV_REL,
        atol=ZERO_ATOL_1E14,
    )
    tidy = res.tidy().set_index(res.tidy()["term"].map(r_name)).loc[ref["terms"]]
    np.testing.assert_allclose(tidy["p_value"], ref["p_satt"], rtol=CLUBSANDWICH_VCOV_REL)


@pytest.mark.reference
def test_interaction_matches_clubsandwich_and_names_aliased_terms() -> None:
    ref = REF["binomial_interaction"]
    with pytest.warns(
        SmallSampleWarning, match=r"treatment:period\[1\] \(no treated observations in period 1\)"
    ):
        res = fit_fixed_effects(
            BINARY, outcome="y", covariates="age + sex", effect="period-interaction", **ROLES
        )
    assert sorted(res.aliased["term"].map(r_name)) == sorted(ref["aliased"])
    assert (
        "every observation in period 7 is treated"
        in res.aliased.set_index("term").loc["treatment:period[7]", "reason"]
    )
    tab = aligned(res, ref["CR2"]["terms"])
    np.testing.assert_allclose(tab["estimate"], ref["CR2"]["beta"], rtol=CLOSED_FORM_REL)
    np.testing.assert_allclose(tab["std_error"], ref["CR2"]["se"], **CLUBSANDWICH_ALIASED)
    np.testing.assert_allclose(tab["df"], ref["CR2"]["df_satt"], **CLUBSANDWICH_ALIASED)
    assert "Not estimable" in str(res)


def test_quadrature_equals_dense_eigendecomposition() -> None:
    data, kw = CASES["binomial"]
    dense = fit_fixed_effects(data, _dense_limit=10**6, **ROLES, **kw)
    quad = fit_fixed_effects(data, _dense_limit=1, **ROLES, **kw)
    np.testing.assert_allclose(
        quad.vcov_matrix.to_numpy(),
        dense.vcov_matrix.to_numpy(),
        rtol=LINALG_REL,
        atol=ZERO_ATOL_1E16,
    )
    np.testing.assert_allclose(quad.terms["df"], dense.terms["df"], **LINALG)


def test_satterthwaite_of_a_contrast_is_reparameterisation_invariant() -> None:
    # R's trt main effect + trt:period interactions span the same space as ours; a contrast of
    # our per-period effects (effect in period 2 minus period 6) equals R's coefficient of the
    # reparameterised model, so its df must equal the df computed for the explicit column.
    with pytest.warns(SmallSampleWarning):
        res = fit_fixed_effects(BINARY, outcome="y", effect="period-interaction", **ROLES)
    c = pd.Series({"treatment:period[2]": 1.0, "treatment:period[6]": -1.0})
    est, se, df = res.contrast(c)
    d2 = BINARY.assign(
        t2=BINARY["trt"] * (BINARY["period"] == 2),
        t3=BINARY["trt"] * (BINARY["period"] == 3),
        t4=BINARY["trt"] * (BINARY["period"] == 4),
        t5=BINARY["trt"] * (BINARY["period"] == 5),
    )
    alt = fit_fixed_effects(d2, outcome="y", covariates="t2 + t3 + t4 + t5", **ROLES)
    # in `alt`, treatment = effect in period 6 and t2 = effect(2) - effect(6)
    row = alt.terms.set_index("term").loc["t2"]
    assert est == pytest.approx(row["estimate"], rel=REPARAMETERISED_REL)
    assert se == pytest.approx(row["std_error"], rel=REPARAMETERISED_REL)
    assert df == pytest.approx(row["df"], rel=REPARAMETERISED_REL)


def test_marginal_effects_by_brute_force() -> None:
    data, kw = CASES["binomial"]
    res = fit_fixed_effects(data, **ROLES, **kw)
    ame = res.marginal.set_index("term").loc["AME(treatment)"]
    # brute force: predicted probabilities with treatment switched on and off, numerical gradient
    x = np.column_stack(
        [np.ones(len(data))]
        + [(data["period"] == j).to_numpy(float) for j in range(2, 8)]
        + [(data["council"] == f"LA{i}").to_numpy(float) for i in range(2, 7)]
        + [data["age"], data["sex"], data["trt"]]
    )
    beta = res.params.to_numpy()

    def f(b: np.ndarray) -> float:
        x1, x0 = x.copy(), x.copy()
        x1[:, -1], x0[:, -1] = 1.0, 0.0
        return float(np.mean(1 / (1 + np.exp(-x1 @ b)) - 1 / (1 + np.exp(-x0 @ b))))

    assert list(res.params.index)[-1] == "treatment"
    assert ame["estimate"] == pytest.approx(f(beta), rel=EXACT_REL)
    h = 1e-6
    grad = np.array([(f(beta + h * e) - f(beta - h * e)) / (2 * h) for e in np.eye(len(beta))])
    se = float(np.sqrt(grad @ res.vcov_matrix.to_numpy() @ grad))
    assert ame["std_error"] == pytest.approx(se, rel=CENTRAL_DIFF_REL)
    # Gaussian: the AME is the coefficient itself
    g = fit_fixed_effects(BINARY, outcome="yc", family="gaussian", **ROLES)
    assert g.marginal["estimate"].iloc[0] == pytest.approx(g.estimate, rel=EXACT_REL)
    assert g.marginal["std_error"].iloc[0] == pytest.approx(g.std_error, rel=EXACT_REL)


def test_model_vcov_and_other_dof() -> None:
    data, kw = CASES["gaussian"]
    res = fit_fixed_effects(data, vcov="model", **ROLES, **kw)
    assert res.dof == "residual" and res.df == len(data) - len(res.params)
    # OLS: sigma^2 (X'X)^-1 by direct algebra
    x = np.column_stack(
        [np.ones(len(data))]
        + [(data["period"] == j).to_numpy(float) for j in range(2, 8)]
        + [(data["council"] == f"LA{i}").to_numpy(float) for i in range(2, 7)]
        + [data["age"], data["sex"], data["trt"]]
    )
    y = data["yc"].to_numpy(float)
    b = np.linalg.solve(x.T @ x, x.T @ y)
    s2 = np.sum((y - x @ b) ** 2) / (len(y) - x.shape[1])
    np.testing.assert_allclose(
        res.vcov_matrix.to_numpy(), s2 * np.linalg.inv(x.T @ x), rtol=DENSE_REL
    )
    naive = fit_fixed_effects(data, dof="naive-t", **ROLES, **kw)
    assert naive.df == 5.0
    z = fit_fixed_effects(data, dof="z", **ROLES, **kw)
    assert np.isinf(z.df)
    assert z.std_error == pytest.approx(naive.std_error, rel=ULP_REL)


def test_result_protocol_and_pooling() -> None:
    data, kw = CASES["binomial"]
    res = fit_fixed_effects(data, **ROLES, **kw)
    assert res.estimand == "treatment"
    lo, hi = res.conf_int()
    assert lo < res.estimate < hi
    odds, olo, ohi = res.ratio  # type: ignore[misc]
    assert odds == pytest.approx(np.exp(res.estimate), rel=ULP_REL)
    assert olo == pytest.approx(np.exp(lo), rel=ULP_REL)
    assert res.tidy()["term"].iloc[0] == "treatment"
    assert "Odds ratio" in str(res) and repr(res).startswith("FixedEffectsResult(")
    pooled = pool(
        [
            res,
            res,
            fit_fixed_effects(data.assign(age=data["age"] + 0.5 * (data.index % 3)), **ROLES, **kw),
        ]
    )
    assert pooled.estimand == "treatment"
    assert np.isfinite(pooled.std_error)


def test_trial_data_input() -> None:
    from steppedwedge.data import TrialData

    td = TrialData.from_frame(
        BINARY,
        outcome="y",
        cluster="council",
        period="period",
        treatment="trt",
        family="binomial",
        covariates=["age", "sex"],
    )
    a = fit_fixed_effects(td, covariates="age + sex")
    b = fit_fixed_effects(BINARY, outcome="y", covariates="age + sex", **ROLES)
    assert a.estimate == pytest.approx(b.estimate, rel=EXACT_REL)


def test_bad_input() -> None:
    # the same check and message as TrialData.from_frame (steppedwedge.data.check_role_column)
    with pytest.raises(DataError, match=r"column 'nope' given as `outcome` is not in `data`"):
        fit_fixed_effects(BINARY, outcome="nope", **ROLES)
    with pytest.raises(DataError, match="must be 0/1"):
        fit_fixed_effects(BINARY, outcome="yc", **ROLES)
    with pytest.raises(ValueError, match="`vcov`"):
        fit_fixed_effects(BINARY, outcome="y", vcov="hc3", **ROLES)
    with pytest.raises(ValueError, match="needs a cluster-robust"):
        fit_fixed_effects(BINARY, outcome="y", vcov="model", dof="satterthwaite", **ROLES)
    bad = BINARY.copy()
    bad.loc[3, "age"] = np.nan
    with pytest.raises(DataError, match="missing values"):
        fit_fixed_effects(bad, outcome="y", covariates="age", **ROLES)
    one = BINARY[BINARY["council"] == "LA1"]
    with pytest.raises(DataError, match="at least 2 clusters"):
        fit_fixed_effects(one, outcome="y", **ROLES)
    # every interaction term aliased: treatment constant within each period
    allt = BINARY.assign(trt=(BINARY["period"] >= 4).astype(int))
    with pytest.raises(
        DataError, match=r"not estimable: every treatment term is aliased .*no treated observations"
    ):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", SmallSampleWarning)
            fit_fixed_effects(allt, outcome="y", effect="period-interaction", **ROLES)
    with pytest.raises(DataError, match="treatment is confounded with time"):
        fit_fixed_effects(allt, outcome="y", **ROLES)


def test_large_counts_dense_and_quadrature_agree() -> None:
    # council-period counts in the thousands: G = theta (I - H) theta has entries ~1e7, so a
    # null eigenvalue rounds to ~1e-9; both paths must still treat it as zero
    big = COUNTS.assign(events=COUNTS["events"] * 400 + 7, pop=COUNTS["pop"] * 400)
    kw = dict(outcome="events", family="poisson", exposure="pop", **ROLES)
    dense = fit_fixed_effects(big, _dense_limit=10**6, **kw)
    quad = fit_fixed_effects(big, _dense_limit=1, **kw)
    np.testing.assert_allclose(
        quad.vcov_matrix.to_numpy(), dense.vcov_matrix.to_numpy(), rtol=ILL_SCALED_REL
    )
    np.testing.assert_allclose(quad.terms["df"], dense.terms["df"], rtol=ILL_SCALED_REL)


def test_plot_returns_axes() -> None:
    pytest.importorskip("matplotlib")
    import matplotlib.pyplot as plt

    with pytest.warns(SmallSampleWarning):
        res = fit_fixed_effects(BINARY, outcome="y", effect="period-interaction", **ROLES)
    ax = res.plot()
    assert len(ax.get_yticklabels()) == 5  # the five estimable period effects
    plt.close("all")


def test_separation_is_named() -> None:
    # the only control council in period 6 (LA6) has no events there: the period-6 effect is
    # then fitted by that cell alone, whose fitted probability goes to 0
    sep = BINARY.copy()
    sep.loc[(sep["council"] == "LA6") & (sep["period"] == 6), "y"] = 0
    with pytest.warns(SmallSampleWarning) as record:
        res = fit_fixed_effects(sep, outcome="y", effect="period-interaction", **ROLES)
    text = " ".join(str(w.message) for w in record)
    assert "separation" in text and "('LA6', '6')" in text
    assert any("separation" in m for m in res.messages)


@pytest.mark.parametrize(
    "vcov,dof",
    [("cr2", None), ("cr1", None), ("cr0", "naive-t"), ("model", None), ("model", "z")],
)
@pytest.mark.parametrize("name", ["binomial", "poisson_offset"])
def test_with_vcov_equals_refit(name: str, vcov: str, dof: str | None) -> None:
    """with_vcov recomputes from the stored GLM pieces: the same numbers as a refit."""
    data, kw = CASES[name]
    base = fit_fixed_effects(data, vcov="cr0", dof="z", **ROLES, **kw)
    refit = fit_fixed_effects(data, vcov=vcov, dof=dof, **ROLES, **kw)
    got = base.with_vcov(vcov, dof=dof)
    assert (got.vcov, got.dof) == (refit.vcov, refit.dof)
    np.testing.assert_allclose(got.vcov_matrix.to_numpy(), refit.vcov_matrix.to_numpy(), **LINALG)
    np.testing.assert_allclose(
        got.terms[["std_error", "df"]], refit.terms[["std_error", "df"]], **LINALG
    )
    np.testing.assert_allclose(got.marginal.iloc[:, 1:], refit.marginal.iloc[:, 1:], **LINALG)
    assert got.std_error == pytest.approx(refit.std_error, rel=LINALG_REL)
    assert got.df == pytest.approx(refit.df, rel=LINALG_REL)
    assert got.contrast({"treatment": 1.0})[2] == pytest.approx(refit.df, rel=LINALG_REL)
    assert got.method_label == refit.method_label
    assert base.vcov == "cr0"  # the original is not mutated


def test_with_vcov_interaction_and_bad_options() -> None:
    with pytest.warns(SmallSampleWarning):
        base = fit_fixed_effects(BINARY, outcome="y", effect="period-interaction", **ROLES)
        refit = fit_fixed_effects(
            BINARY, outcome="y", effect="period-interaction", vcov="cr1", **ROLES
        )
    got = base.with_vcov("cr1")
    assert got.estimand == "AME(treatment)"
    assert got.std_error == pytest.approx(refit.std_error, rel=LINALG_REL)
    assert got.df == pytest.approx(refit.df, rel=LINALG_REL)
    with pytest.raises(ValueError, match="`vcov`"):
        base.with_vcov("hc3")
    with pytest.raises(ValueError, match="needs a cluster-robust"):
        base.with_vcov("model", dof="satterthwaite")


def test_spec_entry_and_method_label() -> None:
    from steppedwedge.models.fixed_effects import fit_fixed_effects_spec
    from steppedwedge.models.spec import AnalysisSpec

    data, kw = CASES["poisson_offset"]
    spec = AnalysisSpec.from_options(**ROLES, **kw, method="fixed-effects", vcov="cr1")
    a = fit_fixed_effects_spec(data, spec)
    b = fit_fixed_effects(data, vcov="cr1", **ROLES, **kw)
    assert a.estimate == b.estimate and a.std_error == b.std_error and a.df == b.df
    assert a.method_label == "cluster fixed-effects GLM (CR1, df: satterthwaite)"
    assert a.link == "log" and a.ratio is not None


def test_spec_entry_runs_the_trial_data_row_checks() -> None:
    """sw.fit's entry refuses what TrialData refuses (here a treatment reversal)."""
    from steppedwedge.models.fixed_effects import fit_fixed_effects_spec
    from steppedwedge.models.spec import AnalysisSpec

    treated = BINARY.loc[BINARY["trt"] == 1, "council"].iloc[0]
    last = BINARY["period"].max()
    rev = BINARY.copy()
    rev.loc[(rev["council"] == treated) & (rev["period"] == last), "trt"] = 0
    spec = AnalysisSpec.from_options(
        outcome="y", **ROLES, family="binomial", method="fixed-effects"
    )
    with pytest.raises(DataError, match="revers"):
        fit_fixed_effects_spec(rev, spec)


def test_dof_refusal_prints_the_value_as_given() -> None:
    """A numeric dof (not offered here) is echoed as given (`got 5.0`, not `got '5.0'`)."""
    import steppedwedge as sw

    msg = r"`dof` must be one of .*; got 5\.0\.$"
    with pytest.raises(ValueError, match=msg):
        sw.fit(BINARY, outcome="y", method="fixed-effects", family="binomial", dof=5.0, **ROLES)
    with pytest.raises(ValueError, match=msg):
        fit_fixed_effects(BINARY, outcome="y", **ROLES).with_vcov("cr1", dof=5.0)


def test_exposure_column_check_is_trial_datas() -> None:
    with pytest.raises(DataError, match=r"column 'pops' given as `exposure` is not in `data`"):
        fit_fixed_effects(COUNTS, outcome="events", family="poisson", exposure="pops", **ROLES)


def test_plot_is_the_base_forest_of_the_treatment_terms() -> None:
    """The base EstimationResult.plot draws one point per treatment term, at its estimate."""
    pytest.importorskip("matplotlib")
    import matplotlib.pyplot as plt

    with pytest.warns(SmallSampleWarning):
        res = fit_fixed_effects(BINARY, outcome="y", effect="period-interaction", **ROLES)
    assert "plot" not in type(res).__dict__  # no hand-written forest left
    tab = res.tidy(0.9)
    want = tab[tab["term"].str.startswith("treatment")]
    ax = res.plot(confidence_level=0.9)
    xs = [x for ln in ax.get_lines() if ln.get_marker() == "o" for x in ln.get_xdata()]
    assert len(xs) == len(want) == 5
    np.testing.assert_allclose(xs, want["estimate"].to_numpy(), rtol=EXACT_REL)
    assert [t.get_text() for t in ax.get_yticklabels()] == want["term"].tolist()
    assert ax.get_xlabel() == "estimate (link scale)"
    plt.close("all")
