"""The trial report: configuration, consistency with the bundled data, determinism."""

from __future__ import annotations

import html
import json
import math
import re
from dataclasses import replace
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from _report_fixtures import COUNCIL_DATA_TOML, COUNCIL_TOML, HOSTILE, hostile_example
from _tolerances import EXACT_REL, MC_K, REFIT_SAME_DATA_REL, REFIT_SAME_DATA_TAIL_REL

import steppedwedge as sw
from steppedwedge.datasets import load_council_characteristics, load_councils
from steppedwedge.report import Report, TrialConfig, build_report, council_example
from steppedwedge.report.build import planned_design, significance_note
from steppedwedge.report.example import council_randomisation
from steppedwedge.report.formatting import fmt_ci, fmt_df, fmt_num, fmt_p, fmt_short
from steppedwedge.report.markdown import escape
from steppedwedge.report.observed import lag_correlation


def test_example_allocation_is_the_one_that_generated_the_data() -> None:
    chars = load_council_characteristics()
    allocation = council_randomisation(chars)
    waves = {c: w for c, w in zip(chars["council"], chars["wave"], strict=True)}
    assert {c: s + 1 for c, s in allocation.assignment.items()} == waves
    # and the panel's treatment column is the allocated design
    panel = load_councils()
    wide = panel.pivot(index="council", columns="quarter", values="treated")
    design = allocation.design
    for cluster, row in zip(design.clusters, design.matrix, strict=True):
        assert wide.loc[cluster].tolist() == row.astype(int).tolist()


def _write_config(tmp_path: Path, **overrides: object) -> Path:
    chars = load_council_characteristics().drop(columns=["wave", "start_date"])
    chars.to_csv(tmp_path / "clusters.csv", index=False)
    text = COUNCIL_TOML
    for key, value in overrides.items():
        text = text.replace(key, str(value))
    path = tmp_path / "trial.toml"
    path.write_text(text)
    return path


def test_toml_config_round_trip(tmp_path: Path) -> None:
    cfg = TrialConfig.from_toml(_write_config(tmp_path))
    assert cfg.n_clusters == 17 and cfg.seed == 99 and cfg.strata == "region"
    report = build_report(cfg)
    assert report.design.n_clusters == 17
    # the same seed through the library gives the same allocation
    template = sw.Design.from_start_dates(cfg.slot_start_dates(), cfg.periods)
    lib = sw.randomise(
        template, cfg.clusters.rename(columns={"council": "cluster"}), strata="region", rng=99
    )
    assert dict(lib.assignment) == dict(report.allocation.assignment)


def test_toml_power_and_analysis_tables(tmp_path: Path) -> None:
    path = _write_config(tmp_path)
    load_councils().to_csv(tmp_path / "councils.csv", index=False)
    extra = (
        "\n"
        + COUNCIL_DATA_TOML
        + """
[power]
family = "poisson"
effect = -0.1625
baseline = 6.6e-4
exposure_column = "population_0_17"
tau2 = 0.1
gamma2 = 0.02

[analysis]
family = "poisson"
random = "cluster"
sensitivity = ["cluster-summary"]
"""
    )
    path.write_text(path.read_text() + extra)
    cfg = TrialConfig.from_toml(path)
    assert cfg.power is not None and cfg.power.tau2 == 0.1 and cfg.power.decay is None
    assert cfg.analysis is not None and cfg.analysis.sensitivity == ("cluster-summary",)
    keys = [s.key for s in build_report(cfg).sections]
    assert "sample_size" in keys and "sensitivity" in keys


