"""GLMM fits against lme4::glmer and glmmTMB (fixtures and generate.R in tests/reference/glmm/)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from _tolerances import (
    EQUIVALENT_INPUT_REL,
    GLMER_EST_SE_UNITS,
    GLMER_LOGLIK_ATOL,
    GLMER_LOGLIK_DIFF_ATOL,
    GLMER_SE,
    GLMM_EST,
    GLMM_LOGLIK_ATOL,
    GLMM_SE,
    LOGLIK_SAME_OPTIMUM_ATOL,
    NB_SIZE_REL,
    RE_SD,
    ROWS_VS_AGGREGATE,
    SAME_OBJECTIVE_LOGLIK_ATOL,
)

from steppedwedge.models.glmm import fit_glmm

pytestmark = pytest.mark.reference

REF = Path(__file__).parent / "reference" / "glmm"
CASES = json.loads((REF / "cases.json").read_text())


def load(name: str) -> pd.DataFrame:
    data = REF / "data"
    if name == "council_counts":
        d = pd.read_csv(data / "council_counts.csv")
        d["logpop"] = np.log(d["pop"])
        return d
    if name == "rsteppedwedge_binom":
        return pd.read_csv(data / "rsteppedwedge_sw_data_example_binom.csv")
    if name.endswith("_agg"):
        d = pd.read_csv(data / f"{name[:-4]}.csv")
        return d.groupby(["cluster", "period", "treatment"], as_index=False).agg(
            events=("y", "sum"), trials=("y", "size")
        )
    return pd.read_csv(data / f"{name}.csv")


def _canonical(name: str) -> str:
    """Map R and our term names to one form: intercept, period k, exposure k, treatment."""
    import re

    if name == "(Intercept)":
        return name
    m = re.fullmatch(r"(?:period|pf)\[?(\d+)\]?", name)
    if m:
        return f"period {m.group(1)}"
    m = re.fullmatch(r"(?:exposure\[|ef)(\d+)\]?", name)
    if m:
        return f"exposure {m.group(1)}"
    if name in ("treatment", "trt"):
        return "treatment"
    return f"covariate {name}"


def _ours_in_r_order(res, case) -> tuple[np.ndarray, np.ndarray]:
    """Our fixed effects and SEs, matched to R's terms by name."""
    ours = {_canonical(n): k for k, n in enumerate(res.params.index)}
    idx = [ours[_canonical(n)] for n in case["fixef_names"]]
    assert sorted(idx) == list(range(len(ours)))
    est = res.params.to_numpy()[idx]
    se = np.sqrt(np.diag(res.vcov_matrix.to_numpy()))[idx]
    return est, se


@pytest.fixture(scope="module")
def fits() -> dict[str, object]:
    out = {}
    for case in CASES:
        out[case["name"]] = fit_glmm(load(case["dataset"]), **case["kwargs"])
    return out


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_against_r(case: dict, fits: dict) -> None:
    res = fits[case["name"]]
    est, se = _ours_in_r_order(res, case)
    fe = np.asarray(case["fixef"])
    fse = np.asarray(case["fixef_se"])
    assert res.converged
    if case["engine"] == "glmmTMB":
        np.testing.assert_allclose(est, fe, **GLMM_EST)
        np.testing.assert_allclose(se, fse, **GLMM_SE)
        assert abs(res.loglik - case["loglik"]) < GLMM_LOGLIK_ATOL
    elif case.get("polished", False):
        # glmer optimum Newton-polished on glmer's own Laplace deviance (children_cov_glmer):
        # estimates and log-likelihood tight; glmer SEs come from finite-difference Hessians of
        # a PIRLS-based deviance (numDeriv settings move them by up to 1e-3), so SEs are
        # checked tightly against glmmTMB's exact Hessian instead (children_cov_tmb)
        np.testing.assert_allclose(est, fe, **GLMM_EST)
        np.testing.assert_allclose(se, fse, **GLMER_SE)
        assert abs(res.loglik - case["loglik"]) < GLMM_LOGLIK_ATOL
    else:
        np.testing.assert_allclose(est, fe, rtol=0, atol=GLMER_EST_SE_UNITS * float(fse.min()))
        np.testing.assert_allclose(se, fse, **GLMER_SE)
        assert abs(res.loglik - case["loglik"]) < GLMER_LOGLIK_ATOL
    # variance components (SDs): boundary fits are 0 here and ~1e-5 in R
    sds = [v for v in case["re_sd"].values()]
    ours = sorted(math.sqrt(v) for k, v in res.variance_components.items() if k != "nb_size")
    np.testing.assert_allclose(ours, sorted(sds), **RE_SD)
    if case["nb_size"] is not None:
        assert res.dispersion == pytest.approx(case["nb_size"], rel=NB_SIZE_REL)
    if "tate" in case:
        assert res.estimand == f"TATE[1,{case['tate']['L']}]"
        assert res.estimate == pytest.approx(case["tate"]["estimate"], rel=GLMM_EST["rtol"])
        assert res.std_error == pytest.approx(case["tate"]["se"], rel=GLMM_SE["rtol"])


