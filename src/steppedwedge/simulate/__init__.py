"""Data-generating processes for stepped-wedge trials.

:func:`simulate` draws one trial dataset from a design, an effect on the link scale,
:class:`~steppedwedge.variance.VarianceComponents` and cluster-period sizes.  It covers every
structure the variance components describe (exchangeable, nested exchangeable, decay, random
treatment effect, closed and open cohorts), secular trends, time-varying treatment effects
(exposure-time curves), binary outcomes, and counts of a population with Poisson,
Poisson-lognormal or negative-binomial variation.  Gaussian data can be drawn directly as
cluster-period sufficient statistics, which is exact in distribution and independent of the
number of individuals.  The random draws themselves (numpy only, from a validated
``SimulationSpec``) are in ``_draw``; the DataFrame is assembled here.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, Literal

import numpy as np
import pandas as pd

from .._core.covariance import decay_matrix
from .._typing import ArrayLike, FloatArray, RNGLike
from .._validation import check_nonnegative, check_option, check_unit_interval, normalise_rng
from ..design import Design
from ..exceptions import DesignError, OptionError
from ..variance import VarianceComponents
from ._draw import SimulationSpec, draw_arrays

__all__ = ["simulate"]

_FAMILIES = ("gaussian", "binomial", "poisson", "negative_binomial")
_LINKS = {
    "gaussian": ("identity",),
    "binomial": ("logit", "identity", "log"),
    "poisson": ("log",),
    "negative_binomial": ("log",),
}
_LEVELS = ("individual", "cluster-period")
_SAMPLINGS = ("cross-sectional", "cohort")

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
    spec = _simulate_iv(
        design,
        effect=effect,
        variance=variance,
        cluster_size=cluster_size,
        family=family,
        link=link,
        baseline=baseline,
        time_effects=time_effects,
        effect_curve=effect_curve,
        sampling=sampling,
        churn=churn,
        dispersion=dispersion,
        level=level,
    )
    return draw_frame(spec, normalise_rng(rng))


# ------------------------------------------------------------------------------ internals


def draw_frame(spec: SimulationSpec, rng: np.random.Generator) -> pd.DataFrame:
    """Draw one dataset from a validated spec and return it as a long DataFrame."""
    return arrays_to_frame(spec, draw_arrays(spec, rng))


def arrays_to_frame(spec: SimulationSpec, arrays: dict[str, Any]) -> pd.DataFrame:
    """Assemble :func:`draw_arrays` output into the documented long DataFrame."""
    clusters = np.empty(len(spec.clusters), dtype=object)
    clusters[:] = list(spec.clusters)
    periods = np.asarray(spec.periods)
    if arrays["kind"] == "rows":
        ci, pj = arrays["cluster_code"], arrays["period_code"]
        cols: dict[str, Any] = {
            "cluster": _labels(clusters, ci),
            "period": periods[pj],
            "treatment": spec.treatment[ci, pj],
            "exposure_time": spec.exposure_time[ci, pj],
        }
        if arrays["individual"] is not None:
            cols["individual"] = arrays["individual"]
        cols["outcome"] = arrays["outcome"]
        rows: pd.DataFrame = pd.DataFrame(cols)
        return rows
    ci, pj = np.nonzero(spec.observed)
    cols = {
        "cluster": _labels(clusters, ci),
        "period": periods[pj],
        "treatment": spec.treatment[ci, pj],
        "exposure_time": spec.exposure_time[ci, pj],
    }
    if spec.family == "gaussian":
        cols["size"] = spec.size[ci, pj]
        cols["outcome"] = arrays["outcome"][ci, pj]
        cols["within_ss"] = arrays["within_ss"][ci, pj]
    elif spec.family == "binomial":
        cols["outcome"] = arrays["outcome"][ci, pj]
        cols["trials"] = arrays["trials"][ci, pj]
    else:
        cols["outcome"] = arrays["outcome"][ci, pj]
        cols["population"] = arrays["population"][ci, pj]
    frame: pd.DataFrame = pd.DataFrame(cols)
    return frame


def _labels(labels: np.ndarray, codes: np.ndarray) -> Any:
    out = labels[codes]
    # plain integer labels stay integer columns
    if all(isinstance(v, (int, np.integer)) for v in labels):
        return out.astype(np.int64)
    return out


def design_arrays(design: Any) -> tuple[FloatArray, tuple[Any, ...], Any]:
    """Treatment matrix, cluster labels and period labels of a Design (or a bare matrix)."""
    matrix = getattr(design, "matrix", design)
    try:
        x = np.array(matrix, dtype=float)
    except (TypeError, ValueError):
        raise DesignError(
            f"`design` must be a steppedwedge Design or an (I, T) treatment matrix; got "
            f"{type(design).__name__}."
        ) from None
    if x.ndim != 2 or x.shape[0] < 1 or x.shape[1] < 1:
        raise DesignError(f"`design` must have an (I, T) treatment matrix; got shape {x.shape}.")
    finite = x[~np.isnan(x)]
    if finite.size and (np.any(finite < 0) or np.any(finite > 1) or np.any(np.isinf(finite))):
        raise DesignError("`design` treatment values must lie in [0, 1] (NaN = unobserved).")
    clusters = tuple(getattr(design, "clusters", range(x.shape[0])))
    periods = getattr(design, "periods", None)
    if periods is None:
        periods = pd.RangeIndex(1, x.shape[1] + 1, name="period")
    return x, clusters, pd.Index(periods)


def exposure_times(x: FloatArray) -> np.ndarray:
    """0 before a cluster's first treated period, then 1, 2, ... (unobserved cells count)."""
    treated = np.nan_to_num(x) > 0
    started = np.cumsum(treated, axis=1) > 0
    return np.where(started, np.cumsum(started, axis=1), 0).astype(np.int64)


