"""GLMM fits: result protocol, bad input, and checks against brute-force computation."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from _tolerances import (
    CENTRAL_DIFF_LAPLACE,
    EXACT_REL,
    GLM_LIMIT_EST_REL,
    GLM_LIMIT_SE_REL,
    LINALG_REL,
    POISSON_LIMIT_SE_UNITS,
    QUADRATURE_LOGLIK_ATOL,
    SAME_OBJECTIVE,
    SAME_OBJECTIVE_LOGLIK_ATOL,
    SAME_SURFACE_ATOL,
    ZERO_ATOL_1E13,
)
from scipy import integrate, special, stats

from steppedwedge.exceptions import DataError
from steppedwedge.models.glmm import GLMMResult, fit_glmm
from steppedwedge.results import TIDY_COLUMNS


def _counts(seed: int = 1, n_clusters: int = 8, n_periods: int = 5) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n_clusters):
        a = rng.normal(0, 0.2)
        for j in range(n_periods):
            x = int(j > i % (n_periods - 1))
            pop = int(rng.integers(20_000, 60_000))
            rows.append((i, j, x, pop, int(rng.poisson(pop * 1e-3 * np.exp(a - 0.2 * x)))))
    return pd.DataFrame(rows, columns=["la", "q", "arm", "pop", "y"])


def _binary(seed: int = 2, n_clusters: int = 8, n_periods: int = 5, m: int = 12) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n_clusters):
        a = rng.normal(0, 0.5)
        for j in range(n_periods):
            x = int(j > i % (n_periods - 1))
            p = special.expit(-0.5 + a - 0.4 * x)
            rows += [(i, j, x, int(rng.random() < p)) for _ in range(m)]
    return pd.DataFrame(rows, columns=["c", "t", "x", "y"])


COUNT = dict(
    outcome="y", cluster="la", period="q", treatment="arm", family="poisson", exposure="pop"
)
BIN = dict(outcome="y", cluster="c", period="t", treatment="x", family="binomial")


# ---------------------------------------------------------------- protocol


def test_result_protocol_and_ratios() -> None:
    res = fit_glmm(_counts(), **COUNT, random="cluster")
    assert isinstance(res, GLMMResult)
    tidy = res.tidy()
    assert tuple(tidy.columns) == TIDY_COLUMNS
    assert tidy["term"].iloc[0] == "treatment"
    assert tidy["estimate"].iloc[0] == res.estimate
    assert res.df == 8 - 2  # default dof="clusters": I - 2 without cluster-level covariates
    lo, hi = res.conf_int()
    q = stats.t.ppf(0.975, 6)
    assert lo == pytest.approx(res.estimate - q * res.std_error, rel=EXACT_REL)
    ex = res.tidy(exponentiate=True)
    assert ex["estimate"].iloc[0] == pytest.approx(math.exp(res.estimate), rel=EXACT_REL)
    assert ex["conf_low"].iloc[0] == pytest.approx(math.exp(lo), rel=EXACT_REL)
    assert ex["std_error"].iloc[0] == tidy["std_error"].iloc[0]
    assert res.ratio[0] == pytest.approx(math.exp(res.estimate))
    assert res.ratio[1:] == pytest.approx((math.exp(lo), math.exp(hi)), rel=EXACT_REL)
    text = str(res.summary())
    assert "Rate ratio" in text and "poisson GLMM" in text and "Laplace" in text
    assert res.summary().as_html().startswith("<div")
    assert res.pvalue == pytest.approx(2 * stats.t.sf(abs(res.estimate / res.std_error), 6))
    assert "t test, df 6" in text


def test_dof_rules() -> None:
    """df of each rule from the design's counts (I, N, p, r_b), t vs z p-values and CIs."""
    d = _counts(n_clusters=8, n_periods=5)  # N = 40 cells, p = 1 + 4 periods + treatment = 6
    z = fit_glmm(d, **COUNT, random="cluster", dof="normal")
    assert math.isinf(z.df)
    assert z.pvalue == pytest.approx(
        2 * stats.norm.sf(abs(z.estimate / z.std_error)), rel=EXACT_REL
    )
    assert z.conf_int()[1] == pytest.approx(
        z.estimate + stats.norm.ppf(0.975) * z.std_error, rel=EXACT_REL
    )
    assert "z test" in str(z.summary())
    expected = {"clusters": 8 - 1 - 1, "between-within": 40 - 8 - (6 - 1), "residual": 40 - 6}
    for rule, df in expected.items():
        r = fit_glmm(d, **COUNT, random="cluster", dof=rule)
        assert r.estimate == z.estimate and r.std_error == z.std_error
        assert r.df == df, rule
        t = r.tidy()
        assert t["df"].iloc[0] == df
        assert r.pvalue == pytest.approx(2 * stats.t.sf(abs(r.estimate / r.std_error), df))
    # between-within: the intercept and a cluster-level covariate are between-cluster terms
    d2 = d.assign(dep=d["la"].map(dict(enumerate(np.linspace(-1, 1, 8)))))
    bw = fit_glmm(d2, **COUNT, random="cluster", dof="between-within", covariates="dep")
    t = bw.tidy().set_index("term")
    assert t.loc["dep", "df"] == 8 - 2 and t.loc["(Intercept)", "df"] == 8 - 2
    assert t.loc["treatment", "df"] == 40 - 8 - (7 - 2)
    cl = fit_glmm(d2, **COUNT, random="cluster", covariates="dep")
    assert cl.df == 8 - 2 - 1
    assert (cl.tidy()["df"] == 8 - 2 - 1).all()  # every column constant within cells
    num = fit_glmm(d, **COUNT, random="cluster", dof=3.5)
    assert num.df == 3.5
    # 0/1 rows: N counts individuals; an individual-level covariate gets the within df
    b = fit_glmm(_binary(), **BIN, random="cluster", dof="residual")
    assert b.df == 8 * 5 * 12 - 6
    bx = _binary().assign(age=lambda f: np.arange(len(f)) % 7)
    t = fit_glmm(bx, **BIN, random="cluster", covariates="age").tidy().set_index("term")
    assert t.loc["treatment", "df"] == 8 - 2
    assert t.loc["age", "df"] == 8 * 5 * 12 - 8 - (7 - 1)
    for bad in ("kenward-roger", 0, -1.0, True):
        with pytest.raises(ValueError, match="dof"):
            fit_glmm(d, **COUNT, random="cluster", dof=bad)


