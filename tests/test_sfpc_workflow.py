"""Synthetic FS-/NWD-like data and the real-trial how-to (docs/howto/real_trial_workflow.rst)."""

from __future__ import annotations

import re
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from _tolerances import MC_K

from steppedwedge.cohort import CohortFrame, cohort_from_events
from steppedwedge.datasets._sfpc import SyntheticTrial, make_fs_like, make_nwd_like
from steppedwedge.design import Design

PAGE = Path(__file__).resolve().parents[1] / "docs" / "howto" / "real_trial_workflow.rst"


def _cohort(trial: SyntheticTrial, **options: Any) -> CohortFrame:
    """The analysis cohort of a synthetic trial on its own start-date design."""
    d = Design.from_start_dates(trial.start_dates, "starts", window=trial.window)
    return cohort_from_events(
        trial.events,
        design=d,
        child="child_id",
        council="council",
        referral="referral_date",
        outcome_date="looked_after_date",
        birth_date="birth_date",
        **options,
    )


def test_fs_like_facts_and_sizes() -> None:
    fs = make_fs_like(rng=11)
    ev = fs.events
    assert ev.attrs["synthetic"] is True and "SYNTHETIC" in fs.description
    assert ev["child_id"].nunique() == 27_425
    assert fs.start_dates == {
        "Walsall": "2020-09-01",
        "Lancashire": "2021-02-01",
        "Telford": "2021-06-28",
        "Wandsworth": "2022-01-24",
        "Swindon": "2022-05-24",
    }
    assert fs.window == ("2020-03-01", "2022-11-24")
    # referrals per child: 71.7% / 20.3% / 5.52% / rest; the share with one (k x MC SE)
    per_child = ev.groupby("child_id").size()
    p1 = (per_child == 1).mean()
    assert abs(p1 - 0.717) < MC_K * np.sqrt(0.717 * 0.283 / len(per_child))
    # same seed, same data; another seed, other data
    pd.testing.assert_frame_equal(
        make_fs_like(n_children=500, rng=3).events, make_fs_like(n_children=500, rng=3).events
    )
    assert not make_fs_like(n_children=500, rng=4).events.equals(
        make_fs_like(n_children=500, rng=3).events
    )


@pytest.mark.slow
def test_fs_like_control_risk_near_published_baseline() -> None:
    fs = make_fs_like(n_children=60_000, rng=5)
    co = _cohort(fs)
    ctrl = co.frame[co.frame["treated"] == 0]
    risk = ctrl.groupby("cluster")["outcome"].agg(["mean", "size"])
    for council, base in fs.baseline_risk.items():
        p, n = risk.loc[council, "mean"], risk.loc[council, "size"]
        # the generator's age gradient moves the marginal risk slightly: allow 8% relative bias
        assert abs(p - base) < MC_K * np.sqrt(base * (1 - base) / n) + 0.08 * base, council


@pytest.mark.slow
def test_odds_ratio_is_applied() -> None:
    fs = make_fs_like(n_children=40_000, odds_ratio=0.5, rng=8)
    co = _cohort(fs)
    from steppedwedge.models.fixed_effects import fit_fixed_effects

    res = fit_fixed_effects(
        co.frame,
        outcome="outcome",
        cluster="cluster",
        period="period",
        treatment="treated",
        covariates="age_years",
        vcov="model",
        dof="z",
    )
    assert abs(res.estimate - np.log(0.5)) < MC_K * res.std_error


def test_nwd_like() -> None:
    nwd = make_nwd_like(rng=1)
    assert nwd.events["child_id"].nunique() == 10_871
    d = Design.from_start_dates(nwd.start_dates, "starts", window=nwd.window)
    assert np.round(d.period_lengths / 30.44).tolist() == [6, 12, 2, 3, 7]
    co = _cohort(nwd, age_range=(12, 17))
    assert co.frame["censored_by"].eq("age").sum() > 0
    assert co.frame["age_years"].between(12, 17).all()


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="`odds_ratio`"):
        make_fs_like(odds_ratio=0)
    with pytest.raises(ValueError, match="`n_children`"):
        make_nwd_like(n_children=2)


@pytest.mark.examples
def test_howto_page_code_runs(capsys: pytest.CaptureFixture[str]) -> None:
    text = PAGE.read_text()
    blocks = re.findall(r"\.\. code-block:: python\n\n((?:   .*\n|\n)+)", text)
    assert len(blocks) >= 8
    ns: dict[str, object] = {}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for block in blocks:
            code = "\n".join(line[3:] for line in block.splitlines())
            exec(compile(code, str(PAGE), "exec"), ns)  # noqa: S102 - our own documentation
    out = capsys.readouterr().out
    assert "SYNTHETIC" in out
    assert "12 0.083" in out
    assert "treatment:period[2020-03-01/2020-08-31]" in out
