"""Cluster-robust (sandwich) variance of mixed models: ``sw.fit(..., vcov=...)``.

References (``tests/reference/sandwich_mixed/``, made by ``generate.R``; R is not needed here):
clubSandwich ``vcovCR`` (CR0/CR2/CR3) on ``lmer`` REML fits, and a hand computation in R from
lmer's fitted marginal covariance (KC with the principal root of ``I - H_ii``, MD, MBN).
"""

from __future__ import annotations

import json
import pathlib

import numpy as np
import pandas as pd
import pytest
from _tolerances import (
    BATCHED_MODES,
    CENTRAL_DIFF_QUAD_REL,
    DENSE_COV_REL,
    DENSE_REL,
    EXACT_REL,
    GLMM_CLUSTER_HESS_RTOL,
    GLMM_FD,
    GLMM_HESS_RTOL,
    GLMM_R_BETA_ATOL,
    GLMM_R_RTOL,
    GLMM_R_VC_REL,
    LMER_BETA_REL,
    LMER_VC_APPROX,
    MARGINAL_EST_REL,
    MARGINAL_SE_REL,
    QUADRATURE_REL,
    SANDWICH_REF_RTOL,
    SANDWICH_TWO_WAYS,
)

import steppedwedge as sw
from steppedwedge.exceptions import DataError, OptionError, SmallSampleWarning
from steppedwedge.inference.sandwich import ClusterPieces, sandwich_vcov

REF_DIR = pathlib.Path(__file__).parent / "reference" / "sandwich_mixed"
REF = json.loads((REF_DIR / "sandwich_mixed.json").read_text())
DATA = pd.read_csv(REF_DIR / "sw_lmm.csv")


CASES = {c["name"]: c for c in REF["cases"]}
KW = {
    "nested": dict(random="nested"),
    "cluster": dict(random="cluster"),
    "nested_age": dict(random="nested", covariates="age"),
    "nested_cohort": dict(random="nested", individual="individual"),
}
COHORT = pd.read_csv(REF_DIR.parent / "lmm" / "data" / "cohort.csv")


def _fit(case: str, **kw):
    return sw.fit(
        COHORT if case == "nested_cohort" else DATA,
        outcome="y",
        cluster="cluster",
        period="period",
        treatment="treatment",
        **KW[case],
        **kw,
    )


def _close(ours: np.ndarray, ref: np.ndarray, rtol: float) -> None:
    ref = np.asarray(ref, dtype=float)
    scale = np.max(np.abs(ref))
    assert np.max(np.abs(ours - ref)) <= rtol * scale
    np.testing.assert_allclose(np.diag(ours), np.diag(ref), rtol=10 * rtol)


# ---------------------------------------------------------------- R references


@pytest.mark.parametrize("case", list(CASES))
def test_reml_variance_components_match_lmer(case):
    res = _fit(case)
    for name, value in CASES[case]["variance_components"].items():
        assert res.variance_components[name] == pytest.approx(value, **LMER_VC_APPROX)
    np.testing.assert_allclose(res.params.to_numpy(), CASES[case]["beta"], rtol=LMER_BETA_REL)


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("kind", ["cr0", "cr2", "cr3"])
def test_lmm_matches_clubsandwich(case, kind):
    res = _fit(case, vcov=kind)
    _close(res.vcov_matrix.to_numpy(), CASES[case]["clubsandwich"][kind.upper()], SANDWICH_REF_RTOL)


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("kind", ["cr0", "kc", "md", "mbn"])
def test_lmm_matches_hand_computation_in_r(case, kind):
    res = _fit(case, vcov=kind)
    _close(res.vcov_matrix.to_numpy(), CASES[case]["hand"][kind], SANDWICH_REF_RTOL)
    _close(res.vcov_model.to_numpy(), CASES[case]["hand"]["model"], SANDWICH_REF_RTOL)


def test_md_equals_cr3_and_kc_differs_from_cr2():
    # Mancl-DeRouen's (I - H_ii)^-1 is CR3's adjustment (exact algebra); Kauermann-Carroll's
    # principal root is not clubSandwich's CR2 when the working covariance is not diagonal
    md, cr3 = _fit("nested", vcov="md"), _fit("nested", vcov="cr3")
    np.testing.assert_allclose(md.vcov_matrix, cr3.vcov_matrix, rtol=EXACT_REL)
    kc, cr2 = _fit("nested", vcov="kc"), _fit("nested", vcov="cr2")
    ratio = kc.std_error / cr2.std_error
    assert abs(ratio - 1) > 1e-4
    # the usual ordering of the corrections
    cr0 = _fit("nested", vcov="cr0")
    assert cr0.std_error < cr2.std_error < cr3.std_error


