"""Save the variance estimate the bundled council example cites in its power section.

Run from the repository root after a change to ``sw.estimate_variance``::

    python tools/make_council_variance.py

It fits ``sw.estimate_variance`` to the bundled DfE panel (entries into care, 2021-2025, the
child population as exposure, persistent + decaying council effects; boundary-change councils
excluded; suppressed and unpublished years dropped) and writes the result's ``to_dict()`` to
``src/steppedwedge/report/council_variance.json``.  ``steppedwedge.report.council_example``
reads it back with ``EstimatedVariance.from_dict`` and converts it to quarters, so building the
example's report does not refit the panel.  ``tests/test_report_config.py`` checks that the
saved file is what this script produces.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import steppedwedge as sw

OUT = (
    Path(__file__).resolve().parents[1]
    / "src"
    / "steppedwedge"
    / "report"
    / "council_variance.json"
)


def estimate() -> Any:
    """Fit the example's estimate (the unpublished years' missing values are expected)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", sw.MissingDataWarning)
        return sw.estimate_variance(
            sw.datasets.load_dfe_panel(),
            outcome="cla_started_in_year",
            cluster="la_code",
            period="year",
            exposure="population_0_17",
            family="poisson",
            structure="nested+decay",
            source="DfE 'Children looked after in England' 2021-2025 (bundled panel)",
        )


def text(est: Any) -> str:
    """Return the saved form of an estimate (sorted keys: a stable diff)."""
    return json.dumps(est.to_dict(), indent=1, sort_keys=True) + "\n"


if __name__ == "__main__":
    OUT.write_text(text(estimate()), encoding="utf-8")
    print(f"wrote {OUT}")
