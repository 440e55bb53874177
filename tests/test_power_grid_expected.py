"""Vectorised grids, assurance and expected power over randomisation."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from _tolerances import LINALG
from scipy import stats
from scipy.integrate import trapezoid

from steppedwedge.design import Design
from steppedwedge.exceptions import DesignError
from steppedwedge.planning import assurance, expected_power, power, power_grid
from steppedwedge.variance import VarianceComponents as VC


@pytest.mark.parametrize("decay", [None, 0.6])
@pytest.mark.parametrize("churn", [1.0, 0.3])
@pytest.mark.parametrize("transition", ["exclude-free", "partial"])
def test_grid_equals_power(decay: float | None, churn: float, transition: str) -> None:
    if transition == "partial":
        d = Design.stepped_wedge(4, [2, 1, 3, 2], transition_periods=1, transition="partial")
    else:
        d = Design.stepped_wedge(4, [2, 1, 3, 2])
    iccs = np.array([0.01, 0.07, 0.2])
    grid = power_grid(
        d,
        effect=0.3,
        icc=iccs[:, None],
        cac=np.array([0.3, 1.0]),
        iac=0.4,
        churn=churn,
        cluster_size=12,
        total_variance=2.0,
        decay=decay,
        output="variance",
    )
    assert grid.shape == (3, 2)
    for (a, icc), (b, cac) in itertools.product(enumerate(iccs), enumerate([0.3, 1.0])):
        vc = VC.from_correlations(icc, cac=cac, iac=0.4, total_variance=2.0, decay=decay)
        kw = dict(sampling="cohort", churn=churn) if churn < 1 else dict()
        if churn == 1.0:
            kw = {}
        ref = power(d, effect=0.3, variance=vc, cluster_size=12, **kw).variance
        np.testing.assert_allclose(grid[a, b], ref, **LINALG)


def test_grid_power_outputs_and_errors() -> None:
    d = Design.stepped_wedge(3, 3)
    p = power_grid(d, effect=np.array([0.1, 0.2]), icc=0.0, cluster_size=50)
    ref = [power(d, effect=e, variance=VC(), cluster_size=50).power for e in (0.1, 0.2)]
    np.testing.assert_allclose(p, ref, **LINALG)
    p1 = power_grid(d, effect=0.2, icc=0.0, cluster_size=50, output="power_one_tail")
    assert p1 < p[1]
    with pytest.raises(ValueError, match="icc"):
        power_grid(d, effect=0.2, icc=[0.1, 1.2], cluster_size=5)
    with pytest.raises(ValueError, match="cac"):
        power_grid(d, effect=0.2, icc=0.1, cac=-0.5, cluster_size=5)
    with pytest.raises(ValueError, match="decay"):
        power_grid(d, effect=0.2, icc=0.1, decay=2.0, cluster_size=5)
    with pytest.raises(ValueError, match="cluster_size"):
        power_grid(d, effect=0.2, icc=0.1, cluster_size=[5, 0])
    x = np.array([[0, 1, 1], [0, 0, np.nan], [0, 0, 1]])
    with pytest.raises(DesignError, match="complete"):
        power_grid(x, effect=0.2, icc=0.1, cluster_size=5)


def test_assurance_grid_is_weighted_mean() -> None:
    d = Design.stepped_wedge(4, 2)
    iccs, cacs = [0.01, 0.05, 0.1], [0.5, 1.0]
    res = assurance(
        d, effect=0.3, icc=iccs, cac=cacs, cluster_size=20, probabilities={"icc": [1, 2, 1]}
    )
    ref = np.array(
        [
            [
                power(d, effect=0.3, variance=VC.from_correlations(i, cac=c), cluster_size=20).power
                for c in cacs
            ]
            for i in iccs
        ]
    )
    np.testing.assert_allclose(res.power, ref, **LINALG)
    w = np.array([0.25, 0.5, 0.25])[:, None] * np.array([0.5, 0.5])[None, :]
    np.testing.assert_allclose(res.assurance, (ref * w).sum(), **LINALG)
    with pytest.raises(ValueError, match="probabilities"):
        assurance(d, effect=0.3, icc=iccs, cluster_size=20, probabilities={"cac": [1]})


def test_assurance_distribution_monte_carlo() -> None:
    d = Design.stepped_wedge(4, 2)
    prior = stats.norm(0.3, 0.1)
    res = assurance(d, effect=prior, icc=0.05, cluster_size=20, n_draws=4000, rng=5)
    # independent numerical integral of power over the normal prior
    xs = np.linspace(-0.3, 0.9, 2401)
    pw = power_grid(d, effect=xs, icc=0.05, cluster_size=20)
    integral = trapezoid(pw * prior.pdf(xs), xs)
    assert res.mc_std_error is not None
    assert abs(res.assurance - integral) < 4 * res.mc_std_error
    again = assurance(d, effect=prior, icc=0.05, cluster_size=20, n_draws=4000, rng=5)
    assert again.assurance == res.assurance


def test_expected_power_enumerates_and_matches_power() -> None:
    d = Design.stepped_wedge(2, 2)
    vc = VC.from_correlations(0.1, cac=0.7)
    sizes = [5, 10, 20, 40]
    res = expected_power(d, effect=0.5, variance=vc, cluster_sizes=sizes)
    assert res.exhaustive and res.powers.size == 6
    for alloc, p in zip(res.allocations, res.powers, strict=True):
        rows = {0: [0, 1], 1: [2, 3]}
        per_row = np.empty(4)
        for c, s in enumerate(alloc):
            per_row[rows[s].pop(0)] = sizes[c]
        np.testing.assert_allclose(
            p, power(d, effect=0.5, variance=vc, cluster_size=per_row).power, **LINALG
        )
    assert res.power == pytest.approx(res.powers.mean())


def test_expected_power_sampled_and_equal_sizes() -> None:
    d = Design.stepped_wedge(5, 3)
    vc = VC.from_correlations(0.05)
    res = expected_power(
        d, effect=0.3, variance=vc, cluster_sizes=np.full(15, 10.0), n_allocations=50, rng=1
    )
    assert not res.exhaustive
    ref = power(d, effect=0.3, variance=vc, cluster_size=10).power
    np.testing.assert_allclose(res.powers, ref, **LINALG)
    with pytest.raises(ValueError, match="cluster_sizes"):
        expected_power(d, effect=0.3, variance=vc, cluster_sizes=[1, 2, 3])


def test_expected_power_random_sizes() -> None:
    d = Design.stepped_wedge(3, 2)
    vc = VC.from_correlations(0.05, cac=0.8)
    dist = stats.gamma(a=4.0, scale=5.0)  # mean 20, CV 0.5
    res = expected_power(d, effect=0.3, variance=vc, cluster_sizes=dist, n_allocations=200, rng=4)
    # brute force: redraw the same sizes and evaluate power() replicate by replicate
    gen = np.random.default_rng(4)
    draws = np.maximum(np.round(dist.rvs(size=(200, 6), random_state=gen)), 1.0)
    for k in (0, 17, 199):
        ref = power(d, effect=0.3, variance=vc, cluster_size=draws[k]).power
        np.testing.assert_allclose(res.powers[k], ref, **LINALG)
    # unequal sizes cost power relative to equal sizes with the same mean (on average)
    equal = power(d, effect=0.3, variance=vc, cluster_size=20).power
    assert res.power < equal
    assert res.mc_std_error is not None and res.mc_std_error > 0


def test_assurance_plot() -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    res = assurance(
        Design.stepped_wedge(4, 2),
        effect=0.3,
        icc=[0.01, 0.05, 0.1],
        cac=[0.3, 0.6, 1.0],
        cluster_size=20,
    )
    ax = res.plot()
    assert ax.get_xlabel() == "icc" and ax.get_ylabel() == "cac"
    one = assurance(Design.stepped_wedge(4, 2), effect=[0.1, 0.2, 0.3], icc=0.05, cluster_size=20)
    assert one.plot().get_xlabel() == "effect"
    plt.close("all")
