"""Count-outcome planning speed: assurance over 2,000 draws and a 10,000-candidate search.

Run: ``nice -n 10 python benchmarks/bench_planning_counts.py``.  Targets (issue 11):

* 2,000-draw count assurance (Poisson GLMM on the link scale) <= 5 s;
* design search over 10,000 count-outcome candidates <= 20 s.

Both are reported with the ratio to the naive loop over :func:`steppedwedge.power` measured
in the same run (on a sample of the draws / candidates, extrapolated), and with the largest
difference from that loop (the batched path must reproduce it to rounding).  Scenario: the
17-council trial of the planning tutorial (20 quarters, seven waves, the councils' own
populations as exposure), components like a DfE-panel estimate with bootstrap spread.
``time_*`` functions follow asv's naming.
"""

from __future__ import annotations

import time

import numpy as np

import steppedwedge as sw

EFFECT = float(np.log(0.85))
BASELINE = 6.6e-4  # entries into care per child per quarter
POINT = sw.VarianceComponents(sigma2=0.0, tau2=0.33**2, gamma2=0.15**2, decay=0.68**0.25)


def _draws(n: int = 2000) -> list[sw.VarianceComponents]:
    """Bootstrap-like draws around POINT: gamma-distributed variances, beta decay."""
    gen = np.random.default_rng(1)
    tau2 = gen.gamma(20.0, POINT.tau2 / 20.0, n)
    gamma2 = gen.gamma(10.0, POINT.gamma2 / 10.0, n)
    decay = gen.beta(60.0, 60.0 * (1 - 0.908) / 0.908, n)
    return [
        sw.VarianceComponents(sigma2=0.0, tau2=t, gamma2=g, decay=r)
        for t, g, r in zip(tau2, gamma2, decay, strict=True)
    ]


def _trial() -> tuple[sw.Design, np.ndarray]:
    councils = sw.datasets.load_council_characteristics()
    design = sw.Design.from_start_dates(
        councils.set_index("council")["start_date"], "2022Q1/2026Q4"
    )
    return design, councils["population_0_17"].to_numpy(dtype=float)


def time_assurance() -> None:
    design, pop = _trial()
    sw.assurance(
        design,
        effect=EFFECT,
        variance=_draws(),
        family="poisson",
        baseline=BASELINE,
        cluster_size=pop,
    )


def time_search() -> None:
    sw.search_designs(
        n_clusters=17,
        n_periods=20,
        effect=EFFECT,
        variance=POINT,
        cluster_size=1,
        family="poisson",
        baseline=BASELINE,
        exposure=55_000.0,
        max_candidates=10_000,
        rng=1,
    )


def _seconds(f) -> float:  # type: ignore[no-untyped-def]
    t0 = time.perf_counter()
    f()
    return time.perf_counter() - t0


def _cpu_seconds(f) -> float:  # type: ignore[no-untyped-def]
    """CPU time of this process: close to the wall time of an idle machine."""
    t0 = time.process_time()
    f()
    return time.process_time() - t0


def main() -> None:
    design, pop = _trial()
    draws = _draws()
    kw = dict(family="poisson", baseline=BASELINE, cluster_size=pop)
    t_ours = min(_seconds(time_assurance) for _ in range(2))
    cpu_ours = _cpu_seconds(time_assurance)
    res = sw.assurance(design, effect=EFFECT, variance=draws, **kw)
    at_point = sw.power(design, effect=EFFECT, variance=POINT, **kw).power
    sample = 200
    t0 = time.perf_counter()
    loop = [sw.power(design, effect=EFFECT, variance=v, **kw).power for v in draws[:sample]]
    t_loop = (time.perf_counter() - t0) * len(draws) / sample
    diff = float(np.max(np.abs(res.power[:sample] - np.asarray(loop))))
    print(
        f"assurance, {len(draws)} draws, {design.n_clusters} councils x {design.n_periods} "
        f"quarters (Poisson): {t_ours:.2f} s wall, {cpu_ours:.2f} s CPU (target <= 5 s); "
        f"loop over power() {t_loop:.1f} s; ratio {t_loop / t_ours:.1f}x; max |difference| "
        f"{diff:.1e}; assurance {res.assurance:.3f}, power at the point {at_point:.3f}"
    )

    t_search = _seconds(time_search)
    cpu_search = _cpu_seconds(time_search)
    found = sw.search_designs(
        n_clusters=17,
        n_periods=20,
        effect=EFFECT,
        variance=POINT,
        cluster_size=1,
        family="poisson",
        baseline=BASELINE,
        exposure=55_000.0,
        max_candidates=10_000,
        rng=1,
    )
    kw_s = dict(family="poisson", baseline=BASELINE, cluster_size=1, exposure=55_000.0)
    sample = 30
    t0 = time.perf_counter()
    checks = [
        sw.power(found.design(k), effect=EFFECT, variance=POINT, **kw_s).power
        for k in range(sample)
    ]
    one = (time.perf_counter() - t0) / sample
    diff = float(np.max(np.abs(found.power[:sample] - np.asarray(checks))))
    print(
        f"count design search: {found.n_evaluated} candidates in {t_search:.2f} s wall, "
        f"{cpu_search:.2f} s CPU (target <= 20 s); loop over power() would take "
        f"{one * found.n_evaluated:.0f} s; ratio {one * found.n_evaluated / t_search:.0f}x; "
        f"max |difference| {diff:.1e}"
    )


if __name__ == "__main__":
    main()
