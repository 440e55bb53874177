"""Fast label-coding paths of ``steppedwedge.data`` against the general (pandas) paths.

The fast paths (integer table look-up, Period ordinals, text without the extension-array
overhead, ``repeated_cells`` instead of ``DataFrame.duplicated``) must give exactly the codes,
labels and answers of the general path they replace; awkward inputs (unsorted, categorical,
mixed types, missing labels, NaT, wide integer ranges) are checked against pandas directly.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st

from steppedwedge.data import (
    TrialData,
    _as_index,
    _sorted_codes,
    _sorted_index_codes,
    repeated_cells,
)
from steppedwedge.exceptions import DataError


def _general(values: pd.Series) -> tuple[list, np.ndarray]:
    """The general path: pandas' sorted factorisation (order of appearance if unsortable)."""
    try:
        codes, uniques = pd.factorize(values, sort=True)
    except TypeError:
        codes, uniques = pd.factorize(values, sort=False)
    return list(uniques), np.asarray(codes, dtype=np.int64)


AWKWARD = {
    "unsorted ints": pd.Series([5, 3, 9, 3, 5, -2]),
    "wide int range": pd.Series([10**12, 3, 10**12, -(10**11)]),
    "uint": pd.Series(np.array([7, 2, 7, 0], dtype=np.uint16)),
    "text": pd.Series(["b", "a", "B", "a ", "ä", "b"], dtype="string"),
    "object text": pd.Series(["b", "a", "c", "a"], dtype=object),
    "mixed objects": pd.Series([2, "a", 1.5, "a", 2], dtype=object),
    "categorical": pd.Series(pd.Categorical(["z", "x", "z", "y"], categories=["z", "y", "x"])),
    "floats": pd.Series([2.5, -0.0, 0.0, 2.5]),
    "periods": pd.Series(pd.PeriodIndex(["2021Q3", "2020Q1", "2021Q3", "2020Q4"], freq="Q")),
    "monthly periods": pd.Series(pd.period_range("2019-11", periods=5, freq="M")[::-1]),
    "dates": pd.Series(pd.to_datetime(["2021-02-01", "2020-01-01", "2021-02-01"])),
}


@pytest.mark.parametrize("values", AWKWARD.values(), ids=AWKWARD.keys())
def test_sorted_codes_equal_the_general_path(values: pd.Series) -> None:
    labels, codes = _sorted_codes(values)
    ref_labels, ref_codes = _general(values)
    np.testing.assert_array_equal(codes, ref_codes)
    assert labels == ref_labels
    assert [type(x) for x in labels] == [type(x) for x in ref_labels]


@pytest.mark.parametrize("values", AWKWARD.values(), ids=AWKWARD.keys())
def test_sorted_index_codes_equal_the_general_path(values: pd.Series) -> None:
    index, codes = _sorted_index_codes(values)
    ref_labels, ref_codes = _general(values)
    ref = _as_index(values, ref_labels)
    np.testing.assert_array_equal(codes, ref_codes)
    assert index.equals(ref) and index.dtype == ref.dtype and type(index) is type(ref)
    if isinstance(ref, pd.PeriodIndex):
        assert index.freq == ref.freq and list(index) == list(ref)


def test_periods_with_nat_take_the_general_path() -> None:
    values = pd.Series(pd.PeriodIndex(["2020Q2", None, "2020Q1"], freq="Q"))
    index, codes = _sorted_index_codes(values)
    ref_labels, ref_codes = _general(values)
    np.testing.assert_array_equal(codes, ref_codes)
    assert index.equals(_as_index(values, ref_labels))


FRAMES = {
    "ints": pd.DataFrame({"c": [1, 1, 2, 2], "t": [1, 2, 1, 2]}),
    "ints repeated": pd.DataFrame({"c": [1, 1, 2, 1], "t": [1, 2, 1, 2]}),
    "text x periods": pd.DataFrame(
        {"c": pd.Series(["a", "a", "b"], dtype="string"), "t": pd.period_range("2020", periods=3)}
    ),
    "missing labels": pd.DataFrame({"c": ["a", None, np.nan, "a"], "t": [1.0, 2.0, 2.0, 1.0]}),
    "NaT": pd.DataFrame({"c": [1, 1, 2], "t": pd.PeriodIndex([None, None, "2020Q1"], freq="Q")}),
    "mixed objects": pd.DataFrame(
        {"c": pd.Series([1, 1.0, True, "1"], dtype=object), "t": [0, 0, 0, 0]}
    ),
    "bool x float": pd.DataFrame({"c": [True, False, True], "t": [0.0, -0.0, 0.0]}),
    "categorical": pd.DataFrame(
        {"c": pd.Categorical(["x", "y", "x"]), "t": pd.Categorical([1, 1, 2])}
    ),
    "same column": pd.DataFrame({"c": [1, 2, 1], "t": [0, 0, 0]}),
}


@pytest.mark.parametrize("frame", FRAMES.values(), ids=FRAMES.keys())
def test_repeated_cells_equals_duplicated(frame: pd.DataFrame) -> None:
    assert repeated_cells(frame, "c", "t") == bool(frame.duplicated(["c", "t"]).any())
    assert repeated_cells(frame, "c", "c") == bool(frame.duplicated(["c"]).any())


def test_repeated_cells_with_duplicated_column_names() -> None:
    frame = pd.DataFrame([[1, 1, 1], [1, 2, 1]], columns=["c", "t", "c"])
    assert repeated_cells(frame, "c", "t") == bool(frame.duplicated(["c", "t"]).any())


@given(
    c=st.lists(st.sampled_from(["a", "b", "A", "b "]), min_size=1, max_size=12),
    t=st.lists(st.integers(-3, 3), min_size=12, max_size=12),
)
def test_repeated_cells_property(c: list[str], t: list[int]) -> None:
    frame = pd.DataFrame({"c": pd.Series(c, dtype="string"), "t": t[: len(c)]})
    frame["p"] = pd.PeriodIndex([pd.Period("2020", "Y") + k for k in frame["t"]])
    for col in ("t", "p"):
        assert repeated_cells(frame, "c", col) == bool(frame.duplicated(["c", col]).any())


def test_trial_data_period_and_text_labels_as_before() -> None:
    """Periods and text labels through the fast paths: the labels, codes and refusals."""
    df = pd.DataFrame(
        {
            "site": pd.Series(["B", "A", "B", "A"], dtype="string"),
            "q": pd.PeriodIndex(["2021Q1", "2020Q4", "2020Q4", "2021Q1"], freq="Q"),
            "arm": [1, 0, 0, 1],
            "y": [3.0, 4.0, 5.0, 6.0],
        }
    )
    td = TrialData.from_frame(df, outcome="y", cluster="site", period="q", treatment="arm")
    assert td.clusters == ("A", "B")
    assert td.periods.equals(pd.PeriodIndex(["2020Q4", "2021Q1"], freq="Q"))
    np.testing.assert_array_equal(td.cluster_codes, [1, 0, 1, 0])
    np.testing.assert_array_equal(td.period_codes, [1, 0, 0, 1])
    bad = df.assign(q=pd.PeriodIndex(["2021Q1", None, "2020Q4", "2021Q1"], freq="Q"))
    with pytest.raises(DataError, match="period labels cannot be missing"):
        TrialData.from_frame(bad, outcome="y", cluster="site", period="q", treatment="arm")
    near = df.assign(site=pd.Series(["B", "A", "B", "a"], dtype="string"))
    with pytest.raises(DataError, match="differ only by"):
        TrialData.from_frame(near, outcome="y", cluster="site", period="q", treatment="arm")
