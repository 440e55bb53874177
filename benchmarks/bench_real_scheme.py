"""Null simulation of the Family Safeguarding-like trial under its real randomisation scheme.

Run: ``python benchmarks/bench_real_scheme.py [n_sims] [n_jobs]`` (default 1000 replicates
on 2 processes; prints timings and the extrapolation to 10,000 trials).

The analysis is the evaluators' check of their primary model (Foundations' public
``04_simulation_GLMM.R``): 5 councils re-drawn to waves within the readiness strata (12
admissible allocations), outcomes Bernoulli with each council's published baseline risk
(0.0613, 0.0635, 0.0833, 0.0321, 0.0345), the per-council, per-period numbers of children of
the synthetic FS-like referral cohort (27,425 children, about 27,300 in the cohort, over six
periods), and a random-intercept logistic GLMM with period effects (Laplace, Wald z).  The
evaluators reported a type-I error of 5.69% from 10,000 trials.  Binomial outcomes are
simulated and fitted as cluster-period counts (30 rows), whose GLMM likelihood equals the
likelihood of the 27,000 Bernoulli rows up to a constant, so estimates and tests are those of
a fit to the rows.  The ``time_*`` functions follow asv's naming.
"""

from __future__ import annotations

import os
import sys
import time

import steppedwedge as sw
from steppedwedge.planning.simulation import null_simulation_plan

TARGET_TRIALS = 10_000


def _plan():  # type: ignore[no-untyped-def]
    return null_simulation_plan(sw.datasets.make_fs_like(rng=2026))


def time_null_simulation(n_sims: int = 200, n_jobs: int = 2) -> float:
    plan = _plan()
    t0 = time.perf_counter()
    plan.simulate_power(n_sims=n_sims, rng=1, n_jobs=n_jobs, progress=False)
    return time.perf_counter() - t0


def main() -> None:
    n_sims = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
    n_jobs = int(sys.argv[2]) if len(sys.argv) > 2 else 2
    plan = _plan()
    print(f"cores visible: {os.cpu_count()}; n_sims={n_sims}, n_jobs={n_jobs}")
    print(f"children per council x period (total {int(plan.cluster_size.sum())}):")
    print(plan.cluster_size.astype(int))
    t0 = time.perf_counter()
    serial = plan.simulate_power(n_sims=min(n_sims, 100), rng=7, progress=False)
    t_serial = (time.perf_counter() - t0) / serial.n_sims
    t0 = time.perf_counter()
    res = plan.simulate_power(n_sims=n_sims, rng=1, n_jobs=n_jobs, progress=False)
    wall = time.perf_counter() - t0
    per = wall / n_sims
    low, high = res.conf_int()
    print(f"serial: {1000 * t_serial:.1f} ms per replicate (one core)")
    print(f"{n_jobs} processes: {wall:.1f} s for {n_sims} -> {1000 * per:.1f} ms per replicate")
    print(
        f"extrapolated {TARGET_TRIALS:,} trials on {n_jobs} cores: "
        f"{per * TARGET_TRIALS:.0f} s = {per * TARGET_TRIALS / 60:.1f} min"
    )
    print(
        f"type-I error {res.type_i_error:.4f} (MC s.e. {res.mc_std_error:.4f}, 95% CI "
        f"{low:.4f} to {high:.4f}); evaluators' 0.0569; coverage {res.coverage:.4f}; "
        f"failures {res.n_failed}, singular {int(res.status_counts['singular'])}"
    )


if __name__ == "__main__":
    main()