def _period_vector(name: str, value: Any, n_periods: int) -> FloatArray:
    if callable(value):
        value = value(np.arange(n_periods, dtype=float))
    arr = np.asarray(value, dtype=float)
    if arr.ndim == 0:
        raise OptionError(
            f"`{name}` must have one value per period ({n_periods}) or be a callable of the "
            f"period positions 0..{n_periods - 1}; got a scalar. For a linear trend pass "
            "e.g. `lambda t: 0.1 * t`."
        )
    if arr.shape != (n_periods,):
        raise OptionError(
            f"`{name}` must have {n_periods} values (one per period); got shape {arr.shape}."
        )
    if not np.all(np.isfinite(arr)):
        raise OptionError(f"`{name}` must be finite.")
    return arr


def _curve(value: Any, exposure: np.ndarray) -> FloatArray:
    """Multipliers c(E_ij) (1 where unexposed is irrelevant: x = 0 there)."""
    max_e = int(exposure.max())
    e = np.arange(1, max_e + 1, dtype=float)
    if value is None:
        c = np.ones(max_e)
    else:
        c = np.asarray(value(e) if callable(value) else value, dtype=float)
        if c.ndim != 1 or c.shape[0] < max_e:
            raise OptionError(
                f"`effect_curve` must give a multiplier for each exposure time 1..{max_e}; "
                f"got {c.shape[0] if c.ndim == 1 else 'shape ' + str(c.shape)} value(s)."
            )
        if not np.all(np.isfinite(c[:max_e])):
            raise OptionError("`effect_curve` must be finite.")
    full = np.concatenate([[0.0], c[:max_e]])
    out: FloatArray = full[exposure]
    return out


def _sizes(cluster_size: Any, shape: tuple[int, int], counts: bool) -> FloatArray:
    arr = np.asarray(cluster_size, dtype=float)
    n_clusters, n_periods = shape
    if arr.ndim == 0:
        arr = np.full(shape, float(arr))
    elif arr.shape == (n_clusters,):
        arr = np.repeat(arr[:, None], n_periods, axis=1)
    elif arr.shape != shape:
        raise OptionError(
            f"`cluster_size` must be a scalar, one value per cluster ({n_clusters}) or an "
            f"{n_clusters} x {n_periods} matrix; got shape {arr.shape}."
        )
    if not np.all(np.isfinite(arr)) or np.any(arr < 0):
        raise OptionError("`cluster_size` must be finite and >= 0.")
    if not counts and np.any(arr != np.round(arr)):
        raise OptionError(
            "`cluster_size` must be whole numbers of individuals (only counts take a "
            "non-integer population)."
        )
    return arr


