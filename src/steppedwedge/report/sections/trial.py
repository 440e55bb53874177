"""Sections about the trial as designed and run: design, randomisation, participant flow."""

from __future__ import annotations

import re
from typing import Any

import numpy as np
import pandas as pd

from ...design import Design
from ...randomise import Allocation
from ..config import TrialConfig
from ..document import BulletList, Callout, Code, Paragraph, Section, Table, table_from_records
from ..figures import draw
from ..formatting import fmt_int, fmt_num, fmt_short
from ..observed import CellData, cluster_flow

__all__ = ["design_section", "flow_section", "randomisation_section"]


def _period_label(design: Design, index: int) -> str:
    return "never" if index < 0 else str(design.periods[index])


def _plot_design(design: Design, fig: Any) -> None:
    """Draw the design diagram with the brackets named as the report names them (waves)."""
    ax = design.plot(ax=fig.subplots())
    for text in ax.texts:
        text.set_text(re.sub(r"^S(\d+)", r"wave \1", text.get_text()))


def design_section(template: Design, allocated: Design, config: TrialConfig) -> Section:
    """Design diagram, waves with dates and the period grid (CONSORT-SW 3a, 5, 14a)."""
    n_waves = len(config.wave_starts)
    first = [
        int(template.start_period[np.flatnonzero(template.sequences == s)[0]])
        for s in range(n_waves)
    ]
    waves = table_from_records(
        "waves",
        [
            {
                "wave": w + 1,
                "start date": config.wave_starts[w],
                "clusters": config.clusters_per_wave[w],
                "first period on the intervention": _period_label(template, first[w]),
                "control periods": max(first[w], 0) if first[w] >= 0 else allocated.n_periods,
            }
            for w in range(n_waves)
        ],
        caption="Waves (sequences) of the planned roll-out",
    )
    height = min(1.6 + 0.24 * allocated.n_clusters, 12.0)
    fig = draw(
        "design",
        "Stepped-wedge design: clusters (rows, grouped by wave) by period; each cluster "
        "switches from control to the intervention at its wave's start and stays there.",
        lambda f: _plot_design(allocated, f),
        size=(8.0, height),
        alt="Design diagram of the allocated clusters by period",
    )
    cells = allocated.matrix
    n_treated = int(np.nansum(cells > 0))
    values = {
        "n_clusters": allocated.n_clusters,
        "n_periods": allocated.n_periods,
        "n_waves": n_waves,
        "first_period": str(allocated.periods[0]),
        "last_period": str(allocated.periods[-1]),
        "transition": config.transition,
        "control_cells": int(np.sum(cells == 0)),
        "intervention_cells": n_treated,
    }
    text = Paragraph(
        (
            f"Stepped-wedge cluster randomised trial: {allocated.n_clusters} clusters "
            f"randomised to {n_waves} waves over {allocated.n_periods} periods "
            f"({values['first_period']} to {values['last_period']}), "
            f"{values['control_cells']} control and {n_treated} intervention cluster-periods. "
            "A period that contains a wave's start date counts as ",
            Code(config.transition),
            " (see ",
            Code("Design.from_start_dates"),
            "). Clusters stay on the intervention once they start.",
        )
    )
    return Section(
        "design",
        "Trial design",
        (text, fig, waves),
        values,
        ("3a design", "5 roll-out dates", "14a dates of each period and switch"),
    )


def randomisation_section(allocation: Allocation) -> Section:
    """How the sequence was generated and the allocation drawn (CONSORT-SW 8a, 8b)."""
    method = "restricted" if allocation.method == "restricted" else "stratified"
    parts: list[str | Code] = [
        "Clusters were randomised to waves by "
        + (
            f"{method} randomisation by {allocation.strata}"
            if allocation.strata
            else "simple randomisation"
        ),
    ]
    if allocation.constrained:
        parts.append(
            f", constrained on {', '.join(allocation.balance_columns)} "
            f"(the allocation was drawn from the {fmt_int(allocation.n_admissible)} best-balanced "
            f"of {fmt_int(allocation.n_candidates)} candidate allocations)"
        )
    parts += [
        f". Seed {allocation.seed}; the allocation is reproduced exactly by ",
        Code("steppedwedge.randomise"),
        " with the recorded seed and inputs (input SHA-256 ",
        Code(allocation.input_hash[:16]),
        f"). Smallest attainable randomisation p-value: {fmt_short(allocation.min_pvalue)}.",
    ]
    frame = allocation.to_frame()
    extra = [c for c in frame.columns if c not in ("cluster", "sequence", "wave", "start_period")]
    records = [
        {
            "wave": int(r["sequence"]) + 1,
            "cluster": str(r["cluster"]),
            "first period on the intervention": str(r["start_period"]),
            **{c: r[c] for c in extra},
        }
        for _, r in frame.iterrows()
    ]
    fmts = {c: fmt_num for c in extra if pd.api.types.is_numeric_dtype(frame[c])}
    blocks: list[Paragraph | Table] = [
        Paragraph(tuple(p for p in parts if p)),
        table_from_records("allocation", records, fmts, "The allocation"),
    ]
    values = {
        "seed": allocation.seed,
        "input_hash": allocation.input_hash,
        "n_possible": allocation.n_possible,
        "n_eligible": allocation.n_eligible,
        "n_admissible": allocation.n_admissible,
        "n_candidates": allocation.n_candidates,
        "min_pvalue": allocation.min_pvalue,
        "balance_score": allocation.balance_score,
    }
    if allocation.balance:
        bal = [
            {
                "covariate": c,
                "achieved difference (SD)": float(d),
                "mean |difference| unconstrained (SD)": float(
                    allocation.balance_reference.get(c, np.nan)
                ),
            }
            for c, d in allocation.balance.items()
        ]
        blocks.append(
            table_from_records(
                "balance",
                bal,
                {k: fmt_num for k in bal[0] if k != "covariate"},
                "Balance: standardised within-period intervention minus control difference",
            )
        )
    return Section(
        "randomisation",
        "Randomisation",
        tuple(blocks),
        values,
        ("8a sequence generation", "8b type of randomisation and restriction"),
    )


