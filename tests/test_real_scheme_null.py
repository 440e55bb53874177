"""Null and power simulation under a trial's real randomisation scheme.

``simulate_power(..., allocation=)`` re-draws every replicate's allocation uniformly from the
admissible (stratified, restricted) space, with the real per-cluster, per-period sizes and
per-cluster baselines travelling with their clusters.  Checked here: uniformity of the draws
over the 12 FS allocations (chi-square against a brute-force enumeration of the restricted
space), the data of each replicate follow its drawn allocation, the per-replicate stream
definition, independence from batch size and workers, the per-cluster baseline, and (slow)
the evaluators' type-I error of the random-intercept GLMM with 5 councils.
"""

from __future__ import annotations

import itertools
import math
import warnings
from typing import Any

import numpy as np
import pandas as pd
import pytest
from numpy.testing import assert_allclose
from scipy import stats
from tests._tolerances import EXACT, MC_K

import steppedwedge as sw
from steppedwedge.design import Design
from steppedwedge.planning.simulation import null_simulation_plan, simulate_power
from steppedwedge.simulate import _simulate_iv, simulate

#: The FS evaluators' type-I error of their GLMM (``alpha_hat <- 0.0569`` with M = 10000 in
#: Foundations' ``FS/03_analyses/primary_outcome/04_simulation_GLMM.R``; real-trials.md 1.1).
FS_ALPHA_HAT = 0.0569
FS_M = 10_000

HIGH = ("Walsall", "Lancashire")  # readiness "high": waves 1-2 (sequences 0, 1)


@pytest.fixture(scope="module")
def small_plan() -> Any:
    return null_simulation_plan(sw.datasets.make_fs_like(n_children=1500, rng=11), rng=3)


def _constant(data: pd.DataFrame) -> dict[str, float]:
    return {"estimate": 0.0, "std_error": 1.0, "p_value": 0.5}


def _brute_force_space(clusters: tuple[Any, ...]) -> set[tuple[int, ...]]:
    """Every assignment of the 5 councils to the 5 sequences allowed by the readiness rule."""
    out = set()
    for perm in itertools.permutations(range(5)):
        seq = dict(zip(clusters, perm, strict=True))
        if all(seq[c] in (0, 1) for c in HIGH):
            out.add(perm)
    return out


def test_allocations_are_redrawn_uniformly_from_the_restricted_space(small_plan: Any) -> None:
    n_sims = 1200
    res = small_plan.simulate_power(_constant, n_sims=n_sims, rng=2024, progress=False)
    est = res.estimates
    space = _brute_force_space(res.allocation_clusters)
    assert len(space) == 12 == res.n_admissible
    drawn = [tuple(s) for s in est["sequences"]]
    assert set(drawn) == space  # every admissible allocation drawn, nothing else
    # the recorded index is the row of allocation.admissible holding that allocation
    adm = small_plan.allocation.admissible
    for k, seq in zip(est["allocation"], drawn, strict=True):
        assert tuple(int(v) for v in adm[int(k)]) == seq
    counts = pd.Series(drawn).value_counts().to_numpy()
    chi2 = stats.chisquare(counts)
    assert chi2.pvalue > 1e-4, counts


def test_each_replicate_simulates_its_drawn_allocation(small_plan: Any) -> None:
    """Treatment pattern follows the drawn sequence; sizes and baselines stay with clusters."""
    frames: list[pd.DataFrame] = []

    def keep(data: pd.DataFrame) -> dict[str, float]:
        frames.append(data)
        return {"estimate": 0.0, "std_error": 1.0, "p_value": 0.5}

    res = small_plan.simulate_power(keep, n_sims=30, rng=5, progress=False)
    seqmat = np.asarray(Design.stepped_wedge(5).sequence_matrix)
    design = small_plan.design
    rows = {c: i for i, c in enumerate(design.clusters)}
    labels = res.allocation_clusters
    assert len(frames) == 31  # replicate 0 is also run once as the pre-flight check
    for frame, seq in zip(frames[1:], res.estimates["sequences"], strict=True):
        for k, cluster in enumerate(labels):
            cells = frame[frame["cluster"] == cluster].sort_values("period")
            assert_allclose(cells["treatment"], seqmat[seq[k]], **EXACT)
            assert_allclose(cells["trials"], small_plan.cluster_size[rows[cluster]], **EXACT)