# ---------------------------------------------------------------- rows vs cells


def _dense_pieces(df: pd.DataFrame, vc: dict, x: np.ndarray) -> tuple:
    """Row-level GLS pieces from the fitted variance components (independent of the cells)."""
    cl = df["cluster"].to_numpy()
    per = df["period"].to_numpy()
    y = df["y"].to_numpy()
    blocks = []
    info = 0.0
    for g in np.unique(cl):
        idx = np.flatnonzero(cl == g)
        v = (
            vc["tau2"]
            + vc.get("gamma2", 0.0) * (per[idx][:, None] == per[idx][None, :])
            + vc["sigma2"] * np.eye(idx.size)
        )
        blocks.append((idx, v))
        info = info + x[idx].T @ np.linalg.solve(v, x[idx])
    bread = np.linalg.inv(info)
    beta = bread @ sum(x[i].T @ np.linalg.solve(v, y[i]) for i, v in blocks)
    return blocks, bread, y - x @ beta


def _design(df: pd.DataFrame, age: bool) -> np.ndarray:
    cols = [np.ones(len(df))] + [(df["period"] == j).astype(float) for j in range(2, 6)]
    cols.append(df["treatment"].to_numpy(dtype=float))
    if age:
        cols.append(df["age"].to_numpy())
    return np.column_stack(cols)


@pytest.mark.parametrize("case", ["nested", "nested_age"])
def test_cell_sandwich_equals_row_level(case):
    """The cell-statistics pieces reproduce dense row-level sandwiches (module derivation)."""
    res = _fit(case)
    x = _design(DATA, case == "nested_age")
    blocks, bread, e = _dense_pieces(DATA, res.variance_components, x)
    meats = {"cr0": 0.0, "cr2": 0.0, "md": 0.0}
    for idx, v in blocks:
        xi, ei, vinv = x[idx], e[idx], np.linalg.inv(v)
        n = idx.size
        h = xi @ bread @ xi.T @ vinv
        # clubSandwich CR2 with its Cholesky factor: A = U' [U (I - H) V U']^{-1/2} U
        u_chol = np.linalg.cholesky(v).T
        g = u_chol @ (np.eye(n) - h) @ v @ u_chol.T
        w, q = np.linalg.eigh(0.5 * (g + g.T))
        a = {
            "cr0": np.eye(n),
            "cr2": u_chol.T @ (q / np.sqrt(w)) @ q.T @ u_chol,
            "md": np.linalg.inv(np.eye(n) - h),
        }
        for k in meats:
            s = xi.T @ vinv @ a[k] @ ei
            meats[k] = meats[k] + np.outer(s, s)
    for k, meat in meats.items():
        ours = _fit(case, vcov=k).vcov_matrix.to_numpy()
        np.testing.assert_allclose(ours, bread @ meat @ bread, **SANDWICH_TWO_WAYS)


def test_mbn_against_published_formula():
    """MBN = c B M B + delta_m phi B (Morel, Bokossa & Neerchal 2003; SAS d = 2, r = 1)."""
    res = _fit("nested_age")
    x = _design(DATA, True)
    blocks, bread, e = _dense_pieces(DATA, res.variance_components, x)
    meat = sum(
        np.outer(x[i].T @ np.linalg.solve(v, e[i]), x[i].T @ np.linalg.solve(v, e[i]))
        for i, v in blocks
    )
    k, m, n = x.shape[1], len(blocks), x.shape[0]
    phi = max(1.0, np.trace(bread @ meat) / k)
    delta = min(0.5, k / (m - k))  # m = 12 <= 3k = 21: delta = 1/2
    assert delta == 0.5
    c = (n - 1) / (n - k) * m / (m - 1)
    expected = c * bread @ meat @ bread + delta * phi * bread
    ours = _fit("nested_age", vcov="mbn").vcov_matrix.to_numpy()
    np.testing.assert_allclose(ours, expected, **SANDWICH_TWO_WAYS)


