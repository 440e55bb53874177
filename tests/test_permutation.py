"""Randomisation (permutation) tests: ``permutation_test`` and its kernels.

References are independent: brute-force enumeration of every permutation of the design's
rows over the clusters (``itertools.permutations``; each distinct allocation appears
``prod_s g_s!`` times, so proportions equal those over distinct allocations), statistics
recomputed with statsmodels OLS / numpy least squares / pandas group means, and the exact
size of a randomisation test under the sharp null.
"""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest
import statsmodels.formula.api as smf
from _tolerances import EXACT, EXACT_REL, LINALG, MC_K, SAME_OPTIMISER, ULP_REL

from steppedwedge.design import Design
from steppedwedge.exceptions import DataError, SmallSampleWarning
from steppedwedge.inference.permutation import (
    PermutationResult,
    null_distribution_from_allocation,
    permutation_test,
)
from steppedwedge.randomise import randomise

ROLES = dict(outcome="y", cluster="c", period="t", treatment="x")


# --------------------------------------------------------------------------------------
# data and independent references
# --------------------------------------------------------------------------------------
def _individual_data(
    matrix: np.ndarray,
    clusters: list,
    rng: np.random.Generator,
    effect: float = 0.0,
    m: tuple[int, int] = (2, 6),
) -> pd.DataFrame:
    """Individual rows: cluster effect, period trend, varying cell sizes; NaN cells absent."""
    n_i, n_t = matrix.shape
    rows = []
    for i in range(n_i):
        a = rng.normal(0, 1.0)
        for j in range(n_t):
            if np.isnan(matrix[i, j]):
                continue
            g = rng.normal(0, 0.3)
            for _ in range(int(rng.integers(m[0], m[1] + 1))):
                y = a + 0.3 * j + g + effect * matrix[i, j] + rng.normal()
                rows.append((clusters[i], j + 1, float(matrix[i, j]), y))
    return pd.DataFrame(rows, columns=["c", "t", "x", "y"])


def _cell_means(df: pd.DataFrame) -> pd.DataFrame:
    return df.groupby(["c", "t"], as_index=False).agg(
        y=("y", "mean"), x=("x", "first"), n=("y", "size")
    )


def _ref_twfe(cells: pd.DataFrame, weights: np.ndarray | None = None) -> float:
    """Least squares on cluster + period dummies with numpy (independent of the kernel)."""
    cl = pd.get_dummies(cells["c"].astype(str), drop_first=True, dtype=float).to_numpy()
    pe = pd.get_dummies(cells["t"].astype(str), drop_first=True, dtype=float).to_numpy()
    X = np.column_stack([np.ones(len(cells)), cells["x"].to_numpy(float), cl, pe])
    y = cells["y"].to_numpy(float)
    if weights is not None:
        s = np.sqrt(weights)
        X, y = X * s[:, None], y * s
    if np.linalg.matrix_rank(X) < X.shape[1]:
        return float("nan")  # treatment not identifiable under this allocation
    return float(np.linalg.lstsq(X, y, rcond=None)[0][1])


def _ref_vertical(cells: pd.DataFrame) -> float:
    """Within-period treated-minus-control mean of cell means, weights n1 n0 / (n1 + n0)."""
    num = den = 0.0
    for _, g in cells.groupby("t"):
        t1, t0 = g[g["x"] == 1]["y"], g[g["x"] == 0]["y"]
        if len(t1) and len(t0):
            w = len(t1) * len(t0) / (len(t1) + len(t0))
            num += w * (t1.mean() - t0.mean())
            den += w
    return num / den


