"""Design diagnostics: design effects, information content and GLS cell weights."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from .._core import closed_forms as cf
from .._core import power_kernels as pk
from .._validation import check_nonnegative, check_option, check_unit_interval
from ..design import Design
from ..exceptions import DesignError, OptionError
from ..results import Summary
from ..variance import VarianceComponents
from .analytic import _as_design
from .analytic import power as _power
from .result import PlanningResultMixin, _number, plot_cells

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd
    from matplotlib.axes import Axes

__all__ = ["CellMap", "DesignEffect", "cell_weights", "design_effect", "information_content"]


@dataclass(frozen=True)
class CellMap(PlanningResultMixin):
    """A cluster x period map of a per-cell diagnostic (information content, cell weights).

    Returned by :func:`steppedwedge.information_content` and
    :func:`steppedwedge.cell_weights`.

    Attributes
    ----------
    values : ndarray, shape (I, T)
        The diagnostic (NaN for unobserved cells).
    kind : str
        ``"information content"`` or ``"cell weights"``.
    design : Design
        The design the map belongs to.
    variance : float
        Variance of the estimator with every cell present.
    exposure_weights : ndarray or None
        Cell weights only: the weight that the immediate-effect estimator puts on each
        exposure time ``1..L`` (sum 1; methods.md section 6.2).
    """

    values: np.ndarray
    kind: str
    design: Design
    variance: float
    exposure_weights: np.ndarray | None = None

    def to_frame(self) -> pd.DataFrame:
        """Return the map as a long DataFrame.

        Returns
        -------
        pandas.DataFrame
            Columns ``cluster, period, value``, one row per cell (clusters outer).
        """
        import pandas as pd

        d = self.design
        out: pd.DataFrame = pd.DataFrame(
            {
                "cluster": np.repeat(np.asarray(d.clusters, dtype=object), d.n_periods),
                "period": np.tile(np.asarray(list(d.periods), dtype=object), d.n_clusters),
                "value": self.values.ravel(),
            }
        )
        return out

    def tidy(self) -> pd.DataFrame:
        """Return one row per cluster-period cell with its design coordinates.

        Returns
        -------
        pandas.DataFrame
            Columns ``cluster, period, treatment, exposure_time, observed, value``
            (clusters outer; ``treatment`` the design matrix entry, NaN if unobserved).
        """
        out = self.to_frame()
        d = self.design
        out.insert(2, "treatment", np.asarray(d.matrix, dtype=float).ravel())
        out.insert(3, "exposure_time", np.asarray(d.exposure_time).ravel())
        out.insert(4, "observed", np.asarray(d.observed).ravel())
        return out

    def summary(self) -> Summary:
        """Return the summary of the map (its range and, for cell weights, exposure weights).

        Returns
        -------
        steppedwedge.results.Summary
            Renders with ``as_text()``, ``as_html()``, ``as_markdown()``, ``as_latex()``.
        """
        finite = self.values[np.isfinite(self.values)]
        d = self.design
        header = [
            ("diagnostic", self.kind),
            ("design", f"{d.n_clusters} clusters x {d.n_periods} periods"),
            ("variance (all cells)", _number(self.variance, 6)),
            (
                "range over observed cells",
                "NA" if finite.size == 0 else f"{_number(finite.min())} to {_number(finite.max())}",
            ),
        ]
        if self.kind == "information content":
            header.append(
                (
                    "cells whose loss makes the effect non-estimable",
                    str(int(np.isposinf(self.values).sum())),
                )
            )
        tables: list[tuple[str, pd.DataFrame]] = [("Cells", self.tidy())]
        if self.exposure_weights is not None:
            import pandas as pd

            ew = pd.DataFrame(
                {
                    "exposure_time": np.arange(1, self.exposure_weights.size + 1),
                    "weight": self.exposure_weights,
                }
            )
            tables.append(("Weight on each exposure time (immediate-effect estimand)", ew))
        return Summary(title=self.kind.capitalize(), header=tuple(header), tables=tuple(tables))

    def plot(self, ax: Axes | None = None, **kwargs: Any) -> Axes:
        """Draw the map as a heat map titled by its kind.

        Parameters
        ----------
        ax : matplotlib.axes.Axes, optional
            Where to draw; a new figure when None.
        **kwargs
            Options of :func:`~steppedwedge.plotting.power.plot_cell_map`.

        Returns
        -------
        matplotlib.axes.Axes
            The Axes holding the map.
        """
        centre = 0.0 if self.kind == "cell weights" else None
        return plot_cells(self.values, self.design, self.kind.capitalize(), centre, ax, kwargs)

    def __repr__(self) -> str:
        return (
            f"CellMap(kind={self.kind!r}, shape={self.values.shape}, variance={self.variance:.4g})"
        )


def information_content(design: Design | Any, **kwargs: Any) -> CellMap:
    r"""Information content of every cluster-period cell (Kasza & Forbes 2019).

    Parameters
    ----------
    design : Design or array_like
        The design, or an ``I x T`` treatment matrix (0/1, fractions, NaN unobserved).
    **kwargs
        As for :func:`steppedwedge.power` (``variance`` and ``cluster_size`` are required;
        ``effect`` defaults to 1 and matters only for non-Gaussian families).

    Returns
    -------
    CellMap
        ``values[i, j] = Var(theta_hat | cell ij removed) / Var(theta_hat)`` (>= 1); ``inf``
        when removing the cell makes the estimand non-estimable; NaN for unobserved cells.

    Notes
    -----
    Each cell is removed by deleting its row from ``Z_i`` and its row and column from
    ``Sigma_i`` and recomputing the GLS variance (only that cluster's information changes).
    Under exchangeable correlation the map of the standard design is centrosymmetric and
    cells next to a switch carry the most information.

    References
    ----------
    .. [1] Kasza J, Forbes AB (2019). Information content of cluster-period cells in stepped
       wedge trials. Biometrics 75:144-152.

    Examples
    --------
    >>> from steppedwedge.design import Design
    >>> from steppedwedge.variance import VarianceComponents
    >>> from steppedwedge.planning import information_content
    >>> ic = information_content(Design.stepped_wedge(4),
    ...                          variance=VarianceComponents.from_correlations(0.05),
    ...                          cluster_size=10)
    >>> round(float(ic.values[0, 1]), 4)
    1.3318
    """
    kwargs.setdefault("effect", 1.0)
    res = _power(design, **kwargs)
    assert res._fixed is not None and res._cov is not None and res._contrast is not None
    var_full, ic = pk.information_content(res._fixed, res._cov, res.design.observed, res._contrast)
    return CellMap(values=ic, kind="information content", design=res.design, variance=var_full)


def cell_weights(design: Design | Any, **kwargs: Any) -> CellMap:
    r"""GLS weights of the cluster-period means in the treatment estimator.

    Parameters
    ----------
    design : Design or array_like
        The design, or an ``I x T`` treatment matrix (0/1, fractions, NaN unobserved).
    **kwargs
        As for :func:`steppedwedge.power` (``effect`` defaults to 1).

    Returns
    -------
    CellMap
        ``values`` with ``theta_hat = sum_ij w_ij Ybar_ij``; ``exposure_weights`` gives, for
        the immediate-effect estimand, the implied weight on each exposure-time effect
        ``delta_e`` when the truth is an exposure-time model (they sum to 1 and can be
        negative; Kenny et al. 2022).

    Examples
    --------
    >>> from steppedwedge.design import Design
    >>> from steppedwedge.variance import VarianceComponents
    >>> from steppedwedge.planning import cell_weights
    >>> cw = cell_weights(Design.stepped_wedge(4), variance=VarianceComponents(sigma2=1.0),
    ...                   cluster_size=100)
    >>> [round(float(w), 4) for w in cw.exposure_weights]
    [0.6, 0.3, 0.1, 0.0]
    """
    kwargs.setdefault("effect", 1.0)
    res = _power(design, **kwargs)
    w = res.cell_weights
    ew = None
    if res.weights is None:
        e = np.where(res.design.observed, res.design.exposure_time, 0)
        n_exp = int(e.max())
        ww = np.nan_to_num(w)
        ew = np.array([ww[e == k].sum() for k in range(1, n_exp + 1)])
    return CellMap(
        values=w, kind="cell weights", design=res.design, variance=res.variance, exposure_weights=ew
    )


@dataclass(frozen=True, slots=True)
class DesignEffect(PlanningResultMixin):
    """A design effect and its components.

    Returned by :func:`steppedwedge.design_effect`.

    Attributes
    ----------
    value : float
        The design effect: ``Var(theta_hat) = 4 sigma_tot^2 value / (I m)``, i.e. relative to
        an individually randomised two-arm trial with ``I m`` individuals (the number
        measured in one period).
    method : str
        ``"hooper"``, ``"woertman"`` or ``"gls"``.
    n_periods : int
        Periods ``T`` of the design; the whole-trial sample size is
        ``T * N_ind * value`` (methods.md section 13.1).
    clustering, cluster_mean_correlation, repeated_measures : float or None
        Hooper's ``DE_C``, ``r`` and ``DE_R`` (``value = DE_C * DE_R``).
    """

    value: float
    method: str
    n_periods: int
    clustering: float | None = None
    cluster_mean_correlation: float | None = None
    repeated_measures: float | None = None

    def variance(self, n_clusters: int, cluster_size: float, total_variance: float = 1.0) -> float:
        """Return the variance of the treatment estimator implied by the design effect.

        Parameters
        ----------
        n_clusters : int
            Clusters ``I``.
        cluster_size : float
            Individuals per cluster-period ``m``.
        total_variance : float, default 1.0
            Total variance ``sigma_tot^2`` of an individual outcome.

        Returns
        -------
        float
            ``4 sigma_tot^2 DE / (I m)``.
        """
        return 4.0 * total_variance * self.value / (n_clusters * cluster_size)

    def total_sample_size(self, n_individual: float) -> float:
        """Return the individuals needed over the whole trial.

        Parameters
        ----------
        n_individual : float
            Total size of an individually randomised trial with the same power.

        Returns
        -------
        float
            ``T * n_individual * DE`` (``n_individual * DE`` are measured per period).
        """
        return self.n_periods * n_individual * self.value

    def tidy(self) -> pd.DataFrame:
        """Return the design effect and its components as a one-row DataFrame.

        Returns
        -------
        pandas.DataFrame
            Columns ``method, design_effect, clustering, cluster_mean_correlation,
            repeated_measures, n_periods`` (components NaN where the method has none).
        """
        import pandas as pd

        def nan(x: float | None) -> float:
            return np.nan if x is None else float(x)

        out: pd.DataFrame = pd.DataFrame(
            {
                "method": [self.method],
                "design_effect": [self.value],
                "clustering": [nan(self.clustering)],
                "cluster_mean_correlation": [nan(self.cluster_mean_correlation)],
                "repeated_measures": [nan(self.repeated_measures)],
                "n_periods": [self.n_periods],
            }
        )
        return out

    def summary(self) -> Summary:
        """Return the summary of the design effect.

        Returns
        -------
        steppedwedge.results.Summary
            Renders with ``as_text()``, ``as_html()``, ``as_markdown()``, ``as_latex()``.
        """
        header = [
            ("method", self.method),
            ("design effect", _number(self.value, 6)),
            ("periods", str(self.n_periods)),
        ]
        if self.clustering is not None:
            header += [
                ("clustering DE_C", _number(self.clustering, 6)),
                ("cluster-mean correlation r", _number(self.cluster_mean_correlation, 6)),
                ("repeated measures DE_R", _number(self.repeated_measures, 6)),
            ]
        notes = (
            "Var = 4 sigma_tot^2 DE / (I m); the whole trial needs T * N_ind * DE "
            "individuals (methods.md section 13).",
        )
        return Summary(title="Design effect", header=tuple(header), notes=notes)

    def plot(self, ax: Axes | None = None, **kwargs: Any) -> Axes:
        """Draw the design effect and its factors as horizontal bars.

        Parameters
        ----------
        ax : matplotlib.axes.Axes, optional
            Axes to draw on (a new figure when None).
        **kwargs
            Passed to ``Axes.barh``.

        Returns
        -------
        matplotlib.axes.Axes
            The Axes drawn on; a dashed line marks 1 (an individually randomised trial).
        """
        from ..plotting.power import _axes

        ax = _axes(ax)
        labels, vals = ["design effect"], [self.value]
        if self.clustering is not None and self.repeated_measures is not None:
            labels = ["clustering DE_C", "repeated measures DE_R", *labels]
            vals = [self.clustering, self.repeated_measures, *vals]
        ax.barh(labels, vals, **kwargs)
        ax.axvline(1.0, color="grey", ls="--", lw=0.8)
        ax.set_xlabel("factor (1 = individually randomised trial)")
        ax.set_title(f"Design effect ({self.method})")
        return ax

    def __float__(self) -> float:
        return float(self.value)

    def __repr__(self) -> str:
        return f"DesignEffect(value={self.value:.6g}, method={self.method!r})"


def _standard_layout(design: Design) -> tuple[int, int, int, int] | None:
    """``(K, b, t, e)`` if ``design`` is a complete 0/1 stepped wedge with equal sequences."""
    from ._solve import _rebuild_stepped_wedge

    if _rebuild_stepped_wedge(design) is None or not design.observed.all():
        return None
    x = design.matrix
    if np.any((x > 0) & (x < 1)):
        return None
    seq = design.sequence_matrix
    starts = np.array([int(np.argmax(r > 0)) for r in seq])
    k = seq.shape[0]
    b = int(starts[0])
    t = int(starts[1] - starts[0]) if k > 1 else 1
    e = design.n_periods - b - k * t
    return k, b, t, e


def _closed_form_layout(
    method: str, d: Design | None, n_sequences: Any, baseline_periods: Any, periods_per_step: Any
) -> tuple[int, int, int]:
    """Return sequences, baseline periods and periods per step for a closed-form effect."""
    if d is None:
        if n_sequences is None:
            raise OptionError("give `design` or `n_sequences`.")
        return int(n_sequences), int(baseline_periods), int(periods_per_step)
    layout = _standard_layout(d)
    if layout is None:
        raise DesignError(
            f"method={method!r} applies only to complete standard stepped-wedge designs "
            "with equal sequences; use method='gls' for this design."
        )
    k, b, t, e = layout
    if e != 0:
        raise DesignError(f"method={method!r} does not cover extra treated periods; use 'gls'.")
    return k, b, t


def design_effect(
    design: Design | Any = None,
    *,
    cluster_size: float,
    icc: float,
    cac: float = 1.0,
    iac: float = 0.0,
    method: str = "hooper",
    n_sequences: int | None = None,
    baseline_periods: int = 1,
    periods_per_step: int = 1,
    sampling: str = "cross-sectional",
) -> DesignEffect:
    r"""Design effect of a stepped-wedge design (Hooper 2016, Woertman 2013, or exact GLS).

    Parameters
    ----------
    design : Design, optional
        A standard stepped-wedge design (``hooper``/``woertman``) or any design (``gls``).
        Without a design give ``n_sequences`` (and for Woertman ``baseline_periods``,
        ``periods_per_step``).
    cluster_size : float
        Individuals per cluster-period ``m``.
    icc, cac, iac : float
        Within-period ICC, cluster autocorrelation, individual autocorrelation (cohorts).
    method : {"hooper", "woertman", "gls"}
        ``hooper``: ``DE_C * DE_R`` with ``K`` = number of sequences (steps), not periods
        (methods.md section 13.2); one baseline and one period per step.
        ``woertman``: ``DE_w`` with ``k`` steps, ``b`` baseline periods and ``t`` periods
        per step (Hussey-Hughes model, ``cac = 1``).  ``gls``: the exact GLS variance of the
        design expressed as a design effect, ``I m Var / (4 sigma_tot^2)``.
    n_sequences, baseline_periods, periods_per_step : int
        Design layout when no ``design`` is given.
    sampling : {"cross-sectional", "cohort"}
        For ``gls``; ``hooper`` uses ``iac`` directly (0 = cross-sectional).

    Returns
    -------
    DesignEffect
        The design effect with its components (Hooper) and the number of periods.

    Notes
    -----
    Conventions (methods.md section 13): all three satisfy ``Var = 4 sigma_tot^2 DE/(I m)``
    exactly for the designs they cover, so ``N_ind * DE = I m`` is the number of individuals
    measured **per period**, and the whole trial has ``T * N_ind * DE`` (Baio et al. 2015,
    SWSamp's "correct version").  clusterPower's ``cpa.sw.normal`` argument ``ntimes``
    is the number of steps ``K``.

    References
    ----------
    .. [1] Hooper R, Teerenstra S, de Hoop E, Eldridge S (2016). Sample size calculation for
       stepped wedge and other longitudinal cluster randomised trials. Stat Med 35:4718-4728.
    .. [2] Woertman W, de Hoop E, Moerbeek M, et al. (2013). Stepped wedge designs could
       reduce the required sample size in cluster randomized trials. J Clin Epidemiol
       66:752-758.

    Examples
    --------
    >>> from steppedwedge.planning import design_effect
    >>> round(design_effect(n_sequences=4, cluster_size=10, icc=0.05, method="woertman").value, 3)
    0.535
    >>> de = design_effect(n_sequences=4, cluster_size=20, icc=0.05, cac=0.8)
    >>> round(de.clustering, 2), round(de.repeated_measures, 6)
    (1.95, 0.342217)
    """
    method = check_option("method", method, ("hooper", "woertman", "gls"))
    m = check_nonnegative("cluster_size", cluster_size)
    if m <= 0:
        raise OptionError(f"`cluster_size` must be > 0; got {cluster_size!r}.")
    icc = check_unit_interval("icc", icc)
    cac = check_unit_interval("cac", cac)
    iac = check_unit_interval("iac", iac)
    d = None if design is None else _as_design(design)
    if method == "gls":
        if d is None:
            d = Design.stepped_wedge(
                n_sequences, 1, baseline_periods=baseline_periods, periods_per_step=periods_per_step
            )
        vc = VarianceComponents.from_correlations(icc, cac=cac, iac=iac)
        res = _power(d, effect=1.0, variance=vc, cluster_size=m, sampling=sampling)
        value = res.variance * d.n_clusters * m / 4.0
        return DesignEffect(value=float(value), method="gls", n_periods=d.n_periods)
    k, b, t = _closed_form_layout(method, d, n_sequences, baseline_periods, periods_per_step)
    if k < 2:
        raise DesignError(f"the design effect needs at least 2 sequences; got {k}.")
    if method == "hooper":
        if b != 1 or t != 1:
            raise DesignError(
                "Hooper's design effect assumes one baseline period and one period per step; "
                "use method='woertman' or 'gls'."
            )
        de_c, r, de_r = cf.hooper_design_effect(k, m, icc, cac, iac)
        return DesignEffect(
            value=float(de_c * de_r),
            method="hooper",
            n_periods=k + 1,
            clustering=float(de_c),
            cluster_mean_correlation=float(r),
            repeated_measures=float(de_r),
        )
    if cac != 1.0 or iac != 0.0:
        raise DesignError(
            "Woertman's design effect assumes the Hussey-Hughes model (cac=1, iac=0); use "
            "method='hooper' or 'gls'."
        )
    value = cf.woertman_design_effect(k, m, icc, b, t)
    return DesignEffect(value=float(value), method="woertman", n_periods=b + k * t)
