"""The outcome over time: cluster trajectories and observed rates by period and exposure time."""

from __future__ import annotations

import numpy as np

from ..document import Code, Paragraph, Section, table_from_records
from ..figures import (
    draw,
    plot_rates_by_exposure_time,
    plot_rates_by_period,
    plot_trajectories,
)
from ..formatting import fmt_int, fmt_num
from ..observed import RATE_PER, CellData, observed_start, rates_by

__all__ = ["outcome_section"]


def outcome_section(cd: CellData, source: str, data_hash: str, outcome: str) -> Section:
    """Outcome by period and arm, by exposure time, and per cluster (CONSORT-SW 15, 17a)."""
    cells = cd.cells.assign(arm=np.where(cd.cells["treated"] > 0, "intervention", "control"))
    per = RATE_PER if cd.has_exposure else 1.0
    by_period = rates_by(cells, ["t", "arm"], per)  # type: ignore[arg-type]
    start = observed_start(cells)
    rel = cells["t"] - cells["cluster"].map(start)
    cells = cells.assign(exposure_time=np.where(cells["cluster"].map(start) >= 0, rel, np.nan))
    by_exposure = rates_by(cells.dropna(subset=["exposure_time"]), "exposure_time", per)
    by_exposure["exposure_time"] = by_exposure["exposure_time"].astype(int)
    unit = cd.value_label
    fig_traj = draw(
        "trajectories",
        f"Observed {unit} of every cluster over time, one panel per wave; control periods in "
        "ochre, intervention periods in blue, dashed line at the wave's first intervention "
        "period.",
        lambda f: plot_trajectories(f, cells, cd.periods, unit),
        size=(8.0, 2.3 * int(np.ceil(cells["wave"].nunique() / 4)) + 0.6),
    )
    fig_period = draw(
        "rates_by_period",
        f"Observed {unit} by period in each arm (pooled over clusters; marker area "
        "proportional to the number of clusters). Unadjusted: later periods have more "
        "clusters on the intervention, so the arms also differ in calendar time.",
        lambda f: plot_rates_by_period(f, by_period, cd.periods, unit),
    )
    fig_exposure = draw(
        "rates_by_exposure_time",
        f"Observed {unit} by periods since the cluster started (pooled over clusters), "
        "unadjusted for calendar time.",
        lambda f: plot_rates_by_exposure_time(f, by_exposure, unit),
    )
    wide = []
    for t, period in enumerate(cd.periods):
        rec: dict[str, object] = {"period": period}
        for arm in ("control", "intervention"):
            hit = by_period[(by_period["t"] == t) & (by_period["arm"] == arm)]
            rec[f"{arm} {outcome}"] = float(hit["events"].iloc[0]) if len(hit) else np.nan
            rec[f"{arm} {'rate' if cd.has_exposure else 'mean'}"] = (
                float(hit["value"].iloc[0]) if len(hit) else np.nan
            )
        wide.append(rec)
    fmts = {k: (fmt_int if outcome in k else fmt_num) for k in wide[0] if k != "period"}
    table = table_from_records("by_period", wide, fmts, f"Observed {outcome} and {unit} by period")
    intro = Paragraph(
        (
            "Data: ",
            Code(source),
            f" ({fmt_int(len(cells))} cluster-periods, SHA-256 ",
            Code(data_hash[:16]),
            "). Outcome ",
            Code(outcome),
            f", shown as {unit}." if cd.has_exposure else ", shown as its mean per cluster-period.",
        )
    )
    values = {
        "cluster_periods": len(cells),
        "by_exposure_time": by_exposure[["exposure_time", "clusters", "value"]].to_dict("list"),
    }
    return Section(
        "outcomes",
        "Outcome over time",
        (intro, fig_period, table, fig_exposure, fig_traj),
        values,
        ("15 baseline data by condition", "17a outcome by period and condition"),
    )
