"""Variance components of a stepped-wedge model, and exact conversion to correlations.

One frozen specification, :class:`VarianceComponents`, is shared by analytic power,
simulation and model fitting, so that the three always mean the same model.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol, runtime_checkable

import numpy as np

from ._core.covariance import mean_covariance
from ._typing import FloatArray
from ._validation import check_nonnegative, check_unit_interval
from .exceptions import OptionError

__all__ = ["VarianceComponents", "VarianceEstimate"]

_TINY = float(np.finfo(np.float64).tiny)  # smallest normal double, 2.2e-308


@dataclass(frozen=True, slots=True)
class VarianceComponents:
    r"""Variances (not standard deviations) of the random effects of a stepped-wedge model.

    The model for individual ``k`` in cluster ``i`` and period ``j`` is

    .. math::

        Y_{ijk} = \beta_j + X_{ij}(\theta + r_i) + a_i + c_{ij} + p_{ik} + \varepsilon_{ijk}

    with ``a_i ~ N(0, tau2)`` (persistent cluster effect), ``c_i = (c_i1..c_iT) ~ N(0, gamma2 R)``
    (cluster-period effect; ``R = I`` without decay, ``R_jk = decay**|j-k|`` with it),
    ``r_i ~ N(0, eta2)`` with ``corr(a_i, r_i) = rho`` (random treatment effect),
    ``p_ik ~ N(0, psi2)`` (individual effect, cohorts only) and ``eps ~ N(0, sigma2)``.

    The cluster-level covariance of the true period means is therefore
    ``tau2 * J + gamma2 * R(decay)``, and the correlation of a cluster's true period means
    ``k`` periods apart is ``cac + (1 - cac) * decay**k``.

    Parameters
    ----------
    sigma2 : float, default 1.0
        Residual variance (within cluster-period, within individual), >= 0.  It may be 0
        where it has no role (Poisson and negative-binomial power and simulation, whose
        variance comes from the counts); Gaussian analyses refuse 0.
    tau2 : float, default 0.0
        Variance of the persistent cluster effect.
    gamma2 : float, default 0.0
        Variance of the cluster-period effect.
    eta2 : float, default 0.0
        Variance of the cluster-specific treatment effect.
    rho : float, default 0.0
        Correlation between the cluster intercept and the cluster treatment effect, in [-1, 1].
    psi2 : float, default 0.0
        Variance of the individual random effect (closed or open cohorts).
    decay : float or None, default None
        Decay ``r`` in [0, 1] of the cluster-period effect per period of separation (per year
        with ``decay_scale="time"``).
    decay_scale : {"period", "time"}, default "period"
        What the decay distance counts.  ``"period"``: the period index,
        ``R_jk = decay**|j - k|`` (discrete-time decay).  ``"time"``: calendar time in years
        between period mid-points, ``R_jk = decay**|t_j - t_k|`` (continuous-time
        exponential decay, Grantham et al. 2019), for designs with unequal period lengths;
        the mid-points come from :meth:`Design.period_midpoints`.  Needs ``decay``.

    See Also
    --------
    VarianceComponents.from_correlations : build from ICC, CAC and IAC.

    Notes
    -----
    Special cases: Hussey & Hughes (2007) is ``tau2`` only; the nested-exchangeable model of
    Hooper et al. (2016) is ``tau2`` and ``gamma2``; the discrete-time decay model of Kasza et
    al. (2019) is ``gamma2`` with ``decay`` and ``tau2 = 0``.

    The correlations are defined on the marginal variance excluding ``eta2`` (which makes the
    variance depend on treatment status):
    ``total = tau2 + gamma2 + psi2 + sigma2``, ``icc = (tau2 + gamma2) / total``,
    ``cac = tau2 / (tau2 + gamma2)`` and ``iac = psi2 / (psi2 + sigma2)``.

    References
    ----------
    .. [1] Hussey MA, Hughes JP (2007). Design and analysis of stepped wedge cluster
       randomized trials. Contemp Clin Trials 28:182-191.
    .. [2] Hooper R, Teerenstra S, de Hoop E, Eldridge S (2016). Sample size calculation for
       stepped wedge and other longitudinal cluster randomised trials. Stat Med 35:4718-4728.
    .. [3] Kasza J, Hemming K, Hooper R, Matthews JNS, Forbes AB (2019). Impact of non-uniform
       correlation structure on sample size and power in multiple-period cluster randomised
       trials. Stat Methods Med Res 28:703-716.
    .. [4] Grantham KL, Kasza J, Heritier S, Hemming K, Forbes AB (2019). Accounting for a
       decaying correlation structure in cluster randomized trials with continuous
       recruitment. Stat Med 38:1918-1934.

    Examples
    --------
    >>> import steppedwedge as sw
    >>> vc = sw.VarianceComponents.from_correlations(icc=0.05, cac=0.8)
    >>> round(vc.tau2, 4), round(vc.gamma2, 4), round(vc.sigma2, 4)
    (0.04, 0.01, 0.95)
    >>> round(vc.icc, 12), round(vc.cac, 12)
    (0.05, 0.8)
    """

    sigma2: float = 1.0
    tau2: float = 0.0
    gamma2: float = 0.0
    eta2: float = 0.0
    rho: float = 0.0
    psi2: float = 0.0
    decay: float | None = None
    decay_scale: Literal["period", "time"] = "period"

    def __post_init__(self) -> None:
        for name in ("sigma2", "tau2", "gamma2", "eta2", "psi2"):
            object.__setattr__(self, name, check_nonnegative(name, getattr(self, name)))
        # sigma2 = 0 is allowed: count-family and latent-scale GLMM components have no
        # residual variance on the link scale.  Analyses that need sigma2 > 0 (Gaussian
        # power, ICC-preserving binary rescaling) check it themselves.
        rho = float(self.rho)
        if not -1.0 <= rho <= 1.0 or math.isnan(rho):
            raise OptionError(f"`rho` must lie in [-1, 1]; got {self.rho!r}.")
        object.__setattr__(self, "rho", rho)
        if self.decay is not None:
            object.__setattr__(self, "decay", check_unit_interval("decay", self.decay))
        if self.decay_scale not in ("period", "time"):
            raise OptionError(
                f"`decay_scale` must be 'period' or 'time'; got {self.decay_scale!r}."
            )
        if self.decay_scale == "time" and self.decay is None:
            raise OptionError(
                "`decay_scale='time'` needs a `decay` (the correlation of the cluster-period "
                "effect one year apart); got decay=None."
            )

    # ------------------------------------------------------------------ constructors
    @classmethod
    def from_correlations(
        cls,
        icc: float,
        cac: float = 1.0,
        iac: float = 0.0,
        decay: float | None = None,
        total_variance: float = 1.0,
        decay_scale: Literal["period", "time"] = "period",
    ) -> VarianceComponents:
        """Build variance components from intracluster correlations.

        Parameters
        ----------
        icc : float
            Within-period intracluster correlation ``(tau2 + gamma2) / total``, in [0, 1).
        cac : float, default 1.0
            Cluster autocorrelation ``tau2 / (tau2 + gamma2)``: the persistent share of the
            cluster variance, in [0, 1].
        iac : float, default 0.0
            Individual autocorrelation ``psi2 / (psi2 + sigma2)`` for cohorts, in [0, 1).
        decay : float or None, default None
            Decay of the non-persistent cluster-period component per period, in [0, 1].
        total_variance : float, default 1.0
            ``tau2 + gamma2 + psi2 + sigma2``.
        decay_scale : {"period", "time"}, default "period"
            Decay per period, or per year between period mid-points (see the class).

        Returns
        -------
        VarianceComponents

        Examples
        --------
        >>> import steppedwedge as sw
        >>> vc = sw.VarianceComponents.from_correlations(0.1, cac=0.5, iac=0.4, total_variance=2)
        >>> [round(v, 6) for v in (vc.tau2, vc.gamma2, vc.psi2, vc.sigma2)]
        [0.1, 0.1, 0.72, 1.08]
        """
        icc = check_unit_interval("icc", icc)
        if icc >= 1.0:
            raise OptionError("`icc` must be < 1 (some variation must be within clusters); got 1.")
        cac = check_unit_interval("cac", cac)
        iac = check_unit_interval("iac", iac)
        if iac >= 1.0:
            raise OptionError("`iac` must be < 1 (some residual variation must remain); got 1.")
        total = check_nonnegative("total_variance", total_variance)
        if total <= 0:
            raise OptionError(f"`total_variance` must be > 0; got {total_variance!r}.")
        cluster = icc * total
        if cluster < _TINY:
            # a subnormal (or underflowing) cluster variance cannot be split by `cac` without
            # losing every significant digit (5e-324 * 0.5 rounds to 0): it is zero in all
            # but name, so the ICC is taken as exactly 0
            icc, cluster = 0.0, 0.0
        individual = (1.0 - icc) * total
        return cls(
            sigma2=(1.0 - iac) * individual,
            tau2=cac * cluster,
            gamma2=(1.0 - cac) * cluster,
            psi2=iac * individual,
            decay=decay,
            decay_scale=decay_scale,
        )

    def with_(self, **changes: Any) -> VarianceComponents:
        """Return a copy with some components changed (validated again).

        Parameters
        ----------
        **changes
            Components to replace (``sigma2``, ``tau2``, ``gamma2``, ``eta2``, ``rho``,
            ``psi2``, ``decay``, ...).

        Returns
        -------
        VarianceComponents
            The changed copy.

        Examples
        --------
        >>> import steppedwedge as sw
        >>> sw.VarianceComponents(tau2=0.1).with_(gamma2=0.05).gamma2
        0.05
        """
        return dataclasses.replace(self, **changes)

    # ------------------------------------------------------------------ correlations
    @property
    def total_variance(self) -> float:
        """``tau2 + gamma2 + psi2 + sigma2`` (the random treatment effect is excluded)."""
        return self.tau2 + self.gamma2 + self.psi2 + self.sigma2

    @property
    def icc(self) -> float:
        """Within-period intracluster correlation ``(tau2 + gamma2) / total_variance``.

        NaN when every component is zero (no variance: the ICC is undefined).
        """
        total = self.total_variance
        return math.nan if total == 0 else (self.tau2 + self.gamma2) / total

    @property
    def cac(self) -> float:
        """Cluster autocorrelation ``tau2 / (tau2 + gamma2)`` (1.0 when both are zero)."""
        cluster = self.tau2 + self.gamma2
        return 1.0 if cluster == 0 else self.tau2 / cluster

    @property
    def iac(self) -> float:
        """Individual autocorrelation ``psi2 / (psi2 + sigma2)`` (0 when both are zero)."""
        within = self.psi2 + self.sigma2
        return 0.0 if within == 0 else self.psi2 / within

    @property
    def between_period_icc(self) -> float:
        """Correlation of two different individuals of one cluster in different periods.

        Without decay this is ``icc * cac``; with decay it depends on the lag (see
        :meth:`cluster_correlation`) and this property gives its value at lag 1.
        """
        return float(self.cluster_correlation(1)) * self.icc

    def cluster_correlation(self, lag: float | FloatArray) -> float | FloatArray:
        """Correlation of a cluster's true period means ``lag`` periods apart.

        Equals ``cac + (1 - cac) * decay**lag`` (``decay = 0`` when there is no decay, so
        the correlation is ``cac`` at every non-zero lag and 1 at lag 0).

        Parameters
        ----------
        lag : float or ndarray
            Distance in periods (``>= 0``); in years with ``decay_scale="time"``.

        Returns
        -------
        float or ndarray
            The correlation, of the shape of ``lag``.

        Examples
        --------
        >>> import steppedwedge as sw
        >>> vc = sw.VarianceComponents(tau2=0.3, gamma2=0.1, decay=0.5)
        >>> [round(float(vc.cluster_correlation(k)), 4) for k in (0, 1, 2)]
        [1.0, 0.875, 0.8125]
        """
        lag_arr = np.asarray(lag, dtype=float)
        r = 0.0 if self.decay is None else self.decay
        with np.errstate(divide="ignore"):
            shape = np.where(lag_arr == 0, 1.0, np.power(r, lag_arr))
        out = self.cac + (1.0 - self.cac) * shape
        return float(out) if out.ndim == 0 else out

    # ------------------------------------------------------------------ covariance
    def covariance(
        self,
        cluster_size: FloatArray,
        *,
        treatment: FloatArray | None = None,
        churn: float = 1.0,
        times: FloatArray | None = None,
    ) -> FloatArray:
        """Covariance of cluster-period means implied by these components.

        Parameters
        ----------
        cluster_size : ndarray, shape (I, T)
            Individuals per cluster-period (``m_ij``); zero marks an unobserved cell, whose
            rows and columns are then those of an identity matrix.
        treatment : ndarray, shape (I, T), optional
            Treatment intensities, needed when ``eta2 > 0``.
        churn : float, default 1.0
            For cohorts: share of individuals replaced between periods (0 = closed cohort).
        times : ndarray, shape (T,), optional
            Period positions used for decay distances (default ``0..T-1``).  Required with
            ``decay_scale="time"``: the period mid-points in years,
            :meth:`Design.period_midpoints`.

        Returns
        -------
        ndarray, shape (I, T, T)

        Raises
        ------
        OptionError
            With ``decay_scale="time"`` and no ``times``.

        Examples
        --------
        >>> import numpy as np
        >>> import steppedwedge as sw
        >>> vc = sw.VarianceComponents(sigma2=1.0, tau2=0.1, gamma2=0.05)
        >>> cov = vc.covariance(np.full((1, 3), 10.0))
        >>> np.round(cov[0], 3)
        array([[0.25, 0.1 , 0.1 ],
               [0.1 , 0.25, 0.1 ],
               [0.1 , 0.1 , 0.25]])
        """
        from ._core.covariance import mask_unobserved

        if self.decay_scale == "time" and times is None:
            raise OptionError(
                "decay_scale='time' needs `times`, the period mid-points in years "
                "(design.period_midpoints())."
            )
        size = np.asarray(cluster_size, dtype=float)
        observed = size > 0
        with np.errstate(divide="ignore"):
            inv_m = np.where(observed, 1.0 / np.where(observed, size, 1.0), 0.0)
        cov = mean_covariance(
            inv_m,
            sigma2=self.sigma2,
            tau2=self.tau2,
            gamma2=self.gamma2,
            decay=self.decay,
            eta2=self.eta2,
            rho=self.rho,
            treatment=treatment,
            psi2=self.psi2,
            churn=churn,
            times=times,
        )
        if not observed.all():
            cov = mask_unobserved(cov, observed)
        return cov

    # ------------------------------------------------------------------ text
    def describe(self) -> str:
        """Say in words what these numbers mean.

        Returns
        -------
        str
            A few sentences: the components, the total variance, ICC and CAC.

        Examples
        --------
        >>> import steppedwedge as sw
        >>> vc = sw.VarianceComponents.from_correlations(0.05, cac=0.8)
        >>> print(vc.describe())  # doctest: +NORMALIZE_WHITESPACE
        Variance components (variances, not SDs): residual sigma2 = 0.95, cluster tau2 = 0.04,
        cluster-period gamma2 = 0.01.
        Total variance 1 (excluding any random treatment effect).
        ICC 0.05: two individuals of one cluster in the same period correlate 0.05.
        CAC 0.8: 80% of the cluster variance persists over time; individuals of one cluster in
        different periods correlate 0.04.
        """
        parts = [f"residual sigma2 = {self.sigma2:.4g}", f"cluster tau2 = {self.tau2:.4g}"]
        if self.gamma2:
            parts.append(f"cluster-period gamma2 = {self.gamma2:.4g}")
        if self.eta2:
            parts.append(f"cluster treatment effect eta2 = {self.eta2:.4g} (rho = {self.rho:.3g})")
        if self.psi2:
            parts.append(f"individual psi2 = {self.psi2:.4g}")
        lines = ["Variance components (variances, not SDs): " + ", ".join(parts) + "."]
        lines.append(
            f"Total variance {self.total_variance:.4g} (excluding any random treatment effect)."
        )
        lines.append(
            f"ICC {self.icc:.4g}: two individuals of one cluster in the same period correlate "
            f"{self.icc:.4g}."
        )
        if self.decay is None:
            lines.append(
                f"CAC {self.cac:.4g}: {100 * self.cac:.4g}% of the cluster variance persists over "
                f"time; individuals of one cluster in different periods correlate "
                f"{self.icc * self.cac:.4g}."
            )
        elif self.decay_scale == "time":
            lines.append(
                f"CAC {self.cac:.4g} with decay {self.decay:.4g} per year (decay_scale='time', "
                f"continuous-time decay): a cluster's true period means whose mid-points are t "
                f"years apart correlate {self.cac:.4g} + {1 - self.cac:.4g} x "
                f"{self.decay:.4g}^t."
            )
        else:
            lines.append(
                f"CAC {self.cac:.4g} with decay {self.decay:.4g} per period (decay_scale="
                f"'period'): a cluster's true period means k periods apart correlate "
                f"{self.cac:.4g} + {1 - self.cac:.4g} x {self.decay:.4g}^k."
            )
        if self.psi2:
            lines.append(
                f"IAC {self.iac:.4g}: share of an individual's within-cluster variance that "
                "persists across periods (cohorts)."
            )
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.describe()


@runtime_checkable
class VarianceEstimate(Protocol):
    """Anything that carries an estimate of the variance components and its uncertainty.

    The planning functions accept such an object wherever they take ``variance=``:
    :func:`steppedwedge.power`, :func:`steppedwedge.solve_power`,
    :func:`steppedwedge.power_curve` and :func:`steppedwedge.search_designs` use the point
    estimate :attr:`variance`; :func:`steppedwedge.assurance` averages power over
    :attr:`draws` (the sampling uncertainty of the components).  The
    :class:`~steppedwedge.EstimatedVariance` returned by
    :func:`steppedwedge.estimate_variance` is one; any object with these two attributes
    (a small dataclass, say) is another.  The protocol is structural
    (:class:`typing.Protocol`) and checkable with ``isinstance``.

    Attributes
    ----------
    variance : VarianceComponents
        The point estimate, on the link scale of the outcome model.
    draws : sequence of VarianceComponents
        Draws from the sampling distribution of the estimate (e.g. a parametric bootstrap),
        on the same scale; empty when the uncertainty was not assessed.

    References
    ----------
    .. [1] O'Hagan A, Stevens JW, Campbell MJ (2005). Assurance in clinical trial design.
       Pharm Stat 4:187-201.

    Examples
    --------
    >>> from dataclasses import dataclass
    >>> import steppedwedge as sw
    >>> @dataclass(frozen=True)
    ... class MyEstimate:
    ...     variance: sw.VarianceComponents
    ...     draws: tuple[sw.VarianceComponents, ...] = ()
    >>> est = MyEstimate(sw.VarianceComponents(tau2=0.1, gamma2=0.02))
    >>> isinstance(est, sw.VarianceEstimate)
    True
    """

    @property
    def variance(self) -> VarianceComponents:
        """The point estimate of the variance components."""

    @property
    def draws(self) -> Sequence[VarianceComponents]:
        """Draws from the sampling distribution of the estimate."""
