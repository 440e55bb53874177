"""Property tests of analytic power (hypothesis) and a dense brute-force GLS check."""

from __future__ import annotations

import numpy as np
import pytest
from _tolerances import DENSE_REL, ILL_SCALED_REL, LINALG, LINALG_REL
from hypothesis import given, settings
from hypothesis import strategies as st
from strategies import designs, stepped_wedge_designs

from steppedwedge._core import closed_forms as cf
from steppedwedge.design import Design
from steppedwedge.exceptions import DesignError
from steppedwedge.planning import power
from steppedwedge.variance import VarianceComponents as VC

pytestmark = pytest.mark.property

variances = st.builds(
    VC,
    sigma2=st.floats(0.2, 3.0),
    tau2=st.floats(0.0, 0.5),
    gamma2=st.floats(0.0, 0.3),
    eta2=st.floats(0.0, 0.2),
    rho=st.floats(-0.9, 0.9),
    psi2=st.floats(0.0, 0.5),
    decay=st.one_of(st.none(), st.floats(0.05, 0.95)),
)


def dense_variance(
    design: Design,
    vc: VC,
    m: np.ndarray,
    *,
    cohort: bool,
    churn: float,
    contrast_cols: np.ndarray | None = None,
) -> np.ndarray:
    """Stack every observed cell, build the full covariance entry by entry, invert densely."""
    x = design.matrix
    n_i, n_t = x.shape
    cells = [(i, j) for i in range(n_i) for j in range(n_t) if not np.isnan(x[i, j])]
    n = len(cells)
    keep = sorted({j for _, j in cells})
    et = design.exposure_time
    n_exp = int(max(et[i, j] for i, j in cells))
    p = len(keep) + (1 if contrast_cols is None else n_exp)
    zz = np.zeros((n, p))
    v = np.zeros((n, n))
    r = 0.0 if vc.decay is None else vc.decay
    for a, (i, j) in enumerate(cells):
        zz[a, keep.index(j)] = 1.0
        if contrast_cols is None:
            zz[a, -1] = x[i, j]
        elif et[i, j] > 0:
            zz[a, len(keep) + et[i, j] - 1] = 1.0
        m_i = np.mean([m[i, k] for k in range(n_t) if not np.isnan(x[i, k])])
        for b, (i2, k) in enumerate(cells):
            if i2 != i:
                continue
            xj, xk = x[i, j], x[i, k]
            val = vc.tau2 + vc.eta2 * xj * xk + vc.rho * np.sqrt(vc.tau2 * vc.eta2) * (xj + xk)
            if vc.decay is None:
                val += vc.gamma2 * (j == k)
            else:
                val += vc.gamma2 * r ** abs(j - k)
            if cohort:
                val += (1 - churn) * vc.psi2 / m_i + (j == k) * churn * vc.psi2 / m_i
                val += (j == k) * vc.sigma2 / m[i, j]
            else:
                val += (j == k) * (vc.sigma2 + vc.psi2) / m[i, j]
            v[a, b] = val
    info = zz.T @ np.linalg.solve(v, zz)
    return np.linalg.pinv(info)


@settings(max_examples=25, deadline=None)
@given(
    design=designs(),
    vc=variances,
    seed=st.integers(0, 2**31 - 1),
    cohort=st.booleans(),
    churn=st.floats(0.0, 1.0),
)
def test_gls_equals_dense_brute_force(
    design: Design, vc: VC, seed: int, cohort: bool, churn: float
) -> None:
    rng = np.random.default_rng(seed)
    m = rng.integers(1, 30, size=design.matrix.shape).astype(float)
    kw = dict(sampling="cohort", churn=churn) if cohort else {}
    res = power(design, effect=0.5, variance=vc, cluster_size=m, **kw)
    ref = dense_variance(design, vc, m, cohort=cohort, churn=churn)[-1, -1]
    np.testing.assert_allclose(res.variance, ref, rtol=ILL_SCALED_REL)


@settings(max_examples=20, deadline=None)
@given(design=stepped_wedge_designs(), seed=st.integers(0, 2**31 - 1))
def test_relabelling_and_reordering_change_nothing(design: Design, seed: int) -> None:
    rng = np.random.default_rng(seed)
    vc = VC(sigma2=1.0, tau2=0.1, gamma2=0.05, decay=0.5)
    m = rng.integers(1, 30, size=design.n_clusters).astype(float)
    base = power(design, effect=0.3, variance=vc, cluster_size=m)
    order = rng.permutation(design.n_clusters)
    shuffled = design.take(order).relabel([f"c{k}" for k in range(design.n_clusters)])
    other = power(shuffled, effect=0.3, variance=vc, cluster_size=m[order])
    np.testing.assert_allclose(other.variance, base.variance, **LINALG)
    np.testing.assert_allclose(other.power, base.power, **LINALG)


@settings(max_examples=20, deadline=None)
@given(
    design=designs(),
    icc=st.floats(0.0, 0.3),
    cac=st.floats(0.0, 1.0),
    m=st.integers(1, 50),
    effect=st.floats(0.05, 1.0),
)
def test_power_rises_with_clusters_size_and_effect(
    design: Design, icc: float, cac: float, m: int, effect: float
) -> None:
    vc = VC.from_correlations(icc, cac=cac)
    base = power(design, effect=effect, variance=vc, cluster_size=m).power
    more_clusters = Design.from_matrix(
        np.vstack([design.matrix, design.matrix]), allow_reversal=True
    )
    assert power(more_clusters, effect=effect, variance=vc, cluster_size=m).power >= base - 1e-12
    assert power(design, effect=effect, variance=vc, cluster_size=m + 5).power >= base - 1e-12
    assert power(design, effect=effect * 1.2, variance=vc, cluster_size=m).power >= base - 1e-12


