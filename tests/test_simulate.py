"""sw.simulate: generated data have the moments the model says they have.

Moment checks draw many independent clusters in one call and compare sample moments with
the model's exact values.  Each tolerance is MC_K Monte-Carlo standard errors, estimated
from the spread of the same statistic over independent batches of clusters (so it comes
from the number of draws, not from a guess).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from numpy.testing import assert_allclose
from scipy import stats
from tests._tolerances import EXACT, LINALG_REL, MC_K, TINY_SIGMA_ATOL, ZERO_ATOL_1E12

import steppedwedge as sw
from steppedwedge.design import Design
from steppedwedge.simulate import simulate

N_BATCHES = 20


def _tiled(pattern: list[list[float]], copies: int) -> np.ndarray:
    """``copies`` clusters of each row of ``pattern`` (many independent clusters per sequence)."""
    return np.repeat(np.asarray(pattern, dtype=float), copies, axis=0)


def _batch_check(values: np.ndarray, target: np.ndarray | float, statistic) -> None:
    """``statistic`` over all of ``values`` (clusters on axis 0) equals ``target`` within
    MC_K standard errors, the SE estimated from the statistic over independent batches."""
    full = np.asarray(statistic(values))
    batches = np.array([statistic(b) for b in np.array_split(values, N_BATCHES)])
    se = batches.std(axis=0, ddof=1) / math.sqrt(N_BATCHES)
    diff = np.abs(full - np.asarray(target))
    assert np.all(diff <= MC_K * se + 1e-12), (full, target, se)


def _cells(frame: pd.DataFrame, value: str, n_periods: int) -> np.ndarray:
    """(I, T) array of a column of a cluster-period frame (NaN where missing)."""
    wide = frame.pivot(index="cluster", columns="period", values=value)
    return wide.to_numpy(dtype=float).reshape(-1, n_periods)


# ------------------------------------------------------------------ Gaussian cells


PATTERN = [[0, 1, 1, 1], [0, 0, 1, 1], [0, 0, 0, 1]]


@pytest.mark.parametrize(
    "vc",
    [
        sw.VarianceComponents(sigma2=1.0, tau2=0.2),  # Hussey & Hughes
        sw.VarianceComponents(sigma2=2.0, tau2=0.1, gamma2=0.15),  # nested exchangeable
        sw.VarianceComponents(sigma2=1.0, tau2=0.05, gamma2=0.3, decay=0.6),  # decay
        sw.VarianceComponents(sigma2=1.0, tau2=0.2, gamma2=0.05, eta2=0.1, rho=-0.5),  # RTE
    ],
    ids=["exchangeable", "nested", "decay", "random-effect"],
)
@pytest.mark.parametrize("level", ["cluster-period", "individual"])
def test_gaussian_cell_means_have_model_covariance(vc: sw.VarianceComponents, level: str) -> None:
    copies, m = 1500 if level == "cluster-period" else 400, 5
    x = _tiled(PATTERN, copies)
    beta = np.array([0.0, 0.3, 0.5, 0.4])
    df = simulate(
        x,
        effect=0.7,
        variance=vc,
        cluster_size=m,
        baseline=2.0,
        time_effects=beta,
        level=level,
        rng=11,
    )
    if level == "individual":
        g = df.groupby(["cluster", "period"], sort=True)["outcome"]
        df = g.mean().reset_index()
        df["within_ss"] = (g.var(ddof=1) * (g.size() - 1)).to_numpy()
    means = _cells(df, "outcome", 4)
    within = _cells(df, "within_ss", 4)
    for s, row in enumerate(PATTERN):
        block = means[s * copies : (s + 1) * copies]
        target_mean = 2.0 + beta + 0.7 * np.asarray(row)
        _batch_check(block, target_mean, lambda v: v.mean(axis=0))
        cov = vc.covariance(np.full((1, 4), float(m)), treatment=np.asarray([row]))[0]
        _batch_check(block, cov, lambda v: np.cov(v, rowvar=False))
    # within-cell sums of squares: sigma2 * chi2(m - 1)
    _batch_check(within, np.full(4, vc.sigma2 * (m - 1)), lambda v: v.mean(axis=0))
    _batch_check(within, np.full(4, 2 * vc.sigma2**2 * (m - 1)), lambda v: v.var(axis=0, ddof=1))


def test_icc_and_cac_of_individual_rows_match_inputs() -> None:
    vc = sw.VarianceComponents.from_correlations(icc=0.1, cac=0.6, total_variance=2.0)
    x = _tiled([[0, 0, 1]], 1500)
    m = 6
    df = simulate(x, effect=0.0, variance=vc, cluster_size=m, rng=5)
    y = df["outcome"].to_numpy().reshape(1500, 3, m)  # rows come sorted cluster, period, k

    def icc_cac(v: np.ndarray) -> np.ndarray:
        total = v.reshape(len(v), -1).var(axis=0, ddof=1).mean()
        cbar = v.mean(axis=2)
        # two different individuals, same cell / different periods of one cluster
        same = (m * cbar.var(axis=0, ddof=1).mean() - total) / (m - 1)
        lagged = np.mean(
            [np.cov(cbar[:, j], cbar[:, k])[0, 1] for j, k in ((0, 1), (0, 2), (1, 2))]
        )
        return np.array([same / total, lagged / same])

    _batch_check(y, np.array([vc.icc, vc.cac]), icc_cac)


def test_decay_correlation_over_lags() -> None:
    vc = sw.VarianceComponents(sigma2=1.0, tau2=0.1, gamma2=0.3, decay=0.5)
    x = _tiled([[0, 0, 0, 1, 1]], 3000)
    df = simulate(x, effect=0.2, variance=vc, cluster_size=1000, level="cluster-period", rng=9)
    means = _cells(df, "outcome", 5)
    lags = vc.cluster_correlation(np.arange(1, 5))
    # cluster-period means with m = 1000 are almost the true means; correlation at lag k
    target = np.array(lags) * (vc.tau2 + vc.gamma2) / (vc.tau2 + vc.gamma2 + vc.sigma2 / 1000)

    def corr(v: np.ndarray) -> np.ndarray:
        c = np.corrcoef(v, rowvar=False)
        return np.array([c[0, k] for k in range(1, 5)])

    _batch_check(means, target, corr)


def test_cells_and_rows_are_the_same_draw_of_cluster_effects() -> None:
    """Same seed: the cluster-level effects are drawn first, so with sigma2 tiny the cell
    means of the two outputs agree closely (a structural, not a statistical, check)."""
    vc = sw.VarianceComponents(sigma2=1e-12, tau2=1.0, gamma2=0.5)
    x = _tiled(PATTERN, 2)
    cells = simulate(x, effect=1.0, variance=vc, cluster_size=3, level="cluster-period", rng=3)
    rows = simulate(x, effect=1.0, variance=vc, cluster_size=3, rng=3)
    from_rows = rows.groupby(["cluster", "period"])["outcome"].mean().to_numpy()
    assert_allclose(cells["outcome"].to_numpy(), from_rows, atol=TINY_SIGMA_ATOL)


# ------------------------------------------------------------------ cohorts


@pytest.mark.parametrize("churn", [0.0, 0.4])
def test_cohort_cell_means_have_model_covariance(churn: float) -> None:
    vc = sw.VarianceComponents(sigma2=1.0, tau2=0.1, gamma2=0.05, psi2=0.8)
    m, copies = 5, 500
    x = _tiled([[0, 1, 1], [0, 0, 1]], copies)
    df = simulate(
        x, effect=0.5, variance=vc, cluster_size=m, sampling="cohort", churn=churn, rng=21
    )
    # ids: (1 - churn) m individuals in every period, the rest new each period
    per_cluster = df.groupby("cluster")["individual"].nunique().to_numpy()
    stay = round((1 - churn) * m)
    assert np.all(per_cluster == stay + 3 * (m - stay))
    assert df.groupby("individual")["cluster"].nunique().max() == 1
    means = df.groupby(["cluster", "period"])["outcome"].mean().to_numpy().reshape(-1, 3)
    for s, row in enumerate([[0, 1, 1], [0, 0, 1]]):
        block = means[s * copies : (s + 1) * copies]
        cov = vc.covariance(np.full((1, 3), float(m)), churn=churn)[0]
        _batch_check(block, cov, lambda v: np.cov(v, rowvar=False))
        _batch_check(block, 0.5 * np.asarray(row, float), lambda v: v.mean(axis=0))


def test_cohort_cells_level_aggregates_individuals_exactly() -> None:
    vc = sw.VarianceComponents(sigma2=1.0, tau2=0.1, psi2=0.5)
    x = _tiled(PATTERN, 2)
    rows = simulate(x, effect=0.5, variance=vc, cluster_size=4, sampling="cohort", rng=8)
    cells = simulate(
        x, effect=0.5, variance=vc, cluster_size=4, sampling="cohort", level="cluster-period", rng=8
    )
    g = rows.groupby(["cluster", "period"])["outcome"]
    assert_allclose(cells["outcome"].to_numpy(), g.mean().to_numpy(), **EXACT)
    ss = g.apply(lambda y: float(((y - y.mean()) ** 2).sum())).to_numpy()
    assert_allclose(cells["within_ss"].to_numpy(), ss, rtol=LINALG_REL, atol=ZERO_ATOL_1E12)


# ------------------------------------------------------------------ trends and ETI curves


def test_time_effects_and_effect_curve_shift_the_means() -> None:
    vc = sw.VarianceComponents(sigma2=1.0, tau2=0.05)
    copies = 800
    x = _tiled(PATTERN, copies)
    curve = [0.5, 1.0, 1.5]
    df = simulate(
        x,
        effect=0.4,
        variance=vc,
        cluster_size=10,
        level="cluster-period",
        time_effects=lambda t: 0.1 * t,
        effect_curve=curve,
        rng=4,
    )
    means = _cells(df, "outcome", 4)
    e = df.pivot(index="cluster", columns="period", values="exposure_time").to_numpy()
    c = np.concatenate([[0.0], curve])[e]
    target_all = 0.1 * np.arange(4) + 0.4 * c
    for s in range(3):
        block = means[s * copies : (s + 1) * copies]
        _batch_check(block, target_all[s * copies], lambda v: v.mean(axis=0))


def test_exposure_time_column_counts_treated_periods() -> None:
    d = Design.stepped_wedge(3, 1)
    df = simulate(d, effect=0.0, variance=sw.VarianceComponents(), cluster_size=1, rng=0)
    wide = df.pivot(index="cluster", columns="period", values="exposure_time").to_numpy()
    assert_allclose(wide, np.asarray(d.exposure_time), **EXACT)
    assert list(df["period"].unique()) == list(d.periods)


def test_unobserved_cells_and_zero_sizes_have_no_rows() -> None:
    x = np.array([[0, 1, np.nan], [0, 0, 1]])
    size = np.array([[3, 0, 5], [2, 2, 2]])
    df = simulate(x, effect=1.0, variance=sw.VarianceComponents(), cluster_size=size, rng=1)
    counts = df.groupby(["cluster", "period"]).size()
    assert counts.to_dict() == {(0, 1): 3, (1, 1): 2, (1, 2): 2, (1, 3): 2}


# ------------------------------------------------------------------ binary


def test_binary_without_random_effects_has_logistic_means() -> None:
    x = _tiled([[0, 1, 1], [0, 0, 1]], 200)
    base, theta = 0.2, math.log(2.0)
    beta = np.array([0.0, 0.2, -0.1])
    df = simulate(
        x,
        effect=theta,
        variance=sw.VarianceComponents(),
        cluster_size=30,
        family="binomial",
        baseline=base,
        time_effects=beta,
        rng=2,
    )
    assert set(np.unique(df["outcome"])) <= {0.0, 1.0}
    got = df.groupby(["treatment", "period"])["outcome"].agg(["mean", "size"])
    for (trt, period), row in got.iterrows():
        p = 1 / (1 + math.exp(-(math.log(base / (1 - base)) + beta[period - 1] + theta * trt)))
        assert abs(row["mean"] - p) <= MC_K * math.sqrt(p * (1 - p) / row["size"])


def test_binary_marginal_mean_with_cluster_effect_matches_quadrature() -> None:
    vc = sw.VarianceComponents(tau2=0.8)
    x = _tiled([[0, 1]], 4000)
    df = simulate(
        x,
        effect=-0.5,
        variance=vc,
        cluster_size=10,
        family="binomial",
        baseline=0.3,
        level="cluster-period",
        rng=6,
    )
    props = (df["outcome"] / df["trials"]).to_numpy().reshape(-1, 2)
    nodes, weights = np.polynomial.hermite_e.hermegauss(60)
    base = math.log(0.3 / 0.7)
    target = [
        float(
            np.sum(weights * stats.logistic.cdf(base + eff + math.sqrt(0.8) * nodes))
            / weights.sum()
        )
        for eff in (0.0, -0.5)
    ]
    _batch_check(props, np.array(target), lambda v: v.mean(axis=0))


def test_binomial_aggregate_counts_are_binomial() -> None:
    x = _tiled([[0, 1]], 3000)
    df = simulate(
        x,
        effect=0.0,
        variance=sw.VarianceComponents(),
        cluster_size=12,
        family="binomial",
        baseline=0.25,
        level="cluster-period",
        rng=7,
    )
    ev = df["outcome"].to_numpy().reshape(-1, 2)
    assert np.all(df["trials"] == 12)
    _batch_check(ev, np.full(2, 3.0), lambda v: v.mean(axis=0))
    _batch_check(ev, np.full(2, 12 * 0.25 * 0.75), lambda v: v.var(axis=0, ddof=1))


def test_binary_identity_link_rejects_impossible_probability() -> None:
    with pytest.raises(ValueError, match="outside \\[0, 1\\]"):
        simulate(
            np.array([[0, 1]]),
            effect=0.9,
            variance=sw.VarianceComponents(),
            cluster_size=5,
            family="binomial",
            link="identity",
            baseline=0.5,
            rng=1,
        )


# ------------------------------------------------------------------ counts


def test_poisson_counts_have_rate_times_population() -> None:
    x = _tiled([[0, 1]], 3000)
    df = simulate(
        x,
        effect=math.log(0.8),
        variance=sw.VarianceComponents(),
        cluster_size=2500.0,
        family="poisson",
        baseline=0.004,
        rng=3,
    )
    assert list(df.columns) == [
        "cluster",
        "period",
        "treatment",
        "exposure_time",
        "outcome",
        "population",
    ]
    counts = df["outcome"].to_numpy().reshape(-1, 2)
    mu = np.array([10.0, 8.0])
    _batch_check(counts, mu, lambda v: v.mean(axis=0))
    _batch_check(counts, mu, lambda v: v.var(axis=0, ddof=1))


def test_negative_binomial_variance() -> None:
    x = _tiled([[0, 1]], 4000)
    alpha = 0.3
    df = simulate(
        x,
        effect=math.log(1.5),
        variance=sw.VarianceComponents(),
        cluster_size=1000.0,
        family="negative_binomial",
        baseline=0.01,
        dispersion=alpha,
        rng=13,
    )
    counts = df["outcome"].to_numpy().reshape(-1, 2)
    mu = np.array([10.0, 15.0])
    _batch_check(counts, mu, lambda v: v.mean(axis=0))
    _batch_check(counts, mu + alpha * mu**2, lambda v: v.var(axis=0, ddof=1))


def test_poisson_lognormal_variance() -> None:
    x = _tiled([[0, 1]], 4000)
    d = 0.2
    df = simulate(
        x,
        effect=0.0,
        variance=sw.VarianceComponents(),
        cluster_size=100.0,
        family="poisson",
        baseline=0.1,
        dispersion=d,
        rng=14,
    )
    counts = df["outcome"].to_numpy().reshape(-1, 2)
    mu = 10.0
    mean = mu * math.exp(d / 2)
    var = mean + mu**2 * math.exp(d) * (math.exp(d) - 1)
    _batch_check(counts, np.full(2, mean), lambda v: v.mean(axis=0))
    _batch_check(counts, np.full(2, var), lambda v: v.var(axis=0, ddof=1))


def test_counts_with_cluster_effect_log_scale() -> None:
    vc = sw.VarianceComponents(tau2=0.3)
    x = _tiled([[0, 0]], 4000)
    df = simulate(
        x, effect=0.0, variance=vc, cluster_size=1e6, family="poisson", baseline=1e-3, rng=15
    )
    logs = np.log(df["outcome"].to_numpy().reshape(-1, 2))
    # counts ~ 1000: log(count) ~ log(1000) + a_i + O(1/sqrt(1000)) noise
    _batch_check(logs, np.full(2, math.log(1000.0) - 0.0005), lambda v: v.mean(axis=0))
    _batch_check(logs, np.full((2, 2), 0.3) + np.eye(2) * 0.001, lambda v: np.cov(v, rowvar=False))


# ------------------------------------------------------------------ reproducibility


def test_same_seed_same_data_and_generator_advances() -> None:
    kw = dict(effect=0.3, variance=sw.VarianceComponents(tau2=0.1), cluster_size=4)
    d = Design.stepped_wedge(3, 2)
    a = simulate(d, rng=123, **kw)
    b = simulate(d, rng=123, **kw)
    pd.testing.assert_frame_equal(a, b)
    g = np.random.default_rng(5)
    c, e = simulate(d, rng=g, **kw), simulate(d, rng=g, **kw)
    assert not np.allclose(c["outcome"], e["outcome"])


def test_design_labels_are_used() -> None:
    d = Design.stepped_wedge(2, 1).relabel(["north", "south"])
    df = simulate(d, effect=0.0, variance=sw.VarianceComponents(), cluster_size=1, rng=0)
    assert list(df["cluster"].unique()) == ["north", "south"]


# ------------------------------------------------------------------ bad input


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (dict(family="gamma"), "`family` must be one of"),
        (dict(link="log"), "`link` must be one of"),
        (dict(cluster_size=2.5), "whole numbers"),
        (dict(cluster_size=[1, 2, 3]), "`cluster_size` must be"),
        (dict(variance=0.1), "`variance` must be a VarianceComponents"),
        (dict(effect=float("nan")), "`effect` must be finite"),
        (dict(time_effects=0.1), "lambda t"),
        (dict(time_effects=[0, 1]), "`time_effects` must have 3 values"),
        (dict(effect_curve=[1.0]), "`effect_curve` must give a multiplier"),
        (dict(sampling="panel"), "`sampling` must be one of"),
        (dict(churn=0.5), "`churn` applies to sampling='cohort'"),
        (
            dict(sampling="cohort", cluster_size=[[2, 2, 3], [2, 2, 2]]),
            "constant over the observed periods",
        ),
        (dict(family="binomial"), "`baseline`"),
        (dict(family="poisson", baseline=0.1, level="individual"), "'cluster-period' for counts"),
        (dict(family="negative_binomial", baseline=0.1), "`dispersion`"),
        (dict(dispersion=0.1), "counts"),
        (dict(family="binomial", baseline=1.2), "`baseline` must lie in"),
        (dict(family="poisson", baseline=0.1, sampling="cohort"), "no individuals"),
    ],
)
def test_bad_input(kwargs: dict, match: str) -> None:
    args = dict(effect=0.2, variance=sw.VarianceComponents(), cluster_size=2, rng=1)
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        simulate(Design.stepped_wedge(2, 1), **args)


def test_bad_design() -> None:
    with pytest.raises(ValueError, match="`design`"):
        simulate("abc", effect=0.1, variance=sw.VarianceComponents(), cluster_size=1)
    with pytest.raises(ValueError, match="no cell has data"):
        simulate(
            np.array([[0.0, 1.0]]), effect=0.1, variance=sw.VarianceComponents(), cluster_size=0
        )


def test_fractional_treatment_scales_the_effect() -> None:
    """A transition cell with treatment 0.5 gets half the effect (methods.md 6.4)."""
    x = _tiled([[0.0, 0.5, 1.0]], 3000)
    df = simulate(
        x,
        effect=0.8,
        variance=sw.VarianceComponents(sigma2=1.0, tau2=0.1),
        cluster_size=4,
        level="cluster-period",
        rng=19,
    )
    assert_allclose(np.unique(df["treatment"]), [0.0, 0.5, 1.0], **EXACT)
    means = _cells(df, "outcome", 3)
    _batch_check(means, np.array([0.0, 0.4, 0.8]), lambda v: v.mean(axis=0))
