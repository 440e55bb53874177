"""steppedwedge: design, power, simulation and analysis of stepped-wedge cluster randomised trials.

The public API is listed in ``__all__``; everything else is private.  British spelling is used
throughout (``randomise``, ``analyse``) and no American aliases are provided.

``steppedwedge.power`` is the power function; the planning code (analytic and simulated power,
sample size, design diagnostics, assurance, design search, variance from history) is the
package :mod:`steppedwedge.planning`.  ``steppedwedge.randomise``, ``steppedwedge.simulate`` and
``steppedwedge.report`` are likewise the functions; the contents of their packages stay
importable (``from steppedwedge.report import TrialConfig``).
"""

from __future__ import annotations

from . import datasets
from ._version import __version__
from .cohort import CohortFrame, cohort_from_events
from .compare import AnalysisComparison, compare, compare_analyses
from .comparison import ComparisonCouncils, comparison_councils
from .data import CellSummary, TrialData
from .design import Design
from .exceptions import (
    ConvergenceWarning,
    DataError,
    DesignError,
    MissingDataWarning,
    OptionError,
    SmallSampleWarning,
    SolveError,
    SteppedWedgeError,
    SteppedWedgeWarning,
)
from .inference.permutation import PermutationResult, permutation_test
from .inference.pooling import PooledResult, pool
from .models import fit
from .models.cluster_level import ClusterSummaryResult
from .models.design_based import DesignBasedResult
from .models.fixed_effects import FixedEffectsResult
from .models.gee import GEEResult
from .models.glmm import GLMMResult
from .models.staggered import StaggeredResult
from .planning import (
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
from .planning.history import EstimatedVariance, estimate_variance
from .planning.simulation import (
    NullSimulationPlan,
    SimulatedPowerResult,
    null_simulation_plan,
    simulate_power,
)
from .randomise import Allocation, randomise
from .report import report
from .results import EstimationResult, FitResult
from .simulate import simulate
from .variance import VarianceComponents, VarianceEstimate

__all__ = [
    "Allocation",
    "AnalysisComparison",
    "AssuranceResult",
    "CellMap",
    "CellSummary",
    "ClusterSummaryResult",
    "ComparisonCouncils",
    "CohortFrame",
    "ConvergenceWarning",
    "DataError",
    "Design",
    "DesignBasedResult",
    "DesignEffect",
    "DesignError",
    "DesignSearchResult",
    "EstimatedVariance",
    "EstimationResult",
    "ExpectedPowerResult",
    "FitResult",
    "FixedEffectsResult",
    "GEEResult",
    "GLMMResult",
    "MissingDataWarning",
    "OptionError",
    "NullSimulationPlan",
    "PermutationResult",
    "PooledResult",
    "PowerCurve",
    "PowerResult",
    "SimulatedPowerResult",
    "SmallSampleWarning",
    "SolveError",
    "StaggeredResult",
    "SteppedWedgeError",
    "SteppedWedgeWarning",
    "TrialData",
    "VarianceComponents",
    "VarianceEstimate",
    "__version__",
    "assurance",
    "cell_weights",
    "cohort_from_events",
    "compare",
    "compare_analyses",
    "comparison_councils",
    "datasets",
    "design_effect",
    "estimate_variance",
    "expected_power",
    "fit",
    "information_content",
    "null_simulation_plan",
    "permutation_test",
    "pool",
    "power",
    "power_curve",
    "power_grid",
    "randomise",
    "report",
    "search_designs",
    "simulate",
    "simulate_power",
    "solve_power",
]
