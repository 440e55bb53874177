"""Forest plot of a panel of analyses, and the implied weights that explain disagreement."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from ..exceptions import DataError

__all__ = ["plot_forest", "plot_implied_weights"]


def plot_forest(
    table: pd.DataFrame,
    ax: Any = None,
    *,
    ratio: bool = False,
    label: str | None = None,
    primary: int | None = 0,
    null: float | None = None,
) -> Any:
    """Draw one estimate and interval per row of a comparison table, first row on top.

    Parameters
    ----------
    table : pandas.DataFrame
        Columns ``model``, ``estimate``, ``conf_low`` and ``conf_high`` on the link scale
        (the output of :func:`steppedwedge.compare`, or the ``table`` of
        :func:`steppedwedge.compare_analyses`).  A row without an interval (NaN ends, e.g.
        a randomisation test that cannot invert) is drawn as a point.
    ax : matplotlib.axes.Axes, optional
        Axes to draw on; a new figure is made when None.
    ratio : bool, default False
        Exponentiate (rate or odds ratios) and use a log x axis.
    label : str, optional
        x-axis label (default "ratio" or "effect").
    primary : int or None, default 0
        Row position of the primary analysis: drawn in bold with a dotted vertical line at
        its estimate; None for no primary.
    null : float, optional
        Position of the no-effect line (default 1 for ratios, 0 otherwise).

    Returns
    -------
    matplotlib.axes.Axes

    Raises
    ------
    ValueError
        If a required column is missing or the table is empty.

    Examples
    --------
    >>> import pandas as pd
    >>> from steppedwedge.plotting import plot_forest
    >>> table = pd.DataFrame({"model": ["GLMM", "GEE"], "estimate": [-0.13, -0.10],
    ...                       "conf_low": [-0.21, -0.24], "conf_high": [-0.05, 0.04]})
    >>> ax = plot_forest(table, ratio=True)
    >>> [t.get_text() for t in ax.get_yticklabels()]
    ['GLMM', 'GEE']
    >>> ax.get_xscale()
    'log'
    """
    import matplotlib.pyplot as plt

    missing = [c for c in ("model", "estimate", "conf_low", "conf_high") if c not in table]
    if missing or len(table) == 0:
        raise DataError(f"plot_forest needs a non-empty table with columns {missing or '...'}.")
    tf = np.exp if ratio else (lambda v: v)
    est = tf(table["estimate"].to_numpy(dtype=float))
    lo = tf(table["conf_low"].to_numpy(dtype=float))
    hi = tf(table["conf_high"].to_numpy(dtype=float))
    n = len(table)
    y = np.arange(n)[::-1].astype(float)
    if ax is None:
        _, ax = plt.subplots(figsize=(7.0, 0.45 * n + 1.2))
    has = np.isfinite(lo) & np.isfinite(hi)
    ax.errorbar(
        est[has],
        y[has],
        xerr=np.vstack([est[has] - lo[has], hi[has] - est[has]]),
        fmt="o",
        color="black",
        ecolor="0.35",
        capsize=3,
    )
    ax.plot(est[~has], y[~has], "o", mfc="white", color="black")
    ax.axvline(1.0 if ratio and null is None else (0.0 if null is None else null), color="0.6")
    if primary is not None and math.isfinite(est[primary]):
        ax.axvline(est[primary], color="black", linestyle=":", linewidth=1)
    ax.set_yticks(y)
    ax.set_yticklabels([str(m) for m in table["model"]])
    if primary is not None:
        ax.get_yticklabels()[primary].set_fontweight("bold")
    if ratio:
        from matplotlib.ticker import FuncFormatter

        ax.set_xscale("log")
        fmt = FuncFormatter(lambda v, _: f"{v:.3g}")
        ax.xaxis.set_major_formatter(fmt)
        ax.xaxis.set_minor_formatter(fmt)
        ax.tick_params(axis="x", which="minor", labelsize=8)
    ax.set_xlabel(label or ("ratio" if ratio else "effect"))
    ax.set_ylim(-0.7, n - 0.3)
    return ax


def plot_implied_weights(
    weights: Any, effect_curve: pd.DataFrame | None = None, ax: Any = None
) -> Any:
    """Bar chart of the immediate-effect estimator's weights on exposure times.

    Parameters
    ----------
    weights : mapping of str to ImpliedWeights
        E.g. ``{"gls": ..., "twfe": ...}`` (:attr:`AnalysisComparison.weights`); each is
        drawn as one set of bars (a negative bar is a "forbidden comparison").
    effect_curve : pandas.DataFrame, optional
        ``exposure_time, estimate`` of an ETI fit, drawn on a second y axis.
    ax : matplotlib.axes.Axes, optional
        Axes to draw on; a new figure is made when None.

    Returns
    -------
    matplotlib.axes.Axes
        The axes with the bars (the effect curve's axes is ``ax.right_ax`` when drawn).

    Examples
    --------
    >>> import numpy as np
    >>> from steppedwedge.compare import implied_weights
    >>> from steppedwedge.plotting import plot_implied_weights
    >>> x = np.array([[0, 1, 1, 1], [0, 0, 1, 1], [0, 0, 0, 1]], dtype=float)
    >>> w = implied_weights(x, clusters=["a", "b", "c"], periods=[1, 2, 3, 4])
    >>> ax = plot_implied_weights({"twfe": w})
    >>> [round(float(p.get_height()), 2) for p in ax.patches]
    [1.2, 0.1, -0.3]
    """
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(7.0, 4.0))
    kinds = list(weights)
    width = 0.8 / max(len(kinds), 1)
    for k, kind in enumerate(kinds):
        table = weights[kind].exposure
        e = table["exposure_time"].to_numpy(dtype=float)
        ax.bar(e + (k - (len(kinds) - 1) / 2) * width, table["weight"], width, label=kind)
    ax.axhline(0.0, color="0.4", linewidth=0.8)
    ax.set_xlabel("exposure time (periods since the start)")
    ax.set_ylabel("weight in the immediate-effect estimate")
    ax.legend(loc="upper right")
    if effect_curve is not None and len(effect_curve):
        right = ax.twinx()
        right.plot(effect_curve["exposure_time"], effect_curve["estimate"], "k.-")
        right.set_ylabel("ETI effect estimate (link scale)")
        ax.right_ax = right
    return ax