def test_mbn_large_sample_delta():
    # m > (d + 1) k: delta_m = k / (m - k); one cluster of 2 rows each, k = 1 (intercept only)
    rng = np.random.default_rng(5)
    hess = np.ones((40, 1, 1)) * 2.0
    scores = rng.normal(size=(40, 1))
    scores -= scores.mean()
    pieces = ClusterPieces(scores=scores, hessians=hess, n_obs=80)
    bread = 1.0 / 80.0
    meat = float((scores**2).sum())
    phi = max(1.0, bread * meat)
    expected = (79 / 79) * 40 / 39 * bread * meat * bread + (1 / 39) * phi * bread
    assert sandwich_vcov(pieces, "mbn")[0, 0] == pytest.approx(expected, rel=EXACT_REL)


# ---------------------------------------------------------------- interface


def test_default_df_is_clusters_minus_two_and_overrides():
    res = _fit("nested", vcov="cr3")
    assert res.df == 12 - 2
    assert "I - p_c" in res.dof and "CR3" in res.dof
    assert _fit("nested", vcov="cr3", dof="normal").df == np.inf
    assert _fit("nested", vcov="cr3", dof=7).df == 7.0
    # a cluster-level covariate adds one cluster-level parameter: I - 3
    df = DATA.copy()
    df["council_kind"] = df["cluster"] % 3
    res = sw.fit(
        df,
        outcome="y",
        cluster="cluster",
        period="period",
        treatment="treatment",
        covariates="council_kind",
        vcov="md",
    )
    assert res.df == 12 - 3


def test_robust_outputs_side_by_side_and_model_unchanged():
    model = _fit("nested")
    assert list(model.tidy().columns)[-1] == "conf_high"
    assert model.std_error_model is None
    rob = _fit("nested", vcov="cr3")
    t = rob.tidy()
    assert list(t.columns)[-1] == "std_error_model"
    row = t[t["term"] == "treatment"].iloc[0]
    assert row["std_error"] == pytest.approx(rob.std_error)
    se_model = float(np.sqrt(rob.vcov_model.loc["treatment", "treatment"]))
    assert row["std_error_model"] == pytest.approx(se_model)
    assert rob.std_error_model == pytest.approx(se_model)
    text = str(rob.summary())
    assert "Model-based SE" in text and "robust SE" in text
    assert rob.estimate == model.estimate


def test_eti_tate_uses_robust_matrix():
    res = _fit("nested", vcov="cr3", effect="tate")
    c = res.contrast
    assert res.std_error == pytest.approx(float(np.sqrt(c @ res.vcov_matrix.to_numpy() @ c)))
    assert res.std_error_model == pytest.approx(float(np.sqrt(c @ res.vcov_model.to_numpy() @ c)))


def test_caller_frame_not_modified():
    before = DATA.copy()
    _fit("nested_age", vcov="cr2")
    pd.testing.assert_frame_equal(DATA, before)


def test_invalid_vcov_and_conflicting_dof():
    with pytest.raises(OptionError, match="'cr3'.*'mbn'"):
        _fit("nested", vcov="sandwich")
    with pytest.raises(OptionError, match="dof"):
        _fit("nested", vcov="cr3", dof="kenward-roger")


def test_too_few_clusters_raise():
    df = DATA[DATA["cluster"].isin([1, 4])]
    with pytest.warns(SmallSampleWarning), pytest.raises(DataError, match="more clusters"):
        sw.fit(
            df, outcome="y", cluster="cluster", period="period", treatment="treatment", vcov="md"
        )


def test_leverage_one_cluster_raises_naming_it():
    # a covariate that is non-zero in cluster 5 only is determined by that cluster alone
    df = DATA.copy()
    df["only5"] = (df["cluster"] == 5).astype(float) * df["age"]
    with pytest.raises(DataError, match="Cluster 5 has leverage 1"):
        sw.fit(
            df,
            outcome="y",
            cluster="cluster",
            period="period",
            treatment="treatment",
            covariates="only5",
            vcov="cr3",
        )


# ---------------------------------------------------------------- GLMM (Laplace)


