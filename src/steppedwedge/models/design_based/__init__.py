"""Design-based estimators of stepped-wedge trials on cluster-period summaries.

:func:`fit_design_based` (also ``sw.fit(..., method=...)``) with ``method`` one of
``"vertical"`` (Thompson et al. 2018), ``"hughes"`` (Hughes, Heagerty, Xia & Ren 2020),
``"synthetic-control"`` and ``"crossover"`` (Kennedy-Shaffer, de Gruttola & Lipsitch 2020);
all return a :class:`DesignBasedResult` and take their inference from the randomisation.
"""

from __future__ import annotations

from ._result import DesignBasedResult
from .estimators import METHODS, fit_design_based, fit_design_based_spec

__all__ = [
    "METHODS",
    "DesignBasedResult",
    "fit_design_based",
    "fit_design_based_spec",
]
