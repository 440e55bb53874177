"""The trial report: configuration, consistency with the bundled data, determinism."""

from __future__ import annotations

from pathlib import Path

import pytest
from _tolerances import MC_K

import steppedwedge as sw
from steppedwedge.datasets import load_council_characteristics, load_councils
from steppedwedge.report import TrialConfig, build_report, council_example
from steppedwedge.report.example import council_randomisation


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


def test_report_sections_and_allocation(tmp_path: Path) -> None:
    report = build_report(council_example())
    titles = [s.title for s in report.sections]
    assert titles[:3] == ["Summary", "Design", "Randomisation"]
    assert "Provenance" in titles
    md = report.to_markdown()
    assert "20230101" in md  # the seed is recorded
    assert report.allocation.input_hash in md


def _write_config(tmp_path: Path, **overrides: object) -> Path:
    chars = load_council_characteristics().drop(columns=["wave", "start_date"])
    chars.to_csv(tmp_path / "clusters.csv", index=False)
    text = """
[trial]
title = "Test trial"

[design]
periods = "2022Q1/2026Q4"
wave_starts = ["2023-01-01", "2023-07-01", "2024-01-01", "2024-07-01", "2025-01-01",
               "2025-07-01", "2026-01-01"]
clusters_per_wave = [3, 2, 3, 3, 2, 2, 2]

[randomisation]
clusters = "clusters.csv"
cluster_column = "council"
strata = "region"
seed = 99
"""
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


def test_toml_missing_key_is_named(tmp_path: Path) -> None:
    path = _write_config(tmp_path, **{"seed = 99": ""})
    with pytest.raises(sw.DesignError, match=r"`seed` in the \[randomisation\]"):
        TrialConfig.from_toml(path)


def test_toml_mismatched_waves(tmp_path: Path) -> None:
    path = _write_config(tmp_path, **{"[3, 2, 3, 3, 2, 2, 2]": "[3, 2, 3]"})
    with pytest.raises(sw.DesignError, match="same length"):
        build_report(TrialConfig.from_toml(path))


def test_missing_file_is_named(tmp_path: Path) -> None:
    path = _write_config(tmp_path, **{'"clusters.csv"': '"nope.csv"'})
    with pytest.raises(sw.DesignError, match="nope.csv"):
        TrialConfig.from_toml(path)


def test_descriptives_match_direct_computation() -> None:
    report = build_report(council_example())
    desc = next(s for s in report.sections if s.title == "Descriptive statistics")
    panel = load_councils()
    q = panel[panel["quarter"] == "2024Q1"]
    treated = q[q["treated"] == 1]
    rate = 1e4 * treated["entries_into_care"].sum() / treated["population_0_17"].sum()
    assert f"{rate:.4g}" in desc.markdown


def test_power_and_analysis_sections_match_the_library() -> None:
    import math

    cfg = council_example()
    report = build_report(cfg)
    titles = [s.title for s in report.sections]
    assert {"Power justification", "Primary analysis", "Sensitivity analyses"} <= set(titles)
    # power: the number shown is sw.power on the same inputs
    spec = cfg.power
    assert spec is not None
    from steppedwedge.report.build import planned_design

    # the power of the analysis the report runs: nested+decay components, t(I - 2)
    assert cfg.analysis is not None and cfg.analysis.random == "nested+decay"
    res = sw.power(
        planned_design(cfg),
        effect=spec.effect,
        variance=sw.VarianceComponents(tau2=spec.tau2, gamma2=spec.gamma2, decay=spec.decay),
        cluster_size=1.0,
        family="poisson",
        baseline=spec.baseline,
        exposure=float(cfg.clusters["population_0_17"].mean()),
        dof=15,
    )
    power_md = next(s for s in report.sections if s.title == "Power justification").markdown
    assert f"**Power {res.power:.3f}**" in power_md
    assert "`nested+decay`, t test with 15 df" in power_md
    # primary analysis: the pre-specified nested+decay GLMM, model-based and CR2
    roles = dict(
        outcome="entries_into_care",
        cluster="council",
        period="quarter",
        treatment="treated",
        exposure="population_0_17",
        period_order=[str(p) for p in planned_design(cfg).periods],
    )
    panel = load_councils()
    fit = sw.fit(panel, family="poisson", random="nested+decay", **roles)
    robust = sw.fit(panel, family="poisson", random="nested+decay", vcov="cr2", **roles)
    primary_md = next(s for s in report.sections if s.title == "Primary analysis").markdown
    assert f"rate ratio {math.exp(fit.estimate):.3f}" in primary_md
    assert f"SE {robust.std_error:.4g} against {fit.std_error:.4g} model-based" in primary_md
    # the model comparison: log-likelihood, AIC and decay of each structure, from sw.fit
    for random in ("cluster", "nested", "decay", "nested+decay"):
        other = sw.fit(panel, family="poisson", random=random, **roles)
        k = len(other.params) + len(other.variance_components)
        line = next(x for x in primary_md.splitlines() if x.startswith(f"| {random} |"))
        cells = [c.strip() for c in line.strip("|").split("|")]
        assert float(cells[1]) == pytest.approx(other.loglik, abs=0.5)
        assert int(cells[2]) == k
        assert float(cells[3]) == pytest.approx(-2 * other.loglik + 2 * k, abs=0.5)
        if "decay" in random:
            assert float(cells[4]) == pytest.approx(other.variance_components["decay"], abs=5e-4)
    sens = next(s for s in report.sections if s.title == "Sensitivity analyses").markdown
    assert "randomisation test" in sens and "cluster-period summaries" in sens
    assert "CR2 variance" in sens


