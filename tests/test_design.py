"""Tests for steppedwedge.design.Design.

Expected matrices are written out by hand from the documented rules (or built with
explicit loops that restate the rule), and calendar lengths are counted by hand from the
real Family Safeguarding / No Wrong Door schedules (reference/real-trials.md §1.1-1.2).
"""

from __future__ import annotations

import dataclasses
import datetime as dt

import numpy as np
import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st
from strategies import (
    cluster_labels,
    designs,
    incomplete_designs,
    stepped_wedge_designs,
)

from steppedwedge.design import Design
from steppedwedge.exceptions import DesignError, SteppedWedgeWarning
from steppedwedge.results import Summary

nan = np.nan


def assert_matrix_equal(actual: np.ndarray, expected: object) -> None:
    np.testing.assert_array_equal(actual, np.asarray(expected, dtype=float))


# ----------------------------------------------------------------------------------------
# stepped_wedge
# ----------------------------------------------------------------------------------------
def test_standard_stepped_wedge_by_hand() -> None:
    d = Design.stepped_wedge(3, 2)
    assert_matrix_equal(
        d.matrix,
        [[0, 1, 1, 1], [0, 1, 1, 1], [0, 0, 1, 1], [0, 0, 1, 1], [0, 0, 0, 1], [0, 0, 0, 1]],
    )
    assert (d.n_clusters, d.n_periods, d.n_sequences) == (6, 4, 3)
    assert d.clusters == (0, 1, 2, 3, 4, 5)
    assert d.periods.equals(pd.RangeIndex(1, 5))
    assert d.period_lengths is None
    assert d.sequences.tolist() == [0, 0, 1, 1, 2, 2]
    assert d.start_period.tolist() == [1, 1, 2, 2, 3, 3]
    assert d.sequence_sizes.tolist() == [2, 2, 2]


@pytest.mark.parametrize("n_seq", [2, 3, 5, 8])
@pytest.mark.parametrize("b", [0, 1, 3])
@pytest.mark.parametrize("t", [1, 2])
@pytest.mark.parametrize("e", [0, 2])
def test_stepped_wedge_period_formula(n_seq: int, b: int, t: int, e: int) -> None:
    d = Design.stepped_wedge(n_seq, baseline_periods=b, periods_per_step=t, extra_treated_periods=e)
    n_periods = b + n_seq * t + e
    assert d.n_periods == n_periods
    expected = np.zeros((n_seq, n_periods))
    for s in range(1, n_seq + 1):  # methods.md §1: sequence s switches at b + (s-1)t + 1
        for j in range(1, n_periods + 1):
            expected[s - 1, j - 1] = 1.0 if j >= b + (s - 1) * t + 1 else 0.0
    assert_matrix_equal(d.matrix, expected)
    # the same design from n_periods instead of n_sequences
    d2 = Design.stepped_wedge(
        n_periods=n_periods, baseline_periods=b, periods_per_step=t, extra_treated_periods=e
    )
    assert d2 == d


def test_default_standard_design_has_s_plus_one_periods() -> None:
    for s in range(2, 10):
        assert Design.stepped_wedge(s).n_periods == s + 1


def test_unequal_clusters_per_sequence() -> None:
    d = Design.stepped_wedge(clusters_per_sequence=[1, 3, 2])
    assert d.n_sequences == 3
    assert d.sequence_sizes.tolist() == [1, 3, 2]
    assert_matrix_equal(d.matrix[:, 1], [1, 0, 0, 0, 0, 0])
    with pytest.raises(DesignError, match="has 3 entries but `n_sequences` is 4"):
        Design.stepped_wedge(4, [1, 3, 2])


