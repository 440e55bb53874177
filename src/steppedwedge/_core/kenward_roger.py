"""Kenward-Roger and Satterthwaite small-sample inference for Gaussian mixed models.

Both work from :class:`~steppedwedge._core.reml.VarianceDerivatives`, the exact
individual-level quantities ``X'V^{-1}G_rV^{-1}X``, ``X'V^{-1}G_rV^{-1}G_sV^{-1}X`` and
``tr(V^{-1}G_rV^{-1}G_s)`` computed on cluster-period cells.

Kenward-Roger follows pbkrtest (``vcovAdj`` and ``KRmodcomp``): the variance parameters
are the elements of each random-effect covariance matrix plus ``sigma2`` (the "linear"
parametrisation, for which the second-derivative term vanishes), ``W = 2 IE^{-1}`` with
``IE_rs = tr(P G_r P G_s)`` (expected REML information up to the factor 1/2) and

``Phi_A = Phi + 2 Phi [sum_rs W_rs (Q_rs - P_r Phi P_s)] Phi``.

For the decay parameter ``r`` (nonlinear) the second-derivative term is neglected, as in
pbkrtest for any model.

Satterthwaite follows lmerTest: ``df = 2 (c'Phi c)^2 / (g' A g)`` with ``g`` the gradient
of ``c'Phi c`` in the variance parameters and ``A = 2 H^{-1}``, ``H`` the observed Hessian
of the REML deviance.  Parameters estimated on the boundary are left out, which is what
lmerTest's ``(theta, sigma)`` parametrisation implies there (the gradient of ``Phi`` in a
relative standard deviation is zero at zero).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from .reml import CellData, CovarianceStructure, VarianceDerivatives, reml_gradient_natural

FloatArray = npt.NDArray[np.float64]

__all__ = ["KRAdjustment", "kr_adjust", "kr_test", "kr_unit_df", "satterthwaite_df", "reml_hessian"]


@dataclass(frozen=True)
class KRAdjustment:
    """Adjusted covariance ``phi_adj`` with the pieces needed for the df."""

    phi: FloatArray
    phi_adj: FloatArray
    p_list: FloatArray  # (K, p, p): P_r = -X'V^{-1}G_rV^{-1}X
    w: FloatArray  # (K, K)
    condition: float
    ie: FloatArray  # (K, K): tr(P G_r P G_s), twice the expected REML information


def kr_adjust(d: VarianceDerivatives) -> KRAdjustment:
    """Kenward-Roger adjusted covariance of the fixed effects (pbkrtest ``vcovAdj``)."""
    phi = d.phi
    p_list = -d.xgx
    k_n = p_list.shape[0]
    p = phi.shape[0]
    # IE_rs = tr(V^-1 G_r V^-1 G_s) - 2 tr(Phi Q_rs) + tr(Phi P_r Phi P_s), all pairs at once
    phi_p = phi @ p_list  # (K, p, p): Phi P_r
    p_phi = p_list @ phi  # (K, p, p): P_s Phi
    ie = (
        d.ktrace
        - 2.0 * (d.q.reshape(k_n, k_n, p * p) @ phi.reshape(-1))
        + phi_p.reshape(k_n, -1) @ p_phi.reshape(k_n, -1).T
    )
    ie = np.triu(ie) + np.triu(ie, 1).T  # the (r <= s) values, mirrored
    eig = np.linalg.eigvalsh(ie)
    condition = float(np.min(np.abs(eig)))
    w = 2.0 * (np.linalg.inv(ie) if condition > 1e-10 else np.linalg.pinv(ie))
    w = 0.5 * (w + w.T)
    # U = sum_rs W_rs (Q_rs - P_r Phi P_s) = sum_rs W_rs Q_rs - sum_r (P_r Phi) (sum_s W_rs P_s)
    wp = np.tensordot(w, p_list, axes=(1, 0))  # (K, p, p): sum_s W_rs P_s
    u = np.tensordot(w, d.q, axes=([0, 1], [0, 1])) - np.einsum("rij,rjk->ik", p_phi, wp)
    u = 0.5 * (u + u.T)
    phi_adj = phi + 2.0 * phi @ u @ phi
    phi_adj = 0.5 * (phi_adj + phi_adj.T)
    return KRAdjustment(phi=phi, phi_adj=phi_adj, p_list=p_list, w=w, condition=condition, ie=ie)


def kr_test(adj: KRAdjustment, contrast: FloatArray) -> tuple[float, float]:
    """Denominator df and F scaling ``lambda`` for ``L beta`` (``L`` is ``l x p``).

    Returns ``(df, scaling)``; the test statistic is ``scaling * F`` with
    ``F = (L b)'(L Phi_A L')^{-1}(L b) / l`` referred to ``F(l, df)``.
    """
    lmat = np.atleast_2d(np.asarray(contrast, dtype=float))
    phi = adj.phi
    q = 1 if lmat.shape[0] == 1 else int(np.linalg.matrix_rank(lmat))
    theta = lmat.T @ np.linalg.solve(lmat @ phi @ lmat.T, lmat)
    theta_phi = theta @ phi
    us = np.matmul(np.matmul(theta_phi, adj.p_list), phi)  # (K, p, p)
    traces = np.trace(us, axis1=1, axis2=2)
    a1 = float(traces @ adj.w @ traces)
    k_n = us.shape[0]
    flat = us.reshape(k_n, -1)
    flat_t = us.transpose(0, 2, 1).reshape(k_n, -1)
    a2 = float(np.sum(adj.w * (flat @ flat_t.T)))
    return _kr_df_scaling(a1, a2, q)


def kr_unit_df(adj: KRAdjustment) -> FloatArray:
    """KR df of every single coefficient ``beta_k`` at once (``kr_test`` with ``L = e_k'``).

    For ``L = e_k'``, ``U_r = Theta Phi P_r Phi`` has the single non-zero row ``k``, so
    ``tr(U_r) = (Phi P_r Phi)_kk / Phi_kk`` and ``tr(U_r U_s) = tr(U_r) tr(U_s)``.
    """
    phi = adj.phi
    diag = np.diagonal(phi)
    # t[r, k] = phi_k' P_r phi_k / phi_kk with phi_k the k-th column of phi
    t = np.einsum("ik,rij,jk->rk", phi, adj.p_list, phi) / diag
    a = np.einsum("rk,rs,sk->k", t, adj.w, t)
    return np.array([_kr_df_scaling(float(ak), float(ak), 1)[0] for ak in a], dtype=np.float64)


def _kr_df_scaling(a1: float, a2: float, q: int) -> tuple[float, float]:
    """KR df and F scaling from ``A1``, ``A2`` and the number of rows ``q`` (pbkrtest)."""
    b = (a1 + 6.0 * a2) / (2.0 * q)
    g = ((q + 1) * a1 - (q + 4) * a2) / ((q + 2) * a2) if a2 != 0 else 0.0
    den = 3 * q + 2 * (1 - g)
    c1, c2, c3 = g / den, (q - g) / den, (q + 2 - g) / den
    v0 = 1 + c1 * b
    v1 = 1 - c2 * b
    v2 = 1 - c3 * b
    if abs(v0) < 1e-10:
        v0 = 0.0
    ratio = (1 - a2 / q) / v1 if v1 != 0 else 0.0
    rho = (1.0 / q) * ratio**2 * v0 / v2
    if q * rho - 1 == 0:
        return float("inf"), 1.0
    df = 4.0 + (q + 2) / (q * rho - 1)
    scaling = 1.0 if abs(df - 4) < 1e-2 else df * (1 - a2 / q) / (df - 2)
    if not np.isfinite(df) or df <= 0:
        df = float("inf")
    return float(df), float(scaling)


def reml_hessian(
    natural: FloatArray,
    sigma2: float,
    cells: CellData,
    structure: CovarianceStructure,
    *,
    reml: bool = True,
    gradient: Callable[..., FloatArray] | None = None,
    data: object | None = None,
) -> FloatArray:
    """Observed Hessian of ``-2 log L`` in (natural parameters, sigma2).

    Central differences of the analytic gradient (relative step 1e-5).  ``gradient`` and
    ``data`` replace the cell engine's gradient (e.g. the per-cluster cohort engine).
    """
    grad_fn: Callable[..., FloatArray] = reml_gradient_natural if gradient is None else gradient
    source: object = cells if data is None else data
    full = np.r_[np.asarray(natural, dtype=float), sigma2]
    k_n = full.size
    h = np.zeros((k_n, k_n))
    for k in range(k_n):
        step = 1e-5 * max(abs(full[k]), 1e-3 * max(sigma2, 1e-12))
        if (
            structure.decay
            and structure.natural_names[-1:] == ("decay",)
            and k == structure.n_phi - 1
        ):
            step = min(step, 0.5 * (1 - abs(full[k])) + 1e-12)
        up, dn = full.copy(), full.copy()
        up[k] += step
        dn[k] -= step
        gu = grad_fn(up[:-1], up[-1], source, structure, reml=reml)
        gd = grad_fn(dn[:-1], dn[-1], source, structure, reml=reml)
        h[:, k] = (gu - gd) / (2 * step)
    sym: FloatArray = 0.5 * (h + h.T)
    return sym


def satterthwaite_df(
    d: VarianceDerivatives,
    hessian: FloatArray,
    contrast: FloatArray,
    keep: npt.NDArray[np.bool_] | None = None,
) -> float:
    """Satterthwaite df for the scalar contrast ``c' beta`` (lmerTest convention)."""
    c = np.asarray(contrast, dtype=float)
    phi_c = d.phi @ c
    var = float(c @ phi_c)
    grad = np.einsum("p,kpq,q->k", phi_c, d.xgx, phi_c)  # d(c'Phi c)/d v_r
    k_n = grad.size
    keep = np.ones(k_n, dtype=bool) if keep is None else np.asarray(keep, dtype=bool)
    hk = hessian[np.ix_(keep, keep)]
    try:
        a = 2.0 * np.linalg.inv(hk)
    except np.linalg.LinAlgError:
        a = 2.0 * np.linalg.pinv(hk)
    denom = float(grad[keep] @ a @ grad[keep])
    if denom <= 0:
        return float("inf")
    return 2.0 * var * var / denom