def test_rates_per_10000() -> None:
    res = fit_glmm(_counts(), **COUNT, random="cluster")
    r = res.rates(per=10_000)
    b = res.params
    first = r.iloc[0]
    assert first["rate_control"] == pytest.approx(1e4 * math.exp(b["(Intercept)"]), rel=EXACT_REL)
    assert first["rate_treated"] / first["rate_control"] == pytest.approx(
        math.exp(b["treatment"]), rel=EXACT_REL
    )
    assert first["low_control"] < first["rate_control"] < first["high_control"]
    with pytest.raises(ValueError, match="per"):
        res.rates(per=0)


def test_exponentiate_needs_log_or_logit() -> None:
    res = fit_glmm(_binary(), **BIN, random="cluster", link="probit")
    with pytest.raises(ValueError, match="exponentiate"):
        res.tidy(exponentiate=True)


def test_latent_icc_logit() -> None:
    res = fit_glmm(_binary(), **BIN, random="cluster")
    tau2 = res.variance_components["tau2"]
    icc, lo, hi = res.correlations["icc"]
    assert icc == pytest.approx(tau2 / (tau2 + math.pi**2 / 3), rel=EXACT_REL)
    assert lo < icc < hi


def test_eti_pte_and_window() -> None:
    d = _counts(n_clusters=8, n_periods=5)
    tate = fit_glmm(d, **COUNT, random="cluster", effect="tate")
    pte = fit_glmm(d, **COUNT, random="cluster", effect="pte", exposure_time=2)
    assert pte.estimate == pytest.approx(tate.params["exposure[2]"], rel=EXACT_REL)
    c = np.zeros(len(tate.params))
    idx = [k for k, n in enumerate(tate.params.index) if n.startswith("exposure[")]
    c[idx] = 1.0 / len(idx)
    assert tate.estimate == pytest.approx(float(c @ tate.params.to_numpy()), rel=EXACT_REL)
    assert tate.std_error == pytest.approx(
        math.sqrt(c @ tate.vcov_matrix.to_numpy() @ c), rel=EXACT_REL
    )
    assert tate.effect_curve is not None and len(tate.effect_curve) == len(idx)


