"""``GLMMResult.with_vcov``: another variance estimator from the stored fit, without refitting.

The reference is a refit of the same data with that ``vcov`` (and ``dof``): the optimum is
the same (deterministic), so every inference output must agree to rounding
(``REFIT_SAME_DATA_REL``), and the fit itself must not run again.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from _tolerances import REFIT_SAME_DATA_REL

import steppedwedge.models.glmm as glmm_mod
from steppedwedge.exceptions import ConvergenceWarning, DataError, OptionError
from steppedwedge.models.glmm import fit_glmm

DECAY = pd.read_csv(
    Path(__file__).parent / "reference" / "glmm_decay" / "data" / "council_decay.csv"
)
KW = dict(
    outcome="count",
    cluster="council",
    period="quarter",
    treatment="treatment",
    family="poisson",
    exposure="pop",
    random="nested+decay",
)


def _binomial() -> pd.DataFrame:
    rng = np.random.default_rng(3)
    rows = []
    for i in range(10):
        a = rng.normal(0, 0.4)
        for j in range(5):
            x = int(j > i % 4)
            p = 1 / (1 + np.exp(-(-0.5 + a + rng.normal(0, 0.2) - 0.4 * x)))
            rows.append((i, j, x, 40, rng.binomial(40, p)))
    return pd.DataFrame(rows, columns=["ward", "month", "arm", "n", "falls"])


BIN = dict(
    outcome="falls", trials="n", cluster="ward", period="month", treatment="arm", family="binomial"
)


def _assert_same_inference(got, ref) -> None:
    rel = REFIT_SAME_DATA_REL
    for name in ("vcov", "dof", "messages", "estimand", "n_obs", "singular"):
        assert getattr(got, name) == getattr(ref, name), name
    for name in ("estimate", "std_error", "df", "pvalue"):
        assert getattr(got, name) == pytest.approx(getattr(ref, name), rel=rel, nan_ok=True), name
    if ref.std_error_model is None:
        assert got.std_error_model is None
    else:
        assert got.std_error_model == pytest.approx(ref.std_error_model, rel=rel)
    for name in ("vcov_matrix", "vcov_model"):
        np.testing.assert_allclose(getattr(got, name), getattr(ref, name), rtol=rel, atol=0)
    pd.testing.assert_frame_equal(got.tidy(), ref.tidy(), rtol=rel, atol=0)
    pd.testing.assert_frame_equal(got.terms, ref.terms, rtol=rel, atol=0)
    if ref.effect_curve is None:
        assert got.effect_curve is None
    else:
        pd.testing.assert_frame_equal(got.effect_curve, ref.effect_curve, rtol=rel, atol=0)
    if ref.family != "binomial":
        pd.testing.assert_frame_equal(got.rates(), ref.rates(), rtol=rel, atol=0)
    assert got.summary().as_text() == ref.summary().as_text()


@pytest.fixture(scope="module")
def decay_fits() -> dict:
    return {v: fit_glmm(DECAY, **KW, vcov=v) for v in ("model", "cr2", "md")}


@pytest.mark.parametrize(("start", "target"), [("model", "cr2"), ("cr2", "md"), ("cr2", "model")])
def test_with_vcov_equals_refit_decay_exposure(decay_fits, start, target) -> None:
    got = decay_fits[start].with_vcov(target)
    _assert_same_inference(got, decay_fits[target])
    # the fixed part is the same object's numbers: no refit
    assert got.params.equals(decay_fits[start].params)
    assert got.variance_components == decay_fits[start].variance_components


def test_with_vcov_does_not_refit(decay_fits, monkeypatch) -> None:
    def fail(*args, **kwargs):
        raise AssertionError("with_vcov refitted the model")

    monkeypatch.setattr(glmm_mod, "_robust_core", fail)
    res = decay_fits["model"].with_vcov("cr3", dof="normal")
    assert res.vcov == "cr3" and res.df == np.inf


def test_with_vcov_dof_and_exposure_time_effects() -> None:
    model = fit_glmm(DECAY, **KW, effect="tate", exposure_window=(1, 4), dof="between-within")
    for vcov, dof in (("cr3", None), ("kc", "normal"), ("model", "residual"), ("mbn", 12.5)):
        ref = fit_glmm(DECAY, **KW, effect="tate", exposure_window=(1, 4), vcov=vcov, dof=dof)
        _assert_same_inference(model.with_vcov(vcov, dof=dof), ref)


def test_with_vcov_marginal_odds_ratio_row() -> None:
    """A logit fit: the robust result carries the marginal odds ratio row, as in a refit."""
    d = _binomial()
    model = fit_glmm(d, **BIN)
    ref = fit_glmm(d, **BIN, vcov="cr2")
    got = model.with_vcov("cr2")
    assert "marginal[treatment]" in got.tidy()["term"].tolist()
    _assert_same_inference(got, ref)
    _assert_same_inference(got.with_vcov("model"), model)


def test_with_vcov_after_pickling(decay_fits) -> None:
    restored = pickle.loads(pickle.dumps(decay_fits["model"]))
    _assert_same_inference(restored.with_vcov("cr2"), decay_fits["cr2"])


def test_with_vcov_bad_options() -> None:
    d = _binomial()
    res = fit_glmm(d, **BIN, random="cluster")
    with pytest.raises(OptionError, match="'mbn'"):
        res.with_vcov("hc3")
    with pytest.raises(OptionError, match="dof"):
        res.with_vcov("cr2", dof="kenward-roger")
    agq = fit_glmm(d, **BIN, random="cluster", method="agq")
    with pytest.raises(OptionError, match="Laplace"):
        agq.with_vcov("cr2")
    assert agq.with_vcov("model", dof="normal").df == np.inf


# ----------------------------------------------------------------- issue 10: bad input


def test_robust_vcov_with_too_few_clusters_says_so() -> None:
    """4 clusters, p_c = 4 (intercept, two region dummies, treatment): no robust variance."""
    rng = np.random.default_rng(0)
    rows = []
    for i, reg in enumerate("abcc"):
        for j in range(5):
            x = int(j > i)
            mu = 50 * np.exp(rng.normal(0, 0.2) - 0.2 * x)
            rows.append((i, j, x, 10_000, rng.poisson(mu), reg))
    d = pd.DataFrame(rows, columns=["la", "q", "arm", "pop", "y", "region"])
    kw = dict(outcome="y", cluster="la", period="q", treatment="arm", family="poisson")
    kw.update(exposure="pop", random="cluster", covariates="C(region)")
    msg = r"vcov='md' needs more clusters than cluster-level fixed-effect parameters \(p_c = 4"
    with pytest.raises(DataError, match=msg + r".*got 4 clusters"):
        fit_glmm(d, **kw, vcov="md")
    model = fit_glmm(d, **kw)
    with pytest.raises(DataError, match=msg):
        model.with_vcov("md")
    # without the cluster-level covariate p_c = 2: I - p_c = 2 df
    kw.pop("covariates")
    assert fit_glmm(d, **kw, vcov="md").df == 2.0


def _ar1_panel(seed: int, r: float) -> pd.DataFrame:
    """12 councils x 8 quarters, persistent council effects and AR(1) council-quarter effects."""
    rng = np.random.default_rng(seed)
    rows = []
    for c in range(12):
        u = rng.normal(0, 0.3)
        e = np.empty(8)
        e[0] = rng.normal(0, 0.3)
        for j in range(1, 8):
            e[j] = r * e[j - 1] + rng.normal(0, 0.3 * np.sqrt(1 - r * r))
        for j in range(8):
            mu = 60.0 * np.exp(u + e[j] - 0.1 * (j > c % 7))
            rows.append((c, j, int(j > c % 7), 30_000, int(rng.poisson(mu))))
    return pd.DataFrame(rows, columns=["council", "quarter", "treatment", "pop", "count"])


def test_negative_decay_estimate_warns_and_says_what_it_means() -> None:
    """Alternating council-quarter effects (r = -0.8): r <= 0 is outside the decay model."""
    d = _ar1_panel(0, -0.8)
    with pytest.warns(ConvergenceWarning, match=r"at or beyond the boundary r = 0"):
        res = fit_glmm(d, **{**KW, "outcome": "count"})
    assert res.singular
    assert res.variance_components["decay"] < 0
    note = next(m for m in res.messages if "boundary r = 0" in m)
    assert "random='nested' (r = 0) describes them as well" in note
