"""Plots for power calculations: cell maps, power curves and sensitivity heat maps.

matplotlib is imported inside each function; every function takes ``ax=None`` and returns
the Axes.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.axes import Axes

__all__ = ["plot_cell_map", "plot_power_curve", "plot_sensitivity"]


def _axes(ax: Axes | None) -> Axes:
    if ax is None:
        import matplotlib.pyplot as plt

        _, ax = plt.subplots()
    return ax


def plot_cell_map(
    values: np.ndarray,
    *,
    clusters: Sequence[Hashable] | None = None,
    periods: Sequence[Hashable] | None = None,
    title: str | None = None,
    centre: float | None = None,
    annotate: bool | None = None,
    cmap: str | None = None,
    ax: Axes | None = None,
) -> Axes:
    """Heat map of a cluster x period array (information content, GLS cell weights).

    Parameters
    ----------
    values : ndarray, shape (I, T)
        NaN cells (unobserved) are left blank.
    clusters, periods : sequence, optional
        Tick labels.
    title : str, optional
        Axes title.
    centre : float, optional
        Centre a diverging colour map on this value (e.g. 0 for cell weights).
    annotate : bool, optional
        Write the values in the cells (default when the map has at most 200 cells).
    cmap : str, optional
        matplotlib colour map (default ``"RdBu_r"`` when centred, else ``"viridis"``).
    ax : matplotlib.axes.Axes, optional
        Axes to draw on (a new figure when None).

    Returns
    -------
    matplotlib.axes.Axes
        The Axes drawn on (with a colour bar).

    Examples
    --------
    >>> import numpy as np
    >>> from steppedwedge.plotting.power import plot_cell_map
    >>> ax = plot_cell_map(np.array([[1.0, 1.2], [1.1, np.nan]]))
    >>> ax.get_xlabel()
    'period'
    """
    ax = _axes(ax)
    vals = np.asarray(values, dtype=float)
    finite = np.isfinite(vals)
    masked = np.ma.masked_invalid(vals)
    kwargs: dict[str, Any] = {}
    if centre is not None and finite.any():
        span = float(np.nanmax(np.abs(vals[finite] - centre))) or 1.0
        kwargs.update(vmin=centre - span, vmax=centre + span, cmap=cmap or "RdBu_r")
    else:
        kwargs.update(cmap=cmap or "viridis")
    im = ax.imshow(masked, aspect="auto", interpolation="nearest", **kwargs)
    ax.figure.colorbar(im, ax=ax)
    n_i, n_t = vals.shape
    ax.set_xticks(range(n_t))
    ax.set_xticklabels([str(p) for p in (periods if periods is not None else range(1, n_t + 1))])
    if n_i <= 40:
        ax.set_yticks(range(n_i))
        ax.set_yticklabels([str(c) for c in (clusters if clusters is not None else range(n_i))])
    ax.set_xlabel("period")
    ax.set_ylabel("cluster")
    if annotate is None:
        annotate = vals.size <= 200
    if annotate:
        for i in range(n_i):
            for j in range(n_t):
                if np.isfinite(vals[i, j]):
                    ax.text(j, i, f"{vals[i, j]:.3g}", ha="center", va="center", fontsize=7)
    if title:
        ax.set_title(title)
    return ax


def plot_power_curve(
    x: Sequence[float] | np.ndarray,
    power: Sequence[float] | np.ndarray,
    *,
    xlabel: str = "",
    target: float | None = 0.8,
    label: str | None = None,
    ax: Axes | None = None,
) -> Axes:
    """Power against one varying input (clusters, cluster size, effect, ...).

    Parameters
    ----------
    x, power : array_like
        Values of the input and the power at each.
    xlabel : str
        Label of the x axis.
    target : float, optional
        Draw a horizontal reference line at this power (None: no line).
    label : str, optional
        Legend label of the curve.
    ax : matplotlib.axes.Axes, optional
        Axes to draw on (a new figure when None).

    Returns
    -------
    matplotlib.axes.Axes
        The Axes drawn on.

    Examples
    --------
    >>> from steppedwedge.plotting.power import plot_power_curve
    >>> ax = plot_power_curve([1, 2, 3], [0.3, 0.6, 0.8], xlabel="clusters per sequence")
    >>> ax.get_ylabel()
    'power'
    """
    ax = _axes(ax)
    ax.plot(np.asarray(x), np.asarray(power), marker="o", ms=3, label=label)
    if target is not None:
        ax.axhline(target, color="grey", ls="--", lw=0.8)
    ax.set_ylim(0, 1.02)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("power")
    if label is not None:
        ax.legend()
    return ax


def plot_sensitivity(
    values: np.ndarray,
    *,
    x: Sequence[float] | np.ndarray,
    y: Sequence[float] | np.ndarray,
    xlabel: str = "",
    ylabel: str = "",
    title: str | None = "power",
    contour: float | None = 0.8,
    ax: Axes | None = None,
) -> Axes:
    """Heat map of power over a two-parameter grid, with an optional contour at a target.

    Parameters
    ----------
    values : ndarray, shape (len(y), len(x))
        Power (or any quantity) on the grid.
    x, y : array_like
        Grid values along columns and rows.
    xlabel, ylabel, title : str
        Axis labels and title.
    contour : float, optional
        Draw the contour at this level (None: none).
    ax : matplotlib.axes.Axes, optional
        Axes to draw on (a new figure when None).

    Returns
    -------
    matplotlib.axes.Axes
        The Axes drawn on (with a colour bar).

    Examples
    --------
    >>> import numpy as np
    >>> from steppedwedge.plotting.power import plot_sensitivity
    >>> ax = plot_sensitivity(np.array([[0.5, 0.7], [0.6, 0.9]]), x=[0.01, 0.05], y=[0.2, 0.8],
    ...                       xlabel="ICC", ylabel="CAC")
    >>> ax.get_xlabel()
    'ICC'
    """
    ax = _axes(ax)
    vals = np.asarray(values, dtype=float)
    xs = np.asarray(x, dtype=float)
    ys = np.asarray(y, dtype=float)
    mesh = ax.pcolormesh(xs, ys, vals, shading="nearest", cmap="viridis", vmin=0, vmax=1)
    ax.figure.colorbar(mesh, ax=ax)
    if contour is not None and vals.shape[0] > 1 and vals.shape[1] > 1:
        if np.nanmin(vals) < contour < np.nanmax(vals):
            cs = ax.contour(xs, ys, vals, levels=[contour], colors="white")
            ax.clabel(cs, fmt=lambda v: f"{v:.2g}")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    return ax
