"""Assurance from variance components: counts and binary outcomes on the link scale.

The reference is :func:`steppedwedge.power` itself, called once per draw: assurance over
draws ``V_1..V_B`` is by definition ``mean_b power(V_b)``, so the batched computation must
reproduce that mean (and every per-draw power) to 1e-12 -- the draws' covariances are built
by the same code, only the GLS solves are batched (differences are rounding, ~1e-15).
"""

from __future__ import annotations

from dataclasses import dataclass

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from _tolerances import EXACT_REL, POWER_MEAN_ATOL, SD_OF_CLOSE_VALUES_REL
from scipy import stats  # noqa: E402

import steppedwedge as sw  # noqa: E402
from steppedwedge.exceptions import OptionError  # noqa: E402
from steppedwedge.planning.result import PlanningResult  # noqa: E402

VC = sw.VarianceComponents


@dataclass(frozen=True)
class StandIn:
    """A minimal VarianceEstimate (what sw.estimate_variance returns has these two)."""

    variance: sw.VarianceComponents
    draws: tuple[sw.VarianceComponents, ...] = ()


def _draws(n: int, seed: int, *, decay: bool = True) -> list[sw.VarianceComponents]:
    gen = np.random.default_rng(seed)
    tau2 = gen.gamma(8.0, 0.1 / 8.0, size=n)
    gamma2 = gen.gamma(6.0, 0.02 / 6.0, size=n)
    r = gen.beta(18.0, 3.0, size=n)
    return [
        VC(sigma2=0.0, tau2=t, gamma2=g, decay=float(d) if decay else None)
        for t, g, d in zip(tau2, gamma2, r, strict=True)
    ]


def _design() -> sw.Design:
    return sw.Design.stepped_wedge(4, [2, 1, 2, 2], baseline_periods=2, periods_per_step=2)


