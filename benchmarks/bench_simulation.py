"""Simulated-power speed: 1,000 replicates of a 12 x 5 nested LMM, m = 20, with KR df.

Run: ``python benchmarks/bench_simulation.py [n_sims]`` (prints timings).  Target: <= 3 s
for 1,000 replicates on 2 cores, data generation and Kenward-Roger df included.  The
throughput per replicate is compared, in the same run, with refitting simulated individual
rows with statsmodels ``MixedLM`` (nested random effects as a variance component; no KR df
in statsmodels), which is what a simulation loop without the cell fast path costs.  The
functions ``time_*`` follow asv's naming so the file can also be collected by asv.
"""

from __future__ import annotations

import os
import sys
import time
import warnings

import numpy as np

import steppedwedge as sw
from steppedwedge.design import Design
from steppedwedge.planning.simulation import simulate_power
from steppedwedge.simulate import simulate

DESIGN = Design.stepped_wedge(4, 3)  # 12 clusters x 5 periods
VC = sw.VarianceComponents(sigma2=1.0, tau2=0.05, gamma2=0.02)
KW = dict(effect=0.3, variance=VC, cluster_size=20, progress=False)
ANALYSIS = {"random": "nested", "dof": "kenward-roger"}


def time_simulate_power_serial(n_sims: int = 200) -> float:
    t0 = time.perf_counter()
    simulate_power(DESIGN, analysis=ANALYSIS, n_sims=n_sims, rng=1, **KW)
    return time.perf_counter() - t0


def time_simulate_power_two_processes(n_sims: int = 1000) -> float:
    t0 = time.perf_counter()
    simulate_power(DESIGN, analysis=ANALYSIS, n_sims=n_sims, rng=1, n_jobs=2, **KW)
    return time.perf_counter() - t0


def time_refit_rows_with_sw_fit(n_sims: int = 20) -> float:
    t0 = time.perf_counter()
    simulate_power(DESIGN, analysis=ANALYSIS, n_sims=n_sims, rng=1, fast=False, **KW)
    return time.perf_counter() - t0


def time_statsmodels_mixedlm(n_sims: int = 20) -> float:
    import statsmodels.formula.api as smf

    rng = np.random.default_rng(1)
    t0 = time.perf_counter()
    for _ in range(n_sims):
        df = simulate(DESIGN, effect=0.3, variance=VC, cluster_size=20, rng=rng)
        model = smf.mixedlm(
            "outcome ~ C(period) + treatment",
            df,
            groups="cluster",
            vc_formula={"cp": "0 + C(period)"},
        )
        model.fit(reml=True)
    return time.perf_counter() - t0


def main() -> None:
    warnings.simplefilter("ignore")
    n_sims = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
    print(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}")
    simulate_power(DESIGN, analysis=ANALYSIS, n_sims=5, rng=0, **KW)  # warm-up (imports)

    c0 = time.process_time()
    t_serial = time_simulate_power_serial(200)
    cpu = (time.process_time() - c0) / 200
    per_serial = t_serial / 200
    print(
        f"fast path, serial:        {1e3 * per_serial:7.2f} ms / replicate "
        f"({1e3 * cpu:.2f} ms CPU; wall time suffers when other jobs share the cores)"
    )

    t_two = time_simulate_power_two_processes(n_sims)
    print(
        f"fast path, 2 processes:   {t_two:7.2f} s for {n_sims} replicates "
        f"({1e3 * t_two / n_sims:.2f} ms / replicate; target <= 3 s for 1,000)"
    )

    t_rows = time_refit_rows_with_sw_fit(20) / 20
    print(f"rows + sw.fit, serial:    {1e3 * t_rows:7.2f} ms / replicate")

    t_sm = time_statsmodels_mixedlm(20) / 20
    print(f"rows + statsmodels:       {1e3 * t_sm:7.2f} ms / replicate (no KR df)")
    print(f"speed-up of the fast path over statsmodels MixedLM: {t_sm / per_serial:.0f}x")


if __name__ == "__main__":
    main()
