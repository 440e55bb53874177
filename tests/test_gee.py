"""GEE kernels against brute-force dense algebra; bad input; the result protocol."""

from __future__ import annotations

import dataclasses
import warnings

import numpy as np
import pandas as pd
import pytest
from _tolerances import EXACT, GEE_FIXED_POINT, LINALG, NUM_JACOBIAN
from scipy import special

from steppedwedge._core import gee as G
from steppedwedge.data import TrialData
from steppedwedge.exceptions import DataError, OptionError, SmallSampleWarning
from steppedwedge.models.gee import GEEResult, fit_gee, gee_vcov_array

# --------------------------------------------------------------------------------------
# helpers: random stepped-wedge individual data and a dense reference implementation
# --------------------------------------------------------------------------------------


def _sw_rows(
    rng: np.random.Generator,
    I: int = 9,  # noqa: E741
    T: int = 4,
    binary: bool = False,
    missing_cell: bool = True,
) -> pd.DataFrame:
    rows = []
    for i in range(I):
        a = rng.normal(0, 0.4)
        for t in range(T):
            if missing_cell and i == 0 and t == T - 1:
                continue  # an unobserved cell
            m = int(rng.integers(2, 7))
            x = int(t > i % (T - 1))
            eta = -0.3 + 0.1 * t + 0.5 * x + a + rng.normal(0, 0.2)
            age = rng.normal(0, 1, m)
            if binary:
                y = (rng.random(m) < special.expit(eta + 0.3 * age)).astype(float)
            else:
                y = eta + 0.3 * age + rng.normal(0, 1, m)
            for k in range(m):
                rows.append((i, t, x, age[k], y[k]))
    return pd.DataFrame(rows, columns=["cluster", "period", "treatment", "age", "y"])


def _units_rows(df: pd.DataFrame, T: int, with_age: bool = True) -> G.GEEUnits:
    df = df.sort_values("cluster", kind="stable")
    cols = [(df["period"] == t).to_numpy(float) for t in range(T)]
    cols.append(df["treatment"].to_numpy(float))
    if with_age:
        cols.append(df["age"].to_numpy(float))
    return G.GEEUnits(
        cluster=df["cluster"].to_numpy(np.int64),
        period=df["period"].to_numpy(np.int64),
        X=np.column_stack(cols),
        w=np.ones(len(df)),
        ysum=df["y"].to_numpy(float),
        yss=np.zeros(len(df)),
        offset=np.zeros(len(df)),
        n_clusters=int(df["cluster"].max()) + 1,
        n_periods=T,
        times=np.arange(T, dtype=float),
    )


def _dense(
    units: G.GEEUnits, fam: G.LinkFunctions, beta: np.ndarray, corstr: str, params: np.ndarray
):
    """Per-cluster n_i x n_i matrices, straight from the definitions (rows with w = 1)."""
    eta = units.X @ beta + units.offset
    mu, dmu, v = fam.linkinv(eta), fam.mu_eta(eta), fam.variance(fam.linkinv(eta))
    C = G.between_correlation(corstr, params, units.times)
    out = []
    for i in range(units.n_clusters):
        ix = np.flatnonzero(units.cluster == i)
        per = units.period[ix]
        R = C[np.ix_(per, per)].copy()
        np.fill_diagonal(R, 1.0)
        A = np.diag(np.sqrt(v[ix]))
        V = A @ R @ A
        D = units.X[ix] * dmu[ix, None]
        out.append((D, np.linalg.inv(V), units.ysum[ix] - mu[ix]))
    return out


# --------------------------------------------------------------------------------------
# kernels
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "corstr,params",
    [
        ("exchangeable", [0.2]),
        ("nested-exchangeable", [0.3, 0.1]),
        ("decay", [0.35, 0.6]),
        ("independence", []),
    ],
)
@pytest.mark.parametrize("binary", [False, True])
def test_woodbury_pieces_equal_dense(rng, corstr, params, binary) -> None:
    df = _sw_rows(rng, binary=binary)
    units = _units_rows(df, 4)
    fam = G.link_functions(*(("binomial", "logit") if binary else ("gaussian", "identity")))
    beta = rng.normal(0, 0.3, units.X.shape[1])
    pc = G._pieces(units, fam, beta, corstr, np.array(params, float), dense=False)
    for i, (D, Vi, e) in enumerate(_dense(units, fam, beta, corstr, np.array(params, float))):
        np.testing.assert_allclose(pc.M[i], D.T @ Vi @ D, **LINALG)
        np.testing.assert_allclose(pc.u[i], D.T @ Vi @ e, **LINALG)


