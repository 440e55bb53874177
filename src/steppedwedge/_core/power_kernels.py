"""Kernels of analytic power: fixed-effect designs, estimator variances and power curves.

Everything is expressed through :func:`steppedwedge._core.gls.gls_information` on
cluster-period means, so analytic power and model fitting share one code path.  Unobserved
cells get zero rows in the fixed-effect design and identity rows/columns in the covariance
(:func:`steppedwedge._core.covariance.mask_unobserved`).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt
from scipy import special, stats

from .covariance import decay_matrix, mask_unobserved, mean_covariance
from .gls import gls_information, whiten

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]

__all__ = [
    "fixed_effects",
    "estimator_variance",
    "NotEstimableError",
    "per_cluster_information",
    "information_content",
    "normal_power",
    "t_power",
    "wald_power_null_alt",
    "cohort_decay_covariance",
    "sequence_batched_variance",
    "cluster_mean_covariance",
    "variance_from_information",
]


class NotEstimableError(ValueError):
    """The requested contrast is not estimable in the given design."""


def fixed_effects(
    matrix: FloatArray,
    observed: BoolArray,
    *,
    time: str = "categorical",
    exposure_time: npt.NDArray[np.int64] | None = None,
    n_exposure: int | None = None,
) -> FloatArray:
    """Fixed-effect design ``Z`` of shape ``(I, T, p)`` with zero rows for unobserved cells.

    Columns: period indicators (``time="categorical"``, one per period that has at least one
    observed cell), an intercept (``time="none"``) or an intercept and a linear trend in
    the period index ``0..T-1`` (``time="linear"``), followed by the treatment column
    (``exposure_time is None``: the treatment intensity of the cell) or by ``n_exposure``
    exposure-time indicators ``1{E_ij = e}``, ``e = 1..L`` (ETI model).
    """
    x = np.where(observed, np.nan_to_num(np.asarray(matrix, dtype=float)), 0.0)
    n_clusters, n_periods = x.shape
    obs = observed.astype(float)
    if time == "categorical":
        keep = observed.any(axis=0)
        periods = np.broadcast_to(np.eye(n_periods), (n_clusters, n_periods, n_periods))
        base = periods[:, :, keep] * obs[:, :, None]
    elif time == "none":
        base = obs[:, :, None]
    elif time == "linear":
        t = np.arange(n_periods, dtype=float)
        base = np.stack([obs, obs * t[None, :]], axis=2)
    else:  # pragma: no cover - validated upstream
        raise ValueError(f"unknown time model {time!r}")
    if exposure_time is None:
        treat = x[:, :, None]
    else:
        e = np.where(observed, exposure_time, 0)
        levels = np.arange(1, (n_exposure or int(e.max())) + 1)
        treat = (e[:, :, None] == levels[None, None, :]).astype(float)
    return np.concatenate([base, treat], axis=2)


def estimator_variance(
    design: FloatArray, cov: FloatArray, contrast: FloatArray, *, rtol: float = 1e-9
) -> float:
    """``c' M^- c`` with ``M = sum_i Z_i' V_i^{-1} Z_i``; raise if ``c`` is not estimable.

    ``M`` may be singular (e.g. an exposure time never observed); the contrast is estimable
    when ``c`` lies in the row space of ``M``, checked with a relative tolerance.
    """
    info = gls_information(design, cov)
    return variance_from_information(info, contrast, rtol=rtol)


def variance_from_information(
    info: FloatArray, contrast: FloatArray, *, rtol: float = 1e-9
) -> float:
    """``c' M^- c`` for an information matrix ``M`` (see :func:`estimator_variance`)."""
    c = np.asarray(contrast, dtype=float)
    try:
        chol = np.linalg.cholesky(info)
    except np.linalg.LinAlgError:
        chol = None
    if chol is not None:
        y = np.linalg.solve(chol, c)
        var = float(y @ y)
        diag = np.abs(np.diag(chol))
        # (max/min pivot)^2 bounds cond(M) from below: a cheap rank-deficiency screen
        if np.isfinite(var) and diag.min() > 0 and (diag.max() / diag.min()) ** 2 < 1e12:
            return var
    # Singular or badly conditioned: use the eigen-decomposition and check estimability.
    vals, vecs = np.linalg.eigh(info)
    # exact rank deficiency leaves eigenvalues at rounding level (~1e-16 relative)
    tol = 1e-12 * max(vals.max(), 1e-300)
    pos = vals > tol
    proj = vecs[:, pos] @ (vecs[:, pos].T @ c)
    if not np.allclose(proj, c, rtol=1e-7, atol=1e-9 * max(1.0, float(np.abs(c).max()))):
        raise NotEstimableError("contrast not estimable")
    coef = vecs[:, pos].T @ c
    return float((coef**2 / vals[pos]).sum())


