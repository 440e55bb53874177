"""cohort_from_events on hand-built event tables; every expected number derived by hand.

Design used throughout: council A starts 2021-01-01, B 2021-07-01, window 2020-07-01 to
2021-12-31, so the periods are P1 = 2020-07-01/2020-12-31, P2 = 2021-01-01/2021-06-30 and
P3 = 2021-07-01/2021-12-31.  Day counts below are computed with ``datetime.date``
subtraction (calendar arithmetic independent of the code under test).
"""

from __future__ import annotations

from datetime import date

import numpy as np
import pandas as pd
import pytest

from steppedwedge.cohort import CohortFrame, cohort_from_events
from steppedwedge.design import Design
from steppedwedge.exceptions import DataError

P1, P2, P3 = "2020-07-01/2020-12-31", "2021-01-01/2021-06-30", "2021-07-01/2021-12-31"


def days(a: str, b: str) -> int:
    return (date.fromisoformat(b) - date.fromisoformat(a)).days


@pytest.fixture
def design() -> Design:
    return Design.from_start_dates(
        {"A": "2021-01-01", "B": "2021-07-01"}, "starts", window=("2020-07-01", "2021-12-31")
    )


def events() -> pd.DataFrame:
    rows = [
        # child, council, referral, looked-after date, date of birth, sex
        (1, "A", "2020-08-01", None, "2010-01-01", "f"),
        (1, "A", "2021-02-01", None, "2010-01-01", "f"),  # later referral: de-duplicated
        (2, "A", "2021-03-01", "2021-05-01", "2015-06-15", "m"),
        (3, "B", "2021-06-01", None, "2005-12-01", "m"),  # 30 days before B's start
        (4, "B", "2022-02-01", None, "2010-01-01", "f"),  # after the window
        (5, "B", "2021-08-01", "2022-03-01", "2004-01-10", "f"),  # turns 18 on 2022-01-10
        (6, "A", "2020-12-01", "2021-01-20", "2012-01-01", "m"),
        (7, "A", "2020-12-20", None, "2012-01-01", "m"),
        (8, "A", "2020-10-01", "2020-09-01", "2012-01-01", "f"),  # outcome before referral
        (9, "B", "2021-09-01", None, None, "f"),  # missing date of birth
        (11, "A", None, None, "2012-01-01", "m"),  # missing referral date
    ]
    return pd.DataFrame(rows, columns=["id", "la", "ref", "cla", "dob", "sex"])


def build(design: Design, ev: pd.DataFrame | None = None, **kw: object) -> CohortFrame:
    ev = events() if ev is None else ev
    return cohort_from_events(
        ev,
        design=design,
        child="id",
        council="la",
        referral="ref",
        outcome_date="cla",
        birth_date="dob",
        **kw,
    )


def row(co: CohortFrame, child: int) -> pd.Series:
    f = co.frame
    return f.loc[f["child"] == child].iloc[0]


def test_flow_counts(design: Design) -> None:
    co = build(design)
    ex = co.exclusions.set_index("reason")
    assert ex.loc["input event rows", "rows"] == 11
    assert tuple(ex.loc["missing referral date", ["rows", "children"]]) == (1, 1)
    assert tuple(ex.loc["referral outside the window", ["rows", "children"]]) == (1, 1)
    assert tuple(ex.loc["later referral of the child", ["rows", "children", "action"]]) == (
        1,
        0,
        "de-duplicated",
    )
    assert tuple(ex.loc["missing date of birth", ["rows", "children"]]) == (1, 1)
    assert tuple(ex.loc["outcome date before the referral", ["rows", "children"]]) == (1, 1)
    assert tuple(ex.loc["aged 18 or over at referral", ["rows", "children"]]) == (0, 0)
    assert sorted(co.frame["child"]) == [1, 2, 3, 5, 6, 7]
    # rows in = rows out + rows removed; children account likewise (10 distinct ids)
    removed = ex.loc[ex["action"] != "input", "rows"].sum()
    assert len(co.frame) + removed == 11
    assert len(co.frame) + ex["children"].sum() == 10
    assert co.n_children == 6
    assert "Referral cohort" in str(co) and "<table" in co._repr_html_()
    assert repr(co) == "CohortFrame(children=6, events=2, rows_removed=5)"


