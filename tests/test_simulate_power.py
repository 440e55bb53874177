"""simulate_power: Monte-Carlo power agrees with analytic power; seeding, batching,
executors, failure accounting and input checks."""

from __future__ import annotations

import math
import os
import warnings
from concurrent.futures import Executor, Future, ProcessPoolExecutor
from typing import Any

import numpy as np
import pandas as pd
import pytest
from numpy.testing import assert_allclose
from scipy import stats
from tests._tolerances import (
    EXACT,
    MC_K,
    QUANTILE_ROUND_TRIP_REL,
    SAME_OPTIMISER,
    SPECIAL_FUNCTION_REL,
)

import steppedwedge as sw
from steppedwedge._core.gls import gls_information
from steppedwedge.design import Design
from steppedwedge.exceptions import SteppedWedgeWarning
from steppedwedge.planning.simulation import SimulatedPowerResult, simulate_power
from steppedwedge.simulate import simulate

DESIGN = Design.stepped_wedge(4, 3)  # 12 clusters x 5 periods
NESTED = sw.VarianceComponents(sigma2=1.0, tau2=0.05, gamma2=0.02)


def analytic_normal_power(
    design: Design,
    vc: sw.VarianceComponents,
    m: float,
    effect: float,
    alpha: float = 0.05,
    churn: float = 1.0,
) -> float:
    """Two-sided Wald power from the GLS information of the cell means (methods.md 2.2)."""
    x = np.nan_to_num(np.asarray(design.matrix))
    n_clusters, n_periods = x.shape
    z = np.zeros((n_clusters, n_periods, n_periods + 1))
    z[:, np.arange(n_periods), np.arange(n_periods)] = 1.0
    z[:, :, -1] = x
    cov = vc.covariance(np.full(x.shape, float(m)), treatment=x, churn=churn)
    var = np.linalg.inv(gls_information(z, cov))[-1, -1]
    crit = stats.norm.ppf(1 - alpha / 2)
    lam = abs(effect) / math.sqrt(var)
    return float(stats.norm.cdf(lam - crit) + stats.norm.cdf(-lam - crit))


# ------------------------------------------------------------------ power = analytic power


@pytest.mark.parametrize(
    ("vc", "sampling", "churn"),
    [
        (NESTED, "cross-sectional", None),
        (
            sw.VarianceComponents(sigma2=1.0, tau2=0.02, gamma2=0.05, decay=0.7),
            "cross-sectional",
            None,
        ),
        (sw.VarianceComponents(sigma2=1.0, tau2=0.05, eta2=0.02, rho=0.3), "cross-sectional", None),
        (sw.VarianceComponents(sigma2=1.0, tau2=0.05, gamma2=0.01, psi2=0.5), "cohort", 0.5),
    ],
    ids=["nested", "decay", "random-effect", "open-cohort"],
)
def test_known_variance_power_matches_analytic(vc, sampling: str, churn) -> None:
    n_sims, m, effect = 1000, 10, 0.3
    res = simulate_power(
        DESIGN,
        effect=effect,
        variance=vc,
        cluster_size=m,
        sampling=sampling,
        churn=churn,
        analysis="known-variance",
        n_sims=n_sims,
        rng=2024,
        progress=False,
    )
    target = analytic_normal_power(DESIGN, vc, m, effect, churn=1.0 if churn is None else churn)
    assert 0.2 < target < 0.95
    assert res.n_usable == n_sims
    assert abs(res.power - target) <= MC_K * math.sqrt(target * (1 - target) / n_sims)
    # the estimator's sampling SD equals its (fixed) model-based SE; no bias
    var = float(res.mean_std_error**2)
    assert_allclose(res.replicates["std_error"], res.mean_std_error, **EXACT)
    sd = res.empirical_std_error
    # SD of a sample SD of n normal draws: sigma / sqrt(2 (n - 1))
    assert abs(sd - math.sqrt(var)) <= MC_K * math.sqrt(var) / math.sqrt(2 * (n_sims - 1))
    assert abs(res.bias) <= MC_K * math.sqrt(var / n_sims)


