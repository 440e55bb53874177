"""``fit`` for Gaussian outcomes: options, result protocol, bad input, and exact algebra checks.

References here are independent computations: dense individual-level GLS with numpy,
patsy's natural cubic regression splines, and closed-form df rules.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import patsy
import pytest
from _tolerances import DENSE_COV_REL, DENSE_REL, EXACT_REL, LINALG_REL
from scipy import stats

import steppedwedge.models as m
from steppedwedge.exceptions import (
    DataError,
    MissingDataWarning,
    OptionError,
    SmallSampleWarning,
    SteppedWedgeWarning,
)
from steppedwedge.results import FitResult


def _sw_frame(
    rng: np.random.Generator,
    n_clusters: int = 8,
    n_periods: int = 5,
    m_cell: int = 6,
    effect: float = 0.4,
    seq_size: int = 2,
) -> pd.DataFrame:
    n_seq = n_periods - 1
    rows = []
    for i in range(n_clusters):
        start = (i // seq_size) % n_seq + 1
        a = rng.normal(0, 0.4)
        for j in range(n_periods):
            c = rng.normal(0, 0.2)
            x = float(j >= start)
            for _ in range(int(rng.integers(m_cell - 2, m_cell + 3))):
                rows.append(
                    {
                        "site": f"S{i:02d}",
                        "month": j + 1,
                        "arm": x,
                        "age": rng.normal(),
                        "y": 0.1 * j + effect * x + a + c + rng.normal(),
                    }
                )
    return pd.DataFrame(rows)


@pytest.fixture
def frame(rng) -> pd.DataFrame:
    return _sw_frame(rng)


def _fit(df, **kw):
    return m.fit(df, outcome="y", cluster="site", period="month", treatment="arm", **kw)


# ---------------------------------------------------------------- result protocol


def test_result_protocol(frame):
    before = frame.copy()
    res = _fit(frame)
    pd.testing.assert_frame_equal(frame, before)  # caller's frame untouched
    assert isinstance(res, FitResult)
    with pytest.raises(dataclasses.FrozenInstanceError):
        res.estimate = 0.0  # type: ignore[misc]
    tidy = res.tidy()
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
    assert tidy.loc[0, "term"] == "treatment"
    assert tidy.loc[0, "estimate"] == res.estimate
    lo, hi = res.conf_int(0.9)
    crit = stats.t.ppf(0.95, res.df)
    assert lo == pytest.approx(res.estimate - crit * res.std_error, rel=EXACT_REL)
    assert hi == pytest.approx(res.estimate + crit * res.std_error, rel=EXACT_REL)
    assert res.pvalue == pytest.approx(
        2 * stats.t.sf(abs(res.estimate / res.std_error), res.df), rel=EXACT_REL
    )
    text = str(res.summary())
    assert "kenward-roger" in text and "Variance components" in text
    assert "<table" in res._repr_html_()
    assert "|" in res.summary().as_markdown()
    assert "tabular" in res.summary().as_latex()
    assert set(res.variance_components) == {"tau2", "gamma2", "sigma2"}
    icc, lo_i, hi_i = res.correlations["icc"]
    assert lo_i < icc < hi_i
    assert res.params.index[0] == "(Intercept)"
    assert res.vcov_matrix.shape == (res.params.size, res.params.size)
    assert res.n_obs == len(frame)


def test_kr_reports_adjusted_se_others_model_based(frame):
    kr = _fit(frame)
    sat = _fit(frame, dof="satterthwaite")
    nor = _fit(frame, dof="normal")
    model_se = float(np.sqrt(kr.vcov_model.loc["treatment", "treatment"]))
    assert kr.std_error >= model_se
    assert sat.std_error == pytest.approx(model_se, rel=EXACT_REL)
    assert nor.std_error == pytest.approx(model_se, rel=EXACT_REL)
    assert np.isinf(nor.df)
    assert nor.pvalue == pytest.approx(2 * stats.norm.sf(abs(nor.statistic)), rel=EXACT_REL)


def test_between_within_df_rule(frame):
    res = _fit(frame, dof="between-within")
    tidy = res.tidy().set_index("term")
    n_i = frame["site"].nunique()
    p = res.params.size
    # only the intercept is cluster-level: r_b = 1
    assert tidy.loc["(Intercept)", "df"] == n_i - 1
    assert tidy.loc["treatment", "df"] == len(frame) - n_i - (p - 1)


def test_kenward_roger_with_ml_is_rejected(frame):
    with pytest.raises(ValueError, match="kenward-roger.*REML"):
        _fit(frame, method="ml", dof="kenward-roger")


def test_dispatcher_rejects_mismatched_method(frame):
    with pytest.raises(ValueError, match="method='laplace' is for non-Gaussian"):
        _fit(frame, method="laplace")
    with pytest.raises(ValueError, match="method='reml' is for Gaussian"):
        _fit(frame, family="poisson", method="reml")
    with pytest.raises(ValueError, match="`exposure`"):
        _fit(frame, exposure="age")


# ---------------------------------------------------------------- exact algebra


def _dense_gls(df: pd.DataFrame, x: np.ndarray, vc: dict[str, float]):
    cl = df["site"].to_numpy()
    per = df["month"].to_numpy()
    same_c = cl[:, None] == cl[None, :]
    v = vc.get("tau2", 0.0) * same_c + vc.get("gamma2", 0.0) * (
        same_c & (per[:, None] == per[None, :])
    )
    v = v + vc["sigma2"] * np.eye(len(df))
    vi = np.linalg.inv(v)
    mm = x.T @ vi @ x
    beta = np.linalg.solve(mm, x.T @ vi @ df["y"].to_numpy())
    return beta, np.linalg.inv(mm), v


@pytest.mark.parametrize("time", ["linear", "spline"])
def test_time_models_equal_dense_gls(rng, time):
    df = _sw_frame(rng, n_clusters=8, n_periods=7, m_cell=4, seq_size=2)
    res = _fit(df, time=time, knots=[3.0, 5.0] if time == "spline" else None, random="nested")
    t = df["month"].to_numpy(dtype=float)
    if time == "linear":
        tcols = t[:, None]
    else:  # patsy's natural cubic regression spline with the same knots spans the same space
        tcols = np.asarray(
            patsy.dmatrix("cr(t, knots=[3.0, 5.0], lower_bound=1, upper_bound=7) - 1", {"t": t})
        )[:, 1:]
    x = np.column_stack([np.ones(len(df)), tcols, df["arm"].to_numpy()])
    beta, cov, _ = _dense_gls(df, x, res.variance_components)
    assert res.estimate == pytest.approx(beta[-1], rel=DENSE_REL)
    assert np.sqrt(res.vcov_model.loc["treatment", "treatment"]) == pytest.approx(
        np.sqrt(cov[-1, -1]), rel=DENSE_REL
    )


def test_time_none_warns(frame):
    with pytest.warns(SteppedWedgeWarning, match="no secular trend"):
        res = _fit(frame, time="none")
    assert list(res.params.index) == ["(Intercept)", "treatment"]


def test_eti_estimands(rng):
    df = _sw_frame(rng, n_clusters=8, n_periods=5)
    tate = _fit(df, effect="eti")
    window = _fit(df, effect="tate", exposure_window=(1, 2))
    pte = _fit(df, effect="pte", exposure_time=2)
    delta = tate.params[[f"exposure[{e}]" for e in range(1, 5)]].to_numpy()
    assert tate.estimand == "TATE[1,4]"
    assert tate.estimate == pytest.approx(delta.mean(), rel=EXACT_REL)
    assert window.estimate == pytest.approx(delta[:2].mean(), rel=EXACT_REL)
    assert pte.estimate == pytest.approx(delta[1], rel=EXACT_REL)
    c = np.zeros(tate.params.size)
    c[-4:] = 0.25
    assert tate.std_error == pytest.approx(
        np.sqrt(c @ tate.vcov_matrix.to_numpy() @ c), rel=LINALG_REL
    )
    assert list(tate.effect_curve["exposure_time"]) == [1, 2, 3, 4]
    assert tate.tidy().loc[0, "term"] == "TATE[1,4]"
    with pytest.raises(ValueError, match="exposure_time"):
        _fit(df, effect="pte")
    with pytest.raises(ValueError, match="exposure_window"):
        _fit(df, effect="tate", exposure_window=(0, 9))


def test_fractional_treatment_immediate_only(rng):
    df = _sw_frame(rng)
    first = df.groupby("site")["month"].transform(lambda s: s[df.loc[s.index, "arm"] > 0].min())
    df.loc[(df["month"] == first), "arm"] = 0.5
    res = _fit(df)  # partial effect in the transition period
    x = np.column_stack(
        [np.ones(len(df))]
        + [(df["month"] == j).astype(float) for j in range(2, 6)]
        + [df["arm"].to_numpy()]
    )
    beta, _, _ = _dense_gls(df, x, res.variance_components)
    assert res.estimate == pytest.approx(beta[-1], rel=DENSE_REL)
    with pytest.raises(DataError, match="fractional"):
        _fit(df, effect="eti")


def test_cr2_robust_equals_individual_level_computation(rng):
    # the symmetric whitened root below is Kauermann-Carroll's principal root (vcov="kc");
    # vcov="cr2" is clubSandwich's form (tests/test_sandwich_mixed.py)
    df = _sw_frame(rng, n_clusters=8)
    res = _fit(df, vcov="kc")
    x = np.column_stack(
        [np.ones(len(df))]
        + [(df["month"] == j).astype(float) for j in range(2, 6)]
        + [df["arm"].to_numpy()]
    )
    beta, cov, v = _dense_gls(df, x, res.variance_components)
    e = df["y"].to_numpy() - x @ beta
    meat = np.zeros((x.shape[1], x.shape[1]))
    for s in df["site"].unique():
        idx = np.flatnonzero(df["site"].to_numpy() == s)
        li = np.linalg.cholesky(v[np.ix_(idx, idx)])
        xw = np.linalg.solve(li, x[idx])
        ew = np.linalg.solve(li, e[idx])
        h = xw @ cov @ xw.T
        w, q = np.linalg.eigh(np.eye(len(idx)) - h)
        a = (q / np.sqrt(w)) @ q.T
        u = xw.T @ a @ ew
        meat += np.outer(u, u)
    robust = cov @ meat @ cov
    assert res.std_error == pytest.approx(np.sqrt(robust[-1, -1]), rel=DENSE_COV_REL)
    assert res.df == df["site"].nunique() - 2


def test_robust_with_one_cluster_per_sequence_warns(rng):
    df = _sw_frame(rng, n_clusters=4, seq_size=1)
    with pytest.warns(SmallSampleWarning, match="fewer than 2 clusters"):
        _fit(df, vcov="robust")


def test_covariates_through_formula(frame):
    res = _fit(frame, covariates="age")
    assert "age" in res.params.index
    with pytest.raises(DataError, match="could not be evaluated"):
        _fit(frame, covariates="not_a_column")


# ---------------------------------------------------------------- bad input


def test_bad_outcomes(frame):
    bad = frame.copy()
    bad["y"] = bad["y"].astype(object)
    bad.loc[3, "y"] = "abc"
    with pytest.raises(DataError, match="y"):
        _fit(bad)
    inf = frame.copy()
    inf.loc[5, "y"] = np.inf
    with pytest.raises(DataError, match="y"):
        _fit(inf)


def test_missing_outcomes(frame):
    miss = frame.copy()
    miss.loc[[2, 7], "y"] = np.nan
    with pytest.raises(DataError, match="missing"):
        _fit(miss)
    with pytest.warns(MissingDataWarning, match="2"):
        res = _fit(miss, missing="drop")
    assert res.n_obs == len(frame) - 2


def test_treatment_constant_within_every_period(frame):
    df = frame.copy()
    df["arm"] = (df["month"] >= 3).astype(float)
    with pytest.raises(DataError, match="constant within every period"):
        _fit(df)


def test_collinear_covariates(frame):
    df = frame.copy()
    df["copy_arm"] = 2.0 * df["arm"]
    with pytest.raises(DataError, match="copy_arm.*collinear"):
        _fit(df, covariates="copy_arm")
    df["late"] = (df["month"] == 5).astype(float)
    with pytest.raises(DataError, match="late.*collinear"):
        _fit(df, covariates="late")


def test_individual_reused_across_clusters(frame):
    df = frame.copy()
    df["pid"] = np.arange(len(df)) % 50
    with pytest.raises(DataError, match="pid"):
        _fit(df, individual="pid")


def test_unknown_option_lists_valid_values(frame):
    with pytest.raises(ValueError, match="'nested'"):
        _fit(frame, random="exchangeable")


def test_plot_returns_axes(frame):
    pytest.importorskip("matplotlib")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ax = _fit(frame).plot()
    assert ax.get_xlabel()
    ax2 = _fit(frame, effect="eti").plot()
    assert ax2.get_xlabel().startswith("exposure time")
    plt.close("all")


def test_non_convergence_is_flagged_and_warned(frame, monkeypatch):
    from steppedwedge.exceptions import ConvergenceWarning
    from steppedwedge.models import mixed

    real = mixed.fit_lmm

    def stalled(*args, **kwargs):
        return dataclasses.replace(real(*args, **kwargs), converged=False, message="stalled")

    monkeypatch.setattr(mixed, "fit_lmm", stalled)
    with pytest.warns(ConvergenceWarning, match="did not converge"):
        res = _fit(frame)
    assert res.converged is False
    assert any("converge" in msg for msg in res.messages)


def test_incomplete_design_equals_dense_gls(rng):
    df = _sw_frame(rng, n_clusters=8)
    # drop whole cells (an incomplete stepped wedge): first period of two clusters, last of one
    drop = ((df["site"] == "S00") & (df["month"] == 1)) | (
        (df["site"] == "S05") & (df["month"] == 1)
    )
    drop |= (df["site"] == "S07") & (df["month"] == 5)
    df = df[~drop].reset_index(drop=True)
    res = _fit(df, dof="satterthwaite")
    x = np.column_stack(
        [np.ones(len(df))]
        + [(df["month"] == j).astype(float) for j in range(2, 6)]
        + [df["arm"].to_numpy()]
    )
    beta, cov, _ = _dense_gls(df, x, res.variance_components)
    assert res.estimate == pytest.approx(beta[-1], rel=DENSE_REL)
    assert res.std_error == pytest.approx(np.sqrt(cov[-1, -1]), rel=DENSE_REL)


# ---------------------------------------------------------------- with_vcov


def _cohort_frame(rng: np.random.Generator) -> pd.DataFrame:
    """A closed cohort: the k-th row of every cell of a cluster is the same individual."""
    df = _sw_frame(rng, n_clusters=8)
    df["pid"] = df["site"] + "-" + df.groupby(["site", "month"]).cumcount().astype(str)
    df["y"] += df.groupby("pid")["y"].transform(lambda s: 0.0 * s + rng.normal(0, 0.3))
    return df


def _assert_same_result(got: FitResult, want: FitResult) -> None:
    """Every field of two Gaussian results agrees (floats to LINALG_REL, tables included)."""
    for f in dataclasses.fields(FitResult):
        if f.name == "_refit":
            continue
        a, b = getattr(got, f.name), getattr(want, f.name)
        if isinstance(b, pd.DataFrame):
            pd.testing.assert_frame_equal(a, b, rtol=LINALG_REL, atol=0.0)
        elif isinstance(b, pd.Series):
            pd.testing.assert_series_equal(a, b, rtol=LINALG_REL, atol=0.0)
        elif isinstance(b, np.ndarray):
            np.testing.assert_allclose(a, b, rtol=LINALG_REL, atol=0.0)
        elif isinstance(b, float):
            assert a == pytest.approx(b, rel=LINALG_REL, nan_ok=True), f.name
        elif isinstance(b, dict) and f.name == "correlations":
            assert a.keys() == b.keys()
            for k in b:
                np.testing.assert_allclose(a[k], b[k], rtol=LINALG_REL, atol=0.0)
        elif isinstance(b, dict):
            assert a == pytest.approx(b, rel=LINALG_REL), f.name
        else:
            assert a == b, f.name


WITH_VCOV_CASES = {
    # name: (fit options, (vcov, dof) of the first fit, (vcov, dof) asked of with_vcov)
    "model-kr->cr2": ({}, ("model", None), ("cr2", None)),
    "model-kr->cr3-normal": ({}, ("model", None), ("cr3", "normal")),
    "cr3->model-kr": ({}, ("cr3", None), ("model", None)),
    "cr2->model-satterthwaite": ({}, ("cr2", None), ("model", "satterthwaite")),
    "ml-satterthwaite->cr0-df12": ({"method": "ml"}, ("model", None), ("cr0", 12.0)),
    "covariates-in-cells->mbn": ({"covariates": "age"}, ("model", None), ("mbn", None)),
    "eti->kc": ({"effect": "eti", "random": "nested+decay"}, ("model", None), ("kc", None)),
    "cohort->cr2": ({"individual": "pid"}, ("model", None), ("cr2", None)),
    "cohort-cr3->model": ({"individual": "pid"}, ("cr3", None), ("model", None)),
}


@pytest.mark.parametrize("case", list(WITH_VCOV_CASES), ids=list(WITH_VCOV_CASES))
def test_with_vcov_equals_a_refit(rng, case):
    """``with_vcov`` recomputes the variance from the stored fit: the numbers of a refit."""
    options, (vcov0, dof0), (vcov1, dof1) = WITH_VCOV_CASES[case]
    df = _cohort_frame(rng)
    first = _fit(df, vcov=vcov0, dof=dof0, **options)
    refit = _fit(df, vcov=vcov1, dof=dof1, **options)
    got = first.with_vcov(vcov1, dof=dof1)
    assert got.vcov == vcov1 and got.vcov != first.vcov
    assert got.std_error != first.std_error  # the variance moved
    _assert_same_result(got, refit)
    # and back again: the first result, the original untouched
    _assert_same_result(got.with_vcov(vcov0, dof=dof0), first)
    assert first.vcov == vcov0


def test_with_vcov_does_not_refit(frame, monkeypatch):
    """No optimisation in ``with_vcov``: the stored fit is reused (and survives pickling)."""
    import pickle

    import steppedwedge.models.mixed as mixed

    res = pickle.loads(pickle.dumps(_fit(frame)))
    refit = _fit(frame, vcov="cr2")

    def no_fit(*args, **kwargs):
        raise AssertionError("with_vcov re-optimised the model")

    monkeypatch.setattr(mixed, "fit_lmm", no_fit)
    monkeypatch.setattr(mixed, "fit_lmm_rows", no_fit)
    _assert_same_result(res.with_vcov("cr2"), refit)


def test_with_vcov_refuses_bad_options(frame):
    res = _fit(frame, method="ml")
    with pytest.raises(OptionError, match="'cr2'"):
        res.with_vcov("hc3")
    with pytest.raises(OptionError, match="needs a REML fit"):
        res.with_vcov("model", dof="kenward-roger")
    with pytest.raises(OptionError, match="'clusters'"):
        res.with_vcov("cr2", dof="kenward-roger")


def test_spec_entry_is_what_fit_runs(frame):
    """``fit_gaussian_spec`` on the spec gives ``sw.fit``'s result; unknown numerics refused."""
    from steppedwedge.models.mixed import fit_gaussian_spec
    from steppedwedge.models.spec import AnalysisSpec

    spec = AnalysisSpec.from_options(
        outcome="y", cluster="site", period="month", treatment="arm", vcov="cr3"
    )
    _assert_same_result(fit_gaussian_spec(frame, spec), _fit(frame, vcov="cr3"))
    with pytest.raises(TypeError, match=r"\['n_quadrature'\].*Gaussian mixed model"):
        fit_gaussian_spec(frame, spec, n_quadrature=5)
