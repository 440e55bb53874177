"""Deviations from the plan and provenance: what changed, and how to reproduce the report."""

from __future__ import annotations

import json
import platform

import numpy as np
import pandas as pd

from ..._version import __version__
from ...randomise import Allocation
from ..config import TrialConfig
from ..document import BulletList, Code, Paragraph, Section, table_from_records

__all__ = ["deviations_section", "provenance_section"]


def deviations_section(items: list[str]) -> Section:
    """Departures from the planned roll-out and analysis found by the report (3b, 13b)."""
    blocks = (
        (
            Paragraph(("The report found these departures from the plan:",)),
            BulletList(tuple((i,) for i in items)),
        )
        if items
        else (Paragraph(("None found: the roll-out and the analyses ran as planned.",)),)
    )
    return Section(
        "deviations",
        "Deviations from the plan",
        blocks,
        {"items": list(items)},
        ("3b changes to methods", "13b losses and exclusions"),
    )


def provenance_section(
    config: TrialConfig, allocation: Allocation, data_hash: str | None
) -> Section:
    """Software versions, inputs and hashes that reproduce the report."""
    import matplotlib
    import scipy
    import statsmodels

    rows = [
        ("steppedwedge", __version__),
        ("python", platform.python_version()),
        ("numpy", np.__version__),
        ("scipy", scipy.__version__),
        ("pandas", pd.__version__),
        ("statsmodels", statsmodels.__version__),
        ("matplotlib", matplotlib.__version__),
        ("configuration", config.source),
        ("randomisation seed", json.dumps(allocation.seed)),
        ("allocation input hash (SHA-256)", allocation.input_hash),
    ]
    if data_hash is not None:
        rows.append(("data hash (SHA-256 of the CSV text)", data_hash))
    table = table_from_records(
        "provenance", [{"item": k, "value": v} for k, v in rows], caption="Provenance"
    )
    text = Paragraph(
        (
            "Re-running ",
            Code("steppedwedge report"),
            " on the same configuration and data with the same versions gives byte-identical "
            "files; ",
            Code("results.json"),
            " beside this page holds every number of the report.",
        )
    )
    return Section("provenance", "Provenance", (text, table), dict(rows))