def test_known_variance_matches_sw_power() -> None:
    from steppedwedge.planning import power

    n_sims = 2000
    res = simulate_power(
        DESIGN,
        effect=0.3,
        variance=NESTED,
        cluster_size=20,
        analysis="known-variance",
        n_sims=n_sims,
        rng=7,
        progress=False,
    )
    target = power(DESIGN, effect=0.3, variance=NESTED, cluster_size=20).power
    assert abs(res.power - target) <= MC_K * math.sqrt(target * (1 - target) / n_sims)


def test_type_i_error_coverage_with_one_call() -> None:
    n_sims = 2000
    res = simulate_power(
        DESIGN,
        effect=0.0,
        variance=NESTED,
        cluster_size=10,
        analysis="known-variance",
        n_sims=n_sims,
        rng=99,
        progress=False,
    )
    assert res.type_i_error == res.power
    assert abs(res.type_i_error - 0.05) <= MC_K * math.sqrt(0.05 * 0.95 / n_sims)
    assert abs(res.coverage - 0.95) <= MC_K * math.sqrt(0.05 * 0.95 / n_sims)
    assert "type-I error" in res.summary().as_text()
    # coverage is exactly 1 - rejection rate for a Wald test and its own interval
    assert_allclose(res.coverage, 1 - res.power, **EXACT)


def test_time_varying_effect_truth_is_time_averaged_effect() -> None:
    curve = [0.5, 1.0, 1.0, 1.5]
    res = simulate_power(
        DESIGN,
        effect=0.4,
        variance=NESTED,
        cluster_size=5,
        effect_curve=curve,
        analysis="known-variance",
        n_sims=5,
        rng=1,
        progress=False,
    )
    assert_allclose(res.true_value, 0.4 * np.mean(curve), **EXACT)


# ------------------------------------------------------------------ reproducibility


def _tiny(**kw: Any) -> SimulatedPowerResult:
    args = dict(
        effect=0.3,
        variance=NESTED,
        cluster_size=5,
        analysis="known-variance",
        n_sims=37,
        rng=31,
        progress=False,
    )
    args.update(kw)
    return simulate_power(Design.stepped_wedge(3, 2), **args)


def test_replicate_b_uses_spawned_stream_b() -> None:
    """Replicate b's data are simulate(..., rng=default_rng(SeedSequence(seed).spawn(n)[b]))."""
    vc = sw.VarianceComponents(sigma2=1.0, tau2=0.1)
    d = Design.stepped_wedge(3, 1)
    seen: list[float] = []

    res = simulate_power(
        d,
        effect=0.2,
        variance=vc,
        cluster_size=4,
        analysis=_sum_analysis,
        n_sims=6,
        rng=77,
        progress=False,
    )
    children = np.random.SeedSequence(77).spawn(6)
    for child in children:
        df = simulate(d, effect=0.2, variance=vc, cluster_size=4, rng=np.random.default_rng(child))
        seen.append(float(df["outcome"].sum()))
    assert_allclose(res.replicates["estimate"], seen, **EXACT)


def _sum_analysis(data: pd.DataFrame) -> dict[str, float]:
    return {"estimate": float(data["outcome"].sum()), "std_error": 1.0, "p_value": 0.5}


@pytest.mark.parametrize("batch_size", [1, 5, 1000])
def test_results_do_not_depend_on_batch_size(batch_size: int) -> None:
    pd.testing.assert_frame_equal(_tiny().estimates, _tiny(batch_size=batch_size).estimates)


def test_identical_with_two_processes() -> None:
    serial = _tiny()
    with ProcessPoolExecutor(max_workers=2) as pool:
        parallel = _tiny(executor=pool, batch_size=4)
    pd.testing.assert_frame_equal(serial.estimates, parallel.estimates)
    pd.testing.assert_frame_equal(serial.estimates, _tiny(n_jobs=2).estimates)


@pytest.fixture(scope="module")
def dask_client():
    distributed = pytest.importorskip("distributed")
    cluster = distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None
    )
    client = distributed.Client(cluster)
    yield client
    client.close()
    cluster.close()


def test_identical_with_dask_local_cluster(dask_client) -> None:
    serial = _tiny()
    distributed = _tiny(executor=dask_client.get_executor(), batch_size=6)
    pd.testing.assert_frame_equal(serial.estimates, distributed.estimates)


