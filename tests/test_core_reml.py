"""The REML/ML engine on cell sufficient statistics against dense individual-level algebra.

Independent references: the Gaussian log-likelihood written out with the full
``N x N`` covariance matrix (numpy), finite differences, and statsmodels ``MixedLM``.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from _tolerances import (
    CENTRAL_DIFF_ATOL,
    CENTRAL_DIFF_GRADIENT,
    CENTRAL_DIFF_HESS_FLOOR,
    CENTRAL_DIFF_REL,
    CLOSED_FORM_REL,
    DENSE_COV_REL,
    DENSE_REL,
    EXACT_REL,
    LINALG,
    LINALG_REL,
    ZERO_ATOL_1E12,
    ZERO_ATOL_1E13,
    ZERO_ATOL_1E14,
)

from steppedwedge._core.reml import (
    CellData,
    CovarianceStructure,
    fit_lmm,
    loglik_at,
    profiled_deviance,
    reml_gradient_natural,
    variance_derivatives,
)

STRUCTURES = {
    "cluster": CovarianceStructure(intercept=True, cluster_period=False),
    "nested": CovarianceStructure(intercept=True, cluster_period=True),
    "decay": CovarianceStructure(intercept=False, cluster_period=True, decay=True),
    "nested+decay": CovarianceStructure(intercept=True, cluster_period=True, decay=True),
    "slope": CovarianceStructure(intercept=True, cluster_period=False, slope="independent"),
    "slope-corr": CovarianceStructure(intercept=True, cluster_period=True, slope="correlated"),
}
TRUE = {
    "cluster": [0.3],
    "nested": [0.3, 0.1],
    "decay": [0.4, 0.7],
    "nested+decay": [0.2, 0.3, 0.6],
    "slope": [0.3, 0.2],
    "slope-corr": [0.3, 0.05, 0.2, 0.1],
}


def _simulate(
    rng: np.random.Generator,
    *,
    n_clusters: int = 8,
    n_periods: int = 5,
    covariate: bool = False,
    incomplete: bool = False,
):
    """Individual rows of a stepped wedge with random cell sizes (dense reference data)."""
    start = np.arange(n_clusters) % (n_periods - 1) + 1
    trt = (np.arange(n_periods)[None, :] >= start[:, None]).astype(float)
    trt[0, -1] = 0.5  # a fractional cell
    rows = []
    for i in range(n_clusters):
        a = rng.normal(0, 0.5)
        s = rng.normal(0, 0.4)
        for j in range(n_periods):
            if incomplete and (i + j) % 7 == 3:
                continue
            c = rng.normal(0, 0.3)
            m = int(rng.integers(2, 7))
            for _ in range(m):
                x1 = rng.normal()
                y = 0.2 * j + (0.5 + s) * trt[i, j] + a + c + 0.3 * x1 + rng.normal()
                rows.append((i, j, trt[i, j], x1, y))
    arr = np.array(rows)
    ci = arr[:, 0].astype(int)
    pi = arr[:, 1].astype(int)
    cols = (
        [np.ones(len(arr))] + [(pi == j).astype(float) for j in range(1, n_periods)] + [arr[:, 2]]
    )
    if covariate:
        cols.append(arr[:, 3])
    x = np.column_stack(cols)
    y = arr[:, 4]
    cells = CellData.from_individual(
        ci, pi, x, y, n_clusters=n_clusters, n_periods=n_periods, treatment=trt
    )
    return cells, ci, pi, x, y, trt


def _dense_cov(structure: CovarianceStructure, natural, sigma2, ci, pi, trt, times):
    """Individual-level V = Z G Z' + sigma2 I written out element by element."""
    nat = dict(zip(structure.natural_names, natural, strict=True))
    t_i = trt[ci, pi]
    same_c = ci[:, None] == ci[None, :]
    v = np.zeros((len(ci), len(ci)))
    if structure.intercept:
        v += nat["tau2"] * same_c
    if structure.slope != "none":
        v += nat["eta2"] * same_c * np.outer(t_i, t_i)
    if structure.slope == "correlated":
        v += nat["cov_te"] * same_c * (t_i[:, None] + t_i[None, :])
    if structure.cluster_period:
        lag = np.abs(times[pi][:, None] - times[pi][None, :])
        r = nat["decay"] ** lag if structure.decay else (lag == 0).astype(float)
        v += nat["gamma2"] * same_c * r
    v += sigma2 * np.eye(len(ci))
    return v


