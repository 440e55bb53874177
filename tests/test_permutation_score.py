"""The GLMM score statistic of the randomisation test (``statistic="glmm-score"``).

References independent of the statistic's closed form: the score is checked against a
central finite difference of the Laplace log-likelihood with the treatment column appended
(:func:`steppedwedge._core.laplace.modes`, modes solved to 1e-13), the randomisation
p-value and interval ends against an enumeration of every allocation of a 5-council design
with ``itertools.permutations`` and the treatment-matrix form of the statistic, and the
p-values under the sharp null against U(0, 1).
"""

from __future__ import annotations

import itertools
import math
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
from _tolerances import LINALG, ONE_STEP_ESTIMATE_ATOL, SCORE_FD, ZERO_ATOL_1E12
from scipy import stats

import steppedwedge as sw
from steppedwedge._core.laplace import modes
from steppedwedge.data import TrialData
from steppedwedge.design import Design
from steppedwedge.exceptions import OptionError
from steppedwedge.inference import _permutation_score as sc
from steppedwedge.inference.permutation import permutation_test

ROLES = dict(outcome="y", cluster="c", period="t", treatment="x")


def _counts(matrix: np.ndarray, rng: np.random.Generator, rr: float) -> pd.DataFrame:
    rows = []
    for i in range(matrix.shape[0]):
        a = rng.normal(0, 0.3)
        for j in range(matrix.shape[1]):
            e = float(rng.integers(800, 1500))
            mu = e * 0.02 * math.exp(a + 0.05 * j + rng.normal(0, 0.1)) * rr ** matrix[i, j]
            rows.append((f"k{i}", j, float(matrix[i, j]), int(rng.poisson(mu)), e))
    return pd.DataFrame(rows, columns=["c", "t", "x", "y", "E"])


def _binomial(matrix: np.ndarray, rng: np.random.Generator) -> pd.DataFrame:
    rows = []
    for i in range(matrix.shape[0]):
        a = rng.normal(0, 0.4)
        for j in range(matrix.shape[1]):
            n = int(rng.integers(30, 60))
            eta = -0.5 + a + 0.1 * j - 0.3 * matrix[i, j]
            rows.append((f"k{i}", j, matrix[i, j], rng.binomial(n, 1 / (1 + math.exp(-eta))), n))
    return pd.DataFrame(rows, columns=["c", "t", "x", "y", "n"])


def _council_td() -> TrialData:
    return TrialData.from_frame(
        sw.datasets.load_councils(),
        outcome="entries_into_care",
        cluster="council",
        period="quarter",
        treatment="treated",
        exposure="population_0_17",
        family="poisson",
    )


# --------------------------------------------------------------------------------------
# (a) the score is the derivative of the Laplace log-likelihood
# --------------------------------------------------------------------------------------
def _fd_score(model: sc.ScoreModel, pieces: sc.ScorePieces, x: np.ndarray) -> float:
    u = model.units
    ux = replace(u, x=np.concatenate([u.x, (x * u.weight)[:, :, None]], axis=2))
    core = pieces.core

    def loglik(b: float) -> float:
        beta = np.append(core.beta, b)
        return modes(ux, model.fam, beta, core.sigma, core.alpha, core.v, tol=1e-13).value

    h = 1e-5
    return (loglik(h) - loglik(-h)) / (2 * h)


@pytest.mark.parametrize("random", ["cluster", "nested", "nested+decay"])
def test_score_is_the_derivative_of_the_laplace_loglik(random: str) -> None:
    """Council example (Poisson with exposure): observed and a re-drawn treatment."""
    model = sc.null_model(_council_td(), random)
    pieces = sc.fit_null(model)
    other = model.x_obs[::-1].copy()  # the councils' sequences in reverse order
    for x in (model.x_obs, other):
        u = float(np.sum(pieces.g * x))
        assert u == pytest.approx(_fd_score(model, pieces, x), rel=SCORE_FD["rtol"])