def test_generator_seed_is_reproducible() -> None:
    a = _tiny(rng=np.random.default_rng(4))
    b = _tiny(rng=np.random.default_rng(4))
    pd.testing.assert_frame_equal(a.estimates, b.estimates)
    again = _tiny(rng=np.random.SeedSequence(a.seed))
    pd.testing.assert_frame_equal(a.estimates, again.estimates)


# ------------------------------------------------------------------ failures


def _flaky_code(data: pd.DataFrame) -> int:
    return int(abs(float(data["outcome"].sum())) * 1e6) % 5


def _flaky(data: pd.DataFrame) -> dict[str, Any]:
    k = _flaky_code(data)
    if k == 0:
        raise RuntimeError("numerical trouble")
    if k == 1:
        return {"estimate": 1.0, "std_error": 1.0, "p_value": 0.01, "converged": False}
    if k == 2:
        return {"estimate": float("nan"), "std_error": 1.0, "p_value": 0.5}
    if k == 3:
        return {"estimate": 0.5, "std_error": 0.1, "p_value": 0.001, "singular": True}
    return {"estimate": 0.2, "std_error": 0.1, "p_value": 0.2}


def test_failures_are_classified_and_power_reported_both_ways() -> None:
    d = Design.stepped_wedge(3, 1)
    vc = sw.VarianceComponents(tau2=0.1)
    n = 60
    res = simulate_power(
        d,
        effect=0.1,
        variance=vc,
        cluster_size=3,
        analysis=_flaky,
        n_sims=n,
        rng=5,
        progress=False,
    )
    codes = np.array(
        [
            _flaky_code(
                simulate(d, effect=0.1, variance=vc, cluster_size=3, rng=np.random.default_rng(s))
            )
            for s in np.random.SeedSequence(5).spawn(n)
        ]
    )
    expected = {"error": 0, "non-convergence": 1, "non-finite": 2, "singular": 3, "ok": 4}
    for status, code in expected.items():
        assert res.status_counts[status] == np.sum(codes == code), status
    assert res.n_failed == np.sum(codes <= 2)
    assert res.power == np.sum(codes == 3) / np.sum(codes >= 3)
    assert res.power_all == np.sum(codes == 3) / n
    err = res.estimates[res.estimates["status"] == "error"]
    assert err["message"].str.contains("RuntimeError: numerical trouble").all()
    assert "failures as non-rejections" in str(res)


def test_clopper_pearson_exact_values() -> None:
    # all rejected / none rejected have closed forms: (alpha/2)^(1/n) bounds
    res = _tiny(analysis=lambda data: (0.0, 1.0, 0.0), n_sims=10)
    low, high = res.conf_int()
    assert high == 1.0
    assert_allclose(low, 0.025 ** (1 / 10), rtol=SPECIAL_FUNCTION_REL)
    res0 = _tiny(analysis=lambda data: (0.0, 1.0, 0.9), n_sims=10)
    low, high = res0.conf_int(0.9)
    assert low == 0.0
    assert_allclose(high, 1 - 0.05 ** (1 / 10), rtol=SPECIAL_FUNCTION_REL)
    # an interior case against the beta-quantile definition, via the binomial tails
    res3 = _tiny(analysis=_every_third_rejects, n_sims=30)
    k, n = res3.n_rejected, res3.n_usable
    low, high = res3.conf_int()
    assert_allclose(stats.binom.sf(k - 1, n, low), 0.025, rtol=QUANTILE_ROUND_TRIP_REL)
    assert_allclose(stats.binom.cdf(k, n, high), 0.025, rtol=QUANTILE_ROUND_TRIP_REL)


def _every_third_rejects(data: pd.DataFrame) -> tuple[float, float, float]:
    p = 0.01 if int(abs(float(data["outcome"].sum())) * 1e6) % 3 == 0 else 0.5
    return (0.0, 1.0, p)


class _FlakyExecutor(Executor):
    """Runs the first ``ok`` submissions, then its 'workers' are lost."""

    def __init__(self, ok: int) -> None:
        self.ok = ok
        self.n = 0

    def submit(self, fn, /, *args, **kwargs):  # type: ignore[override]
        fut: Future = Future()
        self.n += 1
        if self.n <= self.ok:
            fut.set_result(fn(*args, **kwargs))
        else:
            fut.set_exception(RuntimeError("worker lost"))
        return fut