def test_cells_as_units_equal_rows(rng) -> None:
    """A cell of m identical-design rows is one unit with w = m (exact reduction)."""
    df = _sw_rows(rng, binary=True)
    T = 4
    rows = _units_rows(df, T, with_age=False)
    g = df.groupby(["cluster", "period"])
    agg = g.agg(n=("y", "size"), s=("y", "sum"), x=("treatment", "first")).reset_index()
    ss = g["y"].apply(lambda y: float(((y - y.mean()) ** 2).sum())).to_numpy()
    cells = G.GEEUnits(
        cluster=agg["cluster"].to_numpy(np.int64),
        period=agg["period"].to_numpy(np.int64),
        X=np.column_stack(
            [(agg["period"] == t).to_numpy(float) for t in range(T)] + [agg["x"].to_numpy(float)]
        ),
        w=agg["n"].to_numpy(float),
        ysum=agg["s"].to_numpy(float),
        yss=ss,
        offset=np.zeros(len(agg)),
        n_clusters=rows.n_clusters,
        n_periods=T,
        times=rows.times,
    )
    fam = G.link_functions("binomial", "logit")
    a = G.fit_gee_core(rows, fam, "nested-exchangeable", beta0=np.zeros(5))
    b = G.fit_gee_core(cells, fam, "nested-exchangeable", beta0=np.zeros(5))
    np.testing.assert_allclose(a.beta, b.beta, **LINALG)
    np.testing.assert_allclose(a.params, b.params, **LINALG)
    np.testing.assert_allclose(a.phi, b.phi, **LINALG)
    for kind in ("model", "robust", "kc", "md", "fg"):
        np.testing.assert_allclose(
            gee_vcov_array(a.M, a.u, a.phi, kind), gee_vcov_array(b.M, b.u, b.phi, kind), **LINALG
        )


def test_dense_path_equals_woodbury_single_observation(rng) -> None:
    """One observation per cell: the dense T x T path equals the Woodbury path."""
    df = _sw_rows(rng)
    df = df.groupby(["cluster", "period"], as_index=False).first()
    units = _units_rows(df, 4)
    fam = G.link_functions("gaussian", "identity")
    beta = rng.normal(0, 0.3, units.X.shape[1])
    a = G._pieces(units, fam, beta, "exchangeable", np.array([0.4]), dense=True)
    b = G._pieces(units, fam, beta, "exchangeable", np.array([0.4]), dense=False)
    np.testing.assert_allclose(a.M, b.M, **LINALG)
    np.testing.assert_allclose(a.u, b.u, **LINALG)


@pytest.mark.parametrize("kind", ["robust", "kc", "md", "fg", "model"])
def test_sandwich_reduction_equals_dense(rng, kind) -> None:
    df = _sw_rows(rng, binary=True)
    units = _units_rows(df, 4)
    fam = G.link_functions("binomial", "logit")
    core = G.fit_gee_core(units, fam, "decay", beta0=np.zeros(units.X.shape[1]))
    parts = _dense(units, fam, core.beta, "decay", core.params)
    Om = sum(D.T @ Vi @ D for D, Vi, _ in parts)
    Oi = np.linalg.inv(Om)
    p = Om.shape[0]
    meat = np.zeros((p, p))
    for D, Vi, e in parts:
        u = D.T @ Vi @ e
        H = D @ Oi @ D.T @ Vi
        umd = D.T @ Vi @ np.linalg.solve(np.eye(len(e)) - H, e)
        if kind == "robust":
            meat += np.outer(u, u)
        elif kind == "md":
            meat += np.outer(umd, umd)
        elif kind == "kc":
            meat += 0.5 * (np.outer(umd, u) + np.outer(u, umd))
        elif kind == "fg":
            c = 1 / np.sqrt(1 - np.minimum(0.75, np.diag(D.T @ Vi @ D @ Oi)))
            meat += np.outer(c * u, c * u)
    want = core.phi * Oi if kind == "model" else Oi @ meat @ Oi
    np.testing.assert_allclose(gee_vcov_array(core.M, core.u, core.phi, kind), want, **LINALG)


