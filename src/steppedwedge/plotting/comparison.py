"""Pre-trial trajectories of trial and comparison councils."""

from __future__ import annotations

from typing import Any

import pandas as pd

__all__ = ["plot_comparison_trends"]


def plot_comparison_trends(trend: pd.DataFrame, first_start: int, ax: Any = None) -> Any:
    """Plot the mean log rate per year of the trial, comparison and all candidate councils.

    Parameters
    ----------
    trend : pandas.DataFrame
        Columns ``year, trial, comparison, all_candidates`` (the ``trend`` of
        :func:`steppedwedge.comparison_councils`).
    first_start : int
        First treated year of the trial: years from then on are shaded.
    ax : matplotlib.axes.Axes, optional
        Axes to draw on; a new figure when None.

    Returns
    -------
    matplotlib.axes.Axes

    Examples
    --------
    >>> import pandas as pd
    >>> from steppedwedge.plotting import plot_comparison_trends
    >>> trend = pd.DataFrame({"year": [2018, 2019, 2020], "trial": [3.7, 3.8, 3.7],
    ...                       "comparison": [3.7, 3.75, 3.8], "all_candidates": [3.6] * 3})
    >>> ax = plot_comparison_trends(trend, 2020)
    >>> [t.get_text() for t in ax.get_legend().get_texts()]
    ['trial councils', 'comparison councils', 'all candidates']
    """
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(7.0, 4.0))
    ax.plot(trend["year"], trend["trial"], "o-", color="black", label="trial councils")
    ax.plot(trend["year"], trend["comparison"], "s--", color="0.3", label="comparison councils")
    ax.plot(trend["year"], trend["all_candidates"], ":", color="0.6", label="all candidates")
    ax.axvspan(first_start - 0.5, float(trend["year"].max()) + 0.5, color="0.92", zorder=0)
    ax.set_xlabel("year (trial period shaded)")
    ax.set_ylabel("mean log rate per 10,000")
    ax.legend()
    return ax