def test_transition_periods_exclude_partial_and_fixed() -> None:
    d = Design.stepped_wedge(2, periods_per_step=2, transition_periods=1, extra_treated_periods=0)
    assert_matrix_equal(d.matrix, [[0, nan, 1, 1, 1], [0, 0, 0, nan, 1]])
    d = Design.stepped_wedge(2, transition_periods=2, extra_treated_periods=2, transition="partial")
    assert_matrix_equal(d.matrix, [[0, 1 / 3, 2 / 3, 1, 1], [0, 0, 1 / 3, 2 / 3, 1]])
    d = Design.stepped_wedge(2, transition_periods=1, extra_treated_periods=1, transition=0.25)
    assert_matrix_equal(d.matrix, [[0, 0.25, 1, 1], [0, 0, 0.25, 1]])


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(n_sequences=0), "`n_sequences` must be an integer >= 1"),
        (dict(n_sequences=2.5), "`n_sequences` must be an integer"),
        (dict(n_sequences=3, baseline_periods=-1), "`baseline_periods`"),
        (dict(n_sequences=3, clusters_per_sequence=0), "`clusters_per_sequence`"),
        (dict(), "give `n_sequences`"),
        (dict(n_periods=4, periods_per_step=2), "`n_periods`=4 does not fit"),
        (dict(n_sequences=3, n_periods=5), "disagrees"),
        (dict(n_sequences=3, transition="half"), "`transition` must be one of"),
        (dict(n_sequences=3, transition=1.0), r"lie in \(0, 1\)"),
        (dict(n_sequences=1), "collinear with period"),
    ],
)
def test_stepped_wedge_bad_arguments(kwargs: dict, match: str) -> None:
    with pytest.raises(DesignError, match=match):
        Design.stepped_wedge(**kwargs)


def test_transition_that_removes_all_contrast_is_rejected() -> None:
    # T = 3: [0, NaN, 1] and [0, 0, NaN]: every observed period has one state.
    with pytest.raises(DesignError, match="collinear"):
        Design.stepped_wedge(2, transition_periods=1)


# ----------------------------------------------------------------------------------------
# from_matrix and validation
# ----------------------------------------------------------------------------------------
def test_from_matrix_dataframe_takes_labels() -> None:
    frame = pd.DataFrame(
        [[0, 1, 1], [0, 0, 1]], index=["north", "south"], columns=["2021", "2022", "2023"]
    )
    d = Design.from_matrix(frame)
    assert d.clusters == ("north", "south")
    assert list(d.periods) == ["2021", "2022", "2023"]
    assert frame.iloc[0, 0] == 0  # caller's frame untouched


def test_matrix_is_read_only_copy_and_design_frozen() -> None:
    m = np.array([[0.0, 1.0], [0.0, 0.0]])
    d = Design.from_matrix(m)
    m[0, 0] = 1.0
    assert d.matrix[0, 0] == 0.0
    assert not d.matrix.flags.writeable
    with pytest.raises(ValueError):
        d.matrix[0, 0] = 1.0
    with pytest.raises(dataclasses.FrozenInstanceError):
        d.clusters = ("a", "b")  # type: ignore[misc]


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(matrix=[[0, 1], [0, 0]], clusters=["a", "a"]), "'a' appears at positions 0 and 1"),
        (dict(matrix=[[0, 1, 0], [0, 0, 1]]), "cluster 0 goes back towards control"),
        (dict(matrix=[[0, 1.5], [0, 0]]), r"must lie in \[0, 1\].*1.5 for cluster 0 in period 2"),
        (dict(matrix=[[0, -0.1], [0, 0]]), r"must lie in \[0, 1\]"),
        (dict(matrix=[[1, 1], [1, nan]]), "every observed cell is treated"),
        (dict(matrix=[[0, 0], [nan, 0]]), "no observed cell is treated"),
        (dict(matrix=[[0, 1], [0, 1], [nan, 1]]), "collinear with period"),
        (dict(matrix=[0, 1, 1]), "must be 2-D"),
        (dict(matrix=np.zeros((2, 2, 2))), "must be 2-D"),
        (dict(matrix=[[0, 1], [nan, nan], [0, 0]], clusters=["x", "y", "z"]), "'y' have only NaN"),
        (dict(matrix=[[0, 1], [0, 0]], clusters=["a"]), "one label per matrix row"),
        (dict(matrix=[[0, 1], [0, 0]], periods=[1, 1]), "`periods` labels must be unique"),
        (dict(matrix=[["a", 1], [0, 0]]), "2-D array of numbers"),
        (dict(matrix=[[0, np.inf], [0, 0]]), "finite or NaN"),
        (dict(matrix=np.zeros((0, 3))), "at least one cluster"),
    ],
)
def test_from_matrix_validation(kwargs: dict, match: str) -> None:
    with pytest.raises(DesignError, match=match):
        Design.from_matrix(**kwargs)