def per_cluster_information(design: FloatArray, cov: FloatArray) -> FloatArray:
    """``Z_i' V_i^{-1} Z_i`` for every cluster, shape ``(I, p, p)``."""
    wz = whiten(cov, design)
    out: FloatArray = np.einsum("itp,itq->ipq", wz, wz)
    return out


def information_content(
    design: FloatArray, cov: FloatArray, observed: BoolArray, contrast: FloatArray
) -> tuple[float, FloatArray]:
    """Kasza & Forbes (2019) information content of every observed cell.

    Returns ``(var_full, ic)`` with ``ic[i, j] = Var(theta_hat without cell ij) / var_full``
    (NaN for unobserved cells, ``inf`` when removing the cell makes the contrast
    non-estimable).
    """
    info_i = per_cluster_information(design, cov)
    total = info_i.sum(axis=0)
    var_full = variance_from_information(total, contrast)
    n_clusters, n_periods = observed.shape
    ic = np.full((n_clusters, n_periods), np.nan)
    for j in range(n_periods):
        rows = np.nonzero(observed[:, j])[0]
        if rows.size == 0:
            continue
        obs_j = observed[rows].copy()
        obs_j[:, j] = False
        z = design[rows] * obs_j[:, :, None]
        v = mask_unobserved(cov[rows], obs_j)
        info_minus = per_cluster_information(z, v)
        for k, i in enumerate(rows):
            m = total - info_i[i] + info_minus[k]
            try:
                ic[i, j] = variance_from_information(m, contrast) / var_full
            except NotEstimableError:
                ic[i, j] = np.inf
    return var_full, ic


