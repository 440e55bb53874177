r"""Analytic power of stepped-wedge and other longitudinal cluster designs.

Everything is the GLS information of the planned design evaluated with the shared kernels
of :mod:`steppedwedge._core` (the same code that fits models), so any design the
:class:`~steppedwedge.design.Design` object can hold (incomplete, transition or fractional
cells, extra periods, unequal sequences, parallel and crossover comparators) is covered.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from scipy import special

from .._core import power_kernels as pk
from .._core.covariance import mask_unobserved
from .._validation import check_option, check_probability, check_unit_interval
from ..design import Design
from ..exceptions import DesignError, OptionError
from ..simulate._spec import FAMILIES, LINKS, check_finite
from ..variance import VarianceComponents, VarianceEstimate
from .result import PowerResult

__all__ = ["power"]

#: the first link of each family (the data-generating model's) is its default
DEFAULT_LINK = {family: links[0] for family, links in LINKS.items()}
#: SteppedPower's rules on cluster-period means (I clusters, n_cells observed cells, p fixed
#: effects), then the individual-level counts under their own names
DOF_RULES = (
    "between-within",
    "containment",
    "residual",
    "between-within-individuals",
    "containment-individuals",
    "residual-individuals",
)
#: ICC-preserving rescalings (mean / average / control), then the two peers' conventions
BINARY_VARIANCE = ("mean", "average", "control", "swcrtdesign", "steppedpower")

Analysis = Literal["mixed", "gee"]


@dataclass(frozen=True)
class _Spec:
    design: Design
    matrix: np.ndarray  # (I, T) with 0 in unobserved cells
    observed: np.ndarray
    size: np.ndarray  # (I, T), NaN unobserved
    effect: float
    variance: VarianceComponents
    family: str
    link: str
    analysis: str
    baseline: np.ndarray | None  # (T,)
    alpha: float
    dof: str | float | None
    weights: np.ndarray | None
    sampling: str
    churn: float
    individual_decay: float | None
    time: str
    exposure: np.ndarray  # (I, T)
    dispersion: float | None
    binary_variance: str
    glmm_variance: str = "null-alternative"
    treatment_correlation: tuple[float, float, float] | None = None
    times: np.ndarray | None = None  # (T,) period mid-points in years, decay_scale="time"


# --------------------------------------------------------------------------- validation
def point_variance(variance: Any) -> VarianceComponents:
    """Return the components to plan with: ``variance``, or an estimate's point estimate.

    Accepts a :class:`VarianceComponents` or any :class:`VarianceEstimate` (an object with
    ``.variance`` and ``.draws``, such as :class:`~steppedwedge.EstimatedVariance`).
    """
    if isinstance(variance, VarianceComponents):
        return variance
    point = getattr(variance, "variance", None)
    if isinstance(variance, VarianceEstimate) and isinstance(point, VarianceComponents):
        return point
    raise TypeError(
        "`variance` must be a steppedwedge.VarianceComponents (e.g. "
        "VarianceComponents.from_correlations(icc=0.05)) or an estimate with `.variance` "
        "and `.draws` (steppedwedge.estimate_variance); got "
        f"{type(variance).__name__}."
    )


def _as_design(design: Any) -> Design:
    if isinstance(design, Design):
        return design
    try:
        return Design.from_matrix(design)
    except DesignError:
        raise
    except Exception as exc:  # pragma: no cover - defensive
        raise TypeError(
            f"`design` must be a Design or an (I, T) treatment matrix; got {type(design).__name__}."
        ) from exc


def _cell_array(name: str, value: Any, design: Design, *, positive: bool = True) -> np.ndarray:
    """Broadcast a scalar / per-cluster / cluster x period value to (I, T), NaN unobserved."""
    n_clusters, n_periods = design.n_clusters, design.n_periods
    arr = np.asarray(value, dtype=float)
    if arr.ndim == 0:
        out = np.full((n_clusters, n_periods), float(arr))
    elif arr.ndim == 1 and arr.shape[0] == n_clusters:
        out = np.repeat(arr[:, None], n_periods, axis=1)
    elif arr.shape == (n_clusters, n_periods):
        out = arr.copy()
    else:
        raise OptionError(
            f"`{name}` must be a scalar, a vector of length {n_clusters} (one per cluster) or a "
            f"{n_clusters} x {n_periods} (cluster x period) array; got shape {arr.shape}."
        )
    obs = design.observed
    bad = obs & ~(np.isfinite(out) & ((out > 0) if positive else (out >= 0)))
    if bad.any():
        i, j = np.argwhere(bad)[0]
        raise OptionError(
            f"`{name}` must be a finite number > 0 in every observed cell; got {out[i, j]!r} for "
            f"cluster {design.clusters[i]!r}, period {design.periods[j]!r}."
        )
    return np.where(obs, out, np.nan)


def _power_iv(
    design: Any,
    effect: Any,
    variance: Any,
    cluster_size: Any,
    *,
    family: str = "gaussian",
    link: str | None = None,
    baseline: Any = None,
    alpha: Any = 0.05,
    dof: Any = None,
    weights: Any = None,
    sampling: str = "cross-sectional",
    churn: Any = None,
    individual_decay: Any = None,
    time: str = "categorical",
    analysis: str = "mixed",
    exposure: Any = 1.0,
    dispersion: Any = None,
    binary_variance: str = "mean",
    glmm_variance: str = "null-alternative",
    treatment_correlation: Any = None,
) -> _Spec:
    """Validate the inputs of :func:`power` (same keywords and defaults) into a ``_Spec``."""
    d = _as_design(design)
    variance = point_variance(variance)
    eff = check_finite("effect", effect)
    family = check_option("family", family, FAMILIES)
    link = DEFAULT_LINK[family] if link is None else check_option("link", link, LINKS[family])
    analysis = check_option("analysis", analysis, ("mixed", "gee"))
    sampling = check_option("sampling", sampling, ("cross-sectional", "cohort"))
    time = check_option("time", time, ("categorical", "linear", "none"))
    binary_variance = check_option("binary_variance", binary_variance, BINARY_VARIANCE)
    glmm_variance = check_option(
        "glmm_variance", glmm_variance, ("null-alternative", "alternative")
    )
    _check_sigma2(variance, family, link, analysis, binary_variance)
    a = check_probability("alpha", alpha)
    churn_f, ind_decay = _cohort_iv(sampling, churn, individual_decay)
    dof = _dof_iv(dof)
    size = _cell_array("cluster_size", cluster_size, d)
    expo = _cell_array("exposure", exposure, d)
    if family == "binomial" and np.nanmax(np.abs(expo - 1.0)) > 0:
        raise OptionError("`exposure` applies only to count families (poisson, negative_binomial).")
    disp = _dispersion_iv(dispersion, family)
    base = _baseline_iv(baseline, family, d.n_periods)
    _check_gee(analysis, family, variance)
    tcorr = _treatment_correlation_iv(treatment_correlation, analysis, sampling, d)
    spec = _Spec(
        design=d,
        matrix=np.where(d.observed, np.nan_to_num(d.matrix), 0.0),
        observed=d.observed,
        size=size,
        effect=eff,
        variance=variance,
        family=family,
        link=link,
        analysis=analysis,
        baseline=base,
        alpha=a,
        dof=dof,
        weights=_weights_iv(weights, d),
        sampling=sampling,
        churn=churn_f,
        individual_decay=ind_decay,
        time=time,
        exposure=expo,
        dispersion=disp,
        binary_variance=binary_variance,
        glmm_variance=glmm_variance,
        times=d.period_midpoints() if variance.decay_scale == "time" else None,
        treatment_correlation=tcorr,
    )
    _check_means(spec)
    return spec


def _cohort_iv(sampling: str, churn: Any, individual_decay: Any) -> tuple[float, float | None]:
    """Return the churn (1 cross-sectionally, default 0 for cohorts) and individual decay."""
    if churn is None:
        churn_f = 0.0 if sampling == "cohort" else 1.0
    else:
        if sampling != "cohort":
            raise OptionError('`churn` applies only with sampling="cohort".')
        churn_f = check_unit_interval("churn", churn)
    if individual_decay is None:
        return churn_f, None
    if sampling != "cohort" or churn_f != 0.0:
        raise OptionError(
            '`individual_decay` applies only to a closed cohort (sampling="cohort", churn=0).'
        )
    return churn_f, check_unit_interval("individual_decay", individual_decay)


def _dof_iv(dof: Any) -> str | float | None:
    if dof is None:
        return None
    if isinstance(dof, str):
        return check_option("dof", dof, DOF_RULES)
    try:
        dof_f = float(dof)
    except (TypeError, ValueError):
        raise OptionError(
            f"`dof` must be None, a number > 0 or one of {DOF_RULES}; got {dof!r}."
        ) from None
    if not dof_f > 0:
        raise OptionError(f"`dof` must be a number > 0; got {dof!r}.")
    return dof_f


def _dispersion_iv(dispersion: Any, family: str) -> float | None:
    if family != "negative_binomial":
        if dispersion is not None:
            raise OptionError("`dispersion` applies only to family='negative_binomial'.")
        return None
    if dispersion is None:
        raise OptionError(
            "`dispersion` (the negative-binomial size theta, Var = mu + mu**2 / theta) is "
            "required for family='negative_binomial'."
        )
    disp = float(dispersion)
    if not (math.isfinite(disp) and disp > 0):
        raise OptionError(f"`dispersion` must be a finite number > 0; got {dispersion!r}.")
    return disp


def _baseline_iv(baseline: Any, family: str, n_periods: int) -> np.ndarray | None:
    """Return the control probability or rate of each period (Gaussian: optional means)."""
    if family == "gaussian":
        if baseline is None:
            return None
        means: np.ndarray = np.array(
            np.broadcast_to(np.asarray(baseline, dtype=float), (n_periods,))
        )
        return means
    if baseline is None:
        raise OptionError(
            "`baseline` (the control-condition "
            f"{'probability' if family == 'binomial' else 'rate'}) "
            f"is required for family={family!r}."
        )
    base = np.asarray(baseline, dtype=float)
    if base.ndim == 0:
        base = np.full(n_periods, float(base))
    if base.shape != (n_periods,):
        raise OptionError(
            f"`baseline` must be a scalar or a vector with one value per period "
            f"({n_periods}); got shape {base.shape}."
        )
    if family == "binomial":
        if not np.all((base > 0) & (base < 1)):
            raise OptionError(f"`baseline` probabilities must lie in (0, 1); got {base.tolist()}.")
    elif not np.all(np.isfinite(base) & (base > 0)):
        raise OptionError(f"`baseline` rates must be > 0; got {base.tolist()}.")
    return base


def _check_gee(analysis: str, family: str, vc: VarianceComponents) -> None:
    if analysis != "gee":
        return
    if family not in ("gaussian", "binomial"):
        raise OptionError("analysis='gee' supports family='gaussian' or 'binomial'.")
    if vc.eta2 > 0:
        raise OptionError(
            "analysis='gee' (marginal model) cannot express a random treatment effect "
            "(eta2 > 0); use analysis='mixed'."
        )


def _treatment_correlation_iv(
    treatment_correlation: Any, analysis: str, sampling: str, d: Design
) -> tuple[float, float, float] | None:
    if treatment_correlation is None:
        return None
    if analysis != "gee" or sampling != "cross-sectional":
        raise OptionError(
            "`treatment_correlation` applies to analysis='gee' with cross-sectional sampling."
        )
    try:
        tcorr = tuple(float(v) for v in treatment_correlation)
    except (TypeError, ValueError):
        raise OptionError(
            "`treatment_correlation` must be three correlations (control-control, "
            f"control-treated, treated-treated); got {treatment_correlation!r}."
        ) from None
    if len(tcorr) != 3 or not all(0.0 <= v < 1.0 for v in tcorr):
        raise OptionError(
            "`treatment_correlation` must be three correlations in [0, 1) (control-control, "
            f"control-treated, treated-treated); got {treatment_correlation!r}."
        )
    xm = np.nan_to_num(d.matrix)
    if np.any((xm > 0) & (xm < 1) & d.observed):
        raise DesignError("`treatment_correlation` needs 0/1 treatment cells.")
    return tcorr[0], tcorr[1], tcorr[2]


def _weights_iv(weights: Any, d: Design) -> np.ndarray | None:
    """Check ETI weights over exposure times ``1..L`` (they must sum to 1)."""
    if weights is None:
        return None
    w = np.asarray(weights, dtype=float).ravel()
    x = np.nan_to_num(d.matrix)
    if np.any((x > 0) & (x < 1) & d.observed):
        raise DesignError(
            "ETI `weights` cannot be combined with fractional (partial-treatment) cells; "
            "use a design with 0/1 cells (transition periods as unobserved cells)."
        )
    expo_t = np.where(d.observed, d.exposure_time, 0)
    n_exp = int(expo_t.max())
    if w.shape[0] != n_exp:
        raise OptionError(
            f"`weights` must have one value per exposure time 1..{n_exp}; got {w.shape[0]}."
        )
    if not np.all(np.isfinite(w)) or abs(w.sum() - 1.0) > 1e-8:
        raise OptionError(f"`weights` must sum to 1; got sum {w.sum():.6g}.")
    return w


def _inverse_link(link: str, eta: np.ndarray) -> np.ndarray:
    if link == "identity":
        return eta
    if link == "logit":
        return np.asarray(special.expit(eta))
    return np.asarray(np.exp(eta))


def _link(link: str, mu: np.ndarray) -> np.ndarray:
    if link == "identity":
        return mu
    if link == "logit":
        return np.asarray(special.logit(mu))
    return np.asarray(np.log(mu))


def _cell_means(spec: _Spec, effect: float) -> np.ndarray:
    """Per-individual (per unit exposure) mean of every cell, ``(I, T)``."""
    assert spec.baseline is not None
    eta0 = _link(spec.link, spec.baseline)[None, :]
    return _inverse_link(spec.link, eta0 + effect * spec.matrix)


def _check_means(spec: _Spec) -> None:
    if spec.family == "binomial":
        mu = _cell_means(spec, spec.effect)[spec.observed]
        if not np.all((mu > 0) & (mu < 1)):
            raise OptionError(
                "the treated probabilities implied by `baseline` and `effect` must lie in (0, 1); "
                f"got a range {mu.min():.4g} to {mu.max():.4g}."
            )


def _check_sigma2(
    variance: Any, family: str, link: str, analysis: str, binary_variance: str
) -> None:
    """``sigma2 = 0`` is fine where it has no role; refuse it where it would be used."""
    if not isinstance(variance, VarianceComponents) or variance.sigma2 > 0:
        return
    vc = variance
    if family == "gaussian" and vc.gamma2 == 0 and (analysis == "gee" or vc.psi2 == 0):
        raise OptionError(
            "`variance.sigma2` is 0 and there is no cluster-period (gamma2) or individual "
            "(psi2) variance: a Gaussian outcome needs within-cluster variation; give sigma2 > 0."
        )
    rescaled = binary_variance in ("mean", "average", "control")
    if family == "binomial" and link == "identity" and rescaled and vc.total_variance == 0:
        raise OptionError(
            f"binary_variance={binary_variance!r} rescales the components to keep their ICC, "
            "but every component of `variance` is 0 (no ICC to keep); give sigma2 > 0, or use "
            "binary_variance='swcrtdesign' or 'steppedpower' (components on the probability "
            "scale, sigma2 not used)."
        )


# --------------------------------------------------------------------------- computation
def _fixed_and_contrast(spec: _Spec) -> tuple[np.ndarray, np.ndarray]:
    if spec.weights is None:
        z = pk.fixed_effects(spec.matrix, spec.observed, time=spec.time)
        c = np.zeros(z.shape[2])
        c[-1] = 1.0
        return z, c
    n_exp = spec.weights.shape[0]
    z = pk.fixed_effects(
        spec.matrix,
        spec.observed,
        time=spec.time,
        exposure_time=np.asarray(spec.design.exposure_time),
        n_exposure=n_exp,
    )
    c = np.zeros(z.shape[2])
    c[-n_exp:] = spec.weights
    return z, c


def _gaussian_components(spec: _Spec) -> tuple[Any, VarianceComponents, str | None]:
    """Residual variance (scalar, or ``(I, T)`` per cell) and components on the identity scale."""
    vc = spec.variance
    if spec.family == "gaussian":
        return vc.sigma2, vc, None
    # binomial, identity link: Bernoulli variance plug-in
    assert spec.baseline is not None
    p0 = float(np.mean(spec.baseline))
    p1 = p0 + spec.effect
    if spec.binary_variance == "swcrtdesign":
        pbar = (p0 + p1) / 2
        v = pbar * (1 - pbar)
        note = (
            "Binary outcome on the risk-difference scale, swCRTdesign swPwr convention: "
            f"residual variance p(1-p) = {v:.6g} at p = (p0 + p1)/2 = {pbar:.6g}; tau2, gamma2 "
            "(and eta2, psi2) used as given, on the probability scale (sigma2 of `variance` "
            "is not used)."
        )
        return v, vc.with_(sigma2=v), note
    if spec.binary_variance == "steppedpower":
        mu = _cell_means(spec, spec.effect)
        v_cells = np.where(spec.observed, mu * (1 - mu), 1.0)
        note = (
            "Binary outcome on the risk-difference scale, SteppedPower glsPower convention: "
            "cell-specific residual variance mu_ij(1 - mu_ij) at the expected cell "
            "probability (control or treated); tau2, gamma2 (and eta2, psi2) used as given, on "
            "the probability scale (sigma2 of `variance` is not used)."
        )
        return v_cells, vc, note
    if spec.binary_variance == "mean":
        pbar = (p0 + p1) / 2
        v = pbar * (1 - pbar)
        rule = "p(1-p) at p = (p0 + p1)/2"
    elif spec.binary_variance == "average":
        v = (p0 * (1 - p0) + p1 * (1 - p1)) / 2
        rule = "[p0(1-p0) + p1(1-p1)]/2 (SWSamp, Harrison & Wang)"
    else:
        v = p0 * (1 - p0)
        rule = "p0(1-p0) (Hemming's Stata steppedwedge)"
    scale = v / vc.total_variance
    scaled = VarianceComponents(
        sigma2=vc.sigma2 * scale,
        tau2=vc.tau2 * scale,
        gamma2=vc.gamma2 * scale,
        eta2=vc.eta2 * scale,
        rho=vc.rho,
        psi2=vc.psi2 * scale,
        decay=vc.decay,
    )
    note = (
        f"Binary outcome on the risk-difference scale (linear approximation), ICC-preserving "
        f"rescaling: the variance components were rescaled so that the total variance equals "
        f"the Bernoulli variance {v:.6g} = {rule}; ICC, CAC and IAC keep their values "
        "(binary_variance='swcrtdesign' or 'steppedpower' use the components as given)."
    )
    return scaled.sigma2, scaled, note


def _re_kwargs(vc: VarianceComponents, spec: _Spec, *, cross_psi: bool) -> dict[str, Any]:
    psi2 = vc.psi2
    return dict(
        tau2=vc.tau2,
        gamma2=vc.gamma2,
        decay=vc.decay,
        eta2=vc.eta2,
        rho=vc.rho,
        treatment=spec.matrix,
        psi2=0.0 if cross_psi else psi2,
        churn=spec.churn,
        individual_decay=spec.individual_decay,
        times=spec.times,
    )


def _covariance(spec: _Spec, effect: float) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Return (fixed-effect design scaled for the link, covariance of means, notes)."""
    z, _ = _fixed_and_contrast(spec)
    inv_m = np.where(spec.observed, 1.0 / np.where(spec.observed, spec.size, 1.0), 0.0)
    notes: list[str] = []
    cross = spec.sampling == "cross-sectional"
    if spec.analysis == "gee":
        vc = spec.variance
        tot = vc.total_variance
        # correlation structure of individual outcomes -> covariance of cell means (unit var)
        resid_share = (vc.sigma2 + (vc.psi2 if cross else 0.0)) / tot
        norm = VarianceComponents(
            sigma2=max(resid_share, 1e-300),
            tau2=vc.tau2 / tot,
            gamma2=vc.gamma2 / tot,
            psi2=vc.psi2 / tot,
            decay=vc.decay,
        )
        if spec.treatment_correlation is None:
            corr = pk.cluster_mean_covariance(
                inv_m,
                spec.observed,
                resid_share * inv_m,
                **_re_kwargs(norm, spec, cross_psi=cross),
            )
        else:
            # Harrison & Wang (2021): exchangeable within cluster, the correlation of two
            # individuals depending on their treatment states (cc, ct, tt)
            cc, ct, tt = spec.treatment_correlation
            xt = spec.matrix > 0.5
            both = xt[:, :, None] & xt[:, None, :]
            either = xt[:, :, None] | xt[:, None, :]
            corr = np.where(both, tt, np.where(either, ct, cc))
            idx = np.arange(corr.shape[1])
            r_same = corr[:, idx, idx]
            corr[:, idx, idx] = r_same + (1.0 - r_same) * inv_m
            corr = mask_unobserved(corr, spec.observed)
        if spec.family == "gaussian":
            v = np.full(spec.matrix.shape, tot)
            deriv = np.ones(spec.matrix.shape)
        else:
            mu = _cell_means(spec, effect)
            v = mu * (1 - mu)
            deriv = {"identity": np.ones_like(mu), "logit": mu * (1 - mu), "log": mu}[spec.link]
        sd = np.sqrt(np.where(spec.observed, v, 1.0))
        cov = corr * sd[:, :, None] * sd[:, None, :]
        cov = mask_unobserved(cov, spec.observed)
        zs = z * np.where(spec.observed, deriv, 0.0)[:, :, None]
        notes.append(
            "Marginal (GEE) model-based variance (Li, Turner & Preisser 2018): working "
            "correlations icc, icc*cac (with decay if set) and, for cohorts, (tau2+psi2)/total."
        )
        return zs, cov, notes
    if spec.family == "gaussian" or spec.link == "identity":
        sigma2, vc, note = _gaussian_components(spec)
        if note:
            notes.append(note)
        if cross:
            sigma2 = sigma2 + vc.psi2  # individual effect is residual noise without a cohort
        cov = pk.cluster_mean_covariance(
            inv_m, spec.observed, sigma2 * inv_m, **_re_kwargs(vc, spec, cross_psi=cross)
        )
        return z, cov, notes
    # link-scale GLMM, linearised at the cell means (PQL/Laplace; Xia et al. 2021)
    mu = _cell_means(spec, effect)
    w: np.ndarray
    if spec.family == "binomial":
        dmu = {"logit": mu * (1 - mu), "log": mu}[spec.link]
        w = spec.size * dmu**2 / (mu * (1 - mu))
    else:
        unit = mu * spec.exposure  # expected count per unit
        if spec.family == "poisson":
            w = spec.size * unit
        else:
            assert spec.dispersion is not None
            w = spec.size * unit * spec.dispersion / (spec.dispersion + unit)
    resid = np.where(spec.observed, 1.0 / np.where(spec.observed, w, 1.0), 0.0)
    vc = spec.variance
    kwargs = _re_kwargs(vc, spec, cross_psi=cross)
    if cross and vc.psi2 > 0:
        resid = resid + vc.psi2 * inv_m
    cov = pk.cluster_mean_covariance(inv_m, spec.observed, resid, **kwargs)
    return z, cov, notes


