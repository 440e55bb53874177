"""Side-by-side analyses of one trial.

:func:`compare` tabulates fitted results; :func:`compare_analyses` fits the primary analysis
and a panel of alternatives and explains where they disagree (implied weights of the
immediate-effect estimator, :func:`implied_weights`; the exposure-time effect curve).
"""

from __future__ import annotations

from ._analyses import PANEL_COLUMNS, AnalysisComparison, compare_analyses
from ._panel import ANALYSES
from ._table import COMPARE_COLUMNS, compare
from ._weights import ImpliedWeights, implied_weights

__all__ = [
    "ANALYSES",
    "COMPARE_COLUMNS",
    "PANEL_COLUMNS",
    "AnalysisComparison",
    "ImpliedWeights",
    "compare",
    "compare_analyses",
    "implied_weights",
]
