"""Exploratory analyses (not pre-specified): effects over exposure time, implied weights."""

from __future__ import annotations

from typing import Any

from ..analyses import AnalysisRun
from ..document import BulletList, Paragraph, Section, table_from_records
from ..figures import draw
from ..formatting import fmt_p
from .analysis import effect_record

__all__ = ["exploratory_section"]


def exploratory_section(run: AnalysisRun, panel: Any) -> Section:
    """Exposure-time and not-yet-treated analyses beside the primary (CONSORT-SW 18).

    ``panel`` is the :class:`~steppedwedge.compare.AnalysisComparison` of
    :func:`~steppedwedge.report.analyses.run_exploratory`.
    """
    records = [effect_record(run, r, str(r["assumes"])) for r in panel.table.to_dict("records")]
    table = table_from_records(
        "exploratory",
        records,
        {"p": fmt_p},
        "Exploratory estimates beside the primary analysis",
        hidden=("estimate", "low", "high"),
    )
    blocks: list[Any] = [
        Paragraph(
            (
                "Not pre-specified. The primary analysis assumes one immediate, constant "
                "effect. These analyses let the effect change with the time since a cluster "
                "started (exposure-time indicators, averaged over exposure times: TATE) or "
                "impute each treated cell's control outcome from the clusters not yet treated "
                "(Borusyak, Jaravel and Spiess's imputation estimator; the Callaway-Sant'Anna "
                "DiD is in the sensitivity panel). If the effect does change, the "
                "immediate-effect estimator averages the exposure-time effects with the "
                "weights below, some of which can be negative (Kenny et al. 2022).",
            )
        ),
        table,
    ]
    if getattr(panel, "effect_curve", None) is not None and getattr(panel, "weights", None):
        blocks.append(
            draw(
                "exposure_time_weights",
                "Weights of the immediate-effect estimator on each exposure time, with the "
                "effect estimated at each exposure time (exposure-time indicators).",
                lambda f: panel.plot_weights(ax=f.subplots()),
                size=(7.0, 3.6),
            )
        )
    sentences = [str(s) for s in panel.explain()]
    blocks.append(BulletList(tuple((s,) for s in sentences)))
    return Section(
        "exploratory",
        "Exploratory analyses",
        tuple(blocks),
        {"panel": records, "explanations": sentences},
        ("18 ancillary analyses, pre-specified or exploratory",),
    )
