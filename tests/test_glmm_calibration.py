"""Monte-Carlo calibration of the default count analysis (Poisson-lognormal GLMM, Laplace, Wald z).

Data: Poisson counts with a population offset, a council effect (SD 0.15) and a
council-quarter effect (SD 0.10), a secular trend, stepped-wedge rollout; analysed with
``fit_glmm(family="poisson", exposure=..., random="nested")`` (the default structure).
Checks, for 12 and 17 clusters: type-I error of the 5% Wald test under no effect, and 95%
CI coverage of the log rate ratio under RR = 0.85, each within ``MC_K`` Monte-Carlo SEs.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from _tolerances import MC_K

from steppedwedge.models.glmm import fit_glmm

pytestmark = pytest.mark.slow

N_SIM = 200


def _simulate(
    rng: np.random.Generator, n_clusters: int, n_periods: int, log_rr: float
) -> pd.DataFrame:
    cl = np.repeat(np.arange(n_clusters), n_periods)
    per = np.tile(np.arange(n_periods), n_clusters)
    start = 1 + np.arange(n_clusters) % (n_periods - 1)
    x = (per >= start[cl]).astype(int)
    pop = rng.integers(60_000, 300_000, n_clusters)[cl]
    u = rng.normal(0, 0.15, n_clusters)[cl] + rng.normal(0, 0.10, cl.size)
    mu = pop * 4e-4 * np.exp(0.02 * per + log_rr * x + u)
    return pd.DataFrame({"la": cl, "q": per, "x": x, "pop": pop, "y": rng.poisson(mu)})


def _rates(n_clusters: int, n_periods: int, log_rr: float, seed: int) -> tuple[float, float]:
    rng = np.random.default_rng(seed)
    reject = cover = 0
    for _ in range(N_SIM):
        d = _simulate(rng, n_clusters, n_periods, log_rr)
        res = fit_glmm(
            d,
            outcome="y",
            cluster="la",
            period="q",
            treatment="x",
            family="poisson",
            exposure="pop",
        )
        lo, hi = res.conf_int()
        reject += res.pvalue < 0.05
        cover += lo <= log_rr <= hi
    return reject / N_SIM, cover / N_SIM


@pytest.mark.parametrize(("n_clusters", "n_periods"), [(12, 7), (17, 12)])
def test_type_one_error_and_coverage(n_clusters: int, n_periods: int) -> None:
    alpha_hat, _ = _rates(n_clusters, n_periods, 0.0, seed=100 + n_clusters)
    _, cover_hat = _rates(n_clusters, n_periods, math.log(0.85), seed=200 + n_clusters)
    se_a = math.sqrt(0.05 * 0.95 / N_SIM)
    print(
        f"\n{n_clusters} clusters: type-I error {alpha_hat:.3f}, "
        f"coverage {cover_hat:.3f} ({N_SIM} replicates)"
    )
    assert abs(alpha_hat - 0.05) <= MC_K * se_a, alpha_hat
    assert abs(cover_hat - 0.95) <= MC_K * se_a, cover_hat