def test_design_error_is_value_error() -> None:
    with pytest.raises(ValueError):
        Design.from_matrix([[1, 1]])


def test_opt_outs() -> None:
    d = Design.from_matrix([[0, 1, 0], [0, 0, 1]], allow_reversal=True)
    assert d.allow_reversal
    Design.from_matrix([[0, 1], [0, 1]], check_identifiable=False)
    Design.from_matrix([[1, 1]], check_identifiable=False)
    # partial exposure going down is a reversal too
    with pytest.raises(DesignError, match="goes back"):
        Design.from_matrix([[0, 0.6, 0.4, 1], [0, 0, 0, 1]])
    # a NaN between two equal values is not a reversal
    Design.from_matrix([[0, 1, nan, 1], [0, 0, 0, 1]])


def test_period_grid_must_increase_without_gaps() -> None:
    good = pd.period_range("2023Q1", periods=3, freq="Q")
    Design.from_matrix([[0, 1, 1], [0, 0, 1]], periods=good)
    with pytest.raises(DesignError, match="strictly increasing"):
        Design.from_matrix([[0, 1, 1], [0, 0, 1]], periods=good[[0, 2, 1]])
    with pytest.raises(DesignError, match="without gaps"):
        Design.from_matrix(
            [[0, 1, 1], [0, 0, 1]], periods=pd.PeriodIndex(["2023Q1", "2023Q2", "2023Q4"], freq="Q")
        )


def test_all_nan_period_is_allowed() -> None:
    d = Design.crossover(2, washout_periods=1)
    assert_matrix_equal(d.matrix, [[1, nan, 0], [1, nan, 0], [0, nan, 1], [0, nan, 1]])
    assert d.allow_reversal


# ----------------------------------------------------------------------------------------
# derived quantities
# ----------------------------------------------------------------------------------------
def test_exposure_time_and_start_period_by_hand() -> None:
    d = Design.from_matrix([[0, 0.5, 1, 1], [0, nan, nan, 1], [0, 0, 0, 0], [1, 1, 1, 1]])
    assert d.start_period.tolist() == [1, 3, -1, 0]
    np.testing.assert_array_equal(
        d.exposure_time, [[0, 1, 2, 3], [0, 0, 0, 1], [0, 0, 0, 0], [1, 2, 3, 4]]
    )
    np.testing.assert_array_equal(d.observed, ~np.isnan(d.matrix))
    # ordered by start period, never-treated last
    assert d.sequences.tolist() == [1, 2, 3, 0]


def test_sequences_group_identical_rows_including_nan() -> None:
    m = [[0, 1, 1], [0, 0, 1], [0, 1, 1], [0, nan, 1], [0, 0, 1]]
    d = Design.from_matrix(m)
    assert d.sequences.tolist() == [0, 1, 0, 2, 1]
    assert_matrix_equal(d.sequence_matrix, [[0, 1, 1], [0, 0, 1], [0, nan, 1]])
    # same numbering whatever the row order
    perm = [4, 2, 0, 3, 1]
    assert d.take(perm).sequences.tolist() == [d.sequences[i] for i in perm]


def test_relabel_and_take() -> None:
    d = Design.stepped_wedge(3)
    r = d.relabel(["a", "b", "c"])
    assert r.clusters == ("a", "b", "c")
    assert_matrix_equal(r.matrix, d.matrix)
    t = r.take([2, 0])
    assert t.clusters == ("c", "a")
    assert_matrix_equal(t.matrix, d.matrix[[2, 0]])
    with pytest.raises(DesignError, match="unique"):
        d.relabel(["a", "a", "b"])
    with pytest.raises(DesignError, match="outside"):
        d.take([0, 3])
    with pytest.raises(DesignError, match="collinear"):
        d.take([0])  # one cluster: treatment collinear with period