def test_replicate_b_draws_allocation_then_data_from_stream_b(small_plan: Any) -> None:
    n_sims, seed = 5, 99
    res = small_plan.simulate_power(_outcome_total, n_sims=n_sims, rng=seed, progress=False)
    design = small_plan.design
    seqmat = np.asarray(design.sequence_matrix)
    position = {c: k for k, c in enumerate(small_plan.allocation.clusters)}
    for b, child in enumerate(np.random.SeedSequence(seed).spawn(n_sims)):
        rng = np.random.default_rng(child)
        seq = small_plan.allocation.draw(1, rng)[0]
        x = seqmat[[seq[position[c]] for c in design.clusters]]
        df = simulate(
            Design.from_matrix(x, clusters=list(design.clusters)),
            effect=0.0,
            variance=sw.VarianceComponents(sigma2=1.0, tau2=0.0),
            cluster_size=small_plan.cluster_size,
            family="binomial",
            baseline=small_plan.baseline,
            level="cluster-period",
            rng=rng,
        )
        assert res.estimates["estimate"][b] == float(df["outcome"].sum())
        assert res.estimates["sequences"][b] == tuple(int(v) for v in seq)


def _outcome_total(data: pd.DataFrame) -> dict[str, float]:
    return {"estimate": float(data["outcome"].sum()), "std_error": 1.0, "p_value": 0.5}


def test_identical_across_batch_sizes_and_two_workers(small_plan: Any) -> None:
    kw = dict(n_sims=16, rng=321, progress=False)
    serial = small_plan.simulate_power(**kw).estimates
    assert serial["status"].isin(["ok", "singular"]).all()
    batched = small_plan.simulate_power(batch_size=3, **kw).estimates
    pooled = small_plan.simulate_power(n_jobs=2, batch_size=5, **kw).estimates
    pd.testing.assert_frame_equal(serial, batched)
    pd.testing.assert_frame_equal(serial, pooled)


def test_per_cluster_baseline_is_each_clusters_control_risk() -> None:
    base = np.array([0.0613, 0.0635, 0.0833, 0.0321, 0.0345])
    m = 40_000
    df = simulate(
        np.zeros((5, 2)),
        effect=0.0,
        variance=sw.VarianceComponents(sigma2=1.0, tau2=0.0),
        cluster_size=m,
        family="binomial",
        baseline=base,
        level="cluster-period",
        rng=8,
    )
    got = df.groupby("cluster")["outcome"].sum().to_numpy() / (2 * m)
    se = np.sqrt(base * (1 - base) / (2 * m))
    assert np.all(np.abs(got - base) <= MC_K * se), (got, base)


def test_known_variance_se_follows_each_drawn_allocation() -> None:
    """Unequal cluster sizes: each replicate's SE is that of its own allocation's design."""
    design = Design.stepped_wedge(3, 2)
    clusters = pd.DataFrame({"cluster": list("abcdef"), "grp": ["x", "x", "y", "y", "y", "y"]})
    allocation = sw.randomise(
        design,
        clusters,
        strata="grp",
        allowed_sequences={"x": [0], "y": [1, 2]},
        rng=1,
        alpha=None,
    )
    sizes = np.array([5, 10, 20, 40, 80, 160], dtype=float)
    vc = sw.VarianceComponents(sigma2=1.0, tau2=0.1)
    kw = dict(effect=0.3, variance=vc, analysis="known-variance", progress=False)
    final = allocation.design
    size_rows = sizes[[list("abcdef").index(c) for c in final.clusters]]
    res = simulate_power(
        final, cluster_size=size_rows, allocation=allocation, n_sims=12, rng=4, **kw
    )
    seqmat = np.asarray(final.sequence_matrix)
    position = {c: k for k, c in enumerate(allocation.clusters)}
    ses = set()
    for seq, se in zip(res.estimates["sequences"], res.estimates["std_error"], strict=True):
        x = seqmat[[seq[position[c]] for c in final.clusters]]
        fixed = simulate_power(x, cluster_size=size_rows, n_sims=1, rng=0, **kw)
        assert_allclose(se, fixed.estimates["std_error"][0], **EXACT)
        ses.add(round(se, 12))
    assert len(ses) > 1  # the allocations differ in information