def _dof(spec: _Spec, n_params: int) -> float | None:
    if spec.dof is None:
        return None
    if not isinstance(spec.dof, str):
        return float(spec.dof)
    n_clusters = spec.design.n_clusters
    n_cells = int(spec.observed.sum())
    df: float
    if spec.dof == "residual":  # SteppedPower: cluster-period means minus rank(X)
        df = n_cells - n_params
    elif spec.dof == "between-within":  # SteppedPower: clusters minus rank(X)
        df = n_clusters - n_params
    elif spec.dof == "containment":  # SteppedPower: cluster-period means minus clusters
        df = n_cells - n_clusters
    else:
        df = _dof_individuals(spec, n_params, n_clusters, n_cells)
    if df < 1:
        raise OptionError(
            f"`dof={spec.dof!r}` gives {df:g} degrees of freedom for this design; use a number "
            "or None (normal reference)."
        )
    return float(df)


def _dof_individuals(spec: _Spec, n_params: int, n_clusters: int, n_cells: int) -> float:
    """Return the df of the ``*-individuals`` rules (counting ``N`` individuals)."""
    n_obs = float(np.nansum(spec.size)) if spec.family != "negative_binomial" else float(n_cells)
    x = np.where(spec.observed, spec.matrix, np.nan)
    varies = bool(np.any(np.nanmax(x, axis=1) > np.nanmin(x, axis=1)))
    if spec.dof == "residual-individuals":
        return n_obs - n_params
    if spec.dof == "between-within-individuals":
        return n_obs - (n_params + n_clusters - 1) if varies else n_clusters - 2
    vc = spec.variance  # containment-individuals
    if vc.eta2 > 0 or not varies:
        return n_clusters - 2
    if vc.gamma2 > 0:
        return n_cells - (n_params + n_clusters - 1)
    return n_obs - n_params


