"""Continuous-time decay (``VarianceComponents(decay_scale="time")``).

References are exact algebra: period mid-points from the stored lengths, and (for power,
simulation and fitting) explicit covariance matrices ``gamma2 * r**|t_j - t_k|`` built here
independently of the library's covariance code.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import steppedwedge as sw
from steppedwedge.design import Design
from steppedwedge.exceptions import DesignError, OptionError

#: Family Safeguarding wedges (days), see Design.from_start_dates.
FS_LENGTHS = [184.0, 153.0, 147.0, 210.0, 120.0, 185.0]


def fs_design() -> Design:
    starts = {
        "Walsall": "2020-09-01",
        "Lancashire": "2021-02-01",
        "Telford": "2021-06-28",
        "Wandsworth": "2022-01-24",
        "Swindon": "2022-05-24",
    }
    return Design.from_start_dates(starts, "starts", window=("2020-03-01", "2022-11-24"))


# ---------------------------------------------------------------- step 1: the option
def test_decay_scale_default_and_validation() -> None:
    assert sw.VarianceComponents(decay=0.5).decay_scale == "period"
    vc = sw.VarianceComponents(gamma2=0.1, decay=0.5, decay_scale="time")
    assert vc.decay_scale == "time"
    assert "decay_scale='time'" in repr(vc)
    with pytest.raises(OptionError, match="decay_scale"):
        sw.VarianceComponents(decay=0.5, decay_scale="days")  # type: ignore[arg-type]
    with pytest.raises(OptionError, match="needs a `decay`"):
        sw.VarianceComponents(gamma2=0.1, decay_scale="time")
    fc = sw.VarianceComponents.from_correlations(0.05, cac=0.5, decay=0.7, decay_scale="time")
    assert fc.decay_scale == "time"
    assert fc.with_(decay=0.6).decay_scale == "time"


def test_describe_says_which_scale() -> None:
    vc = sw.VarianceComponents(tau2=0.05, gamma2=0.1, decay=0.5)
    assert "per period (decay_scale='period')" in vc.describe()
    assert "per year (decay_scale='time'" in vc.with_(decay_scale="time").describe()


def test_period_midpoints_from_start_dates() -> None:
    d = fs_design()
    lengths = np.array(FS_LENGTHS)
    np.testing.assert_array_equal(d.period_lengths, lengths)
    # exact algebra: start of period j plus half its length, in years of 365.25 days
    expected = (np.concatenate([[0.0], np.cumsum(lengths)[:-1]]) + lengths / 2) / 365.25
    np.testing.assert_allclose(d.period_midpoints(), expected, rtol=0, atol=1e-15)
    assert not d.period_midpoints().flags.writeable


def test_period_midpoints_calendar_grid() -> None:
    d = Design.from_start_dates({"A": "2023-04-01", "B": "2023-07-01"}, "2023Q1/2023Q4")
    days = np.array([90.0, 91.0, 92.0, 92.0])  # 2023 is not a leap year
    expected = (np.cumsum(days) - days / 2) / 365.25
    np.testing.assert_allclose(d.period_midpoints(), expected, rtol=0, atol=1e-15)


def test_period_midpoints_missing_is_design_error() -> None:
    with pytest.raises(DesignError, match="no period lengths or dates"):
        Design.stepped_wedge(3, 1).period_midpoints()
    # labels that are not a calendar grid do not count as dates
    d = Design.from_matrix([[0, 1], [0, 0]], periods=pd.Index(["a", "b"]))
    with pytest.raises(DesignError, match="decay_scale='time'"):
        d.period_midpoints()