def test_bias_corrected_scale_equals_dense(rng) -> None:
    df = _sw_rows(rng)
    units = _units_rows(df, 4)
    fam = G.link_functions("gaussian", "identity")
    core = G.fit_gee_core(
        units,
        fam,
        "exchangeable",
        beta0=np.zeros(units.X.shape[1]),
        params=np.array([0.15]),
        scale_method="bias-corrected",
    )
    parts = _dense(units, fam, core.beta, "exchangeable", np.array([0.15]))
    Oi = np.linalg.inv(sum(D.T @ Vi @ D for D, Vi, _ in parts))
    total = sum(e @ np.linalg.solve(np.eye(len(e)) - D @ Oi @ D.T @ Vi, e) for D, Vi, e in parts)
    n, p = len(units.w), units.X.shape[1]
    np.testing.assert_allclose(core.phi, total / (n - p), **LINALG)


def test_moment_estimators_brute_force(rng) -> None:
    """Nested-exchangeable moment estimates = averages over explicit residual pairs."""
    df = _sw_rows(rng)
    units = _units_rows(df, 4)
    fam = G.link_functions("gaussian", "identity")
    core = G.fit_gee_core(units, fam, "nested-exchangeable", beta0=np.zeros(units.X.shape[1]))
    r = units.ysum - units.X @ core.beta
    phi = float(np.mean(r**2))
    same, diff = [], []
    for i in range(units.n_clusters):
        ix = np.flatnonzero(units.cluster == i)
        for a in range(len(ix)):
            for b in range(a + 1, len(ix)):
                (same if units.period[ix[a]] == units.period[ix[b]] else diff).append(
                    r[ix[a]] * r[ix[b]] / phi
                )
    np.testing.assert_allclose(core.phi, phi, **LINALG)
    np.testing.assert_allclose(core.params, [np.mean(same), np.mean(diff)], **LINALG)


# --------------------------------------------------------------------------------------
# the public function: bad input
# --------------------------------------------------------------------------------------


def _td(df: pd.DataFrame, **kw) -> TrialData:
    return TrialData.from_frame(
        df, outcome="y", cluster="cluster", period="period", treatment="treatment", **kw
    )


@pytest.fixture
def gaussian_df() -> pd.DataFrame:
    return _sw_rows(np.random.default_rng(5), I=13, T=4)


def test_binary_outcome_not_01(gaussian_df) -> None:
    with pytest.raises(DataError, match="0/1"):
        fit_gee(_td(gaussian_df), family="binomial")
    with pytest.raises(DataError):  # caught at the data boundary too
        _td(gaussian_df, family="binomial")


def test_counts_not_integers(gaussian_df) -> None:
    with pytest.raises(DataError, match="non-negative integer"):
        fit_gee(_td(gaussian_df), family="poisson")


def test_offset_with_nan() -> None:
    df = pd.DataFrame({"cluster": np.repeat(np.arange(8), 3), "period": np.tile([0, 1, 2], 8)})
    df["treatment"] = (df["period"] > df["cluster"] % 2).astype(float)
    df["y"] = 5
    df["off"] = 0.0
    df.loc[4, "off"] = np.nan
    with pytest.raises(DataError, match="off"):
        _td(df, family="poisson", offset="off")


@pytest.mark.parametrize(
    "family,link",
    [
        ("gaussian", "logit"),
        ("poisson", "logit"),
        ("negative_binomial", "identity"),
        ("binomial", "probit"),
    ],
)
def test_family_link_nonsense(gaussian_df, family, link) -> None:
    td = _td(gaussian_df.assign(y=(gaussian_df["y"] > 0).astype(int)))
    with pytest.raises(ValueError, match="`link` must be one of"):
        fit_gee(td, family=family, link=link)


def test_unknown_options(gaussian_df) -> None:
    td = _td(gaussian_df)
    with pytest.raises(ValueError, match="'md'"):
        fit_gee(td, vcov="cr3")
    with pytest.raises(ValueError, match="nested-exchangeable"):
        fit_gee(td, corstr="unstructured")
    with pytest.raises(ValueError, match="corr_params"):
        fit_gee(td, corstr="nested-exchangeable", corr_params=[0.1])


def test_too_few_clusters_is_an_error(gaussian_df) -> None:
    small = gaussian_df[gaussian_df["cluster"] < 5]  # I = 5 <= p = 5
    with pytest.raises(DataError, match="more than 5 clusters"):
        fit_gee(_td(small))