def test_individual_rows_and_events_trials_agree(fits: dict) -> None:
    """Same estimates either way; log-likelihoods differ by sum(log choose(n, y)), as in glmer."""
    from scipy.special import gammaln

    rows, agg = fits["bin_cluster_glmer_rows"], fits["bin_cluster_glmer_agg"]
    np.testing.assert_allclose(rows.params.to_numpy(), agg.params.to_numpy(), **ROWS_VS_AGGREGATE)
    a = load("binary_trial_agg")
    lchoose = float(
        np.sum(
            gammaln(a["trials"] + 1)
            - gammaln(a["events"] + 1)
            - gammaln(a["trials"] - a["events"] + 1)
        )
    )
    assert agg.loglik - rows.loglik == pytest.approx(lchoose, abs=LOGLIK_SAME_OPTIMUM_ATOL)
    case = {c["name"]: c for c in CASES}
    assert case["bin_cluster_glmer_agg"]["loglik"] - case["bin_cluster_glmer_rows"][
        "loglik"
    ] == pytest.approx(lchoose, abs=GLMER_LOGLIK_DIFF_ATOL)


def test_exposure_and_log_offset_agree(fits: dict) -> None:
    a, b = fits["pois_cluster_tmb"], fits["pois_offset_tmb"]
    np.testing.assert_allclose(a.params.to_numpy(), b.params.to_numpy(), rtol=EQUIVALENT_INPUT_REL)
    assert a.loglik == pytest.approx(b.loglik, abs=SAME_OBJECTIVE_LOGLIK_ATOL)


def test_agq_converges_to_more_points(fits: dict) -> None:
    """AGQ log-likelihoods move from the Laplace value and settle as glmer's do."""
    l1 = fits["bin_small_glmer_agq1"].loglik
    l5 = fits["bin_small_glmer_agq5"].loglik
    l11 = fits["bin_small_glmer_agq11"].loglik
    assert abs(l11 - l5) < abs(l5 - l1)


def test_children_covariates_row_units(fits: dict) -> None:
    """30,000 children with continuous covariates: every row a unit; glmer's SEs agree too."""
    case = next(c for c in CASES if c["name"] == "children_cov_glmer")
    res = fits["children_cov_glmer"]
    assert res.n_units == len(load("children_covariates")) == 30_000
    assert res.n_obs == 30_000
    _, se = _ours_in_r_order(res, case)
    # lme4's own vcov() (its finite-difference Hessian)
    np.testing.assert_allclose(se, case["glmer_vcov_se"], **GLMER_SE)
    # the same fit in glmmTMB (exact Hessian): SEs at 1e-4, estimates at 1e-5 of glmer's
    tmb = next(c for c in CASES if c["name"] == "children_cov_tmb")
    assert tmb["fixef_names"] == case["fixef_names"]
    np.testing.assert_allclose(se, tmb["fixef_se"], **GLMM_SE)
    np.testing.assert_allclose(tmb["fixef"], case["fixef"], rtol=2 * GLMM_EST["rtol"])
    # dof="clusters" default: I - 2 for the treatment and period terms; the within df
    # N - I - (p - r_b) for the child-level covariates
    t = res.tidy().set_index("term")
    assert res.df == t.loc["treatment", "df"] == t.loc["period[2]", "df"] == 5 - 2
    covs = ["age", "sex", "disability", "imd", "prior_referral"]
    assert (t.loc[covs, "df"] == 30_000 - 5 - 11).all()