def _r_star(k: int) -> float:
    """Cluster-mean autocorrelation at which Hooper's DE_R(r) is largest."""
    from scipy.optimize import minimize_scalar

    def neg(r: float) -> float:
        return -float(cf.hooper_design_effect(k, 1, 1.0, r)[2])  # m=1, icc=1 -> r = cac

    return float(minimize_scalar(neg, bounds=(0.0, 1.0), method="bounded").x)


@settings(max_examples=20, deadline=None)
@given(
    n_seq=st.integers(2, 6),
    g=st.integers(1, 3),
    icc=st.floats(0.01, 0.3),
    cac=st.floats(0.0, 0.9),
    m=st.integers(1, 50),
)
def test_power_rises_with_cac_in_stepped_wedge(
    n_seq: int, g: int, icc: float, cac: float, m: int
) -> None:
    # Power rises with CAC once the cluster-mean autocorrelation r = m icc cac / DE_C passes
    # the maximiser r* of Hooper's DE_R(r); below r* it falls (DE_R rises), which is exact:
    # Var = 4 sigma^2 DE_C DE_R(r) / (I m) with DE_C free of the CAC.
    d = Design.stepped_wedge(n_seq, g)
    lo = power(d, effect=0.2, variance=VC.from_correlations(icc, cac=cac), cluster_size=m).power
    hi = power(
        d, effect=0.2, variance=VC.from_correlations(icc, cac=cac + 0.1), cluster_size=m
    ).power
    r = m * icc * cac / (1 + (m - 1) * icc)
    if r >= _r_star(n_seq):
        assert hi >= lo - 1e-12
    r_hi = m * icc * (cac + 0.1) / (1 + (m - 1) * icc)
    if r_hi <= _r_star(n_seq):
        assert hi <= lo + 1e-12


@settings(max_examples=15, deadline=None)
@given(design=stepped_wedge_designs(), seed=st.integers(0, 2**31 - 1))
def test_single_exposure_weight_is_the_pte(design: Design, seed: int) -> None:
    x = design.matrix
    if np.any((x > 0) & (x < 1)):
        with pytest.raises(DesignError, match="fractional"):
            power(design, effect=0.3, variance=VC(tau2=0.1), cluster_size=10, weights=[1.0])
        return
    rng = np.random.default_rng(seed)
    e_obs = np.where(design.observed, design.exposure_time, 0)
    n_exp = int(e_obs.max())
    e = int(rng.integers(1, n_exp + 1))
    w = np.zeros(n_exp)
    w[e - 1] = 1.0
    vc = VC(sigma2=1.0, tau2=0.1, gamma2=0.02)
    m = np.full(x.shape, 10.0)
    try:
        res = power(design, effect=0.3, variance=vc, cluster_size=m, weights=w)
    except DesignError:
        cov = dense_variance(design, vc, m, cohort=False, churn=1.0, contrast_cols=w)
        info_rank_deficient = True
        assert info_rank_deficient and cov is not None
        return
    full = dense_variance(design, vc, m, cohort=False, churn=1.0, contrast_cols=w)
    p = full.shape[0]
    np.testing.assert_allclose(
        res.variance, full[p - n_exp + e - 1, p - n_exp + e - 1], rtol=ILL_SCALED_REL
    )
    assert res.estimand.startswith("PTE")


def test_tate_weights_average() -> None:
    d = Design.stepped_wedge(4, 2)
    vc = VC(sigma2=1.0, tau2=0.1)
    m = np.full(d.matrix.shape, 10.0)
    w = np.full(4, 0.25)
    res = power(d, effect=0.3, variance=vc, cluster_size=10, weights=w)
    cov = dense_variance(d, vc, m, cohort=False, churn=1.0, contrast_cols=w)[-4:, -4:]
    np.testing.assert_allclose(res.variance, w @ cov @ w, rtol=DENSE_REL)
    # ETI is less efficient than the immediate-effect model
    assert res.variance > power(d, effect=0.3, variance=vc, cluster_size=10).variance


def test_linear_time_dense() -> None:
    d = Design.stepped_wedge(4, [1, 2, 2, 1])
    vc = VC(sigma2=1.0, tau2=0.1, gamma2=0.03)
    x = d.matrix
    n_i, n_t = x.shape
    rows = [(i, j) for i in range(n_i) for j in range(n_t)]
    zz = np.array([[1.0, j, x[i, j]] for i, j in rows])
    v = np.zeros((len(rows), len(rows)))
    for a, (i, j) in enumerate(rows):
        for b, (i2, k) in enumerate(rows):
            if i == i2:
                v[a, b] = vc.tau2 + (j == k) * (vc.gamma2 + vc.sigma2 / 8)
    ref = np.linalg.inv(zz.T @ np.linalg.solve(v, zz))[-1, -1]
    res = power(d, effect=0.3, variance=vc, cluster_size=8, time="linear")
    np.testing.assert_allclose(res.variance, ref, rtol=LINALG_REL)
    assert "linear period effects" in res.method