def test_small_sample_warnings(gaussian_df) -> None:
    td = _td(gaussian_df)  # I = 13, p = 5: I - p = 8
    with pytest.warns(SmallSampleWarning, match="robust"):
        fit_gee(td, vcov="robust")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fit_gee(td, vcov="kc")  # corrected sandwich, 8 df: no warning
    few = _td(gaussian_df[gaussian_df["cluster"] < 8])  # I - p = 3
    with pytest.warns(SmallSampleWarning, match="degrees of freedom"):
        fit_gee(few, vcov="md")


def test_ar1_needs_single_observation(gaussian_df) -> None:
    with pytest.raises(DataError, match="decay"):
        fit_gee(_td(gaussian_df), corstr="ar1")


def test_collinear_covariate(gaussian_df) -> None:
    df = gaussian_df.assign(t2=gaussian_df["treatment"] * 2.0)
    td = _td(df, covariates=["t2"])
    with pytest.raises(DataError, match="collinear"):
        fit_gee(td, covariates=["t2"])


# --------------------------------------------------------------------------------------
# result protocol
# --------------------------------------------------------------------------------------


def test_result_protocol(gaussian_df) -> None:
    df = gaussian_df.assign(y=(gaussian_df["y"] > 0).astype(int))
    res = fit_gee(_td(df, family="binomial"), corstr="nested-exchangeable", vcov="kc")
    assert isinstance(res, GEEResult)
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
    row = tidy.set_index("term").loc["treatment"]
    np.testing.assert_allclose(row["estimate"], res.estimate, **EXACT)
    lo, hi = res.conf_int(0.9)
    from scipy import stats

    q = stats.t.ppf(0.95, res.df)
    np.testing.assert_allclose(
        [lo, hi], [res.estimate - q * res.std_error, res.estimate + q * res.std_error], **EXACT
    )
    np.testing.assert_allclose(res.pvalue, 2 * stats.t.sf(abs(res.statistic), res.df), **EXACT)
    ex = res.tidy(exponentiate=True).set_index("term").loc["treatment"]
    np.testing.assert_allclose(ex["estimate"], np.exp(res.estimate), **EXACT)
    np.testing.assert_allclose(ex["conf_low"], np.exp(row["conf_low"]), **EXACT)
    md = res.with_vcov("md")
    assert md.vcov == "md" and res.vcov == "kc" and md.std_error > res.std_error
    np.testing.assert_allclose(md.params, res.params, **EXACT)
    assert res.df == res.n_clusters - len(res.params)
    assert np.isinf(fit_gee(_td(df, family="binomial"), dof="normal").df)
    s = res.summary()
    for text in (
        s.as_text(),
        s.as_markdown(),
        s.as_html(),
        s.as_latex(),
        str(res),
        res._repr_html_(),
        repr(res),
    ):
        assert "treatment" in text
    ax = res.plot()
    assert ax.get_xlabel().startswith("estimate")


def test_exponentiate_needs_a_ratio_link(gaussian_df) -> None:
    res = fit_gee(_td(gaussian_df))
    with pytest.raises(
        OptionError, match="needs a log, logit or cloglog link; this fit uses link='identity'"
    ):
        res.tidy(exponentiate=True)


def test_caller_frame_untouched(gaussian_df) -> None:
    before = gaussian_df.copy()
    fit_gee(_td(gaussian_df), corstr="decay")
    pd.testing.assert_frame_equal(gaussian_df, before)


# --------------------------------------------------------------------------------------
# DataFrame entry point (the method="gee" branch of sw.fit)
# --------------------------------------------------------------------------------------

from steppedwedge.models.gee import fit_gee_frame  # noqa: E402


def test_frame_entry_equals_trialdata_fit(gaussian_df) -> None:
    a = fit_gee_frame(
        gaussian_df,
        outcome="y",
        cluster="cluster",
        period="period",
        treatment="treatment",
        random="cluster",
        vcov="kc",
    )
    b = fit_gee(_td(gaussian_df), corstr="exchangeable", vcov="kc")
    assert a.corstr == "exchangeable"
    np.testing.assert_allclose(a.params, b.params, **EXACT)
    np.testing.assert_allclose(a.std_error, b.std_error, **EXACT)
    c = fit_gee_frame(
        gaussian_df, outcome="y", cluster="cluster", period="period", treatment="treatment"
    )
    assert c.corstr == "nested-exchangeable" and c.vcov == "md"


