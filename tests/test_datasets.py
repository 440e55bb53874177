"""Tests for the bundled synthetic council example (steppedwedge.datasets)."""

from __future__ import annotations

import importlib.util
import pathlib
import warnings
from importlib import resources

import numpy as np
import pandas as pd
import pytest
from _tolerances import ZERO_ATOL_1E9, printed

from steppedwedge.data import TrialData
from steppedwedge.datasets import load_council_characteristics, load_councils
from steppedwedge.exceptions import DataError

PANEL_COLUMNS = [
    "council",
    "quarter",
    "period",
    "region",
    "population_0_17",
    "treated",
    "looked_after",
    "entries_into_care",
    "cpp",
    "cin",
]
COUNT_COLUMNS = ["population_0_17", "looked_after", "entries_into_care", "cpp", "cin"]
TOOL = pathlib.Path(__file__).resolve().parents[1] / "tools" / "make_council_example.py"


@pytest.fixture(scope="module")
def panel() -> pd.DataFrame:
    return load_councils()


@pytest.fixture(scope="module")
def chars() -> pd.DataFrame:
    return load_council_characteristics()


def test_panel_columns_and_shape(panel) -> None:
    assert list(panel.columns) == PANEL_COLUMNS
    assert panel.shape == (17 * 20, 10)
    councils = [f"Council {c}" for c in "ABCDEFGHIJKLMNOPQ"]
    assert sorted(panel["council"].unique()) == councils
    quarters = [str(p) for p in pd.period_range("2022Q1", "2026Q4", freq="Q")]
    assert list(panel["quarter"].unique()) == quarters
    assert (panel.groupby("council")["period"].apply(list) == [list(range(1, 21))] * 17).all()
    # period and quarter agree
    q = pd.PeriodIndex(panel["quarter"], freq="Q")
    assert np.array_equal((q - pd.Period("2022Q1", "Q")).map(lambda d: d.n) + 1, panel["period"])
    assert panel["quarter"].map(type).eq(str).all() and panel["council"].map(type).eq(str).all()


def test_counts_are_non_negative_integers(panel) -> None:
    for col in COUNT_COLUMNS + ["treated", "period"]:
        assert panel[col].dtype == np.int64, col
        assert (panel[col] >= 0).all(), col
    assert panel["population_0_17"].between(15_000, 150_000).all()
    assert set(panel["treated"].unique()) == {0, 1}


def test_rates_are_realistic(panel) -> None:
    year = panel["quarter"].str[:4]
    by_year = panel.groupby(year)[COUNT_COLUMNS].sum()
    per_10k = by_year.div(by_year["population_0_17"], axis=0) * 1e4
    # England: ~70 looked after, ~26 entries a year, ~42 on plans, ~335 in need per 10,000
    assert per_10k["looked_after"].between(50, 90).all()
    assert (4 * per_10k["entries_into_care"]).between(15, 40).all()
    assert per_10k["cpp"].between(25, 65).all()
    assert per_10k["cin"].between(250, 450).all()
    # between-council spread of log rates in the range seen across English councils
    rate = panel.groupby("council").apply(
        lambda d: d["looked_after"].sum() / d["population_0_17"].sum(), include_groups=False
    )
    assert 0.2 < np.log(rate).std() < 0.6


def test_treatment_is_a_stepped_wedge(panel, chars) -> None:
    wide = panel.pivot(index="council", columns="period", values="treated")
    assert (np.diff(wide.to_numpy(), axis=1) >= 0).all()  # never returns to control
    assert (wide[[1, 2, 3, 4]] == 0).all().all()  # 2022 is a baseline year
    assert (wide[20] == 1).all()  # everyone treated by the end
    first = wide.to_numpy().argmax(axis=1) + 1
    assert len(np.unique(first)) == 7
    assert sorted(chars["wave"].unique()) == list(range(1, 8))
    assert chars["wave"].value_counts().between(2, 3).all()


def test_start_dates_match_treated_column(panel, chars) -> None:
    # rule: the quarter containing the start date is the first treated quarter
    start_q = pd.PeriodIndex(pd.to_datetime(chars["start_date"]), freq="Q")
    first_treated = (
        panel[panel["treated"] == 1].groupby("council")["quarter"].min().loc[chars["council"]]
    )
    assert [str(q) for q in start_q] == first_treated.tolist()
    # start dates are the first day of the quarter, and one per wave
    assert (pd.to_datetime(chars["start_date"]) == start_q.start_time).all()
    assert chars.groupby("wave")["start_date"].nunique().eq(1).all()


