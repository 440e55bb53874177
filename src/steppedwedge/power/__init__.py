"""Analytic power, sample size and design diagnostics.

Public entry points (re-exported at the package top level by the lead):
:func:`power`, :func:`solve_power`, :func:`power_grid`, :func:`design_effect`,
:func:`information_content`, :func:`cell_weights`, :func:`assurance`,
:func:`expected_power`, :func:`search_designs` and the result types.
"""

from __future__ import annotations

from .analytic import power
from .result import PowerResult, PowerSummary

__all__ = ["PowerResult", "PowerSummary", "power"]
