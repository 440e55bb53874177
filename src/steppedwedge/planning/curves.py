"""Power curves over clusters, cluster size or effect."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from .._validation import check_option
from ..design import Design
from ..exceptions import OptionError
from ..results import Summary
from .analytic import _as_design
from .analytic import power as _power
from .result import PlanningResultMixin, _number

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd
    from matplotlib.axes import Axes

__all__ = ["PowerCurve", "power_curve"]

VARY = ("effect", "cluster_size", "clusters_per_sequence")


@dataclass(frozen=True)
class PowerCurve(PlanningResultMixin):
    """Power as one input varies.

    Returned by :func:`steppedwedge.power_curve`.

    Attributes
    ----------
    vary : str
        The varied input.
    values, power, power_one_tail, std_error : ndarray
        One entry per value.
    effect : ndarray or None
        Effect at each value (the values themselves when ``vary="effect"``).
    df : ndarray or None
        Degrees of freedom of the t reference at each value (NaN for the normal reference).
    alpha : float
        Two-sided size of the test.
    """

    vary: str
    values: np.ndarray
    power: np.ndarray
    power_one_tail: np.ndarray
    std_error: np.ndarray
    effect: np.ndarray | None = None
    df: np.ndarray | None = None
    alpha: float = 0.05

    def to_frame(self) -> pd.DataFrame:
        """Return the curve as a DataFrame named after the varied input.

        Returns
        -------
        pandas.DataFrame
            Columns ``<vary>, power, power_one_tail, std_error``.
        """
        import pandas as pd

        out: pd.DataFrame = pd.DataFrame(
            {
                self.vary: self.values,
                "power": self.power,
                "power_one_tail": self.power_one_tail,
                "std_error": self.std_error,
            }
        )
        return out

    def tidy(self) -> pd.DataFrame:
        """Return one row per point of the curve.

        Returns
        -------
        pandas.DataFrame
            Columns ``vary, value, effect, std_error, df, alpha, power, power_one_tail``
            (``df`` NaN for the normal reference).
        """
        import pandas as pd

        n = self.values.size
        nan = np.full(n, np.nan)
        out: pd.DataFrame = pd.DataFrame(
            {
                "vary": [self.vary] * n,
                "value": self.values,
                "effect": nan if self.effect is None else self.effect,
                "std_error": self.std_error,
                "df": nan if self.df is None else self.df,
                "alpha": np.full(n, self.alpha),
                "power": self.power,
                "power_one_tail": self.power_one_tail,
            }
        )
        return out

    def first_reaching(self, target: float = 0.8) -> float | None:
        """Return the first value of the curve whose power reaches ``target``.

        Parameters
        ----------
        target : float, default 0.8
            Power to reach.

        Returns
        -------
        float or None
            The value (in the order given), None if no value reaches ``target``.
        """
        hit = np.flatnonzero(self.power >= target)
        return float(self.values[hit[0]]) if hit.size else None

    def summary(self) -> Summary:
        """Return the summary of the curve (the points as a table).

        Returns
        -------
        steppedwedge.results.Summary
            Renders with ``as_text()``, ``as_html()``, ``as_markdown()``, ``as_latex()``.
        """
        reach = self.first_reaching(0.8)
        header = (
            ("varied input", self.vary),
            (
                "values",
                f"{self.values.size}, from {_number(self.values.min())} to "
                f"{_number(self.values.max())}",
            ),
            ("alpha (two-sided)", _number(self.alpha)),
            ("power", f"{_number(self.power.min())} to {_number(self.power.max())}"),
            ("first value with power >= 0.8", "none" if reach is None else _number(reach)),
        )
        return Summary(title="Power curve", header=header, tables=(("Curve", self.tidy()),))

    def plot(
        self, ax: Axes | None = None, *, target: float | None = 0.8, label: str | None = None
    ) -> Axes:
        """Draw the curve as a line plot.

        Parameters
        ----------
        ax : matplotlib.axes.Axes, optional
            Axes to draw on (a new figure when None).
        target : float or None, default 0.8
            Power of a horizontal reference line (None: no line).
        label : str, optional
            Legend label of the curve.

        Returns
        -------
        matplotlib.axes.Axes
            The Axes drawn on (see :func:`steppedwedge.plotting.power.plot_power_curve`).
        """
        from ..plotting.power import plot_power_curve

        return plot_power_curve(
            self.values,
            self.power,
            xlabel=self.vary.replace("_", " "),
            target=target,
            label=label,
            ax=ax,
        )

    def __repr__(self) -> str:
        return (
            f"PowerCurve(vary={self.vary!r}, n={self.values.size}, power "
            f"{self.power.min():.4f} to {self.power.max():.4f})"
        )


def power_curve(design: Design | Any, *, vary: str, values: Any, **kwargs: Any) -> PowerCurve:
    """Evaluate :func:`power` along a range of one input.

    Parameters
    ----------
    design : Design or array_like
        The design, or an ``I x T`` treatment matrix (0/1, fractions, NaN unobserved).
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
        Power, one-tailed power and standard error at every value.

    Examples
    --------
    >>> from steppedwedge.design import Design
    >>> from steppedwedge.variance import VarianceComponents
    >>> from steppedwedge.planning import power_curve
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
                raise OptionError(f"`values` must be positive integers for {vary!r}; got {v!r}.")
            dd = Design.from_matrix(
                np.repeat(np.asarray(d.sequence_matrix), n, axis=0),
                periods=d.periods,
                period_lengths=d.period_lengths,
                allow_reversal=d.allow_reversal,
            )
        else:
            kw[vary] = float(v)
        out.append(_power(dd, **kw))
    return PowerCurve(
        vary=vary,
        values=vals,
        power=np.array([r.power for r in out]),
        power_one_tail=np.array([r.power_one_tail for r in out]),
        std_error=np.array([r.std_error for r in out]),
        effect=np.array([r.effect for r in out]),
        df=np.array([np.nan if r.df is None else r.df for r in out]),
        alpha=float(out[0].alpha),
    )