def _compute(spec: _Spec) -> PowerResult:
    z, contrast = _fixed_and_contrast(spec)
    try:
        zs, cov, notes = _covariance(spec, spec.effect)
        var_alt = pk.estimator_variance(zs, cov, contrast)
        if spec.family != "gaussian" and spec.link != "identity" and spec.analysis == "mixed":
            z0, cov0, _ = _covariance(spec, 0.0)
            var_null = pk.estimator_variance(z0, cov0, contrast)
            if spec.glmm_variance == "null-alternative":
                notes.append(
                    "Link-scale GLMM power linearised at the cell means (Breslow-Clayton PQL / "
                    "Laplace, as swCRTdesign swGlmPwr; Xia et al. 2021) with the variance under "
                    "the null for the critical value and under the alternative for the spread."
                )
            else:
                notes.append(
                    "Link-scale GLMM power linearised at the cell means (PQL / Laplace) for a "
                    "Wald test: the alternative variance sets both critical value and spread."
                )
        else:
            var_null = var_alt
    except pk.NotEstimableError:
        what = "treatment effect" if spec.weights is None else "weighted exposure-time estimand"
        raise DesignError(
            f"The {what} is not estimable in this design (the information matrix is singular "
            "in its direction); check the design and `weights`."
        ) from None
    df = _dof(spec, z.shape[2])
    se = math.sqrt(var_alt)
    se0 = math.sqrt(var_null)
    se_crit = se0 if spec.glmm_variance == "null-alternative" else se
    p2, p1 = pk.wald_power_null_alt(spec.effect, se_crit, se, spec.alpha, df)
    crit = float(pk._z_quantile(spec.alpha, df))
    if spec.family == "negative_binomial":
        notes.append(
            "Negative-binomial working weight per unit: mu * theta / (theta + mu) with "
            "Var(Y) = mu + mu^2/theta (see steppedwedge.power docs for the derivation)."
        )
    if spec.weights is None:
        estimand = "treatment (immediate effect)"
    elif np.count_nonzero(spec.weights) == 1:
        estimand = f"PTE at exposure time {int(np.flatnonzero(spec.weights)[0]) + 1}"
    else:
        estimand = "weighted exposure-time effect (TATE-type)"
    method = (
        "GLS variance of the treatment estimator from the cluster-period-mean covariance "
        f"({ {'categorical': 'categorical', 'linear': 'linear', 'none': 'no'}[spec.time] } "
        "period effects)."
    )
    return PowerResult(
        power=float(p2),
        power_one_tail=float(p1),
        variance=var_alt,
        std_error=se,
        variance_null=var_null,
        df=df,
        effect=spec.effect,
        alpha=spec.alpha,
        critical_value=crit,
        design=spec.design,
        variance_components=spec.variance,
        cluster_size=spec.size,
        family=spec.family,
        link=spec.link,
        analysis=spec.analysis,
        sampling=spec.sampling,
        churn=spec.churn,
        baseline=spec.baseline,
        weights=spec.weights,
        estimand=estimand,
        method=method,
        notes=tuple(notes),
        _fixed=zs,
        _cov=cov,
        _contrast=contrast,
    )


