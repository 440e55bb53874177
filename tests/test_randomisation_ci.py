"""Randomisation confidence intervals on the link scale (``permutation_test(confidence_level=)``).

References are independent of the library's kernels: every allocation of a 5-council design
enumerated with ``itertools.permutations``, the control outcomes implied by a hypothesised
rate (odds) ratio recomputed from the counts, the two-way fixed-effects coefficient from
``numpy.linalg.lstsq`` on explicit dummies and the vertical statistic from pandas group
means.  The interval end must be a point the brute-force test accepts while a point just
beyond it is rejected.
"""

from __future__ import annotations

import itertools
import math
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pandas as pd
import pytest
from _tolerances import EXACT_REL, INVERTER_RTOL, TWO_OPTIMISER_STOPS_ATOL, ZERO_ATOL_1E12
from scipy import stats

from steppedwedge.design import Design
from steppedwedge.exceptions import SmallSampleWarning
from steppedwedge.inference._permutation_ci import secant_ends
from steppedwedge.inference.permutation import permutation_test
from steppedwedge.randomise import randomise

ROLES = dict(outcome="y", cluster="c", period="t", treatment="x")
TIE = 1e-9  # relative tie tolerance of the library's p-value (documented there)


def _counts(matrix: np.ndarray, rng: np.random.Generator, rr: float, base: float = 0.02):
    rows = []
    for i in range(matrix.shape[0]):
        a = rng.normal(0, 0.3)
        for j in range(matrix.shape[1]):
            e = float(rng.integers(800, 1500))
            mu = e * base * math.exp(a + 0.05 * j) * rr ** matrix[i, j]
            rows.append((f"k{i}", j, float(matrix[i, j]), int(rng.poisson(mu)), e))
    return pd.DataFrame(rows, columns=["c", "t", "x", "y", "E"])


def _binomial(matrix: np.ndarray, rng: np.random.Generator, odds_ratio: float):
    rows = []
    for i in range(matrix.shape[0]):
        a = rng.normal(0, 0.4)
        for j in range(matrix.shape[1]):
            n = int(rng.integers(30, 60))
            eta = -0.5 + a + 0.1 * j + math.log(odds_ratio) * matrix[i, j]
            rows.append(
                (f"k{i}", j, float(matrix[i, j]), int(rng.binomial(n, 1 / (1 + math.exp(-eta)))), n)
            )
    return pd.DataFrame(rows, columns=["c", "t", "x", "y", "n"])


# --------------------------------------------------------------------------------------
# brute force
# --------------------------------------------------------------------------------------
def _control_summary(df: pd.DataFrame, theta: float, family: str) -> np.ndarray:
    y, x = df["y"].to_numpy(float), df["x"].to_numpy(float)
    if family == "poisson":
        return np.log((y * np.exp(-theta * x) + 0.5) / df["E"].to_numpy(float))
    n = df["n"].to_numpy(float)
    odds = y / (n - y) * np.exp(-theta * x)  # treated cells' odds scaled back
    y0 = n * odds / (1 + odds)
    return np.log((y0 + 0.5) / (n - y0 + 0.5))


def _twfe(s: np.ndarray, x: np.ndarray, df: pd.DataFrame) -> float:
    cl = pd.get_dummies(df["c"], drop_first=True, dtype=float).to_numpy()
    pe = pd.get_dummies(df["t"], drop_first=True, dtype=float).to_numpy()
    design = np.column_stack([np.ones(len(df)), x, cl, pe])
    return float(np.linalg.lstsq(design, s, rcond=None)[0][1])


def _vertical(s: np.ndarray, x: np.ndarray, df: pd.DataFrame) -> float:
    """Per period: mean over treated minus mean over control, weights n1 n0 / (n1 + n0)."""
    t = df["t"].to_numpy()
    num = den = 0.0
    for j in np.unique(t):
        on, off = (t == j) & (x == 1), (t == j) & (x == 0)
        n1, n0 = int(on.sum()), int(off.sum())
        if n1 and n0:
            w = n1 * n0 / (n1 + n0)
            num += w * (s[on].mean() - s[off].mean())
            den += w
    return num / den


def _brute_p(df: pd.DataFrame, theta: float, family: str, statistic: str) -> float:
    """Exact p over all 120 allocations of the 5 x 6 design (one cluster per sequence)."""
    sm = Design.stepped_wedge(5).sequence_matrix
    s = _control_summary(df, theta, family)
    fun = _twfe if statistic == "twfe" else _vertical
    clusters = sorted(df["c"].unique())
    seq_obs = {c: int(6 - df.loc[df["c"] == c, "x"].sum()) - 1 for c in clusters}
    obs = fun(s, df["x"].to_numpy(float), df)
    null = []
    for perm in itertools.permutations(range(5)):
        seqs = dict(zip(clusters, perm, strict=True))
        x = np.array([sm[seqs[c]][t] for c, t in zip(df["c"], df["t"], strict=True)])
        null.append(fun(s, x, df))
    null_a = np.abs(np.array(null))
    assert len(set(seq_obs.values())) == 5
    scale = max(abs(obs), float(null_a.max()))
    return float(np.mean(null_a >= abs(obs) - TIE * scale))