def test_with_transition_periods() -> None:
    d = Design.stepped_wedge(3, extra_treated_periods=1)
    assert_matrix_equal(
        d.with_transition_periods(1).matrix,
        [[0, nan, 1, 1, 1], [0, 0, nan, 1, 1], [0, 0, 0, nan, 1]],
    )
    assert_matrix_equal(
        d.with_transition_periods(1, transition="partial").matrix,
        [[0, 0.5, 1, 1, 1], [0, 0, 0.5, 1, 1], [0, 0, 0, 0.5, 1]],
    )
    assert d.with_transition_periods(0) == d


def test_parallel() -> None:
    d = Design.parallel(2, 3)
    assert_matrix_equal(d.matrix, [[1], [1], [0], [0], [0]])
    assert d.sequences.tolist() == [0, 0, 1, 1, 1]
    with pytest.raises(DesignError, match="`baseline_periods` must be less than"):
        Design.parallel(1, 1, 2, baseline_periods=2)


def test_crossover_sizes() -> None:
    d = Design.crossover([1, 2], periods_per_arm=2)
    assert_matrix_equal(d.matrix, [[1, 1, 0, 0], [0, 0, 1, 1], [0, 0, 1, 1]])
    with pytest.raises(DesignError, match="one integer or two"):
        Design.crossover([1, 2, 3])


def test_equality_and_hash() -> None:
    a = Design.stepped_wedge(3)
    b = Design.from_matrix(np.array(a.matrix))
    assert a == b and hash(a) == hash(b)
    assert a != a.relabel(["x", "y", "z"])
    assert a != Design.stepped_wedge(3, extra_treated_periods=1)
    assert a != "not a design"


# ----------------------------------------------------------------------------------------
# from_start_dates: the two real SFPC schedules (reference/real-trials.md §1.1, §1.2)
# ----------------------------------------------------------------------------------------
FS_STARTS = {
    "Walsall": "2020-09-01",
    "Lancashire": "2021-02-01",
    "Telford": "2021-06-28",
    "Wandsworth": "2022-01-24",
    "Swindon": "2022-05-24",
}
NWD_STARTS = {
    "Rochdale": "2020-04-01",
    "Warrington": "2021-04-01",
    "Norfolk": "2021-06-01",
    "Redcar": "2021-09-01",
}


def test_family_safeguarding_schedule() -> None:
    d = Design.from_start_dates(FS_STARTS, "starts", window=("2020-03-01", "2022-11-24"))
    assert d.clusters == tuple(FS_STARTS)
    assert list(d.periods) == [
        "2020-03-01/2020-08-31",
        "2020-09-01/2021-01-31",
        "2021-02-01/2021-06-27",
        "2021-06-28/2022-01-23",
        "2022-01-24/2022-05-23",
        "2022-05-24/2022-11-24",
    ]
    # days counted by hand: Mar-Aug 2020 = 31+30+31+30+31+31; Sep 2020-Jan 2021 = 30+31+30+31+31;
    # 1 Feb-27 Jun 2021 = 28+31+30+31+27; 28 Jun 2021-23 Jan 2022 = 3+31+31+30+31+30+31+23;
    # 24 Jan-23 May 2022 = 8+28+31+30+23; 24 May-24 Nov 2022 = 8+30+31+31+30+31+24.
    assert d.period_lengths.tolist() == [184, 153, 147, 210, 120, 185]
    np.testing.assert_array_equal(np.round(d.period_lengths_months), [6, 5, 5, 7, 4, 6])
    assert_matrix_equal(
        d.matrix,
        [
            [0, 1, 1, 1, 1, 1],
            [0, 0, 1, 1, 1, 1],
            [0, 0, 0, 1, 1, 1],
            [0, 0, 0, 0, 1, 1],
            [0, 0, 0, 0, 0, 1],
        ],
    )
    assert d.n_sequences == 5
    # the rule does not matter when every start is a period boundary
    for rule in ("partial", "exclude"):
        d2 = Design.from_start_dates(
            FS_STARTS, "starts", window=("2020-03-01", "2022-11-24"), transition=rule
        )
        assert_matrix_equal(d2.matrix, d.matrix)