# ---------------------------------------------------------------- brute force


def test_agq_equals_numerical_integration() -> None:
    """AGQ log-likelihood at the optimum vs scipy.quad of each cluster's integral."""
    d = _binary(n_clusters=6, m=8)
    res = fit_glmm(d, **BIN, random="cluster", method="agq", n_quadrature=25)
    b = res.params
    sd = math.sqrt(res.variance_components["tau2"])
    total = 0.0
    for _, g in d.groupby("c"):
        eta0 = (
            b["(Intercept)"]
            + g["t"].map(lambda t: b.get(f"period[{t}]", 0.0)).to_numpy()
            + b["treatment"] * g["x"].to_numpy()
        )
        y = g["y"].to_numpy()

        def f(u: float, eta0: np.ndarray = eta0, y: np.ndarray = y) -> float:
            p = special.expit(eta0 + u)
            return float(
                np.exp(np.sum(y * np.log(p) + (1 - y) * np.log1p(-p))) * stats.norm.pdf(u, 0, sd)
            )

        val, _ = integrate.quad(f, -8 * sd, 8 * sd, epsabs=0, epsrel=EXACT_REL, limit=200)
        total += math.log(val)
    assert res.loglik == pytest.approx(total, abs=QUADRATURE_LOGLIK_ATOL)


def test_laplace_is_agq_with_one_point() -> None:
    d = _binary()
    lap = fit_glmm(d, **BIN, random="cluster")
    one = fit_glmm(d, **BIN, random="cluster", method="agq", n_quadrature=1)
    assert one.loglik == pytest.approx(lap.loglik, abs=SAME_OBJECTIVE_LOGLIK_ATOL)
    np.testing.assert_allclose(one.params.to_numpy(), lap.params.to_numpy(), **SAME_OBJECTIVE)


def test_individual_count_rows_equal_cells() -> None:
    """Poisson rows per person-period sum to cell counts: same fit, log-likelihood + constant."""
    d = _counts()
    rng = np.random.default_rng(5)
    rows = []
    for r in d.itertuples(index=False):
        parts = rng.multinomial(r.y, [0.5, 0.3, 0.2])
        share = np.array([0.5, 0.3, 0.2]) * r.pop
        rows += [(r.la, r.q, r.arm, s, k) for s, k in zip(share, parts, strict=True)]
    ind = pd.DataFrame(rows, columns=["la", "q", "arm", "pop", "y"])
    a = fit_glmm(d, **COUNT, random="nested")
    b = fit_glmm(ind, **COUNT, random="nested")
    # same likelihood surface; the two optimiser runs stop within ~1e-8 of its maximum
    np.testing.assert_allclose(
        b.params.to_numpy(), a.params.to_numpy(), rtol=0, atol=SAME_SURFACE_ATOL
    )
    # constant: sum over rows of y log(e_r) - log y_r!  minus the cells' y log(E) - log Y!
    const_rows = float(np.sum(ind["y"] * np.log(ind["pop"]) - special.gammaln(ind["y"] + 1)))
    const_cells = float(np.sum(d["y"] * np.log(d["pop"]) - special.gammaln(d["y"] + 1)))
    assert b.loglik - a.loglik == pytest.approx(const_rows - const_cells, abs=SAME_SURFACE_ATOL)