def _poisson_frame(seed: int = 11, n_clusters: int = 12) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n_clusters):
        a = rng.normal(0, 0.3)
        for j in range(6):
            x = int(j > i % 5)
            mu = 20_000 * 1e-3 * np.exp(a + rng.normal(0, 0.15) - 0.2 * x)
            rows.append((i, j, x, 20_000, rng.poisson(mu)))
    return pd.DataFrame(rows, columns=["la", "q", "arm", "pop", "y"])


def _glmm(df, family="poisson", **kw):
    extra = dict(exposure="pop") if family != "binomial" else dict(trials="n")
    return sw.fit(
        df, outcome="y", cluster="la", period="q", treatment="arm", family=family, **extra, **kw
    )


@pytest.fixture(scope="module")
def captured():
    """A CR0 Poisson fit, and the (units, family, fit, pieces) of a CR3 fit of the same data."""
    import steppedwedge.models.glmm as glmm_mod

    seen = {}
    real = glmm_mod.laplace_cluster_pieces

    def spy(ud, fam, core, **kw):
        seen.update(ud=ud, fam=fam, core=core)
        out = real(ud, fam, core, **kw)
        seen["pieces"] = out
        return out

    df = _poisson_frame()
    glmm_mod.laplace_cluster_pieces = spy
    try:
        _glmm(df, vcov="cr3")  # a leverage correction: the pieces carry the Hessians
    finally:
        glmm_mod.laplace_cluster_pieces = real
    return _glmm(df, vcov="cr0"), seen, df


def _theta(core, fam):
    return np.concatenate([core.beta, core.sigma, [core.alpha] if fam.has_dispersion else []])


def test_glmm_cr0_against_differenced_cluster_values(captured):
    from steppedwedge._core.laplace import modes

    res, seen, _ = captured
    ud, fam, core = seen["ud"], seen["fam"], seen["core"]
    p, k = ud.x.shape[2], ud.n_comp
    theta = _theta(core, fam)
    free = np.flatnonzero(core.free)

    def values(th):
        return modes(ud, fam, th[:p], th[p : p + k], 0.0, core.v).per_cluster

    scores = np.zeros((ud.x.shape[0], free.size))
    for c, j in enumerate(free):
        h = 1e-5 * max(1.0, abs(theta[j]))
        tp, tm = theta.copy(), theta.copy()
        tp[j] += h
        tm[j] -= h
        scores[:, c] = (values(tp) - values(tm)) / (2 * h)
    hf = core.hessian[np.ix_(free, free)]
    bread = np.linalg.inv(hf)
    expected = (bread @ scores.T @ scores @ bread)[:p, :p]
    np.testing.assert_allclose(res.vcov_matrix.to_numpy(), expected, **GLMM_FD)
    np.testing.assert_allclose(res.vcov_model.to_numpy(), bread[:p, :p], rtol=EXACT_REL)
    # per-cluster fixed-effect Hessians add up to the fit's Hessian
    hsum = seen["pieces"].hessians.sum(axis=0)[:p, :p]
    assert np.max(np.abs(hsum - hf[:p, :p])) <= GLMM_HESS_RTOL * np.max(np.abs(hf[:p, :p]))


@pytest.mark.parametrize("random", ["nested", "nested+decay"])
def test_glmm_cluster_beta_hessians_against_central_differences(random):
    """Each cluster's closed-form beta Hessian = -d u_i / d beta by central differences."""
    import steppedwedge.models.glmm as glmm_mod
    from steppedwedge._core.laplace import cluster_beta_hessians, modes
    from steppedwedge.inference.sandwich import _laplace_cluster_grads

    seen = {}
    real = glmm_mod.laplace_cluster_pieces

    def spy(ud, fam, core, **kw):
        seen.update(ud=ud, fam=fam, core=core)
        return real(ud, fam, core, **kw)

    glmm_mod.laplace_cluster_pieces = spy
    try:
        if random == "nested":
            _glmm(_poisson_frame(seed=5), vcov="cr2", random=random)
        else:  # the count audit: 17 councils x 20 quarters, decaying council-quarter effects
            from calibration_counts import ROLES, council_scenario

            d = council_scenario(17).draw(0.0, 104)
            sw.fit(d, **ROLES, family="poisson", random=random, vcov="cr2")
    finally:
        glmm_mod.laplace_cluster_pieces = real
    ud, fam, core = seen["ud"], seen["fam"], seen["core"]
    p, k = ud.x.shape[2], ud.n_var
    theta = _theta(core, fam)
    closed = cluster_beta_hessians(ud, fam, modes(ud, fam, core.beta, core.sigma, 0.0, core.v))
    diff = np.zeros_like(closed)
    h = 1e-4
    for j in range(p):
        tp, tm = theta.copy(), theta.copy()
        tp[j] += h
        tm[j] -= h
        gp = _laplace_cluster_grads(ud, fam, tp[None], p, k, core.v)[0][:, :p]
        gm = _laplace_cluster_grads(ud, fam, tm[None], p, k, core.v)[0][:, :p]
        diff[:, :, j] = -(gp - gm) / (2 * h)
    scale = np.max(np.abs(closed))
    assert np.max(np.abs(closed - diff)) <= GLMM_CLUSTER_HESS_RTOL * scale