def test_characteristics_agree_with_panel(panel, chars) -> None:
    assert list(chars.columns) == [
        "council",
        "region",
        "population_0_17",
        "baseline_looked_after_per_10k",
        "wave",
        "start_date",
    ]
    assert len(chars) == 17 and chars["council"].is_unique
    first = panel[panel["period"] == 1].set_index("council").loc[chars["council"]]
    assert (first["population_0_17"].to_numpy() == chars["population_0_17"].to_numpy()).all()
    assert (first["region"].to_numpy() == chars["region"].to_numpy()).all()
    assert 4 <= chars["region"].nunique() <= 5
    base = panel[panel["period"] <= 4]
    rate = (
        (1e4 * base["looked_after"] / base["population_0_17"]).groupby(base["council"]).mean()
    ).loc[chars["council"]]
    np.testing.assert_allclose(
        chars["baseline_looked_after_per_10k"], rate, atol=printed(1) + ZERO_ATOL_1E9
    )  # CSV rounded to 1 decimal


def test_loaders_return_fresh_frames() -> None:
    a = load_councils()
    a.loc[0, "looked_after"] = -1
    a["extra"] = 1
    b = load_councils()
    assert b.loc[0, "looked_after"] >= 0 and "extra" not in b.columns
    c = load_council_characteristics()
    c.loc[0, "wave"] = 99
    assert load_council_characteristics().loc[0, "wave"] != 99


def test_generator_reproduces_committed_files() -> None:
    if not TOOL.exists():  # pragma: no cover - e.g. testing from an sdist without tools/
        pytest.skip("tools/make_council_example.py is not present")
    spec = importlib.util.spec_from_file_location("make_council_example", TOOL)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    councils_csv, chars_csv = module.make_councils()
    data = resources.files("steppedwedge.datasets").joinpath("data")
    assert data.joinpath("councils.csv").read_bytes() == councils_csv.encode("utf-8")
    assert data.joinpath("council_characteristics.csv").read_bytes() == chars_csv.encode("utf-8")


def test_panel_is_valid_trial_data(panel, chars) -> None:
    from steppedwedge.design import Design

    starts = dict(zip(chars["council"], chars["start_date"], strict=True))
    design = Design.from_start_dates(starts, pd.period_range("2022Q1", "2026Q4", freq="Q"))
    roles = dict(
        outcome="entries_into_care",
        exposure="population_0_17",
        family="poisson",
        cluster="council",
        period="quarter",
        treatment="treated",
        design=design,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        td = TrialData.from_frame(panel, **roles)
    cells = td.cells()
    assert cells.shape == (17, 20) and cells.observed.all()
    np.testing.assert_array_equal(cells.treatment, design.matrix)
    assert cells.total.sum() == panel["entries_into_care"].sum()
    # a treated flag switched off in one cell is caught and located
    bad = panel.copy()
    bad.loc[(bad["council"] == "Council C") & (bad["quarter"] == "2026Q4"), "treated"] = 0
    with pytest.raises(DataError, match=r"cluster 'Council C', period 2026Q4: data 0, design 1"):
        TrialData.from_frame(bad, **roles)


def test_dfe_panel_matches_published_totals() -> None:
    from steppedwedge.datasets import load_dfe_panel

    dfe = load_dfe_panel()
    assert dfe.shape == (1976, 12)
    assert dfe["la_code"].nunique() == 161
    assert dfe["year"].min() == 2013 and dfe["year"].max() == 2025
    assert not dfe.duplicated(["la_code", "year"]).any()
    assert dfe["cla_31_march"].dtype == "Int64" and dfe["boundary_change"].dtype == bool
    # missing cells as documented with the source (suppressed / not applicable)
    assert dfe["population_0_17"].isna().sum() == 21
    assert dfe["cla_31_march"].notna().sum() == 755
    assert dfe.loc[dfe["year"] < 2021, "cla_31_march"].isna().all()
    totals = dfe.groupby("year")[["cla_31_march", "cla_started_in_year"]].sum()
    # DfE's national figures (rounded to the nearest 10 in the publication): the LA rows
    # add up to them up to that rounding (and the suppressed tiny LAs)
    published_cla = {2021: 80_780, 2022: 82_090, 2023: 83_760, 2024: 83_530, 2025: 81_770}
    published_starts = {2021: 28_470, 2022: 31_100, 2023: 33_090, 2024: 33_130, 2025: 32_270}
    for year, value in published_cla.items():
        assert abs(totals.loc[year, "cla_31_march"] - value) <= 10, year
    for year, value in published_starts.items():
        assert abs(totals.loc[year, "cla_started_in_year"] - value) <= 10, year
    # ONS 0-17 population used for 2025 rates (sum of LA rows, as in the DfE CLA file)
    assert dfe.loc[dfe["year"] == 2025, "population_0_17"].sum() == 12_183_016