def test_executor_failing_mid_run_reports_what_finished() -> None:
    with pytest.warns(SteppedWedgeWarning, match="30 of 50 replicates did not run"):
        res = _tiny(executor=_FlakyExecutor(2), batch_size=10, n_sims=50)
    assert res.n_completed == 20
    assert res.status_counts["not-run"] == 30
    assert res.n_usable == 20
    assert res.executor_errors and "worker lost" in res.executor_errors[0]
    full = _tiny(n_sims=50)
    pd.testing.assert_frame_equal(res.estimates.iloc[:20], full.estimates.iloc[:20])


_PARENT = os.getpid()


def _dies_in_worker(data: pd.DataFrame) -> tuple[float, float, float]:
    if os.getpid() != _PARENT:
        os._exit(1)  # a worker process crashes
    return (0.0, 1.0, 0.5)


def test_broken_process_pool_does_not_hang() -> None:
    with ProcessPoolExecutor(max_workers=2) as pool:
        with pytest.warns(SteppedWedgeWarning, match="did not run"):
            res = _tiny(analysis=_dies_in_worker, executor=pool, batch_size=5, n_sims=20)
    assert res.status_counts["not-run"] == 20
    assert math.isnan(res.power)


# ------------------------------------------------------------------ user DGP


def _my_dgp(rng: np.random.Generator) -> pd.DataFrame:
    return simulate(
        Design.stepped_wedge(3, 1), effect=0.5, variance=NESTED, cluster_size=4, rng=rng
    )


def _bad_dgp(rng: np.random.Generator) -> pd.DataFrame:
    return _my_dgp(rng).rename(columns={"outcome": "y"})


def test_user_dgp_with_callable_analysis() -> None:
    res = simulate_power(
        None, dgp=_my_dgp, analysis=_sum_analysis, n_sims=4, rng=3, progress=False, effect=0.5
    )
    children = np.random.SeedSequence(3).spawn(4)
    sums = [float(_my_dgp(np.random.default_rng(c))["outcome"].sum()) for c in children]
    assert_allclose(res.replicates["estimate"], sums, **EXACT)
    assert res.true_value == 0.5


def test_user_dgp_with_wrong_columns_fails_before_the_run() -> None:
    with pytest.raises(ValueError, match=r"without the column\(s\) \['outcome'\]"):
        simulate_power(None, dgp=_bad_dgp, analysis={}, n_sims=1000, rng=1, progress=False)
    with pytest.raises(ValueError, match="must return a pandas DataFrame"):
        simulate_power(None, dgp=lambda rng: 3, analysis={}, n_sims=1000, rng=1, progress=False)


# ------------------------------------------------------------------ bad input

_calls = {"n": 0}


def _rejects_options(data: pd.DataFrame) -> Any:
    _calls["n"] += 1
    raise ValueError("`dof` must be one of 'kenward-roger', ...; got 'bogus'.")


