"""Calibration of the report's primary analysis, the cluster-summary analysis and the
randomisation test on the count audit scenario (``tests/calibration_counts.py``: councils x
20 quarters, persistent council effect SD 0.33, council-quarter effect SD 0.15 decaying 0.9
per quarter, Poisson counts of the child population).  The full table is produced by
``tools/calibrate_counts.py``; these tests keep the claims that the library's defaults rest
on, with fixed seeds:

* the report's primary analysis (the ``nested+decay`` Poisson GLMM, CR2 -- for a GLMM the
  Kauermann-Carroll sandwich -- with t(I - 2)) keeps its type-I error in 2,000 null trials
  and its 95% coverage at rate ratio 0.85 in 500 trials within 2 Monte-Carlo SEs of 5% and
  95%, with 17 and with 8 councils;

* the default cluster-summary analysis (CR2 clustered by council, t(I - 2)) holds its size,
  and the former cell-level analysis (t with cells - parameters df) rejects more often;
* the default randomisation statistic (``"twfe"``) holds its size (it is exact by
  construction; this checks the implementation) and has more power than the within-period
  ``"cluster-period"`` statistic at rate ratio 0.85.

Tolerances: for the primary analysis, +-2 Monte-Carlo SEs of a calibrated test at the
test's counts (the issue's [4%, 6%] and [94%, 96%] are +-2.05 SEs at its 2,000 replicates;
the 2,000 null trials are the issue's, the 500 alternative ones what the CI budget allows);
otherwise MC_K (4) Monte-Carlo SEs of a proportion
(``sqrt(p(1-p)/N)`` at p = 0.05), and of a paired difference of rejection rates
(``sqrt(discordant share / N)``).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from concurrent.futures import Executor, ProcessPoolExecutor
from typing import Any

import numpy as np
import pytest
from _tolerances import MC_K
from calibration_counts import (
    AUDIT_BASELINE,
    AUDIT_VARIANCE,
    ROLES,
    council_scenario,
    null_and_alternative,
)

import steppedwedge as sw
from steppedwedge.data import TrialData
from steppedwedge.inference.permutation import (
    null_distribution_from_allocation,
    permutation_test,
)
from steppedwedge.models.cluster_level import fit_cluster_summary


def _log_rates(scenario, effect: float, n: int, seed: int) -> np.ndarray:
    """(n, I, T) log((y + 0.5) / population) in the allocated design's row and column order."""
    out = np.empty((n, *scenario.design.matrix.shape))
    for r in range(n):
        d = scenario.draw(effect, np.random.default_rng([seed, r]))
        wide = d.pivot(index="council", columns="quarter", values="entries_into_care")
        wide = wide.loc[list(scenario.design.clusters)]
        out[r] = np.log((wide.to_numpy(float) + 0.5) / scenario.population)
    return out