@pytest.mark.slow
def test_report_power_is_the_power_of_the_decay_glmm_it_runs() -> None:
    """The analytic power the report shows (nested+decay components, t(I - 2)) against the
    simulated power of the nested+decay Poisson GLMM fitted by sw.fit on data drawn from the
    same components and exposure: 150 trials (~40 s), agreement within 4 MC SE."""
    cfg = council_example()
    spec = cfg.power
    assert spec is not None and cfg.analysis is not None
    template = planned_design(cfg)
    vc = sw.VarianceComponents(tau2=spec.tau2, gamma2=spec.gamma2, decay=spec.decay)
    expo = float(cfg.clusters["population_0_17"].mean())
    analytic = sw.power(
        template,
        effect=spec.effect,
        variance=vc,
        cluster_size=1.0,
        family="poisson",
        baseline=spec.baseline,
        exposure=expo,
        dof=cfg.n_clusters - 2,
    )
    sim = sw.simulate_power(
        template,
        effect=spec.effect,
        variance=vc,
        cluster_size=expo,
        family="poisson",
        baseline=spec.baseline,
        analysis={"random": cfg.analysis.random, "vcov": cfg.analysis.vcov or "model"},
        n_sims=150,
        rng=20261201,
        progress=False,
    )
    assert sim.n_usable >= 145
    se = (analytic.power * (1 - analytic.power) / sim.n_usable) ** 0.5
    assert abs(sim.power - analytic.power) <= MC_K * se, (sim.power, analytic.power)


# ---------------------------------------------------------------- the report on the example
@pytest.fixture(scope="module")
def example() -> Report:
    return build_report(council_example())


@pytest.fixture(scope="module")
def results(example: Report) -> dict[str, Any]:
    return example.results()


def _roles() -> dict[str, Any]:
    cfg = council_example()
    return dict(
        outcome="entries_into_care",
        cluster="council",
        period="quarter",
        treatment="treated",
        exposure="population_0_17",
        period_order=[str(p) for p in planned_design(cfg).periods],
    )


def test_sections_follow_consort_sw(example: Report) -> None:
    keys = [s.key for s in example.sections]
    assert keys == [
        "design",
        "randomisation",
        "sample_size",
        "flow",
        "outcomes",
        "primary",
        "planning",
        "sensitivity",
        "exploratory",
        "checks",
        "deviations",
        "provenance",
    ]
    md = example.to_markdown()
    assert "20230101" in md  # the seed is recorded
    assert example.allocation.input_hash in md
    # every section names the CONSORT-SW items it fills, except provenance
    assert all(s.consort for s in example.sections if s.key != "provenance")


def test_summary_box_states_question_design_result_and_agreement(
    example: Report, results: dict[str, Any]
) -> None:
    """The bundled example: the GLMMs and GEE reject at 5%; CR2 fixed effects, cluster
    summaries and the randomisation test do not; the summary box says so."""
    labels = [item.label for item in example.document.summary]
    assert example.document.summary[0].parts == (council_example().question,)
    assert labels == [
        "Question",
        "Design",
        "Primary result",
        "Sensitivity analyses",
        "Exploratory (not pre-specified)",
    ]
    fit = sw.fit(load_councils(), family="poisson", random="nested+decay", vcov="cr2", **_roles())
    s = results["summary"]
    assert s["estimate"] == pytest.approx(fit.estimate, rel=REFIT_SAME_DATA_REL)
    assert s["p_value"] == pytest.approx(fit.pvalue, rel=REFIT_SAME_DATA_TAIL_REL)
    assert s["sensitivity_agree"] is False
    lo, hi = (math.exp(v) for v in fit.conf_int())
    text = "".join(str(getattr(p, "text", p)) for p in example.document.summary[2].parts)
    assert f"Rate ratio {math.exp(fit.estimate):.2f} (95% CI {lo:.2f} to {hi:.2f})" in text
    agree = "".join(str(getattr(p, "text", p)) for p in example.document.summary[3].parts)
    sig, not_sig = agree.split("p < 0.05: ")[1].split("p >= 0.05: ")
    assert "mixed model (primary)" in sig and "randomisation test" in not_sig
    assert "cluster-period summaries" in not_sig