def test_glmm_batched_pieces_equal_one_at_a_time(captured):
    from steppedwedge.inference.sandwich import _laplace_cluster_grads

    _, seen, _ = captured
    ud, fam, core = seen["ud"], seen["fam"], seen["core"]
    p, k = ud.x.shape[2], ud.n_comp
    theta = _theta(core, fam)
    thetas = np.repeat(theta[None], 3, axis=0)
    thetas[1, 0] += 1e-3
    thetas[2, p - 1] -= 2e-3
    batched = _laplace_cluster_grads(ud, fam, thetas, p, k, core.v)
    for r in range(3):
        single = _laplace_cluster_grads(ud, fam, thetas[r : r + 1], p, k, core.v)[0]
        np.testing.assert_allclose(batched[r], single, **BATCHED_MODES)


def test_glmm_leverage_corrections_from_pieces(captured):
    """MD and KC in the unwhitened form (I - Q_i)^{-a} u_i, Q_i = H_i H^{-1} (scipy roots)."""
    from scipy.linalg import fractional_matrix_power

    _, seen, df = captured
    pieces, core = seen["pieces"], seen["core"]
    free = np.flatnonzero(core.free)
    hf = core.hessian[np.ix_(free, free)]
    bread = np.linalg.inv(hf)
    p = seen["ud"].x.shape[2]
    for kind, power in (("md", -1.0), ("kc", -0.5)):
        meat = 0.0
        for u, h_i in zip(pieces.scores, pieces.hessians, strict=True):
            a = np.real(fractional_matrix_power(np.eye(free.size) - h_i @ bread, power))
            meat = meat + np.outer(a @ u, a @ u)
        expected = (bread @ meat @ bread)[:p, :p]
        ours = _glmm(df, vcov=kind).vcov_matrix.to_numpy()
        np.testing.assert_allclose(ours, expected, rtol=DENSE_COV_REL)
    # MBN from the same pieces over the free parameters (k = P)
    m, k_par = pieces.scores.shape
    meat = pieces.scores.T @ pieces.scores
    phi = max(1.0, np.trace(bread @ meat) / k_par)
    delta = k_par / (m - k_par) if m > 3 * k_par else 0.5
    c = (pieces.n_obs - 1) / (pieces.n_obs - k_par) * m / (m - 1)
    expected = (c * bread @ meat @ bread + delta * phi * bread)[:p, :p]
    np.testing.assert_allclose(
        _glmm(df, vcov="mbn").vcov_matrix.to_numpy(), expected, rtol=DENSE_REL
    )


def test_glmm_robust_interface(captured):
    res, _, df = captured
    model = _glmm(df)
    assert res.estimate == model.estimate
    assert res.std_error_model == pytest.approx(model.std_error, rel=EXACT_REL)
    assert res.df == 12 - 2 and "CR0" in res.dof
    t = res.tidy(exponentiate=True)
    assert list(t.columns)[-1] == "std_error_model"
    assert "cluster-robust" in str(res.summary())
    assert _glmm(df, vcov="md", dof="normal").df == np.inf
    with pytest.raises(OptionError, match="Laplace"):
        _glmm(df, vcov="md", method="agq", random="cluster")
    with pytest.raises(OptionError, match="'mbn'"):
        _glmm(df, vcov="hc3")


@pytest.mark.parametrize("family", ["negative_binomial", "binomial"])
def test_glmm_robust_other_families(family):
    df = _poisson_frame(seed=3)
    if family == "binomial":
        df = df.assign(n=200, y=np.minimum(df["y"], 200))
    res = _glmm(df, family=family, random="cluster", vcov="cr3")
    model = _glmm(df, family=family, random="cluster")
    assert res.std_error_model == pytest.approx(model.std_error, rel=EXACT_REL)
    assert np.isfinite(res.std_error) and res.std_error > 0
    assert res.df == 10