@pytest.mark.parametrize(
    ("family", "statistic"),
    [("poisson", "twfe"), ("poisson", "cluster-period"), ("binomial", "cluster-period")],
)
def test_interval_ends_match_brute_force_enumeration(family: str, statistic: str) -> None:
    rng = np.random.default_rng(11)
    matrix = Design.stepped_wedge(5).matrix
    if family == "poisson":
        df = _counts(matrix, rng, rr=0.7)
        extra = dict(family="poisson", exposure="E")
    else:
        df = _binomial(matrix, rng, odds_ratio=0.6)
        extra = dict(family="binomial", trials="n")
    res = permutation_test(df, **ROLES, **extra, statistic=statistic, confidence_level=0.9)
    assert res.exact and res.n_permutations == 120 and res.link in ("log", "logit")
    assert res.pvalue == pytest.approx(_brute_p(df, 0.0, family, statistic), abs=ZERO_ATOL_1E12)
    lo, hi = res.interval
    assert lo < res.estimate < hi
    scale = float(np.std(res.null_distribution))
    delta = 1e-5 * scale  # the ends are located to 1e-7 of the spread; 100x margin
    assert _brute_p(df, lo, family, statistic) > 0.1
    assert _brute_p(df, lo - delta, family, statistic) <= 0.1
    assert _brute_p(df, hi, family, statistic) > 0.1
    assert _brute_p(df, hi + delta, family, statistic) <= 0.1
    text = res.summary().as_text()
    assert ("rate ratio" if family == "poisson" else "odds ratio") in text
    assert "approximate" in text


def test_identity_scale_counts_keep_the_additive_inversion() -> None:
    df = _counts(Design.stepped_wedge(5).matrix, np.random.default_rng(3), rr=0.8)
    res = permutation_test(
        df, **ROLES, family="poisson", exposure="E", link="identity", confidence_level=0.8
    )
    lo, hi = res.interval
    rate = df["y"] / df["E"]
    for end, sign in ((lo, -1.0), (hi, 1.0)):
        shifted = df.assign(r=rate - (end + sign * 1e-5 * abs(end)) * df["x"])
        p = permutation_test(shifted, outcome="r", cluster="c", period="t", treatment="x").pvalue
        assert p <= 0.2


# --------------------------------------------------------------------------------------
# small spaces: Family Safeguarding (12 allocations)
# --------------------------------------------------------------------------------------
FS = ["Walsall", "Lancashire", "Telford", "Wandsworth", "Swindon"]


def test_family_safeguarding_interval_is_unbounded_at_95_percent() -> None:
    frame = pd.DataFrame({"cluster": FS, "readiness": ["high"] * 2 + ["low"] * 3})
    alloc = randomise(
        Design.stepped_wedge(5),
        frame,
        strata="readiness",
        allowed_sequences={"high": [0, 1], "low": [2, 3, 4]},
        rng=1,
        alpha=None,
    )
    waves = {"Walsall": 2, "Lancashire": 1, "Telford": 5, "Wandsworth": 3, "Swindon": 4}
    sm = Design.stepped_wedge(5).sequence_matrix
    matrix = np.array([sm[waves[c] - 1] for c in FS])
    df = _counts(matrix, np.random.default_rng(2), rr=0.7).replace(
        {"c": {f"k{i}": c for i, c in enumerate(FS)}}
    )
    with pytest.warns(SmallSampleWarning, match=r"12 admissible allocation\(s\).*0\.0833"):
        res = permutation_test(
            df,
            **ROLES,
            family="poisson",
            exposure="E",
            allocation=alloc,
            confidence_level=0.95,
            alpha=None,
        )
    assert res.exact and res.n_admissible == 12
    assert res.interval == (-math.inf, math.inf)
    assert any("unbounded" in m and "12 admissible" in m for m in res.messages)
    lo, hi = res.conf_int(0.9)  # 1/12 < 0.10: a 90% set can exclude something
    assert lo <= res.estimate <= hi