# ---------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("change", "match"),
    [
        (lambda d: d.assign(y=d["y"] + 0.5), "integer"),
        (lambda d: d.assign(y=np.where(d.index == 3, -1, d["y"])), "non-negative"),
        (lambda d: d.assign(pop=np.where(d.index == 2, 0, d["pop"])), "exposure"),
        (lambda d: d.assign(pop=np.where(d.index == 2, -5, d["pop"])), "exposure"),
    ],
)
def test_bad_counts(change, match) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(DataError, match=match):
        fit_glmm(change(_counts()), **COUNT)


def test_offset_with_nan() -> None:
    d = _counts().assign(logpop=lambda x: np.log(x["pop"]))
    d.loc[4, "logpop"] = np.nan
    kw = {k: v for k, v in COUNT.items() if k != "exposure"}
    with pytest.raises(DataError, match="logpop"):
        fit_glmm(d, **kw, offset="logpop")


def test_events_exceed_trials() -> None:
    d = _binary().groupby(["c", "t", "x"], as_index=False).agg(ev=("y", "sum"), n=("y", "size"))
    d.loc[0, "ev"] = d.loc[0, "n"] + 1
    with pytest.raises(DataError, match="exceed trials"):
        fit_glmm(
            d, outcome="ev", trials="n", cluster="c", period="t", treatment="x", family="binomial"
        )


def test_binary_not_01() -> None:
    d = _binary()
    d.loc[0, "y"] = 2
    with pytest.raises(DataError, match="0/1"):
        fit_glmm(d, **BIN)


def test_complete_separation() -> None:
    d = _binary()
    d.loc[d["x"] == 1, "y"] = 0
    with pytest.raises(DataError, match="[Cc]omplete separation"):
        fit_glmm(d, **BIN)


@pytest.mark.parametrize(
    ("family", "link"),
    [("poisson", "logit"), ("binomial", "inverse"), ("negative_binomial", "identity")],
)
def test_family_link_nonsense(family: str, link: str) -> None:
    with pytest.raises(ValueError, match="makes no sense"):
        fit_glmm(
            _counts(),
            outcome="y",
            cluster="la",
            period="q",
            treatment="arm",
            family=family,
            link=link,
        )


def test_bad_options() -> None:
    with pytest.raises(ValueError, match="agq"):
        fit_glmm(_binary(), **BIN, random="nested", method="agq")
    with pytest.raises(ValueError, match="n_quadrature"):
        fit_glmm(_binary(), **BIN, random="cluster", n_quadrature=5)
    with pytest.raises(ValueError, match="family"):
        fit_glmm(_binary(), outcome="y", cluster="c", period="t", treatment="x", family="gaussian")
    with pytest.raises(ValueError, match="dof"):
        fit_glmm(_binary(), **BIN, dof="kenward-roger")


def test_boundary_flagged() -> None:
    """No cluster variation at all: tau2 is estimated at 0 and the fit is flagged singular."""
    d = _binary(seed=4)
    rng = np.random.default_rng(0)
    d["y"] = (rng.random(len(d)) < special.expit(-0.3 - 0.3 * d["x"])).astype(int)
    res = fit_glmm(d, **BIN, random="nested")
    assert res.singular and res.converged
    assert any("Singular" in m for m in res.messages)
    assert res.variance_components == {"tau2": 0.0, "gamma2": 0.0}
    # with both variances at 0 the model is the logistic GLM: compare with IRLS on the cells
    import statsmodels.api as sm

    cells = d.groupby(["c", "t", "x"], as_index=False).agg(ev=("y", "sum"), n=("y", "size"))
    x = np.column_stack(
        [
            np.ones(len(cells)),
            pd.get_dummies(cells["t"], drop_first=True).to_numpy(float),
            cells["x"].to_numpy(float),
        ]
    )
    glm = sm.GLM(
        np.column_stack([cells["ev"], cells["n"] - cells["ev"]]), x, family=sm.families.Binomial()
    ).fit(tol=1e-12)
    assert res.estimate == pytest.approx(glm.params[-1], rel=GLM_LIMIT_EST_REL)
    assert res.std_error == pytest.approx(glm.bse[-1], rel=GLM_LIMIT_SE_REL)