def test_no_wrong_door_schedule() -> None:
    d = Design.from_start_dates(NWD_STARTS, "starts", window=("2019-10-01", "2022-03-31"))
    assert list(d.periods) == [
        "2019-10-01/2020-03-31",
        "2020-04-01/2021-03-31",
        "2021-04-01/2021-05-31",
        "2021-06-01/2021-08-31",
        "2021-09-01/2022-03-31",
    ]
    # Oct 2019-Mar 2020 = 31+30+31+31+29+31 (2020 leap); Apr 2020-Mar 2021 = 365;
    # Apr-May 2021 = 30+31; Jun-Aug 2021 = 30+31+31; Sep 2021-Mar 2022 = 30+31+30+31+31+28+31.
    assert d.period_lengths.tolist() == [183, 365, 61, 92, 212]
    np.testing.assert_array_equal(np.round(d.period_lengths_months), [6, 12, 2, 3, 7])
    assert_matrix_equal(
        d.matrix,
        [[0, 1, 1, 1, 1], [0, 0, 1, 1, 1], [0, 0, 0, 1, 1], [0, 0, 0, 0, 1]],
    )


def test_starts_shared_dates_and_never_treated() -> None:
    starts = {"a": "2021-01-01", "b": "2021-01-01", "c": "2021-07-01", "d": None}
    d = Design.from_start_dates(starts, "starts", window=("2020-07-01", "2021-12-31"))
    assert d.period_lengths.tolist() == [184, 181, 184]
    assert_matrix_equal(d.matrix, [[0, 1, 1], [0, 1, 1], [0, 0, 1], [0, 0, 0]])
    assert d.sequences.tolist() == [0, 0, 1, 2]


def test_starts_requires_window() -> None:
    with pytest.raises(DesignError, match="`window=.*required"):
        Design.from_start_dates(FS_STARTS, "starts")
    with pytest.raises(DesignError, match="end on or after"):
        Design.from_start_dates(FS_STARTS, "starts", window=("2022-01-01", "2021-01-01"))


# ----------------------------------------------------------------------------------------
# from_start_dates on calendar grids: hand-computed day fractions
# ----------------------------------------------------------------------------------------
MONTHLY = {"a": "2023-02-15", "b": "2023-04-01", "c": None}


@pytest.mark.parametrize(
    "rule, row_a",
    [
        ("first-treated", [0, 1, 1, 1, 1, 1]),
        ("partial", [0, 14 / 28, 1, 1, 1, 1]),  # 15..28 Feb 2023 = 14 of 28 days
        ("exclude", [0, nan, 1, 1, 1, 1]),
    ],
)
def test_monthly_grid(rule: str, row_a: list) -> None:
    d = Design.from_start_dates(MONTHLY, "2023-01/2023-06", transition=rule)
    assert isinstance(d.periods, pd.PeriodIndex) and d.periods.freqstr == "M"
    assert_matrix_equal(d.matrix, [row_a, [0, 0, 0, 1, 1, 1], [0, 0, 0, 0, 0, 0]])
    assert d.period_lengths is None


@pytest.mark.parametrize(
    "rule, expected",
    [
        ("first-treated", [[0, 1, 1, 1], [0, 0, 1, 1], [0, 1, 1, 1], [0, 0, 0, 1]]),
        # Q2 2023 has 30+31+30 = 91 days; from 15 May: 17 + 30 = 47 days; from 30 Jun: 1 day
        ("partial", [[0, 47 / 91, 1, 1], [0, 0, 1, 1], [0, 1 / 91, 1, 1], [0, 0, 0, 1]]),
        ("exclude", [[0, nan, 1, 1], [0, 0, 1, 1], [0, nan, 1, 1], [0, 0, 0, 1]]),
    ],
)
def test_quarterly_grid(rule: str, expected: list) -> None:
    starts = {"A": "2023-05-15", "B": "2023-07-01", "C": "2023-06-30", "D": "2023-10-01"}
    d = Design.from_start_dates(starts, "2023Q1/2023Q4", transition=rule)
    assert list(d.periods.astype(str)) == ["2023Q1", "2023Q2", "2023Q3", "2023Q4"]
    assert_matrix_equal(d.matrix, expected)