def test_analysis_rejecting_its_options_fails_before_simulating() -> None:
    _calls["n"] = 0
    with pytest.raises(ValueError, match="rejected the first simulated dataset.*bogus"):
        _tiny(analysis=_rejects_options, n_sims=1000)
    assert _calls["n"] == 1


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (dict(n_sims=0), "`n_sims` must be an integer >= 1"),
        (dict(n_sims=2.5), "`n_sims` must be an integer"),
        (dict(alpha=0.0), "`alpha` must lie in \\(0, 1\\)"),
        (dict(alpha=1.0), "`alpha` must lie in \\(0, 1\\)"),
        (dict(alpha=1.5), "`alpha` must lie in \\(0, 1\\)"),
        (dict(analysis=3), "`analysis` must be"),
        (dict(analysis={"outcome": "y"}), "must not set the column roles"),
        (dict(executor="pool"), "`executor` must be"),
        (dict(batch_size=0), "`batch_size` must be"),
        (dict(n_jobs=0), "`n_jobs` must be"),
        (dict(effect=None), "`effect` must be given"),
        (dict(family="binomial", baseline=0.2), "known-variance' is for family='gaussian'"),
    ],
)
def test_bad_input(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        _tiny(**kwargs)


# ------------------------------------------------------------------ presentation


def test_summary_tidy_plot() -> None:
    res = _tiny()
    text = res.summary().as_text()
    assert "Simulated power" in text and "MC s.e." in text
    tidy = res.tidy()
    assert list(tidy.columns) == [
        "term", "estimate", "std_error", "statistic", "df", "p_value", "conf_low", "conf_high", "n",
    ]  # fmt: skip
    assert_allclose(res.pvalues, res.estimates["p_value"], **EXACT)
    assert tidy.set_index("term").loc["power", "estimate"] == res.power
    assert "SimulatedPowerResult(power=" in repr(res)
    assert "<table>" in res._repr_html_()
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ax = res.plot()
    assert ax.get_xlabel() == "estimate"
    assert res.plot(kind="p_values").get_xlabel() == "p-value"
    plt.close("all")


# ------------------------------------------------------------------ Gaussian LMM fast path


def _fixed_design(x: np.ndarray) -> np.ndarray:
    n_clusters, n_periods = x.shape
    z = np.zeros((n_clusters, n_periods, n_periods + 1))
    z[:, :, 0] = 1.0
    z[:, np.arange(1, n_periods), np.arange(1, n_periods)] = 1.0
    z[:, :, -1] = np.nan_to_num(x)
    return z


@pytest.mark.parametrize("dof", ["kenward-roger", "satterthwaite", "between-within", "normal"])
@pytest.mark.parametrize("random", ["nested", "cluster", "decay", "random-slope"])
def test_fast_path_equals_sw_fit_on_the_rows_it_summarises(random: str, dof: str) -> None:
    """The cell fast path gives what sw.fit gives on individual rows with those cells."""
    from steppedwedge.models.fit import fit
    from steppedwedge.planning._fast_lmm import fast_lmm_analyse, fast_lmm_plan
    from steppedwedge.simulate import _simulate_iv

    design = Design.stepped_wedge(3, 2)
    vc = sw.VarianceComponents(sigma2=1.0, tau2=0.1, gamma2=0.05, eta2=0.05)
    rows = simulate(design, effect=0.4, variance=vc, cluster_size=6, rng=17)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a boundary fit may warn; compare anyway
        ref = fit(
            rows,
            outcome="outcome",
            cluster="cluster",
            period="period",
            treatment="treatment",
            random=random,
            dof=dof,
        )
    spec = _simulate_iv(
        design,
        effect=0.4,
        variance=vc,
        cluster_size=6,
        family="gaussian",
        link=None,
        baseline=None,
        time_effects=None,
        effect_curve=None,
        sampling="cross-sectional",
        churn=None,
        dispersion=None,
        level="cluster-period",
    )
    plan = fast_lmm_plan(spec, {"random": random, "dof": dof}, 0.05)
    assert plan is not None
    g = rows.groupby(["cluster", "period"])["outcome"]
    means = g.mean().to_numpy().reshape(6, 4)
    within = (g.var(ddof=1) * (g.size() - 1)).to_numpy().reshape(6, 4)
    got = fast_lmm_analyse(plan, means, within)
    tol = SAME_OPTIMISER  # same optimiser on the same statistics
    assert_allclose(got["estimate"], ref.estimate, **tol)
    assert_allclose(got["std_error"], ref.std_error, **tol)
    assert_allclose(got["df"], ref.df, **tol)
    assert_allclose(got["p_value"], ref.pvalue, **tol)
    assert_allclose([got["conf_low"], got["conf_high"]], ref.conf_int(0.95), **tol)
    assert got["singular"] == ref.singular and got["converged"] == ref.converged


def test_fast_path_used_only_for_options_it_reproduces() -> None:
    from steppedwedge.planning._fast_lmm import fast_lmm_plan
    from steppedwedge.simulate import _simulate_iv

    def spec(**kw: Any):
        args = dict(
            effect=0.4,
            variance=NESTED,
            cluster_size=6,
            family="gaussian",
            link=None,
            baseline=None,
            time_effects=None,
            effect_curve=None,
            sampling="cross-sectional",
            churn=None,
            dispersion=None,
            level=None,
        )
        args.update(kw)
        return _simulate_iv(Design.stepped_wedge(3, 1), **args)

    assert fast_lmm_plan(spec(), {}, 0.05) is not None
    assert fast_lmm_plan(spec(), {"random": "nested+decay"}, 0.05) is not None
    assert fast_lmm_plan(spec(), {"vcov": "kc"}, 0.05) is None
    assert fast_lmm_plan(spec(), {"time": "linear"}, 0.05) is None
    assert fast_lmm_plan(spec(), {"dof": "between-within"}, 0.05) is not None
    assert fast_lmm_plan(spec(), {"method": "ml"}, 0.05).dof == "satterthwaite"
    assert fast_lmm_plan(spec(), {"method": "ml", "dof": "kenward-roger"}, 0.05) is None
    assert fast_lmm_plan(spec(), {"random": "bogus"}, 0.05) is None
    assert fast_lmm_plan(spec(), {"unknown": 1}, 0.05) is None
    assert fast_lmm_plan(spec(sampling="cohort", variance=NESTED.with_(psi2=0.1)), {}, 0.05) is None
    assert fast_lmm_plan(spec(family="binomial", baseline=0.3), {}, 0.05) is None


def test_fast_path_identical_serially_and_on_two_processes() -> None:
    kw = dict(
        effect=0.3,
        variance=NESTED,
        cluster_size=10,
        analysis={"random": "nested"},
        n_sims=8,
        rng=12,
        progress=False,
    )
    serial = simulate_power(Design.stepped_wedge(3, 2), **kw)
    assert "cell statistics" in serial.analysis
    assert serial.n_failed == 0
    assert np.all(np.isfinite(serial.estimates["df"]))
    with ProcessPoolExecutor(max_workers=2) as pool:
        parallel = simulate_power(Design.stepped_wedge(3, 2), executor=pool, batch_size=3, **kw)
    pd.testing.assert_frame_equal(serial.estimates, parallel.estimates)


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"dof": "bogus"}, "`dof` must be one of"),
        ({"method": "ml", "dof": "kenward-roger"}, "needs a REML fit"),
        ({"random": "nested", "time": "quadratic"}, "`time` must be one of"),
    ],
)
def test_fit_option_rejected_before_simulating(options: dict, match: str) -> None:
    import time

    start = time.perf_counter()
    with pytest.raises(ValueError, match="rejected the first simulated dataset.*" + match):
        simulate_power(
            DESIGN,
            effect=0.3,
            variance=NESTED,
            cluster_size=20,
            analysis=options,
            n_sims=1000,
            rng=1,
            progress=False,
        )
    assert time.perf_counter() - start < 10  # one fit, not 1,000


