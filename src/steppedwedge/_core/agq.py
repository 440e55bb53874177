"""Adaptive Gauss-Hermite quadrature for GLMMs with one scalar random effect per cluster.

With ``v_i ~ N(0, 1)`` (spherical scale, ``eta = x'beta + offset + sigma * z * v``) the
cluster's marginal likelihood is ``int exp(f_i(v)) dv / sqrt(2 pi)`` with
``f_i(v) = sum_u ll_iu(v) - v^2 / 2``.  Centring the rule at the conditional mode
``v_i`` and scaling by the curvature ``H_i = 1 + sum_u w_iu a_iu^2`` (as lme4's
``nAGQ > 1``) gives

    L_i = log sum_k w_k exp(f_i(v_i + t_k / sqrt(H_i)) + t_k^2 / 2) - log(H_i) / 2

with the probabilists' Gauss-Hermite nodes ``t_k`` and weights ``w_k`` normalised to sum
to 1.  One node is the Laplace approximation.  Numpy only.
"""

from __future__ import annotations

import numpy as np
from scipy.special import logsumexp

from .families import Family
from .laplace import LaplaceState, UnitData, modes

__all__ = ["gauss_hermite", "agq_value"]


def gauss_hermite(n: int) -> tuple[np.ndarray, np.ndarray]:
    """Nodes and weights (summing to 1) of the ``n``-point rule for ``N(0, 1)``."""
    t, w = np.polynomial.hermite_e.hermegauss(n)
    return t, w / w.sum()


def agq_value(data: UnitData, fam: Family, beta: np.ndarray, sigma: np.ndarray, alpha: float,
              n_quadrature: int, v0: np.ndarray | None = None) -> tuple[float, LaplaceState]:
    """AGQ log-likelihood (with the data constant) and the Laplace state at the modes."""
    st = modes(data, fam, beta, sigma, alpha, v0)
    if data.z.shape[2] != 1:
        raise ValueError("adaptive Gauss-Hermite quadrature needs exactly one random effect per cluster.")
    t, w = gauss_hermite(n_quadrature)
    hh = st.h[:, 0, 0]
    scale = 1.0 / np.sqrt(hh)
    a = st.a[:, :, 0]                                     # (I, U)
    fixed = st.eta - a * st.v                             # eta without the random effect
    vk = st.v + scale[:, None] * t[None, :]               # (I, K)
    eta = fixed[:, :, None] + a[:, :, None] * vk[:, None, :]   # (I, U, K)
    ll = fam.derivs(data.y[:, :, None], data.n[:, :, None], eta, alpha)[0] * data.weight[:, :, None]
    f = ll.sum(axis=1) - 0.5 * vk * vk + 0.5 * t[None, :] ** 2
    li = logsumexp(f, b=w[None, :], axis=1) - 0.5 * np.log(hh)
    return float(li.sum() + data.const), st
