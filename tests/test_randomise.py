"""Tests for :func:`steppedwedge.randomise.randomise` and :class:`Allocation`.

Every space size and admissible set is checked against brute force over
``itertools.permutations``; uniformity is checked with chi-square goodness-of-fit tests
at fixed seeds (threshold p > 0.001, so a correct sampler fails with probability 1/1000
per test, and the fixed seed makes the outcome deterministic).
"""

from __future__ import annotations

import itertools
import json
import math
import pickle
from collections import Counter
from fractions import Fraction

import numpy as np
import pandas as pd
import pytest
from _tolerances import LONG_SUM_REL, ONE_OP_REL, ROUNDED_SCORE_ATOL, ZERO_ATOL_1E10, ZERO_ATOL_1E12
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from scipy import stats
from strategies import stepped_wedge_designs

from steppedwedge.design import Design
from steppedwedge.exceptions import DesignError, SmallSampleWarning
from steppedwedge.randomise import Allocation, randomise
from steppedwedge.randomise._space import AllocationSpace, randbelow
from steppedwedge.results import Summary

GOF_P = 0.001  # chi-square goodness-of-fit threshold (see module docstring)

FS = pd.DataFrame(
    {
        "cluster": ["Walsall", "Lancashire", "Telford", "Wandsworth", "Swindon"],
        "readiness": ["high", "high", "low", "low", "low"],
    }
)
FS_ALLOWED = {"high": [0, 1], "low": [2, 3, 4]}
NWD = pd.DataFrame(
    {
        "cluster": ["Rochdale", "Warrington", "Norfolk", "Redcar"],
        "readiness": ["high", "high", "low", "low"],
    }
)
NWD_ALLOWED = {"high": [0, 1], "low": [2, 3]}


# --------------------------------------------------------------------------------------
# brute-force helpers (independent of the implementation)
# --------------------------------------------------------------------------------------
def brute_space(design: Design) -> set[tuple[int, ...]]:
    """All distinct assignments (cluster k -> sequence) as tuples, by brute force."""
    return set(itertools.permutations(design.sequences.tolist()))


def rows_as_set(arr: np.ndarray) -> set[tuple[int, ...]]:
    return {tuple(int(v) for v in row) for row in arr}


def column_order(alloc: Allocation, labels: list) -> list[int]:
    """Positions of ``labels`` among ``alloc.clusters`` (the column order of admissible)."""
    return [alloc.clusters.index(lab) for lab in labels]


def gof_pvalue(observed_keys: list, support: set) -> float:
    counts = Counter(observed_keys)
    assert set(counts) <= support, "a draw fell outside the admissible set"
    obs = np.array([counts.get(k, 0) for k in sorted(support)], dtype=float)
    return float(stats.chisquare(obs).pvalue)


def period_regression_diff(design: Design, z: np.ndarray, seq_of_cluster: np.ndarray) -> float:
    """Coefficient of treatment in lstsq of z_i on treatment + period dummies (observed cells)."""
    rows_x, rows_p, rows_z = [], [], []
    seq_rows = {s: np.flatnonzero(design.sequences == s)[0] for s in range(design.n_sequences)}
    for i, s in enumerate(seq_of_cluster):
        row = design.matrix[seq_rows[int(s)]]
        for j, x in enumerate(row):
            if not np.isnan(x):
                rows_x.append(x)
                rows_p.append(j)
                rows_z.append(z[i])
    periods = np.eye(design.n_periods)[rows_p]
    X = np.column_stack([np.array(rows_x), periods])
    coef, *_ = np.linalg.lstsq(X, np.array(rows_z), rcond=None)
    return float(coef[0])


def vertical_diff(design: Design, z: np.ndarray, seq_of_cluster: np.ndarray) -> float:
    """0/1 designs: sum_j w_j (zbar_treated_j - zbar_control_j) / sum_j w_j, w = n1 n0 / n."""
    num = den = 0.0
    treat = design.sequence_matrix[seq_of_cluster]  # (I, T)
    for j in range(design.n_periods):
        t = treat[:, j] == 1
        c = treat[:, j] == 0
        n1, n0 = t.sum(), c.sum()
        if n1 and n0:
            w = n1 * n0 / (n1 + n0)
            num += w * (z[t].mean() - z[c].mean())
            den += w
    return num / den