def test_frame_entry_covariate_formula(gaussian_df) -> None:
    df = gaussian_df.assign(sex=np.where(np.arange(len(gaussian_df)) % 3 == 0, "f", "m"))
    res = fit_gee_frame(
        df,
        outcome="y",
        cluster="cluster",
        period="period",
        treatment="treatment",
        covariates="age + C(sex)",
    )
    df2 = df.assign(m=(df["sex"] == "m").astype(float))
    ref = fit_gee(
        _td(df2, covariates=["age", "m"]), corstr="nested-exchangeable", covariates=["m", "age"]
    )
    np.testing.assert_allclose(res.estimate, ref.estimate, **LINALG)
    np.testing.assert_allclose(res.std_error, ref.std_error, **LINALG)


def test_frame_entry_counts_map_to_single_observation_structures() -> None:
    rng = np.random.default_rng(3)
    rows = [(i, t, int(t > i % 3), 1000, rng.poisson(20)) for i in range(10) for t in range(4)]
    df = pd.DataFrame(rows, columns=["c", "t", "x", "pop", "y"])
    kw = dict(outcome="y", cluster="c", period="t", treatment="x", family="poisson", exposure="pop")
    assert fit_gee_frame(df, **kw).corstr == "exchangeable"
    assert fit_gee_frame(df, random="decay", **kw).corstr == "ar1"
    with pytest.raises(ValueError, match="no GEE working-correlation analogue"):
        fit_gee_frame(df, random="random-slope", **kw)
    with pytest.raises(ValueError, match="effect='immediate'"):
        fit_gee_frame(df, effect="eti", **kw)


def _cohort_rows(rng: np.random.Generator, I: int = 8, T: int = 4) -> pd.DataFrame:  # noqa: E741
    rows = []
    for i in range(I):
        a = rng.normal(0, 0.4)
        K = int(rng.integers(3, 6))
        b = rng.normal(0, 0.5, K)
        for t in range(T):
            x = int(t > i % (T - 1))
            for k in range(K):
                if (i + k + t) % 7 == 0:
                    continue  # some missed visits
                rows.append((i, t, x, f"{i}-{k}", 0.1 * t + 0.4 * x + a + b[k] + rng.normal()))
    return pd.DataFrame(rows, columns=["cluster", "period", "treatment", "person", "y"])


def test_block_pieces_equal_dense(rng) -> None:
    df = _cohort_rows(rng).sort_values("cluster", kind="stable")
    units = _units_rows(df.assign(age=0.0), 4, with_age=False)
    units = dataclasses.replace(units, individual=pd.factorize(df["person"])[0].astype(np.int64))
    fam = G.link_functions("gaussian", "identity")
    beta = rng.normal(0, 0.3, units.X.shape[1])
    a0, a1, a2 = 0.2, 0.1, 0.45
    pc = G._pieces(units, fam, beta, "block-exchangeable", np.array([a0, a1, a2]), dense=False)
    per, who = units.period, units.individual
    for i in range(units.n_clusters):
        ix = np.flatnonzero(units.cluster == i)
        sp = per[ix][:, None] == per[ix][None, :]
        si = who[ix][:, None] == who[ix][None, :]
        R = np.where(sp & si, 1.0, np.where(sp, a0, np.where(si, a2, a1)))
        D, e = units.X[ix], units.ysum[ix] - units.X[ix] @ beta
        np.testing.assert_allclose(pc.M[i], D.T @ np.linalg.solve(R, D), **LINALG)
        np.testing.assert_allclose(pc.u[i], D.T @ np.linalg.solve(R, e), **LINALG)


def test_block_exchangeable_needs_individual(gaussian_df) -> None:
    with pytest.raises(DataError, match="individual"):
        fit_gee(_td(gaussian_df), corstr="block-exchangeable")


def test_frame_entry_cohort_uses_block_exchangeable(rng) -> None:
    df = _cohort_rows(rng, I=12)
    res = fit_gee_frame(
        df,
        outcome="y",
        cluster="cluster",
        period="period",
        treatment="treatment",
        individual="person",
    )
    assert res.corstr == "block-exchangeable"
    assert set(res.correlation) == {"alpha0", "alpha1", "alpha2"}