def test_report_opens_with_the_primary_result_and_any_disagreement() -> None:
    """The bundled example: the GLMMs and GEE reject at 5%, CR2 fixed effects, cluster
    summaries and the randomisation test do not; the first paragraph says so."""
    report = build_report(council_example())
    first = report.sections[0]
    assert first.title == "Summary"
    paragraph = first.markdown.split("\n\n")[0]
    assert "nested+decay" in paragraph and "rate ratio" in paragraph
    assert "disagree about significance at alpha 0.05" in paragraph
    sig, not_sig = paragraph.split("p < 0.05: ")[1].split("p >= 0.05: ")
    assert "mixed model (primary)" in sig and "randomisation test" in not_sig
    assert "cluster-period summaries" in not_sig


def test_significance_note_is_absent_when_analyses_agree() -> None:
    from types import SimpleNamespace

    from steppedwedge.report.build import _significance_note

    agree = {"a": SimpleNamespace(pvalue=0.01), "b": SimpleNamespace(pvalue=0.02)}
    assert _significance_note(agree, 0.05) is None
    split = {"a": SimpleNamespace(pvalue=0.01), "b": SimpleNamespace(pvalue=0.2)}
    note = _significance_note(split, 0.05)
    assert note is not None and "p < 0.05: a." in note and "p >= 0.05: b." in note


def test_toml_power_and_analysis_tables(tmp_path: Path) -> None:
    path = _write_config(tmp_path)
    load_councils().to_csv(tmp_path / "councils.csv", index=False)
    extra = """
[data]
file = "councils.csv"
cluster = "council"
period = "quarter"
treatment = "treated"
outcome = "entries_into_care"
exposure = "population_0_17"

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
    path.write_text(path.read_text() + extra)
    cfg = TrialConfig.from_toml(path)
    assert cfg.power is not None and cfg.power.tau2 == 0.1 and cfg.power.decay is None
    assert cfg.analysis is not None and cfg.analysis.sensitivity == ("cluster-summary",)
    titles = [s.title for s in build_report(cfg).sections]
    assert "Power justification" in titles and "Sensitivity analyses" in titles


@pytest.mark.slow
def test_report_power_is_the_power_of_the_decay_glmm_it_runs() -> None:
    """The analytic power the report shows (nested+decay components, t(I - 2)) against the
    simulated power of the nested+decay Poisson GLMM fitted by sw.fit on data drawn from the
    same components and exposure: 150 trials (~40 s), agreement within 4 MC SE."""
    from steppedwedge.report.build import planned_design

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
        analysis={"random": cfg.analysis.random},
        n_sims=150,
        rng=20261201,
        progress=False,
    )
    assert sim.n_usable >= 145
    se = (analytic.power * (1 - analytic.power) / sim.n_usable) ** 0.5
    assert abs(sim.power - analytic.power) <= MC_K * se, (sim.power, analytic.power)