def test_significance_note_is_absent_when_analyses_agree() -> None:
    from types import SimpleNamespace

    agree = {"a": SimpleNamespace(pvalue=0.01), "b": SimpleNamespace(pvalue=0.02)}
    assert significance_note(agree, 0.05) is None
    split = {"a": SimpleNamespace(pvalue=0.01), "b": SimpleNamespace(pvalue=0.2)}
    note = significance_note(split, 0.05)
    assert note is not None and "p < 0.05: a." in note and "p >= 0.05: b." in note


def test_outcome_by_period_matches_direct_computation(results: dict[str, Any]) -> None:
    panel = load_councils()
    table = results["sections"]["outcomes"]["tables"]["by_period"]
    rows = {r[0]: dict(zip(table["columns"], r, strict=True)) for r in table["rows"]}
    for quarter in ("2022Q1", "2024Q1", "2026Q4"):
        q = panel[panel["quarter"] == quarter]
        for arm, flag in (("control", 0), ("intervention", 1)):
            sub = q[q["treated"] == flag]
            got = rows[quarter][f"{arm} rate"]
            if len(sub) == 0:
                assert got is None
                continue
            rate = 1e4 * sub["entries_into_care"].sum() / sub["population_0_17"].sum()
            assert got == pytest.approx(rate, rel=EXACT_REL)
            assert rows[quarter][f"{arm} entries_into_care"] == sub["entries_into_care"].sum()


def test_exposure_and_flow_tables(results: dict[str, Any]) -> None:
    panel = load_councils()
    flow = results["sections"]["flow"]
    exposure = flow["tables"]["exposure"]
    col = exposure["columns"].index("intervention population_0_17")
    q = panel[(panel["quarter"] == "2024Q3") & (panel["treated"] == 1)]
    row = next(r for r in exposure["rows"] if r[0] == "2024Q3")
    assert row[col] == pytest.approx(q["population_0_17"].sum(), rel=EXACT_REL)
    assert flow["values"]["randomised"] == 17 and flow["values"]["started_as_allocated"] == 17
    assert flow["values"]["deviations"] == []


def test_primary_planning_and_model_comparison_match_the_library(
    results: dict[str, Any],
) -> None:
    cfg = council_example()
    spec = cfg.power
    assert spec is not None and cfg.analysis is not None
    panel = load_councils()
    roles = _roles()
    fit = sw.fit(panel, family="poisson", random="nested+decay", **roles)
    robust = sw.fit(panel, family="poisson", random="nested+decay", vcov="cr2", **roles)
    est = results["sections"]["primary"]["values"]["estimates"]
    # the pre-specified primary is CR2 (calibration); its model-based companion second
    assert est[0]["standard error"] == pytest.approx(robust.std_error, rel=REFIT_SAME_DATA_REL)
    assert est[1]["standard error"] == pytest.approx(fit.std_error, rel=REFIT_SAME_DATA_REL)
    assert est[0]["df"] == 15.0
    # planning: planned SE and power are sw.power on the planned inputs; achieved power is
    # sw.power with the fitted components
    kwargs = dict(
        effect=spec.effect,
        cluster_size=1.0,
        family="poisson",
        baseline=spec.baseline,
        exposure=float(cfg.clusters["population_0_17"].mean()),
        dof=15,
    )
    planned = sw.power(
        planned_design(cfg),
        variance=sw.VarianceComponents(tau2=spec.tau2, gamma2=spec.gamma2, decay=spec.decay),
        **kwargs,
    )
    vc = fit.variance_components
    achieved = sw.power(
        planned_design(cfg),
        variance=sw.VarianceComponents(tau2=vc["tau2"], gamma2=vc["gamma2"], decay=vc["decay"]),
        **kwargs,
    )
    plan = results["sections"]["planning"]["values"]
    assert plan["planned_power"] == pytest.approx(planned.power, rel=REFIT_SAME_DATA_REL)
    assert plan["planned_std_error"] == pytest.approx(planned.std_error, rel=REFIT_SAME_DATA_REL)
    assert plan["achieved_power"] == pytest.approx(achieved.power, rel=REFIT_SAME_DATA_TAIL_REL)
    assert plan["se_ratio"] == pytest.approx(
        robust.std_error / planned.std_error, rel=REFIT_SAME_DATA_REL
    )
    comps = results["sections"]["planning"]["tables"]["components"]
    tau = dict(zip(comps["columns"], comps["rows"][0], strict=True))
    assert tau["assumed at planning"] == pytest.approx(spec.tau2)
    assert (tau["estimate"], tau["low"], tau["high"]) == pytest.approx(
        fit.variance_intervals["tau2"], rel=REFIT_SAME_DATA_REL
    )
    # the structure comparison: log-likelihood, AIC and decay of each structure
    table = results["sections"]["checks"]["tables"]["structures"]
    for row in table["rows"]:
        r = dict(zip(table["columns"], row, strict=True))
        other = sw.fit(panel, family="poisson", random=r["random structure"], **roles)
        k = len(other.params) + len(other.variance_components)
        assert r["log-likelihood"] == pytest.approx(other.loglik, rel=REFIT_SAME_DATA_REL)
        assert r["parameters"] == k
        assert r["AIC"] == pytest.approx(-2 * other.loglik + 2 * k, rel=REFIT_SAME_DATA_REL)