def _brute_force(
    df: pd.DataFrame, matrix: np.ndarray, clusters: list, stat, cells: bool = True
) -> tuple[float, np.ndarray]:
    """Observed statistic and its value under every permutation of the design's rows.

    Permutations giving the same treatment matrix are computed once (a cache keyed by the
    permuted matrix) but all are kept, so the result has ``I!`` entries.
    """
    base = _cell_means(df) if cells else df
    periods = np.arange(1, matrix.shape[1] + 1)
    ci = pd.Index(clusters).get_indexer(base["c"])
    pj = pd.Index(periods).get_indexer(base["t"])
    values, seen = [], {}
    for perm in itertools.permutations(range(len(clusters))):
        pm = matrix[list(perm)]
        key = np.nan_to_num(pm, nan=-1.0).tobytes()
        if key not in seen:
            x = pm[ci, pj]
            keep = ~np.isnan(x)
            seen[key] = stat(base.loc[keep].assign(x=x[keep]))
        values.append(seen[key])
    return stat(base), np.array(values)


def _p(obs: float, null: np.ndarray, alternative: str = "two-sided") -> float:
    null = null[np.isfinite(null)]  # allocations under which the statistic is undefined
    tol = 1e-9 * max(abs(obs), np.abs(null).max())
    if alternative == "two-sided":
        return float(np.mean(np.abs(null) >= abs(obs) - tol))
    if alternative == "greater":
        return float(np.mean(null >= obs - tol))
    return float(np.mean(null <= obs + tol))


# --------------------------------------------------------------------------------------
# statistics against independent computations
# --------------------------------------------------------------------------------------
def test_twfe_equals_statsmodels_ols_on_cell_means() -> None:
    d = Design.stepped_wedge(4, 2)
    df = _individual_data(d.matrix, list(range(8)), np.random.default_rng(11), effect=0.4)
    cells = _cell_means(df)
    ols = smf.ols("y ~ x + C(c) + C(t)", data=cells).fit()
    wls = smf.wls("y ~ x + C(c) + C(t)", data=cells, weights=cells["n"]).fit()
    res = permutation_test(df, **ROLES, statistic="twfe", n_permutations=99, rng=1)
    res_w = permutation_test(
        df, **ROLES, statistic="twfe", weights="size", n_permutations=99, rng=1
    )
    np.testing.assert_allclose(res.estimate, ols.params["x"], **LINALG)
    np.testing.assert_allclose(res_w.estimate, wls.params["x"], **LINALG)


def test_twfe_with_missing_cells_equals_statsmodels() -> None:
    d = Design.stepped_wedge(5)
    m = d.matrix.copy()
    m[0, 3] = np.nan  # a cell with no rows
    m[4, 0] = np.nan
    df = _individual_data(m, list(range(5)), np.random.default_rng(5), effect=1.0)
    ols = smf.ols("y ~ x + C(c) + C(t)", data=_cell_means(df)).fit()
    res = permutation_test(df, **ROLES, statistic="twfe", design=d)
    np.testing.assert_allclose(res.estimate, ols.params["x"], **LINALG)


def test_cluster_period_statistic_equals_group_means() -> None:
    d = Design.stepped_wedge(3, 2)
    df = _individual_data(d.matrix, list("abcdef"), np.random.default_rng(2), effect=0.5)
    res = permutation_test(df, **ROLES, statistic="cluster-period", rng=0)
    np.testing.assert_allclose(res.estimate, _ref_vertical(_cell_means(df)), **LINALG)


