"""Analytic power against published numbers (published-cases.md, Part A).

Each case names its source; tolerance = half a unit in the last printed digit.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy.special import expit, logit

from steppedwedge.design import Design
from steppedwedge.planning import power
from steppedwedge.variance import VarianceComponents as VC

pytestmark = pytest.mark.reference


def half_unit(digits: int) -> float:
    return 0.5 * 10.0 ** (-digits)


# --------------------------------------------------------------------------- A1 SteppedPower
def test_sp01_sample_size_step() -> None:
    # SteppedPower vignette: Cl=(3,3,3), theta=0.2, sigma=1, tau=0 -> m=50 gives 0.8074,
    # m=49 gives 0.7996 (printed to 4 d.p.)
    d = Design.stepped_wedge(3, 3)
    p50 = power(d, effect=0.2, variance=VC(sigma2=1.0), cluster_size=50).power
    p49 = power(d, effect=0.2, variance=VC(sigma2=1.0), cluster_size=49).power
    assert abs(p50 - 0.8074) <= half_unit(4)
    assert abs(p49 - 0.7996) <= half_unit(4)


@pytest.mark.parametrize(("tau2", "expected"), [(0.0, 0.7054), (0.04, 0.4616)])
def test_sp02_sp03_parallel_longitudinal(tau2: float, expected: float) -> None:
    # SteppedPower vignette: 10 + 10 parallel clusters, T=5, m=1, theta=0.25, sigma=0.5
    d = Design.parallel(10, 10, 5)
    res = power(d, effect=0.25, variance=VC(sigma2=0.25, tau2=tau2), cluster_size=1)
    assert abs(res.power - expected) <= half_unit(4)


def test_sp04_incomplete() -> None:
    # SteppedPower vignette: Cl=(2,2,2,2), 2 periods either side of each switch observed
    nan = np.nan
    seq = np.array([[0, 1, 1, nan, nan], [0, 0, 1, 1, nan], [nan, 0, 0, 1, 1], [nan, nan, 0, 0, 1]])
    d = Design.from_matrix(np.repeat(seq, 2, axis=0))
    res = power(d, effect=0.5, variance=VC(sigma2=4.0, tau2=0.36), cluster_size=80)
    assert abs(res.power - 0.8221) <= half_unit(4)


def test_sp05_closed_cohort() -> None:
    # SteppedPower vignette: m=3, theta=5, sigma=5, tau=1, psi=3
    d = Design.stepped_wedge(3, 3)
    res = power(
        d, effect=5, variance=VC(sigma2=25, tau2=1, psi2=9), cluster_size=3, sampling="cohort"
    )
    assert abs(res.power - 0.8524223) <= half_unit(7)


def test_sp06_cohort_ar_individual() -> None:
    # SteppedPower vignette: SP-05 with AR=c(1,1,.75) on the individual effect
    d = Design.stepped_wedge(3, 3)
    res = power(
        d,
        effect=5,
        variance=VC(sigma2=25, tau2=1, psi2=9),
        cluster_size=3,
        sampling="cohort",
        individual_decay=0.75,
    )
    assert abs(res.power - 0.8284796) <= half_unit(7)


@pytest.mark.parametrize(
    ("churn", "expected"), [(0.0, 0.7145816), (1.0, 0.6451082), (0.5, 0.6778561)]
)
def test_sp08_to_sp10_open_cohort(churn: float, expected: float) -> None:
    # SteppedPower vignette (Kasza et al. 2020 closed form): Cl=(6,6,6,6), m=100,
    # theta=0.018, tau=0.025, kappa=0.01, psi=0.1, sigma^2=0.041*0.959
    d = Design.stepped_wedge(4, 6)
    vc = VC(sigma2=0.041 * 0.959, tau2=0.025**2, gamma2=0.01**2, psi2=0.1**2)
    res = power(d, effect=0.018, variance=vc, cluster_size=100, sampling="cohort", churn=churn)
    assert abs(res.power - expected) <= half_unit(7)


def test_sp11_z_test() -> None:
    # SteppedPower vignette: 2 groups x 10, theta=1.2, sigma=1 (= pwr.norm.test(d=.6, n=20))
    res = power(Design.parallel(10, 10, 1), effect=1.2, variance=VC(sigma2=1), cluster_size=1)
    assert abs(res.power - 0.7652593) <= half_unit(7)


# --------------------------------------------------------------------------- A2 swdpwr GEE
SWD_DESIGN = np.repeat(np.array([[0, 1, 1, 1], [0, 0, 1, 1]]), 6, axis=0)


def _alphas(a0: float, a1: float, a2: float, total: float = 1.0) -> VC:
    # methods.md 3.7: tau2 = a1, kappa2 = a0 - a1, psi2 = a2 - a1, sigma2 = 1 - a0 - a2 + a1
    return VC(
        sigma2=total * (1 - a0 - a2 + a1),
        tau2=total * a1,
        gamma2=total * (a0 - a1),
        psi2=total * (a2 - a1),
    )


def test_swd2_binary_log_cohort() -> None:
    # swdpwr README: marginal GEE, log link, closed cohort; p_start=0.156, p_end0=0.1765
    # (control trend, log-linear interpolation), beta=0.75, alphas (0.03, 0.015, 0.2) -> 0.983
    base = np.exp(np.linspace(np.log(0.156), np.log(0.1765), 4))
    res = power(
        Design.from_matrix(SWD_DESIGN),
        effect=0.75,
        variance=_alphas(0.03, 0.015, 0.2),
        cluster_size=100,
        family="binomial",
        link="log",
        baseline=base,
        analysis="gee",
        sampling="cohort",
    )
    assert abs(res.power_one_tail - 0.983) <= half_unit(3)


def test_swd3_binary_identity_no_period_effects() -> None:
    # swdpwr README: identity link, cross-sectional, no period effects, p=0.15, RD=0.05,
    # alpha0=0.02, alpha1=0.015, m=100 -> 0.946
    res = power(
        Design.from_matrix(SWD_DESIGN),
        effect=0.05,
        variance=_alphas(0.02, 0.015, 0.015),
        cluster_size=100,
        family="binomial",
        link="identity",
        baseline=0.15,
        analysis="gee",
        time="none",
    )
    assert abs(res.power_one_tail - 0.946) <= half_unit(3)


@pytest.mark.parametrize(("time", "expected"), [("categorical", 0.965), ("none", 1.0)])
def test_swd4_continuous_cohort(time: str, expected: float) -> None:
    # swdpwr README: continuous, closed cohort, I=8, T=3, m=24, total variance 0.095,
    # beta=0.2, alphas (0.03, 0.015, 0.2) -> 0.965 with period effects, "1" without
    d = Design.from_matrix(np.repeat(np.array([[0, 1, 1], [0, 0, 1]]), 4, axis=0))
    res = power(
        d,
        effect=0.2,
        variance=_alphas(0.03, 0.015, 0.2, total=0.095),
        cluster_size=24,
        analysis="gee",
        sampling="cohort",
        time=time,
    )
    assert abs(res.power_one_tail - expected) <= half_unit(3)


# --------------------------------------------------------------------------- A7 Harrison & Wang
P0, P1 = 0.08, 0.064
HW_THETA = float(logit(P1) - logit(P0))
HW_BASE = expit(np.array([logit(0.08)] + [logit(0.08) - 0.15] * 4))


@pytest.mark.parametrize(("time", "expected"), [("none", 0.982436), ("categorical", 0.7096853)])
def test_hw_linear(time: str, expected: float) -> None:
    # Harrison & Wang 2021 illustrative example: I=96 (4 x 24), T=5, n=40, rho=0.1,
    # sigma^2 = [p0(1-p0) + p1(1-p1)]/2; HW-1 (no period effects), HW-3 (period effects)
    res = power(
        Design.stepped_wedge(4, 24),
        effect=P1 - P0,
        variance=VC.from_correlations(0.1),
        cluster_size=40,
        family="binomial",
        link="identity",
        baseline=P0,
        binary_variance="average",
        time=time,
    )
    digits = len(str(expected).split(".")[1])
    assert abs(res.power_one_tail - expected) <= half_unit(digits)


@pytest.mark.parametrize(
    ("vc", "baseline", "time", "expected", "digits"),
    [
        (VC.from_correlations(0.1), P0, "none", 0.9775285, 7),  # HW-2
        (VC.from_correlations(0.1), HW_BASE, "categorical", 0.6442509, 7),  # HW-4
        (VC.from_correlations(0.1, cac=0.1), HW_BASE, "categorical", 0.2397403, 7),  # HW-5
        (VC.from_correlations(0.1, cac=0.0, decay=0.56), HW_BASE, "categorical", 0.264653, 6),
    ],
)
def test_hw_logistic_gee(vc: VC, baseline: object, time: str, expected: float, digits: int) -> None:
    # Harrison & Wang 2021: logistic GEE, model-based variance, 1t power
    res = power(
        Design.stepped_wedge(4, 24),
        effect=HW_THETA,
        variance=vc,
        cluster_size=40,
        family="binomial",
        link="logit",
        baseline=baseline,
        analysis="gee",
        time=time,
    )
    assert abs(res.power_one_tail - expected) <= half_unit(digits)


def test_hw7_treatment_dependent_correlation() -> None:
    # Harrison & Wang 2021 illustrative example HW-7: rho(control, control)=0.1,
    # rho(control, treated)=0.02, rho(treated, treated)=0.08 -> 0.2484286
    # (published-cases.md marks it "not attempted"; the structure is exchangeable within a
    # cluster with the correlation depending on the two individuals' treatment states)
    def hw_gee(correlation: tuple[float, float, float]) -> float:
        res = power(
            Design.stepped_wedge(4, 24),
            effect=HW_THETA,
            variance=VC(),
            cluster_size=40,
            family="binomial",
            link="logit",
            baseline=HW_BASE,
            analysis="gee",
            treatment_correlation=correlation,
        )
        return float(res.power_one_tail)

    assert abs(hw_gee((0.1, 0.02, 0.08)) - 0.2484286) <= half_unit(7)
    # equal correlations reduce to the exchangeable case HW-4
    assert abs(hw_gee((0.1, 0.1, 0.1)) - 0.6442509) <= half_unit(7)
