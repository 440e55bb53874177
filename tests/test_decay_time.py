"""Continuous-time decay (``VarianceComponents(decay_scale="time")``).

References are exact algebra: period mid-points from the stored lengths, and (for power,
simulation and fitting) explicit covariance matrices ``gamma2 * r**|t_j - t_k|`` built here
independently of the library's covariance code.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from _tolerances import (
    BOUNDARY_TAU2_ATOL,
    CENTRAL_DIFF_AR1_ATOL,
    CENTRAL_DIFF_LAPLACE_DECAY,
    DENSE_REL,
    DIRECT_FIT_REL,
    FLAT_LIKELIHOOD_VC_REL,
    GLMMTMB_DECAY_REL,
    LINALG_REL,
    LOGLIK_SAME_OPTIMUM_ATOL,
    ZERO_ATOL_1E12,
    ZERO_ATOL_1E14,
    ZERO_ATOL_1E15,
)

import steppedwedge as sw
from steppedwedge.design import Design
from steppedwedge.exceptions import DesignError, OptionError

#: Family Safeguarding wedges (days), see Design.from_start_dates.
FS_LENGTHS = [184.0, 153.0, 147.0, 210.0, 120.0, 185.0]


def fs_design() -> Design:
    starts = {
        "Walsall": "2020-09-01",
        "Lancashire": "2021-02-01",
        "Telford": "2021-06-28",
        "Wandsworth": "2022-01-24",
        "Swindon": "2022-05-24",
    }
    return Design.from_start_dates(starts, "starts", window=("2020-03-01", "2022-11-24"))


# ---------------------------------------------------------------- step 1: the option
def test_decay_scale_default_and_validation() -> None:
    assert sw.VarianceComponents(decay=0.5).decay_scale == "period"
    vc = sw.VarianceComponents(gamma2=0.1, decay=0.5, decay_scale="time")
    assert vc.decay_scale == "time"
    assert "decay_scale='time'" in repr(vc)
    with pytest.raises(OptionError, match="decay_scale"):
        sw.VarianceComponents(decay=0.5, decay_scale="days")  # type: ignore[arg-type]
    with pytest.raises(OptionError, match="needs a `decay`"):
        sw.VarianceComponents(gamma2=0.1, decay_scale="time")
    fc = sw.VarianceComponents.from_correlations(0.05, cac=0.5, decay=0.7, decay_scale="time")
    assert fc.decay_scale == "time"
    assert fc.with_(decay=0.6).decay_scale == "time"


def test_describe_says_which_scale() -> None:
    vc = sw.VarianceComponents(tau2=0.05, gamma2=0.1, decay=0.5)
    assert "per period (decay_scale='period')" in vc.describe()
    assert "per year (decay_scale='time'" in vc.with_(decay_scale="time").describe()


def test_period_midpoints_from_start_dates() -> None:
    d = fs_design()
    lengths = np.array(FS_LENGTHS)
    np.testing.assert_array_equal(d.period_lengths, lengths)
    # exact algebra: start of period j plus half its length, in years of 365.25 days
    expected = (np.concatenate([[0.0], np.cumsum(lengths)[:-1]]) + lengths / 2) / 365.25
    np.testing.assert_allclose(d.period_midpoints(), expected, rtol=0, atol=ZERO_ATOL_1E15)
    assert not d.period_midpoints().flags.writeable


def test_period_midpoints_calendar_grid() -> None:
    d = Design.from_start_dates({"A": "2023-04-01", "B": "2023-07-01"}, "2023Q1/2023Q4")
    days = np.array([90.0, 91.0, 92.0, 92.0])  # 2023 is not a leap year
    expected = (np.cumsum(days) - days / 2) / 365.25
    np.testing.assert_allclose(d.period_midpoints(), expected, rtol=0, atol=ZERO_ATOL_1E15)


def test_period_midpoints_missing_is_design_error() -> None:
    with pytest.raises(DesignError, match="no period lengths or dates"):
        Design.stepped_wedge(3, 1).period_midpoints()
    # labels that are not a calendar grid do not count as dates
    d = Design.from_matrix([[0, 1], [0, 0]], periods=pd.Index(["a", "b"]))
    with pytest.raises(DesignError, match="decay_scale='time'"):
        d.period_midpoints()


# ---------------------------------------------------------------- step 2: power, simulate
def _gls_se(design: Design, vc: sw.VarianceComponents, m: float, times: np.ndarray) -> float:
    """SE of the GLS treatment estimator from explicit per-cluster covariance matrices.

    Fixed effects: one mean per period plus the treatment effect; cluster-period means with
    ``V = sigma2 / m I + tau2 J + gamma2 R``, ``R_jk = r**|t_j - t_k|`` written out here.
    """
    x = design.matrix
    n_periods = x.shape[1]
    lag = np.abs(times[:, None] - times[None, :])
    assert vc.decay is not None
    v = vc.sigma2 / m * np.eye(n_periods) + vc.tau2 + vc.gamma2 * vc.decay**lag
    v_inv = np.linalg.inv(v)
    info = np.zeros((n_periods + 1, n_periods + 1))
    for row in x:
        z = np.column_stack([np.eye(n_periods), row])
        info += z.T @ v_inv @ z
    return float(np.sqrt(np.linalg.inv(info)[-1, -1]))


def _normal_power(effect: float, se: float, alpha: float = 0.05) -> float:
    from scipy import stats

    z = stats.norm.ppf(1 - alpha / 2)
    return float(stats.norm.cdf(abs(effect) / se - z) + stats.norm.cdf(-abs(effect) / se - z))


def test_power_one_year_periods_equal_index_scale() -> None:
    base = Design.stepped_wedge(4, 2)
    d = Design.from_matrix(base.matrix, period_lengths=[365.25] * base.n_periods)
    vc = sw.VarianceComponents(sigma2=1.0, tau2=0.02, gamma2=0.03, decay=0.6)
    by_index = sw.power(d, effect=0.3, variance=vc, cluster_size=20)
    by_time = sw.power(d, effect=0.3, variance=vc.with_(decay_scale="time"), cluster_size=20)
    assert abs(by_time.std_error - by_index.std_error) < 1e-12
    assert abs(by_time.power - by_index.power) < 1e-12


@pytest.mark.parametrize("tau2", [0.0, 0.02])
def test_power_unequal_lengths_matches_explicit_gls(tau2: float) -> None:
    d = fs_design()
    vc = sw.VarianceComponents(sigma2=1.0, tau2=tau2, gamma2=0.05, decay=0.4, decay_scale="time")
    res = sw.power(d, effect=0.25, variance=vc, cluster_size=30)
    se = _gls_se(d, vc, 30.0, d.period_midpoints())
    # tolerance: one GLS solve of a 7 x 7 system either way, condition number < 1e4
    assert res.std_error == pytest.approx(se, rel=LINALG_REL)
    assert res.power == pytest.approx(_normal_power(0.25, se), rel=LINALG_REL)
    # and it is a different number from the period-index scale
    se_index = _gls_se(d, vc, 30.0, np.arange(d.n_periods, dtype=float))
    assert abs(se - se_index) > 1e-3
    assert "decay_scale='time'" in str(res.summary())


def test_power_time_scale_needs_dates() -> None:
    vc = sw.VarianceComponents(gamma2=0.05, decay=0.5, decay_scale="time")
    with pytest.raises(DesignError, match="no period lengths or dates"):
        sw.power(Design.stepped_wedge(3, 1), effect=0.3, variance=vc, cluster_size=10)
    with pytest.raises(OptionError, match="needs `times`"):
        vc.covariance(np.full((2, 4), 10.0))


def test_simulate_one_year_periods_equal_index_scale() -> None:
    base = Design.stepped_wedge(3, 1)
    d = Design.from_matrix(base.matrix, period_lengths=[365.25] * base.n_periods)
    vc = sw.VarianceComponents(sigma2=1.0, tau2=0.1, gamma2=0.2, decay=0.5)
    a = sw.simulate(d, effect=0.5, variance=vc, cluster_size=5, rng=11)
    b = sw.simulate(d, effect=0.5, variance=vc.with_(decay_scale="time"), cluster_size=5, rng=11)
    np.testing.assert_allclose(
        b["outcome"].to_numpy(), a["outcome"].to_numpy(), rtol=0, atol=ZERO_ATOL_1E12
    )


def test_simulate_latent_covariance_continuous_time() -> None:
    from steppedwedge.simulate import _simulate_iv
    from steppedwedge.simulate._draw import draw_cluster_effects

    d = fs_design()
    gamma2, r = 0.5, 0.3
    vc = sw.VarianceComponents(sigma2=1.0, gamma2=gamma2, decay=r, decay_scale="time")
    spec = _simulate_iv(
        d,
        effect=0.0,
        variance=vc,
        cluster_size=1,
        family="gaussian",
        link=None,
        baseline=0.0,
        time_effects=None,
        effect_curve=None,
        sampling="cross-sectional",
        churn=None,
        dispersion=None,
        level="individual",
    )
    rng = np.random.default_rng(20261201)
    draws = np.concatenate([draw_cluster_effects(spec, rng) for _ in range(4000)])  # 20000 x 6
    n = draws.shape[0]
    t = d.period_midpoints()
    target = gamma2 * r ** np.abs(t[:, None] - t[None, :])
    emp = draws.T @ draws / n  # mean zero by construction
    # MC SE of a product-moment of bivariate normals: sqrt((s_jj s_kk + s_jk^2) / n)
    mcse = np.sqrt((np.outer(np.diag(target), np.diag(target)) + target**2) / n)
    assert np.all(np.abs(emp - target) < 4 * mcse)
    # the index scale is rejected by the same test (distances differ by up to 0.5 year)
    index = gamma2 * r ** np.abs(np.subtract.outer(np.arange(6.0), np.arange(6.0)))
    assert np.any(np.abs(emp - index) > 4 * mcse)


def test_simulate_time_scale_needs_design_with_dates() -> None:
    vc = sw.VarianceComponents(gamma2=0.1, decay=0.5, decay_scale="time")
    with pytest.raises(DesignError, match="bare ndarray"):
        sw.simulate(Design.stepped_wedge(2, 1).matrix, effect=0.0, variance=vc, cluster_size=2)
    with pytest.raises(DesignError, match="no period lengths or dates"):
        sw.simulate(Design.stepped_wedge(2, 1), effect=0.0, variance=vc, cluster_size=2, rng=1)


def test_simulate_power_known_variance_uses_times() -> None:
    d = fs_design()
    vc = sw.VarianceComponents(sigma2=1.0, tau2=0.02, gamma2=0.05, decay=0.4, decay_scale="time")
    res = sw.simulate_power(
        d,
        effect=0.25,
        variance=vc,
        cluster_size=30,
        level="cluster-period",
        analysis="known-variance",
        n_sims=5,
        rng=1,
        progress=False,
    )
    se = _gls_se(d, vc, 30.0, d.period_midpoints())
    np.testing.assert_allclose(res.replicates["std_error"].to_numpy(), se, rtol=LINALG_REL)


# ---------------------------------------------------------------- step 3: the LMM
def _ten_cluster_design() -> Design:
    days = ["2020-09-01", "2021-02-01", "2021-06-28", "2022-01-24", "2022-05-24"]
    starts = {f"c{i}": day for i, day in enumerate(days * 2)}
    return Design.from_start_dates(starts, "starts", window=("2020-03-01", "2022-11-24"))


def _direct_loglik(
    df: pd.DataFrame, times: np.ndarray, theta: dict[str, float], reml: bool
) -> tuple[float, np.ndarray]:
    """Exact Gaussian (RE)ML log-likelihood from the individual-level covariance.

    ``V_i = sigma2 I + tau2 J + gamma2 Z_i R Z_i'`` with ``R_jk = decay**|t_j - t_k|`` and
    ``Z_i`` the period indicator of each row; fixed effects intercept, period dummies (first
    period the reference) and treatment, profiled out by GLS.  REML in the lme4 convention
    ``-(1/2)[(N - p) log(2 pi) + log|V| + log|X'V^-1 X| + r'V^-1 r]``.
    """
    periods = pd.Index(sorted(df["period"].unique()))
    n_t = len(periods)
    lag = np.abs(times[:, None] - times[None, :])
    r_mat = theta["decay"] ** lag
    xtvx, xtvy, blocks = 0.0, 0.0, []
    logdet = 0.0
    for _, g in df.groupby("cluster", sort=False):
        j = periods.get_indexer(g["period"])
        z = np.eye(n_t)[j]
        x = np.column_stack([np.ones(len(g)), z[:, 1:], g["treatment"].to_numpy()])
        y = g["outcome"].to_numpy()
        v = (
            theta["sigma2"] * np.eye(len(g))
            + theta.get("tau2", 0.0)
            + theta["gamma2"] * (z @ r_mat @ z.T)
        )
        c = np.linalg.cholesky(v)
        logdet += 2 * np.log(np.diag(c)).sum()
        vix = np.linalg.solve(v, x)
        xtvx = xtvx + x.T @ vix
        xtvy = xtvy + vix.T @ y
        blocks.append((x, y, v))
    beta = np.linalg.solve(xtvx, xtvy)
    quad = sum(float((y - x @ beta) @ np.linalg.solve(v, y - x @ beta)) for x, y, v in blocks)
    n, p = len(df), len(beta)
    if reml:
        ll = -0.5 * ((n - p) * np.log(2 * np.pi) + logdet + np.linalg.slogdet(xtvx)[1] + quad)
    else:
        ll = -0.5 * (n * np.log(2 * np.pi) + logdet + quad)
    return float(ll), beta


def _direct_fit(
    df: pd.DataFrame, times: np.ndarray, names: list[str], reml: bool
) -> tuple[dict[str, float], float]:
    """Maximise :func:`_direct_loglik` from a generic start (log variances, logit decay)."""
    from scipy import optimize

    def unpack(u: np.ndarray) -> dict[str, float]:
        out = {nm: float(np.exp(val)) for nm, val in zip(names, u, strict=False)}
        out["decay"] = float(1 / (1 + np.exp(-u[-1])))
        return out

    def nll(u: np.ndarray) -> float:
        return -_direct_loglik(df, times, unpack(u), reml)[0]

    u0 = np.zeros(len(names) + 1)
    res = optimize.minimize(
        nll,
        u0,
        method="Nelder-Mead",
        options={"xatol": 1e-9, "fatol": 1e-13, "maxiter": 20000, "maxfev": 20000},
    )
    res = optimize.minimize(nll, res.x, method="BFGS", options={"gtol": 1e-9})
    return unpack(res.x), -float(res.fun)


@pytest.mark.parametrize(
    ("random", "method"),
    [("decay", "ml"), ("decay", "reml"), ("nested+decay", "ml"), ("nested+decay", "reml")],
)
def test_lmm_time_decay_matches_direct_likelihood(random: str, method: str) -> None:
    d = _ten_cluster_design()
    vc = sw.VarianceComponents(sigma2=1.0, tau2=0.2, gamma2=0.4, decay=0.3, decay_scale="time")
    # seed 5: every fit interior (other seeds put tau2 of nested+decay on the boundary)
    df = sw.simulate(d, effect=0.5, variance=vc, cluster_size=8, rng=5)
    res = sw.fit(
        df,
        outcome="outcome",
        cluster="cluster",
        period="period",
        treatment="treatment",
        random=random,
        method=method,
        design=d,
        decay_scale="time",
    )
    assert res.converged and not res.singular
    t = d.period_midpoints()
    est = dict(res.variance_components)
    reml = method == "reml"
    # 1. the likelihood itself, at our estimates (no optimiser involved): 1e-8 absolute
    ll, beta = _direct_loglik(df, t, est, reml)
    assert abs(res.loglik - ll) < 1e-8
    np.testing.assert_allclose(res.estimate, beta[-1], rtol=DENSE_REL)
    # 2. the maximiser, found independently from a generic start: 1e-6 relative
    names = ["sigma2", "gamma2"] + (["tau2"] if "nested" in random else [])
    ref, ll_ref = _direct_fit(df, t, names, reml)
    for nm, val in ref.items():
        assert est[nm] == pytest.approx(val, rel=DIRECT_FIT_REL), nm
    assert res.loglik >= ll_ref - 1e-8
    assert "decay_scale='time'" in str(res.summary())


def test_lmm_time_decay_one_year_periods_equal_index_scale() -> None:
    base = Design.stepped_wedge(4, 2)
    d = Design.from_matrix(base.matrix, period_lengths=[365.25] * base.n_periods)
    vc = sw.VarianceComponents(sigma2=1.0, gamma2=0.3, decay=0.5)
    kw = dict(outcome="outcome", cluster="cluster", period="period", treatment="treatment")
    df = sw.simulate(d, effect=0.5, variance=vc, cluster_size=5, rng=4)
    a = sw.fit(df, **kw, random="decay", design=d)
    b = sw.fit(df, **kw, random="decay", design=d, decay_scale="time")
    assert 0 < a.variance_components["decay"] < 1
    # same distances, same likelihood, same optimiser path: equal to rounding
    assert abs(b.loglik - a.loglik) < 1e-12 * abs(a.loglik)
    assert abs(b.estimate - a.estimate) < 1e-12
    assert abs(b.variance_components["decay"] - a.variance_components["decay"]) < 1e-12
    # seed 3: the period-scale decay is negative (-0.18); in continuous time r**t needs
    # r > 0, so the estimate sits on its lower bound and the fit says so
    df = sw.simulate(d, effect=0.5, variance=vc, cluster_size=5, rng=3)
    a = sw.fit(df, **kw, random="decay", design=d)
    b = sw.fit(df, **kw, random="decay", design=d, decay_scale="time")
    assert a.variance_components["decay"] < 0
    assert b.singular and b.variance_components["decay"] == pytest.approx(1e-6)
    assert b.loglik < a.loglik


def test_lmm_time_decay_bad_options() -> None:
    d = _ten_cluster_design()
    vc = sw.VarianceComponents(sigma2=1.0, gamma2=0.3, decay=0.5, decay_scale="time")
    df = sw.simulate(d, effect=0.5, variance=vc, cluster_size=2, rng=1)
    kw = dict(outcome="outcome", cluster="cluster", period="period", treatment="treatment")
    with pytest.raises(OptionError, match="needs `design=`"):
        sw.fit(df, **kw, random="decay", decay_scale="time")
    with pytest.raises(OptionError, match="has none"):
        sw.fit(df, **kw, random="nested", design=d, decay_scale="time")
    with pytest.raises(OptionError, match="decay_scale"):
        sw.fit(df, **kw, random="decay", design=d, decay_scale="years")
    with pytest.raises(OptionError, match="available for mixed models"):
        sw.fit(df, **kw, random="decay", method="gee", design=d, decay_scale="time")
    plain = Design.stepped_wedge(5, 2)
    df2 = sw.simulate(
        plain, effect=0.5, variance=vc.with_(decay_scale="period"), cluster_size=2, rng=1
    )
    with pytest.raises(DesignError, match="no period lengths or dates"):
        sw.fit(df2, **kw, random="decay", design=plain, decay_scale="time")


def test_docs_example_is_true() -> None:
    """The worked example of docs/explanation/variance_components.rst runs as printed."""
    import doctest
    from pathlib import Path

    page = Path(__file__).resolve().parents[1] / "docs/explanation/variance_components.rst"
    if not page.exists():  # pragma: no cover - an installed wheel without docs
        pytest.skip("docs/ not present")
    result = doctest.testfile(str(page), module_relative=False, verbose=False)
    assert result.attempted >= 5 and result.failed == 0


# ---------------------------------------------------------------- step 4: the GLMM
def _unit_data(times: np.ndarray | None) -> tuple[object, object]:
    from steppedwedge._core.families import make_family
    from steppedwedge._core.laplace import UnitData

    rng = np.random.default_rng(5)
    n_i, n_t = 6, 6
    x = np.concatenate(
        [np.ones((n_i, n_t, 1)), np.broadcast_to(np.eye(n_t)[:, 1:], (n_i, n_t, n_t - 1))], axis=2
    )
    y = rng.poisson(20.0, size=(n_i, n_t)).astype(float)
    ud = UnitData(
        y=y,
        n=np.ones((n_i, n_t)),
        offset=np.full((n_i, n_t), np.log(20.0)),
        weight=np.ones((n_i, n_t)),
        x=x,
        z=np.broadcast_to(np.eye(n_t), (n_i, n_t, n_t)).copy(),
        comp=np.zeros(n_t, dtype=int),
        n_comp=1,
        ar1=(0, n_t),
        ar1_times=times,
    )
    return ud, make_family("poisson")


def test_ar1_factor_unequal_gaps_and_derivative() -> None:
    from steppedwedge._core.laplace import ar1_factor

    t = fs_design().period_midpoints()
    for r in (0.05, 0.4, 0.95):
        lo, dlo = ar1_factor(r, t.size, deriv=True, times=t)
        np.testing.assert_allclose(
            lo @ lo.T, r ** np.abs(np.subtract.outer(t, t)), atol=ZERO_ATOL_1E14
        )
        phi, h = np.arctanh(r), 1e-6
        up = ar1_factor(np.tanh(phi + h), t.size, times=t)
        dn = ar1_factor(np.tanh(phi - h), t.size, times=t)
        # central difference: truncation O(h^2 L''') ~ 1e-12, rounding ~1e-16 / h = 1e-10
        np.testing.assert_allclose(dlo, (up - dn) / (2 * h), atol=CENTRAL_DIFF_AR1_ATOL)
    # equal unit gaps: exactly the closed form of the period scale
    a, da = ar1_factor(0.6, 5, deriv=True)
    b, db = ar1_factor(0.6, 5, deriv=True, times=np.arange(5.0))
    np.testing.assert_allclose(b, a, atol=ZERO_ATOL_1E15)
    np.testing.assert_allclose(db, da, atol=ZERO_ATOL_1E15)


def test_laplace_gradient_unequal_gaps_finite_differences() -> None:
    from steppedwedge._core.laplace import laplace, laplace_grad

    t = fs_design().period_midpoints()
    ud, fam = _unit_data(t)
    beta = np.r_[0.05, np.linspace(-0.1, 0.1, 5)]
    sigma = np.array([0.35, np.arctanh(0.5)])
    st = laplace(ud, fam, beta, sigma)  # type: ignore[arg-type]
    g_beta, g_sigma, _ = laplace_grad(ud, fam, st, sigma)  # type: ignore[arg-type]
    h = 1e-6
    for k in range(2):
        e = np.zeros(2)
        e[k] = h
        up = laplace(ud, fam, beta, sigma + e).value  # type: ignore[arg-type]
        dn = laplace(ud, fam, beta, sigma - e).value  # type: ignore[arg-type]
        # modes solved to ~1e-12: the central difference is good to ~1e-6 absolute
        assert g_sigma[k] == pytest.approx(
            (up - dn) / (2 * h), abs=CENTRAL_DIFF_LAPLACE_DECAY["atol"]
        )
    # unit gaps: the same likelihood as the period scale
    ud0, _ = _unit_data(None)
    ud1, _ = _unit_data(np.arange(6.0))
    v0 = laplace(ud0, fam, beta, sigma).value  # type: ignore[arg-type]
    v1 = laplace(ud1, fam, beta, sigma).value  # type: ignore[arg-type]
    assert abs(v0 - v1) < 1e-10


@pytest.mark.parametrize("random", ["decay", "nested+decay"])
def test_glmm_time_decay_matches_glmmtmb_ou(random: str) -> None:
    """glmmTMB ``ou(times + 0 | cluster)`` on the period mid-points (tests/reference/decay_time)."""
    import json
    from pathlib import Path

    ref_dir = Path(__file__).parent / "reference" / "decay_time"
    ref = json.loads((ref_dir / "ou_poisson.json").read_text())[random]
    df = pd.read_csv(ref_dir / "poisson_counts.csv")
    d = _ten_cluster_design()
    res = sw.fit(
        df,
        outcome="outcome",
        cluster="cluster",
        period="period",
        treatment="treatment",
        family="poisson",
        exposure="population",
        random=random,
        design=d,
        decay_scale="time",
    )
    # the same Laplace likelihood maximised: 1e-8 on the log-likelihood
    assert res.loglik == pytest.approx(ref["loglik"], abs=LOGLIK_SAME_OPTIMUM_ATOL)
    assert res.loglik >= ref["loglik"] - 1e-9
    assert res.estimate == pytest.approx(ref["beta"][-1], rel=GLMMTMB_DECAY_REL)
    assert res.std_error == pytest.approx(ref["se"][-1], rel=GLMMTMB_DECAY_REL)
    vc = res.variance_components
    # the likelihood is flat in (gamma2, r): glmmTMB's optimum is 2e-10 lower and 4e-6 away
    # in r for random="decay", so 1e-4 relative on the variance parameters
    assert vc["gamma2"] == pytest.approx(ref["gamma2"], rel=FLAT_LIKELIHOOD_VC_REL)
    assert vc["decay"] == pytest.approx(ref["decay"], rel=FLAT_LIKELIHOOD_VC_REL)
    assert vc.get("tau2", 0.0) == pytest.approx(ref["tau2"], abs=BOUNDARY_TAU2_ATOL)
    assert "decay_scale='time'" in str(res.summary())


def test_simulate_power_rerandomised_keeps_calendar() -> None:
    d = _ten_cluster_design()
    alloc = sw.randomise(d, list(d.clusters), rng=3, alpha=None)
    vc = sw.VarianceComponents(sigma2=1.0, tau2=0.02, gamma2=0.05, decay=0.4, decay_scale="time")
    res = sw.simulate_power(
        d,
        effect=0.25,
        variance=vc,
        cluster_size=30,
        level="cluster-period",
        analysis="known-variance",
        allocation=alloc,
        n_sims=4,
        rng=1,
        progress=False,
    )
    # two clusters per sequence in every draw: the same GLS SE on the calendar scale
    se = _gls_se(d, vc, 30.0, d.period_midpoints())
    np.testing.assert_allclose(res.replicates["std_error"].to_numpy(), se, rtol=LINALG_REL)
