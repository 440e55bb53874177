"""Benchmark: Gaussian nested REML fit, steppedwedge vs statsmodels MixedLM (same run).

Run ``python benchmarks/bench_lmm.py`` (not a test).  Prints:

1. a 12 x 5 stepped wedge with m = 200 per cell (12,000 rows): time of ``sw.fit`` from the
   DataFrame (aggregation + REML + Kenward-Roger), of the REML fit from formed cells, and of
   statsmodels ``MixedLM`` (REML, cluster + cluster-period variance components), the ratio,
   and both log-likelihoods (ours must be >= statsmodels');
2. the time of the REML fit from formed cells for m = 10 ... 5000 (should be flat in m);
3. one million individual rows read (validated), aggregated and fitted.
"""

from __future__ import annotations

import time
import warnings

import numpy as np
import pandas as pd


def simulate(n_clusters: int, n_periods: int, m: int, seed: int = 1) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    n_seq = n_periods - 1
    cl = np.repeat(np.arange(n_clusters), n_periods * m)
    per = np.tile(np.repeat(np.arange(n_periods), m), n_clusters)
    start = (np.arange(n_clusters) % n_seq) + 1
    x = (per >= start[cl]).astype(float)
    a = rng.normal(0, 0.3, n_clusters)[cl]
    c = rng.normal(0, 0.2, n_clusters * n_periods)[cl * n_periods + per]
    y = 0.1 * per + 0.3 * x + a + c + rng.normal(0, 1, cl.size)
    return pd.DataFrame({"cluster": cl, "period": per, "treatment": x, "y": y})


def best_of(fn, repeat: int) -> float:
    best = np.inf
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def cells_of(df: pd.DataFrame):
    from steppedwedge._core.reml import CellData
    from steppedwedge.data import TrialData

    cs = TrialData.from_frame(
        df, outcome="y", cluster="cluster", period="period", treatment="treatment"
    ).cells()
    n_i, n_t = cs.shape
    trt = np.nan_to_num(np.asarray(cs.treatment))
    x = np.concatenate(
        [
            np.ones((n_i, n_t, 1)),
            np.broadcast_to(np.eye(n_t)[:, 1:], (n_i, n_t, n_t - 1)),
            trt[:, :, None],
        ],
        axis=2,
    )
    within = np.zeros((n_t + 2, n_t + 2))
    within[-1, -1] = float(np.sum(cs.within_ss))
    return CellData(
        n=np.asarray(cs.n, float),
        xbar=x,
        ybar=np.nan_to_num(np.asarray(cs.mean)),
        within=within,
        treatment=trt,
        times=np.arange(n_t, dtype=float),
    )


def main() -> None:
    import statsmodels.formula.api as smf

    import steppedwedge.models as swm
    from steppedwedge._core.reml import CovarianceStructure, fit_lmm

    nested = CovarianceStructure(intercept=True, cluster_period=True)
    df = simulate(12, 5, 200)
    print(f"1) 12 x 5 design, m = 200 ({len(df)} rows)")
    t_fit = best_of(
        lambda: swm.fit(df, outcome="y", cluster="cluster", period="period", treatment="treatment"),
        5,
    )
    cells = cells_of(df)
    t_cells = best_of(lambda: fit_lmm(cells, nested), 50)
    ours = fit_lmm(cells, nested)

    def sm_fit():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            md = smf.mixedlm(
                "y ~ C(period) + treatment",
                df,
                groups="cluster",
                re_formula="1",
                vc_formula={"cp": "0 + C(period)"},
            )
            return md.fit(reml=True)

    t0 = time.perf_counter()
    sm = sm_fit()
    t_sm = time.perf_counter() - t0
    print(f"   statsmodels MixedLM REML : {t_sm * 1e3:9.1f} ms   loglik {sm.llf:.6f}")
    print(f"   sw.fit (rows -> KR)      : {t_fit * 1e3:9.1f} ms   ratio {t_sm / t_fit:7.1f}x")
    print(
        f"   REML from cells          : {t_cells * 1e3:9.3f} ms   ratio {t_sm / t_cells:7.1f}x   "
        f"loglik {ours.loglik:.6f} (>= statsmodels: {ours.loglik >= sm.llf - 1e-8})"
    )

    from steppedwedge._core.reml import CellData
    from steppedwedge.inference.dof import InferenceEngine

    contrast = np.zeros(cells.n_fixed)
    contrast[-1] = 1.0

    def replicate() -> None:
        fresh = CellData(
            n=cells.n,
            xbar=cells.xbar,
            ybar=cells.ybar,
            within=cells.within,
            treatment=cells.treatment,
            times=cells.times,
        )
        fitted = fit_lmm(fresh, nested)
        InferenceEngine(fitted, fresh, nested, "kenward-roger").contrast(contrast)

    t_rep = best_of(replicate, 30)
    print(f"   REML + KR from fresh cells (one simulated-power replicate): {t_rep * 1e3:.3f} ms")

    print("2) REML from formed cells vs m (12 x 5, nested)")
    for m in (10, 50, 200, 1000, 5000):
        c = cells_of(simulate(12, 5, m, seed=m))
        t = best_of(lambda c=c: fit_lmm(c, nested), 30)
        print(f"   m = {m:5d}: {t * 1e3:7.3f} ms")

    print("3) one million individual rows (40 clusters x 10 periods x 2500)")
    big = simulate(40, 10, 2500, seed=7)
    t0 = time.perf_counter()
    res = swm.fit(big, outcome="y", cluster="cluster", period="period", treatment="treatment")
    t_big = time.perf_counter() - t0
    print(
        f"   read + aggregate + REML + KR: {t_big:.2f} s  "
        f"(estimate {res.estimate:.4f}, df {res.df:.1f})"
    )


if __name__ == "__main__":
    main()
