"""``compare``: side-by-side table of results that follow the result protocol.

Each row must reproduce the result's own estimand, standard error, interval, p-value and
df (the attributes each result computes itself), whatever the result type.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from _tolerances import DENSE_REL, EXACT, LINALG, ZERO_ATOL_1E12

from steppedwedge.compare import ANALYSES, COMPARE_COLUMNS, PANEL_COLUMNS, compare
from steppedwedge.inference.permutation import permutation_test
from steppedwedge.inference.pooling import pool
from steppedwedge.models.fit import fit
from steppedwedge.results import TIDY_COLUMNS

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


# --------------------------------------------------------------------------- implied weights
def _irregular_design() -> np.ndarray:
    """6 clusters x 6 periods, uneven steps, one unobserved (NaN) cell."""
    starts = [1, 1, 2, 3, 5, 5]
    x = np.array([[float(j >= s) for j in range(6)] for s in starts])
    x[2, 4] = np.nan
    return x


def _long(y: np.ndarray, x: np.ndarray) -> pd.DataFrame:
    i, j = np.nonzero(~np.isnan(x))
    return pd.DataFrame({"c": i, "t": j, "x": x[i, j], "y": y[i, j]})


def test_twfe_weights_match_a_brute_force_regression_of_unit_effect_data() -> None:
    """omega_e is the TWFE estimate on data whose only 'effect' is 1 at exposure time e."""
    import statsmodels.formula.api as smf

    from steppedwedge.compare import implied_weights

    x = _irregular_design()
    w = implied_weights(x, clusters=range(6), periods=range(6), kind="twfe")
    on = np.nan_to_num(x).astype(bool)
    start = on.argmax(axis=1)
    e = np.where(on, np.arange(6)[None, :] - start[:, None] + 1, 0)
    rng = np.random.default_rng(0)
    noise = rng.normal(size=(6, 1)) + rng.normal(size=(1, 6))  # absorbed by the fixed effects
    for k, omega in zip(w.exposure["exposure_time"], w.exposure["weight"], strict=True):
        frame = _long((e == k) + noise, x)
        brute = smf.ols("y ~ C(c) + C(t) + x", frame).fit().params["x"]
        np.testing.assert_allclose(omega, brute, rtol=DENSE_REL, atol=ZERO_ATOL_1E12)
    for t, omega in zip(w.calendar["period"], w.calendar["weight"], strict=True):
        unit = np.zeros((6, 6))
        unit[:, t] = np.nan_to_num(x[:, t])
        brute = smf.ols("y ~ C(c) + C(t) + x", _long(unit, x)).fit().params["x"]
        np.testing.assert_allclose(omega, brute, rtol=DENSE_REL, atol=ZERO_ATOL_1E12)
    np.testing.assert_allclose(w.exposure["weight"].sum(), 1.0, **EXACT)
    assert w.negative_exposure_times  # late exposure times are weighted negatively
    assert np.isnan(w.cells.to_numpy()[2, 4])


def test_gls_weights_match_a_brute_force_gls_regression() -> None:
    """GLS with period effects and nested+decay covariance, against statsmodels GLS."""
    import statsmodels.api as sm
    from scipy.linalg import block_diag

    from steppedwedge.compare import implied_weights

    x = _irregular_design()
    inv_m = np.linspace(0.05, 0.2, 36).reshape(6, 6)
    vc = {"sigma2": 2.0, "tau2": 0.3, "gamma2": 0.2, "decay": 0.6}
    w = implied_weights(
        x, clusters=range(6), periods=range(6), kind="gls", inv_size=inv_m, components=vc
    )
    lag = np.abs(np.subtract.outer(np.arange(6), np.arange(6)))
    blocks = []
    for i in range(6):
        keep = ~np.isnan(x[i])
        v = vc["tau2"] + vc["gamma2"] * vc["decay"] ** lag + np.diag(vc["sigma2"] * inv_m[i])
        blocks.append(v[np.ix_(keep, keep)])
    sigma = block_diag(*blocks)
    frame = _long(np.zeros((6, 6)), x)
    design = np.column_stack([pd.get_dummies(frame["t"]).to_numpy(float), frame["x"]])
    on = np.nan_to_num(x).astype(bool)
    e = np.where(on, np.arange(6)[None, :] - on.argmax(axis=1)[:, None] + 1, 0)
    for k, omega in zip(w.exposure["exposure_time"], w.exposure["weight"], strict=True):
        y = (e == k).astype(float)[~np.isnan(x)]
        brute = sm.GLS(y, design, sigma=sigma).fit().params[-1]
        np.testing.assert_allclose(omega, brute, rtol=DENSE_REL, atol=ZERO_ATOL_1E12)
    np.testing.assert_allclose(w.calendar["weight"].sum(), 1.0, **LINALG)


def test_implied_weights_refuse_fractional_treatment() -> None:
    from steppedwedge.compare import implied_weights
    from steppedwedge.exceptions import DataError

    with pytest.raises(DataError, match="0/1"):
        implied_weights(np.array([[0, 0.5], [0, 1]]), clusters=[0, 1], periods=[0, 1])
    with pytest.raises(DataError, match="treated cell"):
        implied_weights(np.zeros((2, 2)), clusters=[0, 1], periods=[0, 1])


# --------------------------------------------------------------------------- compare_analyses
@pytest.fixture(scope="module")
def councils_panel():
    import steppedwedge as sw

    df = sw.datasets.load_councils()
    roles = dict(
        outcome="entries_into_care",
        cluster="council",
        period="period",
        treatment="treated",
        exposure="population_0_17",
    )
    before = df.copy()
    panel = sw.compare_analyses(df, **roles, family="poisson", rng=1, n_permutations=199)
    pd.testing.assert_frame_equal(df, before)  # the caller's frame is not modified
    return df, roles, panel


def test_compare_analyses_rows_are_the_fits_they_name(councils_panel) -> None:
    import steppedwedge as sw

    df, roles, panel = councils_panel
    assert tuple(panel.table.columns) == PANEL_COLUMNS
    keys = panel.table["analysis"].tolist()
    assert keys[0] == "primary"
    assert set(keys) | set(panel.failures["analysis"]) == set(ANALYSES)
    # every row reproduces the fit it names, run by hand
    by_hand = {
        "primary": sw.fit(df, **roles, family="poisson"),
        "robust": sw.fit(df, **roles, family="poisson", vcov="cr2"),
        "eti": sw.fit(df, **roles, family="poisson", effect="eti"),
        "decay": sw.fit(df, **roles, family="poisson", random="nested+decay"),
        "callaway-santanna": sw.fit(df, **roles, family="poisson", method="callaway-santanna"),
        "imputation": sw.fit(df, **roles, family="poisson", method="imputation"),
        "fixed-effects": sw.fit(df, **roles, family="poisson", method="fixed-effects"),
    }
    rows = panel.table.set_index("analysis")
    for key, res in by_hand.items():
        _check_row(rows.loc[key], res)
    # GEE with 21 mean parameters and 17 clusters falls back to linear time, with a note
    assert "linear time" in " ".join(panel.notes)
    tidy = panel.tidy()
    assert list(tidy.columns[:8]) == list(TIDY_COLUMNS)
    np.testing.assert_allclose(tidy["estimate"], panel.table["estimate"], **EXACT)
    t90 = panel.tidy(confidence_level=0.9)
    w90, w95 = t90["conf_high"] - t90["conf_low"], tidy["conf_high"] - tidy["conf_low"]
    both = w90.notna() & w95.notna()  # a randomisation interval may not exist at a level
    assert both.sum() >= 8 and (w90[both] < w95[both]).all()
    assert panel.conf_int() == by_hand["primary"].conf_int()


def test_compare_analyses_diagnostics_explain_the_eti_disagreement(councils_panel) -> None:
    _, _, panel = councils_panel
    eti = panel.results["eti"]
    pd.testing.assert_frame_equal(panel.effect_curve, eti.effect_curve)
    gls = panel.weights["gls"]
    np.testing.assert_allclose(gls.exposure["weight"].sum(), 1.0, **LINALG)
    assert gls.negative_exposure_times  # the IT estimator weights late exposures negatively
    text = " ".join(panel.explain())
    assert "negative at" in text and "TATE" in text and "CR2" in text
    summary = panel.summary()
    assert "Implied weights" in summary.as_text()
    assert "<table" in panel._repr_html_()


def test_compare_analyses_forest_plot(councils_panel) -> None:
    import matplotlib

    matplotlib.use("Agg")
    _, _, panel = councils_panel
    ax = panel.plot()
    labels = [t.get_text() for t in ax.get_yticklabels()]
    assert labels == panel.table["model"].tolist()
    assert ax.get_xscale() == "log"
    # the drawn points are the exponentiated estimates, first row on top
    xs = np.concatenate([ln.get_xdata() for ln in ax.lines if ln.get_marker() == "o"])
    np.testing.assert_allclose(np.sort(xs), np.sort(np.exp(panel.table["estimate"])), **EXACT)
    wax = panel.plot_weights()
    heights = np.array([p.get_height() for p in wax.patches])
    drawn = np.concatenate([panel.weights[k].exposure["weight"] for k in panel.weights])
    np.testing.assert_allclose(heights, drawn, **EXACT)
    np.testing.assert_allclose(wax.right_ax.lines[0].get_ydata(), panel.effect_curve["estimate"])


def test_compare_analyses_bad_input(gaussian: pd.DataFrame) -> None:
    import steppedwedge as sw
    from steppedwedge.exceptions import OptionError

    with pytest.raises(OptionError, match="`analyses` must be one of"):
        sw.compare_analyses(gaussian, **ROLES, analyses=["bayes"])
    with pytest.raises(OptionError, match="twice"):
        sw.compare_analyses(gaussian, **ROLES, analyses=["eti", "eti"])
    with pytest.raises(ValueError, match="zzz"):  # the primary's own error reaches the caller
        sw.compare_analyses(gaussian, **{**ROLES, "outcome": "zzz"})
    # an alternative that cannot be fitted is reported, not dropped silently
    panel = sw.compare_analyses(gaussian, **ROLES, analyses=["fixed-effects", "gee"], rng=1)
    assert set(panel.table["analysis"]) | set(panel.failures["analysis"]) == {
        "primary",
        "fixed-effects",
        "gee",
    }


def test_gls_weights_agree_with_the_planning_cell_weights() -> None:
    """The same GLS weights from the power code (sw.cell_weights) at a planned design."""
    import steppedwedge as sw
    from steppedwedge.compare import implied_weights

    design = sw.Design.stepped_wedge(5, clusters_per_sequence=2)
    vc = sw.VarianceComponents(sigma2=1.0, tau2=0.05, gamma2=0.02, decay=0.7)
    planned = sw.cell_weights(design, variance=vc, cluster_size=30)
    mine = implied_weights(
        design.matrix,
        clusters=design.clusters,
        periods=design.periods,
        kind="gls",
        inv_size=np.full(design.matrix.shape, 1 / 30),
        components={"sigma2": 1.0, "tau2": 0.05, "gamma2": 0.02, "decay": 0.7},
    )
    np.testing.assert_allclose(mine.exposure["weight"], planned.exposure_weights, **LINALG)
    np.testing.assert_allclose(
        mine.cells.to_numpy(), planned.values, rtol=DENSE_REL, atol=ZERO_ATOL_1E12
    )


def test_compare_analyses_text_periods_need_an_order() -> None:
    """Exposure times follow the calendar: text periods without an order get no weights."""
    import steppedwedge as sw

    rng = np.random.default_rng(8)
    labels = ["Jan-20", "Feb-20", "Mar-20", "Apr-20", "May-20"]  # alphabetical != calendar
    rows = [(i, labels[j], float(j > i % 4), 0.4 * (j > i % 4) + rng.normal())
            for i in range(8) for j in range(5) for _ in range(5)]  # fmt: skip
    df = pd.DataFrame(rows, columns=["c", "t", "x", "y"])
    unordered = sw.compare_analyses(df, **ROLES, analyses=["robust"])
    assert unordered.weights == {} and "period_order" in " ".join(unordered.notes)
    ordered = sw.compare_analyses(df, **ROLES, analyses=["robust"], period_order=labels)
    numeric = df.assign(t=df["t"].map({lab: k for k, lab in enumerate(labels)}))
    ref = sw.compare_analyses(numeric, **ROLES, analyses=["robust"])
    pd.testing.assert_frame_equal(ordered.weights["twfe"].exposure, ref.weights["twfe"].exposure)