def test_referral_rule_values(design: Design) -> None:
    co = build(design)
    r1 = row(co, 1)
    assert (r1["cluster"], r1["period"], r1["treated"], bool(r1["contaminated"])) == (
        "A",
        P1,
        0,
        False,
    )
    assert r1["n_referrals"] == 2 and r1["outcome"] == 0 and not r1["censored"]
    assert r1["follow_up_end"] == pd.Timestamp("2022-02-01")
    assert r1["time_at_risk_days"] == days("2020-08-01", "2022-02-01")
    assert r1["sex"] == "f"
    r2 = row(co, 2)
    assert (r2["period"], r2["treated"], r2["outcome"]) == (P2, 1, 1)
    assert r2["time_at_risk_days"] == days("2021-03-01", "2021-05-01") == 61
    assert r2["outcome_date"] == pd.Timestamp("2021-05-01")
    assert r2["age_years"] == 5  # born 2015-06-15, referred 2021-03-01
    assert r2["age_at_referral"] == pytest.approx(days("2015-06-15", "2021-03-01") / 365.25)
    r3 = row(co, 3)
    assert (r3["cluster"], r3["period"], r3["treated"], bool(r3["contaminated"])) == (
        "B",
        P2,
        0,
        True,
    )
    r5 = row(co, 5)  # 18th birthday 2022-01-10 before the 18-month end and before the CLA date
    assert (r5["period"], r5["treated"], r5["outcome"]) == (P3, 1, 0)
    assert bool(r5["censored"]) and r5["censored_by"] == "age"
    assert r5["time_at_risk_days"] == days("2021-08-01", "2022-01-10") == 162
    r6 = row(co, 6)
    assert (r6["period"], r6["treated"], r6["outcome"], bool(r6["contaminated"])) == (
        P1,
        0,
        1,
        True,
    )
    # time in study 2020-12-01 .. 2021-01-20 (50 days), 19 of them on/after A's start
    assert r6["time_at_risk_days"] == 50
    assert r6["days_treated"] == 19
    assert r6["exposure_fraction"] == pytest.approx(19 / 50)
    r7 = row(co, 7)
    assert r7["treated"] == 0 and bool(r7["contaminated"])
    assert r7["time_at_risk_days"] == days("2020-12-20", "2022-06-20") == 547
    assert r7["days_treated"] == days("2021-01-01", "2022-06-20") == 535
    counts = co.counts()
    assert counts["children"].sum() == 6 and counts["events"].sum() == 2
    got = counts.set_index(["cluster", "period"])["children"].to_dict()
    assert got == {("A", P1): 3, ("A", P2): 1, ("B", P2): 1, ("B", P3): 1}


@pytest.mark.parametrize(
    ("rule", "kw", "expected"),
    [
        # child 6: 19/50 = 0.38 of its time treated, 19 days; child 7: 535/547, 535 days
        ("proportion", {"proportion": 0.5}, {6: 0, 7: 1}),
        ("proportion", {"proportion": 0.3}, {6: 1, 7: 1}),
        ("min-weeks", {"min_weeks": 4}, {6: 0, 7: 1}),
        ("min-weeks", {"min_weeks": 2}, {6: 1, 7: 1}),  # 19 >= 14
        ("referral", {}, {6: 0, 7: 0}),
    ],
)
def test_exposure_rules(design: Design, rule: str, kw: dict, expected: dict[int, int]) -> None:
    co = build(design, exposure_rule=rule, **kw)
    for child, treated in expected.items():
        r = row(co, child)
        assert r["treated"] == treated
        # contaminated only if classed as control and referred within 45 days before the start
        assert bool(r["contaminated"]) == (treated == 0)
    # children referred after the start are treated under every rule
    assert row(co, 2)["treated"] == 1 and row(co, 5)["treated"] == 1


def test_contamination_window(design: Design) -> None:
    # child 3 referred 30 days before B's start; child 6 31 and child 7 12 days before A's
    co = build(design, contamination_days=30)
    assert [bool(row(co, c)["contaminated"]) for c in (3, 6, 7)] == [True, False, True]
    co0 = build(design, contamination_days=0)
    assert not co0.frame["contaminated"].any()


def test_data_end_and_follow_up_days(design: Design) -> None:
    co = build(design, data_end="2022-01-31")
    r7 = row(co, 7)
    assert bool(r7["censored"]) and r7["censored_by"] == "data_end"
    assert r7["time_at_risk_days"] == days("2020-12-20", "2022-02-01")
    r1 = row(co, 1)  # follow-up ends 2022-02-01 = data_end + 1 day: complete
    assert not r1["censored"] and r1["time_at_risk_days"] == days("2020-08-01", "2022-02-01")
    co30 = build(design, follow_up=30)
    assert row(co30, 2)["outcome"] == 0  # CLA 61 days after referral
    assert row(co30, 2)["time_at_risk_days"] == 30
    assert row(co30, 6)["outcome"] == 0  # 50 days
    co60 = build(design, follow_up="61D")
    assert row(co60, 2)["outcome"] == 0  # half-open window [r, r + 61 days)
    assert build(design, follow_up="62D").frame.query("child == 2")["outcome"].iloc[0] == 1


