"""Effect plots for fitted models: exposure-time effect curves and forest plots."""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["plot_effects"]


def plot_effects(result: Any, ax: Any = None, *, confidence_level: float = 0.95) -> Any:
    """Plot a fit's treatment-effect estimates with confidence intervals.

    For exposure-time (ETI) fits the effect at each exposure time is drawn against the
    exposure time, with the estimand (TATE or PTE) as a horizontal band; otherwise the
    estimand and the other fixed effects are shown as a forest plot.

    Parameters
    ----------
    result : FitResult
        A fitted model.
    ax : matplotlib.axes.Axes, optional
        Axes to draw on; a new figure is made when None.
    confidence_level : float
        Coverage of the intervals.

    Returns
    -------
    matplotlib.axes.Axes

    Examples
    --------
    >>> import numpy as np, pandas as pd
    >>> import steppedwedge.models as m
    >>> rng = np.random.default_rng(1)
    >>> rows = [(i, j, float(j > i % 3), rng.normal(0.3 * (j > i % 3), 1))
    ...         for i in range(6) for j in range(4) for _ in range(5)]
    >>> df = pd.DataFrame(rows, columns=["c", "p", "x", "y"])
    >>> res = m.fit(df, outcome="y", cluster="c", period="p", treatment="x", random="cluster")
    >>> ax = res.plot()
    >>> ax.get_xlabel()
    'effect (outcome scale)'
    """
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(6, 4))
    curve = getattr(result, "effect_curve", None)
    lo_e, hi_e = result.conf_int(confidence_level)
    if curve is not None and len(curve):
        from scipy import stats

        e = curve["exposure_time"].to_numpy(dtype=float)
        est = curve["estimate"].to_numpy(dtype=float)
        se = curve["std_error"].to_numpy(dtype=float)
        df = curve["df"].to_numpy(dtype=float)
        q = 0.5 + confidence_level / 2
        crit = np.where(
            np.isfinite(df), stats.t.ppf(q, np.where(np.isfinite(df), df, 1.0)), stats.norm.ppf(q)
        )
        ax.errorbar(
            e, est, yerr=crit * se, fmt="o-", color="C0", capsize=3, label="exposure-time effect"
        )
        ax.axhspan(lo_e, hi_e, color="C1", alpha=0.2)
        ax.axhline(result.estimate, color="C1", label=result.estimand)
        ax.axhline(0.0, color="grey", lw=0.8, ls=":")
        ax.set_xlabel("exposure time (periods since start)")
        ax.set_ylabel("effect (outcome scale)")
        ax.set_xticks(e)
        ax.legend(loc="best", frameon=False)
        return ax
    table = result.tidy(confidence_level)
    table = table[table["term"] != "(Intercept)"]
    y = np.arange(len(table))[::-1]
    est = table["estimate"].to_numpy(dtype=float)
    ax.errorbar(
        est,
        y,
        xerr=[
            est - table["conf_low"].to_numpy(dtype=float),
            table["conf_high"].to_numpy(dtype=float) - est,
        ],
        fmt="o",
        color="C0",
        capsize=3,
    )
    ax.axvline(0.0, color="grey", lw=0.8, ls=":")
    ax.set_yticks(y)
    ax.set_yticklabels(table["term"].tolist())
    ax.set_xlabel("effect (outcome scale)")
    return ax
