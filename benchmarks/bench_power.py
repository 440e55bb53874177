"""Analytic power speed: single evaluations, vectorised grids and design search.

Run: ``python benchmarks/bench_power.py``.  Targets (issue 4):

* 152 councils x 9 periods: <= 20 ms per power evaluation (nested + decay covariance,
  unequal council sizes, a staggered rollout);
* standard designs: >= 100,000 scenarios/s with :func:`power_grid`;
* design search over 10,000 candidates: <= 10 s.

Each is reported with the ratio to a naive baseline measured in the same run (dense GLS on
the stacked cells; a Python loop over :func:`power`), so the numbers are comparable across
machines.  ``time_*`` functions follow asv's naming.
"""

from __future__ import annotations

import time

import numpy as np

from steppedwedge.design import Design
from steppedwedge.planning import power, power_grid, search_designs
from steppedwedge.variance import VarianceComponents

N_COUNCILS, N_PERIODS = 152, 9
VC = VarianceComponents.from_correlations(0.05, cac=0.6, decay=0.8)


def _councils() -> tuple[Design, np.ndarray]:
    rng = np.random.default_rng(1)
    start = rng.integers(1, N_PERIODS, N_COUNCILS)
    x = (np.arange(N_PERIODS)[None, :] >= start[:, None]).astype(float)
    sizes = rng.integers(20, 400, (N_COUNCILS, N_PERIODS)).astype(float)
    return Design.from_matrix(x), sizes


def _dense_variance(design: Design, sizes: np.ndarray) -> float:
    """Naive baseline: build the full (I*T) x (I*T) covariance and invert densely."""
    x = design.matrix
    n_i, n_t = x.shape
    n = n_i * n_t
    z = np.zeros((n, n_t + 1))
    z[np.arange(n), np.tile(np.arange(n_t), n_i)] = 1.0
    z[:, -1] = x.ravel()
    v = np.zeros((n, n))
    lag = np.abs(np.arange(n_t)[:, None] - np.arange(n_t)[None, :])
    block = VC.tau2 + VC.gamma2 * VC.decay**lag
    for i in range(n_i):
        sl = slice(i * n_t, (i + 1) * n_t)
        v[sl, sl] = block + np.diag(VC.sigma2 / sizes[i])
    info = z.T @ np.linalg.solve(v, z)
    return float(np.linalg.inv(info)[-1, -1])


def _best_of(f, repeat: int = 5) -> float:
    best = np.inf
    for _ in range(repeat):
        t0 = time.perf_counter()
        f()
        best = min(best, time.perf_counter() - t0)
    return best


def time_councils() -> None:
    d, sizes = _councils()
    power(d, effect=0.1, variance=VC, cluster_size=sizes)


def time_grid() -> None:
    d = Design.stepped_wedge(5, 4)
    power_grid(
        d,
        effect=0.2,
        icc=np.linspace(0.001, 0.3, 1000)[:, None],
        cac=np.linspace(0, 1, 100)[None, :],
        cluster_size=20,
    )


def time_search() -> None:
    search_designs(
        n_clusters=40,
        n_periods=9,
        effect=0.2,
        variance=VC,
        cluster_size=20,
        include_parallel=True,
        max_candidates=10_000,
        rng=1,
    )


def main() -> None:
    d, sizes = _councils()
    ours = _best_of(time_councils)
    dense = _best_of(lambda: _dense_variance(d, sizes), repeat=2)
    v_ours = power(d, effect=0.1, variance=VC, cluster_size=sizes).variance
    assert abs(v_ours / _dense_variance(d, sizes) - 1) < 1e-8
    print(
        f"152 x 9 power evaluation: {1e3 * ours:.2f} ms (target <= 20 ms); dense GLS "
        f"{1e3 * dense:.1f} ms; ratio {dense / ours:.0f}x"
    )

    n_scen = 100_000
    grid_t = _best_of(time_grid)
    std = Design.stepped_wedge(5, 4)
    loop_n = 200
    loop_t = _best_of(
        lambda: [
            power(
                std,
                effect=0.2,
                variance=VarianceComponents.from_correlations(0.001 + 0.3 * k / loop_n),
                cluster_size=20,
            )
            for k in range(loop_n)
        ],
        repeat=1,
    )
    rate = n_scen / grid_t
    print(
        f"power_grid: {rate:,.0f} scenarios/s (target >= 100,000); loop over power(): "
        f"{loop_n / loop_t:,.0f}/s; ratio {rate / (loop_n / loop_t):.0f}x"
    )

    search_t = _best_of(time_search, repeat=1)
    res = search_designs(
        n_clusters=40,
        n_periods=9,
        effect=0.2,
        variance=VC,
        cluster_size=20,
        include_parallel=True,
        max_candidates=10_000,
        rng=1,
    )
    sample = 50
    one_t = (
        _best_of(
            lambda: [
                power(res.design(k), effect=0.2, variance=VC, cluster_size=20)
                for k in range(sample)
            ],
            repeat=1,
        )
        / sample
    )
    print(
        f"design search: {res.n_evaluated} candidates in {search_t:.2f} s (target <= 10 s); "
        f"loop over power() would take {one_t * res.n_evaluated:.1f} s; ratio "
        f"{one_t * res.n_evaluated / search_t:.0f}x"
    )


if __name__ == "__main__":
    main()