def test_missing_dob_kept_and_outcome_before_ignored(design: Design) -> None:
    co = build(design, missing_birth_date="keep", outcome_before_referral="ignore")
    ex = co.exclusions.set_index("reason")
    assert ex.loc["missing date of birth (no age censoring)", "rows"] == 1
    assert ex.loc["missing date of birth (no age censoring)", "action"] == "kept (flagged)"
    assert ex.loc["outcome date before the referral (earlier dates ignored)", "rows"] == 1
    assert sorted(co.frame["child"]) == [1, 2, 3, 5, 6, 7, 8, 9]
    assert np.isnan(row(co, 9)["age_at_referral"])
    assert row(co, 8)["outcome"] == 0


def test_age_range(design: Design) -> None:
    co = build(design, age_range=(12, 17))
    # ages: 1 -> 10, 2 -> 5, 3 -> 15, 5 -> 17, 6 -> 8, 7 -> 8, 8 -> 8 (the age step comes
    # before the outcome-before-referral step, so child 8 leaves here)
    assert sorted(co.frame["child"]) == [3, 5]
    ex = co.exclusions.set_index("reason")
    assert ex.loc["age at referral outside 12-17 years", "children"] == 5
    assert ex.loc["outcome date before the referral", "children"] == 0


def test_aged_over_limit_excluded(design: Design) -> None:
    ev = events()
    ev.loc[len(ev)] = (12, "A", "2021-02-01", None, "2002-06-01", "m")  # 18 on 2020-06-01
    co = build(design, ev)
    assert 12 not in set(co.frame["child"])
    assert co.exclusions.set_index("reason").loc["aged 18 or over at referral", "children"] == 1


def test_child_in_two_councils(design: Design) -> None:
    ev = events()
    ev.loc[len(ev)] = (10, "A", "2020-09-01", None, "2012-01-01", "m")
    ev.loc[len(ev)] = (10, "B", "2021-08-01", None, "2012-01-01", "m")
    with pytest.raises(DataError, match=r"child id\(s\) 10 .*more than one council"):
        build(design, ev)
    co = build(design, ev, on_conflict="first")
    r10 = row(co, 10)
    assert r10["cluster"] == "A" and r10["n_referrals"] == 1
    ex = co.exclusions.set_index("reason")
    assert tuple(
        ex.loc["referral in a second council (on_conflict='first')", ["rows", "children"]]
    ) == (1, 0)


def test_default_start_dates_match_explicit(design: Design) -> None:
    a = build(design)
    b = build(design, start_dates={"A": "2021-01-01", "B": "2021-07-01"})
    pd.testing.assert_frame_equal(a.frame, b.frame)


def test_calendar_grid_with_explicit_start_dates() -> None:
    d = Design.from_start_dates({"A": "2021-02-15", "B": "2021-05-01"}, "2020Q4/2021Q3")
    ev = pd.DataFrame(
        {
            "id": [1, 2, 3],
            "la": ["A", "A", "B"],
            "ref": ["2021-02-01", "2021-02-20", "2021-04-30"],
            "cla": [None] * 3,
        }
    )
    co = cohort_from_events(
        ev,
        design=d,
        child="id",
        council="la",
        referral="ref",
        outcome_date="cla",
        start_dates={"A": "2021-02-15", "B": "2021-05-01"},
    )
    assert co.frame["treated"].tolist() == [0, 1, 0]
    assert [str(p) for p in co.frame["period"]] == ["2021Q1", "2021Q1", "2021Q2"]
    assert co.frame["contaminated"].tolist() == [True, False, True]


def test_bad_input(design: Design) -> None:
    ev = events()
    with pytest.raises(DataError, match="`referral` must name a column"):
        cohort_from_events(
            ev, design=design, child="id", council="la", referral="nope", outcome_date="cla"
        )
    bad = ev.copy()
    bad.loc[0, "la"] = "Z"
    with pytest.raises(DataError, match="not in the design: 'Z'"):
        build(design, bad)
    bad = ev.copy()
    bad.loc[0, "ref"] = "not a date"
    with pytest.raises(DataError, match="not dates"):
        build(design, bad)
    with pytest.raises(ValueError, match="`follow_up`"):
        build(design, follow_up="18 fortnights")
    with pytest.raises(ValueError, match="`exposure_rule`"):
        build(design, exposure_rule="halfway")
    with pytest.raises(ValueError, match="must lie inside the design"):
        build(design, window=("2020-01-01", "2021-12-31"))
    with pytest.raises(DataError, match="dated periods"):
        cohort_from_events(
            ev,
            design=Design.stepped_wedge(2),
            child="id",
            council="la",
            referral="ref",
            outcome_date="cla",
        )
    before = ev.copy()
    build(design, ev)
    pd.testing.assert_frame_equal(ev, before)  # the caller's frame is not modified


def test_trial_data_roundtrip(design: Design) -> None:
    td = build(design).trial_data()
    assert td.family == "binomial" and td.n_rows == 6
