"""Data-generating processes for stepped-wedge trials.

:func:`simulate` draws one trial dataset from a design, an effect on the link scale,
:class:`~steppedwedge.variance.VarianceComponents` and cluster-period sizes.  It covers every
structure the variance components describe (exchangeable, nested exchangeable, decay, random
treatment effect, closed and open cohorts), secular trends, time-varying treatment effects
(exposure-time curves), binary outcomes, and counts of a population with Poisson,
Poisson-lognormal or negative-binomial variation.  Gaussian data can be drawn directly as
cluster-period sufficient statistics, which is exact in distribution and independent of the
number of individuals.  The model is validated once into a ``SimulationSpec`` (``_spec``),
which gives the arrays of a design (``DrawArrays``); the random draws themselves (numpy
only) are in ``_draw``; the DataFrame is assembled here.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

import numpy as np
import pandas as pd

from .._typing import ArrayLike, FloatArray, RNGLike
from .._validation import normalise_rng
from ..variance import VarianceComponents
from ._draw import DrawArrays, draw_arrays
from ._spec import SimulationSpec

__all__ = ["simulate"]

Level = Literal["individual", "cluster-period"]


def simulate(
    design: Any,
    *,
    effect: float,
    variance: VarianceComponents,
    cluster_size: ArrayLike,
    family: str = "gaussian",
    link: str | None = None,
    baseline: float | ArrayLike | None = None,
    time_effects: ArrayLike | Callable[[FloatArray], ArrayLike] | None = None,
    effect_curve: ArrayLike | Callable[[FloatArray], ArrayLike] | None = None,
    sampling: str = "cross-sectional",
    churn: float | None = None,
    dispersion: float | None = None,
    level: Level | None = None,
    rng: RNGLike = None,
) -> pd.DataFrame:
    r"""Draw one stepped-wedge dataset.

    Parameters
    ----------
    design : Design
        Who is treated when (a :class:`~steppedwedge.design.Design`; an ``(I, T)`` treatment
        matrix is also accepted).  Cells the design marks unobserved (NaN) get no data.
    effect : float
        Treatment effect on the link scale of ``family``: mean difference (Gaussian), log
        odds ratio (binomial, logit), risk difference (binomial, identity), log risk ratio
        (binomial, log) or log rate ratio (counts).
    variance : VarianceComponents
        Random-effect variances on the link scale.  ``sigma2`` is the Gaussian residual
        variance and is not used by other families (their within-cell variation is the
        family's own).
    cluster_size : int, array-like of shape (I,) or (I, T)
        Individuals per cluster-period; for counts, the population (exposure) per
        cluster-period (need not be an integer).  Zero means no data in that cell.
    family : {"gaussian", "binomial", "poisson", "negative_binomial"}
    link : str, optional
        Default: identity (Gaussian), logit (binomial), log (counts).  Binomial also takes
        ``"identity"`` and ``"log"``; a draw whose probability leaves [0, 1] raises.
    baseline : float or array-like of shape (I,), optional
        Control mean (Gaussian, default 0), probability (binomial) or rate per unit of
        population (counts) in the first period, for a cluster with zero random effects.
        Required for binomial and counts.  One value per cluster (in the rows' order) gives
        each cluster its own control level, e.g. the published baseline risks of real
        councils; the random effects of ``variance`` are added on top of it (a per-cluster
        baseline already encodes fixed between-cluster differences, so set ``tau2=0`` when
        it should be the only source of them).
    time_effects : array-like of shape (T,) or callable, optional
        Period effects on the link scale, added to every cluster (secular trend).  A
        callable gets the period positions ``0..T-1`` and returns ``T`` values, e.g.
        ``lambda t: 0.1 * t`` for a linear trend.  Default: no trend.
    effect_curve : array-like or callable, optional
        Time-varying treatment effect: multipliers ``c(e)`` of ``effect`` for exposure times
        ``e = 1..L`` (a sequence of at least ``L`` values, or a callable on the array of
        exposure times).  The effect in a cell with treatment ``x`` and exposure time ``e``
        is ``x * c(e) * (effect + r_i)``.  Default: ``c(e) = 1`` (immediate, constant
        effect).
    sampling : {"cross-sectional", "cohort"}
        Cross-sectional: new individuals every period.  Cohort: each cluster follows
        ``cluster_size`` individuals (constant over its periods); a share ``churn`` of them is
        replaced every period.
    churn : float, optional
        Cohorts only, in [0, 1]; default 0 (closed cohort).  Open cohorts are drawn as
        ``round((1 - churn) * m)`` individuals measured in every period plus new individuals
        in each period, which gives exactly the covariance
        ``(1 - churn) psi2 / m`` between periods of Kasza et al. (2020) when
        ``(1 - churn) * m`` is an integer.
    dispersion : float, optional
        Counts only.  ``"negative_binomial"``: the NB2 dispersion ``alpha`` (required,
        ``Var = mu + alpha mu^2``).  ``"poisson"``: variance of a normal cell-level effect on
        the log scale (Poisson-lognormal); default none.
    level : {"individual", "cluster-period"}, optional
        Rows per individual, or one row per cluster-period.  Default: individual for Gaussian
        and binomial, cluster-period for counts (counts of a population exist only as
        aggregates).  Gaussian cluster-period rows hold the exact sufficient statistics
        (``size``, cell mean ``outcome``, ``within_ss``), drawn directly without individual
        rows for cross-sectional sampling.
    rng : int, numpy.random.Generator or None
        Random source.

    Returns
    -------
    pandas.DataFrame
        Columns ``cluster``, ``period``, ``treatment``, ``exposure_time``, then
        ``individual`` (cohorts) and ``outcome`` for individual rows; for cluster-period rows
        ``outcome`` (mean, events or count) with ``size`` and ``within_ss`` (Gaussian),
        ``trials`` (binomial) or ``population`` (counts).

    Notes
    -----
    The linear predictor of individual ``k`` in cluster ``i`` and period ``j`` is

    .. math::

        \eta_{ijk} = \mu + \beta_j + x_{ij} c(E_{ij}) (\theta + r_i) + a_i + c_{ij} + p_{ik},

    with :math:`\mu` the baseline on the link scale, :math:`\beta_j` the time effects,
    :math:`(a_i, r_i)` bivariate normal (variances ``tau2``, ``eta2``, correlation ``rho``),
    :math:`c_i \sim N(0, \gamma^2 R(r))` and :math:`p_{ik} \sim N(0, \psi^2)`.  Gaussian
    outcomes add :math:`\varepsilon_{ijk} \sim N(0, \sigma^2)`; binary outcomes are
    Bernoulli with mean :math:`g^{-1}(\eta_{ijk})`; counts are Poisson with mean
    ``population * exp(eta_ij)`` (times a gamma variable with mean 1 and variance ``alpha``
    for the negative binomial).  Cross-sectionally, ``psi2`` acts as extra individual-level
    variation.  The cluster-period means of Gaussian data therefore have exactly the
    covariance :meth:`VarianceComponents.covariance`.

    References
    ----------
    .. [1] Baio G, Copas A, Ambler G, et al. (2015). Sample size calculation for a stepped
       wedge trial. Trials 16:354.
    .. [2] Kasza J, Hooper R, Copas A, Forbes AB (2020). Sample size and power calculations
       for open cohort longitudinal cluster randomized trials. Stat Med 39:1871-1883.

    Examples
    --------
    >>> import numpy as np
    >>> import steppedwedge as sw
    >>> x = np.array([[0, 1, 1], [0, 0, 1]], dtype=float)
    >>> vc = sw.VarianceComponents(sigma2=1.0, tau2=0.1)
    >>> df = simulate(x, effect=0.5, variance=vc, cluster_size=3, rng=1)
    >>> df.shape
    (18, 5)
    >>> list(df.columns)
    ['cluster', 'period', 'treatment', 'exposure_time', 'outcome']
    >>> cells = simulate(x, effect=0.5, variance=vc, cluster_size=3, level="cluster-period", rng=1)
    >>> list(cells.columns)
    ['cluster', 'period', 'treatment', 'exposure_time', 'size', 'outcome', 'within_ss']

    One control risk per cluster (its own baseline, no random intercept on top):

    >>> vc0 = sw.VarianceComponents(sigma2=1.0, tau2=0.0)
    >>> counts = simulate(x, effect=0.0, variance=vc0, cluster_size=[[5000, 5000, 5000]] * 2,
    ...                   family="binomial", baseline=[0.05, 0.2], level="cluster-period", rng=1)
    >>> (counts.groupby("cluster")["outcome"].sum() / 15000).round(2).tolist()
    [0.05, 0.2]
    """
    model = SimulationSpec.from_options(**SimulationSpec.pick(locals()))
    return draw_frame(model.arrays(design), normalise_rng(rng))


# ------------------------------------------------------------------------------ internals


def draw_frame(spec: DrawArrays, rng: np.random.Generator) -> pd.DataFrame:
    """Draw one dataset from a design's arrays and return it as a long DataFrame."""
    return arrays_to_frame(spec, draw_arrays(spec, rng))


def arrays_to_frame(spec: DrawArrays, arrays: dict[str, Any]) -> pd.DataFrame:
    """Assemble :func:`draw_arrays` output into the documented long DataFrame."""
    clusters = np.empty(len(spec.clusters), dtype=object)
    clusters[:] = list(spec.clusters)
    periods = np.asarray(spec.periods)
    if arrays["kind"] == "rows":
        ci, pj = arrays["cluster_code"], arrays["period_code"]
    else:
        ci, pj = np.nonzero(spec.observed)
    cols: dict[str, Any] = {
        "cluster": _labels(clusters, ci),
        "period": periods[pj],
        "treatment": spec.treatment[ci, pj],
        "exposure_time": spec.exposure_time[ci, pj],
    }
    if arrays["kind"] == "rows":
        if arrays["individual"] is not None:
            cols["individual"] = arrays["individual"]
        cols["outcome"] = arrays["outcome"]
    elif spec.family == "gaussian":
        cols["size"] = spec.size[ci, pj]
        cols["outcome"] = arrays["outcome"][ci, pj]
        cols["within_ss"] = arrays["within_ss"][ci, pj]
    else:
        cols["outcome"] = arrays["outcome"][ci, pj]
        extra = "trials" if spec.family == "binomial" else "population"
        cols[extra] = arrays[extra][ci, pj]
    frame: pd.DataFrame = pd.DataFrame(cols)
    return frame


def _labels(labels: np.ndarray, codes: np.ndarray) -> Any:
    out = labels[codes]
    # plain integer labels stay integer columns
    if all(isinstance(v, (int, np.integer)) for v in labels):
        return out.astype(np.int64)
    return out


def _simulate_iv(design: Any, **options: Any) -> DrawArrays:
    """Validate the options of :func:`simulate` and return the arrays of ``design``.

    ``options`` are the data-generating keywords of :func:`simulate`
    (:meth:`SimulationSpec.from_options`).
    """
    return SimulationSpec.from_options(**options).arrays(design)
