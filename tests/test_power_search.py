"""Design search: ranking equals brute-force power of every candidate design."""

from __future__ import annotations

import numpy as np
import pytest
from _tolerances import LINALG

from steppedwedge.design import Design
from steppedwedge.exceptions import DesignError
from steppedwedge.power import power, search_designs
from steppedwedge.variance import VarianceComponents as VC


def brute_force(n_i: int, n_t: int, vc: VC, m: float, **kw: object) -> dict[tuple, float]:
    out = {}
    pats = np.array([[1.0 if j >= p else 0.0 for j in range(n_t)] for p in range(1, n_t)])

    def rec(prefix: list[int], left: int, k: int):
        if k == 1:
            yield [*prefix, left]
            return
        for v in range(left + 1):
            yield from rec([*prefix, v], left - v, k - 1)

    for g in rec([], n_i, n_t - 1):
        if sum(1 for x in g if x) < 2:
            continue
        try:
            d = Design.from_matrix(np.repeat(pats, g, axis=0))
        except DesignError:
            continue
        out[tuple(g)] = power(d, effect=0.3, variance=vc, cluster_size=m, **kw).variance
    return out


@pytest.mark.parametrize(
    "vc", [VC.from_correlations(0.05), VC.from_correlations(0.1, cac=0.6, decay=0.5)]
)
def test_exhaustive_search_matches_brute_force(vc: VC) -> None:
    res = search_designs(n_clusters=6, n_periods=4, effect=0.3, variance=vc, cluster_size=10)
    ref = brute_force(6, 4, vc, 10)
    assert res.exhaustive and res.n_evaluated == len(ref)
    for alloc, v in zip(res.allocations, res.variance, strict=True):
        np.testing.assert_allclose(v, ref[tuple(alloc)], **LINALG)
    assert min(ref.values()) == pytest.approx(res.variance[0], rel=1e-10)
    np.testing.assert_allclose(
        power(res.best, effect=0.3, variance=vc, cluster_size=10).power, res.power[0], **LINALG
    )


def test_hussey_hughes_optimum_favours_outer_sequences() -> None:
    # Lawrie, Carlin & Forbes (2015): under HH the optimal allocation puts more clusters in
    # the first and last sequences
    res = search_designs(
        n_clusters=8, n_periods=5, effect=0.3, variance=VC.from_correlations(0.05), cluster_size=20
    )
    g = res.allocations[0]
    assert g[0] > g[1] and g[-1] > g[-2]


def test_link_scale_search_uses_null_and_alternative() -> None:
    vc = VC(tau2=0.1)
    kw = dict(family="poisson", baseline=0.5, exposure=10.0)
    res = search_designs(
        n_clusters=6, n_periods=4, effect=np.log(1.4), variance=vc, cluster_size=1, **kw
    )
    for r in range(3):
        p = power(res.design(r), effect=np.log(1.4), variance=vc, cluster_size=1, **kw)
        np.testing.assert_allclose(res.power[r], p.power, **LINALG)


def test_constraints_and_sampling() -> None:
    vc = VC.from_correlations(0.05)
    res = search_designs(
        n_clusters=12,
        n_periods=6,
        effect=0.3,
        variance=vc,
        cluster_size=10,
        min_per_sequence=2,
        max_sequences=3,
    )
    used = res.allocations > 0
    assert np.all(used.sum(axis=1) <= 3)
    assert np.all(res.allocations[used] >= 2)
    big = search_designs(
        n_clusters=30,
        n_periods=8,
        effect=0.3,
        variance=vc,
        cluster_size=10,
        max_candidates=500,
        rng=3,
        include_parallel=True,
    )
    assert not big.exhaustive and big.n_evaluated <= 500 + 8
    assert np.all(np.diff(big.variance) >= 0)
    with pytest.raises(ValueError, match="constraints"):
        search_designs(
            n_clusters=3, n_periods=3, effect=0.3, variance=vc, cluster_size=10, min_per_sequence=2
        )
    tab = res.table(3)
    assert list(tab["rank"]) == [0, 1, 2]


def test_transition_and_custom_patterns() -> None:
    vc = VC.from_correlations(0.05, cac=0.8)
    res = search_designs(
        n_clusters=6, n_periods=5, effect=0.3, variance=vc, cluster_size=10, transition_periods=1
    )
    assert np.isnan(res.patterns).any()
    for r in range(3):
        np.testing.assert_allclose(
            res.variance[r],
            power(res.design(r), effect=0.3, variance=vc, cluster_size=10).variance,
            **LINALG,
        )
    nan = np.nan
    pats = np.array([[0, 1, 1, 1], [0, 0, 1, 1], [0, 0, 0, 1], [0, 0.5, 1, 1], [nan, 0, 0, 1]])
    own = search_designs(
        n_clusters=5, n_periods=4, effect=0.3, variance=vc, cluster_size=10, patterns=pats
    )
    assert own.exhaustive
    best = own.design(0)
    np.testing.assert_allclose(
        own.variance[0], power(best, effect=0.3, variance=vc, cluster_size=10).variance, **LINALG
    )
    with pytest.raises(ValueError, match="patterns"):
        search_designs(
            n_clusters=5, n_periods=5, effect=0.3, variance=vc, cluster_size=10, patterns=pats
        )