def _dense_loglik(v, x, y, reml):
    n, p = x.shape
    vi = np.linalg.inv(v)
    m = x.T @ vi @ x
    b = np.linalg.solve(m, x.T @ vi @ y)
    r = y - x @ b
    out = n * np.log(2 * np.pi) + np.linalg.slogdet(v)[1] + r @ vi @ r
    if reml:
        out += np.linalg.slogdet(m)[1] - p * np.log(2 * np.pi)
    return -0.5 * out, b, np.linalg.inv(m)


@pytest.mark.parametrize("name", list(STRUCTURES))
@pytest.mark.parametrize("reml", [True, False])
@pytest.mark.parametrize("covariate,incomplete", [(False, False), (True, True)])
def test_loglik_equals_dense_individual_likelihood(rng, name, reml, covariate, incomplete):
    cells, ci, pi, x, y, trt = _simulate(rng, covariate=covariate, incomplete=incomplete)
    st = STRUCTURES[name]
    nat = np.array(TRUE[name])
    v = _dense_cov(st, nat, 0.9, ci, pi, trt, cells.times)
    ll, _, _ = _dense_loglik(v, x, y, reml)
    assert loglik_at(nat, 0.9, cells, st, reml=reml) == pytest.approx(ll, rel=LINALG["rtol"])


@pytest.mark.parametrize("name", list(STRUCTURES))
def test_fit_matches_dense_gls_and_is_stationary(rng, name):
    cells, ci, pi, x, y, trt = _simulate(rng, n_clusters=10, covariate=True)
    st = STRUCTURES[name]
    fit = fit_lmm(cells, st)
    v = _dense_cov(st, fit.natural, fit.sigma2, ci, pi, trt, cells.times)
    ll, b, cov = _dense_loglik(v, x, y, True)
    np.testing.assert_allclose(fit.beta, b, rtol=DENSE_REL, atol=ZERO_ATOL_1E12)
    np.testing.assert_allclose(fit.cov_beta, cov, rtol=DENSE_COV_REL, atol=ZERO_ATOL_1E14)
    assert fit.loglik == pytest.approx(ll, rel=LINALG["rtol"])
    # stationarity (KKT) in the natural parameters
    g = reml_gradient_natural(fit.natural, fit.sigma2, cells, st)
    free = [k for k, nm in enumerate(st.natural_names) if nm not in fit.at_bound]
    scale = np.abs(np.r_[fit.natural, fit.sigma2]) + 1e-3
    assert np.all(np.abs(g[free] * scale[free]) < 1e-4)
    assert np.abs(g[-1] * fit.sigma2) < 1e-4
    for k, nm in enumerate(st.natural_names):
        if nm in fit.at_bound and nm in ("tau2", "gamma2", "eta2"):
            assert g[k] >= -1e-6  # the deviance increases into the interior


@pytest.mark.parametrize("name", list(STRUCTURES))
@pytest.mark.parametrize("reml", [True, False])
def test_profiled_gradient_matches_finite_differences(rng, name, reml):
    cells, *_ = _simulate(rng, covariate=True)
    st = STRUCTURES[name]
    phi = st.natural_to_phi(np.array(TRUE[name]), 1.0)
    f0, g, _ = profiled_deviance(phi, cells, st, reml)
    h = 1e-6
    fd = []
    for k in range(phi.size):
        e = np.zeros_like(phi)
        e[k] = h
        fd.append(
            (
                profiled_deviance(phi + e, cells, st, reml)[0]
                - profiled_deviance(phi - e, cells, st, reml)[0]
            )
            / (2 * h)
        )
    np.testing.assert_allclose(g, fd, **CENTRAL_DIFF_GRADIENT)


@pytest.mark.parametrize("name", ["nested", "slope-corr", "nested+decay"])
def test_variance_derivatives_equal_dense_matrices(rng, name):
    cells, ci, pi, x, y, trt = _simulate(rng, covariate=True, incomplete=True)
    st = STRUCTURES[name]
    nat = np.array(TRUE[name])
    sigma2 = 0.8
    d = variance_derivatives(nat, sigma2, cells, st)
    v = _dense_cov(st, nat, sigma2, ci, pi, trt, cells.times)
    vi = np.linalg.inv(v)
    # dense dV/dparameter by finite differences of the dense V (linear except decay)
    dvs = []
    full = np.r_[nat, sigma2]
    for k in range(full.size):
        e = np.zeros_like(full)
        h = 1e-6
        e[k] = h
        vp = _dense_cov(st, (full + e)[:-1], (full + e)[-1], ci, pi, trt, cells.times)
        vm = _dense_cov(st, (full - e)[:-1], (full - e)[-1], ci, pi, trt, cells.times)
        dvs.append((vp - vm) / (2 * h))
    phi = np.linalg.inv(x.T @ vi @ x)
    np.testing.assert_allclose(d.phi, phi, rtol=DENSE_REL)
    for r, dv in enumerate(dvs):
        np.testing.assert_allclose(
            d.xgx[r], x.T @ vi @ dv @ vi @ x, rtol=CENTRAL_DIFF_REL, atol=CENTRAL_DIFF_ATOL
        )
        assert d.trace[r] == pytest.approx(np.trace(vi @ dv), rel=CENTRAL_DIFF_REL)
        for s, dv2 in enumerate(dvs):
            assert d.ktrace[r, s] == pytest.approx(
                np.trace(vi @ dv @ vi @ dv2), rel=CENTRAL_DIFF_REL
            )
            np.testing.assert_allclose(
                d.q[r, s],
                x.T @ vi @ dv @ vi @ dv2 @ vi @ x,
                rtol=CENTRAL_DIFF_REL,
                atol=CENTRAL_DIFF_ATOL,
            )


