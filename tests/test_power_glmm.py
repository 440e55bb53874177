"""Binary and count power: identity-scale plug-ins, link-scale GLMM linearisation, NB.

Checks are against (a) classical closed forms with no random effects (Var of a log odds
ratio / log rate ratio), and (b) a brute-force unit-level computation of the linearised
GLMM information written independently of the cell-mean reduction in ``_core``.
"""

from __future__ import annotations

import numpy as np
import pytest
from _tolerances import DENSE_REL, LINALG, POISSON_LIMIT_REL
from scipy.special import expit, logit

from steppedwedge.design import Design
from steppedwedge.planning import power
from steppedwedge.variance import VarianceComponents as VC


def test_logit_no_random_effects_closed_form() -> None:
    # parallel, one period: Var(log OR) = 1/(m p0 q0 n0) + 1/(m p1 q1 n1)
    p0, lor, m = 0.2, 0.5, 30
    p1 = expit(logit(p0) + lor)
    res = power(
        Design.parallel(3, 4),
        effect=lor,
        variance=VC(),
        cluster_size=m,
        family="binomial",
        baseline=p0,
    )
    v = 1 / (3 * m * p1 * (1 - p1)) + 1 / (4 * m * p0 * (1 - p0))
    np.testing.assert_allclose(res.variance, v, **LINALG)
    v0 = 1 / (3 * m * p0 * (1 - p0)) + 1 / (4 * m * p0 * (1 - p0))
    np.testing.assert_allclose(res.variance_null, v0, **LINALG)


def test_poisson_offset_closed_form() -> None:
    # Var(log RR) = 1/E[count treated] + 1/E[count control]; only total exposure matters
    rate, lrr = 0.02, np.log(0.8)
    pop = np.array([1000.0, 2000.0, 1500.0, 500.0])
    res = power(
        Design.parallel(2, 2),
        effect=lrr,
        variance=VC(),
        cluster_size=1,
        family="poisson",
        baseline=rate,
        exposure=pop,
    )
    v = 1 / (rate * np.exp(lrr) * (1000 + 2000)) + 1 / (rate * (1500 + 500))
    np.testing.assert_allclose(res.variance, v, **LINALG)
    # same total exposure split over 10 units per cell gives the same variance
    res10 = power(
        Design.parallel(2, 2),
        effect=lrr,
        variance=VC(),
        cluster_size=10,
        family="poisson",
        baseline=rate,
        exposure=pop / 10,
    )
    np.testing.assert_allclose(res10.variance, v, **LINALG)


def test_negative_binomial_closed_form() -> None:
    # m units with mean mu and size theta: Var(log mu_hat) = (1/mu + 1/theta)/m per arm
    mu0, lrr, theta, m = 3.0, np.log(1.5), 2.0, 25
    mu1 = mu0 * np.exp(lrr)
    res = power(
        Design.parallel(2, 3),
        effect=lrr,
        variance=VC(),
        cluster_size=m,
        family="negative_binomial",
        baseline=mu0,
        dispersion=theta,
    )
    v = (1 / mu1 + 1 / theta) / (2 * m) + (1 / mu0 + 1 / theta) / (3 * m)
    np.testing.assert_allclose(res.variance, v, **LINALG)
    # theta -> infinity recovers Poisson
    big = power(
        Design.parallel(2, 3),
        effect=lrr,
        variance=VC(),
        cluster_size=m,
        family="negative_binomial",
        baseline=mu0,
        dispersion=1e12,
    )
    pois = power(
        Design.parallel(2, 3),
        effect=lrr,
        variance=VC(),
        cluster_size=m,
        family="poisson",
        baseline=mu0,
    )
    np.testing.assert_allclose(big.variance, pois.variance, rtol=POISSON_LIMIT_REL)


def _brute_force_linearised(
    x: np.ndarray,
    m: np.ndarray,
    mu_unit: np.ndarray,
    wfun,
    tau2: float,
    gamma2: float,
    decay: float | None,
    eta2: float = 0.0,
) -> float:
    """Unit-level linearised GLMM: V_i = diag(1/w_u) + Z G Z', X = [period dummies, trt]."""
    n_i, n_t = x.shape
    info = np.zeros((n_t + 1, n_t + 1))
    for i in range(n_i):
        per, trt, w = [], [], []
        for j in range(n_t):
            if np.isnan(x[i, j]):
                continue
            for _ in range(int(m[i, j])):
                per.append(j)
                trt.append(x[i, j])
                w.append(wfun(mu_unit[i, j]))
        n = len(per)
        xx = np.zeros((n, n_t + 1))
        xx[np.arange(n), per] = 1.0
        xx[:, -1] = trt
        v = np.diag(1.0 / np.array(w))
        per_a = np.array(per)
        trt_a = np.array(trt)
        lag = np.abs(per_a[:, None] - per_a[None, :])
        rmat = (lag == 0).astype(float) if decay is None else decay**lag
        v = v + tau2 + gamma2 * rmat + eta2 * np.outer(trt_a, trt_a)
        info += xx.T @ np.linalg.solve(v, xx)
    return float(np.linalg.inv(info)[-1, -1])


