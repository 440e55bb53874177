"""Plot of a variance estimate from history: observed vs fitted correlation of log rates by lag.

matplotlib is imported inside the function; it takes ``ax=None`` and returns the Axes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.axes import Axes

__all__ = ["plot_correlation_by_lag"]


def plot_correlation_by_lag(estimate: Any, ax: Axes | None = None) -> Axes:
    """Observed and fitted correlation of a cluster's log rates ``lag`` periods apart.

    Parameters
    ----------
    estimate : EstimatedVariance
        From :func:`steppedwedge.estimate_variance`.
    ax : matplotlib.axes.Axes, optional
        Axes to draw on (a new figure when None).

    Returns
    -------
    matplotlib.axes.Axes

    Examples
    --------
    >>> import matplotlib
    >>> matplotlib.use("Agg")
    >>> import pandas as pd
    >>> import steppedwedge as sw
    >>> d = sw.EstimatedVariance.example_dict()
    >>> d["correlation_by_lag"] = [{"lag": 0, "n_pairs": 9, "observed": 1.0, "fitted": 1.0},
    ...                            {"lag": 1, "n_pairs": 8, "observed": 0.8, "fitted": 0.79}]
    >>> ax = sw.EstimatedVariance.from_dict(d).plot()
    >>> ax.get_xlabel()
    'lag (periods of 12 months)'
    """
    if ax is None:
        import matplotlib.pyplot as plt

        _, ax = plt.subplots()
    tab = estimate.correlation_by_lag
    ax.plot(tab["lag"], tab["observed"], "o", label="observed (log rates, period means removed)")
    ax.plot(tab["lag"], tab["fitted"], "-", label=f"fitted ({estimate.structure})")
    ax.set_xlabel(f"lag (periods of {estimate.period_months:g} months)")
    ax.set_ylabel("correlation")
    ax.set_ylim(min(0.0, float(tab["observed"].min()) if len(tab) else 0.0), 1.05)
    ax.legend(loc="best")
    return ax