# --------------------------------------------------------------------------------------
# the space: sizes and members against brute force
# --------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "design",
    [
        Design.stepped_wedge(3, 2),
        Design.stepped_wedge(3, [1, 2, 3]),
        Design.stepped_wedge(4, [2, 1, 1, 2]),
        Design.stepped_wedge(3, 2, transition_periods=1),
    ],
    ids=["sw3x2", "unequal123", "unequal2112", "transition"],
)
def test_simple_space_matches_multinomial_and_brute_force(design: Design) -> None:
    labels = [f"k{i}" for i in range(design.n_clusters)]
    alloc = randomise(design, labels, rng=0, alpha=None)
    sizes = np.bincount(design.sequences)
    multinomial = math.factorial(design.n_clusters) // math.prod(
        math.factorial(int(g)) for g in sizes
    )
    brute = brute_space(design)
    assert alloc.n_possible == multinomial == len(brute)
    assert alloc.n_eligible == alloc.n_admissible == len(brute)
    cols = column_order(alloc, labels)
    assert rows_as_set(alloc.admissible[:, cols]) == brute
    assert alloc.admissible.shape == (len(brute), design.n_clusters)


def test_huge_space_counted_exactly() -> None:
    design = Design.stepped_wedge(10, 10)
    alloc = randomise(design, [f"c{i:03d}" for i in range(100)], rng=1, alpha=None)
    assert alloc.n_possible == math.factorial(100) // math.factorial(10) ** 10
    assert not alloc.enumerated
    with pytest.raises(DesignError, match="draw"):
        alloc.admissible  # noqa: B018
    draws = alloc.draw(50, rng=2)
    assert draws.shape == (50, 100)
    assert (np.apply_along_axis(np.bincount, 1, draws, minlength=10) == 10).all()


def _stratified_ok(row: tuple[int, ...], strata: list[str], sizes: np.ndarray) -> bool:
    """Brute-force rule: each stratum gets floor/ceil of n_h * g_s / I in every sequence."""
    n = len(row)
    for h in set(strata):
        n_h = strata.count(h)
        mine = [s for s, v in zip(row, strata, strict=True) if v == h]
        counts = np.bincount(mine, minlength=len(sizes))
        share = n_h * sizes / n
        if ((counts < np.floor(share)) | (counts > np.ceil(share))).any():
            return False
    return True


@pytest.mark.parametrize(
    ("design", "strata"),
    [
        (Design.stepped_wedge(3, 2), list("aaabbb")),
        (Design.stepped_wedge(3, 2), list("aaaabb")),
        (Design.stepped_wedge(4, 2), list("aaabbbcc")),
        (Design.stepped_wedge(3, [1, 2, 3]), list("aaabbb")),
    ],
    ids=["3+3", "4+2", "3+3+2", "unequal"],
)
def test_stratified_space_matches_brute_force(design: Design, strata: list[str]) -> None:
    labels = [f"k{i}" for i in range(design.n_clusters)]
    frame = pd.DataFrame({"cluster": labels, "region": strata})
    alloc = randomise(design, frame, strata="region", rng=3, alpha=None)
    sizes = np.bincount(design.sequences)
    brute = {row for row in brute_space(design) if _stratified_ok(row, strata, sizes)}
    cols = column_order(alloc, labels)
    assert alloc.n_eligible == alloc.n_admissible == len(brute)
    assert rows_as_set(alloc.admissible[:, cols]) == brute
    assert alloc.method == "stratified"
    if (sizes == sizes[0]).all():  # equal sequences: per-stratum counts differ by <= 1
        for row in alloc.admissible[:, cols]:
            for h in set(strata):
                counts = np.bincount(
                    [s for s, v in zip(row, strata, strict=False) if v == h], minlength=len(sizes)
                )
                assert counts.max() - counts.min() <= 1