def test_sensitivity_panel_is_the_compare_table(results: dict[str, Any]) -> None:
    sens = results["sections"]["sensitivity"]
    labels = [r["analysis"] for r in sens["values"]["panel"]]
    assert labels[:2] == ["mixed model (primary)", "mixed model (primary), model-based variance"]
    assert {"randomisation test", "cluster-period summaries"} <= set(labels)
    assert "forest.png" in sens["figures"]
    fe = sw.fit(load_councils(), family="poisson", method="fixed-effects", **_roles())
    row = next(r for r in sens["values"]["panel"] if r["analysis"].startswith("cluster fixed"))
    assert row["estimate"] == pytest.approx(math.exp(fe.estimate), rel=REFIT_SAME_DATA_REL)


def test_lag_correlation_by_brute_force() -> None:
    """Residual correlation at each lag against an explicit double loop over the pairs."""
    rng = np.random.default_rng(3)
    rows = []
    for i in range(6):
        u = rng.normal(0, 0.3)
        for t in range(5):
            rows.append((f"c{i}", t, int(t > i % 4), rng.poisson(50 * math.exp(u)), 1000.0))
    cells = pd.DataFrame(rows, columns=["cluster", "t", "treated", "events", "exposure"])
    comps = {"tau2": 0.09, "gamma2": 0.02, "decay": 0.5}
    got = lag_correlation(cells, log_scale=True, effect=-0.1, components=comps, noise=0.02)
    z = np.log((cells["events"] + 0.5) / cells["exposure"]) + 0.1 * cells["treated"]
    z = z - z.groupby(cells["t"]).transform("mean")
    zz = {(c, t): v for c, t, v in zip(cells["cluster"], cells["t"], z, strict=True)}
    for k in (1, 2, 3):
        pairs = [
            (zz[(c, t)], zz[(c, t + k)])
            for c in sorted(set(cells["cluster"]))
            for t in range(5 - k)
        ]
        a, b = np.array(pairs).T
        row = got[got["lag"] == k].iloc[0]
        assert row["observed"] == pytest.approx(np.corrcoef(a, b)[0, 1], rel=EXACT_REL)
        assert row["pairs"] == len(pairs)
        assert row["implied"] == pytest.approx((0.09 + 0.02 * 0.5**k) / 0.13, rel=EXACT_REL)


