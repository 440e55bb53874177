"""``sw.comparison_councils``: matching, balance, pre-trend tests, DiD and placebo.

Each number is checked against an independent computation: a hand-written greedy matcher,
scipy's SLSQP for the synthetic weights, scipy's Welch t test, the staggered estimator on a
hand-built frame, and a brute-force linear-coefficient computation of the pooled variance.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
from _tolerances import DENSE_REL, EXACT, LINALG, MC_K, NNLS_RECOVERY_ATOL, UNIT_PERTURBATION_REL
from scipy import optimize, stats

import steppedwedge as sw
from steppedwedge.comparison import simplex_weights
from steppedwedge.exceptions import DataError, OptionError
from steppedwedge.models.staggered import fit_staggered

#: Five West Midlands / North councils with made-up start years (years ending 31 March).
TRIAL = {"E08000026": 2022, "E08000029": 2022, "E10000031": 2021, "E08000021": 2021}
OUT = "cpp_31_march"


@pytest.fixture(scope="module")
def dfe() -> pd.DataFrame:
    return sw.datasets.load_dfe_panel()


@pytest.fixture(scope="module")
def cc(dfe: pd.DataFrame) -> sw.ComparisonCouncils:
    before = dfe.copy()
    res = sw.comparison_councils(TRIAL, dfe, outcome=OUT, n=8)
    pd.testing.assert_frame_equal(dfe, before)  # the panel is not modified
    return res


def _log_rates(dfe: pd.DataFrame, codes: list[str], years: list[int]) -> pd.DataFrame:
    d = dfe[dfe["la_code"].isin(codes) & dfe["year"].isin(years)]
    w = d.pivot(index="la_code", columns="year", values=OUT).astype(float)
    p = d.pivot(index="la_code", columns="year", values="population_0_17").astype(float)
    return np.log(1e4 * (w + 0.5) / p).loc[codes, years]


def test_nearest_neighbours_match_a_hand_written_greedy_matcher(dfe, cc) -> None:
    pre = cc.pre_years
    assert pre == list(range(2013, 2021))
    pool = list(cc.prepared.pool)
    codes = list(TRIAL) + pool
    rates = _log_rates(dfe, codes, pre)
    wide = dfe[dfe["year"].isin(pre)].pivot(
        index="la_code", columns="year", values="population_0_17"
    )
    pop = np.log(wide.loc[codes].astype(float)).mean(axis=1)
    feat = pd.concat([rates, pop.rename("pop")], axis=1).to_numpy(dtype=float)
    z = (feat - feat.mean(0)) / feat.std(0, ddof=1)
    z[:, :-1] /= np.sqrt(len(pre))  # the trajectory counts as one feature
    d = np.sqrt(((z[: len(TRIAL), None, :] - z[None, len(TRIAL) :, :]) ** 2).sum(-1))
    chosen: list[int] = []
    while len(chosen) < 8:
        for i in range(len(TRIAL)):
            if len(chosen) < 8:
                row = d[i].copy()
                row[chosen] = np.inf
                chosen.append(int(np.argmin(row)))
    assert cc.councils == [pool[j] for j in chosen]
    np.testing.assert_allclose(
        cc.matches["distance"], [d[k % len(TRIAL), j] for k, j in enumerate(chosen)], **LINALG
    )
    # boundary changes and incomplete series are not candidates, and are listed
    assert set(cc.excluded["reason"]) == {"boundary change", "missing outcome or exposure"}
    assert not set(cc.excluded["council"]) & set(pool)


def test_region_exact_keeps_each_match_in_its_trial_councils_region(dfe) -> None:
    res = sw.comparison_councils(TRIAL, dfe, outcome=OUT, n=8, region="exact")
    region = dfe.drop_duplicates("la_code").set_index("la_code")["region_name"]
    for t, c in zip(res.matches["trial_council"], res.matches["comparison_council"], strict=True):
        assert region[t] == region[c]


def test_synthetic_weights_solve_the_simplex_problem() -> None:
    rng = np.random.default_rng(3)
    donors = rng.normal(size=(12, 5))
    truth = np.zeros(12)
    truth[[1, 4, 7]] = [0.5, 0.3, 0.2]
    np.testing.assert_allclose(
        simplex_weights(donors, truth @ donors), truth, atol=NNLS_RECOVERY_ATOL
    )
    target = rng.normal(size=5) * 3  # outside the hull: a boundary solution
    w = simplex_weights(donors, target)
    ref = optimize.minimize(
        lambda v: np.sum((v @ donors - target) ** 2),
        np.full(12, 1 / 12),
        method="SLSQP",
        bounds=[(0, 1)] * 12,
        constraints=[{"type": "eq", "fun": lambda v: v.sum() - 1}],
        options={"ftol": 1e-14, "maxiter": 500},
    )
    assert w.min() >= 0 and abs(w.sum() - 1) < 1e-12
    obj = np.sum((w @ donors - target) ** 2)
    assert obj <= ref.fun * (1 + 1e-7)


def test_synthetic_method_reports_its_weights(dfe) -> None:
    res = sw.comparison_councils(TRIAL, dfe, outcome=OUT, n=6, method="synthetic")
    assert 1 <= len(res.councils) <= 6
    np.testing.assert_allclose(res.weights.sum(), 1.0, **EXACT)
    assert (res.matches["synthetic_weight"] > 0).all()


def test_balance_table_and_pre_trend_tests_by_hand(dfe, cc) -> None:
    rates = _log_rates(dfe, list(TRIAL) + cc.councils, cc.pre_years)
    row = cc.balance.set_index("feature").loc["log rate 2015"]
    t, c = rates.loc[list(TRIAL), 2015], rates.loc[cc.councils, 2015]
    np.testing.assert_allclose([row["trial"], row["comparison"]], [t.mean(), c.mean()], **EXACT)
    smd = (t.mean() - c.mean()) / np.sqrt((t.var() + c.var()) / 2)
    np.testing.assert_allclose(row["smd_comparison"], smd, **LINALG)
    tidy = cc.tidy().set_index("term")
    years = np.array(cc.pre_years, dtype=float)
    slopes = rates.apply(lambda r: np.polyfit(years, r.to_numpy(), 1)[0], axis=1)
    for term, v in (("pre-trial level difference", rates.mean(axis=1)),
                    ("pre-trial slope difference", slopes)):  # fmt: skip
        ref = stats.ttest_ind(v.loc[list(TRIAL)], v.loc[cc.councils], equal_var=False)
        np.testing.assert_allclose(tidy.loc[term, "statistic"], ref.statistic, **LINALG)
        np.testing.assert_allclose(tidy.loc[term, "p_value"], ref.pvalue, **LINALG)


def _hand_frame(dfe: pd.DataFrame, starts: dict[str, int], comps: list[str], years) -> pd.DataFrame:
    d = dfe[dfe["la_code"].isin([*starts, *comps]) & dfe["year"].isin(years)].copy()
    d["treated"] = [
        int(c in starts and y >= starts[c]) for c, y in zip(d.la_code, d.year, strict=True)
    ]
    d["pop"] = d["population_0_17"].astype(float)
    d["y"] = d[OUT].astype(float)
    return d[["la_code", "year", "y", "pop", "treated"]]


def _cs(frame: pd.DataFrame, **kw):
    with warnings.catch_warnings():  # refined-variance notes: not what is compared here
        warnings.simplefilter("ignore", sw.SmallSampleWarning)
        return fit_staggered(
            frame, outcome="y", cluster="la_code", period="year", treatment="treated",
            family="poisson", exposure="pop", method="callaway-santanna", **kw,
        )  # fmt: skip


def test_did_estimate_is_callaway_santanna_on_the_hand_built_panel(dfe, cc) -> None:
    did = cc.did()
    ref = _cs(_hand_frame(dfe, TRIAL, cc.councils, cc.years))
    np.testing.assert_allclose(did.estimate, ref.estimate, **LINALG)
    np.testing.assert_allclose(did.std_error_neyman, ref.std_error_neyman, **LINALG)
    assert did.df == len(TRIAL) + 8 - 3  # councils minus cohorts (2021, 2022, never)
    # the randomised comparison only: the last cohort (2022) is a comparison only
    trial_only = cc.did(use_comparison=False, variance="neyman")
    ref0 = _cs(_hand_frame(dfe, TRIAL, [], cc.years))
    np.testing.assert_allclose(trial_only.estimate, ref0.estimate, **LINALG)
    np.testing.assert_allclose(trial_only.std_error, ref0.std_error_neyman, **LINALG)
    assert any("last to start" in m for m in trial_only.messages)


def test_pooled_standard_error_by_brute_force(dfe) -> None:
    """theta = sum_i a_i' y_i; Var = sum_i a_i' S a_i with S pooled within cohorts."""
    trial = {"E08000026": 2019, "E08000029": 2019, "E10000031": 2018}
    res = sw.comparison_councils(trial, dfe, outcome=OUT, n=4, pre_periods=3, end=2020)
    frame = res.frame()
    did = res.did(estimand="event-time", event_times=[-1, 0, 1])
    councils = list(dict.fromkeys(frame["council"]))
    n_t = len(res.years)
    y = np.log((frame[OUT].to_numpy(float) + 0.5) / frame["exposure"].to_numpy(float))
    y = y.reshape(len(councils), n_t)
    cohort = [trial.get(c, 0) for c in councils]

    def estimates(yy: np.ndarray) -> np.ndarray:  # Gaussian cells = the same log rates
        f = frame.assign(lr=yy.ravel())
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            r = fit_staggered(
                f, outcome="lr", cluster="council", period="year", treatment="treated",
                method="callaway-santanna", estimand="event-time", event_times=[-1, 0, 1],
            )  # fmt: skip
        return r.tidy()["estimate"].to_numpy()

    base = estimates(y)
    coef = np.zeros((len(base), len(councils), n_t))  # exact: the estimator is linear in y
    for i in range(len(councils)):
        for t in range(n_t):
            yy = y.copy()
            yy[i, t] += 1.0
            coef[:, i, t] = estimates(yy) - base
    resid = np.vstack(
        [
            y[[k for k, g in enumerate(cohort) if g == h]]
            - y[[k for k, g in enumerate(cohort) if g == h]].mean(0)
            for h in sorted(set(cohort))
        ]  # fmt: skip
    )
    s = resid.T @ resid / (len(councils) - len(set(cohort)))
    se = np.sqrt(np.einsum("rit,tu,riu->r", coef, s, coef))
    np.testing.assert_allclose(did.tidy()["std_error"].to_numpy(), se, rtol=UNIT_PERTURBATION_REL)
    np.testing.assert_allclose(did.tidy()["estimate"].to_numpy(), base, rtol=DENSE_REL)
    assert did.df == len(councils) - len(set(cohort))


def test_single_council_cohorts_get_a_pooled_standard_error(dfe) -> None:
    """Family Valued had one council per wave: the pooled variance still applies."""
    trial = {**TRIAL, "E08000014": 2023}
    res = sw.comparison_councils(trial, dfe, outcome=OUT, n=10)
    did = res.did()
    assert np.isfinite(did.std_error) and did.std_error > 0
    with pytest.warns(sw.SmallSampleWarning, match="single cluster"):
        neyman = res.did(variance="neyman")
    assert np.isnan(neyman.std_error)


def test_placebo_in_time_is_the_did_on_shifted_starts(dfe, cc) -> None:
    placebo = cc.placebo(years_before=2)
    fake = {c: y - 2 for c, y in TRIAL.items()}
    years = [y for y in cc.years if y < min(TRIAL.values())]
    ref = _cs(_hand_frame(dfe, fake, cc.councils, years))
    np.testing.assert_allclose(placebo.estimate, ref.estimate, **LINALG)
    with pytest.raises(DataError, match="years_before"):
        cc.placebo(years_before=0)


def test_presentation(cc) -> None:
    import matplotlib

    matplotlib.use("Agg")
    text = cc.summary().as_text()
    assert "parallel trends" in text and "Balance" in text
    assert "<table" in cc._repr_html_()
    assert "ComparisonCouncils(8 councils" in repr(cc)
    ax = cc.plot()
    np.testing.assert_allclose(ax.lines[0].get_ydata(), cc.trend["trial"], **EXACT)


def test_bad_input(dfe, cc) -> None:
    with pytest.raises(DataError, match="no column.*'cla_in_care'"):
        sw.comparison_councils(TRIAL, dfe, outcome="cla_in_care")
    with pytest.raises(DataError, match=r"E08000029.*also in the trial"):
        sw.comparison_councils(TRIAL, dfe, outcome=OUT, candidates=["E08000029", "E06000001"])
    with pytest.raises(DataError, match="E99999999"):
        sw.comparison_councils({"E99999999": 2020}, dfe, outcome=OUT)
    with pytest.raises(DataError, match="at least 2"):
        sw.comparison_councils({"E08000026": 2014}, dfe, outcome=OUT)
    with pytest.raises(DataError, match="missing"):  # CLA columns start in 2021
        sw.comparison_councils(TRIAL, dfe, outcome="cla_31_march")
    with pytest.raises(OptionError, match="`method`"):
        sw.comparison_councils(TRIAL, dfe, outcome=OUT, method="kmeans")
    with pytest.raises(OptionError, match="`n`"):
        sw.comparison_councils(TRIAL, dfe, outcome=OUT, n=0)
    with pytest.raises(OptionError, match="int"):
        sw.comparison_councils({"E08000026": "2022"}, dfe, outcome=OUT)
    # one cohort and no comparison councils: nothing to compare it with, named
    one = sw.comparison_councils({"E08000026": 2022, "E08000029": 2022}, dfe, outcome=OUT, n=3)
    with pytest.raises(DataError, match=r"cohort starting 2022 \(councils E08000026, E08000029\)"):
        one.did(use_comparison=False)
    with pytest.raises(OptionError, match="fixed"):
        cc.did(method="sun-abraham")
    with pytest.raises(OptionError, match="n_permutations"):
        cc.did(n_permutations=99, rng=1)


@pytest.mark.slow
def test_placebo_trials_in_non_trial_councils_reject_at_the_nominal_rate(dfe) -> None:
    """Fake trials among real councils (no programme anywhere): the DiD rejects ~5%.

    100 placebo trials on child protection plans 2013-2025: 8 random councils, cohorts of
    2 starting 2019-2022, 16 nearest-neighbour comparison councils.  Monte-Carlo SE of a
    5% rate with 100 draws: 0.022; the check allows MC_K = 4 of them.
    """
    complete = (
        dfe[~dfe["boundary_change"]]
        .groupby("la_code")[OUT]
        .agg(lambda s: bool(s.notna().all() and len(s) == 13))
    )
    codes = np.array(sorted(complete.index[complete]))
    panel = dfe[dfe["la_code"].isin(codes)]
    rng = np.random.default_rng(20261201)
    n_sims, alpha, pvalues = 100, 0.05, []
    for _ in range(n_sims):
        pick = rng.choice(codes, size=8, replace=False)
        trial = {str(c): 2019 + k // 2 for k, c in enumerate(pick)}
        res = sw.comparison_councils(trial, panel, outcome=OUT, n=16)
        pvalues.append(res.did().pvalue)
    rate = float(np.mean(np.array(pvalues) < alpha))
    mc_se = np.sqrt(alpha * (1 - alpha) / n_sims)
    assert abs(rate - alpha) <= MC_K * mc_se, (rate, mc_se)


@pytest.mark.examples
def test_howto_page_code_runs(capsys: pytest.CaptureFixture[str]) -> None:
    """docs/howto/comparison_councils.rst: every code block runs and its claims hold."""
    import re
    from pathlib import Path

    import matplotlib

    matplotlib.use("Agg")
    page = Path(__file__).resolve().parents[1] / "docs" / "howto" / "comparison_councils.rst"
    blocks = re.findall(r"\.\. code-block:: python\n\n((?:   .*\n|\n)+)", page.read_text())
    assert len(blocks) >= 5
    ns: dict[str, object] = {}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for block in blocks:
            code = "\n".join(line[3:] for line in block.splitlines())
            exec(compile(code, str(page), "exec"), ns)  # noqa: S102 - our own documentation
    out = capsys.readouterr().out
    assert "Comparison councils  15: " in out and "parallel trends" in out
    cc = ns["cc"]
    bal = cc.balance.set_index("feature")
    years = [f"log rate {y}" for y in cc.pre_years]
    assert bal.loc[years, "smd_comparison"].abs().max() < 0.35  # as the page says
    assert bal.loc[years, "smd_candidates"].max() > 0.9
    gap = (
        bal.loc["mean pre-trial log rate", "trial"]
        - bal.loc["mean pre-trial log rate", "all_candidates"]
    )
    assert 0.15 < gap < 0.25  # "about 20% above"
    assert ns["did"].pvalue > 0.5 and ns["did"].df == 16


def test_trial_given_as_an_annual_design(dfe, cc) -> None:
    starts = {c: f"{y}-01-01" for c, y in TRIAL.items()}
    design = sw.Design.from_start_dates(starts, "2013/2025")
    res = sw.comparison_councils(design, dfe, outcome=OUT, n=8)
    assert res.starts == TRIAL
    assert res.councils == cc.councils


def test_pooled_t_statistic_is_exactly_t_distributed_for_normal_trajectories() -> None:
    """Independent normal trajectories with one covariance: t on councils minus cohorts df.

    8 councils (cohorts of 1, 2 and 2 starting in years 2-4, 3 never treated), 6 years,
    council levels and a common trend (both removed by the DiD), AR(1)-like covariance, no
    effect: the statistic is t with 8 - 4 = 4 df.  3,000 draws: a KS test against t(4)
    (it rejects the normal reference, whose tails are too thin at 4 df).
    """
    from steppedwedge.comparison._did import pooled_std_errors

    rng = np.random.default_rng(11)
    cohort = np.array([2, 3, 3, 4, 4, 6, 6, 6])
    lag = np.abs(np.subtract.outer(np.arange(6), np.arange(6)))
    chol = np.linalg.cholesky(0.04 + 0.09 * 0.6**lag)
    stats_t = []
    for _ in range(3000):
        level = rng.normal(0, 0.5, (8, 1))
        y = 4.0 + 0.03 * np.arange(6) + level + rng.normal(size=(8, 6)) @ chol.T
        _, est, se, df = pooled_std_errors(y, cohort, "simple", None)
        stats_t.append(est[0] / se[0])
    assert df == 4
    assert stats.kstest(stats_t, stats.t(df).cdf).pvalue > 0.01
    assert stats.kstest(stats_t, stats.norm.cdf).pvalue < 0.01