@pytest.mark.parametrize(
    ("frame", "allowed", "expected"),
    [(FS, FS_ALLOWED, 12), (NWD, NWD_ALLOWED, 4)],
    ids=["family-safeguarding", "no-wrong-door"],
)
def test_restricted_spaces(frame: pd.DataFrame, allowed: dict, expected: int) -> None:
    n = len(frame)
    design = Design.stepped_wedge(n)
    alloc = randomise(
        design, frame, strata="readiness", allowed_sequences=allowed, rng=7, alpha=None
    )
    labels = frame["cluster"].tolist()
    strata = frame["readiness"].tolist()
    brute = {
        row
        for row in brute_space(design)
        if all(s in allowed[h] for s, h in zip(row, strata, strict=True))
    }
    assert len(brute) == expected
    assert alloc.n_admissible == alloc.n_eligible == expected
    assert alloc.n_possible == math.factorial(n)
    assert rows_as_set(alloc.admissible[:, column_order(alloc, labels)]) == brute
    assert alloc.min_pvalue == pytest.approx(1 / expected, rel=ONE_OP_REL)
    for lab, h in zip(labels, strata, strict=False):
        assert alloc.assignment[lab] in allowed[h]


# --------------------------------------------------------------------------------------
# uniformity
# --------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("frame", "allowed", "n_draws"),
    [(FS, FS_ALLOWED, 6000), (NWD, NWD_ALLOWED, 4000)],
    ids=["family-safeguarding", "no-wrong-door"],
)
def test_restricted_draws_uniform(frame: pd.DataFrame, allowed: dict, n_draws: int) -> None:
    design = Design.stepped_wedge(len(frame))
    alloc = randomise(
        design, frame, strata="readiness", allowed_sequences=allowed, rng=11, alpha=None
    )
    draws = alloc.draw(n_draws, rng=12)
    assert gof_pvalue([tuple(r) for r in draws.tolist()], rows_as_set(alloc.admissible)) > GOF_P


def test_randomise_final_draw_uniform_over_seeds() -> None:
    design = Design.stepped_wedge(4)
    keys = []
    for seed in range(400):
        alloc = randomise(
            design, NWD, strata="readiness", allowed_sequences=NWD_ALLOWED, rng=seed, alpha=None
        )
        keys.append(tuple(alloc.sequence_of.tolist()))
    assert gof_pvalue(keys, rows_as_set(alloc.admissible)) > GOF_P


@pytest.mark.parametrize("strata", [None, list("aaabbb")], ids=["simple", "stratified"])
def test_sampler_uniform_when_space_not_held(strata: list[str] | None) -> None:
    """draw() samples the unconstrained space exactly, whether or not it can be enumerated."""
    design = Design.stepped_wedge(3, 2)
    labels = [f"k{i}" for i in range(6)]
    frame = pd.DataFrame({"cluster": labels, "region": strata or ["x"] * 6})
    kwargs = {"strata": "region"} if strata else {}
    small = randomise(design, frame, rng=1, alpha=None, max_enumerate=5, n_candidates=5, **kwargs)
    full = randomise(design, frame, rng=1, alpha=None, **kwargs)
    assert not small.enumerated and full.enumerated
    support = rows_as_set(full.admissible)
    n_draws = 100 * len(support)
    draws = small.draw(n_draws, rng=13)
    assert gof_pvalue([tuple(r) for r in draws.tolist()], support) > GOF_P


def test_stratified_remainders_randomised() -> None:
    """A stratum of 4 over 3 sequences: its extra cluster lands in each sequence w.p. 1/3."""
    design = Design.stepped_wedge(3, 2)
    frame = pd.DataFrame({"cluster": list("abcdef"), "region": list("aaaabb")})
    alloc = randomise(design, frame, strata="region", rng=0, alpha=None)
    draws = alloc.draw(3000, rng=5)
    cols = column_order(alloc, list("abcd"))
    extra = [int(np.argmax(np.bincount(r, minlength=3))) for r in draws[:, cols]]
    assert stats.chisquare(np.bincount(extra, minlength=3)).pvalue > GOF_P