@pytest.mark.parametrize(
    "rule, expected",
    [
        ("first-treated", [[0, 1, 1, 1], [1, 1, 1, 1], [0, 0, 0, 0]]),
        # 2021: 1 Jul..31 Dec = 184 of 365 days.  2020 (leap): first day -> 1.
        ("partial", [[0, 184 / 365, 1, 1], [1, 1, 1, 1], [0, 0, 0, 0]]),
        ("exclude", [[0, nan, 1, 1], [1, 1, 1, 1], [0, 0, 0, 0]]),
    ],
)
def test_yearly_grid(rule: str, expected: list) -> None:
    starts = {"x": "2021-07-01", "y": "2020-01-01", "z": None}
    d = Design.from_start_dates(starts, pd.period_range("2020", "2023", freq="Y"), transition=rule)
    assert_matrix_equal(d.matrix, expected)


def test_leap_year_partial() -> None:
    d = Design.from_start_dates({"x": "2020-03-01", "y": None}, "2019/2021", transition="partial")
    assert_matrix_equal(d.matrix, [[0, 306 / 366, 1], [0, 0, 0]])  # Mar..Dec 2020 = 306 days


def test_transition_periods_after_start() -> None:
    d = Design.from_start_dates(MONTHLY, "2023-01/2023-06", transition_periods=1)
    assert_matrix_equal(d.matrix, [[0, nan, 1, 1, 1, 1], [0, 0, 0, nan, 1, 1], [0] * 6])


@pytest.mark.parametrize(
    "start_dates",
    [
        {"a": "2023-02-15", "b": dt.date(2023, 4, 1), "c": None},
        {"a": dt.datetime(2023, 2, 15), "b": pd.Timestamp("2023-04-01"), "c": pd.NaT},
        {"a": np.datetime64("2023-02-15"), "b": "1 April 2023", "c": float("nan")},
        pd.Series(["2023-02-15", "2023-04-01", None], index=["a", "b", "c"]),
        pd.Series(pd.to_datetime(["2023-02-15", "2023-04-01", None]), index=["a", "b", "c"]),
        pd.DataFrame({"council": ["a", "b", "c"], "go_live": ["2023-02-15", "2023-04-01", None]}),
    ],
)
def test_start_date_input_forms(start_dates: object) -> None:
    d = Design.from_start_dates(start_dates, "2023-01/2023-06")
    assert d.clusters == ("a", "b", "c")
    assert_matrix_equal(d.matrix, [[0, 1, 1, 1, 1, 1], [0, 0, 0, 1, 1, 1], [0] * 6])


def test_start_date_errors() -> None:
    with pytest.raises(DesignError, match="start date of cluster 'b' is not a date; got 'soon'"):
        Design.from_start_dates({"a": "2023-02-15", "b": "soon"}, "2023-01/2023-06")
    with pytest.raises(DesignError, match="cluster 'b' is not a date; got 3.5"):
        Design.from_start_dates({"a": "2023-02-15", "b": 3.5}, "2023-01/2023-06")
    with pytest.raises(
        DesignError, match="before the periods 2023-01 to 2023-06: 'b' \\(2022-12-31\\)"
    ):
        Design.from_start_dates({"a": "2023-02-15", "b": "2022-12-31"}, "2023-01/2023-06")
    with pytest.raises(DesignError, match="exactly two columns"):
        Design.from_start_dates(pd.DataFrame({"a": [1], "b": [2], "c": [3]}), "2023-01/2023-06")
    with pytest.raises(DesignError, match="unique"):
        Design.from_start_dates(
            pd.DataFrame({"c": ["a", "a"], "d": ["2023-02-01", "2023-03-01"]}), "2023-01/2023-06"
        )
    with pytest.raises(DesignError, match="mapping"):
        Design.from_start_dates(["2023-02-01"], "2023-01/2023-06")
    with pytest.raises(DesignError, match="time of day"):
        Design.from_start_dates({"a": "2023-02-01 12:00", "b": None}, "2023-01/2023-06")
    with pytest.raises(ValueError, match="`transition` must be one of"):
        Design.from_start_dates(MONTHLY, "2023-01/2023-06", transition="half")


