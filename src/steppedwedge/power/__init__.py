"""Analytic power, sample size and design diagnostics.

Public entry points (re-exported at the package top level):
:func:`power`, :func:`solve_power`, :func:`power_grid`, :func:`design_effect`,
:func:`information_content`, :func:`cell_weights`, :func:`assurance`,
:func:`expected_power`, :func:`search_designs` and their result types.
"""

from __future__ import annotations

from ._solve import solve_power
from .analytic import power
from .curves import PowerCurve, power_curve
from .diagnostics import CellMap, DesignEffect, cell_weights, design_effect, information_content
from .expected import AssuranceResult, ExpectedPowerResult, assurance, expected_power
from .grid import power_grid
from .result import PowerResult
from .search import DesignSearchResult, search_designs

__all__ = [
    "AssuranceResult",
    "CellMap",
    "DesignEffect",
    "DesignSearchResult",
    "ExpectedPowerResult",
    "PowerCurve",
    "PowerResult",
    "assurance",
    "cell_weights",
    "design_effect",
    "expected_power",
    "information_content",
    "power",
    "power_curve",
    "power_grid",
    "search_designs",
    "solve_power",
]