def test_maee_symmetric_equals_dense(rng) -> None:
    """Symmetrised MAEE: pair means of [(I - H)^{-1} r r'] + transpose, by brute force."""
    df = _sw_rows(rng)
    units = _units_rows(df, 4)
    fam = G.link_functions("gaussian", "identity")
    core = G.fit_gee_core(
        units,
        fam,
        "nested-exchangeable",
        beta0=np.zeros(units.X.shape[1]),
        maee=True,
        scale_method="residual",
    )
    # one more moment step at the solution must reproduce the parameters (fixed point)
    parts = _dense(units, fam, core.beta, "nested-exchangeable", core.params)
    Oi = np.linalg.inv(sum(D.T @ Vi @ D for D, Vi, _ in parts))
    same = diff = 0.0
    n_same = n_diff = 0
    for i, (D, Vi, e) in enumerate(parts):
        per = units.period[units.cluster == i]
        H = D @ Oi @ D.T @ Vi
        S = np.linalg.solve(np.eye(len(e)) - H, e)[:, None] * e[None, :]
        S = 0.5 * (S + S.T)
        iu = np.triu_indices(len(e), 1)
        sp = (per[:, None] == per[None, :])[iu]
        same += S[iu][sp].sum()
        diff += S[iu][~sp].sum()
        n_same += int(sp.sum())
        n_diff += int((~sp).sum())
    np.testing.assert_allclose(
        core.params, np.array([same / n_same, diff / n_diff]) / core.phi, **GEE_FIXED_POINT
    )


def test_maee_bad_combinations(gaussian_df) -> None:
    with pytest.raises(ValueError, match="maee"):
        fit_gee(_td(gaussian_df), corstr="independence", maee=True)
    with pytest.raises(ValueError, match="corr_params"):
        fit_gee(_td(gaussian_df), corr_params=[0.1], maee=True)


def test_cluster_period_estimator_brute_force(rng) -> None:
    """Cluster-period-mean correlation estimates from explicit cell means (nested)."""
    df = _sw_rows(rng, binary=True)
    td = _td(df, family="binomial")
    res = fit_gee(
        td, corstr="nested-exchangeable", corr_method="cluster-period", scale=1.0, dof=4
    )  # explicit df: no small-sample warning
    cells = (
        df.groupby(["cluster", "period"])
        .agg(m=("y", "size"), ybar=("y", "mean"), x=("treatment", "first"))
        .reset_index()
    )
    eta = (
        res.params[[f"period[{t}]" for t in cells["period"]]].to_numpy()
        + res.params["treatment"] * cells["x"].to_numpy()
    )
    mu = special.expit(eta)
    v = mu * (1 - mu)
    g = cells["ybar"].to_numpy() - mu
    m = cells["m"].to_numpy(float)
    d = v * (m - 1) / m
    a0 = np.sum(d * (g * g - v / m)) / np.sum(d * d)
    num = den = 0.0
    for _, ix in cells.groupby("cluster").indices.items():
        for a in range(len(ix)):
            for b in range(a + 1, len(ix)):
                num += np.sqrt(v[ix[a]] * v[ix[b]]) * g[ix[a]] * g[ix[b]]
                den += v[ix[a]] * v[ix[b]]
    np.testing.assert_allclose(list(res.correlation.values()), [a0, num / den], **GEE_FIXED_POINT)


def test_cluster_period_estimator_bad_combinations(gaussian_df) -> None:
    with pytest.raises(ValueError, match="cluster-period"):
        fit_gee(_td(gaussian_df), corstr="decay", corr_method="cluster-period")
    with pytest.raises(DataError, match="covariates"):
        fit_gee(
            _td(gaussian_df, covariates=["age"]), covariates=["age"], corr_method="cluster-period"
        )