def test_randbelow_big_integers_uniform_and_in_range() -> None:
    n = 3 * 2**64 + 5
    vals = randbelow(np.random.default_rng(0), n, 3000)
    assert all(0 <= v < n for v in vals)
    assert stats.chisquare(np.bincount([v // 2**64 for v in vals], minlength=3)[:3]).pvalue > GOF_P


@pytest.mark.parametrize(
    ("g", "members", "lower", "upper"),
    [
        ((2, 2, 2), [[0, 2, 4], [1, 3, 5]], [[1, 1, 1], [1, 1, 1]], [[1, 1, 1], [1, 1, 1]]),
        # balanced 4 + 2 over three pairs: the remainders make several count tables
        ((2, 2, 2), [[0, 1, 4, 5], [2, 3]], [[1, 1, 1], [0, 0, 0]], [[2, 2, 2], [1, 1, 1]]),
        # unequal sequences, two classes of interchangeable sequences
        ((1, 1, 2, 2), [[0, 3, 5], [1, 2, 4]], [[0, 0, 1, 1], [0, 0, 1, 1]], [[1, 1, 1, 1]] * 2),
    ],
    ids=["fixed-table", "balanced-remainders", "two-classes"],
)
def test_unrank_is_the_enumeration_order_and_matches_brute_force(
    g: tuple[int, ...], members: list, lower: list, upper: list
) -> None:
    space = AllocationSpace(g, [np.array(m) for m in members], np.array(lower), np.array(upper))
    full = space.enumerate()
    slots = [s for s, k in enumerate(g) for _ in range(k)]
    lo, hi = np.array(lower), np.array(upper)
    brute = set()
    for row in set(itertools.permutations(slots)):
        tab = np.array([np.bincount([row[i] for i in m], minlength=len(g)) for m in members])
        if ((tab >= lo) & (tab <= hi)).all():
            brute.add(row)
    assert space.size == full.shape[0] == len(brute)
    assert rows_as_set(full) == brute
    assert sum(w for _, w in space.tables()) == space.size
    for k in range(space.size):
        np.testing.assert_array_equal(space.unrank(k), full[k])
    draws = space.sample(60 * space.size, np.random.default_rng(17))
    assert gof_pvalue([tuple(r) for r in draws.tolist()], brute) > GOF_P


# --------------------------------------------------------------------------------------
# reproducibility
# --------------------------------------------------------------------------------------
def test_seed_reproducible_and_int_equals_generator() -> None:
    design = Design.stepped_wedge(3, 3)
    labels = [f"site{i}" for i in range(9)]
    a = randomise(design, labels, rng=2024, alpha=None)
    b = randomise(design, labels, rng=2024, alpha=None)
    before = b.draw(20, rng=3)  # draws do not depend on the lazy enumeration
    assert b.admissible.shape == (b.n_admissible, 9)
    np.testing.assert_array_equal(before, b.draw(20, rng=3))
    c = randomise(design, labels, rng=np.random.default_rng(2024), alpha=None)
    assert dict(a.assignment) == dict(b.assignment) == dict(c.assignment)
    assert a == b
    assert a.seed == 2024 and isinstance(c.seed, dict)
    # The draw is one integer from a fresh generator, indexing the enumerated space.
    k = int(np.random.default_rng(2024).integers(0, a.n_admissible))
    np.testing.assert_array_equal(a.admissible[k], a.sequence_of)


def test_generator_state_record_reproduces() -> None:
    design = Design.stepped_wedge(3, 2)
    gen = np.random.default_rng(99)
    gen.integers(0, 10, size=3)  # advance it
    a = randomise(design, list("uvwxyz"), rng=gen, alpha=None)
    replay = np.random.default_rng()
    replay.bit_generator.state = a.seed
    b = randomise(design, list("uvwxyz"), rng=replay, alpha=None)
    assert dict(a.assignment) == dict(b.assignment)


def test_none_seed_records_entropy() -> None:
    design = Design.stepped_wedge(3, 2)
    a = randomise(design, list("uvwxyz"), rng=None, alpha=None)
    assert isinstance(a.seed, int)
    assert dict(randomise(design, list("uvwxyz"), rng=a.seed, alpha=None).assignment) == dict(
        a.assignment
    )


def test_row_order_and_label_container_do_not_matter() -> None:
    design = Design.stepped_wedge(3, 2)
    frame = pd.DataFrame(
        {"cluster": list("abcdef"), "region": list("aabbcc"), "pop": [3.0, 1, 4, 1, 5, 9]}
    )
    shuffled = frame.iloc[[4, 1, 5, 0, 3, 2]]
    kw = {"strata": "region", "balance": "pop", "cutoff": 0.5, "rng": 31, "alpha": None}
    a = randomise(design, frame, **kw)
    b = randomise(design, shuffled, **kw)
    c = randomise(design, frame.set_index("cluster"), **kw)
    assert dict(a.assignment) == dict(b.assignment) == dict(c.assignment)
    assert a.input_hash == b.input_hash == c.input_hash
    plain = randomise(design, list("fedcba"), rng=31, alpha=None)
    assert dict(plain.assignment) == dict(
        randomise(design, pd.Series(list("abcdef")), rng=31, alpha=None).assignment
    )


def test_sampled_constrained_path_reproducible() -> None:
    design = Design.stepped_wedge(5, 4)
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"cluster": [f"c{i:02d}" for i in range(20)], "x": rng.normal(size=20)})
    kw = {"balance": "x", "cutoff": 0.05, "n_candidates": 400, "max_enumerate": 1000, "alpha": None}
    a = randomise(design, frame, rng=8, **kw)
    b = randomise(design, frame, rng=np.random.default_rng(8), **kw)
    assert dict(a.assignment) == dict(b.assignment)
    np.testing.assert_array_equal(a.admissible, b.admissible)


# --------------------------------------------------------------------------------------
# covariate-constrained randomisation
# --------------------------------------------------------------------------------------
def _covariates(n: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "cluster": [f"c{i}" for i in range(n)],
            "population": rng.gamma(2.0, 1000.0, n).round(0),
            "baseline_rate": rng.normal(50, 10, n).round(1),
        }
    )