def _simulate_iv(
    design: Any,
    *,
    effect: Any,
    variance: Any,
    cluster_size: Any,
    family: Any,
    link: Any,
    baseline: Any,
    time_effects: Any,
    effect_curve: Any,
    sampling: Any,
    churn: Any,
    dispersion: Any,
    level: Any,
) -> SimulationSpec:
    """Validate and standardise the inputs of :func:`simulate` into a :class:`SimulationSpec`."""
    x, clusters, periods = design_arrays(design)
    shape = x.shape
    family = check_option("family", family, _FAMILIES)
    counts = family in ("poisson", "negative_binomial")
    link = _LINKS[family][0] if link is None else link
    check_option("link", link, _LINKS[family])
    if not isinstance(variance, VarianceComponents):
        raise OptionError(
            f"`variance` must be a VarianceComponents; got {type(variance).__name__}. Build one "
            "with sw.VarianceComponents(...) or sw.VarianceComponents.from_correlations(...)."
        )
    try:
        effect = float(effect)
    except (TypeError, ValueError):
        raise OptionError(f"`effect` must be a number; got {effect!r}.") from None
    if not math.isfinite(effect):
        raise OptionError(f"`effect` must be finite; got {effect!r}.")
    sampling = check_option("sampling", sampling, _SAMPLINGS)
    if level is None:
        level = "cluster-period" if counts else "individual"
    level = check_option("level", level, _LEVELS)
    if counts and level == "individual":
        raise OptionError(
            "`level` must be 'cluster-period' for counts: they are simulated as counts of a "
            "population (with `cluster_size` the population) per cluster-period."
        )
    if counts and (sampling == "cohort" or variance.psi2):
        raise OptionError(
            "counts of a population have no individuals: use sampling='cross-sectional' and "
            f"psi2=0 for family='{family}'."
        )
    if sampling == "cross-sectional":
        if churn not in (None, 1, 1.0):
            raise OptionError(
                "`churn` applies to sampling='cohort' only; got a churn with "
                "cross-sectional sampling."
            )
        churn_f = 1.0
    else:
        churn_f = 0.0 if churn is None else check_unit_interval("churn", churn)

    # baseline on the link scale: a scalar, or one value per cluster (I,)
    base = _baseline_iv(baseline, family, link, clusters)

    # dispersion
    if dispersion is not None:
        if not counts:
            raise OptionError("`dispersion` applies to counts (poisson, negative_binomial) only.")
        dispersion = check_nonnegative("dispersion", dispersion)
    if family == "negative_binomial" and not dispersion:
        raise OptionError(
            "`dispersion` (the NB2 alpha, Var = mu + alpha mu^2) must be > 0 for "
            "family='negative_binomial'; use family='poisson' for no overdispersion."
        )

    size = _sizes(cluster_size, shape, counts)
    observed = ~np.isnan(x) & (size > 0)
    if not observed.any():
        raise DesignError("no cell has data: every cell is unobserved or has `cluster_size` 0.")
    exposure = exposure_times(x)
    xc = np.where(observed, np.nan_to_num(x) * _curve(effect_curve, exposure), 0.0)
    beta = (
        np.zeros(shape[1])
        if time_effects is None
        else _period_vector("time_effects", time_effects, shape[1])
    )
    eta = np.reshape(base, (-1, 1)) + beta[None, :] + effect * xc

    n_stay = np.zeros(shape[0], dtype=np.int64)
    if sampling == "cohort":
        for i in range(shape[0]):
            m_i = np.unique(size[i, observed[i]])
            if m_i.size > 1:
                raise OptionError(
                    f"`cluster_size` must be constant over the observed periods of cluster "
                    f"{clusters[i]!r} for sampling='cohort' (the cohort is followed over time); "
                    f"got {sorted(m_i.tolist())}."
                )
            if m_i.size:
                n_stay[i] = int(round((1.0 - churn_f) * m_i[0]))

    # a square root of gamma2 * R(decay) (eigen-based: R is singular when decay = 1)
    times = _decay_times(design, variance, shape[1])
    decay_r = variance.gamma2 * decay_matrix(
        variance.decay, np.arange(shape[1], dtype=float) if times is None else times
    )
    evals, evecs = np.linalg.eigh(decay_r)
    chol = evecs * np.sqrt(np.clip(evals, 0.0, None))[None, :]
    spec = SimulationSpec(
        family=family,
        link=link,
        level=level,
        sampling=sampling,
        churn=churn_f,
        treatment=np.where(np.isnan(x), np.nan, x),
        xc=xc,
        exposure_time=exposure,
        size=np.where(observed, size, 0.0),
        observed=observed,
        eta=eta,
        sigma2=variance.sigma2,
        tau2=variance.tau2,
        gamma2=variance.gamma2,
        eta2=variance.eta2,
        rho=variance.rho,
        psi2=variance.psi2,
        decay=variance.decay,
        chol_period=chol,
        dispersion=dispersion,
        n_stay=n_stay,
        clusters=clusters,
        periods=periods,
        times=times,
    )
    for arr in (spec.treatment, spec.xc, spec.exposure_time, spec.size, spec.observed, spec.eta):
        arr.flags.writeable = False
    return spec