def cohort_decay_covariance(
    inv_m: FloatArray, psi2: float, decay: float, times: FloatArray | None = None
) -> FloatArray:
    """Covariance of cluster-period means from an individual effect with AR(1) decay.

    A closed cohort whose individual effects correlate ``decay**|j-k|`` across periods
    (SteppedPower ``AR = c(., ., r)``; Li 2020 when the cluster part decays alike) adds
    ``psi2 / m_i * R(decay)`` to cluster ``i``'s block, ``m_i`` the mean cohort size.
    """
    inv_m = np.asarray(inv_m, dtype=float)
    n_periods = inv_m.shape[1]
    if times is None:
        times = np.arange(n_periods, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        m_i = np.where(inv_m > 0, 1.0 / inv_m, np.nan)
    inv_cohort = 1.0 / np.nanmean(m_i, axis=1)
    r = decay_matrix(decay, times)
    out: FloatArray = psi2 * inv_cohort[:, None, None] * r[None, :, :]
    return out


def _z_quantile(alpha: Any, df: Any) -> Any:
    if df is None:
        return special.ndtri(1 - np.asarray(alpha) / 2)
    return stats.t.ppf(1 - np.asarray(alpha) / 2, df)


def _cdf(x: Any, df: Any) -> Any:
    if df is None:
        return special.ndtr(x)
    return stats.t.cdf(x, df)


def normal_power(effect: Any, std_error: Any, alpha: Any = 0.05) -> tuple[Any, Any]:
    """Two-tailed and one-tail-counted power of a two-sided Wald z-test (vectorised).

    ``power_2s = Phi(|theta|/se - z) + Phi(-|theta|/se - z)``; ``power_1t = Phi(|theta|/se - z)``
    with ``z = z_{1 - alpha/2}``.
    """
    return wald_power_null_alt(effect, std_error, std_error, alpha, None)


def t_power(effect: Any, std_error: Any, alpha: Any, df: Any) -> tuple[Any, Any]:
    """As :func:`normal_power` with a central ``t_df`` reference (SteppedPower's rule)."""
    return wald_power_null_alt(effect, std_error, std_error, alpha, df)


def wald_power_null_alt(
    effect: Any, se_null: Any, se_alt: Any, alpha: Any = 0.05, df: Any = None
) -> tuple[Any, Any]:
    """Power with different standard errors under the null and the alternative.

    ``P(reject) = F((|theta| - q se0)/se1) + F((-|theta| - q se0)/se1)`` with ``q`` the
    ``1 - alpha/2`` quantile and ``F`` the normal (``df=None``) or ``t_df`` CDF
    (swCRTdesign ``swGlmPwr``; equals :func:`normal_power` when ``se0 = se1``).
    """
    theta = np.abs(np.asarray(effect, dtype=float))
    q = _z_quantile(alpha, df)
    s0 = np.asarray(se_null, dtype=float)
    s1 = np.asarray(se_alt, dtype=float)
    upper = _cdf((theta - q * s0) / s1, df)
    lower = _cdf((-theta - q * s0) / s1, df)
    return upper + lower, upper


def sequence_batched_variance(
    sequence_matrix: FloatArray,
    clusters_per_sequence: FloatArray,
    cov: FloatArray,
    *,
    time: str = "categorical",
) -> FloatArray:
    """IT-model variance for many scenarios at once.

    ``sequence_matrix`` is ``(S, T)`` (complete; every cluster of a sequence alike) and
    ``cov`` is ``(n, T, T)``: the covariance of a cluster's period means in each of ``n``
    scenarios, the same for every sequence.  With ``A = sum_s g_s Z_s (x) Z_s`` the
    information of scenario ``k`` is ``vec(V_k^{-1})' A``: one matrix product for all
    scenarios.  Returns ``(n,)`` variances.
    """
    seq = np.asarray(sequence_matrix, dtype=float)
    n_seq, n_periods = seq.shape
    observed = np.ones_like(seq, dtype=bool)
    z = fixed_effects(seq, observed, time=time)  # (S, T, p)
    g = np.asarray(clusters_per_sequence, dtype=float)
    p = z.shape[2]
    a = np.einsum("s,stp,suq->tupq", g, z, z).reshape(n_periods * n_periods, p * p)
    vinv = np.linalg.inv(np.asarray(cov, dtype=float))
    info = (vinv.reshape(vinv.shape[0], -1) @ a).reshape(-1, p, p)
    e = np.zeros((info.shape[0], p, 1))
    e[:, -1, 0] = 1.0
    return np.linalg.solve(info, e)[:, -1, 0]


def cluster_mean_covariance(
    inv_m: FloatArray,
    observed: BoolArray,
    residual_diag: FloatArray,
    *,
    tau2: float = 0.0,
    gamma2: float = 0.0,
    decay: float | None = None,
    eta2: float = 0.0,
    rho: float = 0.0,
    treatment: FloatArray | None = None,
    psi2: float = 0.0,
    churn: float = 1.0,
    individual_decay: float | None = None,
    times: FloatArray | None = None,
) -> FloatArray:
    """Masked covariance of cluster-period means for every structure power supports.

    The random-effect part comes from :func:`~steppedwedge._core.covariance.mean_covariance`
    (shared with simulation and fitting); the within-cell part is ``residual_diag``
    (``sigma2 / m_ij`` for Gaussian outcomes, ``1 / w_ij`` for linearised GLMMs).  ``inv_m``
    (``1 / m_ij``, 0 for unobserved cells) sets the cohort sizes for ``psi2``.  With
    ``individual_decay`` the cohort's individual effects decay as ``r**|j-k|`` (closed
    cohort only) instead of being split by ``churn``.
    """
    inv_m = np.where(observed, inv_m, 0.0)
    x = None if treatment is None else np.where(observed, np.nan_to_num(treatment), 0.0)
    use_psi_decay = psi2 > 0 and individual_decay is not None
    cov = mean_covariance(
        inv_m,
        sigma2=0.0,
        tau2=tau2,
        gamma2=gamma2,
        decay=decay,
        eta2=eta2,
        rho=rho,
        treatment=x,
        psi2=0.0 if use_psi_decay else psi2,
        churn=churn,
        times=times,
    )
    idx = np.arange(inv_m.shape[1])
    cov[:, idx, idx] += np.where(observed, residual_diag, 0.0)
    if use_psi_decay and individual_decay is not None:
        cov += cohort_decay_covariance(inv_m, psi2, float(individual_decay))
    return mask_unobserved(cov, observed)
