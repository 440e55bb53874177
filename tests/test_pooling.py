"""Rubin's-rules pooling against R mice (tests/reference/mice) and exact algebra."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from _tolerances import CLOSED_FORM_REF, CLOSED_FORM_REL, EXACT, EXACT_REL, ULP_REL, ZERO_ATOL_1E15

from steppedwedge.inference.pooling import PooledResult, barnard_rubin_df, pool

REF = json.loads((Path(__file__).parent / "reference" / "mice" / "mice_pool.json").read_text())


def _dfcom(x: object) -> float:
    return np.inf if x == "Inf" else float(x)  # type: ignore[arg-type]


@pytest.mark.reference
@pytest.mark.parametrize("case", REF["scalar"], ids=lambda c: c["name"])
def test_pool_scalar_matches_mice(case: dict) -> None:
    res = pool(estimates=case["Q"], variances=case["U"], dfcom=_dfcom(case["dfcom"]))
    np.testing.assert_allclose(
        res.estimate, case["qbar"], rtol=CLOSED_FORM_REL, atol=ZERO_ATOL_1E15
    )
    for ours, key in (
        (res.ubar, "ubar"),
        (res.b, "b"),
        (res.t, "t"),
        (res.df, "df"),
        (res.riv, "riv"),
        (res.fmi, "fmi"),
    ):
        np.testing.assert_allclose(float(ours.iloc[0]), case[key], **CLOSED_FORM_REF, err_msg=key)


@pytest.mark.reference
@pytest.mark.parametrize("case", REF["models"], ids=lambda c: c["name"])
def test_pool_fits_match_mice(case: dict) -> None:
    terms = case["terms"]
    fits = []
    for est, se in zip(case["estimates"], case["std_errors"], strict=True):
        # fit-like objects: params + a covariance whose diagonal holds the squared SEs
        fits.append(
            SimpleNamespace(
                params=pd.Series(est, index=terms),
                vcov_matrix=pd.DataFrame(np.diag(np.square(se)), index=terms, columns=terms),
            )
        )
    res = pool(fits, dfcom=case["dfcom"])
    ref = case["pooled"]
    np.testing.assert_allclose(res.params.to_numpy(), ref["estimate"], **CLOSED_FORM_REF)
    for key, ours in (
        ("ubar", res.ubar),
        ("b", res.b),
        ("t", res.t),
        ("df", res.df),
        ("riv", res.riv),
        ("lambda", res.lambda_),
        ("fmi", res.fmi),
        ("std_error", res.std_errors),
        ("p_value", res.pvalues),
    ):
        np.testing.assert_allclose(ours.to_numpy(), ref[key], **CLOSED_FORM_REF, err_msg=key)
    tidy = res.tidy()
    np.testing.assert_allclose(tidy["conf_low"], ref["conf_low"], **CLOSED_FORM_REF)
    np.testing.assert_allclose(tidy["conf_high"], ref["conf_high"], **CLOSED_FORM_REF)
    # the same numbers through the array interface
    arr = pool(
        estimates=case["estimates"], std_errors=case["std_errors"], terms=terms, dfcom=case["dfcom"]
    )
    np.testing.assert_allclose(arr.df.to_numpy(), res.df.to_numpy(), **EXACT)


def test_full_covariance_pooling_is_exact_algebra() -> None:
    rng = np.random.default_rng(4)
    m, p = 6, 3
    q = rng.normal(size=(m, p))
    a = rng.normal(size=(m, p, p))
    u = np.einsum("mij,mkj->mik", a, a) + np.eye(p)
    terms = ["treatment", "b", "c"]
    fits = [
        SimpleNamespace(
            params=pd.Series(q[i], index=terms),
            estimand="treatment",
            vcov_matrix=pd.DataFrame(u[i], index=terms, columns=terms),
        )
        for i in range(m)
    ]
    res = pool(fits, dfcom=40)
    # brute force: T = mean(U) + (1 + 1/m) * cov(Q)
    t_full = u.mean(axis=0) + (1 + 1 / m) * np.cov(q, rowvar=False)
    np.testing.assert_allclose(res.vcov_matrix.to_numpy(), t_full, **EXACT)
    np.testing.assert_allclose(res.t.to_numpy(), np.diag(t_full), **EXACT)
    assert res.estimand == "treatment"
    assert res.estimate == pytest.approx(q[:, 0].mean(), rel=ULP_REL)
    lam = (1 + 1 / m) * q[:, 0].var(ddof=1) / t_full[0, 0]
    nu_old = (m - 1) / lam**2
    nu_obs = 41 / 43 * 40 * (1 - lam)
    assert res.df_estimand == pytest.approx(nu_old * nu_obs / (nu_old + nu_obs), rel=EXACT_REL)
    assert isinstance(res, PooledResult)
    assert "Pooled" in str(res) and res.tidy().columns.tolist()[0] == "term"
    assert list(res.diagnostics().columns) == [
        "term",
        "m",
        "ubar",
        "b",
        "t",
        "dfcom",
        "df",
        "riv",
        "lambda",
        "fmi",
    ]
    lo, hi = res.conf_int()
    assert lo < res.estimate < hi


def test_estimand_not_in_params_is_pooled_too() -> None:
    fits = [
        SimpleNamespace(
            params=pd.Series([1.0 + i / 10, 2.0]),
            vcov_matrix=np.eye(2) * 0.1,
            estimand="TATE[1,2]",
            estimate=0.5 + i / 20,
            std_error=0.2,
        )
        for i in range(4)
    ]
    res = pool(fits)
    assert res.estimand == "TATE[1,2]"
    assert res.estimate == pytest.approx(np.mean([0.5 + i / 20 for i in range(4)]))
    assert res.ubar["TATE[1,2]"] == pytest.approx(0.04)


def test_scalar_results_and_rubin_limit() -> None:
    fits = [SimpleNamespace(estimate=e, std_error=0.1) for e in (0.2, 0.25, 0.3)]
    res = pool(fits)
    assert res.estimand == "estimate"
    # dfcom = inf: the classic Rubin df (m - 1) / lambda^2
    lam = (4 / 3) * 0.0025 / (0.01 + (4 / 3) * 0.0025)
    assert res.df_estimand == pytest.approx(2 / lam**2, rel=EXACT_REL)
    assert float(barnard_rubin_df(3, 0.0, 1.0)) == pytest.approx(2 / 1e-8)  # lambda floored at 1e-4


def test_bad_input() -> None:
    with pytest.raises(ValueError, match="at least 2"):
        pool(estimates=[1.0], std_errors=[0.1])
    with pytest.raises(ValueError, match="same terms"):
        pool(
            [
                SimpleNamespace(params=pd.Series([1.0], index=["a"]), vcov_matrix=np.eye(1)),
                SimpleNamespace(params=pd.Series([1.0], index=["b"]), vcov_matrix=np.eye(1)),
            ]
        )
    with pytest.raises(TypeError, match="results\\[0\\]"):
        pool([object(), object()])
    with pytest.raises(ValueError, match="exactly one of"):
        pool(estimates=[1.0, 2.0])
    with pytest.raises(ValueError, match="`dfcom`"):
        pool(estimates=[1.0, 2.0], std_errors=[1, 1], dfcom=0)
    with pytest.raises(ValueError, match="non-negative"):
        pool(estimates=[1.0, 2.0], variances=[1, -1])


def test_plot_returns_axes() -> None:
    pytest.importorskip("matplotlib")
    import matplotlib.pyplot as plt

    res = pool(
        estimates=[[0.1, 1.0], [0.2, 1.1], [0.15, 0.9]],
        std_errors=[[0.1, 0.2]] * 3,
        terms=["treatment", "age"],
    )
    ax = res.plot()
    assert sorted(t.get_text() for t in ax.get_yticklabels()) == ["age", "treatment"]
    plt.close("all")


def test_pooled_result_on_the_estimation_base() -> None:
    """Base protocol: term table = tidy, exp of the log-link fits' interval, labels, refusals."""
    from steppedwedge.exceptions import OptionError
    from steppedwedge.results import EstimationResult

    fits = [
        SimpleNamespace(
            params=pd.Series([0.2 + i / 20, 1.0], index=["treatment", "period[1]"]),
            vcov_matrix=np.eye(2) * (0.01 + i / 1000),
            estimand="treatment",
            link="log",
        )
        for i in range(4)
    ]
    res = pool(fits)
    assert isinstance(res, EstimationResult)
    assert res.link == "log"
    assert res.method_label == "pooled over 4 imputations (Rubin)"
    plain, ratio = res.tidy(0.9), res.tidy(0.9, exponentiate=True)
    np.testing.assert_allclose(ratio["estimate"], np.exp(plain["estimate"]), **EXACT)
    np.testing.assert_allclose(ratio["conf_low"], np.exp(plain["conf_low"]), **EXACT)
    np.testing.assert_allclose(ratio["p_value"], plain["p_value"], **EXACT)
    lo, hi = res.conf_int()
    assert res.ratio == pytest.approx((np.exp(res.estimate), np.exp(lo), np.exp(hi)), rel=ULP_REL)
    assert plain.loc[0, "df"] == pytest.approx(res.df_estimand, rel=ULP_REL)
    with pytest.raises(OptionError, match="with_vcov"):
        res.with_vcov("cr2")
    odd = [*fits[:3], SimpleNamespace(**{**vars(fits[3]), "link": "logit"})]
    with pytest.raises(OptionError, match="different links"):
        pool(odd)
    arrays = pool(estimates=[0.1, 0.2, 0.15], std_errors=[0.1, 0.1, 0.1])
    with pytest.raises(OptionError, match="link='identity'"):
        arrays.tidy(exponentiate=True)


def test_plot_is_the_base_forest_of_every_pooled_term() -> None:
    """The base EstimationResult.plot, every pooled term kept (period terms too)."""
    pytest.importorskip("matplotlib")
    import matplotlib.pyplot as plt

    res = pool(
        estimates=[[0.1, 1.0, -0.3], [0.2, 1.1, -0.2], [0.15, 0.9, -0.4]],
        std_errors=[[0.1, 0.2, 0.1]] * 3,
        terms=["treatment", "age", "period[2]"],
    )
    assert "plot" not in type(res).__dict__  # no hand-written forest left
    ax = res.plot()
    xs = [x for ln in ax.get_lines() if ln.get_marker() == "o" for x in ln.get_xdata()]
    np.testing.assert_allclose(xs, res.tidy()["estimate"].to_numpy(), **EXACT)
    assert len(xs) == 3
    assert [t.get_text() for t in ax.get_yticklabels()] == ["treatment", "age", "period[2]"]
    assert ax.get_xlabel() == "pooled estimate (m = 3)"
    plt.close("all")