def _decay_times(design: Any, variance: VarianceComponents, n_periods: int) -> FloatArray | None:
    """Period mid-points in years for ``decay_scale="time"`` (None on the period scale)."""
    if variance.decay_scale != "time":
        return None
    if not isinstance(design, Design) and not callable(getattr(design, "period_midpoints", None)):
        raise DesignError(
            "variance.decay_scale='time' needs a steppedwedge Design with period lengths or "
            "dates (its period mid-points give the decay distances); got a bare "
            f"{type(design).__name__} treatment matrix."
        )
    times: FloatArray = np.asarray(design.period_midpoints(), dtype=float)
    return times


def _baseline_iv(baseline: Any, family: str, link: str, clusters: tuple[Any, ...]) -> FloatArray:
    """Baseline on the link scale, as an ``(I,)`` array (a scalar is repeated)."""
    n_clusters = len(clusters)
    if family != "gaussian" and baseline is None:
        what = "probability" if family == "binomial" else "rate per unit of population"
        raise OptionError(f"`baseline` (the control {what}) is required for family='{family}'.")
    if baseline is None:
        return np.zeros(n_clusters)
    arr = np.asarray(baseline, dtype=object)
    if arr.ndim == 0:
        values = [baseline]
        name = ["baseline"]
    elif arr.shape == (n_clusters,):
        values = list(arr.tolist())
        name = [f"baseline` of cluster `{c!r}" for c in clusters]
    else:
        raise OptionError(
            f"`baseline` must be a number or one value per cluster ({n_clusters}); got shape "
            f"{arr.shape}."
        )
    out = np.empty(len(values))
    for k, (nm, v) in enumerate(zip(name, values, strict=True)):
        if family == "gaussian":
            out[k] = check_finite(nm, v)
        elif family == "binomial":
            p0 = check_unit_interval(nm, v, closed=False)
            out[k] = {"logit": math.log(p0 / (1 - p0)), "log": math.log(p0), "identity": p0}[link]
        else:
            rate = check_nonnegative(nm, v)
            if rate <= 0:
                raise OptionError(f"`{nm}` (the control rate) must be > 0; got {v!r}.")
            out[k] = math.log(rate)
    return np.resize(out, n_clusters) if arr.ndim == 0 else out


def check_finite(name: str, value: Any) -> float:
    """Return ``value`` as a finite float, or raise a ValueError naming ``name``."""
    try:
        out = float(value)
    except (TypeError, ValueError):
        raise OptionError(f"`{name}` must be a number; got {value!r}.") from None
    if not math.isfinite(out):
        raise OptionError(f"`{name}` must be finite; got {value!r}.")
    return out
