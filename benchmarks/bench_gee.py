"""GEE speed: exchangeable binary GEE with KC/MD on a large stepped-wedge trial.

Run: ``python benchmarks/bench_gee.py`` (prints timings; the ratio to statsmodels is the
number to watch, both measured in the same run).  Target: <= 20 ms per fit once the
cluster-period cells are formed, for 17 clusters x 12 periods (1 million individual rows).
The functions ``time_*`` follow asv's naming so the file can also be collected by asv.
"""

from __future__ import annotations

import time
import warnings

import numpy as np
import pandas as pd

from steppedwedge.data import TrialData
from steppedwedge.models.gee import fit_gee

I, T = 17, 12  # noqa: E741


def _design() -> np.ndarray:
    start = 1 + (np.arange(I) % (T - 1))  # 11 sequences
    return (np.arange(T)[None, :] >= start[:, None]).astype(float)


def make_individual(m: int, seed: int = 1) -> pd.DataFrame:
    """Individual 0/1 rows, ``m`` per cluster-period, nested random effects on logit scale."""
    rng = np.random.default_rng(seed)
    X = _design()
    eta = (
        -1.0
        + 0.05 * np.arange(T)[None, :]
        + 0.4 * X
        + rng.normal(0, 0.3, (I, 1))
        + rng.normal(0, 0.1, (I, T))
    )
    p = 1 / (1 + np.exp(-eta))
    ci, tj = np.meshgrid(np.arange(I), np.arange(T), indexing="ij")
    cl = np.repeat(ci.ravel(), m)
    pe = np.repeat(tj.ravel(), m)
    y = (rng.random(cl.size) < p.ravel()[cl * T + pe]).astype(np.int8)
    return pd.DataFrame({"cluster": cl, "period": pe, "treatment": X.ravel()[cl * T + pe], "y": y})


def _timeit(f, repeat: int = 20) -> float:
    f()
    best = np.inf
    for _ in range(repeat):
        t0 = time.perf_counter()
        f()
        best = min(best, time.perf_counter() - t0)
    return best


def main() -> None:
    warnings.simplefilter("ignore")
    # 1 million rows: 17 x 12 cells x 4902 individuals
    big = make_individual(4902)
    t0 = time.perf_counter()
    td = TrialData.from_frame(
        big,
        outcome="y",
        cluster="cluster",
        period="period",
        treatment="treatment",
        family="binomial",
    )
    td.cells()
    t_cells = time.perf_counter() - t0
    res = {}
    for v in ("kc", "md"):
        res[v] = _timeit(lambda v=v: fit_gee(td, corstr="exchangeable", vcov=v))
    r = fit_gee(td, corstr="exchangeable", vcov="md")
    print(f"rows: {len(big):,}; validate + form cells: {t_cells * 1e3:.0f} ms")
    print(
        f"steppedwedge GEE exchangeable, KC: {res['kc'] * 1e3:.2f} ms; "
        f"MD: {res['md'] * 1e3:.2f} ms  (theta = {r.estimate:.5f}, "
        f"SE_MD = {r.std_error:.5f}, alpha = {r.correlation['alpha']:.5f})"
    )

    # statsmodels, same model, in the same run.  Its Mancl-DeRouen correction forms
    # n_i x n_i matrices (minutes at 6,000 rows per cluster), so it is timed at
    # m = 50 per cell (10,200 rows); the robust fit is also timed at m = 500 (102,000 rows).
    import statsmodels.api as sm

    for m, cov in ((50, "bias_reduced"), (500, "robust")):
        small = make_individual(m, seed=2)
        tds = TrialData.from_frame(
            small,
            outcome="y",
            cluster="cluster",
            period="period",
            treatment="treatment",
            family="binomial",
        )
        tds.cells()
        vc = "md" if cov == "bias_reduced" else "robust"
        ours = _timeit(lambda tds=tds, vc=vc: fit_gee(tds, corstr="exchangeable", vcov=vc))
        Xs = pd.get_dummies(small["period"], prefix="p", dtype=float)
        Xs["treatment"] = small["treatment"]
        t0 = time.perf_counter()
        mod = sm.GEE(
            small["y"].astype(float),
            Xs,
            groups=small["cluster"],
            family=sm.families.Binomial(),
            cov_struct=sm.cov_struct.Exchangeable(),
        )
        smr = mod.fit(cov_type=cov)
        t_sm = time.perf_counter() - t0
        ro = fit_gee(tds, corstr="exchangeable", vcov=vc)
        print(
            f"{len(small):,} rows, vcov={vc}: steppedwedge {ours * 1e3:.2f} ms (cells formed) "
            f"vs statsmodels {t_sm * 1e3:.0f} ms (x{t_sm / ours:.0f}); theta "
            f"{ro.estimate:.6f} vs {smr.params['treatment']:.6f}, SE {ro.std_error:.6f} vs "
            f"{smr.bse['treatment']:.6f} (alpha estimators differ slightly)"
        )


def time_gee_exchangeable_md_1m_rows_cells_formed() -> None:  # asv
    fit_gee(_TD, corstr="exchangeable", vcov="md")


def setup() -> None:  # asv
    global _TD
    _TD = TrialData.from_frame(
        make_individual(4902),
        outcome="y",
        cluster="cluster",
        period="period",
        treatment="treatment",
        family="binomial",
    )
    _TD.cells()


if __name__ == "__main__":
    main()