@pytest.fixture(scope="module")
def brute_balance() -> dict:
    """Brute-force per-covariate imbalance of every allocation of SW(4 x 2) with 8 clusters."""
    design = Design.stepped_wedge(4, 2)
    frame = _covariates(8)
    cols = ["population", "baseline_rate"]
    z = frame[cols].to_numpy()
    z = (z - z.mean(axis=0)) / z.std(axis=0, ddof=1)
    diffs = {
        row: [vertical_diff(design, z[:, k], np.array(row)) for k in range(len(cols))]
        for row in brute_space(design)
    }
    return {"design": design, "frame": frame, "cols": cols, "diffs": diffs}


@pytest.mark.parametrize("cutoff", [0.1, 0.25, 1.0])
def test_constrained_keeps_exactly_the_best_fraction(brute_balance: dict, cutoff: float) -> None:
    design, frame, cols = brute_balance["design"], brute_balance["frame"], brute_balance["cols"]
    diffs = brute_balance["diffs"]
    alloc = randomise(design, frame, balance=cols, cutoff=cutoff, rng=4, alpha=None)
    labels = frame["cluster"].tolist()
    scores = {row: round(sum(x * x for x in d), 10) for row, d in diffs.items()}
    ordered = sorted(scores.values())
    threshold = ordered[math.ceil(Fraction(str(cutoff)) * len(ordered)) - 1]
    expected = {row for row, s in scores.items() if s <= threshold}
    got = rows_as_set(alloc.admissible[:, column_order(alloc, labels)])
    assert got == expected
    assert alloc.n_candidates == alloc.n_eligible == len(scores)
    chosen = tuple(alloc.assignment[lab] for lab in labels)
    assert chosen in expected
    for k, name in enumerate(cols):
        assert alloc.balance[name] == pytest.approx(diffs[chosen][k], abs=ZERO_ATOL_1E12)
        mean_abs = np.mean([abs(d[k]) for d in diffs.values()])
        assert alloc.balance_reference[name] == pytest.approx(mean_abs, rel=LONG_SUM_REL)
    assert alloc.balance_score == pytest.approx(scores[chosen], abs=ROUNDED_SCORE_ATOL)


def test_balance_is_period_adjusted_regression_with_partial_and_missing_cells() -> None:
    m = np.array(
        [
            [0, 0.5, 1, 1],
            [0, 0.5, 1, 1],
            [0, 0, np.nan, 1],
            [0, 0, np.nan, 1],
            [0, 0, 0, 0.5],
            [0, 0, 0, 0.5],
        ]
    )
    design = Design.from_matrix(m)
    frame = _covariates(6, seed=3)
    alloc = randomise(design, frame, balance="baseline_rate", cutoff=1.0, rng=2, alpha=None)
    z = frame["baseline_rate"].to_numpy()
    z = (z - z.mean()) / z.std(ddof=1)
    chosen = np.array([alloc.assignment[lab] for lab in frame["cluster"]])
    ref = period_regression_diff(design, z, chosen)
    assert alloc.balance["baseline_rate"] == pytest.approx(ref, abs=ZERO_ATOL_1E10)


