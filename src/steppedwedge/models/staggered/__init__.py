"""Design-based estimators for randomised staggered rollouts (stepped-wedge timing).

:func:`fit_staggered` (also ``sw.fit(..., method=...)``) with ``method`` one of
``"efficient-staggered"`` (Roth & Sant'Anna 2023), ``"callaway-santanna"`` (Callaway &
Sant'Anna 2021), ``"sun-abraham"`` (Sun & Abraham 2021) and ``"imputation"`` (Borusyak,
Jaravel & Spiess 2024); all return a :class:`StaggeredResult`.
"""

from __future__ import annotations

from ._result import StaggeredResult
from .estimators import METHODS, fit_staggered, fit_staggered_spec

__all__ = ["METHODS", "StaggeredResult", "fit_staggered", "fit_staggered_spec"]