# --------------------------------------------------------------------------------------
# model statistics: the offset form, refits on any executor
# --------------------------------------------------------------------------------------
def test_secant_ends_find_the_jumps_of_a_smooth_family_of_statistics() -> None:
    """The secant search against a dense brute-force scan of the same step function."""
    rng = np.random.default_rng(5)
    a, b, c = rng.normal(0, 1, 199), rng.normal(-0.3, 0.2, 199), rng.normal(0, 0.05, 199)
    est = 0.4

    def evaluate(theta: float) -> tuple[float, np.ndarray]:
        return (est - theta) * (1 + 0.1 * theta**2), a + b * theta + c * theta**2

    def p(theta: float) -> float:
        t_obs, t_null = evaluate(theta)
        return (1 + np.sum(np.abs(t_null) >= abs(t_obs))) / 200

    obs0, null0 = evaluate(0.0)
    lo, hi = secant_ends(
        evaluate, est, obs0, null0, 1.0, 0.9, "two-sided", False, math.inf, rtol=INVERTER_RTOL
    )
    assert p(lo) > 0.1 >= p(lo - 1e-6) and p(hi) > 0.1 >= p(hi + 1e-6)
    grid = np.linspace(lo - 3, hi + 3, 20001)
    accepted = grid[[p(g) > 0.1 for g in grid]]
    assert accepted.min() >= lo - 1e-6 and accepted.max() <= hi + 1e-6


def _gaussian(rng: np.random.Generator, design: Design | None = None) -> pd.DataFrame:
    matrix = (design or Design.stepped_wedge(4)).matrix
    rows = [
        (f"k{i}", j, float(matrix[i, j]), 0.1 * j + 0.8 * matrix[i, j] + rng.normal())
        for i in range(matrix.shape[0])
        for j in range(matrix.shape[1])
        for _ in range(2)
    ]
    return pd.DataFrame(rows, columns=["c", "t", "x", "y"])


@pytest.mark.slow
def test_model_statistic_interval_ends_are_where_the_shifted_test_rejects() -> None:
    df = _gaussian(np.random.default_rng(8), Design.stepped_wedge(3, 2))
    opts = dict(random="cluster", dof="normal")
    mc = dict(statistic="lmm", lmm_options=opts, n_permutations=29, rng=3)
    res = permutation_test(df, **ROLES, **mc, confidence_level=0.9)
    assert not res.exact and res.n_permutations == 29
    lo, hi = res.interval
    assert np.isfinite(lo) and np.isfinite(hi) and lo < res.estimate < hi
    scale = float(np.std(res.null_distribution))
    for end, sign in ((lo, -1.0), (hi, 1.0)):
        for delta, rejects in ((-1e-3 * scale, False), (1e-3 * scale, True)):
            shifted = df.assign(y=df["y"] - (end + sign * delta) * df["x"])
            p = permutation_test(shifted, **ROLES, **mc).pvalue  # the same 29 draws
            assert (p <= 0.1) is rejects


def test_model_statistic_is_the_same_on_an_executor() -> None:
    df = _gaussian(np.random.default_rng(9))
    opts = dict(random="cluster")
    serial = permutation_test(df, **ROLES, statistic="lmm", lmm_options=opts)
    with ThreadPoolExecutor(2) as ex:
        pooled = permutation_test(df, **ROLES, statistic="lmm", lmm_options=opts, executor=ex)
    # threads share one BLAS: the refits agree to rounding (a few ulp), not bit for bit
    np.testing.assert_allclose(serial.null_distribution, pooled.null_distribution, rtol=EXACT_REL)
    assert serial.pvalue == pooled.pvalue


def test_model_statistic_counts_refits_that_fail(monkeypatch: pytest.MonkeyPatch) -> None:
    import steppedwedge.inference._permutation_ci as ci

    df = _gaussian(np.random.default_rng(10))
    real = ci._refit_task
    calls = {"n": 0}

    def flaky(job, x):  # every third re-randomisation fails
        calls["n"] += 1
        return (math.nan, math.nan, False) if calls["n"] % 3 == 0 else real(job, x)

    monkeypatch.setattr(ci, "_refit_task", flaky)
    res = permutation_test(df, **ROLES, statistic="lmm", lmm_options=dict(random="cluster"))
    assert res.n_failed == 8
    assert any("8 of 24 re-randomisation" in m for m in res.messages)


def test_bad_requests_are_refused() -> None:
    df = _binomial(Design.stepped_wedge(4).matrix, np.random.default_rng(1), 0.7)
    with pytest.raises(ValueError, match="offset form"):
        permutation_test(
            df, **ROLES, family="binomial", trials="n", statistic="lmm", confidence_level=0.9
        )
    with pytest.raises(ValueError, match="executor"):
        permutation_test(df, **ROLES, family="binomial", trials="n", n_jobs=2)