def test_score_at_a_shifted_offset_and_for_binomial_and_nb() -> None:
    matrix = Design.stepped_wedge(5).matrix
    df = _binomial(matrix, np.random.default_rng(3))
    td = TrialData.from_frame(df, **ROLES, trials="n", family="binomial")
    model = sc.null_model(td, "nested")
    pieces = sc.fit_null(model, theta=-0.2)  # the interval's offset form (logit)
    x = model.x_obs
    assert float(np.sum(pieces.g * x)) == pytest.approx(
        _fd_score(replace(model, units=replace(model.units, offset=model.offset - 0.2 * x)),
                  pieces, x),
        rel=SCORE_FD["rtol"],
    )  # fmt: skip
    dnb = _counts(matrix, np.random.default_rng(4), rr=0.8)
    tnb = TrialData.from_frame(dnb, **ROLES, exposure="E", family="negative_binomial")
    mnb = sc.null_model(tnb, "cluster")
    pnb = sc.fit_null(mnb)
    assert float(np.sum(pnb.g * mnb.x_obs)) == pytest.approx(
        _fd_score(mnb, pnb, mnb.x_obs), rel=SCORE_FD["rtol"]
    )


def test_sequence_tables_equal_the_treatment_matrix_form() -> None:
    """``score_by_sequence`` (per-cluster tables) is the same algebra as on (B, I, T)."""
    td = _council_td()
    model = sc.null_model(td, "nested")
    pieces = sc.fit_null(model)
    sm = np.asarray(Design.from_matrix(model.x_obs).sequence_matrix, dtype=float)
    rng = np.random.default_rng(1)
    seq_of = np.stack([rng.permutation(np.arange(17) % sm.shape[0]) for _ in range(50)])
    for use in ("estimate", "t"):
        fast = sc.score_by_sequence(pieces, sm, seq_of, use)
        slow = sc.score_statistics(pieces, sm[seq_of], use)
        np.testing.assert_allclose(fast, slow, **LINALG)


def test_one_step_estimate_is_close_to_the_glmm_estimate() -> None:
    """One Newton step from no effect: within 0.005 of the fitted log rate ratio (-0.133)."""
    df = sw.datasets.load_councils()
    roles = dict(
        outcome="entries_into_care", cluster="council", period="quarter", treatment="treated",
        exposure="population_0_17", family="poisson",
    )  # fmt: skip
    res = permutation_test(df, **roles, statistic="glmm-score", n_permutations=99, rng=1)
    fit = sw.fit(df, **roles, random="nested")
    # the step ignores the curvature change over 0.13 on the log scale: ~1e-4 here
    assert res.estimate == pytest.approx(fit.estimate, abs=ONE_STEP_ESTIMATE_ATOL)
    assert res.statistic == res.estimate  # use="estimate"


# --------------------------------------------------------------------------------------
# (b) exact p and interval on a 5-council enumeration
# --------------------------------------------------------------------------------------
def _brute_pvalue(model: sc.ScoreModel, theta: float, use: str) -> float:
    pieces = sc.fit_null(model, theta)
    sm = Design.stepped_wedge(5).matrix
    xs = np.stack([sm[list(perm)] for perm in itertools.permutations(range(5))])
    t_all = sc.score_statistics(pieces, xs, use)
    t_obs = float(sc.score_statistics(pieces, model.x_obs[None], use)[0])
    return float(np.mean(np.abs(t_all) >= np.abs(t_obs) * (1 - 1e-9)))


@pytest.mark.parametrize(
    ("use", "family"), [("estimate", "poisson"), ("t", "poisson"), ("estimate", "binomial")]
)
def test_exact_pvalue_and_interval_match_enumeration(use: str, family: str) -> None:
    matrix = Design.stepped_wedge(5).matrix
    if family == "poisson":
        df, extra = _counts(matrix, np.random.default_rng(11), rr=0.7), {"exposure": "E"}
    else:
        df, extra = _binomial(matrix, np.random.default_rng(12)), {"trials": "n"}
    res = permutation_test(
        df, **ROLES, family=family, **extra, statistic="glmm-score", use=use,
        lmm_options={"random": "cluster"}, confidence_level=0.9, alpha=None,
    )  # fmt: skip
    assert res.exact and res.n_permutations == 120
    td = TrialData.from_frame(df, **ROLES, **extra, family=family)
    model = sc.null_model(td, "cluster")
    assert res.pvalue == pytest.approx(_brute_pvalue(model, 0.0, use), abs=ZERO_ATOL_1E12)
    lo, hi = res.interval
    assert lo < res.estimate < hi
    for end, out in ((lo, lo - 1e-3), (hi, hi + 1e-3)):
        assert _brute_pvalue(model, end, use) > 0.1  # accepted at the end
        assert _brute_pvalue(model, out, use) <= 0.1 + 1e-12  # rejected just beyond