@pytest.mark.parametrize(
    "corstr,maee",
    [("nested-exchangeable", False), ("exchangeable", False), ("nested-exchangeable", True)],
)
def test_correlation_std_errors_brute_force(rng, corstr, maee) -> None:
    """Stacked (beta, alpha) sandwich from explicit row-level pairs and a numerical Jacobian."""
    df = _sw_rows(rng, I=12)
    res = fit_gee(_td(df), corstr=corstr, maee=maee, scale="residual")
    units = _units_rows(df, 4, with_age=False)
    fam = G.link_functions("gaussian", "identity")
    beta = res.params.to_numpy()
    alpha = np.array(list(res.correlation.values()))
    phi = res.scale

    def scores(b: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        parts = _dense(units, fam, b, corstr, alpha)
        Oi = np.linalg.inv(sum(D.T @ Vi @ D for D, Vi, _ in parts)) * phi
        U, S, C = [], [], []
        for i, (D, Vi, e) in enumerate(parts):
            per = units.period[units.cluster == i]
            s = np.linalg.solve(np.eye(len(e)) - D @ (Oi / phi) @ D.T @ Vi, e) if maee else e
            P = 0.5 * (np.outer(s, e) + np.outer(e, s)) / phi
            iu = np.triu_indices(len(e), 1)
            sp = (per[:, None] == per[None, :])[iu]
            if corstr == "exchangeable":
                tot = np.array([P[iu].sum()])
                cnt = np.array([float(len(sp))])
            else:
                tot = np.array([P[iu][sp].sum(), P[iu][~sp].sum()])
                cnt = np.array([float(sp.sum()), float((~sp).sum())])
            U.append(tot - alpha * cnt)
            S.append(D.T @ Vi @ e / phi)
            C.append(cnt)
        return np.array(U), np.array(S), np.array(C)

    U, S, C = scores(beta)
    p, q = len(beta), U.shape[1]
    J = np.zeros((q, p))
    for k in range(p):
        h = 1e-5
        bp, bm = beta.copy(), beta.copy()
        bp[k] += h
        bm[k] -= h
        J[:, k] = (scores(bp)[0].sum(0) - scores(bm)[0].sum(0)) / (2 * h)
    parts = _dense(units, fam, beta, corstr, alpha)
    bread = np.zeros((p + q, p + q))
    bread[:p, :p] = sum(D.T @ Vi @ D for D, Vi, _ in parts) / phi
    bread[p:, :p] = -J
    bread[p:, p:] = np.diag(C.sum(0))
    psi = np.concatenate([S, U], axis=1)
    Binv = np.linalg.inv(bread)
    want = np.sqrt(np.diag((Binv @ psi.T @ psi @ Binv.T)[p:, p:]))
    np.testing.assert_allclose(list(res.correlation_std_errors.values()), want, **NUM_JACOBIAN)


@pytest.mark.slow
def test_monte_carlo_unbiased_and_md_size() -> None:
    """Gaussian SW trial, exchangeable truth, 12 clusters: theta-hat unbiased; the MD
    sandwich with t(I - p) keeps the size (it is known to be slightly conservative)."""
    from _tolerances import MC_K

    rng = np.random.default_rng(20261126)
    I, T, m, theta = 12, 4, 8, 0.3  # noqa: E741
    start = 1 + np.arange(I) % (T - 1)
    X = (np.arange(T)[None, :] >= start[:, None]).astype(float)
    ci = np.repeat(np.arange(I), T * m)
    tj = np.tile(np.repeat(np.arange(T), m), I)
    n_rep = 400
    est, rej = np.empty(n_rep), np.empty(n_rep, bool)
    for r in range(n_rep):
        y = 0.1 * tj + theta * X[ci, tj] + rng.normal(0, 0.5, I)[ci] + rng.normal(0, 1, ci.size)
        df = pd.DataFrame({"cluster": ci, "period": tj, "treatment": X[ci, tj], "y": y})
        res = fit_gee(_td(df), corstr="exchangeable", vcov="md")
        est[r] = res.estimate
        lo, hi = res.conf_int()
        rej[r] = not (lo <= theta <= hi)
    se_mean = est.std(ddof=1) / np.sqrt(n_rep)
    assert abs(est.mean() - theta) < MC_K * se_mean
    size_se = np.sqrt(0.05 * 0.95 / n_rep)
    assert rej.mean() < 0.05 + MC_K * size_se


def test_non_positive_definite_working_correlation(gaussian_df) -> None:
    # exchangeable alpha below -1 / (n_i - 1) for the largest cluster
    with pytest.raises(DataError, match="not positive definite"):
        fit_gee(_td(gaussian_df), corstr="exchangeable", corr_params=[-0.2])


def test_convergence_warning(gaussian_df) -> None:
    from steppedwedge.exceptions import ConvergenceWarning

    with pytest.warns(ConvergenceWarning, match="did not converge"):
        fit_gee(_td(gaussian_df), corstr="nested-exchangeable", maxiter=1)


# --------------------------------------------------------------------------------------
# result base: with_vcov from the stored pieces, method_label, the spec entry
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["model", "robust", "kc", "md", "fg"])
def test_with_vcov_equals_refit(gaussian_df, kind) -> None:
    """with_vcov recomputes the variance from the stored M_i, u_i: the same as a refit."""
    td = _td(gaussian_df)
    base = fit_gee(td, corstr="nested-exchangeable", vcov="md", dof="normal")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SmallSampleWarning)  # vcov="robust", 13 clusters
        refit = fit_gee(td, corstr="nested-exchangeable", vcov=kind)
    got = base.with_vcov(kind, dof="residual")
    assert got.vcov == kind and got.df == refit.df == td.n_clusters - len(refit.params)
    np.testing.assert_allclose(got.vcov_matrix, refit.vcov_matrix, **LINALG)
    np.testing.assert_allclose(got.std_error, refit.std_error, **LINALG)
    # dof=None: the default df rule of a refit with that vcov (I - p), not the stored df
    assert base.with_vcov(kind).df == refit.df == td.n_clusters - len(refit.params)
    assert base.with_vcov(kind, dof="normal").df == np.inf
    assert got.method_label == f"GEE ({kind})"