# ---------------------------------------------------------------- calibration (slow)

#: Band for a Monte-Carlo rejection rate: nominal 5% +- 3 Monte-Carlo SEs
#: (sqrt(0.05 * 0.95 / n)); with a fixed seed the check is deterministic, and 3 SEs is the
#: band within which a correctly sized test lands with probability 0.997.
MC_BAND_K = 3.0
N_CLUSTERS, N_PERIODS = 15, 6
_START = np.repeat(np.arange(1, 6), 3)  # 5 sequences x 3 clusters
_TRT = (np.arange(N_PERIODS)[None, :] >= _START[:, None]).astype(float)


def _ar1_effects(rng, var: float, r: float) -> np.ndarray:
    """Cluster-period effects with correlation r^|lag| (the misspecified truth)."""
    e = np.zeros((N_CLUSTERS, N_PERIODS))
    e[:, 0] = rng.normal(0, np.sqrt(var), N_CLUSTERS)
    for j in range(1, N_PERIODS):
        e[:, j] = r * e[:, j - 1] + rng.normal(0, np.sqrt(var * (1 - r * r)), N_CLUSTERS)
    return e


def _null_rate(make, n_reps: int, seed: int, **kw) -> tuple[float, float]:
    """Rejection rates at 5% of CR3 with t(I - 2) and of the model-based SE with t(I - 2)."""
    from scipy import stats

    rng = np.random.default_rng(seed)
    rob, mod = [], []
    for _ in range(n_reps):
        res = sw.fit(
            make(rng),
            outcome="y",
            cluster="c",
            period="p",
            treatment="t",
            random="nested",
            vcov="cr3",
            **kw,
        )
        rob.append(res.pvalue < 0.05)
        t_model = res.estimate / res.std_error_model
        mod.append(2 * stats.t.sf(abs(t_model), res.df) < 0.05)
    return float(np.mean(rob)), float(np.mean(mod))


def _assert_nominal(rate: float, n_reps: int) -> None:
    se = np.sqrt(0.05 * 0.95 / n_reps)
    assert abs(rate - 0.05) <= MC_BAND_K * se, (rate, se)


