"""GEE against independent references: geepack (R), geeCRT's vignette, statsmodels."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from _tolerances import GEE_REF, GEECRT_ALPHA, GEECRT_BETA_ATOL, GEECRT_LOOSE, GEECRT_SE

from steppedwedge.data import TrialData
from steppedwedge.exceptions import SmallSampleWarning
from steppedwedge.models.gee import fit_gee

REF = Path(__file__).parent / "reference"
GEEPACK = json.loads((REF / "geepack" / "geepack_reference.json").read_text())["cases"]
GEECRT = json.loads((REF / "geecrt" / "geecrt_vignette.json").read_text())["cases"]

pytestmark = pytest.mark.reference


def _quiet_fit(td: TrialData, **kw: object):
    # the reference data sets are small (I - p < 5), which warns by design
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SmallSampleWarning)
        return fit_gee(td, **kw)


# --------------------------------------------------------------------------------------
# geepack
# --------------------------------------------------------------------------------------

_DATA = {
    "gaussian": ("sw_gaussian.csv", dict(outcome="y_con", family="gaussian")),
    "binary": ("sw_binary.csv", dict(outcome="y_bin", family="binomial")),
    "count": ("sw_count.csv", dict(outcome="count", family="poisson", exposure="population")),
}


def _trial(kind: str) -> TrialData:
    fname, roles = _DATA[kind]
    df = pd.read_csv(REF / "geepack" / fname)
    return TrialData.from_frame(
        df,
        cluster="cluster",
        period="period",
        treatment="treatment",
        covariates=["age"] if "age" in df else None,
        **roles,
    )


def _geepack_order(names: list[str], terms: list[str]) -> list[int]:
    """Our coefficient order -> geepack's (geepack: intercept + period2..T + treatment)."""
    return [names.index(t) for t in terms]


@pytest.mark.parametrize("case", sorted(GEEPACK))
@pytest.mark.parametrize("vcov", ["model", "robust", "kc", "md"])
def test_against_geepack(case: str, vcov: str) -> None:
    ref = GEEPACK[case]
    kind = case.split("_")[0]
    td = _trial(kind)
    covs = ["age"] if case.endswith("_age") else None
    # geepack codes periods as intercept + contrasts; our default is one mean per period.
    # The treatment row and these variance estimators do not depend on that coding (FG
    # does: see test_fg_geepack_coding).
    res = _quiet_fit(td, corstr=ref["corstr"], vcov=vcov, covariates=covs)
    t_ref = ref["terms"].index("treatment")
    np.testing.assert_allclose(res.estimate, ref["coef"][t_ref], **GEE_REF)
    if ref["alpha"] is not None and ref["alpha"] != {}:
        np.testing.assert_allclose(list(res.correlation.values()), [ref["alpha"]], **GEE_REF)
    np.testing.assert_allclose(res.scale, ref["phi"], **GEE_REF)
    np.testing.assert_allclose(res.std_error, ref["se_dense"][vcov][t_ref], **GEE_REF)
    if vcov == "robust":
        np.testing.assert_allclose(res.std_error, ref["se_geepack_robust"][t_ref], **GEE_REF)
    if vcov == "model":
        np.testing.assert_allclose(res.std_error, ref["se_geepack_model"][t_ref], **GEE_REF)
    # period means: intercept + contrast in geepack = our period[j] coefficient
    b0 = ref["coef"][0]
    ours = [res.params[f"period[{j}]"] for j in range(1, 6)]
    np.testing.assert_allclose(ours, [b0] + [b0 + c for c in ref["coef"][1:5]], **GEE_REF)