def test_refitting_rows_with_sw_fit() -> None:
    from steppedwedge.models.fit import fit

    d = Design.stepped_wedge(3, 2)
    res = simulate_power(
        d,
        effect=0.3,
        variance=NESTED,
        cluster_size=5,
        analysis={"random": "cluster"},
        fast=False,
        n_sims=3,
        rng=4,
        progress=False,
    )
    assert "cell statistics" not in res.analysis
    for b, child in enumerate(np.random.SeedSequence(4).spawn(3)):
        rows = simulate(
            d, effect=0.3, variance=NESTED, cluster_size=5, rng=np.random.default_rng(child)
        )
        ref = fit(
            rows,
            outcome="outcome",
            cluster="cluster",
            period="period",
            treatment="treatment",
            random="cluster",
        )
        got = res.estimates.iloc[b]
        assert_allclose(
            [got["estimate"], got["std_error"], got["df"], got["p_value"]],
            [ref.estimate, ref.std_error, ref.df, ref.pvalue],
            **EXACT,
        )


# ------------------------------------------------------------------ calibration (slow)


@pytest.mark.slow
@pytest.mark.parametrize("clusters_per_sequence", [2, 3, 6], ids=["8", "12", "24"])
def test_type_i_error_of_default_kr_analysis(clusters_per_sequence: int) -> None:
    """The default analysis (nested REML, Kenward-Roger) holds its size with 8-24 clusters."""
    design = Design.stepped_wedge(4, clusters_per_sequence)
    vc = sw.VarianceComponents.from_correlations(icc=0.05, cac=0.8)
    res = simulate_power(
        design,
        effect=0.0,
        variance=vc,
        cluster_size=20,
        analysis={},
        n_sims=4000,
        rng=20261126 + clusters_per_sequence,
        n_jobs=2,
        progress=False,
    )
    assert res.n_failed == 0
    assert 0.04 <= res.type_i_error <= 0.06, res.summary().as_text()