def test_fast_gaussian_path_refits_each_drawn_allocation() -> None:
    """Replicate b = draw_cells on b's own allocation, analysed with that design's plan."""
    from steppedwedge.planning._fast_lmm import fast_lmm_analyse, fast_lmm_plan
    from steppedwedge.simulate._draw import draw_cells

    design = Design.stepped_wedge(3, 2)
    allocation = sw.randomise(design, list("abcdef"), rng=2, alpha=None)
    final = allocation.design
    vc = sw.VarianceComponents(sigma2=1.0, tau2=0.1)
    sizes = np.arange(3, 9)
    options = {"random": "cluster", "dof": "satterthwaite"}
    n_sims, seed = 4, 6
    res = simulate_power(
        final,
        effect=0.2,
        variance=vc,
        cluster_size=sizes,
        allocation=allocation,
        analysis=options,
        n_sims=n_sims,
        rng=seed,
        progress=False,
    )
    assert "cell statistics" in res.analysis
    seqmat = np.asarray(final.sequence_matrix)
    position = {c: k for k, c in enumerate(allocation.clusters)}
    for b, child in enumerate(np.random.SeedSequence(seed).spawn(n_sims)):
        rng = np.random.default_rng(child)
        seq = allocation.draw(1, rng)[0]
        x = seqmat[[seq[position[c]] for c in final.clusters]]
        spec = _simulate_iv(
            Design.from_matrix(x, clusters=list(final.clusters)),
            effect=0.2,
            variance=vc,
            cluster_size=sizes,
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
        plan = fast_lmm_plan(spec, options, 0.05)
        assert plan is not None
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # a boundary fit may warn; compare anyway
            got = fast_lmm_analyse(plan, *draw_cells(spec, rng))
        assert_allclose(res.estimates["estimate"][b], got["estimate"], **EXACT)
        assert_allclose(res.estimates["std_error"][b], got["std_error"], **EXACT)


@pytest.mark.parametrize(
    ("change", "match"),
    [
        (dict(design=Design.stepped_wedge(5)), "rows of `design` must be the clusters"),
        (dict(allocation="not an allocation"), "must be an Allocation"),
        (dict(dgp=lambda rng: pd.DataFrame()), "cannot be combined with a `dgp`"),
        (dict(design=np.triu(np.ones((5, 6)), 1)), "must be a Design"),
    ],
)
def test_bad_allocation_inputs(small_plan: Any, change: dict, match: str) -> None:
    kw: dict[str, Any] = dict(
        design=small_plan.design,
        effect=0.0,
        variance=sw.VarianceComponents(sigma2=1.0, tau2=0.0),
        cluster_size=small_plan.cluster_size,
        family="binomial",
        baseline=small_plan.baseline,
        level="cluster-period",
        allocation=small_plan.allocation,
        analysis=_constant,
        n_sims=2,
        progress=False,
    )
    kw.update(change)
    with pytest.raises(ValueError, match=match):
        simulate_power(kw.pop("design"), **kw)


# ------------------------------------------------------------------ calibration (slow)


@pytest.mark.slow
def test_fs_like_null_type_i_error_of_random_intercept_glmm() -> None:
    """5 councils, 12 allocations, ~27,300 children: type-I error near the evaluators' 5.69%.

    Their 10,000-trial value has its own MC error, so the allowed gap is MC_K times the
    combined SE of the two estimates.  Differences from their run (not expected to matter
    at this precision): uniform re-draws over the 12 allocations (their 3-council stratum was
    drawn with probabilities 1/4, 1/2, 1/4) and synthetic per-council counts (the council
    shares of children were not published).
    """
    plan = null_simulation_plan(sw.datasets.make_fs_like(rng=2026))
    assert 27_000 <= plan.cluster_size.sum() <= 27_425
    n_sims = 6000  # ~95 s on 2 busy cores
    res = plan.simulate_power(n_sims=n_sims, rng=20261126, n_jobs=2, progress=False)
    assert res.n_failed <= n_sims // 100, res.summary().as_text()
    se = math.sqrt(
        res.type_i_error * (1 - res.type_i_error) / res.n_usable
        + FS_ALPHA_HAT * (1 - FS_ALPHA_HAT) / FS_M
    )
    assert abs(res.type_i_error - FS_ALPHA_HAT) <= MC_K * se, res.summary().as_text()
    # coverage of the Wald 95% interval is 1 - type-I error at the null
    assert abs(res.coverage - (1 - FS_ALPHA_HAT)) <= MC_K * se, res.summary().as_text()


def test_space_too_large_to_enumerate_records_sequences_only() -> None:
    design = Design.stepped_wedge(4, 3)  # 12! / (3!)^4 = 369,600 allocations
    allocation = sw.randomise(design, [f"c{k:02d}" for k in range(12)], rng=1, alpha=None)
    assert allocation.n_admissible == math.factorial(12) // math.factorial(3) ** 4
    res = simulate_power(
        allocation.design,
        effect=0.0,
        variance=sw.VarianceComponents(sigma2=1.0, tau2=0.1),
        cluster_size=5,
        allocation=allocation,
        analysis=_constant,
        n_sims=6,
        rng=3,
        progress=False,
    )
    est = res.estimates
    assert est["allocation"].isna().all()
    for seq in est["sequences"]:
        assert sorted(np.bincount(seq).tolist()) == [3, 3, 3, 3]
    assert len(set(est["sequences"])) == 6  # distinct draws from a space of 369,600
