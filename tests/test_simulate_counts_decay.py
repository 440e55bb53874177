"""Moments of simulated counts and events with persistent + decaying cluster-period effects.

The generator's claim (``steppedwedge.simulate``, Notes) is that the linear predictor of cell
``(i, j)`` is ``log(rate) + a_i + c_ij`` with ``Var(a_i) = tau2`` and
``Cov(c_ij, c_ik) = gamma2 * decay**|j - k|`` (period-index distance), the population (or
the trials) being the exposure.  In very large cells the Poisson/binomial noise of the
empirical log rate (log-odds) is negligible (variance ``1 / mu`` ~ 1e-6), so the empirical
covariance of the cells' log rates over many clusters must match
``tau2 + gamma2 * decay**|j - k|`` (plus ``trigamma(1 / alpha)`` on the diagonal for the
negative binomial's gamma multiplier) within Monte-Carlo error.  In ordinary cells the mean
count is exactly ``population * rate * exp((tau2 + gamma2) / 2)`` (lognormal mean).

Tolerances: MC_K (4) Monte-Carlo standard errors of each moment, the SE of a covariance
being ``sqrt((s_jk^2 + s_jj s_kk) / n)`` (normal theory; the log-gamma term is nearly normal
for alpha = 0.05).
"""

from __future__ import annotations

import numpy as np
import pytest
from _tolerances import MC_K
from scipy import special

import steppedwedge as sw

TAU2, GAMMA2, DECAY = 0.33**2, 0.15**2, 0.9
VC = sw.VarianceComponents(tau2=TAU2, gamma2=GAMMA2, decay=DECAY)
N_CLUSTERS, N_PERIODS = 4000, 6


def _target(extra_diag: float = 0.0) -> np.ndarray:
    lag = np.abs(np.subtract.outer(np.arange(N_PERIODS), np.arange(N_PERIODS)))
    return TAU2 + GAMMA2 * DECAY**lag + extra_diag * np.eye(N_PERIODS)


def _wide(frame, value) -> np.ndarray:
    return frame.assign(v=value).pivot(index="cluster", columns="period", values="v").to_numpy()


def _assert_cov(logs: np.ndarray, target: np.ndarray) -> None:
    n = logs.shape[0]
    emp = np.cov(logs, rowvar=False)
    se = np.sqrt((target**2 + np.outer(np.diag(target), np.diag(target))) / n)
    np.testing.assert_array_less(np.abs(emp - target), MC_K * se)


@pytest.mark.parametrize("family", ["poisson", "negative_binomial", "binomial"])
def test_latent_covariance_is_persistent_plus_decay(family: str) -> None:
    rng = np.random.default_rng(20261201)
    # real-scale exposure varying by cell: 0.5-2 billion people (or trials)
    size = rng.uniform(5e8, 2e9, size=(N_CLUSTERS, N_PERIODS)).round()
    x = np.zeros((N_CLUSTERS, N_PERIODS))
    alpha = 0.05
    frame = sw.simulate(
        x,
        effect=0.0,
        variance=VC,
        cluster_size=size,
        family=family,
        baseline=1e-3,
        dispersion=alpha if family == "negative_binomial" else None,
        level="cluster-period",
        rng=rng,
    )
    y = _wide(frame, frame["outcome"].to_numpy())
    if family == "binomial":
        n = _wide(frame, frame["trials"].to_numpy())
        np.testing.assert_array_equal(n, size)
        logs = np.log(y / (n - y)) - np.log(1e-3 / (1 - 1e-3))
    else:
        pop = _wide(frame, frame["population"].to_numpy())
        np.testing.assert_array_equal(pop, size)
        logs = np.log(y / pop) - np.log(1e-3)
    extra = float(special.polygamma(1, 1.0 / alpha)) if family == "negative_binomial" else 0.0
    target = _target(extra)
    _assert_cov(logs, target)
    # the mean of the latent log rate (log-odds) is the baseline: E = 0 (NB: E log G)
    shift = float(special.digamma(1 / alpha) + np.log(alpha)) if extra else 0.0
    se_mean = np.sqrt(np.diag(target) / N_CLUSTERS)
    np.testing.assert_array_less(np.abs(logs.mean(axis=0) - shift), MC_K * se_mean)


def test_correlation_decays_with_period_index_not_labels() -> None:
    """Irregularly labelled periods: lag k (in period positions) correlates cac + (1-cac) r^k."""
    d = sw.Design.from_matrix(
        np.zeros((N_CLUSTERS, N_PERIODS)),
        periods=[2010, 2013, 2014, 2020, 2021, 2030],
        check_identifiable=False,
    )
    frame = sw.simulate(
        d, effect=0.0, variance=VC, cluster_size=1e9, family="poisson", baseline=1e-3, rng=5
    )
    logs = np.log(_wide(frame, frame["outcome"].to_numpy()) / 1e9)
    corr = np.corrcoef(logs, rowvar=False)
    for k in range(1, N_PERIODS):
        expected = VC.cac + (1 - VC.cac) * DECAY**k
        got = np.mean(np.diagonal(corr, offset=k))
        # correlation SE ~ (1 - rho^2) / sqrt(n); averaging over diagonals only shrinks it
        assert abs(got - expected) < MC_K * (1 - expected**2) / np.sqrt(N_CLUSTERS)


def test_mean_count_is_lognormal_mean_times_exposure_and_rate_ratio() -> None:
    """Ordinary council-sized cells: E[Y] = pop * rate * exp((tau2 + gamma2) / 2) * RR^x."""
    rng = np.random.default_rng(7)
    pop = rng.uniform(2.5e4, 1.3e5, size=(N_CLUSTERS, 2)).round()
    x = np.column_stack([np.zeros(N_CLUSTERS), np.ones(N_CLUSTERS)])
    rr = 0.85
    frame = sw.simulate(
        x,
        effect=np.log(rr),
        variance=VC,
        cluster_size=pop,
        family="poisson",
        baseline=6.6e-4,
        rng=rng,
    )
    y = _wide(frame, frame["outcome"].to_numpy())
    mean_factor = np.exp((TAU2 + GAMMA2) / 2)
    for j, mult in ((0, 1.0), (1, rr)):
        expected = pop[:, j] * 6.6e-4 * mean_factor * mult
        # standardised: (Y - E) has variance E + E^2 (exp(tau2 + gamma2) - 1)
        var = expected + expected**2 * (np.exp(TAU2 + GAMMA2) - 1)
        z = np.sum(y[:, j] - expected) / np.sqrt(np.sum(var))
        assert abs(z) < MC_K
