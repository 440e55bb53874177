"""The planning-result protocol: summary(), tidy(), _repr_html_(), plot(ax=None).

Every planning result is produced by a real call; the ``tidy()`` numbers are checked against
the result's attributes and, where another code path computes the same quantity (``power``,
``Design``), against that path.
"""

from __future__ import annotations

import importlib
import subprocess
import sys
from collections.abc import Callable
from typing import Any

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
from _tolerances import EXACT_REL, LINALG_REL, ZERO_ATOL_1E12
from matplotlib.axes import Axes  # noqa: E402
from scipy import stats  # noqa: E402

import steppedwedge as sw  # noqa: E402
from steppedwedge.exceptions import OptionError  # noqa: E402
from steppedwedge.planning.result import PlanningResult, PlanningResultMixin  # noqa: E402
from steppedwedge.results import Summary  # noqa: E402

# Identities between two evaluations of the same floating-point formula: relative 1e-12
# leaves room for a different summation order only.
EXACT = {"rel": 1e-12, "abs": 1e-15}

VC = sw.VarianceComponents.from_correlations(0.05, cac=0.8)


def _power() -> Any:
    return sw.power(sw.Design.stepped_wedge(3, 2), effect=0.3, variance=VC, cluster_size=10)


def _expected() -> Any:
    return sw.expected_power(
        sw.Design.stepped_wedge(2, 2), effect=0.5, variance=VC, cluster_sizes=[5, 10, 20, 40]
    )


def _assurance() -> Any:
    return sw.assurance(
        sw.Design.stepped_wedge(4, 2),
        effect=0.3,
        icc=[0.01, 0.05, 0.1],
        cac=[0.5, 1.0],
        cluster_size=20,
        probabilities={"icc": [1, 2, 1]},
    )


def _assurance_draws() -> Any:
    return sw.assurance(
        sw.Design.stepped_wedge(4, 2),
        effect=stats.norm(0.3, 0.05),
        icc=[0.02, 0.08],
        cluster_size=20,
        n_draws=50,
        rng=3,
    )


def _search() -> Any:
    return sw.search_designs(
        n_clusters=8, n_periods=5, effect=0.3, variance=VC, cluster_size=20, transition_periods=1
    )


def _curve() -> Any:
    return sw.power_curve(
        sw.Design.stepped_wedge(3),
        vary="clusters_per_sequence",
        values=[1, 2, 3],
        effect=0.3,
        variance=VC,
        cluster_size=10,
    )


def _design_effect() -> Any:
    return sw.design_effect(n_sequences=4, cluster_size=20, icc=0.05, cac=0.8)


def _information() -> Any:
    return sw.information_content(sw.Design.stepped_wedge(3), variance=VC, cluster_size=10)


def _weights() -> Any:
    return sw.cell_weights(sw.Design.stepped_wedge(3), variance=VC, cluster_size=10)


def _simulated() -> Any:
    return sw.simulate_power(
        sw.Design.stepped_wedge(3),
        effect=0.5,
        variance=VC,
        cluster_size=20,
        analysis="known-variance",
        n_sims=20,
        rng=1,
        progress=False,
    )


FACTORIES: dict[str, Callable[[], Any]] = {
    "PowerResult": _power,
    "ExpectedPowerResult": _expected,
    "AssuranceResult": _assurance,
    "AssuranceResult(draws)": _assurance_draws,
    "DesignSearchResult": _search,
    "PowerCurve": _curve,
    "DesignEffect": _design_effect,
    "CellMap(information)": _information,
    "CellMap(weights)": _weights,
    "SimulatedPowerResult": _simulated,
}


@pytest.fixture(autouse=True)
def _close_figures() -> Any:
    yield
    plt.close("all")


