"""The result of the design-based estimators (vertical, Hughes, synthetic control, crossover)."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from ...inference._randomisation_result import RandomisationInference
from ...results import Summary, _fmt, t_pvalue
from .._cell_summary import cell_summary_header

__all__ = ["DesignBasedResult"]

_LABEL = {
    "vertical": "Vertical (within-period) analysis, Thompson et al. (2018)",
    "hughes": "Robust nonparametric estimator, Hughes et al. (2020)",
    "synthetic-control": "Synthetic control, Kennedy-Shaffer et al. (2020)",
    "crossover": "Crossover, Kennedy-Shaffer et al. (2020)",
}


@dataclass(frozen=True, eq=False)
class DesignBasedResult(RandomisationInference):
    """Result of ``sw.fit(..., method="vertical" | "hughes" | "synthetic-control" | "crossover")``.

    Attributes
    ----------
    method : str
        The estimator.
    variant : str
        Weighting: ``"clusters"``/``"inverse-variance"``/``"equal"``/``"exchangeable"``
        (vertical, Hughes), ``"SC-1"``/``"SC-2"``, ``"CO-1"`` ... ``"CO-4"``.
    estimate : float
        Treatment effect on the analysis scale (see :attr:`link`).
    std_error : float
        Hughes: the closed-form permutation standard error; NaN for the estimators with
        randomisation inference only.
    df : float
        ``inf`` (normal reference of the Hughes interval); NaN otherwise.
    randomisation_pvalue : float or None
        Randomisation p-value of the estimate (exact over the admissible allocations or
        Monte Carlo, as :func:`steppedwedge.permutation_test`); None when not run.
    interval : tuple of float or None
        Randomisation interval by test inversion (vertical, crossover) at
        :attr:`confidence_level`; None otherwise.
    confidence_level : float
    n_permutations : int
        Re-randomisations behind :attr:`randomisation_pvalue` (0 when not run).
    exact : bool
        Whether the whole allocation space was enumerated.
    null_distribution : numpy.ndarray or None
        The estimator under each re-randomisation.
    table : pandas.DataFrame
        The building blocks: one row per period (vertical, Hughes, crossover) or per treated
        cluster-period (synthetic control) with the contrast and its weight.
    link : str
        ``"identity"``, ``"log"`` or ``"logit"``: the scale of :attr:`estimate`.
    scale : str
        What each cluster-period cell was reduced to.
    outcome : str
    n_clusters, n_periods : int
    messages : tuple of str
    converged : bool
        Always True (closed-form estimators).
    estimand : str
        Name of the reported term (``"treatment"``).

    References
    ----------
    Thompson JA, Davey C, Fielding K, Hargreaves JR, Hayes RJ (2018). Stat Med 37:2487-2500.
    Hughes JP, Heagerty PJ, Xia F, Ren Y (2020). Biometrics 76:119-130.
    Kennedy-Shaffer L, de Gruttola V, Lipsitch M (2020). Stat Med 39:815-844.

    Examples
    --------
    >>> import numpy as np, pandas as pd
    >>> import steppedwedge as sw
    >>> rng = np.random.default_rng(2)
    >>> rows = [(i, t, float(t > i % 5), rng.normal(0.5 * (t > i % 5) + 0.1 * t))
    ...         for i in range(10) for t in range(6)]
    >>> df = pd.DataFrame(rows, columns=["ward", "month", "arm", "y"])
    >>> res = sw.fit(df, outcome="y", cluster="ward", period="month", treatment="arm",
    ...              method="crossover", n_permutations=199, rng=1)
    >>> res.tidy()["term"].tolist()
    ['treatment']
    """

    method: str
    variant: str
    estimate: float
    table: pd.DataFrame
    link: str
    scale: str
    outcome: str
    n_clusters: int
    n_periods: int
    std_error: float = math.nan
    df: float = math.nan
    randomisation_pvalue: float | None = None
    interval: tuple[float, float] | None = None
    confidence_level: float = 0.95
    n_permutations: int = 0
    exact: bool = False
    null_distribution: np.ndarray | None = field(default=None, repr=False)
    messages: tuple[str, ...] = ()
    converged: bool = True
    estimand: str = "treatment"
    _invert: Callable[[float], tuple[float, float]] | None = field(default=None, repr=False)

    _intervals: dict[float, tuple[float, float]] = field(
        default_factory=dict, repr=False, compare=False
    )

    @property
    def method_label(self) -> str:
        """The estimator's name (``"vertical"``, ``"hughes"``, ...), as :func:`compare` shows it."""
        return self.method

    @property
    def pvalue(self) -> float:
        """The randomisation p-value when run, else the Hughes normal p-value."""
        if self.randomisation_pvalue is not None:
            return self.randomisation_pvalue
        return t_pvalue(self.statistic, self.df) if self.std_error > 0 else math.nan

    def summary(self) -> Summary:
        """Summarise the estimator, its inference and the contrasts it combines.

        Returns
        -------
        Summary
            Text/HTML/Markdown/LaTeX renderings.
        """
        lo, hi = self.conf_int()
        header = cell_summary_header(f"{_LABEL[self.method]} ({self.variant})", self)
        header.append(("Estimate", _fmt(self.estimate)))
        if self.std_error > 0:
            header.append(("Permutation SE (closed form)", _fmt(self.std_error)))
        if self.randomisation_pvalue is not None:
            kind = "exact" if self.exact else f"{self.n_permutations} re-randomisations"
            header.append(("Randomisation p", f"{_fmt(self.randomisation_pvalue)} ({kind})"))
        if math.isfinite(lo) or math.isfinite(hi) or self.interval is not None:
            header.append((f"{100 * self.confidence_level:g}% CI", f"{_fmt(lo)} to {_fmt(hi)}"))
            if self.link in ("log", "logit") and not (math.isnan(lo) or math.isnan(hi)):
                what = "rate ratio" if self.link == "log" else "odds ratio"
                e_lo, e_hi = (math.exp(min(v, 700.0)) for v in (lo, hi))
                header.append(
                    (
                        f"As {what}",
                        f"{_fmt(math.exp(self.estimate))} ({_fmt(e_lo)} to {_fmt(e_hi)})",
                    )
                )
        return Summary(
            title="Design-based stepped-wedge analysis",
            header=tuple(header),
            tables=(("Treatment effect", self.tidy()), ("Contrasts", self.table)),
            notes=self.messages,
        )

    def plot(self, ax: Any = None, *, confidence_level: float | None = None) -> Any:
        """Plot the contrasts the estimate combines (marker area ~ weight) and the estimate.

        Parameters
        ----------
        ax : matplotlib.axes.Axes, optional
        confidence_level : float, optional
            Level of the interval shaded around the estimate (default as :meth:`conf_int`;
            none is drawn when the estimator has no interval).

        Returns
        -------
        matplotlib.axes.Axes
        """
        import matplotlib.pyplot as plt

        if ax is None:
            _, ax = plt.subplots(figsize=(6, 3.5))
        t = self.table
        w = t["weight"].to_numpy(dtype=float)
        size = 20 + 300 * w / max(float(np.nanmax(w)), 1e-300)
        ax.scatter(t["period"].astype(str), t["contrast"], s=size, color="C0", alpha=0.7)
        ax.axhline(self.estimate, color="C3", lw=2, label=f"estimate {self.estimate:.3g}")
        lo, hi = self.conf_int(confidence_level)
        if math.isfinite(lo) and math.isfinite(hi):
            ax.axhspan(lo, hi, color="C3", alpha=0.12, lw=0)
        ax.axhline(0.0, color="0.5", lw=0.8)
        ax.set_xlabel("period")
        ax.set_ylabel(f"contrast ({self.link} scale)")
        ax.set_title(_LABEL[self.method])
        ax.legend(frameon=False)
        return ax

    def __repr__(self) -> str:
        return (
            f"DesignBasedResult({self.method} {self.variant}: estimate={self.estimate:.4g}, "
            f"p={self.pvalue:.3g})"
        )
