"""Plots for steppedwedge objects.

Every function takes ``ax=None`` and returns the :class:`matplotlib.axes.Axes` it drew on;
matplotlib is imported only when a plot is drawn, never at import time.
"""

from __future__ import annotations

from .comparison import plot_comparison_trends
from .design import cell_codes, plot_design
from .effects import plot_effects
from .forest import plot_forest, plot_implied_weights
from .power import plot_cell_map, plot_power_curve, plot_sensitivity

__all__ = [
    "cell_codes",
    "plot_cell_map",
    "plot_comparison_trends",
    "plot_design",
    "plot_effects",
    "plot_forest",
    "plot_implied_weights",
    "plot_power_curve",
    "plot_sensitivity",
]
