"""Plots for steppedwedge objects.

Every function takes ``ax=None`` and returns the :class:`matplotlib.axes.Axes` it drew on;
matplotlib is imported only when a plot is drawn, never at import time.
"""

from __future__ import annotations

from .design import cell_codes, plot_design

__all__ = ["cell_codes", "plot_design"]