def test_max_score_threshold_and_failure_message() -> None:
    design = Design.stepped_wedge(3, 2)
    frame = _covariates(6, seed=1)
    bound = 0.05
    alloc = randomise(design, frame, balance="population", max_score=bound, rng=0, alpha=None)
    z = frame["population"].to_numpy()
    z = (z - z.mean()) / z.std(ddof=1)
    labels = frame["cluster"].tolist()
    expected = {
        row for row in brute_space(design) if vertical_diff(design, z, np.array(row)) ** 2 <= bound
    }
    assert rows_as_set(alloc.admissible[:, column_order(alloc, labels)]) == expected
    best = min(vertical_diff(design, z, np.array(r)) ** 2 for r in brute_space(design))
    with pytest.raises(DesignError, match=f"best .* scores {best:.4g}"):
        randomise(design, frame, balance="population", max_score=best / 2, rng=0, alpha=None)


def test_constrained_sampled_candidates() -> None:
    design = Design.stepped_wedge(4, 3)
    frame = _covariates(12, seed=5)
    frame["region"] = list("abc") * 4
    alloc = randomise(
        design,
        frame,
        strata="region",
        balance=["population"],
        cutoff=0.1,
        max_enumerate=500,
        n_candidates=500,
        rng=6,
        alpha=None,
    )
    assert not alloc.enumerated
    assert alloc.n_eligible > 500 and alloc.n_candidates == 500
    assert 50 <= alloc.n_admissible <= 500
    assert len(rows_as_set(alloc.admissible)) == alloc.n_admissible
    labels = list(alloc.clusters)
    strata = [frame.set_index("cluster").loc[lab, "region"] for lab in labels]
    sizes = np.bincount(design.sequences)
    assert all(_stratified_ok(tuple(r), strata, sizes) for r in alloc.admissible.tolist())
    assert tuple(alloc.sequence_of.tolist()) in rows_as_set(alloc.admissible)


# --------------------------------------------------------------------------------------
# the Allocation object
# --------------------------------------------------------------------------------------
def test_allocation_design_frame_and_record() -> None:
    design = Design.stepped_wedge(5)
    with pytest.warns(SmallSampleWarning, match="12 admissible"):
        alloc = randomise(design, FS, strata="readiness", allowed_sequences=FS_ALLOWED, rng=5)
    new = alloc.design
    assert set(new.clusters) == set(FS["cluster"])
    for i, lab in enumerate(new.clusters):
        assert new.sequences[i] == alloc.assignment[lab]
    np.testing.assert_array_equal(new.matrix, design.matrix)
    frame = alloc.to_frame()
    assert list(frame.columns) == ["cluster", "sequence", "wave", "start_period", "readiness"]
    assert (frame["wave"] == frame["sequence"] + 1).all()
    assert frame["cluster"].tolist() == list(new.clusters)
    assert frame["start_period"].tolist() == [new.periods[j] for j in new.start_period]
    assert record_options_ok(alloc)
    record = json.loads(alloc.to_json(include_admissible=True))
    assert record["n_admissible"] == 12 and record["seed"] == 5
    assert record["allowed_sequences"] == FS_ALLOWED
    assert len(record["admissible"]) == 12
    assert record["assignment"] == {str(k): v for k, v in alloc.assignment.items()}
    summary = alloc.summary()
    assert isinstance(summary, Summary)  # the shared result protocol, text form unchanged
    text = str(summary)
    assert (
        dict(summary.header)["Allocations"]
        == "120 possible, 12 meeting the strata rules, 12 admissible"
    )
    assert summary.tables[0][1]["clusters"].str.split(", ").map(len).sum() == 5
    assert "high -> waves 1, 2" in text and "1/12" in text
    assert "<table" in alloc._repr_html_()
    assert "n_admissible=12" in repr(alloc)
    with pytest.raises(AttributeError):
        alloc.seed = 3  # type: ignore[misc]
    with pytest.raises(TypeError):
        alloc.assignment["Walsall"] = 4  # type: ignore[index]
    clone = pickle.loads(pickle.dumps(alloc))
    assert clone == alloc and dict(clone.assignment) == dict(alloc.assignment)
    np.testing.assert_array_equal(clone.draw(5, rng=1), alloc.draw(5, rng=1))