_POPULATION = {
    "itt": "intention to treat: every cluster is analysed in the arm of the wave it was "
    "allocated to, whenever it actually started",
    "as-treated": "as treated: every cluster is analysed in the arm it was actually in",
}


def _flow_status(flow: pd.DataFrame, rollout: pd.DataFrame | None, design: Design) -> pd.DataFrame:
    """Replace the data-derived status by the configured start dates, where they are given."""
    if rollout is None:
        return flow
    by = {str(r["cluster"]): r for r in rollout.to_dict("records")}
    status = []
    for r in flow.to_dict("records"):
        given = by.get(str(r["cluster"]))
        if given is None or given["status"] == "as allocated" or r["status"] == "no data":
            status.append(r["status"])
        elif given["status"] == "never":
            status.append("never started")
        else:
            status.append(f"{given['status']} (started {given['actual_start']})")
    out: pd.DataFrame = flow.assign(status=status)
    return out


def flow_section(
    cd: CellData, allocation: Allocation, rollout: pd.DataFrame | None, population: str
) -> tuple[Section, list[str]]:
    """Cluster flow by wave and exposure per arm and period (CONSORT-SW 13a, 13b, 16).

    ``cd`` holds the data with the treatment the data record (the observed roll-out);
    ``rollout`` the configured start dates (:meth:`TrialConfig.rollout`), which take
    precedence.  Returns the section and the departures from the planned roll-out.
    """
    design = allocation.design
    flow = _flow_status(cluster_flow(cd.cells, design), rollout, design)
    rows = []
    for w, g in flow.groupby("wave", sort=True):
        rows.append(
            {
                "wave": int(str(w)),
                "randomised": len(g),
                "started as allocated": int((g["status"] == "as allocated").sum()),
                "started late or early": int(g["status"].str.contains("late|early").sum()),
                "never started": int((g["status"] == "never started").sum()),
                "analysed": int((g["cells"] > 0).sum()),
                "cluster-periods analysed": int(g["cells"].sum()),
            }
        )
    total = {k: (sum(r[k] for r in rows) if k != "wave" else "all") for k in rows[0]}
    table = table_from_records("cluster_flow", rows + [total], caption="Flow of clusters by wave")
    deviations = [
        f"{r['cluster']} (wave {r['wave']}): {r['status']}; allocated "
        f"{_period_label(design, int(r['allocated_start']))}, "
        + (
            f"first intervention period in the data {_period_label(design, obs)}"
            if (obs := int(r["observed_start"])) >= 0
            else "no intervention period in the data"
        )
        for r in flow.to_dict("records")
        if r["status"] != "as allocated"
    ]
    exposure = _exposure_table(cd)
    blocks: list[Paragraph | Table | Callout | BulletList] = [
        Paragraph(
            (
                f"All {len(flow)} randomised clusters, by wave: whether they started the "
                "intervention in the period allocated, and how many were analysed. Analysis "
                f"population: {_POPULATION.get(population, population)}.",
            )
        ),
        table,
    ]
    if deviations:
        blocks.append(Callout(("Departures from the allocated roll-out:",), "warning"))
        blocks.append(BulletList(tuple((d,) for d in deviations)))
    else:
        blocks.append(Paragraph(("Every cluster started in the period it was allocated to.",)))
    blocks.append(exposure)
    values = {
        "randomised": int(total["randomised"]),
        "started_as_allocated": int(total["started as allocated"]),
        "late_or_early": int(total["started late or early"]),
        "never_started": int(total["never started"]),
        "analysed": int(total["analysed"]),
        "analysis_population": population,
        "deviations": list(deviations),
    }
    sec = Section(
        "flow",
        "Participant flow and exposure",
        tuple(blocks),
        values,
        (
            "13a clusters randomised and analysed, exposure per period",
            "13b losses and exclusions",
            "16 numbers analysed",
        ),
    )
    return sec, deviations


def _exposure_table(cd: CellData) -> Table:
    c = cd.cells.assign(arm=np.where(cd.cells["treated"] > 0, "intervention", "control"))
    g = c.groupby(["t", "arm"]).agg(
        clusters=("cluster", "nunique"), exposure=("exposure", "sum"), events=("events", "sum")
    )
    records = []
    for t, period in enumerate(cd.periods):
        rec: dict[str, object] = {"period": period}
        for arm in ("control", "intervention"):
            hit = g.loc[(t, arm)] if (t, arm) in g.index else None
            rec[f"{arm} clusters"] = 0 if hit is None else int(hit["clusters"])
            rec[f"{arm} {cd.exposure_label}"] = 0.0 if hit is None else float(hit["exposure"])
        records.append(rec)
    what = cd.exposure_label if cd.has_exposure else "individuals (rows)"
    fmts = {k: fmt_int for k in records[0] if k != "period"}
    return table_from_records(
        "exposure", records, fmts, f"Clusters and {what} per arm (as analysed) and period"
    )