# ---------------------------------------------------------------- routing through sw.fit


def test_sw_fit_routes_to_fit_glmm() -> None:
    from steppedwedge.models.fit import fit

    d = _binary()
    a = fit(
        d,
        outcome="y",
        cluster="c",
        period="t",
        treatment="x",
        family="binomial",
        random="cluster",
        method="agq",
        n_quadrature=5,
    )
    b = fit_glmm(d, **BIN, random="cluster", method="agq", n_quadrature=5)
    assert isinstance(a, GLMMResult) and a.n_quadrature == 5
    assert a.estimate == b.estimate and a.loglik == b.loglik
    c = fit(
        _counts(),
        outcome="y",
        cluster="la",
        period="q",
        treatment="arm",
        family="poisson",
        exposure="pop",
    )
    assert isinstance(c, GLMMResult) and c.random == "nested" and c.method == "laplace"


# ---------------------------------------------------------------- core algebra


@pytest.mark.parametrize("head", [1, 2])
def test_arrowhead_inverse_equals_dense(head: int) -> None:
    """Closed-form inverse/log-determinant of the cluster-period arrowhead vs numpy."""
    from steppedwedge._core.laplace import _inv_logdet

    rng = np.random.default_rng(head)
    n_i, n_t = 5, 7
    w = rng.uniform(0.5, 30, (n_i, n_t))
    lam = np.r_[rng.uniform(0.1, 1, head), np.full(n_t, 0.3)]
    z = np.concatenate(
        [np.ones((n_t, 1)), rng.integers(0, 2, (n_t, head - 1)), np.eye(n_t)], axis=1
    )
    a = z[None] * lam
    h = (a.transpose(0, 2, 1) * w[:, None, :]) @ a + np.eye(head + n_t)
    hinv, logdet = _inv_logdet(h, head)
    np.testing.assert_allclose(hinv, np.linalg.inv(h), rtol=LINALG_REL, atol=ZERO_ATOL_1E13)
    np.testing.assert_allclose(logdet, np.linalg.slogdet(h)[1], rtol=EXACT_REL)