@pytest.mark.slow
def test_calibration_lmm_cr3_under_decay():
    """Gaussian: AR(1) cluster-period effects (var 0.4, r 0.8), nested working model."""

    def make(rng):
        cp = _ar1_effects(rng, 0.4, 0.8) + 0.1 * np.arange(N_PERIODS)
        m = 10
        cell = np.repeat(np.arange(N_CLUSTERS * N_PERIODS), m)
        y = np.repeat(cp.ravel(), m) + rng.normal(0, 1, cell.size)
        return pd.DataFrame(
            {"c": cell // N_PERIODS, "p": cell % N_PERIODS, "t": np.repeat(_TRT.ravel(), m), "y": y}
        )

    n = 240
    rate, _ = _null_rate(make, n, seed=2024)
    _assert_nominal(rate, n)


@pytest.mark.slow
def test_calibration_poisson_cr3_under_decay():
    """Poisson: log-normal AR(1) cluster-period effects (var 0.1, r 0.8), nested working GLMM."""

    def make(rng):
        mu = 50.0 * np.exp(_ar1_effects(rng, 0.1, 0.8))
        return pd.DataFrame(
            {
                "c": np.repeat(np.arange(N_CLUSTERS), N_PERIODS),
                "p": np.tile(np.arange(N_PERIODS), N_CLUSTERS),
                "t": _TRT.ravel(),
                "pop": 50_000,
                "y": rng.poisson(mu).ravel(),
            }
        )

    n = 400
    rate, _ = _null_rate(make, n, seed=2025, family="poisson", exposure="pop")
    _assert_nominal(rate, n)


# ---------------------------------------------------------------- marginal ratio (g-computation)


def _capture_marginal(df, **kw):
    import steppedwedge.models.glmm as glmm_mod

    seen = {}
    real = glmm_mod.marginal_ratio

    def spy(*args, **kwargs):
        seen["args"] = args
        seen["out"] = real(*args, **kwargs)
        return seen["out"]

    glmm_mod.marginal_ratio = spy
    try:
        res = _glmm(df, **kw)
    finally:
        glmm_mod.marginal_ratio = real
    return res, seen


def _marginal_row(res):
    t = res.tidy()
    return t[t["term"] == "marginal[treatment]"].iloc[0]


def test_marginal_rate_ratio_log_link_equals_conditional():
    # log link, treatment outside the random part: exp(s^2/2) cancels, so the marginal rate
    # ratio is exp(beta_t) and its influence is the CR0 influence of beta_t (exact algebra)
    df = _poisson_frame()
    res = _glmm(df, vcov="cr0")
    row = _marginal_row(res)
    assert row["estimate"] == pytest.approx(res.estimate, rel=MARGINAL_EST_REL)
    assert row["std_error"] == pytest.approx(res.std_error, rel=MARGINAL_SE_REL)
    assert row["df"] == res.df
    assert "different estimand" in str(res.summary())
    # not reported with the model-based variance
    assert "marginal[treatment]" not in set(_glmm(df).tidy()["term"])
    # with a leverage correction its SE is the corrected SE of beta_t (same algebra)
    md = _glmm(df, vcov="md")
    assert _marginal_row(md)["std_error"] == pytest.approx(md.std_error, rel=MARGINAL_SE_REL)


def test_marginal_rate_ratio_with_random_slope():
    # with a random treatment effect eta2: log RR_marginal = beta_t + eta2 / 2
    df = _poisson_frame(seed=4)
    res = _glmm(df, vcov="cr3", random="random-slope")
    eta2 = res.variance_components["eta2"]
    assert _marginal_row(res)["estimate"] == pytest.approx(
        res.estimate + eta2 / 2, rel=MARGINAL_EST_REL
    )


def test_marginal_odds_ratio_against_quadrature():
    """Logit: m(a) by scipy quad over each cell's random part; SE from independent pieces."""
    from scipy import integrate, special

    df = _poisson_frame(seed=8).assign(n=200)
    df["y"] = np.minimum(df["y"] // 2, 200)
    res, seen = _capture_marginal(df, family="binomial", random="nested", vcov="md")
    data, fam, core, pieces, hf, t_col, _, kind = seen["args"]
    assert kind == "md"
    p = data.x.shape[2]
    real = data.weight > 0

    def m_of(theta, a):
        beta, sd = theta[:p], np.abs(theta[p : p + data.n_comp])
        tot = 0.0
        w = 0.0
        per_cluster = np.zeros(data.x.shape[0])
        for i, u in zip(*np.nonzero(real), strict=True):
            x = data.x[i, u].copy()
            x[t_col] = a
            eta = x @ beta + data.offset[i, u]
            s = np.sqrt(((data.z[i, u] * sd[data.comp]) ** 2).sum())
            f = integrate.quad(
                lambda v, e=eta, sd_u=s: (
                    special.expit(e + sd_u * v) * np.exp(-v * v / 2) / np.sqrt(2 * np.pi)
                ),
                -12,
                12,
                epsabs=1e-13,
            )[0]
            tot += data.n[i, u] * f
            per_cluster[i] += data.n[i, u] * f
            w += data.n[i, u]
        return tot / w, per_cluster, w

    theta = np.concatenate([core.beta, core.sigma])
    (m0, c0, w), (m1, c1, _) = m_of(theta, 0.0), m_of(theta, 1.0)
    log_or = special.logit(m1) - special.logit(m0)
    row = _marginal_row(res)
    assert row["estimate"] == pytest.approx(log_or, rel=QUADRATURE_REL)
    assert abs(row["estimate"]) < abs(res.estimate)  # attenuated towards 1, as marginal ORs are
    # influence: design part + parameter part, gradient by differencing the quad functional
    free = np.flatnonzero(core.free)
    grad = np.zeros(free.size)
    for c, j in enumerate(free):
        h = 1e-5 * max(1.0, abs(theta[j]))
        tp, tm = theta.copy(), theta.copy()
        tp[j] += h
        tm[j] -= h
        fp = special.logit(m_of(tp, 1.0)[0]) - special.logit(m_of(tp, 0.0)[0])
        fm = special.logit(m_of(tm, 1.0)[0]) - special.logit(m_of(tm, 0.0)[0])
        grad[c] = (fp - fm) / (2 * h)
    w_i = np.where(real, data.n, 0.0).sum(axis=1)
    psi = (c1 - m1 * w_i) / (w * m1 * (1 - m1)) - (c0 - m0 * w_i) / (w * m0 * (1 - m0))
    # MD: the parameter part uses (I - Q_i)^{-1} u_i, Q_i = H_i H^{-1}
    bread = np.linalg.inv(hf)
    eye = np.eye(free.size)
    pairs = zip(pieces.scores, pieces.hessians, strict=True)
    u_md = np.array([np.linalg.solve(eye - h_i @ bread, u) for u, h_i in pairs])
    tau = psi + u_md @ np.linalg.solve(hf, grad)
    assert row["std_error"] == pytest.approx(float(np.sqrt(tau @ tau)), rel=CENTRAL_DIFF_QUAD_REL)


# ---------------------------------------------------------------- GLMM against R

GLMM_REF = json.loads((REF_DIR / "sandwich_glmm.json").read_text())
GLMM_DATA = pd.read_csv(REF_DIR / "sw_glmm.csv")


@pytest.mark.parametrize("case", GLMM_REF["cases"], ids=lambda c: c["family"])
@pytest.mark.parametrize("kind", ["cr0", "md"])
def test_glmm_sandwich_matches_r(case, kind):
    if case["family"] == "poisson":
        kw = dict(family="poisson", outcome="y", exposure="pop")
    else:
        kw = dict(family="binomial", outcome="events", trials="n")
    res = sw.fit(
        GLMM_DATA,
        cluster="cluster",
        period="period",
        treatment="treatment",
        random="cluster",
        vcov=kind,
        **kw,
    )
    np.testing.assert_allclose(res.params.to_numpy(), case["beta"], rtol=0, atol=GLMM_R_BETA_ATOL)
    assert res.variance_components["tau2"] == pytest.approx(case["sigma2"], rel=GLMM_R_VC_REL)
    _close(res.vcov_model.to_numpy(), case["vcov_model"], GLMM_R_RTOL)
    _close(res.vcov_matrix.to_numpy(), case[kind], GLMM_R_RTOL)


@pytest.mark.slow
def test_calibration_marginal_odds_ratio_cr3():
    """Logit GLMM, AR(1) cluster-period effects: the marginal-OR test (CR3 scores) holds size."""
    from scipy import special

    rng = np.random.default_rng(99)
    n_reps = 300
    rejected = []
    for _ in range(n_reps):
        lp = -1.0 + _ar1_effects(rng, 0.3, 0.8) + rng.normal(0, 0.4, (N_CLUSTERS, 1))
        y = rng.binomial(60, special.expit(lp))
        df = pd.DataFrame(
            {
                "c": np.repeat(np.arange(N_CLUSTERS), N_PERIODS),
                "p": np.tile(np.arange(N_PERIODS), N_CLUSTERS),
                "t": _TRT.ravel(),
                "n": 60,
                "y": y.ravel(),
            }
        )
        res = sw.fit(
            df,
            outcome="y",
            trials="n",
            cluster="c",
            period="p",
            treatment="t",
            family="binomial",
            vcov="cr3",
        )
        rejected.append(_marginal_row(res)["p_value"] < 0.05)
    _assert_nominal(float(np.mean(rejected)), n_reps)


@pytest.mark.parametrize("kind", ["cr2", "cr3", "md", "kc"])
def test_a_non_finite_hessian_gives_nan_not_an_error(kind: str) -> None:
    """A non-converged fit's Hessian with a NaN: NaN corrected scores and covariance (the
    caller reports SEs as unavailable), never a bare error from the triangular solve."""
    from steppedwedge.inference.sandwich import ClusterPieces, corrected_scores, sandwich_vcov

    rng = np.random.default_rng(0)
    x, e = rng.normal(size=(6, 4, 2)), rng.normal(size=(6, 4))
    pieces = ClusterPieces(
        scores=np.einsum("itp,it->ip", x, e), hessians=np.einsum("itp,itq->ipq", x, x), n_obs=24
    )
    h = pieces.hessians.sum(axis=0)
    h[1, 1] = np.nan
    assert np.isnan(corrected_scores(pieces, kind, h)).all()
    assert np.isnan(sandwich_vcov(pieces, kind, hessian=h)).all()
