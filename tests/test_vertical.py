"""Design-based estimators: vertical (Thompson 2018), Hughes (2020), Kennedy-Shaffer (2020).

References are hand computations of each estimator's definition in plain Python loops over
clusters and periods (independent of the library's vectorised kernels), brute-force
enumeration of every allocation (``itertools.permutations``) for the randomisation p-values
and for the Hughes permutation variance, and scipy's SLSQP for the synthetic-control weights.
No worked example with printed inputs and outputs was available (only the papers' abstracts
could be read), so no published numbers are used; the authors' code
(github.com/leekshaffer/SW-CRT-analysis) fixed the Kennedy-Shaffer definitions (CO-1..CO-4,
SC-1/SC-2).  Its NPWP and CO functions, run once outside the test suite on a simulated
12-cluster trial (identity scale), agreed with ``method="vertical", weights=
"inverse-variance"`` and CO-1..CO-4 to 1e-15; that code is not redistributed here, and its
synthetic control needs the Synth package, which is not installed.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pandas as pd
import pytest
from _tolerances import (
    EXACT,
    EXACT_REL,
    LINALG,
    QP_RECOVERY_ATOL,
    QP_SOLVERS_REL,
    ZERO_ATOL_1E12,
)
from scipy.optimize import minimize

import steppedwedge as sw
from steppedwedge.design import Design
from steppedwedge.exceptions import DataError, OptionError
from steppedwedge.inference.permutation import permutation_test
from steppedwedge.models.design_based import DesignBasedResult
from steppedwedge.models.design_based._kernels import simplex_least_squares

ROLES = dict(outcome="y", cluster="c", period="t", treatment="x")


def _trial(design: Design, seed: int, effect: float = 0.5, m: int = 3) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    for i, row in enumerate(design.matrix):
        a = rng.normal(0, 1)
        for j, x in enumerate(row):
            for _ in range(m):
                rows.append((f"c{i}", j, float(x), a + 0.3 * j + effect * x + rng.normal()))
    return pd.DataFrame(rows, columns=["c", "t", "x", "y"])


def _cells(df: pd.DataFrame) -> tuple[list[str], list[int], dict, dict]:
    g = df.groupby(["c", "t"])
    ybar = g["y"].mean().to_dict()
    x = g["x"].first().to_dict()
    return sorted(df["c"].unique()), sorted(df["t"].unique()), ybar, x


def _hand_vertical(ybar: dict, x: dict, clusters, periods, weights="clusters") -> float:
    num = den = 0.0
    for t in periods:
        tr = [ybar[c, t] for c in clusters if x[c, t] == 1]
        co = [ybar[c, t] for c in clusters if x[c, t] == 0]
        if not tr or not co:
            continue
        d = sum(tr) / len(tr) - sum(co) / len(co)
        if weights == "clusters":
            w = len(tr) * len(co) / (len(tr) + len(co))
        elif weights == "equal":
            w = 1.0
        else:
            m1, m0 = sum(tr) / len(tr), sum(co) / len(co)
            ss = sum((v - m1) ** 2 for v in tr) + sum((v - m0) ** 2 for v in co)
            s2 = ss / (len(tr) + len(co) - 2)
            w = 1.0 / (s2 * (1 / len(tr) + 1 / len(co)))
        num += w * d
        den += w
    return num / den


# --------------------------------------------------------------------------------------
# vertical analysis
# --------------------------------------------------------------------------------------
@pytest.mark.parametrize("weights", ["clusters", "inverse-variance"])
def test_vertical_equals_hand_computation(weights: str) -> None:
    df = _trial(Design.stepped_wedge(4, 2), seed=1)
    res = sw.fit(df, **ROLES, method="vertical", weights=weights, n_permutations=999, rng=2)
    assert isinstance(res, DesignBasedResult)
    clusters, periods, ybar, x = _cells(df)
    np.testing.assert_allclose(
        res.estimate, _hand_vertical(ybar, x, clusters, periods, weights), **EXACT
    )
    table = res.table
    np.testing.assert_allclose(table["weight"].sum(), 1.0, **EXACT)
    np.testing.assert_allclose((table["weight"] * table["contrast"]).sum(), res.estimate, **EXACT)
    same = permutation_test(
        df, **ROLES, statistic="cluster-period", weights=weights, n_permutations=999, rng=2,
        confidence_level=0.95,
    )  # fmt: skip
    assert res.randomisation_pvalue == same.pvalue
    assert res.conf_int() == same.interval
    assert res.conf_int(0.8) == same.conf_int(0.8)  # another level, same draws
    assert res.tidy()["p_value"].iloc[0] == same.pvalue


# --------------------------------------------------------------------------------------
# Hughes et al. (2020)
# --------------------------------------------------------------------------------------
def _hughes_by_hand(y: np.ndarray, x: np.ndarray, weights: str, icc: float = 0.1) -> float:
    clusters = [f"c{i}" for i in range(y.shape[0])]
    periods = list(range(y.shape[1]))
    ybar = {(c, t): y[i, t] for i, c in enumerate(clusters) for t in periods}
    xx = {(c, t): x[i, t] for i, c in enumerate(clusters) for t in periods}
    if weights != "exchangeable":
        return _hand_vertical(ybar, xx, clusters, periods, weights)
    # GLS of the period contrasts under exchangeable cell summaries, written out
    contrasts, rows = [], []
    for t in periods:
        tr = [i for i in range(len(clusters)) if x[i, t] == 1]
        co = [i for i in range(len(clusters)) if x[i, t] == 0]
        if tr and co:
            coef = np.zeros_like(y)
            coef[tr, t] = 1 / len(tr)
            coef[co, t] = -1 / len(co)
            rows.append(coef)
            contrasts.append(float(np.sum(coef * y)))
    v = (1 - icc) * np.eye(y.shape[1]) + icc
    cov = np.array([[sum(a[i] @ v @ b[i] for i in range(y.shape[0])) for b in rows] for a in rows])
    w = np.linalg.solve(cov, np.ones(len(rows)))
    return float(w @ np.array(contrasts) / w.sum())


@pytest.mark.parametrize("weights", ["clusters", "equal", "exchangeable"])
def test_hughes_variance_is_the_exact_permutation_variance(weights: str) -> None:
    design = Design.stepped_wedge(3, 2)  # 6 clusters, 3 sequences of 2: 90 allocations
    df = _trial(design, seed=5)
    res = sw.fit(df, **ROLES, method="hughes", weights=weights)
    y = df.groupby(["c", "t"])["y"].mean().unstack().to_numpy()
    x = df.groupby(["c", "t"])["x"].first().unstack().to_numpy()
    np.testing.assert_allclose(res.estimate, _hughes_by_hand(y, x, weights), **LINALG)
    # brute force: the estimator of the implied control summaries over every permutation
    y0 = y - res.estimate * x
    values, unbiased = [], []
    for perm in itertools.permutations(range(6)):
        xp = x[list(perm)]
        values.append(_hughes_by_hand(y0, xp, weights))
        unbiased.append(_hughes_by_hand(y0 + 0.7 * xp, xp, weights))
    np.testing.assert_allclose(res.std_error**2, np.var(values), **LINALG)
    # design-unbiased for a constant effect, whatever the outcomes
    np.testing.assert_allclose(np.mean(unbiased), 0.7 + np.mean(values), **LINALG)
    np.testing.assert_allclose(np.mean(values), 0.0, atol=ZERO_ATOL_1E12)
    lo, hi = res.conf_int(0.9)
    np.testing.assert_allclose(hi - lo, 2 * 1.6448536269514722 * res.std_error, **LINALG)


def test_hughes_randomisation_pvalue_matches_enumeration() -> None:
    design = Design.stepped_wedge(5)
    df = _trial(design, seed=8, effect=1.0, m=2)
    res = sw.fit(df, **ROLES, method="hughes", n_permutations=500)
    assert res.exact and res.n_permutations == 120
    y = df.groupby(["c", "t"])["y"].mean().unstack().to_numpy()
    x = df.groupby(["c", "t"])["x"].first().unstack().to_numpy()
    null = np.array(
        [_hughes_by_hand(y, x[list(p)], "clusters") for p in itertools.permutations(range(5))]
    )
    p = np.mean(np.abs(null) >= abs(res.estimate) * (1 - 1e-9))
    assert res.randomisation_pvalue == pytest.approx(p, abs=ZERO_ATOL_1E12)


# --------------------------------------------------------------------------------------
# Kennedy-Shaffer et al. (2020): crossover
# --------------------------------------------------------------------------------------
def _co_by_hand(y: np.ndarray, x: np.ndarray, variant: str) -> float:
    num = den = 0.0
    for j in range(1, y.shape[1]):
        sw_, cmp_ = [], []
        for i in range(y.shape[0]):
            change = y[i, j] - y[i, j - 1]
            if x[i, j] == 1 and x[i, j - 1] == 0:
                sw_.append(change)
            elif x[i, j] == 0 or (variant in ("CO-3", "CO-4") and x[i, j - 1] == 1):
                cmp_.append(change)
        if sw_ and cmp_:
            est = np.mean(sw_) - np.mean(cmp_)
            w = 1 / (1 / len(sw_) + 1 / len(cmp_)) if variant in ("CO-2", "CO-4") else 1.0
            num += w * est
            den += w
    return num / den


@pytest.mark.parametrize("variant", ["CO-1", "CO-2", "CO-3", "CO-4"])
def test_crossover_equals_hand_computation_and_enumeration(variant: str) -> None:
    df = _trial(Design.stepped_wedge(5), seed=3, effect=0.8, m=2)
    res = sw.fit(df, **ROLES, method="crossover", weights=variant, confidence_level=0.8)
    y = df.groupby(["c", "t"])["y"].mean().unstack().to_numpy()
    x = df.groupby(["c", "t"])["x"].first().unstack().to_numpy()
    np.testing.assert_allclose(res.estimate, _co_by_hand(y, x, variant), **EXACT)
    assert res.exact and res.n_permutations == 120
    null = np.array([_co_by_hand(y, x[list(p)], variant) for p in itertools.permutations(range(5))])
    assert res.randomisation_pvalue == pytest.approx(
        np.mean(np.abs(null) >= abs(res.estimate) * (1 - 1e-9)), abs=ZERO_ATOL_1E12
    )
    lo, hi = res.interval
    lo9, hi9 = res.conf_int(0.9)  # on demand from the same enumeration: nested intervals
    assert lo9 <= lo and hi9 >= hi
    for end, out in ((lo, -1e-5), (hi, 1e-5)):  # inside accepted, just beyond rejected
        for theta, accepted in ((end, True), (end + out, False)):
            yy = y - theta * x
            t_obs = _co_by_hand(yy, x, variant)
            t = np.array(
                [_co_by_hand(yy, x[list(p)], variant) for p in itertools.permutations(range(5))]
            )
            assert bool(np.mean(np.abs(t) >= abs(t_obs) * (1 - 1e-9)) > 0.2) is accepted


# --------------------------------------------------------------------------------------
# Kennedy-Shaffer et al. (2020): synthetic control
# --------------------------------------------------------------------------------------
def test_simplex_least_squares_matches_slsqp() -> None:
    rng = np.random.default_rng(4)
    for _ in range(20):
        a, b = rng.normal(size=(5, 4)), rng.normal(size=5)
        w = simplex_least_squares(a, b)
        ref = minimize(
            lambda v, a=a, b=b: float(np.sum((a @ v - b) ** 2)), np.full(4, 0.25),
            method="SLSQP", bounds=[(0, 1)] * 4,
            constraints=[{"type": "eq", "fun": lambda v: v.sum() - 1}],
            options={"ftol": 1e-14, "maxiter": 500},
        )  # fmt: skip
        assert w.min() >= 0 and w.sum() == pytest.approx(1.0, abs=ZERO_ATOL_1E12)
        assert np.sum((a @ w - b) ** 2) <= ref.fun + 1e-7


def _sc_by_hand(y: np.ndarray, x: np.ndarray, variant: str) -> float:
    start = {i: int(np.argmax(x[i])) if x[i].any() else y.shape[1] for i in range(y.shape[0])}
    contrasts = []
    for j in range(y.shape[1]):
        tr = [i for i in range(y.shape[0]) if x[i, j] == 1]
        co = [i for i in range(y.shape[0]) if x[i, j] == 0]
        if not tr or not co:
            continue
        for i in tr:
            pre = list(range(start[i]))
            a = y[np.ix_(co, pre)].T
            w = simplex_least_squares(a, y[i, pre]) if len(co) > 1 else np.ones(1)
            mspe = max(1e-8, float(np.mean((y[i, pre] - a @ w) ** 2)))
            contrasts.append((start[i], y[i, j] - float(w @ y[co, j]), mspe))
    if variant == "SC-1":
        return float(np.mean([c[1] for c in contrasts]))
    num = den = 0.0
    for s in {c[0] for c in contrasts}:
        grp = [c for c in contrasts if c[0] == s]
        inv = sum(1 / c[2] for c in grp)
        for c in grp:
            num += c[1] / c[2] / inv
            den += 1 / c[2] / inv
    return num / den


@pytest.mark.parametrize("variant", ["SC-1", "SC-2"])
def test_synthetic_control_equals_hand_computation(variant: str) -> None:
    design = Design.from_matrix(Design.stepped_wedge(5).matrix[:, :])  # no one treated at 0
    df = _trial(design, seed=6, effect=0.6, m=2)
    res = sw.fit(df, **ROLES, method="synthetic-control", weights=variant, n_permutations=30, rng=1)
    y = df.groupby(["c", "t"])["y"].mean().unstack().to_numpy()
    x = df.groupby(["c", "t"])["x"].first().unstack().to_numpy()
    np.testing.assert_allclose(res.estimate, _sc_by_hand(y, x, variant), rtol=QP_SOLVERS_REL)
    assert not res.exact and res.n_permutations == 30
    assert math.isnan(res.conf_int()[0])


def test_synthetic_control_recovers_an_exact_convex_combination() -> None:
    """A treated council equal to the mean of two controls before its start: contrast = effect."""
    t = np.arange(6, dtype=float)
    base = {"a": np.sin(t), "b": np.cos(t), "c": 0.3 * t, "d": 0.5 * np.sin(t) + 0.5 * np.cos(t)}
    starts = {"a": 5, "b": 5, "c": 5, "d": 3}  # d: treated from period 3, effect 2
    rows = [
        (c, j, float(j >= starts[c]), base[c][j] + 2.0 * (j >= starts[c]))
        for c in base
        for j in range(6)
    ]
    df = pd.DataFrame(rows, columns=["c", "t", "x", "y"])
    res = sw.fit(df, **ROLES, method="synthetic-control", weights="SC-1", n_permutations=10, rng=0)
    d_rows = res.table[res.table["cluster"] == "d"]
    np.testing.assert_allclose(d_rows["contrast"], 2.0, atol=QP_RECOVERY_ATOL)


# --------------------------------------------------------------------------------------
# counts, protocol and refusals
# --------------------------------------------------------------------------------------
def test_counts_on_the_log_scale() -> None:
    rng = np.random.default_rng(2)
    d = Design.stepped_wedge(5)
    rows = [
        (f"c{i}", j, float(x), int(rng.poisson(900 * 0.03 * 0.7**x)), 900.0)
        for i, row in enumerate(d.matrix)
        for j, x in enumerate(row)
    ]
    df = pd.DataFrame(rows, columns=["c", "t", "x", "y", "E"])
    res = sw.fit(
        df, **ROLES, family="poisson", exposure="E", method="crossover", confidence_level=0.8
    )
    y = np.log((df.pivot(index="c", columns="t", values="y").to_numpy() + 0.5) / 900.0)
    x = df.pivot(index="c", columns="t", values="x").to_numpy()
    np.testing.assert_allclose(res.estimate, _co_by_hand(y, x, "CO-2"), **EXACT)
    assert res.link == "log" and "rate ratio" in res.summary().as_text()


def test_result_protocol() -> None:
    import matplotlib

    matplotlib.use("Agg")
    df = _trial(Design.stepped_wedge(4), seed=1)
    for method in ("vertical", "hughes", "crossover"):
        res = sw.fit(df, **ROLES, method=method, n_permutations=99, rng=1)
        assert list(res.tidy().columns) == [
            "term", "estimate", "std_error", "statistic", "df", "p_value", "conf_low", "conf_high",
        ]  # fmt: skip
        assert "Design-based" in res.summary().as_text() and "<table" in res._repr_html_()
        assert res.plot() is not None
        assert method in repr(res)


def test_bad_input_is_refused() -> None:
    d = Design.stepped_wedge(4)
    df = _trial(d, seed=1)
    with pytest.raises(OptionError, match="`random`"):
        sw.fit(df, **ROLES, method="hughes", random="cluster")
    with pytest.raises(OptionError, match="weights"):
        sw.fit(df, **ROLES, method="crossover", weights="clusters")
    with pytest.raises(OptionError, match="working_icc"):
        sw.fit(df, **ROLES, method="hughes", working_icc=0.3)
    with pytest.raises(DataError, match="every period"):
        sw.fit(df[~((df["c"] == "c1") & (df["t"] == 2))], **ROLES, method="hughes")
    with pytest.raises(DataError, match="0/1"):
        sw.fit(df.assign(x=df["x"] * 0.5), **ROLES, method="crossover")
    first = df.assign(x=np.where(df["c"] == "c0", 1.0, df["x"]))
    with pytest.raises(DataError, match="treated from the first period"):
        sw.fit(first, **ROLES, method="synthetic-control", n_permutations=10)
    alloc = sw.randomise(d, ["c0", "c1", "c2", "c9"], rng=1, alpha=None)
    with pytest.raises(DataError, match="clusters differ"):
        sw.fit(df, **ROLES, method="crossover", allocation=alloc)


def test_design_based_result_on_the_estimation_base() -> None:
    """The spec entry is the keyword function; the base protocol: ratio from the
    randomisation interval (log scale), Wald for Hughes, labels, with_vcov refused."""
    from steppedwedge.models.design_based import fit_design_based, fit_design_based_spec
    from steppedwedge.models.spec import AnalysisSpec
    from steppedwedge.results import EstimationResult

    design = Design.stepped_wedge(4, clusters_per_sequence=2)
    rng = np.random.default_rng(5)
    rows = [
        (f"c{i}", j, float(x), float(rng.poisson(np.exp(1.0 + 0.1 * j + 0.4 * x))))
        for i, row in enumerate(design.matrix)
        for j, x in enumerate(row)
    ]
    df = pd.DataFrame(rows, columns=["c", "t", "x", "y"])
    opts = dict(method="crossover", n_permutations=200, rng=4, confidence_level=0.9)
    res = fit_design_based(df, **ROLES, family="poisson", **opts)
    spec = AnalysisSpec.from_options(**ROLES, family="poisson", method="crossover")
    again = fit_design_based_spec(df, spec, **{k: v for k, v in opts.items() if k != "method"})
    pd.testing.assert_frame_equal(res.tidy(), again.tidy())
    assert isinstance(res, EstimationResult) and res.method_label == "crossover"
    lo95, hi95 = res.conf_int(0.95)
    assert res.ratio == pytest.approx(
        (math.exp(res.estimate), math.exp(lo95), math.exp(hi95)), rel=EXACT_REL
    )
    ex = res.tidy(exponentiate=True)
    assert ex.loc[0, "conf_high"] == pytest.approx(math.exp(res.interval[1]), rel=EXACT_REL)
    with pytest.raises(OptionError, match="with_vcov"):
        res.with_vcov("cr2")
    hughes = fit_design_based(df, **ROLES, family="poisson", method="hughes")
    lo, hi = hughes.conf_int(0.8)
    z = 1.2815515655446004  # qnorm(0.9)
    assert (lo, hi) == pytest.approx(
        (hughes.estimate - z * hughes.std_error, hughes.estimate + z * hughes.std_error),
        rel=EXACT_REL,
    )