# --------------------------------------------------------------------------------------
# p-values against brute-force enumeration
# --------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("n_seq", "per_seq", "statistic", "alternative"),
    [
        (5, 1, "twfe", "two-sided"),
        (5, 1, "cluster-period", "two-sided"),
        (3, 2, "twfe", "greater"),
        (3, 2, "cluster-period", "less"),
        (2, 2, "twfe", "two-sided"),
    ],
)
def test_exact_pvalue_matches_brute_force(
    n_seq: int, per_seq: int, statistic: str, alternative: str
) -> None:
    d = Design.stepped_wedge(n_seq, per_seq)
    clusters = [f"k{i}" for i in range(d.n_clusters)]
    df = _individual_data(
        d.matrix, clusters, np.random.default_rng(n_seq * 10 + per_seq), effect=0.6
    )
    ref_stat = _ref_twfe if statistic == "twfe" else _ref_vertical
    obs, null = _brute_force(df, d.matrix, clusters, ref_stat)
    res = permutation_test(
        df, **ROLES, statistic=statistic, alternative=alternative, rng=3, alpha=None
    )
    assert res.exact
    assert res.n_permutations == res.n_admissible
    np.testing.assert_allclose(res.statistic, obs, **LINALG)
    np.testing.assert_allclose(res.pvalue, _p(obs, null, alternative), **EXACT)
    # the null distribution is the brute-force one with each allocation once
    np.testing.assert_allclose(
        np.sort(np.repeat(res.null_distribution, len(null) // res.n_permutations)),
        np.sort(null),
        **LINALG,
    )


def test_design_with_unobserved_cells_matches_brute_force() -> None:
    """Sequences with an excluded (NaN) transition period: a re-drawn sequence drops cells."""
    m = np.array(
        [
            [0, np.nan, 1, 1, 1],
            [0, 0, np.nan, 1, 1],
            [0, 0, 0, np.nan, 1],
            [0, 0, 0, 0, np.nan],
        ]
    )
    d = Design.from_matrix(m)
    clusters = [0, 1, 2, 3]
    # data have rows in every cell except the design's unobserved ones
    df = _individual_data(m, clusters, np.random.default_rng(8), effect=0.3)
    full = _individual_data(np.zeros((4, 5)), clusters, np.random.default_rng(9))
    # give every cluster data in every period, so re-drawn sequences find their cells
    df = pd.concat([df, full.loc[np.isnan(m[full["c"], full["t"] - 1])].assign(x=0.0)])
    df = df.loc[~np.isnan(m[df["c"], df["t"] - 1])]  # the trial observed only its own cells
    obs, null = _brute_force(df, m, clusters, _ref_twfe)
    res = permutation_test(df, **ROLES, statistic="twfe", design=d)
    np.testing.assert_allclose(res.statistic, obs, **LINALG)
    np.testing.assert_allclose(res.pvalue, _p(obs, null), **EXACT)


def test_lmm_statistic_matches_brute_force() -> None:
    from steppedwedge.models.fit import fit

    d = Design.stepped_wedge(4)
    clusters = list("wxyz")
    df = _individual_data(d.matrix, clusters, np.random.default_rng(4), effect=0.8, m=(3, 4))

    def lmm(frame: pd.DataFrame) -> float:
        return float(fit(frame, **ROLES, dof="normal").statistic)

    obs, null = _brute_force(df, d.matrix, clusters, lmm, cells=False)
    res = permutation_test(
        df, **ROLES, statistic="lmm", use="t", lmm_options={"dof": "normal"}
    )  # 24 allocations
    np.testing.assert_allclose(res.statistic, obs, rtol=SAME_OPTIMISER["rtol"])
    np.testing.assert_allclose(res.pvalue, _p(obs, null), **EXACT)
    assert res.estimate == pytest.approx(
        float(fit(df, **ROLES, dof="normal").estimate), rel=SAME_OPTIMISER["rtol"]
    )


def test_callable_statistic_matches_brute_force() -> None:
    d = Design.stepped_wedge(3, 2)
    clusters = list(range(6))
    df = _individual_data(d.matrix, clusters, np.random.default_rng(6), effect=0.7)

    def mean_difference(frame: pd.DataFrame) -> float:
        return float(
            frame.loc[frame["x"] == 1, "y"].mean() - frame.loc[frame["x"] == 0, "y"].mean()
        )

    obs, null = _brute_force(df, d.matrix, clusters, mean_difference, cells=False)
    res = permutation_test(df, **ROLES, statistic=mean_difference)
    assert res.statistic_name == "mean_difference"
    np.testing.assert_allclose(res.pvalue, _p(obs, null), **EXACT)


def test_binomial_logit_cells_match_brute_force() -> None:
    d = Design.stepped_wedge(5)
    rng = np.random.default_rng(21)
    rows = []
    for i in range(5):
        for j in range(6):
            n = int(rng.integers(20, 60))
            p = 1 / (1 + np.exp(-(-1 + 0.2 * j + 0.5 * d.matrix[i, j] + rng.normal(0, 0.3))))
            rows.append((i, j + 1, d.matrix[i, j], int(rng.binomial(n, p)), n))
    df = pd.DataFrame(rows, columns=["c", "t", "x", "y", "n"])

    def logit_twfe(frame: pd.DataFrame) -> float:
        cells = frame.assign(y=np.log((frame["y"] + 0.5) / (frame["n"] - frame["y"] + 0.5)))
        return _ref_twfe(cells)

    obs, null = _brute_force(df, d.matrix, list(range(5)), logit_twfe, cells=False)
    res = permutation_test(df, **ROLES, family="binomial", trials="n", statistic="twfe")
    assert res.link == "logit"
    np.testing.assert_allclose(res.statistic, obs, **LINALG)
    np.testing.assert_allclose(res.pvalue, _p(obs, null), **EXACT)


# --------------------------------------------------------------------------------------
# restricted allocation spaces (Family Safeguarding)
# --------------------------------------------------------------------------------------
COUNCILS = ["Walsall", "Lancashire", "Telford", "Wandsworth", "Swindon"]


def _fs_allocation():
    frame = pd.DataFrame({"cluster": COUNCILS, "readiness": ["high"] * 2 + ["low"] * 3})
    return randomise(
        Design.stepped_wedge(5),
        frame,
        strata="readiness",
        allowed_sequences={"high": [0, 1], "low": [2, 3, 4]},
        rng=1,
        alpha=None,
    )


def _fs_data(waves: dict[str, int], rng: np.random.Generator) -> pd.DataFrame:
    sm = Design.stepped_wedge(5).sequence_matrix
    matrix = np.array([sm[waves[c] - 1] for c in COUNCILS])
    return _individual_data(matrix, COUNCILS, rng, effect=0.5)


def test_family_safeguarding_restricted_space() -> None:
    alloc = _fs_allocation()
    waves = {"Walsall": 2, "Lancashire": 1, "Telford": 5, "Wandsworth": 3, "Swindon": 4}
    df = _fs_data(waves, np.random.default_rng(31))
    with pytest.warns(SmallSampleWarning, match="never reach"):
        res = permutation_test(df, **ROLES, allocation=alloc, statistic="twfe", rng=0)
    assert res.exact and res.n_permutations == 12 and res.n_admissible == 12
    assert res.min_pvalue == pytest.approx(1 / 12, rel=EXACT_REL, abs=0)
    assert res.allocation_method == "restricted"
    # independent: the 12 allocations = arrangements of high over waves 1-2, low over 3-5
    sm = Design.stepped_wedge(5).sequence_matrix
    null = []
    for hi in itertools.permutations([0, 1]):
        for lo in itertools.permutations([2, 3, 4]):
            seqs = dict(zip(COUNCILS, hi + lo, strict=True))
            x = np.array([sm[seqs[c]][t - 1] for c, t in zip(df["c"], df["t"], strict=True)])
            null.append(_ref_twfe(_cell_means(df.assign(x=x))))
    obs = _ref_twfe(_cell_means(df))
    np.testing.assert_allclose(res.pvalue, _p(obs, np.array(null)), **EXACT)
    assert res.pvalue >= 1 / 12


def test_observed_allocation_outside_the_space_raises() -> None:
    alloc = _fs_allocation()
    waves = {"Walsall": 3, "Lancashire": 1, "Telford": 2, "Wandsworth": 4, "Swindon": 5}
    df = _fs_data(waves, np.random.default_rng(1))
    with pytest.raises(DataError, match="not an admissible allocation"):
        permutation_test(df, **ROLES, allocation=alloc, statistic="twfe")
    other = df.replace({"c": {"Swindon": "Slough"}})
    with pytest.raises(DataError, match="clusters differ"):
        permutation_test(other, **ROLES, allocation=alloc, statistic="twfe")


def test_allocation_with_simple_space_and_large_space_check() -> None:
    d = Design.stepped_wedge(6, 2)  # 12! / 2^6 = 7,484,400 allocations: not enumerated
    labels = [f"s{i:02d}" for i in range(12)]
    alloc = randomise(d, labels, rng=5, max_enumerate=1000, n_candidates=1000)
    own = alloc.design.matrix  # the recorded allocation, design rows labelled
    df = _individual_data(own, list(alloc.design.clusters), np.random.default_rng(2), m=(1, 2))
    res = permutation_test(
        df, **ROLES, allocation=alloc, statistic="twfe", n_permutations=199, rng=4
    )
    assert not res.exact and res.n_permutations == 199
    # another admissible allocation (two clusters of different waves swapped) is accepted
    swapped = own.copy()
    swapped[[0, 11]] = swapped[[11, 0]]
    df2 = _individual_data(swapped, list(alloc.design.clusters), np.random.default_rng(2), m=(1, 2))
    permutation_test(
        df2, **ROLES, allocation=alloc, statistic="twfe", n_permutations=9, rng=4, alpha=None
    )
    # a pattern with the wrong sequence sizes is not
    bad = own.copy()
    bad[0] = bad[11]
    df3 = _individual_data(bad, list(alloc.design.clusters), np.random.default_rng(2), m=(1, 2))
    with pytest.raises(DataError, match="not an admissible"):
        permutation_test(
            df3, **ROLES, allocation=alloc, statistic="twfe", n_permutations=9, alpha=None
        )


# --------------------------------------------------------------------------------------
# Monte Carlo: convention, reproducibility, agreement with the exact p-value
# --------------------------------------------------------------------------------------
def test_monte_carlo_convention_and_reproducibility() -> None:
    d = Design.stepped_wedge(4, 2)
    df = _individual_data(d.matrix, list(range(8)), np.random.default_rng(13), effect=0.2)
    a = permutation_test(df, **ROLES, statistic="twfe", n_permutations=500, rng=7)
    b = permutation_test(
        df, **ROLES, statistic="twfe", n_permutations=500, rng=np.random.default_rng(7)
    )
    c = permutation_test(df, **ROLES, statistic="twfe", n_permutations=500, rng=8)
    assert not a.exact and a.n_permutations == 500
    np.testing.assert_array_equal(a.null_distribution, b.null_distribution)
    assert not np.array_equal(a.null_distribution, c.null_distribution)
    hits = np.count_nonzero(np.abs(a.null_distribution) >= abs(a.statistic) * (1 - 1e-9))
    assert a.pvalue == pytest.approx((1 + hits) / 501, rel=EXACT_REL, abs=0)
    assert a.min_pvalue == pytest.approx(1 / 501, rel=EXACT_REL, abs=0)
    exact = permutation_test(df, **ROLES, statistic="twfe", n_permutations=2520)
    assert exact.exact and exact.n_permutations == 2520
    big = permutation_test(df, **ROLES, statistic="twfe", n_permutations=2519, rng=9)
    se = np.sqrt(exact.pvalue * (1 - exact.pvalue) / 2519) + 1 / 2520
    assert abs(big.pvalue - exact.pvalue) <= MC_K * se


# --------------------------------------------------------------------------------------
# confidence intervals by inversion
# --------------------------------------------------------------------------------------
@pytest.mark.parametrize("statistic", ["twfe", "cluster-period"])
def test_interval_ends_are_where_the_shifted_test_rejects(statistic: str) -> None:
    d = Design.stepped_wedge(3, 2)
    df = _individual_data(d.matrix, list(range(6)), np.random.default_rng(17), effect=1.0)
    res = permutation_test(df, **ROLES, statistic=statistic, confidence_level=0.9)
    lo, hi = res.interval
    assert lo < res.estimate < hi
    scale = float(np.std(res.null_distribution))
    for end, out in ((lo, -1.0), (hi, 1.0)):
        for delta, rejects in ((-1e-4 * scale, False), (1e-4 * scale, True)):
            shifted = df.assign(y=df["y"] - (end + out * delta) * df["x"])
            p = permutation_test(shifted, **ROLES, statistic=statistic).pvalue
            assert (p <= 0.1) is rejects
    # another level on demand; tidy carries the stored interval
    lo95, hi95 = res.conf_int(0.95)
    assert lo95 <= lo and hi95 >= hi
    row = res.tidy().iloc[0]
    assert (row["conf_low"], row["conf_high"]) == (lo, hi)


def test_interval_options() -> None:
    d = Design.stepped_wedge(3, 2)
    df = _individual_data(d.matrix, list(range(6)), np.random.default_rng(1))
    res = permutation_test(
        df, **ROLES, statistic="cluster-period", weights="inverse-variance", confidence_level=0.8
    )
    lo, hi = res.interval
    assert lo < res.estimate < hi
    with pytest.raises(ValueError, match="test inversion"):
        permutation_test(df, **ROLES, statistic=lambda f: 0.0, confidence_level=0.9)
    no_ci = permutation_test(df, **ROLES, statistic=lambda f: float(f["y"].mean()))
    with pytest.raises(ValueError, match="inversion"):
        no_ci.conf_int()
    assert np.isnan(no_ci.tidy()["conf_low"].iloc[0])


# --------------------------------------------------------------------------------------
# simulation helper
# --------------------------------------------------------------------------------------
def test_null_distribution_from_allocation_matches_permutation_test() -> None:
    d = Design.stepped_wedge(3, 2)
    alloc = randomise(d, list("uvwxyz"), rng=3, alpha=None)
    rng = np.random.default_rng(4)
    frames = [
        _individual_data(alloc.design.matrix, list(alloc.design.clusters), rng, 0.3)
        for _ in range(3)
    ]
    y = np.stack(
        [
            _cell_means(f)
            .pivot(index="c", columns="t", values="y")
            .loc[list(alloc.design.clusters)]
            .to_numpy()
            for f in frames
        ]
    )
    for statistic in ("twfe", "cluster-period"):
        nd = null_distribution_from_allocation(alloc, y, statistic=statistic)
        assert nd.exact and nd.null.shape == (3, 90)
        for r, f in enumerate(frames):
            res = permutation_test(f, **ROLES, allocation=alloc, statistic=statistic)
            np.testing.assert_allclose(nd.observed[r], res.statistic, **LINALG)
            np.testing.assert_allclose(
                np.sort(nd.null[r]), np.sort(res.null_distribution), **LINALG
            )
            assert nd.pvalues()[r] == pytest.approx(res.pvalue, rel=EXACT_REL, abs=0)


# --------------------------------------------------------------------------------------
# protocol and validation
# --------------------------------------------------------------------------------------
def test_result_protocol() -> None:
    import matplotlib

    matplotlib.use("Agg")
    d = Design.stepped_wedge(3, 2)
    df = _individual_data(d.matrix, list(range(6)), np.random.default_rng(1), effect=1.0)
    res = permutation_test(df, **ROLES, statistic="twfe", confidence_level=0.95)
    assert isinstance(res, PermutationResult)
    assert list(res.tidy().columns) == [
        "term",
        "estimate",
        "std_error",
        "statistic",
        "df",
        "p_value",
        "conf_low",
        "conf_high",
    ]
    assert "randomisation test" in str(res) and "<table>" in res._repr_html_()
    assert "PermutationResult(twfe" in repr(res)
    assert "exact" in res.summary().as_markdown()
    ax = res.plot()
    assert len(ax.patches) > 0
    import matplotlib.pyplot as plt

    plt.close("all")
    with pytest.raises(Exception):  # noqa: B017 - frozen
        res.pvalue = 0.5  # type: ignore[misc]
    assert not res.null_distribution.flags.writeable


def test_invalid_options() -> None:
    d = Design.stepped_wedge(3, 2)
    df = _individual_data(d.matrix, list(range(6)), np.random.default_rng(1))
    with pytest.raises(ValueError, match="statistic"):
        permutation_test(df, **ROLES, statistic="anova")
    with pytest.raises(ValueError, match="alternative"):
        permutation_test(df, **ROLES, alternative="both")
    with pytest.raises(ValueError, match="weights"):
        permutation_test(df, **ROLES, statistic="twfe", weights="clusters")
    with pytest.raises(ValueError, match="n_permutations"):
        permutation_test(df, **ROLES, n_permutations=0)
    with pytest.raises(ValueError, match="lmm"):
        permutation_test(df, **ROLES, statistic="twfe", use="t")
    with pytest.raises(DataError, match="cluster rows"):
        permutation_test(df, **ROLES, design=Design.stepped_wedge(5))


# --------------------------------------------------------------------------------------
# calibration (slow)
# --------------------------------------------------------------------------------------
@pytest.mark.slow
def test_pvalue_is_uniform_under_the_null() -> None:
    """Exact test, 90 allocations, no ties: P(p <= k/90) = k/90 for every k."""
    d = Design.stepped_wedge(3, 2)
    rng = np.random.default_rng(2024)
    n_sims = 400
    pvals = {"twfe": [], "cluster-period": []}
    for _ in range(n_sims):
        df = _individual_data(d.matrix, list(range(6)), rng, effect=0.0, m=(1, 3))
        for statistic in pvals:
            pvals[statistic].append(permutation_test(df, **ROLES, statistic=statistic).pvalue)
    for statistic, ps in pvals.items():
        ps = np.array(ps)
        for level in (9 / 90, 27 / 90, 45 / 90):
            se = np.sqrt(level * (1 - level) / n_sims)
            assert abs(np.mean(ps <= level + 1e-12) - level) <= MC_K * se, (statistic, level)


@pytest.mark.slow
def test_monte_carlo_test_has_nominal_size() -> None:
    d = Design.stepped_wedge(6, 2)
    rng = np.random.default_rng(77)
    n_sims = 300
    ps = np.array(
        [
            permutation_test(
                _individual_data(d.matrix, list(range(12)), rng, m=(1, 2)),
                **ROLES,
                statistic="twfe",
                n_permutations=199,
                rng=rng,
            ).pvalue
            for _ in range(n_sims)
        ]
    )
    for level in (0.05, 0.2):
        se = np.sqrt(level * (1 - level) / n_sims)
        assert abs(np.mean(ps <= level) - level) <= MC_K * se


@pytest.mark.slow
@pytest.mark.parametrize("statistic", ["twfe", "cluster-period"])
def test_interval_covers_the_true_effect_at_the_nominal_rate(statistic: str) -> None:
    d = Design.stepped_wedge(4, 2)
    rng = np.random.default_rng(99)
    n_sims, effect = 200, 0.7
    hits = 0
    for _ in range(n_sims):
        df = _individual_data(d.matrix, list(range(8)), rng, effect=effect, m=(1, 3))
        lo, hi = permutation_test(
            df, **ROLES, statistic=statistic, n_permutations=399, rng=rng, confidence_level=0.9
        ).interval
        hits += lo <= effect <= hi
    se = np.sqrt(0.9 * 0.1 / n_sims)
    assert abs(hits / n_sims - 0.9) <= MC_K * se


def test_space_from_data_with_a_missing_cell_matches_brute_force() -> None:
    """Without a design, sequences come from the treatment rows (unobserved cells filled)."""
    d = Design.stepped_wedge(5)
    m = d.matrix.copy()
    m[2, 4] = np.nan  # cluster 2 has no rows in period 5
    m[3, 0] = np.nan  # cluster 3 has none in period 1
    clusters = list(range(5))
    df = _individual_data(m, clusters, np.random.default_rng(40), effect=0.4)
    for statistic, ref in (("twfe", _ref_twfe), ("cluster-period", _ref_vertical)):
        obs, null = _brute_force(df, d.matrix, clusters, ref)
        res = permutation_test(df, **ROLES, statistic=statistic)
        assert res.exact and res.n_admissible == 120
        np.testing.assert_allclose(res.statistic, obs, **LINALG)
        np.testing.assert_allclose(res.pvalue, _p(obs, null), **EXACT)


def test_constrained_allocation_with_integer_labels_matches_its_admissible_set() -> None:
    """Covariate-constrained space; integer labels whose text order differs from their order."""
    d = Design.stepped_wedge(3, 4)
    labels = list(range(1, 13))  # text order 1, 10, 11, 12, 2, ... differs from numeric order
    size = np.random.default_rng(3).normal(size=12)
    frame = pd.DataFrame({"cluster": labels, "size": size})
    alloc = randomise(d, frame, balance="size", cutoff=0.01, rng=2, alpha=None)
    assert alloc.constrained and alloc.n_admissible < alloc.n_possible
    df = _individual_data(
        alloc.design.matrix, list(alloc.design.clusters), np.random.default_rng(6), effect=0.5
    )
    res = permutation_test(df, **ROLES, allocation=alloc, statistic="twfe", alpha=None)
    assert res.exact and res.n_permutations == alloc.n_admissible
    assert res.allocation_method == "simple + constrained"
    # independent: the statistic under each admissible row (0-based sequences by label)
    sm = d.sequence_matrix
    cells = _cell_means(df)
    null = []
    for row in alloc.admissible:
        seq = dict(zip(alloc.clusters, row.tolist(), strict=True))
        x = [sm[seq[c]][t - 1] for c, t in zip(cells["c"], cells["t"], strict=True)]
        null.append(_ref_twfe(cells.assign(x=x)))
    obs = _ref_twfe(cells)
    np.testing.assert_allclose(res.statistic, obs, **LINALG)
    np.testing.assert_allclose(np.sort(res.null_distribution), np.sort(null), **LINALG)
    np.testing.assert_allclose(res.pvalue, _p(obs, np.array(null)), **EXACT)


def test_permutation_result_on_the_estimation_base() -> None:
    """Base protocol of a randomisation result: ratio and exponentiated tidy from the
    test-inversion interval, compare's label, with_vcov and bad levels refused."""
    from steppedwedge.exceptions import OptionError
    from steppedwedge.results import EstimationResult

    rng = np.random.default_rng(11)
    rows = [
        (i, j, float(j > i % 4), float(rng.poisson(np.exp(1.5 + 0.1 * j - 0.3 * (j > i % 4)))))
        for i in range(8)
        for j in range(5)
    ]
    df = pd.DataFrame(rows, columns=["c", "t", "x", "y"])
    res = permutation_test(
        df, **ROLES, family="poisson", n_permutations=300, rng=3, confidence_level=0.9
    )
    assert isinstance(res, EstimationResult)
    assert res.method_label == "randomisation test (twfe, B=300)"
    row = res.tidy()
    assert (row.loc[0, "conf_low"], row.loc[0, "conf_high"]) == res.interval
    assert row.loc[0, "p_value"] == res.pvalue and row.loc[0, "statistic"] == res.statistic
    lo95, hi95 = res.conf_int(0.95)
    assert lo95 < res.interval[0] < res.interval[1] < hi95  # a wider level, same draws
    assert res.ratio == pytest.approx(
        (np.exp(res.estimate), np.exp(lo95), np.exp(hi95)), rel=ULP_REL
    )
    ex = res.tidy(exponentiate=True)
    assert ex.loc[0, "estimate"] == pytest.approx(np.exp(res.estimate), rel=ULP_REL)
    assert ex.loc[0, "conf_low"] == pytest.approx(np.exp(res.interval[0]), rel=ULP_REL)
    with pytest.raises(OptionError, match="with_vcov"):
        res.with_vcov("cr2")
    with pytest.raises(OptionError, match="confidence_level"):
        res.tidy(1.5)
    gauss = permutation_test(
        _cell_means(
            _individual_data(
                np.array([[float(j > i) for j in range(5)] for i in range(4)]), list("abcd"), rng
            )
        ),
        **ROLES,
        statistic=lambda f: float(f["y"].mean()),
        alpha=None,
    )
    assert gauss.ratio is None
    assert np.isnan(gauss.tidy().loc[0, "conf_low"])  # a callable has no interval
    with pytest.raises(OptionError, match="callable"):
        gauss.conf_int()