def test_a_council_that_started_late_or_never_is_reported() -> None:
    """Change the data: one wave-1 council starts 2 quarters late, a wave-7 council never;
    the flow table, the deviations and the summary report it and the report still builds."""
    cfg = council_example()
    assert cfg.data is not None and cfg.analysis is not None
    frame = cfg.data.frame.copy()
    order = [str(p) for p in planned_design(cfg).periods]
    late = frame["council"] == "Council G"
    frame.loc[late & frame["quarter"].isin(["2023Q1", "2023Q2"]), "treated"] = 0
    frame.loc[frame["council"] == "Council L", "treated"] = 0
    cfg = replace(
        cfg,
        data=replace(cfg.data, frame=frame),
        analysis=replace(cfg.analysis, sensitivity=("cluster-summary",), random="nested"),
    )
    report = build_report(cfg, exploratory=False)
    flow = report.section("flow").values
    assert flow["late_or_early"] == 1 and flow["never_started"] == 1
    assert flow["analysed"] == 17
    devs = report.section("deviations").values["items"]
    assert any("Council G" in d and "late by 2 periods" in d for d in devs)
    assert any("Council L" in d and "never started" in d for d in devs)
    assert order[4] == "2023Q1"


@pytest.fixture(scope="module")
def hostile() -> Report:
    """The example with Council A renamed to a string full of HTML and Markdown markup."""
    cfg = hostile_example(sensitivity=("cluster-summary",), random="nested")
    return build_report(cfg, exploratory=False)


def test_hostile_cluster_name_is_text_in_html(hostile: Report) -> None:
    page = hostile.to_html()
    assert "<script" not in page
    assert html.escape(HOSTILE) in page
    # the allocation table keeps its columns: the name is one cell
    parser = _Cells()
    parser.feed(page)
    row = next(r for r in parser.rows if HOSTILE in r)
    assert len(row) == len(parser.rows[0]) or len(row) == len(
        hostile.section("randomisation").table("allocation").columns
    )


def test_hostile_cluster_name_is_text_in_markdown(hostile: Report) -> None:
    md = hostile.to_markdown()
    markdown_it = pytest.importorskip("markdown_it")
    rendered = markdown_it.MarkdownIt("commonmark").enable("table").render(md)
    assert "<script" not in rendered
    text = re.sub(r"<code>.*?</code>", "", re.sub(r"<(?!/?code)[^>]+>", "", rendered))
    assert "**" not in text and "\\" not in text  # every marker parsed, every escape used
    assert html.escape(HOSTILE, quote=False) in rendered
    # in the allocation table the name is one cell: every row has the header's cell count
    table = hostile.section("randomisation").table("allocation")
    lines = [ln for ln in md.splitlines() if ln.startswith("| ") and "\\<script" in ln]
    assert lines
    for line in lines:
        cells = re.split(r"(?<!\\)\|", line.strip())[1:-1]
        assert len(cells) in (len(table.columns), 2)