@pytest.mark.parametrize("name", list(FACTORIES))
def test_every_planning_result_follows_the_protocol(name: str) -> None:
    res = FACTORIES[name]()
    assert type(res).__name__ == name.split("(")[0]
    assert isinstance(res, PlanningResult)
    summary = res.summary()
    assert isinstance(summary, Summary)
    assert str(res) == summary.as_text()
    assert res._repr_html_() == summary.as_html()
    assert res._repr_html_().startswith("<div")
    tidy = res.tidy()
    assert isinstance(tidy, pd.DataFrame) and len(tidy) >= 1
    assert all(c == c.lower() and " " not in c for c in map(str, tidy.columns))
    _, ax = plt.subplots()
    assert res.plot(ax=ax) is ax
    assert isinstance(res.plot(), Axes)


def test_planning_results_share_one_mixin() -> None:
    for cls in (
        sw.PowerResult,
        sw.ExpectedPowerResult,
        sw.AssuranceResult,
        sw.DesignSearchResult,
        sw.PowerCurve,
        sw.DesignEffect,
        sw.CellMap,
    ):
        assert issubclass(cls, PlanningResultMixin), cls
    # the unused duplicate of results.Summary is gone (sw.power is the function)
    for module in ("steppedwedge.planning", "steppedwedge.planning.result"):
        assert not hasattr(importlib.import_module(module), "PowerSummary"), module


def test_power_result_tidy_equals_attributes() -> None:
    res = _power()
    t = res.tidy()
    assert list(t.columns) == [
        "term",
        "effect",
        "std_error",
        "statistic",
        "df",
        "alpha",
        "power",
        "power_one_tail",
    ]
    row = t.iloc[0]
    assert row["term"] == res.estimand
    assert row["power"] == res.power and row["power_one_tail"] == res.power_one_tail
    assert row["statistic"] == pytest.approx(res.effect / res.std_error, **EXACT)
    assert np.isnan(row["df"]) and res.df is None


def test_expected_power_tidy_equals_attributes() -> None:
    res = _expected()
    t = res.tidy()
    n_clusters = res.allocations.shape[1]
    assert list(t.columns) == ["allocation", "power"] + [f"cluster_{j}" for j in range(n_clusters)]
    np.testing.assert_array_equal(t["power"], res.powers)
    np.testing.assert_array_equal(t[[f"cluster_{j}" for j in range(n_clusters)]], res.allocations)
    assert t["power"].mean() == pytest.approx(res.power, **EXACT)
    # every enumerated allocation gives its own power through sw.power (cluster i in row i)
    sizes = np.array([5.0, 10, 20, 40])
    d = sw.Design.stepped_wedge(2, 2)
    seq_rows = [int(np.flatnonzero(np.asarray(d.sequences) == s)[0]) for s in range(2)]
    for k in (0, len(t) - 1):
        x = d.matrix[[seq_rows[s] for s in res.allocations[k]]]
        ref = sw.power(sw.Design.from_matrix(x), effect=0.5, variance=VC, cluster_size=sizes).power
        assert t["power"].iloc[k] == pytest.approx(ref, rel=LINALG_REL)
    assert "90% of allocations" in res.summary().as_text()


def test_assurance_tidy_is_the_prior_distribution_of_power() -> None:
    res = _assurance()
    t = res.tidy()
    assert list(t.columns) == ["icc", "cac", "probability", "power"]
    assert len(t) == res.power.size == 6
    assert t["probability"].sum() == pytest.approx(1.0, **EXACT)
    assert (t["probability"] * t["power"]).sum() == pytest.approx(res.assurance, **EXACT)
    # prior weights: icc weights 1:2:1 normalised, cac equal
    assert t.loc[(t["icc"] == 0.05) & (t["cac"] == 0.5), "probability"].item() == pytest.approx(
        0.25, **EXACT
    )
    # each scenario's power is the analytic power at those inputs
    for _, row in t.iloc[[0, 5]].iterrows():
        ref = sw.power(
            sw.Design.stepped_wedge(4, 2),
            effect=0.3,
            variance=sw.VarianceComponents.from_correlations(row["icc"], cac=row["cac"]),
            cluster_size=20,
        ).power
        assert row["power"] == pytest.approx(ref, rel=LINALG_REL)
    manual = t.loc[t["power"] >= 0.8, "probability"].sum()
    assert res.prob_power_at_least(0.8) == pytest.approx(manual, **EXACT)