def test_start_date_outside_grid() -> None:
    with pytest.warns(SteppedWedgeWarning, match="before the periods.*'b'"):
        d = Design.from_start_dates(
            {"a": "2023-02-15", "b": "2022-12-31", "c": None}, "2023-01/2023-06", allow_outside=True
        )
    assert_matrix_equal(d.matrix[1], [1] * 6)
    with pytest.warns(SteppedWedgeWarning, match="after the periods.*'b' \\(2023-07-01\\).*never"):
        d = Design.from_start_dates({"a": "2023-02-15", "b": "2023-07-01"}, "2023-01/2023-06")
    assert_matrix_equal(d.matrix[1], [0] * 6)
    with pytest.warns(SteppedWedgeWarning, match="after the window"):
        Design.from_start_dates(
            {"a": "2020-06-01", "b": "2025-01-01"}, "starts", window=("2020-01-01", "2020-12-31")
        )


@pytest.mark.parametrize(
    "periods, match",
    [
        ("2023Q1-2023Q4", '"start/end"'),
        ("2023Q4/2023Q1", "before the start"),
        ("2023Q1/2023-12", "same frequency"),
        ("spring/autumn", "cannot read"),
        (pd.PeriodIndex(["2023-01", "2023-03"], freq="M"), "without gaps"),
        (pd.PeriodIndex(["2023-02", "2023-01"], freq="M"), "strictly increasing"),
        (pd.PeriodIndex(["2023-01", "2023-01"], freq="M"), "strictly increasing"),
        (42, "PeriodIndex"),
    ],
)
def test_bad_period_grids(periods: object, match: str) -> None:
    with pytest.raises(DesignError, match=match):
        Design.from_start_dates(MONTHLY, periods)


# ----------------------------------------------------------------------------------------
# to_frame / from_frame
# ----------------------------------------------------------------------------------------
def test_to_frame_by_hand() -> None:
    d = Design.from_matrix([[0, 1], [0, nan]], clusters=["p", "q"], check_identifiable=False)
    f = d.to_frame()
    assert list(f.columns) == [
        "cluster",
        "period",
        "sequence",
        "treatment",
        "exposure_time",
        "observed",
    ]
    assert f["cluster"].tolist() == ["p", "p", "q", "q"]
    assert f["period"].tolist() == [1, 2, 1, 2]
    np.testing.assert_array_equal(f["treatment"], [0, 1, 0, nan])
    assert f["exposure_time"].tolist() == [0, 1, 0, 0]
    assert f["observed"].tolist() == [True, True, True, False]
    assert f["sequence"].tolist() == [0, 0, 1, 1]


def test_from_frame_round_trip_calendar_and_starts() -> None:
    q = Design.from_start_dates(MONTHLY, "2023-01/2023-06", transition="exclude")
    f = q.to_frame()
    assert isinstance(f["period"].dtype, pd.PeriodDtype)
    assert Design.from_frame(f) == q
    # shuffled rows and unobserved rows removed give the same design
    g = f.sample(frac=1.0, random_state=3)
    g = g[g["observed"]].drop(columns=["observed"])
    assert (
        Design.from_frame(g).take(
            np.argsort([q.clusters.index(c) for c in pd.unique(g["cluster"])])
        )
        == q
    )
    s = Design.from_start_dates(FS_STARTS, "starts", window=("2020-03-01", "2022-11-24"))
    assert Design.from_frame(s.to_frame()) == s


def test_from_frame_errors() -> None:
    f = Design.stepped_wedge(2).to_frame()
    with pytest.raises(DesignError, match="lacks the column"):
        Design.from_frame(f.drop(columns="treatment"))
    with pytest.raises(DesignError, match="more than one row for cluster 0 in period 1"):
        Design.from_frame(pd.concat([f, f.iloc[[0]]]))
    with pytest.raises(DesignError, match="missing values"):
        Design.from_frame(f.assign(cluster=[None] + f["cluster"].tolist()[1:]))
    with pytest.raises(DesignError, match="numeric"):
        Design.from_frame(f.assign(treatment="yes"))
    with pytest.raises(DesignError, match="DataFrame"):
        Design.from_frame(f.to_dict())  # type: ignore[arg-type]


def test_from_frame_does_not_mutate() -> None:
    f = Design.stepped_wedge(3).to_frame()
    before = f.copy()
    Design.from_frame(f)
    pd.testing.assert_frame_equal(f, before)