def _paired_excess(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """Mean of a - b (0/1 outcomes) and its Monte-Carlo SE."""
    diff = a.astype(float) - b.astype(float)
    return float(diff.mean()), float(np.sqrt(np.mean(diff != 0) / diff.size))


@pytest.mark.slow
@pytest.mark.parametrize(("n_councils", "n"), [(8, 1000), (17, 1000)])
def test_cluster_summary_default_holds_size(n_councils: int, n: int) -> None:
    """Null trials (~15 s each): the audit measured 9.1% (17 councils) and 12.1% (8) for the
    cell-level analysis; CR2 + t(I - 2) must be within 4 MC SE of 5% and reject less often
    than the cell-level analysis on the same data."""
    scenario = council_scenario(n_councils)
    new, old = np.empty(n, bool), np.empty(n, bool)
    for r in range(n):
        d = scenario.draw(0.0, np.random.default_rng([n_councils, r]))
        td = TrialData.from_frame(d, family="poisson", **ROLES)
        new[r] = fit_cluster_summary(td).pvalue < 0.05
        old[r] = fit_cluster_summary(td, vcov="model", dof="residual").pvalue < 0.05
    se = np.sqrt(0.05 * 0.95 / n)
    assert abs(new.mean() - 0.05) <= MC_K * se, new.mean()
    excess, se_excess = _paired_excess(old, new)
    assert excess > MC_K * se_excess, (old.mean(), new.mean())


@pytest.mark.slow
def test_randomisation_default_statistic_size_and_power() -> None:
    """17 councils, the example's constrained allocation space, 999 re-randomisations; 1000
    null and 400 alternative trials (~15 s). The default statistic (twfe) keeps 5% and beats
    the within-period statistic's power at rate ratio 0.85 (audit: 84% against 18%)."""
    scenario = council_scenario(17)
    alloc = scenario.allocation
    null_eff, alt_eff = null_and_alternative()
    y0 = _log_rates(scenario, null_eff, 1000, 17)
    y1 = _log_rates(scenario, alt_eff, 400, 18)
    nd0 = null_distribution_from_allocation(alloc, y0, statistic="twfe", rng=1)
    p0 = nd0.pvalues()
    assert abs(np.mean(p0 < 0.05) - 0.05) <= MC_K * np.sqrt(0.05 * 0.95 / p0.size)
    power = {}
    for stat in ("twfe", "cluster-period"):
        nd1 = null_distribution_from_allocation(alloc, y1, statistic=stat, rng=2)
        power[stat] = nd1.pvalues() < 0.05
    excess, se_excess = _paired_excess(power["twfe"], power["cluster-period"])
    assert excess > MC_K * se_excess, {k: v.mean() for k, v in power.items()}


def test_permutation_test_default_is_twfe() -> None:
    """The public default statistic is the one the calibration chose."""
    scenario = council_scenario(8)
    d = scenario.draw(0.0, 3)
    res = permutation_test(
        d, **ROLES, family="poisson", allocation=scenario.allocation, n_permutations=99, rng=1
    )
    ref = permutation_test(
        d,
        **ROLES,
        family="poisson",
        allocation=scenario.allocation,
        statistic="twfe",
        n_permutations=99,
        rng=1,
    )
    assert res.statistic_name == "twfe"
    assert res.pvalue == ref.pvalue and res.estimate == ref.estimate


#: The report's primary-analysis calibration: replicates are drawn in chunks of
#: ``PRIMARY_CHUNK``, chunk ``c`` of the null (``h = 0``) or of rate ratio 0.85 (``h = 1``)
#: seeded ``SeedSequence([PRIMARY_SEED, h, c])`` -- the chunks of
#: ``python tools/calibrate_counts.py --candidates nested+decay`` (default seed), whose
#: 2,000 + 2,000 replicates give the table in docs/explanation/calibration.rst; this test
#: refits all 2,000 null ones (the issue's count) and the first 500 alternative ones: 5,000
#: decay-GLMM fits with the robust variance, 697 s of CPU measured on a loaded machine
#: (16 min on two workers; the CI budget is about 200 s on two cores) before the Laplace
#: engine's ridge probe and the end of the restart after a checked ridge end, which cut the
#: CPU of these replicates to 0.53 (17 councils) and 0.55 (8) of it in an A/B run on the
#: first 100 null ones (docs/explanation/calibration.rst): about 380 s at that load now.
PRIMARY_SEED = 20261201
PRIMARY_CHUNK = 100
PRIMARY_N_NULL = 2000
PRIMARY_N_ALT = 500


def _primary_options() -> dict[str, object]:
    """The options of the report's pre-specified primary analysis, without column roles."""
    from steppedwedge.report import council_example

    cfg = council_example()
    assert cfg.data is not None
    roles = {*cfg.data.roles(), "period_order"}
    return {k: v for k, v in cfg.fit_options("primary").items() if k not in roles}


def _primary_rates(n_councils: int, executor: Executor) -> tuple[np.ndarray, np.ndarray, int]:
    """Rejections under the null, coverage at RR 0.85 and the number of flagged fits."""
    scenario = council_scenario(n_councils)
    out: dict[int, list[np.ndarray]] = {0: [], 1: []}
    failed = 0
    for h, (effect, n) in enumerate(
        zip(null_and_alternative(), (PRIMARY_N_NULL, PRIMARY_N_ALT), strict=True)
    ):
        for c in range(n // PRIMARY_CHUNK):
            res = sw.simulate_power(
                scenario.design,
                effect=effect,
                variance=AUDIT_VARIANCE,
                cluster_size=scenario.population,
                family="poisson",
                baseline=AUDIT_BASELINE,
                analysis=_primary_options(),
                allocation=scenario.allocation,
                n_sims=PRIMARY_CHUNK,
                rng=np.random.SeedSequence([PRIMARY_SEED, h, c]),
                executor=executor,
                progress=False,
            )
            est = res.estimates
            usable = est[est["status"].isin(("ok", "singular"))]
            failed += len(est) - len(usable)
            if h == 0:
                out[0].append(usable["rejected"].to_numpy(bool))
            else:
                lo, hi = usable["conf_low"].to_numpy(), usable["conf_high"].to_numpy()
                out[1].append((lo <= effect) & (effect <= hi))
    return np.concatenate(out[0]), np.concatenate(out[1]), failed


@pytest.fixture(scope="module")
def primary_rates() -> Iterator[Callable[[int], tuple[np.ndarray, np.ndarray, int]]]:
    """``rates(n_councils)``, computed once per council count on a two-process pool."""
    with ProcessPoolExecutor(2) as pool:
        cache: dict[int, tuple[np.ndarray, np.ndarray, int]] = {}

        def rates(n_councils: int) -> tuple[np.ndarray, np.ndarray, int]:
            if n_councils not in cache:
                t0 = time.perf_counter()
                cache[n_councils] = _primary_rates(n_councils, pool)
                rej, cov, failed = cache[n_councils]
                print(
                    f"\n{n_councils} councils: type-I error {rej.mean():.4f} ({rej.size} "
                    f"usable), coverage {cov.mean():.4f} ({cov.size} usable), {failed} "
                    f"flagged, {time.perf_counter() - t0:.0f} s"
                )
            return cache[n_councils]

        yield rates


#: Half-width of the windows in Monte-Carlo SEs of a calibrated test: the issue's [4%, 6%]
#: and [94%, 96%] at its 2,000 replicates are +-2.05 SEs; the same rule at the test's counts.
PRIMARY_K = 2.0


def _window(n: int) -> float:
    return PRIMARY_K * float(np.sqrt(0.05 * 0.95 / n))


@pytest.mark.slow
@pytest.mark.parametrize("n_councils", [17, 8])
def test_report_primary_analysis_is_valid(n_councils: int, primary_rates: Any) -> None:
    """The report's primary analysis with the library's own generator (each replicate
    re-randomised from the trial's admissible allocations), fresh fits of the documented
    replicates, with 17 and with 8 councils: the type-I error of 2,000 null trials is at
    most 5% + 2 MC SE (6.0%) and the coverage of 500 trials at rate ratio 0.85 at least
    95% - 2 MC SE (93.1%; the issue's 94% at its 2,000 replicates)."""
    rejected, covered, failed = primary_rates(n_councils)
    # flagged fits (error, non-convergence) are left out of the rates: at most 0.5%
    assert failed <= 0.005 * (PRIMARY_N_NULL + PRIMARY_N_ALT), failed
    assert rejected.mean() <= 0.05 + _window(rejected.size), rejected.mean()
    assert covered.mean() >= 0.95 - _window(covered.size), covered.mean()


@pytest.mark.slow
@pytest.mark.parametrize("n_councils", [17, 8])
def test_report_primary_analysis_is_not_conservative(n_councils: int, primary_rates: Any) -> None:
    """The inner limits on the same replicates: type-I error at least 5% - 2 MC SE (4.0%)
    and coverage at most 95% + 2 MC SE (96.9%).  (The model-based variance fails here
    with 8 councils: about 3% and 97%.)"""
    rejected, covered, _ = primary_rates(n_councils)
    assert rejected.mean() >= 0.05 - _window(rejected.size), rejected.mean()
    assert covered.mean() <= 0.95 + _window(covered.size), covered.mean()
