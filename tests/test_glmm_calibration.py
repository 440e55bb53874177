"""Monte-Carlo calibration of the default count analysis (Poisson-lognormal GLMM, Laplace).

Data: Poisson counts with a population offset, a council effect (SD 0.15) and a
council-quarter effect (SD 0.10), a secular trend, stepped-wedge rollout; analysed with
``fit_glmm(family="poisson", exposure=..., random="nested")`` (the default structure) and
the default ``dof="clusters"`` (t with I - 2 df).  Checks, for 12 and 17 clusters: type-I
error of the 5% test under no effect (400 replicates) and 95% CI coverage of the log rate
ratio under RR = 0.85 (200 replicates), each within ``MC_K`` Monte-Carlo SEs.  The Wald z
test on the same null replicates is recorded for comparison.

Recorded (seeds below; MC SE 1.1% at 400 replicates):

=========  =======  ============  ==============  ========
clusters   periods  z (normal)    t, I - 2 df      BW (t)
=========  =======  ============  ==============  ========
12         7        7.75%         5.25% (df 10)    7.25% (df 65)
17         12       5.00%         3.25% (df 15)    5.00% (df 175)
=========  =======  ============  ==============  ========
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from _tolerances import MC_K
from scipy import stats

from steppedwedge.models.glmm import fit_glmm

pytestmark = pytest.mark.slow

N_NULL = 400
N_COVER = 200


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


def _fits(n_clusters: int, n_periods: int, log_rr: float, seed: int, n_sim: int) -> list:
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n_sim):
        d = _simulate(rng, n_clusters, n_periods, log_rr)
        out.append(
            fit_glmm(
                d,
                outcome="y",
                cluster="la",
                period="q",
                treatment="x",
                family="poisson",
                exposure="pop",
            )
        )
    return out


@pytest.mark.parametrize(("n_clusters", "n_periods"), [(12, 7), (17, 12)])
def test_type_one_error_and_coverage(n_clusters: int, n_periods: int) -> None:
    null = _fits(n_clusters, n_periods, 0.0, seed=100 + n_clusters, n_sim=N_NULL)
    assert all(r.df == n_clusters - 2 for r in null)
    alpha_t = float(np.mean([r.pvalue < 0.05 for r in null]))
    stat = np.array([abs(r.estimate / r.std_error) for r in null])
    alpha_z = float(np.mean(stat > stats.norm.ppf(0.975)))
    alt = _fits(n_clusters, n_periods, math.log(0.85), seed=200 + n_clusters, n_sim=N_COVER)
    cover = float(np.mean([lo <= math.log(0.85) <= hi for lo, hi in (r.conf_int() for r in alt)]))
    print(
        f"\n{n_clusters} clusters: type-I error t(I-2) {alpha_t:.4f}, z {alpha_z:.4f} "
        f"({N_NULL} replicates); coverage {cover:.3f} ({N_COVER} replicates)"
    )
    assert alpha_t <= alpha_z
    assert abs(alpha_t - 0.05) <= MC_K * math.sqrt(0.05 * 0.95 / N_NULL), alpha_t
    assert abs(cover - 0.95) <= MC_K * math.sqrt(0.05 * 0.95 / N_COVER), cover