def record_options_ok(alloc: Allocation) -> bool:
    opts = alloc.to_dict()["options"]
    return opts == {"alpha": 0.05, "max_enumerate": 200_000, "n_candidates": 10_000}


def test_input_hash_tracks_inputs() -> None:
    design = Design.stepped_wedge(3, 2)
    frame = _covariates(6)
    kw = {"balance": "population", "cutoff": 0.5, "alpha": None}
    h1 = randomise(design, frame, rng=1, **kw).input_hash
    h2 = randomise(design, frame, rng=2, **kw).input_hash  # the seed is recorded separately
    changed = frame.assign(population=frame["population"] + 1)
    h3 = randomise(design, changed, rng=1, **kw).input_hash
    h4 = randomise(design, frame, rng=1, **{**kw, "cutoff": 0.4}).input_hash
    assert h1 == h2 and len({h1, h3, h4}) == 3


def test_small_sample_warning_threshold() -> None:
    design = Design.stepped_wedge(4)
    with pytest.warns(SmallSampleWarning, match=r"p <= 0.05 with 4 admissible"):
        randomise(design, NWD, strata="readiness", allowed_sequences=NWD_ALLOWED, rng=0)
    randomise(design, NWD, strata="readiness", allowed_sequences=NWD_ALLOWED, rng=0, alpha=None)
    randomise(Design.stepped_wedge(3, 2), list("abcdef"), rng=0)  # 90 allocations: no warning


# --------------------------------------------------------------------------------------
# bad inputs
# --------------------------------------------------------------------------------------
def test_label_count_errors() -> None:
    design = Design.stepped_wedge(3)
    with pytest.raises(DesignError, match="4 labels but the design has 3 .*1 surplus"):
        randomise(design, list("abcd"), rng=0)
    with pytest.raises(DesignError, match="1 missing"):
        randomise(design, list("ab"), rng=0)
    named = design.relabel(["x", "y", "z"])
    with pytest.raises(DesignError, match=r"not in the design: 'w'.*not in `clusters`: 'y', 'z'"):
        randomise(named, ["x", "w"], rng=0)
    with pytest.raises(DesignError, match="repeated: 'a'"):
        randomise(design, ["a", "a", "b"], rng=0)
    with pytest.raises(DesignError, match="same text form"):
        randomise(design, [1, "1", 2], rng=0)
    with pytest.raises(DesignError, match="must not be missing"):
        randomise(design, ["a", None, "b"], rng=0)
    with pytest.raises(DesignError, match="sequence of labels"):
        randomise(design, "abc", rng=0)
    with pytest.raises(DesignError, match="must be a steppedwedge Design"):
        randomise(np.zeros((3, 4)), list("abc"), rng=0)  # type: ignore[arg-type]


def test_column_errors() -> None:
    design = Design.stepped_wedge(3, 2)
    frame = _covariates(6)
    frame["region"] = list("aabbcc")
    with pytest.raises(DesignError, match="`strata` column 'area' is not in `clusters`"):
        randomise(design, frame, strata="area", rng=0)
    with pytest.raises(DesignError, match="must be a DataFrame"):
        randomise(design, list("abcdef"), strata="region", rng=0)
    with pytest.raises(DesignError, match=r"'region' has missing values for cluster\(s\) 'c2'"):
        randomise(
            design, frame.assign(region=["a", "a", None, "b", "c", "c"]), strata="region", rng=0
        )
    with pytest.raises(DesignError, match=r"'population' has missing values for cluster\(s\) 'c0'"):
        bad = frame.assign(population=[np.nan, 1, 2, 3, 4, 5])
        randomise(design, bad, balance="population", cutoff=0.5, rng=0)
    with pytest.raises(DesignError, match="'region' must be numeric"):
        randomise(design, frame, balance="region", cutoff=0.5, rng=0)
    with pytest.raises(DesignError, match="same for every cluster"):
        randomise(design, frame.assign(k=1.0), balance="k", cutoff=0.5, rng=0)
    with pytest.raises(DesignError, match="needs `cutoff=`"):
        randomise(design, frame, balance="population", rng=0)
    with pytest.raises(DesignError, match="need `balance=`"):
        randomise(design, frame, cutoff=0.5, rng=0)
    with pytest.raises(DesignError, match="only one of"):
        randomise(design, frame, balance="population", cutoff=0.5, max_score=1.0, rng=0)
    with pytest.raises(DesignError, match=r"`cutoff` must lie in \(0, 1\]"):
        randomise(design, frame, balance="population", cutoff=0.0, rng=0)
    with pytest.raises(DesignError, match="must not exceed `max_enumerate`"):
        randomise(design, frame, rng=0, n_candidates=10, max_enumerate=5)


