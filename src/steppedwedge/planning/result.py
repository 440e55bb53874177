"""Result objects of analytic power calculations."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np

from .._core.gls import cell_weights as _cell_weights
from ..results import Summary, _fmt

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd
    from matplotlib.axes import Axes

    from ..design import Design
    from ..variance import VarianceComponents

__all__ = ["PlanningResult", "PlanningResultMixin", "PowerResult"]


@runtime_checkable
class PlanningResult(Protocol):
    """The presentation protocol every planning result follows.

    A planning result (:class:`PowerResult`, :class:`~steppedwedge.SimulatedPowerResult`,
    :class:`~steppedwedge.ExpectedPowerResult`, :class:`~steppedwedge.AssuranceResult`,
    :class:`~steppedwedge.DesignSearchResult`, :class:`~steppedwedge.PowerCurve`,
    :class:`~steppedwedge.DesignEffect`, :class:`~steppedwedge.CellMap`) answers four calls:

    * ``summary()`` -- a :class:`steppedwedge.results.Summary` (``str()`` is its text form,
      ``as_html()``, ``as_markdown()``, ``as_latex()`` the others);
    * ``tidy()`` -- a :class:`pandas.DataFrame` with documented snake_case columns, built
      from the result's attributes (the single source of truth of the summary tables);
    * ``_repr_html_()`` -- the HTML summary, shown by Jupyter, with every value escaped;
    * ``plot(ax=None)`` -- draws on ``ax`` (a new figure when None) and returns the Axes;
      matplotlib is imported only then.

    The protocol is structural (:class:`typing.Protocol`, checkable with ``isinstance``);
    :class:`PlanningResultMixin` supplies ``__str__`` and ``_repr_html_`` from ``summary()``.
    The layout follows the result objects of statsmodels and linearmodels (Seabold &
    Perktold 2010).

    Examples
    --------
    >>> import steppedwedge as sw
    >>> from steppedwedge.planning.result import PlanningResult
    >>> res = sw.power(sw.Design.stepped_wedge(3, 2), effect=0.3,
    ...                variance=sw.VarianceComponents.from_correlations(0.05), cluster_size=10)
    >>> isinstance(res, PlanningResult)
    True
    >>> list(res.tidy().columns)[:3]
    ['term', 'effect', 'std_error']
    """

    def summary(self) -> Summary:
        """Return the printable summary of the result."""

    def tidy(self) -> pd.DataFrame:
        """Return the result as a DataFrame with documented columns."""

    def plot(self, ax: Axes | None = None) -> Axes:
        """Draw the result on ``ax`` and return the Axes."""

    def _repr_html_(self) -> str:
        """Return the HTML summary."""


class PlanningResultMixin:
    """Shared presentation of planning results: ``__str__`` and ``_repr_html_``.

    Subclasses implement :meth:`summary`, :meth:`tidy` and ``plot(ax=None, ...)`` (each with
    its own keyword options, so the mixin does not fix its signature); the text and HTML
    renderings are derived from :meth:`summary` here, once (see :class:`PlanningResult`).
    """

    __slots__ = ()

    def summary(self) -> Summary:  # pragma: no cover - abstract
        """Return the printable summary of the result.

        Returns
        -------
        steppedwedge.results.Summary
            Renders with ``as_text()``, ``as_html()``, ``as_markdown()``, ``as_latex()``.
        """
        raise NotImplementedError

    def tidy(self) -> pd.DataFrame:  # pragma: no cover - abstract
        """Return the result as a DataFrame.

        Returns
        -------
        pandas.DataFrame
            The documented columns of the result type.
        """
        raise NotImplementedError

    def __str__(self) -> str:
        return self.summary().as_text()

    def _repr_html_(self) -> str:
        return self.summary().as_html()


def _number(x: float | None, digits: int = 4) -> str:
    """Format a number for a summary header (``"NA"`` for None or NaN)."""
    if x is None or not np.isfinite(x):
        return "NA" if x is None or np.isnan(x) else _fmt(float(x))
    return f"{float(x):.{digits}g}"


@dataclass(frozen=True)
class PowerResult(PlanningResultMixin):
    """Analytic power of a stepped-wedge (or other longitudinal cluster) design.

    Returned by :func:`steppedwedge.power` and :func:`steppedwedge.solve_power`.

    Attributes
    ----------
    power : float
        Two-sided power, counting both rejection tails.
    power_one_tail : float
        Power counting only the tail in the direction of the effect (Hussey & Hughes 2007,
        clusterPower, swdpwr convention); differs from ``power`` by less than ``alpha / 2``.
    variance, std_error : float
        Variance and standard error of the estimator under the alternative.
    variance_null : float
        Variance under the null (equals ``variance`` unless it depends on the means, as for
        link-scale GLMM power).
    df : float or None
        Degrees of freedom of the t reference, None for the normal reference.
    effect, alpha : float
        Inputs.
    critical_value : float
        ``z`` or ``t`` quantile ``1 - alpha/2``.
    design, variance_components, cluster_size, family, link, analysis, sampling, churn,
    baseline, weights, estimand, method, notes
        The inputs as used (``cluster_size`` as an ``I x T`` array, NaN where unobserved).
    solved_for, solution
        Set by :func:`steppedwedge.solve_power`: the quantity solved for and its value.
    """

    power: float
    power_one_tail: float
    variance: float
    std_error: float
    variance_null: float
    df: float | None
    effect: float
    alpha: float
    critical_value: float
    design: Design
    variance_components: VarianceComponents
    cluster_size: np.ndarray
    family: str
    link: str
    analysis: str
    sampling: str
    churn: float
    baseline: np.ndarray | None
    weights: np.ndarray | None
    estimand: str
    method: str
    notes: tuple[str, ...] = ()
    solved_for: str | None = None
    solution: float | None = None
    _fixed: np.ndarray | None = field(default=None, repr=False, compare=False)
    _cov: np.ndarray | None = field(default=None, repr=False, compare=False)
    _contrast: np.ndarray | None = field(default=None, repr=False, compare=False)
    _inputs: dict[str, Any] | None = field(default=None, repr=False, compare=False)

    # ------------------------------------------------------------------ derived
    @property
    def inputs(self) -> dict[str, Any]:
        """The arguments :func:`steppedwedge.power` was called with (a copy)."""
        return dict(self._inputs or {})

    def with_(self, **changes: Any) -> PowerResult:
        """Recompute power with some inputs changed.

        Parameters
        ----------
        **changes
            Arguments of :func:`steppedwedge.power` to replace (``design`` included).

        Returns
        -------
        PowerResult
            The power at the changed inputs.

        Raises
        ------
        AttributeError
            If the result does not record its inputs.

        Examples
        --------
        >>> from steppedwedge.design import Design
        >>> from steppedwedge.variance import VarianceComponents
        >>> from steppedwedge.planning import power
        >>> res = power(Design.stepped_wedge(3, 3), effect=0.2,
        ...             variance=VarianceComponents(sigma2=1.0), cluster_size=49)
        >>> round(res.with_(cluster_size=50).power, 4)
        0.8074
        """
        from .analytic import power as _power

        if not self._inputs:
            raise AttributeError("this result does not record its inputs")
        kwargs = dict(self._inputs)
        kwargs.update(changes)
        design = kwargs.pop("design")
        return _power(design, **kwargs)

    @cached_property
    def cell_weights(self) -> np.ndarray:
        """GLS weights of the cluster-period means in the estimator, ``(I, T)``.

        ``theta_hat = sum_ij w_ij Ybar_ij``; NaN for unobserved cells.  Within each period
        they sum to 0 and over the treated cells (IT estimand) to 1 (methods.md section 2.2).
        Computed at the alternative (the link-scale working variances of a GLMM).
        """
        if self._fixed is None or self._cov is None or self._contrast is None:
            raise AttributeError("cell weights are not available for this result")
        w = _cell_weights(self._fixed, self._cov, self._contrast)
        return np.where(self.design.observed, w, np.nan)

    # ------------------------------------------------------------------ presentation
    def summary(self) -> Summary:
        """Return the summary of the calculation (inputs in the header, power below).

        Returns
        -------
        steppedwedge.results.Summary
            With ``as_text()``, ``as_html()``, ``as_markdown()``, ``as_latex()``.
        """
        vc = self.variance_components
        ref = "normal" if self.df is None else f"t with {self.df:.4g} df"
        rows = [
            (
                "design",
                f"{self.design.n_clusters} clusters x {self.design.n_periods} periods, "
                f"{self.design.n_sequences} sequences",
            ),
            ("cluster-period size", _describe_sizes(self.cluster_size)),
            ("outcome", f"{self.family} ({self.link} link), {self.analysis} analysis"),
            (
                "sampling",
                self.sampling + (f" (churn {self.churn:.3g})" if self.sampling == "cohort" else ""),
            ),
            (
                "variance components",
                f"sigma2={vc.sigma2:.4g}, tau2={vc.tau2:.4g}, "
                f"gamma2={vc.gamma2:.4g}, "
                f"eta2={vc.eta2:.4g}, psi2={vc.psi2:.4g}, decay={vc.decay}"
                + (f" (decay_scale={vc.decay_scale!r})" if vc.decay is not None else ""),
            ),
            ("estimand", self.estimand),
            ("effect", f"{self.effect:.6g}"),
            ("std. error", f"{self.std_error:.6g}"),
            ("alpha (two-sided)", f"{self.alpha:.4g}"),
            ("reference", ref),
            ("power", f"{self.power:.4f}"),
            ("power (one tail)", f"{self.power_one_tail:.4f}"),
        ]
        if self.solved_for is not None:
            rows.append((f"solved for {self.solved_for}", f"{self.solution:.6g}"))
        return Summary(
            title="Analytic power",
            header=tuple(rows),
            tables=(("Power", self.tidy()),),
            notes=(self.method, *self.notes),
        )

    def tidy(self) -> pd.DataFrame:
        """Return the power calculation as a one-row DataFrame.

        Returns
        -------
        pandas.DataFrame
            Columns ``term, effect, std_error, statistic, df, alpha, power,
            power_one_tail`` (``term`` is the estimand, ``statistic = effect / std_error``,
            ``df`` NaN for the normal reference).
        """
        import pandas as pd

        out: pd.DataFrame = pd.DataFrame(
            {
                "term": [self.estimand],
                "effect": [self.effect],
                "std_error": [self.std_error],
                "statistic": [self.effect / self.std_error],
                "df": [np.nan if self.df is None else self.df],
                "alpha": [self.alpha],
                "power": [self.power],
                "power_one_tail": [self.power_one_tail],
            }
        )
        return out

    def plot(self, ax: Axes | None = None, **kwargs: Any) -> Axes:
        """Draw the heat map of the GLS cell weights.

        Parameters
        ----------
        ax : matplotlib.axes.Axes, optional
            Axes to draw on (a new figure when None).
        **kwargs
            Passed to :func:`steppedwedge.plotting.power.plot_cell_map`.

        Returns
        -------
        matplotlib.axes.Axes
            The Axes drawn on.
        """
        return plot_cells(self.cell_weights, self.design, "GLS cell weights", 0.0, ax, kwargs)

    def __repr__(self) -> str:
        return (
            f"PowerResult(power={self.power:.4f}, effect={self.effect:.4g}, "
            f"std_error={self.std_error:.4g}, df={self.df})"
        )


def plot_cells(
    values: np.ndarray,
    design: Any,
    title: str,
    centre: float | None,
    ax: Axes | None,
    kwargs: dict[str, Any],
) -> Axes:
    """Draw a cluster x period map of ``values`` on ``design``'s labels (the one heat map)."""
    from ..plotting.power import plot_cell_map

    return plot_cell_map(
        values,
        clusters=design.clusters,
        periods=list(design.periods),
        title=title,
        centre=centre,
        ax=ax,
        **kwargs,
    )


def _describe_sizes(size: np.ndarray) -> str:
    vals = size[~np.isnan(size)]
    if vals.size == 0:
        return "-"
    if np.all(vals == vals[0]):
        return f"{vals[0]:.6g} in every observed cell"
    return f"{vals.min():.4g} to {vals.max():.4g} (mean {vals.mean():.4g})"