def test_assurance_with_draws_tidy_and_distribution_plot() -> None:
    res = _assurance_draws()
    t = res.tidy()
    assert list(t.columns) == ["icc", "effect", "probability", "power"]
    assert len(t) == 2 * 50
    np.testing.assert_array_equal(t["effect"].to_numpy()[:50], res.draws["effect"])
    assert t["probability"].sum() == pytest.approx(1.0, **EXACT)
    assert (t["probability"] * t["power"]).sum() == pytest.approx(res.assurance, **EXACT)
    ax = res.plot(kind="distribution")
    assert ax.get_xlabel() == "power"
    heights = sum(p.get_height() for p in ax.patches)
    assert heights == pytest.approx(1.0, rel=EXACT_REL)  # prior-weighted histogram
    assert ax.lines[0].get_xdata()[0] == pytest.approx(res.assurance)
    assert res.plot().get_xlabel() == "icc"  # auto: the sensitivity curve over the grid
    with pytest.raises(OptionError, match="kind"):
        res.plot(kind="bogus")
    only_draws = sw.assurance(
        sw.Design.stepped_wedge(3),
        effect=stats.norm(0.3, 0.1),
        icc=0.05,
        cluster_size=10,
        n_draws=20,
        rng=1,
    )
    assert only_draws.plot().get_xlabel() == "power"
    with pytest.raises(OptionError, match="grid"):
        only_draws.plot(kind="sensitivity")


def test_design_search_tidy_ranks_candidates_and_counts_costs() -> None:
    res = _search()
    t = res.tidy()
    n_pat = res.patterns.shape[0]
    assert list(t.columns) == [
        "rank",
        *[f"pattern_{j}" for j in range(n_pat)],
        "n_clusters",
        "n_periods",
        "n_sequences",
        "treated_cells",
        "measured_cells",
        "variance",
        "std_error",
        "power",
        "power_one_tail",
    ]
    assert len(t) == res.allocations.shape[0] == res.n_evaluated
    np.testing.assert_array_equal(t["rank"], np.arange(len(t)))
    np.testing.assert_array_equal(t[[f"pattern_{j}" for j in range(n_pat)]], res.allocations)
    np.testing.assert_array_equal(t["variance"], res.variance)
    np.testing.assert_array_equal(t["power"], res.power)
    assert np.all(np.diff(t["variance"]) >= 0)
    # costs counted independently from the candidate as a Design
    for r in (0, 7, len(t) - 1):
        d = res.design(r)
        assert t["treated_cells"].iloc[r] == pytest.approx(np.nansum(d.matrix), **EXACT)
        assert t["measured_cells"].iloc[r] == d.observed.sum()
        assert t["n_sequences"].iloc[r] == d.n_sequences
        assert t["n_clusters"].iloc[r] == d.n_clusters
        assert t["n_periods"].iloc[r] == d.n_periods
    pd.testing.assert_frame_equal(res.table(3), t.head(3))


def test_design_search_frontier_plot() -> None:
    res = _search()
    ax = res.plot(cost="treated_cells")
    assert ax.get_xlabel() == "treated cells" and ax.get_ylabel() == "power"
    front = ax.lines[0]
    y = np.asarray(front.get_ydata(), dtype=float)
    assert np.all(np.diff(y) >= 0) and y.max() == pytest.approx(res.power[0])
    # at every cost the frontier is the best power among candidates costing at most that
    x = np.asarray(front.get_xdata(), dtype=float)
    cost = res.costs()["treated_cells"]
    for xi, yi in zip(x, y, strict=True):
        assert yi == pytest.approx(res.power[cost <= xi].max())
    assert res.plot(kind="curves").get_xlabel() == "effect"
    with pytest.raises(OptionError, match="cost"):
        res.plot(cost="money")