@pytest.mark.parametrize("family", ["binomial-logit", "binomial-log", "poisson", "negbin"])
def test_linearised_glmm_matches_unit_level_brute_force(family: str) -> None:
    nan = np.nan
    x = np.array([[0, 1, 1, 1], [0, 0, 1, 1], [0, 0, nan, 1], [0, 0, 0, 1], [0, 0, 0, 1]])
    m = np.array([[3, 2, 4, 3], [2, 2, 3, 3], [4, 3, 1, 2], [1, 2, 3, 4], [2, 2, 2, 2]])
    effect = 0.4
    vc = VC(tau2=0.2, gamma2=0.05, decay=0.7, eta2=0.03)
    base = np.array([0.1, 0.12, 0.15, 0.13])
    kw: dict[str, object]
    if family.startswith("binomial"):
        link = family.split("-")[1]
        eta0 = (logit(base) if link == "logit" else np.log(base))[None, :]
        inv = expit if link == "logit" else np.exp
        mu = inv(eta0 + effect * np.nan_to_num(x))
        if link == "logit":

            def wfun(u: float) -> float:
                return u * (1 - u)
        else:

            def wfun(u: float) -> float:
                return u / (1 - u)

        kw = dict(family="binomial", link=link, baseline=base)
    else:
        expo = 3.0
        mu = expo * base[None, :] * np.exp(effect * np.nan_to_num(x))
        theta = 1.7
        if family == "poisson":

            def wfun(u: float) -> float:
                return u

            kw = dict(family="poisson", baseline=base, exposure=expo)
        else:

            def wfun(u: float) -> float:
                return u * theta / (theta + u)

            kw = dict(family="negative_binomial", baseline=base, exposure=expo, dispersion=theta)
    res = power(x, effect=effect, variance=vc, cluster_size=np.where(np.isnan(x), 1, m), **kw)
    v = _brute_force_linearised(x, m, mu, wfun, vc.tau2, vc.gamma2, vc.decay, vc.eta2)
    np.testing.assert_allclose(res.variance, v, rtol=DENSE_REL)


def test_null_alternative_power_formula() -> None:
    # swGlmPwr: power = Phi((|b| - z sqrt(V0))/sqrt(Va)) + Phi((-|b| - z sqrt(V0))/sqrt(Va))
    from scipy.stats import norm

    res = power(
        Design.stepped_wedge(4, 3),
        effect=np.log(0.6),
        variance=VC(tau2=0.05),
        cluster_size=50,
        family="binomial",
        baseline=0.3,
    )
    z = norm.ppf(0.975)
    b = abs(np.log(0.6))
    p = norm.cdf((b - z * np.sqrt(res.variance_null)) / res.std_error) + norm.cdf(
        (-b - z * np.sqrt(res.variance_null)) / res.std_error
    )
    assert abs(res.power - p) < 1e-12
    assert res.variance != res.variance_null


@pytest.mark.parametrize("rule", ["mean", "average", "control"])
def test_binary_identity_plugins(rule: str) -> None:
    p0, rd = 0.3, 0.1
    v = {"mean": 0.35 * 0.65, "average": (0.3 * 0.7 + 0.4 * 0.6) / 2, "control": 0.21}[rule]
    d = Design.stepped_wedge(3, 2)
    res = power(
        d,
        effect=rd,
        variance=VC.from_correlations(0.05, cac=0.5),
        cluster_size=20,
        family="binomial",
        link="identity",
        baseline=p0,
        binary_variance=rule,
    )
    ref = power(
        d,
        effect=rd,
        variance=VC.from_correlations(0.05, cac=0.5, total_variance=v),
        cluster_size=20,
    )
    np.testing.assert_allclose(res.variance, ref.variance, **LINALG)


def test_cohort_psi_on_link_scale() -> None:
    # swGlmPwr: a cohort individual effect enters as psi2/m shared across periods
    d = Design.stepped_wedge(3, 2)
    kw = dict(effect=0.3, cluster_size=10, family="poisson", baseline=0.5)
    a = power(d, variance=VC(tau2=0.1, psi2=0.2), sampling="cohort", **kw)
    b = power(d, variance=VC(tau2=0.1 + 0.2 / 10), **kw)
    np.testing.assert_allclose(a.variance, b.variance, **LINALG)