@pytest.mark.parametrize("case", sorted(GEEPACK))
def test_fg_geepack_coding(case: str) -> None:
    """FG with geepack's coding (intercept + contrasts), via time='none' + dummies."""
    ref = GEEPACK[case]
    kind = case.split("_")[0]
    fname, roles = _DATA[kind]
    df = pd.read_csv(REF / "geepack" / fname)
    dummies = []
    for j in range(2, 6):
        df[f"p{j}"] = (df["period"] == j).astype(float)
        dummies.append(f"p{j}")
    extra = ["age"] if case.endswith("_age") else []
    td = TrialData.from_frame(
        df,
        cluster="cluster",
        period="period",
        treatment="treatment",
        covariates=dummies + extra,
        **roles,
    )
    res = _quiet_fit(td, corstr=ref["corstr"], vcov="fg", time="none", covariates=dummies + extra)
    # ours: (Intercept), treatment, p2..p5[, age]; geepack: (Intercept), p2..p5, treatment[, age]
    ours = res.std_errors
    ref_se = dict(zip(ref["terms"], ref["se_dense"]["fg"], strict=False))
    np.testing.assert_allclose(ours["treatment"], ref_se["treatment"], **GEE_REF)
    np.testing.assert_allclose(ours["(Intercept)"], ref_se["(Intercept)"], **GEE_REF)
    np.testing.assert_allclose(
        [ours[f"p{j}"] for j in range(2, 6)],
        [ref_se[f"factor(period){j}"] for j in range(2, 6)],
        **GEE_REF,
    )


# --------------------------------------------------------------------------------------
# geeCRT vignette (published-cases A5)
# --------------------------------------------------------------------------------------


def _geecrt_trial(outcome: str, family: str) -> TrialData:
    df = pd.read_csv(REF / "geecrt" / "geecrt_sampleSWCRTSmall.csv")
    return TrialData.from_frame(
        df,
        outcome=outcome,
        cluster="id",
        period="period",
        treatment="treatment",
        family=family,
    )


@pytest.mark.parametrize("case", ["GEE-1", "GEE-2", "GEE-3"])
@pytest.mark.parametrize("vcov", ["model", "robust", "kc", "md", "fg"])
def test_geecrt_vignette_fixed_alpha(case: str, vcov: str) -> None:
    ref = GEECRT[case]
    td = _geecrt_trial(ref["outcome"], ref["family"])
    # geeCRT: binomial scale fixed at 1; continuous scale is its bias-corrected estimator
    scale = 1.0 if ref["family"] == "binomial" else "bias-corrected"
    res = _quiet_fit(td, corstr=ref["corstr"], corr_params=ref["alpha"], vcov=vcov, scale=scale)
    assert abs(res.estimate - ref["treatment"]) < GEECRT_BETA_ATOL
    if vcov == "model" and ref["family"] == "gaussian":
        # the model-based SE depends on the scale, which is re-estimated here at the fixed
        # alpha (geeCRT estimates it jointly): allow the looser 1e-3 of A5's notes
        np.testing.assert_allclose(res.std_error, ref["se"][vcov], **GEECRT_LOOSE)
    else:
        np.testing.assert_allclose(res.std_error, ref["se"][vcov], **GEECRT_SE)


@pytest.mark.parametrize("vcov", ["robust", "kc", "md", "fg"])
def test_geecrt_vignette_period1(vcov: str) -> None:
    ref = GEECRT["GEE-1b"]
    td = _geecrt_trial("y_con", "gaussian")
    res = _quiet_fit(td, corstr="exchangeable", corr_params=ref["alpha"], vcov=vcov)
    assert abs(res.params["period[1]"] - ref["period1"]) < GEECRT_BETA_ATOL
    np.testing.assert_allclose(res.std_errors["period[1]"], ref["se"][vcov], **GEECRT_SE)


@pytest.mark.parametrize("case", ["GEE-1", "GEE-3"])
def test_geecrt_estimated_correlation(case: str) -> None:
    """With geeCRT's scale estimator the correlation estimates match its printed ones."""
    ref = GEECRT[case]
    td = _geecrt_trial(ref["outcome"], ref["family"])
    res = fit_gee(td, corstr=ref["corstr"], scale="bias-corrected", vcov="md")
    # geeCRT's own convergence (epsilon = 1e-3) limits agreement to ~1e-4 relative
    np.testing.assert_allclose(list(res.correlation.values()), ref["alpha"], **GEECRT_LOOSE)
    assert abs(res.estimate - ref["treatment"]) < GEECRT_BETA_ATOL
    np.testing.assert_allclose(res.std_error, ref["se"]["md"], **GEECRT_LOOSE)


