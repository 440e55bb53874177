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
    PowerResult,
    cell_weights,
    design_effect,
    information_content,
    power,
    solve_power,
)
from .randomise import Allocation, randomise
from .variance import VarianceComponents

__all__ = [
    "Allocation",
    "CellSummary",
    "ConvergenceWarning",
    "DataError",
    "Design",
    "DesignError",
    "MissingDataWarning",
    "PowerResult",
    "SmallSampleWarning",
    "SolveError",
    "SteppedWedgeError",
    "SteppedWedgeWarning",
    "TrialData",
    "VarianceComponents",
    "__version__",
    "cell_weights",
    "datasets",
    "design_effect",
    "information_content",
    "power",
    "randomise",
    "solve_power",
]