# --------------------------------------------------------------------------------------
# (c) uniform p under the sharp null
# --------------------------------------------------------------------------------------
def test_pvalues_are_uniform_under_the_null() -> None:
    """12 councils, 120 null trials x 99 re-randomisations: KS against U(0, 1)."""
    matrix = Design.stepped_wedge(6, 2).matrix
    rng = np.random.default_rng(2026)
    ps = [
        permutation_test(
            _counts(matrix, rng, rr=1.0), **ROLES, family="poisson", exposure="E",
            statistic="glmm-score", n_permutations=99, rng=int(rng.integers(1 << 31)),
            alpha=None,
        ).pvalue
        for _ in range(120)
    ]  # fmt: skip
    # p takes values k / 100: allow the 0.01 discreteness on top of the KS critical value
    assert stats.kstest(np.array(ps) - 0.005, "uniform").pvalue > 0.001


# --------------------------------------------------------------------------------------
# result and bad input
# --------------------------------------------------------------------------------------
def test_result_protocol_and_notes() -> None:
    df = _counts(Design.stepped_wedge(4, 2).matrix, np.random.default_rng(5), rr=0.8)
    res = permutation_test(
        df, **ROLES, family="poisson", exposure="E", statistic="glmm-score", use="t",
        n_permutations=199, rng=2, confidence_level=0.8, alpha=None,
    )  # fmt: skip
    assert res.statistic_name == "glmm-score" and res.link == "log"
    text = res.summary().as_text()
    assert "fitted once without a treatment term" in text and "offset" in text
    lo, hi = res.conf_int(0.8)
    assert res.tidy(0.8)["conf_low"].iloc[0] == lo and lo < res.estimate < hi
    lo5, hi5 = res.conf_int(0.5)  # another level from the same draws
    assert lo < lo5 < hi5 < hi


def test_bad_requests_are_refused() -> None:
    matrix = Design.stepped_wedge(4).matrix
    df = _counts(matrix, np.random.default_rng(1), rr=1.0)
    kw = dict(**ROLES, exposure="E", statistic="glmm-score", n_permutations=9, alpha=None)
    with pytest.raises(OptionError, match="Gaussian"):
        permutation_test(df, **ROLES, statistic="glmm-score", alpha=None)
    with pytest.raises(ValueError, match="only lmm_options"):
        permutation_test(df, family="poisson", lmm_options={"dof": "normal"}, **kw)
    with pytest.raises(ValueError, match="random"):
        permutation_test(df, family="poisson", lmm_options={"random": "random-slope"}, **kw)
    with pytest.raises(ValueError, match="own link"):
        permutation_test(df, family="poisson", link="identity", **kw)
    with pytest.raises(ValueError, match="executor"):
        permutation_test(df, family="poisson", n_jobs=2, **kw)
    twice = pd.concat([df, df.assign(area=1)]).fillna({"area": 0})  # two NB rows per cell
    td = TrialData.from_frame(
        twice, **ROLES, exposure="E", family="negative_binomial", kind="individual"
    )
    with pytest.raises(OptionError, match="one row per"):
        sc.null_model(td, "nested")


def test_report_runs_the_score_of_the_primary_structure() -> None:
    """``[sensitivity.permutation] statistic = "glmm-score"`` scores the primary's GLMM."""
    from dataclasses import replace as dc_replace

    from steppedwedge.report import council_example

    cfg = council_example()
    perm = {"permutation": {"statistic": "glmm-score"}}
    cfg = dc_replace(cfg, analysis=dc_replace(cfg.analysis, sensitivity_options=perm))
    opts = cfg.fit_options("permutation")
    assert opts["lmm_options"] == {"random": "nested+decay"}
    opts["n_permutations"] = 99
    res = permutation_test(cfg.analysis_frame("itt"), allocation=cfg.allocation(), **opts)
    assert res.statistic_name == "glmm-score" and "nested+decay" in res.messages[0]
