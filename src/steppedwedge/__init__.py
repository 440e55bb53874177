"""steppedwedge: design, power, simulation and analysis of stepped-wedge cluster randomised trials.

The public API is listed in ``__all__``; everything else is private.  British spelling is used
throughout (``randomise``, ``analyse``) and no American aliases are provided.

Note that ``steppedwedge.power`` is the power *function* (the analytic-power subpackage of the
same name stays importable as ``import steppedwedge.power.analytic``).
"""

from __future__ import annotations

from . import datasets
from ._version import __version__
from .data import CellSummary, TrialData
from .design import Design
from .exceptions import (
    ConvergenceWarning,
    DataError,
    DesignError,
    MissingDataWarning,
    SmallSampleWarning,
    SolveError,
    SteppedWedgeError,
    SteppedWedgeWarning,
)
from .power import (
    AssuranceResult,
    CellMap,
    DesignEffect,
    DesignSearchResult,
    ExpectedPowerResult,
    PowerCurve,
    PowerResult,
    assurance,
    cell_weights,
    design_effect,
    expected_power,
    information_content,
    power,
    power_curve,
    power_grid,
    search_designs,
    solve_power,
)
from .randomise import Allocation, randomise
from .variance import VarianceComponents

__all__ = [
    "Allocation",
    "AssuranceResult",
    "CellMap",
    "CellSummary",
    "ConvergenceWarning",
    "DataError",
    "Design",
    "DesignEffect",
    "DesignError",
    "DesignSearchResult",
    "ExpectedPowerResult",
    "MissingDataWarning",
    "PowerCurve",
    "PowerResult",
    "SmallSampleWarning",
    "SolveError",
    "SteppedWedgeError",
    "SteppedWedgeWarning",
    "TrialData",
    "VarianceComponents",
    "__version__",
    "assurance",
    "cell_weights",
    "datasets",
    "design_effect",
    "expected_power",
    "information_content",
    "power",
    "power_curve",
    "power_grid",
    "randomise",
    "search_designs",
    "solve_power",
]