def test_with_vcov_unknown_estimator(gaussian_df) -> None:
    res = fit_gee(_td(gaussian_df))
    with pytest.raises(ValueError, match="'fg'"):
        res.with_vcov("cr2")


def test_leverage_one_names_the_cluster(gaussian_df) -> None:
    """A covariate carried by one cluster alone gives it leverage 1: MD/KC cannot be formed."""
    df = gaussian_df.assign(z=(gaussian_df["cluster"] == 3).astype(float))
    td = _td(df, covariates=["z"])
    for kind in ("md", "kc"):
        with pytest.raises(DataError, match=r"Cluster 3 has leverage 1.*vcov='fg' or 'robust'"):
            fit_gee(td, covariates=["z"], vcov=kind)
    fit_gee(td, covariates=["z"], vcov="fg")  # no leverage inversion: fine


def test_spec_entry_equals_frame_entry(gaussian_df) -> None:
    from steppedwedge.models.gee import fit_gee_spec
    from steppedwedge.models.spec import AnalysisSpec

    roles = dict(outcome="y", cluster="cluster", period="period", treatment="treatment")
    spec = AnalysisSpec.from_options(**roles, random="decay", vcov="kc", method="gee")
    a = fit_gee_spec(gaussian_df, spec, tol=1e-12)
    b = fit_gee_frame(gaussian_df, **roles, random="decay", vcov="kc", tol=1e-12)
    assert a.corstr == b.corstr == "decay"
    np.testing.assert_allclose(a.params, b.params, **EXACT)
    np.testing.assert_allclose(a.vcov_matrix, b.vcov_matrix, **EXACT)


# --------------------------------------------------------------------------------------
# review fixes: pickling, the shared covariate-column check
# --------------------------------------------------------------------------------------


def test_result_pickles_and_with_vcov_after(gaussian_df) -> None:
    """GEEResult round-trips through pickle (no local functions inside); with_vcov still works."""
    import pickle

    res = fit_gee(_td(gaussian_df), corstr="nested-exchangeable", vcov="md")
    back = pickle.loads(pickle.dumps(res))
    assert back.estimate == res.estimate and back.std_error == res.std_error
    assert back.correlation_std_errors == res.correlation_std_errors is not None
    kc, kc_back = res.with_vcov("kc"), back.with_vcov("kc")
    np.testing.assert_array_equal(kc_back.vcov_matrix, kc.vcov_matrix)
    assert kc_back.df == kc.df == res.n_clusters - len(res.params)


@pytest.mark.parametrize(
    "family, link", [("gaussian", "identity"), ("binomial", "logit"), ("poisson", "log")]
)
def test_link_functions_pickle_and_match_the_formulas(family, link) -> None:
    """The module-level variance/range functions (and the NB2 callable) equal the formulas."""
    import pickle

    mu = np.array([0.2, 0.5, 0.9])
    var = {"gaussian": np.ones(3), "binomial": mu * (1 - mu), "poisson": mu}[family]
    for fam, want in ((G.link_functions(family, link), var),
                      (G.link_functions("negative_binomial", "log", nb_theta=2.5),
                       mu + mu**2 / 2.5)):  # fmt: skip
        back = pickle.loads(pickle.dumps(fam))
        np.testing.assert_allclose(back.variance(mu), want, **EXACT)
        np.testing.assert_allclose(back.linkinv(back.linkfun(mu)), mu, **LINALG)
        bad = np.array([np.inf]) if fam.variance is G._ones else np.array([-1.0, 2.0])
        assert back.valid_mu(mu) and not back.valid_mu(bad)


def test_missing_covariate_column_has_the_trial_data_message(gaussian_df) -> None:
    """The GEE covariate-column check is TrialData's (one function, one message)."""
    msg = r"covariate column 'nope' is not in `data`\."
    with pytest.raises(DataError, match=msg):
        fit_gee(_td(gaussian_df), covariates=["nope"])
    with pytest.raises(DataError, match=msg):
        _td(gaussian_df, covariates=["nope"])