def test_geecrt_bias_correction_ordering() -> None:
    """BC0 < BC1 < BC2 elementwise (methods.md 7.2 sanity check)."""
    td = _geecrt_trial("y_bin", "binomial")
    res = fit_gee(td, corstr="nested-exchangeable", vcov="md")
    se = {v: res.with_vcov(v).std_errors.to_numpy() for v in ("kc", "md")}
    with pytest.warns(SmallSampleWarning):
        lz = fit_gee(td, corstr="nested-exchangeable", vcov="robust").std_errors.to_numpy()
    assert np.all(lz < se["kc"]) and np.all(se["kc"] < se["md"])


# --------------------------------------------------------------------------------------
# statsmodels (exchangeable; its cov_type="bias_reduced" is Mancl-DeRouen)
# --------------------------------------------------------------------------------------


def _statsmodels_fit(df: pd.DataFrame, y: str, family: object, offset: np.ndarray | None = None):
    sm = pytest.importorskip("statsmodels.api")
    X = pd.get_dummies(df["period"], prefix="period", dtype=float)
    X["treatment"] = df["treatment"].astype(float)
    mod = sm.GEE(
        df[y].astype(float),
        X,
        groups=df["cluster"],
        family=family,
        cov_struct=sm.cov_struct.Exchangeable(),
        offset=offset,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = mod.fit(maxiter=200, ctol=1e-12, cov_type="bias_reduced")
    return res


@pytest.mark.parametrize("kind", ["gaussian", "binary", "count", "negbin"])
def test_against_statsmodels_exchangeable(kind: str) -> None:
    sm = pytest.importorskip("statsmodels.api")
    key = "count" if kind == "negbin" else kind
    fname, roles = _DATA[key]
    df = pd.read_csv(REF / "geepack" / fname)
    offset = np.log(df["population"].to_numpy(float)) if key == "count" else None
    y = roles["outcome"]
    fam = {
        "gaussian": sm.families.Gaussian(),
        "binary": sm.families.Binomial(),
        "count": sm.families.Poisson(),
        "negbin": sm.families.NegativeBinomial(alpha=0.05),
    }[kind]
    ref = _statsmodels_fit(df, y, fam, offset)
    alpha = float(ref.cov_struct.dep_params)
    td = _trial(key)
    extra = {"family": "negative_binomial", "nb_theta": 1 / 0.05} if kind == "negbin" else {}
    ours = _quiet_fit(
        td,
        corstr="exchangeable",
        corr_params=[alpha],
        scale=float(ref.scale),
        vcov="robust",
        **extra,
    )
    np.testing.assert_allclose(ours.params.to_numpy(), ref.params.to_numpy(), **GEE_REF)
    np.testing.assert_allclose(
        ours.std_errors.to_numpy(), ref.standard_errors(cov_type="robust"), **GEE_REF
    )
    np.testing.assert_allclose(
        ours.with_vcov("md").std_errors.to_numpy(),
        ref.standard_errors(cov_type="bias_reduced"),
        **GEE_REF,
    )
    np.testing.assert_allclose(
        ours.with_vcov("model").std_errors.to_numpy(),
        ref.standard_errors(cov_type="naive"),
        **GEE_REF,
    )


# --------------------------------------------------------------------------------------
# closed cohort: block exchangeable vs geepack with a user-defined pair-type design
# --------------------------------------------------------------------------------------

COHORT = json.loads((REF / "geepack" / "geepack_cohort_reference.json").read_text())


@pytest.mark.parametrize("vcov", ["model", "robust"])
def test_block_exchangeable_against_geepack(vcov: str) -> None:
    df = pd.read_csv(REF / "geepack" / "sw_cohort.csv")
    td = TrialData.from_frame(
        df,
        outcome="y",
        cluster="cluster",
        period="period",
        treatment="treatment",
        individual="person",
    )
    res = _quiet_fit(td, corstr="block-exchangeable", vcov=vcov)
    t = COHORT["terms"].index("treatment")
    np.testing.assert_allclose(res.estimate, COHORT["coef"][t], **GEE_REF)
    np.testing.assert_allclose(list(res.correlation.values()), COHORT["alpha"], **GEE_REF)
    np.testing.assert_allclose(res.scale, COHORT["phi"], **GEE_REF)
    want = COHORT["se_robust" if vcov == "robust" else "se_model"][t]
    np.testing.assert_allclose(res.std_error, want, **GEE_REF)


@pytest.mark.parametrize("vcov", ["robust", "kc", "md", "fg"])
def test_geecrt_vignette_maee(vcov: str) -> None:
    """GEE-4: geeCRT's MAEE (alpadj=TRUE) correlation estimates and the SEs that follow."""
    ref = GEECRT["GEE-4"]
    td = _geecrt_trial("y_con", "gaussian")
    res = _quiet_fit(
        td, corstr="nested-exchangeable", scale="bias-corrected", maee="geecrt", vcov=vcov
    )
    # geeCRT stops when the alpha step is below 1e-3: alpha agrees to ~1.3e-3 relative
    np.testing.assert_allclose(list(res.correlation.values()), ref["alpha"], **GEECRT_ALPHA)
    assert abs(res.estimate - ref["treatment"]) < GEECRT_BETA_ATOL
    np.testing.assert_allclose(res.std_error, ref["se"][vcov], **GEECRT_SE)


@pytest.mark.parametrize("vcov", ["robust", "kc", "md", "fg"])
def test_geecrt_vignette_cluster_period_gee(vcov: str) -> None:
    """GEE-5: geeCRT cpgeeSWD (cluster-period means) reproduced from the cell summaries."""
    ref = GEECRT["GEE-5"]
    td = _geecrt_trial("y_bin", "binomial")
    res = _quiet_fit(td, corstr="exchangeable", corr_method="cluster-period", scale=1.0, vcov=vcov)
    np.testing.assert_allclose(list(res.correlation.values()), ref["alpha"], **GEECRT_LOOSE)
    assert abs(res.estimate - ref["treatment"]) < GEECRT_BETA_ATOL
    np.testing.assert_allclose(res.std_error, ref["se"][vcov], **GEECRT_SE)


def test_linear_time_against_statsmodels() -> None:
    sm = pytest.importorskip("statsmodels.api")
    df = pd.read_csv(REF / "geepack" / "sw_binary.csv")
    X = pd.DataFrame(
        {"const": 1.0, "period": df["period"] - 1.0, "treatment": df["treatment"].astype(float)}
    )
    mod = sm.GEE(
        df["y_bin"].astype(float),
        X,
        groups=df["cluster"],
        family=sm.families.Binomial(),
        cov_struct=sm.cov_struct.Exchangeable(),
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = mod.fit(maxiter=200, ctol=1e-12, cov_type="bias_reduced")
    td = _trial("binary")
    ours = _quiet_fit(
        td,
        time="linear",
        corstr="exchangeable",
        vcov="md",
        corr_params=[float(ref.cov_struct.dep_params)],
        scale=float(ref.scale),
    )
    np.testing.assert_allclose(ours.params.to_numpy(), ref.params.to_numpy(), **GEE_REF)
    np.testing.assert_allclose(ours.std_errors.to_numpy(), ref.bse.to_numpy(), **GEE_REF)


def test_negative_binomial_theta_moment_estimate() -> None:
    """1/theta = sum((y - mu)^2 - mu) / sum(mu^2) at the Poisson working fit (statsmodels GLM)."""
    sm = pytest.importorskip("statsmodels.api")
    df = pd.read_csv(REF / "geepack" / "sw_count.csv")
    X = pd.get_dummies(df["period"], prefix="p", dtype=float)
    X["treatment"] = df["treatment"].astype(float)
    glm = sm.GLM(df["count"], X, family=sm.families.Poisson(), offset=np.log(df["population"])).fit(
        tol=1e-12
    )
    mu = glm.fittedvalues.to_numpy()
    k = np.sum((df["count"].to_numpy() - mu) ** 2 - mu) / np.sum(mu**2)
    res = _quiet_fit(_trial("count"), family="negative_binomial", corstr="exchangeable")
    np.testing.assert_allclose(res.nb_theta, 1 / k, **GEE_REF)
