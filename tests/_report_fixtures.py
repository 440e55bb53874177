"""Report test inputs shared by the report test modules."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from steppedwedge.report import TrialConfig, council_example

#: A cluster label full of HTML and Markdown markup (escaping checks).
HOSTILE = "<script>alert(1)</script> | & *x*"

#: The bundled example's wave start dates as a TOML array.
WAVES = (
    '["2023-01-01", "2023-07-01", "2024-01-01", "2024-07-01", "2025-01-01", "2025-07-01", '
    '"2026-01-01"]'
)
#: trial.toml of the council example up to its [randomisation] (clusters in clusters.csv).
COUNCIL_TOML = f"""schema_version = 1

[trial]
title = "Test trial"

[design]
periods = "2022Q1/2026Q4"
wave_starts = {WAVES}
clusters_per_wave = [3, 2, 3, 3, 2, 2, 2]

[randomisation]
clusters = "clusters.csv"
cluster_column = "council"
strata = "region"
seed = 99
"""
#: Its [data] table (the panel in councils.csv).
COUNCIL_DATA_TOML = """[data]
file = "councils.csv"
cluster = "council"
period = "quarter"
treatment = "treated"
outcome = "entries_into_care"
exposure = "population_0_17"
"""


def hostile_example(**analysis: Any) -> TrialConfig:
    """The bundled example with Council A renamed to :data:`HOSTILE`.

    ``analysis`` replaces fields of its ``[analysis]`` (e.g. fewer sensitivity analyses).
    """
    cfg = council_example()
    assert cfg.data is not None and cfg.analysis is not None
    clusters = cfg.clusters.replace({"council": {"Council A": HOSTILE}})
    frame = cfg.data.frame.replace({"council": {"Council A": HOSTILE}})
    return replace(
        cfg,
        clusters=clusters,
        data=replace(cfg.data, frame=frame),
        analysis=replace(cfg.analysis, **analysis),
    )
