"""Side-by-side analyses of one trial.

:func:`compare` tabulates fitted results; :func:`compare_analyses` fits the primary analysis
and a panel of alternatives and explains where they disagree.
"""

from __future__ import annotations

from ._table import COMPARE_COLUMNS, compare

__all__ = ["COMPARE_COLUMNS", "compare"]
