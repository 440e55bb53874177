"""Part-B identities: closed forms in ``_core.closed_forms`` equal the general GLS power code.

Values printed in published-cases.md Part B are also checked (rel 1e-10 where given to
12+ digits).
"""

from __future__ import annotations

import numpy as np
import pytest
from _tolerances import (
    CLOSED_FORM_REL,
    DENSE_REL,
    LINALG,
    PRINTED_7_DIGITS_REL,
    PRINTED_12_DIGITS_REL,
)

from steppedwedge._core import closed_forms as cf
from steppedwedge.design import Design
from steppedwedge.planning import power
from steppedwedge.variance import VarianceComponents as VC


def gls_var(design: Design, vc: VC, m: float, **kw: object) -> float:
    return power(design, effect=1.0, variance=vc, cluster_size=m, **kw).variance


def test_id1_hussey_hughes() -> None:
    d = Design.stepped_wedge(4, 6)
    s2, tau2, m = 0.041 * 0.959, 0.025**2, 100
    v_cf = cf.hussey_hughes_variance(d.matrix, s2, tau2, m)
    res = power(d, effect=0.018, variance=VC(sigma2=s2, tau2=tau2), cluster_size=m)
    np.testing.assert_allclose(res.variance, v_cf, **LINALG)
    np.testing.assert_allclose(res.variance, 4.065847294098e-05, rtol=PRINTED_12_DIGITS_REL)
    assert abs(res.power - 0.8059172) <= 5e-8


def test_id2_two_eigenvalue_unequal_sequences() -> None:
    d = Design.stepped_wedge(4, [2, 1, 3, 2])
    s = cf.design_summaries(d.matrix)
    # Sigma = 0.37 I + 0.11 J  <=> sigma2/m = 0.37, tau2 = 0.11 with m = 1
    v = gls_var(d, VC(sigma2=0.37, tau2=0.11), 1.0)
    v_cf = cf.two_eigenvalue_variance(s["I"], s["T"], s["U"], s["V"], s["W"], 0.37, 0.37 + 5 * 0.11)
    np.testing.assert_allclose(v, v_cf, **LINALG)
    np.testing.assert_allclose(v, 0.100154468554616, rtol=PRINTED_12_DIGITS_REL)


def test_two_eigenvalue_form_non_monotone_design(rng: np.random.Generator) -> None:
    # methods.md 2.3: the general form holds for any 0/1 matrix (checked on a random 7 x 6 X)
    x = (rng.random((7, 6)) < 0.5).astype(float)
    x[0, 0], x[1, 0] = 0.0, 1.0
    d = Design.from_matrix(x, allow_reversal=True)
    s = cf.design_summaries(x)
    v = gls_var(d, VC(sigma2=0.8, tau2=0.3, gamma2=0.1), 4.0)
    a, b = 0.1 + 0.8 / 4, 0.3
    v_cf = cf.two_eigenvalue_variance(s["I"], s["T"], s["U"], s["V"], s["W"], a, a + 6 * b)
    np.testing.assert_allclose(v, v_cf, **LINALG)


def test_id3_hooper_cross_sectional() -> None:
    d = Design.stepped_wedge(4, 3)
    vc = VC.from_correlations(0.05, cac=0.8)
    de_c, r, de_r = cf.hooper_design_effect(4, 20, 0.05, 0.8)
    v_de = 4 * 1.0 * de_c * de_r / (12 * 20)
    np.testing.assert_allclose(
        [de_c, r, de_r], [1.95, 0.41025641, 0.342217407], rtol=CLOSED_FORM_REL
    )
    np.testing.assert_allclose(gls_var(d, vc, 20), v_de, **LINALG)
    np.testing.assert_allclose(v_de, 0.0111220657277, rtol=PRINTED_12_DIGITS_REL)


def test_id4_hooper_closed_cohort() -> None:
    d = Design.stepped_wedge(5, 2)
    vc = VC.from_correlations(0.1, cac=0.5, iac=0.3)
    de_c, r, de_r = cf.hooper_design_effect(5, 10, 0.1, 0.5, 0.3)
    v_de = 4 * de_c * de_r / (10 * 10)
    np.testing.assert_allclose(gls_var(d, vc, 10, sampling="cohort"), v_de, **LINALG)
    np.testing.assert_allclose(v_de, 0.0212336601307, rtol=PRINTED_12_DIGITS_REL)


def test_id5_woertman_identity_b_t_gt_1() -> None:
    d = Design.stepped_wedge(4, 2, baseline_periods=2, periods_per_step=2)
    assert d.n_periods == 10
    de_w = cf.woertman_design_effect(4, 10, 0.05, baseline_periods=2, periods_per_step=2)
    np.testing.assert_allclose(de_w, 0.286202532, rtol=CLOSED_FORM_REL)
    v = gls_var(d, VC.from_correlations(0.05), 10)
    np.testing.assert_allclose(v, 4 * de_w / (8 * 10), **LINALG)
    np.testing.assert_allclose(v, 0.0143101265823, rtol=PRINTED_12_DIGITS_REL)


