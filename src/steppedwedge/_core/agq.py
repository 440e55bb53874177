"""Adaptive Gauss-Hermite quadrature for GLMMs with one scalar random effect per cluster.

With ``v_i ~ N(0, 1)`` (spherical scale, ``eta = x'beta + offset + sigma * z * v``) the
cluster's marginal likelihood is ``int exp(f_i(v)) dv / sqrt(2 pi)`` with
``f_i(v) = sum_u ll_iu(v) - v^2 / 2``.  Centring the rule at the conditional mode
``v_i`` and scaling by the curvature ``H_i = 1 + sum_u w_iu a_iu^2`` (as lme4's
``nAGQ > 1``) gives

    L_i = log sum_k w_k exp(f_i(v_i + t_k / sqrt(H_i)) + t_k^2 / 2) - log(H_i) / 2

with the probabilists' Gauss-Hermite nodes ``t_k`` and weights ``w_k`` normalised to sum
to 1.  One node is the Laplace approximation.  Numpy only.

The rule is centred at the modes the caller found (:func:`steppedwedge._core.laplace.modes`,
whose state is passed in), so this module does not import the Laplace module: the outer
optimiser there calls into it, never the other way round.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy.special import logsumexp

from .families import Family

__all__ = ["gauss_hermite", "agq_value", "agq_value_grad"]


def gauss_hermite(n: int) -> tuple[np.ndarray, np.ndarray]:
    """Nodes and weights (summing to 1) of the ``n``-point rule for ``N(0, 1)``.

    Examples
    --------
    >>> t, w = gauss_hermite(3)
    >>> round(float(w @ t**2), 12), round(float(w @ t**4), 12)
    (1.0, 3.0)
    """
    t, w = np.polynomial.hermite_e.hermegauss(n)
    return t, w / w.sum()


def agq_value(data: Any, fam: Family, st: Any, alpha: float, n_quadrature: int) -> float:
    """AGQ log-likelihood (with the data constant) around the modes of the Laplace state.

    ``data`` is the :class:`~steppedwedge._core.laplace.UnitData` and ``st`` the
    :class:`~steppedwedge._core.laplace.LaplaceState` of
    :func:`~steppedwedge._core.laplace.modes` at the parameter values (one random effect
    per cluster).
    """
    if data.z.shape[2] != 1:
        raise ValueError(
            "adaptive Gauss-Hermite quadrature needs exactly one random effect per cluster."
        )
    t, w = gauss_hermite(n_quadrature)
    hh = st.h[:, 0, 0]
    scale = 1.0 / np.sqrt(hh)
    a = st.a[:, :, 0]  # (I, U)
    fixed = st.eta - a * st.v  # eta without the random effect
    vk = st.v + scale[:, None] * t[None, :]  # (I, K)
    eta = fixed[:, :, None] + a[:, :, None] * vk[:, None, :]  # (I, U, K)
    ll = fam.derivs(data.y[:, :, None], data.n[:, :, None], eta, alpha)[0] * data.weight[:, :, None]
    f = ll.sum(axis=1) - 0.5 * vk * vk + 0.5 * t[None, :] ** 2
    li = logsumexp(f, b=w[None, :], axis=1) - 0.5 * np.log(hh)
    return float(li.sum() + data.const)


def agq_value_grad(
    data: Any, fam: Family, st: Any, alpha: float, n_quadrature: int
) -> tuple[float, np.ndarray, np.ndarray, float]:
    """AGQ log-likelihood and its exact gradient ``(value, d/d beta, d/d sigma, d/d alpha)``.

    ``st`` is the Laplace state at the parameter values (as for :func:`agq_value`).

    The nodes ``v_k = v + t_k / sqrt(H)`` move with the parameters through the mode ``v``
    (implicit-function derivative) and the curvature ``H`` (whose derivative brings in
    ``dW/deta``), so the gradient is that of the computed approximation, not of the exact
    integral.
    """
    with np.errstate(over="ignore", invalid="ignore", divide="ignore", under="ignore"):
        return _agq_value_grad(data, fam, st, alpha, n_quadrature)


def _agq_value_grad(
    data: Any, fam: Family, st: Any, alpha: float, n_quadrature: int
) -> tuple[float, np.ndarray, np.ndarray, float]:
    if data.z.shape[2] != 1:
        raise ValueError(
            "adaptive Gauss-Hermite quadrature needs exactly one random effect per cluster."
        )
    t, wq = gauss_hermite(n_quadrature)
    x = data.x
    z = data.z[:, :, 0]
    wt = data.weight
    a = st.a[:, :, 0]
    v = st.v[:, 0]
    hh = st.h[:, 0, 0]
    w, w1, s = st.w, st.w1, st.s
    rs = 1.0 / np.sqrt(hh)
    fixed = st.eta - a * v[:, None]
    vk = v[:, None] + rs[:, None] * t[None, :]  # (I, K)
    eta = fixed[:, :, None] + a[:, :, None] * vk[:, None, :]  # (I, U, K)
    ll_k, s_k, _w_k, _w1_k = fam.derivs(data.y[:, :, None], data.n[:, :, None], eta, alpha)
    ll_k = ll_k * wt[:, :, None]
    s_k = s_k * wt[:, :, None]
    f = ll_k.sum(axis=1) - 0.5 * vk * vk + 0.5 * t[None, :] ** 2
    li = logsumexp(f, b=wq[None, :], axis=1) - 0.5 * np.log(hh)
    value = float(li.sum() + data.const)
    pi = wq[None, :] * np.exp(
        f - logsumexp(f, b=wq[None, :], axis=1)[:, None]
    )  # (I, K), rows sum to 1
    fprime = (s_k * a[:, :, None]).sum(axis=1) - vk  # f'(v_k)  (I, K)
    # mode derivatives
    awx = ((a * w)[:, None, :] @ x)[:, 0, :]  # (I, p)
    dv_db = -awx / hh[:, None]
    zs = (z * s).sum(axis=1)
    awz = (a * w * z).sum(axis=1)
    dv_ds = (zs - awz * v) / hh
    a2w1 = a * a * w1
    deta_db = x + a[:, :, None] * dv_db[:, None, :]  # (I, U, p)
    dh_db = (a2w1[:, None, :] @ deta_db)[:, 0, :]  # (I, p)
    dh_ds = 2.0 * awz + (a2w1 * (z * v[:, None] + a * dv_ds[:, None])).sum(axis=1)
    # d v_k = dv - t_k H^{-3/2} dH / 2
    c3 = 0.5 * t[None, :] * (rs**3)[:, None]  # (I, K)
    # beta
    dfk_db = np.einsum("iuk,iup->ikp", s_k, x)  # partial at fixed v
    dvk_db = dv_db[:, None, :] - c3[:, :, None] * dh_db[:, None, :]
    g_beta = np.einsum("ik,ikp->p", pi, dfk_db + fprime[:, :, None] * dvk_db) - 0.5 * (
        dh_db / hh[:, None]
    ).sum(0)
    # sigma (single component)
    dfk_ds = (s_k * z[:, :, None]).sum(axis=1) * vk
    dvk_ds = dv_ds[:, None] - c3 * dh_ds[:, None]
    g_sigma = np.array([float((pi * (dfk_ds + fprime * dvk_ds)).sum() - 0.5 * (dh_ds / hh).sum())])
    g_alpha = 0.0
    if fam.has_dispersion:
        dll, ds_, dw = fam.dalpha(data.y, st.eta, alpha)
        dll_k = fam.dalpha(data.y[:, :, None], eta, alpha)[0] * wt[:, :, None]
        ds_, dw = ds_ * wt, dw * wt
        dv_da = (a * ds_).sum(axis=1) / hh
        dh_da = ((dw + w1 * a * dv_da[:, None]) * a * a).sum(axis=1)
        dvk_da = dv_da[:, None] - c3 * dh_da[:, None]
        g_alpha = float(
            (pi * (dll_k.sum(axis=1) + fprime * dvk_da)).sum() - 0.5 * (dh_da / hh).sum()
        )
    return value, g_beta, g_sigma, g_alpha