class _Cells(HTMLParser):
    """Collect the text of every table row's cells."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[list[str]] = []
        self._cell: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "tr":
            self.rows.append([])
        elif tag in ("td", "th"):
            self._cell = []

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self._cell is not None:
            self.rows[-1].append("".join(self._cell))
            self._cell = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)


def test_html_has_no_raw_markdown_and_readable_numbers(example: Report) -> None:
    page = example.to_html()
    text = re.sub(r"<[^>]+>", " ", re.sub(r"<style>.*?</style>", "", page, flags=re.S))
    text = re.sub(r'src="data:[^"]+"', "", text)
    assert "**" not in text and "`" not in text and "|---" not in text
    assert not re.search(r"\d\.\d+e[+-]\d", text), "scientific notation in the page"
    assert "sequence 0" not in text
    assert "<pre" not in page  # no fixed-width blocks that scroll sideways


def test_write_is_byte_identical_and_writes_results_json(tmp_path: Path, example: Report) -> None:
    a = example.write(tmp_path / "a")
    b = build_report(council_example()).write(tmp_path / "b")
    assert [p.name for p in a] == [p.name for p in b]
    for pa, pb in zip(a, b, strict=True):
        assert pa.read_bytes() == pb.read_bytes(), pa.name
    data = json.loads((tmp_path / "a" / "results.json").read_text())
    assert data["summary"]["ratio"] == pytest.approx(math.exp(data["summary"]["estimate"]))
    figures = [f for s in data["sections"].values() for f in s["figures"]]
    assert {"design.png", "forest.png", "trajectories.png", "lag_correlation.png"} <= set(figures)
    for f in figures:
        assert (tmp_path / "a" / f).is_file()


def test_pdf_is_written_when_asked(tmp_path: Path, example: Report) -> None:
    try:
        import weasyprint  # noqa: F401
    except (ImportError, OSError) as exc:
        pytest.skip(f"weasyprint (the pdf extra) is not usable here: {exc}")
    written = example.write(tmp_path, pdf=True)
    pdf = tmp_path / "report.pdf"
    assert pdf in written and pdf.read_bytes()[:5] == b"%PDF-"


def test_number_formatting() -> None:
    assert fmt_num(38680.2) == "38,680" and fmt_num(1234567) == "1,234,567"
    assert fmt_num(0.000661) == "0.000661" and fmt_num(-0.0204) == "\u22120.0204"
    assert fmt_num(2.13e-8) == "2.13 × 10⁻⁸"
    assert fmt_num(float("nan")) == "" and fmt_num(None) == ""
    assert fmt_ci(0.8718, 0.7902, 0.9618) == "0.87 (0.79 to 0.96)"
    assert fmt_ci(-0.137, -0.23, -0.04) == "\u22120.14 (\u22120.23 to \u22120.04)"
    assert fmt_ci(0.0461, 0.014, 0.198) == "0.046 (0.014 to 0.198)"
    assert fmt_ci(125.3, 100.2, 150.4) == "125.3 (100.2 to 150.4)"
    assert fmt_ci(-0.069, -1.056, 0.917) == "\u22120.07 (\u22121.06 to 0.92)"
    assert fmt_ci(0.0461, 0.014, 0.198, decimals=3) == "0.046 (0.014 to 0.198)"
    assert fmt_p(0.0004) == "<0.001" and fmt_p(0.0094) == "0.009" and fmt_p(0.53) == "0.53"
    assert fmt_short(0.0005) == "0.0005" and fmt_df(12.47) == "12.5"
    assert escape("a|b") == "a\\|b"


def test_docs_list_every_consort_item_with_its_section(example: Report) -> None:
    """docs/explanation/consort_sw.rst has a row "item | section" for every item a section
    claims (Section.consort), and no row for an item no section claims."""
    page = (Path(__file__).parents[1] / "docs" / "explanation" / "consort_sw.rst").read_text()
    rows = re.findall(r"^   \* - (.+)\n     - (.+)$", page, flags=re.M)[1:]  # skip the header
    claimed = {(item, s.title) for s in example.sections for item in s.consort}
    assert set(rows) == claimed


def test_planning_comment_when_the_standard_error_is_far_from_the_plan() -> None:
    from types import SimpleNamespace

    from steppedwedge.report.sections.planning import _se_comment

    rows = [
        {"key": "tau2", "assumed": 0.01, "low": 0.03, "high": 0.2},
        {"key": "gamma2", "assumed": 0.02, "low": 0.01, "high": 0.05},
        {"key": "decay", "assumed": 0.9, "low": float("nan"), "high": float("nan")},
    ]
    planned, achieved = SimpleNamespace(power=0.99), SimpleNamespace(power=0.62)
    text = _se_comment(2.0, rows, planned, achieved)
    assert "2.00 times the planned one (larger)" in text and "less precise" in text
    assert "assumed tau2 lie outside" in text and "gamma2" not in text
    assert "power at the planned effect was 0.620 rather than 0.990" in text
    assert _se_comment(1.2, rows, planned, achieved) == ""
    assert "smaller" in _se_comment(0.5, rows, planned, achieved)


@pytest.mark.slow
def test_gaussian_report_states_the_icc_of_the_fitted_model() -> None:
    """A Gaussian primary analysis (council rates per 10,000 as the outcome): the planning
    section's ICC and CAC are those of sw.fit's variance components (~20 s: two LMM fits)."""
    from steppedwedge.report.config import PowerSpec

    cfg = council_example()
    assert cfg.data is not None and cfg.analysis is not None
    frame = cfg.data.frame.copy()
    frame["rate"] = 1e4 * frame["entries_into_care"] / frame["population_0_17"]
    power = PowerSpec("gaussian", -1.0, None, 1.0, None, tau2=2.0, gamma2=0.5, decay=None)
    cfg = replace(
        cfg,
        data=replace(cfg.data, frame=frame, outcome="rate", exposure=None),
        power=power,
        analysis=replace(
            cfg.analysis, family="gaussian", random="nested", sensitivity=("cluster-summary",)
        ),
    )
    report = build_report(cfg, exploratory=False)
    roles = {**_roles(), "outcome": "rate"}
    del roles["exposure"]
    fit = sw.fit(frame, random="nested", **roles)
    vc = fit.variance_components
    table = report.section("planning").table("components")
    rows = {r[0].split(" ")[0]: dict(zip(table.columns, r, strict=True)) for r in table.rows}
    icc = (vc["tau2"] + vc["gamma2"]) / (vc["tau2"] + vc["gamma2"] + vc["sigma2"])
    assert rows["ICC"]["estimate"] == pytest.approx(icc, rel=REFIT_SAME_DATA_REL)
    assert rows["ICC"]["assumed at planning"] == pytest.approx(2.5 / 3.5, rel=EXACT_REL)
    assert "rate ratio" not in report.to_markdown()
    est = report.section("primary").values["estimates"][0]
    assert est["estimate"] == pytest.approx(fit.estimate, rel=REFIT_SAME_DATA_REL)


def _json_numbers(value: Any) -> list[float]:
    """Every number in results.json: numeric values and the numbers inside its strings."""
    if isinstance(value, dict):
        return [x for v in value.values() for x in _json_numbers(v)]
    if isinstance(value, list):
        return [x for v in value for x in _json_numbers(v)]
    if isinstance(value, bool) or value is None:
        return []
    if isinstance(value, (int, float)):
        return [float(value)]
    return [float(t) for t in re.findall(r"-?\d+\.\d+|-?\d+", str(value).replace(",", ""))]


def test_every_decimal_number_of_the_report_is_in_results_json(
    example: Report, results: dict[str, Any]
) -> None:
    """Each non-integer number the Markdown shows is a number of results.json rounded to the
    decimals shown (so results.json holds every statistic of the report)."""
    known = np.array(_json_numbers(results))
    md = example.to_markdown().replace("\u2212", "-").replace(",", "")
    md = re.sub(r"\(\S+\.png\)", "", md)  # figure file names
    shown = re.findall(r"(?<![\w.])-?\d+\.\d+(?![\w.])", md)
    assert len(shown) > 200
    for token in shown:
        x = float(token)
        tol = 0.5 * 10.0 ** -len(token.split(".")[1]) * (1 + 1e-9)
        ok = np.any(np.abs(known - x) <= tol)
        assert ok, f"{token} is not in results.json"


def test_exploratory_effect_by_exposure_time_is_the_eti_fit(results: dict[str, Any]) -> None:
    """The TATE row is sw.fit(effect="eti") with the primary's random structure and vcov."""
    eti = sw.fit(
        load_councils(),
        family="poisson",
        random="nested+decay",
        vcov="cr2",
        effect="eti",
        **_roles(),
    )
    rows = results["sections"]["exploratory"]["values"]["panel"]
    tate = next(r for r in rows if "TATE" in r["analysis"])
    assert tate["estimate"] == pytest.approx(math.exp(eti.estimate), rel=REFIT_SAME_DATA_TAIL_REL)
    lo, hi = (math.exp(v) for v in eti.conf_int())
    assert (tate["low"], tate["high"]) == pytest.approx((lo, hi), rel=REFIT_SAME_DATA_TAIL_REL)
    assert rows[0]["estimate"] == pytest.approx(
        results["summary"]["ratio"], rel=REFIT_SAME_DATA_REL
    )
