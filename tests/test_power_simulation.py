"""Simulation checks of link-scale count power (marker ``slow``).

Counts (and binomial cluster-period totals) are simulated directly with numpy
(Poisson-lognormal and negative binomial with a population offset, binomial-logit-normal;
a random cluster intercept on the link scale) and analysed with a GLMM-free Wald z-test
consistent with what the power formula assumes: penalised
quasi-likelihood (Breslow & Clayton 1993) with the variance components fixed at their true
values, i.e. iterated GLS of the working response on period and treatment with the working
covariance ``diag(1/w) + tau2 J`` (weights ``mu`` for Poisson, ``mu theta/(theta + mu)`` for
the negative binomial).  The rejection rate is compared with ``power(...,
glmm_variance="alternative")`` within MC_K Monte-Carlo standard errors.
"""

from __future__ import annotations

import numpy as np
import pytest
from _tolerances import MC_K
from scipy.special import ndtri

from steppedwedge._core import power_kernels as pk
from steppedwedge._core.covariance import mean_covariance
from steppedwedge._core.gls import gls_fit
from steppedwedge.design import Design
from steppedwedge.planning import power
from steppedwedge.variance import VarianceComponents as VC

pytestmark = pytest.mark.slow


def pql_known_variance(
    y: np.ndarray,
    expo: np.ndarray,
    x: np.ndarray,
    tau2: float,
    theta: float | None,
    iters: int = 50,
) -> tuple[float, float]:
    n_i, n_t = y.shape
    z_design = pk.fixed_effects(x, np.ones_like(x, dtype=bool))
    beta = np.zeros(z_design.shape[2])
    beta[:n_t] = np.log((y.mean(0) + 0.5) / expo.mean(0))
    b = np.zeros(n_i)
    for _ in range(iters):
        eta = z_design @ beta + b[:, None]
        mu = expo * np.exp(eta)
        w = mu if theta is None else mu * theta / (theta + mu)
        work = eta + (y - mu) / mu
        cov = mean_covariance(1.0 / w, sigma2=1.0, tau2=tau2)
        fit = gls_fit(z_design, cov, work)
        resid = work - z_design @ fit.coef
        b = tau2 * np.linalg.solve(cov, resid[:, :, None])[:, :, 0].sum(axis=1)
        converged = np.max(np.abs(fit.coef - beta)) < 1e-10
        beta = fit.coef
        if converged:
            break
    return float(beta[-1]), float(np.sqrt(fit.cov[-1, -1]))


@pytest.mark.parametrize(
    ("family", "theta", "seed"), [("poisson", None, 11), ("negative_binomial", 30.0, 12)]
)
def test_count_power_against_simulation(family: str, theta: float | None, seed: int) -> None:
    d = Design.stepped_wedge(4, 3)
    x = d.matrix
    n_i, n_t = x.shape
    tau2, lrr, pop = 0.05, 0.15, 3000.0
    base = 0.01 * np.exp(0.05 * np.arange(n_t))
    kw: dict[str, object] = dict(
        family=family, baseline=base, exposure=pop, cluster_size=1, glmm_variance="alternative"
    )
    if theta is not None:
        kw["dispersion"] = theta
    res = power(d, effect=lrr, variance=VC(tau2=tau2), **kw)
    rng = np.random.default_rng(seed)
    n_sims = 2000
    z = ndtri(0.975)
    rejections = 0
    estimates = np.empty(n_sims)
    for k in range(n_sims):
        a = rng.normal(0.0, np.sqrt(tau2), n_i)
        mu = pop * base[None, :] * np.exp(lrr * x + a[:, None])
        if theta is None:
            y = rng.poisson(mu)
        else:
            y = rng.negative_binomial(theta, theta / (theta + mu))
        est, se = pql_known_variance(y.astype(float), np.full((n_i, n_t), pop), x, tau2, theta)
        estimates[k] = est
        rejections += abs(est / se) > z
    p_hat = rejections / n_sims
    mc_se = np.sqrt(res.power * (1 - res.power) / n_sims)
    assert abs(p_hat - res.power) < MC_K * mc_se
    # the analytic standard error matches the spread of the estimates (chi-square based SE
    # of an SD: sd / sqrt(2 (n - 1)))
    sd = estimates.std(ddof=1)
    assert abs(sd - res.std_error) < MC_K * sd / np.sqrt(2 * (n_sims - 1))


def pql_logit_known_variance(
    y: np.ndarray, n: np.ndarray, x: np.ndarray, tau2: float, iters: int = 50
) -> tuple[float, float]:
    n_i, n_t = y.shape
    z_design = pk.fixed_effects(x, np.ones_like(x, dtype=bool))
    beta = np.zeros(z_design.shape[2])
    pbar = (y.sum(0) + 0.5) / (n.sum(0) + 1.0)
    beta[:n_t] = np.log(pbar / (1 - pbar))
    b = np.zeros(n_i)
    for _ in range(iters):
        eta = z_design @ beta + b[:, None]
        p = 1 / (1 + np.exp(-eta))
        w = n * p * (1 - p)
        work = eta + (y - n * p) / w
        cov = mean_covariance(1.0 / w, sigma2=1.0, tau2=tau2)
        fit = gls_fit(z_design, cov, work)
        resid = work - z_design @ fit.coef
        b = tau2 * np.linalg.solve(cov, resid[:, :, None])[:, :, 0].sum(axis=1)
        converged = np.max(np.abs(fit.coef - beta)) < 1e-10
        beta = fit.coef
        if converged:
            break
    return float(beta[-1]), float(np.sqrt(fit.cov[-1, -1]))


def test_logit_power_against_simulation() -> None:
    d = Design.stepped_wedge(4, 3)
    x = d.matrix
    n_i, n_t = x.shape
    tau2, lor, m = 0.05, 0.3, 60
    base = np.linspace(0.2, 0.25, n_t)
    res = power(
        d,
        effect=lor,
        variance=VC(tau2=tau2),
        cluster_size=m,
        family="binomial",
        baseline=base,
        glmm_variance="alternative",
    )
    rng = np.random.default_rng(13)
    n_sims = 2000
    z = ndtri(0.975)
    logit0 = np.log(base / (1 - base))[None, :]
    trials = np.full((n_i, n_t), float(m))
    rejections = 0
    estimates = np.empty(n_sims)
    for k in range(n_sims):
        a = rng.normal(0.0, np.sqrt(tau2), n_i)
        p = 1 / (1 + np.exp(-(logit0 + lor * x + a[:, None])))
        y = rng.binomial(m, p).astype(float)
        est, se = pql_logit_known_variance(y, trials, x, tau2)
        estimates[k] = est
        rejections += abs(est / se) > z
    p_hat = rejections / n_sims
    mc_se = np.sqrt(res.power * (1 - res.power) / n_sims)
    assert abs(p_hat - res.power) < MC_K * mc_se
    sd = estimates.std(ddof=1)
    assert abs(sd - res.std_error) < MC_K * sd / np.sqrt(2 * (n_sims - 1))