def power(
    design: Design | Any,
    *,
    effect: float,
    variance: VarianceComponents | VarianceEstimate,
    cluster_size: Any,
    family: str = "gaussian",
    link: str | None = None,
    baseline: Any = None,
    alpha: float = 0.05,
    dof: str | float | None = None,
    weights: Any = None,
    sampling: str = "cross-sectional",
    churn: float | None = None,
    individual_decay: float | None = None,
    time: str = "categorical",
    analysis: str = "mixed",
    exposure: Any = 1.0,
    dispersion: float | None = None,
    binary_variance: str = "mean",
    glmm_variance: str = "null-alternative",
    treatment_correlation: Any = None,
) -> PowerResult:
    r"""Analytic power of a cluster design from the GLS variance of the treatment estimator.

    Parameters
    ----------
    design : Design or array_like
        The design, or an ``I x T`` treatment matrix (converted with
        :meth:`Design.from_matrix`).
    effect : float
        Effect under the alternative on the link scale: mean difference (Gaussian), risk
        difference (identity), log odds ratio (logit), log risk or rate ratio (log link).
    variance : VarianceComponents or VarianceEstimate
        Variance components, or an estimate of them (an object with ``.variance`` and
        ``.draws``, e.g. from :func:`steppedwedge.estimate_variance`), whose point estimate
        is used.  On the outcome scale for Gaussian outcomes, the linear-predictor scale for
        link-scale GLMMs (``sigma2`` unused: the outcome distribution gives the within-cell
        variance); ``analysis="gee"`` uses only the correlations ``icc``, ``cac``, ``iac``
        and ``decay`` (and ``total_variance`` for Gaussian outcomes).
    cluster_size : float or array_like
        Individuals (units) per cluster-period ``m``: a scalar, one value per cluster, or an
        ``I x T`` array.  Must be > 0 in every observed cell.
    family : {"gaussian", "binomial", "poisson", "negative_binomial"}
    link : str, optional
        ``"identity"`` (Gaussian; binomial risk difference), ``"logit"`` (binomial default),
        ``"log"`` (binomial risk ratio, counts).
    baseline : float or array_like, optional
        Control-condition probability or rate (per unit of ``exposure``), a scalar or one
        value per period (period effects).  Required for non-Gaussian families.
    alpha : float, default 0.05
        Size of the two-sided test.
    dof : str or float, optional
        None: normal reference.  Otherwise a central ``t`` reference with df by
        SteppedPower's rules on cluster-period means (``"between-within"``,
        ``"containment"``, ``"residual"``), their individual-level counts (the same names
        with ``"-individuals"``), or a number (see Notes).
    weights : array_like, optional
        Exposure-time (ETI) weights over exposure times ``1..L`` summing to 1: the estimand
        is ``sum_e w_e delta_e`` in the ETI model (TATE: equal weights; PTE: a single 1).
    sampling : {"cross-sectional", "cohort"}
        Cross-sectional: new individuals each period (``psi2`` is then residual noise).
        Cohort: the same individuals are followed, see ``churn``.
    churn : float, optional
        Cohort only: share of each cluster's individuals replaced between periods
        (Kasza et al. 2020); default 0 (closed cohort).
    individual_decay : float, optional
        Closed cohort only: individual effects correlate ``r**|j-k|`` across periods (with
        ``decay`` equal and ``tau2 = 0``, the proportional-decay model of Li 2020).
    time : {"categorical", "linear", "none"}
        Categorical period effects, a linear trend in the period index, or none.
    analysis : {"mixed", "gee"}
        Conditional mixed model (default) or marginal GEE with model-based variance
        (Gaussian and binomial outcomes; Li, Turner & Preisser 2018).
    exposure : float or array_like, default 1
        Counts: person-time (population) of each unit, a scalar, per cluster or ``I x T``;
        the expected count of a unit is ``exposure * rate``.
    dispersion : float, optional
        Negative binomial size ``theta`` (``Var = mu + mu^2/theta`` per unit).
    binary_variance : {"mean", "average", "control", "swcrtdesign", "steppedpower"}
        Bernoulli variance for a binomial outcome with identity link (see Notes):
        ICC-preserving rescalings of ``variance`` (``"mean"``, ``"average"``,
        ``"control"``), or swCRTdesign's or SteppedPower's convention (``tau2``/``gamma2``
        on the probability scale as given).
    glmm_variance : {"null-alternative", "alternative"}
        Link-scale GLMMs only: ``"null-alternative"`` (swCRTdesign ``swGlmPwr``) takes the
        critical value from the variance at the null means and the spread from the
        alternative; ``"alternative"`` uses the alternative variance for both, as for the
        Wald test a fitted GLMM reports (closer to simulated Wald-test power).
    treatment_correlation : tuple of 3 floats, optional
        GEE, cross-sectional only: an exchangeable working correlation within a cluster
        whose value depends on the two individuals' treatment states, ``(control-control,
        control-treated, treated-treated)`` (Harrison & Wang 2021); replaces the
        correlations of ``variance``.

    Returns
    -------
    PowerResult

    Raises
    ------
    OptionError
        Invalid or conflicting options (the message names the argument), a ``dof`` rule
        giving fewer than 1 df, ``sigma2 = 0`` where it is used.
    DesignError
        The estimand is not estimable in the design.

    See Also
    --------
    solve_power : solve for clusters, cluster size or detectable effect.
    power_grid : vectorised closed forms over parameter grids.

    Notes
    -----
    ``SE`` is the GLS standard error of the treatment estimator from the cluster-period
    means (covariance of :func:`steppedwedge._core.covariance.mean_covariance`); power is
    ``F(|theta|/SE - q) + F(-|theta|/SE - q)`` with ``q`` the ``1 - alpha/2`` quantile of
    ``F`` (normal, or central ``t_df``); ``power_one_tail`` keeps only the first term
    (Hussey & Hughes 2007).  The working covariance of each family, the
    ``binary_variance`` rules, the GEE model and the ``dof`` rules are set out in
    :doc:`/explanation/power_methods`.

    References
    ----------
    .. [1] Hussey MA, Hughes JP (2007). Design and analysis of stepped wedge cluster
       randomized trials. Contemp Clin Trials 28:182-191.
    .. [2] Kasza J, Hooper R, Copas A, Forbes AB (2020). Sample size and power calculations
       for open cohort longitudinal cluster randomized trials. Stat Med 39:1871-1883.
    .. [3] Li F, Turner EL, Preisser JS (2018). Sample size determination for GEE analyses
       of stepped wedge cluster randomized trials. Biometrics 74:1450-1458.
    .. [4] Xia F, Hughes JP, Voldal EC, Heagerty PJ (2021). Power and sample size calculation
       for stepped-wedge designs with discrete outcomes. Trials 22:598.

    Examples
    --------
    >>> from steppedwedge.design import Design
    >>> from steppedwedge.variance import VarianceComponents
    >>> from steppedwedge.planning import power
    >>> design = Design.stepped_wedge(3, 3)
    >>> res = power(design, effect=0.2, variance=VarianceComponents(sigma2=1.0),
    ...             cluster_size=50)
    >>> round(res.power, 4)
    0.8074
    """
    inputs = dict(locals())  # the keywords as given (recorded on the result)
    spec = _power_iv(**inputs)
    res = _compute(spec)
    inputs.update(design=spec.design, variance=spec.variance)
    object.__setattr__(res, "_inputs", inputs)
    return res
