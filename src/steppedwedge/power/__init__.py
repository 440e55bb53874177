"""Analytic power, sample size and design diagnostics.

Public entry points (re-exported at the package top level):
:func:`power`, :func:`solve_power`, :func:`design_effect`, :func:`information_content`,
:func:`cell_weights` and the result types.
"""

from __future__ import annotations

from ._solve import solve_power
from .analytic import power
from .diagnostics import CellMap, DesignEffect, cell_weights, design_effect, information_content
from .result import PowerResult, PowerSummary

__all__ = [
    "CellMap",
    "DesignEffect",
    "PowerResult",
    "PowerSummary",
    "cell_weights",
    "design_effect",
    "information_content",
    "power",
    "solve_power",
]