def test_exact_gradient_matches_differences() -> None:
    """Exact Laplace and AGQ gradients vs central differences of the log-likelihood."""
    from steppedwedge._core.agq import agq_value, agq_value_grad
    from steppedwedge._core.families import make_family
    from steppedwedge._core.laplace import UnitData, laplace_grad, modes

    rng = np.random.default_rng(2)
    n_i, n_t = 6, 5
    trt = (np.arange(n_t)[None, :] > np.arange(n_i)[:, None] % (n_t - 1)).astype(float)
    x = np.concatenate(
        [
            np.ones((n_i, n_t, 1)),
            np.broadcast_to(np.eye(n_t)[:, 1:], (n_i, n_t, n_t - 1)),
            trt[:, :, None],
        ],
        axis=2,
    )
    for fam_name, link in [
        ("poisson", "log"),
        ("binomial", "probit"),
        ("negative_binomial", "log"),
    ]:
        fam = make_family(fam_name, link)
        n = rng.integers(5, 30, (n_i, n_t)).astype(float)
        if fam_name == "binomial":
            y, off = rng.binomial(n.astype(int), 0.3).astype(float), np.zeros((n_i, n_t))
        else:
            y, off, n = rng.poisson(20, (n_i, n_t)).astype(float), np.log(n), np.ones((n_i, n_t))
        z = np.concatenate(
            [
                np.ones((n_i, n_t, 1)),
                trt[:, :, None],
                np.broadcast_to(np.eye(n_t), (n_i, n_t, n_t)),
            ],
            axis=2,
        )
        d = UnitData(
            y=y,
            n=n,
            offset=off,
            weight=np.ones((n_i, n_t)),
            x=x,
            z=z,
            comp=np.array([0, 1] + [2] * n_t),
            n_comp=3,
            tail_start=2,
        )
        beta = np.r_[-0.8 if fam_name == "binomial" else 1.0, rng.normal(0, 0.2, x.shape[2] - 1)]
        sig, al, h = np.array([0.4, 0.2, 0.3]), 1.2, 1e-5
        gb, gs, ga = laplace_grad(d, fam, modes(d, fam, beta, sig, al), sig, al)
        num = [
            (
                modes(d, fam, beta + h * e, sig, al).value
                - modes(d, fam, beta - h * e, sig, al).value
            )
            / (2 * h)
            for e in np.eye(beta.size)
        ]
        nums = [
            (
                modes(d, fam, beta, sig + h * e, al).value
                - modes(d, fam, beta, sig - h * e, al).value
            )
            / (2 * h)
            for e in np.eye(3)
        ]
        np.testing.assert_allclose(gb, num, **CENTRAL_DIFF_LAPLACE)
        np.testing.assert_allclose(gs, nums, **CENTRAL_DIFF_LAPLACE)
        if fam.has_dispersion:
            na = (
                modes(d, fam, beta, sig, al + h).value - modes(d, fam, beta, sig, al - h).value
            ) / (2 * h)
            assert ga == pytest.approx(
                na, rel=CENTRAL_DIFF_LAPLACE["rtol"], abs=CENTRAL_DIFF_LAPLACE["atol"]
            )
        # AGQ (cluster intercept only)
        d1 = UnitData(
            y=y,
            n=n,
            offset=off,
            weight=np.ones((n_i, n_t)),
            x=x,
            z=np.ones((n_i, n_t, 1)),
            comp=np.array([0]),
            n_comp=1,
        )
        s1 = np.array([0.4])

        def agq(b, s_, d1=d1, fam=fam, al=al):  # the AGQ value at the modes of (b, s_)
            return agq_value(d1, fam, modes(d1, fam, b, s_, al), al, 7)

        _, gb1, gs1, ga1 = agq_value_grad(d1, fam, modes(d1, fam, beta, s1, al), al, 7)
        num1 = [
            (agq(beta + h * e, s1) - agq(beta - h * e, s1)) / (2 * h) for e in np.eye(beta.size)
        ]
        np.testing.assert_allclose(gb1, num1, **CENTRAL_DIFF_LAPLACE)
        ns1 = (agq(beta, s1 + h) - agq(beta, s1 - h)) / (2 * h)
        assert gs1[0] == pytest.approx(
            ns1, rel=CENTRAL_DIFF_LAPLACE["rtol"], abs=CENTRAL_DIFF_LAPLACE["atol"]
        )


def test_negative_binomial_without_overdispersion_hits_poisson_limit() -> None:
    """Poisson data: the NB size runs to its bound, flagged, and the estimates are Poisson's."""
    d = _counts(seed=1, n_clusters=10, n_periods=6)
    nb = fit_glmm(d, **{**COUNT, "family": "negative_binomial"}, random="cluster")
    po = fit_glmm(d, **COUNT, random="cluster")
    assert nb.singular and nb.dispersion == pytest.approx(1e6)
    assert any("upper bound" in m for m in nb.messages)
    assert nb.estimate == pytest.approx(po.estimate, abs=POISSON_LIMIT_SE_UNITS * po.std_error)


def test_negative_binomial_nested_one_row_per_cell_warns() -> None:
    """NB size and an observation-level cluster-period effect: weakly identified, warned."""
    from steppedwedge.exceptions import SteppedWedgeWarning

    d = _counts(n_clusters=8, n_periods=5)
    kw = {**COUNT, "family": "negative_binomial"}
    with pytest.warns(SteppedWedgeWarning, match="weakly identified"):
        fit_glmm(d, **kw, random="nested")
    # two rows per cell (e.g. two areas): the cluster-period effect is shared, so no warning
    # (filterwarnings = error would fail the fit)
    half = d.assign(pop=d["pop"] // 2, y=d["y"] // 2)
    rest = d.assign(pop=d["pop"] - d["pop"] // 2, y=d["y"] - d["y"] // 2)
    res = fit_glmm(pd.concat([half, rest]), **kw, random="nested")
    assert res.n_units == 2 * len(d)
