"""Power curves over clusters, cluster size or effect."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from .._validation import check_option
from ..design import Design
from .analytic import _as_design
from .analytic import power as _power

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd
    from matplotlib.axes import Axes

__all__ = ["PowerCurve", "power_curve"]

VARY = ("effect", "cluster_size", "clusters_per_sequence")


@dataclass(frozen=True)
class PowerCurve:
    """Power as one input varies.

    Attributes
    ----------
    vary : str
        The varied input.
    values, power, power_one_tail, std_error : ndarray
        One entry per value.
    """

    vary: str
    values: np.ndarray
    power: np.ndarray
    power_one_tail: np.ndarray
    std_error: np.ndarray

    def to_frame(self) -> pd.DataFrame:
        """DataFrame with columns ``<vary>, power, power_one_tail, std_error``."""
        import pandas as pd

        return pd.DataFrame({self.vary: self.values, "power": self.power,
                             "power_one_tail": self.power_one_tail,
                             "std_error": self.std_error})

    def plot(self, ax: Axes | None = None, *, target: float | None = 0.8,
             label: str | None = None) -> Axes:
        """Line plot of the curve (see :func:`steppedwedge.plotting.power.plot_power_curve`)."""
        from ..plotting.power import plot_power_curve

        return plot_power_curve(self.values, self.power, xlabel=self.vary.replace("_", " "),
                                target=target, label=label, ax=ax)


def power_curve(
    design: Design | Any, *, vary: str, values: Any, **kwargs: Any
) -> PowerCurve:
    """Evaluate :func:`power` along a range of one input.

    Parameters
    ----------
    design : Design or array_like
    vary : {"effect", "cluster_size", "clusters_per_sequence"}
        ``clusters_per_sequence`` rebuilds the design with ``n`` clusters in every sequence
        of ``design.sequence_matrix`` (as :func:`solve_power` does).
    values : array_like
        Values of the varied input.
    **kwargs
        The other arguments of :func:`power`.

    Returns
    -------
    PowerCurve

    Examples
    --------
    >>> from steppedwedge.design import Design
    >>> from steppedwedge.variance import VarianceComponents
    >>> from steppedwedge.power import power_curve
    >>> c = power_curve(Design.stepped_wedge(3), vary="clusters_per_sequence", values=[1, 2, 3],
    ...                 effect=0.2, variance=VarianceComponents(sigma2=1.0), cluster_size=50)
    >>> [round(float(p), 4) for p in c.power]
    [0.372, 0.6366, 0.8074]
    """
    vary = check_option("vary", vary, VARY)
    d = _as_design(design)
    vals = np.atleast_1d(np.asarray(values, dtype=float))
    out = []
    for v in vals:
        kw = dict(kwargs)
        dd = d
        if vary == "clusters_per_sequence":
            n = int(v)
            if n != v or n < 1:
                raise ValueError(f"`values` must be positive integers for {vary!r}; got {v!r}.")
            dd = Design.from_matrix(np.repeat(np.asarray(d.sequence_matrix), n, axis=0),
                                    periods=d.periods, period_lengths=d.period_lengths,
                                    allow_reversal=d.allow_reversal)
        else:
            kw[vary] = float(v)
        out.append(_power(dd, **kw))
    return PowerCurve(
        vary=vary,
        values=vals,
        power=np.array([r.power for r in out]),
        power_one_tail=np.array([r.power_one_tail for r in out]),
        std_error=np.array([r.std_error for r in out]),
    )
