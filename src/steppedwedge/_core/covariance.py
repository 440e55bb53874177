r"""Covariance blocks of cluster-period means, vectorised over clusters.

A stepped-wedge model with Gaussian random effects implies, for cluster ``i``, a ``T x T``
covariance of its cluster-period means ``Ybar_i``:

.. math::

    \Sigma_i = \tau^2 J + \gamma^2 R(r) + \eta^2 x_i x_i^\top
              + \rho\tau\eta (1 x_i^\top + x_i 1^\top)
              + \psi^2_{\text{between}} / m_i \, J
              + \operatorname{diag}(\sigma^2 / m_{ij} + \psi^2_{\text{within}} / m_i)

with ``R(r)_{jk} = r^{|t_j - t_k|}`` (identity when there is no decay), ``x_i`` the cluster's
treatment row and the ``psi`` terms present only for cohorts (closed: all of ``psi^2`` is
shared across periods; open with churn ``chi``: a share ``chi`` behaves like a
cluster-period effect).  This single function is used by analytic power, simulation and
model fitting so that all three agree by construction.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]

__all__ = ["decay_matrix", "mean_covariance", "mask_unobserved"]


def decay_matrix(decay: float | None, times: FloatArray) -> FloatArray:
    """Return ``R`` with ``R[j, k] = decay ** |times[j] - times[k]|`` (identity if None).

    ``0 ** 0`` is taken as 1 so that ``decay=0`` gives the identity.
    """
    times = np.asarray(times, dtype=float)
    n = times.shape[0]
    if decay is None:
        return np.eye(n)
    lag = np.abs(times[:, None] - times[None, :])
    with np.errstate(divide="ignore"):
        out = np.where(lag == 0, 1.0, np.power(float(decay), lag))
    return out


def mean_covariance(
    inv_m: FloatArray,
    *,
    sigma2: float,
    tau2: float = 0.0,
    gamma2: float = 0.0,
    decay: float | None = None,
    eta2: float = 0.0,
    rho: float = 0.0,
    treatment: FloatArray | None = None,
    psi2: float = 0.0,
    churn: float = 1.0,
    times: FloatArray | None = None,
) -> FloatArray:
    """Covariance of cluster-period means for every cluster, shape ``(I, T, T)``.

    Parameters
    ----------
    inv_m : ndarray, shape (I, T)
        ``1 / m_ij``; use ``0`` (or any finite value) for unobserved cells and mask them
        afterwards with :func:`mask_unobserved`.
    sigma2, tau2, gamma2, eta2, psi2 : float
        Residual, persistent cluster, cluster-period, random-treatment and individual
        (cohort) variances.
    decay : float or None
        Decay ``r`` applied to the cluster-period component ``gamma2``.
    rho : float
        Correlation between the cluster intercept and the cluster treatment effect.
    treatment : ndarray, shape (I, T), optional
        Treatment intensities; needed when ``eta2 > 0``.
    churn : float
        Share of individuals replaced between periods (1 = cross-sectional, 0 = closed
        cohort); only used when ``psi2 > 0``.  For a cohort ``m_i`` is taken as the
        cluster's mean cell size.
    times : ndarray, shape (T,), optional
        Period positions for the decay distance (default ``0..T-1``).

    Returns
    -------
    ndarray, shape (I, T, T)
    """
    inv_m = np.asarray(inv_m, dtype=float)
    n_clusters, n_periods = inv_m.shape
    if times is None:
        times = np.arange(n_periods, dtype=float)
    shared = np.full((n_periods, n_periods), float(tau2))
    if gamma2:
        shared = shared + float(gamma2) * decay_matrix(decay, times)
    cov = np.broadcast_to(shared, (n_clusters, n_periods, n_periods)).copy()
    diag = float(sigma2) * inv_m
    if psi2:
        # m_i for a cohort: the harmonic-free mean of observed cell sizes.
        with np.errstate(divide="ignore", invalid="ignore"):
            m_i = np.where(inv_m > 0, 1.0 / inv_m, np.nan)
        inv_cohort = 1.0 / np.nanmean(m_i, axis=1)
        cov += ((1.0 - churn) * psi2 * inv_cohort)[:, None, None]
        diag = diag + (churn * psi2 * inv_cohort)[:, None]
    idx = np.arange(n_periods)
    cov[:, idx, idx] += diag
    if eta2 or (rho and eta2):
        if treatment is None:
            raise ValueError("`treatment` is required when eta2 > 0.")
        x = np.asarray(treatment, dtype=float)
        x = np.where(np.isnan(x), 0.0, x)
        cov += float(eta2) * x[:, :, None] * x[:, None, :]
        if rho:
            cross = float(rho) * np.sqrt(float(tau2) * float(eta2))
            cov += cross * (x[:, None, :] + x[:, :, None])
    out: FloatArray = cov
    return out


def mask_unobserved(cov: FloatArray, observed: npt.NDArray[np.bool_]) -> FloatArray:
    """Replace rows/columns of unobserved cells by those of an identity matrix.

    With the matching rows of the design set to zero, ``Z' V^{-1} Z`` and ``Z' V^{-1} y``
    then equal the same quantities computed on the observed cells only, so incomplete
    designs need no ragged arrays.  Returns a new array.
    """
    obs = np.asarray(observed, dtype=bool)
    out = np.array(cov, dtype=float, copy=True)
    both = obs[:, :, None] & obs[:, None, :]
    out = np.where(both, out, 0.0)
    n_periods = obs.shape[1]
    idx = np.arange(n_periods)
    out[:, idx, idx] = np.where(obs, out[:, idx, idx], 1.0)
    return out