def test_power_curve_tidy_equals_power() -> None:
    res = _curve()
    t = res.tidy()
    assert list(t.columns) == [
        "vary",
        "value",
        "effect",
        "std_error",
        "df",
        "alpha",
        "power",
        "power_one_tail",
    ]
    for n, row in zip([1, 2, 3], t.itertuples(), strict=True):
        ref = sw.power(sw.Design.stepped_wedge(3, n), effect=0.3, variance=VC, cluster_size=10)
        assert row.power == pytest.approx(ref.power, **EXACT)
        assert row.std_error == pytest.approx(ref.std_error, **EXACT)
        assert row.effect == 0.3 and row.alpha == 0.05 and row.vary == "clusters_per_sequence"
    expected = next((v for v, p in zip(res.values, res.power, strict=True) if p >= 0.8), None)
    assert res.first_reaching(0.8) == expected


def test_design_effect_tidy_equals_attributes() -> None:
    res = _design_effect()
    t = res.tidy()
    assert list(t.columns) == [
        "method",
        "design_effect",
        "clustering",
        "cluster_mean_correlation",
        "repeated_measures",
        "n_periods",
    ]
    row = t.iloc[0]
    assert row["design_effect"] == res.value
    assert row["design_effect"] == pytest.approx(row["clustering"] * row["repeated_measures"])
    assert row["n_periods"] == res.n_periods == 5
    woertman = sw.design_effect(n_sequences=4, cluster_size=10, icc=0.05, method="woertman")
    assert np.isnan(woertman.tidy()["clustering"].iloc[0])
    ax = res.plot()
    assert [b.get_width() for b in ax.patches] == pytest.approx(
        [res.clustering, res.repeated_measures, res.value]
    )


def test_cell_map_tidy_equals_attributes() -> None:
    res = _weights()
    t = res.tidy()
    assert list(t.columns) == [
        "cluster",
        "period",
        "treatment",
        "exposure_time",
        "observed",
        "value",
    ]
    d = res.design
    np.testing.assert_array_equal(t["value"], res.values.ravel())
    np.testing.assert_array_equal(t["treatment"], d.matrix.ravel())
    np.testing.assert_array_equal(t["exposure_time"], d.exposure_time.ravel())
    # the treated weights of the immediate-effect estimator sum to 1 (methods.md 2.2)
    assert t.loc[t["treatment"] == 1, "value"].sum() == pytest.approx(1.0, abs=ZERO_ATOL_1E12)
    assert "Weight on each exposure time" in res.summary().as_text()


def test_simulated_power_tidy_equals_attributes() -> None:
    res = _simulated()
    t = res.tidy().set_index("term")
    assert t.loc["power", "estimate"] == res.power
    assert t.loc["power", "std_error"] == res.mc_std_error


def test_repr_html_escapes_markup() -> None:
    bad = "<script>alert(1)</script>"
    d = sw.Design.from_matrix(np.triu(np.ones((3, 4)), k=1), clusters=[bad, "b&c", "ok"])
    res = sw.information_content(d, variance=VC, cluster_size=10)
    html = res._repr_html_()
    assert "<script>" not in html and "&lt;script&gt;" in html and "b&amp;c" in html
    assert bad in res.summary().as_text()  # text keeps the label as given
    for name, make in FACTORIES.items():
        assert "<script" not in make()._repr_html_(), name


def test_summaries_do_not_import_matplotlib() -> None:
    code = (
        "import sys, steppedwedge as sw\n"
        "vc = sw.VarianceComponents.from_correlations(0.05)\n"
        "d = sw.Design.stepped_wedge(3)\n"
        "for r in (sw.power(d, effect=0.3, variance=vc, cluster_size=10),\n"
        "          sw.cell_weights(d, variance=vc, cluster_size=10),\n"
        "          sw.design_effect(n_sequences=3, cluster_size=10, icc=0.05),\n"
        "          sw.search_designs(n_clusters=4, n_periods=4, effect=0.3, variance=vc,\n"
        "                            cluster_size=10)):\n"
        "    r.summary(); r.tidy(); r._repr_html_()\n"
        "print('matplotlib' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    assert out.stdout.strip() == "False"