def test_against_statsmodels_mixedlm(rng):
    pd = pytest.importorskip("pandas")
    smf = pytest.importorskip("statsmodels.formula.api")
    cells, ci, pi, x, y, trt = _simulate(rng, n_clusters=10)
    df = pd.DataFrame({"cluster": ci, "period": pi, "trt": x[:, -1], "y": y})
    st = STRUCTURES["nested"]
    for reml in (True, False):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            md = smf.mixedlm(
                "y ~ C(period) + trt",
                df,
                groups="cluster",
                re_formula="1",
                vc_formula={"cp": "0 + C(period)"},
            )
            res = md.fit(reml=reml)
        nat = np.array([float(res.cov_re.iloc[0, 0]), float(res.vcomp[0])])
        ours_at_theirs = loglik_at(nat, float(res.scale), cells, st, reml=reml)
        assert ours_at_theirs == pytest.approx(res.llf, rel=CLOSED_FORM_REL, abs=0)
        fit = fit_lmm(cells, st, reml=reml)
        assert fit.loglik >= res.llf - 1e-8


def test_equal_groups_share_blocks_exactly(rng):
    """Fitting with duplicated clusters (pattern grouping) equals the per-cluster algebra."""
    cells, ci, pi, x, y, trt = _simulate(rng, n_clusters=8)
    st = STRUCTURES["nested"]
    nat = np.array(TRUE["nested"])
    phi = st.natural_to_phi(nat, 0.7)
    f_grouped = profiled_deviance(phi, cells, st)[0]
    # -2 loglik at sigma2-profiled optimum equals loglik_at with sigma2 hat
    extras = profiled_deviance(phi, cells, st)[2]
    s2 = float(extras["sigma2"])
    assert -0.5 * f_grouped == pytest.approx(
        loglik_at(st.phi_to_natural(phi, s2), s2, cells, st), rel=LINALG["rtol"]
    )


@pytest.mark.parametrize("name", ["nested", "decay", "slope-corr"])
@pytest.mark.parametrize("reml", [True, False])
def test_cohort_engine_equals_dense_likelihood(rng, name, reml):
    """Individual random intercept (unbalanced cohort): per-cluster engine vs dense algebra."""
    from steppedwedge._core.reml_dense import RowData, loglik_rows, profiled_deviance_rows

    cells, ci, pi, x, y, trt = _simulate(rng, covariate=True)
    ind = np.zeros(len(ci), dtype=int)
    for i in np.unique(ci):  # individuals re-used across periods within a cluster, some missing
        sel = np.flatnonzero(ci == i)
        ind[sel] = 1000 * i + rng.integers(0, 4, sel.size)
    rows = RowData.from_arrays(
        ci, pi, ind, x, y, n_clusters=cells.n.shape[0], n_periods=cells.n.shape[1], treatment=trt
    )
    st = STRUCTURES[name]
    nat = np.array(TRUE[name])
    v = _dense_cov(st, nat, 0.9, ci, pi, trt, cells.times) + 0.4 * (ind[:, None] == ind[None, :])
    ll, _, _ = _dense_loglik(v, x, y, reml)
    assert loglik_rows(np.r_[nat, 0.4], 0.9, rows, st, reml=reml) == pytest.approx(
        ll, rel=LINALG["rtol"]
    )
    phi = np.r_[st.natural_to_phi(nat, 1.0), 0.4]
    _, g, _ = profiled_deviance_rows(phi, rows, st, reml)
    h = 1e-6
    for k in range(phi.size):
        e = np.zeros_like(phi)
        e[k] = h
        fd = (
            profiled_deviance_rows(phi + e, rows, st, reml)[0]
            - profiled_deviance_rows(phi - e, rows, st, reml)[0]
        ) / (2 * h)
        assert g[k] == pytest.approx(
            fd, rel=CENTRAL_DIFF_GRADIENT["rtol"], abs=CENTRAL_DIFF_GRADIENT["atol"]
        )