def test_progress_bar_only_on_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    import io
    import sys

    from steppedwedge._parallel import _progress_bar

    assert _progress_bar(10, True, "x") is None  # pytest's stderr is not a terminal

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    monkeypatch.setattr(sys, "stderr", Terminal())
    assert _progress_bar(10, False, "x") is None
    tqdm = pytest.importorskip("tqdm")
    bar = _progress_bar(10, True, "x")
    assert isinstance(bar, tqdm.tqdm)
    bar.close()


class _StuckExecutor(Executor):
    """Accepts work and never finishes it (a cluster that went away)."""

    def submit(self, fn, /, *args, **kwargs):  # type: ignore[override]
        return Future()


def test_stuck_executor_times_out_instead_of_hanging() -> None:
    with pytest.warns(SteppedWedgeWarning, match="12 of 12 replicates did not run"):
        res = _tiny(executor=_StuckExecutor(), n_sims=12, batch_size=5, timeout=0.2)
    assert res.status_counts["not-run"] == 12
    assert "timed out" in res.executor_errors[0]
    with pytest.raises(ValueError, match="`timeout` must be a positive"):
        _tiny(timeout=0)


def test_fast_path_defaults_are_sw_fit_defaults() -> None:
    """analysis={} on the fast path gives sw.fit's default analysis of the same data."""
    from steppedwedge.models.fit import fit
    from steppedwedge.planning._fast_lmm import fast_lmm_analyse, fast_lmm_plan
    from steppedwedge.simulate import _simulate_iv

    design = Design.stepped_wedge(3, 2)
    vc = sw.VarianceComponents(sigma2=1.0, tau2=0.1, gamma2=0.05)
    rows = simulate(design, effect=0.4, variance=vc, cluster_size=6, rng=23)
    ref = fit(rows, outcome="outcome", cluster="cluster", period="period", treatment="treatment")
    spec = _simulate_iv(
        design, effect=0.4, variance=vc, cluster_size=6, family="gaussian", link=None,
        baseline=None, time_effects=None, effect_curve=None, sampling="cross-sectional",
        churn=None, dispersion=None, level="cluster-period",
    )  # fmt: skip
    g = rows.groupby(["cluster", "period"])["outcome"]
    means = g.mean().to_numpy().reshape(6, 4)
    within = (g.var(ddof=1) * (g.size() - 1)).to_numpy().reshape(6, 4)
    for options in ({}, {"vcov": None, "dof": None, "method": None}):
        got = fast_lmm_analyse(fast_lmm_plan(spec, options, 0.05), means, within)
        assert_allclose(
            [got["estimate"], got["std_error"], got["df"], got["p_value"]],
            [ref.estimate, ref.std_error, ref.df, ref.pvalue],
            rtol=SAME_OPTIMISER["rtol"],
        )


def test_binary_and_count_analyses_refit_with_sw_fit() -> None:
    """Non-Gaussian data go to sw.fit with the right roles (trials, exposure)."""
    from steppedwedge.models.fit import fit

    d = Design.stepped_wedge(3, 2)
    vc = sw.VarianceComponents(tau2=0.1)
    cases = [
        ("binomial", dict(baseline=0.3, cluster_size=10, level="cluster-period"),
         dict(trials="trials")),
        ("poisson", dict(baseline=0.01, cluster_size=1000.0), dict(exposure="population")),
    ]  # fmt: skip
    for family, kw, roles in cases:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            res = simulate_power(d, effect=0.4, variance=vc, family=family, analysis={},
                                 n_sims=2, rng=6, progress=False, **kw)  # fmt: skip
            child = np.random.SeedSequence(6).spawn(2)[1]
            data = simulate(d, effect=0.4, variance=vc, family=family,
                            rng=np.random.default_rng(child), **kw)  # fmt: skip
            ref = fit(data, outcome="outcome", cluster="cluster", period="period",
                      treatment="treatment", family=family, **roles)  # fmt: skip
        got = res.estimates.iloc[1]
        assert_allclose([got["estimate"], got["std_error"]], [ref.estimate, ref.std_error], **EXACT)
