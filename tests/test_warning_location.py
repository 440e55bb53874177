"""Warnings point at the user's line, whatever the depth of the library call chain."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

import steppedwedge as sw
from steppedwedge._warnings import caller_stacklevel, warn


def _gaussian_rows() -> pd.DataFrame:
    rng = np.random.default_rng(3)
    rows = []
    for i in range(6):
        for j in range(4):
            x = int(j > i % 3)
            rows += [(i, j, x, rng.normal(0.5 * x, 1.0)) for _ in range(3)]
    return pd.DataFrame(rows, columns=["cluster", "period", "treated", "y"])


def _caught(call: object) -> list[warnings.WarningMessage]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        call()  # type: ignore[operator]
    return [w for w in caught if issubclass(w.category, sw.SteppedWedgeWarning)]


def test_fit_warning_points_at_this_file() -> None:
    data = _gaussian_rows()
    caught = _caught(
        lambda: sw.fit(
            data, outcome="y", cluster="cluster", period="period", treatment="treated", time="none"
        )
    )
    assert caught, "time='none' should warn"
    assert all(w.filename == __file__ for w in caught), [w.filename for w in caught]


def test_warn_helper_points_at_its_caller() -> None:
    caught = _caught(lambda: warn("a boundary fit"))
    assert len(caught) == 1 and caught[0].filename == __file__


def test_caller_stacklevel_counts_library_frames() -> None:
    # called from a test (outside the package), the frame calling warnings.warn is this one
    assert caller_stacklevel() == 1


@pytest.mark.parametrize("category", [sw.ConvergenceWarning, sw.SmallSampleWarning])
def test_warn_keeps_the_category(category: type[Warning]) -> None:
    caught = _caught(lambda: warn("message", category))
    assert caught[0].category is category
