"""The report's figures, rendered to byte-identical PNG files.

Figures are drawn on a bare :class:`matplotlib.figure.Figure` with the Agg canvas (no
pyplot state, no GUI backend) under fixed style settings, and saved without the
``Software`` metadata chunk, so the same inputs give the same bytes on every run.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pandas as pd

from .document import Figure

__all__ = [
    "CONTROL",
    "INTERVENTION",
    "draw",
    "plot_lag_correlation",
    "plot_rates_by_exposure_time",
    "plot_rates_by_period",
    "plot_trajectories",
]

#: Colours of the two conditions (those of :func:`steppedwedge.plotting.plot_design`).
CONTROL = "#b07d2b"
INTERVENTION = "#1f5f8b"
_STYLE: dict[str, Any] = {
    "font.size": 9.0,
    "axes.titlesize": 9.5,
    "axes.labelsize": 9.0,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.color": "#e3e6e8",
    "grid.linewidth": 0.6,
    "legend.frameon": False,
    "legend.fontsize": 8.5,
    "xtick.labelsize": 8.0,
    "ytick.labelsize": 8.0,
    "svg.hashsalt": "steppedwedge",
}


def draw(
    name: str,
    caption: str,
    painter: Callable[[Any], None],
    size: tuple[float, float] = (7.0, 3.6),
    alt: str = "",
) -> Figure:
    """Create a figure of ``size`` inches, let ``painter(fig)`` draw on it, return the PNG."""
    import matplotlib as mpl
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure as MplFigure

    with mpl.rc_context(_STYLE):  # type: ignore[arg-type]
        fig = MplFigure(figsize=size, dpi=150)
        FigureCanvasAgg(fig)
        painter(fig)
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=150, bbox_inches="tight", metadata={"Software": None})
    return Figure(name, buf.getvalue(), caption, alt or caption)


def plot_trajectories(
    fig: Any,
    cells: pd.DataFrame,
    periods: Sequence[str],
    ylabel: str,
) -> None:
    """Small multiples, one panel per wave: each cluster's outcome over the periods.

    ``cells`` has columns ``cluster``, ``wave`` (1-based), ``t`` (period index), ``value``
    and ``treated`` (0/1, or a fraction).
    """
    waves = sorted(cells["wave"].unique())
    ncol = min(4, len(waves))
    nrow = int(np.ceil(len(waves) / ncol))
    axes = fig.subplots(nrow, ncol, sharex=True, sharey=True, squeeze=False)
    ticks = _period_ticks(len(periods), 4)
    for k, ax in enumerate(axes.flat):
        if k >= len(waves):
            ax.set_visible(False)
            continue
        sub = cells[cells["wave"] == waves[k]]
        for _, g in sub.groupby("cluster", sort=True):
            g = g.sort_values("t")
            t, v, tr = g["t"].to_numpy(), g["value"].to_numpy(float), g["treated"].to_numpy()
            ax.plot(t, v, color="#9aa3a9", lw=0.8, zorder=1)
            ax.plot(t[tr <= 0], v[tr <= 0], "o", ms=2.4, color=CONTROL, zorder=2)
            ax.plot(t[tr > 0], v[tr > 0], "o", ms=2.4, color=INTERVENTION, zorder=2)
        starts = sub.loc[sub["treated"] > 0, "t"]
        if len(starts):
            ax.axvline(starts.min() - 0.5, color="#444", lw=0.7, ls="--")
        ax.set_title(f"Wave {waves[k]} ({sub['cluster'].nunique()} clusters)")
        ax.set_xticks(ticks, [str(periods[i]) for i in ticks], rotation=45, ha="right")
    fig.supylabel(ylabel, fontsize=9)
    fig.legend(
        handles=_condition_handles(),
        loc="upper center",
        ncol=2,
        bbox_to_anchor=(0.5, 1.02),
    )
    fig.tight_layout(rect=(0, 0, 1, 0.97))


def _condition_handles() -> list[Any]:
    from matplotlib.lines import Line2D

    return [
        Line2D([], [], marker="o", ls="", color=CONTROL, label="control"),
        Line2D([], [], marker="o", ls="", color=INTERVENTION, label="intervention"),
    ]


def _period_ticks(n: int, most: int = 8) -> list[int]:
    step = max(1, int(np.ceil(n / most)))
    return list(range(0, n, step))


def plot_rates_by_period(
    fig: Any, table: pd.DataFrame, periods: Sequence[str], ylabel: str
) -> None:
    """Plot the observed outcome by period in each condition.

    ``table`` has ``t``, ``arm``, ``value`` and ``clusters`` (marker area is proportional to
    the number of clusters).
    """
    ax = fig.subplots()
    for arm, colour in (("control", CONTROL), ("intervention", INTERVENTION)):
        sub = table[table["arm"] == arm].sort_values("t")
        if not len(sub):
            continue
        ax.plot(sub["t"], sub["value"], color=colour, lw=1.2, label=arm)
        ax.scatter(sub["t"], sub["value"], s=6 + 5 * sub["clusters"], color=colour, zorder=3)
    ticks = _period_ticks(len(periods))
    ax.set_xticks(ticks, [str(periods[i]) for i in ticks])
    ax.set_xlabel("period")
    ax.set_ylabel(ylabel)
    ax.legend(loc="best")


def plot_rates_by_exposure_time(fig: Any, table: pd.DataFrame, ylabel: str) -> None:
    """Plot the observed outcome by periods since the cluster started (negative: before)."""
    ax = fig.subplots()
    pre = table[table["exposure_time"] < 0]
    post = table[table["exposure_time"] >= 0]
    for part, colour, label in ((pre, CONTROL, "before start"), (post, INTERVENTION, "after")):
        ax.plot(part["exposure_time"], part["value"], color=colour, lw=1.2)
        ax.scatter(
            part["exposure_time"],
            part["value"],
            s=6 + 5 * part["clusters"],
            color=colour,
            zorder=3,
            label=label,
        )
    ax.axvline(-0.5, color="#444", lw=0.7, ls="--")
    ax.set_xlabel("periods since the cluster started the intervention (0 = first period)")
    ax.set_ylabel(ylabel)
    ax.legend(loc="best")


def plot_lag_correlation(fig: Any, table: pd.DataFrame) -> None:
    """Plot the residual correlation by lag against the primary model's implied one."""
    ax = fig.subplots()
    ax.plot(table["lag"], table["observed"], "o-", color=INTERVENTION, label="observed residuals")
    ax.plot(
        table["lag"],
        table["implied"],
        "s--",
        color="#6d6d6d",
        label="implied by the primary model",
    )
    ax.set_xlabel("lag (periods apart)")
    ax.set_ylabel("correlation")
    ax.set_ylim(min(0.0, float(np.nanmin(table["observed"])) - 0.05), 1.0)
    ax.legend(loc="best")
