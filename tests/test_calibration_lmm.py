"""Calibration of the default Gaussian analysis (nested REML, Kenward-Roger): size and coverage.

Data are drawn from the nested-exchangeable model through its exact sufficient statistics:
cell means ``ybar_i ~ N(X_i beta, tau2 J + gamma2 I + sigma2/m I)`` and the pooled
within-cell sum of squares ``sigma2 * chi2(N - C)``, which have exactly the distribution that
individual rows would give.  Each replicate is fitted with the same engine and inference
code that :func:`steppedwedge.fit` uses (nested REML + Kenward-Roger), without building a
DataFrame, so that 3,000 fits take well under two minutes.

Checks: type-I error at theta = 0 and 95% CI coverage at theta = 0.3, for 8, 12 and 24
clusters (4 sequences, 5 periods, m = 10), each within ``MC_K`` Monte-Carlo standard errors
of nominal.  Beside KR the test records (``record_property``; shown with ``-rA``) what the
z test and t(I - 2) with the model-based SE give, which are not asserted: z is expected to
be anti-conservative with few clusters.
"""

from __future__ import annotations

import numpy as np
import pytest
from _tolerances import MC_K
from scipy import stats

from steppedwedge._core.reml import CellData, CovarianceStructure, fit_lmm
from steppedwedge.inference.dof import InferenceEngine

pytestmark = pytest.mark.slow

N_SIMS = 500
N_PERIODS = 5
M = 10
TAU2, GAMMA2, SIGMA2 = 0.05, 0.025, 1.0


def _design(n_clusters: int) -> tuple[np.ndarray, np.ndarray]:
    start = (np.arange(n_clusters) % (N_PERIODS - 1)) + 1
    trt = (np.arange(N_PERIODS)[None, :] >= start[:, None]).astype(float)
    x = np.concatenate(
        [
            np.ones((n_clusters, N_PERIODS, 1)),
            np.broadcast_to(np.eye(N_PERIODS)[:, 1:], (n_clusters, N_PERIODS, N_PERIODS - 1)),
            trt[:, :, None],
        ],
        axis=2,
    )
    return trt, x


def _replicate(rng, trt, x, theta):
    n_i, n_t = trt.shape
    cov = TAU2 * np.ones((n_t, n_t)) + (GAMMA2 + SIGMA2 / M) * np.eye(n_t)
    chol = np.linalg.cholesky(cov)
    beta = np.r_[0.0, 0.1 * np.arange(1, n_t), theta]
    ybar = x @ beta + rng.standard_normal((n_i, n_t)) @ chol.T
    n_within = n_i * n_t * (M - 1)
    within = np.zeros((x.shape[2] + 1, x.shape[2] + 1))
    within[-1, -1] = SIGMA2 * rng.chisquare(n_within)
    return CellData(
        n=np.full((n_i, n_t), float(M)),
        xbar=x,
        ybar=ybar,
        within=within,
        treatment=trt,
        times=np.arange(n_t, dtype=float),
    )


def _run(n_clusters: int, theta: float, seed: int):
    rng = np.random.default_rng(seed)
    trt, x = _design(n_clusters)
    nested = CovarianceStructure(intercept=True, cluster_period=True)
    c = np.zeros(x.shape[2])
    c[-1] = 1.0
    out = {"kr": [], "z": [], "t": []}
    q_z = stats.norm.ppf(0.975)
    q_t = stats.t.ppf(0.975, n_clusters - 2)
    for _ in range(N_SIMS):
        cells = _replicate(rng, trt, x, theta)
        fit = fit_lmm(cells, nested)
        inf = InferenceEngine(fit, cells, nested, "kenward-roger").contrast(c)
        q_kr = stats.t.ppf(0.975, inf.df)
        err = abs(inf.estimate - theta)
        se_model = float(np.sqrt(fit.cov_beta[-1, -1]))
        out["kr"].append(err > q_kr * inf.std_error)
        out["z"].append(err > q_z * se_model)
        out["t"].append(err > q_t * se_model)
    return {k: float(np.mean(v)) for k, v in out.items()}


@pytest.mark.parametrize("n_clusters", [8, 12, 24])
def test_kenward_roger_size_and_coverage(n_clusters, record_property):
    mc_se = np.sqrt(0.05 * 0.95 / N_SIMS)
    null = _run(n_clusters, 0.0, seed=1000 + n_clusters)
    alt = _run(n_clusters, 0.3, seed=2000 + n_clusters)
    coverage = {k: 1.0 - v for k, v in alt.items()}
    for k in ("kr", "z", "t"):
        record_property(f"type1_{k}", null[k])
        record_property(f"coverage_{k}", coverage[k])
    print(
        f"I={n_clusters}: type I KR {null['kr']:.3f}, z {null['z']:.3f}, t(I-2) {null['t']:.3f}; "
        f"coverage KR {coverage['kr']:.3f}, z {coverage['z']:.3f}, t(I-2) {coverage['t']:.3f}"
    )
    assert abs(null["kr"] - 0.05) <= MC_K * mc_se
    assert abs(coverage["kr"] - 0.95) <= MC_K * mc_se