def test_allowed_sequences_errors() -> None:
    design = Design.stepped_wedge(5)
    with pytest.raises(DesignError, match="needs `strata=`"):
        randomise(design, FS, allowed_sequences=FS_ALLOWED, rng=0)
    with pytest.raises(DesignError, match=r"no sequences for stratum value\(s\) 'low'"):
        randomise(design, FS, strata="readiness", allowed_sequences={"high": [0, 1]}, rng=0)
    with pytest.raises(DesignError, match=r"value\(s\) 'medium' that no cluster has"):
        randomise(
            design, FS, strata="readiness", allowed_sequences={**FS_ALLOWED, "medium": [0]}, rng=0
        )
    with pytest.raises(DesignError, match="0-based .* 5 sequences"):
        randomise(
            design,
            FS,
            strata="readiness",
            allowed_sequences={"high": [1, 2], "low": [3, 4, 5]},
            rng=0,
        )
    with pytest.raises(
        DesignError,
        match=r"stratum 'high' has 2 clusters but its allowed sequences \[0\] \(waves 1\) "
        r"hold only 1",
    ):
        randomise(
            design,
            FS,
            strata="readiness",
            allowed_sequences={"high": [0], "low": [1, 2, 3, 4]},
            rng=0,
        )
    with pytest.raises(
        DesignError, match=r"sequence\(s\) \[4\] \(waves 5\) are allowed for no stratum"
    ):
        randomise(
            design,
            FS,
            strata="readiness",
            allowed_sequences={"high": [0, 1], "low": [1, 2, 3]},
            rng=0,
        )
    frame = pd.DataFrame({"cluster": list("abcde"), "s": list("aabbc")})
    with pytest.raises(
        DesignError, match=r"strata 'a', 'b' have 4 clusters together .* hold only 3"
    ):
        randomise(
            design,
            frame,
            strata="s",
            allowed_sequences={"a": [0, 1, 2], "b": [1, 2], "c": [3, 4]},
            rng=0,
        )
    with pytest.raises(DesignError, match="integer sequence indices"):
        randomise(
            design,
            FS,
            strata="readiness",
            allowed_sequences={"high": ["w1"], "low": [2, 3, 4]},
            rng=0,
        )


# --------------------------------------------------------------------------------------
# property: any small design x strata, the eligible space equals brute force
# --------------------------------------------------------------------------------------
@pytest.mark.property
@given(
    design=stepped_wedge_designs(max_sequences=3, max_cluster_per_sequence=2),
    data=st.data(),
)
@settings(max_examples=30)
def test_property_stratified_space_is_brute_force(design: Design, data: st.DataObject) -> None:
    n = design.n_clusters
    assume(n <= 7)
    strata = data.draw(st.lists(st.sampled_from("ab"), min_size=n, max_size=n))
    seed = data.draw(st.integers(0, 2**32 - 1))
    labels = [f"k{i}" for i in range(n)]
    frame = pd.DataFrame({"cluster": labels, "s": strata})
    alloc = randomise(design, frame, strata="s", rng=seed, alpha=None)
    sizes = np.bincount(design.sequences)
    brute = {row for row in brute_space(design) if _stratified_ok(row, strata, sizes)}
    assert alloc.n_eligible == len(brute)
    assert rows_as_set(alloc.admissible[:, column_order(alloc, labels)]) == brute
    assert tuple(alloc.assignment[lab] for lab in labels) in brute