# ----------------------------------------------------------------------------------------
# text output
# ----------------------------------------------------------------------------------------
def test_summary_repr_html() -> None:
    d = Design.stepped_wedge(3, [1, 2, 1], transition_periods=1, extra_treated_periods=1)
    summary = d.summary()
    assert isinstance(summary, Summary)  # the shared result protocol, text form unchanged
    text = str(summary)
    assert summary.as_text() == text
    assert "| sequence | n | 1 | 2 | 3 | 4 | 5 |" in summary.as_markdown()
    assert "<table" in summary.as_html() and "sizes 1, 2, 1" in summary.as_html()
    assert "4 clusters, 5 periods, 3 sequences (sizes 1, 2, 1)" in text
    assert "8 control, 8 treated, 0 partial, 4 not observed" in text
    assert text.splitlines()[-3:] == [
        "       1   1 |  0  .  1  1  1",
        "       2   2 |  0  0  .  1  1",
        "       3   1 |  0  0  0  .  1",
    ]
    assert str(d) == text
    assert repr(d) == "Design(n_clusters=4, n_periods=5, n_sequences=3)"
    html = d._repr_html_()
    assert html.count("<tr>") == 1 + 3 and 'title="not observed"' in html
    s = Design.from_start_dates(NWD_STARTS, "starts", window=("2019-10-01", "2022-03-31"))
    assert "2020-04-01/2021-03-31  (365 d, 12.0 mo)" in str(s.summary())
    assert "length (days)" in s._repr_html_()


# ----------------------------------------------------------------------------------------
# properties (hypothesis)
# ----------------------------------------------------------------------------------------
@pytest.mark.property
@given(designs())
def test_to_frame_from_frame_round_trip(d: Design) -> None:
    back = Design.from_frame(
        d.to_frame(), allow_reversal=d.allow_reversal, check_identifiable=d.check_identifiable
    )
    assert back == d


@pytest.mark.property
@given(designs(), st.data())
def test_relabelling_leaves_matrix_and_sequences(d: Design, data: st.DataObject) -> None:
    labels = data.draw(cluster_labels(d.n_clusters))
    r = d.relabel(labels)
    assert r.clusters == tuple(labels)
    np.testing.assert_array_equal(r.matrix, d.matrix)
    np.testing.assert_array_equal(r.sequences, d.sequences)
    np.testing.assert_array_equal(r.exposure_time, d.exposure_time)


@pytest.mark.property
@given(designs(), st.randoms(use_true_random=False))
def test_row_permutation_keeps_sequence_structure(d: Design, random: object) -> None:
    perm = list(range(d.n_clusters))
    random.shuffle(perm)  # type: ignore[attr-defined]
    p = d.take(perm)
    np.testing.assert_array_equal(p.sequence_matrix, d.sequence_matrix)
    np.testing.assert_array_equal(p.sequences, d.sequences[perm])


@pytest.mark.property
@given(designs())
def test_exposure_time_is_monotone_and_consistent(d: Design) -> None:
    e = d.exposure_time
    assert (np.diff(e, axis=1) >= 0).all()
    for i, s in enumerate(d.start_period):
        if s < 0:
            assert (e[i] == 0).all()
        else:
            assert (e[i, :s] == 0).all() and e[i, s] == 1
            assert np.all(np.diff(e[i, s:]) == 1)
    # brute force: rows with identical values share a sequence, and only those
    for a in range(d.n_clusters):
        for b in range(d.n_clusters):
            same = np.array_equal(d.matrix[a], d.matrix[b], equal_nan=True)
            assert same == (d.sequences[a] == d.sequences[b])


@pytest.mark.property
@given(stepped_wedge_designs())
def test_stepped_wedge_rows_start_untreated(d: Design) -> None:
    for row in d.matrix:
        obs = row[~np.isnan(row)]
        assert obs[0] == 0.0
    assert (d.start_period != 0).all()  # -1 if only transition cells follow the switch
    assert (d.exposure_time[:, 0] == 0).all()


@pytest.mark.property
@given(st.one_of(stepped_wedge_designs(), incomplete_designs()))
def test_valid_designs_never_go_back_to_control(d: Design) -> None:
    for row in d.matrix:
        obs = row[~np.isnan(row)]
        assert (np.diff(obs) >= 0).all()