def test_gee_identity_gaussian_equals_mixed() -> None:
    d = Design.stepped_wedge(4, 2)
    vc = VC.from_correlations(0.1, cac=0.6, iac=0.3, total_variance=2.0)
    a = power(d, effect=0.4, variance=vc, cluster_size=15, analysis="gee", sampling="cohort")
    b = power(d, effect=0.4, variance=vc, cluster_size=15, sampling="cohort")
    np.testing.assert_allclose(a.variance, b.variance, **LINALG)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (dict(family="binomial", baseline=1.2), "baseline"),
        (dict(family="binomial", baseline=0.9, link="identity", effect=0.2), r"\(0, 1\)"),
        (dict(family="poisson", baseline=0.0), "rates"),
        (dict(family="poisson"), "baseline"),
        (dict(family="negative_binomial", baseline=1.0), "dispersion"),
        (dict(family="negative_binomial", baseline=1.0, dispersion=-1), "dispersion"),
        (dict(family="gaussian", link="logit"), "link"),
        (dict(analysis="gee", family="poisson", baseline=1.0), "gee"),
    ],
)
def test_bad_family_inputs(kwargs: dict[str, object], match: str) -> None:
    kw: dict[str, object] = dict(effect=0.1, variance=VC(), cluster_size=10)
    kw.update(kwargs)
    with pytest.raises(ValueError, match=match):
        power(Design.stepped_wedge(3), **kw)


def test_glmm_variance_alternative_is_wald() -> None:
    from scipy.stats import norm

    kw = dict(
        effect=np.log(0.6), variance=VC(tau2=0.05), cluster_size=50, family="binomial", baseline=0.3
    )
    a = power(Design.stepped_wedge(4, 3), glmm_variance="alternative", **kw)
    z = abs(np.log(0.6)) / a.std_error
    q = norm.ppf(0.975)
    assert abs(a.power - (norm.cdf(z - q) + norm.cdf(-z - q))) < 1e-12
    with pytest.raises(ValueError, match="glmm_variance"):
        power(Design.stepped_wedge(4, 3), glmm_variance="score", **kw)


@pytest.mark.parametrize("link", ["identity", "logit", "log"])
@pytest.mark.parametrize("cohort", [False, True])
def test_gee_cell_mean_reduction_equals_individual_level(link: str, cohort: bool) -> None:
    # individual-level model-based GEE variance (sum_i D_i' V_i^-1 D_i)^-1 with
    # V_i = A^1/2 R A^1/2, R from alpha0 (same period), alpha1 (different periods, decaying),
    # alpha2 (same individual, cohort) -- built element by element, no cell-mean reduction
    nan = np.nan
    x = np.array([[0, 1, 1, 1], [0, 0, 1, 1], [0, 0, nan, 1], [0, 0, 0, 1]])
    n = 3
    vc = VC.from_correlations(0.1, cac=0.6, iac=0.4 if cohort else 0.0, decay=0.5)
    base = np.array([0.2, 0.22, 0.25, 0.27])
    effect = 0.3 if link != "identity" else 0.05
    res = power(
        x,
        effect=effect,
        variance=vc,
        cluster_size=n,
        family="binomial",
        link=link,
        baseline=base,
        analysis="gee",
        sampling="cohort" if cohort else "cross-sectional",
    )
    g = {"identity": lambda p: p, "logit": logit, "log": np.log}[link]
    ginv = {"identity": lambda e: e, "logit": expit, "log": np.exp}[link]
    tot = vc.total_variance
    info = np.zeros((5, 5))
    for i in range(x.shape[0]):
        obs = [(j, k) for j in range(4) if not np.isnan(x[i, j]) for k in range(n)]
        size = len(obs)
        dmat = np.zeros((size, 5))
        sd = np.zeros(size)
        r = np.zeros((size, size))
        for a, (j, k) in enumerate(obs):
            eta = g(base[j]) + effect * x[i, j]
            mu = ginv(eta)
            deriv = {"identity": 1.0, "logit": mu * (1 - mu), "log": mu}[link]
            dmat[a, j] = deriv
            dmat[a, 4] = deriv * x[i, j]
            sd[a] = np.sqrt(mu * (1 - mu))
            for b, (j2, k2) in enumerate(obs):
                if a == b:
                    r[a, b] = 1.0
                    continue
                lag = abs(j - j2)
                shared = vc.tau2 + vc.gamma2 * (vc.decay**lag)  # cluster part
                if cohort and k == k2:
                    shared += vc.psi2
                r[a, b] = shared / tot
        v = r * sd[:, None] * sd[None, :]
        info += dmat.T @ np.linalg.solve(v, dmat)
    np.testing.assert_allclose(res.variance, np.linalg.inv(info)[-1, -1], rtol=DENSE_REL)