def test_monte_carlo_error_of_the_pvalue_is_reported() -> None:
    matrix = Design.stepped_wedge(6, 2).matrix
    df = _counts(matrix, np.random.default_rng(4), rr=0.85)
    res = permutation_test(df, **ROLES, family="poisson", exposure="E", n_permutations=499, rng=1)
    assert not res.exact
    assert res.pvalue_mc_se == pytest.approx(math.sqrt(res.pvalue * (1 - res.pvalue) / 499))
    assert "Monte-Carlo SE" in res.summary().as_text()


# --------------------------------------------------------------------------------------
# calibration
# --------------------------------------------------------------------------------------
def test_pvalues_are_uniform_under_the_null() -> None:
    """Sharp null, 12 councils, 200 trials x 99 re-randomisations: KS against U(0, 1)."""
    matrix = Design.stepped_wedge(6, 2).matrix
    rng = np.random.default_rng(2024)
    ps = [
        permutation_test(
            _counts(matrix, rng, rr=1.0),
            **ROLES,
            family="poisson",
            exposure="E",
            n_permutations=99,
            rng=int(rng.integers(1 << 31)),
        ).pvalue
        for _ in range(200)
    ]
    # p takes values k / 100: allow the 0.01 discreteness on top of the KS critical value
    assert stats.kstest(np.array(ps) - 0.005, "uniform").pvalue > 0.001


@pytest.mark.slow
@pytest.mark.parametrize(
    ("family", "n_councils"), [("poisson", 12), ("poisson", 17), ("binomial", 12)]
)
def test_link_scale_interval_covers_at_the_nominal_rate(family: str, n_councils: int) -> None:
    """Coverage of the 90% ratio interval (twfe, 199 draws) in 100 simulated trials.

    Rate ratio 0.8 (counts) or odds ratio 0.7 (binomial, 30-60 trials a cell).  Monte-Carlo
    SE of the coverage sqrt(0.9 * 0.1 / 100) = 0.03: the window 0.9 +- 4 SE = [0.78, 1.0]
    (wide, to keep each case near 15 s; the run for the changelog used 400 trials).  The
    interval is approximate on these scales (scaled counts are not control draws), so a
    coverage far below the window would show it.
    """
    if n_councils == 17:
        from calibration_counts import council_scenario

        matrix = council_scenario(17).design.matrix
    else:
        matrix = Design.stepped_wedge(6, 2).matrix
    rng = np.random.default_rng(77 + n_councils + (family == "binomial"))
    theta = math.log(0.8 if family == "poisson" else 0.7)
    extra = dict(exposure="E") if family == "poisson" else dict(trials="n")
    hits = 0
    for _ in range(100):
        if family == "poisson":
            df = _counts(matrix, rng, rr=0.8, base=0.01)
        else:
            df = _binomial(matrix, rng, odds_ratio=0.7)
        lo, hi = permutation_test(
            df,
            **ROLES,
            family=family,
            **extra,
            n_permutations=199,
            rng=int(rng.integers(1 << 31)),
            confidence_level=0.9,
        ).interval
        hits += lo <= theta <= hi
    assert 0.78 <= hits / 100 <= 1.0


@pytest.mark.parametrize("random", ["cluster", "nested+decay"])
def test_offset_form_shifts_the_glmm_estimate_exactly(random: str) -> None:
    """Refitting with theta X_obs in the offset returns the estimate minus theta (same fit)."""
    import steppedwedge as sw
    import steppedwedge.inference._permutation_ci as ci

    df = _counts(Design.stepped_wedge(4, 2).matrix, np.random.default_rng(6), rr=0.75)
    roles = dict(ROLES, family="poisson", exposure="E")
    base = sw.fit(df, **roles, random=random, dof="normal")
    td_codes = pd.factorize(df["c"], sort=True)[0], df["t"].to_numpy()
    job = ci.RefitJob(df, *td_codes, "x", roles, {"random": random, "dof": "normal"}, "estimate")
    x_obs = df.pivot(index="c", columns="t", values="x").to_numpy()
    for theta in (-0.4, 0.3):
        est, _ = ci.fit_observed(ci.shifted_job(job, "poisson", "y", theta), x_obs)
        assert est == pytest.approx(base.estimate - theta, abs=TWO_OPTIMISER_STOPS_ATOL)


def test_treatment_matching_no_sequence_of_the_allocation_is_refused() -> None:
    from steppedwedge.exceptions import DataError

    d = Design.stepped_wedge(4)
    alloc = randomise(d, [f"k{i}" for i in range(4)], rng=1, alpha=None)
    df = _counts(d.matrix, np.random.default_rng(1), rr=0.8)
    df.loc[df["c"] == "k0", "x"] = 1.0  # k0 treated from the first period: no such sequence
    with pytest.raises(DataError, match="matches no sequence"):
        permutation_test(
            df, **ROLES, family="poisson", exposure="E", allocation=alloc, confidence_level=0.9
        )
