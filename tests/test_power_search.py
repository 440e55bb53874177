"""Design search: ranking equals brute-force power of every candidate design."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest
from _tolerances import LINALG, LINALG_REL, ZERO_ATOL_1E12

from steppedwedge.design import Design
from steppedwedge.exceptions import DesignError, OptionError, SolveError
from steppedwedge.planning import assurance, power, search_designs
from steppedwedge.variance import VarianceComponents as VC


def brute_force(
    n_i: int, n_t: int, vc: VC, m: float, effect: float = 0.3, **kw: object
) -> dict[tuple, float]:
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
        out[tuple(g)] = power(d, effect=effect, variance=vc, cluster_size=m, **kw).variance
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
    assert min(ref.values()) == pytest.approx(res.variance[0], rel=LINALG_REL)
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


# --------------------------------------------------------------------------- count families
COUNTS = dict(family="poisson", baseline=6.6e-4, exposure=55_000.0)
VC_COUNTS = VC(sigma2=0.0, tau2=0.1, gamma2=0.02, decay=0.8)


def test_count_search_over_cluster_numbers_matches_power() -> None:
    res = search_designs(
        n_clusters=range(4, 8),
        n_periods=5,
        effect=np.log(0.85),
        variance=VC_COUNTS,
        cluster_size=1,
        **COUNTS,
    )
    assert res.exhaustive and res.family == "poisson"
    sizes = res.allocations.sum(axis=1)
    assert set(sizes) == {4, 5, 6, 7}
    # every candidate of 6 councils is there: brute force over the same allocations
    ref = brute_force(6, 5, VC_COUNTS, 1, effect=np.log(0.85), **COUNTS)
    six = {tuple(a): v for a, v in zip(res.allocations, res.variance, strict=True) if a.sum() == 6}
    assert set(six) == set(ref)
    for alloc, v in six.items():
        np.testing.assert_allclose(v, ref[alloc], **LINALG)
    for r in (0, 5, res.n_evaluated - 1):
        p = power(res.design(r), effect=np.log(0.85), variance=VC_COUNTS, cluster_size=1, **COUNTS)
        np.testing.assert_allclose(res.power[r], p.power, **LINALG)
    best = res.best_per_size()
    assert best["n_clusters"].tolist() == [4, 5, 6, 7]
    # link scale (null-alternative): ranked by power, which uses both variances
    assert np.all(np.diff(res.power) <= 0)
    assert best.loc[best["n_clusters"] == 6, "power"].item() == res.power[sizes == 6].max()
    assert "Best candidate per size" in str(res)
    assert res.costs()["n_clusters"].tolist() == sizes.tolist()
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ax = res.plot(cost="n_clusters")
    assert ax.get_xlabel() == "n clusters"
    # the frontier: the best power among candidates with at most that many clusters
    front = np.asarray(ax.lines[0].get_ydata(), dtype=float)
    assert front.max() == pytest.approx(res.power[0]) and np.all(np.diff(front) >= 0)
    plt.close("all")


def test_search_over_trial_lengths() -> None:
    gen = np.random.default_rng(7)
    draws = tuple(VC(sigma2=0.0, tau2=0.1, gamma2=g, decay=0.8) for g in gen.uniform(0, 0.04, 8))
    res = search_designs(
        n_clusters=[5, 6],
        n_periods=[4, 5, 6],
        effect=np.log(0.85),
        variance=_Estimate(VC_COUNTS, draws),
        cluster_size=1,
        n_assurance=12,
        **COUNTS,
    )
    assert res.n_periods is not None and set(res.n_periods) == {4, 5, 6}
    assert res.patterns.shape == (3 + 4 + 5, 6)
    t = res.tidy()
    assert len(res.best_per_size()) == 6
    for r in (0, 3, 11, len(t) // 2, len(t) - 1):
        d = res.design(r)
        assert d.n_periods == t["n_periods"].iloc[r] and d.n_clusters == t["n_clusters"].iloc[r]
        p = power(d, effect=np.log(0.85), variance=VC_COUNTS, cluster_size=1, **COUNTS)
        np.testing.assert_allclose(res.variance[r], p.variance, **LINALG)
        np.testing.assert_allclose(res.power[r], p.power, **LINALG)
    # longer trials and more councils always help at the best allocation
    best = res.best_per_size().set_index(["n_clusters", "n_periods"])["variance"]
    assert best[(6, 6)] < best[(6, 5)] < best[(6, 4)] and best[(6, 6)] < best[(5, 6)]
    assert res.assurance is not None
    for r in range(12):
        ref = assurance(
            res.design(r), effect=np.log(0.85), variance=list(draws), cluster_size=1, **COUNTS
        )
        np.testing.assert_allclose(res.assurance[r], ref.assurance, rtol=0, atol=ZERO_ATOL_1E12)
    assert res.costs()["n_periods"].tolist() == t["n_periods"].tolist()
    # the cheapest design reaching a target: brute force over the table
    for target, cost in ((0.2, "n_clusters"), (0.25, "n_periods"), (0.3, "measured_cells")):
        r = res.cheapest(target, cost=cost)
        reach = t[t["power"] >= target]
        assert t[cost].iloc[r] == reach[cost].min()
        assert t["power"].iloc[r] == reach.loc[reach[cost] == reach[cost].min(), "power"].max()
    ra = res.cheapest(0.25, by="assurance")
    assert res.assurance[ra] >= 0.25 and ra < 12
    with pytest.raises(SolveError, match="no candidate reaches power 0.99"):
        res.cheapest(0.99)


def test_negative_binomial_search_with_exposure() -> None:
    kw = dict(family="negative_binomial", baseline=6.6e-4, exposure=40_000.0, dispersion=30.0)
    res = search_designs(
        n_clusters=9,
        n_periods=6,
        effect=np.log(0.8),
        variance=VC_COUNTS,
        cluster_size=1,
        max_candidates=300,
        rng=2,
        **kw,
    )
    assert not res.exhaustive
    for r in (0, 1, 2):
        p = power(res.design(r), effect=np.log(0.8), variance=VC_COUNTS, cluster_size=1, **kw)
        np.testing.assert_allclose(res.variance[r], p.variance, **LINALG)
        np.testing.assert_allclose(res.power[r], p.power, **LINALG)


@dataclass(frozen=True)
class _Estimate:
    variance: VC
    draws: tuple[VC, ...]


def test_search_with_an_estimate_gives_assurance_of_the_best() -> None:
    gen = np.random.default_rng(4)
    draws = tuple(
        VC(sigma2=0.0, tau2=t, gamma2=g, decay=r)
        for t, g, r in zip(
            gen.gamma(8, 0.1 / 8, 30), gen.gamma(6, 0.02 / 6, 30), gen.beta(16, 4, 30), strict=True
        )
    )
    est = _Estimate(VC_COUNTS, draws)
    res = search_designs(
        n_clusters=7,
        n_periods=5,
        effect=np.log(0.85),
        variance=est,
        cluster_size=1,
        n_assurance=3,
        **COUNTS,
    )
    at_point = search_designs(
        n_clusters=7,
        n_periods=5,
        effect=np.log(0.85),
        variance=VC_COUNTS,
        cluster_size=1,
        **COUNTS,
    )
    np.testing.assert_array_equal(res.variance, at_point.variance)
    assert res.assurance is not None and at_point.assurance is None
    assert np.isnan(res.assurance[3:]).all()
    for r in range(3):
        ref = assurance(
            res.design(r), effect=np.log(0.85), variance=list(draws), cluster_size=1, **COUNTS
        )
        np.testing.assert_allclose(res.assurance[r], ref.assurance, rtol=0, atol=ZERO_ATOL_1E12)
    assert "assurance" in res.tidy().columns and "best assurance" in str(res)


def test_search_bad_input() -> None:
    with pytest.raises(OptionError, match="one `exposure` for every cluster"):
        search_designs(
            n_clusters=4,
            n_periods=4,
            effect=-0.2,
            variance=VC_COUNTS,
            cluster_size=1,
            family="poisson",
            baseline=1e-3,
            exposure=[1e4, 2e4, 3e4, 4e4],
        )
    with pytest.raises(OptionError, match="point estimate"):
        search_designs(
            n_clusters=4,
            n_periods=4,
            effect=-0.2,
            variance=[VC_COUNTS],
            cluster_size=1,
            **COUNTS,
        )
    with pytest.raises(OptionError, match=r"unknown option\(s\) \['dof'\]"):
        search_designs(
            n_clusters=4, n_periods=4, effect=0.2, variance=VC(), cluster_size=1, dof="residual"
        )
    with pytest.raises(OptionError, match="n_clusters"):
        search_designs(n_clusters=[4, 5.5], n_periods=4, effect=0.2, variance=VC(), cluster_size=1)


def test_random_compositions_are_uniform() -> None:
    from steppedwedge.planning.search import _random_compositions

    comp = _random_compositions(5, 3, 21_000, np.random.default_rng(0))
    assert np.all(comp.sum(axis=1) == 5) and np.all(comp >= 0)
    _, counts = np.unique(comp, axis=0, return_counts=True)
    # 21 compositions, 1000 expected each: chi-square with 20 df, far below its 0.999 quantile
    assert counts.size == 21 and ((counts - 1000) ** 2 / 1000).sum() < 45.3
