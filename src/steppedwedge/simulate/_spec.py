"""The data-generating model of a stepped-wedge trial, validated once.

:class:`SimulationSpec` holds the keyword-level model that :func:`steppedwedge.simulate`,
:func:`steppedwedge.simulate_power` and their helpers share: effect, variance components,
cluster sizes, family and link, baseline, secular trend, exposure-time curve, sampling
(cross-sectional or cohort, with churn), dispersion and output level.  It is built and
validated by :meth:`SimulationSpec.from_options` (the one place these options are checked)
and turned into the plain arrays of one design by :meth:`SimulationSpec.arrays`
(a :class:`~steppedwedge.simulate._draw.DrawArrays`, which the numpy-only drawing code
reads).  Callers pass the spec down instead of forwarding the keywords.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from .._core.covariance import decay_matrix
from .._typing import FloatArray, IntArray
from .._validation import check_nonnegative, check_option, check_unit_interval
from ..design import Design
from ..exceptions import DesignError, OptionError
from ..variance import VarianceComponents
from ._draw import DrawArrays

__all__ = ["SimulationSpec", "design_arrays", "exposure_times"]

FAMILIES = ("gaussian", "binomial", "poisson", "negative_binomial")
LINKS = {
    "gaussian": ("identity",),
    "binomial": ("logit", "identity", "log"),
    "poisson": ("log",),
    "negative_binomial": ("log",),
}
LEVELS = ("individual", "cluster-period")
SAMPLINGS = ("cross-sectional", "cohort")
_COUNTS = ("poisson", "negative_binomial")


@dataclass(frozen=True, eq=False)
class SimulationSpec:
    """The data-generating model of :func:`steppedwedge.simulate`, validated, design-free.

    Build it with :meth:`from_options` (the fields hold the resolved options: the default
    link and level filled in, ``churn`` 1 for cross-sectional sampling); every option means
    what it means in :func:`steppedwedge.simulate`.  :meth:`arrays` checks the model against
    a design (shapes of ``cluster_size``, ``baseline``, ``time_effects`` and
    ``effect_curve``) and returns the arrays one dataset is drawn from.

    Examples
    --------
    >>> import numpy as np
    >>> import steppedwedge as sw
    >>> from steppedwedge.simulate._spec import SimulationSpec
    >>> model = SimulationSpec.from_options(
    ...     effect=0.5, variance=sw.VarianceComponents(sigma2=1.0, tau2=0.1), cluster_size=3
    ... )
    >>> model.link, model.level, model.churn
    ('identity', 'individual', 1.0)
    >>> model.arrays(np.array([[0, 1, 1], [0, 0, 1]], dtype=float)).shape
    (2, 3)

    References
    ----------
    .. [1] Baio G, Copas A, Ambler G, et al. (2015). Sample size calculation for a stepped
       wedge trial. Trials 16:354.
    """

    effect: float
    variance: VarianceComponents
    cluster_size: Any
    family: str = "gaussian"
    link: str = "identity"
    baseline: Any = None
    time_effects: Any = None
    effect_curve: Any = None
    sampling: str = "cross-sectional"
    churn: float = 1.0
    dispersion: float | None = None
    level: str = "individual"

    @classmethod
    def from_options(
        cls,
        *,
        effect: Any,
        variance: Any,
        cluster_size: Any,
        family: Any = "gaussian",
        link: Any = None,
        baseline: Any = None,
        time_effects: Any = None,
        effect_curve: Any = None,
        sampling: Any = "cross-sectional",
        churn: Any = None,
        dispersion: Any = None,
        level: Any = None,
    ) -> SimulationSpec:
        """Validate the options of :func:`steppedwedge.simulate` and resolve their defaults.

        Raises
        ------
        OptionError
            An invalid or conflicting option (the message names it).
        """
        family = check_option("family", family, FAMILIES)
        link = LINKS[family][0] if link is None else link
        check_option("link", link, LINKS[family])
        _check_variance(variance)
        effect = check_finite("effect", effect)
        sampling = check_option("sampling", sampling, SAMPLINGS)
        level = _check_level(level, family, sampling, variance)
        churn_f = _check_churn(churn, sampling)
        _check_baseline_given(baseline, family, link)
        dispersion = _check_dispersion(dispersion, family)
        return cls(
            effect=effect,
            variance=variance,
            cluster_size=cluster_size,
            family=family,
            link=link,
            baseline=baseline,
            time_effects=time_effects,
            effect_curve=effect_curve,
            sampling=sampling,
            churn=churn_f,
            dispersion=dispersion,
            level=level,
        )

    @classmethod
    def pick(cls, given: Mapping[str, Any]) -> dict[str, Any]:
        """Return the model's keywords from ``given`` (e.g. a public function's arguments).

        The functions that take the data-generating keywords in their public signature
        (:func:`steppedwedge.simulate`, :func:`steppedwedge.simulate_power`) pass their
        arguments through this instead of forwarding each keyword by hand.
        """
        return {f.name: given[f.name] for f in dataclasses.fields(cls)}

    def replace(self, **changes: Any) -> SimulationSpec:
        """Return a copy with ``changes`` applied, validated again by :meth:`from_options`."""
        fields = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        return SimulationSpec.from_options(**{**fields, **changes})

    def arrays(self, design: Any) -> DrawArrays:
        """Check the model against ``design`` and return the arrays a dataset is drawn from.

        Raises
        ------
        DesignError
            ``design`` is not a Design or an ``(I, T)`` treatment matrix, or has no cell
            with data.
        OptionError
            ``cluster_size``, ``baseline``, ``time_effects`` or ``effect_curve`` do not fit
            the design.
        """
        x, clusters, periods = design_arrays(design)
        shape = x.shape
        base = _baseline_iv(self.baseline, self.family, self.link, clusters)
        size = _sizes(self.cluster_size, shape, self.family in _COUNTS)
        observed = ~np.isnan(x) & (size > 0)
        if not observed.any():
            raise DesignError("no cell has data: every cell is unobserved or has `cluster_size` 0.")
        exposure = exposure_times(x)
        xc = np.where(observed, np.nan_to_num(x) * _curve(self.effect_curve, exposure), 0.0)
        beta = (
            np.zeros(shape[1])
            if self.time_effects is None
            else _period_vector("time_effects", self.time_effects, shape[1])
        )
        eta = np.reshape(base, (-1, 1)) + beta[None, :] + self.effect * xc
        n_stay = self._cohort_stay(size, observed, clusters)
        times = _decay_times(design, self.variance, shape[1])
        vc = self.variance
        out = DrawArrays(
            family=self.family,
            link=self.link,
            level=self.level,
            sampling=self.sampling,
            churn=self.churn,
            treatment=np.where(np.isnan(x), np.nan, x),
            xc=xc,
            exposure_time=exposure,
            size=np.where(observed, size, 0.0),
            observed=observed,
            eta=eta,
            sigma2=vc.sigma2,
            tau2=vc.tau2,
            gamma2=vc.gamma2,
            eta2=vc.eta2,
            rho=vc.rho,
            psi2=vc.psi2,
            decay=vc.decay,
            chol_period=_period_factor(vc, shape[1], times),
            dispersion=self.dispersion,
            n_stay=n_stay,
            clusters=clusters,
            periods=periods,
            times=times,
        )
        for arr in (out.treatment, out.xc, out.exposure_time, out.size, out.observed, out.eta):
            arr.flags.writeable = False
        return out

    def evaluated(self, draw: DrawArrays) -> SimulationSpec:
        """Return the model with its callables evaluated on ``draw``'s design (picklable).

        ``cluster_size`` becomes the full ``(I, T)`` matrix, ``time_effects`` one value per
        period and ``effect_curve`` its multipliers at exposure times ``1..max``; used when
        every replicate re-draws the allocation of the same clusters and sequences.
        """
        shape = draw.shape
        return dataclasses.replace(
            self,
            cluster_size=_sizes(self.cluster_size, shape, self.family in _COUNTS),
            time_effects=None
            if self.time_effects is None
            else _period_vector("time_effects", self.time_effects, shape[1]),
            effect_curve=_curve_values(self.effect_curve, draw),
        )

    def _cohort_stay(
        self, size: FloatArray, observed: np.ndarray, clusters: tuple[Any, ...]
    ) -> IntArray:
        """Cohort members present in every period, per cluster (0 cross-sectionally)."""
        n_stay = np.zeros(size.shape[0], dtype=np.int64)
        if self.sampling != "cohort":
            return n_stay
        for i in range(size.shape[0]):
            m_i = np.unique(size[i, observed[i]])
            if m_i.size > 1:
                raise OptionError(
                    f"`cluster_size` must be constant over the observed periods of cluster "
                    f"{clusters[i]!r} for sampling='cohort' (the cohort is followed over time); "
                    f"got {sorted(m_i.tolist())}."
                )
            if m_i.size:
                n_stay[i] = int(round((1.0 - self.churn) * m_i[0]))
        return n_stay


# ------------------------------------------------------------------ option checks


def _check_variance(variance: Any) -> None:
    if not isinstance(variance, VarianceComponents):
        raise OptionError(
            f"`variance` must be a VarianceComponents; got {type(variance).__name__}. Build one "
            "with sw.VarianceComponents(...) or sw.VarianceComponents.from_correlations(...)."
        )


def _check_level(level: Any, family: str, sampling: str, variance: VarianceComponents) -> str:
    counts = family in _COUNTS
    if level is None:
        level = "cluster-period" if counts else "individual"
    level = check_option("level", level, LEVELS)
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
    return str(level)


def _check_churn(churn: Any, sampling: str) -> float:
    if sampling == "cross-sectional":
        if churn not in (None, 1, 1.0):
            raise OptionError(
                "`churn` applies to sampling='cohort' only; got a churn with "
                "cross-sectional sampling."
            )
        return 1.0
    return 0.0 if churn is None else check_unit_interval("churn", churn)


def _check_baseline_given(baseline: Any, family: str, link: str) -> None:
    """Require a baseline off the Gaussian family; check a scalar one here."""
    if family != "gaussian" and baseline is None:
        what = "probability" if family == "binomial" else "rate per unit of population"
        raise OptionError(f"`baseline` (the control {what}) is required for family='{family}'.")
    if baseline is not None and np.ndim(np.asarray(baseline, dtype=object)) == 0:
        _link_baseline("baseline", baseline, family, link)


def _check_dispersion(dispersion: Any, family: str) -> float | None:
    if dispersion is not None:
        if family not in _COUNTS:
            raise OptionError("`dispersion` applies to counts (poisson, negative_binomial) only.")
        dispersion = check_nonnegative("dispersion", dispersion)
    if family == "negative_binomial" and not dispersion:
        raise OptionError(
            "`dispersion` (the NB2 alpha, Var = mu + alpha mu^2) must be > 0 for "
            "family='negative_binomial'; use family='poisson' for no overdispersion."
        )
    return None if dispersion is None else float(dispersion)


def check_finite(name: str, value: Any) -> float:
    """Return ``value`` as a finite float, or raise an OptionError naming ``name``."""
    try:
        out = float(value)
    except (TypeError, ValueError):
        raise OptionError(f"`{name}` must be a number; got {value!r}.") from None
    if not math.isfinite(out):
        raise OptionError(f"`{name}` must be finite; got {value!r}.")
    return out


# ------------------------------------------------------------------ design-dependent parts


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


def _curve_values(effect_curve: Any, draw: DrawArrays) -> np.ndarray | None:
    """``effect_curve`` evaluated once at the design's exposure times 1..max (picklable)."""
    if effect_curve is None:
        return None
    max_e = int(draw.exposure_time.max())
    if max_e == 0:
        return None
    values: np.ndarray = _curve(effect_curve, np.arange(max_e + 1))[1:]
    return values


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


