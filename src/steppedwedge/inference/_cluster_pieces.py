"""Per-cluster pieces of every estimator, for the sandwiches of :mod:`.sandwich`.

:class:`ClusterPieces` holds each cluster's score ``u_i`` and Hessian contribution ``H_i`` at
the estimate (and, for GLS fits, the observation-space arrays of CR2); the builders turn a
fitted model into them: :func:`gls_cluster_pieces` (Gaussian LMMs on cell statistics),
:func:`dense_cluster_pieces` (any working covariance on rows) and
:func:`laplace_cluster_pieces` (GLMMs, exact Laplace gradients).  The GEE, fixed-effects GLM
and cluster-level fits build their pieces next to their kernels.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..exceptions import OptionError

__all__ = ["ClusterPieces", "dense_cluster_pieces", "gls_cluster_pieces", "laplace_cluster_pieces"]


@dataclass(frozen=True)
class ClusterPieces:
    """Per-cluster scores and Hessian contributions of an estimator (see the module notes).

    Attributes
    ----------
    scores : ndarray, shape (I, P)
        ``u_i``, the cluster's contribution to the estimating function at the estimate.
    hessians : ndarray, shape (I, P, P)
        ``H_i``, the cluster's contribution to the Hessian of the objective (minus the
        Jacobian of the estimating function); ``sum_i H_i`` is the inverse bread.
    n_obs : int
        Observations (``N`` of the MBN factor ``c``).
    labels : sequence, optional
        Cluster labels for error messages (default ``0..I-1``).
    obs_x, obs_e, obs_cov : ndarray, optional
        GLS models only: each cluster's design ``(I, d, p)``, residuals ``(I, d)`` and
        working covariance ``(I, d, d)`` in an orthonormal basis of the observations that
        carries all of ``X_i`` (padding: zero ``X``/``e``, unit variance).  They give CR2 in
        clubSandwich's observation-space form
        (:func:`~steppedwedge.inference.sandwich.sandwich_vcov`); sequences of per-cluster
        arrays (ragged) are accepted.
    """

    scores: np.ndarray
    hessians: np.ndarray
    n_obs: int
    labels: Sequence[Any] | None = None
    obs_x: Any = None
    obs_e: Any = None
    obs_cov: Any = None

    @property
    def n_clusters(self) -> int:
        """Number of clusters ``I``."""
        return int(self.scores.shape[0])

    def label(self, i: int) -> Any:
        """Label of cluster ``i``."""
        return self.labels[i] if self.labels is not None else i


# ------------------------------------------------------------------------------ LMM pieces


def gls_cluster_pieces(
    cells: Any,
    g: np.ndarray,
    sigma2: float,
    beta: np.ndarray,
    *,
    rows: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None = None,
    labels: Sequence[Any] | None = None,
) -> ClusterPieces:
    """Per-cluster GLS pieces of a Gaussian LMM from cluster-period cell statistics.

    On the rows, ``u_i = X_i' V_i^{-1} e_i`` and ``H_i = X_i' V_i^{-1} X_i`` with ``V_i =
    Z_i G Z_i' + sigma2 I``.  Split the rows of a cell into their mean and the deviations
    from it: ``V_i`` maps both subspaces to themselves, acting as ``Sigma_i = G_i +
    sigma2 diag(1/m_ij)`` on the cell means and as ``sigma2`` on the deviations, so

    ``u_i = Xbar_i' Sigma_i^{-1} ebar_i + Xdev_i' edev_i / sigma2`` and
    ``H_i = Xbar_i' Sigma_i^{-1} Xbar_i + Xdev_i' Xdev_i / sigma2``

    exactly, with the deviation terms zero when no covariate varies within cells.

    Parameters
    ----------
    cells : CellData
        Cell statistics (``n``, ``xbar``, ``ybar``, ``observed``, ``inv_m``).
    g : ndarray, shape (I, T, T)
        Cluster-period random-effect covariance ``G_i`` (masked to observed cells).
    sigma2 : float
        Residual variance.
    beta : ndarray, shape (p,)
        GLS estimate.
    rows : tuple of arrays, optional
        ``(cluster codes, period codes, X rows, y rows)`` when covariates vary within cells.
    labels : sequence, optional
        Cluster labels (error messages).

    Returns
    -------
    ClusterPieces
    """
    i_n, t = cells.n.shape
    obs = cells.observed
    idx = np.arange(t)
    sig = g.copy()
    sig[:, idx, idx] += np.where(obs, sigma2 * cells.inv_m, 1.0)
    resid = np.where(obs, cells.ybar - cells.xbar @ beta, 0.0)
    sx = np.linalg.solve(sig, cells.xbar)  # Sigma_i^{-1} Xbar_i
    hess = np.einsum("itp,itq->ipq", cells.xbar, sx)
    scores = np.einsum("itp,it->ip", sx, resid)
    # orthonormal cell-mean coordinates: sqrt(m_ij) * (cell mean); covariance D G D + sigma2 I
    root_m = np.sqrt(np.where(obs, cells.n, 0.0))
    obs_x = root_m[:, :, None] * cells.xbar
    obs_e = root_m * resid
    obs_cov = root_m[:, :, None] * g * root_m[:, None, :]
    obs_cov[:, idx, idx] += np.where(obs, sigma2, 1.0)
    if rows is not None:
        ci, pi, x_rows, y_rows = rows
        xdev = x_rows - cells.xbar[ci, pi]
        edev = (y_rows - cells.ybar[ci, pi]) - xdev @ beta
        p = x_rows.shape[1]
        hess_w = np.zeros((i_n, p, p))
        np.add.at(hess_w, ci, xdev[:, :, None] * xdev[:, None, :])
        score_w = np.zeros((i_n, p))
        np.add.at(score_w, ci, xdev * edev[:, None])
        hess = hess + hess_w / sigma2
        scores = scores + score_w / sigma2
        wx, we = _within_coordinates(ci, xdev, edev, i_n)
        pad = np.zeros((i_n, p, p))
        pad[:, np.arange(p), np.arange(p)] = sigma2
        obs_x = np.concatenate([obs_x, wx], axis=1)
        obs_e = np.concatenate([obs_e, we], axis=1)
        top = np.concatenate([obs_cov, np.zeros((i_n, t, p))], axis=2)
        bottom = np.concatenate([np.zeros((i_n, p, t)), pad], axis=2)
        obs_cov = np.concatenate([top, bottom], axis=1)
    return ClusterPieces(
        scores=scores,
        hessians=hess,
        n_obs=int(round(cells.n_total)),
        labels=labels,
        obs_x=obs_x,
        obs_e=obs_e,
        obs_cov=obs_cov,
    )


def _within_coordinates(
    ci: np.ndarray, xdev: np.ndarray, edev: np.ndarray, i_n: int
) -> tuple[np.ndarray, np.ndarray]:
    """Coordinates of the within-cell deviations in an orthonormal basis of their ``X`` span.

    Per cluster, ``S_i`` = left singular vectors of the deviation rows ``Xdev_i`` (non-zero
    singular values; a subspace of the within-cell space, orthogonal to the cell means).  The
    residual component outside ``span(S_i)`` meets neither ``X_i`` nor the leverage, so it
    drops out of every score.  Padded to ``p`` coordinates with zeros.
    """
    p = xdev.shape[1]
    wx = np.zeros((i_n, p, p))
    we = np.zeros((i_n, p))
    order = np.argsort(ci, kind="stable")
    bounds = np.searchsorted(ci[order], np.arange(i_n + 1))
    for i in range(i_n):
        sel = order[bounds[i] : bounds[i + 1]]
        if sel.size == 0:
            continue
        u, sv, _ = np.linalg.svd(xdev[sel], full_matrices=False)
        keep = sv > 1e-12 * max(1.0, float(sv.max(initial=0.0)))
        basis = u[:, keep]
        r = basis.shape[1]
        wx[i, :r] = basis.T @ xdev[sel]
        we[i, :r] = basis.T @ edev[sel]
    return wx, we


def dense_cluster_pieces(
    x: Sequence[np.ndarray],
    e: Sequence[np.ndarray],
    v: Sequence[np.ndarray],
    *,
    labels: Sequence[Any] | None = None,
) -> ClusterPieces:
    """GLS pieces from each cluster's rows: ``X_i`` (n_i x p), residuals and covariance ``V_i``.

    ``u_i = X_i' V_i^{-1} e_i``, ``H_i = X_i' V_i^{-1} X_i``, and the rows themselves as the
    observation space of CR2 (any working covariance: cohorts, GEE working correlations).

    Examples
    --------
    >>> import numpy as np
    >>> from steppedwedge.inference.sandwich import dense_cluster_pieces, sandwich_vcov
    >>> x = [np.ones((2, 1)), np.ones((3, 1))]
    >>> e = [np.array([0.5, 1.0]), np.array([-0.5, -0.25, -0.75])]
    >>> v = [np.eye(2), np.eye(3)]
    >>> pieces = dense_cluster_pieces(x, e, v)
    >>> round(float(sandwich_vcov(pieces, "cr0")[0, 0]), 12)  # (1.5^2 + 1.5^2) / 5^2
    0.18
    """
    p = x[0].shape[1]
    scores = np.zeros((len(x), p))
    hess = np.zeros((len(x), p, p))
    for i, (xi, ei, vi) in enumerate(zip(x, e, v, strict=True)):
        if xi.shape[0] == 0:
            continue
        sol = np.linalg.solve(vi, np.column_stack([xi, ei]))
        hess[i] = xi.T @ sol[:, :p]
        scores[i] = xi.T @ sol[:, p]
    n_obs = int(sum(xi.shape[0] for xi in x))
    return ClusterPieces(
        scores=scores,
        hessians=hess,
        n_obs=n_obs,
        labels=labels,
        obs_x=list(x),
        obs_e=list(e),
        obs_cov=list(v),
    )


# ------------------------------------------------------------------------------ GLMM pieces


_UNIT_ARRAYS = ("y", "n", "offset", "weight", "x", "z")  # UnitData arrays with clusters first


def _tile_units(data: Any, r: int) -> Any:
    """Repeat the clusters of ``data`` ``r`` times (replicate-major), dropping the constant."""
    import dataclasses

    tiled = {
        f: np.tile(getattr(data, f), (r,) + (1,) * (getattr(data, f).ndim - 1))
        for f in _UNIT_ARRAYS
    }
    return dataclasses.replace(data, const=0.0, **tiled)


def _laplace_cluster_grads(
    data: Any,
    fam: Any,
    thetas: np.ndarray,
    p: int,
    k: int,
    v0: Any,
    *,
    return_state: bool = False,
) -> Any:
    """Per-cluster exact Laplace gradients ``(R, I, P)`` of ``log L`` at ``R`` parameter vectors.

    One vectorised evaluation: the clusters are replicated once per parameter vector and every
    replicate gets its own ``beta`` (the variance parameters are shared when they agree).
    ``v0``: starting modes, ``(I, q)`` for every replicate or ``(R, I, q)``.
    """
    from .._core.laplace import laplace_grad, modes

    r = thetas.shape[0]
    n_i = data.x.shape[0]
    td = _tile_units(data, r) if r > 1 else data
    beta = np.repeat(thetas[:, :p], n_i, axis=0) if r > 1 else thetas[0, :p]
    var = thetas[:, p : p + k]
    sigma = var[0] if np.all(var == var[0]) else np.repeat(var, n_i, axis=0)
    if fam.has_dispersion:
        al = thetas[:, p + k]
        alpha: Any = float(al[0]) if np.all(al == al[0]) else np.repeat(al, n_i)
    else:
        alpha = 0.0
    v_start = None
    if v0 is not None:
        v0 = np.asarray(v0)
        v_start = v0.reshape(r * n_i, -1) if v0.ndim == 3 else np.tile(v0, (r, 1))
    st = modes(td, fam, beta, sigma, alpha, v_start)
    gb, gs, ga = laplace_grad(td, fam, st, sigma, alpha, per_cluster=True)
    parts = [gb, gs] + ([np.asarray(ga).reshape(-1, 1)] if fam.has_dispersion else [])
    out = np.concatenate(parts, axis=1).reshape(r, n_i, -1)
    return (out, st) if return_state else out


def laplace_cluster_pieces(
    data: Any,
    fam: Any,
    core: Any,
    *,
    labels: Sequence[Any] | None = None,
    n_obs: int | None = None,
    step: float = 1e-5,
    leverage: str = "fixed",
) -> ClusterPieces:
    """Per-cluster scores and Hessians of the Laplace log-likelihood of a GLMM.

    The parameters are the free outer parameters ``(beta, sigma, [atanh r], [log NB size])`` of
    :class:`~steppedwedge._core.laplace.CoreFit` (those not on a boundary).  ``u_i`` is the
    exact gradient of cluster ``i``'s Laplace log-likelihood (envelope theorem plus the
    implicit derivative of the modes, :func:`~steppedwedge._core.laplace.laplace_grad`).

    With ``leverage="fixed"`` (default) only the fixed-effect block ``H_i,beta beta`` is
    kept (the rest of ``H_i`` is zero), in closed form
    (:func:`~steppedwedge._core.laplace.cluster_beta_hessians`: the cluster's share of the
    exact Laplace ``beta`` Hessian), so the leverage corrections measure each cluster's
    pull on the mean model while the bread (the full Hessian) still carries the
    uncertainty of the variance parameters.  A single cluster's curvature in a variance
    parameter is indefinite and noisy: with a small cluster-period variance the full-space
    ``S_i`` reached eigenvalues 0.95 (leverage ~1, no correction possible) in 6% of
    simulated Poisson trials with 12 clusters, against at most 0.3 for the fixed-effect
    block.  ``leverage="all"`` keeps the full ``H_i``, by forward differences of the exact
    per-cluster gradients (all perturbed parameter vectors in one vectorised evaluation) with
    step ``h_j = step * max(1, |theta_j|)`` (at most half an SD ``sigma_j``): truncation error
    ``O(h) ~ 1e-5`` relative, immaterial in a leverage correction.  ``leverage="none"`` skips
    the Hessians (zeros: enough for ``cr0`` and ``mbn``, which use only the bread).

    Parameters
    ----------
    data : UnitData
        The fitted units.
    fam : Family
        Outcome family.
    core : CoreFit
        The Laplace fit (``beta``, ``sigma``, ``alpha``, ``free``, ``v``).
    labels : sequence, optional
        Cluster labels (error messages).
    n_obs : int, optional
        Observations for the MBN factor (default: real units).
    step : float
        Relative finite-difference step (``leverage="all"`` only).

    Returns
    -------
    ClusterPieces
        Over the free parameters, in the order of ``core.free``.
    """
    p, k = data.x.shape[2], int(getattr(data, "n_var", data.n_comp))
    n_sd = data.n_comp  # variance parameters 0..n_comp-1 are SDs (>= 0); then an AR(1) atanh(r)
    theta = np.concatenate(
        [core.beta, core.sigma, [core.alpha] if fam.has_dispersion else []]
    ).astype(float)
    if leverage not in ("fixed", "all", "none"):
        raise OptionError(f"`leverage` must be 'fixed', 'all' or 'none'; got {leverage!r}.")
    free = np.flatnonzero(core.free)
    g_opt, st = _laplace_cluster_grads(data, fam, theta[None], p, k, core.v, return_state=True)
    g0 = g_opt[0][:, free]
    i_n = g0.shape[0]
    hess = np.zeros((i_n, free.size, free.size))
    cols = {"fixed": free[:0], "all": free, "none": free[:0]}[leverage]
    if leverage == "fixed":  # the fixed-effect block in closed form (no differencing)
        from .._core.laplace import cluster_beta_hessians

        fb = free[free < p]
        hb = cluster_beta_hessians(data, fam, st, core.alpha if fam.has_dispersion else 0.0)
        hess[:, : fb.size, : fb.size] = hb[:, fb[:, None], fb[None, :]]
    if cols.size:
        steps = np.array([step * max(1.0, abs(theta[j])) for j in cols])
        for c, j in enumerate(cols):
            if p <= j < p + n_sd:
                steps[c] = min(steps[c], 0.5 * theta[j])
        thetas = np.repeat(theta[None, :], cols.size, axis=0)
        thetas[np.arange(cols.size), cols] += steps
        # warm start: modes moved to first order, dv/dbeta_j = -H^-1 A'W x_j
        v_start = np.repeat(st.v[None], cols.size, axis=0)
        at_w = st.a.transpose(0, 2, 1) * st.w[:, None, :]
        for c, j in enumerate(cols):
            if j < p:
                v_start[c] -= steps[c] * (st.hinv @ (at_w @ data.x[:, :, j : j + 1]))[:, :, 0]
        grads = _laplace_cluster_grads(data, fam, thetas, p, k, v_start)[:, :, free]
        for c, j in enumerate(cols):
            hess[:, :, int(np.searchsorted(free, j))] = -(grads[c] - g0) / steps[c]
    if leverage == "fixed":
        hess[:, p:, :] = 0.0
    hess = 0.5 * (hess + hess.transpose(0, 2, 1))
    if n_obs is None:
        n_obs = int(np.sum(data.weight))
    return ClusterPieces(scores=g0, hessians=hess, n_obs=n_obs, labels=labels)
