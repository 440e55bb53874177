"""steppedwedge: design, power, simulation and analysis of stepped-wedge cluster randomised trials.

The public API is listed in ``__all__``; everything else is private.  British spelling is used
throughout (``randomise``, ``analyse``) and no American aliases are provided.
"""

from __future__ import annotations

from ._version import __version__
from .variance import VarianceComponents
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

__all__ = [
    "ConvergenceWarning",
    "DataError",
    "DesignError",
    "MissingDataWarning",
    "SmallSampleWarning",
    "SolveError",
    "SteppedWedgeError",
    "SteppedWedgeWarning",
    "VarianceComponents",
    "__version__",
]