POP = np.array([26e3, 41e3, 55e3, 60e3, 75e3, 90e3, 126e3])
CASES = {
    "poisson": dict(family="poisson", baseline=6.6e-4, cluster_size=POP),
    "poisson-exposure-dof": dict(
        family="poisson", baseline=2e-3, cluster_size=1, exposure=POP / 10, dof="containment"
    ),
    "negative-binomial": dict(
        family="negative_binomial", baseline=6.6e-4, cluster_size=1, exposure=POP, dispersion=40.0
    ),
    "binomial-logit": dict(family="binomial", baseline=0.2, cluster_size=60),
    "poisson-wald": dict(
        family="poisson", baseline=6.6e-4, cluster_size=55e3, glmm_variance="alternative"
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_assurance_is_the_mean_of_power_over_the_draws(case: str) -> None:
    kw = CASES[case]
    draws = _draws(40, seed=3)
    draws[1] = draws[1].with_(decay=None)  # nested exchangeable
    draws[2] = draws[2].with_(gamma2=0.0)  # Hussey & Hughes
    effect = np.log(0.85) if kw["family"] != "binomial" else np.log(0.7)
    res = sw.assurance(_design(), effect=effect, variance=draws, **kw)
    ref = np.array([sw.power(_design(), effect=effect, variance=v, **kw).power for v in draws])
    np.testing.assert_allclose(res.power, ref, rtol=0, atol=POWER_MEAN_ATOL)
    assert res.assurance == pytest.approx(ref.mean(), rel=0, abs=POWER_MEAN_ATOL)
    assert res.family == kw["family"] and res.point_power is None
    assert res.mc_std_error == pytest.approx(
        ref.std(ddof=1) / np.sqrt(ref.size), rel=SD_OF_CLOSE_VALUES_REL
    )
    np.testing.assert_array_equal(res.draws["tau2"], [v.tau2 for v in draws])


def test_gaussian_draws_with_unequal_clusters() -> None:
    # sigma2 varies over the draws; clusters of unequal sizes share one eigendecomposition
    gen = np.random.default_rng(9)
    sigma2 = gen.uniform(0.5, 2, 25)
    draws = [v.with_(sigma2=s) for v, s in zip(_draws(25, seed=6), sigma2, strict=True)]
    sizes = np.array([5.0, 8, 12, 20, 30, 45, 60])
    res = sw.assurance(_design(), effect=0.25, variance=draws, cluster_size=sizes)
    ref = [sw.power(_design(), effect=0.25, variance=v, cluster_size=sizes).power for v in draws]
    np.testing.assert_allclose(res.power, ref, rtol=0, atol=POWER_MEAN_ATOL)


def test_calendar_time_decay_draws() -> None:
    # unequal period lengths: the decay acts between period mid-points (in years)
    base = _design()
    lengths = [365.0, 91.0, 91.0, 182.0, 182.0, 91.0, 365.0, 91.0, 182.0, 91.0][: base.n_periods]
    design = sw.Design.from_matrix(base.matrix, period_lengths=lengths)
    draws = [v.with_(decay_scale="time") for v in _draws(15, seed=12)]
    kw = dict(family="poisson", baseline=6.6e-4, cluster_size=POP)
    res = sw.assurance(design, effect=np.log(0.85), variance=draws, **kw)
    ref = [sw.power(design, effect=np.log(0.85), variance=v, **kw).power for v in draws]
    np.testing.assert_allclose(res.power, ref, rtol=0, atol=POWER_MEAN_ATOL)
    period = sw.assurance(base, effect=np.log(0.85), variance=_draws(15, seed=12), **kw)
    assert np.max(np.abs(res.power - period.power)) > 1e-3  # the calendar really is used


def test_general_structures_take_the_unbatched_covariance() -> None:
    # a random treatment effect, an unobserved cell and calendar-time decay: covariances
    # built one by one by power's own code, then batched
    x = np.array([[0, 1, 1, 1], [0, 0, 1, 1], [0, 0, np.nan, 1], [0, 0, 0, 1]], dtype=float)
    design = sw.Design.from_matrix(x, periods=[0, 1, 2, 3])
    base = _draws(12, seed=5)
    draws = [v.with_(eta2=0.01 * k) for k, v in enumerate(base)]
    kw = dict(family="poisson", baseline=1e-3, cluster_size=[4e4, 5e4, 6e4, 7e4])
    res = sw.assurance(design, effect=-0.2, variance=draws, **kw)
    ref = [sw.power(design, effect=-0.2, variance=v, **kw).power for v in draws]
    np.testing.assert_allclose(res.power, ref, rtol=0, atol=POWER_MEAN_ATOL)
    np.testing.assert_allclose(res.draws["eta2"], [v.eta2 for v in draws])
    gauss = [v.with_(sigma2=1.0) for v in base]
    res_g = sw.assurance(design, effect=0.3, variance=gauss, cluster_size=15)
    ref_g = [sw.power(design, effect=0.3, variance=v, cluster_size=15).power for v in gauss]
    np.testing.assert_allclose(res_g.power, ref_g, rtol=0, atol=POWER_MEAN_ATOL)


def test_estimate_gives_point_power_and_averages_its_draws() -> None:
    point = VC(sigma2=0.0, tau2=0.1, gamma2=0.02, decay=0.85)
    est = StandIn(point, tuple(_draws(30, seed=8)))
    assert isinstance(est, sw.VarianceEstimate)
    kw = dict(family="poisson", baseline=6.6e-4, cluster_size=POP)
    at_point = sw.power(_design(), effect=np.log(0.85), variance=point, **kw)
    via_est = sw.power(_design(), effect=np.log(0.85), variance=est, **kw)
    assert via_est.power == at_point.power and via_est.variance_components == point
    res = sw.assurance(_design(), effect=np.log(0.85), variance=est, **kw)
    assert res.point_power == at_point.power
    ref = [sw.power(_design(), effect=np.log(0.85), variance=v, **kw).power for v in est.draws]
    assert res.assurance == pytest.approx(np.mean(ref), rel=0, abs=POWER_MEAN_ATOL)
    # solve_power and search_designs take the estimate's point too
    solved = sw.solve_power(_design(), effect=np.log(0.85), variance=est, **kw)
    assert solved.variance_components == point


def test_assurance_converges_to_point_power_as_draws_shrink() -> None:
    point = VC(sigma2=0.0, tau2=0.1, gamma2=0.03, decay=0.8)
    kw = dict(family="poisson", baseline=6.6e-4, cluster_size=30e3)
    target = sw.power(_design(), effect=np.log(0.85), variance=point, **kw).power
    same = sw.assurance(_design(), effect=np.log(0.85), variance=[point] * 5, **kw)
    assert same.assurance == pytest.approx(target, rel=0, abs=POWER_MEAN_ATOL)
    z = np.random.default_rng(11).standard_normal((200, 3))
    gaps = []
    for h in (0.5, 0.1, 0.02, 0.004):
        # multiplicative noise on the variances, logit-scale noise on the decay
        logit = np.log(0.8 / 0.2) + h * z[:, 2]
        draws = [
            VC(sigma2=0.0, tau2=0.1 * np.exp(h * a), gamma2=0.03 * np.exp(h * b), decay=r)
            for a, b, r in zip(z[:, 0], z[:, 1], 1 / (1 + np.exp(-logit)), strict=True)
        ]
        res = sw.assurance(_design(), effect=np.log(0.85), variance=draws, **kw)
        gaps.append(abs(res.assurance - target))
    assert all(b < a for a, b in zip(gaps, gaps[1:], strict=False))
    # the gap is O(h): the last step is 5x smaller than the one before (within slack)
    assert gaps[-1] < 0.4 * gaps[-2] and gaps[-1] < 1e-3


def test_effect_prior_is_paired_with_the_draws() -> None:
    draws = _draws(50, seed=2)
    prior = stats.norm(np.log(0.85), 0.05)
    kw = dict(family="poisson", baseline=6.6e-4, cluster_size=POP)
    res = sw.assurance(_design(), effect=prior, variance=draws, rng=7, **kw)
    effects = prior.rvs(size=50, random_state=np.random.default_rng(7))
    np.testing.assert_array_equal(res.draws["effect"], effects)
    ref = [
        sw.power(_design(), effect=e, variance=v, **kw).power
        for e, v in zip(effects, draws, strict=True)
    ]
    np.testing.assert_allclose(res.power, ref, rtol=0, atol=POWER_MEAN_ATOL)
    # fixed components, an effect prior: n_draws effects
    fixed = sw.assurance(_design(), effect=prior, variance=draws[0], n_draws=30, rng=1, **kw)
    eff = prior.rvs(size=30, random_state=np.random.default_rng(1))
    ref1 = [sw.power(_design(), effect=e, variance=draws[0], **kw).power for e in eff]
    assert fixed.assurance == pytest.approx(np.mean(ref1), rel=0, abs=POWER_MEAN_ATOL)


def test_effect_grid_times_draws() -> None:
    draws = _draws(10, seed=4)
    grid = np.log([0.8, 0.85, 0.9])
    kw = dict(family="poisson", baseline=6.6e-4, cluster_size=POP)
    res = sw.assurance(
        _design(), effect=grid, variance=draws, probabilities={"effect": [1, 2, 1]}, **kw
    )
    assert res.power.shape == (3, 10)
    ref = np.array(
        [[sw.power(_design(), effect=e, variance=v, **kw).power for v in draws] for e in grid]
    )
    np.testing.assert_allclose(res.power, ref, rtol=0, atol=POWER_MEAN_ATOL)
    w = np.array([0.25, 0.5, 0.25])
    assert res.assurance == pytest.approx((ref.mean(axis=1) * w).sum(), rel=0, abs=POWER_MEAN_ATOL)
    tidy = res.tidy()
    assert (tidy["probability"] * tidy["power"]).sum() == pytest.approx(
        res.assurance, rel=EXACT_REL
    )
    # prior-weighted quantiles: P(power <= q-quantile) >= q > P(power < q-quantile)
    weights = np.broadcast_to((w / 10)[:, None], res.power.shape)
    for q in (0.1, 0.3, 0.5, 0.9):
        v = res.quantile(q)
        assert weights[res.power <= v].sum() >= q - 1e-12 > weights[res.power < v].sum()
    only_grid = sw.assurance(_design(), effect=grid, variance=draws[0], **kw)
    assert only_grid.power.shape == (3,) and only_grid.mc_std_error is None


def test_result_protocol() -> None:
    point = VC(sigma2=0.0, tau2=0.1, gamma2=0.02, decay=0.85)
    est = StandIn(point, tuple(_draws(25, seed=1)))
    res = sw.assurance(
        _design(),
        effect=np.log(0.85),
        variance=est,
        family="poisson",
        baseline=6.6e-4,
        cluster_size=POP,
    )
    assert isinstance(res, PlanningResult)
    text = str(res)
    assert "poisson" in text and "power at the point estimate" in text and "draws: decay" in text
    assert "<table" in res._repr_html_() and "5% to 95% of prior" in text
    # equal weights over the draws: the inverse empirical distribution function
    for q in (0.0, 0.05, 0.5, 0.95, 1.0):
        ref_q = np.quantile(res.power, q, method="inverted_cdf")
        assert res.quantile(q) == ref_q
    np.testing.assert_array_equal(
        res.quantile([0.05, 0.95]), [res.quantile(0.05), res.quantile(0.95)]
    )
    assert set(res.tidy().columns) >= {"tau2", "gamma2", "decay", "probability", "power"}
    ax = res.plot()
    assert ax.get_xlabel() == "power"
    plt.close("all")


def test_bad_input() -> None:
    d = _design()
    kw = dict(family="poisson", baseline=6.6e-4, cluster_size=POP)
    with pytest.raises(OptionError, match="not both"):
        sw.assurance(d, effect=-0.1, icc=0.05, variance=VC(), cluster_size=10)
    with pytest.raises(OptionError, match="variance="):
        sw.assurance(d, effect=-0.1, cluster_size=10)
    with pytest.raises(OptionError, match="Gaussian only"):
        sw.assurance(d, effect=-0.1, icc=0.05, family="poisson", baseline=1e-3, cluster_size=10)
    with pytest.raises(OptionError, match="no draws"):
        sw.assurance(d, effect=-0.1, variance=StandIn(VC(tau2=0.1)), **kw)
    with pytest.raises(TypeError, match="draw 1"):
        sw.assurance(d, effect=-0.1, variance=[VC(tau2=0.1), 0.2], **kw)
    with pytest.raises(OptionError, match="empty"):
        sw.assurance(d, effect=-0.1, variance=[], **kw)
    with pytest.raises(OptionError, match="unknown option"):
        sw.assurance(d, effect=-0.1, variance=[VC(tau2=0.1)], total_variance=2.0, **kw)
    with pytest.raises(OptionError, match="probabilities"):
        sw.assurance(d, effect=-0.1, variance=[VC(tau2=0.1)], probabilities={"tau2": [1]}, **kw)
    mixed = [VC(tau2=0.1, gamma2=0.01, decay=0.5), VC(tau2=0.1, decay=0.5, decay_scale="time")]
    with pytest.raises(OptionError, match="decay_scale"):
        sw.assurance(d, effect=-0.1, variance=mixed, **kw)
    with pytest.raises(OptionError, match="draw 1 of `variance`: `variance.sigma2` is 0"):
        sw.assurance(d, effect=0.2, variance=[VC(), VC(sigma2=0.0, tau2=0.1)], cluster_size=10)
    with pytest.raises(TypeError, match="estimate"):
        sw.power(d, effect=0.2, variance=0.1, cluster_size=10)


def test_the_estimate_from_a_panel_is_a_variance_estimate() -> None:
    # the real sw.estimate_variance result (a small bootstrap of the bundled DfE panel)
    import warnings

    panel = sw.datasets.load_dfe_panel()
    recent = panel[panel["year"] >= 2021]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the suppressed rows are dropped with a warning
        est = sw.estimate_variance(
            recent,
            outcome="cla_started_in_year",
            cluster="la_code",
            period="year",
            exposure="population_0_17",
            structure="nested",
            n_boot=6,
            rng=1,
        )
    assert isinstance(est, sw.VarianceEstimate)
    kw = dict(family="poisson", baseline=6.6e-3 * 4, cluster_size=POP)
    res = sw.assurance(_design(), effect=np.log(0.85), variance=est, **kw)
    ref = [sw.power(_design(), effect=np.log(0.85), variance=v, **kw).power for v in est.draws]
    assert res.assurance == pytest.approx(np.mean(ref), rel=0, abs=POWER_MEAN_ATOL)
    at_point = sw.power(_design(), effect=np.log(0.85), variance=est.variance, **kw).power
    assert res.point_power == at_point