def test_id6_li_decay_cohort_equals_gls() -> None:
    # SP-07: tau=0.025, psi=0.1, sigma=0 (approached: sigma2 must be > 0), r=0.5, m=100
    d = Design.stepped_wedge(4, 6)
    tau2, psi2, r, m = 0.025**2, 0.1**2, 0.5, 100
    tot = tau2 + psi2
    v_li = cf.li_decay_cohort_variance(d.matrix, m=m, total_variance=tot, icc=tau2 / tot, decay=r)
    vc = VC(sigma2=1e-14, gamma2=tau2, decay=r, psi2=psi2)
    res = power(d, effect=0.018, variance=vc, cluster_size=m, sampling="cohort", individual_decay=r)
    np.testing.assert_allclose(res.variance, v_li, rtol=DENSE_REL)
    # SteppedPower vignette SP-07 (published): 0.7870855
    assert abs(res.power - 0.7870855) <= 5e-8


@pytest.mark.parametrize("churn", [0.0, 0.5, 1.0])
def test_id6_kasza_open_cohort_equals_gls(churn: float) -> None:
    d = Design.stepped_wedge(4, 6)
    s2, tau2, k2, psi2, m = 0.041 * 0.959, 0.025**2, 0.01**2, 0.1**2, 100
    tot = s2 + tau2 + k2 + psi2
    v_k = cf.kasza_open_cohort_variance(
        d.matrix,
        m=m,
        total_variance=tot,
        rho_w=(tau2 + k2) / tot,
        rho_b=tau2 / tot,
        rho_a=(tau2 + psi2) / tot,
        churn=churn,
    )
    v = gls_var(
        d, VC(sigma2=s2, tau2=tau2, gamma2=k2, psi2=psi2), m, sampling="cohort", churn=churn
    )
    np.testing.assert_allclose(v, v_k, **LINALG)
    v_ne = cf.nested_exchangeable_variance(
        d.matrix, m=m, sigma2=s2, tau2=tau2, gamma2=k2, psi2=psi2, churn=churn
    )
    np.testing.assert_allclose(v, v_ne, **LINALG)


def test_id10_sample_size_step() -> None:
    res = power(Design.stepped_wedge(3, 3), effect=0.2, variance=VC(sigma2=1.0), cluster_size=49)
    assert abs(res.power - 0.7995569) <= 5e-8


def test_id9_swdpwr_inputs_with_period_effects() -> None:
    d = Design.from_matrix(np.repeat(np.array([[0, 1, 1, 1], [0, 0, 1, 1]]), 6, axis=0))
    res = power(
        d,
        effect=0.05,
        variance=VC(sigma2=0.98, tau2=0.015, gamma2=0.005),
        cluster_size=100,
        family="binomial",
        link="identity",
        baseline=0.15,
        analysis="gee",
    )
    np.testing.assert_allclose(res.variance, 8.887847e-4, rtol=PRINTED_7_DIGITS_REL)
    assert abs(res.power_one_tail - 0.38866) <= 5e-6


def test_woertman_equals_hooper_when_cac_one() -> None:
    de_w = cf.woertman_design_effect(np.array([3, 4, 6]), 20, 0.05)
    de_c, _, de_r = cf.hooper_design_effect(np.array([3, 4, 6]), 20, 0.05, 1.0)
    np.testing.assert_allclose(de_w, de_c * de_r, **LINALG)


@pytest.mark.parametrize("t_periods", [3, 5, 7])
@pytest.mark.parametrize("rho", [0.01, 0.1, 0.3])
def test_harrison_wang_closed_forms_equal_gls_and_gee(t_periods: int, rho: float) -> None:
    from scipy.special import logit

    d = Design.stepped_wedge(t_periods - 1, 3)
    n_i, n = d.n_clusters, 20
    vc = VC.from_correlations(rho, total_variance=2.0)
    for period_effects in (False, True):
        v_cf = cf.harrison_wang_variance(
            n_clusters=n_i,
            n_periods=t_periods,
            m=n,
            icc=rho,
            total_variance=2.0,
            period_effects=period_effects,
        )
        v = power(
            d,
            effect=0.1,
            variance=vc,
            cluster_size=n,
            time="categorical" if period_effects else "none",
        ).variance
        np.testing.assert_allclose(v, v_cf, **LINALG)
    p0, p1 = 0.08, 0.064
    v_cf = cf.harrison_wang_variance(
        n_clusters=n_i, n_periods=t_periods, m=n, icc=rho, p0=p0, p1=p1, model="logistic"
    )
    v = power(
        d,
        effect=float(logit(p1) - logit(p0)),
        variance=VC.from_correlations(rho),
        cluster_size=n,
        family="binomial",
        baseline=p0,
        analysis="gee",
        time="none",
    ).variance
    np.testing.assert_allclose(v, v_cf, **LINALG)