def _period_factor(vc: VarianceComponents, n_periods: int, times: FloatArray | None) -> FloatArray:
    """Return a square root of gamma2 * R(decay) (eigen-based: R is singular at decay 1)."""
    decay_r = vc.gamma2 * decay_matrix(
        vc.decay, np.arange(n_periods, dtype=float) if times is None else times
    )
    evals, evecs = np.linalg.eigh(decay_r)
    chol: FloatArray = evecs * np.sqrt(np.clip(evals, 0.0, None))[None, :]
    return chol


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
    if baseline is None:
        return np.zeros(n_clusters)
    arr = np.asarray(baseline, dtype=object)
    if arr.ndim == 0:
        return np.full(n_clusters, _link_baseline("baseline", baseline, family, link))
    if arr.shape != (n_clusters,):
        raise OptionError(
            f"`baseline` must be a number or one value per cluster ({n_clusters}); got shape "
            f"{arr.shape}."
        )
    return np.array(
        [
            _link_baseline(f"baseline` of cluster `{c!r}", v, family, link)
            for c, v in zip(clusters, arr.tolist(), strict=True)
        ],
        dtype=float,
    )


def _link_baseline(name: str, value: Any, family: str, link: str) -> float:
    """One control level (mean, probability or rate) on the link scale, checked."""
    if family == "gaussian":
        return check_finite(name, value)
    if family == "binomial":
        p0 = check_unit_interval(name, value, closed=False)
        return {"logit": math.log(p0 / (1 - p0)), "log": math.log(p0), "identity": p0}[link]
    rate = check_nonnegative(name, value)
    if rate <= 0:
        raise OptionError(f"`{name}` (the control rate) must be > 0; got {value!r}.")
    return math.log(rate)