@pytest.mark.parametrize("name", ["cluster", "nested"])
@pytest.mark.parametrize("reml", [True, False])
@pytest.mark.parametrize("incomplete", [False, True])
def test_closed_form_path_equals_general_path(rng, name, reml, incomplete):
    """Sherman-Morrison deviance/gradient (cluster, nested) equal the batched-LAPACK path."""
    cells, *_ = _simulate(rng, n_clusters=9, covariate=True, incomplete=incomplete)
    st = STRUCTURES[name]
    for _ in range(4):
        phi = rng.uniform(0.0, 2.0, st.n_phi)
        f1, g1, e1 = profiled_deviance(phi, cells, st, reml)
        f2, g2, e2 = profiled_deviance(phi, cells, st, reml, closed_form=False)
        assert f1 == pytest.approx(f2, rel=EXACT_REL)
        np.testing.assert_allclose(g1, g2, rtol=LINALG_REL, atol=EXACT_REL * abs(f2))
        np.testing.assert_allclose(e1["beta"], e2["beta"], rtol=LINALG_REL, atol=ZERO_ATOL_1E12)
    # the whole fit: the closed-form fit is stationary for the general gradient
    fit = fit_lmm(cells, st, reml=reml)
    f2, g2, _ = profiled_deviance(fit.phi, cells, st, reml, closed_form=False)
    assert -0.5 * f2 == pytest.approx(fit.loglik, rel=EXACT_REL)
    free = fit.phi > 1e-8
    assert np.all(np.abs(g2[free]) <= 1e-4 * max(1.0, abs(f2)))


@pytest.mark.parametrize("name", list(STRUCTURES))
def test_vectorised_kr_df_equals_one_contrast_at_a_time(rng, name):
    """``kr_unit_df`` (all coefficients at once) equals ``kr_test`` with ``L = e_k'``."""
    from steppedwedge._core.kenward_roger import kr_adjust, kr_test, kr_unit_df

    cells, *_ = _simulate(rng, n_clusters=10, covariate=True, incomplete=True)
    st = STRUCTURES[name]
    fit = fit_lmm(cells, st)
    adj = kr_adjust(variance_derivatives(fit.natural, fit.sigma2, cells, st))
    p = fit.beta.size
    one_at_a_time = [kr_test(adj, np.eye(p)[k])[0] for k in range(p)]
    np.testing.assert_allclose(kr_unit_df(adj), one_at_a_time, rtol=LINALG_REL)


@pytest.mark.parametrize("name", ["cluster", "nested"])
def test_closed_form_block_inverse_equals_cholesky_inverse(rng, name):
    """Sherman-Morrison ``Sigma_i^{-1}`` used by the KR derivatives equals the LAPACK one."""
    from steppedwedge._core.reml import _closed_form_sinv, _inv_logdet, _masked_cov

    cells, *_ = _simulate(rng, n_clusters=9, incomplete=True)
    st = STRUCTURES[name]
    for _ in range(5):
        nat = rng.uniform(0.0, 1.0, st.n_phi)
        s2 = float(rng.uniform(0.3, 2.0))
        g, _ = st.blocks_natural(nat, cells)
        ref, _ = _inv_logdet(_masked_cov(cells, g, s2))
        np.testing.assert_allclose(
            _closed_form_sinv(st, nat, s2, cells), ref, rtol=EXACT_REL, atol=ZERO_ATOL_1E13
        )


@pytest.mark.parametrize("name", ["cluster", "nested", "slope"])
@pytest.mark.parametrize("reml", [True, False])
def test_closed_form_hessian_matches_finite_differences(rng, name, reml):
    """The analytic Hessian of the profiled deviance (exact Newton) vs central differences."""
    cells, *_ = _simulate(rng, n_clusters=9, covariate=True, incomplete=True)
    st = STRUCTURES[name]
    phi = rng.uniform(0.1, 1.5, st.n_phi)
    hess = profiled_deviance(phi, cells, st, reml, hessian=True)[2]["hessian"]
    fd = np.empty_like(hess)
    for k in range(phi.size):
        step = np.zeros(phi.size)
        step[k] = 1e-5 * phi[k]
        g_up = profiled_deviance(phi + step, cells, st, reml)[1]
        g_dn = profiled_deviance(phi - step, cells, st, reml)[1]
        fd[:, k] = (g_up - g_dn) / (2 * step[k])
    # central differences of the analytic gradient: error O(step^2) plus rounding
    np.testing.assert_allclose(
        hess, fd, rtol=CENTRAL_DIFF_REL, atol=CENTRAL_DIFF_HESS_FLOOR * np.max(np.abs(fd))
    )
