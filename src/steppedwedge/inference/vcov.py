"""Cluster-robust covariance of GLS fixed effects with a small-sample (CR2) correction.

With working covariance ``Sigma_i`` of cluster ``i``'s cell means (the fitted model),
whiten each cluster, ``X~_i = L_i^{-1} Xbar_i`` and ``e~_i = L_i^{-1}(ybar_i - Xbar_i b)``
(``Sigma_i = L_i L_i'``), so that GLS is OLS on the whitened data.  The CR2
(Bell & McCaffrey 2002; Pustejovsky & Tipton 2018 with weights equal to the inverse
working covariance) estimator is

``V = M^{-1} [sum_i X~_i' A_i e~_i e~_i' A_i X~_i] M^{-1}``,  ``A_i = (I - H~_ii)^{-1/2}``,

with ``H~_ii = X~_i M^{-1} X~_i'`` and ``M = sum_i X~_i' X~_i``.  With no covariate varying
within cells this equals the individual-level estimator exactly (the within-cell part of
every score is zero).  It is consistent for the variance of the treatment estimator even
when the random-effects structure is wrong, provided the treatment part of the model is
saturated enough for the estimand (Wang, Wang & Li 2024; use ``effect="eti"`` when the
effect may vary with exposure time).  Reference distribution: ``t`` with ``I - 1`` df.
"""

from __future__ import annotations

import numpy as np

from .._core.reml import CellData, CovarianceStructure, LMMFit

__all__ = ["VCOV_TYPES", "cr2_vcov"]

VCOV_TYPES = ("model", "robust", "cr2")


def _inv_sqrt_sym(a: np.ndarray) -> np.ndarray:
    w, v = np.linalg.eigh(0.5 * (a + a.T))
    w = np.clip(w, 1e-12, None)
    root: np.ndarray = (v / np.sqrt(w)) @ v.T
    return root


def cr2_vcov(fit: LMMFit, cells: CellData, structure: CovarianceStructure) -> np.ndarray:
    """CR2 cluster-robust covariance of the fixed effects (see module notes)."""
    g, _ = structure.blocks_natural(fit.natural, cells)
    i_n, t = cells.n.shape
    idx = np.arange(t)
    s = g.copy()
    s[:, idx, idx] += np.where(cells.observed, fit.sigma2 * cells.inv_m, 1.0)
    chol = np.linalg.cholesky(s)
    xw = np.linalg.solve(chol, cells.xbar)
    resid = np.where(cells.observed, cells.ybar - cells.xbar @ fit.beta, 0.0)
    ew = np.linalg.solve(chol, resid[:, :, None])[:, :, 0]
    p = cells.n_fixed
    m = np.einsum("itp,itq->pq", xw, xw)
    if np.any(np.diag(cells.within)[:p] > 0):
        m = m + cells.within[:p, :p] / fit.sigma2
    m_inv = np.linalg.inv(m)
    meat = np.zeros((p, p))
    for i in range(i_n):
        o = cells.observed[i]
        if not o.any():
            continue
        xi = xw[i][o]
        ei = ew[i][o]
        h = xi @ m_inv @ xi.T
        a = _inv_sqrt_sym(np.eye(xi.shape[0]) - h)
        u = xi.T @ (a @ ei)
        meat += np.outer(u, u)
    out = m_inv @ meat @ m_inv
    sym: np.ndarray = 0.5 * (out + out.T)
    return sym
